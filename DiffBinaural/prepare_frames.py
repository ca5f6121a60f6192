"""Extract RealBinaural frames (and optionally the audio track) from the user's own videos.

    python DiffBinaural/prepare_frames.py --videos DIR_OR_FILES... --out DATA_ROOT/processed/frames \
        [--fps 10] [--max_side 640] [--audio_out DIR --sr 22050] [--skip_bad] [--overwrite]

Writes ``{out}/{name}/{index:06d}.jpg`` from 000001, where ``name`` is the video's basename without
its extension and frame ``i`` shows time ``(i - 1) / fps`` (see ``DiffBinaural/utils/video.py``).
With ``--audio_out`` the first audio track is written to ``{audio_out}/{name}.wav`` at ``--sr`` Hz
with its channels kept (a binaural camera recording gives the ``binaural_audios_22050Hz`` file).

Each clip's frames are written to a hidden temporary folder that is renamed when complete, so an
interrupted run never leaves a folder that looks finished; re-running skips clips already done.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

from tqdm import tqdm

from binaural_core.audio import BadInputError, cli_main, save_wav
from DiffBinaural.dataset.layout import FPS
from DiffBinaural.utils.video import clip_name, decode_audio, extract_frames, list_videos


@dataclass
class FramesSummary:
    """What a run did, for the final one-line report."""

    written: int = 0
    frames: int = 0
    present: int = 0
    bad: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"prepare_frames: {self.written} clip(s) written ({self.frames} frames), "
            f"{self.present} already present, {len(self.bad)} skipped as bad"
        )


def prepare_frames(
    videos: list[str],
    out: str,
    fps: float = FPS,
    *,
    max_side: int | None = 640,
    audio_out: str | None = None,
    sr: int = 22050,
    quality: int = 95,
    skip_bad: bool = False,
    overwrite: bool = False,
) -> FramesSummary:
    """Extract frames (and audio with ``audio_out``) for every video of ``videos`` (files or folders).

    A clip is left alone when all its requested outputs exist, unless ``overwrite``.

    Raises:
        BadInputError: a bad video when not ``skip_bad`` (with ``skip_bad`` it is counted and reported).
    """
    paths = list_videos(videos)
    if not paths:
        raise BadInputError(None, f"no video files found in {' '.join(videos)}")
    summary = FramesSummary()
    with tqdm(paths, desc="frames", unit="clip", disable=None) as bar:
        for path in bar:
            name = clip_name(path)
            frames_dir = os.path.join(out, name)
            wav_path = None if audio_out is None else os.path.join(audio_out, f"{name}.wav")
            need_frames = overwrite or not os.path.isdir(frames_dir)
            need_audio = wav_path is not None and (overwrite or not os.path.isfile(wav_path))
            if not (need_frames or need_audio):
                summary.present += 1
                continue
            try:
                # Decode the audio first (in memory) so a clip whose audio is bad leaves no frames behind.
                audio = decode_audio(path, sr) if need_audio else None
                if need_frames:
                    summary.frames += extract_frames(
                        path, frames_dir, fps, max_side=max_side, quality=quality
                    )
                if audio is not None:
                    save_wav(wav_path, audio, sr)
            except BadInputError as err:
                if not skip_bad:
                    raise
                summary.bad.append(path)
                tqdm.write(f"skipped: {err}", file=sys.stderr)
                continue
            summary.written += 1
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", nargs="+", required=True, help="video files and/or folders of videos")
    p.add_argument("--out", required=True, help="frames root, e.g. DATA_ROOT/processed/frames")
    p.add_argument("--fps", type=float, default=FPS, help="frames per second to sample (default %(default)s)")
    p.add_argument(
        "--max_side", type=int, default=640, help="downsize so the longest side is at most this; 0 = keep"
    )
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (default %(default)s)")
    p.add_argument("--audio_out", default=None, help="also write the audio track to DIR/{name}.wav")
    p.add_argument(
        "--sr", type=int, default=22050, help="sample rate of --audio_out wavs (default %(default)s)"
    )
    p.add_argument(
        "--skip_bad",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="skip and count undecodable videos instead of stopping at the first",
    )
    p.add_argument(
        "--overwrite",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="redo clips whose outputs already exist",
    )
    return p


def main(argv: list[str] | None = None) -> FramesSummary:
    args = build_parser().parse_args(argv)
    summary = prepare_frames(
        args.videos,
        args.out,
        args.fps,
        max_side=args.max_side or None,
        audio_out=args.audio_out,
        sr=args.sr,
        quality=args.quality,
        skip_bad=args.skip_bad,
        overwrite=args.overwrite,
    )
    print(summary.line())
    return summary


def cli() -> None:
    """The console script of this file (pyproject.toml [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
