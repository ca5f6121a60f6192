"""Stage 1 speed: UNet training step and DDIM sampling throughput, attention share, peak memory.

    python bench/stage1.py [--sizes tiny default] [--batches 1 8] [--device cpu|cuda] [--out bench/results/stage1_cpu.json]

For each UNet size and batch: forward+backward time of one training step (80 x 80 mels, 15 visual
tokens), DDIM sampling throughput (clips/s for 25 steps, extrapolated from timed model calls), the
share of the forward time spent inside attention (torch.profiler), and peak memory. The same layers
are timed with our attention path (``scaled_dot_product_attention``) and with a plain
softmax(QK^T)V implementation of the same layer ("math"), and their ratio is reported.
Then, per visual-token mode (``--tokens boxes grid both``), one training step of the whole Stage 1
model (visual encoder + UNet) at the preset's crop (``--token_batch`` crops, L frames, N box slots, of
which half are valid; the whole frame at FAIR-Play's 2:1 aspect, ``default_frame_size``, and its
default grid): the number of tokens, the step time and the peak memory (CUDA: the allocator's peak;
CPU: the profiler's peak of live tensor memory).
Not a test: numbers depend on the machine, which is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from types import SimpleNamespace

import torch
from common import machine

from DiffBinaural.dataset.frames import VISUAL_TOKENS, scene_size
from DiffBinaural.model import Stage1Model, unet_config
from DiffBinaural.modules.unet import UNet, build_unet
from DiffBinaural.utils.arguments import default_frame_side, model_config, resolve_visual, train_parser

# size -> named preset (DiffBinaural/configs/{preset}.json): the UNet is built exactly as training builds it
SIZES = {"tiny": "tiny", "default": "base"}


def preset_unet(size: str) -> UNet:
    """The UNet of a preset, with its channels (4 with the tiny preset's interaural phase), dropout and widths."""
    args = train_parser("bench").parse_args(["--config", SIZES[size], "--data_root", ".", "--list_train", "-",
                                             "--list_val", "-"])
    return build_unet(unet_config(model_config(args)))
M = F = 80
TOKENS = 15  # 3 frames x 5 sources


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device, repeats: int) -> float:
    fn()  # warm-up
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _inputs(b: int, channels: int, ctx_dim: int, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, channels, M, F, generator=g).to(device)
    mono = torch.randn(b, 1, M, F, generator=g).to(device)
    ctx = torch.randn(b, TOKENS, ctx_dim, generator=g).to(device)
    mask = torch.zeros(b, TOKENS, dtype=torch.bool, device=device)
    mask[:, -5:] = True  # some padded slots, as in real batches
    t = torch.randint(0, 1000, (b,), generator=g).to(device)
    return x, t, dict(mono_mel=mono, context=ctx, context_mask=mask)


def attention_share(net, x, t, kw) -> float:
    """Fraction of forward CPU/CUDA time spent in the attention kernels (profiler)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.is_cuda else [])
    with torch.no_grad(), profile(activities=acts) as prof:
        net(x, t, **kw)
    events = prof.key_averages()
    key = "self_device_time_total" if x.is_cuda else "self_cpu_time_total"
    total = sum(getattr(e, key) for e in events)
    attn = sum(getattr(e, key) for e in events
               if any(s in e.key for s in ("scaled_dot_product", "flash", "efficient_attention", "softmax", "bmm")))
    return attn / max(total, 1)


def bench_one(size: str, b: int, device, repeats: int) -> dict:
    net = preset_unet(size).to(device)
    for p in net.parameters():  # non-zero weights everywhere (the zero-initialised layers would be trivial)
        torch.nn.init.normal_(p, std=0.02)
    x, t, kw = _inputs(b, net.config.in_channels, net.config.context_dim, device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def train_step():
        opt.zero_grad(set_to_none=True)
        net(x, t, **kw).abs().mean().backward()
        opt.step()

    def forward():
        with torch.no_grad():
            net(x, t, **kw)

    row = {"size": size, "batch": b, "params_M": sum(p.numel() for p in net.parameters()) / 1e6}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    row["train_step_s"] = _time(train_step, device, repeats)
    row["peak_mem_MB"] = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
                          else max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024)
    fwd = {}
    for impl in ("sdpa", "math"):
        net.set_attention_impl(impl)
        fwd[impl] = _time(forward, device, repeats)
    net.set_attention_impl("sdpa")
    row["forward_s"] = fwd["sdpa"]
    row["forward_math_attention_s"] = fwd["math"]
    row["math_over_sdpa"] = fwd["math"] / fwd["sdpa"]
    row["ddim25_clips_per_s"] = b / (25 * fwd["sdpa"])
    row["attention_share"] = attention_share(net, x, t, kw)
    return row


def bench_tokens(size: str, mode: str, b: int, device, repeats: int) -> dict:
    """One Stage 1 training step (encoder + UNet, L1 on the output) with ``mode`` visual tokens."""
    from common import peak_cpu_tensor_mb

    args = train_parser("bench").parse_args(["--config", SIZES[size], "--data_root", ".", "--list_train", "-",
                                             "--list_val", "-"])
    cfg = model_config(args)
    frame_size = scene_size(1280, 640, image_size=cfg["img_size"], frame_side=default_frame_side(args))
    data = SimpleNamespace(visual_tokens=mode, frame_size=None if mode == "boxes" else frame_size)
    cfg = resolve_visual(cfg, data)  # the trainer's defaults: grid, grid_pool, grid_select, layout token
    model = Stage1Model(cfg).to(device).train()
    g = torch.Generator().manual_seed(0)
    n_frames, n_src, p = cfg["num_frames"], cfg["max_sources"], cfg["img_size"]
    mask = torch.zeros(b, n_frames, n_src, dtype=torch.bool)
    mask[..., n_src // 2 + n_src % 2:] = True
    visual = {"frames": torch.rand(b, n_frames, n_src, 3, p, p, generator=g), "positions": torch.rand(b, n_frames, n_src, 2, generator=g),
              "mask": mask, "scene": torch.rand(b, n_frames, 3, *frame_size, generator=g)}
    keep = {"boxes": ("frames", "positions", "mask"), "grid": ("scene",), "both": tuple(visual)}[mode]
    visual = {k: v.to(device) for k, v in visual.items() if k in keep}
    channels, t_len = model.unet.config.in_channels, cfg["segment_frames"]
    x = torch.randn(b, channels, 80, t_len, generator=g).to(device)
    mono = torch.randn(b, 1, 80, t_len, generator=g).to(device)
    t = torch.randint(0, 1000, (b,), generator=g).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        model(x, t, mono_mel=mono, **visual).abs().mean().backward()
        opt.step()

    with torch.no_grad():
        tokens = model.encode(visual)["context"].shape[1]
    row = {"size": size, "tokens_mode": mode, "batch": b, "tokens": tokens, "frame_size": list(frame_size),
           "grid": cfg["grid"], "grid_pool": cfg["grid_pool"], "grid_select": cfg["grid_select"], "crop": p, "frames": n_frames, "slots": n_src, "mel_frames": t_len}
    row["train_step_s"] = _time(step, device, repeats)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        row["peak_mem_MB"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        row["peak_mem_MB"] = peak_cpu_tensor_mb(step)[0]
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--tokens", nargs="*", default=list(VISUAL_TOKENS), choices=VISUAL_TOKENS,
                   help="visual-token modes to time in a whole Stage 1 step (none: skip)")
    p.add_argument("--token_batch", type=int, default=4, help="crops per Stage 1 step of the token rows")
    p.add_argument("--out", default=None, help="JSON file (default bench/results/stage1_{device}.json)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [bench_one(s, b, device, args.repeats) for s in args.sizes for b in args.batches]
    token_rows = [bench_tokens(s, m, args.token_batch, device, args.repeats) for s in args.sizes for m in args.tokens]
    result = {"machine": machine(), "device": str(device), "torch": torch.__version__, "python": sys.version.split()[0],
              "mel": [M, F], "tokens": TOKENS, "rows": rows, "token_rows": token_rows}
    hdr = (f"{'size':8} {'B':>3} {'params':>7} {'train s/step':>12} {'fwd s':>8} {'DDIM-25 clips/s':>15} "
           f"{'attn share':>10} {'math/sdpa':>9} {'peak MB':>8}")
    print(f"Stage 1 UNet on {result['machine']} ({device}), torch {torch.__version__}\n{hdr}")
    for r in rows:
        print(f"{r['size']:8} {r['batch']:>3} {r['params_M']:>6.1f}M {r['train_step_s']:>12.3f} {r['forward_s']:>8.3f} "
              f"{r['ddim25_clips_per_s']:>15.3f} {r['attention_share']:>10.1%} {r['math_over_sdpa']:>9.2f} "
              f"{r['peak_mem_MB']:>8.0f}")
    if token_rows:
        print(f"\nWhole Stage 1 step per visual-token mode (batch {args.token_batch})\n"
              f"{'size':8} {'tokens':7} {'count':>6} {'frame':>9} {'grid':>5} {'train s/step':>12} {'peak MB':>8}")
    for r in token_rows:
        print(f"{r['size']:8} {r['tokens_mode']:7} {r['tokens']:>6} {'x'.join(map(str, r['frame_size'])):>9} "
              f"{'x'.join(map(str, r['grid'])):>5} {r['train_step_s']:>12.3f} {r['peak_mem_MB']:>8.0f}")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"stage1_{device.type}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
