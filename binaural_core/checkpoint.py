"""Checkpoint files for both stages: atomic writes, safe loads, latest-step discovery.

* Writes go to a temporary file in the same folder, are flushed to disk, then renamed over the
  target (``os.replace`` is atomic on POSIX): a process killed mid-write leaves the previous file
  intact and never a truncated one under the real name.
* Loads use ``torch.load(..., weights_only=True)``: a pickle that would run code is refused.
  Any unreadable file becomes one :class:`BadInputError` line naming it.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any

import torch

from binaural_core.atomic import atomic_output
from binaural_core.audio import BadInputError


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a partial file under ``path`` (flushed to disk before the rename)."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write a text file (JSON config, meta.json, split CSV) atomically."""
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def load_strict(module: torch.nn.Module, state: Any, path: str, *, config: str = "its config") -> None:
    """``module.load_state_dict(state, strict=True)``; a mismatch is one BadInputError line naming
    ``path`` and saying what differs (shapes first, then missing and unexpected keys)."""
    name = type(module).__name__
    if not isinstance(state, dict):
        raise BadInputError(path, f"not a {name} state_dict (the file holds a {type(state).__name__})")
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in own if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)]
    problems = []
    if reshaped:
        k = reshaped[0]
        problems.append(f"{len(reshaped)} tensor(s) of another shape, e.g. {k}: "
                        f"{tuple(getattr(state[k], 'shape', ()))} in the file, {tuple(own[k].shape)} in the config")
    if missing:
        problems.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    if problems:
        raise BadInputError(path, f"{name} weights do not fit {config}: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint with ``weights_only=True``; a missing, truncated or unsafe file is one line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadInputError(path, "checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle/zip errors of many types: all mean "not a loadable checkpoint"
        text = str(err)
        if "GLOBAL" in text:  # torch's weights-only unpickler met a class/function reference
            reason = "refused: it contains Python objects that are not plain tensors/containers"
        elif "central directory" in text or isinstance(err, EOFError) or _truncated_zip(path):
            reason = "truncated or incomplete file"
        elif "Unsupported operand" in text or "invalid load key" in text:
            reason = "not a PyTorch checkpoint"
        else:
            reason = text.strip().splitlines()[0][:200] if text.strip() else type(err).__name__
        raise BadInputError(path, f"unreadable checkpoint ({reason})") from None


def scan_checkpoint(cp_dir: str | os.PathLike, prefix: str) -> str | None:
    """Newest ``{prefix}{8 digits}`` file in ``cp_dir`` (BigVGAN's naming), or None."""
    pattern = re.compile(re.escape(prefix) + r"(\d{8})$")
    found = [p for p in glob.glob(os.path.join(os.fspath(cp_dir), prefix + "*")) if pattern.search(p)]
    return max(found, key=lambda p: int(pattern.search(p).group(1))) if found else None


def _truncated_zip(path: str) -> bool:
    """A file that starts like torch's zip format but is not a complete zip archive (cut-off write)."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"PK\x03\x04" and not zipfile.is_zipfile(path)
