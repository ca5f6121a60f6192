"""Compare the mono renderer's formulations (DiffBinaural.inference.renderer) on a dataset's clips.

    python bench/renderer_variants.py --data_root DATA [--split test] [--mel_dir MELS] [--clips 8]

For each clip of ``{data_root}/splits/{split}.csv`` (RealBinaural layout) it renders with every mode
(``free``, ``sum``, ``symmetric``) from

* the ground-truth mels and phase channels of the binaural file ("oracle": the renderer's ceiling), and
* with ``--mel_dir``: a Stage 1 mel dir (``test_realBinaural.py`` output; its phase dir when present),

and prints the mean metrics beside the mono copy's (``evaluate.py``'s definitions).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
from common import machine

from binaural_core.audio import load_wav
from binaural_core.interaural import mels_and_phase
from binaural_core.mel import MelConfig
from DiffBinaural.evaluate import mono_baseline
from DiffBinaural.evaluation.metrics import compute_all
from DiffBinaural.inference.renderer import MODES, render

KEYS = ("stft_distance", "env_distance", "pesq", "ild_error_db", "itd_error_ms", "phase_distance", "mel_distance")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_root", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--mel_dir", default=None, help="Stage 1 mel dir to render as well")
    p.add_argument("--clips", type=int, default=8)
    args = p.parse_args()
    import pandas as pd

    cfg = MelConfig()
    names = pd.read_csv(os.path.join(args.data_root, "splits", f"{args.split}.csv"), dtype=str)["name"].tolist()
    names = names[: args.clips]
    sources = {"oracle": None} | ({"stage1": args.mel_dir} if args.mel_dir else {})
    rows: dict[str, list[dict]] = {}
    for name in names:
        gt = load_wav(os.path.join(args.data_root, "processed", "binaural_audios_22050Hz", f"{name}.wav"),
                      sampling_rate=cfg.sampling_rate, channels=2)
        mono = torch.from_numpy(gt.mean(0).astype(np.float32))
        rows.setdefault("mono copy", []).append(compute_all(mono_baseline(gt), gt, metrics=KEYS))
        for src, mel_dir in sources.items():
            if mel_dir is None:
                b = torch.from_numpy(gt.astype(np.float32))
                mels, phase = mels_and_phase(b, cfg)
            else:
                mels = torch.from_numpy(np.stack([np.load(os.path.join(mel_dir, s, args.split, f"{name}.npy"))
                                                  for s in ("left", "right")]))
                ph = os.path.join(mel_dir, "phase", args.split, f"{name}.npy")
                phase = torch.from_numpy(np.load(ph)) if os.path.exists(ph) else None
            for mode in MODES:
                out = render(mono, mels, cfg, phase=phase, mode=mode).numpy()
                rows.setdefault(f"{src} {mode}", []).append(compute_all(out, gt, metrics=KEYS))
            if phase is not None:
                out = render(mono, mels, cfg, phase=None).numpy()
                rows.setdefault(f"{src} free, no phase", []).append(compute_all(out, gt, metrics=KEYS))
    print(f"# {len(names)} clips of {args.data_root} ({args.split}); {machine()}")
    print("| renderer | " + " | ".join(f"`{k}`" for k in KEYS) + " |")
    print("|---" * (len(KEYS) + 1) + "|")
    for label, vals in rows.items():
        means = [np.nanmean([v[k] for v in vals]) for k in KEYS]
        print(f"| {label} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
