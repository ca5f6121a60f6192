"""The run record: ``run.json`` beside every training run's ``config.json``, so that any number in a table
can be traced to the exact run that made it.

It holds every flag of the run (the parsed arguments, defaults included), the command line, the git
commit and whether the working tree had uncommitted changes, the library versions (torch, CUDA, cuDNN,
Python), the world size and the machine. A resumed run appends its own entry under ``"resumed"`` instead
of replacing the first one. The git commit of a run is also what :mod:`binaural_core.mel_dir` writes into
``meta.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

RUN_FILE = "run.json"


def git_state(path: str | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout holding ``path`` (this code);
    dirty = changed or untracked files (ignored ones, e.g. ``runs/``, do not count)."""
    cwd = os.path.dirname(os.path.abspath(path or __file__))

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=cwd)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=normal")  # a new, unadded file counts
    return {"commit": commit.strip() if commit else None, "dirty": None if status is None else bool(status.strip())}


def versions() -> dict[str, Any]:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}


def run_record(args: Any, *, world_size: int) -> dict[str, Any]:
    """What ``run.json`` holds for the run of the parsed ``args``."""
    from binaural_core.runtime import machine

    flags = {k: v for k, v in sorted(vars(args).items()) if _jsonable(v)}
    return {"flags": flags, "argv": list(sys.argv), "git": git_state(), "versions": versions(),
            "world_size": int(world_size), "machine": machine(), "host": platform.node(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_run_record(run_dir: str, args: Any, *, world_size: int, resumed: bool = False) -> str:
    """Write ``{run_dir}/run.json`` (atomically); a resumed run adds its record under ``"resumed"``."""
    from binaural_core.checkpoint import atomic_write_text

    path = os.path.join(run_dir, RUN_FILE)
    record = run_record(args, world_size=world_size)
    if resumed and os.path.isfile(path):
        with open(path) as f:
            first = json.load(f)
        first.setdefault("resumed", []).append(record)
        record = first
    atomic_write_text(json.dumps(record, indent=2) + "\n", path)
    return path


def read_run_record(run_dir: str) -> dict[str, Any] | None:
    path = os.path.join(run_dir, RUN_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False
