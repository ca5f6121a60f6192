"""Video frames and detection boxes → the visual inputs of Stage 1 (one place for datasets and binauralize).

* A frames folder holds ``000001.jpg``, ``000002.jpg``, ... numbered from 1 without gaps; ``.jpeg``
  and ``.png`` work too (one extension per folder, any case: :func:`layout.frame_ext`), in any PIL
  mode (RGBA, palette, grayscale, 16-bit grayscale, CMYK, ...), converted to RGB on read
  (:func:`to_rgb`).
* Detection boxes (pixels ``x1, y1, x2, y2``) from real detectors often reach a few pixels past the
  border: :func:`check_boxes` clips every box to the image and drops (and counts) a box that lies
  entirely outside it or is empty after clipping. What cannot be a box at all (a missing or
  non-numeric value, a frame that is not one of the clip's images) stays an error naming the user's
  file and line.
* :func:`read_sources` crops each box of one frame (or the whole frame) into the ``N`` slots, and
  :class:`ClipFrames` turns any time span of a clip into the model's visual inputs.
* :func:`open_clip_frames` is the one entry point: (frames folder, optional detection rows) → a checked
  :class:`ClipFrames`; the datasets and ``binauralize.py`` both use it, so every error names the
  user's own folder or CSV.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from binaural_core.audio import BadInputError
from binaural_core.splits import read_csv_table
from DiffBinaural.dataset import layout

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})  # 16-bit PNG grayscale loads as these


class ClipError(BadInputError):
    """A problem with one clip; ``kind`` is the short label counted in the skip summary."""

    def __init__(self, path: str | os.PathLike | None, problem: str, kind: str):
        super().__init__(path, problem)
        self.kind = kind


def one_line(err: Exception) -> str:
    """An exception as one short line (libsndfile's own text repeats the path: keep the reason)."""
    text = str(getattr(err, "error_string", None) or err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def count_frames(frames_dir: str) -> tuple[int, str]:
    """``(number of images, extension)`` of a frames folder numbered contiguously from 1."""
    if not os.path.isdir(frames_dir):
        raise ClipError(frames_dir, "frames folder not found", "missing file")
    files = set(os.listdir(frames_dir))
    ext = layout.frame_ext(frames_dir, files)
    if ext is None:
        found = ", ".join(f"000001{e}" for e in layout.FRAME_EXTS)
        raise ClipError(frames_dir, f"frames folder has no images (expected one of {found}, ...)", "no frames")
    n = 0
    while os.path.basename(layout.frame_path(frames_dir, n + 1, ext)) in files:
        n += 1
    total = sum(f.endswith(ext) and f[: -len(ext)].isdigit() for f in files)
    if total != n:  # a gap would surface as a crash in the middle of training
        raise ClipError(
            frames_dir, f"frame numbering has a gap: {n + 1} is missing but {total} {ext} files exist", "no frames"
        )
    return n, ext


def frame_size(frames_dir: str, ext: str) -> tuple[int, int]:
    """(width, height) of frame 1, read from the header only; all frames of a clip share it."""
    path = layout.frame_path(frames_dir, 1, ext)
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as err:
        raise ClipError(path, f"unreadable image ({one_line(err)})", "unreadable file") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: alpha is dropped, palettes expanded, grayscale repeated, CMYK and
    YCbCr converted, 16-bit grayscale scaled by 1/257 (PIL's own convert would clip it at 255)."""
    if im.mode == "RGB":
        return im
    if im.mode in SIXTEEN_BIT_MODES:
        gray = np.clip(np.asarray(im, dtype=np.float64) / 257.0, 0, 255)
        return Image.fromarray(np.round(gray).astype(np.uint8)).convert("RGB")
    if im.mode == "F":  # float images: [0, 1]
        return Image.fromarray(np.round(np.clip(np.asarray(im), 0, 1) * 255).astype(np.uint8)).convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")  # PIL warns when a palette with transparency goes straight to RGB
    return im.convert("RGB")


@dataclass
class BoxCount:
    """What :func:`check_boxes` did to a detection file's rows (for the one summary line)."""

    clipped: int = 0
    dropped: int = 0

    def add(self, other: BoxCount) -> None:
        self.clipped += other.clipped
        self.dropped += other.dropped

    def summary(self, source: str) -> str | None:
        """``"{source}: 3 box(es) clipped to the image, 1 dropped (...)"``, or None if nothing changed."""
        if not (self.clipped or self.dropped):
            return None
        return (f"{source}: {self.clipped} box(es) clipped to the image, {self.dropped} dropped "
                "(outside the image or empty after clipping)")


def check_boxes(
    name: str, source: str, rows: np.ndarray, *, num_images: int, width: int, height: int, max_sources: int
) -> tuple[dict[int, np.ndarray], BoxCount]:
    """Detection rows of one clip → ``{frame: (k, 4) float32 x1, y1, x2, y2}`` clipped to the image,
    best score first, ``k <= max_sources``; and how many boxes were clipped or dropped.

    Args:
        rows: (R, 7) float ``line, frame, x1, y1, x2, y2, score`` (NaN where a value was missing or
            not a number; ``line`` is the row's line in ``source``).

    Raises:
        ClipError: a row with a missing / non-numeric value, a frame outside ``1..num_images`` or
            corners in the wrong order (``x2 < x1``, ``y2 < y1``: most likely x, y, w, h columns); the
            message names ``source`` and the line.
    """
    count = BoxCount()
    if len(rows) == 0:
        return {}, count
    line, frame, x1, y1, x2, y2, score = rows.T
    problems = [
        (~np.all(np.isfinite(rows), axis=1), "a value is missing or not a number"),
        ((frame != np.round(frame)) | (frame < 1) | (frame > num_images),
         f"frame is not one of the clip's images 1..{num_images}"),
        # corners in the wrong order are never a detector's rounding: most often the columns are
        # x, y, width, height (or y before x), and clipping would silently drop or distort every box
        ((x2 < x1) | (y2 < y1), "x2 < x1 or y2 < y1: the columns must be the corners x1,y1,x2,y2 "
                                "(pixels), not x,y,width,height"),
    ]
    for bad, problem in problems:  # report the first offending row of the first failed check
        if np.any(bad):
            i = int(np.argmax(bad))
            box = ", ".join(f"{v:g}" for v in rows[i, 2:6])
            raise ClipError(source, f"line {int(line[i])}: clip {name!r} frame {frame[i]:g}: {problem} (box {box})",
                            "bad detection")
    clipped = np.stack([np.clip(x1, 0, width), np.clip(y1, 0, height), np.clip(x2, 0, width),
                        np.clip(y2, 0, height)], axis=1)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    changed = np.any(clipped != rows[:, 2:6], axis=1)
    count.dropped = int(np.sum(~keep))
    count.clipped = int(np.sum(keep & changed))
    order = [i for i in np.lexsort((-score, frame)) if keep[i]]  # by frame, then score descending
    grouped: dict[int, list[np.ndarray]] = {}
    for i in order:
        grouped.setdefault(int(frame[i]), []).append(clipped[i].astype(np.float32))
    return {f: np.stack(b[:max_sources]) for f, b in grouped.items()}, count


def letterbox(width: int, height: int, frame_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where an image of ``width x height`` goes in a ``frame_size = (H, W)`` canvas, keeping its aspect:
    ``(x0, y0, w, h)``. The image is as large as fits and centred; ``W - w`` and ``H - h`` are even, so
    the padding is the same on both sides and mirroring the canvas mirrors the image exactly."""
    canvas_h, canvas_w = frame_size
    scale = min(canvas_w / width, canvas_h / height)
    w = canvas_w - 2 * round((canvas_w - width * scale) / 2)
    h = canvas_h - 2 * round((canvas_h - height * scale) / 2)
    w, h = max(w, 2 - canvas_w % 2), max(h, 2 - canvas_h % 2)
    return (canvas_w - w) // 2, (canvas_h - h) // 2, w, h


# Short side of the default whole-frame input: at least 4 cells of the small CNN's stride 16 (a 4 x 8
# grid of FAIR-Play's 2:1 frames from a 4 x 8 feature map, not a smaller map stretched).
MIN_FRAME_SIDE = 64


def scene_size(width: int, height: int, *, image_size: int, frame_side: int | None = None) -> tuple[int, int]:
    """``(H, W)`` a dataset chooses for frames of ``width x height`` when no ``frame_size`` is given: short side
    ``max(image_size, 64)``, or ``frame_side`` (``--grid_pool crops``) at most the frames' own short side
    (never an upsampled copy); :func:`default_frame_size` rounds it."""
    side = min(frame_side, width, height) if frame_side is not None else max(image_size, MIN_FRAME_SIDE)
    return default_frame_size(width, height, short_side=side)


def default_frame_size(width: int, height: int, *, short_side: int) -> tuple[int, int]:
    """``(H, W)`` of the whole-frame input for frames of ``width x height``: the short side is
    ``short_side`` and the long side keeps the aspect, both rounded to multiples of 16 (the small CNN's
    stride) so the backbone's feature map tiles the frame without a remainder."""
    def r16(x: float) -> int:
        return max(16, int(round(x / 16)) * 16)
    if width >= height:
        return r16(short_side), r16(short_side * width / height)
    return r16(short_side * height / width), r16(short_side)


def read_sources(path: str, boxes: np.ndarray | None, out_images: np.ndarray | None,
                 out_positions: np.ndarray | None, *, scene: np.ndarray | None = None) -> int:
    """Crop each box (or, with ``boxes=None``, the whole frame) of one image into ``out_images``
    (N, P, P, 3) uint8 and write the box centres ``(cx / width, cy / height)`` to ``out_positions``
    (N, 2); returns how many slots were filled. Boxes must lie inside the image (:func:`check_boxes`).

    ``scene`` (H, W, 3) uint8: also write the whole frame there, resized keeping its aspect and centred
    (:func:`letterbox`; the rest stays as it is, zeros). ``out_images=None``: the scene only.
    """
    size = out_images.shape[1] if out_images is not None else None
    try:
        with Image.open(path) as im:
            width, height = im.size
            regions = boxes if boxes is not None else np.array([[0, 0, width, height]], np.float32)
            # Decode a JPEG at the coarsest DCT scale that still leaves every region >= size pixels
            # on its short side (and the scene at least its canvas size): a large speed-up for big
            # frames and small sizes (other formats: no-op).
            scale = 0.0
            if size is not None:
                short = float(np.min(np.minimum(regions[:, 2] - regions[:, 0], regions[:, 3] - regions[:, 1])))
                scale = size / max(short, 1e-6)
            if scene is not None:
                scale = max(scale, scene.shape[1] / width, scene.shape[0] / height)
            scale = min(1.0, scale)
            if im.format == "JPEG":
                im.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
            rgb = to_rgb(im)
            rgb.load()  # decode now, while the file is open
    except Exception as err:
        raise BadInputError(path, f"unreadable image ({one_line(err)})") from None
    if scene is not None:
        x0, y0, w, h = letterbox(width, height, scene.shape[:2])
        scene[y0:y0 + h, x0:x0 + w] = np.asarray(rgb.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=3.0))
    if out_images is None:
        return 0
    sx, sy = rgb.width / width, rgb.height / height
    for j, (x1, y1, x2, y2) in enumerate(regions):
        # reducing_gap: integer pre-reduction for big shrinks, ~3x faster, visually the same
        crop = rgb.resize((size, size), Image.Resampling.BILINEAR, box=(x1 * sx, y1 * sy, x2 * sx, y2 * sy),
                          reducing_gap=3.0)
        out_images[j] = np.asarray(crop)
        out_positions[j] = ((x1 + x2) / (2 * width), (y1 + y2) / (2 * height))
    return len(regions)


def read_detections(path: str, *, clip: str | None = None) -> dict[str, np.ndarray]:
    """Detection CSV → {clip name: (k, 7) float64 rows ``line, frame, x1, y1, x2, y2, score``}.

    ``clip``: the boxes of this one clip (a user's boxes for one video): the ``name`` column is optional;
    where it names several clips (a whole data set's CSV) only the rows of ``clip`` are kept, and none
    is an error. Values that are not numbers become NaN here and are reported, with their line, by
    :func:`check_boxes` when the clip that owns them is opened (so ``skip_bad`` can drop just that clip).
    """
    table = read_csv_table(path)
    needed = layout.DETECTION_COLUMNS if clip is None else layout.DETECTION_COLUMNS[1:]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise BadInputError(path, f"missing column(s) {', '.join(missing)} (need {','.join(needed)})")
    lines = np.arange(len(table)) + 2  # file line of each row (line 1 is the header)
    if clip is not None and "name" in table.columns and table["name"].str.strip().nunique() > 1:
        mine = (table["name"].str.strip() == clip).to_numpy()
        if not mine.any():
            names = ", ".join(sorted(table["name"].str.strip().unique())[:5])
            raise BadInputError(path, f"boxes of several clips ({names}, ...), none named {clip!r}")
        table, lines = table[mine].reset_index(drop=True), lines[mine]
    values = np.empty((len(table), 7), np.float64)
    values[:, 0] = lines
    for j, column in enumerate(layout.DETECTION_COLUMNS[1:], start=1):
        values[:, j] = np.array([_number(v) for v in table[column]], np.float64)
    if clip is not None:
        return {clip: values}
    names = table["name"].str.strip()
    groups = names.groupby(names).indices  # name -> row positions, one pass over the table
    return {name: values[rows] for name, rows in groups.items()}


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


@dataclass
class ClipFrames:
    """The checked frames of one clip: ``num_images`` images ``{frames_dir}/{i:06d}{ext}`` and the
    boxes per frame index (``(k, 4)`` pixels inside the image, best first); ``size`` = (width, height)
    of its images, when known."""

    frames_dir: str
    ext: str
    num_images: int
    boxes: dict[int, np.ndarray]
    size: tuple[int, int] | None = None

    def indices(self, start_s: float, duration_s: float, num_frames: int, fps: float) -> list[int]:
        """The ``L = num_frames`` 1-based frame indices at times ``start_s + (k + 0.5) / L * duration_s``
        (frame ``i`` shows ``(i - 1) / fps``), clamped to the images that exist."""
        return [min(max(layout.frame_index_at(start_s + (k + 0.5) / num_frames * duration_s, fps), 1),
                    self.num_images) for k in range(num_frames)]

    def visual_inputs(self, start_s: float, duration_s: float, *, num_frames: int, max_sources: int,
                      image_size: int, fps: float, tokens: str = "boxes", frame_size: tuple[int, int] | None = None,
                      flip: bool = False) -> dict[str, torch.Tensor]:
        """The visual inputs of the span, as the dict of :data:`VISUAL_KEYS` that ``tokens`` uses
        (shapes in :mod:`DiffBinaural.dataset.base`): ``boxes``: ``frames`` (L, N, 3, P, P) float32 RGB
        in [0, 1], ``positions`` (L, N, 2), ``mask`` (L, N) (True = padded slot); ``grid``: ``scene``
        (L, 3, H, W), the whole frame in ``frame_size = (H, W)`` (aspect kept, :func:`letterbox`);
        ``both``: all four. ``flip`` mirrors everything (:func:`mirror_visual`)."""
        use_boxes, use_grid = token_parts(tokens)
        if use_grid and frame_size is None:
            raise ValueError(f"visual tokens {tokens!r} need a frame_size (H, W)")
        images = np.zeros((num_frames, max_sources, image_size, image_size, 3), np.uint8) if use_boxes else None
        positions = np.zeros((num_frames, max_sources, 2), np.float32)
        mask = np.ones((num_frames, max_sources), bool)
        scenes = np.zeros((num_frames, *frame_size, 3), np.uint8) if use_grid else None
        for k, frame in enumerate(self.indices(start_s, duration_s, num_frames, fps)):
            path = layout.frame_path(self.frames_dir, frame, self.ext)
            used = read_sources(path, self.boxes.get(frame) if use_boxes else None,
                                None if images is None else images[k], positions[k],
                                scene=None if scenes is None else scenes[k])
            mask[k, :used] = False
        inputs: dict[str, torch.Tensor] = {}
        if use_boxes:
            inputs.update(frames=_to_float(torch.from_numpy(images).permute(0, 1, 4, 2, 3)),
                          positions=torch.from_numpy(positions), mask=torch.from_numpy(mask))
        if use_grid:
            inputs["scene"] = _to_float(torch.from_numpy(scenes).permute(0, 3, 1, 2))
        return mirror_visual(inputs) if flip else inputs


# The visual inputs of Stage 1 (keys of a dataset item and of the model's keyword arguments): the box
# crops, their centres and slot mask (box tokens), and the whole frame (grid tokens).
VISUAL_KEYS = ("frames", "positions", "mask", "scene")
VISUAL_TOKENS = ("boxes", "grid", "both")


def token_parts(tokens: str) -> tuple[bool, bool]:
    """``(uses box tokens, uses grid tokens)`` of a ``visual_tokens`` mode."""
    if tokens not in VISUAL_TOKENS:
        raise ValueError(f"unknown visual tokens {tokens!r}; choose from {VISUAL_TOKENS}")
    return tokens != "grid", tokens != "boxes"


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)


def mirror_visual(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The visual inputs of the left-right mirrored scene: every image mirrored, ``cx -> 1 - cx`` in
    the valid box slots (padded slots keep position 0). Grid cells need no position change here: the
    encoder's cell ``(cx, cy)`` of the mirrored frame sees what cell ``(1 - cx, cy)`` saw
    (:func:`letterbox` pads both sides alike and the pooling cells are symmetric).

    ``inputs``: the dict of :data:`VISUAL_KEYS` present, any leading dims ``...`` (e.g. (L, N) or
    (B, L, N)): ``frames`` (..., 3, P, P), ``positions`` (..., 2), ``mask`` (...) with True = padded,
    ``scene`` (..., 3, H, W). The training flip (``--flip_aug``) and the test-time flip
    (``--flip_tta``) both use this, with the ears swapped by the caller.
    """
    out = dict(inputs)
    if "frames" in inputs:
        positions, mask = inputs["positions"], inputs["mask"]
        cx = torch.where(mask, torch.zeros_like(positions[..., 0]), 1.0 - positions[..., 0])
        out.update(frames=inputs["frames"].flip(-1), positions=torch.stack([cx, positions[..., 1]], dim=-1))
    if "scene" in inputs:
        out["scene"] = inputs["scene"].flip(-1)
    return out


def open_clip_frames(frames_dir: str, *, name: str, max_sources: int, detections: tuple[str, np.ndarray] | None = None
                     ) -> tuple[ClipFrames, BoxCount]:
    """Check a clip's frames folder (numbering, first image's header) and its detection rows
    (``(source file, rows)`` as from :func:`read_detections`); returns the clip's frames and what
    :func:`check_boxes` clipped or dropped. Errors are :class:`ClipError` lines naming the user's
    folder or detection file and line."""
    num_images, ext = count_frames(frames_dir)
    width, height = frame_size(frames_dir, ext)
    source, rows = detections or ("", np.zeros((0, 7)))
    boxes, count = check_boxes(name, source, rows, num_images=num_images, width=width, height=height,
                               max_sources=max_sources)
    return ClipFrames(frames_dir, ext, num_images, boxes, (width, height)), count
