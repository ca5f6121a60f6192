"""How much of a synthetic set's L−R can the video explain? A position-only predictor and the static oracle.

    python bench/pan_predictability.py --data DATA [--max_clips 400] [--columns 7 14] [--out FILE.json]

On the clips of a synthetic set (``python -m DiffBinaural.dataset.synthetic``, either layout) with one
sounding source, whose direction is in ``synthetic_meta.json``, it compares three predictors of the
ln-mel L−R, each as the test split's L−R RMSE divided by the mono copy's (the ratio ``report.py`` and
``bench/visual_tokens.py`` print; the mono copy's L−R is 0):

* **the static per-band oracle**: each clip's own median L−R per band (from the ground truth);
* **position only**: per head and per band, L−R(t) linear in [s, s·m, m, 1], s = sin of the source's
  azimuth in that mel frame (a moving source moves it), m = the mono's ln-mel in the bin (a source pans
  only where it sounds); least squares on the frames of three quarters of the clips, scored on the other
  quarter. Roughly what a model that read the source's azimuth off every video frame and heard where the
  mono is loud, and knew nothing of the room, could give;
* and the R² of that fit on the static per-band pan (each clip's median L−R per band): the share of the
  clip's fixed panning that the azimuth explains;
* with ``--columns GX``: "position only" again, with the source's azimuth read off the centre of its cell in
  a grid of GX columns across the frame (what a grid token's position says) instead of the exact one (what
  a box token's says). Where this is no worse than the exact azimuth, the grid's cells are fine enough.

A Stage 1 model's figure on single-source clips can be put beside these: far below "position only"
it follows what the video cannot show (the room, the notes); far above, it has not learnt the position.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from common import ear_mels, machine

from binaural_core.audio import LEFT, RIGHT, mono_from_binaural
from binaural_core.mel import MelConfig, mel_numpy
from DiffBinaural.dataset import layout, synthetic
from DiffBinaural.report import static_oracle_diff


def cell_azimuth(az: np.ndarray, columns: int, width: int, fov_deg: float) -> np.ndarray:
    """Azimuths (radians) moved to the centre of their image column's cell, in a grid of ``columns`` cells across a
    ``width``-pixel frame (the synthetic camera: :func:`DiffBinaural.dataset.spatial.azimuth_to_x`)."""
    from DiffBinaural.dataset import spatial

    cell = np.clip(np.floor(spatial.azimuth_to_x(az, width, fov_deg) / width * columns), 0, columns - 1)
    return spatial.x_to_azimuth((cell + 0.5) / columns * width, width, fov_deg)


def single_source_pans(data: str, max_clips: int, columns: tuple[int, ...] = ()) -> list[dict]:
    """Per single-source clip: ``mel`` (2, M, T) left/right ln-mels, ``diff`` (M, T) their L−R, ``az`` (T,) the azimuth in each mel frame
    (radians, from the video frames' azimuths), ``head``, and per ``columns`` GX ``az_{GX}`` (:func:`cell_azimuth`)."""
    cfg, meta = MelConfig(), synthetic.load_meta(data)
    width, fov = meta["image_size"][0], meta.get("fov_deg", 90.0)
    clips = []
    for name, clip in meta["clips"].items():
        sounding = [s for s in clip["sources"] if not s.get("silent", False)]
        if len(sounding) != 1:
            continue
        wav, mel = ear_mels(data, name, cfg)
        az = np.radians(np.asarray(sounding[0]["azimuth_deg"], float))  # one per video frame
        frame_t = np.arange(mel.shape[-1]) * cfg.hop_size / cfg.sampling_rate
        az = np.interp(frame_t, np.arange(az.size) / meta.get("fps", layout.FPS), az)
        mono = mel_numpy(mono_from_binaural(wav), cfg)
        clips.append({"mel": mel, "diff": mel[LEFT] - mel[RIGHT], "az": az, "mono": mono,
                      "head": clip.get("head", {}).get("head", "spherical"),
                      **{f"az_{gx}": cell_azimuth(az, gx, width, fov) for gx in columns}})
        if len(clips) == max_clips:
            break
    return clips


def _fit(clips: list[dict], train: list[int], test: list[int], key: str = "az") -> dict[int, np.ndarray]:
    """Per band b, least squares over the train clips' frames of L−R on [s, s·m, m, 1] (s = sin azimuth, the
    clip's ``key``; m = the mono's ln-mel in the bin: the pan scales with where the source sounds); the test
    clips' predictions ``{clip: (M, T)}``."""
    def features(i):  # (M, T, 4)
        s = np.broadcast_to(np.sin(clips[i][key]), clips[i]["mono"].shape)
        m = clips[i]["mono"]
        return np.stack([s, s * m, m, np.ones_like(m)], axis=-1)

    x = np.concatenate([features(i) for i in train], axis=1)  # (M, frames, 4)
    y = np.concatenate([clips[i]["diff"] for i in train], axis=1)  # (M, frames)
    coef = np.stack([np.linalg.lstsq(x[b], y[b], rcond=None)[0] for b in range(x.shape[0])])  # (M, 4)
    return {i: np.einsum("mtk,mk->mt", features(i), coef) for i in test}


def evaluate(clips: list[dict], columns: tuple[int, ...] = ()) -> dict:
    """The figures of the module docstring on the held-out quarter (every fourth clip); ``columns``: the cell
    grids (each clip's ``az_{GX}``, :func:`cell_azimuth`)."""
    held = np.arange(len(clips)) % 4 == 0
    rmse = {"mono": [], "oracle": [], "position": [], **{f"cells_{gx}": [] for gx in columns}}
    pans, fits = [], []
    for head in sorted({c["head"] for c in clips}):
        idx = [i for i, c in enumerate(clips) if c["head"] == head]
        train, test = [i for i in idx if not held[i]], [i for i in idx if held[i]]
        if not test or not train:
            continue
        pred = _fit(clips, train, test)
        cells = {gx: _fit(clips, train, test, key=f"az_{gx}") for gx in columns}
        for i in test:
            d = clips[i]["diff"]
            pans.append(np.median(d, axis=-1))
            fits.append(np.median(pred[i], axis=-1))
            rmse["mono"].append(np.sqrt((d**2).mean()))
            rmse["oracle"].append(static_oracle_diff(clips[i]["mel"]))
            rmse["position"].append(np.sqrt(((d - pred[i]) ** 2).mean()))
            for gx, cell_pred in cells.items():
                rmse[f"cells_{gx}"].append(np.sqrt(((d - cell_pred[i]) ** 2).mean()))
    pans, fits = np.stack(pans), np.stack(fits)
    r2 = 1.0 - ((pans - fits) ** 2).sum() / ((pans - pans.mean(axis=0)) ** 2).sum()
    mono = float(np.mean(rmse["mono"]))
    return {"clips": len(clips), "held_out": int(held.sum()), "lr_mono": mono,
            "static_oracle_ratio": float(np.mean(rmse["oracle"]) / mono),
            "position_only_ratio": float(np.mean(rmse["position"]) / mono),
            "static_pan_r2_from_azimuth": float(r2), "static_pan_rms": float(np.sqrt((pans**2).mean())),
            "position_from_cells_ratio": {str(gx): float(np.mean(rmse[f"cells_{gx}"]) / mono) for gx in columns}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="a synthetic dataset root (RealBinaural or FAIR-Play layout)")
    p.add_argument("--max_clips", type=int, default=400, help="single-source clips to read")
    p.add_argument("--columns", type=int, nargs="*", default=[], metavar="GX",
                   help="also position only from the centre of the source's cell in a grid of GX columns")
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if any(gx < 1 for gx in args.columns):
        raise SystemExit(f"error: --columns must be counts >= 1, got {args.columns}")
    clips = single_source_pans(args.data, args.max_clips, tuple(args.columns))
    if len(clips) < 8:
        raise SystemExit(f"error: {args.data}: {len(clips)} single-source clips, need at least 8")
    result = {**evaluate(clips, tuple(args.columns)), "data": os.path.abspath(args.data), "machine": machine()}
    print(f"{args.data}: {result['clips']} single-source clips ({result['held_out']} held out); L−R × the mono "
          f"copy: static oracle {result['static_oracle_ratio']:.3f}, position only {result['position_only_ratio']:.3f}; "
          f"the azimuth explains {result['static_pan_r2_from_azimuth']:.0%} of the static pan "
          f"(RMS {result['static_pan_rms']:.3f} nats)")
    for gx, ratio in result["position_from_cells_ratio"].items():
        print(f"  position only, read off the centre of its cell of {gx} columns: {ratio:.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
