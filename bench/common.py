"""Shared by the bench scripts (run as ``python bench/NAME.py``, so this folder is on sys.path)."""

from __future__ import annotations

import os

import numpy as np

from binaural_core.audio import LEFT, RIGHT, load_wav
from binaural_core.mel import MelConfig, mel_numpy
from binaural_core.runtime import machine  # noqa: F401  (the bench scripts import it from here)
from DiffBinaural.dataset import layout


def ear_mels(data_root: str, name: str, cfg: MelConfig) -> tuple[np.ndarray, np.ndarray]:
    """One clip's binaural wav ``(2, S)`` at the mel rate and its ln-mels ``(2, M, T)`` (left, right); a RealBinaural
    layout, else a FAIR-Play one (the synthetic generator's ``--format fairplay``; resampled to the mel rate, as
    the FAIR-Play loader does)."""
    path = layout.rb_paths(data_root, name)["binaural"]
    fairplay = not os.path.isfile(path)
    path = layout.fp_paths(data_root, name)["binaural"] if fairplay else path
    wav = load_wav(path, sampling_rate=cfg.sampling_rate, channels=2, resample_ok=fairplay)
    return wav, np.stack([mel_numpy(wav[e], cfg) for e in (LEFT, RIGHT)])


def peak_cpu_tensor_mb(fn) -> tuple[float, object]:
    """(peak MB of CPU tensor memory allocated while ``fn()`` runs, its result).

    From the profiler's allocation events (``profile_memory=True``) summed in time order: the
    working memory of the call itself, which RSS cannot show once the allocator keeps freed pages."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    # allocations and frees are booked to the op that made them (self usage) or, outside any op,
    # to "[memory]" events; summed in time order they give the live tensor memory
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    level = peak = 0
    for e in events:
        level += e.self_cpu_memory_usage
        peak = max(peak, level)
    return peak / 2**20, out
