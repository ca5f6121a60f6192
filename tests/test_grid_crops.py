"""Grid tokens read as crops (``--grid_pool crops``): each kept cell becomes a crop of the full-size frame,
centred where the cell is salient, as a box token would be without a detector.

What a real bug would break: a centroid that is not where the object is, or that does not mirror; a crop
that reads the wrong pixels or is not the mirrored crop of the mirrored frame; crops normalised one by one
(a plain window stretched to an object's contrast); tokens that are not the kept cells; a config that does
not rebuild the mode; the mode accepted where it cannot work.
"""

from __future__ import annotations

import argparse

import pytest
import torch
from test_modules import TINY_BACKBONES  # tests/ is on sys.path under pytest

from binaural_core.audio import BadInputError
from DiffBinaural.dataset.frames import mirror_visual
from DiffBinaural.modules.backbones import SmallCNN
from DiffBinaural.modules.grid_parts import salience_centroids, sample_crops, shared_norm_forward
from DiffBinaural.modules.visual_encoder import VisualEncoder
from DiffBinaural.utils.arguments import default_frame_side, resolve_visual

B, L, CTX = 2, 2, 32


def test_a_cells_centroid_is_its_objects_centre_and_mirrors():
    fine = torch.zeros(1, 3, 16, 28)
    fine[0, :, 5:7, 9:11] = 1.0  # a 2 x 2 object: positions' centres at x 9.5, 10.5 of 28, y 5.5, 6.5 of 16
    centres = salience_centroids(fine, (4, 7)).view(4, 7, 2)
    torch.testing.assert_close(centres[1, 2], torch.tensor([10 / 28, 6 / 16]), rtol=0, atol=1e-6)
    # a cell whose window holds nothing salient keeps its own centre
    torch.testing.assert_close(centres[3, 6], torch.tensor([6.5 / 7, 3.5 / 4]), rtol=0, atol=1e-6)
    # any map: the mirrored map's cell (i, GX - 1 - j) has the centroid (1 - cx, cy)
    fine = torch.rand(2, 4, 16, 28, generator=torch.Generator().manual_seed(0))
    got = salience_centroids(fine.flip(-1), (4, 7)).view(2, 4, 7, 2).flip(2)
    want = salience_centroids(fine, (4, 7)).view(2, 4, 7, 2)
    torch.testing.assert_close(got[..., 0], 1 - want[..., 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(got[..., 1], want[..., 1], rtol=0, atol=1e-6)


def test_crops_read_the_frames_pixels_and_mirror():
    frames = torch.rand(2, 3, 128, 224, generator=torch.Generator().manual_seed(1))  # 4 x 7 cells of 32 px
    centre = torch.tensor([[[2.5 / 7, 1.5 / 4]], [[0.5 / 7, 3.5 / 4]]])  # cells (1, 2) and (3, 0)
    crops = sample_crops(frames, centre, (1 / 7, 1 / 4), 32)
    assert crops.shape == (2, 1, 3, 32, 32)
    torch.testing.assert_close(crops[0, 0], frames[0, :, 32:64, 64:96], rtol=0, atol=1e-5)
    torch.testing.assert_close(crops[1, 0], frames[1, :, 96:128, 0:32], rtol=0, atol=1e-5)
    anywhere = torch.rand(2, 5, 2, generator=torch.Generator().manual_seed(2))
    mirrored = sample_crops(frames.flip(-1), torch.stack([1 - anywhere[..., 0], anywhere[..., 1]], -1), (1 / 7, 1 / 4), 32)
    torch.testing.assert_close(mirrored, sample_crops(frames, anywhere, (1 / 7, 1 / 4), 32).flip(-1), rtol=0, atol=1e-4)


def test_a_frames_crops_share_their_normalisation():
    torch.manual_seed(0)
    cnn = SmallCNN(**{"channels": (8, 16), "groups": 4})
    obj = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    # one crop alone: the CNN's own forward
    torch.testing.assert_close(shared_norm_forward(cnn.net, obj[:, None]), cnn(obj)[:, None], rtol=0, atol=1e-5)
    # a plain window beside an object keeps its own (low) contrast: not what it gives normalised alone
    plain = torch.full((3, 3, 32, 32), 0.2)
    both = shared_norm_forward(cnn.net, torch.stack([plain, obj], dim=1))
    assert (both[:, 0] - cnn(plain)).abs().amax() > 1e-2
    assert (both[:, 0] - shared_norm_forward(cnn.net, torch.stack([plain, plain + 0.3], dim=1))[:, 0]).abs().amax() > 1e-2


def _crop_encoder(select: int = 2) -> VisualEncoder:
    torch.manual_seed(0)
    return VisualEncoder(backbone="cnn", dim=CTX, num_frames=L, image_size=32, backbone_config=TINY_BACKBONES["cnn"],
                         tokens="grid", grid=(4, 8), grid_pool="crops", grid_layout=True, grid_select=select).eval()


def test_crop_tokens_are_the_salient_objects_read_where_they_are():
    enc = _crop_encoder()
    scene = torch.full((B, L, 3, 144, 288), 0.3) + 0.01 * torch.rand(B, L, 3, 144, 288, generator=torch.Generator().manual_seed(4))
    scene[..., 40:60, 50:70] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]  # centre (60 / 288, 50 / 144)
    scene[..., 100:120, 200:220] = torch.tensor([0.1, 0.1, 0.9])[:, None, None]  # centre (210 / 288, 110 / 144)
    with torch.no_grad():
        cells, centres, crops = enc.salient_crops(scene)
        tokens, mask = enc(scene=scene)
    assert cells.shape == (B * L, 32, enc.feat_proj.in_features) and crops.shape == (B * L, 2, 3, 32, 32)
    found = centres.sort(dim=1).values  # (B·L, 2, 2), by cx
    want = torch.tensor([[60 / 288, 50 / 144], [210 / 288, 110 / 144]])
    assert (found - want).abs().amax() < 1 / 64  # within a pixel of the stride-2 map of the 64 x 128 frame
    middle = crops[..., 16, 16]  # (B·L, 2, 3): each crop is centred on its object's colour
    assert ((middle.amax(-1) - middle.amin(-1)) > 0.5).all()
    assert tokens.shape == (B, L * 3, CTX) and not mask.any()  # 2 crops + the layout token a frame
    # the mirrored frame: the mirrored centres
    with torch.no_grad():
        _, centres_m, _ = enc.salient_crops(mirror_visual({"scene": scene})["scene"])
    mirrored = torch.stack([1 - centres_m[..., 0], centres_m[..., 1]], -1).sort(dim=1).values
    assert (mirrored - want).abs().amax() < 1 / 64
    rebuilt = VisualEncoder(**enc.checkpoint_config())
    rebuilt.load_state_dict(enc.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(scene=scene)[0], tokens)
    with pytest.raises(ValueError, match="needs backbone 'cnn'"):
        VisualEncoder(backbone="resnet18", dim=CTX, backbone_config=TINY_BACKBONES["resnet18"], tokens="grid",
                      grid=(2, 2), grid_pool="crops")


class _Data:
    visual_tokens, frame_size = "grid", (144, 256)


def test_crops_config_lines_and_default_frame_side():
    assert default_frame_side(argparse.Namespace(grid_pool="crops", grid=None, img_size=32)) == 144
    assert default_frame_side(argparse.Namespace(grid_pool="crops", grid=[2, 4], img_size=32)) == 72
    assert default_frame_side(argparse.Namespace(grid_pool="mean", grid=None, img_size=32)) is None
    out = resolve_visual({"grid_pool": "crops", "arch_frame": "cnn"}, _Data())
    assert out["grid"] == [4, 7] and out["grid_select"] == 6 and out["grid_layout"]
    with pytest.raises(BadInputError, match="needs --arch_frame cnn"):
        resolve_visual({"grid_pool": "crops", "arch_frame": "resnet18"}, _Data())
    boxes = type("Boxes", (), {"visual_tokens": "boxes", "frame_size": None})()
    with pytest.raises(BadInputError, match="needs --visual_tokens grid or both"):
        resolve_visual({"grid_pool": "crops", "arch_frame": "cnn"}, boxes)
