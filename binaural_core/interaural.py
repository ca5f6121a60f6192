"""Interaural phase on the mel grid: the phase channels Stage 1 predicts, and how they become per-bin phases.

**Phase channels** (what ``test_*.py`` writes to ``{mel_dir}/phase/{split}/{name}.npy``): per mel band
``b`` and frame ``k`` the complex *interaural coherence* of the left/right STFTs ``L``, ``R`` on the mel
grid (:func:`binaural_core.mel.stft`), weighted by the band's mel filter ``w_b``::

    γ_b(k) = Σ_f w_b(f) L(f, k) R*(f, k) / (sqrt(Σ_f w_b |L|² · Σ_f w_b |R|²) + ε)

stored as two real channels ``(Re γ, Im γ)``, shape ``(2, num_mels, T)``, frames aligned with the mels.
``arg γ`` is the band's interaural phase difference (IPD, ``φ_L − φ_R``: positive when the right ear
lags, i.e. a source on the left); ``|γ| ∈ [0, 1]`` is how coherent the two ears are in that band
(1: one source, a pure delay and gain; ~0: diffuse sound or silence, where ε pulls it to 0). Used as
a diffusion target, ``|γ|`` is its own loss weight: incoherent and silent bands have targets near 0
and a random angle costs almost nothing there, so they cannot dominate the loss.

**Per-bin phase** (:func:`band_ipd_to_bins`): a pure delay τ gives ``IPD(f) = 2π f τ``, linear in
frequency. The band angles are unwrapped along frequency (adjacent band centres are ≤ 440 Hz apart, so
any |τ| < 1.1 ms is unambiguous), anchored at 0 rad at 0 Hz (a real signal's DC has no phase),
interpolated linearly to the bins between centres and extrapolated with the last slope above the last
centre: a pure delay comes back as exactly its linear phase.

**Splitting an IPD between the ears** (:func:`split_phase`): given per-bin ear gains ``a_L, a_R``
relative to a reference signal ``M`` and the IPD ``Δ``, the rotations ``α_L − α_R = Δ`` are chosen so
that ``a_L e^{jα_L} + a_R e^{jα_R}`` has the reference's own phase (``arg = 0``). For a mono down-mix
``M = (L + R) / 2`` and a single source per bin this is exact (the louder ear stays close to the mono's
phase); the symmetric split ``±Δ/2`` is exact only for equal levels.

This module belongs to neither stage: the renderer (``DiffBinaural.inference.renderer``) and the vocoder
(``BigVGAN/inference.py``) both use it.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from binaural_core.mel import (
    MEL_BLOCK_FRAMES,
    MelConfig,
    band_centers,
    bin_frequencies,
    filterbank,
    interp_matrix,
    istft,
    mel_from_magnitude,
    num_stft_frames,
    spectral_magnitude,
    stft,
)

PHASE_CHANNELS = ("coherence_real", "coherence_imag")  # meta.json "phase.channels"
PHASE_DEFINITION = ("complex interaural coherence per mel band and frame: sum_f w_b L conj(R) / "
                    "sqrt(sum_f w_b |L|^2 * sum_f w_b |R|^2); angle = IPD (phi_L - phi_R), modulus = coherence")
COHERENCE_EPS = 1e-9  # power floor: bands this quiet in either ear get a coherence of ~0


def interaural_coherence(spec_l: torch.Tensor, spec_r: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Phase channels of two complex spectra ``(..., n_freq, T)`` -> ``(..., 2, num_mels, T)`` float32."""
    w = filterbank(cfg, spec_l.device)  # (M, n_freq)
    cross = spec_l * spec_r.conj()
    num_re, num_im = w @ cross.real, w @ cross.imag
    p_l = w @ (spec_l.real.pow(2) + spec_l.imag.pow(2))
    p_r = w @ (spec_r.real.pow(2) + spec_r.imag.pow(2))
    den = torch.sqrt(p_l * p_r) + COHERENCE_EPS
    return torch.stack([num_re / den, num_im / den], dim=-3)


def _spectrum_blocks(wav: torch.Tensor, cfg: MelConfig, *, padded: bool):
    """The mel-grid STFT of ``(..., S)`` in blocks of frames (a long clip never holds its whole spectrum)."""
    total = num_stft_frames(wav.shape[-1], cfg, padded=padded)
    for a in range(0, total, MEL_BLOCK_FRAMES):
        yield stft(wav, cfg, padded=padded, frames=(a, min(total, a + MEL_BLOCK_FRAMES)))


def phase_channels(binaural: torch.Tensor, cfg: MelConfig, *, padded: bool = False) -> torch.Tensor:
    """Phase channels of a ``(..., 2, S)`` waveform (channel 0 = left) -> ``(..., 2, num_mels, S // hop)``.
    ``padded``: the waveform carries the mel's context on both sides (as :func:`mel_spectrogram`)."""
    return torch.cat([interaural_coherence(spec[..., 0, :, :], spec[..., 1, :, :], cfg)
                      for spec in _spectrum_blocks(binaural, cfg, padded=padded)], dim=-1)


def mels_and_phase(wav: torch.Tensor, cfg: MelConfig, *, padded: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """ln-mels of every channel of ``(..., C, S)`` (= :func:`mel_spectrogram`) and the phase channels of
    its last two (left, right), from one STFT: ``((..., C, num_mels, F), (..., 2, num_mels, F))``."""
    mels, phases = [], []
    for spec in _spectrum_blocks(wav, cfg, padded=padded):
        mels.append(mel_from_magnitude(spectral_magnitude(spec), cfg))
        phases.append(interaural_coherence(spec[..., -2, :, :], spec[..., -1, :, :], cfg))
    return torch.cat(mels, dim=-1), torch.cat(phases, dim=-1)


@functools.cache
def _ipd_interp(cfg: MelConfig) -> torch.Tensor:
    """(n_freq, M + 1) interpolation matrix from [0 Hz anchor, band centres] to the bins (linear, the last
    segment extrapolated). Cached: read-only."""
    anchors = np.concatenate([[0.0], band_centers(cfg)])
    freqs = bin_frequencies(cfg)
    a = interp_matrix(freqs, anchors)
    above = freqs > anchors[-1]  # continue the last segment's slope
    t = (freqs[above] - anchors[-2]) / (anchors[-1] - anchors[-2])
    a[above] = 0.0
    a[above, -2], a[above, -1] = 1.0 - t, t
    return torch.from_numpy(a).float()


def _wrap(x: torch.Tensor) -> torch.Tensor:
    return torch.remainder(x + torch.pi, 2 * torch.pi) - torch.pi


def band_ipd_to_bins(phase: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Phase channels ``(..., 2, M, T)`` -> per-bin IPD in radians ``(..., n_freq, T)`` (see module doc)."""
    angle = torch.atan2(phase[..., 1, :, :], phase[..., 0, :, :])  # (..., M, T)
    zero = torch.zeros_like(angle[..., :1, :])
    steps = _wrap(torch.diff(torch.cat([zero, angle], dim=-2), dim=-2))  # anchor 0 rad at 0 Hz
    unwrapped = torch.cat([zero, torch.cumsum(steps, dim=-2)], dim=-2)  # (..., M + 1, T)
    return _ipd_interp(cfg).to(phase.device) @ unwrapped


def split_phase(gain_l: torch.Tensor, gain_r: torch.Tensor, ipd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotations ``(α_L, α_R)`` with ``α_L − α_R = ipd`` and ``arg(a_L e^{jα_L} + a_R e^{jα_R}) = 0``."""
    alpha_r = -torch.atan2(gain_l * torch.sin(ipd), gain_l * torch.cos(ipd) + gain_r)
    return alpha_r + ipd, alpha_r


IPD_CONTEXT_FRAMES = 4  # frames of waveform and phase beyond a piece that impose_ipd needs (n_fft 1024 / hop 256)


def impose_ipd(wav: torch.Tensor, phase: torch.Tensor, cfg: MelConfig, *, offset: int = 0, total: int | None = None,
               samples: tuple[int, int] | None = None) -> torch.Tensor:
    """Give a stereo waveform ``(2, S)`` the interaural phase of ``phase`` ``(2, M, S // hop)``; ``(2, S)`` out.

    Each ear keeps its STFT magnitude; the pair keeps the phase of its own sum ``L + R`` and is rotated
    apart by the per-bin IPD with :func:`split_phase`. Used on the vocoder's ears, which are
    synthesised independently and carry no interaural phase of their own.

    Pieces of a long clip: ``wav`` holds samples ``[offset, offset + S)`` of a clip of ``total`` samples
    and ``phase`` the clip's frames ``[offset // hop, ...)`` (``offset`` a multiple of hop); ``samples =
    (s0, s1)`` returns those samples, equal to the whole-clip result when ``wav`` and ``phase`` reach
    :data:`IPD_CONTEXT_FRAMES` frames beyond them (or the clip's ends).
    """
    hop = cfg.hop_size
    total = offset + wav.shape[-1] if total is None else total
    s0, s1 = samples or (offset, offset + wav.shape[-1])
    block = MEL_BLOCK_FRAMES * hop  # in blocks: a long clip never holds its whole spectrum
    return torch.cat([_impose_ipd_span(wav, phase, cfg, offset=offset, total=total, samples=(a, min(s1, a + block)))
                      for a in range(s0, s1, block)], dim=-1)


def _impose_ipd_span(wav: torch.Tensor, phase: torch.Tensor, cfg: MelConfig, *, offset: int, total: int,
                     samples: tuple[int, int]) -> torch.Tensor:
    """:func:`impose_ipd` for one span of samples."""
    hop = cfg.hop_size
    s0, s1 = samples
    k0 = max(0, s0 // hop - 2)
    k1 = min(total // hop, (s1 + hop - 1) // hop + 2, offset // hop + phase.shape[-1])
    spec = stft(wav, cfg, frames=(k0, k1), offset=offset, total=total)  # (2, n_freq, K)
    ipd = band_ipd_to_bins(phase[..., k0 - offset // hop:k1 - offset // hop], cfg)
    mag = spec.abs()
    ref = torch.angle(spec[0] + spec[1])
    alpha_l, alpha_r = split_phase(mag[0], mag[1], ipd)
    out = torch.stack([mag[0] * torch.exp(1j * (ref + alpha_l)), mag[1] * torch.exp(1j * (ref + alpha_r))])
    return istft(out, cfg, length=s1 - s0, frame_offset=k0, start=s0)
