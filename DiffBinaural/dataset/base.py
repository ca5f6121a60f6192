"""Stage 1 datasets: the item contract and everything RealBinaural and FAIR-Play have in common.

Every Stage 1 dataset returns, for ``dataset[i]``, a dict (this docstring is the one place that
defines it; ``F`` = mel frames, ``S = F * hop`` samples, ``L`` = ``num_frames``, ``N`` =
``max_sources``, ``P`` = ``image_size``)::

    name            str      clip name (RealBinaural: the split CSV's name; FAIR-Play: the wav id)
    start           int      first sample of the crop in the clip at 22050 Hz; a multiple of hop, and
                             mel frame k of the crop is frame start // hop + k of the whole-clip mel
    mono_mel        (1, n_mels, F)    float32 ln-mel (binaural_core.mel.mel_spectrogram) of mono_audio
    binaural_mel    (2, n_mels, F)    float32 ln-mel of binaural_audio, channel 0 = left
    phase           (2, n_mels, F)    float32 interaural phase channels of binaural_audio (Re, Im of
                                      the band coherence, :mod:`binaural_core.interaural`), same frames
    mono_audio      (S,)              float32 waveform in [-1, 1]
    binaural_audio  (2, S)            float32 waveform, channel 0 = left
    frames          (L, N, 3, P, P)   float32 RGB in [0, 1], *not* normalised (each visual encoder
                                      applies its own mean/std); padded slots are zeros
    positions       (L, N, 2)         float32 source box centres (cx / width, cy / height) in [0, 1];
                                      0 in padded slots
    mask            (L, N)            bool, True = invalid / padded slot (the original inverted this)
    scene           (L, 3, H, W)      float32 RGB in [0, 1]: the whole frame in ``frame_size = (H, W)``,
                                      aspect kept, centred, zero borders (frames.letterbox)

``frames``, ``positions`` and ``mask`` come with ``visual_tokens`` ``boxes`` and ``both``, ``scene`` with
``grid`` and ``both`` (the box tokens and the grid tokens of :mod:`DiffBinaural.modules.visual_encoder`).

Crops: ``split="train"`` draws a hop-aligned start uniformly from a ``torch.Generator`` seeded from
``(seed, epoch, index)`` (call :meth:`ClipDataset.set_epoch` each epoch; global RNGs are never used),
``val``/``test`` take the centred crop, and ``segment_frames=None`` returns the whole clip trimmed to a
multiple of hop (for inference; batch size 1 since lengths differ). A crop's mel is computed with the
``(n_fft - hop) // 2`` real neighbouring samples on each side (reflected about the clip's first / last
sample only where the crop reaches an end, as the whole-clip mel pads), so it equals that slice of the
whole-clip mel, edge frames included; the audio is the crop itself. The optional train augmentation
``flip`` mirrors the images, maps ``cx -> 1 - cx`` and swaps the left/right audio and mels, so the
picture and the ears stay consistent (the original mirrored the images only). The train augmentation
``mix`` (a probability) makes a crop the **sum of two clips** (the item's and a partner's crop of the same
length, each flipped by its own coin) with **both clips' boxes**: ``N = 2 · max_sources`` slots for every
train item, the partner's in the second half (masked when there is none). Which sound belongs to which
box can then only be learnt from how each looks and sounds, not from the count of boxes.

Repeats: ``repeats=K`` (``--dup_trainset``, or :meth:`ClipDataset.set_repeats`) lists every clip K times
per epoch: ``len(dataset) = K * len(clips)`` and item ``i`` is clip ``i % len(clips)``. Crop and flip are
seeded with the item index ``i``, so each copy draws its own crop (a ``ConcatDataset`` of K copies
would repeat the same one); ``repeats=1`` gives the same items as before repeats existed. Methods that
take an ``index`` take an item index; :attr:`ClipDataset.names` lists each clip once.

Visual inputs: ``L`` frames at times ``start_s + (k + 0.5) / L * duration_s`` (frame ``i`` shows time
``(i - 1) / fps``), clamped to the frames that exist. In each frame the detection boxes of that frame,
highest score first, fill up to ``N`` slots; each slot is the box region resized to ``P x P``. A frame
without detections (always, for FAIR-Play) uses the whole frame in slot 0 at position (0.5, 0.5).
``frame_size=None`` with grid tokens takes the first clip's aspect with the short side
``max(P, 64)``, or ``frame_side`` where given (at most the frames' own short side; ``--grid_pool crops``)
(:func:`~DiffBinaural.dataset.frames.default_frame_size`); :attr:`ClipDataset.frame_size`
is the size used, which the trainer records in ``config.json``.
Frames may be ``.jpg``/``.jpeg``/``.png`` in any PIL mode; boxes are clipped to the image, and boxes
outside it are dropped, counted in one warning per detection file (:mod:`DiffBinaural.dataset.frames`).

Bad input is found at construction (wav headers, frame folders, one frame's size, detection rows) and
reported as one :class:`binaural_core.audio.BadInputError` line naming the file; with ``skip_bad=True`` the
clip is dropped instead and one summary line is logged. Nothing is zero-filled.

Subclasses only say where things are: :meth:`ClipDataset._read_list` (the clip names),
:meth:`ClipDataset._clip_paths` (wavs and frames folder) and :meth:`ClipDataset._detection_rows`.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch

from binaural_core.audio import LEFT, RIGHT, BadInputError, load_wav, mono_from_binaural
from binaural_core.interaural import mels_and_phase
from binaural_core.mel import MelConfig
from DiffBinaural.dataset import layout
from DiffBinaural.dataset.frames import (
    BoxCount,
    ClipError,
    ClipFrames,
    one_line,
    open_clip_frames,
    scene_size,
    token_parts,
)

log = logging.getLogger(__name__)


@dataclass
class Clip:
    """What construction learned about one usable clip (all audio quantities at the mel rate)."""

    name: str
    binaural_path: str
    mono_path: str | None  # None: mono = (L + R) / 2
    file_rate: int  # the binaural file's own rate; != mel rate means "resample on load"
    num_samples: int
    frames: ClipFrames  # the checked frames folder and boxes


def probe_wav(path: str, *, channels: int, sampling_rate: int | None) -> tuple[int, int]:
    """(samples, sample rate) of a wav, from its header. ``sampling_rate=None`` accepts any rate."""
    if not os.path.isfile(path):
        raise ClipError(path, "file not found", "missing file")
    try:
        info = sf.info(path)
    except Exception as err:  # soundfile raises several types; all mean "not a readable audio file"
        raise ClipError(path, f"unreadable audio file ({one_line(err)})", "unreadable file") from None
    if info.frames <= 0:
        raise ClipError(path, "empty audio file (0 samples)", "empty audio")
    if info.channels != channels:
        raise ClipError(path, f"expected {channels} channel(s), found {info.channels}", "wrong channel count")
    if sampling_rate is not None and info.samplerate != sampling_rate:
        raise ClipError(
            path, f"sample rate is {info.samplerate} Hz, expected {sampling_rate} Hz (resample it first)",
            "wrong sample rate",
        )
    return info.frames, info.samplerate


def resampled_length(num_samples: int, orig_sr: int, target_sr: int) -> int:
    """Samples after :func:`binaural_core.audio.resample` (librosa pads/cuts to ceil(n * ratio))."""
    if orig_sr == target_sr:
        return num_samples
    return int(np.ceil(num_samples * (float(target_sr) / orig_sr)))


def read_segment(path: str, start: int, stop: int) -> np.ndarray:
    """Samples ``[start, stop)`` of a wav as float32 ``(C, stop - start)``; reads only that span."""
    try:
        data, _ = sf.read(path, start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as err:  # the file changed or broke after construction
        raise BadInputError(path, f"unreadable audio file ({one_line(err)})") from None
    if data.shape[0] != stop - start:
        raise BadInputError(path, f"file ends at sample {start + data.shape[0]}, needed up to {stop}")
    if not np.all(np.isfinite(data)):
        raise BadInputError(path, f"audio contains NaN or inf in samples {start}..{stop}")
    return np.ascontiguousarray(data.T)


def _item_seed(seed: int, epoch: int, index: int) -> int:
    # SeedSequence mixes the three numbers well (nearby triples give unrelated streams) without
    # touching numpy's global RNG; torch seeds must fit in 63 bits.
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


class ClipDataset(torch.utils.data.Dataset):
    """Common base of the Stage 1 datasets (item contract in the module docstring).

    Subclasses set their own attributes, then call ``super().__init__``, which validates every clip.
    Class attribute ``RESAMPLE``: whether binaural files at another rate are resampled (FAIR-Play)
    or refused (RealBinaural).
    """

    RESAMPLE = False

    def __init__(
        self,
        *,
        split: str,
        mel_cfg: MelConfig,
        list_path: str,
        segment_frames: int | None = 80,
        num_frames: int = 5,
        max_sources: int = 4,
        image_size: int = 224,
        fps: float = layout.FPS,
        seed: int = 0,
        skip_bad: bool = False,
        flip: bool = False,
        repeats: int = 1,
        visual_tokens: str = "boxes",
        frame_size: tuple[int, int] | None = None,
        frame_side: int | None = None,
        mix: float = 0.0,
    ):
        if split not in layout.SPLITS:
            raise BadInputError(None, f"split must be one of {', '.join(layout.SPLITS)}, got {split!r}")
        for arg, value in (("num_frames", num_frames), ("max_sources", max_sources), ("image_size", image_size)):
            if int(value) < 1:
                raise BadInputError(None, f"{arg} must be >= 1, got {value}")
        if segment_frames is not None and segment_frames < 1:
            raise BadInputError(None, f"segment_frames must be >= 1 or None, got {segment_frames}")
        if seed < 0:
            raise BadInputError(None, f"seed must be >= 0, got {seed}")
        self.split = split
        self.mel_cfg = mel_cfg
        self.list_path = list_path
        self.segment_frames = segment_frames
        self.num_frames = int(num_frames)
        self.max_sources = int(max_sources)
        self.image_size = int(image_size)
        self.fps = fps
        self.seed = int(seed)
        self.flip = bool(flip)
        try:
            token_parts(visual_tokens)
        except ValueError as err:
            raise BadInputError(None, str(err)) from None
        if not 0.0 <= mix <= 1.0 or (mix and visual_tokens != "boxes"):
            raise BadInputError(None, f"mix must be in [0, 1] and needs box tokens, got {mix} with {visual_tokens}")
        self.mix = float(mix) if split == "train" else 0.0
        if frame_size is not None and (len(frame_size) != 2 or min(int(v) for v in frame_size) < 1):
            raise BadInputError(None, f"frame_size must be two sides H W >= 1, got {frame_size}")
        self.visual_tokens = visual_tokens
        self.frame_size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        self.epoch = 0
        self.set_repeats(repeats)
        self._audio_cache: dict[str, np.ndarray] | None = None  # subclasses may enable it
        self.clips, self.skipped = self._build(skip_bad)
        if self.frame_size is None and token_parts(visual_tokens)[1]:
            width, height = self.clips[0].frames.size
            self.frame_size = scene_size(width, height, image_size=self.image_size, frame_side=frame_side)

    # ---- hooks for subclasses ----------------------------------------------------------------
    def _read_list(self) -> list[str]:
        """Clip names of the split, in order. Whole-list problems raise plain BadInputError."""
        raise NotImplementedError

    def _clip_paths(self, name: str) -> tuple[str, str | None, str]:
        """(binaural wav, mono wav or None if this dataset has none, frames folder) of a clip."""
        raise NotImplementedError

    def _detection_rows(self, name: str) -> tuple[str, np.ndarray]:
        """(source file for messages, (k, 7) float rows: line, frame, x1, y1, x2, y2, score)."""
        return "", np.zeros((0, 7))

    # ---- construction ------------------------------------------------------------------------
    @property
    def box_source(self) -> str:
        """``detections`` when any clip has detection boxes, else ``whole_frame`` (one token per frame):
        recorded in ``config.json`` so that inference knows whether the model expects boxes."""
        return "detections" if any(clip.frames.boxes for clip in self.clips) else "whole_frame"

    @property
    def segment_samples(self) -> int | None:
        return None if self.segment_frames is None else self.segment_frames * self.mel_cfg.hop_size

    def _build(self, skip_bad: bool) -> tuple[list[Clip], dict[str, int]]:
        names = self._read_list()
        self._box_counts: dict[str, BoxCount] = {}  # detection file -> boxes clipped / dropped
        clips: list[Clip] = []
        skipped: Counter[str] = Counter()
        first_error = ""
        for name in names:
            try:
                clips.append(self._probe(name))
            except ClipError as err:
                if not skip_bad:
                    raise
                skipped[err.kind] += 1
                first_error = first_error or str(err)
                log.debug("skipping clip %s: %s", name, err)
        label = f"{type(self).__name__}({self.split})"
        if skipped:
            counts = ", ".join(f"{kind}: {n}" for kind, n in skipped.most_common())
            log.warning(
                "%s: skipped %d of %d clips (%s); first: %s",
                label, sum(skipped.values()), len(names), counts, first_error,
            )
        for source, count in self._box_counts.items():
            if count.summary(source):
                log.warning("%s: %s", label, count.summary(source))
        if not clips:
            raise BadInputError(self.list_path, f"{label}: no usable clips (all {len(names)} skipped)")
        return clips, dict(skipped)

    def _probe(self, name: str) -> Clip:
        """Validate one clip from headers, folder listings and one image header (no decoding)."""
        sr = self.mel_cfg.sampling_rate
        binaural_path, mono_path, frames_dir = self._clip_paths(name)
        file_samples, file_rate = probe_wav(binaural_path, channels=2, sampling_rate=None if self.RESAMPLE else sr)
        num_samples = resampled_length(file_samples, file_rate, sr)
        if mono_path is not None and os.path.exists(mono_path):
            mono_samples, _ = probe_wav(mono_path, channels=1, sampling_rate=sr)
            # separate recordings may differ by a few samples; more than one video frame means the
            # two files are not the same take
            if abs(mono_samples - num_samples) > sr / self.fps:
                raise ClipError(
                    mono_path,
                    f"mono has {mono_samples} samples but the binaural file {binaural_path} has {num_samples}",
                    "length mismatch",
                )
            num_samples = min(num_samples, mono_samples)
        else:
            mono_path = None
        needed = self.segment_samples or self.mel_cfg.n_fft
        if num_samples < needed:
            raise ClipError(
                binaural_path,
                f"clip has {num_samples} samples ({num_samples / sr:.2f} s), shorter than one crop of "
                f"{needed} samples",
                "too short",
            )
        detections = self._detection_rows(name)
        frames, count = open_clip_frames(frames_dir, name=name, max_sources=self.max_sources, detections=detections)
        self._box_counts.setdefault(detections[0], BoxCount()).add(count)
        return Clip(name, binaural_path, mono_path, file_rate, num_samples, frames)

    # ---- items -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.clips) * self.repeats

    @property
    def names(self) -> list[str]:
        """The distinct clip names, in list order (one per clip, whatever ``repeats``)."""
        return [clip.name for clip in self.clips]

    def set_repeats(self, repeats: int) -> None:
        """List every clip ``repeats`` times (module docstring, "Repeats")."""
        if isinstance(repeats, bool) or int(repeats) != repeats or repeats < 1:
            raise BadInputError(None, f"repeats must be an integer >= 1, got {repeats!r}")
        self.repeats = int(repeats)

    def clip_index(self, index: int) -> int:
        """Position in ``self.clips`` of item ``index`` (``-len(self) <= index < len(self)``)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"item {index} out of range for {type(self).__name__} of {len(self)} items")
        return int(index) % len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        """Select the random crops of ``epoch`` (train). With persistent DataLoader workers, recreate
        the loader or the workers keep their copy's epoch."""
        self.epoch = int(epoch)

    def crop_span(self, index: int, generator: torch.Generator | None = None) -> tuple[int, int]:
        """(start, length) in samples of item ``index``'s crop; train crops draw from ``generator``."""
        clip = self.clips[self.clip_index(index)]
        index = int(index) % len(self)  # the seed of a negative index is that of the item it names
        hop = self.mel_cfg.hop_size
        length = self.segment_samples
        if length is None:  # whole clip
            return 0, (clip.num_samples // hop) * hop
        free_hops = (clip.num_samples - length) // hop
        if self.split == "train":
            if generator is None:
                generator = torch.Generator().manual_seed(_item_seed(self.seed, self.epoch, index))
            return hop * int(torch.randint(0, free_hops + 1, (1,), generator=generator)), length
        return hop * (free_hops // 2), length

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[self.clip_index(index)]
        index = int(index) % len(self)  # the full item index: copies of a clip seed differently
        generator = None
        if self.split == "train" and self.segment_samples is not None:
            generator = torch.Generator().manual_seed(_item_seed(self.seed, self.epoch, index))
        start, length = self.crop_span(index, generator)
        # the coin is drawn after the crop, so flip=True and flip=False give the same crops
        flip = self.flip and generator is not None and bool(torch.rand((), generator=generator) < 0.5)
        # A whole clip's mel is the mel of the whole file (its last frame sees the samples past the
        # last full hop, exactly as the vocoder's mel of that wav); the audio is then cut to F * hop.
        # A crop is read with the context the whole-clip mel's frames see around it, so its mel is
        # that slice of the whole-clip mel rather than a mel of the crop reflected at its own ends.
        if self.segment_samples is None:
            stop, context = clip.num_samples, 0
        else:
            stop, context = start + length, (self.mel_cfg.n_fft - self.mel_cfg.hop_size) // 2
        mono, binaural = self.load_audio(index, start, stop, context=context)
        if flip:
            binaural = binaural[[RIGHT, LEFT]]
        partner = self._partner(index, length, context, generator) if self.mix and generator is not None else None
        if partner is not None:
            mono, binaural = mono + partner[3], binaural + partner[4]
        wav = torch.from_numpy(np.concatenate([mono[None], binaural]))  # (3, S + 2 * context): one mel call
        with torch.no_grad():  # one STFT: (3, n_mels, F) mels and the binaural pair's (2, n_mels, F) phase
            mel, phase = mels_and_phase(wav, self.mel_cfg, padded=context > 0)
        wav = wav[:, context : context + length]
        visual = self.visual_inputs(index, start, length, flip=flip)
        if self.mix and generator is not None:
            visual = self._add_partner_boxes(visual, partner, length)
        return {
            "name": clip.name,
            "start": start,
            "mono_mel": mel[:1],
            "binaural_mel": mel[1:],
            "phase": phase,
            "mono_audio": wav[0],
            "binaural_audio": wav[1:],
            **visual,
        }

    def _partner(self, index: int, length: int, context: int, generator: torch.Generator):
        """``(item, start, flip, mono, binaural)`` of the clip mixed into a train crop, or None (the coin)."""
        if len(self.clips) < 2 or not bool(torch.rand((), generator=generator) < self.mix):
            return None
        mine = self.clip_index(index)
        other = int(torch.randint(0, len(self.clips) - 1, (1,), generator=generator))
        other += other >= mine  # another clip, drawn uniformly
        start, got = self.crop_span(other, generator)
        flip = self.flip and bool(torch.rand((), generator=generator) < 0.5)
        if got != length:
            return None
        mono, binaural = self.load_audio(other, start, start + length, context=context)
        return other, start, flip, mono, binaural[[RIGHT, LEFT]] if flip else binaural

    def _add_partner_boxes(self, visual: dict, partner, length: int) -> dict:
        """The item's box slots, then the partner's (all masked without one): ``N = 2 · max_sources``."""
        if partner is None:
            theirs = {"frames": torch.zeros_like(visual["frames"]), "positions": torch.zeros_like(visual["positions"]),
                      "mask": torch.ones_like(visual["mask"])}
        else:
            theirs = self.visual_inputs(partner[0], partner[1], length, flip=partner[2])
        return {k: torch.cat([v, theirs[k]], dim=1) for k, v in visual.items()}

    def load_audio(
        self, index: int, start: int, stop: int, *, context: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mono ``(S,)`` and binaural ``(2, S)`` float32 samples ``[start, stop)`` of item ``index`` at
        the mel rate, with ``context`` more samples on each side: ``S = stop - start + 2 * context``.

        Context that falls outside the clip's ``[0, num_samples)`` is the clip reflected about its
        first / last sample (numpy/torch ``"reflect"``: the edge sample is not repeated), which is how
        :func:`mel_spectrogram` pads the whole clip; ``[start, stop)`` itself is read as asked.
        """
        clip = self.clips[self.clip_index(index)]
        if context < 0:
            raise ValueError(f"context must be >= 0, got {context}")
        # what is read: the span plus the part of the context that lies inside the clip
        lo, hi = min(start, max(start - context, 0)), max(stop, min(stop + context, clip.num_samples))
        sr = self.mel_cfg.sampling_rate
        if clip.file_rate == sr:
            binaural = read_segment(clip.binaural_path, lo, hi)
        else:  # resampling needs the whole file for exact, edge-free samples
            full = None if self._audio_cache is None else self._audio_cache.get(clip.binaural_path)
            if full is None:
                full = load_wav(clip.binaural_path, sampling_rate=sr, channels=2, resample_ok=True)
                if self._audio_cache is not None:
                    self._audio_cache[clip.binaural_path] = full
            binaural = full[:, lo:hi]
            if binaural.shape[1] != hi - lo:
                raise BadInputError(clip.binaural_path, f"resampled audio ends before sample {hi}")
        if clip.mono_path is not None:
            mono = read_segment(clip.mono_path, lo, hi)[0]
        else:
            mono = mono_from_binaural(binaural)  # linear, so reflecting after the mix is the same
        # the rest of the context: reflected about the clip's ends (a mel's context is shorter than
        # any clip, which has >= n_fft samples, so what was read always covers the reflection)
        pad = (lo - (start - context), (stop + context) - hi)
        if pad != (0, 0):
            binaural = np.pad(binaural, ((0, 0), pad), mode="reflect")
            mono = np.pad(mono, pad, mode="reflect")
        return np.ascontiguousarray(mono, dtype=np.float32), np.ascontiguousarray(binaural, dtype=np.float32)

    def frame_indices(self, index: int, start: int, length: int) -> list[int]:
        """The ``L`` 1-based frame indices spread over samples ``[start, start + length)``."""
        sr = self.mel_cfg.sampling_rate
        return self.clips[self.clip_index(index)].frames.indices(start / sr, length / sr, self.num_frames, self.fps)

    def visual_inputs(self, index: int, start: int, length: int, *, flip: bool = False) -> dict[str, torch.Tensor]:
        """The visual inputs (``frames``, ``positions``, ``mask`` and / or ``scene``, as in the item
        contract) of any span of a clip (e.g. one window of sliding-window inference)."""
        sr = self.mel_cfg.sampling_rate
        return self.clips[self.clip_index(index)].frames.visual_inputs(
            start / sr, length / sr, num_frames=self.num_frames, max_sources=self.max_sources,
            image_size=self.image_size, fps=self.fps, tokens=self.visual_tokens, frame_size=self.frame_size,
            flip=flip)
