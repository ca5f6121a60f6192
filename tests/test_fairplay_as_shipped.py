"""FAIR-Play exactly as its authors ship it, through both stages, the renderer, evaluation and binauralize.

The folder: numeric string ids (``000001`` ...), 48 kHz binaural wavs, frames extracted as
``frames/{id}.mp4/000001.png`` (some clips' frames in RGBA and grayscale PNGs), the official split
files ``splits/split1/{train,val,test}.h5`` holding absolute paths from the authors' machine, and
PseudoBinaural-style scene-disjoint ``new_splits/split{k}/{train,val,test}.txt`` (5 splits). A user
trains Stage 1 on one .txt split, dumps mels, trains the vocoder with ``--train_list`` on that split,
renders and evaluates at FAIR-Play's 16 kHz, then binauralizes a clip with detector boxes.
"""

from __future__ import annotations

import json
import os
import subprocess

import _proc
import h5py
import librosa
import numpy as np
import pytest
import soundfile as sf
from conftest import MICRO
from PIL import Image

from DiffBinaural.dataset import layout
from DiffBinaural.dataset.synthetic import generate_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [*MICRO, "--workers", "0", "--target", "residual", "--prediction_type", "sample", "--interaural_phase"]
NUM_CLIPS = 10


def _run(*args, ok=True):
    proc = subprocess.run([_proc.python(), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=REPO)
    if ok:
        assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def fairplay(tmp_path_factory):
    root = tmp_path_factory.mktemp("FAIR-Play")
    generate_dataset(root, fmt="fairplay", num_clips=NUM_CLIPS, seconds=2.0, seed=7, fairplay_sr=48000,
                     image_size=(96, 64), split_fractions=(0.6, 0.2, 0.2))
    ids = [f"{k:06d}" for k in range(1, NUM_CLIPS + 1)]
    for clip_id, mode in (("000002", "RGBA"), ("000003", "L")):  # what other extraction tools write
        folder = layout.fp_paths(str(root), clip_id)["frames"]
        for f in os.listdir(folder):
            with Image.open(os.path.join(folder, f)) as im:
                im.convert(mode).save(os.path.join(folder, f))
    # PseudoBinaural's scene-disjoint 5 splits: split k tests clips 2k-1, 2k, validates the next two
    for k in range(1, 6):
        test = ids[2 * k - 2:2 * k]
        val = [ids[(2 * k + j) % NUM_CLIPS] for j in range(2)]
        train = [i for i in ids if i not in test + val]
        folder = root / "new_splits" / f"split{k}"
        folder.mkdir(parents=True)
        for split, members in (("train", train), ("val", val), ("test", test)):
            (folder / f"{split}.txt").write_text("".join(f"{m}\n" for m in members))
    # FAIR-Play's 16 kHz ground truth (its evaluation rate), as the authors' binaural16k folder
    gt16 = root / "binaural16k"
    gt16.mkdir()
    for clip_id in ids:
        wav, sr = sf.read(layout.fp_paths(str(root), clip_id)["binaural"], dtype="float32")
        assert sr == 48000 and wav.shape[1] == 2
        sf.write(gt16 / f"{clip_id}.wav", librosa.resample(wav.T, orig_sr=sr, target_sr=16000, axis=-1).T, 16000)
    return root


@pytest.mark.slow
def test_fairplay_as_shipped_through_both_stages_and_evaluation(fairplay, tmp_path):
    root, split = fairplay, fairplay / "new_splits" / "split3"
    with h5py.File(layout.fp_split_h5(str(root), "train", 1), "r") as f:  # the official files hold absolute paths
        assert all(p.decode().startswith("/") for p in f["audio"][()])
    common = ["--data_root", root, "--ckpt", tmp_path / "ckpt", "--id", "fp", *TINY]
    _run("DiffBinaural/train_fairplay.py", *common, "--list_train", split / "train.txt", "--list_val",
         split / "val.txt", "--batch_size_per_gpu", 2, "--max_steps", 2, "--steps", 2)
    # the official .h5 split works the same way (validation on split1's val.h5)
    _run("DiffBinaural/train_fairplay.py", *common[:-len(TINY)], "--id", "fp_h5", *TINY,
         "--list_train", layout.fp_split_h5(str(root), "train", 1), "--list_val",
         layout.fp_split_h5(str(root), "val", 1), "--batch_size_per_gpu", 2, "--max_steps", 1, "--steps", 2)
    test_ids = (split / "test.txt").read_text().split()
    assert test_ids == ["000005", "000006"]
    for mode, out in (("test", "mels"), ("gt", "mels_gt")):
        _run("DiffBinaural/test_fairplay.py", *common, "--mode", mode, "--list_test", split / "test.txt",
             "--steps", 2, "--output_dir", tmp_path / out)
    for clip_id in test_ids:  # 2 s at 48 kHz → 22050 Hz mels, the ids kept as strings
        mel = np.load(tmp_path / "mels" / "left" / "test" / f"{clip_id}.npy")
        assert mel.shape == (80, 2 * 22050 // 256)
    # the vocoder: 48 kHz wavs, --train_list / --val_list of the same .txt split, names 000001...
    proc = _run("BigVGAN/train_binaural_mel.py", "--config", "BigVGAN/configs/bigvgan_tiny.json",
                "--audio_dir", root / layout.FP_AUDIO_DIR, "--train_list", split / "train.txt",
                "--val_list", split / "val.txt", "--checkpoint_path", tmp_path / "voc", "--batch_size_per_gpu", 2,
                "--workers", 0, "--num_val", 1, "--segment_size", 4096, "--max_steps", 2)
    assert (tmp_path / "voc" / "g_00000002").is_file(), proc.stderr[-2000:]
    # render (FAIR-Play has no mono files: the binaural wav is down-mixed) and evaluate at 16 kHz
    for mels, out in (("mels", "wav"), ("mels_gt", "wav_gt")):
        _run("DiffBinaural/render.py", "--mel_dir", tmp_path / mels, "--split", "test", "--mono_dir",
             root / layout.FP_AUDIO_DIR, "--output_dir", tmp_path / out)
    gt_only = tmp_path / "gt16_test"
    gt_only.mkdir()
    for clip_id in test_ids:
        os.symlink(root / "binaural16k" / f"{clip_id}.wav", gt_only / f"{clip_id}.wav")
    proc = _run("DiffBinaural/evaluate.py", "--pred_dir", tmp_path / "wav_gt", "--gt_dir", gt_only, "--out",
                tmp_path / "split3.json", "--no-pesq", "--protocol", "fairplay")
    assert "FAIR-Play protocol" in proc.stdout and "mono copy" in proc.stdout
    doc = json.loads((tmp_path / "split3.json").read_text())
    assert doc["num_clips"] == 2 and sorted(doc["files"]) == test_ids
    assert {f["gt_rate"] for f in doc["files"].values()} == {16000}
    assert {f["pred_rate"] for f in doc["files"].values()} == {22050}
    for key in ("stft_distance", "env_distance", "ild_error_db", "itd_error_ms"):  # the true mels: near the GT
        assert doc["model"]["mean"][key] < doc["mono_baseline"]["mean"][key], key
    _run("DiffBinaural/evaluate.py", "--pred_dir", tmp_path / "wav", "--gt_dir", gt_only, "--out",
         tmp_path / "split3_pred.json", "--no-pesq")
    proc = _run("DiffBinaural/evaluate.py", "--protocol", "fairplay", "--results", tmp_path / "split3.json",
                tmp_path / "split3_pred.json")
    assert "mean of 2 splits" in proc.stdout


@pytest.mark.slow
def test_binauralize_with_png_frames_and_detector_boxes(fairplay, tmp_path):
    root = fairplay
    split = root / "new_splits" / "split1"
    _run("DiffBinaural/train_fairplay.py", "--data_root", root, "--ckpt", tmp_path / "ckpt", "--id", "fp", *TINY,
         "--list_train", split / "train.txt", "--list_val", split / "val.txt", "--batch_size_per_gpu", 2,
         "--max_steps", 1, "--steps", 2)
    cfg = json.loads((tmp_path / "ckpt" / "fp" / "config.json").read_text())
    assert cfg["box_source"] == "whole_frame" and cfg["visual_tokens"] == "grid"  # FAIR-Play's default
    mono = tmp_path / "mono.wav"
    wav, sr = sf.read(layout.fp_paths(str(root), "000002")["binaural"], dtype="float32")
    sf.write(mono, wav.mean(axis=1), sr)  # a 48 kHz mono recording
    boxes = tmp_path / "detections.csv"
    # a real detector's output: boxes past the 96 x 64 border (clipped), one wholly outside (dropped)
    boxes.write_text("frame,x1,y1,x2,y2,score\n1,-4.5,10,40,70.2,0.9\n2,50,-3,101,30,0.8\n3,120,5,140,20,0.7\n"
                     "4,10,10,50,50,0.6\n")
    flags = ["--mono", mono, "--stage1", tmp_path / "ckpt" / "fp", "--steps", 2]
    for clip_id in ("000002", "000003"):  # RGBA and grayscale PNG frames
        frames = layout.fp_paths(str(root), clip_id)["frames"]
        with Image.open(os.path.join(frames, "000001.png")) as im:
            assert im.mode == {"000002": "RGBA", "000003": "L"}[clip_id]
        out = tmp_path / f"out_{clip_id}.wav"
        proc = _run("binauralize.py", *flags, "--frames", frames, "--boxes", boxes, "--out", out,
                    "--report", tmp_path / f"report_{clip_id}")
        assert f"{boxes}: 2 box(es) clipped to the image, 1 dropped" in proc.stderr  # checked all the same ...
        # ... but a FAIR-Play model reads the whole frame, as a grid of cell tokens
        assert "trained on whole frames: the boxes are not used (visual tokens: grid)" in proc.stderr
        data, out_sr = sf.read(out)
        assert out_sr == 22050 and data.shape == (round(2.0 * 22050), 2)
        # --report: the listening page of this video: input and output players, the frame, the cues
        page = (tmp_path / f"report_{clip_id}" / "report.html").read_text()
        assert page.count("<audio ") == 2 and "input (mono)" in page and "output (mono renderer)" in page
        assert (tmp_path / f"report_{clip_id}" / "listen" / "frame.png").is_file()
        assert (tmp_path / f"report_{clip_id}" / "listen" / "cues.png").is_file()
    # broken detector rows: one error line naming the user's CSV and the line
    frames = layout.fp_paths(str(root), "000002")["frames"]
    bad = tmp_path / "bad.csv"
    for rows, problem in (("1,10,10,40,40,0.9\n2,10,ten,40,40,0.9\n", "frame 2: a value is missing or not a number"),
                          ("1,10,10,40,40,0.9\n99,10,10,40,40,0.9\n", "frame 99: frame is not one of the clip's images")):
        bad.write_text("frame,x1,y1,x2,y2,score\n" + rows)
        proc = _run("binauralize.py", *flags, "--frames", frames, "--boxes", bad, "--out", tmp_path / "x.wav", ok=False)
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {bad}: line 3: "), proc.stderr
        assert problem in lines[0] and "Traceback" not in proc.stderr and not (tmp_path / "x.wav").exists()
    bad.write_text("frame,x1,y1,x2,score\n1,1,1,2,0.5\n")
    proc = _run("binauralize.py", *flags, "--frames", frames, "--boxes", bad, "--out", tmp_path / "x.wav", ok=False)
    assert proc.returncode == 2 and f"error: {bad}: missing column(s) y2" in proc.stderr
