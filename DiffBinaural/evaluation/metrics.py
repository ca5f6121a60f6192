"""Binaural evaluation metrics on ``(2, S)`` waveforms (channel 0 = left), prediction and ground truth at any rates.

Every metric takes a prediction and a ground truth (GT), ``(2, S)`` float arrays at ``sr`` (and
``gt_sr`` for the GT, default ``sr``), and returns a float. :func:`compute_all` computes the whole set
(the JSON keys of ``evaluate.py``, listed in :data:`METRIC_NAMES`) sharing the common work
(resampling, normalisation, STFTs).

Conventions (decided here, relied on by ``evaluate.py`` and the demo report):

* **Rates**: each metric resamples both signals to its own rate first. The literature metrics
  (FAIR-Play ``stft_distance`` / ``env_distance``, PseudoBinaural ``mag_distance`` /
  ``phase_distance`` / ``snr``, CCStereo ``wav_l2``, and ``pesq``) run at 16 kHz (FAIR-Play evaluates
  16 kHz clips); ``mel_distance``, ``mrstft`` and the binaural cues (``ild_error_db``,
  ``itd_error_ms``, ``iacc_error``) at the mel rate (:data:`SR`, 22050 Hz). A signal already at a
  metric's rate is used as is, so 16 kHz pairs are scored exactly as FAIR-Play's own script does.
* **Length mismatch**: after resampling, both signals are trimmed to the shorter one (a vocoder emits
  ``frames * hop`` samples, a few fewer than the GT). No edge trim beyond that. (``evaluate.py``
  refuses pairs whose durations differ by more than a tolerance.)
* **Peak normalisation** (FAIR-Play ``evaluate.py`` with ``--normalization``): each stereo signal is
  divided by its own peak ``|.|`` over both channels, *after* it is loaded at the metric's rate, as
  FAIR-Play loads at 16 kHz and then normalises. Used by every metric **except** ``mel_distance``,
  which is computed on the raw signals so that it is comparable with Stage 1's mel distance (and the
  mel space the vocoder sees). Hence all other metrics are invariant to a global gain of the prediction.
* **Binaural-cue frames**: 1024 samples, hop 512 at 22050 Hz, no padding (a trailing partial frame is
  dropped). Cue errors average over the frames that are *active* in the GT: frame RMS over both
  channels at least ``SILENCE_DB`` (-60 dB) below the GT's peak sample. No active frame -> NaN.
* **Signs**: ``ILD = 10 log10(E_L / E_R)`` dB, positive when the left ear is louder (source on the
  left). ``ITD`` is the lag of the GCC-PHAT peak of ``L * conj(R)``, i.e. ``t_left - t_right`` in ms:
  positive when the left ear hears the sound later (source on the right). So a right channel that is
  delayed and attenuated gives ITD < 0 and ILD > 0. (Both as in the original DiffBinaural code.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import scipy.signal
import torch

from binaural_core.audio import LEFT, RIGHT, resample
from binaural_core.extras import need
from binaural_core.mel import DEFAULT_CONFIG, MelConfig, mel_numpy

SR = 22050
FAIRPLAY_SR = 16000  # FAIR-Play / PseudoBinaural / CCStereo evaluate 16 kHz clips
# FAIR-Play evaluate.py: librosa.stft(n_fft=512, hop_length=160, win_length=400, center=True), Hann.
STFT_N_FFT, STFT_HOP, STFT_WIN = 512, 160, 400
# Binaural cues (original DiffBinaural evaluate_binaural_22050.py).
CUE_FRAME, CUE_HOP = 1024, 512
MAX_LAG_MS = 1.0  # ITD / IACC lag search range: +-1 ms (physiological ITD range)
ILD_BANDS_HZ = ((0.0, 500.0), (500.0, 1000.0), (1000.0, 1500.0), (1500.0, 3000.0), (3000.0, 6000.0), (6000.0, None))
ILD_BAND_WEIGHTS = (0.5, 0.7, 1.0, 1.5, 1.5, 1.3)  # normalised to sum 1 before use
SILENCE_DB = -60.0
MIN_SAMPLES = CUE_FRAME  # shorter clips are refused (STFT padding, mel padding, one cue frame)

METRIC_NAMES = (
    "stft_distance", "env_distance", "mag_distance", "phase_distance", "snr", "wav_l2",
    "mel_distance", "mrstft", "pesq", "ild_error_db", "itd_error_ms", "iacc_error",
)
HIGHER_IS_BETTER = frozenset({"snr", "pesq"})  # every other metric: lower is better


# ----------------------------------------------------------------------------------- preparation
def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate two ``(2, S)`` arrays and trim both to the shorter length; returns float64 copies."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    for name, x in (("pred", pred), ("gt", gt)):
        if x.ndim != 2 or x.shape[0] != 2:
            raise ValueError(f"{name} must be (2, S) with channel 0 = left, got shape {x.shape}")
    n = min(pred.shape[1], gt.shape[1])
    if n < MIN_SAMPLES:
        raise ValueError(f"clips of {n} samples are too short (need at least {MIN_SAMPLES})")
    return pred[:, :n].astype(np.float64), gt[:, :n].astype(np.float64)


def peak_normalize(x: np.ndarray) -> np.ndarray:
    """``(2, S)`` -> ``(2, S)`` divided by its peak ``|.|`` over both channels (FAIR-Play); silence as is."""
    peak = float(np.max(np.abs(x)))
    return x / peak if peak > 0 else x


def _at_rate(pred: np.ndarray, gt: np.ndarray, sr: int, gt_sr: int | None, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Both signals resampled to ``rate`` (soxr, as librosa.load does) and trimmed to the shorter
    length: float64 ``(2, S)`` each, not normalised."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    for name, x in (("pred", pred), ("gt", gt)):
        if x.ndim != 2 or x.shape[0] != 2:
            raise ValueError(f"{name} must be (2, S) with channel 0 = left, got shape {x.shape}")
    p = resample(pred.astype(np.float64), sr, rate)
    g = resample(gt.astype(np.float64), sr if gt_sr is None else gt_sr, rate)
    return _check_pair(p, g)


def fairplay_stft(x: np.ndarray) -> np.ndarray:
    """``(..., S)`` at 16 kHz -> ``(..., 257, frames)`` complex STFT with FAIR-Play's settings.

    n_fft 512, periodic Hann window of 400 centred in the frame, hop 160, ``center=True`` with
    *reflect* padding (librosa < 0.10's default, which FAIR-Play ran with; pinned here).
    """
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    lead = t.shape[:-1]
    spec = torch.stft(
        t.reshape(-1, t.shape[-1]), STFT_N_FFT, hop_length=STFT_HOP, win_length=STFT_WIN,
        window=torch.hann_window(STFT_WIN, dtype=torch.float64), center=True, pad_mode="reflect",
        normalized=False, onesided=True, return_complex=True,
    )
    return spec.reshape(*lead, *spec.shape[-2:]).numpy()


# ------------------------------------------------------------- FAIR-Play / PseudoBinaural kernels
def _stft_distance(sp: np.ndarray, sg: np.ndarray) -> float:
    # FAIR-Play evaluate.py: per channel mean over the stacked [real, imag] entries of the squared
    # difference, i.e. mean over (2, F, T); summed over the two channels.
    d = sp - sg
    per_channel = 0.5 * (np.mean(d.real**2, axis=(-2, -1)) + np.mean(d.imag**2, axis=(-2, -1)))
    return float(np.sum(per_channel))


def _mag_distance(sp: np.ndarray, sg: np.ndarray) -> float:
    # PseudoBinaural evaluate.py "Mag": per channel mean over T-F bins of |S_pred - S_gt|^2, summed.
    return float(np.sum(np.mean(np.abs(sp - sg) ** 2, axis=(-2, -1))))


def _phase_distance(sp: np.ndarray, sg: np.ndarray) -> float:
    # PseudoBinaural "D-phase": STFT of L - R (= S_L - S_R by linearity of the STFT), absolute angle
    # difference wrapped to [0, pi], mean over all bins (no energy mask).
    d = np.abs(np.angle(sp[LEFT] - sp[RIGHT]) - np.angle(sg[LEFT] - sg[RIGHT]))
    d = np.where(d > np.pi, 2 * np.pi - d, d)
    return float(np.mean(d))


def _env_distance(p16: np.ndarray, g16: np.ndarray) -> float:
    # FAIR-Play evaluate.py: Hilbert envelope (scipy, whole clip) per channel, RMSE, summed.
    ep = np.abs(scipy.signal.hilbert(p16, axis=-1))
    eg = np.abs(scipy.signal.hilbert(g16, axis=-1))
    return float(np.sum(np.sqrt(np.mean((ep - eg) ** 2, axis=-1))))


def _snr(p: np.ndarray, g: np.ndarray) -> float:
    # PseudoBinaural evaluate.py: over both channels, with 1e-4 in numerator and denominator.
    return float(10.0 * np.log10((np.mean(g**2) + 1e-4) / (np.mean((p - g) ** 2) + 1e-4)))


def _wav_l2(p: np.ndarray, g: np.ndarray) -> float:
    # CCStereo util/eval.py "WAV": (MSE_L + MSE_R) * 1e3.
    return float(np.sum(np.mean((p - g) ** 2, axis=-1)) * 1e3)


def _pesq(p16: np.ndarray, g16: np.ndarray) -> float:
    # ITU-T P.862.2 wide-band at 16 kHz per channel, mean; NaN where PESQ refuses (e.g. no utterance).
    pesq_lib = need("pesq", "the pesq metric (--no-pesq skips it)")
    try:
        return float(np.mean([pesq_lib.pesq(FAIRPLAY_SR, g16[c], p16[c], "wb") for c in (LEFT, RIGHT)]))
    except pesq_lib.PesqError:
        return math.nan


_MRSTFT = None  # auraloss.freq.MultiResolutionSTFTLoss, built on first use


def _mrstft(p: np.ndarray, g: np.ndarray) -> float:
    # auraloss defaults (fft 1024/2048/512, hop 120/240/50, win 600/1200/240; spectral convergence +
    # log-magnitude L1), computed per channel (spectral convergence normalises over the whole batch,
    # so channels are not batched together), then the mean of L and R.
    global _MRSTFT
    if _MRSTFT is None:
        _MRSTFT = need("auraloss", "the mrstft metric").freq.MultiResolutionSTFTLoss()
    with torch.no_grad():
        vals = [
            float(_MRSTFT(torch.from_numpy(p[c][None, None].astype(np.float32)),
                          torch.from_numpy(g[c][None, None].astype(np.float32))))
            for c in (LEFT, RIGHT)
        ]
    return float(np.mean(vals))


def _mel_distance(pred: np.ndarray, gt: np.ndarray, mel_cfg: MelConfig) -> float:
    # BigVGAN ln-mel (the project's one mel function), per channel RMSE, mean of L and R.
    mp, mg = mel_numpy(pred.astype(np.float32), mel_cfg), mel_numpy(gt.astype(np.float32), mel_cfg)
    diff = mp.astype(np.float64) - mg.astype(np.float64)  # (2, n_mels, T)
    return float(np.mean(np.sqrt(np.mean(diff**2, axis=(-2, -1)))))


# ------------------------------------------------------------------------------ binaural cues
def _frames(x: np.ndarray, frame: int = CUE_FRAME, hop: int = CUE_HOP) -> np.ndarray:
    """``(..., S)`` -> ``(..., F, frame)`` strided view, ``F = 1 + (S - frame) // hop`` (short: zero-padded)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] < frame:
        x = np.concatenate([x, np.zeros((*x.shape[:-1], frame - x.shape[-1]))], axis=-1)
    return np.lib.stride_tricks.sliding_window_view(x, frame, axis=-1)[..., ::hop, :]


def frame_times(num_frames: int, sr: int = SR, frame: int = CUE_FRAME, hop: int = CUE_HOP) -> np.ndarray:
    """``(num_frames,)`` centre time in seconds of each cue frame (for plotting the series)."""
    return (np.arange(num_frames) * hop + frame / 2) / sr


def _hann(n: int) -> np.ndarray:
    return scipy.signal.get_window("hann", n)  # periodic Hann


def ild_series(x: np.ndarray, sr: int = SR, frame: int = CUE_FRAME, hop: int = CUE_HOP) -> np.ndarray:
    """``(2, S)`` -> ``(F,)`` frame ILD in dB, ``10 log10(E_L / E_R)`` (positive = left louder).

    Hann frames, rfft power summed in the bands of :data:`ILD_BANDS_HZ` (``[lo, hi)``, last band up to
    ``sr / 2``); band ILD ``10 log10((E_L + 1e-10) / (E_R + 1e-10))``; frame ILD = the weighted sum with
    :data:`ILD_BAND_WEIGHTS` normalised to 1 (bands empty at this ``sr`` are dropped).
    """
    power = np.abs(np.fft.rfft(_frames(x, frame, hop) * _hann(frame), axis=-1)) ** 2  # (2, F, K)
    freqs = np.fft.rfftfreq(frame, 1.0 / sr)
    masks, weights = [], []
    for (lo, hi), w in zip(ILD_BANDS_HZ, ILD_BAND_WEIGHTS):
        m = (freqs >= lo) & (freqs < (sr / 2 if hi is None else hi))
        if m.any():
            masks.append(m)
            weights.append(w)
    band = power @ np.stack(masks, axis=1).astype(np.float64)  # (2, F, B)
    ild = 10.0 * np.log10((band[LEFT] + 1e-10) / (band[RIGHT] + 1e-10))  # (F, B)
    w = np.asarray(weights) / np.sum(weights)
    return ild @ w


def _lag_window(cc: np.ndarray, max_lag: int) -> np.ndarray:
    """Circular correlation ``(F, N)`` -> ``(F, 2 max_lag + 1)`` for lags ``-max_lag .. max_lag``."""
    return np.concatenate([cc[:, cc.shape[1] - max_lag:], cc[:, : max_lag + 1]], axis=1)


def itd_series(x: np.ndarray, sr: int = SR, frame: int = CUE_FRAME, hop: int = CUE_HOP) -> np.ndarray:
    """``(2, S)`` -> ``(F,)`` frame ITD in ms by GCC-PHAT (Knapp & Carter 1976).

    Hann frames, FFT length ``2 * frame`` (linear, not circular, correlation), cross spectrum
    ``L conj(R) / (|L conj(R)| + 1e-10)``; its inverse FFT ``c[k] = sum_n l[n + k] r[n]`` peaks at
    ``k = t_left - t_right``. Peak searched within +-1 ms, refined by a three-point parabola (offset
    clipped to +-0.5 sample). Positive = left ear later (source on the right).
    """
    n_fft = 2 * frame
    spec = np.fft.rfft(_frames(x, frame, hop) * _hann(frame), n=n_fft, axis=-1)  # (2, F, n_fft/2+1)
    cross = spec[LEFT] * np.conj(spec[RIGHT])
    cross /= np.abs(cross) + 1e-10  # PHAT weighting
    max_lag = max(1, int(MAX_LAG_MS * 1e-3 * sr))
    cc = _lag_window(np.fft.irfft(cross, n=n_fft, axis=-1), max_lag)  # (F, 2 max_lag + 1)
    peak = np.argmax(cc, axis=1)
    mid = np.clip(peak, 1, cc.shape[1] - 2)[:, None]
    y0, y1, y2 = (np.take_along_axis(cc, mid + d, axis=1)[:, 0] for d in (-1, 0, 1))
    denom = y0 - 2.0 * y1 + y2
    safe = np.abs(denom) > 1e-12
    offset = np.where(safe, 0.5 * (y0 - y2) / np.where(safe, denom, 1.0), 0.0)
    offset = np.where((peak > 0) & (peak < cc.shape[1] - 1), np.clip(offset, -0.5, 0.5), 0.0)
    return (peak - max_lag + offset) / sr * 1e3


def iacc_series(x: np.ndarray, sr: int = SR, frame: int = CUE_FRAME, hop: int = CUE_HOP) -> np.ndarray:
    """``(2, S)`` -> ``(F,)`` interaural cross-correlation coefficient in [0, 1].

    Rectangular frames (as the original code); ``max |xcorr(L, R)|`` over lags within +-1 ms divided by
    ``sqrt(E_L E_R) + 1e-10`` (the lag-0 autocorrelations), clipped to [0, 1].
    """
    fr = _frames(x, frame, hop)  # (2, F, frame)
    spec = np.fft.rfft(fr, n=2 * frame, axis=-1)
    cc = np.fft.irfft(spec[LEFT] * np.conj(spec[RIGHT]), n=2 * frame, axis=-1)
    max_lag = max(1, int(MAX_LAG_MS * 1e-3 * sr))
    num = np.max(np.abs(_lag_window(cc, max_lag)), axis=1)
    energy = np.sum(fr**2, axis=-1)  # (2, F)
    return np.clip(num / (np.sqrt(energy[LEFT] * energy[RIGHT]) + 1e-10), 0.0, 1.0)


def active_frames(gt: np.ndarray, frame: int = CUE_FRAME, hop: int = CUE_HOP,
                  threshold_db: float = SILENCE_DB) -> np.ndarray:
    """``(2, S)`` -> ``(F,)`` bool: frame RMS (both channels) >= ``threshold_db`` relative to the peak sample."""
    ms = np.mean(_frames(gt, frame, hop) ** 2, axis=(0, 2))
    peak = float(np.max(np.abs(gt)))
    return ms >= peak**2 * 10.0 ** (threshold_db / 10.0) if peak > 0 else np.zeros(ms.shape, dtype=bool)


def _cue_error(series_pred: np.ndarray, series_gt: np.ndarray, active: np.ndarray) -> float:
    if not active.any():
        return math.nan
    return float(np.mean(np.abs(series_pred[active] - series_gt[active])))


# ---------------------------------------------------------------------------- public per-metric
def stft_distance(pred: np.ndarray, gt: np.ndarray, *, sr: int = SR, gt_sr: int | None = None) -> float:
    """FAIR-Play STFT distance (16 kHz, peak-normalised, 512/400/160), summed over channels."""
    p, g = _fairplay_pair(pred, gt, sr, gt_sr)
    return _stft_distance(fairplay_stft(p), fairplay_stft(g))


def env_distance(pred: np.ndarray, gt: np.ndarray, *, sr: int = SR, gt_sr: int | None = None) -> float:
    """FAIR-Play envelope distance (Hilbert envelope RMSE per channel at 16 kHz), summed over channels."""
    return _env_distance(*_fairplay_pair(pred, gt, sr, gt_sr))


def mag_distance(pred: np.ndarray, gt: np.ndarray, *, sr: int = SR, gt_sr: int | None = None) -> float:
    """PseudoBinaural Mag distance (mean |dS|^2 per channel, summed); equals 2 x ``stft_distance``."""
    p, g = _fairplay_pair(pred, gt, sr, gt_sr)
    return _mag_distance(fairplay_stft(p), fairplay_stft(g))


def phase_distance(pred: np.ndarray, gt: np.ndarray, *, sr: int = SR, gt_sr: int | None = None) -> float:
    """PseudoBinaural D-phase: mean wrapped angle difference (rad) of the L - R STFTs."""
    p, g = _fairplay_pair(pred, gt, sr, gt_sr)
    return _phase_distance(fairplay_stft(p), fairplay_stft(g))


def snr(pred: np.ndarray, gt: np.ndarray, *, sr: int = SR, gt_sr: int | None = None) -> float:
    """PseudoBinaural SNR in dB over both channels (16 kHz, peak-normalised)."""
    return _snr(*_fairplay_pair(pred, gt, sr, gt_sr))


def wav_l2(pred: np.ndarray, gt: np.ndarray, *, sr: int = SR, gt_sr: int | None = None) -> float:
    """CCStereo WAV: ``(MSE_L + MSE_R) * 1e3`` on peak-normalised 16 kHz clips."""
    return _wav_l2(*_fairplay_pair(pred, gt, sr, gt_sr))


def pesq(pred: np.ndarray, gt: np.ndarray, *, sr: int = SR, gt_sr: int | None = None) -> float:
    """Wide-band PESQ at 16 kHz, mean of the two channels; NaN where PESQ raises."""
    return _pesq(*_fairplay_pair(pred, gt, sr, gt_sr))


def mrstft(pred: np.ndarray, gt: np.ndarray, *, sr: int = SR, gt_sr: int | None = None) -> float:
    """auraloss multi-resolution STFT loss (defaults) per channel at 22050 Hz, mean of L and R."""
    p, g = _at_rate(pred, gt, sr, gt_sr, SR)
    return _mrstft(peak_normalize(p), peak_normalize(g))


def mel_distance(pred: np.ndarray, gt: np.ndarray, *, sr: int = SR, gt_sr: int | None = None,
                 mel_cfg: MelConfig | None = None) -> float:
    """RMSE between BigVGAN ln-mels of the *raw* signals at the mel rate, per channel, mean of L and R."""
    cfg = _mel_cfg(mel_cfg)
    return _mel_distance(*_at_rate(pred, gt, sr, gt_sr, cfg.sampling_rate), cfg)


def ild_error_db(pred: np.ndarray, gt: np.ndarray, *, sr: int = SR, gt_sr: int | None = None) -> float:
    """Mean |ILD_pred - ILD_gt| in dB over the GT's active frames (22050 Hz)."""
    p, g = (peak_normalize(x) for x in _at_rate(pred, gt, sr, gt_sr, SR))
    return _cue_error(ild_series(p, SR), ild_series(g, SR), active_frames(g))


def itd_error_ms(pred: np.ndarray, gt: np.ndarray, *, sr: int = SR, gt_sr: int | None = None) -> float:
    """Mean |ITD_pred - ITD_gt| in ms (GCC-PHAT) over the GT's active frames (22050 Hz)."""
    p, g = (peak_normalize(x) for x in _at_rate(pred, gt, sr, gt_sr, SR))
    return _cue_error(itd_series(p, SR), itd_series(g, SR), active_frames(g))


def iacc_error(pred: np.ndarray, gt: np.ndarray, *, sr: int = SR, gt_sr: int | None = None) -> float:
    """Mean |IACC_pred - IACC_gt| over the GT's active frames (22050 Hz)."""
    p, g = (peak_normalize(x) for x in _at_rate(pred, gt, sr, gt_sr, SR))
    return _cue_error(iacc_series(p, SR), iacc_series(g, SR), active_frames(g))


def _fairplay_pair(pred: np.ndarray, gt: np.ndarray, sr: int, gt_sr: int | None) -> tuple[np.ndarray, np.ndarray]:
    # FAIR-Play's order: load at 16 kHz, then divide each signal by its own peak
    p, g = _at_rate(pred, gt, sr, gt_sr, FAIRPLAY_SR)
    return peak_normalize(p), peak_normalize(g)


def _mel_cfg(mel_cfg: MelConfig | None) -> MelConfig:
    cfg = MelConfig.from_json(DEFAULT_CONFIG) if mel_cfg is None else mel_cfg
    if cfg.sampling_rate != SR:
        raise ValueError(f"mel config is for {cfg.sampling_rate} Hz; the metrics' mel rate is {SR} Hz")
    return cfg


# ---------------------------------------------------------------------------------- all at once
def compute_all(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    sr: int = SR,
    gt_sr: int | None = None,
    mel_cfg: MelConfig | None = None,
    metrics: Iterable[str] | None = None,
) -> dict[str, float]:
    """Every metric of :data:`METRIC_NAMES` (or the subset ``metrics``) for one clip.

    Args:
        pred, gt: ``(2, S_pred)`` and ``(2, S_gt)`` float waveforms, channel 0 = left; resampled to each
            metric's rate and trimmed to the shorter length there.
        sr, gt_sr: their sample rates (``gt_sr`` default: ``sr``).
        mel_cfg: mel parameters for ``mel_distance`` (default: the vocoder's default config).
        metrics: names to compute, default all.

    Returns:
        ``{name: value}`` in :data:`METRIC_NAMES` order (NaN where undefined, e.g. no PESQ utterance).
    """
    wanted = list(METRIC_NAMES) if metrics is None else list(metrics)
    unknown = sorted(set(wanted) - set(METRIC_NAMES))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRIC_NAMES)}")
    out: dict[str, float] = {}

    fairplay = {"stft_distance", "env_distance", "mag_distance", "phase_distance", "snr", "wav_l2", "pesq"}
    if fairplay & set(wanted):
        p16, g16 = _fairplay_pair(pred, gt, sr, gt_sr)
        if {"stft_distance", "mag_distance", "phase_distance"} & set(wanted):
            sp, sg = fairplay_stft(p16), fairplay_stft(g16)
        kernels16 = {
            "stft_distance": lambda: _stft_distance(sp, sg),
            "env_distance": lambda: _env_distance(p16, g16),
            "mag_distance": lambda: _mag_distance(sp, sg),
            "phase_distance": lambda: _phase_distance(sp, sg),
            "snr": lambda: _snr(p16, g16),
            "wav_l2": lambda: _wav_l2(p16, g16),
            "pesq": lambda: _pesq(p16, g16),
        }
        out.update({k: fn() for k, fn in kernels16.items() if k in wanted})
    cues = {"ild_error_db": ild_series, "itd_error_ms": itd_series, "iacc_error": iacc_series}
    if {"mel_distance", "mrstft", *cues} & set(wanted):
        p_raw, g_raw = _at_rate(pred, gt, sr, gt_sr, SR)
        p, g = peak_normalize(p_raw), peak_normalize(g_raw)
        if "mel_distance" in wanted:
            out["mel_distance"] = _mel_distance(p_raw, g_raw, _mel_cfg(mel_cfg))
        if "mrstft" in wanted:
            out["mrstft"] = _mrstft(p, g)
        if set(cues) & set(wanted):
            active = active_frames(g)
            for key, series in cues.items():
                if key in wanted:
                    out[key] = _cue_error(series(p, SR), series(g, SR), active)
    return {k: out[k] for k in METRIC_NAMES if k in out}
