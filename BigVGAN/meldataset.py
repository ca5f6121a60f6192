"""The project's one mel space, shared by both stages.

Everything that computes, normalises or checks a mel spectrogram goes through this module: the
Stage 1 datasets, the diffusion targets, the vocoder's inputs and losses, evaluation and inference.

The transform is BigVGAN's (``bigvgan.meldataset.mel_spectrogram``), for which NVIDIA's pretrained
vocoders were trained:

1. reflect-pad the waveform by ``(n_fft - hop) / 2`` on both sides, STFT with ``center=False`` and a
   periodic Hann window of ``win_size``;
2. magnitude ``sqrt(re^2 + im^2 + 1e-9)``;
3. Slaney-scale, Slaney-normalised mel filterbank from librosa (``fmax = None`` → ``sr / 2``);
4. natural log of ``clamp(mel, 1e-5)``.

A waveform of ``S`` samples gives ``S // hop`` frames; frame ``k`` is centred on the sample block
``[k * hop, (k + 1) * hop)`` that the vocoder generates for it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields

import librosa
import numpy as np
import torch

from BigVGAN.audio import BadInputError

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
DEFAULT_CONFIG = os.path.join(CONFIG_DIR, "bigvgan_binaural_22khz_80band_256x.json")

LOG_CLAMP = 1e-5  # floor of the mel before the log: ln(1e-5) ≈ -11.51
# Stage 1 maps ln-mels from this window linearly to [-1, 1] (the original DiffBinaural's clamp window).
NORM_MIN = -12.0
NORM_MAX = 2.5


@dataclass(frozen=True)
class MelConfig:
    """Mel parameters. Built from a vocoder JSON config with :meth:`from_json` / :meth:`from_dict`."""

    sampling_rate: int = 22050
    n_fft: int = 1024
    num_mels: int = 80
    hop_size: int = 256
    win_size: int = 1024
    fmin: float = 0.0
    fmax: float | None = None  # None = sampling_rate / 2, as in librosa and BigVGAN v2

    @classmethod
    def from_dict(cls, h: dict, *, source: str = "config") -> MelConfig:
        """Take the mel keys out of a (larger) BigVGAN config dict; every key is required."""
        missing = [f.name for f in fields(cls) if f.name not in h]
        if missing:
            raise BadInputError(source, f"missing mel key(s): {', '.join(missing)}")
        return cls(**{f.name: h[f.name] for f in fields(cls)})

    @classmethod
    def from_json(cls, path: str | os.PathLike = DEFAULT_CONFIG) -> MelConfig:
        return cls.from_dict(read_json(path), source=os.fspath(path))

    def to_dict(self) -> dict:
        return asdict(self)

    def mismatch(self, other: dict) -> str | None:
        """Name the first parameter on which a saved dict (e.g. a mel dir's meta.json) differs, or None."""
        for key, value in self.to_dict().items():
            if key not in other:
                return f"{key} is missing (expected {value!r})"
            theirs = other[key]
            equal = (value is None and theirs is None) or (
                value is not None and theirs is not None and float(value) == float(theirs)
            )
            if not equal:
                return f"{key} is {theirs!r}, the vocoder config says {value!r}"
        return None

    @property
    def frames_per_second(self) -> float:
        return self.sampling_rate / self.hop_size


def read_json(path: str | os.PathLike) -> dict:
    """Load a JSON object; a missing or malformed file is one :class:`BadInputError` line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadInputError(path, "file not found")
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise BadInputError(path, f"invalid JSON ({err})") from None
    if not isinstance(data, dict):
        raise BadInputError(path, "expected a JSON object at the top level")
    return data


_FILTERBANK_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _filterbank_and_window(cfg: MelConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    key = (cfg, str(device))  # keyed by every parameter and the device
    if key not in _FILTERBANK_CACHE:
        basis = librosa.filters.mel(
            sr=cfg.sampling_rate, n_fft=cfg.n_fft, n_mels=cfg.num_mels, fmin=cfg.fmin, fmax=cfg.fmax
        )  # (n_mels, n_fft // 2 + 1), Slaney scale and norm (librosa defaults)
        _FILTERBANK_CACHE[key] = (
            torch.from_numpy(basis).float().to(device),
            torch.hann_window(cfg.win_size, device=device),
        )
    return _FILTERBANK_CACHE[key]


def mel_spectrogram(wav: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Natural-log mel of a waveform.

    Args:
        wav: ``(S,)``, ``(B, S)`` or ``(B, C, S)`` float audio in [-1, 1]; leading dims are kept.
        cfg: the mel parameters.

    Returns:
        ``(..., num_mels, S // hop_size)`` float32 ln-mel.
    """
    lead = wav.shape[:-1]
    x = wav.reshape(-1, wav.shape[-1]).float()  # (B', S): reflect padding only takes 2-D/3-D input
    pad = (cfg.n_fft - cfg.hop_size) // 2
    if x.shape[-1] <= pad:
        raise ValueError(f"waveform of {x.shape[-1]} samples is too short for a {cfg.n_fft}-point mel")
    basis, window = _filterbank_and_window(cfg, x.device)
    x = torch.nn.functional.pad(x.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    spec = torch.stft(
        x, cfg.n_fft, hop_length=cfg.hop_size, win_length=cfg.win_size, window=window,
        center=False, normalized=False, onesided=True, return_complex=True,
    )  # (B', n_fft // 2 + 1, frames)
    mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
    mel = torch.log(torch.clamp(basis @ mag, min=LOG_CLAMP))
    return mel.reshape(*lead, cfg.num_mels, mel.shape[-1])


def mel_numpy(wav: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """:func:`mel_spectrogram` for numpy input and output (float32)."""
    with torch.no_grad():
        return mel_spectrogram(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), cfg).numpy()


def num_frames(num_samples: int, cfg: MelConfig) -> int:
    """Mel frames of a waveform of ``num_samples`` samples (``S // hop``)."""
    return num_samples // cfg.hop_size


def normalize_mel(log_mel: torch.Tensor) -> torch.Tensor:
    """ln-mel → [-1, 1]: clamp to [NORM_MIN, NORM_MAX], then map that window linearly."""
    x = torch.clamp(log_mel, NORM_MIN, NORM_MAX)
    return 2.0 * (x - NORM_MIN) / (NORM_MAX - NORM_MIN) - 1.0


def denormalize_mel(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_mel` on [-1, 1] (values outside are clamped first)."""
    x = torch.clamp(x, -1.0, 1.0)
    return (x + 1.0) * 0.5 * (NORM_MAX - NORM_MIN) + NORM_MIN
