"""Video decoding shared by the preparation scripts and ``binauralize.py`` (PyAV).

Two things are fixed here so that training frames and inference frames are extracted identically:

* **frame timing**: the frame with 1-based index ``i`` is the picture *on screen* at time
  ``(i - 1) / fps`` (``dataset/layout.py``), i.e. the last decoded frame whose presentation time is at
  or before that instant. Times come from the frames' timestamps, never from counting frames, so
  variable-frame-rate phone videos are sampled correctly;
* **time origin**: the container's start time (the earliest stream start, as ffmpeg uses), so the
  video frames and the audio decoded by :func:`decode_audio` stay in sync when one stream starts late.

Every decoding failure becomes a one-line :class:`~binaural_core.audio.BadInputError` naming the file.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterator

import numpy as np
from PIL import Image

from binaural_core.audio import BadInputError, resample
from DiffBinaural.dataset.layout import FPS, frame_path

VIDEO_EXTENSIONS = (
    ".mp4",
    ".mov",
    ".m4v",
    ".mkv",
    ".webm",
    ".avi",
    ".mpg",
    ".mpeg",
    ".ts",
    ".flv",
    ".wmv",
    ".3gp",
)
_EPS = 1e-6  # seconds; a frame stamped exactly at a sampling instant counts as "at or before" it


def _why(err: Exception) -> str:
    """Short reason of a PyAV error, without the file name it repeats (the message already starts with it)."""
    reason = getattr(err, "strerror", None) or str(err)
    return f"{type(err).__name__}: {reason}"


def _open(path: str):
    import av

    if not os.path.isfile(path):
        raise BadInputError(path, "file not found")
    try:
        return av.open(path)
    except Exception as err:  # av raises many FFmpegError subtypes (InvalidData, EOF, ...): all "cannot open"
        raise BadInputError(path, f"cannot open as a media file ({_why(err)})") from None


def _origin(container) -> float:
    """Time origin in seconds: the container start time (``AV_TIME_BASE`` = microseconds)."""
    start = container.start_time
    return 0.0 if start is None else start / 1_000_000


def _to_image(frame, max_side: int | None) -> Image.Image:
    """RGB PIL image, upright (display-matrix rotation applied), longest side ≤ ``max_side``."""
    image = frame.to_image()
    # Phone videos store portrait footage as landscape + a rotation tag; players apply it, so do we.
    rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
    if rotation:
        image = image.rotate(rotation, expand=True)  # PIL rotates counterclockwise, like the tag
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.BILINEAR, reducing_gap=3.0)
    return image


def iter_frames_at_fps(
    path: str | os.PathLike, fps: float = FPS, *, max_side: int | None = None
) -> Iterator[tuple[int, Image.Image]]:
    """Yield ``(index, image)`` for index 1, 2, ...: the frame on screen at ``(index - 1) / fps``.

    Sampling stops at the end of the last decoded frame (its time + its duration), so a clip of
    ``D`` seconds gives ``ceil(D * fps)`` frames. Sampling instants before the first frame (a video
    stream that starts late) repeat the first frame.

    Raises:
        BadInputError: the file is missing, not decodable, has no video stream or no frames.
    """
    path = os.fspath(path)
    if fps <= 0:
        raise BadInputError(None, f"fps must be positive, got {fps}")
    container = _open(path)
    try:
        if not container.streams.video:
            raise BadInputError(path, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame-parallel decoding; output order is still presentation order
        origin = _origin(container)
        rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        index = 1
        prev = None  # (frame, time, cached image) of the last frame at or before the next instant
        try:
            for frame in container.decode(stream):
                if frame.time is None:  # no timestamp at all: cannot be placed in time
                    continue
                t = frame.time - origin
                # Every instant strictly before this frame shows the previous frame (or this one
                # when there is no previous: the stream started after the origin).
                while (index - 1) / fps + _EPS < t:
                    if prev is None:
                        prev = (frame, t, None)
                    if prev[2] is None:
                        prev = (prev[0], prev[1], _to_image(prev[0], max_side))
                    yield index, prev[2]
                    index += 1
                prev = (frame, t, None)
        except BadInputError:
            raise
        except Exception as err:  # corrupt packets mid-stream
            raise BadInputError(path, f"video decoding failed ({_why(err)})") from None
        if prev is None:
            raise BadInputError(path, "video stream has no decodable frames")
        frame, t, image = prev
        duration = frame.duration * frame.time_base if frame.duration and frame.time_base else 1.0 / rate
        end = t + float(duration)
        image = image if image is not None else _to_image(frame, max_side)
        while (index - 1) / fps + _EPS < end:
            yield index, image
            index += 1
    finally:
        container.close()


def decode_audio(path: str | os.PathLike, sr: int) -> np.ndarray:
    """Decode the first audio track to float32 ``(C, S)`` at ``sr`` Hz, keeping its channels.

    Sample 0 is at the container's time origin (the instant of video frame 1): a track that starts
    late is padded with leading silence, so audio and frames stay aligned. Resampling uses the same
    resampler as every other wav of the project (:func:`binaural_core.audio.resample`).

    Raises:
        BadInputError: missing or undecodable file, no audio stream, no samples.
    """
    import av

    path = os.fspath(path)
    container = _open(path)
    try:
        if not container.streams.audio:
            raise BadInputError(path, "no audio stream")
        stream = container.streams.audio[0]
        origin = _origin(container)
        native_sr = stream.rate or stream.codec_context.sample_rate
        # Only the sample format changes here (to planar float): the rate change is left to soxr.
        to_float = av.AudioResampler(format="fltp", layout=stream.layout, rate=native_sr)
        chunks: list[np.ndarray] = []
        first_time = None
        try:
            for frame in container.decode(stream):
                if first_time is None and frame.time is not None:
                    first_time = frame.time - origin
                for out in to_float.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in to_float.resample(None):  # flush
                chunks.append(out.to_ndarray())
        except Exception as err:
            raise BadInputError(path, f"audio decoding failed ({_why(err)})") from None
    finally:
        container.close()
    if not chunks or sum(c.shape[-1] for c in chunks) == 0:
        raise BadInputError(path, "audio stream has no decodable samples")
    wav = np.concatenate(chunks, axis=-1).astype(np.float32)  # (C, S) at native_sr
    if first_time:  # align sample 0 with the time origin (pad a late start, trim an early one)
        shift = int(round(first_time * native_sr))
        wav = np.pad(wav, ((0, 0), (shift, 0))) if shift > 0 else wav[:, -shift:]
    return np.ascontiguousarray(resample(wav, native_sr, sr), dtype=np.float32)


def list_videos(inputs: list[str]) -> list[str]:
    """Expand folders (their video files by extension, sorted, not recursive) and keep given files as is.

    Raises:
        BadInputError: an input that does not exist, or two videos sharing one clip name.
    """
    paths: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            paths += [
                os.path.join(item, f)
                for f in sorted(os.listdir(item))
                if f.lower().endswith(VIDEO_EXTENSIONS) and not f.startswith(".")
            ]
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise BadInputError(item, "no such file or folder")
    seen: dict[str, str] = {}
    for p in paths:  # the clip name is the basename: two sources for one name would overwrite each other
        name = clip_name(p)
        if name in seen:
            raise BadInputError(p, f"clip name {name!r} already used by {seen[name]}")
        seen[name] = p
    return paths


def clip_name(path: str) -> str:
    """Clip name of a video: its basename without the extension."""
    return os.path.splitext(os.path.basename(path))[0]


def extract_frames(
    video: str, out_dir: str, fps: float = FPS, *, max_side: int | None = None, quality: int = 95,
    ext: str = ".jpg",
) -> int:
    """Write the frames of ``video`` to ``out_dir/{index:06d}{ext}`` atomically; return how many.

    ``ext``: ``.jpg`` (RealBinaural; JPEG ``quality``) or ``.png`` (lossless, as FAIR-Play's loaders
    read them). Any existing ``out_dir`` is replaced, but only once the new frames are complete.
    """
    parent, base = os.path.split(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    # Temp folders of killed runs are hidden (dot) and never match a clip name; clear this clip's.
    for stale in glob.glob(os.path.join(parent, f".{glob.escape(base)}.tmp*")):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = os.path.join(parent, f".{base}.tmp{os.getpid()}")
    os.makedirs(tmp)
    try:
        count = 0
        for index, image in iter_frames_at_fps(video, fps, max_side=max_side):
            if ext == ".png":
                image.save(frame_path(tmp, index, ext), format="PNG", compress_level=1)  # fast, still lossless
            else:
                image.save(frame_path(tmp, index, ext), format="JPEG", quality=quality)
            count = index
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return count
