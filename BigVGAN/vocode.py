"""The vocoder as a library: load a generator, vocode long mels in chunks (used by the script
``BigVGAN/inference.py`` and by ``binauralize.py`` / :mod:`DiffBinaural.inference.pipeline`).

:func:`iter_vocode` cuts a long mel into chunks of ``chunk_frames`` frames vocoded with
``CONTEXT_FRAMES`` frames of context on each side, so memory does not grow with the clip's length
and the chunk seams are inaudible; any frame range of a clip can be vocoded on the whole clip's
chunk grid, which makes piece-by-piece vocoding equal one pass.
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from binaural_core.audio import BadInputError
from binaural_core.checkpoint import load_strict, safe_load
from binaural_core.mel import MelConfig


def load_generator(checkpoint_file: str, *, config: str | None = None, device: str | torch.device = "cpu",
                   compile: bool = False, pack: bool = True):
    """Generator from a ``g_XXXXXXXX`` / ``bigvgan_generator.pt`` file, weight norm removed, eval mode;
    ``compile``: fused ``torch.compile``d activations (``BigVGAN.compile_activations``); ``pack``: CPU
    convolutions on weights pre-packed for oneDNN (``BigVGAN.pack_convolutions``; a second copy of
    the weights in memory).

    Returns (generator, h, mel_cfg).
    """
    from BigVGAN.bigvgan import GENERATOR_FILES, BigVGAN, load_config
    from binaural_core.hub import resolve

    checkpoint_file = resolve(checkpoint_file, files=GENERATOR_FILES, what="a vocoder generator")
    if os.path.isdir(checkpoint_file):  # a hub snapshot or a save_pretrained folder
        checkpoint_file = os.path.join(checkpoint_file, GENERATOR_FILES[1])
    state = generator_state(checkpoint_file)  # before the config: a wrong file is named for what it is
    config = config or os.path.join(os.path.dirname(os.path.abspath(checkpoint_file)), "config.json")
    h = load_config(config)
    generator = BigVGAN(h)
    load_strict(generator, state, checkpoint_file, config=config)
    generator.remove_weight_norm()
    generator.compile_activations(compile)
    generator.pack_convolutions(pack)
    return generator.eval().to(device), h, MelConfig.from_dict(dict(h), source=config)


def generator_state(checkpoint_file: str) -> dict:
    """The generator's state_dict of a ``g_XXXXXXXX`` (``{"generator": ...}``) or ``bigvgan_generator.pt``
    file; any other checkpoint is one line saying what it is (Stage 1 weights, a ``do_`` file)."""
    state = safe_load(checkpoint_file, "cpu")
    if isinstance(state, dict) and isinstance(state.get("generator"), dict):
        return state["generator"]
    keys = list(state) if isinstance(state, dict) else []
    if any(k.startswith("conv_pre.") for k in keys):  # every BigVGAN generator starts with conv_pre
        return state
    if {"mpd", "optim_g"} & set(keys) or any(k.startswith("mpd.") for k in keys):
        what = "a vocoder discriminator/optimizer checkpoint (do_XXXXXXXX)"
    elif any(k.startswith(("time_embed.", "backbone.")) or k in ("mono_null", "null_token") for k in keys) \
            or _stage1_config_beside(checkpoint_file):
        what = "a Stage 1 checkpoint (UNet or visual encoder weights)"
    else:
        what = "a checkpoint without conv_pre.* weights"
    raise BadInputError(checkpoint_file, f"{what}, not a vocoder generator: pass a g_XXXXXXXX or "
                                         "bigvgan_generator.pt file (with the vocoder's config.json beside it)")


def _stage1_config_beside(checkpoint_file: str) -> bool:
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint_file)), "config.json")
    try:
        with open(path) as f:
            return "unet_channels" in json.load(f)
    except (OSError, ValueError):
        return False


def add_speed_flags(p: argparse.ArgumentParser) -> None:
    """``--compile`` and ``--pack``, shared by this script and ``binauralize.py``."""
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="vocoder with fused torch.compile'd activations: 1.2-1.6x (full) faster on CPU after a one-time "
                        "compile of 5-15 s (needs a C++ compiler; Triton on CUDA); see bench/README.md")
    p.add_argument("--pack", action=argparse.BooleanOptionalAction, default=True,
                   help="CPU vocoder convolutions on weights pre-packed once for oneDNN (faster; a second copy of "
                        "the weights in memory, ~0.45 GB for the full model)")


CONTEXT_FRAMES = 32  # mel frames of context on each side of a vocoder chunk


@torch.no_grad()
def iter_vocode(generator, mel: torch.Tensor, *, hop: int, chunk_frames: int = 512,
                context_frames: int = CONTEXT_FRAMES, frames: tuple[int, int] | None = None, mel_offset: int = 0,
                total: int | None = None):
    """Yield the waveform of (C, M, T) ln-mels chunk by chunk: (C, chunk * hop) tensors, in order.

    Each chunk of ``chunk_frames`` frames is vocoded with ``context_frames`` of neighbouring mel on
    both sides and only its own samples are kept: memory stays bounded whatever T is, and the result
    equals a one-pass output up to the generator's (small) dependence on frames further away.

    Streaming a longer clip piece by piece: ``mel`` may hold only the frames ``[mel_offset, ...)`` of a
    clip of ``total`` frames, and ``frames = (f0, f1)`` (on multiples of ``chunk_frames``) selects the
    chunks to vocode; ``mel`` must then cover ``[f0 - context, f1 + context)`` within the clip. The
    chunks and their context are the whole clip's, so the samples are the same as in one call.
    """
    device = next(generator.parameters()).device
    total = mel_offset + mel.shape[-1] if total is None else total
    f0, f1 = frames or (0, total)
    if f0 % chunk_frames or (f1 % chunk_frames and f1 != total):
        raise ValueError(f"frames {(f0, f1)} must start and end on multiples of chunk_frames {chunk_frames} "
                         f"(or end with the clip)")
    if mel_offset > max(0, f0 - context_frames) or mel_offset + mel.shape[-1] < min(total, f1 + context_frames):
        raise ValueError(f"mel frames [{mel_offset}, {mel_offset + mel.shape[-1]}) do not cover frames {f0}..{f1} "
                         f"with {context_frames} frames of context")
    for start in range(f0, f1, chunk_frames):
        stop = min(f1, start + chunk_frames)
        lo, hi = max(0, start - context_frames), min(total, stop + context_frames)
        wav = generator(mel[:, :, lo - mel_offset:hi - mel_offset].to(device)).float().cpu()[:, 0]  # (C, (hi-lo)*hop)
        yield wav[:, (start - lo) * hop:(stop - lo) * hop]


def vocode(generator, mel: torch.Tensor, *, hop: int, chunk_frames: int = 512,
           context_frames: int = CONTEXT_FRAMES) -> torch.Tensor:
    """(C, M, T) ln-mels -> (C, T * hop) waveforms (the C channels go through the generator as a batch)."""
    return torch.cat(list(iter_vocode(generator, mel, hop=hop, chunk_frames=chunk_frames,
                                      context_frames=context_frames)), dim=1)
