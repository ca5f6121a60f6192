"""Does Stage 1 use *where* a source is? Move its picture from the left third of the frame to the right.

    python -m DiffBinaural.evaluation.probe --stage1 RUN_DIR --data_root DATA --kind fairplay|realbinaural \
        [--split test] [--steps 5 --num_samples 2 --flip_tta] [--out probe.json]

For each clip of the split with exactly one source (the synthetic generator's ground truth,
``{data_root}/synthetic_meta.json``, gives its box in every frame):

1. the probe frame: the clip's middle frame with the source's box filled by the mean colour of the
   rest of the frame, and the source's own crop pasted back, the same size and height, centred on
   ``cx = 1/6`` (the left third) or ``cx = 5/6`` (the right third) (:func:`probe_images`);
2. Stage 1 samples the clip's own mono with each probe frame held for the whole clip (the same noise
   for both), through the model's own visual inputs (grid, boxes with the pasted box, or both);
3. the predicted L−R in dB (``20 / ln 10`` × the ln-mel difference) is averaged over the time-frequency
   bins where the mono is loud, within ``--loud_db`` of its peak (:func:`loud_lr_db`).

A model that uses the position predicts L > R for the left picture and L < R for the right one.
Printed and written: per clip the two L−R values, the share of clips whose sign flips that way, and
the mean half-difference ``(left − right) / 2`` in dB (0 for a model that ignores where the source is).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from binaural_core.audio import LEFT, RIGHT, BadInputError, cli_main, load_wav, mono_from_binaural
from binaural_core.mel import MelConfig, mel_spectrogram, read_json
from DiffBinaural.dataset import layout
from DiffBinaural.dataset.frames import ClipFrames

DB_PER_NEPER = 20.0 / math.log(10.0)  # ln-magnitude -> dB
THIRDS = {"left": 1.0 / 6.0, "right": 5.0 / 6.0}  # centres of the outer thirds of the frame


def probe_images(image: Image.Image, box) -> dict[str, tuple[Image.Image, list[float]]]:
    """``{"left": (image, box), "right": (image, box)}``: the source's crop of ``box`` (x1, y1, x2, y2
    pixels) moved to the centre of the left / right third of the frame, over the frame with the box
    filled by the mean colour of the pixels outside it. Boxes are the pasted ones (pixels)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    height, width = rgb.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, x2 = max(0, x1), min(width, x2)
    y1, y2 = max(0, y1), min(height, y2)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"empty box {box} in a {width} x {height} frame")
    inside = np.zeros((height, width), bool)
    inside[y1:y2, x1:x2] = True
    background = rgb.copy()
    background[inside] = rgb[~inside].mean(axis=0)
    crop = rgb[y1:y2, x1:x2]
    out = {}
    for side, cx in THIRDS.items():
        w = x2 - x1
        left = int(round(cx * width - w / 2))
        left = min(max(left, 0), width - w)
        frame = background.copy()
        frame[y1:y2, left:left + w] = crop
        out[side] = (Image.fromarray(np.round(frame).astype(np.uint8)), [left, y1, left + w, y2])
    return out


def loud_lr_db(mels: torch.Tensor, mono_mel: torch.Tensor, *, loud_db: float = 20.0) -> float:
    """Mean predicted L−R in dB over the bins where the mono is within ``loud_db`` of its peak.

    Args:
        mels: (C >= 2, M, T) predicted ln-mels, channel 0 = left.
        mono_mel: (M, T) or (1, M, T) ln-mel of the mono input.
    """
    mono = mono_mel.reshape(mels.shape[-2:])
    loud = mono >= mono.max() - loud_db / DB_PER_NEPER
    return float(((mels[LEFT] - mels[RIGHT])[loud]).mean() * DB_PER_NEPER)


def probe_clip(predict, mono_mel: torch.Tensor, image: Image.Image, box, work: str, *,
               loud_db: float = 20.0) -> dict[str, float]:
    """``{"left": dB, "right": dB}`` of one clip. ``predict(clip_frames) -> (C, M, T)`` ln-mels of the
    clip's mono with the frames of ``clip_frames`` (a :class:`ClipFrames` of one image and its box)."""
    result = {}
    for side, (frame, pasted) in probe_images(image, box).items():
        folder = os.path.join(work, side)
        os.makedirs(folder, exist_ok=True)
        frame.save(layout.frame_path(folder, 1, ".png"))
        clip = ClipFrames(folder, ".png", 1, {1: np.array([pasted], np.float32)}, frame.size)
        result[side] = loud_lr_db(predict(clip), mono_mel, loud_db=loud_db)
    return result


def summarise(rows: dict[str, dict[str, float]]) -> dict:
    """The share of clips with left > 0 > right and the mean half-difference (left − right) / 2 in dB."""
    if not rows:
        raise BadInputError(None, "no single-source clip to probe")
    flips = [r["left"] > 0 > r["right"] for r in rows.values()]
    half = [(r["left"] - r["right"]) / 2 for r in rows.values()]
    return {"clips": len(rows), "sign_flip_share": float(np.mean(flips)), "mean_half_difference_db": float(np.mean(half)),
            "mean_left_db": float(np.mean([r["left"] for r in rows.values()])),
            "mean_right_db": float(np.mean([r["right"] for r in rows.values()]))}


def _clip_files(data_root: str, kind: str, name: str) -> tuple[str, str]:
    paths = layout.rb_paths(data_root, name) if kind == "realbinaural" else layout.fp_paths(data_root, name)
    return paths["binaural"], paths["frames"]


def run_probe(args) -> dict:
    from DiffBinaural.inference.stage1 import generate_clip
    from DiffBinaural.model import build_sampler, clip_seed, load_stage1

    meta_path = os.path.join(args.data_root, "synthetic_meta.json")
    if not os.path.isfile(meta_path):
        raise BadInputError(meta_path, "the probe needs the synthetic generator's ground truth (boxes per frame)")
    meta = read_json(meta_path)
    model, cfg = load_stage1(args.stage1)
    sampler = build_sampler(cfg, SimpleNamespace(sampler="ddim", steps=args.steps, eta=0.0, guidance_scale=1.0))
    mel_cfg = MelConfig.from_dict(cfg["mel"], source=f"{args.stage1}/config.json")
    names = [n for n in meta["splits"][args.split] if len(meta["clips"][n]["sources"]) == 1][: args.clips or None]
    rows = {}
    work = tempfile.mkdtemp(prefix="probe_")
    try:
        for name in names:
            wav_path, frames_dir = _clip_files(args.data_root, args.kind, name)
            wav = load_wav(wav_path, sampling_rate=mel_cfg.sampling_rate, channels=2, resample_ok=True)
            mono = torch.from_numpy(mono_from_binaural(wav))
            mono_mel = mel_spectrogram(mono[: len(mono) // mel_cfg.hop_size * mel_cfg.hop_size][None], mel_cfg)
            clip = meta["clips"][name]
            frame = clip["num_frames"] // 2 + 1
            ext = layout.frame_ext(frames_dir) or ".jpg"
            with Image.open(layout.frame_path(frames_dir, frame, ext)) as im:
                image = im.convert("RGB")
            box = clip["sources"][0]["boxes"][frame - 1]

            def predict(frames: ClipFrames, mono_mel=mono_mel, name=name) -> torch.Tensor:
                hop, sr = mel_cfg.hop_size, mel_cfg.sampling_rate

                def visual_fn(start: int, count: int):
                    return frames.visual_inputs(start * hop / sr, count * hop / sr, num_frames=cfg["num_frames"],
                                                max_sources=cfg["max_sources"], image_size=cfg["img_size"],
                                                fps=cfg["fps"], tokens=cfg["visual_tokens"],
                                                frame_size=cfg["frame_size"])
                return generate_clip(model, sampler, mono_mel=mono_mel, visual_fn=visual_fn,
                                     window=cfg["segment_frames"], hop=max(1, cfg["segment_frames"] // 2),
                                     batch_windows=24, seed=clip_seed(args.seed, name), device=torch.device("cpu"),
                                     num_samples=args.num_samples, flip_tta=args.flip_tta)
            rows[name] = probe_clip(predict, mono_mel, image, box, os.path.join(work, name), loud_db=args.loud_db)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {**summarise(rows), "visual_tokens": cfg["visual_tokens"], "stage1": os.path.abspath(args.stage1),
              "split": args.split, "per_clip": rows}
    print(f"{args.stage1} ({cfg['visual_tokens']} tokens), {len(rows)} single-source {args.split} clips: "
          f"L−R {result['mean_left_db']:+.2f} dB with the source on the left, {result['mean_right_db']:+.2f} dB on "
          f"the right; the sign flips on {result['sign_flip_share']:.0%} of the clips")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stage1", required=True, help="Stage 1 run folder (config.json + weights)")
    p.add_argument("--data_root", required=True, help="a synthetic dataset (its synthetic_meta.json)")
    p.add_argument("--kind", choices=("realbinaural", "fairplay"), default="fairplay", help="its layout")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=0, help="probe at most this many clips (0: all single-source ones)")
    p.add_argument("--steps", type=int, default=5, help="DDIM steps")
    p.add_argument("--num_samples", type=int, default=2)
    p.add_argument("--flip_tta", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--loud_db", type=float, default=20.0, help="bins within this many dB of the mono's peak")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--out", default=None, help="JSON file of the result")
    return p


def main(argv: list[str] | None = None) -> dict:
    return run_probe(build_parser().parse_args(argv))


def cli() -> None:
    cli_main(main)


if __name__ == "__main__":
    cli()
