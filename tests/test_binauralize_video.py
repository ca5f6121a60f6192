"""A user's video in, a binaural video out (``binauralize.py --video``, :class:`DiffBinaural.Binauralizer`):
the video's own audio track as input, the picture stream-copied byte for byte, the binaural track in sync
and as long as the input's audio, the containers and oddities phones produce, and the Python API giving
the CLI's samples without reloading the model. Tiny random Stage 1 model: only the plumbing is tested."""

from __future__ import annotations

import logging
import os
import struct
import subprocess
from fractions import Fraction

import _proc
import av
import numpy as np
import pytest
import soundfile as sf
from _runs import micro_config, write_run
from PIL import Image

from binaural_core.audio import BadInputError
from DiffBinaural import Binauralizer
from DiffBinaural.utils.video import decode_audio

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W, H, FPS, SECONDS = 96, 54, 10, 2.0
OUT_SR = 48000
AAC_FRAME = 1024  # samples per AAC frame: the sync and duration tolerance


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A micro Stage 1 run (random weights) that says it was trained on detection boxes."""
    cfg = {**micro_config("--interaural_phase", "--target", "residual", "--prediction_type", "sample"),
           "box_source": "detections"}
    return write_run(tmp_path_factory.mktemp("run"), cfg)


@pytest.fixture(scope="module")
def b(run_dir):
    return Binauralizer.from_pretrained(run_dir, steps=2, device="cpu")


def images(n=int(SECONDS * FPS), w=W, h=H):
    """Frames with a bright square that moves left to right."""
    out = []
    for k in range(n):
        img = np.full((h, w, 3), 30, np.uint8)
        x = int(k / max(1, n - 1) * (w - 16))
        img[h // 2 - 8:h // 2 + 8, x:x + 16] = (230, 200, 40)
        out.append(img)
    return out


def signal(sr, seconds=SECONDS, click_s=None, channels=2):
    """(C, S): quiet noise and tones, plus a click at ``click_s``."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.02 * rng.standard_normal(len(t)) + 0.05 * np.sin(2 * np.pi * 330 * t)
    if click_s is not None:
        i = int(round(click_s * sr))
        x[i:i + 3] = 0.9
    return np.tile(x.astype(np.float32), (channels, 1))


def make_media(path, *, frames=None, fps=FPS, audio=None, sr=22050, layout="stereo", vcodec="mpeg4", acodec="aac",
               audio_start=0.0, times=None, fmt=None):
    """A video file written with PyAV: ``frames`` at ``fps`` (or at ``times`` seconds: variable frame
    rate), and ``audio`` (C, S) at ``sr`` starting at ``audio_start`` seconds."""
    frames = images() if frames is None else frames
    with av.open(str(path), "w", format=fmt) as c:
        v = c.add_stream(vcodec, rate=1000 if times is not None else fps)
        if times is not None:
            v.codec_context.time_base = v.time_base = Fraction(1, 1000)
        v.width, v.height, v.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        a = None
        if audio is not None:
            a = c.add_stream(acodec, rate=sr, layout=layout)
        for k, img in enumerate(frames):
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            if times is not None:
                fr.pts, fr.time_base = round(times[k] * 1000), Fraction(1, 1000)
            else:
                fr.pts = k
            c.mux(v.encode(fr))
        c.mux(v.encode())
        if a is not None:
            first = round(audio_start * sr)
            step = a.codec_context.frame_size or 1024
            for s in range(0, audio.shape[1], step):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, s:s + step]), format="fltp", layout=layout)
                fr.sample_rate, fr.pts, fr.time_base = sr, first + s, Fraction(1, sr)
                c.mux(a.encode(fr))
            c.mux(a.encode())
    return str(path)


def rotate_mp4(path, degrees=90):
    """Tag the video track of an mp4 with a display rotation (tkhd matrix), as phones store portrait video."""
    data = bytearray(open(path, "rb").read())

    def boxes(start, end):
        i = start
        while i + 8 <= end:
            size, kind = struct.unpack(">I4s", data[i:i + 8])
            yield i, size, kind
            i += size

    def find(start, end, names):
        for i, size, kind in boxes(start, end):
            if kind == names[0]:
                return (i, size) if len(names) == 1 else find(i + 8, i + size, names[1:])

    moov, moov_size = find(0, len(data), [b"moov"])
    for i, size, kind in boxes(moov + 8, moov + moov_size):
        hdlr = find(i + 8, i + size, [b"mdia", b"hdlr"]) if kind == b"trak" else None
        if hdlr and data[hdlr[0] + 16:hdlr[0] + 20] == b"vide":
            tkhd, _ = find(i + 8, i + size, [b"tkhd"])
            offset = tkhd + 12 + (32 if data[tkhd + 8] == 1 else 20) + 16  # the matrix after the fixed fields
            c, s = {90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
            matrix = [c * 65536, s * 65536, 0, -s * 65536, c * 65536, 0, 0, 0, 1 << 30]
            data[offset:offset + 36] = struct.pack(">9i", *matrix)
    open(path, "wb").write(bytes(data))


def video_packets(path):
    with av.open(path) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def audio_info(path):
    """(channels, rate, duration in s as the container declares it, codec) of the first audio track."""
    with av.open(path) as c:
        s = c.streams.audio[0]
        duration = float(s.duration * s.time_base) if s.duration else c.duration / 1e6
        return s.channels, s.rate, duration, s.codec_context.name


def check_video_out(src, out, *, seconds, declared=None):
    """The output holds the input's video packets byte for byte and a stereo track as long as the input's
    audio (its declared duration, and what decodes: within one audio frame, two for the encoder's padding)."""
    assert video_packets(out) == video_packets(src)
    channels, rate, duration, _ = audio_info(out)
    assert channels == 2 and rate == OUT_SR
    declared = audio_info(src)[2] if declared is None else declared
    assert abs(duration - declared) <= AAC_FRAME / OUT_SR + 1e-3
    decoded = decode_audio(out, OUT_SR)
    assert decoded.shape[0] == 2 and abs(decoded.shape[1] - seconds * OUT_SR) <= 2 * AAC_FRAME


def test_cli_mp4_in_mp4_out_with_the_videos_own_audio(run_dir, tmp_path):
    src = make_media(tmp_path / "in.mp4", audio=signal(44100), sr=44100)
    out = tmp_path / "out.mp4"
    proc = subprocess.run([_proc.python(), os.path.join(REPO, "binauralize.py"), "--video", src, "--stage1", run_dir,
                           "--out", out, "--steps", "2", "--report", tmp_path / "page"], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trained with detection boxes and none were given" in proc.stderr  # one warning line, what to do
    check_video_out(src, str(out), seconds=SECONDS)
    assert audio_info(str(out))[3] == "aac"
    page = (tmp_path / "page" / "report.html").read_text()  # the listening page reads the video's track
    assert page.count("<audio ") == 2 and "binauralize.py --video" in page


def test_a_click_lands_at_its_video_time_when_the_audio_starts_late(b, tmp_path):
    """Audio that starts 0.5 s after the picture: the output track starts there too, as long as the input's,
    and the click at 1.3 s of the input's clock is at 1.3 s in the output (within one AAC frame)."""
    late, click = 0.5, 1.3
    audio = signal(44100, seconds=1.5, click_s=click - late)
    src = make_media(tmp_path / "late.mp4", audio=audio, sr=44100, audio_start=late)
    out = b.binauralize_file(src, str(tmp_path / "late_out.mp4"))
    def start(x):  # both tracks are silent before they start (decode_audio pads to the origin)
        return int(np.argmax(np.abs(x).sum(axis=0) > 1e-3))

    decoded, original = decode_audio(out, OUT_SR), decode_audio(src, OUT_SR)
    assert abs(start(original) - late * OUT_SR) <= 2 * AAC_FRAME  # (the test encoder's priming frame first)
    assert abs(start(decoded) - start(original)) <= AAC_FRAME
    assert abs(decoded.shape[1] - original.shape[1]) <= AAC_FRAME
    peak = int(np.argmax(np.abs(decoded).sum(axis=0)))
    assert abs(peak - click * OUT_SR) <= AAC_FRAME, (peak / OUT_SR, click)
    assert video_packets(out) == video_packets(src)


@pytest.mark.parametrize("ext,vcodec,acodec,sr,out_codec", [
    (".mov", "mpeg4", "aac", 44100, "aac"),
    (".mkv", "libx264", "aac", 48000, "aac"),
    (".webm", "libvpx", "libopus", 48000, "opus"),
])
def test_containers(b, tmp_path, ext, vcodec, acodec, sr, out_codec):
    src = make_media(tmp_path / f"in{ext}", audio=signal(sr), sr=sr, vcodec=vcodec, acodec=acodec)
    out = b.binauralize_file(src, str(tmp_path / f"out{ext}"))
    check_video_out(src, out, seconds=SECONDS)
    assert audio_info(out)[3] == out_codec


def test_six_channel_and_8khz_audio_are_downmixed_and_resampled(b, tmp_path):
    for name, audio, sr, layout in (("surround", signal(44100, channels=6), 44100, "5.1"),
                                    ("narrow", signal(8000), 8000, "stereo")):
        src = make_media(tmp_path / f"{name}.mp4", audio=audio, sr=sr, layout=layout)
        out = b.binauralize_file(src, str(tmp_path / f"{name}_out.mp4"))
        check_video_out(src, out, seconds=SECONDS)


def test_variable_frame_rate_video(b, tmp_path):
    times = np.cumsum([0.0] + [0.05, 0.15] * 10)[:20]  # 20 frames, alternating 50 and 150 ms apart
    src = make_media(tmp_path / "vfr.mkv", audio=signal(48000, seconds=float(times[-1]) + 0.1), sr=48000,
                     times=times)
    out = b.binauralize_file(src, str(tmp_path / "vfr_out.mkv"))
    assert video_packets(out) == video_packets(src)
    assert decode_audio(out, OUT_SR).shape[0] == 2


def test_a_rotated_portrait_phone_video_keeps_its_rotation(b, tmp_path):
    src = make_media(tmp_path / "phone.mp4", audio=signal(44100), sr=44100)
    rotate_mp4(src, 90)
    with av.open(src) as c:
        rotation = next(c.decode(video=0)).rotation
    assert rotation != 0  # the tag is there
    out = b.binauralize_file(src, str(tmp_path / "phone_out.mp4"))
    check_video_out(src, out, seconds=SECONDS)
    with av.open(out) as c:
        assert next(c.decode(video=0)).rotation == rotation  # players show it upright, as the input
    from DiffBinaural.utils.video import iter_frames_at_fps

    _, first = next(iter_frames_at_fps(src, FPS))
    assert first.size == (H, W)  # the model sees the upright, portrait picture


def test_a_video_without_audio_needs_mono_and_says_so(b, tmp_path):
    src = make_media(tmp_path / "silent_film.mp4")
    with pytest.raises(BadInputError, match="no audio stream") as err:
        b.binauralize_file(src, str(tmp_path / "x.mp4"))
    assert "silent_film.mp4" in str(err.value) and not (tmp_path / "x.mp4").exists()
    sf.write(tmp_path / "mono.wav", signal(22050)[0], 22050)
    out = b.binauralize_file(src, str(tmp_path / "dubbed.mp4"), mono=str(tmp_path / "mono.wav"))
    check_video_out(src, out, seconds=SECONDS, declared=SECONDS)


def test_wav_output_and_unknown_output_types(b, tmp_path):
    src = make_media(tmp_path / "in.mp4", audio=signal(44100), sr=44100)
    out = b.binauralize_file(src, str(tmp_path / "out.flac"))
    wav, sr = sf.read(out)
    assert sr == 22050 and wav.shape[1] == 2
    with pytest.raises(BadInputError, match="unknown output type"):
        b.binauralize_file(src, str(tmp_path / "out.mp3x"))


def test_python_api_equals_the_cli_and_does_not_reload(run_dir, b, tmp_path, monkeypatch):
    frames = tmp_path / "frames"
    frames.mkdir()
    for k, img in enumerate(images(), start=1):
        Image.fromarray(img).save(frames / f"{k:06d}.png")
    mono = signal(22050)[0] * 0.8
    sf.write(tmp_path / "mono.wav", mono, 22050, subtype="FLOAT")
    cli_out = tmp_path / "cli.wav"
    proc = subprocess.run([_proc.python(), os.path.join(REPO, "binauralize.py"), "--frames", frames, "--mono",
                           tmp_path / "mono.wav", "--stage1", run_dir, "--out", cli_out, "--steps", "2"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import torch

    def no_reload(*a, **k):
        raise AssertionError("the model was loaded again")

    monkeypatch.setattr(torch, "load", no_reload)
    stereo = b(mono, 22050, frames=str(frames))  # a folder ...
    again = b(mono, 22050, frames=images())  # ... or the images themselves (written losslessly)
    assert stereo.shape == (2, len(mono)) and stereo.dtype == np.float32
    np.testing.assert_array_equal(stereo, again)
    sf.write(tmp_path / "api.wav", stereo.T, 22050, subtype="PCM_16")
    np.testing.assert_array_equal(sf.read(tmp_path / "api.wav", dtype="int16")[0], sf.read(cli_out, dtype="int16")[0])
    b.binauralize_file(str(tmp_path / "mono.wav"), str(tmp_path / "api_file.wav"), frames=str(frames))
    assert (tmp_path / "api_file.wav").read_bytes() == cli_out.read_bytes()
    # a torch tensor and another rate: (2, S) at the caller's rate
    import torch as t

    out44 = b(t.from_numpy(np.stack([mono, mono])), 22050, frames=str(frames), out_sr=44100)
    assert out44.shape == (2, 2 * len(mono))


def test_boxes_the_model_expects_or_ignores(run_dir, b, tmp_path, caplog):
    frames = [img for img in images()]
    mono = signal(22050)[0]
    boxes = np.array([[k, 10, 10, 40, 40, 0.9] for k in range(1, 21)], np.float64)
    with caplog.at_level(logging.WARNING, logger="DiffBinaural"):
        b(mono, 22050, frames=frames, boxes=boxes)
    assert "trained with detection boxes" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="DiffBinaural"):
        b(mono, 22050, frames=frames)
    assert "trained with detection boxes and none were given" in caplog.text
    caplog.clear()
    whole = Binauralizer(model=b.model, cfg={**b.cfg, "box_source": "whole_frame"}, run_dir="wf", device=b.device,
                         options=b.options)
    with caplog.at_level(logging.WARNING, logger="DiffBinaural"):
        plain = whole(mono, 22050, frames=frames, boxes=boxes)
    assert "trained on whole frames: the boxes are not used" in caplog.text
    np.testing.assert_array_equal(plain, whole(mono, 22050, frames=frames))


def test_bad_boxes_and_a_stage1_file_as_vocoder_are_named(run_dir, b, tmp_path):
    frames = images()
    csv = tmp_path / "boxes.csv"
    csv.write_text("frame,x1,y1,x2,y2,score\n1,10,10,40,40,0.9\n2,30,10,20,15,0.9\n")  # x, y, w, h by mistake
    with pytest.raises(BadInputError) as err:
        b(signal(22050)[0], 22050, frames=frames, boxes=str(csv))
    assert str(csv) in str(err.value) and "line 3" in str(err.value) and "x,y,width,height" in str(err.value)
    with pytest.raises(BadInputError, match="a Stage 1 checkpoint") as err:
        Binauralizer.from_pretrained(run_dir, renderer="vocoder", vocoder=os.path.join(run_dir, "unet_best.pth"))
    assert "g_XXXXXXXX" in str(err.value)


def test_what_a_container_or_codec_cannot_hold_is_one_line(b, tmp_path):
    src = make_media(tmp_path / "h264.mp4", audio=signal(44100), sr=44100, vcodec="libx264")
    with pytest.raises(BadInputError, match="try .mkv"):  # webm holds VP8/VP9/AV1 only
        b.binauralize_file(src, str(tmp_path / "out.webm"))
    webm = make_media(tmp_path / "in.webm", audio=signal(48000), sr=48000, vcodec="libvpx", acodec="libopus")
    with pytest.raises(BadInputError, match="cannot encode at 44100 Hz"):  # Opus: 48/24/16/12/8 kHz
        b.binauralize_file(webm, str(tmp_path / "out44.webm"), out_sr=44100)
    assert not os.path.exists(tmp_path / "out.webm") and not os.path.exists(tmp_path / "out44.webm")


def test_a_data_sets_boxes_csv_gives_this_clips_rows(b, tmp_path):
    folder = tmp_path / "clip_b"
    folder.mkdir()
    for k, img in enumerate(images(), start=1):
        Image.fromarray(img).save(folder / f"{k:06d}.png")
    csv = tmp_path / "detections.csv"
    rows = [f"clip_a,{k},0,0,20,20,0.9" for k in range(1, 21)] + [f"clip_b,{k},60,10,90,40,0.9" for k in range(1, 21)]
    csv.write_text("name,frame,x1,y1,x2,y2,score\n" + "\n".join(rows) + "\n")
    clip = b._visual(str(tmp_path), 22050, frames=str(folder), video=None, boxes=str(csv))
    assert all(np.array_equal(v, [[60, 10, 90, 40]]) for v in clip.boxes.values()) and len(clip.boxes) == 20
    other = tmp_path / "clip_c"
    other.mkdir()
    Image.fromarray(images()[0]).save(other / "000001.png")
    with pytest.raises(BadInputError, match="none named 'clip_c'"):
        b._visual(str(tmp_path), 2205, frames=str(other), video=None, boxes=str(csv))


def test_the_api_keeps_the_callers_duration_at_any_rate(b):
    mono = signal(44100, seconds=1.1)[0][:44101]  # a length no resampler keeps by itself
    assert b(mono, 44100, frames=images()).shape == (2, 44101)
    assert b(mono, 44100, frames=images(), out_sr=48000).shape == (2, round(44101 * 48000 / 44100))
