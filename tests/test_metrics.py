"""Invariants of DiffBinaural.evaluation.metrics and the evaluate.py CLI that a real bug would break."""

from __future__ import annotations

import json
import os
import subprocess

import _proc
import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from binaural_core.audio import mono_from_binaural
from binaural_core.mel import MelConfig
from DiffBinaural import evaluate
from DiffBinaural.evaluation import metrics as M

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

    def prep(x):  # FAIR-Play: loaded at 16 kHz, then divided by the peak over both channels
        y = librosa.resample(x, orig_sr=SR, target_sr=16000, axis=-1)
        return y / np.abs(y).max()

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
    assert a == pytest.approx(b, rel=1e-3)  # the loud tail is cut before normalising (resampling rings a little)
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
    # gain only (each file is resampled to 16 kHz whole, so the cut end rings a little: 1e-5 vs ~2)
    assert doc["model"]["mean"]["stft_distance"] == pytest.approx(0.0, abs=1e-4)
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
            cmd = [_proc.python(), os.path.join(REPO, "DiffBinaural", "evaluate.py")]
        else:
            bad = os.path.join(pred_dir, "zz_no_gt.wav")
            write(bad, binaural()[:, :SR])
            cmd = [_proc.python(), "-m", "DiffBinaural.evaluate"]
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


# ------------------------------------------------------------------------------- any sample rate
def _numpy_fairplay(pred16: np.ndarray, gt16: np.ndarray) -> tuple[float, float]:
    """FAIR-Play's STFT and ENV distances written from their definitions with numpy alone (no librosa,
    torch or scipy): periodic Hann of 400 centred in 512, hop 160, reflect-padded by 256, Hilbert
    envelope from the one-sided spectrum. Inputs: 16 kHz (2, S), already peak-normalised."""
    def stft(x):
        win = np.zeros(512)
        win[56:456] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
        x = np.pad(x, 256, mode="reflect")
        frames = np.stack([x[i:i + 512] for i in range(0, len(x) - 512 + 1, 160)])
        return np.fft.rfft(frames * win, axis=1).T  # (257, T)

    def envelope(x):
        n = len(x)
        h = np.zeros(n)
        h[0] = 1
        h[1:(n + 1) // 2] = 2
        if n % 2 == 0:
            h[n // 2] = 1
        return np.abs(np.fft.ifft(np.fft.fft(x) * h))

    stft_d = env_d = 0.0
    for c in range(2):
        d = stft(pred16[c]) - stft(gt16[c])
        stft_d += np.mean(np.concatenate([d.real.ravel(), d.imag.ravel()]) ** 2)
        env_d += np.sqrt(np.mean((envelope(pred16[c]) - envelope(gt16[c])) ** 2))
    return float(stft_d), float(env_d)


def _band_limited(seconds: float, sr: int, seed: int, cutoff: float | None = 7000) -> np.ndarray:
    """(2, S) noise at ``sr`` with energy only below ``cutoff`` Hz (None: all of the band), ILD and ITD."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    spec = np.fft.rfft(rng.standard_normal(n))
    if cutoff is not None:
        spec[np.fft.rfftfreq(n, 1 / sr) > cutoff] = 0
    s = np.fft.irfft(spec, n)
    s *= 0.5 / np.abs(s).max()
    return np.stack([s, 0.6 * frac_delay(s, 0.4e-3 * sr)])


def test_evaluate_at_16k_equals_the_fairplay_definitions(tmp_path):
    """16 kHz files (FAIR-Play's rate, and every published method's) are scored exactly as FAIR-Play does."""
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    expected = {}
    rng = np.random.default_rng(0)
    for i in range(2):
        gt = 0.7 * _band_limited(2.0, 16000, seed=i)
        pred = np.stack([gt.mean(0), gt.mean(0)]) + 0.02 * rng.standard_normal(gt.shape)
        write(str(gt_dir / f"{i:06d}.wav"), gt, 16000)
        write(str(pred_dir / f"{i:06d}.wav"), pred, 16000)
        p, g = (sf.read(str(d / f"{i:06d}.wav"), dtype="float32")[0].T.astype(np.float64) for d in (pred_dir, gt_dir))
        expected[f"{i:06d}"] = _numpy_fairplay(p / np.abs(p).max(), g / np.abs(g).max())
    out = tmp_path / "m.json"
    evaluate.main(["--pred_dir", str(pred_dir), "--gt_dir", str(gt_dir), "--out", str(out),
                   "--metrics", "stft_distance,env_distance"])
    doc = json.load(open(out))
    assert doc["settings"]["rates"]["fairplay_metrics_and_pesq"] == 16000
    for name, (stft_d, env_d) in expected.items():
        assert doc["files"][name]["pred_rate"] == doc["files"][name]["gt_rate"] == 16000
        assert doc["model"]["per_clip"][name]["stft_distance"] == pytest.approx(stft_d, rel=1e-5)
        assert doc["model"]["per_clip"][name]["env_distance"] == pytest.approx(env_d, rel=1e-5)


def test_the_same_clips_at_16k_22k_and_48k_score_the_same(tmp_path):
    # broadband: the 48 kHz peak is not the 16 kHz peak, so only FAIR-Play's order (resample, then
    # normalise) agrees across rates; normalising first was off by -19 % (22050) and -70 % (48 kHz) here
    gt48 = 0.7 * _band_limited(2.0, 48000, seed=3, cutoff=None)
    rng = np.random.default_rng(4)
    pred48 = np.stack([gt48.mean(0), 0.8 * gt48[1]]) + 0.01 * rng.standard_normal(gt48.shape)
    keys = ["stft_distance", "env_distance", "ild_error_db", "itd_error_ms"]
    scores = {}
    for sr in (16000, 22050, 48000):
        pair = [librosa.resample(x, orig_sr=48000, target_sr=sr, axis=-1) for x in (pred48, gt48)]
        for kind, x in zip(("pred", "gt"), pair):
            os.makedirs(tmp_path / f"{kind}{sr}", exist_ok=True)
            write(str(tmp_path / f"{kind}{sr}" / "000001.wav"), x, sr)
        scores[sr] = evaluate.evaluate_pair(str(tmp_path / f"pred{sr}" / "000001.wav"),
                                            str(tmp_path / f"gt{sr}" / "000001.wav"), mel_cfg=MelConfig(),
                                            metrics=keys)
    for sr in (22050, 48000):
        assert scores[sr]["pred_rate"] == scores[sr]["gt_rate"] == sr
        for key in ("stft_distance", "env_distance"):
            assert scores[sr]["model"][key] == pytest.approx(scores[16000]["model"][key], rel=0.01), (sr, key)
            assert scores[sr]["mono_baseline"][key] == pytest.approx(scores[16000]["mono_baseline"][key], rel=0.01)
    assert scores[48000]["model"]["itd_error_ms"] < 0.5 * scores[48000]["mono_baseline"]["itd_error_ms"]
    # mixed rates: a 16 kHz prediction against the 48 kHz ground truth
    mixed = evaluate.evaluate_pair(str(tmp_path / "pred16000" / "000001.wav"), str(tmp_path / "gt48000" / "000001.wav"),
                                   mel_cfg=MelConfig(), metrics=keys)
    assert mixed["model"]["stft_distance"] == pytest.approx(scores[16000]["model"]["stft_distance"], rel=0.01)


def test_durations_that_differ_beyond_the_tolerance_are_refused(tmp_path):
    gt = 0.5 * _band_limited(1.0, 16000, seed=1)
    write(str(tmp_path / "gt.wav"), gt, 16000)
    write(str(tmp_path / "pred.wav"), librosa.resample(gt[:, :-1600], orig_sr=16000, target_sr=22050, axis=-1), 22050)
    with pytest.raises(evaluate.BadInputError, match=r"lasts 0.900 s but the ground truth .* lasts 1.000 s") as err:
        evaluate.evaluate_pair(str(tmp_path / "pred.wav"), str(tmp_path / "gt.wav"), mel_cfg=MelConfig())
    assert str(err.value).startswith(str(tmp_path / "pred.wav"))
    res = evaluate.evaluate_pair(str(tmp_path / "pred.wav"), str(tmp_path / "gt.wav"), mel_cfg=MelConfig(),
                                 metrics=["stft_distance"], duration_tolerance=0.2)
    assert res["seconds"] == pytest.approx(0.9)


def test_fairplay_protocol_table_mean_se_and_split_mean(tmp_path, capsys):
    docs = []
    for k in range(3):
        pred_dir, gt_dir = make_dirs(tmp_path / f"s{k}", n=2 + k)
        out = str(tmp_path / f"split{k + 1}.json")
        evaluate.main(["--pred_dir", pred_dir, "--gt_dir", gt_dir, "--out", out, "--no-pesq", "--protocol", "fairplay"])
        docs.append(json.load(open(out)))
    table = capsys.readouterr().out
    per_clip = [c["env_distance"] for c in docs[2]["mono_baseline"]["per_clip"].values()]
    se = np.std(per_clip, ddof=1) / np.sqrt(len(per_clip))
    assert f"{np.mean(per_clip):.3f} ± {se:.3f}" in table and "D-phase" in table and "mean ± standard error" in table
    evaluate.main(["--protocol", "fairplay", "--results", *(str(tmp_path / f"split{k + 1}.json") for k in range(3))])
    table = capsys.readouterr().out
    means = [d["mono_baseline"]["mean"]["stft_distance"] for d in docs]
    row = next(line for line in table.splitlines() if line.startswith("mono copy, mean of 3 splits"))
    assert f"{np.mean(means):.3f} ± {np.std(means, ddof=1) / np.sqrt(3):.3f}" in row
    assert "model, split2" in table
