"""Vocoder inference speed: our BigVGAN generator against NVIDIA's implementation on the same weights.

    python bench/vocoder.py [--seconds 1] [--configs full tiny] [--device cpu|cuda] [--out bench/results/vocoder_cpu.json]

For each config: wall time of one forward pass on a random mel of ``--seconds`` of audio (median of
``--repeats``), samples/s, real-time factor RTF = compute time / audio duration (< 1 is faster than
real time), peak memory of a forward after the warm-up (CUDA: max allocated; CPU: peak of the tensor
allocations, from the profiler), with weight norm and after ``remove_weight_norm()``, for our
generator in eager mode, with ``pack_convolutions()`` ("ours+pack", weight norm removed only) and with ``compile_activations()`` on
top ("ours+compile"; the first, compiling call is the untimed warm-up), and the largest output
difference from NVIDIA's. Implementations are timed in turns within each repeat, so that a slow spell
of a shared machine hits all of them alike.
The official column needs NVIDIA's ``bigvgan`` package (the dev extra); it is skipped without it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time

import torch
from common import machine, peak_cpu_tensor_mb

from BigVGAN.bigvgan import BigVGAN, load_config

CONFIGS = {"full": "bigvgan_binaural_22khz_80band_256x.json", "tiny": "bigvgan_tiny.json"}
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "BigVGAN", "configs")


def timed(models: dict, mel, device, repeats: int) -> dict[str, tuple[float, float, torch.Tensor]]:
    """{impl: (median seconds, peak memory MB, output)}. The implementations take turns within each
    repeat, so that a slow spell of the (shared) machine hits all of them alike."""
    with torch.inference_mode():
        outs, peaks, times = {}, {}, {k: [] for k in models}
        for impl, model in models.items():
            model(mel)  # warm-up: compiles, packs weights
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                outs[impl] = model(mel)
                torch.cuda.synchronize()
                peaks[impl] = torch.cuda.max_memory_allocated() / 2**20
            else:  # working memory of one steady-state forward
                peaks[impl], outs[impl] = peak_cpu_tensor_mb(functools.partial(model, mel))
        for _ in range(repeats):
            for impl, model in models.items():
                t0 = time.perf_counter()
                model(mel)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[impl].append(time.perf_counter() - t0)
    return {k: (statistics.median(times[k]), peaks[k], outs[k]) for k in models}


def official_copy(path: str, state: dict):
    try:
        from bigvgan.bigvgan import BigVGAN as Official
        from bigvgan.env import AttrDict
    except ImportError:
        return None
    model = Official(AttrDict(json.load(open(path))), use_cuda_kernel=False)
    model.load_state_dict(state, strict=True)
    return model


def bench(name: str, device, seconds: float, repeats: int) -> list[dict]:
    path = os.path.join(CONFIG_DIR, CONFIGS[name])
    h = load_config(path)
    ours = BigVGAN(h)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for k, v in ours.state_dict().items():
            if k.endswith((".alpha", ".beta")):
                v.copy_(torch.randn(v.shape, generator=g) * 0.5)
    state = ours.state_dict()
    frames = int(seconds * h.sampling_rate / h.hop_size)
    mel = torch.randn(1, h.num_mels, frames, generator=g).to(device)
    rows = []
    audio_s = frames * h.hop_size / h.sampling_rate
    for wn in (True, False):
        # packing needs constant weights (a no-op under weight norm): its row only without
        impls = ("ours", "ours+compile", "official") if wn else ("ours", "ours+pack", "ours+compile", "official")
        models = {impl: official_copy(path, state) if impl == "official" else fresh(h, state) for impl in impls}
        models = {k: m for k, m in models.items() if m is not None}
        for impl, model in models.items():
            if not wn:
                model.remove_weight_norm()
            if impl in ("ours+pack", "ours+compile"):
                model.pack_convolutions()
            if impl == "ours+compile":
                model.compile_activations()
            model.eval().to(device)
        results = timed(models, mel, device, repeats)
        for impl, (sec, peak, out) in results.items():
            row = {"config": name, "weight_norm": wn, "impl": impl, "seconds": sec,
                   "samples_per_s": frames * h.hop_size / sec, "rtf": sec / audio_s, "peak_mem_MB": peak}
            if "official" in results:
                row["max_abs_diff"] = (out - results["official"][2]).abs().max().item()
                row["ours_over_official"] = sec / results["official"][0]
            rows.append(row)
    return rows


def fresh(h, state: dict) -> BigVGAN:
    """A new copy with the given weights (weight-normed modules cannot be deep-copied)."""
    model = BigVGAN(h)
    model.load_state_dict(state)
    return model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--seconds", type=float, default=1.0, help="audio length of the test mel")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [r for name in args.configs for r in bench(name, device, args.seconds, args.repeats)]
    print(f"BigVGAN generator, {args.seconds:g} s of audio, on {machine()} ({device}), torch {torch.__version__}")
    print(f"{'config':6} {'WN':>3} {'impl':12} {'seconds':>8} {'RTF':>7} {'kHz out':>8} {'peak MB':>8} "
          f"{'ours/official':>13} {'max |diff|':>10}")
    for r in rows:
        print(f"{r['config']:6} {'yes' if r['weight_norm'] else 'no':>3} {r['impl']:12} {r['seconds']:>8.3f} "
              f"{r['rtf']:>7.3f} {r['samples_per_s'] / 1e3:>8.1f} {r['peak_mem_MB']:>8.0f} "
              f"{r.get('ours_over_official', float('nan')):>13.2f} {r.get('max_abs_diff', float('nan')):>10.1e}")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"vocoder_{device.type}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"machine": machine(), "device": str(device), "torch": torch.__version__,
                   "python": sys.version.split()[0], "seconds": args.seconds, "rows": rows}, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
