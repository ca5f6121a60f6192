"""Per-frame detections → smooth tracks, so that a flickering detector does not make the sound jump.

A detector run on each frame on its own misses an object now and then, lists the objects in any
order, fires on a stray patch for one frame, and jitters by a few pixels. Stage 1 reads the boxes as
sound-source tokens ordered by score, so each of these would move or swap a source. :func:`link_tracks`

1. links boxes frame to frame into tracks by IoU with an optimal assignment (Hungarian algorithm,
   ``scipy.optimize.linear_sum_assignment``; a track may skip up to ``max_gap`` frames and is then
   matched against its last box);
2. drops tracks seen in fewer than ``min_length`` frames (one-frame false positives);
3. fills the frames a track skipped by linear interpolation of its corners;
4. smooths the corners with a centred moving average of ``smooth`` frames (edges: the track's own
   first/last box repeated);
5. gives every box its track's mean score, so the order of the sources among the slots stays the same
   from frame to frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of (A, 4) and (B, 4) boxes ``x1, y1, x2, y2`` → (A, B)."""
    a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (best score first), class-agnostic: a person and
    the guitar they hold are one sound source at one place, so overlapping boxes of any label merge."""
    order = list(np.argsort(-np.asarray(scores), kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(i)
        if order:
            overlap = iou(boxes[[i]], boxes[order])[0]
            order = [j for j, o in zip(order, overlap) if o <= threshold]
    return np.array(keep, dtype=int)


@dataclass
class _Track:
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def add(self, frame: int, box: np.ndarray, score: float) -> None:
        self.frames.append(frame)
        self.boxes.append(np.asarray(box, np.float64))
        self.scores.append(float(score))


def link_tracks(detections: dict[int, np.ndarray], *, iou_threshold: float = 0.3, max_gap: int = 3,
                min_length: int = 2, smooth: int = 5) -> np.ndarray:
    """Tracked, gap-filled, smoothed boxes of one clip.

    Args:
        detections: ``{frame index: (k, 5) x1, y1, x2, y2, score}`` (frames may be missing: no detections).
        iou_threshold: least IoU for a box to continue a track.
        max_gap: frames a track may go unseen and still be continued (the gap is interpolated).
        min_length: frames a track must be seen in to be kept.
        smooth: moving-average length in frames (1: no smoothing).

    Returns:
        (R, 6) float64 rows ``frame, x1, y1, x2, y2, score`` sorted by frame, then score descending;
        the score is the track's mean, so one track keeps its rank in every frame.
    """
    active: list[_Track] = []
    done: list[_Track] = []
    for frame in sorted(detections):
        rows = np.asarray(detections[frame], np.float64).reshape(-1, 5)
        still = [t for t in active if frame - t.frames[-1] <= max_gap + 1]
        done += [t for t in active if frame - t.frames[-1] > max_gap + 1]
        active = still
        unmatched = set(range(len(rows)))
        if active and len(rows):
            from scipy.optimize import linear_sum_assignment

            overlap = iou(np.stack([t.boxes[-1] for t in active]), rows[:, :4])
            for ti, di in zip(*linear_sum_assignment(-overlap)):
                if overlap[ti, di] >= iou_threshold:
                    active[ti].add(frame, rows[di, :4], rows[di, 4])
                    unmatched.discard(di)
        for di in sorted(unmatched):
            track = _Track()
            track.add(frame, rows[di, :4], rows[di, 4])
            active.append(track)
    out = [_fill_and_smooth(t, smooth) for t in done + active if len(t.frames) >= min_length]
    if not out:
        return np.zeros((0, 6))
    rows = np.concatenate(out)
    return rows[np.lexsort((-rows[:, 5], rows[:, 0]))]


def _fill_and_smooth(track: _Track, smooth: int) -> np.ndarray:
    """(n, 6) rows of one track over every frame of its span: skipped frames interpolated, corners
    smoothed by a centred moving average (edges padded with the end boxes)."""
    seen = np.asarray(track.frames)
    frames = np.arange(seen[0], seen[-1] + 1)
    corners = np.stack([np.interp(frames, seen, np.asarray(track.boxes)[:, c]) for c in range(4)], axis=1)
    if smooth > 1 and len(frames) > 1:
        half = smooth // 2
        padded = np.pad(corners, ((half, smooth - 1 - half), (0, 0)), mode="edge")
        kernel = np.ones(smooth) / smooth
        corners = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(4)], axis=1)
    score = np.full((len(frames), 1), float(np.mean(track.scores)))
    return np.concatenate([frames[:, None].astype(np.float64), corners, score], axis=1)
