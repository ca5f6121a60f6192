"""Evaluate generated binaural wavs against the ground truth, with the mono-copy baseline beside them.

Usage::

    python DiffBinaural/evaluate.py --pred_dir OUT --gt_dir DATA/processed/binaural_audios_22050Hz \
        --out metrics.json [--skip_bad] [--no-pesq] [--metrics stft_distance,env_distance] [--protocol fairplay]
    python DiffBinaural/evaluate.py --protocol fairplay --results split1.json ... split5.json

Pairs every ``{name}.wav`` or ``{name}_binaural_generated.wav`` of ``--pred_dir`` with
``{name}.wav`` of ``--gt_dir``. Both may come at any sample rate (each metric resamples to its own:
16 kHz for the FAIR-Play metrics and PESQ, 22050 Hz for the mel and cue metrics); a pair whose
durations differ by more than ``--duration_tolerance`` seconds is refused. For each clip it computes
the metrics of :mod:`DiffBinaural.evaluation.metrics` for the model and for the mono-copy baseline
(``(L + R) / 2`` of the GT on both ears, FAIR-Play's "Mono-Mono"), then writes (atomically) a JSON file::

    {
      "format_version": 1,
      "settings": {pred_dir, gt_dir, rates, duration_tolerance_s, metrics, mel config, skip_bad, ...},
      "better": {metric: "lower" | "higher"},
      "num_clips": N,
      "skipped": [{"file": path, "problem": text}, ...],
      "model":         {"mean": {metric: v}, "std": {metric: v}, "se": {metric: v},
                        "count": {metric: n}, "per_clip": {name: {metric: v}}},
      "mono_baseline": {same layout},
      "files": {name: {"pred": path, "gt": path, "seconds": evaluated duration,
                       "pred_rate": Hz, "gt_rate": Hz, "pred_samples": n, "gt_samples": n}}
    }

``std`` is the sample standard deviation (ddof 1; 0 for a single clip), ``se`` the standard error
``std / sqrt(count)``, ``count`` the number of finite values; NaN (e.g. PESQ without an utterance) is
written as ``null`` and left out of the mean.

``--protocol fairplay`` prints the table as the FAIR-Play papers report it (STFT, ENV, and
PseudoBinaural's Mag, D-phase, SNR: mean ± standard error over clips, model and mono copy); given
several result JSONs with ``--results`` (one per split, e.g. the five scene-disjoint splits) it prints
each split's means and the mean over splits (± the standard error of the split means).
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

from binaural_core.audio import BadInputError, cli_main, mono_from_binaural, read_wav
from binaural_core.checkpoint import atomic_write_text
from binaural_core.mel import DEFAULT_CONFIG, MelConfig
from DiffBinaural.evaluation.metrics import (
    FAIRPLAY_SR,
    HIGHER_IS_BETTER,
    METRIC_NAMES,
    MIN_SAMPLES,
    SR,
    compute_all,
)

GENERATED_SUFFIX = "_binaural_generated"
FORMAT_VERSION = 1
SYSTEMS = ("model", "mono_baseline")
FILE_KEYS = ("seconds", "pred_rate", "gt_rate", "pred_samples", "gt_samples")
DURATION_TOLERANCE_S = 0.05  # a vocoder's output is up to one hop (11.6 ms) short; more is another clip


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
    duration_tolerance: float = DURATION_TOLERANCE_S,
) -> dict:
    """Metrics of one clip: ``{"model": {...}, "mono_baseline": {...}, "seconds": s, ...}``.

    Both wavs are read at their own rates; each metric resamples them to its rate and trims both to
    the shorter length there (``seconds`` = the shorter duration).

    Raises:
        BadInputError: missing GT, unreadable file, wrong channel count, durations that differ by more
            than ``duration_tolerance`` seconds, clip too short.
    """
    if not os.path.isfile(gt_path):
        raise BadInputError(pred_path, f"no ground truth {gt_path}")
    pred, pred_sr = read_wav(pred_path, channels=2)
    gt, gt_sr = read_wav(gt_path, channels=2)
    pred_s, gt_s = pred.shape[1] / pred_sr, gt.shape[1] / gt_sr
    if abs(pred_s - gt_s) > duration_tolerance:
        raise BadInputError(pred_path, f"lasts {pred_s:.3f} s but the ground truth {gt_path} lasts {gt_s:.3f} s "
                                       f"(more than --duration_tolerance {duration_tolerance:g} s apart)")
    seconds = min(pred_s, gt_s)
    if seconds * SR < MIN_SAMPLES:
        raise BadInputError(pred_path if pred_s <= gt_s else gt_path,
                            f"too short to evaluate ({seconds:.3f} s, need {MIN_SAMPLES / SR:.3f} s)")
    kw = {"mel_cfg": mel_cfg, "metrics": metrics}
    return {
        "model": compute_all(pred, gt, sr=pred_sr, gt_sr=gt_sr, **kw),
        "mono_baseline": compute_all(mono_baseline(gt), gt, sr=gt_sr, gt_sr=gt_sr, **kw),
        "seconds": seconds,
        "pred_rate": pred_sr,
        "gt_rate": gt_sr,
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
    out: dict[str, dict] = {"mean": {}, "std": {}, "se": {}, "count": {}}
    for m in metrics:
        vals = np.array([c[m] for c in per_clip.values()], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        out["mean"][m] = float(np.mean(vals)) if vals.size else math.nan
        out["std"][m] = float(np.std(vals, ddof=1)) if vals.size > 1 else (0.0 if vals.size else math.nan)
        out["se"][m] = out["std"][m] / math.sqrt(vals.size) if vals.size else math.nan
        out["count"][m] = int(vals.size)
    return out


def evaluate_dirs(
    pred_dir: str,
    gt_dir: str,
    *,
    mel_cfg: MelConfig | None = None,
    metrics: Sequence[str] | None = None,
    skip_bad: bool = False,
    duration_tolerance: float = DURATION_TOLERANCE_S,
    workers: int = 1,
) -> dict:
    """Evaluate every prediction of ``pred_dir``; returns the JSON document described in the module doc.

    Raises:
        BadInputError: the first broken pair (unless ``skip_bad``), or no pair could be evaluated.
    """
    mel_cfg = MelConfig.from_json(DEFAULT_CONFIG) if mel_cfg is None else mel_cfg
    metrics = list(METRIC_NAMES) if metrics is None else list(metrics)
    pairs = find_pairs(pred_dir, gt_dir)
    kwargs = {"mel_cfg": mel_cfg, "metrics": metrics, "duration_tolerance": duration_tolerance}
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
        doc["files"][name] = {"pred": pred_path, "gt": gt_path, **{k: res[k] for k in FILE_KEYS}}
    if not doc["files"]:
        raise BadInputError(pred_dir, f"no pair could be evaluated ({len(doc['skipped'])} skipped)")
    for system in SYSTEMS:
        doc[system] = {**summarize(doc[system]["per_clip"], metrics), "per_clip": doc[system]["per_clip"]}
    return {
        "format_version": FORMAT_VERSION,
        "settings": {
            "pred_dir": os.path.abspath(pred_dir),
            "gt_dir": os.path.abspath(gt_dir),
            "rates": {"fairplay_metrics_and_pesq": FAIRPLAY_SR, "mel_and_cue_metrics": SR},
            "duration_tolerance_s": duration_tolerance,
            "metrics": metrics,
            "mel": mel_cfg.to_dict(),
            "skip_bad": skip_bad,
            "normalisation": "each signal resampled to the metric's rate, then divided by its own peak over "
                             "both channels (FAIR-Play's order); mel_distance on the raw signals",
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
    """Write ``doc`` atomically (strict JSON: NaN and inf as null)."""
    atomic_write_text(json.dumps(_json_safe(doc), indent=2, allow_nan=False) + "\n", path)


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


PROTOCOLS = ("all", "fairplay")
# FAIR-Play's table (Gao & Grauman 2019: STFT, ENV) and PseudoBinaural's additions (Mag, D-phase, SNR)
FAIRPLAY_COLUMNS = (("stft_distance", "STFT"), ("env_distance", "ENV"), ("mag_distance", "Mag"),
                    ("phase_distance", "D-phase"), ("snr", "SNR"))


def read_result(path: str) -> dict:
    """A JSON written by :func:`write_json`; one error line when it is not one."""
    if not os.path.isfile(path):
        raise BadInputError(path, "file not found")
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise BadInputError(path, f"unreadable JSON ({type(err).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION or "model" not in doc:
        raise BadInputError(path, f"not a result of evaluate.py (format_version {FORMAT_VERSION})")
    return doc


def _cell(mean: float | None, spread: float | None) -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {spread:.3f}" if spread is not None and math.isfinite(spread) else f"{mean:.3f}"


def mean_over_splits(docs: Sequence[dict], system: str, key: str) -> tuple[float, float]:
    """The mean of the splits' means of ``key`` and its standard error (sample std of the split means /
    sqrt(number of splits); NaN for one split); splits without the metric are left out."""
    means = np.array([d[system]["mean"][key] for d in docs if d[system]["mean"][key] is not None], float)
    se = float(np.std(means, ddof=1) / math.sqrt(means.size)) if means.size > 1 else math.nan
    return (float(np.mean(means)) if means.size else math.nan), se


def format_fairplay(docs: Sequence[dict], labels: Sequence[str]) -> str:
    """The FAIR-Play-style table: one JSON → mean ± SE over its clips; several (one per split) → each
    split's means, then the mean over splits ± the standard error of the split means."""
    columns = [(k, h) for k, h in FAIRPLAY_COLUMNS if all(k in d["model"]["mean"] for d in docs)]
    if not columns:
        raise BadInputError(None, "the results hold none of the FAIR-Play metrics (stft_distance, env_distance, ...)")
    rows: list[tuple[str, list[str]]] = []
    names = {"model": "model", "mono_baseline": "mono copy"}
    if len(docs) == 1:
        doc = docs[0]
        for system in SYSTEMS:
            rows.append((names[system], [_cell(doc[system]["mean"][k], doc[system]["se"].get(k)) for k, _ in columns]))
        title = f"FAIR-Play protocol (16 kHz, peak-normalised): mean ± standard error over {doc['num_clips']} clips"
    else:
        for label, doc in zip(labels, docs):
            rows.append((f"model, {label}", [_cell(doc["model"]["mean"][k], None) for k, _ in columns]))
        for system in SYSTEMS:
            cells = [_cell(*mean_over_splits(docs, system, k)) for k, _ in columns]
            rows.append((f"{names[system]}, mean of {len(docs)} splits", cells))
        clips = sum(d["num_clips"] for d in docs)
        title = (f"FAIR-Play protocol (16 kHz, peak-normalised): {len(docs)} splits, {clips} clips; "
                 "mean over splits ± standard error of the split means")
    width = max(len(r[0]) for r in rows) + 2
    head = f"{'':<{width}}" + "".join(f"{h:>18}" for _, h in columns)
    better = f"{'(better)':<{width}}" + "".join(
        f"{'higher' if k in HIGHER_IS_BETTER else 'lower':>18}" for k, _ in columns)
    return "\n".join([title, head, better, *(f"{n:<{width}}" + "".join(f"{c:>18}" for c in cells) for n, cells in rows)])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pred_dir", help="generated wavs: {name}.wav or {name}_binaural_generated.wav, any rate")
    p.add_argument("--gt_dir", help="ground-truth binaural wavs {name}.wav (2 ch, channel 0 = left), any rate")
    p.add_argument("--out", help="metrics JSON to write")
    p.add_argument("--results", nargs="+", default=None, metavar="JSON",
                   help="summarise these result JSONs (one per split) instead of evaluating")
    p.add_argument("--protocol", choices=PROTOCOLS, default="all",
                   help="all: every metric, mean ± std; fairplay: the FAIR-Play table (mean ± standard error)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="vocoder JSON config (mel parameters)")
    p.add_argument("--metrics", default=None, help=f"comma-separated subset of {','.join(METRIC_NAMES)}")
    p.add_argument("--pesq", action=argparse.BooleanOptionalAction, default=True,
                   help="compute wide-band PESQ (the slowest metric)")
    p.add_argument("--skip_bad", action=argparse.BooleanOptionalAction, default=False,
                   help="skip broken pairs (counted in one line) instead of stopping at the first")
    p.add_argument("--duration_tolerance", type=float, default=DURATION_TOLERANCE_S,
                   help="refuse a pair whose durations differ by more than this many seconds")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (1 = sequential)")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.results:
        if any((args.pred_dir, args.gt_dir, args.out)):
            raise BadInputError(None, "--results summarises existing JSONs: drop --pred_dir/--gt_dir/--out")
        docs = [read_result(path) for path in args.results]
        labels = [os.path.splitext(os.path.basename(path))[0] for path in args.results]
        print(format_fairplay(docs, labels) if args.protocol == "fairplay" or len(docs) > 1 else format_table(docs[0]))
        return {"results": docs}
    missing = [flag for flag in ("pred_dir", "gt_dir", "out") if getattr(args, flag) is None]
    if missing:
        raise BadInputError(None, f"missing {', '.join('--' + m for m in missing)} (or give --results JSON ...)")
    if args.duration_tolerance < 0:
        raise BadInputError(None, f"--duration_tolerance must be >= 0, got {args.duration_tolerance}")
    mel_cfg = MelConfig.from_json(args.config)
    metrics = parse_metrics(args.metrics, use_pesq=args.pesq)
    if not metrics:
        raise BadInputError(None, "no metric left to compute (--metrics pesq with --no-pesq)")
    doc = evaluate_dirs(
        args.pred_dir, args.gt_dir, mel_cfg=mel_cfg, metrics=metrics, skip_bad=args.skip_bad,
        duration_tolerance=args.duration_tolerance, workers=max(1, args.workers),
    )
    write_json(doc, args.out)
    if doc["skipped"]:
        first = doc["skipped"][0]
        print(f"skipped {len(doc['skipped'])} broken pair(s); first: {first['file']}: {first['problem']}",
              file=sys.stderr)
    print(format_fairplay([doc], ["this run"]) if args.protocol == "fairplay" else format_table(doc))
    print(f"wrote {args.out}")
    return doc


def cli() -> None:
    """The console script of this file (pyproject.toml [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
