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

import functools
import json
import os
from dataclasses import asdict, dataclass, fields

import librosa
import numpy as np
import torch

from binaural_core.audio import BadInputError, load_wav

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


def normalize_mel(log_mel: torch.Tensor) -> torch.Tensor:
    """ln-mel → [-1, 1]: clamp to [NORM_MIN, NORM_MAX], then map that window linearly."""
    x = torch.clamp(log_mel, NORM_MIN, NORM_MAX)
    return 2.0 * (x - NORM_MIN) / (NORM_MAX - NORM_MIN) - 1.0


def denormalize_mel(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_mel` on [-1, 1] (values outside are clamped first)."""
    x = torch.clamp(x, -1.0, 1.0)
    return (x + 1.0) * 0.5 * (NORM_MAX - NORM_MIN) + NORM_MIN


# --- the vocoder's training data: one ear of one clip per item ------------------------------------

MEL_SUBDIRS = ("left", "right")  # = binaural_core.audio.CHANNEL_NAMES: channel c of a clip <-> mel dir c


def find_meta(mel_dir: str) -> str | None:
    """The ``meta.json`` of a mel dir given as ``{dir}/left/{split}`` (or ``{dir}`` itself)."""
    for up in (mel_dir, os.path.dirname(mel_dir), os.path.dirname(os.path.dirname(mel_dir))):
        path = os.path.join(up, "meta.json")
        if os.path.isfile(path):
            return path
    return None


def check_mel_dir(mel_dir: str, cfg: MelConfig) -> None:
    """Refuse a Stage 1 mel dir whose meta.json mel parameters differ from the vocoder's (one line)."""
    if not os.path.isdir(mel_dir):
        raise BadInputError(mel_dir, "mel directory not found")
    meta = find_meta(os.path.normpath(mel_dir))
    if meta is None:
        return  # mels made by other tools: shapes are still checked per file
    saved = read_json(meta).get("mel")
    if not isinstance(saved, dict):
        raise BadInputError(meta, "no 'mel' parameters: not a DiffBinaural mel directory")
    problem = cfg.mismatch(saved)
    if problem:
        raise BadInputError(meta, f"mel parameters differ from the vocoder config: {problem}")


def read_npy(path: str) -> np.ndarray:
    """``np.load`` of one array; a file numpy cannot read is one :class:`BadInputError` line."""
    try:
        return np.load(path)
    except Exception as err:  # numpy raises ValueError/OSError/EOFError for broken files
        raise BadInputError(path, f"unreadable .npy ({type(err).__name__}: {err})") from None


def load_mel_file(path: str, cfg: MelConfig) -> np.ndarray:
    """A ``(num_mels, T)`` float32 ln-mel ``.npy``; wrong shape or non-finite values are one line."""
    mel = read_npy(path)
    if mel.ndim == 3 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.ndim != 2 or mel.shape[0] != cfg.num_mels:
        raise BadInputError(path, f"expected a ({cfg.num_mels}, T) mel, found shape {mel.shape}")
    if not np.all(np.isfinite(mel)):
        raise BadInputError(path, "mel contains NaN or inf")
    return mel.astype(np.float32, copy=False)


def scheduled_probability(epoch: int, points: list[tuple[float, float]]) -> float:
    """p(epoch) of feeding the Stage 1 mel: piecewise linear through ``points`` (epoch, p), sorted.

    Before the first point: its p; after the last: the last p; two points at the same epoch make a
    jump (the later one holds from that epoch on). The original's schedule is
    ``[(10, 0), (30, 0.5), (60, 0.9), (60, 1.0)]``: 0 before epoch 10, 0 -> 0.5 at 30, -> 0.9 at 60,
    then 1.0.
    """
    if epoch < points[0][0]:
        return float(points[0][1])
    for (e0, p0), (e1, p1) in zip(points, points[1:]):
        if e0 <= epoch < e1:
            return float(p0 + (p1 - p0) * (epoch - e0) / (e1 - e0))
    return float(points[-1][1])


class BinauralMelDataset(torch.utils.data.Dataset):
    """Vocoder training items: one ear of one clip, ``2k`` = clip k left, ``2k + 1`` = clip k right.

    Each item is a dict:

        mel        (num_mels, F) float32 ln-mel fed to the generator
        audio      (1, F * hop) float32 target waveform of that ear (same gain as the mel: never
                   peak-normalised, unlike the original's stage 2a)
        name, channel, used_pred (whether ``mel`` came from the Stage 1 dir)

    Mel sources: the ground-truth mel is computed from the audio with :func:`mel_spectrogram`; the
    predicted mel is ``{pred_dirs[channel]}/{name}.npy``. Each item uses the predicted mel with
    probability ``p_pred`` (1 = always, 0 = never; :meth:`set_epoch` may change it for scheduled
    sampling), drawn from a generator seeded by (seed, epoch, index). Training crops
    (``segment_size`` samples) start on a frame boundary so mel frame k <-> samples [k*hop, (k+1)*hop);
    ``segment_size=None`` gives whole clips (validation).

    Args:
        audio_dir: ``{name}.wav`` stereo files (channel 0 = left); a file at another rate than the
            config's (FAIR-Play's 48 kHz) is resampled on every read, which costs ~10 ms per 10 s clip.
        cfg: mel parameters.
        pred_dirs: (left dir, right dir) of Stage 1 mels, or None (ground-truth mels only).
        names: clips to use (default: the mel dirs' common names, else every wav in ``audio_dir``).
    """

    def __init__(self, *, audio_dir: str, cfg: MelConfig, pred_dirs: tuple[str, str] | None = None,
                 names: list[str] | None = None, segment_size: int | None = 8192, p_pred: float = 1.0,
                 seed: int = 0, skip_bad: bool = False) -> None:
        from binaural_core.audio import LEFT, RIGHT  # noqa: F401  (documents the channel order used below)

        self.audio_dir, self.cfg, self.pred_dirs = audio_dir, cfg, pred_dirs
        self.segment_size, self.p_pred, self.seed, self.epoch = segment_size, p_pred, seed, 0
        if segment_size is not None and segment_size % cfg.hop_size:
            raise BadInputError(None, f"segment_size {segment_size} is not a multiple of hop {cfg.hop_size}")
        if not os.path.isdir(audio_dir):
            raise BadInputError(audio_dir, "audio directory not found")
        if pred_dirs is not None:
            for d in pred_dirs:
                check_mel_dir(d, cfg)
            sets = [{f[:-4] for f in os.listdir(d) if f.endswith(".npy")} for d in pred_dirs]
            if sets[0] != sets[1]:
                only = sorted(sets[0] ^ sets[1])[:3]
                raise BadInputError(pred_dirs[0], f"left and right mel dirs hold different clips (e.g. {only})")
            found = sorted(sets[0])
        else:
            found = sorted(f[:-4] for f in os.listdir(audio_dir) if f.endswith(".wav"))
        names = found if names is None else list(names)
        self.clips: list[tuple[str, int]] = []  # (name, frames)
        self.rates: dict[str, int] = {}  # name -> the wav's own sample rate
        self.skipped: list[str] = []
        for name in names:
            try:
                self.clips.append((name, self._probe(name)))
            except BadInputError as err:
                if not skip_bad:
                    raise
                self.skipped.append(str(err))
        if self.skipped:
            import logging

            logging.getLogger("BigVGAN").warning("skipped %d of %d clips; first: %s", len(self.skipped),
                                                  len(names), self.skipped[0])
        if not self.clips:
            raise BadInputError(pred_dirs[0] if pred_dirs else audio_dir, "no usable clips")

    def _probe(self, name: str) -> int:
        import soundfile as sf

        wav = os.path.join(self.audio_dir, f"{name}.wav")
        if not os.path.isfile(wav):
            raise BadInputError(wav, "audio file not found")
        try:
            info = sf.info(wav)
        except Exception as err:
            raise BadInputError(wav, f"unreadable audio file ({type(err).__name__})") from None
        if info.channels != 2:
            raise BadInputError(wav, f"expected 2 channels, found {info.channels}")
        self.rates[name] = info.samplerate  # another rate than the config's is resampled on load
        samples = info.frames
        if info.samplerate != self.cfg.sampling_rate:  # librosa's resample gives ceil(n * ratio) samples
            samples = int(np.ceil(info.frames * self.cfg.sampling_rate / info.samplerate))
        frames = samples // self.cfg.hop_size
        if self.pred_dirs is not None:
            for d in self.pred_dirs:
                mel = load_mel_file(os.path.join(d, f"{name}.npy"), self.cfg)
                if abs(mel.shape[1] - frames) > 1:
                    raise BadInputError(os.path.join(d, f"{name}.npy"),
                                        f"{mel.shape[1]} frames, but {wav} has {frames} ({info.frames} samples)")
                frames = min(frames, mel.shape[1])
        if self.segment_size is not None and frames * self.cfg.hop_size < self.segment_size:
            raise BadInputError(wav, f"clip of {frames} frames is shorter than one segment "
                                     f"({self.segment_size // self.cfg.hop_size} frames)")
        return frames

    def __len__(self) -> int:
        return 2 * len(self.clips)

    def set_epoch(self, epoch: int, p_pred: float | None = None) -> None:
        self.epoch = epoch
        if p_pred is not None:
            self.p_pred = p_pred

    def __getitem__(self, index: int) -> dict:

        name, frames = self.clips[index // 2]
        channel, hop = index % 2, self.cfg.hop_size
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch, index])
                                                .generate_state(1)[0]))
        seg = frames if self.segment_size is None else self.segment_size // hop
        start = int(torch.randint(0, frames - seg + 1, (1,), generator=gen)) if self.segment_size else 0
        use_pred = self.pred_dirs is not None and bool(torch.rand((), generator=gen) < self.p_pred)
        wav = os.path.join(self.audio_dir, f"{name}.wav")
        if use_pred:
            audio = self._read_span(name, channel, start * hop, (start + seg) * hop)
            mel = load_mel_file(os.path.join(self.pred_dirs[channel], f"{name}.npy"), self.cfg)[:, start:start + seg]
        else:
            # The ground-truth mel of the crop equals those frames of the whole file's mel: read the
            # (n_fft - hop) / 2 neighbouring samples too, reflecting only at the file's own ends.
            pad = (self.cfg.n_fft - hop) // 2
            ctx = self._read_span(name, channel, start * hop - pad, (start + seg) * hop + pad)
            mel = mel_spectrogram(torch.from_numpy(ctx), self.cfg, padded=True).numpy()[:, :seg]
            audio = ctx[pad:pad + seg * hop]
        target = torch.from_numpy(np.ascontiguousarray(audio))[None]  # (1, S)
        if target.shape[-1] != seg * hop:
            raise BadInputError(wav, f"audio ends before mel frame {start + seg}")
        return {"mel": torch.from_numpy(np.ascontiguousarray(mel)), "audio": target, "name": name,
                "channel": channel, "used_pred": use_pred}

    def _read_span(self, name: str, channel: int, lo: int, hi: int) -> np.ndarray:
        """Samples ``[lo, hi)`` of one ear at the config's rate, (hi - lo,) float32; the parts before
        0 / after the end are the clip reflected about its first / last sample (as the mel pads).
        A file at another rate is read whole and resampled (exact, edge-free samples)."""
        import soundfile as sf

        wav = os.path.join(self.audio_dir, f"{name}.wav")
        if self.rates[name] == self.cfg.sampling_rate:
            with sf.SoundFile(wav) as f:
                total = f.frames
                f.seek(max(lo, 0))
                data = f.read(min(hi, total) - max(lo, 0), dtype="float32", always_2d=True)[:, channel]
        else:
            full = load_wav(wav, sampling_rate=self.cfg.sampling_rate, channels=2, resample_ok=True)[channel]
            total, data = full.shape[0], full[max(lo, 0):min(hi, full.shape[0])]
        return np.pad(data, (max(-lo, 0), max(hi - total, 0)), mode="reflect")
