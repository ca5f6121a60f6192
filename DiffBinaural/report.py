"""Write the demo report: metrics of each renderer beside the mono-copy baseline, and figures.

    python -m DiffBinaural.report --out_dir runs/demo --system "mono renderer=WAVS:METRICS.json" \
        --system "vocoder=WAVS:METRICS.json" [--system ...] --pred_mels MELDIR --gt_mels MELDIR \
        --gt_wavs D --mono_wavs D [--split test] [--clips 2]

Inputs are the outputs of the user-facing scripts: per system a folder of wavs and its ``evaluate.py``
JSON, and the mel directories of ``test_realBinaural.py`` (``--mode test`` and ``--mode gt``). The
mono-copy column is the baseline of the first system's JSON (the same ground truth for all). Figures per
clip: GT vs predicted left / right / L−R mels (``mels_{name}.png``), and ILD and ITD over time for the
ground truth, every system and the mono copy (``cues_{name}.png``; the mono copy's cues are 0).
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from binaural_core.audio import LEFT, RIGHT, BadInputError, cli_main, load_wav
from binaural_core.mel import MelConfig, mel_numpy, read_json
from binaural_core.mel_dir import clip_paths, read_npy
from DiffBinaural.utils.metrics import frame_times, ild_series, itd_series
from DiffBinaural.utils.validation import mel_figure

ROWS = ("stft_distance", "env_distance", "mag_distance", "phase_distance", "snr", "wav_l2", "mel_distance",
        "mrstft", "pesq", "ild_error_db", "itd_error_ms", "iacc_error")


def mel_rmse(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(L/R-mean RMSE, L−R RMSE) of (2, M, T) ln-mels."""
    lr = float(np.sqrt(((pred - gt) ** 2).mean(axis=(1, 2))).mean())
    diff = float(np.sqrt((((pred[LEFT] - pred[RIGHT]) - (gt[LEFT] - gt[RIGHT])) ** 2).mean()))
    return lr, diff


def load_mels(mel_dir: str, split: str, name: str) -> np.ndarray:
    """(2, M, T) left/right ln-mels of one clip of a mel directory."""
    return np.stack([read_npy(path) for path in clip_paths(mel_dir, split, name)[:2]])


def cue_figure(name: str, gt: np.ndarray, systems: dict[str, np.ndarray], mono: np.ndarray, path: str) -> None:
    """ILD and ITD over time of the ground truth, each system's (2, S) output and the mono copy."""
    import matplotlib

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


def parse_system(text: str) -> tuple[str, str, str]:
    """``"NAME=WAV_DIR:METRICS.json"`` -> (name, wav dir, metrics path)."""
    name, sep, rest = text.partition("=")
    wavs, sep2, metrics = rest.rpartition(":")
    if not (sep and sep2 and name and wavs and metrics):
        raise BadInputError(None, f"--system must be NAME=WAV_DIR:METRICS.json, got {text!r}")
    return name, wavs, metrics


def write_report(args) -> str:
    import matplotlib.pyplot as plt

    systems = [parse_system(t) for t in args.system]
    docs = {name: read_json(metrics) for name, _, metrics in systems}
    first = docs[systems[0][0]]
    names = sorted(first["model"]["per_clip"])
    mel_rows = {"model": [], "mono": []}
    cfg = MelConfig()
    for name in names:
        gt = load_mels(args.gt_mels, args.split, name)
        pred = load_mels(args.pred_mels, args.split, name)
        mono = mel_numpy(load_wav(os.path.join(args.mono_wavs, f"{name}.wav"), sampling_rate=cfg.sampling_rate,
                                  channels=1), cfg)
        mel_rows["model"].append(mel_rmse(pred, gt))
        mel_rows["mono"].append(mel_rmse(np.stack([mono, mono]), gt))
    os.makedirs(args.out_dir, exist_ok=True)
    figures = []
    for name in names[: args.clips]:
        gt, pred = load_mels(args.gt_mels, args.split, name), load_mels(args.pred_mels, args.split, name)
        fig = mel_figure({"name": name, "gt": gt, "pred": pred})
        fig.savefig(os.path.join(args.out_dir, f"mels_{name}.png"), dpi=80)
        plt.close(fig)
        sr = cfg.sampling_rate
        gt_wav = load_wav(os.path.join(args.gt_wavs, f"{name}.wav"), sampling_rate=sr, channels=2)
        outs = {label: load_wav(os.path.join(wavs, f"{name}.wav"), sampling_rate=sr, channels=2, resample_ok=True)
                for label, wavs, _ in systems}
        mono_wav = load_wav(os.path.join(args.mono_wavs, f"{name}.wav"), sampling_rate=sr, channels=1)
        cue_figure(name, gt_wav, outs, mono_wav, os.path.join(args.out_dir, f"cues_{name}.png"))
        figures += [f"mels_{name}.png", f"cues_{name}.png"]

    def cell(doc, key, metric):
        v = doc[key]["mean"].get(metric)
        return "n/a" if v is None else f"{v:.4f}"

    labels = [name for name, _, _ in systems]
    lines = [
        "# DiffBinaural demo report", "",
        f"{len(names)} test clip(s) of the synthetic dataset. Lower is better except `snr` and `pesq`.", "",
        "## Waveform metrics (`evaluate.py`)", "",
        "| metric | " + " | ".join(labels) + " | mono-copy baseline |", "|---" * (len(labels) + 2) + "|",
    ]
    for m in ROWS:
        lines.append(f"| `{m}` | " + " | ".join(cell(docs[k], "model", m) for k in labels)
                     + f" | {cell(first, 'mono_baseline', m)} |")
    mean = {k: np.mean(np.array(v), axis=0) for k, v in mel_rows.items()}
    lines += [
        "", "## Stage 1 mel distances (RMSE of ln-mels, whole clips)", "",
        "| | model | mono-copy baseline | ratio |", "|---|---|---|---|",
        f"| L/R mel distance | {mean['model'][0]:.4f} | {mean['mono'][0]:.4f} | {mean['model'][0] / mean['mono'][0]:.2f} |",
        f"| L−R mel distance | {mean['model'][1]:.4f} | {mean['mono'][1]:.4f} | {mean['model'][1] / mean['mono'][1]:.2f} |",
        "", "## Figures", "",
    ]
    lines += [f"![{f}]({f})" for f in figures]
    path = os.path.join(args.out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    summary = {"mel_distance": dict(zip(("model", "mono"), (float(mean["model"][0]), float(mean["mono"][0])))),
               "diff_distance": dict(zip(("model", "mono"), (float(mean["model"][1]), float(mean["mono"][1]))))}
    with open(os.path.join(args.out_dir, "report_mels.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print("\n".join(lines[: lines.index("## Figures")]))
    print(f"wrote {path}")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--system", action="append", required=True,
                   help="NAME=WAV_DIR:METRICS.json (repeat: one column each; the first gives the mono-copy column)")
    p.add_argument("--pred_mels", required=True, help="mel dir of test_realBinaural.py --mode test")
    p.add_argument("--gt_mels", required=True, help="mel dir of test_realBinaural.py --mode gt")
    p.add_argument("--gt_wavs", required=True)
    p.add_argument("--mono_wavs", required=True, help="the mono inputs (the baseline's mel)")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=2, help="clips to draw")
    write_report(p.parse_args())


if __name__ == "__main__":
    cli_main(main)
