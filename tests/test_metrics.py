"""Invariants of DiffBinaural.utils.metrics and the evaluate.py CLI that a real bug would break."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from binaural_core.audio import mono_from_binaural
from DiffBinaural import evaluate
from DiffBinaural.utils import metrics as M

SR = 22050
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTANCES = [m for m in M.METRIC_NAMES if m not in M.HIGHER_IS_BETTER]


def frac_delay(x: np.ndarray, delay_samples: float) -> np.ndarray:
    """Delay by a fractional number of samples with an FFT phase shift (circular)."""
    f = np.fft.rfftfreq(len(x))
    return np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * f * delay_samples), len(x))


def source(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated white noise (broadband, with louder and quieter stretches)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return 0.3 * rng.standard_normal(t.size) * (0.3 + 0.7 * np.sin(2 * np.pi * 2.0 * t) ** 2)


def binaural(delay_ms: float = 0.3, gain_db: float = -6.0, seed: int = 0) -> np.ndarray:
    """(2, S): left = source, right = source delayed by ``delay_ms`` and scaled by ``gain_db``."""
    s = source(seed=seed)
    return np.stack([s, 10 ** (gain_db / 20) * frac_delay(s, delay_ms * 1e-3 * SR)])


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    gt = binaural()
    pred = 0.8 * gt + 0.02 * np.random.default_rng(1).standard_normal(gt.shape)
    return pred, gt


def test_perfect_prediction_scores_zero(pair):
    _, gt = pair
    r = M.compute_all(gt, gt)
    assert list(r) == list(M.METRIC_NAMES)
    for m in DISTANCES:
        assert r[m] == pytest.approx(0.0, abs=1e-9), m
    assert r["snr"] > 15.0
    assert r["pesq"] > 4.5 or np.isnan(r["pesq"])


def test_imperfect_prediction_scores_worse(pair):
    pred, gt = pair
    r = M.compute_all(pred, gt, metrics=[m for m in M.METRIC_NAMES if m != "pesq"])
    assert all(r[m] > 1e-4 for m in r if m != "snr"), r
    assert r["snr"] < M.compute_all(gt, gt, metrics=["snr"])["snr"]


def test_swapping_ears_is_penalised(pair):
    _, gt = pair
    swapped = gt[::-1].copy()
    r = M.compute_all(swapped, gt, metrics=["ild_error_db", "phase_distance", "itd_error_ms"])
    assert r["ild_error_db"] > 10.0  # 2 x 6 dB
    assert r["phase_distance"] > 1.0
    assert r["itd_error_ms"] == pytest.approx(0.6, abs=0.1)  # 2 x 0.3 ms


def test_mag_is_twice_stft(pair):
    pred, gt = pair
    r = M.compute_all(pred, gt, metrics=["stft_distance", "mag_distance"])
    assert r["mag_distance"] == pytest.approx(2 * r["stft_distance"], rel=1e-6)
    assert M.mag_distance(pred, gt) == pytest.approx(r["mag_distance"], rel=1e-9)


def test_invariant_to_prediction_gain(pair):
    pred, gt = pair
    names = [m for m in M.METRIC_NAMES if m not in ("mel_distance", "pesq")]
    a = M.compute_all(pred, gt, metrics=names)
    b = M.compute_all(3.7 * pred, gt, metrics=names)
    for m in names:
        assert b[m] == pytest.approx(a[m], rel=1e-4, abs=1e-7), m
    # mel_distance is on the raw signals on purpose (comparable with Stage 1's mel distance).
    assert M.mel_distance(3.7 * pred, gt) != pytest.approx(M.mel_distance(pred, gt), rel=1e-3)


def test_fairplay_distances_match_hand_computation():
    rng = np.random.default_rng(5)
    pred, gt = 0.5 * rng.standard_normal((2, SR)), 0.2 * rng.standard_normal((2, SR))

    def prep(x):  # FAIR-Play: peak over both channels, then 16 kHz
        return librosa.resample(x / np.abs(x).max(), orig_sr=SR, target_sr=16000, axis=-1)

    p16, g16 = prep(pred), prep(gt)
    stft = 0.0
    env = 0.0
    for c in range(2):
        sp, sg = (librosa.stft(x[c], n_fft=512, hop_length=160, win_length=400, window="hann",
                               center=True, pad_mode="reflect") for x in (p16, g16))
        stacked_p, stacked_g = np.stack([sp.real, sp.imag]), np.stack([sg.real, sg.imag])
        stft += np.mean((stacked_p - stacked_g) ** 2)
        ep, eg = np.abs(scipy.signal.hilbert(p16[c])), np.abs(scipy.signal.hilbert(g16[c]))
        env += np.sqrt(np.mean((ep - eg) ** 2))
    assert M.stft_distance(pred, gt) == pytest.approx(stft, rel=1e-4)
    assert M.env_distance(pred, gt) == pytest.approx(env, rel=1e-4)


def test_known_itd_and_ild_are_recovered():
    gt = binaural(delay_ms=0.3, gain_db=-6.0, seed=3)
    active = M.active_frames(gt)
    # Right delayed 0.3 ms -> ITD = t_left - t_right = -0.3 ms; right 6 dB quieter -> ILD = +6 dB.
    # 0.3 ms = 6.6 samples: the parabolic refinement must bring it well inside one sample (0.045 ms).
    assert np.mean(M.itd_series(gt)[active]) == pytest.approx(-0.3, abs=0.01)
    assert np.mean(M.ild_series(gt)[active]) == pytest.approx(20 * np.log10(2.0), abs=0.5)
    mirrored = binaural(delay_ms=-0.3, gain_db=6.0, seed=3)  # right ear earlier and louder
    assert np.mean(M.itd_series(mirrored)) == pytest.approx(0.3, abs=0.01)
    assert np.mean(M.ild_series(mirrored)) == pytest.approx(-20 * np.log10(2.0), abs=0.5)
    centred = binaural(delay_ms=0.0, gain_db=0.0, seed=3)
    assert M.itd_error_ms(centred, gt) == pytest.approx(0.3, abs=0.05)
    assert M.ild_error_db(centred, gt) == pytest.approx(6.02, abs=0.5)
    assert np.all(M.iacc_series(centred) > 0.99)
    assert len(M.frame_times(len(M.ild_series(gt)))) == 1 + (gt.shape[1] - 1024) // 512


def test_mono_baseline_is_worse_than_gt_on_ild(pair):
    _, gt = pair
    mono = evaluate.mono_baseline(gt)
    assert np.array_equal(mono[0], mono_from_binaural(gt))
    assert M.ild_error_db(gt, gt) == 0.0
    assert M.ild_error_db(mono, gt) > 3.0
    assert M.phase_distance(mono, gt) == pytest.approx(np.pi / 2, abs=0.1)  # FAIR-Play Mono-Mono: 1.571


def test_length_mismatch_trims_to_shorter_and_silence_is_nan(pair):
    pred, gt = pair
    longer = np.concatenate([pred, np.ones((2, 300))], axis=1)
    a = M.compute_all(longer, gt, metrics=["stft_distance", "ild_error_db"])
    b = M.compute_all(pred, gt, metrics=["stft_distance", "ild_error_db"])
    assert a == pytest.approx(b)
    assert np.isnan(M.ild_error_db(pred, np.zeros_like(gt)))
    with pytest.raises(ValueError, match="2, S"):
        M.compute_all(pred[:1], gt)


# ----------------------------------------------------------------------------------- evaluate.py
def write(path: str, wav: np.ndarray, sr: int = SR) -> None:
    sf.write(path, np.asarray(wav).T, sr, subtype="FLOAT")


def make_dirs(root, n: int = 3) -> tuple[str, str]:
    pred_dir, gt_dir = str(root / "pred"), str(root / "gt")
    os.makedirs(pred_dir)
    os.makedirs(gt_dir)
    for i in range(n):
        gt = binaural(delay_ms=0.1 * i, gain_db=-2.0 * i, seed=10 + i)[:, : SR]
        write(os.path.join(gt_dir, f"clip{i}.wav"), gt)
        name = f"clip{i}_binaural_generated.wav" if i % 2 == 0 else f"clip{i}.wav"
        write(os.path.join(pred_dir, name), 0.9 * gt[:, : SR - 256 * i])  # vocoder-like shorter output
    return pred_dir, gt_dir


def test_evaluate_end_to_end(tmp_path, capsys):
    pred_dir, gt_dir = make_dirs(tmp_path)
    out = str(tmp_path / "res" / "metrics.json")
    evaluate.main(["--pred_dir", pred_dir, "--gt_dir", gt_dir, "--out", out])
    doc = json.load(open(out))
    assert doc["num_clips"] == 3 and doc["skipped"] == []
    assert set(doc["files"]) == {"clip0", "clip1", "clip2"}
    for system in ("model", "mono_baseline"):
        for part in ("mean", "std", "count"):
            assert set(doc[system][part]) == set(M.METRIC_NAMES), (system, part)
        assert set(doc[system]["per_clip"]["clip0"]) == set(M.METRIC_NAMES)
    assert doc["model"]["mean"]["stft_distance"] == pytest.approx(0.0, abs=1e-6)  # gain only
    assert doc["mono_baseline"]["mean"]["ild_error_db"] > doc["model"]["mean"]["ild_error_db"]
    assert doc["better"]["snr"] == "higher" and doc["better"]["stft_distance"] == "lower"
    table = capsys.readouterr().out
    assert "mono-copy" in table and "ild_error_db" in table
    assert not [f for f in os.listdir(tmp_path / "res") if f != "metrics.json"]  # no temp file left


def test_skip_bad_skips_and_counts(tmp_path, capsys):
    pred_dir, gt_dir = make_dirs(tmp_path)
    write(os.path.join(pred_dir, "orphan.wav"), binaural()[:, :SR])  # no GT
    write(os.path.join(pred_dir, "mono.wav"), source()[None, :SR])  # 1 channel
    write(os.path.join(gt_dir, "mono.wav"), binaural()[:, :SR])
    out = str(tmp_path / "m.json")
    evaluate.main(["--pred_dir", pred_dir, "--gt_dir", gt_dir, "--out", out, "--skip_bad",
                   "--metrics", "stft_distance,ild_error_db"])
    doc = json.load(open(out))
    assert doc["num_clips"] == 3 and len(doc["skipped"]) == 2
    assert set(doc["model"]["mean"]) == {"stft_distance", "ild_error_db"}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("skipped 2 broken pair(s)")


def test_cli_one_line_errors(tmp_path):
    """A 1-channel prediction and a prediction without GT: exit != 0, one stderr line naming the file."""
    procs = {}
    for case in ("mono_pred", "missing_gt"):  # both processes run concurrently (import time dominates)
        pred_dir, gt_dir = make_dirs(tmp_path / case, n=1)
        if case == "mono_pred":
            bad = os.path.join(pred_dir, "clip0_binaural_generated.wav")
            write(bad, source()[None, :SR])
            cmd = [sys.executable, os.path.join(REPO, "DiffBinaural", "evaluate.py")]
        else:
            bad = os.path.join(pred_dir, "zz_no_gt.wav")
            write(bad, binaural()[:, :SR])
            cmd = [sys.executable, "-m", "DiffBinaural.evaluate"]
        out = tmp_path / case / "m.json"
        cmd += ["--pred_dir", pred_dir, "--gt_dir", gt_dir, "--out", str(out), "--no-pesq"]
        procs[case] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        cwd=str(tmp_path)), bad, out)
    for case, (proc, bad, out) in procs.items():
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode != 0, case
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr
        assert bad in lines[0]
        assert ("channel" in lines[0]) if case == "mono_pred" else ("ground truth" in lines[0])
        assert not out.exists()


def test_empty_pred_dir_is_one_error(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    with pytest.raises(evaluate.BadInputError, match="no .wav files"):
        evaluate.evaluate_dirs(str(tmp_path / "p"), str(tmp_path / "g"))
    with pytest.raises(evaluate.BadInputError, match="unknown"):
        evaluate.parse_metrics("stft_distance,bogus", use_pesq=True)
