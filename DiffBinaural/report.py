"""Write the report of a run: metrics of each system beside the mono-copy baseline, figures, and
with ``--html`` a listening page (``report.html``, :mod:`DiffBinaural.evaluation.listening`).

    python -m DiffBinaural.report --out_dir runs/demo --pred_dirs "mono renderer=WAVS:METRICS.json" \
        "vocoder=WAVS:METRICS.json" [...] --pred_mels MELDIR --gt_mels MELDIR \
        --gt_wavs D --mono_wavs D [--split test] [--clips 2] [--html]
    python -m DiffBinaural.report --out_dir OUT --html --pred_dirs "ours=DIR" "baseline=DIR" --gt_dir D \
        [--mono_dir D] [--frames_root D --boxes CSV]      # any evaluation run, e.g. FAIR-Play outputs

Inputs are the outputs of the user-facing scripts: per system a folder of wavs and its ``evaluate.py``
JSON, and the mel directories of ``test_realBinaural.py`` (``--mode test`` and ``--mode gt``). The
mono-copy column is the baseline of the first system's JSON (the same ground truth for all). Figures per
clip: GT vs predicted left / right / L−R mels (``mels_{name}.png``), and ILD and ITD over time for the
ground truth, every system and the mono copy (``cues_{name}.png``; the mono copy's cues are 0).
A system given without a metrics JSON (``--pred_dirs NAME=DIR``) is scored here on the page's clips
(FAIR-Play STFT / ENV and the cue errors, :func:`DiffBinaural.evaluation.metrics.compute_all`). Wavs may come
at any rate; without ``--mono_dir`` the mono is the ground truth's (L + R) / 2 (FAIR-Play).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

import numpy as np

from binaural_core.audio import LEFT, RIGHT, BadInputError, cli_main, mono_from_binaural, read_wav, resample
from binaural_core.extras import need
from binaural_core.mel import MelConfig, mel_numpy, read_json
from binaural_core.mel_dir import clip_paths, read_npy
from DiffBinaural.dataset import layout
from DiffBinaural.dataset.frames import count_frames, read_detections
from DiffBinaural.evaluation.listening import EXCERPT_SECONDS, LISTEN_DIR, ClipEntry, draw_still, write_page
from DiffBinaural.evaluation.metrics import compute_all, frame_times, ild_series, itd_series
from DiffBinaural.utils.validation import mel_figure

ROWS = ("stft_distance", "env_distance", "mag_distance", "phase_distance", "snr", "wav_l2", "mel_distance",
        "mrstft", "pesq", "ild_error_db", "itd_error_ms", "iacc_error")


def mel_rmse(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(L/R-mean RMSE, L−R RMSE) of (2, M, T) ln-mels."""
    lr = float(np.sqrt(((pred - gt) ** 2).mean(axis=(1, 2))).mean())
    diff = float(np.sqrt((((pred[LEFT] - pred[RIGHT]) - (gt[LEFT] - gt[RIGHT])) ** 2).mean()))
    return lr, diff


def static_oracle_diff(gt: np.ndarray) -> float:
    """L−R RMSE of the **static per-band oracle** on (2, M, T) ln-mels: a predictor that knows each band's
    median L−R over the clip (from the ground truth) and nothing of how it changes in time. A model below it
    follows the scene as it moves and as each source sounds; one above it has learned less than a fixed
    per-clip panning would give."""
    d = gt[LEFT] - gt[RIGHT]
    return float(np.sqrt(((d - np.median(d, axis=-1, keepdims=True)) ** 2).mean()))


def load_mels(mel_dir: str, split: str, name: str) -> np.ndarray:
    """(2, M, T) left/right ln-mels of one clip of a mel directory."""
    return np.stack([read_npy(path) for path in clip_paths(mel_dir, split, name)[:2]])


def cue_figure(name: str, gt: np.ndarray, systems: dict[str, np.ndarray], mono: np.ndarray, path: str) -> None:
    """ILD and ITD over time of the ground truth, each system's (2, S) output and the mono copy."""
    matplotlib = need("matplotlib", "figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min([gt.shape[1], mono.shape[-1]] + [w.shape[1] for w in systems.values()])
    curves = {"ground truth": gt[:, :n], **{k: w[:, :n] for k, w in systems.items()},
              "mono copy": np.stack([mono[:n], mono[:n]])}
    styles = {"ground truth": dict(color="black", linewidth=2), "mono copy": dict(color="tab:blue", linestyle="--")}
    fig, axes = plt.subplots(2, 1, figsize=(9, 5), sharex=True, constrained_layout=True)
    for ax, series, unit in ((axes[0], ild_series, "ILD (dB, + = left louder)"), (axes[1], itd_series, "ITD (ms)")):
        for label, wav in curves.items():
            values = series(wav)
            ax.plot(frame_times(len(values)), values, label=label, **styles.get(label, {}))
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[1].set_xlabel("time (s)")
    fig.suptitle(name, fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)


PAGE_METRICS = ("stft_distance", "env_distance", "ild_error_db", "itd_error_ms")  # per clip on the page


def parse_system(text: str) -> tuple[str, str, str | None]:
    """``"NAME=WAV_DIR:METRICS.json"`` or ``"NAME=WAV_DIR"`` -> (name, wav dir, metrics path or None)."""
    name, sep, rest = text.partition("=")
    wavs, sep2, metrics = rest.rpartition(":")
    if sep2 and not metrics.endswith(".json"):  # a ':' inside the folder name, no metrics file
        wavs, metrics = rest, ""
    elif not sep2:
        wavs, metrics = rest, ""
    if not (sep and name and wavs):
        raise BadInputError(None, f"a system must be NAME=WAV_DIR[:METRICS.json], got {text!r}")
    return name, wavs, metrics or None


def clip_wav(folder: str, name: str, channels: int) -> tuple[np.ndarray, int]:
    """``{folder}/{name}.wav`` (or ``{name}_binaural_generated.wav``) at its own rate: ((C, S), sr)."""
    path = os.path.join(folder, f"{name}.wav")
    if not os.path.isfile(path) and os.path.isfile(os.path.join(folder, f"{name}_binaural_generated.wav")):
        path = os.path.join(folder, f"{name}_binaural_generated.wav")
    return read_wav(path, channels=channels)


def at_mel_rate(wav: np.ndarray, sr: int) -> np.ndarray:
    return np.asarray(resample(np.asarray(wav, dtype=np.float32), sr, MelConfig().sampling_rate))


def clip_names(systems, docs, gt_dir: str) -> list[str]:
    """The first metrics JSON's clips, else the clips every system and the ground truth have."""
    for name, _, _ in systems:
        if docs.get(name):
            return sorted(docs[name]["model"]["per_clip"])
    stems = [{f[:-4].removesuffix("_binaural_generated") for f in os.listdir(d) if f.endswith(".wav")}
             for _, d, _ in systems]
    common = sorted(set.intersection(*stems) & {f[:-4] for f in os.listdir(gt_dir) if f.endswith(".wav")})
    if not common:
        raise BadInputError(gt_dir, "no clip is in every prediction folder and the ground truth")
    return common


def write_report(args) -> str:
    plt = need("matplotlib.pyplot", "report.py's figures")

    systems = [parse_system(t) for t in args.pred_dirs]
    if not systems:
        raise BadInputError(None, "give the systems with --system or --pred_dirs")
    docs = {name: read_json(metrics) if metrics else None for name, _, metrics in systems}
    names = clip_names(systems, docs, args.gt_wavs)
    cfg = MelConfig()
    os.makedirs(args.out_dir, exist_ok=True)
    monos: dict[str, np.ndarray] = {}  # each clip's mono, read and resampled once

    def mono_of(name: str) -> np.ndarray:
        if name not in monos:
            monos[name] = mono_signal(args, name)
        return monos[name]

    mel_rows = {"model": [], "mono": [], "oracle": []}
    if args.pred_mels and args.gt_mels:
        for name in names:
            gt = load_mels(args.gt_mels, args.split, name)
            pred = load_mels(args.pred_mels, args.split, name)
            mono = mel_numpy(mono_of(name), cfg)
            mel_rows["model"].append(mel_rmse(pred, gt))
            mel_rows["mono"].append(mel_rmse(np.stack([mono, mono]), gt))
            mel_rows["oracle"].append(static_oracle_diff(gt))
    shown = names[: max(args.clips, args.html_clips if args.html else 0)]
    # the detection CSV is read once for all stills (a dataset's CSV holds every clip's rows)
    boxes = read_detections(args.boxes) if args.html and args.frames_root and args.boxes else {}
    figures, entries = [], []
    for k, name in enumerate(shown):
        gt_wav, gt_sr = clip_wav(args.gt_wavs, name, 2)
        outs = {label: clip_wav(wavs, name, 2) for label, wavs, _ in systems}
        mono = mono_of(name)
        gt22 = at_mel_rate(gt_wav, gt_sr)
        out22 = {label: at_mel_rate(w, sr) for label, (w, sr) in outs.items()}
        if args.pred_mels and args.gt_mels:
            mel_item = {"name": name, "gt": load_mels(args.gt_mels, args.split, name),
                        "pred": load_mels(args.pred_mels, args.split, name)}
        else:  # the first system's output against the ground truth
            mel_item = {"name": f"{name}: ground truth vs {systems[0][0]}", "gt": mel_numpy(gt22, cfg),
                        "pred": mel_numpy(next(iter(out22.values())), cfg)}
        fig = mel_figure(mel_item)
        fig.savefig(os.path.join(args.out_dir, f"mels_{name}.png"), dpi=80)
        plt.close(fig)
        cue_figure(name, gt22, out22, mono, os.path.join(args.out_dir, f"cues_{name}.png"))
        clip_figures = [os.path.join(args.out_dir, f"{kind}_{name}.png") for kind in ("mels", "cues")]
        if k < args.clips:
            figures += [os.path.basename(f) for f in clip_figures]
        if args.html and k < args.html_clips:
            entries.append(page_entry(args, name, gt_wav, gt_sr, outs, mono, docs, clip_figures, boxes))
    lines = summary_lines(systems, docs, names, mel_rows)
    lines += [f"![{f}]({f})" for f in figures]
    path = os.path.join(args.out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    if mel_rows["model"]:
        mean = {k: np.mean(np.array(v), axis=0) for k, v in mel_rows.items()}
        summary = {"mel_distance": {"model": float(mean["model"][0]), "mono": float(mean["mono"][0])},
                   "diff_distance": {"model": float(mean["model"][1]), "mono": float(mean["mono"][1])}}
        with open(os.path.join(args.out_dir, "report_mels.json"), "w") as f:
            json.dump(summary, f, indent=2)
    print("\n".join(lines[: lines.index("## Figures")]))
    print(f"wrote {path}")
    if args.html:
        head, rows = summary_table(systems, docs)
        page = write_page(args.out_dir, title=args.title, clips=entries, summary_rows=rows, summary_head=head,
                          commands=[*args.command, "python -m DiffBinaural.report " + shlex.join(sys.argv[1:])],
                          excerpt_seconds=args.excerpt_seconds)
        print(f"wrote {page}")
    return path


def mono_signal(args, name: str) -> np.ndarray:
    """(S,) mono at the mel rate: ``--mono_wavs/{name}.wav`` (down-mixed if stereo), else the GT's (L + R) / 2."""
    if args.mono_wavs:
        wav, sr = read_wav(os.path.join(args.mono_wavs, f"{name}.wav"), channels=None)
        return at_mel_rate(wav.mean(axis=0), sr)
    gt, sr = clip_wav(args.gt_wavs, name, 2)
    return at_mel_rate(mono_from_binaural(gt), sr)


def page_entry(args, name, gt_wav, gt_sr, outs, mono, docs, figures, boxes) -> ClipEntry:
    """One clip of the listening page: players, still frame, figures and per-clip metrics; ``boxes``:
    :func:`read_detections` of ``--boxes`` (empty without it)."""
    players = [("ground truth", gt_wav, gt_sr), *[(label, w, sr) for label, (w, sr) in outs.items()],
               ("mono copy", mono, MelConfig().sampling_rate)]
    metrics = {}
    for label, (w, sr) in outs.items():
        per_clip = (docs.get(label) or {}).get("model", {}).get("per_clip", {}).get(name)
        metrics[label] = per_clip or compute_all(w, gt_wav, sr=sr, gt_sr=gt_sr, metrics=PAGE_METRICS)
    first = next((d for d in docs.values() if d), None)
    base = first["mono_baseline"]["per_clip"].get(name) if first else None
    metrics["mono copy"] = base or compute_all(np.stack([mono, mono]), gt_wav, sr=MelConfig().sampling_rate,
                                               gt_sr=gt_sr, metrics=PAGE_METRICS)
    metrics = {label: {k: m.get(k) for k in PAGE_METRICS} for label, m in metrics.items()}
    still = None
    if args.frames_root:
        still = still_frame(args.frames_root, name, boxes.get(name, np.zeros((0, 7))) if args.boxes else None,
                            os.path.join(args.out_dir, LISTEN_DIR, f"frame_{name}.png"),
                            seconds=min(args.excerpt_seconds, gt_wav.shape[1] / gt_sr) / 2)
    return ClipEntry(name, players, figures=figures, still=still, metrics=metrics)


def still_frame(frames_root: str, name: str, detections: np.ndarray | None, out_path: str, *,
                seconds: float) -> str | None:
    """The frame shown at ``seconds`` into the clip, with that frame's boxes drawn (``detections``: the
    clip's (k, 7) rows of :func:`read_detections`; None: no boxes file)."""
    folder = os.path.join(frames_root, name)
    if not os.path.isdir(folder) and os.path.isdir(folder + ".mp4"):
        folder += ".mp4"  # FAIR-Play: frames/{id}.mp4/
    if not os.path.isdir(folder):
        return None
    count, ext = count_frames(folder)
    index = min(max(layout.frame_index_at(seconds), 1), count)
    boxes = None
    if detections is not None:
        boxes = detections[detections[:, 1] == index][:, 2:6]
    return draw_still(layout.frame_path(folder, index, ext), boxes, out_path)


def summary_table(systems, docs) -> tuple[list[str], list[list[str]]]:
    """The page's top table: mean of each metric per system with a JSON, and the mono copy."""
    with_docs = [(name, docs[name]) for name, _, _ in systems if docs.get(name)]
    if not with_docs:
        return [], []
    head = ["metric", *[n for n, _ in with_docs], "mono copy"]
    rows = []
    for m in ROWS:
        if m in with_docs[0][1]["model"]["mean"]:
            cells = [_num(d["model"]["mean"].get(m)) for _, d in with_docs]
            rows.append([m, *cells, _num(with_docs[0][1]["mono_baseline"]["mean"].get(m))])
    return head, rows


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def summary_lines(systems, docs, names, mel_rows) -> list[str]:
    """report.md: the waveform metrics table and, with mel dirs, Stage 1's mel distances."""
    head, rows = summary_table(systems, docs)
    lines = ["# DiffBinaural report", "",
             f"{len(names)} clip(s). Lower is better except `snr` and `pesq`.", ""]
    if rows:
        lines += ["## Waveform metrics (`evaluate.py`)", "",
                  "| " + " | ".join(head[:-1]) + " | mono-copy baseline |", "|---" * len(head) + "|"]
        lines += ["| `" + r[0] + "` | " + " | ".join(r[1:]) + " |" for r in rows]
    if mel_rows["model"]:
        mean = {k: np.mean(np.array(v), axis=0) for k, v in mel_rows.items()}
        lines += [
            "", "## Stage 1 mel distances (RMSE of ln-mels, whole clips)", "",
            "| | model | mono-copy baseline | ratio |", "|---|---|---|---|",
            f"| L/R mel distance | {mean['model'][0]:.4f} | {mean['mono'][0]:.4f} | {mean['model'][0] / mean['mono'][0]:.2f} |",
            f"| L−R mel distance | {mean['model'][1]:.4f} | {mean['mono'][1]:.4f} | {mean['model'][1] / mean['mono'][1]:.2f} |",
            f"| L−R, static per-band oracle (each clip's median L−R per band) | {float(mean['oracle']):.4f} | "
            f"{mean['mono'][1]:.4f} | {float(mean['oracle']) / mean['mono'][1]:.2f} |",
        ]
    return lines + ["", "## Figures", ""]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--system", dest="pred_dirs", nargs="+", action="extend", help=argparse.SUPPRESS)  # old name
    p.add_argument("--pred_dirs", dest="pred_dirs", nargs="+", action="extend", default=[],
                   metavar="NAME=DIR[:METRICS.json]",
                   help="the systems, one column each (the first JSON gives the mono-copy column; without a JSON "
                        "the page scores them); may be repeated")
    p.add_argument("--pred_mels", default=None, help="mel dir of test_realBinaural.py --mode test")
    p.add_argument("--gt_mels", default=None, help="mel dir of test_realBinaural.py --mode gt")
    p.add_argument("--gt_wavs", "--gt_dir", dest="gt_wavs", required=True, help="ground-truth wavs, any rate")
    p.add_argument("--mono_wavs", "--mono_dir", dest="mono_wavs", default=None,
                   help="the mono inputs (default: the ground truth's (L+R)/2)")
    p.add_argument("--frames_root", default=None, help="frames/{name}/ (or FAIR-Play's frames/{id}.mp4/): a still per clip")
    p.add_argument("--boxes", default=None, help="detection CSV (name,frame,x1,y1,x2,y2,score) drawn on the stills")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=2, help="clips drawn in report.md")
    p.add_argument("--html", action=argparse.BooleanOptionalAction, default=False,
                   help="also write report.html, the listening page")
    p.add_argument("--html_clips", type=int, default=8, help="clips on the listening page")
    p.add_argument("--excerpt_seconds", type=float, default=EXCERPT_SECONDS, help="longest excerpt per player")
    p.add_argument("--title", default="DiffBinaural: listen to the results")
    p.add_argument("--command", action="append", default=[], help="a command that produced the run (shown on the page)")
    return p


def main() -> None:
    write_report(build_parser().parse_args())


def cli() -> None:
    """The console script of this file (pyproject.toml [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
