"""End to end on CPU with tiny models: generate -> train both stages -> dump mels -> vocode -> binauralize an
mp4 -> evaluate, checking every artifact's format and shape (the chain `make demo` runs at full length). The
chain up to the evaluation is QUICKSTART.md's, run once a session (conftest's ``quickstart``)."""

from __future__ import annotations

import json
import os
import subprocess

import _proc
import numpy as np
import pytest
import soundfile as sf
from test_quickstart import newest_vocoder  # tests/ is on sys.path under pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, timeout=300):
    proc = subprocess.run([_proc.python(), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stderr[-3000:]}"
    return proc


def _mp4(frames_dir, out, fps=10):
    """Encode the synthetic frames as an mp4 with PyAV (what a user would bring)."""
    import av
    from PIL import Image

    files = sorted(os.listdir(frames_dir))
    with av.open(str(out), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        first = Image.open(os.path.join(frames_dir, files[0]))
        stream.width, stream.height, stream.pix_fmt = first.width, first.height, "yuv420p"
        for f in files:
            frame = av.VideoFrame.from_image(Image.open(os.path.join(frames_dir, f)).convert("RGB"))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.slow
def test_whole_pipeline(quickstart, tmp_path):
    """The artifacts of QUICKSTART.md's chain (conftest's ``quickstart``: generate, train Stage 1 at the tiny
    preset with interaural phase, dump, render, train both vocoders, vocode, evaluate, report), then the
    ceiling, the report's columns, a user's mp4 and the one-line errors."""
    data, q = quickstart / "data" / "synth", quickstart / "runs"
    splits, stage1, g = data / "splits", q / "ckpt" / "synth", newest_vocoder(quickstart)
    for mels, split in (("mels_pred", "test"), ("mels_gt", "test"), ("mels_train", "train")):
        meta = json.loads((q / mels / "meta.json").read_text())
        assert meta["mel"]["hop_size"] == 256 and meta["split"] == split
        assert meta["phase"]["channels"] == ["coherence_real", "coherence_imag"]
    names = [n.strip() for n in (splits / "test.csv").read_text().splitlines()[1:]]
    for name in names:
        phase = np.load(q / "mels_pred" / "phase" / "test" / f"{name}.npy")
        mel = np.load(q / "mels_pred" / "left" / "test" / f"{name}.npy")
        assert phase.shape == (2, 80, mel.shape[1]) and phase.dtype == np.float32

    # the mono renderer: no vocoder; stereo, the mono's duration; from the true mels and phase it
    # restores the interaural time differences that the mono copy lacks
    mono_dir, gt_dir = data / "processed" / "mono_audios_22050Hz", data / "processed" / "binaural_audios_22050Hz"
    _run("DiffBinaural/render.py", "--mel_dir", q / "mels_gt", "--split", "test", "--mono_dir", mono_dir,
         "--output_dir", tmp_path / "rendered_gt")
    for name in names:
        wav, sr = sf.read(q / "wavs_rendered" / f"{name}.wav")
        assert sr == 22050 and wav.shape == (sf.info(mono_dir / f"{name}.wav").frames, 2)
    _run("DiffBinaural/evaluate.py", "--pred_dir", tmp_path / "rendered_gt", "--gt_dir", gt_dir,
         "--out", tmp_path / "metrics_rendered.json", "--no-pesq")
    doc = json.loads((tmp_path / "metrics_rendered.json").read_text())
    for key in ("itd_error_ms", "ild_error_db", "stft_distance"):
        assert doc["model"]["mean"][key] < 0.6 * doc["mono_baseline"]["mean"][key], key
    _run("DiffBinaural/evaluate.py", "--pred_dir", q / "wavs_rendered", "--gt_dir", gt_dir,
         "--out", tmp_path / "metrics_pred.json", "--no-pesq")
    # the demo's report: one column per system beside the mono copy, cue figures of all of them
    _run("-m", "DiffBinaural.report", "--out_dir", tmp_path / "report",
         "--system", f"mono renderer={q / 'wavs_rendered'}:{tmp_path / 'metrics_pred.json'}",
         "--system", f"GT mels={tmp_path / 'rendered_gt'}:{tmp_path / 'metrics_rendered.json'}",
         "--pred_mels", q / "mels_pred", "--gt_mels", q / "mels_gt",
         "--gt_wavs", gt_dir, "--mono_wavs", mono_dir, "--clips", 1)
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| metric | mono renderer | GT mels | mono-copy baseline |" in report
    itd_row = next(line for line in report.splitlines() if line.startswith("| `itd_error_ms`"))
    assert f"{doc['model']['mean']['itd_error_ms']:.4f}" in itd_row
    assert len(list((tmp_path / "report").glob("cues_*.png"))) == 1

    proc = _run("BigVGAN/inference.py", "--checkpoint_file", g, "--mel_left_dir", q / "mels_pred" / "left" / "test",
                "--mel_right_dir", q / "mels_pred" / "right" / "test", "--output_dir", tmp_path / "wavs")
    assert "with the interaural phase of" in proc.stdout  # found beside the mel dirs
    for name in names:
        wav, sr = sf.read(tmp_path / "wavs" / f"{name}.wav")
        mel = np.load(q / "mels_pred" / "left" / "test" / f"{name}.npy")
        assert sr == 22050 and wav.shape == (mel.shape[1] * 256, 2)

    # binauralize a user's mp4 and 44.1 kHz mono recording: output at 48 kHz, exactly the input's duration
    name = names[0]
    _mp4(data / "processed" / "frames" / name, tmp_path / "clip.mp4")
    mono, _ = sf.read(data / "processed" / "mono_audios_22050Hz" / f"{name}.wav", dtype="float32")
    import librosa

    sf.write(tmp_path / "in.wav", librosa.resample(mono, orig_sr=22050, target_sr=44100)[: 44100 * 1 + 123], 44100)
    for renderer in ("vocoder", "mono"):
        flags = ["--mono", tmp_path / "in.wav", "--video", tmp_path / "clip.mp4", "--stage1", stage1,
                 "--renderer", renderer, "--out_sr", 48000, "--steps", 2, "--chunk_frames", 40]
        flags += ["--vocoder", g] if renderer == "vocoder" else []
        _run("binauralize.py", *flags, "--out", tmp_path / f"out_{renderer}.wav")
        out, sr = sf.read(tmp_path / f"out_{renderer}.wav")
        assert sr == 48000 and out.shape[1] == 2 and abs(out.shape[0] - round((44100 + 123) * 48000 / 44100)) <= 2
        # generated piece by piece (3 pieces of 40 frames): the same samples (to 1 LSB of 16 bits: the
        # STFTs of the interaural phase run over other frame counts, so float rounding may differ)
        _run("binauralize.py", *flags, "--out", tmp_path / "out_pieces.wav", "--stream_frames", 40)
        pieces, _ = sf.read(tmp_path / "out_pieces.wav")
        np.testing.assert_allclose(pieces, out, atol=1.01 / 32768, rtol=0)
    proc = subprocess.run([_proc.python(), "binauralize.py", "--mono", tmp_path / "in.wav", "--video",
                           tmp_path / "clip.mp4", "--stage1", stage1, "--renderer", "vocoder", "--out", tmp_path / "x.wav"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2 and "--renderer vocoder needs --vocoder" in proc.stderr

    # a video shorter than the audio, a silent or clipped input, a missing or undecodable video: one line each
    sf.write(tmp_path / "long.wav", np.tile(mono, 3), 22050)
    sf.write(tmp_path / "silent.wav", np.zeros(22050, np.float32), 22050)
    sf.write(tmp_path / "clipped.wav", np.sign(np.sin(np.arange(22050) / 10)).astype(np.float32), 22050)
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    short = tmp_path / "short.wav"
    sf.write(short, mono[:11025], 22050)
    cases = [("long.wav", "clip.mp4", "clip.mp4", "shorter than the audio"),
             ("silent.wav", "clip.mp4", "silent.wav", "input is silent"),
             ("clipped.wav", "clip.mp4", "clipped.wav", "input is clipped"),
             ("short.wav", "missing.mp4", "missing.mp4", "not found"),
             ("short.wav", "broken.mp4", "broken.mp4", "")]
    for wav, video, named, problem in cases:
        proc = subprocess.run([_proc.python(), "binauralize.py", "--mono", tmp_path / wav, "--video", tmp_path / video,
                               "--stage1", stage1, "--vocoder", g, "--out", tmp_path / "x.wav"],
                              capture_output=True, text=True, cwd=REPO, timeout=300)
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert proc.returncode == 2 and len(lines) == 1 and problem in lines[0], proc.stderr[-2000:]
        assert named in lines[0] and "Traceback" not in proc.stderr and not (tmp_path / "x.wav").exists()

    _run("DiffBinaural/evaluate.py", "--pred_dir", tmp_path / "wavs", "--gt_dir", gt_dir, "--out",
         tmp_path / "metrics.json", "--no-pesq")
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["num_clips"] == len(names) and "ild_error_db" in doc["model"]["mean"]
    assert "ild_error_db" in doc["mono_baseline"]["mean"]
