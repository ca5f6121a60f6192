"""Binaural rendering with a rigid spherical head, plus the pinhole camera of the synthetic data.

Physics (the two standard models of a spherical head):

* **Interaural time difference**, Woodworth (1938), far field, rigid sphere of radius ``a``::

      ITD(θ) = (a / c) (θ + sin θ),  θ = lateral angle (0 = front, π/2 = side)

  ≈ 0.656 ms at 90° with a = 8.75 cm and c = 343 m/s.
* **Per-ear model**, Brown & Duda (1998), "A structural model for binaural sound synthesis",
  IEEE Trans. Speech Audio Process. 6(5). Each ear gets

  - a delay ``T(φ) = -(a/c) cos φ`` for ``φ < π/2`` and ``(a/c)(φ - π/2)`` otherwise (φ = angle
    between the source and the ear), shifted by ``a/c`` so that it is causal;
  - a one-pole/one-zero head-shadow filter
    ``H(s) = (α(φ) s + 2ω0) / (s + 2ω0)``, ``ω0 = c/a``, with
    ``α(φ) = 1.05 + 0.95 cos(φ · 180°/150°)`` (+6 dB high shelf facing the ear, about −20 dB at 150°),
    digitised with the bilinear transform ``s = 2 fs (1 - z⁻¹)/(1 + z⁻¹)``.

  Conventions chosen here: the shadow filter uses Brown & Duda's ears at ±100°; the delay uses ears at
  ±90°, where the two per-ear delays differ by exactly Woodworth's ITD (near ear ``-(a/c) sin θ``,
  far ear ``(a/c) θ``), so the rendered ITD *is* :func:`woodworth_itd`.

Azimuth convention (everywhere in the project's synthetic data): radians, 0 = straight ahead,
positive = to the listener's **right**, so a source at positive azimuth reaches the right ear
earlier and louder. ``ITD > 0`` means the right ear leads. Channel 0 = left (``binaural_core.audio.LEFT``).

Moving sources are rendered block-wise: Hann-windowed blocks at 50 % overlap (the windows sum to one),
each filtered in the frequency domain with the ears' responses at the block's azimuth (fractional
delay as a phase ramp, times the bilinear shadow filter's frequency response) and overlap-added, so
the azimuth is updated every ``block / 2`` samples with a smooth cross-fade. For a fixed azimuth this
is the same linear time-invariant filter on every block, i.e. plain filtering.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy.signal import fftconvolve, lfilter

from binaural_core.audio import LEFT, RIGHT, BadInputError

HEAD_RADIUS_M = 0.0875  # a
SPEED_OF_SOUND_M_S = 343.0  # c
SHADOW_EAR_DEG = 100.0  # Brown & Duda's ear positions for the head-shadow filter (± this)
DELAY_EAR_DEG = 90.0  # ear positions for the delay term (Woodworth geometry, see module docstring)
ALPHA_MIN = 0.1  # shadow filter's high-frequency gain at THETA_MIN (−20 dB)
THETA_MIN_DEG = 150.0  # incidence angle of the deepest shadow
DEFAULT_BLOCK = 512  # samples per rendering block (hop = block / 2 ≈ 11.6 ms at 22050 Hz)
DEFAULT_FOV_DEG = 90.0  # horizontal field of view of the synthetic camera

_EAR_SIGN = {LEFT: -1.0, RIGHT: 1.0}


def woodworth_itd(
    azimuth_rad: np.ndarray | float, *, radius: float = HEAD_RADIUS_M, speed: float = SPEED_OF_SOUND_M_S
) -> np.ndarray:
    """Woodworth (1938) ITD in seconds, any shape; positive = right ear leads.

    Front/back are folded onto the lateral angle ``θ = arcsin(sin az)`` (a sphere cannot tell them apart).
    """
    lateral = np.arcsin(np.clip(np.sin(np.asarray(azimuth_rad, dtype=np.float64)), -1.0, 1.0))
    return (radius / speed) * (lateral + np.sin(lateral))


def incidence_angle(azimuth_rad: np.ndarray | float, ear_deg: float) -> np.ndarray:
    """Angle in [0, π] between a source at ``azimuth_rad`` and an ear at ``ear_deg`` (horizontal plane)."""
    diff = np.asarray(azimuth_rad, dtype=np.float64) - np.deg2rad(ear_deg)
    return np.abs(np.mod(diff + np.pi, 2.0 * np.pi) - np.pi)


def ear_delays(
    azimuth_rad: np.ndarray | float, *, radius: float = HEAD_RADIUS_M, speed: float = SPEED_OF_SOUND_M_S
) -> np.ndarray:
    """Brown & Duda delay term per ear, seconds, shape ``(*az.shape, 2)`` (left, right), all ≥ 0.

    ``delays[..., LEFT] - delays[..., RIGHT] == woodworth_itd(az)``.
    """
    az = np.asarray(azimuth_rad, dtype=np.float64)
    out = np.empty(az.shape + (2,))
    for ear, sign in _EAR_SIGN.items():
        phi = incidence_angle(az, sign * DELAY_EAR_DEG)
        delay = np.where(phi < np.pi / 2, -np.cos(phi), phi - np.pi / 2)  # in units of a / c
        out[..., ear] = (radius / speed) * (1.0 + delay)  # + a/c: causal
    return out


def shadow_alpha(incidence_rad: np.ndarray | float) -> np.ndarray:
    """Brown & Duda's α(φ) = (1 + α_min/2) + (1 − α_min/2) cos(φ · 180°/θ_min)  (= 1.05 + 0.95 cos(...))."""
    phi = np.asarray(incidence_rad, dtype=np.float64)
    return (1.0 + ALPHA_MIN / 2) + (1.0 - ALPHA_MIN / 2) * np.cos(phi * 180.0 / THETA_MIN_DEG)


def head_shadow_coeffs(
    azimuth_rad: np.ndarray | float,
    ear: int,
    sr: int,
    *,
    radius: float = HEAD_RADIUS_M,
    speed: float = SPEED_OF_SOUND_M_S,
) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear-transform digitisation of ``H(s) = (α s + 2ω0)/(s + 2ω0)`` for one ear.

    Returns ``(b, a)``, each of shape ``(*az.shape, 2)``, ``a[..., 0] = 1`` (for a scalar azimuth: ready
    for ``scipy.signal.lfilter(b, a, x)``).
    """
    if ear not in _EAR_SIGN:
        raise BadInputError(None, f"ear must be LEFT ({LEFT}) or RIGHT ({RIGHT}), got {ear!r}")
    alpha = shadow_alpha(incidence_angle(azimuth_rad, _EAR_SIGN[ear] * SHADOW_EAR_DEG))
    k = 2.0 * sr  # s = k (1 - z^-1) / (1 + z^-1)
    w = 2.0 * speed / radius  # 2 ω0
    norm = k + w
    b = np.stack([(alpha * k + w) / norm, (w - alpha * k) / norm], axis=-1)
    a = np.stack([np.ones_like(alpha), np.full_like(alpha, (w - k) / norm)], axis=-1)
    return b, a


def ear_responses(azimuth_rad: np.ndarray | float, sr: int, n_fft: int) -> np.ndarray:
    """Both ears' responses on the rfft grid of ``n_fft``: complex64 ``(*az.shape, 2, n_fft // 2 + 1)``.

    Delay (as a phase ramp, any fraction of a sample) times the shadow filter's ``H(e^{jω})``.
    """
    az = np.asarray(azimuth_rad, dtype=np.float64)
    omega = 2.0 * np.pi * np.fft.rfftfreq(n_fft)  # rad / sample
    z1 = np.exp(-1j * omega).astype(np.complex64)  # z^-1 on the unit circle
    angle = (omega * (ear_delays(az) * sr)[..., None]).astype(np.float32)  # ω d, (..., 2, F)
    out = np.cos(angle) - 1j * np.sin(angle)  # delay: exp(-jω d)
    for ear in _EAR_SIGN:
        b, a = (c.astype(np.float32) for c in head_shadow_coeffs(az, ear, sr))
        out[..., ear, :] *= (b[..., 0, None] + b[..., 1, None] * z1) / (1.0 + a[..., 1, None] * z1)
    return out.astype(np.complex64, copy=False)


def spatialize(
    mono: np.ndarray, azimuth_rad: np.ndarray | float, sr: int, *, block: int = DEFAULT_BLOCK
) -> np.ndarray:
    """Render a mono source at a (possibly moving) azimuth: ``(S,)`` → ``(2, S)`` float64, channel 0 = left.

    Computed in single precision (relative error ~1e-6, far below 16-bit audio).

    Args:
        mono: ``(S,)`` the dry source signal.
        azimuth_rad: a scalar, or ``(S,)`` one azimuth per sample (sampled every ``block // 2`` samples).
        sr: sample rate in Hz.
        block: rendering block length (even); the output is delayed by at least 0 and at most
            ``2 a / c`` seconds per ear (the causal Brown–Duda delays).
    """
    x = np.asarray(mono, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise BadInputError(None, f"spatialize expects a non-empty (S,) signal, got shape {x.shape}")
    if block < 64 or block % 2:
        raise BadInputError(None, f"block must be an even number >= 64, got {block}")
    n = x.size
    az = np.asarray(azimuth_rad, dtype=np.float64)
    if az.ndim != 0 and az.shape != (n,):
        raise BadInputError(None, f"azimuth must be a scalar or shape ({n},), got {az.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(az))):
        raise BadInputError(None, "spatialize: signal or azimuth contains NaN or inf")

    n_fft = 2 * block  # zero padding leaves room for delay and the shadow filter's (fast) decay
    if az.ndim == 0:
        fixed = ear_responses(az, sr, n_fft)[None]
        return block_filter(x, lambda index: fixed, block=block, n_fft=n_fft)
    hop = block // 2
    return block_filter(x, lambda index: ear_responses(az[np.minimum(index * hop, n - 1)], sr, n_fft),
                        block=block, n_fft=n_fft)


def block_filter(x: np.ndarray, responses, *, block: int, n_fft: int, chunk: int = 32) -> np.ndarray:
    """Filter ``(S,)`` → ``(2, S)`` with a response that changes from block to block (overlap-add).

    Hann-windowed blocks of ``block`` samples at 50 % overlap (the windows sum to one); block ``b`` is
    centred on sample ``b · block / 2``, is filtered in the frequency domain with ``responses(index)``
    (``index`` a chunk of block numbers → ``(len(index) or 1, 2, n_fft // 2 + 1)``, one row broadcast to
    all) and overlap-added. ``n_fft`` must leave room for the response's length after the block.
    """
    hop, n = block // 2, x.size
    n_blocks = -(-n // hop) + 1
    padded = np.zeros((n_blocks + 1) * hop)
    padded[hop : hop + n] = x  # sample i sits at padded[hop + i]: covered by two blocks everywhere
    frames = np.lib.stride_tricks.sliding_window_view(padded, block)[::hop][:n_blocks]  # (B, block)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(block) / block)  # periodic Hann: sums to 1 at hop
    n_chunks = -(-n_fft // hop)
    acc = np.zeros((2, n_blocks + n_chunks, hop))  # float64 accumulation
    for start in range(0, n_blocks, chunk):
        index = np.arange(start, min(start + chunk, n_blocks))
        spec = scipy.fft.rfft((frames[index] * window).astype(np.float32), n=n_fft)  # (b, F) complex64
        out = scipy.fft.irfft(spec[:, None, :] * responses(index), n=n_fft)  # (b, 2, n_fft) float32
        out = np.pad(out, ((0, 0), (0, 0), (0, n_chunks * hop - n_fft)))
        # Overlap-add: block b's chunk j (hop samples each) lands at chunk b + j of the padded output.
        chunks = out.reshape(len(index), 2, n_chunks, hop)
        for j in range(n_chunks):
            acc[:, start + j : start + j + len(index)] += chunks[:, :, j].transpose(1, 0, 2)
    return acc.reshape(2, -1)[:, hop : hop + n]


def reverb_ir(
    sr: int, rng: np.random.Generator, *, rt60: float = 0.3, predelay_s: float = 0.008, damping: float = 0.4
) -> np.ndarray:
    """A light diffuse room tail per ear: ``(2, L)`` exponentially decaying noise, decorrelated ears.

    Independent Gaussian noise per ear, amplitude envelope ``exp(-6.91 t / rt60)`` (−60 dB at ``rt60``),
    one-pole low-pass (``damping`` = pole) so high frequencies are softer, silent for ``predelay_s``
    (no direct sound), each ear normalised to unit energy.
    """
    if rt60 <= 0 or not 0.0 <= damping < 1.0 or predelay_s < 0:
        raise BadInputError(
            None, f"bad reverb parameters rt60={rt60}, damping={damping}, predelay={predelay_s}"
        )
    length = max(int(rt60 * sr), 2)
    t = np.arange(length) / sr
    ir = rng.standard_normal((2, length)) * np.exp(-6.91 * t / rt60)
    ir = lfilter([1.0 - damping], [1.0, -damping], ir, axis=-1)
    ir[:, : int(predelay_s * sr)] = 0.0
    return ir / np.sqrt(np.sum(ir**2, axis=-1, keepdims=True) + 1e-12)


def add_reverb(
    binaural: np.ndarray,
    dry: np.ndarray,
    sr: int,
    rng: np.random.Generator,
    *,
    wet: float = 0.1,
    rt60: float = 0.3,
) -> np.ndarray:
    """``binaural (2, S) + wet · (dry (S,) ⊛ reverb_ir)``: the tail is position-independent (diffuse)."""
    ir = reverb_ir(sr, rng, rt60=rt60)
    tail = np.stack([fftconvolve(dry, ir[ear])[: dry.size] for ear in (LEFT, RIGHT)])
    return binaural + wet * tail


# --- pinhole camera -----------------------------------------------------------------------------


def focal_px(width: int, fov_deg: float = DEFAULT_FOV_DEG) -> float:
    """Focal length in pixels of a pinhole camera with horizontal field of view ``fov_deg``."""
    if not 0.0 < fov_deg < 180.0:
        raise BadInputError(None, f"fov_deg must be in (0, 180), got {fov_deg}")
    return (width / 2.0) / np.tan(np.deg2rad(fov_deg) / 2.0)


def azimuth_to_x(azimuth_rad: np.ndarray | float, width: int, fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """Image column of a source: ``x = W/2 + f tan(az)`` (camera looks straight ahead, right = +x)."""
    return width / 2.0 + focal_px(width, fov_deg) * np.tan(np.asarray(azimuth_rad, dtype=np.float64))


def x_to_azimuth(x: np.ndarray | float, width: int, fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """Inverse of :func:`azimuth_to_x`: ``az = arctan((x − W/2) / f)`` in radians."""
    return np.arctan((np.asarray(x, dtype=np.float64) - width / 2.0) / focal_px(width, fov_deg))
