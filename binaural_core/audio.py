"""Audio I/O, the left/right channel convention and the project's bad-input error.

This module is the one place that fixes:

* the channel order of every binaural tensor and file: ``LEFT = 0``, ``RIGHT = 1``
  (``(2, S)`` waveforms, ``(2, n_mels, T)`` mels, stereo wav files, channel 0 = left);
* the mono signal derived from a binaural one: ``mono = (left + right) / 2``;
* :class:`BadInputError`, raised for any broken user input with a one-line message that names the
  file and the problem. Scripts catch it in :func:`cli_main` and print that one line.

Both stages import it from this shared package, which imports neither of them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import soundfile as sf

from binaural_core.atomic import atomic_output

LEFT = 0
RIGHT = 1
CHANNEL_NAMES = ("left", "right")  # index = channel; also the sub-folder names of a mel directory


class BadInputError(ValueError):
    """A user-supplied file or argument is unusable. ``str(err)`` is one line: ``"{path}: {problem}"``."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(problem if self.path is None else f"{self.path}: {problem}")


def cli_main(main: Callable[[], Any]) -> None:
    """Run a script's ``main()``; turn :class:`BadInputError` into one line on stderr and exit code 2."""
    try:
        main()
    except BadInputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def mono_from_binaural(binaural: np.ndarray) -> np.ndarray:
    """``(2, S)`` → ``(S,)``: the down-mix ``(L + R) / 2`` used wherever no mono recording exists."""
    return 0.5 * (binaural[LEFT] + binaural[RIGHT])


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the last axis with librosa's default (soxr high quality) resampler."""
    if orig_sr == target_sr:
        return wav
    import librosa

    return librosa.resample(wav, orig_sr=orig_sr, target_sr=target_sr, axis=-1).astype(np.float32)


def read_wav(path: str | os.PathLike, *, channels: int | None) -> tuple[np.ndarray, int]:
    """A wav at its own rate: ``((C, S) float32 in [-1, 1], sample rate)``; ``channels=None`` takes any count.

    Raises:
        BadInputError: missing, unreadable or empty file, wrong channel count, NaN or inf samples.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadInputError(path, "file not found")
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)  # (S, C)
    except Exception as err:  # soundfile raises several types; all mean "not a readable audio file"
        raise BadInputError(path, f"unreadable audio file ({type(err).__name__}: {err})") from None
    if data.shape[0] == 0:
        raise BadInputError(path, "empty audio file (0 samples)")
    if channels is not None and data.shape[1] != channels:
        raise BadInputError(path, f"expected {channels} channel(s), found {data.shape[1]}")
    if not np.all(np.isfinite(data)):
        raise BadInputError(path, "audio contains NaN or inf")
    return np.ascontiguousarray(data.T), int(sr)


def load_wav(
    path: str | os.PathLike,
    *,
    sampling_rate: int,
    channels: int,
    resample_ok: bool = False,
) -> np.ndarray:
    """Read a wav as float32 in [-1, 1] at ``sampling_rate``.

    Args:
        path: the file.
        sampling_rate: the rate the caller works at; a file at another rate is resampled when
            ``resample_ok`` and refused otherwise.
        channels: 1 → returns ``(S,)``; 2 → returns ``(2, S)`` with channel 0 = left.

    Raises:
        BadInputError: as :func:`read_wav`, or the wrong rate.
    """
    data, sr = read_wav(path, channels=channels)
    if sr != sampling_rate:
        if not resample_ok:
            raise BadInputError(
                os.fspath(path), f"sample rate is {sr} Hz, expected {sampling_rate} Hz (resample it first)"
            )
        data = np.ascontiguousarray(resample(data, sr, sampling_rate), dtype=np.float32)
    return data[0] if channels == 1 else data


def save_wav(path: str | os.PathLike, wav: np.ndarray, sampling_rate: int, *, subtype: str = "PCM_16") -> None:
    """Write ``(S,)`` or ``(C, S)`` float audio; clips to [-1, 1] for integer subtypes. Atomic (temp + rename)."""
    path = os.fspath(path)
    wav = np.asarray(wav, dtype=np.float32)
    data = wav.T if wav.ndim == 2 else wav
    if subtype.startswith("PCM"):
        data = np.clip(data, -1.0, 1.0)
    with atomic_output(path) as tmp:
        sf.write(tmp, data, sampling_rate, subtype=subtype, format="WAV")
