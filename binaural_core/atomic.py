"""Atomic file output: a file appears under its name complete, or not at all.

Writers go to a temporary file in the same folder and rename it over the target (``os.replace`` is
atomic on POSIX), so a process killed mid-write leaves the previous file intact, never a truncated
one under the real name. Every writer of the project (checkpoints, JSON, mel ``.npy`` files, wavs,
split CSVs) goes through :func:`atomic_output`.
"""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, suffix: str = ""):
    """``with atomic_output(path) as tmp: write(tmp)``: the file appears under ``path`` only when the
    block completes (temp file in the same folder, then ``os.replace``); on any error nothing is left.
    ``suffix``: an extension the writer needs on the temp name (``np.save`` adds ``.npy`` otherwise)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}{suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
