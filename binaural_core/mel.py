"""The project's one mel space, shared by both stages.

Everything that computes or checks a mel spectrogram goes through this module: the Stage 1 datasets,
the diffusion targets, the vocoder's inputs and losses, evaluation, the renderer and inference; with
the STFT on the mel's own frame grid (:func:`stft` / :func:`istft`) and the band <-> bin maps.
(Stage 1's normalisation of ln-mels to [-1, 1] is Stage 1's own: :mod:`DiffBinaural.model`.)

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

import functools
import json
import os
from dataclasses import asdict, dataclass, fields

import librosa
import numpy as np
import torch

from binaural_core.audio import BadInputError

# The mel parameters are read from the vocoder's JSON config (NVIDIA's format), which lives with the
# vocoder; this is a file path, not an import.
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "BigVGAN", "configs")
DEFAULT_CONFIG = os.path.join(CONFIG_DIR, "bigvgan_binaural_22khz_80band_256x.json")

LOG_CLAMP = 1e-5  # floor of the mel before the log: ln(1e-5) ≈ -11.51


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


MEL_BLOCK_FRAMES = 512  # frames per STFT block in mel_spectrogram (~2 MB of spectrum per channel)


def _context(cfg: MelConfig) -> int:
    """Samples of context that frame 0 reaches before sample 0 (BigVGAN's ``(n_fft - hop) / 2`` pad)."""
    return (cfg.n_fft - cfg.hop_size) // 2


def _num_frames_padded(num_samples: int, cfg: MelConfig, pad: int) -> int:
    return max((num_samples + 2 * pad - cfg.n_fft) // cfg.hop_size + 1, 1)


def _stft_block(x: torch.Tensor, cfg: MelConfig, a: int, b: int, pad: int, offset: int = 0,
                total: int | None = None) -> torch.Tensor:
    """Complex STFT frames ``[a, b)`` of a signal with the mel framing: frame ``k`` sees samples
    ``[k * hop - pad, k * hop - pad + n_fft)``, reflected only where that leaves the signal.

    ``x`` (B', n) holds samples ``[offset, offset + n)`` of a signal of ``total`` samples (default: all
    of it); the frames must then fall inside ``x`` except where they reach the signal's own ends.
    Returns (B', n_fft // 2 + 1, b - a) complex64.
    """
    _, window = _filterbank_and_window(cfg, x.device)
    total = offset + x.shape[-1] if total is None else total
    lo = a * cfg.hop_size - pad - offset  # in x's samples
    hi = (b - 1) * cfg.hop_size + cfg.n_fft - pad - offset
    if (lo < 0 < offset) or (hi > x.shape[-1] and offset + x.shape[-1] < total):
        raise ValueError(f"samples [{offset}, {offset + x.shape[-1]}) do not cover STFT frames [{a}, {b})")
    seg = x[:, max(lo, 0):min(hi, x.shape[-1])]
    if lo < 0 or hi > x.shape[-1]:
        seg = torch.nn.functional.pad(seg.unsqueeze(1), (max(-lo, 0), max(hi - x.shape[-1], 0)),
                                      mode="reflect").squeeze(1)  # reflect pad takes 2-D/3-D input
    return torch.stft(seg, cfg.n_fft, hop_length=cfg.hop_size, win_length=cfg.win_size, window=window,
                      center=False, normalized=False, onesided=True, return_complex=True)


def mel_from_magnitude(mag: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """ln-mel ``(..., num_mels, F)`` of STFT magnitudes ``(..., n_fft // 2 + 1, F)`` (steps 3-4 above)."""
    basis, _ = _filterbank_and_window(cfg, mag.device)
    return torch.log(torch.clamp(basis @ mag, min=LOG_CLAMP))


def spectral_magnitude(spec: torch.Tensor) -> torch.Tensor:
    """BigVGAN's magnitude ``sqrt(re^2 + im^2 + 1e-9)`` of a complex STFT (step 2 above)."""
    return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)


def mel_spectrogram(wav: torch.Tensor, cfg: MelConfig, *, padded: bool = False) -> torch.Tensor:
    """Natural-log mel of a waveform.

    Args:
        wav: ``(S,)``, ``(B, S)`` or ``(B, C, S)`` float audio in [-1, 1]; leading dims are kept.
        cfg: the mel parameters.
        padded: the caller already added the ``(n_fft - hop) / 2`` samples of context on both sides
            (e.g. the neighbouring samples of a crop of a longer file), so no reflection is added and
            the result equals those frames of the whole file's mel.

    Returns:
        ``(..., num_mels, S // hop_size)`` float32 ln-mel (S without the context when ``padded``).
    """
    lead = wav.shape[:-1]
    x = wav.reshape(-1, wav.shape[-1]).float()  # (B', S)
    pad = 0 if padded else _context(cfg)
    if wav.shape[-1] <= _context(cfg):
        raise ValueError(f"waveform of {wav.shape[-1]} samples is too short for a {cfg.n_fft}-point mel")
    # A long input is transformed in blocks of frames, each cut from x and reflect-padded only where it
    # touches the ends: the same values as one pass, with memory bounded by one block instead of the
    # input length (a 5-minute stereo clip would otherwise hold ~1 GB of spectrum and a padded copy).
    frames = _num_frames_padded(x.shape[-1], cfg, pad)
    out = None
    for a in range(0, frames, MEL_BLOCK_FRAMES):
        b = min(frames, a + MEL_BLOCK_FRAMES)
        block = mel_from_magnitude(spectral_magnitude(_stft_block(x, cfg, a, b, pad)), cfg)
        if a == 0 and b == frames:
            out = block
        else:
            out = x.new_empty(x.shape[0], cfg.num_mels, frames) if out is None else out
            out[..., a:b] = block
    mel = out
    return mel.reshape(*lead, cfg.num_mels, mel.shape[-1])


def stft(wav: torch.Tensor, cfg: MelConfig, *, padded: bool = False, frames: tuple[int, int] | None = None,
         offset: int = 0, total: int | None = None) -> torch.Tensor:
    """Complex STFT on the mel's frame grid: frame ``k`` is mel frame ``k`` (same window, hop, padding).

    Args:
        wav: ``(..., S)`` float audio.
        padded: as in :func:`mel_spectrogram` (the context is already there).
        frames: ``(a, b)``: only frames ``[a, b)`` of the whole signal (a piece of a long clip; the
            values equal those frames of the whole-signal STFT).
        offset, total: ``wav`` holds only samples ``[offset, offset + S)`` of a signal of ``total``
            samples (it must cover the frames asked for, except at the signal's own ends).

    Returns:
        ``(..., n_fft // 2 + 1, F)`` complex64, ``F = S // hop`` (or ``b - a``).
    """
    lead = wav.shape[:-1]
    x = wav.reshape(-1, wav.shape[-1]).float()
    pad = 0 if padded else _context(cfg)
    total = offset + x.shape[-1] if total is None else total
    a, b = frames or (0, _num_frames_padded(total, cfg, pad))
    spec = _stft_block(x, cfg, a, b, pad, offset, total)
    return spec.reshape(*lead, *spec.shape[-2:])


def num_stft_frames(num_samples: int, cfg: MelConfig, *, padded: bool = False) -> int:
    """Frames of :func:`stft` / :func:`mel_spectrogram` for ``num_samples`` samples (``S // hop``)."""
    return _num_frames_padded(num_samples, cfg, 0 if padded else _context(cfg))


def istft(spec: torch.Tensor, cfg: MelConfig, *, length: int, frame_offset: int = 0, start: int = 0) -> torch.Tensor:
    """Inverse of :func:`stft` by least-squares overlap-add (Griffin & Lim 1984, eq. 6):
    ``y[n] = sum_k w[n - t_k] y_k[n - t_k] / sum_k w[n - t_k]^2`` with ``t_k = k * hop - pad``.

    Args:
        spec: ``(..., n_fft // 2 + 1, K)`` complex frames ``[frame_offset, frame_offset + K)`` of a signal.
        length, start: the samples ``[start, start + length)`` of that signal to return. Every frame that
            touches them must be in ``spec`` (for the default 1024/256 framing, frames ``start // hop - 2``
            to ``(start + length - 1) // hop + 2``, clamped to the signal): the result is then exactly the
            whole-signal inverse, so long clips can be synthesised piece by piece.

    Returns:
        ``(..., length)`` float32 waveform; ``istft(stft(x), length=len(x))`` equals ``x`` to float precision.
    """
    _, window = _filterbank_and_window(cfg, spec.device)
    lead, k = spec.shape[:-2], spec.shape[-1]
    hop, n_fft, pad = cfg.hop_size, cfg.n_fft, _context(cfg)
    # the analysis window as torch.stft applies it: win_size samples centred in the n_fft frame
    w = torch.zeros(n_fft, device=spec.device)
    left = (n_fft - cfg.win_size) // 2
    w[left:left + cfg.win_size] = window
    frames = torch.fft.irfft(spec.reshape(-1, *spec.shape[-2:]), n=n_fft, dim=-2) * w[:, None]  # (B', n_fft, K)
    span = (k - 1) * hop + n_fft
    fold = dict(output_size=(1, span), kernel_size=(1, n_fft), stride=(1, hop))
    y = torch.nn.functional.fold(frames, **fold)[:, 0, 0]  # (B', span)
    norm = torch.nn.functional.fold((w * w)[None, :, None].expand(1, n_fft, k).contiguous(), **fold)[0, 0, 0]
    first = frame_offset * hop - pad  # signal sample of y[:, 0]
    lo = start - first
    if lo < 0 or lo + length > span:
        raise ValueError(f"frames [{frame_offset}, {frame_offset + k}) do not cover samples [{start}, {start + length})")
    y = y[:, lo:lo + length] / norm[lo:lo + length].clamp_min(1e-8)
    return y.reshape(*lead, length)


def band_centers(cfg: MelConfig) -> np.ndarray:
    """(num_mels,) centre frequencies in Hz of the Slaney mel filters (each triangle's peak)."""
    fmax = cfg.sampling_rate / 2 if cfg.fmax is None else cfg.fmax
    return librosa.mel_frequencies(cfg.num_mels + 2, fmin=cfg.fmin, fmax=fmax, htk=False)[1:-1]


def bin_frequencies(cfg: MelConfig) -> np.ndarray:
    """(n_fft // 2 + 1,) frequencies in Hz of the STFT bins."""
    return np.fft.rfftfreq(cfg.n_fft, 1.0 / cfg.sampling_rate)


def interp_matrix(x: np.ndarray, xp: np.ndarray) -> np.ndarray:
    """(len(x), len(xp)) matrix ``A`` with ``A @ fp = np.interp(x, xp, fp)`` for any values ``fp`` at the
    points ``xp`` (linear between points, held constant beyond the ends)."""
    eye = np.eye(len(xp))
    return np.stack([np.interp(x, xp, eye[j]) for j in range(len(xp))], axis=1)


@functools.cache
def bands_to_bins(cfg: MelConfig) -> torch.Tensor:
    """(n_fft // 2 + 1, num_mels) map from per-band values to per-bin values: linear interpolation
    between the bands' centre frequencies, held constant below the first and above the last centre.

    The mel filterbank is not invertible (80 bands, 513 bins); for a quantity that varies smoothly with
    frequency (a gain, an interaural level difference) interpolating at the band centres is exact
    where the quantity is piecewise linear between them, and never leaves the range of the band
    values (unlike a least-squares pseudo-inverse of the filterbank, which rings).
    """
    return torch.from_numpy(interp_matrix(bin_frequencies(cfg), band_centers(cfg))).float()  # cached: read-only


def filterbank(cfg: MelConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """(num_mels, n_fft // 2 + 1) Slaney mel filterbank (librosa) of the mel space."""
    return _filterbank_and_window(cfg, torch.device(device))[0]


def mel_numpy(wav: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """:func:`mel_spectrogram` for numpy input and output (float32)."""
    with torch.no_grad():
        return mel_spectrogram(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), cfg).numpy()


def num_frames(num_samples: int, cfg: MelConfig) -> int:
    """Mel frames of a waveform of ``num_samples`` samples (``S // hop``)."""
    return num_samples // cfg.hop_size
