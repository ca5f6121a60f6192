"""Synthetic instruments for the synthetic dataset: dry mono sources with distinct timbres.

Each synth is ``(rng, n samples, sr) -> (n,)`` float64; :func:`synthesize` normalises to unit RMS.
Types: harmonic tone with ADSR notes, plucked string (decaying harmonics), band-passed noise bursts,
chirps, and a formant "voice" (glottal-like pulse train through vowel formant resonators).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import butter, lfilter

from binaural_core.audio import BadInputError

# --- instruments: (rng, n samples, sr) -> (n,) float64 with unit RMS ----------------------------


def _notes(rng, n, sr, dur=(0.2, 0.8), gap=(0.0, 0.25)):
    """Random (start, length) sample spans covering the clip."""
    spans, t = [], int(rng.uniform(0.0, 0.15) * sr)
    while t < n - int(0.05 * sr):
        length = min(int(rng.uniform(*dur) * sr), n - t)
        spans.append((t, length))
        t += length + int(rng.uniform(*gap) * sr)
    return spans


def _adsr(length, sr, attack, decay, sustain, release):
    t = np.arange(length) / sr
    env = np.minimum(t / attack, 1.0)
    env = np.where(t > attack, sustain + (1 - sustain) * np.exp(-(t - attack) / decay), env)
    return env * np.clip((length / sr - t) / release, 0.0, 1.0)


def _harmonics(phase, f0_max, sr, amps):
    """Sum of ``amps[k-1] sin(k phase)`` over harmonics below 0.45 sr.

    Uses the recurrence ``sin(kφ) = 2 cos φ sin((k-1)φ) - sin((k-2)φ)`` (no per-harmonic ``sin``).
    """
    two_cos = 2.0 * np.cos(phase)
    prev, cur = np.zeros_like(phase), np.sin(phase)
    out = np.zeros_like(phase)
    for k, amp in enumerate(amps, start=1):
        if k * f0_max >= 0.45 * sr:
            break
        out += amp * cur
        prev, cur = cur, two_cos * cur - prev
    return out


def _tone(rng, n, sr):
    """Harmonic instrument playing a melody, ADSR envelope per note, light vibrato."""
    x = np.zeros(n)
    amps = 1.0 / np.arange(1, 13) ** rng.uniform(0.7, 2.0)
    adsr = (rng.uniform(0.005, 0.06), rng.uniform(0.05, 0.25), rng.uniform(0.3, 0.8), rng.uniform(0.04, 0.15))
    for start, length in _notes(rng, n, sr):
        f0 = 220.0 * 2 ** (rng.integers(-9, 17) / 12)
        t = np.arange(length) / sr
        phase = 2 * np.pi * f0 * t + 0.3 * np.sin(2 * np.pi * 5.0 * t)
        x[start : start + length] += _harmonics(phase, f0 * 1.01, sr, amps) * _adsr(length, sr, *adsr)
    return x


def _pluck(rng, n, sr):
    """Karplus–Strong plucked string (Karplus & Strong 1983): y[t] = x[t] + g (y[t-P] + y[t-P-1]) / 2."""
    x = np.zeros(n)
    gain = rng.uniform(0.985, 0.998)
    for start, length in _notes(rng, n, sr, dur=(0.15, 0.6), gap=(0.0, 0.1)):
        period = int(round(sr / (110.0 * 2 ** (rng.integers(0, 28) / 12))))
        exc = np.zeros(length)
        exc[: min(period, length)] = rng.uniform(-1.0, 1.0, min(period, length))
        a = np.zeros(period + 2)
        a[0], a[period], a[period + 1] = 1.0, -gain / 2, -gain / 2
        fade = np.clip((length - np.arange(length)) / 200.0, 0, 1)  # no click at the next note
        x[start : start + length] += lfilter([1.0], a, exc) * fade
    return x


def _noise(rng, n, sr):
    """Percussive band-pass noise hits on a beat grid, exponential decays, random accents."""
    fc = rng.uniform(400.0, min(6000.0, 0.3 * sr))
    b, a = butter(2, [fc / 1.6 / (sr / 2), min(fc * 1.6 / (sr / 2), 0.95)], btype="band")
    noise = lfilter(b, a, rng.standard_normal(n))
    beat, decay = rng.uniform(0.12, 0.45), rng.uniform(0.03, 0.2)
    env = np.zeros(n)
    for onset in np.arange(rng.uniform(0.0, beat), n / sr, beat):
        if rng.random() < 0.85:
            i = int(onset * sr)
            seg = rng.uniform(0.4, 1.0) * np.exp(-np.arange(n - i) / (decay * sr))
            env[i:] = np.maximum(env[i:], seg)
    return noise * env


def _chirp(rng, n, sr):
    """Repeated exponential sweeps (up or down) with a few harmonics and a smooth envelope."""
    x = np.zeros(n)
    for start, length in _notes(rng, n, sr, dur=(0.25, 0.9), gap=(0.0, 0.2)):
        f_lo, f_hi = rng.uniform(200.0, 700.0), rng.uniform(1200.0, min(5000.0, 0.3 * sr))
        u = np.arange(length) / length
        freq = f_lo * (f_hi / f_lo) ** (u if rng.random() < 0.5 else 1 - u)
        phase = 2 * np.pi * np.cumsum(freq) / sr
        x[start : start + length] += _harmonics(phase, f_hi, sr, (1.0, 0.35, 0.15)) * np.sin(np.pi * u) ** 0.5
    return x


_VOWELS = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240))


def _voice(rng, n, sr):
    """Formant 'voice': band-limited glottal pulse train through 3 vowel resonators, syllables."""
    t = np.arange(n) / sr
    f0 = rng.uniform(100.0, 250.0) * (
        1
        + 0.02 * np.sin(2 * np.pi * rng.uniform(4, 6) * t)
        + 0.08 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t)
    )
    glottal = _harmonics(2 * np.pi * np.cumsum(f0) / sr, f0.max(), sr, 1.0 / np.arange(1, 41))
    vowels = []
    for formants in _VOWELS:  # parallel two-pole resonators, bandwidths 80/100/120 Hz
        y = np.zeros(n)
        for gain, freq, bw in zip((1.0, 0.6, 0.3), formants, (80.0, 100.0, 120.0)):
            r = math.exp(-math.pi * bw / sr)
            y += gain * lfilter([1 - r], [1.0, -2 * r * math.cos(2 * math.pi * freq / sr), r * r], glottal)
        vowels.append(y)
    x = np.zeros(n)
    for start, length in _notes(rng, n, sr, dur=(0.12, 0.4), gap=(0.0, 0.2)):
        seg = vowels[rng.integers(len(vowels))][start : start + length]
        x[start : start + length] += seg * _adsr(length, sr, 0.02, 0.3, 0.7, 0.04)
    return x


_SYNTHS = {"tone": _tone, "pluck": _pluck, "noise": _noise, "chirp": _chirp, "voice": _voice}


def synthesize(kind: str, rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """One dry source of type ``kind`` (a key of :data:`SOURCE_TYPES`): ``(n,)`` float64, unit RMS."""
    if kind not in _SYNTHS:
        raise BadInputError(None, f"unknown source type {kind!r} (choose from {', '.join(_SYNTHS)})")
    x = _SYNTHS[kind](rng, n, sr)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)
