"""FAIR-Play: clips listed by the official split files (layout in ``layout.py``).

Items follow the contract of :mod:`DiffBinaural.dataset.base`. What is specific here:

* the split file ``splits/split{k}/{split}.h5`` holds, under key ``audio``, wav paths from the
  authors' machine: only the basename is used (``/x/y/000001.wav`` → clip id ``000001``), resolved
  under ``{data_root}/binaural_audios/``; PseudoBinaural's ``.txt`` lists and CSVs work too
  (:func:`binaural_core.splits.read_split_list`);
* wavs may have any sample rate and are resampled to the mel rate on load (optionally cached);
* mono is always the down-mix ``(L + R) / 2``;
* there are no detections: the whole frame of ``frames/{id}.mp4/`` is the visual input, as a grid of
  cell tokens (``visual_tokens="grid"``, the scripts' default for FAIR-Play) or, with ``"boxes"``, as
  one whole-frame token per frame.
"""

from __future__ import annotations

import os

from binaural_core.mel import MelConfig
from binaural_core.splits import read_split_list
from DiffBinaural.dataset import layout
from DiffBinaural.dataset.base import ClipDataset


class FairPlayDataset(ClipDataset):
    """FAIR-Play clips (see the module docstring of :mod:`DiffBinaural.dataset.base` for items).

    Args:
        data_root: the FAIR-Play folder (``layout.fp_paths``).
        split_h5: the split file, e.g. ``layout.fp_split_h5(data_root, "train", 1)``.
        split: ``train`` (random crops), ``val`` or ``test`` (centred crops).
        mel_cfg: the vocoder's mel parameters (its rate is the target of resampling).
        segment_frames, num_frames, max_sources, image_size, fps, seed, skip_bad, flip, visual_tokens,
            frame_size, mix: as in
            :class:`~DiffBinaural.dataset.real_binaural.RealBinauralDataset` (``max_sources`` only
            sets N; slot 0 is the whole frame, the others are padding).
        cache_audio: keep resampled clips in memory (per DataLoader worker): about 1.8 MB per 10 s
            clip, so ~3.3 GB for all 1,871 clips in every worker. Files already at the mel rate are
            read segment-wise and never cached.
    """

    RESAMPLE = True

    def __init__(
        self,
        *,
        data_root: str,
        split_h5: str,
        split: str,
        mel_cfg: MelConfig,
        segment_frames: int | None = 80,
        num_frames: int = 5,
        max_sources: int = 4,
        image_size: int = 224,
        fps: float = layout.FPS,
        seed: int = 0,
        skip_bad: bool = False,
        flip: bool = False,
        visual_tokens: str = "boxes",
        frame_size: tuple[int, int] | None = None,
        frame_side: int | None = None,
        mix: float = 0.0,
        cache_audio: bool = False,
    ):
        self.data_root = os.fspath(data_root)
        super().__init__(
            split=split, mel_cfg=mel_cfg, list_path=os.fspath(split_h5), segment_frames=segment_frames,
            num_frames=num_frames, max_sources=max_sources, image_size=image_size, fps=fps, seed=seed,
            skip_bad=skip_bad, flip=flip, visual_tokens=visual_tokens, frame_size=frame_size, frame_side=frame_side, mix=mix,
        )
        if cache_audio:
            self._audio_cache = {}

    def _read_list(self) -> list[str]:
        return read_split_list(self.list_path)

    def _clip_paths(self, name: str) -> tuple[str, str | None, str]:
        paths = layout.fp_paths(self.data_root, name)
        return paths["binaural"], None, paths["frames"]
