"""Write ``splits/{train,val,test}.csv`` for a RealBinaural data root, checking the clips on the way.

    python DiffBinaural/prepare_splits.py --data_root DIR [--val 0.1 --test 0.1 --seed 0] \
        [--group_regex '^(.*)_[^_]+$'] [--require_frames] [--overwrite]

The clips are the ``processed/binaural_audios_22050Hz/*.wav`` files. A clip is kept when its wav is
readable, 2-channel, 22050 Hz and (with ``--require_frames``, the default) its frame folder holds
``000001.jpg``; the others are listed with the reason. ``--group_regex`` maps each name to a group
(the first capture group of a match at the start of the name, else the whole match; names that do
not match are their own group) and whole groups are assigned to one split, so clips cut from one
recording never straddle train and test. The assignment depends only on the set of names and
``--seed``. Existing split files are only replaced with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import sys
from dataclasses import dataclass, field

import soundfile as sf
from tqdm import tqdm

from binaural_core.atomic import atomic_output
from binaural_core.audio import BadInputError, cli_main
from DiffBinaural.dataset.layout import (
    RB_BINAURAL_DIR,
    RB_FRAMES_DIR,
    SPLITS,
    frame_ext,
    frame_path,
    rb_paths,
    rb_split_csv,
)

SAMPLING_RATE = 22050  # the rate the layout's folder name promises
MAX_LISTED = 20  # names listed per problem in the report; the count is always complete


@dataclass
class SplitsSummary:
    """What a run found and wrote."""

    splits: dict[str, list[str]] = field(default_factory=dict)
    groups: int = 0
    excluded: dict[str, str] = field(default_factory=dict)  # name -> reason
    frames_without_audio: list[str] = field(default_factory=list)

    def line(self) -> str:
        counts = " ".join(f"{s}={len(self.splits.get(s, []))}" for s in SPLITS)
        return f"prepare_splits: wrote {counts} clips ({self.groups} groups), {len(self.excluded)} skipped"


def check_clips(
    data_root: str, *, require_frames: bool = True
) -> tuple[list[str], dict[str, str], list[str]]:
    """Find and check the clips of ``data_root``.

    Returns:
        (usable names sorted, {excluded name: reason}, names of frame folders that have no binaural wav).
    """
    audio_dir = os.path.join(data_root, RB_BINAURAL_DIR)
    if not os.path.isdir(audio_dir):
        raise BadInputError(audio_dir, "no such folder (the binaural wavs define the clips)")
    names = sorted(f[:-4] for f in os.listdir(audio_dir) if f.endswith(".wav") and not f.startswith("."))
    if not names:
        raise BadInputError(audio_dir, "no .wav files")
    usable: list[str] = []
    excluded: dict[str, str] = {}
    with tqdm(names, desc="check", unit="clip", disable=None) as bar:
        for name in bar:
            paths = rb_paths(data_root, name)
            try:
                info = sf.info(paths["binaural"])
            except Exception as err:  # soundfile's error types vary by version: all mean unreadable
                excluded[name] = f"unreadable wav ({type(err).__name__})"
                continue
            if info.channels != 2:
                excluded[name] = f"wav has {info.channels} channel(s), expected 2"
            elif info.samplerate != SAMPLING_RATE:
                excluded[name] = f"wav is {info.samplerate} Hz, expected {SAMPLING_RATE}"
            elif info.frames == 0:
                excluded[name] = "wav is empty"
            elif require_frames and not (os.path.isdir(paths["frames"]) and frame_ext(paths["frames"])):
                excluded[name] = "no frames (missing " + frame_path(paths["frames"], 1) + ", .jpeg or .png)"
            else:
                usable.append(name)
    frames_dir = os.path.join(data_root, RB_FRAMES_DIR)
    known = set(names)
    orphans = sorted(
        d
        for d in (os.listdir(frames_dir) if os.path.isdir(frames_dir) else [])
        if not d.startswith(".") and d not in known and os.path.isdir(os.path.join(frames_dir, d))
    )
    return usable, excluded, orphans


def group_of(name: str, pattern: re.Pattern[str] | None) -> str:
    """Group key of ``name``: 1st capture group (or whole match) of ``pattern`` at its start, else name."""
    if pattern is None:
        return name
    m = pattern.match(name)
    if m is None:
        return name
    key = m.group(1) if pattern.groups else m.group(0)
    return key if key else name


def split_names(
    names: list[str], val: float = 0.1, test: float = 0.1, seed: int = 0, group_regex: str | None = None
) -> dict[str, list[str]]:
    """Assign whole groups to test, val, then train until each reaches its share of the clips.

    Shares are rounded and at least one clip when the fraction is positive; a large group can push a
    split past its share by at most that group. Result lists are sorted.

    Raises:
        BadInputError: bad fractions or regex, or too few groups to leave training clips.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise BadInputError(None, f"--val {val} and --test {test} must be in [0, 1) with a sum below 1")
    try:
        pattern = re.compile(group_regex) if group_regex else None
    except re.error as err:
        raise BadInputError(None, f"--group_regex {group_regex!r} is not a valid regex ({err})") from None
    groups: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        groups.setdefault(group_of(name, pattern), []).append(name)
    keys = sorted(groups)  # sorted first: the shuffle then depends on the seed only, not on listing order
    random.Random(seed).shuffle(keys)
    n = sum(len(v) for v in groups.values())
    quota = {
        "test": max(1, round(test * n)) if test > 0 else 0,
        "val": max(1, round(val * n)) if val > 0 else 0,
    }
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for key in keys:
        target = next((s for s in ("test", "val") if len(out[s]) < quota[s]), "train")
        out[target] += groups[key]
    if not out["train"]:
        raise BadInputError(
            None,
            f"only {len(keys)} group(s) for {n} clip(s): "
            f"nothing left for train with --val {val} --test {test}",
        )
    return {s: sorted(v) for s, v in out.items()}


def write_splits(data_root: str, splits: dict[str, list[str]], *, overwrite: bool = False) -> None:
    """Write one ``name``-header CSV per split; refuses existing files unless ``overwrite``."""
    paths = {s: rb_split_csv(data_root, s) for s in splits}
    for path in paths.values():
        if os.path.exists(path) and not overwrite:
            raise BadInputError(path, "already exists (pass --overwrite to replace the splits)")
    for split, path in paths.items():
        with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["name"])
            writer.writerows([n] for n in splits[split])


def prepare_splits(
    data_root: str,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    *,
    group_regex: str | None = None,
    require_frames: bool = True,
    overwrite: bool = False,
) -> SplitsSummary:
    """Check the clips of ``data_root``, split the usable ones and write the split files."""
    # Refuse early, before the (possibly long) clip check, when the splits exist.
    if not overwrite:
        for s in SPLITS:
            if os.path.exists(rb_split_csv(data_root, s)):
                raise BadInputError(
                    rb_split_csv(data_root, s), "already exists (pass --overwrite to replace the splits)"
                )
    usable, excluded, orphans = check_clips(data_root, require_frames=require_frames)
    summary = SplitsSummary(excluded=excluded, frames_without_audio=orphans)
    report(summary)
    if not usable:
        raise BadInputError(data_root, f"no usable clips ({len(excluded)} excluded)")
    summary.splits = split_names(usable, val, test, seed, group_regex)
    pattern = re.compile(group_regex) if group_regex else None
    summary.groups = len({group_of(n, pattern) for n in usable})
    write_splits(data_root, summary.splits, overwrite=overwrite)
    return summary


def report(summary: SplitsSummary) -> None:
    """Warn on stderr about excluded clips and frame folders without audio (at most MAX_LISTED each)."""
    items = sorted(summary.excluded.items())
    if items:
        print(f"warning: {len(items)} clip(s) excluded:", file=sys.stderr)
        for name, reason in items[:MAX_LISTED]:
            print(f"  {name}: {reason}", file=sys.stderr)
        if len(items) > MAX_LISTED:
            print(f"  ... and {len(items) - MAX_LISTED} more", file=sys.stderr)
    if summary.frames_without_audio:
        shown = ", ".join(summary.frames_without_audio[:MAX_LISTED])
        more = len(summary.frames_without_audio) - MAX_LISTED
        print(
            f"warning: {len(summary.frames_without_audio)} frame folder(s) without a binaural wav: {shown}"
            + (f" ... and {more} more" if more > 0 else ""),
            file=sys.stderr,
        )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_root", required=True, help="RealBinaural data root")
    p.add_argument("--val", type=float, default=0.1, help="fraction of clips for val (default %(default)s)")
    p.add_argument("--test", type=float, default=0.1, help="fraction of clips for test (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default %(default)s)")
    p.add_argument(
        "--group_regex",
        default=None,
        help="clips whose names give the same group stay in one split, e.g. '^(.*)_[^_]+$' "
        "groups by the prefix before the last '_' (default: every clip is its own group)",
    )
    p.add_argument(
        "--require_frames",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="only keep clips that have a frame folder with 000001.jpg (.jpeg, .png)",
    )
    p.add_argument(
        "--overwrite",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="replace existing split files",
    )
    return p


def main(argv: list[str] | None = None) -> SplitsSummary:
    args = build_parser().parse_args(argv)
    summary = prepare_splits(
        args.data_root,
        args.val,
        args.test,
        args.seed,
        group_regex=args.group_regex,
        require_frames=args.require_frames,
        overwrite=args.overwrite,
    )
    print(summary.line())
    return summary


def cli() -> None:
    """The console script of this file (pyproject.toml [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
