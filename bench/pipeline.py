"""binauralize.py on long inputs: wall time per second of audio and peak memory vs input length,
for both renderers (``--renderer mono`` and ``--renderer vocoder``).

    python bench/pipeline.py [--seconds 10 60 300] [--steps 5] [--renderers mono vocoder] [--stage1 RUN_DIR --vocoder G_CKPT]

Without --stage1/--vocoder it builds tiny randomly initialised models (the demo's sizes), since only
speed and memory are measured. Each input is a synthetic clip rendered at the requested length with
its frames (``DiffBinaural.dataset.synthetic``), then ``binauralize.py`` runs in a fresh process whose
peak RSS is read from ``getrusage(RUSAGE_CHILDREN)``. Time should grow linearly and memory stay flat.
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, nargs="+", default=[10, 60, 300])
    p.add_argument("--steps", type=int, default=5, help="sampling steps")
    p.add_argument("--renderers", nargs="+", choices=("mono", "vocoder"), default=["mono", "vocoder"])
    p.add_argument("--stage1", default=None)
    p.add_argument("--vocoder", default=None)
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "pipeline_cpu.json"))
    args = p.parse_args(argv)
    from DiffBinaural.dataset.synthetic import generate_dataset

    rows = []
    with tempfile.TemporaryDirectory() as work:
        stage1, vocoder = (args.stage1, args.vocoder) if args.stage1 else tiny_models(work)
        for sec, renderer in [(sec, r) for sec in args.seconds for r in args.renderers]:
            data = os.path.join(work, f"data{sec:g}")
            if not os.path.isdir(data):
                generate_dataset(data, fmt="realbinaural", num_clips=1, seconds=sec, seed=0, split_fractions=(1, 0, 0))
            name = "synth_000001"
            cmd = [sys.executable, os.path.join(REPO, "binauralize.py"),
                   "--mono", os.path.join(data, "processed", "mono_audios_22050Hz", f"{name}.wav"),
                   "--frames", os.path.join(data, "processed", "frames", name), "--stage1", stage1,
                   "--renderer", renderer, "--steps", str(args.steps), "--out", os.path.join(work, f"out{sec:g}.wav")]
            cmd += ["--vocoder", vocoder] if renderer == "vocoder" else []
            t0 = time.perf_counter()
            # a fresh parent per run, so RUSAGE_CHILDREN's max RSS is this run's alone
            proc = subprocess.run([sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-2000:])
            peak_kb = int(proc.stdout.strip().splitlines()[-1])
            rows.append({"seconds": sec, "renderer": renderer, "wall_s": wall, "wall_per_audio_s": wall / sec,
                         "peak_rss_MB": peak_kb / 1024})
            print(f"{renderer:>7}, {sec:>6g} s input: {wall:7.1f} s wall ({wall / sec:.3f} s per audio second), "
                  f"peak RSS {rows[-1]['peak_rss_MB']:.0f} MB", flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": machine(), "torch": torch.__version__, "steps": args.steps,
                   "models": "tiny random" if not args.stage1 else [args.stage1, args.vocoder], "rows": rows}, f, indent=2)
    print(f"on {machine()}; wrote {args.out}")


if __name__ == "__main__":
    main()
