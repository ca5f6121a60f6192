"""Sources found for the user: detections linked into tracks (missed frames, swapped order, one-frame false
positives, jitter), a tiny transformers detector loaded from a save_pretrained folder, the detection CSV
written by prepare_detections.py, and the offline error that names what to pass."""

from __future__ import annotations

import csv
import json
import os
import subprocess

import _proc
import numpy as np
import pytest
import torch
from PIL import Image

from binaural_core.audio import BadInputError
from DiffBinaural.detection import detect_clip, iou, link_tracks, load_detector, nms

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
A = np.array([10.0, 10.0, 30.0, 40.0])  # two sources far apart
B = np.array([60.0, 12.0, 80.0, 42.0])


def _row(box, score):
    return np.r_[box, score][None]


def _by_frame(rows):
    out = {}
    for r in rows:
        out.setdefault(int(r[0]), []).append(r[1:])
    return {f: np.array(v) for f, v in out.items()}


def test_iou_and_nms():
    assert iou(A[None], A[None])[0, 0] == pytest.approx(1.0)
    assert iou(A[None], B[None])[0, 0] == 0.0
    half = A + [10, 0, 10, 0]  # shifted by half its width: 1/3 overlap
    assert iou(A[None], half[None])[0, 0] == pytest.approx(1 / 3)
    boxes = np.stack([A, A + 1, B])
    assert sorted(nms(boxes, np.array([0.5, 0.9, 0.3]), 0.5).tolist()) == [1, 2]  # the weaker twin of A goes


def test_a_missed_frame_is_filled_by_interpolation():
    det = {f: _row(A + [2 * f, 0, 2 * f, 0], 0.9) for f in (1, 2, 3, 5, 6)}  # moving right, frame 4 missed
    rows = link_tracks(det, smooth=1)
    assert rows[:, 0].tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(rows[3, 1:5], A + [8, 0, 8, 0])  # the straight line through 3 and 5


def test_a_gap_longer_than_max_gap_splits_the_track_and_is_not_filled():
    det = {f: _row(A, 0.9) for f in (1, 2, 3, 9, 10)}
    rows = link_tracks(det, max_gap=3, smooth=1)
    assert rows[:, 0].tolist() == [1, 2, 3, 9, 10]


def test_a_swapped_order_keeps_each_source_in_its_own_track_and_rank():
    det = {}
    for f in range(1, 9):  # the detector lists the two sources in alternating order, scores jumping
        a, b = _row(A, 0.9 if f % 2 else 0.6), _row(B, 0.7 if f % 2 else 0.75)
        det[f] = np.concatenate([a, b] if f % 2 else [b, a])
    per_frame = _by_frame(link_tracks(det, smooth=1))
    # track A's mean score (0.75) beats B's (0.725): A is first in every frame, although its own score
    # is lower than B's in the even frames (per-frame order would swap the slots, and the sound, there)
    for f in range(1, 9):
        np.testing.assert_allclose(per_frame[f][:, :4], np.stack([A, B]))


def test_a_one_frame_false_positive_is_dropped():
    det = {f: _row(A, 0.9) for f in range(1, 7)}
    det[3] = np.concatenate([det[3], _row(B, 0.95)])  # a stray box, stronger than the real one, once
    rows = link_tracks(det, smooth=1)
    assert len(rows) == 6 and np.all(rows[:, 1:5] == A)


def test_smoothing_reduces_jitter_and_keeps_a_still_box_in_place():
    rng = np.random.default_rng(0)
    noisy = {f: _row(A + rng.normal(0, 2.0, 4), 0.9) for f in range(1, 41)}
    rows = link_tracks(noisy, smooth=5)
    raw = np.stack([noisy[f][0, :4] for f in range(1, 41)])
    assert np.std(rows[:, 1:5] - A) < 0.6 * np.std(raw - A)
    assert np.abs(rows[:, 1:5].mean(axis=0) - A).max() < 1.0


# --- a real transformers detector, tiny and random, from a save_pretrained folder --------------------
KNOWN = (0.5, 0.4, 0.25, 0.5)  # (cx, cy, w, h) of the box every detection token predicts


@pytest.fixture(scope="module")
def yolos_dir(tmp_path_factory):
    """A tiny YOLOS whose box head is fixed to KNOWN and whose classifier says 'person' (so the whole
    chain can be checked against a known box), saved with save_pretrained."""
    import transformers as T

    torch.manual_seed(0)
    cfg = T.YolosConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        image_size=[64, 64], patch_size=16, num_detection_tokens=4,
                        id2label={0: "person", 1: "car"}, label2id={"person": 0, "car": 1})
    model = T.YolosForObjectDetection(cfg)
    with torch.no_grad():
        last = model.bbox_predictor.layers[-1]
        last.weight.zero_()
        last.bias.copy_(torch.logit(torch.tensor(KNOWN)))  # sigmoid(bias) = the box
        model.class_labels_classifier.layers[-1].weight.zero_()
        model.class_labels_classifier.layers[-1].bias.copy_(torch.tensor([4.0, 0.0, 0.0]))  # person, car, none
    folder = tmp_path_factory.mktemp("yolos")
    model.save_pretrained(folder)
    T.YolosImageProcessor(size={"height": 64, "width": 64}, do_pad=False).save_pretrained(folder)
    return str(folder)


def _frames(folder, n=4, size=(96, 54)):
    os.makedirs(folder, exist_ok=True)
    for i in range(1, n + 1):
        Image.fromarray(np.full((size[1], size[0], 3), 20 * i, np.uint8)).save(os.path.join(folder, f"{i:06d}.jpg"))
    return str(folder)


def test_closed_set_detector_from_a_folder_finds_the_known_box(yolos_dir, tmp_path):
    det = load_detector(yolos_dir, queries=("person",), threshold=0.5)
    rows = detect_clip(det, _frames(tmp_path / "clip"), ext=".jpg", num_images=4)
    cx, cy, w, h = KNOWN
    want = [(cx - w / 2) * 96, (cy - h / 2) * 54, (cx + w / 2) * 96, (cy + h / 2) * 54]
    assert rows[:, 0].tolist() == [1, 2, 3, 4]  # one box per frame: the 4 identical tokens merged by NMS
    np.testing.assert_allclose(rows[:, 1:5], np.tile(want, (4, 1)), atol=0.05)
    # a query that is none of its labels is one line naming the detector
    with pytest.raises(BadInputError, match="none of the queries"):
        load_detector(yolos_dir, queries=("violin",))
    # the label picks: 'car' is never the top label here, so nothing is found
    assert len(detect_clip(load_detector(yolos_dir, queries=("car",), threshold=0.5), str(tmp_path / "clip"),
                           ext=".jpg", num_images=4)) == 0


def test_zero_shot_detector_takes_text_queries(tmp_path):
    """A tiny OWL-ViT (with a tiny CLIP tokenizer) loads from its folder and runs the text-query path."""
    import transformers as T

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz"):
        vocab[ch], vocab[ch + "</w>"] = 3 + 2 * i, 4 + 2 * i
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tok = T.CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), model_max_length=16)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    cfg = T.OwlViTConfig(text_config={**small, "vocab_size": len(vocab) + 2, "max_position_embeddings": 16},
                         vision_config={**small, "image_size": 64, "patch_size": 16}, projection_dim=32)
    folder = tmp_path / "owl"
    T.OwlViTForObjectDetection(cfg).save_pretrained(folder)
    size = {"height": 64, "width": 64}
    T.OwlViTProcessor(image_processor=T.OwlViTImageProcessor(size=size, crop_size=size), tokenizer=tok
                      ).save_pretrained(folder)
    det = load_detector(str(folder), queries=("person", "guitar"), threshold=0.0)
    assert det.zero_shot and det.keep_labels is None
    out = det([Image.new("RGB", (96, 54), (90, 10, 10))] * 2)
    assert len(out) == 2 and all(r.shape[1] == 5 for r in out)
    for r in out:  # whatever a random model finds lies inside the image
        assert np.all((r[:, 0] >= 0) & (r[:, 2] <= 96) & (r[:, 1] >= 0) & (r[:, 3] <= 54))


def test_offline_hub_id_names_the_folder_to_pass(monkeypatch):
    import huggingface_hub.constants as hf  # read at its import: set the constant too, or it tries the network

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    with pytest.raises(BadInputError, match="--detector FOLDER"):
        load_detector("nobody/not-a-cached-detector")


def test_prepare_detections_writes_the_realbinaural_csv(yolos_dir, tmp_path):
    root = tmp_path / "frames"
    _frames(root / "clip_a", n=3)
    _frames(root / "clip_b", n=5)
    out = tmp_path / "det" / "detection_results.csv"
    proc = subprocess.run([_proc.python(), os.path.join(REPO, "DiffBinaural", "prepare_detections.py"), "--frames_root",
                           root, "--out", out, "--detector", yolos_dir, "--queries", "person", "--threshold", "0.5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 clip(s), 8 box(es)" in proc.stdout
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["name", "frame", "x1", "y1", "x2", "y2", "score"]
    assert [(r["name"], int(r["frame"])) for r in rows] == [("clip_a", i) for i in (1, 2, 3)] + [
        ("clip_b", i) for i in range(1, 6)]
    # the CSV is what the RealBinaural loader reads
    from DiffBinaural.dataset.frames import open_clip_frames, read_detections

    frames, _ = open_clip_frames(str(root / "clip_b"), name="clip_b", max_sources=2,
                                 detections=(str(out), read_detections(str(out))["clip_b"]))
    assert sorted(frames.boxes) == [1, 2, 3, 4, 5] and frames.boxes[3].shape == (1, 4)
