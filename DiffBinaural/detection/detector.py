"""A transformers object detector that finds the sound sources in a clip's frames.

Two kinds load from a hub id or a ``save_pretrained`` folder alike:

* **zero-shot** (OWL-ViT, OWLv2, Grounding DINO: ``AutoModelForZeroShotObjectDetection``): the
  ``queries`` are its text prompts ("person", "guitar", ...);
* **closed-set** (DETR, YOLOS, RT-DETR, ...: ``AutoModelForObjectDetection``): the ``queries`` pick
  which of its labels count (COCO detectors know "person" but no instruments).

Boxes of all queries go through one class-agnostic NMS per frame (a player and the instrument they
hold are one source), then :func:`~DiffBinaural.detection.tracks.link_tracks` links them over the clip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from binaural_core.audio import BadInputError

log = logging.getLogger("DiffBinaural")
DEFAULT_DETECTOR = "google/owlvit-base-patch32"  # zero-shot, no extra dependency (no timm)
DEFAULT_QUERIES = ("person", "guitar", "piano", "violin", "cello", "drum", "trumpet", "saxophone", "flute",
                   "accordion", "loudspeaker")


@dataclass(frozen=True)
class DetectorOptions:
    """``queries``: what counts as a source; ``threshold``: least score; ``nms_iou``: overlap above
    which two boxes of a frame are one source; ``batch``: frames per forward pass."""

    queries: tuple[str, ...] = DEFAULT_QUERIES
    threshold: float = 0.1
    nms_iou: float = 0.5
    batch: int = 8

    def __post_init__(self):
        object.__setattr__(self, "queries", tuple(self.queries))
        if not self.queries:
            raise BadInputError(None, "the detector needs at least one query")


class Detector:
    """``detector(images) -> [(k, 5) x1, y1, x2, y2, score]`` in pixels of each PIL image."""

    def __init__(self, *, model, processor, zero_shot: bool, options: DetectorOptions, name: str,
                 device: torch.device):
        self.model, self.processor, self.zero_shot = model.eval().to(device), processor, zero_shot
        self.options, self.name, self.device = options, name, device
        self.keep_labels = None
        if not zero_shot:  # which of a closed-set detector's labels are the queries
            wanted = {q.lower().removeprefix("a ").strip() for q in options.queries}
            labels = {int(i): str(n).lower() for i, n in model.config.id2label.items()}
            self.keep_labels = sorted(i for i, n in labels.items() if n in wanted)
            if not self.keep_labels:
                known = ", ".join(sorted(set(labels.values()))[:20])
                raise BadInputError(name, f"none of the queries ({', '.join(options.queries)}) is a label of this "
                                          f"detector (its labels: {known}, ...)")

    @torch.no_grad()
    def __call__(self, images: list) -> list[np.ndarray]:
        from DiffBinaural.detection.tracks import nms

        out: list[np.ndarray] = []
        opt = self.options
        for start in range(0, len(images), opt.batch):
            batch = images[start:start + opt.batch]
            sizes = [(im.height, im.width) for im in batch]
            if self.zero_shot:
                inputs = self.processor(text=[list(opt.queries)] * len(batch), images=batch, padding=True,
                                        return_tensors="pt")
            else:
                inputs = self.processor(images=batch, return_tensors="pt")
            inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
            outputs = self.model(**inputs)
            post = getattr(self.processor, "post_process_grounded_object_detection", None) if self.zero_shot else None
            if post is None:
                post = getattr(self.processor, "image_processor", self.processor).post_process_object_detection
            results = post(outputs, threshold=opt.threshold, target_sizes=sizes)
            for result, (h, w) in zip(results, sizes):
                boxes = result["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
                scores = result["scores"].detach().float().cpu().numpy().reshape(-1)
                if self.keep_labels is not None:
                    keep = np.isin(result["labels"].cpu().numpy(), self.keep_labels)
                    boxes, scores = boxes[keep], scores[keep]
                boxes = np.clip(boxes, 0, [w, h, w, h])
                ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
                boxes, scores = boxes[ok], scores[ok]
                kept = nms(boxes, scores, opt.nms_iou) if len(boxes) else np.zeros(0, int)
                out.append(np.concatenate([boxes[kept], scores[kept, None]], axis=1).astype(np.float64))
        return out


def load_detector(name: str | None = None, *, device: str | torch.device = "cpu", **options) -> Detector:
    """A :class:`Detector` from a hub id or a local ``save_pretrained`` folder (model + processor).

    Offline without the weights it stops with one line saying which folder to pass.
    """
    from binaural_core.extras import need

    transformers = need("transformers", "--boxes auto (an object detector)")
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION_MAPPING_NAMES as ZERO_SHOT,
    )

    name = name or DEFAULT_DETECTOR
    opts = DetectorOptions(**options)
    try:
        config = transformers.AutoConfig.from_pretrained(name)
        zero_shot = config.model_type in ZERO_SHOT
        if zero_shot:
            model = transformers.AutoModelForZeroShotObjectDetection.from_pretrained(name)
            processor = transformers.AutoProcessor.from_pretrained(name)
        else:
            model = transformers.AutoModelForObjectDetection.from_pretrained(name)
            processor = transformers.AutoImageProcessor.from_pretrained(name)
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInputError(name, f"cannot load the detector ({reason[:160]}); offline, pass --detector FOLDER: a "
                                  f"folder written by save_pretrained, or download one first, e.g. "
                                  f"`hf download {DEFAULT_DETECTOR} --local-dir detector/`") from None
    log.info("detector %s (%s, %s)", name, config.model_type, "zero-shot" if zero_shot else "closed-set")
    return Detector(model=model, processor=processor, zero_shot=zero_shot, options=opts, name=name,
                    device=torch.device(device))


def detect_clip(detector: Detector, frames_dir: str, *, ext: str, num_images: int, **tracking) -> np.ndarray:
    """Detections on every frame of a clip, linked and smoothed (:func:`link_tracks`'s ``tracking``
    options): (R, 6) rows ``frame, x1, y1, x2, y2, score``."""
    from PIL import Image

    from DiffBinaural.dataset.frames import to_rgb
    from DiffBinaural.dataset.layout import frame_path
    from DiffBinaural.detection.tracks import link_tracks

    per_frame: dict[int, np.ndarray] = {}
    batch = detector.options.batch
    for start in range(1, num_images + 1, batch):
        indices = list(range(start, min(num_images, start + batch - 1) + 1))
        images = []
        for i in indices:
            with Image.open(frame_path(frames_dir, i, ext)) as im:
                images.append(to_rgb(im).copy())
        for i, rows in zip(indices, detector(images)):
            if len(rows):
                per_frame[i] = rows
    return link_tracks(per_frame, **tracking)
