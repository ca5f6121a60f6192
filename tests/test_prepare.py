"""Preparation scripts: frames/audio from videos, resampling a wav folder, writing the splits."""

import csv
import os
import subprocess
from fractions import Fraction

import _proc
import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from binaural_core.audio import BadInputError
from DiffBinaural.dataset.layout import RB_BINAURAL_DIR, RB_FRAMES_DIR, SPLITS, frame_path, rb_split_csv
from DiffBinaural.prepare_audio import prepare_audio
from DiffBinaural.prepare_frames import prepare_frames
from DiffBinaural.prepare_splits import prepare_splits, split_names
from DiffBinaural.utils.video import clip_name, decode_audio, iter_frames_at_fps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]


def _frame(colour, w=64, h=48):
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = colour
    return av.VideoFrame.from_ndarray(img, format="rgb24")


def make_video(path, seconds=2.0, fps=25, audio_sr=44100):
    """mpeg4 video whose colour changes each second, plus an AAC stereo 440 Hz track (left 2x right)."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("mpeg4", rate=fps)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("aac", rate=audio_sr)
        a.layout = "stereo"
        for k in range(int(seconds * fps)):
            fr = _frame(COLOURS[int(k / fps)])
            fr.pts = k
            c.mux(v.encode(fr))
        c.mux(v.encode())
        n = int(seconds * audio_sr)
        t = np.arange(n) / audio_sr
        x = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 440 * t)]).astype(
            np.float32
        )
        for s in range(0, n, 1024):
            fr = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(x[:, s : s + 1024]), format="fltp", layout="stereo"
            )
            fr.sample_rate, fr.pts = audio_sr, s
            c.mux(a.encode(fr))
        c.mux(a.encode())


def make_vfr_video(path, times):
    """Video-only mkv with frames at arbitrary times (ms time base): frame k has COLOURS[k]."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("mpeg4", rate=1000)
        v.codec_context.time_base = v.time_base = Fraction(1, 1000)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        for k, t in enumerate(times):
            fr = _frame(COLOURS[k], 32, 32)
            fr.pts, fr.time_base = round(t * 1000), Fraction(1, 1000)
            c.mux(v.encode(fr))
        c.mux(v.encode())


def closest_colour(pixel):
    return int(np.argmin([np.abs(np.subtract(pixel, c)).sum() for c in COLOURS]))


def run_cli(*args, module=False):
    cmd = (
        [_proc.python(), "-m", "DiffBinaural.prepare_frames"]
        if module
        else [_proc.python(), os.path.join(REPO, "DiffBinaural", "prepare_frames.py")]
    )
    return subprocess.run(cmd + list(map(str, args)), capture_output=True, text=True, cwd=REPO, timeout=120)


# --- frames ---------------------------------------------------------------------------------------


def test_frames_follow_timestamps_and_audio_is_aligned(tmp_path):
    make_video(tmp_path / "clip_a.mp4")
    out, wavs = tmp_path / "frames", tmp_path / "wavs"
    summary = prepare_frames([str(tmp_path / "clip_a.mp4")], str(out), 10, max_side=32, audio_out=str(wavs))
    assert (summary.written, summary.frames, summary.bad) == (1, 20, [])
    names = sorted(os.listdir(out / "clip_a"))
    assert names == [f"{i:06d}.jpg" for i in range(1, 21)]
    for i in range(1, 21):
        img = Image.open(frame_path(str(out / "clip_a"), i))
        assert img.size == (32, 24)  # 64x48 downsized to longest side 32, aspect kept
        assert closest_colour(img.getpixel((16, 12))) == int((i - 1) / 10)  # colour of time (i-1)/fps
    wav, sr = sf.read(wavs / "clip_a.wav", always_2d=True)
    assert sr == 22050 and wav.shape[1] == 2
    assert abs(len(wav) / sr - 2.0) < 0.05  # AAC pads at most one 1024-sample frame
    mid = wav[2000:40000]
    assert np.abs(mid[:, 0]).max() == pytest.approx(0.5, abs=0.03)
    assert np.abs(mid[:, 1]).max() == pytest.approx(0.25, abs=0.03)
    assert np.argmax(np.abs(wav[:, 0]) > 0.05) < 20  # the tone starts at sample 0: no A/V offset
    # A second run leaves complete clips alone.
    again = prepare_frames([str(tmp_path)], str(out), 10, audio_out=str(wavs))
    assert (again.written, again.present) == (0, 1)


def test_variable_frame_rate_sampled_by_timestamp(tmp_path):
    times = [0.0, 0.03, 0.25, 0.26, 0.55, 0.9]
    make_vfr_video(tmp_path / "vfr.mkv", times)
    got = [
        (i, closest_colour(img.getpixel((5, 5)))) for i, img in iter_frames_at_fps(tmp_path / "vfr.mkv", 10)
    ]
    # on screen at (i-1)/10: the last frame whose time is at or before it
    expected = [max(k for k, t in enumerate(times) if t <= (i - 1) / 10 + 1e-9) for i in range(1, 11)]
    assert got == list(zip(range(1, 11), expected))


def test_decode_audio_shape_and_rate(tmp_path):
    make_video(tmp_path / "v.mp4", seconds=1.0)
    wav = decode_audio(tmp_path / "v.mp4", 16000)
    assert wav.dtype == np.float32 and wav.shape[0] == 2 and abs(wav.shape[1] / 16000 - 1.0) < 0.07


def test_interrupted_extraction_leaves_no_folder(tmp_path, monkeypatch):
    make_video(tmp_path / "v.mp4", seconds=1.0)

    def broken(path, fps, max_side=None):
        yield 1, Image.new("RGB", (8, 8))
        raise BadInputError(path, "decoding failed halfway")

    monkeypatch.setattr("DiffBinaural.utils.video.iter_frames_at_fps", broken)
    with pytest.raises(BadInputError, match="halfway"):
        prepare_frames([str(tmp_path / "v.mp4")], str(tmp_path / "frames"))
    assert os.listdir(tmp_path / "frames") == []  # neither the clip folder nor its temp folder


def test_bad_video_one_line_error_and_skip(tmp_path):
    bad = tmp_path / "vids" / "broken.mp4"
    bad.parent.mkdir()
    bad.write_bytes(np.random.default_rng(0).bytes(4000))
    r = run_cli("--videos", bad, "--out", tmp_path / "frames")
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and "broken.mp4" in r.stderr
    make_video(tmp_path / "vids" / "good.mp4", seconds=1.0)
    r = run_cli("--videos", tmp_path / "vids", "--out", tmp_path / "frames", "--skip_bad", module=True)
    assert r.returncode == 0, r.stderr
    assert "1 clip(s) written" in r.stdout and "1 skipped as bad" in r.stdout
    assert sorted(os.listdir(tmp_path / "frames")) == ["good"]
    with pytest.raises(BadInputError, match="broken.mp4"):
        list(iter_frames_at_fps(bad, 10))
    assert clip_name(str(bad)) == "broken"


# --- audio ----------------------------------------------------------------------------------------


def test_prepare_audio_resamples_and_downmixes(tmp_path):
    src, out, mono = tmp_path / "raw", tmp_path / "bin", tmp_path / "mono"
    src.mkdir()
    sr, secs, f0 = 44100, 1.5, 1000.0
    t = np.arange(int(sr * secs)) / sr
    stereo = np.stack([0.5 * np.sin(2 * np.pi * f0 * t), 0.3 * np.sin(2 * np.pi * f0 * t + 1.0)], axis=1)
    sf.write(src / "rec1.wav", stereo, sr, subtype="FLOAT")
    (src / "junk.wav").write_bytes(b"not a wav at all")
    with pytest.raises(BadInputError, match="junk.wav"):
        prepare_audio(str(src), str(out), 22050, "2", mono_out=str(mono))
    summary = prepare_audio(
        str(src), str(out), 22050, "2", mono_out=str(mono), subtype="FLOAT", skip_bad=True
    )
    assert (summary.written, len(summary.bad)) == (1, 1)
    y, ysr = sf.read(out / "rec1.wav", always_2d=True)
    assert ysr == 22050 and y.shape == (int(22050 * secs), 2)
    spec = np.abs(np.fft.rfft(y[:, 0] * np.hanning(len(y))))
    assert abs(np.fft.rfftfreq(len(y), 1 / 22050)[np.argmax(spec)] - f0) < 2.0
    m, msr = sf.read(mono / "rec1.wav")
    assert msr == 22050 and m.ndim == 1
    np.testing.assert_allclose(m, (y[:, 0] + y[:, 1]) / 2, atol=1e-6)


def test_prepare_audio_channel_policy(tmp_path):
    (tmp_path / "raw").mkdir()
    sf.write(tmp_path / "raw" / "m.wav", np.zeros(4410, np.float32), 44100)
    with pytest.raises(BadInputError, match="expected 2 channels"):
        prepare_audio(str(tmp_path / "raw"), str(tmp_path / "out"), 22050, "2")
    prepare_audio(str(tmp_path / "raw"), str(tmp_path / "out"), 22050, "keep")
    assert sf.info(tmp_path / "out" / "m.wav").channels == 1


# --- splits ---------------------------------------------------------------------------------------


def make_root(root, names, without_frames=()):
    os.makedirs(root / RB_BINAURAL_DIR)
    for n in names:
        sf.write(root / RB_BINAURAL_DIR / f"{n}.wav", np.zeros((256, 2), np.float32), 22050)
        if n not in without_frames:
            os.makedirs(root / RB_FRAMES_DIR / n)
            Image.new("RGB", (4, 4)).save(frame_path(str(root / RB_FRAMES_DIR / n), 1))


def read_split(root, split):
    with open(rb_split_csv(str(root), split), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["name"]
    return [r[0] for r in rows[1:]]


def test_splits_disjoint_grouped_deterministic(tmp_path, capsys):
    names = [f"scene{g}_{k}" for g in range(10) for k in range(3)]
    make_root(tmp_path, names, without_frames=["scene0_0"])
    regex = r"^(.*)_[^_]+$"
    summary = prepare_splits(str(tmp_path), 0.2, 0.2, seed=3, group_regex=regex)
    assert summary.excluded.keys() == {"scene0_0"} and "scene0_0" in capsys.readouterr().err
    splits = {s: read_split(tmp_path, s) for s in SPLITS}
    allnames = sum(splits.values(), [])
    assert sorted(allnames) == sorted(set(names) - {"scene0_0"}) and len(allnames) == len(set(allnames))
    for s in SPLITS:
        assert splits[s], s
    owner = {n.rsplit("_", 1)[0]: s for s, ns in splits.items() for n in ns}
    for s, ns in splits.items():
        assert all(owner[n.rsplit("_", 1)[0]] == s for n in ns)  # a scene lives in one split
    with pytest.raises(BadInputError, match="already exists"):
        prepare_splits(str(tmp_path), 0.2, 0.2, seed=3, group_regex=regex)
    prepare_splits(str(tmp_path), 0.2, 0.2, seed=3, group_regex=regex, overwrite=True)
    assert {s: read_split(tmp_path, s) for s in SPLITS} == splits
    assert split_names(list(reversed(names)), 0.2, 0.2, 3, regex) == split_names(names, 0.2, 0.2, 3, regex)


def test_split_names_edge_cases():
    with pytest.raises(BadInputError):
        split_names(["a", "b"], 0.5, 0.5)
    with pytest.raises(BadInputError, match="nothing left for train"):
        split_names(["a_1", "a_2", "b_1"], 0.1, 0.1, group_regex=r"^(.*)_")
    out = split_names([f"c{i}" for i in range(10)], 0.1, 0.1)
    assert [len(out[s]) for s in SPLITS] == [8, 1, 1]
