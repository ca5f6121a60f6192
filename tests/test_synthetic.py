"""The synthetic dataset: on-disk layouts, determinism and the physics it encodes."""

from __future__ import annotations

import csv
import glob
import json
import math
import os

import h5py
import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from scipy.signal import freqz, lfilter

from binaural_core.audio import LEFT, RIGHT, BadInputError, mono_from_binaural
from DiffBinaural.dataset import layout, spatial, synthetic

SR = 22050
W, H = 256, 144


def gcc_phat_itd(left: np.ndarray, right: np.ndarray, sr: int, max_lag: int = 40) -> float:
    """ITD in seconds by GCC-PHAT, sub-sample (parabolic peak); positive = right ear leads."""
    n = 2 * left.size
    cross = np.fft.rfft(left, n) * np.conj(np.fft.rfft(right, n))
    cc = np.fft.irfft(cross / (np.abs(cross) + 1e-12), n)
    cc = np.concatenate([cc[-max_lag:], cc[: max_lag + 1]])  # lags -max_lag .. +max_lag
    k = int(np.argmax(cc))
    frac = 0.5 * (cc[k - 1] - cc[k + 1]) / (cc[k - 1] - 2 * cc[k] + cc[k + 1])
    return (k - max_lag + frac) / sr


def ild_db(wav: np.ndarray) -> float:
    """Right-over-left energy ratio in dB."""
    return float(10 * np.log10(np.sum(wav[RIGHT] ** 2) / np.sum(wav[LEFT] ** 2)))


@pytest.fixture(scope="module")
def rb_root(tmp_path_factory):
    out = tmp_path_factory.mktemp("rb")
    summary = synthetic.generate_dataset(out, fmt="realbinaural", num_clips=5, seconds=1.5, seed=3)
    return str(out), summary


@pytest.fixture(scope="module")
def single_root(tmp_path_factory):
    """One static source per clip, no reverb: every clip's cues are checkable."""
    out = tmp_path_factory.mktemp("single")
    synthetic.generate_dataset(
        out,
        num_clips=8,
        seconds=1.0,
        seed=11,
        min_sources=1,
        max_sources=1,
        moving_prob=0.0,
        reverb=False,
        mono=False,
    )
    return str(out)


# --- layouts ------------------------------------------------------------------------------------


def test_realbinaural_layout(rb_root):
    root, summary = rb_root
    meta = synthetic.load_meta(root)
    names = summary["names"]
    assert names == [f"synth_{k:06d}" for k in range(1, 6)] and list(meta["clips"]) == names
    n_samples, n_frames = round(1.5 * SR), math.ceil(1.5 * layout.FPS)
    for name in names:
        paths = layout.rb_paths(root, name)
        binaural, sr = sf.read(paths["binaural"], always_2d=True)
        assert sr == SR and binaural.shape == (n_samples, 2)
        assert 0.5 - 1e-3 <= np.abs(binaural).max() <= 0.9 + 1e-3  # sane peak, no clipping
        mono, sr_mono = sf.read(paths["mono"])
        assert sr_mono == SR and mono.ndim == 1
        np.testing.assert_allclose(mono, mono_from_binaural(binaural.T), atol=1.01 / 32768)
        frames = sorted(os.listdir(paths["frames"]))
        assert frames == [layout.FRAME_PATTERN.format(index=i) for i in range(1, n_frames + 1)]
        assert Image.open(layout.frame_path(paths["frames"], 1)).size == (W, H)
        assert meta["clips"][name]["num_frames"] == n_frames
        for src in meta["clips"][name]["sources"]:
            assert len(src["azimuth_deg"]) == len(src["boxes"]) == len(src["itd_ms"]) == n_frames

    with open(os.path.join(root, layout.RB_DETECTIONS), newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["name", "frame", "x1", "y1", "x2", "y2", "score"]
    expected = sum(len(c["sources"]) * c["num_frames"] for c in meta["clips"].values())
    assert len(rows) - 1 == expected
    for name, frame, x1, y1, x2, y2, score in rows[1:]:
        x1, y1, x2, y2 = map(int, (x1, y1, x2, y2))
        assert 0 <= x1 < x2 <= W - 1 and 0 <= y1 < y2 <= H - 1 and float(score) == 1.0
        assert name in names and 1 <= int(frame) <= n_frames

    members = {}
    for split in layout.SPLITS:
        with open(layout.rb_split_csv(root, split)) as fh:
            lines = fh.read().splitlines()
        assert lines[0] == "name" and len(lines) > 1
        members[split] = lines[1:]
        assert all(meta["clips"][m]["split"] == split for m in members[split])
    assert sorted(sum(members.values(), [])) == names  # a partition
    assert members == meta["splits"]


def test_fairplay_layout(tmp_path):
    summary = synthetic.generate_dataset(
        tmp_path, fmt="fairplay", num_clips=3, seconds=1.0, seed=0, fairplay_sr=16000
    )
    ids = summary["names"]
    assert ids == ["000001", "000002", "000003"] and summary["sample_rate"] == 16000
    for clip_id in ids:
        paths = layout.fp_paths(str(tmp_path), clip_id)
        info = sf.info(paths["binaural"])
        assert info.samplerate == 16000 and info.channels == 2 and info.frames == 16000
        assert (
            paths["frames"].endswith(".mp4") and len(glob.glob(os.path.join(paths["frames"], "*.png"))) == 10
        )  # FAIR-Play's authors extract .png frames
        assert sorted(os.listdir(paths["frames"]))[0] == "000001.png"
    assert not os.path.exists(tmp_path / "action_detection_results") and not os.path.exists(
        tmp_path / "processed"
    )
    seen = []
    for split in layout.SPLITS:
        with h5py.File(layout.fp_split_h5(str(tmp_path), split, 1), "r") as fh:
            entries = [p.decode() if isinstance(p, bytes) else p for p in fh[layout.FP_H5_KEY][()]]
        assert entries and all(os.path.isabs(p) for p in entries)
        for p in entries:
            clip_id = os.path.splitext(os.path.basename(p))[0]
            assert os.path.isfile(layout.fp_paths(str(tmp_path), clip_id)["binaural"])
            seen.append(clip_id)
    assert sorted(seen) == ids
    assert synthetic.load_meta(tmp_path)["sample_rate"] == 16000


def test_cli_switches(tmp_path):
    synthetic.main(
        [
            "--out",
            str(tmp_path),
            "--num_clips",
            "2",
            "--seconds",
            "0.5",
            "--no-mono",
            "--no-reverb",
            "--image_size",
            "96",
            "64",
            "--fps",
            "8",
            "--workers",
            "1",
        ]
    )
    meta = synthetic.load_meta(tmp_path)
    assert not os.path.exists(tmp_path / layout.RB_MONO_DIR) and meta["reverb"] is False
    assert meta["image_size"] == [96, 64] and meta["clips"]["synth_000001"]["num_frames"] == 4
    assert Image.open(
        layout.frame_path(layout.rb_paths(str(tmp_path), "synth_000002")["frames"], 4)
    ).size == (96, 64)
    with pytest.raises(BadInputError, match="--overwrite"):
        synthetic.generate_dataset(tmp_path, num_clips=1, seconds=0.5)
    synthetic.generate_dataset(tmp_path, num_clips=1, seconds=0.5, overwrite=True)
    assert not os.path.exists(layout.rb_paths(str(tmp_path), "synth_000002")["binaural"])  # stale clip gone


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fmt": "musicstereo"}, "--format"),
        ({"num_clips": 0}, "--num_clips"),
        ({"seconds": 0.1}, "--seconds"),
        ({"min_sources": 3, "max_sources": 2}, "--min_sources"),
        ({"image_size": (10, 10)}, "--image_size"),
        ({"frame_ext": ".gif"}, "--frame_ext"),
    ],
)
def test_bad_arguments_fail_in_one_line(tmp_path, kwargs, message):
    with pytest.raises(BadInputError, match=message) as err:
        synthetic.generate_dataset(tmp_path / "x", **kwargs)
    assert "\n" not in str(err.value)


def test_frame_ext_png_for_realbinaural(tmp_path):
    synthetic.generate_dataset(tmp_path, num_clips=1, seconds=0.5, frame_ext=".png", image_size=(64, 48))
    folder = layout.rb_paths(str(tmp_path), "synth_000001")["frames"]
    assert sorted(os.listdir(folder)) == [f"{i:06d}.png" for i in range(1, 6)]
    with Image.open(os.path.join(folder, "000001.png")) as im:
        assert im.format == "PNG" and im.size == (64, 48)


def test_refuses_foreign_nonempty_dir(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(BadInputError, match="not empty"):
        synthetic.generate_dataset(tmp_path, num_clips=1, seconds=0.5)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


# --- determinism --------------------------------------------------------------------------------


def _all_bytes(root) -> dict[str, bytes]:
    files = sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True))
    return {os.path.relpath(f, root): open(f, "rb").read() for f in files if os.path.isfile(f)}


def test_deterministic_for_a_seed(tmp_path):
    kw = {"num_clips": 3, "seconds": 0.6}
    synthetic.generate_dataset(tmp_path / "a", seed=5, **kw)
    synthetic.generate_dataset(tmp_path / "b", seed=5, workers=2, **kw)  # parallel: same bytes
    synthetic.generate_dataset(tmp_path / "c", seed=6, **kw)
    a, b, c = (_all_bytes(tmp_path / d) for d in "abc")
    assert a == b
    wav = os.path.join(layout.RB_BINAURAL_DIR, "synth_000001.wav")
    assert a[wav] != c[wav] and a[layout.RB_DETECTIONS] != c[layout.RB_DETECTIONS]


# --- physics ------------------------------------------------------------------------------------


def test_woodworth_itd_and_ear_delays():
    assert spatial.woodworth_itd(np.pi / 2) == pytest.approx(0.0875 / 343 * (np.pi / 2 + 1), rel=1e-12)
    assert spatial.woodworth_itd(np.pi / 2) * 1e3 == pytest.approx(0.656, abs=5e-4)
    az = np.deg2rad(np.linspace(-180, 180, 73))
    itd = spatial.woodworth_itd(az)
    np.testing.assert_allclose(itd, -spatial.woodworth_itd(-az), atol=1e-15)  # odd
    np.testing.assert_allclose(spatial.woodworth_itd(np.deg2rad(150)), spatial.woodworth_itd(np.deg2rad(30)))
    delays = spatial.ear_delays(az)
    assert delays.min() >= 0  # causal
    np.testing.assert_allclose(delays[:, LEFT] - delays[:, RIGHT], itd, atol=1e-12)


def test_head_shadow_filter():
    az = np.deg2rad(60.0)  # source on the right: left ear is in the shadow
    lo, hi = 2 * np.pi * 200 / SR, 2 * np.pi * 8000 / SR
    gains = {}
    for ear in (LEFT, RIGHT):
        b, a = spatial.head_shadow_coeffs(az, ear, SR)
        assert (b.sum() / a.sum()) == pytest.approx(1.0)  # unit DC gain: the shadow is a shelf
        _, h = freqz(b, a, worN=[lo, hi])
        gains[ear] = 20 * np.log10(np.abs(h))
    assert gains[LEFT][1] < gains[LEFT][0] - 10  # far ear: high frequencies cut by > 10 dB
    assert gains[RIGHT][1] > gains[RIGHT][0] + 2  # near ear: high-frequency boost
    assert abs(gains[LEFT][0] - gains[RIGHT][0]) < 1.0  # little ILD at low frequencies
    alpha = spatial.shadow_alpha(np.deg2rad([0.0, 150.0]))
    np.testing.assert_allclose(alpha, [2.0, 0.1])


def test_spatialize_matches_time_domain_filtering():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SR)
    az = np.deg2rad(-35.0)
    out = spatial.spatialize(x, az, SR)
    n = 1 << 16
    # A fractional delay is undefined at exactly Nyquist; the block method's Nyquist bin is wider, so
    # compare below 10 kHz.
    below = np.fft.rfftfreq(n, 1 / SR) < 10000
    for ear in (LEFT, RIGHT):
        b, a = spatial.head_shadow_coeffs(az, ear, SR)
        spec = np.fft.rfft(lfilter(b, a, x), n) * np.exp(
            -2j * np.pi * np.fft.rfftfreq(n) * spatial.ear_delays(az)[ear] * SR
        )
        ref = np.fft.irfft(spec * below, n)[1000 : x.size - 1000]
        got = np.fft.irfft(np.fft.rfft(out[ear], n) * below, n)[1000 : x.size - 1000]
        assert np.sqrt(np.mean((got - ref) ** 2) / np.mean(ref**2)) < 5e-3  # -46 dB


def test_spatialize_positive_azimuth_is_right_louder_and_earlier():
    x = np.random.default_rng(1).standard_normal(SR)
    for deg in (20.0, 45.0, 90.0):
        out = spatial.spatialize(x, np.deg2rad(deg), SR)
        assert ild_db(out) > 3.0
        itd = gcc_phat_itd(out[LEFT], out[RIGHT], SR)
        assert itd == pytest.approx(spatial.woodworth_itd(np.deg2rad(deg)), abs=1.5 / SR)
        mirrored = spatial.spatialize(x, np.deg2rad(-deg), SR)
        np.testing.assert_allclose(mirrored[::-1], out, atol=1e-5)  # left/right symmetry


def test_moving_source_itd_changes_over_time():
    x = np.random.default_rng(2).standard_normal(3 * SR)
    az = np.deg2rad(np.linspace(-60.0, 60.0, x.size))
    out = spatial.spatialize(x, az, SR)
    seg = int(0.25 * SR)
    for start in (0, x.size // 2 - seg // 2, x.size - seg):
        piece = out[:, start : start + seg]
        expected = spatial.woodworth_itd(az[start + seg // 2])
        assert gcc_phat_itd(piece[LEFT], piece[RIGHT], SR) == pytest.approx(expected, abs=0.06e-3)
    assert ild_db(out[:, :seg]) < -3 and ild_db(out[:, -seg:]) > 3


def test_camera_roundtrip():
    assert spatial.azimuth_to_x(0.0, W) == W / 2
    assert spatial.azimuth_to_x(np.deg2rad(45.0), W, 90.0) == pytest.approx(W)
    xs = np.array([3.0, 100.0, 200.5])
    np.testing.assert_allclose(spatial.azimuth_to_x(spatial.x_to_azimuth(xs, W), W), xs)


def test_reverb_tail_is_decorrelated_and_normalised():
    ir = spatial.reverb_ir(SR, np.random.default_rng(0), rt60=0.3)
    np.testing.assert_allclose(np.sum(ir**2, axis=1), 1.0)
    assert abs(np.corrcoef(ir[LEFT], ir[RIGHT])[0, 1]) < 0.2
    assert np.all(ir[:, : int(0.008 * SR)] == 0)  # no direct sound


# --- the generated data links picture and sound ---------------------------------------------------


def test_generated_cues_match_the_picture(single_root):
    meta = synthetic.load_meta(single_root)
    signs = set()
    for name, clip in meta["clips"].items():
        (src,) = clip["sources"]
        az = src["azimuth_deg"][0]
        if abs(az) < 5:
            continue
        wav, _ = sf.read(layout.rb_paths(single_root, name)["binaural"], always_2d=True)
        x1, _, x2, _ = src["boxes"][0]
        side = np.sign(az)
        signs.add(side)
        assert np.sign((x1 + x2) / 2 - W / 2) == side  # box right of centre <=> source on the right
        assert np.sign(ild_db(wav.T)) == side  # ... <=> right ear louder
        itd = gcc_phat_itd(wav[:, LEFT], wav[:, RIGHT], SR)
        assert np.sign(itd) == side and itd * 1e3 == pytest.approx(src["itd_ms"][0], abs=0.1)
        assert (x1 + x2) / 2 == pytest.approx(spatial.azimuth_to_x(np.deg2rad(az), W), abs=1.0)
    assert signs == {-1.0, 1.0}  # the seed covers both sides


def test_boxes_contain_the_drawn_colour(single_root):
    meta = synthetic.load_meta(single_root)
    for name, clip in meta["clips"].items():
        (src,) = clip["sources"]
        for frame in (1, clip["num_frames"]):
            img = np.asarray(
                Image.open(layout.frame_path(layout.rb_paths(single_root, name)["frames"], frame)),
                dtype=float,
            )
            x1, y1, x2, y2 = src["boxes"][frame - 1]
            is_colour = np.all(np.abs(img - np.array(src["color"])) < 45, axis=-1)  # (H, W)
            inside = is_colour[y1 : y2 + 1, x1 : x2 + 1]
            assert is_colour[(y1 + y2) // 2, (x1 + x2) // 2]
            assert inside.mean() > 0.35  # the shape fills its box
            outside = is_colour.copy()
            outside[max(y1 - 2, 0) : y2 + 3, max(x1 - 2, 0) : x2 + 3] = False
            assert outside.sum() == 0  # and nothing of that colour lies outside it


def test_moving_sources_move_in_meta_and_frames(rb_root):
    root, _ = rb_root
    meta = synthetic.load_meta(root)
    moving = [s for c in meta["clips"].values() for s in c["sources"] if s["motion"]["kind"] != "static"]
    assert moving, "seed 3 should contain a moving source"
    for src in moving:
        az = np.array(src["azimuth_deg"])
        assert np.ptp(az) > 0.5 and np.ptp(src["itd_ms"]) > 0.005
        centres = np.array([(b[0] + b[2]) / 2 for b in src["boxes"]])
        np.testing.assert_allclose(centres, spatial.azimuth_to_x(np.deg2rad(az), W), atol=1.0)
    json.dumps(meta)  # plain JSON types only
