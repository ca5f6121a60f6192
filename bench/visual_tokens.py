"""Visual tokens compared at `make demo`'s Stage 1 recipe: train, sample the test clips, score L−R.

    python bench/visual_tokens.py --data DATA --kind realbinaural|fairplay --tokens boxes grid both \
        --out runs/tokens [--label NAME] [--max_steps 1700] [-- EXTRA TRAIN FLAGS]

For each ``--tokens`` mode it runs the user's own scripts in a subprocess (each with its log in
``{out}/{label}_{mode}/``): ``train_{kind}.py`` with the demo's flags, ``test_{kind}.py --mode test``
sampled as the demo samples (DDIM 5, 2 samples + 2 of the mirrored video), once ``--mode gt``, then the
test split's mel distances (:func:`DiffBinaural.report.mel_rmse`, the numbers ``report.py`` prints):
L−R and L/R, each beside the mono copy's, and the ratio. A finished mode (its ``score.json``) is not
redone. ``boxes`` on a FAIR-Play layout is today's whole-frame token (one per frame). Results go to
``{out}/results.json`` (one entry per label and mode, with the machine) and are printed as a table.

The data: ``python -m DiffBinaural.dataset.synthetic --out D --num_clips 1200 --seconds 4 --seed 0
--split_fractions 0.95 0.025 0.025`` (add ``--format fairplay --fairplay_sr 22050`` for the same scenes in
the FAIR-Play layout, at the same rate).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from common import machine

from binaural_core.audio import load_wav, mono_from_binaural
from binaural_core.mel import MelConfig, mel_numpy, read_json
from DiffBinaural.dataset import layout, synthetic
from DiffBinaural.report import load_mels, mel_rmse, static_oracle_diff

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# make demo's Stage 1 flags (Makefile: step 2/6) and its test sampling (DEMO_SAMPLING)
TRAIN = ["--config", "tiny", "--batch_size_per_gpu", "8", "--num_epoch", "1000", "--lr_unet", "1e-3",
         "--lr_frame", "1e-3", "--eval_epoch", "10", "--num_val", "16", "--steps", "10", "--disp_iter", "100",
         "--workers", "1"]
SAMPLING = ["--steps", "5", "--num_samples", "2", "--flip_tta", "--window_batch", "24"]


def split_lists(data: str, kind: str) -> dict[str, str]:
    """train / val / test list files of the synthetic generator's layout."""
    if kind == "realbinaural":
        return {s: os.path.join(data, "splits", f"{s}.csv") for s in ("train", "val", "test")}
    return {s: layout.fp_split_h5(data, s, 1) for s in ("train", "val", "test")}


def run_logged(cmd: list[str], log_path: str) -> None:
    with open(log_path, "w") as log:
        proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"{log_path}: {' '.join(cmd[:1])} failed (exit {proc.returncode})")


def score(pred_dir: str, gt_dir: str, data: str, kind: str) -> dict:
    """Mean test L/R and L−R mel distances of a mel dir and of the mono copy ((L + R) / 2 on both ears)."""
    cfg = MelConfig()
    names = sorted(f[:-4] for f in os.listdir(os.path.join(gt_dir, "left", "test")) if f.endswith(".npy"))
    rows = {"model": [], "mono": [], "oracle": []}
    for name in names:
        gt, pred = load_mels(gt_dir, "test", name), load_mels(pred_dir, "test", name)
        wav_path = layout.rb_paths(data, name)["binaural"] if kind == "realbinaural" else layout.fp_paths(
            data, name)["binaural"]
        mono = mel_numpy(mono_from_binaural(load_wav(wav_path, sampling_rate=cfg.sampling_rate, channels=2, resample_ok=True)), cfg)
        mono = mono[:, :gt.shape[-1]]
        rows["model"].append(mel_rmse(pred, gt))
        rows["mono"].append(mel_rmse(np.stack([mono, mono]), gt))
        rows["oracle"].append(static_oracle_diff(gt))
    mean = {k: np.mean(np.array(v), axis=0) for k, v in rows.items()}
    # the L−R ratio per number of sounding sources: where a change helps (one source: position; several: binding)
    clips = synthetic.load_meta(data)["clips"]
    sounding = np.array([sum(not s.get("silent", False) for s in clips[n]["sources"]) for n in names])
    model_diff, mono_diff = (np.array(rows[k])[:, 1] for k in ("model", "mono"))
    counts = sorted(set(sounding.tolist()))

    def ratio(sel: np.ndarray) -> float:
        return round(float(model_diff[sel].mean() / mono_diff[sel].mean()), 4)

    by_sources = {str(k): ratio(sounding == k) for k in counts}
    # with objects in view that do not sound (--max_silent), the model must also tell which box is heard
    silent = np.array([len(clips[n]["sources"]) for n in names]) - sounding
    silent_counts = sorted(set(silent.tolist()))
    return {"clips": len(names), "lr": float(mean["model"][0]), "lr_mono": float(mean["mono"][0]),
            "diff": float(mean["model"][1]), "diff_mono": float(mean["mono"][1]),
            "diff_ratio": float(mean["model"][1] / mean["mono"][1]), "lr_ratio": float(mean["model"][0] / mean["mono"][0]),
            "diff_oracle_ratio": float(mean["oracle"] / mean["mono"][1]), "diff_ratio_by_sources": by_sources,
            "clips_by_sources": {str(k): int((sounding == k).sum()) for k in counts},
            "diff_ratio_by_silent": {str(k): ratio(silent == k) for k in silent_counts},
            "clips_by_silent": {str(k): int((silent == k).sum()) for k in silent_counts}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--kind", choices=("realbinaural", "fairplay"), required=True)
    p.add_argument("--tokens", nargs="+", choices=("boxes", "grid", "both"), required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--label", default=None, help="name of this setting in results.json (default: the kind)")
    p.add_argument("--max_steps", type=int, default=1700)
    p.add_argument("--rescore", action=argparse.BooleanOptionalAction, default=False,
                   help="score the finished modes' saved test mels again (after a change to score())")
    p.add_argument("extra", nargs="*", help="more training flags (after --)")
    args = p.parse_args(argv)
    label = args.label or args.kind
    lists = split_lists(args.data, args.kind)
    script = "realBinaural" if args.kind == "realbinaural" else "fairplay"
    os.makedirs(args.out, exist_ok=True)
    gt_dir = os.path.join(args.out, f"{label}_gt")
    common = ["--data_root", args.data, "--ckpt", os.path.join(args.out, "ckpt")]
    if not os.path.isfile(os.path.join(gt_dir, "meta.json")):
        os.makedirs(gt_dir, exist_ok=True)
        run_logged([f"DiffBinaural/test_{script}.py", *common, "--id", "-", "--mode", "gt", "--list_test",
                    lists["test"], "--output_dir", gt_dir], os.path.join(gt_dir, "gt.log"))
    results_path = os.path.join(args.out, "results.json")
    results = read_json(results_path) if os.path.isfile(results_path) else {}
    for mode in args.tokens:
        name = f"{label}_{mode}"
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        done = os.path.join(folder, "score.json")
        if args.rescore and os.path.isfile(done):
            old = read_json(done)
            with open(done, "w") as f:
                json.dump({**old, **score(os.path.join(folder, "mels"), gt_dir, args.data, args.kind)}, f, indent=1)
        if not os.path.isfile(done):
            t0 = time.time()
            run_logged([f"DiffBinaural/train_{script}.py", *common, "--id", name, *TRAIN, "--max_steps",
                        str(args.max_steps), "--list_train", lists["train"], "--list_val", lists["val"],
                        "--visual_tokens", mode, *args.extra], os.path.join(folder, "train.log"))
            t1 = time.time()
            run_logged([f"DiffBinaural/test_{script}.py", *common, "--id", name, "--mode", "test", "--list_test",
                        lists["test"], *SAMPLING, "--output_dir", os.path.join(folder, "mels")],
                       os.path.join(folder, "test.log"))
            result = {**score(os.path.join(folder, "mels"), gt_dir, args.data, args.kind), "tokens": mode,
                      "kind": args.kind, "train_min": round((t1 - t0) / 60, 2), "extra": args.extra,
                      "max_steps": args.max_steps, "machine": machine()}
            with open(done, "w") as f:
                json.dump(result, f, indent=1)
        results[name] = read_json(done)
        with open(results_path, "w") as f:
            json.dump(results, f, indent=1)
    print(f"| run | test L−R (× mono copy) | static per-band oracle (×) | L/R (×) | training |  ({machine()})")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        oracle = f"{r['diff_oracle_ratio']:.3f}" if "diff_oracle_ratio" in r else "–"
        print(f"| {name} | {r['diff']:.3f} / {r['diff_mono']:.3f} = {r['diff_ratio']:.3f} | {oracle} | "
              f"{r['lr_ratio']:.3f} | {r['train_min']} min |")


if __name__ == "__main__":
    main()
