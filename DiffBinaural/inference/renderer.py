"""The mono renderer: phase-true binaural audio from the mono waveform and Stage 1's mels (no vocoder).

Every strong mono→binaural system keeps the mono's own waveform and phase and only *modifies* it per
time–frequency bin (Mono2Binaural / CCStereo: a complex mask on the mono STFT). This renderer does the
same with what Stage 1 predicts, on the mel space's own STFT grid (frame ``k`` = mel frame ``k``,
:func:`binaural_core.mel.stft`):

1. **Gains** ``a_L, a_R`` per bin, relative to the mono: the predicted ln-mels minus the mono's ln-mel
   are log magnitude ratios per band; they are mapped from bands to bins *in the log domain* by linear
   interpolation between band centres (:func:`binaural_core.mel.bands_to_bins`; the normalised
   transposed Slaney filterbank is the same map to within the 4 % height difference of neighbouring
   filters, and measured the same to three decimals, so it is not offered), clamped to
   [:data:`MIN_GAIN_DB`, :data:`MAX_GAIN_DB`] so that a band where the mono is near silence cannot be
   amplified into noise, and exponentiated.
2. **Interaural phase** ``Δ`` per bin from the predicted phase channels
   (:func:`binaural_core.interaural.band_ipd_to_bins`), or 0 when the model predicts none.
3. **Left/right spectra**, by one of :data:`MODES`:

   * ``"free"`` (default): ``L̂ = a_L M e^{jα_L}``, ``R̂ = a_R M e^{jα_R}`` with the phase split of
     :func:`binaural_core.interaural.split_phase` (``α_L − α_R = Δ``, the pair keeps the mono's phase).
     Each ear has its predicted level; ``L̂ + R̂ = 2M`` only holds where the prediction is exact.
   * ``"sum"``: ``L̂ + R̂ = 2M`` enforced: with ``z = (a_L / a_R) e^{jΔ}`` (only the predicted ILD and
     IPD are used), ``L̂ = 2M z / (1 + z)`` and ``R̂ = 2M / (1 + z)``, both gains bounded by
     :data:`MAX_GAIN_DB` where ``1 + z`` nearly cancels.
   * ``"symmetric"``: as ``"free"`` with the naive split ``α_L = −α_R = Δ / 2``.

   For a mono down-mix ``M = (L + R) / 2``, per-bin ideal gains and IPDs make ``"free"`` and ``"sum"``
   reproduce ``L`` and ``R`` exactly (tested); they differ in how prediction errors show.
4. **Waveform** by least-squares overlap-add (:func:`binaural_core.mel.istft`), cut to the mono's length.

Which mode is better was measured on the synthetic test split (``README.md``, "Mono
renderer and interaural phase"); the default is the winner.
"""

from __future__ import annotations

import math

import torch

from binaural_core.audio import LEFT, RIGHT
from binaural_core.interaural import band_ipd_to_bins, split_phase
from binaural_core.mel import (
    MelConfig,
    bands_to_bins,
    istft,
    mel_from_magnitude,
    num_stft_frames,
    spectral_magnitude,
    stft,
)

MODES = ("free", "sum", "symmetric")
MAX_GAIN_DB = 9.0  # a coherent ear is at most 2x (6 dB) the down-mix; 3 dB more for reverb and several sources
MIN_GAIN_DB = -40.0
CONTEXT_FRAMES = 4  # frames on each side that a piece of output needs (istft reaches 2 back, 1 ahead)


def _clamped_gain(log_ratio_bands: torch.Tensor, mapping: torch.Tensor) -> torch.Tensor:
    lo, hi = MIN_GAIN_DB * math.log(10) / 20, MAX_GAIN_DB * math.log(10) / 20
    return torch.exp(torch.clamp(mapping.to(log_ratio_bands.device) @ log_ratio_bands, lo, hi))


def render_spectra(mono_spec: torch.Tensor, gain_l: torch.Tensor, gain_r: torch.Tensor, ipd: torch.Tensor,
                   *, mode: str = "free", max_gain_db: float | None = None) -> torch.Tensor:
    """Left/right spectra ``(2, n_freq, T)`` from the mono's ``(n_freq, T)`` and per-bin gains and IPD;
    ``max_gain_db`` bounds the complex gains of ``"sum"`` (None: exact)."""
    if mode == "sum":
        z = (gain_l / gain_r) * torch.exp(1j * ipd)
        g_l, g_r = 2 * z / (1 + z), 2 / (1 + z)
        if max_gain_db is not None:
            bound = 10 ** (max_gain_db / 20)
            scale = torch.clamp(bound / torch.maximum(g_l.abs(), g_r.abs()).clamp_min(1e-12), max=1.0)
            g_l, g_r = g_l * scale, g_r * scale
        return torch.stack([mono_spec * g_l, mono_spec * g_r])
    if mode == "free":
        alpha_l, alpha_r = split_phase(gain_l, gain_r, ipd)
    elif mode == "symmetric":
        half = torch.remainder(ipd + torch.pi, 2 * torch.pi) / 2 - torch.pi / 2  # wrapped IPD / 2
        alpha_l, alpha_r = half, -half
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return torch.stack([mono_spec * gain_l * torch.exp(1j * alpha_l), mono_spec * gain_r * torch.exp(1j * alpha_r)])


@torch.no_grad()
def render(mono: torch.Tensor, mels: torch.Tensor, cfg: MelConfig, *, phase: torch.Tensor | None = None,
           mode: str = "free", mel_offset: int = 0,
           samples: tuple[int, int] | None = None) -> torch.Tensor:
    """Binaural waveform from the mono waveform and Stage 1's output.

    Args:
        mono: ``(S,)`` the whole mono clip at ``cfg.sampling_rate``.
        mels: ``(2, M, K)`` predicted ln-mels (channel 0 = left) of mel frames ``[mel_offset, mel_offset + K)``.
        phase: ``(2, M, K)`` predicted phase channels of the same frames, or None (IPD 0).
        samples: ``(s0, s1)``: render only these samples (a piece of a long clip); the mels must then
            cover the frames that touch them plus :data:`CONTEXT_FRAMES` (clamped to the clip), and the
            result equals the whole-clip render's samples. Default: the whole clip, ``mels`` with every frame.

    Returns:
        ``(2, s1 - s0)`` float32 waveform (default ``(2, S)``), channel 0 = left.
    """
    k = mels.shape[-1]
    s0, s1 = samples or (0, mono.shape[-1])
    available = num_stft_frames(mono.shape[-1], cfg)
    if mel_offset + k > available:
        raise ValueError(f"mel frames [{mel_offset}, {mel_offset + k}) run past the mono's {available} frames")
    spec = stft(mono, cfg, frames=(mel_offset, mel_offset + k))  # (n_freq, K)
    mono_mel = mel_from_magnitude(spectral_magnitude(spec), cfg)  # (M, K): Stage 1's input mel
    mapping = bands_to_bins(cfg)
    gain_l = _clamped_gain(mels[LEFT].to(spec.device).float() - mono_mel, mapping)
    gain_r = _clamped_gain(mels[RIGHT].to(spec.device).float() - mono_mel, mapping)
    ipd = torch.zeros_like(gain_l) if phase is None else band_ipd_to_bins(phase.to(spec.device).float(), cfg)
    out = render_spectra(spec, gain_l, gain_r, ipd, mode=mode, max_gain_db=MAX_GAIN_DB)
    return istft(out, cfg, length=s1 - s0, frame_offset=mel_offset, start=s0)
