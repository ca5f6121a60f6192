"""Stage 1 reliability, end to end: kills, NaNs, unsafe or broken checkpoints, bad inputs, dead workers.

Every script case runs the real command line (``sys.executable DiffBinaural/<script>.py``) on a small
synthetic dataset, or on a corrupted copy of it, and checks what a user sees: the exit code, the
stderr (one ``error: FILE: problem`` line, no traceback) and the files left on disk.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import _proc
import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import MICRO

from binaural_core.audio import BadInputError
from binaural_core.checkpoint import safe_load
from DiffBinaural.dataset import layout
from DiffBinaural.dataset.synthetic import generate_dataset
from DiffBinaural.training.trainer import Stage1Trainer, run
from DiffBinaural.utils.arguments import load_model_config, model_config, train_parser

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, "DiffBinaural", "train_realBinaural.py")
TEST = os.path.join(REPO, "DiffBinaural", "test_realBinaural.py")
TINY = [*MICRO, "--steps", "3", "--workers", "0"]
# 4 train clips, batch 1: 4 optimizer steps per epoch; validation only when the run stops
RUN = ["--batch_size_per_gpu", "1", "--num_epoch", "1000", "--eval_epoch", "1000", "--num_vis", "0",
       "--disp_iter", "1000", "--seed", "7", *TINY]
KILL_FLAGS = ["--save_every", "1", "--max_steps", "14"]
BAD_CLIP = "synth_000002"  # in the train split of the fixture below (train: 2, 3, 5, 8; val: 6, 7; test: 1, 4)
RUN_FILES = {"config.json", "run.json", "state_latest.pth", "unet_latest.pth", "frame_latest.pth", "unet_best.pth",
             "frame_best.pth", "train.log", "tb"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, fmt="realbinaural", num_clips=8, seconds=1.5, seed=3, image_size=(96, 54),
                     split_fractions=(0.6, 0.2, 0.2))
    assert BAD_CLIP in (root / "splits" / "train.csv").read_text().split()
    return root


def _flags(data, ckpt, *extra, data_root=None) -> list[str]:
    root = data_root or data
    return ["--id", "run", "--data_root", str(root), "--ckpt", str(ckpt),
            "--list_train", str(root / "splits" / "train.csv"),
            "--list_val", str(root / "splits" / "val.csv"), *RUN, *extra]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted in-process run with the flags of the kill test: the trained model of this module."""
    ckpt = tmp_path_factory.mktemp("reference")
    run(train_parser("t").parse_args(_flags(data, ckpt, *KILL_FLAGS)), dataset_kind="realbinaural")
    return ckpt / "run"


def _script(script: str, args: list, timeout: float = 240, **env) -> subprocess.CompletedProcess:
    return subprocess.run([_proc.python(), script, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=_proc.env(**env), cwd=REPO)


def _assert_finite(state: dict) -> None:
    for k, v in state.items():
        if torch.is_tensor(v) and v.is_floating_point():
            assert torch.isfinite(v).all(), f"non-finite values in {k}"


def _check_run_dir(run_dir) -> list[str]:
    """Every file under a real name is complete; returns the leftover temp files."""
    temps = []
    for name in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, name)
        if _proc.TEMP_NAME.search(name):
            temps.append(name)
            continue
        assert name in RUN_FILES, f"unexpected file {name} in {run_dir}"
        if name.endswith(".pth"):
            obj = safe_load(path)  # raises BadInputError on a truncated file
            _assert_finite(obj["model"] if name == "state_latest.pth" else obj)
        elif name == "config.json":
            load_model_config(path)
        elif name == "run.json":
            json.load(open(path))  # complete (written atomically)
    return temps


# --- kill-safe training ----------------------------------------------------------------------------


def _state_step(run_dir) -> int:
    return int(safe_load(os.path.join(run_dir, "state_latest.pth"))["step"])


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_gives_the_uninterrupted_weights(data, reference, tmp_path):
    """SIGKILL right after the first save, during a save, and at a random moment: every file under a real
    name stays loadable, and --resume ends with bit-identical weights to an uninterrupted run."""
    ckpt, run_dir = tmp_path / "ck", tmp_path / "ck" / "run"
    state = run_dir / "state_latest.pth"
    cmd = [sys.executable, TRAIN, *_flags(data, ckpt, *KILL_FLAGS)]
    rng = random.Random(0)
    log = tmp_path / "stderr.log"

    def start(*extra):
        return _proc.start([*cmd, *extra], log)

    # 1. as soon as the first state file exists
    proc = start()
    _proc.wait_until(state.exists, proc, "the first state_latest.pth", log)
    _proc.kill(proc)
    _check_run_dir(run_dir)
    steps = [_state_step(run_dir)]

    # 2. while a checkpoint is being written (a temp file left behind proves it)
    steps += _proc.kill_during_write(lambda: start("--resume"), run_dir, _check_run_dir,
                                     lambda: _state_step(run_dir), log, tries=3)

    # 3. at a random moment after two more saves
    proc = start("--resume")
    mtimes = {state.stat().st_mtime_ns}

    def saved_twice() -> bool:
        try:
            mtimes.add(state.stat().st_mtime_ns)
        except FileNotFoundError:  # cannot happen with atomic renames; checked below anyway
            pass
        return len(mtimes) >= 3

    _proc.wait_until(saved_twice, proc, "two more saves", log)
    time.sleep(rng.uniform(0.0, 0.15))
    _proc.kill(proc)
    _check_run_dir(run_dir)
    steps.append(_state_step(run_dir))
    assert steps == sorted(steps) and steps[-1] >= steps[0] + 2, steps

    # 4. to the end
    done = _script(TRAIN, [*_flags(data, ckpt, *KILL_FLAGS), "--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    _check_run_dir(run_dir)  # leftover temp files of the killed writes are allowed, under their temp names
    a, b = safe_load(reference / "state_latest.pth"), safe_load(state)
    assert (a["step"], a["epoch"], a["batch_in_epoch"]) == (b["step"], b["epoch"], b["batch_in_epoch"]) == (
        14, 3, 2)
    for part in ("model", "ema"):
        sa, sb = (a[part], b[part]) if part == "model" else (a[part]["module"], b[part]["module"])
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{part}.{k} differs from the uninterrupted run"
    assert a["opt"]["state"][0]["step"] == b["opt"]["state"][0]["step"]


# --- NaN guard -------------------------------------------------------------------------------------


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _trainer_with_nans(data, ckpt, monkeypatch, is_bad, *extra) -> tuple[Stage1Trainer, list[int], _Messages]:
    """A trainer whose ``GaussianDiffusion.training_losses`` returns a NaN loss (so NaN gradients) on the
    calls ``n`` (0-based) with ``is_bad(n)``. Also returns the trainer's step at each call, and its log."""
    from DiffBinaural.diffusion_utils import GaussianDiffusion

    trainer = Stage1Trainer(train_parser("t").parse_args(_flags(data, ckpt, *extra)), dataset_kind="realbinaural",
                            device=torch.device("cpu"))
    messages = _Messages()
    logging.getLogger("DiffBinaural").addHandler(messages)  # after the trainer set up its handlers
    original = GaussianDiffusion.training_losses
    steps_at_call: list[int] = []

    def patched(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if is_bad(len(steps_at_call)):
            out["loss"] = out["loss"] * float("nan")
        steps_at_call.append(trainer.step)
        return out

    monkeypatch.setattr(GaussianDiffusion, "training_losses", patched)
    return trainer, steps_at_call, messages


def test_isolated_nonfinite_steps_are_skipped_and_counted(data, tmp_path, monkeypatch):
    trainer, calls, records = _trainer_with_nans(data, tmp_path, monkeypatch, lambda n: n in (1, 4),
                                                 "--max_steps", "6", "--max_nonfinite", "1")
    trainer.fit()
    assert trainer.step == 6 and trainer.nonfinite == 0
    # the step counter did not advance on the two NaN calls, which consumed their batches
    assert calls == [0, 1, 1, 2, 3, 3, 4, 5]
    skips = [m for m in records.messages if "non-finite" in m]
    assert len(skips) == 2 and "epoch 0 step 1" in skips[0] and "epoch 1 step 3" in skips[1], skips
    assert all("(1 in a row)" in m for m in skips)
    state = safe_load(tmp_path / "run" / "state_latest.pth")
    assert state["step"] == 6 and state["nonfinite"] == 0
    _assert_finite(state["model"])
    _assert_finite(state["ema"]["module"])


def test_too_many_nonfinite_steps_stop_with_the_position_and_keep_the_last_good_state(data, tmp_path, monkeypatch):
    # steps 1..3 are fine, then NaN forever
    trainer, _, _ = _trainer_with_nans(data, tmp_path, monkeypatch, lambda n: n >= 3,
                                       "--max_steps", "50", "--save_every", "1", "--max_nonfinite", "2")
    with pytest.raises(RuntimeError, match=r"3 non-finite steps in a row at epoch 1, step 3") as err:
        trainer.fit()
    assert "state_latest.pth" in str(err.value)
    assert trainer.step == 3
    state = safe_load(tmp_path / "run" / "state_latest.pth")
    assert state["step"] == 3
    _assert_finite(state["model"])
    _assert_finite(state["ema"]["module"])
    _check_run_dir(tmp_path / "run")


# --- safe loading -----------------------------------------------------------------------------------


class _RunsCode:
    """Unpickling this runs a shell command (what weights_only=True must refuse)."""

    def __init__(self, sentinel: str):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_safe_load_refuses_a_pickle_that_runs_code(tmp_path, writer):
    sentinel, path = tmp_path / "SENTINEL", tmp_path / "evil.pth"
    payload = {"model": {"w": torch.zeros(2)}, "extra": _RunsCode(str(sentinel))}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    with pytest.raises(BadInputError) as err:
        safe_load(path)
    assert err.value.path == str(path) and str(err.value).startswith(f"{path}: ")
    assert "\n" not in str(err.value)
    assert not sentinel.exists(), "unpickling ran code"


def test_safe_load_refuses_a_truncated_checkpoint(reference, tmp_path):
    blob = (reference / "state_latest.pth").read_bytes()
    cut = tmp_path / "state_cut.pth"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BadInputError, match="unreadable checkpoint") as err:
        safe_load(cut)
    assert err.value.path == str(cut) and "\n" not in str(err.value)


@pytest.mark.parametrize("content", [b"name\nsynth_000001\n", bytes(range(256)) * 4], ids=["csv_text", "binary"])
def test_safe_load_calls_a_non_checkpoint_unreadable_not_unsafe(tmp_path, content):
    path = tmp_path / "not_a_checkpoint.pth"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match="unreadable checkpoint") as err:
        safe_load(path)
    assert err.value.path == str(path)
    assert "Python objects" not in str(err.value), str(err.value)


# --- bad inputs, end to end (all subprocesses started together, two at a time) -----------------------


def _write_wav(path, wav: np.ndarray, sr: int) -> None:
    """(C, S) or (S,) float audio as 16-bit PCM."""
    sf.write(path, wav.T, sr, subtype="PCM_16")


def _read_wav(path) -> tuple[np.ndarray, int]:
    wav, sr = sf.read(path, dtype="float32", always_2d=True)
    return wav.T, sr


def _clip_paths(root, name=BAD_CLIP) -> dict[str, str]:
    return layout.rb_paths(str(root), name)


def _missing_wav(root):
    os.remove(_clip_paths(root)["binaural"])
    return _clip_paths(root)["binaural"], "file not found"


def _empty_wav(root):
    _write_wav(_clip_paths(root)["binaural"], np.zeros((2, 0), np.float32), 22050)
    return _clip_paths(root)["binaural"], "empty audio file"


def _one_channel(root):
    path = _clip_paths(root)["binaural"]
    wav, sr = _read_wav(path)
    _write_wav(path, wav[0], sr)
    return path, "expected 2 channel(s), found 1"


def _rate_44100(root):
    path = _clip_paths(root)["binaural"]
    wav, _ = _read_wav(path)
    _write_wav(path, wav, 44100)
    return path, "sample rate is 44100 Hz"


def _too_short(root):
    """0.2 s of binaural and mono audio; a crop is 32 mel frames = 8192 samples = 0.37 s."""
    paths = _clip_paths(root)
    for key in ("binaural", "mono"):
        wav, sr = _read_wav(paths[key])  # (C, S)
        _write_wav(paths[key], wav[:, : int(0.2 * sr)], sr)
    return paths["binaural"], "shorter than one crop"


def _empty_frames(root):
    frames = _clip_paths(root)["frames"]
    for name in os.listdir(frames):
        os.remove(os.path.join(frames, name))
    return frames, "frames folder has no images"


def _csv_without_name(root):
    path = root / "splits" / "train.csv"
    path.write_text(path.read_text().replace("name\n", "clip\n", 1))
    return str(path), "no 'name' column"


def _detection_not_a_number(root):
    # (a box outside the image is no longer an error: it is dropped and counted, tests/test_datasets.py)
    path = root / layout.RB_DETECTIONS
    with open(path, "a") as f:
        f.write(f"{BAD_CLIP},1,10,10,n/a,40,0.9\n")
    return str(path), "a value is missing or not a number"


TRAIN_CASES = {
    "missing_wav": _missing_wav, "empty_wav": _empty_wav, "one_channel_binaural": _one_channel,
    "binaural_44100Hz": _rate_44100, "shorter_than_a_crop": _too_short, "empty_frames_folder": _empty_frames,
    "csv_without_name_column": _csv_without_name, "detection_not_a_number": _detection_not_a_number,
}


def _config_unknown_key(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg["not_a_key"] = 1
    (run_dir / "config.json").write_text(json.dumps(cfg))
    return str(run_dir / "config.json"), "unknown config key(s): not_a_key"


def _config_missing_key(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    del cfg["unet_channels"]
    (run_dir / "config.json").write_text(json.dumps(cfg))
    return str(run_dir / "config.json"), "missing config key(s): unet_channels"


def _weights_truncated(run_dir):
    path = run_dir / "unet_cut.pth"
    blob = (run_dir / "unet_best.pth").read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    return str(path), "unreadable checkpoint"


def _weights_other_size(run_dir):
    """UNet weights of a model trained with --unet_channels 8 (this run: 16)."""
    from DiffBinaural.model import Stage1Model

    args = train_parser("t").parse_args(["--data_root", ".", "--list_train", "x", "--list_val", "x", *TINY,
                                         "--unet_channels", "8"])
    torch.manual_seed(0)
    path = run_dir / "unet_small.pth"
    torch.save(Stage1Model(model_config(args)).unet.state_dict(), path)
    return str(path), "UNet weights do not fit "


def _weights_not_a_state_dict(run_dir):
    """A loadable checkpoint that holds a bare tensor instead of a state_dict."""
    path = run_dir / "unet_tensor.pth"
    torch.save(torch.zeros(3), path)
    return str(path), "state_dict"


TEST_CASES = {  # run against a copy of the trained reference run; the case says which file is broken
    "config_unknown_key": _config_unknown_key, "config_missing_key": _config_missing_key,
    "weights_unet_truncated": _weights_truncated, "weights_unet_other_size": _weights_other_size,
    "weights_unet_not_a_state_dict": _weights_not_a_state_dict,
}
@pytest.fixture(scope="module")
def bad_runs(data, reference, tmp_path_factory):
    """Run every bad-input case as a real command line; {case: (CompletedProcess, file, problem, out_dir)}."""
    work = tmp_path_factory.mktemp("bad")
    jobs = {}
    for case, corrupt in TRAIN_CASES.items():
        root = work / case / "data"
        shutil.copytree(data, root)
        path, problem = corrupt(root)
        jobs[case] = (TRAIN, _flags(data, work / case / "ck", "--max_steps", "1", data_root=root), path, problem, None)
    for case, corrupt in TEST_CASES.items():
        ckpt = work / case / "ck"
        shutil.copytree(reference, ckpt / "run", ignore=shutil.ignore_patterns("tb", "state_latest.pth"))
        path, problem = corrupt(ckpt / "run")
        out = work / case / "mels"
        args = ["--id", "run", "--data_root", data, "--ckpt", ckpt, "--list_test", data / "splits" / "test.csv",
                "--output_dir", out, *TINY]
        if case.startswith("weights"):
            args += ["--weights_unet", path]
        jobs[case] = (TEST, args, path, problem, out)
    # the test script on a broken clip of its own list
    root = work / "test_script_missing_wav" / "data"
    shutil.copytree(data, root)
    os.remove(_clip_paths(root, "synth_000001")["binaural"])
    out = work / "test_script_missing_wav" / "mels"
    jobs["test_script_missing_wav"] = (
        TEST, ["--id", "run", "--data_root", root, "--ckpt", reference.parent, "--list_test",
               root / "splits" / "test.csv", "--output_dir", out, *TINY],
        _clip_paths(root, "synth_000001")["binaural"], "file not found", out)
    # the same broken clip with two workers (--num_gpus 2, gloo): the error happens inside a spawned worker
    root = work / "missing_wav_two_workers" / "data"
    shutil.copytree(data, root)
    path, problem = _missing_wav(root)
    jobs["missing_wav_two_workers"] = (
        TRAIN, _flags(data, work / "missing_wav_two_workers" / "ck", "--max_steps", "1", "--num_gpus", "2",
                      data_root=root), path, problem, None)
    # --skip_bad: two broken train clips are dropped, counted in one line, and training goes on
    root = work / "skip_bad" / "data"
    shutil.copytree(data, root)
    _missing_wav(root)
    wav, _ = _read_wav(_clip_paths(root, "synth_000003")["binaural"])
    _write_wav(_clip_paths(root, "synth_000003")["binaural"], wav, 44100)
    jobs["skip_bad"] = (TRAIN, _flags(data, work / "skip_bad" / "ck", "--max_steps", "1", "--skip_bad",
                                      data_root=root), None, None, None)

    def go(item):
        case, (script, args, path, problem, out) = item
        return case, (_script(script, args), path, problem, out)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(go, jobs.items()))


@pytest.mark.slow  # the shared fixture runs 14 command lines (~35 s on 2 cores); each check is instant
@pytest.mark.parametrize("case", [
    *TRAIN_CASES, *TEST_CASES, "test_script_missing_wav", "missing_wav_two_workers",
])
def test_bad_input_stops_with_one_error_line(bad_runs, case):
    proc, path, problem, out = bad_runs[case]
    lines = _proc.lines(proc.stderr)
    assert proc.returncode != 0, f"{case}: exit code 0\n{proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, f"{case}: traceback\n{proc.stderr[-4000:]}"
    assert lines and lines[-1].startswith("error: "), f"{case}: last line {lines[-1:]}"
    assert path in lines[-1] and problem in lines[-1], f"{case}: {lines[-1]!r} should name {path}: {problem}"
    if out is not None:  # test script: nothing that looks like a complete mel directory
        assert not (out / "meta.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["weights_unet_truncated", "weights_unet_other_size",
                                  "weights_unet_not_a_state_dict"])
def test_bad_weights_give_exactly_one_stderr_line(bad_runs, case):
    proc, path, problem, _ = bad_runs[case]
    lines = _proc.lines(proc.stderr)
    assert proc.returncode != 0
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {path}: ") and problem in lines[0], lines[0]


@pytest.mark.slow
def test_skip_bad_trains_on_and_counts_in_one_line(bad_runs):
    proc = bad_runs["skip_bad"][0]
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = [ln for ln in _proc.lines(proc.stderr) if "skipped" in ln]
    assert len(summary) == 1, summary
    assert "RealBinauralDataset(train): skipped 2 of 4 clips" in summary[0]
    assert "missing file: 1" in summary[0] and "wrong sample rate: 1" in summary[0]
    assert "Traceback" not in proc.stderr
