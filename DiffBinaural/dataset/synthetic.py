"""Synthetic binaural dataset: the project's embedded default data (demo, tests, benchmarks).

Each clip holds 1–3 synthetic instruments of distinct types (harmonic tone, plucked string, noise
bursts, chirps, formant voice), some moving. Every source is drawn on the video frames as a coloured
shape at the image column its azimuth projects to (pinhole camera, :mod:`.spatial`) and rendered to
binaural audio with the spherical-head model of :mod:`.spatial` (Woodworth ITD, Brown–Duda head
shadow), plus an optional light diffuse room tail. So the only way to know which ear is louder and
earlier for which timbre is to look where the shape of that timbre sits in the frame.

Output layouts are exactly those of ``DiffBinaural.dataset.layout`` (``--format realbinaural`` or
``fairplay``), plus ``{out}/synthetic_meta.json``, the ground truth::

    {"version": 1, "format", "sample_rate" (of the written wavs), the other SynthConfig fields
     ("seed", "seconds", "fps", "image_size": [W, H], "fov_deg", "reverb", "mono", ...),
     "splits": {split: [names]},
     "clips": {name: {"split", "num_samples", "num_frames", "peak", "reverb_wet",
                       "sources": [{"type", "shape", "color": [r, g, b], "distance_m", "gain",
                                    "motion": {"kind": "static"|"linear"|"sine", ...degrees...},
                                    "azimuth_deg": [per frame], "itd_ms": [per frame],
                                    "boxes": [[x1, y1, x2, y2] per frame]}]}}}

Per-frame lists are indexed by ``frame - 1`` (frame ``i`` shows time ``(i - 1) / fps``). FAIR-Play wavs
are rendered natively at ``--fairplay_sr`` (default 16000 Hz, like FAIR-Play's ``binaural16k``) so the
loaders' resampling to 22050 Hz is exercised. Elevation is not rendered: ``y`` in the image is free.

    python -m DiffBinaural.dataset.synthetic --out data/synth --format fairplay --num_clips 100 --seconds 4
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields

import numpy as np
from PIL import Image, ImageDraw

from binaural_core.audio import BadInputError, cli_main, load_wav, mono_from_binaural, save_wav
from binaural_core.extras import need
from DiffBinaural.dataset import heads, layout, pictures, scenes, spatial
from DiffBinaural.dataset.instruments import synthesize

SAMPLE_RATE = 22050
FAIRPLAY_SR = 16000
META_FILE = "synthetic_meta.json"
FORMATS = ("realbinaural", "fairplay")
SOURCE_TYPES = scenes.SYNTH_LOOKS  # type -> (shape, RGB) of the synthetic sources
FAKE_FAIRPLAY_ROOT = "/private/home/someone/datasets/BINAURAL_MUSIC_ROOM/binaural16k"


# --- clip specification -------------------------------------------------------------------------


def azimuth_at(motion: dict, t: np.ndarray) -> np.ndarray:
    """Azimuth in radians at times ``t`` (seconds) of a motion spec (angles in degrees)."""
    t = np.asarray(t, dtype=np.float64)
    if motion["kind"] == "static":
        deg = np.full_like(t, motion["azimuth_deg"])
    elif motion["kind"] == "linear":
        u = np.clip(t / motion["duration_s"], 0.0, 1.0)
        deg = motion["start_deg"] + (motion["end_deg"] - motion["start_deg"]) * u
    elif motion["kind"] == "sine":
        deg = motion["centre_deg"] + motion["amplitude_deg"] * np.sin(
            2 * np.pi * motion["freq_hz"] * t + motion["phase_rad"]
        )
    else:
        raise BadInputError(None, f"unknown motion kind {motion['kind']!r}")
    return np.deg2rad(deg)


def random_clip_spec(rng: np.random.Generator, cfg: SynthConfig) -> list[dict]:
    """Random sources of one clip: distinct types, azimuths that keep every whole shape inside the frame.

    The last ``silent`` ones (``--max_silent``) are only seen: drawn and detected, never heard."""
    width, height = cfg.image_size
    count = int(rng.integers(cfg.min_sources, cfg.max_sources + 1))
    silent = int(rng.integers(0, cfg.max_silent + 1)) if cfg.max_silent else 0  # no draw: same clips as before
    types, sources, taken = scenes.looks(cfg.sources), [], []
    for kind in rng.choice(sorted(types), size=count + silent, replace=False):
        distance = float(rng.uniform(1.0, 3.0))
        r = pictures.source_radius_px(distance, height)
        lim = math.degrees(float(spatial.x_to_azimuth(width - 2 - r, width, cfg.fov_deg)))  # |az| range
        u = rng.random()  # < moving_prob / 2: linear sweep; < moving_prob: oscillation; else static
        if u < cfg.moving_prob / 2:
            start, end = rng.uniform(-lim, lim, size=2)
            motion = dict(kind="linear", start_deg=float(start), end_deg=float(end), duration_s=cfg.seconds)
        elif u < cfg.moving_prob:
            amp = float(rng.uniform(0.2, 0.6) * lim)
            centre, freq, phase = (
                rng.uniform(-lim + amp, lim - amp),
                rng.uniform(0.1, 0.4),
                rng.uniform(0, 2 * np.pi),
            )
            motion = dict(kind="sine", centre_deg=centre, amplitude_deg=amp, freq_hz=freq, phase_rad=phase)
        else:
            for _ in range(20):  # keep static sources apart when possible
                az = float(rng.uniform(-lim, lim))
                if all(abs(az - other) > 15.0 for other in taken):
                    break
            taken.append(az)
            motion = dict(kind="static", azimuth_deg=az)
        shape, color = types[str(kind)]
        gain, y = float(rng.uniform(0.6, 1.0) / distance), int(rng.integers(r + 1, height - 1 - r))
        motion = {key: (float(v) if isinstance(v, np.floating) else v) for key, v in motion.items()}
        sources.append(
            dict(
                type=str(kind), shape=shape, color=list(color), distance_m=distance, gain=gain, motion=motion
            )
        )
        sources[-1].update(radius_px=r, y=y)  # drawing only
        if len(sources) > count:
            sources[-1]["silent"] = True
    return sources


# --- options ------------------------------------------------------------------------------------


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise BadInputError(None, message)


@dataclass
class SynthConfig:
    """What a dataset is generated from (also saved in ``synthetic_meta.json``); checked on creation."""

    fmt: str = "realbinaural"
    num_clips: int = 8
    seconds: float = 4.0
    seed: int = 0
    image_size: tuple[int, int] = (256, 144)  # (W, H)
    fps: float = layout.FPS
    fov_deg: float = spatial.DEFAULT_FOV_DEG
    reverb: bool = True
    mono: bool = True  # RealBinaural only
    fairplay_sr: int = FAIRPLAY_SR  # FAIR-Play only
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    min_sources: int = 1
    max_sources: int = 3
    moving_prob: float = 0.5
    frame_ext: str | None = None  # .jpg / .jpeg / .png; None: each layout's own (.jpg RealBinaural, .png FAIR-Play)
    # the realistic mode (DiffBinaural.dataset.scenes); the defaults are the original mode
    sources: str = "synthetic"  # synthetic | soundfont
    room: str = "diffuse"  # diffuse (the light tail, --reverb) | image_source
    hrtf: tuple[str, ...] = (heads.SPHERICAL,)  # "spherical" or SOFA files (one drawn per clip)
    soundfont: str | None = None  # a General-MIDI .sf2; None: the one installed (fluid-soundfont-gm)
    rt60: tuple[float, float] = (0.3, 0.9)  # image_source rooms: RT60 range in seconds
    tail_seed: int = 0  # image_source rooms: sets that differ only here differ only in the late tail's noise
    max_silent: int = 0  # objects in view that do not sound: 0 .. max_silent per clip

    def __post_init__(self) -> None:
        self.image_size = tuple(int(v) for v in self.image_size)
        self.rt60 = tuple(float(v) for v in self.rt60)
        self.hrtf = tuple(v if v == heads.SPHERICAL else os.path.abspath(v) for v in self.hrtf)
        self.split_fractions = tuple(float(v) for v in self.split_fractions)
        self.seconds, self.fps, self.fov_deg = float(self.seconds), float(self.fps), float(self.fov_deg)
        scenes.check(self)
        n_types, (w_h, fr), sr = len(scenes.looks(self.sources)), (self.image_size, self.split_fractions), self.fairplay_sr
        lo, hi = self.min_sources, self.max_sources
        _require(self.fmt in FORMATS, f"--format must be one of {', '.join(FORMATS)}, got {self.fmt!r}")
        _require(self.num_clips >= 1, f"--num_clips must be >= 1, got {self.num_clips}")
        _require(self.seconds >= 0.5, f"--seconds must be >= 0.5, got {self.seconds}")
        _require(len(w_h) == 2 and min(w_h) >= 48, f"--image_size must be W H, both >= 48, got {w_h}")
        _require(self.fps > 0, f"--fps must be > 0, got {self.fps}")
        _require(0 < self.fov_deg < 170, f"--fov_deg must be in (0, 170), got {self.fov_deg}")
        _require(4000 <= sr <= 96000, f"--fairplay_sr must be in [4000, 96000], got {sr}")
        _require(
            len(fr) == 3 and min(fr) >= 0 and sum(fr) > 0,
            f"--split_fractions must be 3 numbers >= 0, got {fr}",
        )
        _require(
            1 <= lo <= hi <= n_types, f"need 1 <= --min_sources <= --max_sources <= {n_types}, got {lo}, {hi}"
        )
        _require(0 <= self.max_silent <= n_types - hi,
                 f"need 0 <= --max_silent <= {n_types - hi} ({n_types} {self.sources} types, --max_sources {hi})")
        _require(0.0 <= self.moving_prob <= 1.0, f"--moving_prob must be in [0, 1], got {self.moving_prob}")
        if self.frame_ext is None:
            self.frame_ext = ".jpg" if self.fmt == "realbinaural" else ".png"
        _require(self.frame_ext in layout.FRAME_EXTS,
                 f"--frame_ext must be one of {', '.join(layout.FRAME_EXTS)}, got {self.frame_ext!r}")

    @property
    def sample_rate(self) -> int:
        """Rate of the written wavs: 22050 Hz (RealBinaural) or ``fairplay_sr``."""
        return SAMPLE_RATE if self.fmt == "realbinaural" else int(self.fairplay_sr)

    def clip_name(self, index: int) -> str:
        return f"synth_{index + 1:06d}" if self.fmt == "realbinaural" else f"{index + 1:06d}"


# --- one clip -----------------------------------------------------------------------------------


def render_clip(
    sources: list[dict], rng: np.random.Generator, *, num_samples: int, sr: int, reverb: bool
) -> tuple[np.ndarray, float]:
    """The original mode's mix (synthetic sources, spherical head, the light tail; silent sources are
    only drawn): returns ``((2, num_samples) float64 binaural, reverb wet level)``."""
    t = np.arange(num_samples) / sr
    mix, dry = np.zeros((2, num_samples)), np.zeros(num_samples)
    for src in (s for s in sources if not s.get("silent")):
        x = src["gain"] * synthesize(src["type"], rng, num_samples, sr)
        az = azimuth_at(src["motion"], t)
        mix += spatial.spatialize(x, az if src["motion"]["kind"] != "static" else float(az[0]), sr)
        dry += x
    wet = float(rng.uniform(0.05, 0.2)) if reverb else 0.0
    if reverb:
        mix = spatial.add_reverb(mix, dry, sr, rng, wet=wet, rt60=float(rng.uniform(0.15, 0.5)))
    return mix, wet


def _make_clip(cfg: SynthConfig, out: str, index: int) -> tuple[list[list], dict]:
    """Generate and write clip ``index`` (0-based); returns its detection rows and its metadata."""
    rng = np.random.default_rng([cfg.seed, index])
    name, (width, height), sr = cfg.clip_name(index), cfg.image_size, cfg.sample_rate
    sources = random_clip_spec(rng, cfg)
    n = int(round(cfg.seconds * sr))
    num_frames = math.ceil(n / sr * cfg.fps - 1e-9)
    times = np.array([layout.frame_time(i, cfg.fps) for i in range(1, num_frames + 1)])
    if scenes.is_original(cfg):
        binaural, wet = render_clip(sources, rng, num_samples=n, sr=sr, reverb=cfg.reverb)
        clip_meta, extra, score = {"reverb_wet": round(wet, 6)}, [{} for _ in sources], None
    else:
        binaural, clip_meta, extra, score = scenes.render_scene(sources, rng, cfg, num_samples=n, sr=sr,
                                                                frame_times=times)
    peak = float(rng.uniform(0.5, 0.9))
    binaural *= peak / (np.abs(binaural).max() + 1e-12)

    rb = cfg.fmt == "realbinaural"
    paths = layout.rb_paths(out, name) if rb else layout.fp_paths(out, name)
    save_wav(paths["binaural"], binaural, sr)
    if rb and cfg.mono:  # the down-mix of what was actually written (16-bit)
        written = load_wav(paths["binaural"], sampling_rate=sr, channels=2)
        save_wav(paths["mono"], mono_from_binaural(written), sr)
    if score is not None:
        scenes.write_score(out, name, score)

    background = Image.fromarray(pictures.background(rng, width, height))
    azimuths = [azimuth_at(src["motion"], times) for src in sources]  # (F,) each
    order = np.argsort([-s["distance_m"] for s in sources])  # far first: near shapes occlude
    rows, boxes = [], [[] for _ in sources]
    os.makedirs(paths["frames"], exist_ok=True)
    for f in range(num_frames):
        frame = background.copy()
        draw = ImageDraw.Draw(frame)
        for k in order:
            box = pictures.source_box(sources[k], float(azimuths[k][f]), width, cfg.fov_deg)
            pictures.draw(draw, sources[k], box)
            boxes[k].append(list(box))
        rows.extend([name, f + 1, *src_boxes[f], 1.0] for src_boxes in boxes)
        path = layout.frame_path(paths["frames"], f + 1, cfg.frame_ext)
        frame.save(path, **({} if cfg.frame_ext == ".png" else {"quality": 92}))

    meta = {"num_samples": n, "num_frames": num_frames, "peak": round(peak, 6), **clip_meta}
    meta["sources"] = [
        {
            **{key: src[key] for key in ("type", "shape", "color", "distance_m", "gain", "motion")},
            "azimuth_deg": np.round(np.rad2deg(az), 4).tolist(),
            "itd_ms": np.round(spatial.woodworth_itd(az) * 1e3, 5).tolist(),
            "boxes": src_boxes,
            **({"silent": True} if src.get("silent") else {}),
            **more,  # the realistic mode's: elevation, the head's own ITDs, instrument, position in the room
        }
        for src, az, src_boxes, more in zip(sources, azimuths, boxes, extra)
    ]
    return (rows if rb else []), meta


# --- dataset ------------------------------------------------------------------------------------


def assign_splits(names: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    """Shuffle (seeded) and cut into train/val/test; every split non-empty when there are ≥ 3 clips.

    With fewer than 3 clips every split holds all clips (a tiny demo still runs end to end).
    """
    if len(names) < 3:
        return {split: list(names) for split in layout.SPLITS}
    order = [names[i] for i in np.random.default_rng([seed, 7919]).permutation(len(names))]
    n_val, n_test = (max(1, int(round(len(names) * frac / sum(fractions)))) for frac in fractions[1:])
    while n_val + n_test > len(names) - 1:  # leave at least one training clip
        n_val, n_test = (n_val - 1, n_test) if n_val >= n_test else (n_val, n_test - 1)
    n_train = len(names) - n_val - n_test
    cuts = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(names))}
    return {split: sorted(order[a:b]) for split, (a, b) in cuts.items()}


def _prepare_out(out: str, overwrite: bool) -> None:
    """Create ``out``; replace an earlier synthetic dataset only with ``overwrite``; refuse other data."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise BadInputError(out, "exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out):
        if not os.path.isfile(os.path.join(out, META_FILE)):
            raise BadInputError(out, "not empty and not a synthetic dataset; choose an empty --out")
        if not overwrite:
            raise BadInputError(out, "a synthetic dataset exists here; pass --overwrite to replace it")
        rb_dirs = (
            os.path.dirname(layout.RB_FRAMES_DIR),
            os.path.dirname(layout.RB_DETECTIONS),
            layout.RB_SPLITS_DIR,
        )
        for sub in (*rb_dirs, layout.FP_AUDIO_DIR, layout.FP_FRAMES_DIR, layout.FP_SPLITS_DIR, scenes.MIDI_DIR):
            shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
        os.remove(os.path.join(out, META_FILE))
    os.makedirs(out, exist_ok=True)


def _write_splits(cfg: SynthConfig, out: str, splits: dict[str, list[str]]) -> None:
    for split, members in splits.items():
        if cfg.fmt == "realbinaural":
            os.makedirs(os.path.dirname(layout.rb_split_csv(out, split)), exist_ok=True)
            with open(layout.rb_split_csv(out, split), "w") as fh:
                fh.write("name\n" + "".join(f"{m}\n" for m in members))
        else:  # FAIR-Play's official split files hold absolute paths from the authors' machine
            path = layout.fp_split_h5(out, split, 1)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with need("h5py", "the FAIR-Play layout's .h5 split files").File(path, "w") as fh:
                wavs = np.array([f"{FAKE_FAIRPLAY_ROOT}/{m}.wav".encode() for m in members])
                fh.create_dataset(layout.FP_H5_KEY, data=wavs)


def generate_dataset(
    out: str | os.PathLike,
    *,
    fmt: str = "realbinaural",
    num_clips: int = 8,
    seconds: float = 4.0,
    seed: int = 0,
    image_size: tuple[int, int] = (256, 144),
    fps: float = layout.FPS,
    fov_deg: float = spatial.DEFAULT_FOV_DEG,
    reverb: bool = True,
    mono: bool = True,
    fairplay_sr: int = FAIRPLAY_SR,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    min_sources: int = 1,
    max_sources: int = 3,
    moving_prob: float = 0.5,
    frame_ext: str | None = None,
    sources: str = "synthetic",
    room: str = "diffuse",
    hrtf: tuple[str, ...] = (heads.SPHERICAL,),
    soundfont: str | None = None,
    rt60: tuple[float, float] = (0.3, 0.9),
    tail_seed: int = 0,
    max_silent: int = 0,
    workers: int = 1,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic dataset in ``fmt`` layout (``"realbinaural"`` or ``"fairplay"``) under ``out``.

    Deterministic for ``seed``: clip ``k`` (0-based) uses ``np.random.default_rng([seed, k])`` and is
    named ``synth_{k+1:06d}`` (RealBinaural) or ``{k+1:06d}`` (FAIR-Play). ``workers > 1`` (0 = all
    cores) generates clips in that many spawned processes, with the same bytes. ``sources``, ``room``,
    ``hrtf``, ``soundfont``, ``rt60``, ``tail_seed`` and ``max_silent`` choose the realistic mode
    (:mod:`DiffBinaural.dataset.scenes`); their defaults give the original scenes, clip for clip. ``overwrite`` replaces
    an earlier synthetic dataset in ``out``; any other non-empty directory is refused.

    Returns ``{"out", "format", "names", "splits", "sample_rate", "num_frames" (total), "seconds_elapsed"}``.
    Raises :class:`BadInputError` (one line) on bad arguments.
    """
    t0 = time.perf_counter()
    given = locals()
    cfg = SynthConfig(**{f.name: given[f.name] for f in fields(SynthConfig)})
    if workers < 0:
        raise BadInputError(None, f"--workers must be >= 0, got {workers}")
    out = os.path.abspath(os.fspath(out))
    _prepare_out(out, overwrite)
    names = [cfg.clip_name(k) for k in range(cfg.num_clips)]
    jobs = [(cfg, out, k) for k in range(cfg.num_clips)]
    workers = min(workers or os.cpu_count() or 1, cfg.num_clips)
    if workers > 1:  # spawn: safe even when the caller has threads (torch) running
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.starmap(_make_clip, jobs, chunksize=max(1, cfg.num_clips // (4 * workers)))
    else:
        results = [_make_clip(*job) for job in jobs]

    if cfg.fmt == "realbinaural":
        det_path = os.path.join(out, layout.RB_DETECTIONS)
        os.makedirs(os.path.dirname(det_path), exist_ok=True)
        with open(det_path, "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(layout.DETECTION_COLUMNS)
            for rows, _ in results:
                writer.writerows(rows)
    splits = assign_splits(names, cfg.split_fractions, cfg.seed)
    _write_splits(cfg, out, splits)
    split_of = {m: split for split, members in splits.items() for m in members}  # < 3 clips: last split wins
    clips = {name: {"split": split_of[name], **clip_meta} for name, (_, clip_meta) in zip(names, results)}
    meta = {"version": 1, **asdict(cfg), "sample_rate": cfg.sample_rate, "splits": splits, "clips": clips}
    meta["format"], meta["mono"] = meta.pop("fmt"), cfg.mono and cfg.fmt == "realbinaural"
    with open(os.path.join(out, META_FILE), "w") as fh:
        json.dump(meta, fh, separators=(",", ":"))
    return {
        "out": out, "format": cfg.fmt, "names": names, "splits": splits, "sample_rate": cfg.sample_rate,
        "num_frames": sum(m["num_frames"] for _, m in results), "seconds_elapsed": time.perf_counter() - t0,
    }  # fmt: skip


def load_meta(out: str | os.PathLike) -> dict:
    """The ground truth written by :func:`generate_dataset` (``{out}/synthetic_meta.json``)."""
    path = os.path.join(os.fspath(out), META_FILE)
    if not os.path.isfile(path):
        raise BadInputError(path, "file not found (not a synthetic dataset?)")
    with open(path) as fh:
        return json.load(fh)


def build_parser() -> argparse.ArgumentParser:
    """Flags = :func:`generate_dataset`'s keyword arguments (``--format`` is ``fmt``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add, switch = p.add_argument, argparse.BooleanOptionalAction
    add(
        "--out", required=True, help="dataset root to create (empty, or a synthetic dataset with --overwrite)"
    )
    add("--format", dest="fmt", choices=FORMATS, default="realbinaural")
    add("--num_clips", type=int, default=8)
    add("--seconds", type=float, default=4.0, help="clip length")
    add("--seed", type=int, default=0)
    add("--image_size", type=int, nargs=2, default=(256, 144), metavar=("W", "H"))
    add("--fps", type=float, default=layout.FPS)
    add("--fov_deg", type=float, default=spatial.DEFAULT_FOV_DEG, help="camera's horizontal field of view")
    add("--reverb", action=switch, default=True, help="add a light diffuse room tail")
    add("--mono", action=switch, default=True, help="write RealBinaural's mono folder ((L+R)/2)")
    add("--fairplay_sr", type=int, default=FAIRPLAY_SR, help="sample rate of the FAIR-Play wavs")
    add("--split_fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"))
    add("--min_sources", type=int, default=1)
    add("--max_sources", type=int, default=3)
    add("--moving_prob", type=float, default=0.5, help="probability that a source moves")
    add("--frame_ext", choices=layout.FRAME_EXTS, default=None,
        help="frame image format (default: .jpg for realbinaural, .png for fairplay, as its authors extract them)")
    add("--sources", choices=scenes.SOURCE_KINDS, default="synthetic",
        help="synthetic instruments, or recorded ones: generated parts played from a General-MIDI soundfont")
    add("--room", choices=scenes.ROOMS, default="diffuse",
        help="diffuse: the light tail (--reverb); image_source: a shoebox room per clip, early reflections + tail")
    add("--hrtf", nargs="+", default=[heads.SPHERICAL], metavar="SOFA",
        help="'spherical', or SOFA files of measured heads (with several, each clip draws one)")
    add("--soundfont", default=None, metavar="SF2", help="General-MIDI soundfont (default: the installed FluidR3_GM)")
    add("--rt60", type=float, nargs=2, default=(0.3, 0.9), metavar=("LOW", "HIGH"),
        help="RT60 range of the image_source rooms, seconds")
    add("--tail_seed", type=int, default=0,
        help="image_source rooms: the late tail's noise; two sets that differ only here share every other sample "
             "drawn, so their L-R difference is what no input can predict (bench/tail_floor.py)")
    add("--max_silent", type=int, default=0, help="objects in view that do not sound: 0 .. N per clip")
    add("--workers", type=int, default=0, help="processes (0 = all CPU cores)")
    add("--overwrite", action=switch, default=False, help="replace a synthetic dataset already in --out")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = vars(build_parser().parse_args(argv))
    summary = generate_dataset(args.pop("out"), **args)
    n, elapsed = len(summary["names"]), summary["seconds_elapsed"]
    print(f"wrote {n} {summary['format']} clips ({summary['num_frames']} frames) to {summary['out']} "
          f"in {elapsed:.1f} s ({n / elapsed:.2f} clips/s)")
    return summary


def cli() -> None:
    """The console script of this file (pyproject.toml [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
