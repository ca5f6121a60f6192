"""Stage 1 input pipeline speed: can the RealBinaural and FAIR-Play loaders feed a training step?

    python bench/dataloader.py [--data_root DIR] [--rb_root DIR] [--fp_root DIR] [--workers 0 2]
                               [--sizes tiny default] [--batch 8] [--batches 8] [--device cpu|cuda]
                               [--out bench/results/dataloader_{device}.json]

For each dataset (RealBinaural, FAIR-Play), each size and each DataLoader ``num_workers``: samples/s
of a DataLoader over the train split exactly as the trainer builds it (``build_dataset``, batch 8,
random crops, ``pin_memory`` on CUDA), measured after the first batch (whose latency, worker start-up
included, is reported separately). Against it: samples/s of one Stage 1 training step at the same
size (visual encoder + UNet forward, diffusion loss, backward, AdamW step; ``Stage1Model`` built from
the parsed default flags plus the size's overrides, as ``train_realBinaural.py`` builds it).
``loader/step`` > 1 means the loader keeps up with that step on this machine.

Sizes: ``default`` = the scripts' defaults (224 px crops, 5 frames, 4 sources, 80-frame crops, UNet 64
x (1, 2, 4)); ``tiny`` = the README demo (32 px, 3 frames, 32-frame crops, UNet 32 x (1, 2, 2)).

Data: synthetic clips (10 s, like FAIR-Play's; 256 x 144 frames at 10 fps; FAIR-Play wavs at 16 kHz,
resampled on load) generated under ``--data_root`` (reused when already there) or a temporary folder;
``--rb_root`` / ``--fp_root`` point at real datasets instead. Not a test: numbers depend on the machine,
which is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch
from common import machine
from torch.utils.data import DataLoader, RandomSampler

from DiffBinaural.dataset import build_dataset, layout
from DiffBinaural.dataset.synthetic import META_FILE, generate_dataset
from DiffBinaural.model import Stage1Model, batch_inputs, build_diffusion
from DiffBinaural.utils.arguments import model_config, train_parser

SIZES = {
    "tiny": ["--config", "tiny"],  # DiffBinaural/configs/tiny.json
    "default": ["--config", "base"],
}
KINDS = ("realbinaural", "fairplay")
CLIP_SECONDS = 10.0


def ensure_data(kind: str, root: str | None, base: str, num_clips: int) -> str:
    """A dataset folder of ``kind``: ``root`` if given, else synthetic under ``base`` (generated once)."""
    if root:
        return root
    out = os.path.join(base, kind)
    if not os.path.isfile(os.path.join(out, META_FILE)):
        t0 = time.perf_counter()
        generate_dataset(out, fmt=kind, num_clips=num_clips, seconds=CLIP_SECONDS, seed=0, workers=0,
                         split_fractions=(0.8, 0.1, 0.1))
        print(f"generated {num_clips} synthetic {kind} clips of {CLIP_SECONDS:g} s in {out} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
    return out


def train_list(kind: str, root: str) -> str:
    return layout.rb_split_csv(root, "train") if kind == "realbinaural" else layout.fp_split_h5(root, "train", 1)


def parse(kind: str, root: str, size: str, extra: list[str] = ()) -> argparse.Namespace:
    split = train_list(kind, root)
    return train_parser("bench").parse_args(["--data_root", root, "--list_train", split, "--list_val", split,
                                             *SIZES[size], *extra])


def bench_loader(kind: str, root: str, size: str, workers: int, *, batch: int, batches: int,
                 pin: bool) -> dict:
    args = parse(kind, root, size)
    ds = build_dataset(kind, args, list_path=args.list_train, split="train")
    ds.set_epoch(0)
    # random train crops with replacement: enough items for any dataset size
    sampler = RandomSampler(ds, replacement=True, num_samples=batch * (batches + 1),
                            generator=torch.Generator().manual_seed(0))
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=True,
                        pin_memory=pin, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    n = sum(len(b["name"]) for b in it)
    steady = time.perf_counter() - t1
    del it
    return {"dataset": kind, "size": size, "workers": workers, "clips": len(ds), "first_batch_s": first,
            "samples_per_s": n / steady, "ms_per_sample": 1e3 * steady / n}


def bench_step(root: str, size: str, *, batch: int, repeats: int, device: torch.device) -> dict:
    """One trainer step (forward, loss, backward, AdamW) on a real RealBinaural batch of this size."""
    args = parse("realbinaural", root, size, ["--pretrained_frame", "none"])
    ds = build_dataset("realbinaural", args, list_path=args.list_train, split="train")
    loader = DataLoader(ds, batch_size=batch, sampler=RandomSampler(ds, replacement=True, num_samples=batch,
                        generator=torch.Generator().manual_seed(0)), num_workers=0)
    cfg = model_config(args)
    torch.manual_seed(0)
    model = Stage1Model(cfg).to(device).train()
    diffusion = build_diffusion(cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x0, kwargs = batch_inputs(next(iter(loader)), device, target=cfg["target"])
    gen = torch.Generator().manual_seed(0)

    def step():
        out = diffusion.training_losses(model, x0, model_kwargs=kwargs, generator=gen)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up (allocations, kernel selection)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    return {"size": size, "batch": batch, "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
            "step_s": sec, "samples_per_s": batch / sec}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_root", default=None, help="where the synthetic datasets live (generated if missing); "
                                                     "default: a temporary folder")
    p.add_argument("--rb_root", default=None, help="a real RealBinaural dataset instead of the synthetic one")
    p.add_argument("--fp_root", default=None, help="a real FAIR-Play dataset instead of the synthetic one")
    p.add_argument("--num_clips", type=int, default=10, help="synthetic clips per dataset")
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--workers", nargs="+", type=int, default=[0, 2], help="DataLoader num_workers to compare")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=8, help="timed batches per loader (after the first)")
    p.add_argument("--repeats", type=int, default=2, help="timed training steps (after one warm-up)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=None, help="JSON file (default bench/results/dataloader_{device}.json)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    t_start = time.perf_counter()

    tmp = None if args.data_root else tempfile.TemporaryDirectory(prefix="dataloader-bench-")
    base = args.data_root or tmp.name
    roots = {"realbinaural": ensure_data("realbinaural", args.rb_root, base, args.num_clips),
             "fairplay": ensure_data("fairplay", args.fp_root, base, args.num_clips)}
    loaders = [bench_loader(kind, roots[kind], size, w, batch=args.batch, batches=args.batches,
                            pin=device.type == "cuda")
               for kind in KINDS for size in args.sizes for w in args.workers]
    steps = {size: bench_step(roots["realbinaural"], size, batch=args.batch, repeats=args.repeats, device=device)
             for size in args.sizes}
    for row in loaders:
        row["loader_over_step"] = row["samples_per_s"] / steps[row["size"]]["samples_per_s"]
    if tmp is not None:
        tmp.cleanup()

    result = {"machine": machine(), "device": str(device), "torch": torch.__version__,
              "python": sys.version.split()[0], "torch_threads": torch.get_num_threads(), "batch": args.batch,
              "timed_batches": args.batches, "clip_seconds": CLIP_SECONDS if not (args.rb_root or args.fp_root) else None,
              "sizes": {k: " ".join(v) or "(script defaults)" for k, v in SIZES.items()},
              "loaders": loaders, "train_steps": list(steps.values()),
              "wall_s": time.perf_counter() - t_start}
    print(f"\nStage 1 input pipeline on {result['machine']} ({device}), torch {torch.__version__}, "
          f"batch {args.batch}")
    print(f"{'dataset':13} {'size':8} {'workers':>7} {'samples/s':>10} {'ms/sample':>10} {'1st batch s':>11} "
          f"{'step samples/s':>14} {'loader/step':>11}")
    for r in loaders:
        s = steps[r["size"]]
        print(f"{r['dataset']:13} {r['size']:8} {r['workers']:>7} {r['samples_per_s']:>10.1f} "
              f"{r['ms_per_sample']:>10.1f} {r['first_batch_s']:>11.2f} {s['samples_per_s']:>14.1f} "
              f"{r['loader_over_step']:>11.2f}")
    for s in steps.values():
        print(f"training step, {s['size']:8} ({s['params_M']:.2f}M params, batch {s['batch']}): "
              f"{s['step_s']:.3f} s/step = {s['samples_per_s']:.1f} samples/s on {device}")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"dataloader_{device.type}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
