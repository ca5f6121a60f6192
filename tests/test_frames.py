"""Frames and boxes as real tools produce them: .jpg/.jpeg/.png in any PIL mode, detector boxes past
the border (clipped, or dropped and counted), and split lists in every format with string names
(the hand-made RealBinaural tree of ``tests/test_datasets.py``)."""

from __future__ import annotations

import logging
import os

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from test_datasets import (  # noqa: F401  (rb_root: a fixture)
    CFG,
    GREEN_BOX,
    HOP,
    RED_BOX,
    SR,
    H,
    L,
    N,
    P,
    W,
    _append_detection,
    rb,
    rb_root,
    write_csv,
)

from binaural_core.audio import BadInputError
from DiffBinaural.dataset import layout
from DiffBinaural.dataset.real_binaural import RealBinauralDataset


# ---- boxes → crops, positions and mask ------------------------------------------------------------
def test_boxes_become_crops_positions_and_mask(rb_root):
    ds = rb(rb_root, "test", segment_frames=None)
    assert ds.frame_indices(0, 0, (SR // HOP) * HOP) == [2, 4, 6, 8, 10]
    item = ds[0]
    frames, pos, mask = item["frames"], item["positions"], item["mask"]
    for k in (0, 1, 3, 4):  # frames 2, 4, 8, 10 have detections: red (best score) then green
        assert mask[k].tolist() == [False, False, True, True]
        torch.testing.assert_close(frames[k, 0].mean((1, 2)), torch.tensor([1.0, 0, 0]), atol=0.06, rtol=0)
        torch.testing.assert_close(frames[k, 1].mean((1, 2)), torch.tensor([0, 1.0, 0]), atol=0.06, rtol=0)
        (x1, y1, x2, y2), (u1, v1, u2, v2) = RED_BOX, GREEN_BOX
        expected = [[(x1 + x2) / 2 / W, (y1 + y2) / 2 / H], [(u1 + u2) / 2 / W, (v1 + v2) / 2 / H], [0, 0], [0, 0]]
        torch.testing.assert_close(pos[k], torch.tensor(expected))
        assert torch.all(frames[k, 2:] == 0)
    # frame 6 has no rows: the whole frame (grey 60 plus both boxes) in slot 0 at the centre
    assert mask[2].tolist() == [False, True, True, True]
    torch.testing.assert_close(pos[2], torch.tensor([[0.5, 0.5], [0, 0], [0, 0], [0, 0]]))
    assert torch.all(frames[2, 1:] == 0)
    corner = frames[2, 0, :, :2, :2].mean((1, 2))  # top-left corner is background of frame 6
    torch.testing.assert_close(corner, torch.full((3,), 60 / 255), atol=0.03, rtol=0)


def test_more_boxes_than_slots_keeps_the_best(rb_root):
    item = rb(rb_root, "test", segment_frames=None, max_sources=1)[0]
    assert item["frames"].shape == (L, 1, 3, P, P) and not item["mask"].any()
    torch.testing.assert_close(item["frames"][0, 0].mean((1, 2)), torch.tensor([1.0, 0, 0]), atol=0.06, rtol=0)


def test_no_detections_uses_whole_frame(rb_root):
    ds = rb(rb_root, "test", segment_frames=None)
    item = ds[1]  # clip b: no detection rows at all
    assert item["mask"][:, 0].tolist() == [False] * L and torch.all(item["mask"][:, 1:])
    assert torch.all(item["positions"][:, 0] == 0.5) and torch.all(item["positions"][:, 1:] == 0)
    grey = item["frames"][:, 0].mean((1, 2, 3))  # frames 2, 4, 6, 8, 10 → grey 20, 40, ..., 100
    torch.testing.assert_close(grey, torch.tensor([20.0, 40, 60, 80, 100]) / 255, atol=0.01, rtol=0)


# ---- what real detectors and video tools produce ------------------------------------------------
def test_boxes_are_clipped_to_the_image_and_outside_ones_dropped_and_counted(rb_root, caplog):
    # detector output around frame 3 of clip "b": a box 5 px past the right and bottom border
    # (clipped), one wholly outside (dropped), one that is empty (dropped), a fine one (kept)
    for row in (f"b,3,40,30,{W + 5},{H + 5},0.8", f"b,3,{W + 1},10,{W + 30},50,0.95", "b,3,30,10,30,50,0.99",
                "b,3,-3,-4,20,20,0.7"):
        _append_detection(rb_root, row)
    with caplog.at_level(logging.WARNING):
        ds = rb(rb_root, "train")
    boxes = ds.clips[1].frames.boxes[3]
    np.testing.assert_array_equal(boxes, np.array([[40, 30, W, H], [0, 0, 20, 20]], np.float32))  # best first
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1 and lines[0].endswith(
        f"{os.path.join(rb_root, layout.RB_DETECTIONS)}: 2 box(es) clipped to the image, 2 dropped "
        "(outside the image or empty after clipping)")
    assert ds.skipped == {}  # nothing is dropped but those boxes


@pytest.mark.parametrize("row", ["b,3,30,10,20,50,0.9", "b,3,10,30,40,20,0.9"])
def test_corners_in_the_wrong_order_stop_naming_the_line_and_the_likely_cause(rb_root, row):
    """x2 < x1 or y2 < y1 is never a detector's rounding: most often x, y, w, h columns. Clipping would
    silently drop such boxes (the run would succeed on whole frames), so it is an error."""
    _append_detection(rb_root, "b,3,1,1,20,20,0.9")
    _append_detection(rb_root, row)
    csv_path = os.path.join(rb_root, layout.RB_DETECTIONS)
    line = sum(1 for _ in open(csv_path))
    with pytest.raises(BadInputError) as err:
        rb(rb_root, "train")
    assert str(err.value).startswith(f"{csv_path}: line {line}: clip 'b' frame 3: x2 < x1 or y2 < y1")
    assert "not x,y,width,height" in str(err.value)


def _write_frame(path: str, grey: int, mode: str) -> None:
    rgb = Image.fromarray(np.full((H, W, 3), grey, np.uint8))
    if mode == "I;16":  # a 16-bit grayscale PNG (what some video tools write)
        Image.fromarray(np.full((H, W), grey * 257, np.uint16)).save(path)
    elif mode == "P":
        rgb.quantize(colors=8).save(path)
    elif mode == "PA":  # palette with transparency
        im = rgb.quantize(colors=8)
        im.info["transparency"] = 0
        im.save(path, transparency=0)
    else:
        rgb.convert(mode).save(path, **({"quality": 95} if path.endswith((".jpg", ".jpeg")) else {}))


@pytest.mark.parametrize("ext,mode", [(".png", "RGB"), (".png", "RGBA"), (".png", "P"), (".png", "PA"),
                                      (".png", "L"), (".png", "LA"), (".png", "1"), (".png", "I;16"),
                                      (".jpeg", "RGB"), (".jpg", "L"), (".jpg", "CMYK"), (".PNG", "RGB")])
def test_frames_in_any_format_and_mode_give_the_same_inputs(rb_root, ext, mode):
    folder = layout.rb_paths(rb_root, "b")["frames"]
    for f in os.listdir(folder):
        os.remove(os.path.join(folder, f))
    for i in range(1, 11):  # frame i: grey 10 * i (mode "1": black and white only)
        grey = (255 if i > 5 else 0) if mode == "1" else 10 * i
        _write_frame(os.path.join(folder, f"{i:06d}{ext}"), grey, mode)
    item = rb(rb_root, "test", segment_frames=None)[1]
    expected = torch.tensor([0, 0, 255, 255, 255.0]) if mode == "1" else torch.tensor([20.0, 40, 60, 80, 100])
    frames = item["frames"][:, 0]  # (L, 3, P, P): each picked frame is one flat grey in all 3 channels
    torch.testing.assert_close(frames.amax((1, 2, 3)), expected / 255, atol=1.5 / 255, rtol=0)
    torch.testing.assert_close(frames.amin((1, 2, 3)), expected / 255, atol=1.5 / 255, rtol=0)


def test_frames_folder_errors_name_the_folder(rb_root):
    folder = layout.rb_paths(rb_root, "b")["frames"]
    os.remove(os.path.join(folder, "000004.jpg"))
    with pytest.raises(BadInputError, match="frame numbering has a gap: 4 is missing but 9 .jpg files exist") as err:
        rb(rb_root, "train")
    assert str(err.value).startswith(folder + ": ")
    for f in os.listdir(folder):
        os.rename(os.path.join(folder, f), os.path.join(folder, f[:-4] + ".gif"))
    with pytest.raises(BadInputError, match=r"no images \(expected one of 000001.jpg, 000001.jpeg, 000001.png"):
        rb(rb_root, "train")


@pytest.mark.parametrize("fmt", ["csv", "h5", "txt", "txt_paths"])
def test_every_split_list_format_gives_string_names(rb_root, fmt):
    """The same two clips, renamed to FAIR-Play-style numeric ids, listed in each format."""
    for old, new in (("a", "000001"), ("b", "000010")):
        for key in ("binaural", "mono", "frames"):
            src, dst = layout.rb_paths(rb_root, old)[key], layout.rb_paths(rb_root, new)[key]
            if os.path.exists(src):
                os.rename(src, dst)
    det = os.path.join(rb_root, layout.RB_DETECTIONS)
    with open(det) as f:
        text = f.read().replace("\na,", "\n000001,")
    with open(det, "w") as f:
        f.write(text)
    path = os.path.join(rb_root, "splits", f"list.{fmt.split('_')[0]}")
    if fmt == "csv":
        write_csv(path, "name,scene", ["000001,7", "000010,8"])
    elif fmt == "h5":
        with h5py.File(path, "w") as f:
            f.create_dataset("audio", data=np.array([b"/home/author/binaural_audios/000001.wav",
                                                     b"/home/author/binaural_audios/000010.wav"]))
    elif fmt == "txt":
        with open(path, "w") as f:
            f.write("# PseudoBinaural split\n000001\n\n000010\n")
    else:
        with open(path, "w") as f:
            f.write("000001.wav\nsplit1/000010.mp4\n")
    ds = RealBinauralDataset(data_root=rb_root, list_csv=path, split="test", mel_cfg=CFG, segment_frames=None,
                             num_frames=L, max_sources=N, image_size=P)
    assert ds.names == ["000001", "000010"]
    assert not ds[0]["mask"][:, 1].all()  # the detections of "000001" were found under its string name
