"""FAIR-Play from its authors' download to the layout the loaders read, in one command.

    python DiffBinaural/prepare_fairplay.py --download FAIR-Play --out data/fairplay \
        [--new_splits PseudoBinaural/new_splits] [--max_side 480] [--workers 4] [--skip_bad]

``--download`` is FAIR-Play as shipped: the tarballs unpacked (``videos/``, ``binaural_audios/``,
``splits/``) or the Git LFS tree (the same folders). Frames are not shipped; this writes

    {out}/frames/{id}.mp4/{n:06d}.png    10 fps, frame n = the picture on screen at (n - 1) / 10 s: the index the
                                         2.5D-Visual-Sound loader computes, round((t + 0.05) * 10), for a window centred
                                         at any t in [(n - 1) / 10, n / 10); longest side <= --max_side
    {out}/binaural_audios/{id}.wav       as shipped (hard link, else copy)
    {out}/binaural16k/{id}.wav           16 kHz copy: what FAIR-Play's evaluation compares against
    {out}/splits/split{k}/{split}.txt    the 10 original splits, the h5 files' absolute paths reduced to ids
    {out}/new_splits/split{k}/{split}.txt PseudoBinaural's 5 scene-disjoint splits, when given (or in --download)

Resumable: a clip's frame folder and 16 kHz wav appear only when complete, and clips already there are
skipped. A video that cannot be decoded stops the run with one line naming it, or with ``--skip_bad`` is
counted and named in the summary.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from tqdm import tqdm

from binaural_core.atomic import atomic_output
from binaural_core.audio import BadInputError, cli_main, read_wav, save_wav
from binaural_core.splits import read_split_list
from DiffBinaural.dataset import layout
from DiffBinaural.utils.video import extract_frames

EVAL_SR = 16000
EVAL_DIR = "binaural16k"
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Summary:
    written: int = 0
    frames: int = 0
    present: int = 0
    bad: list[str] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        bad = f" (first: {self.bad[0]})" if self.bad else ""
        lists = ", ".join(f"{n} {kind}" for kind, n in self.splits.items()) or "no split files"
        return (f"prepare_fairplay: {self.written} clip(s) written ({self.frames} frames), {self.present} already "
                f"present, {len(self.bad)} skipped as bad{bad}; splits: {lists}")


def find_folder(root: str, name: str) -> str | None:
    """``root/name``, or the first ``*/name`` one or two levels down (an unpacked tarball's own folder)."""
    for pattern in (name, os.path.join("*", name), os.path.join("*", "*", name)):
        hits = sorted(p for p in glob.glob(os.path.join(root, pattern)) if os.path.isdir(p))
        if hits:
            return hits[0]
    return None


def _clip(job: tuple[str, str, str, int | None]) -> tuple[str, int, str | None]:
    """Frames and the 16 kHz copy of one clip: ``(id, frames written, problem or None)``."""
    video, wav, out, max_side = job
    clip_id = os.path.splitext(os.path.basename(video))[0]
    paths = layout.fp_paths(out, clip_id)
    try:
        audio, sr = read_wav(wav, channels=2)  # (2, S) at its own rate; checked before any frame is written
        count = 0
        if not os.path.isdir(paths["frames"]):
            count = extract_frames(video, paths["frames"], layout.FPS, max_side=max_side, ext=".png")
        target = os.path.join(out, EVAL_DIR, f"{clip_id}.wav")
        if not os.path.isfile(target):
            from binaural_core.audio import resample

            save_wav(target, resample(audio, sr, EVAL_SR), EVAL_SR)
        return clip_id, count, None
    except BadInputError as err:
        return clip_id, 0, str(err)


def _keep_audio(src: str, dst: str) -> None:
    """The shipped wav under ``dst``: a hard link where possible (no copy of ~3.6 GB), else a copy."""
    if os.path.exists(dst) or os.path.abspath(src) == os.path.abspath(dst):
        return
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        with atomic_output(dst, suffix=".wav") as tmp:
            shutil.copyfile(src, tmp)


def write_split_lists(download: str, out: str, new_splits: str | None, summary: Summary) -> None:
    """``splits/split{k}/*.txt`` from the h5 files (ids only) and ``new_splits/split{k}/*.txt``."""
    for kind, source, pattern in (("original", find_folder(download, layout.FP_SPLITS_DIR), "{}.h5"),
                                  ("scene-disjoint", new_splits or find_folder(download, "new_splits"), "{}.txt")):
        if source is None:
            continue
        count = 0
        for folder in sorted(glob.glob(os.path.join(source, "split*"))):
            files = {s: os.path.join(folder, pattern.format(s)) for s in SPLIT_NAMES}
            if not all(os.path.isfile(f) for f in files.values()):
                continue
            target = os.path.join(out, layout.FP_SPLITS_DIR if kind == "original" else "new_splits",
                                  os.path.basename(folder))
            for split, path in files.items():
                names = read_split_list(path)  # absolute h5 paths, "000383.mp3": the id
                with atomic_output(os.path.join(target, f"{split}.txt"), suffix=".txt") as tmp:
                    with open(tmp, "w") as f:
                        f.write("".join(f"{n}\n" for n in names))
            count += 1
        summary.splits[f"{kind}"] = count


def prepare_fairplay(download: str, out: str, *, new_splits: str | None = None, max_side: int | None = 480,
                     workers: int = 1, skip_bad: bool = False) -> Summary:
    """Write the loaders' layout of FAIR-Play under ``out`` (see the module docstring)."""
    videos_dir = find_folder(download, "videos")
    audio_dir = find_folder(download, layout.FP_AUDIO_DIR)
    if videos_dir is None or audio_dir is None:
        raise BadInputError(download, "not a FAIR-Play download: need videos/ and binaural_audios/ (the tarballs "
                                      "unpacked, or the Git LFS tree)")
    videos = sorted(glob.glob(os.path.join(videos_dir, "*.mp4")))
    if not videos:
        raise BadInputError(videos_dir, "no .mp4 videos")
    summary = Summary()
    jobs = []
    for video in videos:
        clip_id = os.path.splitext(os.path.basename(video))[0]
        wav = os.path.join(audio_dir, f"{clip_id}.wav")
        if not os.path.isfile(wav):
            problem = f"{video}: no binaural_audios/{clip_id}.wav beside it"
            if not skip_bad:
                raise BadInputError(video, f"no binaural_audios/{clip_id}.wav for this video")
            summary.bad.append(problem)
            continue
        _keep_audio(wav, os.path.join(out, layout.FP_AUDIO_DIR, f"{clip_id}.wav"))
        done = os.path.isdir(layout.fp_paths(out, clip_id)["frames"]) and os.path.isfile(
            os.path.join(out, EVAL_DIR, f"{clip_id}.wav"))
        if done:
            summary.present += 1
        else:
            jobs.append((video, wav, out, max_side))
    with ProcessPoolExecutor(max_workers=workers) if workers > 1 else _Serial() as pool, \
            tqdm(total=len(jobs), desc="clips", unit="clip", disable=None) as bar:
        for _, count, problem in pool.map(_clip, jobs):
            bar.update(1)
            if problem is None:
                summary.written += 1
                summary.frames += count
            elif skip_bad:
                summary.bad.append(problem)
            else:
                if hasattr(pool, "shutdown"):  # do not finish every queued clip before saying so
                    pool.shutdown(wait=True, cancel_futures=True)
                raise BadInputError(None, problem)
    write_split_lists(download, out, new_splits, summary)
    return summary


class _Serial:
    """A pool of one, in this process (``--workers 1``: tracebacks and Ctrl-C stay simple)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def map(fn, items):
        return map(fn, items)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--download", required=True, help="FAIR-Play as its authors ship it")
    p.add_argument("--out", required=True, help="the data root to write (the loaders' --data_root)")
    p.add_argument("--new_splits", default=None, help="PseudoBinaural's new_splits/ folder (default: in --download)")
    p.add_argument("--max_side", type=int, default=480, help="longest side of the frames (0: as in the video)")
    p.add_argument("--workers", type=int, default=1, help="clips prepared in parallel")
    p.add_argument("--skip_bad", action=argparse.BooleanOptionalAction, default=False,
                   help="skip (and name) videos that cannot be decoded instead of stopping")
    args = p.parse_args()
    print(prepare_fairplay(args.download, args.out, new_splits=args.new_splits, max_side=args.max_side or None,
                           workers=args.workers, skip_bad=args.skip_bad).line())


def cli() -> None:
    """The console script of this file (pyproject.toml [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
