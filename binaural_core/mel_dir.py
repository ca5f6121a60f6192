"""The mel directory: where Stage 1 and the vocoder meet (docs/formats.md, "Mel directory").

One writer (:func:`write_clip`, :func:`write_meta`) and one reader (:func:`read_meta`,
:func:`check_mel_dir`, :func:`load_mel_file`, :func:`load_phase_file`) of::

    {dir}/left/{split}/{name}.npy    float32 (n_mels, T) natural-log mel, T = samples // hop
    {dir}/right/{split}/{name}.npy
    {dir}/phase/{split}/{name}.npy   optional: float32 (2, n_mels, T) interaural phase channels
                                     (:mod:`binaural_core.interaural`: Re, Im of the band coherence)
    {dir}/meta.json                  format_version, the mel parameters, and what made the mels;
                                     "phase" (channels, definition) when the phase dir belongs to them

``meta.json`` is written last, so its presence means the directory is complete. Readers refuse a
directory whose ``format_version`` they do not know or whose mel parameters differ from theirs, with
one line naming ``meta.json`` and what differs.
"""

from __future__ import annotations

import json
import os

import numpy as np

from binaural_core.atomic import atomic_output
from binaural_core.audio import CHANNEL_NAMES, BadInputError
from binaural_core.checkpoint import atomic_write_text
from binaural_core.interaural import PHASE_CHANNELS, PHASE_DEFINITION
from binaural_core.mel import MelConfig, read_json

FORMAT_VERSION = 1
MEL_SUBDIRS = CHANNEL_NAMES  # ("left", "right"): channel c of a clip <-> mel dir c
PHASE_SUBDIR = "phase"


# --- writing -------------------------------------------------------------------------------------
def clip_paths(out_dir: str, split: str, name: str) -> list[str]:
    """``[left path, right path, phase path]`` of one clip in a mel directory."""
    return [os.path.join(out_dir, sub, split, f"{name}.npy") for sub in (*MEL_SUBDIRS, PHASE_SUBDIR)]


def write_clip(out_dir: str, split: str, name: str, mel: np.ndarray) -> None:
    """Write (2, M, T) as left/right ``.npy``, and channels 2-3 of a (4, M, T) array as the (2, M, T)
    phase file (temp + rename, so a killed run leaves no half file)."""
    left, right, phase = clip_paths(out_dir, split, name)
    ears = len(MEL_SUBDIRS)
    for path, m in ((left, mel[0]), (right, mel[1]), (phase, mel[ears:] if mel.shape[0] > ears else None)):
        if m is None:
            continue
        with atomic_output(path, suffix=".npy") as tmp:
            np.save(tmp, np.ascontiguousarray(m, dtype=np.float32))


def write_meta(out_dir: str, *, mel_cfg: MelConfig, split: str, names: list[str], phase: bool = False,
               **info) -> None:
    """``meta.json``: what a reader needs to trust the mels (write it last: its presence = complete)."""
    meta = {"format_version": FORMAT_VERSION, "mel": mel_cfg.to_dict(), "split": split,
            "num_clips": len(names), "git_commit": _git_commit(), **info}
    if phase:
        meta["phase"] = {"dir": PHASE_SUBDIR, "shape": ["channel", "n_mels", "frames"],
                         "channels": list(PHASE_CHANNELS), "definition": PHASE_DEFINITION}
    atomic_write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", os.path.join(out_dir, "meta.json"))


def _git_commit() -> str | None:
    from binaural_core.run_record import git_state

    return git_state()["commit"]


# --- reading -------------------------------------------------------------------------------------
def find_meta(mel_dir: str) -> str | None:
    """The ``meta.json`` of a mel dir given as ``{dir}/left/{split}`` (or ``{dir}`` itself)."""
    for up in (mel_dir, os.path.dirname(mel_dir), os.path.dirname(os.path.dirname(mel_dir))):
        path = os.path.join(up, "meta.json")
        if os.path.isfile(path):
            return path
    return None


def check_meta(path: str, mel_cfg: MelConfig, *, against: str = "the expected ones") -> dict:
    """Read one ``meta.json``; refuse an unknown ``format_version`` or other mel parameters than
    ``mel_cfg`` (``against`` names it in the message), in one line."""
    meta = read_json(path)
    if not isinstance(meta.get("mel"), dict):
        raise BadInputError(path, "no 'mel' parameters: not a DiffBinaural mel directory")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise BadInputError(path, f"format_version {version!r}: this code reads mel directories of version "
                                  f"{FORMAT_VERSION}")
    problem = mel_cfg.mismatch(meta["mel"])
    if problem:
        raise BadInputError(path, f"mel parameters differ from {against}: {problem}")
    return meta


def read_meta(mel_dir: str, mel_cfg: MelConfig) -> dict:
    """The checked ``{mel_dir}/meta.json`` of a whole mel directory (it must exist)."""
    return check_meta(os.path.join(mel_dir, "meta.json"), mel_cfg)


def check_mel_dir(mel_dir: str, mel_cfg: MelConfig, *, against: str = "the vocoder config") -> None:
    """Refuse a mel dir (``{dir}/left/{split}`` or ``{dir}``) whose ``meta.json`` does not fit ``mel_cfg``;
    mels made by other tools (no ``meta.json``) pass, and their shapes are checked per file."""
    if not os.path.isdir(mel_dir):
        raise BadInputError(mel_dir, "mel directory not found")
    meta = find_meta(os.path.normpath(mel_dir))
    if meta is not None:
        check_meta(meta, mel_cfg, against=against)


def phase_dir_of(mel_left_dir: str) -> str | None:
    """``{dir}/phase/{split}`` for a left mel dir ``{dir}/left/{split}``, if it exists and the mel dir's
    ``meta.json`` says it holds phase channels (a folder left over from an earlier dump is not used)."""
    left = os.path.normpath(mel_left_dir)
    path = os.path.join(os.path.dirname(os.path.dirname(left)), PHASE_SUBDIR, os.path.basename(left))
    meta = find_meta(left)
    return path if os.path.isdir(path) and meta is not None and "phase" in read_json(meta) else None


def read_npy(path: str) -> np.ndarray:
    """``np.load`` of one array; a file numpy cannot read is one :class:`BadInputError` line."""
    try:
        return np.load(path)
    except Exception as err:  # numpy raises ValueError/OSError/EOFError for broken files
        raise BadInputError(path, f"unreadable .npy ({type(err).__name__}: {err})") from None


def load_mel_file(path: str, cfg: MelConfig) -> np.ndarray:
    """A ``(num_mels, T)`` float32 ln-mel ``.npy``; wrong shape or non-finite values are one line."""
    mel = read_npy(path)
    if mel.ndim == 3 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.ndim != 2 or mel.shape[0] != cfg.num_mels:
        raise BadInputError(path, f"expected a ({cfg.num_mels}, T) mel, found shape {mel.shape}")
    if not np.all(np.isfinite(mel)):
        raise BadInputError(path, "mel contains NaN or inf")
    return mel.astype(np.float32, copy=False)


def load_phase_file(path: str, cfg: MelConfig, *, frames: int | None = None) -> np.ndarray:
    """A ``(2, num_mels, T)`` float32 phase-channel ``.npy``; a missing, broken or misshapen file is one
    line (``frames``: the T it must have)."""
    if not os.path.isfile(path):
        raise BadInputError(path, "phase file not found")
    phase = read_npy(path)
    if phase.ndim != 3 or phase.shape[:2] != (len(PHASE_CHANNELS), cfg.num_mels):
        raise BadInputError(path, f"expected ({len(PHASE_CHANNELS)}, {cfg.num_mels}, T) phase channels, found {phase.shape}")
    if frames is not None and phase.shape[-1] != frames:
        raise BadInputError(path, f"{phase.shape[-1]} frames, the mels have {frames}")
    if not np.all(np.isfinite(phase)):
        raise BadInputError(path, "phase channels contain NaN or inf")
    return phase.astype(np.float32, copy=False)
