"""The vocoder's training data (:class:`BinauralMelDataset`) and the scheduled-sampling schedule.

The mel space itself is the shared one (:mod:`binaural_core.mel`), and Stage 1 mel directories are
read through :mod:`binaural_core.mel_dir`.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from binaural_core.audio import BadInputError, load_wav
from binaural_core.mel import MelConfig, mel_spectrogram
from binaural_core.mel_dir import check_mel_dir, load_mel_file


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
