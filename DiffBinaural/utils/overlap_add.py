"""Full-clip inference: cut a clip into fixed-length windows, generate each, and cross-fade them back.

The original code cropped 8 frames at both ends of every window and never wrote the
clip's first 8 frames or its tail, which stayed at exactly 0 (a loud log-mel). Here:

- :func:`window_starts` covers [0, total) completely; the last window is flush with the clip's end.
- A clip shorter than one window is padded with :func:`pad_frames` (edge-replicate by default) and the
  padded frames are dropped again by :func:`overlap_add` (pass the unpadded ``total_frames``).
- :func:`crossfade_weights` is 1 inside a window and ramps down (raised cosine) towards its edges, so
  overlapping windows blend smoothly and frames near a window's edge, where the network saw less
  context, count less. The ramps never reach 0, so the clip's first and last frames, covered by one
  window only, still get a positive weight and are reconstructed from that window.
- :func:`overlap_add` returns Σ_i w_i · chunk_i / Σ_i w_i per frame, accumulated in float64 so that
  identical chunks (e.g. a constant, or exact crops of one signal) are reproduced bit-exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

__all__ = ["window_starts", "pad_frames", "extract_windows", "crossfade_weights", "overlap_add"]


def window_starts(total_frames: int, window: int = 80, hop: int = 20) -> list[int]:
    """Start frames of windows of length ``window`` every ``hop`` frames, covering [0, total_frames).

    The last window is flush with the end (start = total - window), even if that breaks the hop.
    If ``total_frames <= window`` there is a single window at 0 (pad the input with :func:`pad_frames`).
    The default hop of 20 frames (a quarter window) is the original's stride.
    """
    if total_frames < 1:
        raise ValueError(f"total_frames must be >= 1, got {total_frames}")
    if not 1 <= hop <= window:
        raise ValueError(f"hop must lie in [1, window={window}] so that windows leave no gap, got {hop}")
    if total_frames <= window:
        return [0]
    starts = list(range(0, total_frames - window + 1, hop))
    if starts[-1] + window < total_frames:
        starts.append(total_frames - window)
    return starts


def pad_frames(
    x: torch.Tensor, window: int, mode: Literal["replicate", "reflect"] = "replicate"
) -> torch.Tensor:
    """Right-pad the last (frame) axis of ``x`` (…, F) to at least ``window`` frames.

    ``"replicate"`` repeats the last frame (works for any F >= 1; a steady continuation of the sound);
    ``"reflect"`` mirrors the frames before the last one (needs F > window - F). Returns ``x`` itself if
    F >= window. Padding is appended at the end, so frame indices of the real content are unchanged.
    """
    n = x.shape[-1]
    pad = window - n
    if pad <= 0:
        return x
    if mode == "replicate":
        tail = x[..., -1:].expand(*x.shape[:-1], pad)
    elif mode == "reflect":
        if pad > n - 1:
            raise ValueError(f"reflect padding of {n} frames to {window} needs more than {pad} frames")
        tail = x[..., n - 1 - pad : n - 1].flip(-1)
    else:
        raise ValueError(f"mode must be 'replicate' or 'reflect', got {mode!r}")
    return torch.cat([x, tail], dim=-1)


def extract_windows(x: torch.Tensor, starts: Sequence[int], window: int) -> torch.Tensor:
    """Stack the crops ``x[..., s:s+window]`` for each start: (…, F) -> (n, …, window). F must be >= window."""
    if x.shape[-1] < window:
        raise ValueError(f"input has {x.shape[-1]} frames < window {window}; pad it with pad_frames first")
    return torch.stack([x[..., s : s + window] for s in starts])


def crossfade_weights(
    window: int, overlap: int, *, shape: Literal["cosine", "linear"] = "cosine"
) -> torch.Tensor:
    """(window,) float32 weights: 1 in the middle, ``overlap``-frame ramps at both ends, never 0.

    Ramp sample i (0 ≤ i < overlap, counted from the window's edge) sits at x = (i + 0.5)/overlap, so
    it lies strictly inside (0, 1): ``"cosine"`` w = sin²(π/2 · x) (a raised-cosine / Hann half),
    ``"linear"`` w = x. Requires 0 ≤ 2·overlap ≤ window; overlap = 0 gives all ones.
    A good choice is overlap ≈ window - hop for hops ≥ window/2, else ≈ window/4.
    """
    if window < 1 or overlap < 0 or 2 * overlap > window:
        raise ValueError(
            f"need window >= 1 and 0 <= 2*overlap <= window, got window={window}, overlap={overlap}"
        )
    if shape not in ("cosine", "linear"):
        raise ValueError(f"shape must be 'cosine' or 'linear', got {shape!r}")
    w = torch.ones(window, dtype=torch.float64)
    if overlap > 0:
        x = (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap
        ramp = torch.sin(0.5 * math.pi * x) ** 2 if shape == "cosine" else x
        w[:overlap] = ramp
        w[window - overlap :] = ramp.flip(0)
    return w.float()


def overlap_add(
    chunks: torch.Tensor, starts: Sequence[int], total_frames: int, window_weights: torch.Tensor
) -> torch.Tensor:
    """Weighted overlap-add of windows back into one clip.

    Args:
        chunks: (n, C, M, window) predictions, chunk i covering frames [starts[i], starts[i] + window).
        starts: n start frames (from :func:`window_starts`).
        total_frames: length T of the output; frames of a window past T (padding) are dropped.
        window_weights: (window,) positive weights (from :func:`crossfade_weights`).
    Returns:
        (C, M, T) in the dtype of ``chunks``: out[..., f] = Σ_i w_i(f) chunk_i(f) / Σ_i w_i(f).
    Raises:
        ValueError if some frame in [0, T) is covered by no window (or only by zero weights).
    """
    n, c, m, window = chunks.shape
    if len(starts) != n:
        raise ValueError(f"{n} chunks but {len(starts)} starts")
    if window_weights.shape != (window,):
        raise ValueError(f"window_weights must have shape ({window},), got {tuple(window_weights.shape)}")
    w = window_weights.to(device=chunks.device, dtype=torch.float64)
    acc = torch.zeros(c, m, total_frames, dtype=torch.float64, device=chunks.device)
    wsum = torch.zeros(total_frames, dtype=torch.float64, device=chunks.device)
    for chunk, s in zip(chunks, starts):
        if s < 0 or s >= total_frames:
            raise ValueError(f"window start {s} outside [0, {total_frames})")
        e = min(s + window, total_frames)
        acc[..., s:e] += chunk[..., : e - s].double() * w[: e - s]
        wsum[s:e] += w[: e - s]
    if not bool((wsum > 0).all()):
        missing = int((wsum <= 0).sum())
        raise ValueError(f"{missing} of {total_frames} frames are covered by no window")
    return (acc / wsum).to(chunks.dtype)
