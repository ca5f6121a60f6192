"""Stage 2 reliability: SIGKILL + resume, the non-finite guard, and bad input to the vocoder scripts.

Every script case runs the real command line (``sys.executable BigVGAN/...py``) on tiny random
stereo clips and checks what a user sees: exit code, one ``error: FILE: problem`` line, files on disk.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import time

import _proc
import numpy as np
import pytest
import soundfile as sf
import torch

from BigVGAN.bigvgan import BigVGAN, load_config
from BigVGAN.trainer import VocoderTrainer, add_common_args
from binaural_core.checkpoint import safe_load, scan_checkpoint
from binaural_core.mel import MelConfig, mel_numpy

SCRIPTS = os.path.join(_proc.REPO, "BigVGAN")
TINY = os.path.join(SCRIPTS, "configs", "bigvgan_tiny.json")
CFG = MelConfig()
# 3 clips x 2 ears, batch 2: 3 steps per epoch, so kills land inside epochs too; a save at every step
RUN = ["--config", TINY, "--batch_size_per_gpu", 2, "--workers", 0, "--num_val", 1, "--segment_size", 4096,
       "--summary_interval", 1000, "--validation_interval", 1000, "--checkpoint_interval", 1, "--seed", 5]
MAX_STEPS = 11


def _write_audio(root, n=3, seconds=1.0):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(22050 * seconds)) / 22050
    for i in range(n):
        tone = np.sin(2 * np.pi * (220 + 110 * i) * t)[:, None] * np.array([[0.5, 0.2]])
        sf.write(root / f"c{i}.wav", (tone + 0.01 * rng.standard_normal(tone.shape)).astype(np.float32), 22050,
                 subtype="FLOAT")
    return root


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    return _write_audio(tmp_path_factory.mktemp("voc") / "audio")


def _run(script, *args, timeout=300):
    return subprocess.run([_proc.python(), os.path.join(SCRIPTS, script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=_proc.env(), cwd=_proc.REPO)


def _check_ckpt_dir(path) -> list[str]:
    """Every g_/do_ file under its real name loads and is finite; returns leftover temp files."""
    temps = []
    for name in sorted(os.listdir(path)):
        if _proc.TEMP_NAME.search(name):
            temps.append(name)
        elif name.startswith(("g_", "do_")):
            obj = safe_load(os.path.join(path, name))  # raises on a truncated file
            state = obj["generator"] if name.startswith("g_") else obj["mpd"]
            assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), name
    return temps


def _steps(path) -> int:
    g = scan_checkpoint(path, "g_")
    return int(os.path.basename(g)[2:]) if g else 0


@pytest.mark.slow
def test_vocoder_sigkill_at_any_moment_then_resume_gives_the_uninterrupted_weights(audio, tmp_path):
    ref = tmp_path / "ref"
    r = _run("train_binaural_mel.py", *RUN, "--audio_dir", audio, "--checkpoint_path", ref, "--max_steps", MAX_STEPS)
    assert r.returncode == 0, r.stderr[-3000:]
    ck, log = tmp_path / "ck", tmp_path / "stderr.log"
    cmd = [sys.executable, os.path.join(SCRIPTS, "train_binaural_mel.py"), *RUN, "--audio_dir", audio,
           "--checkpoint_path", ck, "--max_steps", MAX_STEPS]
    # 1. as soon as the first generator checkpoint exists
    proc = _proc.start(cmd, log)
    _proc.wait_until(lambda: (ck / "g_00000001").exists(), proc, "g_00000001", log)
    _proc.kill(proc)
    _check_ckpt_dir(ck)
    steps = [_steps(ck)]
    # 2. during a checkpoint write (a temp file left behind proves it)
    steps += _proc.kill_during_write(lambda: _proc.start(cmd, log), ck, _check_ckpt_dir, lambda: _steps(ck), log,
                                     tries=5)
    # 3. at a random moment after two more steps
    proc = _proc.start(cmd, log)
    target = steps[-1] + 2
    _proc.wait_until(lambda: _steps(ck) >= target, proc, f"step {target}", log)
    time.sleep(random.Random(0).uniform(0.0, 0.3))
    _proc.kill(proc)
    _check_ckpt_dir(ck)
    steps.append(_steps(ck))
    assert steps == sorted(steps) and steps[-1] >= target, steps
    # 4. to the end
    r = _run("train_binaural_mel.py", *RUN, "--audio_dir", audio, "--checkpoint_path", ck, "--max_steps", MAX_STEPS)
    assert r.returncode == 0 and "resumed from" in r.stderr, r.stderr[-3000:]
    name = f"{MAX_STEPS:08d}"
    ga, gb = (safe_load(d / f"g_{name}")["generator"] for d in (ref, ck))
    da, db = (safe_load(d / f"do_{name}") for d in (ref, ck))
    assert (da["steps"], da["epoch"], da["batch_in_epoch"]) == (db["steps"], db["epoch"], db["batch_in_epoch"])
    assert (db["epoch"], db["batch_in_epoch"]) == (MAX_STEPS // 3, MAX_STEPS % 3)
    for k in ga:
        assert torch.equal(ga[k], gb[k]), f"generator {k} differs from the uninterrupted run"
    for part in ("mpd", "mrd"):
        for k in da[part]:
            assert torch.equal(da[part][k], db[part][k]), f"{part}.{k} differs from the uninterrupted run"
    assert da["optim_g"]["state"][0]["step"] == db["optim_g"]["state"][0]["step"]


def _trainer(audio, ckpt, *extra) -> VocoderTrainer:
    p = argparse.ArgumentParser()
    add_common_args(p)
    args = p.parse_args([str(a) for a in (*RUN, "--audio_dir", audio, "--checkpoint_path", ckpt, *extra)])
    return VocoderTrainer(args, train_pred_dirs=None, val_pred_dirs=None, schedule=None, device=torch.device("cpu"))


def _nan_on_calls(monkeypatch, bad: set[int]) -> list[int]:
    """Make the generator loss NaN on the given (0-based) calls; returns the list of calls made."""
    from BigVGAN.loss import GeneratorLoss

    original, calls = GeneratorLoss.forward, []

    def patched(self, *args, **kwargs):
        loss, parts = original(self, *args, **kwargs)
        if len(calls) in bad:
            loss = loss * float("nan")
        calls.append(len(calls))
        return loss, parts

    monkeypatch.setattr(GeneratorLoss, "forward", patched)
    return calls


def test_vocoder_isolated_nonfinite_steps_are_skipped_and_counted(audio, tmp_path, monkeypatch):
    calls = _nan_on_calls(monkeypatch, {1, 3})
    trainer = _trainer(audio, tmp_path / "ck", "--max_steps", 4, "--max_nonfinite", 1)
    trainer.validate = lambda: {}
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("BigVGAN").addHandler(handler)  # after the trainer set up its (rank-0) handlers
    try:
        trainer.fit()
    finally:
        logging.getLogger("BigVGAN").removeHandler(handler)
    assert trainer.step == 4 and len(calls) == 6  # two skipped calls did not count as steps
    assert sum("non-finite generator loss" in m for m in messages) == 2
    state = safe_load(tmp_path / "ck" / "g_00000004")["generator"]
    assert all(torch.isfinite(v).all() for v in state.values())


def test_vocoder_too_many_nonfinite_steps_stop_and_keep_the_last_good_checkpoint(audio, tmp_path, monkeypatch):
    _nan_on_calls(monkeypatch, set(range(2, 100)))  # 3 batches per epoch: the skips run into epoch 1
    trainer = _trainer(audio, tmp_path / "ck", "--max_steps", 8, "--max_nonfinite", 2)
    with pytest.raises(RuntimeError, match=r"3 non-finite steps in a row at epoch 1, step 2; last good "
                                           r"checkpoint is .*g_00000002"):
        trainer.fit()
    assert sorted(n for n in os.listdir(tmp_path / "ck") if n.startswith("g_")) == ["g_00000001", "g_00000002"]
    assert not _check_ckpt_dir(tmp_path / "ck")
    generator = safe_load(tmp_path / "ck" / "g_00000002")["generator"]
    assert all(torch.isfinite(v).all() for v in generator.values())


# --- bad input: one line naming the file and the problem, non-zero exit, nothing that looks complete --


def _mels(root, audio, *, meta_mel=None, drop_right=None, nan_right=None):
    for side, ch in (("left", 0), ("right", 1)):
        (root / side).mkdir(parents=True, exist_ok=True)
        for wav in sorted(audio.glob("*.wav")):
            x, _ = sf.read(wav, dtype="float32")
            mel = mel_numpy(x[:, ch], CFG)
            if side == "right" and wav.stem == nan_right:
                mel[3, 5] = np.nan
            if not (side == "right" and wav.stem == drop_right):
                np.save(root / side / f"{wav.stem}.npy", mel)
    (root / "meta.json").write_text(json.dumps({"format_version": 1, "mel": meta_mel or CFG.to_dict()}))
    return root


def _config_with(tmp_path, change) -> str:
    h = json.load(open(TINY))
    change(h)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(h))
    return str(path)


def _case(case, tmp_path, audio):
    """(script, args, file the error must name, problem text, folder that must hold no output)."""
    out = tmp_path / "out"
    train = ["--audio_dir", audio, "--checkpoint_path", out, "--max_steps", 1, "--batch_size_per_gpu", 2,
             "--workers", 0, "--segment_size", 4096, "--num_val", 1]
    if case in ("mel_params", "mel_nan", "mel_sets"):
        mels = _mels(tmp_path / "mels", audio, meta_mel={**CFG.to_dict(), "fmax": 8000} if case == "mel_params" else None,
                     nan_right="c1" if case == "mel_nan" else None, drop_right="c2" if case == "mel_sets" else None)
        path, problem = {"mel_params": (mels / "meta.json", "fmax"),
                         "mel_nan": (mels / "right" / "c1.npy", "NaN"),
                         "mel_sets": (mels / "left", "different clips")}[case]
        return ("train_binaural_both.py", [*train, "--config", TINY, "--mel_pred_left_dir", mels / "left",
                                           "--mel_pred_right_dir", mels / "right"], path, problem, out)
    if case in ("config_unknown_key", "config_missing_key"):
        if case == "config_unknown_key":
            config = _config_with(tmp_path, lambda h: h.update(lamda_melloss=45))
            problem = "unknown config key(s): lamda_melloss"
        else:
            config = _config_with(tmp_path, lambda h: h.pop("upsample_rates"))
            problem = "missing config key(s): upsample_rates"
        return "train_binaural_mel.py", [*train, "--config", config], config, problem, out
    g = tmp_path / "g_00000001"
    if case == "pretrained_truncated":
        torch.save({"generator": BigVGAN(load_config(TINY)).state_dict()}, g)
        g.write_bytes(g.read_bytes()[:5000])
        problem = "truncated"
    else:  # a checkpoint of another model: a generator with twice the channels
        h = json.load(open(TINY))
        h["upsample_initial_channel"] *= 2
        torch.save({"generator": BigVGAN(load_config(_config_with(tmp_path, lambda x: x.update(h)))).state_dict()}, g)
        problem = "BigVGAN weights do not fit"
    if case.startswith("pretrained"):
        return "train_binaural_mel.py", [*train, "--config", TINY, "--pretrained", g], g, problem, out
    mels = _mels(tmp_path / "mels", audio)
    (tmp_path / "config.json").write_text(open(TINY).read())
    return ("inference.py", ["--checkpoint_file", g, "--mel_left_dir", mels / "left", "--mel_right_dir",
                             mels / "right", "--output_dir", out], g, problem, out)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["mel_params", "mel_nan", "mel_sets", "config_unknown_key", "config_missing_key",
                                  "pretrained_truncated", "pretrained_other_model", "inference_other_model"])
def test_vocoder_bad_input_stops_with_one_error_line(case, tmp_path, audio):
    script, args, path, problem, out = _case(case, tmp_path, audio)
    proc = _run(script, *args)
    lines = _proc.lines(proc.stderr)
    assert proc.returncode != 0, f"{case}: exit code 0\n{proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, f"{case}: traceback\n{proc.stderr[-4000:]}"
    assert lines and lines[-1].startswith("error: "), f"{case}: last line {lines[-1:]}"
    assert str(path) in lines[-1] and problem in lines[-1], f"{case}: {lines[-1]!r} should name {path}: {problem}"
    made = [n for n in os.listdir(out) if n.startswith(("g_", "do_")) or n.endswith(".wav")] if out.exists() else []
    assert not made, f"{case}: left {made}"


def test_vocoder_checkpoints_hold_every_rngs_state_like_stage_1(audio, tmp_path):
    """The copy that drifted: the vocoder saved only torch's CPU RNG; both trainers now save every rank's
    torch, numpy and CUDA states through the one runtime, and a resume restores them."""
    import numpy as np

    trainer = _trainer(audio, tmp_path / "ck", "--max_steps", 1)
    trainer.validate = lambda: {}
    trainer.fit()
    do = safe_load(tmp_path / "ck" / "do_00000001")
    assert do["world_size"] == 1 and len(do["rng"]) == 1
    assert {"torch", "numpy", "cuda"} <= set(do["rng"][0]) and do["batch_in_epoch"] == 1
    np.random.seed(123)
    torch.manual_seed(123)
    resumed = _trainer(audio, tmp_path / "ck", "--max_steps", 2)
    assert resumed.step == 1 and np.random.get_state()[2] == int(do["rng"][0]["numpy"]["pos"])
    assert torch.equal(torch.get_rng_state(), do["rng"][0]["torch"])
