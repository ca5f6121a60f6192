"""How much of a realistic set's L−R can no input predict? Two renders that differ only in the late tail.

    python bench/tail_floor.py --work DIR [--out FILE.json] GENERATOR FLAGS...

e.g. ``--work /tmp/floor --num_clips 150 --sources soundfont --room image_source --hrtf data/hrtf/kemar.sofa``.
It writes the same synthetic set twice (``python -m DiffBinaural.dataset.synthetic`` with the flags
given, ``--tail_seed 0`` and ``--tail_seed 1``): the same melodies, rooms, heads, positions and
images, only the noise of the diffuse tail drawn anew. Neither the video nor the mono tells which tail
a recording has (the mono is L + R: for a tail with equal power in the ears it carries nothing of
L − R), so the part of the ln-mel L−R that changes with the tail is beyond any predictor:

* **tail floor** ``sqrt(mean (d₀ − d₁)² / 2)``: the RMSE of the best predictor there is (the
  conditional mean), when the two renders' tail parts of ``d = L − R`` are independent draws;
* **a sampler's floor** for ``n`` averaged samples ``floor · sqrt(1 + 1/n)``: a perfect diffusion model
  draws a tail of its own, which adds its variance again (n = 4: the demo's 2 + 2 mirrored);
* beside them the static per-band oracle (each clip's median L−R per band) of the first render.

Each as an RMSE over the clips divided by the mono copy's (mean over clips), as ``report.py`` gives them.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
from common import ear_mels, machine

from binaural_core.audio import LEFT, RIGHT
from binaural_core.mel import MelConfig
from DiffBinaural.dataset import synthetic
from DiffBinaural.report import static_oracle_diff

DEMO_SAMPLES = 4  # make demo averages 2 samples and 2 mirrored ones


def floors(first: str, second: str) -> dict:
    """The figures of the module docstring for two RealBinaural sets with the same clip names."""
    cfg = MelConfig()
    names = sorted(synthetic.load_meta(first)["clips"])
    twin, mono, oracle = [], [], []
    for name in names:
        a, b = ear_mels(first, name, cfg)[1], ear_mels(second, name, cfg)[1]
        d_a, d_b = a[LEFT] - a[RIGHT], b[LEFT] - b[RIGHT]
        twin.append(math.sqrt(((d_a - d_b) ** 2).mean() / 2))
        mono.append(math.sqrt((d_a**2).mean()))
        oracle.append(static_oracle_diff(a))
    m = float(np.mean(mono))
    floor = float(np.mean(twin)) / m
    return {"clips": len(names), "lr_mono": m, "tail_floor_ratio": floor,
            "sampler_floor_ratio": {str(n): floor * math.sqrt(1 + 1 / n) for n in (1, DEMO_SAMPLES)},
            "static_oracle_ratio": float(np.mean(oracle)) / m}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", required=True, help="directory for the two sets (tail0/, tail1/; replaced)")
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args, flags = p.parse_known_args(argv)
    gen = vars(synthetic.build_parser().parse_args(["--out", "unused", *flags]))
    gen.pop("out")
    if gen["room"] != "image_source":
        raise SystemExit("error: tail_floor needs --room image_source (the diffuse mode has no separate tail)")
    if gen["fmt"] != "realbinaural":
        raise SystemExit("error: tail_floor reads the RealBinaural layout; leave --format out")
    roots = []
    for seed in (0, 1):
        roots.append(os.path.join(args.work, f"tail{seed}"))
        synthetic.generate_dataset(roots[-1], **{**gen, "tail_seed": seed, "overwrite": True})
    result = {**floors(*roots), "generator_flags": flags, "machine": machine()}
    print(f"{args.work}: {result['clips']} clips; L−R × the mono copy: tail floor {result['tail_floor_ratio']:.3f} "
          f"(a sampler averaging {DEMO_SAMPLES}: {result['sampler_floor_ratio'][str(DEMO_SAMPLES)]:.3f}, one: "
          f"{result['sampler_floor_ratio']['1']:.3f}), static oracle {result['static_oracle_ratio']:.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
