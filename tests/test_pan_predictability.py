"""bench/pan_predictability.py: the position-only predictor uses the azimuth, and the figures mean what they say."""

from __future__ import annotations

import os
import subprocess
import sys

import _proc
import numpy as np
import pytest

from DiffBinaural.dataset.synthetic import generate_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
import pan_predictability as pp  # noqa: E402


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    out = tmp_path_factory.mktemp("pan")
    generate_dataset(out, num_clips=24, seconds=1.0, seed=4, max_sources=1, moving_prob=0.5, reverb=False)
    return out, pp.single_source_pans(str(out), 400)


def test_the_position_predictor_uses_the_azimuth(clips):
    """Free field, one source: the azimuth explains most of the pan; with the azimuths mirrored the same fit
    is worse than the mono copy. The static oracle is at most the mono copy (the median is a prediction)."""
    _, found = clips
    assert len(found) == 24 and all(c["az"].shape == (c["diff"].shape[1],) for c in found)
    good = pp.evaluate(found)
    assert good["position_only_ratio"] < 0.8 and good["static_pan_r2_from_azimuth"] > 0.5, good
    assert good["static_oracle_ratio"] <= 1.0
    held = np.arange(len(found)) % 4 == 0
    mirrored = [dict(c, az=-c["az"]) if h else c for c, h in zip(found, held)]  # the test clips' video lies
    bad = pp.evaluate(mirrored)
    assert bad["position_only_ratio"] > 1.0 > good["position_only_ratio"], (good, bad)
    assert bad["static_oracle_ratio"] == pytest.approx(good["static_oracle_ratio"])  # the oracle has no video


def test_the_command_prints_and_writes_its_figures(clips, tmp_path):
    data, _ = clips
    proc = subprocess.run([_proc.python(), "bench/pan_predictability.py", "--data", str(data), "--out",
                           str(tmp_path / "pan.json")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "24 single-source clips (6 held out)" in proc.stdout and "position only" in proc.stdout
    assert (tmp_path / "pan.json").read_text().count("position_only_ratio") == 1
