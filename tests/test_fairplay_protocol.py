"""FAIR-Play from its authors' download to the papers' table: prepare_fairplay.py on a fake download (tiny
mp4s with 48 kHz stereo AAC, binaural_audios/*.wav, .h5 splits with the authors' absolute paths, a
new_splits/ tree), then ``python -m DiffBinaural.protocol`` on two splits at micro size, killed after the
first split and run again."""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time

import _proc
import av
import h5py
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDS = ["000001", "000002", "000003", "000004"]
SECONDS, VIDEO_FPS, SR = 1.5, 10, 48000
COLOURS = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]  # video frame k has COLOURS[k // 5]: a new one every 0.5 s
SPLITS = {1: (["000001", "000002"], ["000003"], ["000004"]), 2: (["000003", "000004"], ["000001"], ["000002"])}


def _download(root):
    """FAIR-Play as shipped, in small: videos/, binaural_audios/ (48 kHz), splits/ (h5), new_splits/ (txt)."""
    from DiffBinaural.dataset.synthetic import generate_dataset

    synth = root.parent / "synth"
    generate_dataset(synth, fmt="fairplay", num_clips=len(IDS), seconds=SECONDS, seed=3, image_size=(64, 48),
                     fairplay_sr=SR, split_fractions=(1, 0, 0))
    (root / "videos").mkdir(parents=True)
    (root / "binaural_audios").mkdir()
    for clip_id in IDS:
        wav, sr = sf.read(synth / "binaural_audios" / f"{clip_id}.wav", dtype="float32")
        sf.write(root / "binaural_audios" / f"{clip_id}.wav", wav, sr)
        with av.open(str(root / "videos" / f"{clip_id}.mp4"), "w") as c:
            v = c.add_stream("mpeg4", rate=VIDEO_FPS)
            v.width, v.height, v.pix_fmt = 64, 32, "yuv420p"
            a = c.add_stream("aac", rate=SR, layout="stereo")
            for k in range(int(SECONDS * VIDEO_FPS)):
                frame = av.VideoFrame.from_ndarray(np.full((32, 64, 3), COLOURS[k // 5], np.uint8), format="rgb24")
                frame.pts = k
                c.mux(v.encode(frame))
            c.mux(v.encode())
            x = np.ascontiguousarray(wav.T)
            for s in range(0, x.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, s:s + 1024]), format="fltp",
                                                   layout="stereo")
                frame.sample_rate, frame.pts = SR, s
                c.mux(a.encode(frame))
            c.mux(a.encode())
    for k, lists in SPLITS.items():
        for split, names in zip(("train", "val", "test"), lists):
            folder = root / "splits" / f"split{k}"
            folder.mkdir(parents=True, exist_ok=True)
            with h5py.File(folder / f"{split}.h5", "w") as f:  # the authors' machine's absolute paths
                f.create_dataset("audio", data=np.array(
                    [f"/private/home/rhgao/datasets/BINAURAL_MUSIC_ROOM/binaural16k/{n}.wav".encode() for n in names]))
            folder = root / "new_splits" / f"split{k}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{split}.txt").write_text("".join(f"{n}.mp3\n" for n in names))


def _run(*args, timeout=600):
    return subprocess.run([_proc.python(), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("fp")
    _download(base / "download")
    proc = _run("DiffBinaural/prepare_fairplay.py", "--download", base / "download", "--out", base / "data",
                "--max_side", 48, "--workers", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base, proc.stdout


def test_prepare_writes_the_loaders_layout(prepared):
    base, out = prepared
    data = base / "data"
    assert "4 clip(s) written (60 frames), 0 already present, 0 skipped as bad" in out
    assert "splits: 2 original, 2 scene-disjoint" in out
    for clip_id in IDS:
        folder = data / "frames" / f"{clip_id}.mp4"
        names = sorted(os.listdir(folder))
        assert names == [f"{n:06d}.png" for n in range(1, 16)]  # 1.5 s at 10 fps, from 000001
        with Image.open(folder / "000001.png") as im:
            assert im.size == (48, 24)  # --max_side, aspect kept
        # the 2.5D-Visual-Sound loader's index for a window centred at t is round((t + 0.05) * 10); that png
        # is the video frame on screen at t (frame k at k / 10 s here), so a png one frame early or late
        # shows the wrong colour at the instants next to a colour change (0.45, 0.55, 0.95, 1.05 s)
        for t in (0.12, 0.45, 0.55, 0.95, 1.05, 1.41):
            index = math.floor((t + 0.05) * 10 + 0.5)  # Python 2's round, half away from zero
            with Image.open(folder / f"{index:06d}.png") as im:
                pixel = im.convert("RGB").getpixel((24, 12))
            shown = int(np.argmin([np.abs(np.subtract(pixel, c)).sum() for c in COLOURS]))
            assert shown == math.floor(t * VIDEO_FPS) // 5, (clip_id, t)
        wav16, sr = sf.read(data / "binaural16k" / f"{clip_id}.wav")
        assert sr == 16000 and wav16.shape == (round(SECONDS * 16000), 2)
        assert sf.info(data / "binaural_audios" / f"{clip_id}.wav").samplerate == SR  # kept as shipped
    for k, lists in SPLITS.items():
        for split, names in zip(("train", "val", "test"), lists):
            for folder in ("splits", "new_splits"):
                assert (data / folder / f"split{k}" / f"{split}.txt").read_text().split() == names
    # resumable: a second run finds everything in place
    again = _run("DiffBinaural/prepare_fairplay.py", "--download", base / "download", "--out", base / "data")
    assert "0 clip(s) written (0 frames), 4 already present" in again.stdout


def test_a_broken_video_is_named_or_skipped(prepared, tmp_path):
    base, _ = prepared
    download = tmp_path / "dl"
    os.makedirs(download / "videos")
    os.symlink(base / "download" / "binaural_audios", download / "binaural_audios")
    os.symlink(base / "download" / "videos" / "000001.mp4", download / "videos" / "000001.mp4")
    (download / "videos" / "000002.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    proc = _run("DiffBinaural/prepare_fairplay.py", "--download", download, "--out", tmp_path / "out")
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "000002.mp4" in lines[0]
    assert not (tmp_path / "out" / "frames" / "000002.mp4").exists()
    proc = _run("DiffBinaural/prepare_fairplay.py", "--download", download, "--out", tmp_path / "out", "--skip_bad")
    assert proc.returncode == 0 and "1 skipped as bad (first: " in proc.stdout and "000002.mp4" in proc.stdout


TRAIN = "--max_steps 2 --batch_size_per_gpu 2 --workers 0 --steps 2 --num_val 1 --target residual --prediction_type sample"


@pytest.mark.slow
def test_protocol_on_two_splits_killed_and_resumed(prepared, tmp_path):
    base, _ = prepared
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "DiffBinaural.protocol", "--data_root", base / "data", "--splits", "1,2",
           "--out", out, "--config", "micro", "--train_args", TRAIN, "--test_args", "--steps 2", "--no-pesq"]
    first = subprocess.Popen(list(map(str, cmd)), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
    deadline = time.time() + 600
    while not (out / "5split_1" / "evaluate.done").exists():  # kill it once split 1 is finished
        assert first.poll() is None and time.time() < deadline, first.stdout.read().decode()[-3000:]
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    done = {s: (out / "5split_1" / f"{s}.done").stat().st_mtime for s in ("train", "dump", "render", "evaluate")}
    assert not (out / "table.json").exists()

    proc = subprocess.run(list(map(str, cmd)), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for step in done:  # split 1 was not redone
        assert f"5split_1: {step} done, skipped" in proc.stdout
        assert (out / "5split_1" / f"{step}.done").stat().st_mtime == done[step]
    assert "mean of 2 splits" in proc.stdout

    table = json.loads((out / "table.json").read_text())
    docs = {k: json.loads((out / f"5split_{k}" / "metrics.json").read_text()) for k in (1, 2)}
    for k, doc in docs.items():  # the table's numbers are evaluate.py's on the same outputs
        assert doc["num_clips"] == 1
        for key in table["metrics"]:
            assert table["splits"][f"5split_{k}"]["model"][key] == doc["model"]["mean"][key]
            assert table["splits"][f"5split_{k}"]["mono_baseline"][key] == doc["mono_baseline"]["mean"][key]
    for system in ("model", "mono_baseline"):  # mean and standard error, recomputed independently
        for key in ("stft_distance", "env_distance"):
            values = [docs[k][system]["mean"][key] for k in (1, 2)]
            assert table["mean"][system][key] == pytest.approx(statistics.fmean(values))
            assert table["se"][system][key] == pytest.approx(statistics.stdev(values) / math.sqrt(2))
    assert table["runs"]["5split_1"]["git"] is not None and table["runs"]["5split_2"]["world_size"] == 1
    run = json.loads((out / "ckpt" / "5split_2" / "run.json").read_text())  # every flag, the command, the commit
    assert run["flags"]["max_steps"] == 2 and run["flags"]["list_train"].endswith("split2/train.txt")
    assert "train_fairplay.py" in run["argv"][0] and {"commit", "dirty"} <= set(run["git"])
    assert run["versions"]["torch"] and run["world_size"] == 1
    assert "5split_2" in (out / "table.md").read_text()


def test_a_step_is_skipped_only_with_the_same_command_and_a_redone_step_redoes_the_rest(tmp_path, monkeypatch, capsys):
    """run_split's bookkeeping, with one-line steps in place of the scripts: the same commands are skipped;
    another sampling command redoes the dump and every step after it but keeps the training; other training
    flags are refused; a failing step names its log and leaves no .done behind."""
    from binaural_core.audio import BadInputError
    from DiffBinaural import protocol

    trace = tmp_path / "trace.txt"

    def fake(tag, fail=None):
        def commands(run, lists, args):
            return {step: [sys.executable, "-c", f"import sys; open({str(trace)!r}, 'a').write({step!r} + ' '); "
                           f"sys.exit({int(step == fail)})", tag if step != "train" else args.train_args]
                    for step in protocol.STEPS}
        return commands

    def steps_run():
        text = trace.read_text() if trace.exists() else ""
        trace.unlink(missing_ok=True)
        return text.split()

    args = type("Args", (), {"out": str(tmp_path / "runs"), "train_args": "--max_steps 2"})()
    monkeypatch.setattr(protocol, "commands", fake("--steps 2"))
    protocol.run_split("5split_1", {}, args)
    assert steps_run() == list(protocol.STEPS)
    protocol.run_split("5split_1", {}, args)
    assert steps_run() == [] and capsys.readouterr().out.count("done, skipped") == 4
    monkeypatch.setattr(protocol, "commands", fake("--steps 3"))  # another --test_args
    protocol.run_split("5split_1", {}, args)
    assert steps_run() == ["dump", "render", "evaluate"]
    monkeypatch.setattr(protocol, "commands", fake("--steps 4", fail="render"))
    with pytest.raises(BadInputError, match="5split_1: render failed"):
        protocol.run_split("5split_1", {}, args)
    assert steps_run() == ["dump", "render"]
    split = tmp_path / "runs" / "5split_1"
    assert (split / "dump.done").exists() and not (split / "render.done").exists()
    assert not (split / "evaluate.done").exists()  # stale: its input was redone
    args.train_args = "--max_steps 3"
    with pytest.raises(BadInputError, match="was trained with other flags"):
        protocol.run_split("5split_1", {}, args)
    assert steps_run() == []


def test_split_choice_on_the_synthetic_fairplay_layout(tmp_path):
    """The synthetic generator's FAIR-Play layout (splits/split1/*.h5) is a data root the protocol takes;
    unknown splits are one line naming the missing list."""
    from binaural_core.audio import BadInputError
    from DiffBinaural.dataset.synthetic import generate_dataset
    from DiffBinaural.protocol import split_lists

    generate_dataset(tmp_path, fmt="fairplay", num_clips=6, seconds=0.5, seed=1, split_fractions=(0.5, 0.25, 0.25))
    [(k, lists)] = split_lists(str(tmp_path), "1", None)  # no new_splits/: the indices name the 10 original ones
    assert k == "10split_1" and lists["test"].endswith(os.path.join("splits", "split1", "test.h5"))
    with pytest.raises(BadInputError, match="split 2 of 10split: list not found"):
        split_lists(str(tmp_path), "1,2", None)
    with pytest.raises(BadInputError, match="split 1 of 5split"):
        split_lists(str(tmp_path), "5split", None)
