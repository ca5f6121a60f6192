"""RealBinaural inputs that are broken: one line naming the file, or skipped and counted with --skip_bad."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import soundfile as sf
from test_datasets import HOP, SEG, SR, _append_detection, rb, rb_root, tone, write_csv  # noqa: F401 (rb_root: the fixture)

from binaural_core.audio import BadInputError
from DiffBinaural.dataset import layout


def _wav(root):
    return layout.rb_paths(root, "b")["binaural"]


def _clear_frames(root):
    folder = layout.rb_paths(root, "b")["frames"]
    for f in os.listdir(folder):
        os.remove(os.path.join(folder, f))


BAD_CASES = {  # case: (break clip "b", file named in the message, kind counted by skip_bad)
    "missing": (lambda r: os.remove(_wav(r)), _wav, "missing file"),
    "unreadable": (lambda r: open(_wav(r), "wb").write(b"not a wav at all"), _wav, "unreadable file"),
    "empty": (lambda r: sf.write(_wav(r), np.zeros((0, 2), np.float32), SR), _wav, "empty audio"),
    "channels": (lambda r: sf.write(_wav(r), tone(440, SR), SR), _wav, "wrong channel count"),
    "rate": (lambda r: sf.write(_wav(r), np.zeros((16000, 2), np.float32), 16000), _wav, "wrong sample rate"),
    "short": (lambda r: sf.write(_wav(r), np.zeros((SEG * HOP - 1, 2), np.float32), SR), _wav, "too short"),
    "no_frames": (_clear_frames, lambda r: layout.rb_paths(r, "b")["frames"], "no frames"),
    "box_not_a_number": (
        lambda r: _append_detection(r, "b,3,10,ten,50,50,0.9"),
        lambda r: os.path.join(r, layout.RB_DETECTIONS) + ": line 20:",
        "bad detection",
    ),
    "box_missing_value": (
        lambda r: _append_detection(r, "b,3,10,10,,50,0.9"),
        lambda r: os.path.join(r, layout.RB_DETECTIONS) + ": line 20:",
        "bad detection",
    ),
    "box_frame_out_of_range": (
        lambda r: _append_detection(r, "b,11,10,10,50,50,0.9"),
        lambda r: os.path.join(r, layout.RB_DETECTIONS) + ": line 20:",
        "bad detection",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_raises_one_line_or_is_skipped(rb_root, case, caplog):
    breaker, culprit, kind = BAD_CASES[case]
    breaker(rb_root)
    with pytest.raises(BadInputError) as err:
        rb(rb_root, "train")
    message = str(err.value)
    assert culprit(rb_root) in message and "\n" not in message
    with caplog.at_level(logging.WARNING):
        ds = rb(rb_root, "train", skip_bad=True)
    assert ds.names == ["a"] and ds.skipped == {kind: 1}
    summary = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(summary) == 1 and "RealBinauralDataset(train): skipped 1 of 2 clips" in summary[0]


def test_skip_summary_counts_and_empty_split(rb_root):
    names = ["a", "b", "c", "d"]  # c, d: no files at all; b: too short
    write_csv(layout.rb_split_csv(rb_root, "train"), "name", names)
    BAD_CASES["short"][0](rb_root)
    ds = rb(rb_root, "train", skip_bad=True)
    assert ds.names == ["a"] and ds.skipped == {"missing file": 2, "too short": 1}
    write_csv(layout.rb_split_csv(rb_root, "train"), "name", ["c", "d"])
    with pytest.raises(BadInputError, match="no usable clips"):
        rb(rb_root, "train", skip_bad=True)


def test_csv_without_name_column(rb_root):
    path = layout.rb_split_csv(rb_root, "val")
    write_csv(path, "clip", ["a"])
    with pytest.raises(BadInputError, match="no 'name' column") as err:
        rb(rb_root, "val", skip_bad=True)  # a broken list is never skipped
    assert path in str(err.value)


def test_mono_length_mismatch(rb_root):
    mono = layout.rb_paths(rb_root, "a")["mono"]
    sf.write(mono, tone(1000, SR // 2), SR)
    with pytest.raises(BadInputError, match="mono has") as err:
        rb(rb_root, "val")
    assert mono in str(err.value)
