"""--tail_seed and bench/tail_floor.py: two renders that differ in the late tail and nothing else."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import _proc
import pytest

from binaural_core.audio import BadInputError, load_wav
from DiffBinaural.dataset import layout, synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
import tail_floor  # noqa: E402

FLAGS = ["--num_clips", "3", "--seconds", "1", "--seed", "2", "--room", "image_source", "--workers", "1",
         "--rt60", "0.6", "0.8"]


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    work = tmp_path_factory.mktemp("floor")
    proc = subprocess.run([_proc.python(), "bench/tail_floor.py", "--work", str(work), "--out", str(work / "f.json"),
                           *FLAGS], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3 clips" in proc.stdout and "tail floor" in proc.stdout
    return str(work / "tail0"), str(work / "tail1"), json.loads((work / "f.json").read_text())


def test_the_tail_seed_changes_the_tail_and_nothing_else(twins):
    first, second, _ = twins
    meta = [synthetic.load_meta(root) for root in (first, second)]
    assert meta[0]["clips"] == meta[1]["clips"]  # the same rooms, positions, sources
    for name, clip in meta[0]["clips"].items():
        a, b = (load_wav(layout.rb_paths(r, name)["binaural"], sampling_rate=synthetic.SAMPLE_RATE, channels=2)
                for r in (first, second))
        folders = [layout.rb_paths(r, name)["frames"] for r in (first, second)]
        pictures = [[open(os.path.join(f, n), "rb").read() for n in sorted(os.listdir(f))] for f in folders]
        assert pictures[0] == pictures[1] and pictures[0]  # the same video
        start = int(clip["room"]["tail_start_s"] * synthetic.SAMPLE_RATE)  # the tail begins after this
        head_a, head_b = a[:, :start], b[:, :start]
        gain = float((head_a * head_b).sum() / max((head_b**2).sum(), 1e-12))  # each clip has its own peak
        assert abs(head_a - gain * head_b).max() < 2e-4, name  # the direct sound and the images: equal (16-bit)
        assert abs(a - b).max() > 1e-3, name  # the tail: drawn anew


def test_the_floor_is_zero_for_a_set_against_itself_and_in_range_otherwise(twins):
    first, second, written = twins
    assert tail_floor.floors(first, first)["tail_floor_ratio"] == 0.0
    got = tail_floor.floors(first, second)
    assert got["tail_floor_ratio"] == pytest.approx(written["tail_floor_ratio"])  # the command's own figure
    assert 0.0 < got["tail_floor_ratio"] < 1.0
    assert got["sampler_floor_ratio"]["4"] == pytest.approx(got["tail_floor_ratio"] * math.sqrt(1.25))


def test_a_tail_seed_without_an_image_source_room_stops(tmp_path):
    with pytest.raises(BadInputError, match="--tail_seed"):
        synthetic.generate_dataset(tmp_path / "d", num_clips=1, seconds=1.0, tail_seed=1)
