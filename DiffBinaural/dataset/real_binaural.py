"""RealBinaural: clips listed in a split CSV, with person/action detections (layout in ``layout.py``).

Items follow the contract of :mod:`DiffBinaural.dataset.base`. What is specific here:

* the split list is any format of :func:`binaural_core.splits.read_split_list` (a CSV with a ``name``
  column, a ``.txt`` list, an ``.h5``); an entry that looks like a path (``a/b/clip.wav``) stands for
  its basename without extension, so lists written by the original code still work;
* mono comes from ``processed/mono_audios_22050Hz/{name}.wav`` when that file exists, else it is the
  down-mix ``(L + R) / 2`` of the binaural file;
* audio must already be at 22050 Hz (no resampling: a different rate is an error);
* source boxes come from the detection CSV (``name,frame,x1,y1,x2,y2,score``, pixels, frame = index).
"""

from __future__ import annotations

import os

import numpy as np

from binaural_core.mel import MelConfig
from binaural_core.splits import read_split_list
from DiffBinaural.dataset import layout
from DiffBinaural.dataset.base import ClipDataset
from DiffBinaural.dataset.frames import read_detections


class RealBinauralDataset(ClipDataset):
    """RealBinaural clips (see the module docstring of :mod:`DiffBinaural.dataset.base` for items).

    Args:
        data_root: the dataset folder (``layout.rb_paths``).
        list_csv: split list (:func:`binaural_core.splits.read_split_list`: CSV, ``.txt`` or ``.h5``).
        split: ``train`` (random crops), ``val`` or ``test`` (centred crops).
        mel_cfg: the vocoder's mel parameters.
        detection_csv: detections; None = ``{data_root}/action_detection_results/detection_results.csv``.
        segment_frames: mel frames per crop (80 → 20480 samples); None = whole clip.
        num_frames, max_sources, image_size: L, N and P of the visual inputs.
        fps: frame rate of the extracted frames.
        seed: base of the per-item crop generators.
        skip_bad: drop broken clips (one summary line) instead of raising.
        flip: train-only random mirror of images, positions and ears (p = 0.5).
        visual_tokens, frame_size: which visual inputs items carry (``boxes``: the crops; ``grid``: the
            whole frame at ``frame_size`` (H, W); ``both``), see :mod:`DiffBinaural.dataset.base`.
        mix: train-only probability of mixing in another clip with its boxes (``--mix_aug``, base module).
    """

    def __init__(
        self,
        *,
        data_root: str,
        list_csv: str,
        split: str,
        mel_cfg: MelConfig,
        detection_csv: str | None = None,
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
    ):
        self.data_root = os.fspath(data_root)
        self.detection_csv = os.fspath(detection_csv or os.path.join(self.data_root, layout.RB_DETECTIONS))
        self._detections = read_detections(self.detection_csv)
        super().__init__(
            split=split, mel_cfg=mel_cfg, list_path=os.fspath(list_csv), segment_frames=segment_frames,
            num_frames=num_frames, max_sources=max_sources, image_size=image_size, fps=fps, seed=seed,
            skip_bad=skip_bad, flip=flip, visual_tokens=visual_tokens, frame_size=frame_size, frame_side=frame_side, mix=mix,
        )

    def _read_list(self) -> list[str]:
        return read_split_list(self.list_path)

    def _clip_paths(self, name: str) -> tuple[str, str | None, str]:
        paths = layout.rb_paths(self.data_root, name)
        return paths["binaural"], paths["mono"], paths["frames"]

    def _detection_rows(self, name: str) -> tuple[str, np.ndarray]:
        return self.detection_csv, self._detections.get(name, np.zeros((0, 7)))
