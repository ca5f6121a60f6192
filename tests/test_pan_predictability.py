"""bench/pan_predictability.py: the position-only predictor uses the azimuth, and the figures mean what they say."""

from __future__ import annotations

import json
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


def test_cell_azimuths_are_their_cells_centres():
    """One column puts every source straight ahead; many columns are the exact azimuth; a cell's azimuth is the
    centre of the cell the source is drawn in, and mirroring the source mirrors it."""
    from DiffBinaural.dataset import spatial

    az = np.radians(np.linspace(-44, 44, 89))
    assert np.allclose(pp.cell_azimuth(az, 1, 256, 90.0), 0.0)
    assert np.allclose(pp.cell_azimuth(az, 4096, 256, 90.0), az, atol=np.radians(0.05))
    for gx in (4, 7):
        cell_az = pp.cell_azimuth(az, gx, 256, 90.0)
        x, cx = spatial.azimuth_to_x(az, 256, 90.0), spatial.azimuth_to_x(cell_az, 256, 90.0)
        assert np.all(np.floor(cx / 256 * gx) == np.floor(x / 256 * gx))  # the same cell
        assert np.allclose((cx / 256 * gx) % 1, 0.5)  # at its centre
        inner = np.abs(np.degrees(az)) > 1  # (a source on a cell border may fall either side)
        assert np.allclose(pp.cell_azimuth(-az, gx, 256, 90.0)[inner], -cell_az[inner])


def test_the_command_reads_the_fairplay_layout_and_scores_cell_positions(tmp_path):
    data = tmp_path / "fp"
    generate_dataset(data, fmt="fairplay", num_clips=12, seconds=1.0, seed=4, max_sources=1, reverb=False,
                     split_fractions=(1, 0, 0))
    proc = subprocess.run([_proc.python(), "bench/pan_predictability.py", "--data", str(data), "--columns", "1", "64",
                           "--out", str(tmp_path / "pan.json")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "pan.json").read_text())
    cells = doc["position_from_cells_ratio"]
    assert doc["clips"] == 12 and set(cells) == {"1", "64"} and "cell of 64 columns" in proc.stdout
    # one column knows nothing of where the source is; 64 columns nearly all of what the exact azimuth knows
    assert cells["1"] > doc["position_only_ratio"] + 0.05 and abs(cells["64"] - doc["position_only_ratio"]) < 0.02
