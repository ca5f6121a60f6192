"""Grid saliency (``--grid_saliency``): a learned per-cell bias on every cross-attention logit.

What a real bug would break: a bias that the UNet's context LayerNorm cancels (as a multiplicative
gate is), a bias that reaches the wrong token or the null token, padded or dropped tokens that come back
through a finite bias, a score that depends on where a cell is (mirroring would no longer be exact),
the math and SDPA paths disagreeing, a checkpoint that forgets the flag.
"""

from __future__ import annotations

import pytest
import torch
from test_grid_tokens import _pixel_features  # tests/ is on sys.path under pytest
from test_modules import TINY_BACKBONES, TINY_UNET, _randomise_zero_init

from DiffBinaural.dataset.frames import mirror_visual
from DiffBinaural.modules import UNet, VisualEncoder
from DiffBinaural.utils.arguments import OPTIONAL_KEYS, resolve_visual

B, L, CTX, GRID = 2, 2, TINY_UNET["context_dim"], (4, 8)


def _models(seed: int = 0) -> tuple[VisualEncoder, UNet]:
    torch.manual_seed(seed)
    enc = VisualEncoder(backbone="cnn", dim=CTX, num_frames=L, backbone_config=TINY_BACKBONES["cnn"],
                        tokens="grid", grid=GRID, grid_saliency=True).eval()
    return _pixel_features(enc, 8), _randomise_zero_init(UNet(**TINY_UNET)).eval()


def _run(enc: VisualEncoder, unet: UNet, scene: torch.Tensor, **extra) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x_t, mono = torch.randn(B, 2, 32, 32, generator=g), torch.randn(B, 1, 32, 32, generator=g)
    cond = {**enc.encode(scene=scene), **extra}
    return unet(x_t, torch.full((B,), 500), mono_mel=mono, **cond)


def _scene(seed: int) -> torch.Tensor:
    return torch.rand(B, L, 3, 64, 128, generator=torch.Generator().manual_seed(seed))


def test_saliency_starts_at_zero_and_then_is_the_plain_softmax():
    enc, unet = _models()
    scene = _scene(2)
    out = enc.encode(scene=scene)
    assert out["context_bias"].shape == (B, L * 32) and not out["context_bias"].any()
    plain = _run(enc, unet, scene, context_bias=None)
    torch.testing.assert_close(_run(enc, unet, scene), plain, rtol=0, atol=1e-5)


def test_a_closed_cell_is_as_good_as_masked_and_an_open_one_is_heard():
    """Saliency that reads the red channel: a cell whose red is 0 gets −1e4, one whose red is 1 gets 0.
    The output then equals the output with the closed cells masked, and it no longer depends on what a
    closed cell shows; it does depend on the open one. A multiplicative gate would fail the first check
    (the UNet layer-normalises its context, so scaling a token changes nothing)."""
    enc, unet = _models()
    with torch.no_grad():
        enc.cell_saliency.weight.zero_()
        enc.cell_saliency.weight[0, 0] = 1e4  # feature channel 0 = the red pixels (_pixel_features)
        enc.cell_saliency.bias.fill_(-1e4)
    scene = _scene(3)
    scene[:, :, 0] = 0.0
    scene[:, :, 0, 16:32, 96:112] = 1.0  # row 1, column 6 open in every frame
    open_cell = torch.zeros(L, *GRID, dtype=torch.bool)
    open_cell[:, 1, 6] = True
    masked = _run(enc, unet, scene, context_bias=None, context_mask=~open_cell.flatten().expand(B, -1))
    torch.testing.assert_close(_run(enc, unet, scene), masked, rtol=0, atol=1e-5)
    changed = scene.clone()
    changed[:, :, 1:, 40:56, 0:16] = 1.0 - changed[:, :, 1:, 40:56, 0:16]  # a closed cell's green and blue
    torch.testing.assert_close(_run(enc, unet, changed), _run(enc, unet, scene), rtol=0, atol=1e-5)
    assert not torch.allclose(_run(enc, unet, changed, context_bias=None), _run(enc, unet, scene, context_bias=None))
    opened = scene.clone()
    opened[:, :, 1:, 16:32, 96:112] = 1.0 - opened[:, :, 1:, 16:32, 96:112]
    assert not torch.allclose(_run(enc, unet, opened), _run(enc, unet, scene), atol=1e-4)


def test_dropped_and_padded_tokens_stay_out_whatever_their_bias():
    enc, unet = _models()
    torch.nn.init.normal_(enc.cell_saliency.weight, std=3.0)
    scene = _scene(4)
    drop = torch.tensor([True, False])
    out = _run(enc, unet, scene, drop_visual=drop)
    null_only = _run(enc, unet, scene, context_bias=None, context_mask=torch.ones(B, L * 32, dtype=torch.bool))
    torch.testing.assert_close(out[0], null_only[0], rtol=0, atol=1e-5)
    assert not torch.allclose(out[1], null_only[1], atol=1e-4)
    assert torch.isfinite(out).all()


def test_the_math_and_sdpa_paths_add_the_same_bias():
    enc, unet = _models()
    torch.nn.init.normal_(enc.cell_saliency.weight, std=3.0)
    scene = _scene(5)
    sdpa = _run(enc, unet, scene)
    unet.set_attention_impl("math")
    torch.testing.assert_close(_run(enc, unet, scene), sdpa, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(_run(enc, unet, scene, context_bias=None), sdpa, atol=1e-4)


def test_a_mirrored_frame_gives_the_mirrored_saliency_and_gradients_reach_the_score():
    enc, unet = _models()
    torch.nn.init.normal_(enc.cell_saliency.weight, std=1.0)
    scene = _scene(6)
    bias = enc.encode(scene=scene)["context_bias"].view(B, L, *GRID)
    mirrored = enc.encode(scene=mirror_visual({"scene": scene})["scene"])["context_bias"].view(B, L, *GRID)
    torch.testing.assert_close(mirrored, bias.flip(-1), rtol=0, atol=1e-5)
    assert (bias - bias.mean()).abs().amax() > 0.1  # the check above is not trivially true
    _run(enc, unet, scene).square().mean().backward()
    assert enc.cell_saliency.weight.grad.abs().amax() > 0


def test_the_flag_is_recorded_needs_grid_tokens_and_old_configs_load_without_it():
    enc, _ = _models()
    assert VisualEncoder(**enc.checkpoint_config()).cell_saliency is not None
    assert OPTIONAL_KEYS["grid_saliency"] is False
    plain = VisualEncoder(backbone="cnn", dim=CTX, num_frames=L, backbone_config=TINY_BACKBONES["cnn"],
                          tokens="grid", grid=GRID)
    assert plain.cell_saliency is None and "context_bias" not in plain.encode(scene=_scene(7))
    boxes = type("D", (), {"visual_tokens": "boxes", "frame_size": None})()
    with pytest.raises(Exception, match="--grid_saliency scores grid cells"):
        resolve_visual({"grid_saliency": True, "grid": None}, boxes)
