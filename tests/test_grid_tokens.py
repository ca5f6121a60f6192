"""Grid visual tokens: the whole frame's feature map as one token per cell (no detector needed).

What a real bug would break: the letterbox squashing the frame or padding one side more, cells that
are not where their position says, a mirrored frame that does not give the mirrored token set, a
``both`` mask that leaks the box padding into the grid, a checkpoint that forgets its mode, an old
config that no longer loads as box tokens.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_modules import TINY_BACKBONES  # tests/ is on sys.path under pytest

from binaural_core.audio import BadInputError
from DiffBinaural.dataset.frames import ClipFrames, default_frame_size, letterbox, mirror_visual
from DiffBinaural.modules.visual_encoder import VisualEncoder
from DiffBinaural.utils.arguments import MODEL_KEYS, default_grid, load_model_config, resolve_visual

B, L, N, CTX = 2, 2, 3, 32


def _encoder(backbone: str = "cnn", tokens: str = "grid", grid=(4, 8)) -> VisualEncoder:
    torch.manual_seed(0)
    return VisualEncoder(backbone=backbone, dim=CTX, num_frames=L, backbone_config=TINY_BACKBONES[backbone],
                         tokens=tokens, grid=grid).eval()


@pytest.mark.parametrize("width,height", [(1280, 640), (256, 144), (101, 37), (144, 256), (50, 50), (3, 400)])
def test_letterbox_keeps_the_aspect_and_pads_both_sides_alike(width, height):
    for canvas in [(64, 128), (64, 112), (63, 127), (32, 32)]:
        x0, y0, w, h = letterbox(width, height, canvas)
        assert 0 < w <= canvas[1] and 0 < h <= canvas[0]
        assert w == canvas[1] or h == canvas[0] or min(canvas[1] - w, canvas[0] - h) <= 1  # as large as fits
        assert canvas[1] - w - x0 == x0 and canvas[0] - h - y0 == y0  # the same border on both sides
        scale = min(canvas[1] / width, canvas[0] / height)  # aspect kept: each side within a pixel of the exact
        assert abs(w - width * scale) <= max(1, 2 - width * scale) and abs(h - height * scale) <= max(1, 2 - height * scale)


def test_default_frame_size_and_grid_follow_the_aspect():
    assert default_frame_size(1280, 640, short_side=64) == (64, 128)
    assert default_grid((64, 128)) == [4, 8]  # FAIR-Play's 2:1 frames: 4 x 8
    assert default_frame_size(256, 144, short_side=64) == (64, 112) and default_grid((64, 112)) == [4, 7]
    assert default_frame_size(144, 256, short_side=224) == (400, 224)  # portrait: the short side is the width
    assert default_grid((400, 224)) == [4, 2]


@pytest.mark.parametrize("backbone", ["cnn", "resnet18", "clip"])
def test_grid_tokens_from_each_backbone(backbone):
    enc = _encoder(backbone)
    scene = torch.rand(B, L, 3, 64, 128, generator=torch.Generator().manual_seed(1))
    fmap = enc.feature_map(scene.flatten(0, 1))
    stride = {"cnn": 4, "resnet18": 8, "clip": 8}[backbone]  # tiny: 2 stride-2 stages; stem 4 + 1 stage; patch 8
    assert fmap.shape[-2:] == (64 // stride, 128 // stride)  # the frame's own aspect, not a square
    tokens, mask = enc(scene=scene)
    assert tokens.shape == (B, L * 32, CTX) and mask.shape == (B, L * 32) and not mask.any()
    assert torch.isfinite(tokens).all() and not torch.allclose(tokens[:, :32], tokens[:, 32:])  # frame embeddings
    rebuilt = VisualEncoder(**enc.checkpoint_config())
    rebuilt.load_state_dict(enc.state_dict())
    assert torch.equal(rebuilt.eval()(scene=scene)[0], tokens)
    with pytest.raises(ValueError, match="need scene"):
        enc(torch.rand(B, L, N, 3, 32, 32), torch.rand(B, L, N, 2), torch.zeros(B, L, N, dtype=torch.bool))


def test_both_puts_the_grid_first_and_keeps_the_box_mask():
    enc = _encoder(tokens="both", grid=(2, 4))
    g = torch.Generator().manual_seed(2)
    frames, positions = torch.rand(B, L, N, 3, 32, 32, generator=g), torch.rand(B, L, N, 2, generator=g)
    mask = torch.tensor([[False, True, True], [False, False, True]]).expand(B, L, N).clone()
    scene = torch.rand(B, L, 3, 32, 64, generator=g)
    tokens, token_mask = enc(frames, positions, mask, scene=scene)
    assert tokens.shape == (B, L * 8 + L * N, CTX)
    assert not token_mask[:, :L * 8].any() and torch.equal(token_mask[:, L * 8:], mask.flatten(1))
    assert not tokens[:, L * 8:][mask.flatten(1)].any()
    # the type embedding tells a cell from a box: the same features at the same place differ by kind
    assert "type_embed.weight" in enc.state_dict() and "type_embed.weight" not in _encoder().state_dict()
    assert "type_embed.weight" not in _encoder(tokens="boxes").state_dict()  # box checkpoints keep their keys
    with pytest.raises(ValueError, match="need frames, positions and mask"):
        enc(scene=scene)


def _pixel_features(enc: VisualEncoder, factor: int):
    """Replace the backbone by a mirror-equivariant feature map (pixels averaged in factor x factor
    blocks, repeated to the backbone's width): what is left to test is the grid's own geometry."""
    width = enc.feat_proj.in_features

    def feature_map(images):
        pooled = F.avg_pool2d(images, factor)
        return pooled.repeat(1, width // 3 + 1, 1, 1)[:, :width]
    enc.feature_map = feature_map
    return enc


@pytest.mark.parametrize("size,factor,grid", [((64, 128), 8, (4, 8)), ((56, 112), 8, (4, 8)), ((40, 120), 8, (3, 5))])
def test_a_mirrored_frame_gives_exactly_the_mirrored_token_set(size, factor, grid):
    """Cell (cx, cy) of the mirrored frame is cell (1 − cx, cy) of the frame: same features, mirrored
    position. (56 x 112 / 8 = a 7 x 14 map into 4 x 8 cells: uneven bins, which must still be symmetric.)"""
    enc = _pixel_features(_encoder(grid=grid), factor)
    scene = torch.rand(B, L, 3, *size, generator=torch.Generator().manual_seed(3))
    tokens = enc(scene=scene)[0].view(B, L, *grid, CTX)
    mirrored = enc(scene=mirror_visual({"scene": scene})["scene"])[0].view(B, L, *grid, CTX)
    # the original's cells with their positions mirrored (cx -> 1 - cx), in the mirrored cell order
    reference = _pixel_features(_encoder(grid=grid), factor)
    reference.cell_centres[:, 0] = 1.0 - reference.cell_centres[:, 0]
    expected = reference(scene=scene)[0].view(B, L, *grid, CTX).flip(3)
    torch.testing.assert_close(mirrored, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(mirrored, tokens, atol=1e-3)  # not trivially equal: the scene is not symmetric


@pytest.mark.parametrize("pool", ["mean", "attention"])
@pytest.mark.parametrize("size,factor", [((64, 128), 8), ((56, 112), 8), ((40, 120), 8)])
def test_mirrored_cells_hold_the_mirrored_features_at_mirrored_positions(size, factor, pool):
    """With either pooling, cell j of the mirrored frame holds cell GX−1−j's features at cx → 1 − cx."""
    enc = _pixel_features(VisualEncoder(backbone="cnn", dim=CTX, num_frames=L, backbone_config=TINY_BACKBONES["cnn"],
                                        tokens="grid", grid=(4, 8), grid_pool=pool), factor)
    if pool == "attention":  # a score that is not constant, so the centroid moves off the centre
        torch.nn.init.normal_(enc.cell_score.weight, std=2.0)
    scene = torch.rand(B, L, 3, *size, generator=torch.Generator().manual_seed(5))
    cells, pos = (x.view(B, L, 4, 8, -1) for x in enc.grid_cells(scene))
    cells_m, pos_m = (x.view(B, L, 4, 8, -1) for x in enc.grid_cells(scene.flip(-1)))
    torch.testing.assert_close(cells_m.flip(3), cells, rtol=0, atol=1e-5)
    torch.testing.assert_close(pos_m.flip(3)[..., 0], 1 - pos[..., 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(pos_m.flip(3)[..., 1], pos[..., 1], rtol=0, atol=1e-6)
    if pool == "attention":  # each centroid stays inside its own bin and is not just the bin's centre
        w = size[1] // factor
        lo = torch.div(torch.arange(8) * w, 8, rounding_mode="floor") / w
        hi = torch.div((torch.arange(8) + 1) * w + 7, 8, rounding_mode="floor") / w
        assert torch.all(pos[..., 0] >= lo - 1e-6) and torch.all(pos[..., 0] <= hi + 1e-6)
        assert (pos[..., 0] - pos[..., 0].mean((0, 1))).abs().amax() > 1e-3
    else:
        torch.testing.assert_close(pos[0, 0], enc.cell_centres.view(4, 8, 2))


def test_attention_pooling_starts_as_the_mean():
    enc = _encoder()
    att = VisualEncoder(backbone="cnn", dim=CTX, num_frames=L, backbone_config=TINY_BACKBONES["cnn"], tokens="grid",
                        grid=(4, 8), grid_pool="attention").eval()
    att.load_state_dict({**enc.state_dict(), **{k: v for k, v in att.state_dict().items() if k.startswith("cell_score")}})
    scene = torch.rand(1, L, 3, 64, 128, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(att.grid_cells(scene)[0], enc.grid_cells(scene)[0], rtol=1e-5, atol=1e-6)


def test_each_cell_sees_its_own_part_of_the_frame():
    enc = _pixel_features(_encoder(grid=(4, 8)), 8)
    scene = torch.rand(1, L, 3, 64, 128, generator=torch.Generator().manual_seed(4))
    base = enc(scene=scene)[0].view(L, 4, 8, CTX)
    changed = scene.clone()
    changed[0, 1, :, 16:32, 96:112] = 1.0 - changed[0, 1, :, 16:32, 96:112]  # frame 1, cell row 1, column 6
    moved = enc(scene=changed)[0].view(L, 4, 8, CTX)
    differs = (moved - base).abs().amax(-1) > 1e-6
    expected = torch.zeros(L, 4, 8, dtype=torch.bool)
    expected[1, 1, 6] = True
    assert torch.equal(differs, expected)


def _write(folder, image: np.ndarray) -> ClipFrames:
    os.makedirs(folder)
    Image.fromarray(image).save(os.path.join(folder, "000001.png"))
    return ClipFrames(str(folder), ".png", 1, {}, (image.shape[1], image.shape[0]))


@pytest.mark.parametrize("width,height", [(101, 37), (256, 144), (90, 160)])
def test_the_scene_of_a_mirrored_video_is_the_mirrored_scene(tmp_path, width, height):
    """The dataset's whole frame, letterboxed at any aspect: a mirrored image gives the mirrored
    scene pixel for pixel, and the training flip gives the same."""
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    clip, clip_m = _write(tmp_path / "a", image), _write(tmp_path / "b", image[:, ::-1].copy())
    opts = dict(num_frames=L, max_sources=N, image_size=16, fps=10.0, tokens="both", frame_size=(64, 112))
    a, b = clip.visual_inputs(0.0, 0.2, **opts), clip_m.visual_inputs(0.0, 0.2, **opts)
    assert a["scene"].shape == (L, 3, 64, 112)
    x0, y0, w, h = letterbox(width, height, (64, 112))
    inside = a["scene"][..., y0:y0 + h, x0:x0 + w]
    resized = Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    expected = torch.from_numpy(np.array(resized)).permute(2, 0, 1).float() / 255  # the image, aspect kept
    torch.testing.assert_close(inside, expected.expand_as(inside), rtol=0, atol=0)
    assert not a["scene"][..., :y0, :].any() and not a["scene"][..., :, :x0].any()  # zero borders
    torch.testing.assert_close(b["scene"], a["scene"].flip(-1), rtol=0, atol=1.01 / 255)
    flipped = clip.visual_inputs(0.0, 0.2, **opts, flip=True)
    assert torch.equal(flipped["scene"], a["scene"].flip(-1))
    torch.testing.assert_close(flipped["positions"][:, 0, 0], 1 - a["positions"][:, 0, 0])
    assert set(clip.visual_inputs(0.0, 0.2, **{**opts, "tokens": "grid"})) == {"scene"}


def test_configs_record_the_mode_and_old_ones_load_as_boxes(tmp_path):
    from DiffBinaural.model import Stage1Model

    cfg = json.loads(open(os.path.join(os.path.dirname(__file__), "..", "DiffBinaural", "configs", "micro.json")).read())
    assert {"visual_tokens", "grid", "frame_size"} <= set(MODEL_KEYS)
    old = tmp_path / "old.json"
    from DiffBinaural.utils.arguments import model_config, train_parser

    args = train_parser("t").parse_args(["--data_root", "-", "--list_train", "-", "--list_val", "-", "--config", "micro"])
    full = model_config(args)
    assert full["img_size"] == cfg["img_size"]
    legacy = {k: v for k, v in full.items() if k not in ("visual_tokens", "grid", "frame_size", "box_source", "grid_layout",
                                                        "grid_select")}
    old.write_text(json.dumps(legacy))
    loaded = load_model_config(str(old))
    assert loaded["visual_tokens"] == "boxes" and loaded["grid"] is None
    assert loaded["grid_layout"] is False and loaded["grid_select"] == 0  # older runs kept every cell
    assert Stage1Model(loaded).encoder.tokens == "boxes"
    grid_cfg = {**full, "visual_tokens": "grid", "grid": [2, 4], "frame_size": [32, 64]}
    model = Stage1Model(grid_cfg)
    assert model.encoder.grid == (2, 4) and model.encoder.cell_centres.shape == (8, 2)
    assert not model.encoder.grid_layout and Stage1Model({**grid_cfg, "grid_layout": True}).encoder.grid_layout
    boxes = type("Data", (), {"visual_tokens": "boxes", "frame_size": None})()
    grid = type("Data", (), {"visual_tokens": "grid", "frame_size": (64, 112)})()
    assert resolve_visual(full, grid)["grid_layout"] is True  # the default with grid tokens (docs/experiments.md, footnote 7)
    assert resolve_visual({**full, "grid_layout": False}, grid)["grid_layout"] is False
    assert resolve_visual(full, boxes)["grid_layout"] is False
    with pytest.raises(BadInputError, match="--grid_layout reads the grid's cells"):
        resolve_visual({**full, "grid_layout": True}, boxes)
    # --grid_select: 6 salient cells a frame by default with grid tokens (footnote 10), 0 = all, never more than
    # the grid has; box tokens have none
    assert resolve_visual(full, grid)["grid_select"] == 6 and resolve_visual(full, boxes)["grid_select"] == 0
    assert resolve_visual({**full, "grid_select": 0}, grid)["grid_select"] == 0
    assert resolve_visual({**full, "grid": [1, 4]}, grid)["grid_select"] == 4
    with pytest.raises(BadInputError, match="--grid_select must be 0"):
        resolve_visual({**full, "grid_select": 29}, grid)
    with pytest.raises(BadInputError, match="--grid_select chooses among the grid's cells"):
        resolve_visual({**full, "grid_select": 3}, boxes)
    with pytest.raises(BadInputError, match="--binding_weight scores the audio-aware tokens"):
        resolve_visual({**full, "binding_weight": 0.1}, boxes)
    assert Stage1Model({**full, "token_audio": True, "binding_weight": 0.1}).unet.token_audio.score is not None
    assert Stage1Model(full).unet.token_audio is None  # configs without the keys: the plain tokens


def test_the_layout_token_reads_which_cell_holds_what():
    """--grid_layout: one more token a frame, after its cells. Moving a patch between two cells of a uniform
    frame permutes the cells' features (the cell tokens differ only by position) but must change the layout
    token: it reads the cells in order. The cell tokens keep their exact mirror symmetry."""
    torch.manual_seed(0)
    enc = _pixel_features(VisualEncoder(backbone="cnn", dim=CTX, num_frames=L, backbone_config=TINY_BACKBONES["cnn"],
                                        tokens="grid", grid=(4, 8), grid_layout=True).eval(), 8)
    plain = _pixel_features(_encoder(grid=(4, 8)), 8)
    plain.load_state_dict({k: v for k, v in enc.state_dict().items() if not k.startswith("layout_")})
    scene = torch.full((B, L, 3, 64, 128), 0.3)
    left, right = scene.clone(), scene.clone()
    left[..., 16:32, 16:32], right[..., 16:32, 96:112] = 0.9, 0.9  # row 1: column 1, or column 6
    tokens, mask = enc(scene=left)
    assert tokens.shape == (B, L * 33, CTX) and not mask.any()
    per_frame = tokens.view(B, L, 33, CTX)
    torch.testing.assert_close(per_frame[:, :, :32].flatten(1, 2), plain(scene=left)[0])  # cells first, unchanged
    cells_l, _ = enc.grid_cells(left)
    cells_r, _ = enc.grid_cells(right)
    swap = torch.arange(32).view(4, 8)
    swap[1, 1], swap[1, 6] = 14, 9
    torch.testing.assert_close(cells_r, cells_l[:, :, swap.flatten()])  # the same cells, permuted
    layout_l, layout_r = per_frame[:, :, 32], enc(scene=right)[0].view(B, L, 33, CTX)[:, :, 32]
    assert (layout_l - layout_r).abs().amax() > 1e-2
    scene = torch.rand(B, L, 3, 64, 128, generator=torch.Generator().manual_seed(9))
    mirrored = enc(scene=mirror_visual({"scene": scene})["scene"])[0].view(B, L, 33, CTX)[:, :, :32]
    enc.cell_centres[:, 0] = 1.0 - enc.cell_centres[:, 0]
    expected = enc(scene=scene)[0].view(B, L, 33, CTX)[:, :, :32].view(B, L, 4, 8, CTX).flip(3).flatten(2, 3)
    torch.testing.assert_close(mirrored, expected, rtol=0, atol=1e-5)
    rebuilt = VisualEncoder(**enc.checkpoint_config())
    assert rebuilt.grid_layout and not VisualEncoder(**plain.checkpoint_config()).grid_layout


def test_grid_select_keeps_the_cells_that_differ_from_the_frame():
    """--grid_select K: per frame the K cells farthest from its median cell stay, the rest are masked (True)
    and zeroed; the layout token reads every cell and is never masked. Two bright patches on a uniform
    frame (one brighter, one darker) are what must be kept; a mirrored frame keeps the mirrored cells."""
    torch.manual_seed(0)
    enc = _pixel_features(VisualEncoder(backbone="cnn", dim=CTX, num_frames=L, backbone_config=TINY_BACKBONES["cnn"],
                                        tokens="grid", grid=(4, 8), grid_layout=True, grid_select=2).eval(), 8)
    scene = torch.full((B, L, 3, 64, 128), 0.3) + 0.01 * torch.rand(B, L, 3, 64, 128, generator=torch.Generator().manual_seed(4))
    scene[..., 16:32, 16:32] = 0.9  # row 1, column 1
    scene[..., 48:64, 80:96] = 0.0  # row 3, column 5: darker than the frame, as salient
    tokens, mask = enc(scene=scene)
    per_frame = mask.view(B, L, 33)
    kept = (~per_frame[..., :32]).nonzero()[:, -1].view(B, L, 2).sort(dim=-1).values
    assert (kept == torch.tensor([1 * 8 + 1, 3 * 8 + 5])).all()  # the two patches' cells, in every frame
    assert not per_frame[..., 32].any()  # the layout token
    assert not tokens[mask].any() and tokens[~mask].abs().amax(dim=-1).min() > 0
    # the layout token still sees the masked cells: changing one changes it, and not the kept cells' tokens
    other = scene.clone()
    other[..., 0:16, 112:128] = 0.35
    tokens_o, mask_o = enc(scene=other)
    assert torch.equal(mask_o, mask)
    cells, cells_o = tokens.view(B, L, 33, CTX)[:, :, :32], tokens_o.view(B, L, 33, CTX)[:, :, :32]
    assert torch.equal(cells_o[~per_frame[..., :32]], cells[~per_frame[..., :32]])
    lay, lay_o = tokens.view(B, L, 33, CTX)[:, :, 32], tokens_o.view(B, L, 33, CTX)[:, :, 32]
    assert (lay - lay_o).abs().amax() > 1e-4
    mirrored = enc(scene=mirror_visual({"scene": scene})["scene"])[1].view(B, L, 33)[..., :32]
    assert torch.equal(mirrored.view(B, L, 4, 8).flip(-1), per_frame[..., :32].view(B, L, 4, 8))
    rebuilt = VisualEncoder(**enc.checkpoint_config())
    assert rebuilt.grid_select == 2 and VisualEncoder(**_encoder().checkpoint_config()).grid_select == 0
    with pytest.raises(ValueError, match="grid_select must be 0"):
        VisualEncoder(backbone="cnn", dim=CTX, backbone_config=TINY_BACKBONES["cnn"], tokens="grid", grid=(2, 2),
                      grid_select=5)
