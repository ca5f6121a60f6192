"""A user's video through a model trained without boxes (grid tokens read as crops, the FAIR-Play default),
at an aspect it was not trained on: the frames are letterboxed into the model's 16:9 canvas, and with
``flip_tta`` the mirrored video gives exactly the output with its ears swapped.

What a real bug would break: frames squashed or cropped instead of letterboxed (the canvas would not be the
frame between two equal black bars), a crop or centroid that does not mirror, a flip-TTA pass that swaps the
ears of the wrong half, or a grid model that ignores the picture. Tiny random Stage 1 model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _runs import micro_config, write_run  # tests/ is on sys.path under pytest

from DiffBinaural import Binauralizer
from DiffBinaural.dataset.frames import letterbox

CANVAS = (36, 64)  # (H, W): the trained frame size, 16:9
W, H, FPS, SR = 96, 72, 10, 22050  # the user's frames: 4:3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from DiffBinaural.model import Stage1Model
    from DiffBinaural.utils.arguments import resolve_visual

    cfg = micro_config("--interaural_phase", "--target", "residual", "--prediction_type", "sample",
                       "--grid", "2", "4", "--grid_select", "2")
    data = type("Data", (), {"visual_tokens": "grid", "frame_size": CANVAS})()
    cfg = {**resolve_visual(cfg, data), "box_source": "whole_frame"}
    assert cfg["grid_pool"] == "crops"  # the default with the small CNN
    torch.manual_seed(0)
    model = Stage1Model(cfg)
    with torch.no_grad():  # the UNet's zero-initialised output layers would give the mono copy on both ears
        for p in model.unet.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    return write_run(tmp_path_factory.mktemp("run"), cfg, model)


def frames(side: str, n: int = 20) -> list[np.ndarray]:
    """4:3 frames, a textured background with one bright patch in the ``side`` third that drifts."""
    rng = np.random.default_rng(1)
    base = rng.integers(20, 60, size=(H, W, 3), dtype=np.uint8)
    out = []
    for k in range(n):
        img = base.copy()
        x = 8 + k // 4 if side == "left" else W - 24 - k // 4
        img[30:46, x:x + 16] = (230, 200, 40)
        out.append(img)
    return out


def test_a_4_3_video_is_letterboxed_and_mirrors_exactly_with_flip_tta(run_dir):
    b = Binauralizer.from_pretrained(run_dir, steps=2, flip_tta=True, seed=0, device="cpu")
    seen = []
    hook = b.model.encoder.register_forward_pre_hook(lambda _m, _a, kw: seen.append(kw["scene"]), with_kwargs=True)
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    mono = (0.05 * np.sin(2 * np.pi * 440 * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
    left_out = b(mono, SR, frames=frames("left"))
    mirrored = b(mono, SR, frames=[img[:, ::-1].copy() for img in frames("left")])
    hook.remove()
    assert left_out.shape == (2, len(mono))
    assert np.abs(left_out[0] - left_out[1]).max() > 1e-3  # the ears differ: there is something to swap
    # the encoder saw the 4:3 frame whole, between two equal black bars of the 16:9 canvas
    x0, y0, w, h = letterbox(W, H, CANVAS)
    assert (x0, y0, w, h) == (8, 0, 48, 36)
    scene = seen[0]
    assert scene.shape[-2:] == CANVAS
    assert scene[..., :x0].abs().max() == 0 and scene[..., x0 + w:].abs().max() == 0
    assert scene[..., x0:x0 + w].amin(dim=(-1, -2)).min() > 0  # the textured frame fills its part
    np.testing.assert_allclose(mirrored, left_out[::-1], rtol=0, atol=1e-4)
    # the picture matters: a patch on the other side (not a mirror image of the frame) changes the output
    right_out = b(mono, SR, frames=frames("right"))
    assert np.abs(right_out - left_out).max() > 1e-4
