"""The position probe (DiffBinaural.evaluation.probe): moving a source's picture from the left third of
the frame to the right third must flip the predicted L−R of a model that looks, and not of one that
does not. These tests check the mechanics: where the crop goes, which bins are read, the sign, the
whole command on a micro model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from _runs import micro_config, write_run  # tests/ is on sys.path under pytest
from PIL import Image

from DiffBinaural.evaluation.probe import DB_PER_NEPER, loud_lr_db, main, probe_clip, probe_images, summarise

RED = (230, 20, 20)


def _frame(width=120, height=60, box=(50, 20, 66, 36)) -> Image.Image:
    rng = np.random.default_rng(0)
    rgb = rng.integers(90, 160, (height, width, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    rgb[y1:y2, x1:x2] = RED
    return Image.fromarray(rgb)


def test_the_crop_moves_to_the_centre_of_each_outer_third():
    box = (50, 20, 66, 36)
    images = probe_images(_frame(box=box), box)
    for side, centre in (("left", 20), ("right", 100)):  # 1/6 and 5/6 of 120 pixels
        image, pasted = images[side]
        rgb = np.asarray(image)
        red = np.argwhere(np.all(rgb == RED, axis=-1))
        assert red[:, 1].min() == pasted[0] and red[:, 1].max() == pasted[2] - 1
        assert abs((pasted[0] + pasted[2]) / 2 - centre) <= 0.5 and pasted[1::2] == [20, 36]  # same size, height
        assert len(red) == 16 * 16  # the old place is background now: no second copy
    with pytest.raises(ValueError, match="empty box"):
        probe_images(_frame(), (10, 10, 10, 20))


def test_only_the_loud_bins_are_read():
    mono = torch.full((8, 10), -10.0)
    mono[2:4, 3:7] = 0.0  # the loud bins: 8 of 80
    mels = torch.zeros(2, 8, 10)
    mels[0] += 1.0  # left louder by 1 neper where it counts ...
    mels[1, mono < -5] = 50.0  # ... and a huge opposite difference in the quiet bins, which must not count
    assert loud_lr_db(mels, mono) == pytest.approx(DB_PER_NEPER)
    assert loud_lr_db(mels, mono[None], loud_db=200.0) < -100  # every bin: the quiet ones dominate


def _looks(frames) -> torch.Tensor:
    """A model that looks: L−R = +1 neper when the red source is in the left half of its scene."""
    scene = frames.visual_inputs(0.0, 0.3, num_frames=1, max_sources=1, image_size=8, fps=10.0, tokens="grid",
                                 frame_size=(32, 64))["scene"][0]
    red = (scene[0] > 0.8) & (scene[1] < 0.2)
    side = 1.0 if red.nonzero()[:, 1].float().mean() < 32 else -1.0
    return torch.stack([torch.full((4, 5), side), torch.zeros(4, 5)])


def test_a_model_that_looks_flips_and_one_that_does_not_stays(tmp_path):
    mono = torch.zeros(4, 5)
    looks = probe_clip(_looks, mono, _frame(), (50, 20, 66, 36), str(tmp_path / "a"))
    assert looks == {"left": pytest.approx(DB_PER_NEPER), "right": pytest.approx(-DB_PER_NEPER)}
    blind = probe_clip(lambda frames: torch.stack([torch.ones(4, 5), torch.zeros(4, 5)]), mono, _frame(),
                       (50, 20, 66, 36), str(tmp_path / "b"))
    rows = summarise({"x": looks, "y": blind})
    assert rows["sign_flip_share"] == 0.5 and rows["clips"] == 2
    assert rows["mean_half_difference_db"] == pytest.approx(DB_PER_NEPER / 2)


def test_the_probe_command_on_a_micro_model(tmp_path):
    """Both kinds of token: the probe builds the grid's scene and the pasted box."""
    tokens = "both"
    from DiffBinaural.dataset.synthetic import generate_dataset

    root = tmp_path / "data"
    generate_dataset(root, fmt="fairplay", num_clips=6, seconds=1.0, seed=2, image_size=(96, 48), max_sources=1,
                     split_fractions=(0.5, 0.0, 0.5))
    cfg = {**micro_config(), "visual_tokens": tokens, "grid": [2, 4], "frame_size": [32, 64]}
    run = tmp_path / "run"
    run.mkdir()
    write_run(run, cfg)
    out = tmp_path / "probe.json"
    result = main(["--stage1", str(run), "--data_root", str(root), "--steps", "1", "--num_samples", "1", "--out", str(out)])
    meta = json.loads((root / "synthetic_meta.json").read_text())
    assert result["clips"] == len(meta["splits"]["test"]) > 0
    assert json.loads(out.read_text())["visual_tokens"] == tokens
    assert all(math.isfinite(v) for row in result["per_clip"].values() for v in row.values())
