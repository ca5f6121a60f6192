"""The listening page: hear each system beside the ground truth and the mono copy, in any browser.

One self-contained ``report.html`` (no network, no server): the audio excerpts and images sit in
``{out_dir}/listen/`` next to it and are referenced by relative paths. Per clip: a still frame of the
video with the detection boxes drawn, one player per signal, the figures, and the clip's metrics. At
the top: the metrics table, the machine, and the commands that produced it.

**Loudness matching.** Every player's excerpt is divided by its own peak over both channels, exactly
the normalisation the metrics use (``DiffBinaural.evaluation.metrics.peak_normalize``), then scaled by the
common factor :data:`PLAYER_PEAK` (so none clips after 16-bit rounding): every player of a clip has the
same peak, and level differences between systems are not what one hears.

**Excerpts.** A clip longer than ``excerpt_seconds`` (default :data:`EXCERPT_SECONDS`) is cut to its
first ``excerpt_seconds``: the same span for every player of the clip (the page says so).

**Self-check.** The page carries a small script that, once loaded, records for every ``<audio>`` its
``readyState``, ``duration`` and any error, and for every ``<img>`` whether it decoded, as JSON in
``<pre id="selfcheck">`` (the test reads it from headless Chromium).
"""

from __future__ import annotations

import html
import os
import platform
from dataclasses import dataclass, field

import numpy as np

from binaural_core.audio import resample, save_wav
from binaural_core.extras import need
from binaural_core.runtime import machine

EXCERPT_SECONDS = 10.0
PLAYER_PEAK = 0.95  # every excerpt's peak after normalisation (headroom for 16-bit rounding)
LISTEN_DIR = "listen"
HEADPHONES = ("Listen on headphones: binaural cues (the level and time differences between the ears) "
              "only reach the right ear and the left ear separately through headphones.")


@dataclass
class ClipEntry:
    """One clip of the page: ``players`` are (label, (2, S) or (S,) waveform, rate); ``figures`` and
    ``still`` are image files already written under ``{out_dir}/listen/``; ``metrics`` maps a player's
    label to ``{metric: value}``."""

    name: str
    players: list[tuple[str, np.ndarray, int]]
    figures: list[str] = field(default_factory=list)
    still: str | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


def write_excerpt(wav: np.ndarray, sr: int, path: str, *, seconds: float = EXCERPT_SECONDS) -> float:
    """Write the first ``seconds`` of ``wav`` ((S,) or (C, S)) as a 16-bit stereo wav at ``sr``, divided by
    its own peak and scaled to :data:`PLAYER_PEAK`; returns the duration written in seconds."""
    x = np.asarray(wav, dtype=np.float64)
    x = np.stack([x, x]) if x.ndim == 1 else x
    x = x[:, : int(round(seconds * sr))]
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0:
        x = x / peak * PLAYER_PEAK
    save_wav(path, x, sr, subtype="PCM_16")
    return x.shape[1] / sr


def draw_still(frame_path: str, boxes: np.ndarray | None, out_path: str, *, max_side: int = 480) -> str:
    """A video frame with its detection boxes (pixels x1, y1, x2, y2) drawn, saved as PNG; returns ``out_path``."""
    from PIL import Image, ImageDraw

    from DiffBinaural.dataset.frames import to_rgb

    with Image.open(frame_path) as im:
        rgb = to_rgb(im).copy()
    draw = ImageDraw.Draw(rgb)
    width = max(2, round(max(rgb.size) / 200))
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes if boxes is not None else np.zeros((0, 4)))):
        color = ("#ff3b30", "#34c759", "#007aff", "#ffcc00")[k % 4]
        draw.rectangle((float(x1), float(y1), float(x2), float(y2)), outline=color, width=width)
    scale = min(1.0, max_side / max(rgb.size))
    if scale < 1.0:
        rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)))
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    rgb.save(out_path)
    return out_path


def software() -> str:
    """torch and Python versions, for the page's machine line (:func:`binaural_core.runtime.machine`)."""
    import torch

    return f"torch {torch.__version__}, Python {platform.python_version()}"


def _table(rows: list[list[str]], head: list[str]) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join(out + ["</table>"])


def _fmt(v) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.3f}"


SELF_CHECK = """<script>
// Records what loaded: every <audio> (readyState, duration, error) and <img> (decoded size) as JSON.
window.addEventListener("load", () => {
  const audios = [...document.querySelectorAll("audio")];
  const settle = a => new Promise(done => {
    if (a.readyState >= 1 || a.error) return done();
    a.addEventListener("loadedmetadata", done, {once: true});
    a.addEventListener("error", done, {once: true});
    a.load();
  });
  Promise.all(audios.map(settle)).then(() => {
    const report = {
      audio: audios.map(a => ({src: a.getAttribute("src"), readyState: a.readyState, duration: a.duration,
                               error: a.error ? a.error.code : null, expected: Number(a.dataset.seconds)})),
      images: [...document.images].map(i => ({src: i.getAttribute("src"), complete: i.complete,
                                              width: i.naturalWidth}))};
    document.getElementById("selfcheck").textContent = JSON.stringify(report);
  });
});
</script>"""


def write_page(out_dir: str, *, title: str, clips: list[ClipEntry], summary_rows: list[list[str]],
               summary_head: list[str], commands: list[str], notes: list[str] = (),
               excerpt_seconds: float = EXCERPT_SECONDS) -> str:
    """Write ``{out_dir}/report.html`` and the excerpts under ``{out_dir}/listen/``; returns the page's path."""
    listen = os.path.join(out_dir, LISTEN_DIR)
    os.makedirs(listen, exist_ok=True)
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="note">{html.escape(HEADPHONES)}</p>',
            f"<p>Each player is loudness-matched (divided by its own peak, as the metrics are) and plays at "
            f"most the first {excerpt_seconds:g} s of the clip.</p>"]
    body += [f"<p>{html.escape(n)}</p>" for n in notes]
    if summary_rows:
        body += ["<h2>Metrics</h2>", _table(summary_rows, summary_head)]
    body += ["<h2>Machine</h2>", f"<p>{html.escape(machine() + '; ' + software())}</p>", "<h2>Commands</h2>",
             "<pre>" + html.escape("\n".join(commands)) + "</pre>"]
    for clip in clips:
        body.append(f'<section><h2>{html.escape(clip.name)}</h2><div class="row">')
        if clip.still:
            body.append(f'<img class="still" src="{html.escape(os.path.relpath(clip.still, out_dir))}" '
                        f'alt="video frame with boxes">')
        body.append('<div class="players">')
        for k, (label, wav, sr) in enumerate(clip.players):
            path = os.path.join(listen, f"{clip.name}_{k}.wav")
            seconds = write_excerpt(wav, sr, path, seconds=excerpt_seconds)
            body.append(f'<div class="player"><span>{html.escape(label)}</span>'
                        f'<audio controls preload="metadata" src="{LISTEN_DIR}/{html.escape(os.path.basename(path))}" '
                        f'data-seconds="{seconds:.4f}"></audio></div>')
        body.append("</div></div>")
        if clip.metrics:
            keys = list(next(iter(clip.metrics.values())))
            body.append(_table([[label] + [_fmt(m.get(k)) for k in keys] for label, m in clip.metrics.items()],
                               ["", *keys]))
        body += [f'<img class="figure" src="{html.escape(os.path.relpath(f, out_dir))}" alt="figure">'
                 for f in clip.figures]
        body.append("</section>")
    page = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
            "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
            ".row{display:flex;gap:1em;align-items:flex-start}.still{max-width:420px}.player{display:flex;gap:.5em;"
            "align-items:center;margin:.2em 0}.player span{width:16em}.figure{max-width:100%}"
            ".note{background:#fff3cd;padding:.5em}section{border-top:1px solid #ddd;margin-top:1em}"
            "pre{white-space:pre-wrap}</style></head><body>",
            *body, '<pre id="selfcheck"></pre>', SELF_CHECK, "</body></html>"]
    path = os.path.join(out_dir, "report.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(page) + "\n")
    return path


def cue_only_figure(name: str, wav: np.ndarray, sr: int, path: str) -> str:
    """ILD and ITD over time of one (2, S) signal (e.g. binauralize's output), at the metrics' rate."""
    matplotlib = need("matplotlib", "figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from DiffBinaural.evaluation.metrics import SR, frame_times, ild_series, itd_series

    x = np.asarray(resample(np.asarray(wav, dtype=np.float32), sr, SR), dtype=np.float64)
    fig, axes = plt.subplots(2, 1, figsize=(9, 4), sharex=True, constrained_layout=True)
    for ax, series, unit in ((axes[0], ild_series, "ILD (dB, + = left louder)"), (axes[1], itd_series, "ITD (ms)")):
        values = series(x)
        ax.plot(frame_times(len(values)), values, color="black")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[1].set_xlabel("time (s)")
    fig.suptitle(name, fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
