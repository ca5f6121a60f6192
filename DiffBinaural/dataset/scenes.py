"""The realistic mode of the synthetic generator: recorded instruments in a room, heard by a measured head.

:func:`render_scene` is what :mod:`.synthetic` calls for a clip whenever anything differs from its
original mode (synthetic sources, the light diffuse tail, the spherical head), with three independent
choices:

* ``sources``: ``synthetic`` (:mod:`.instruments`) or ``soundfont`` (:mod:`.soundfont`: an ensemble
  sharing tempo and key, each family playing its own generated part through a General-MIDI
  soundfont; the score is written to ``{out}/midi/{clip}.mid``);
* ``room``: ``diffuse`` (the light tail of :func:`.spatial.add_reverb`, as before) or ``image_source``
  (:mod:`.room`: a shoebox drawn per clip, its early reflections from their own directions through
  the head, and a diffuse tail at the room's RT60);
* ``hrtf``: ``spherical`` or one or more SOFA files (:mod:`.heads`; with several, each clip draws one).

Geometry: a source's azimuth follows its motion, its elevation follows the row it is drawn at (the
pinhole camera of :mod:`.spatial`, looking along +x at ear height), its distance is the one its picture
is drawn for, shortened where the room's walls are nearer (the picture is then redrawn at that size).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import numpy as np
from scipy.signal import fftconvolve

from binaural_core.audio import BadInputError

from . import heads, pictures, room, soundfont, spatial
from .instruments import synthesize

SOURCE_KINDS = ("synthetic", "soundfont")
ROOMS = ("diffuse", "image_source")
MIDI_DIR = "midi"
# synthetic source type -> (shape, RGB). Saturated colours; the backgrounds are desaturated.
SYNTH_LOOKS = {
    "tone": ("circle", (225, 35, 35)),
    "pluck": ("triangle", (35, 190, 60)),
    "noise": ("square", (35, 85, 230)),
    "chirp": ("diamond", (245, 215, 25)),
    "voice": ("ellipse", (205, 45, 215)),
}


def looks(kind: str) -> dict[str, tuple[str, tuple[int, int, int]]]:
    """Source type -> (shape, colour) of a source kind (soundfont families are drawn as icons)."""
    if kind == "synthetic":
        return SYNTH_LOOKS
    return {family: (pictures.ICON, pictures.ICON_COLORS[family]) for family in soundfont.FAMILIES}


def is_original(cfg) -> bool:
    """The generator's original mode, rendered exactly as before (:func:`.synthetic.render_clip`)."""
    return cfg.sources == "synthetic" and cfg.room == "diffuse" and tuple(cfg.hrtf) == (heads.SPHERICAL,)


def check(cfg) -> None:
    """One line on a bad choice (called by ``SynthConfig``); finds the soundfont and SOFA files early."""
    if cfg.sources not in SOURCE_KINDS:
        raise BadInputError(None, f"--sources must be one of {', '.join(SOURCE_KINDS)}, got {cfg.sources!r}")
    if cfg.room not in ROOMS:
        raise BadInputError(None, f"--room must be one of {', '.join(ROOMS)}, got {cfg.room!r}")
    lo, hi = cfg.rt60
    if not 0.1 <= lo <= hi <= 3.0:
        raise BadInputError(None, f"--rt60 must be LOW HIGH seconds with 0.1 <= LOW <= HIGH <= 3, got {cfg.rt60}")
    if cfg.tail_seed < 0 or (cfg.tail_seed and cfg.room != "image_source"):
        raise BadInputError(None, f"--tail_seed must be >= 0 and needs --room image_source, got {cfg.tail_seed}")
    if not cfg.hrtf:
        raise BadInputError(None, "--hrtf needs 'spherical' or at least one SOFA file")
    for spec in cfg.hrtf:
        if spec != heads.SPHERICAL and not os.path.isfile(spec):
            raise BadInputError(spec, "SOFA file not found (make hrtf fetches the measured heads)")
    if cfg.sources == "soundfont":
        cfg.soundfont = soundfont.find_soundfont(cfg.soundfont)


@lru_cache(maxsize=8)
def _head(spec: str, sr: int) -> heads.Head:
    return heads.load_head(spec, sr=sr)


def _itd_ms(head: heads.Head, az: np.ndarray, el: np.ndarray) -> list[float]:
    """The direct path's ITD per frame (ms, positive = right leads): Woodworth for the sphere, the
    HRIRs' cross-correlation for a measured head (once per measured direction)."""
    if isinstance(head, heads.SphericalHead):
        return np.round(spatial.woodworth_itd(az) * 1e3, 5).tolist()
    dirs = heads.direction(az, el)
    nearest = head.nearest(dirs)
    cache = {}
    for k in np.unique(nearest):
        first = int(np.argmax(nearest == k))
        cache[k] = heads.interaural(head, float(az[first]), float(el[first]))[0] * 1e3
    return [round(float(cache[k]), 5) for k in nearest]


def _elevation(src: dict, height: int, width: int, fov_deg: float) -> float:
    """Elevation (radians) of the row a source is drawn at, seen by the pinhole camera at ear height."""
    return math.atan2(height / 2.0 - src["y"], spatial.focal_px(width, fov_deg))


def render_scene(sources: list[dict], rng: np.random.Generator, cfg, *, num_samples: int, sr: int,
                 frame_times: np.ndarray) -> tuple[np.ndarray, dict, list[dict], object]:
    """Render one clip's sounding sources (``silent`` ones are only drawn).

    Returns ``(binaural (2, S) float64, clip metadata, per-source metadata, score or None)``; the
    source dicts are updated in place where the room shortens a distance.
    """
    width, height = cfg.image_size
    head = _head(str(cfg.hrtf[int(rng.integers(len(cfg.hrtf)))]), sr)
    shoebox = room.draw_room(rng, rt60=tuple(cfg.rt60)) if cfg.room == "image_source" else None
    band = soundfont.ensemble(rng) if cfg.sources == "soundfont" else None
    t = np.arange(num_samples) / sr
    mix, dry, parts, extra, distances = np.zeros((2, num_samples)), np.zeros(num_samples), {}, [], []
    from .synthetic import azimuth_at  # the one motion model (synthetic imports this module)

    for src in sources:
        az = azimuth_at(src["motion"], t)
        el = _elevation(src, height, width, cfg.fov_deg)
        level = src["gain"] * src["distance_m"]  # the amplitude at 1 m
        info = {"elevation_deg": round(math.degrees(el), 4), "silent": bool(src.get("silent", False))}
        if shoebox is not None:  # no nearer to a wall than the margin, along the whole path
            reach = float(shoebox.wall_distance(az[:: max(1, sr // 50)]).min()) * math.cos(el)
            if reach < src["distance_m"]:
                src["distance_m"] = max(0.5, reach)
                src["radius_px"] = pictures.source_radius_px(src["distance_m"], height)
                src["y"] = int(np.clip(src["y"], src["radius_px"] + 1, height - 2 - src["radius_px"]))
                src["gain"] = level / src["distance_m"]
        frame_az = azimuth_at(src["motion"], frame_times)
        info["itd_ms"] = _itd_ms(head, frame_az, np.full_like(frame_az, el))
        if info["silent"]:
            extra.append(info)
            continue
        if band is not None:
            notes = soundfont.compose(src["type"], rng, cfg.seconds, band)
            x = soundfont.render_part(src["type"], notes, num_samples, sr, cfg.soundfont)
            parts[src["type"]] = notes
            info.update(program=soundfont.FAMILIES[src["type"]].program, notes=len(notes))
        else:
            x = synthesize(src["type"], rng, num_samples, sr)
        x = level * x
        if shoebox is not None:
            horizontal = src["distance_m"] * math.cos(el)
            lift = float(np.clip(src["distance_m"] * math.sin(el), room.WALL_MARGIN_M - shoebox.listener[2],
                                 shoebox.size[2] - room.WALL_MARGIN_M - shoebox.listener[2]))
            static = src["motion"]["kind"] == "static"
            where = shoebox.position(az[0] if static else az, horizontal, lift)
            mix += room.render_source(x, where, shoebox, head, sr)
            info["position_m"] = np.round(np.atleast_2d(where)[0], 4).tolist()
            distances.append(float(np.linalg.norm(np.atleast_2d(where)[0] - np.asarray(shoebox.listener))))
        else:
            mix += direct_path(x / src["distance_m"], az, el, head, sr,
                               static=src["motion"]["kind"] == "static")
        dry += x
        extra.append(info)

    clip = {"head": head.describe()}
    if shoebox is not None:
        # its own stream (one draw of the clip's): --tail_seed changes the tail's noise and nothing else
        tail_rng = np.random.default_rng([int(rng.integers(2**63)), int(cfg.tail_seed)])
        ir = room.tail_ir(shoebox, head, sr, tail_rng,
                          delay_s=float(np.mean(distances or [1.0])) / room.SPEED_OF_SOUND_M_S)
        mix += np.stack([fftconvolve(dry, ir[e])[:num_samples] for e in range(2)])
        clip["room"] = shoebox.describe()
    else:
        wet = float(rng.uniform(0.05, 0.2)) if cfg.reverb else 0.0
        if cfg.reverb:
            mix = spatial.add_reverb(mix, dry, sr, rng, wet=wet, rt60=float(rng.uniform(0.15, 0.5)))
        clip["reverb_wet"], clip["room"] = round(wet, 6), {"kind": "diffuse"}
    if band is not None:
        clip["band"] = {**band, "tempo_bpm": round(band["tempo_bpm"], 3)}
    return mix, clip, extra, (soundfont.score(parts, band) if band is not None else None)


def direct_path(x: np.ndarray, az: np.ndarray, el: float, head: heads.Head, sr: int, *,
                static: bool, block: int = 1024) -> np.ndarray:
    """A source through the head alone (no room): ``(S,)`` → ``(2, S)``; ``az`` per sample (radians)."""
    n_fft = 1 << int(math.ceil(math.log2(block + head.length() + 1)))
    if static:
        fixed = head.responses(heads.direction(az[:1], el), n_fft)
        return spatial.block_filter(x, lambda index: fixed, block=block, n_fft=n_fft)
    hop = block // 2
    return spatial.block_filter(
        x, lambda index: head.responses(heads.direction(az[np.minimum(index * hop, x.size - 1)], el), n_fft),
        block=block, n_fft=n_fft)


def write_score(out: str, name: str, score) -> None:
    """The clip's generated score as a standard MIDI file (``{out}/midi/{name}.mid``)."""
    os.makedirs(os.path.join(out, MIDI_DIR), exist_ok=True)
    score.write(os.path.join(out, MIDI_DIR, f"{name}.mid"))
