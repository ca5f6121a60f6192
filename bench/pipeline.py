"""binauralize.py on long inputs: wall time per second of audio and peak memory vs input length,
for both renderers (``--renderer mono`` and ``--renderer vocoder``) and both kinds of input and
output: a wav + frames folder into a wav, and an mp4 (its own AAC track) into an mp4 (stream copy +
a 48 kHz AAC track). Then the Python API: how long loading takes against a call, and that a second
call does not load again.

    python bench/pipeline.py [--seconds 10 60 300] [--steps 5] [--renderers mono vocoder] [--io wav mp4] \
        [--stage1 RUN_DIR --vocoder G_CKPT]

Without --stage1/--vocoder it builds tiny randomly initialised models (the demo's sizes), since only
speed and memory are measured. Each input is a synthetic clip rendered at the requested length with
its frames (``DiffBinaural.dataset.synthetic``; for mp4 the frames and mono are encoded with PyAV),
then ``binauralize.py`` runs in a fresh process whose peak RSS is read from
``getrusage(RUSAGE_CHILDREN)``. Time should grow linearly and memory stay flat.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
from common import machine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_STAGE1 = ["--config", "tiny"]  # DiffBinaural/configs/tiny.json: the CPU demo size


_WRAP = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")


def tiny_models(work: str) -> tuple[str, str]:
    """A Stage 1 run dir and a vocoder checkpoint with random weights."""
    from BigVGAN.bigvgan import BigVGAN, load_config
    from binaural_core.checkpoint import atomic_save
    from DiffBinaural.model import Stage1Model
    from DiffBinaural.utils.arguments import model_config, save_model_config, train_parser

    args = train_parser("x").parse_args(["--data_root", "-", "--list_train", "-", "--list_val", "-", *TINY_STAGE1])
    cfg = model_config(args)
    run = os.path.join(work, "stage1")
    os.makedirs(run)
    save_model_config(cfg, os.path.join(run, "config.json"))
    model = Stage1Model(cfg)
    atomic_save(model.unet.state_dict(), os.path.join(run, "unet_best.pth"))
    atomic_save(model.encoder.state_dict(), os.path.join(run, "frame_best.pth"))
    voc = os.path.join(work, "vocoder")
    BigVGAN(load_config(os.path.join(REPO, "BigVGAN", "configs", "bigvgan_tiny.json"))).save_pretrained(voc)
    return run, os.path.join(voc, "bigvgan_generator.pt")


def encode_mp4(frames_dir: str, mono_wav: str, out: str, fps: float = 10) -> None:
    """The synthetic clip as a user's video: its frames (mpeg4) and its mono as a stereo AAC track."""
    import av
    import numpy as np
    import soundfile as sf
    from PIL import Image

    mono, sr = sf.read(mono_wav, dtype="float32")
    files = sorted(os.listdir(frames_dir))
    with av.open(out, "w") as c:
        v = c.add_stream("mpeg4", rate=int(fps))
        first = Image.open(os.path.join(frames_dir, files[0]))
        v.width, v.height, v.pix_fmt = first.width, first.height, "yuv420p"
        a = c.add_stream("aac", rate=sr, layout="stereo")
        for k, f in enumerate(files):
            frame = av.VideoFrame.from_image(Image.open(os.path.join(frames_dir, f)).convert("RGB"))
            frame.pts = k
            c.mux(v.encode(frame))
        c.mux(v.encode())
        x = np.stack([mono, mono])
        for s in range(0, x.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, s:s + 1024]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = sr, s
            c.mux(a.encode(frame))
        c.mux(a.encode())


def api_rows(stage1: str, data: str, steps: int) -> dict:
    """Binauralizer.from_pretrained once, then two calls on the same input: load s, first and second call s,
    and how many times torch.load ran during the calls (0: the model is kept)."""
    import soundfile as sf

    from DiffBinaural import Binauralizer

    name = "synth_000001"
    mono, sr = sf.read(os.path.join(data, "processed", "mono_audios_22050Hz", f"{name}.wav"), dtype="float32")
    frames = os.path.join(data, "processed", "frames", name)
    t0 = time.perf_counter()
    b = Binauralizer.from_pretrained(stage1, steps=steps, device="cpu")
    load = time.perf_counter() - t0
    loads = 0
    real_load = torch.load

    def counting_load(*a, **k):
        nonlocal loads
        loads += 1
        return real_load(*a, **k)

    torch.load = counting_load
    try:
        calls = []
        for _ in range(2):
            t0 = time.perf_counter()
            b(mono, sr, frames=frames)
            calls.append(time.perf_counter() - t0)
    finally:
        torch.load = real_load
    return {"audio_s": len(mono) / sr, "load_s": load, "first_call_s": calls[0], "second_call_s": calls[1],
            "torch_load_calls_during_calls": loads}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, nargs="+", default=[10, 60, 300])
    p.add_argument("--steps", type=int, default=5, help="sampling steps")
    p.add_argument("--renderers", nargs="+", choices=("mono", "vocoder"), default=["mono", "vocoder"])
    p.add_argument("--io", nargs="+", choices=("wav", "mp4"), default=["wav", "mp4"],
                   help="wav: --mono wav + --frames into a wav; mp4: --video (its own audio) into an mp4")
    p.add_argument("--stage1", default=None)
    p.add_argument("--vocoder", default=None)
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "pipeline_cpu.json"))
    args = p.parse_args(argv)
    from DiffBinaural.dataset.synthetic import generate_dataset

    rows = []
    with tempfile.TemporaryDirectory() as work:
        stage1, vocoder = (args.stage1, args.vocoder) if args.stage1 else tiny_models(work)
        for sec, renderer, io in [(sec, r, io) for sec in args.seconds for r in args.renderers for io in args.io]:
            data = os.path.join(work, f"data{sec:g}")
            name = "synth_000001"
            mono = os.path.join(data, "processed", "mono_audios_22050Hz", f"{name}.wav")
            frames = os.path.join(data, "processed", "frames", name)
            if not os.path.isdir(data):
                generate_dataset(data, fmt="realbinaural", num_clips=1, seconds=sec, seed=0, split_fractions=(1, 0, 0))
            if io == "mp4" and not os.path.exists(os.path.join(data, "in.mp4")):
                encode_mp4(frames, mono, os.path.join(data, "in.mp4"))
            cmd = [sys.executable, os.path.join(REPO, "binauralize.py"), "--stage1", stage1,
                   "--renderer", renderer, "--steps", str(args.steps)]
            cmd += (["--mono", mono, "--frames", frames, "--out", os.path.join(work, f"out{sec:g}.wav")] if io == "wav"
                    else ["--video", os.path.join(data, "in.mp4"), "--out", os.path.join(work, f"out{sec:g}.mp4")])
            cmd += ["--vocoder", vocoder] if renderer == "vocoder" else []
            t0 = time.perf_counter()
            # a fresh parent per run, so RUSAGE_CHILDREN's max RSS is this run's alone
            proc = subprocess.run([sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-2000:])
            peak_kb = int(proc.stdout.strip().splitlines()[-1])
            rows.append({"seconds": sec, "renderer": renderer, "io": io, "wall_s": wall, "wall_per_audio_s": wall / sec,
                         "peak_rss_MB": peak_kb / 1024})
            print(f"{renderer:>7}, {io} in/out, {sec:>6g} s input: {wall:7.1f} s wall ({wall / sec:.3f} s per audio "
                  f"second), peak RSS {rows[-1]['peak_rss_MB']:.0f} MB", flush=True)
        api = api_rows(stage1, os.path.join(work, f"data{args.seconds[0]:g}"), args.steps)
        print(f"Python API on the {api['audio_s']:g} s clip: from_pretrained {api['load_s']:.2f} s, first call "
              f"{api['first_call_s']:.2f} s, second call {api['second_call_s']:.2f} s, torch.load during the calls: "
              f"{api['torch_load_calls_during_calls']}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": machine(), "torch": torch.__version__, "steps": args.steps,
                   "models": "tiny random" if not args.stage1 else [args.stage1, args.vocoder], "rows": rows,
                   "api": api}, f, indent=2)
    print(f"on {machine()}; wrote {args.out}")


if __name__ == "__main__":
    main()
