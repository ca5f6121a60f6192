"""On-disk dataset layouts (docs/formats.md): the one place that spells the paths.

The synthetic generator writes these layouts, the loaders read them and the preparation scripts
produce them, all through the functions below.

RealBinaural (``data_root``)::

    processed/mono_audios_22050Hz/{name}.wav        mono (optional: else (L+R)/2 of the binaural file)
    processed/binaural_audios_22050Hz/{name}.wav    2 channels, 22050 Hz, channel 0 = left
    processed/frames/{name}/{index:06d}.jpg         frames from index 000001 at FPS (.jpg/.jpeg/.png)
    action_detection_results/detection_results.csv  name,frame,x1,y1,x2,y2,score (pixels; frame = index)
    splits/{train,val,test}.csv                     header: name

FAIR-Play (``data_root``)::

    binaural_audios/{id}.wav                        any rate, resampled to 22050 on load
    frames/{id}.mp4/{n:06d}.png                     10 fps (.png as the authors extract them; .jpg/.jpeg too)
    splits/split{k}/{train,val,test}.h5             key "audio": wav paths (only the basename is used)

Frame timing (both layouts): the frame with 1-based index ``i`` shows time ``(i - 1) / FPS`` seconds.
"""

from __future__ import annotations

import os

from binaural_core.splits import H5_KEY

FPS = 10  # frames per second of the extracted video frames (both datasets)
SPLITS = ("train", "val", "test")
DETECTION_COLUMNS = ("name", "frame", "x1", "y1", "x2", "y2", "score")
FRAME_EXTS = (".jpg", ".jpeg", ".png")  # any case; one extension per folder, found from frame 000001
FRAME_PATTERN = "{index:06d}.jpg"  # what this project writes

# --- RealBinaural -------------------------------------------------------------------------------
RB_MONO_DIR = os.path.join("processed", "mono_audios_22050Hz")
RB_BINAURAL_DIR = os.path.join("processed", "binaural_audios_22050Hz")
RB_FRAMES_DIR = os.path.join("processed", "frames")
RB_DETECTIONS = os.path.join("action_detection_results", "detection_results.csv")
RB_SPLITS_DIR = "splits"

# --- FAIR-Play ----------------------------------------------------------------------------------
FP_AUDIO_DIR = "binaural_audios"
FP_FRAMES_DIR = "frames"
FP_SPLITS_DIR = "splits"
FP_H5_KEY = H5_KEY


def frame_index_at(time_s: float, fps: float = FPS) -> int:
    """1-based index of the frame shown at ``time_s`` (nearest frame; not clamped)."""
    return int(round(time_s * fps)) + 1


def frame_time(index: int, fps: float = FPS) -> float:
    """Time in seconds shown by the frame with 1-based ``index``."""
    return (index - 1) / fps


def rb_paths(data_root: str, name: str) -> dict[str, str]:
    """Paths of one RealBinaural clip: ``mono``, ``binaural`` wavs and the ``frames`` folder."""
    return {
        "mono": os.path.join(data_root, RB_MONO_DIR, f"{name}.wav"),
        "binaural": os.path.join(data_root, RB_BINAURAL_DIR, f"{name}.wav"),
        "frames": os.path.join(data_root, RB_FRAMES_DIR, name),
    }


def rb_split_csv(data_root: str, split: str) -> str:
    return os.path.join(data_root, RB_SPLITS_DIR, f"{split}.csv")


def fp_paths(data_root: str, clip_id: str) -> dict[str, str]:
    """Paths of one FAIR-Play clip: the ``binaural`` wav and the ``frames`` folder (named like the mp4)."""
    return {
        "binaural": os.path.join(data_root, FP_AUDIO_DIR, f"{clip_id}.wav"),
        "frames": os.path.join(data_root, FP_FRAMES_DIR, f"{clip_id}.mp4"),
    }


def fp_split_h5(data_root: str, split: str, split_index: int = 1) -> str:
    return os.path.join(data_root, FP_SPLITS_DIR, f"split{split_index}", f"{split}.h5")


def frame_path(frames_dir: str, index: int, ext: str = ".jpg") -> str:
    """Path of the frame with 1-based ``index`` (``ext``: the folder's, from :func:`frame_ext`)."""
    return os.path.join(frames_dir, f"{index:06d}{ext}")


def frame_ext(frames_dir: str, files: set[str] | None = None) -> str | None:
    """The extension of a frames folder's images (``.jpg``, ``.jpeg`` or ``.png``, as spelled on
    disk, e.g. ``.PNG``), found from frame ``000001``; None when there is no first frame."""
    files = set(os.listdir(frames_dir)) if files is None else files
    for name in sorted(files):
        stem, ext = os.path.splitext(name)
        if stem == "000001" and ext.lower() in FRAME_EXTS:
            return ext
    return None
