"""Sound sources found in the frames: a transformers object detector + tracking (``--boxes auto``,
``prepare_detections.py``)."""

from DiffBinaural.detection.detector import (
    DEFAULT_DETECTOR,
    DEFAULT_QUERIES,
    Detector,
    DetectorOptions,
    detect_clip,
    load_detector,
)
from DiffBinaural.detection.tracks import iou, link_tracks, nms

__all__ = ["DEFAULT_DETECTOR", "DEFAULT_QUERIES", "Detector", "DetectorOptions", "detect_clip", "iou",
           "link_tracks", "load_detector", "nms"]
