"""Evaluate generated binaural wavs against the ground truth, with the mono-copy baseline beside them.

Usage::

    python DiffBinaural/evaluate.py --pred_dir OUT --gt_dir DATA/processed/binaural_audios_22050Hz \
        --out metrics.json [--skip_bad] [--no-pesq] [--metrics stft_distance,env_distance]

Pairs every ``{name}.wav`` or ``{name}_binaural_generated.wav`` of ``--pred_dir`` with
``{name}.wav`` of ``--gt_dir``. For each clip it computes the metrics of
:mod:`DiffBinaural.utils.metrics` for the model and for the mono-copy baseline (``(L + R) / 2`` of
the GT on both ears, FAIR-Play's "Mono-Mono"), then writes (atomically) a JSON file::

    {
      "format_version": 1,
      "settings": {pred_dir, gt_dir, sampling_rate, metrics, mel config, resample, skip_bad, ...},
      "better": {metric: "lower" | "higher"},
      "num_clips": N,
      "skipped": [{"file": path, "problem": text}, ...],
      "model":         {"mean": {metric: v}, "std": {metric: v}, "count": {metric: n},
                        "per_clip": {name: {metric: v}}},
      "mono_baseline": {same layout},
      "files": {name: {"pred": path, "gt": path, "samples": n_evaluated,
                       "pred_samples": n, "gt_samples": n}}
    }

``std`` is the sample standard deviation (ddof 1; 0 for a single clip), ``count`` the number of
finite values; NaN (e.g. PESQ without an utterance) is written as ``null`` and left out of the mean.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from BigVGAN.meldataset import DEFAULT_CONFIG, MelConfig
from binaural_core.audio import BadInputError, cli_main, load_wav, mono_from_binaural
from DiffBinaural.utils.metrics import HIGHER_IS_BETTER, METRIC_NAMES, MIN_SAMPLES, compute_all

GENERATED_SUFFIX = "_binaural_generated"
FORMAT_VERSION = 1
SYSTEMS = ("model", "mono_baseline")


def find_pairs(pred_dir: str, gt_dir: str) -> list[tuple[str, str, str]]:
    """``[(name, pred_path, gt_path)]`` sorted by name; the GT path may not exist (checked later).

    Raises:
        BadInputError: a folder is missing, ``pred_dir`` holds no wav, or two predictions map to one name.
    """
    for d in (pred_dir, gt_dir):
        if not os.path.isdir(d):
            raise BadInputError(d, "not a directory")
    wavs = sorted(f for f in os.listdir(pred_dir) if f.lower().endswith(".wav"))
    if not wavs:
        raise BadInputError(pred_dir, "no .wav files to evaluate")
    by_name: dict[str, str] = {}
    for f in wavs:
        stem = f[: -len(".wav")]
        name = stem[: -len(GENERATED_SUFFIX)] if stem.endswith(GENERATED_SUFFIX) else stem
        if name in by_name:
            raise BadInputError(
                os.path.join(pred_dir, f), f"clip '{name}' is also predicted by {by_name[name]}"
            )
        by_name[name] = os.path.join(pred_dir, f)
    return [(n, by_name[n], os.path.join(gt_dir, f"{n}.wav")) for n in sorted(by_name)]


def mono_baseline(gt: np.ndarray) -> np.ndarray:
    """``(2, S)`` GT -> ``(2, S)`` mono copy: ``(L + R) / 2`` on both ears."""
    mono = mono_from_binaural(gt)
    return np.stack([mono, mono])


def evaluate_pair(
    pred_path: str,
    gt_path: str,
    *,
    mel_cfg: MelConfig,
    metrics: Sequence[str] | None = None,
    resample_ok: bool = False,
) -> dict:
    """Metrics of one clip: ``{"model": {...}, "mono_baseline": {...}, "samples": n, ...}``.

    Both wavs are trimmed to the shorter length (``samples``); the original lengths are kept too.

    Raises:
        BadInputError: missing GT, unreadable file, wrong channel count or rate, clip too short.
    """
    if not os.path.isfile(gt_path):
        raise BadInputError(pred_path, f"no ground truth {gt_path}")
    sr = mel_cfg.sampling_rate
    pred = load_wav(pred_path, sampling_rate=sr, channels=2, resample_ok=resample_ok)
    gt = load_wav(gt_path, sampling_rate=sr, channels=2, resample_ok=resample_ok)
    n = min(pred.shape[1], gt.shape[1])  # the metrics trim both to the shorter one
    if n < MIN_SAMPLES:
        short = pred_path if pred.shape[1] < MIN_SAMPLES else gt_path
        raise BadInputError(short, f"too short to evaluate ({n} samples, need {MIN_SAMPLES})")
    return {
        "model": compute_all(pred, gt, sr=sr, mel_cfg=mel_cfg, metrics=metrics),
        "mono_baseline": compute_all(mono_baseline(gt), gt, sr=sr, mel_cfg=mel_cfg, metrics=metrics),
        "samples": int(n),
        "pred_samples": int(pred.shape[1]),
        "gt_samples": int(gt.shape[1]),
    }


def _evaluate_pair_safe(args: tuple) -> tuple[dict | None, str | None, str | None]:
    """Worker wrapper: returns ``(result, None, None)`` or ``(None, path, problem)`` (picklable)."""
    pred_path, gt_path, kwargs = args
    try:
        return evaluate_pair(pred_path, gt_path, **kwargs), None, None
    except BadInputError as err:
        return None, err.path, err.problem


def summarize(per_clip: dict[str, dict[str, float]], metrics: Sequence[str]) -> dict:
    """``{name: {metric: v}}`` -> ``{"mean", "std", "count"}`` per metric over the finite values."""
    out: dict[str, dict] = {"mean": {}, "std": {}, "count": {}}
    for m in metrics:
        vals = np.array([c[m] for c in per_clip.values()], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        out["mean"][m] = float(np.mean(vals)) if vals.size else math.nan
        out["std"][m] = float(np.std(vals, ddof=1)) if vals.size > 1 else (0.0 if vals.size else math.nan)
        out["count"][m] = int(vals.size)
    return out


def evaluate_dirs(
    pred_dir: str,
    gt_dir: str,
    *,
    mel_cfg: MelConfig | None = None,
    metrics: Sequence[str] | None = None,
    skip_bad: bool = False,
    resample_ok: bool = False,
    workers: int = 1,
) -> dict:
    """Evaluate every prediction of ``pred_dir``; returns the JSON document described in the module doc.

    Raises:
        BadInputError: the first broken pair (unless ``skip_bad``), or no pair could be evaluated.
    """
    mel_cfg = MelConfig.from_json(DEFAULT_CONFIG) if mel_cfg is None else mel_cfg
    metrics = list(METRIC_NAMES) if metrics is None else list(metrics)
    pairs = find_pairs(pred_dir, gt_dir)
    kwargs = {"mel_cfg": mel_cfg, "metrics": metrics, "resample_ok": resample_ok}
    jobs = [(p, g, kwargs) for _, p, g in pairs]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_evaluate_pair_safe, jobs))
    else:
        results = []
        for job in jobs:  # sequential: stop at the first broken pair without evaluating the rest
            results.append(_evaluate_pair_safe(job))
            if results[-1][0] is None and not skip_bad:
                break

    doc: dict = {"model": {"per_clip": {}}, "mono_baseline": {"per_clip": {}}, "files": {}, "skipped": []}
    for (name, pred_path, gt_path), (res, bad_path, problem) in zip(pairs, results):
        if res is None:
            if not skip_bad:
                raise BadInputError(bad_path, problem)
            doc["skipped"].append({"file": bad_path, "problem": problem})
            continue
        for system in SYSTEMS:
            doc[system]["per_clip"][name] = res[system]
        doc["files"][name] = {"pred": pred_path, "gt": gt_path,
                              **{k: res[k] for k in ("samples", "pred_samples", "gt_samples")}}
    if not doc["files"]:
        raise BadInputError(pred_dir, f"no pair could be evaluated ({len(doc['skipped'])} skipped)")
    for system in SYSTEMS:
        doc[system] = {**summarize(doc[system]["per_clip"], metrics), "per_clip": doc[system]["per_clip"]}
    return {
        "format_version": FORMAT_VERSION,
        "settings": {
            "pred_dir": os.path.abspath(pred_dir),
            "gt_dir": os.path.abspath(gt_dir),
            "sampling_rate": mel_cfg.sampling_rate,
            "metrics": metrics,
            "mel": mel_cfg.to_dict(),
            "resample": resample_ok,
            "skip_bad": skip_bad,
            "normalisation": "peak over both channels for all metrics except mel_distance (raw)",
            "baseline": "mono copy: (L + R) / 2 of the GT on both channels",
        },
        "better": {m: "higher" if m in HIGHER_IS_BETTER else "lower" for m in metrics},
        "num_clips": len(doc["files"]),
        "skipped": doc["skipped"],
        "model": doc["model"],
        "mono_baseline": doc["mono_baseline"],
        "files": doc["files"],
    }


def _json_safe(x):
    """NaN / inf -> None, recursively (strict JSON has no NaN)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def write_json(doc: dict, path: str) -> None:
    """Write ``doc`` atomically (temp file in the same folder + ``os.replace``)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(_json_safe(doc), f, indent=2, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)


def format_table(doc: dict) -> str:
    """One row per metric: model and mono-copy mean +- std, and which direction is better."""
    head = f"{'metric':<16}{'model':>22}{'mono-copy':>22}  better"
    lines = [f"{doc['num_clips']} clip(s)", head, "-" * len(head)]
    for m, direction in doc["better"].items():
        cells = []
        for system in SYSTEMS:
            mean, std = doc[system]["mean"][m], doc[system]["std"][m]
            cells.append("nan" if not math.isfinite(mean) else f"{mean:.4f} +- {std:.4f}")
        lines.append(f"{m:<16}{cells[0]:>22}{cells[1]:>22}  {direction}")
    return "\n".join(lines)


def parse_metrics(text: str | None, *, use_pesq: bool) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]`` in canonical order (default all); ``use_pesq=False`` drops pesq."""
    if text is None:
        chosen = list(METRIC_NAMES)
    else:
        chosen = [m.strip() for m in text.split(",") if m.strip()]
        unknown = [m for m in chosen if m not in METRIC_NAMES]
        if unknown or not chosen:
            raise BadInputError(None, f"--metrics: unknown or empty {unknown}; choose from {','.join(METRIC_NAMES)}")
        chosen = [m for m in METRIC_NAMES if m in chosen]
    return [m for m in chosen if use_pesq or m != "pesq"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pred_dir", required=True, help="generated wavs: {name}.wav or {name}_binaural_generated.wav")
    p.add_argument("--gt_dir", required=True, help="ground-truth binaural wavs {name}.wav (2 ch, channel 0 = left)")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="vocoder JSON config (mel parameters, sampling rate)")
    p.add_argument("--metrics", default=None, help=f"comma-separated subset of {','.join(METRIC_NAMES)}")
    p.add_argument("--pesq", action=argparse.BooleanOptionalAction, default=True,
                   help="compute wide-band PESQ (the slowest metric)")
    p.add_argument("--skip_bad", action=argparse.BooleanOptionalAction, default=False,
                   help="skip broken pairs (counted in one line) instead of stopping at the first")
    p.add_argument("--resample", action=argparse.BooleanOptionalAction, default=False,
                   help="resample wavs at another rate instead of refusing them")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (1 = sequential)")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    mel_cfg = MelConfig.from_json(args.config)
    metrics = parse_metrics(args.metrics, use_pesq=args.pesq)
    if not metrics:
        raise BadInputError(None, "no metric left to compute (--metrics pesq with --no-pesq)")
    doc = evaluate_dirs(
        args.pred_dir, args.gt_dir, mel_cfg=mel_cfg, metrics=metrics, skip_bad=args.skip_bad,
        resample_ok=args.resample, workers=max(1, args.workers),
    )
    write_json(doc, args.out)
    if doc["skipped"]:
        first = doc["skipped"][0]
        print(f"skipped {len(doc['skipped'])} broken pair(s); first: {first['file']}: {first['problem']}",
              file=sys.stderr)
    print(format_table(doc))
    print(f"wrote {args.out}")
    return doc


if __name__ == "__main__":
    cli_main(main)
