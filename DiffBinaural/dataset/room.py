"""Rooms for the synthetic scenes: image-source early reflections (pyroomacoustics) and a diffuse tail.

A clip's room is a shoebox (:class:`Room`): its size, one energy absorption coefficient for all
walls, the listener's position (ears at ``listener``, looking along +x, so the room's axes are the
listener frame of :mod:`.heads`: +y is the listener's left, +z up). Its sound at the two ears is

* **the direct path and the early reflections**: pyroomacoustics' image-source model of the shoebox
  (Allen & Berkley 1979) up to ``max_order`` reflections. Image ``k`` arrives after ``r_k / c`` with
  amplitude ``β_k / r_k`` (``β_k`` the product of the walls' amplitude reflectances ``√(1 − α)``)
  from **its own direction**, through the head's response for that direction (:func:`response`);
* **the late tail**: noise decaying at the room's RT60 (Eyring), the two ears as coherent as a diffuse
  field makes them at this head (:meth:`Head.diffuse_coherence`: one field at low frequencies, nearly
  independent above ~1 kHz), shaped by the head's diffuse-field response and starting where the image
  set ends, ``t0 = (max_order + 1) · 4V / (S c)`` (that many mean free paths). Its energy is what Sabine's diffuse-field theory leaves for
  ``t > t0``: ``E = 16π / R · exp(−13.8 t0 / RT60)`` relative to the direct sound at 1 m, with
  ``R = S ᾱ / (1 − ᾱ)`` the room constant (Kuttruff, *Room Acoustics*, ch. 5).

A moving source is rendered block-wise (:func:`DiffBinaural.dataset.spatial.block_filter`): the image
set is recomputed at each block's position and the blocks are cross-faded, so reflections move with
the source and arrive from their new directions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

from binaural_core.audio import LEFT, RIGHT, BadInputError
from binaural_core.extras import need

from . import spatial
from .heads import Head

SPEED_OF_SOUND_M_S = spatial.SPEED_OF_SOUND_M_S
WALL_MARGIN_M = 0.3  # sources and the listener stay this far from every wall
TAIL_FADE_S = 0.005  # the tail fades in over this long at t0 (no click where the images stop)


@dataclass
class Room:
    """A shoebox room and the listener in it (metres; ``listener`` is the centre of the head)."""

    size: tuple[float, float, float]
    absorption: float
    listener: tuple[float, float, float]
    max_order: int = 3

    def __post_init__(self) -> None:
        size, lis = np.asarray(self.size, float), np.asarray(self.listener, float)
        if size.shape != (3,) or size.min() <= 2 * WALL_MARGIN_M:
            raise BadInputError(None, f"room size must be 3 lengths > {2 * WALL_MARGIN_M} m, got {self.size}")
        if not 0.0 < self.absorption < 1.0:
            raise BadInputError(None, f"wall absorption must be in (0, 1), got {self.absorption}")
        if lis.shape != (3,) or np.any(lis < WALL_MARGIN_M) or np.any(lis > size - WALL_MARGIN_M):
            raise BadInputError(None, f"listener {self.listener} is not inside the room {self.size}")
        if self.max_order < 0:
            raise BadInputError(None, f"max_order must be >= 0, got {self.max_order}")

    @property
    def volume(self) -> float:
        return float(np.prod(self.size))

    @property
    def surface(self) -> float:
        lx, ly, lz = self.size
        return float(2 * (lx * ly + lx * lz + ly * lz))

    def rt60(self) -> float:
        """Eyring's reverberation time ``0.161 V / (−S ln(1 − ᾱ))`` in seconds."""
        return 0.161 * self.volume / (-self.surface * math.log(1.0 - self.absorption))

    def tail_start(self) -> float:
        """Seconds after the direct sound where the image set ends and the diffuse tail takes over."""
        return (self.max_order + 1) * 4.0 * self.volume / (self.surface * SPEED_OF_SOUND_M_S)

    def tail_energy(self) -> float:
        """Energy of the tail after :meth:`tail_start`, relative to the direct sound at 1 m (Sabine)."""
        a = self.absorption
        room_constant = self.surface * a / (1.0 - a)
        return 16.0 * math.pi / room_constant * math.exp(-13.8 * self.tail_start() / self.rt60())

    def wall_distance(self, azimuth_rad: np.ndarray) -> np.ndarray:
        """Distance from the listener to the margin inside the walls along horizontal azimuths (positive = right)."""
        d = np.stack([np.cos(azimuth_rad), -np.sin(azimuth_rad)], axis=-1)  # listener frame x, y
        lo = np.asarray(self.listener[:2]) - WALL_MARGIN_M
        hi = np.asarray(self.size[:2]) - WALL_MARGIN_M - np.asarray(self.listener[:2])
        with np.errstate(divide="ignore"):
            t = np.where(d > 0, hi / d, np.where(d < 0, -lo / d, np.inf))
        return t.min(axis=-1)

    def position(self, azimuth_rad: np.ndarray, distance_m: float, height_m: float = 0.0) -> np.ndarray:
        """Room coordinates ``(..., 3)`` of sources at horizontal azimuths, ``height_m`` above the ears."""
        az = np.asarray(azimuth_rad, float)
        offset = np.stack([np.cos(az), -np.sin(az), np.zeros_like(az)], axis=-1) * distance_m
        return np.asarray(self.listener) + offset + np.array([0.0, 0.0, height_m])

    def describe(self) -> dict:
        return {"size_m": [round(float(v), 4) for v in self.size], "absorption": round(float(self.absorption), 5),
                "listener_m": [round(float(v), 4) for v in self.listener], "max_order": int(self.max_order),
                "rt60_s": round(self.rt60(), 4), "tail_start_s": round(self.tail_start(), 5)}


def draw_room(rng: np.random.Generator, *, rt60: tuple[float, float] = (0.3, 0.9), max_order: int = 3) -> Room:
    """A random music room: 4–10 × 3.5–8 × 2.6–4 m, an RT60 drawn in ``rt60`` (the absorption that gives it
    by Eyring's formula, :meth:`Room.rt60`'s inverse), the listener in the back third at ear height."""
    size = (float(rng.uniform(4.0, 10.0)), float(rng.uniform(3.5, 8.0)), float(rng.uniform(2.6, 4.0)))
    target = float(rng.uniform(*rt60))
    volume, surface = float(np.prod(size)), 2 * (size[0] * size[1] + size[0] * size[2] + size[1] * size[2])
    absorption = float(np.clip(1.0 - math.exp(-0.161 * volume / (surface * target)), 0.01, 0.95))
    listener = (float(rng.uniform(0.6, 0.3 * size[0])), float(rng.uniform(0.4, 0.6) * size[1]),
                float(rng.uniform(1.1, min(1.7, size[2] - 0.5))))
    return Room(size=size, absorption=absorption, listener=listener, max_order=max_order)


def image_sources(room: Room, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image sources of each source position (pyroomacoustics' ShoeBox image-source model).

    Args:
        positions: ``(P, 3)`` room coordinates.
    Returns:
        ``(delays (P, K) seconds, gains (P, K) = β / r, directions (P, K, 3))``, directions as unit
        vectors in the listener frame; ``K`` the number of images up to ``max_order`` (the same for all).
    """
    pra = need("pyroomacoustics", "image-source rooms (--room image_source)")
    positions = np.asarray(positions, float).reshape(-1, 3)
    shoebox = pra.ShoeBox(list(room.size), fs=16000, materials=pra.Material(room.absorption),
                          max_order=room.max_order, air_absorption=False)
    for p in positions:
        shoebox.add_source(list(p))
    shoebox.add_microphone(list(room.listener))
    shoebox.image_source_model()
    rel = np.stack([s.images.T for s in shoebox.sources]) - np.asarray(room.listener)  # (P, K, 3)
    dist = np.linalg.norm(rel, axis=-1)
    beta = np.stack([s.damping.reshape(-1, s.images.shape[1])[0] for s in shoebox.sources])  # (P, K)
    return dist / SPEED_OF_SOUND_M_S, beta / dist, rel / dist[..., None]


def response(head: Head, delays: np.ndarray, gains: np.ndarray, directions: np.ndarray, n_fft: int,
             sr: int) -> np.ndarray:
    """Summed binaural transfer function of image sets: ``(P, 2, n_fft // 2 + 1)`` complex64.

    ``h_p(t) = Σ_k g_pk · hrir(d_pk)(t − τ_pk)``: each image through the head's impulse response for its
    own direction, at its own delay rounded to the sample (half a sample at most: 23 µs at 22.05 kHz),
    built in the time domain (a few hundred taps per image, far cheaper than a spectrum per image).
    """
    p, k = gains.shape
    hrirs = head.impulses(directions.reshape(-1, 3)).reshape(p, k, 2, -1)  # (P, K, 2, L)
    taps = hrirs.shape[-1]
    shift = np.rint(np.asarray(delays) * sr).astype(int)  # (P, K)
    if shift.max() + taps > n_fft:
        raise BadInputError(None, f"room response of {shift.max() + taps} samples does not fit n_fft={n_fft}")
    # every tap of every image, scattered into the flat (P, 2, n_fft) response and summed by bincount
    where = ((np.arange(p)[:, None, None, None] * 2 + np.arange(2)[None, None, :, None]) * n_fft
             + shift[:, :, None, None] + np.arange(taps)[None, None, None, :])  # (P, K, 2, L)
    weights = hrirs * gains.astype(np.float32)[:, :, None, None]
    ir = np.bincount(where.ravel(), weights.ravel(), minlength=p * 2 * n_fft).reshape(p, 2, n_fft)
    return scipy.fft.rfft(ir.astype(np.float32), n=n_fft).astype(np.complex64)


def render_source(x: np.ndarray, positions: np.ndarray, room: Room, head: Head, sr: int, *,
                  block: int = 1024) -> np.ndarray:
    """A dry source through the room's direct path and early reflections: ``(S,)`` → ``(2, S)``.

    Args:
        positions: ``(3,)`` a static source, or ``(S, 3)`` one position per sample (sampled at the block
            centres, every ``block // 2`` samples).
    """
    positions = np.asarray(positions, float)
    moving = positions.ndim == 2
    hop = block // 2
    n_blocks = -(-x.size // hop) + 1
    if moving:
        at = positions[np.minimum(np.arange(n_blocks) * hop, x.size - 1)]
        # The same image set for neighbouring blocks that barely moved: geometry every block is cheap.
    else:
        at = positions[None]
    delays, gains, dirs = image_sources(room, at)
    n_fft = 1 << int(math.ceil(math.log2(block + delays.max() * sr + head.length() + 1)))

    def blocks_response(index: np.ndarray) -> np.ndarray:
        sel = index if moving else np.zeros(1, int)
        return response(head, delays[sel], gains[sel], dirs[sel], n_fft, sr)

    return spatial.block_filter(x, blocks_response, block=block, n_fft=n_fft)


def tail_ir(room: Room, head: Head, sr: int, rng: np.random.Generator, *, delay_s: float = 0.0) -> np.ndarray:
    """The late tail's impulse response ``(2, L)`` (module docstring).

    ``delay_s`` is when the direct sound arrives (the tail starts ``tail_start`` after it).
    """
    rt60, start = room.rt60(), delay_s + room.tail_start()
    length = int(math.ceil((start + rt60) * sr)) + 1
    t = np.arange(length) / sr
    ir = rng.standard_normal((2, length)) * np.exp(-6.91 * t / rt60)
    ir *= np.clip((t - start) / TAIL_FADE_S, 0.0, 1.0)
    n_fft = 1 << int(math.ceil(math.log2(length + head.length())))  # the zero-phase colouring does not wrap
    spec = np.fft.rfft(ir, n=n_fft)
    # Two independent noises mixed to the diffuse field's coherence Γ(f): R = Γ·N_L + √(1 − Γ²)·N_R has
    # correlation Γ with L and the same power (Habets, Cohen & Gannot, JASA 2008: sensor signals under a
    # spatial coherence constraint). Independent ears would give a random L−R even at 100 Hz, where a head
    # hears one field.
    gamma = head.diffuse_coherence(n_fft)
    spec = np.stack([spec[LEFT], gamma * spec[LEFT] + np.sqrt(1.0 - gamma**2) * spec[RIGHT]])
    spec *= np.sqrt(head.diffuse_power(n_fft))  # the head's diffuse-field colour
    ir = np.fft.irfft(spec, n=n_fft)[:, :length]
    ir /= np.sqrt((ir**2).sum(axis=-1, keepdims=True) + 1e-20)
    return ir * math.sqrt(room.tail_energy())
