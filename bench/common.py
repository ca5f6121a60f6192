"""Shared by the bench scripts (run as ``python bench/NAME.py``, so this folder is on sys.path)."""

from __future__ import annotations

import os
import platform

import torch


def machine() -> str:
    """CPU model and core count (and the GPU when there is one): printed beside every figure."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}"
    if torch.cuda.is_available():
        text = f"{torch.cuda.get_device_name(0)}; {text}"
    return text
