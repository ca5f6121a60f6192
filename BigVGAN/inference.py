"""Vocode left/right mel directories into stereo wavs with one (shared) generator.

    python BigVGAN/inference.py --checkpoint_file CKPT/g_00010000 --mel_left_dir MELS/left/test \
        --mel_right_dir MELS/right/test --output_dir OUT [--subtype PCM_16|FLOAT] [--device cuda]

The generator's config is ``config.json`` beside the checkpoint (or ``--config``); a mel dir whose
``meta.json`` mel parameters differ from it is refused. Output: ``{output_dir}/{name}.wav``, 2 channels
(0 = left), ``frames * hop`` samples at the config's rate. Long mels are vocoded in chunks with
overlapping context so that memory does not grow with the clip's length.

Interaural phase: two ears vocoded independently have no interaural phase (no ITD). When the mel dir
has phase channels (``{dir}/phase/{split}/{name}.npy``, beside ``{dir}/left/{split}``; or
``--phase_dir``), each clip's ears are given that phase (``BigVGAN.interaural.impose_ipd``: every ear
keeps its magnitude, the pair is rotated apart by the predicted IPD per bin); ``--no-phase`` skips it.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from BigVGAN.checkpoint import safe_load
from BigVGAN.interaural import impose_ipd, load_phase_file
from BigVGAN.meldataset import MelConfig, check_mel_dir, load_mel_file
from binaural_core.audio import BadInputError, cli_main, save_wav


def default_phase_dir(mel_left_dir: str) -> str | None:
    """``{dir}/phase/{split}`` for a left mel dir ``{dir}/left/{split}``, if it exists and the mel dir's
    ``meta.json`` says it holds phase channels (a folder left over from an earlier dump is not used)."""
    from BigVGAN.meldataset import find_meta, read_json

    left = os.path.normpath(mel_left_dir)
    path = os.path.join(os.path.dirname(os.path.dirname(left)), "phase", os.path.basename(left))
    meta = find_meta(left)
    return path if os.path.isdir(path) and meta is not None and "phase" in read_json(meta) else None


def load_generator(checkpoint_file: str, *, config: str | None = None, device: str | torch.device = "cpu",
                   compile: bool = False, pack: bool = True):
    """Generator from a ``g_XXXXXXXX`` / ``bigvgan_generator.pt`` file, weight norm removed, eval mode;
    ``compile``: fused ``torch.compile``d activations (``BigVGAN.compile_activations``); ``pack``: CPU
    convolutions on weights pre-packed for oneDNN (``BigVGAN.pack_convolutions``; a second copy of
    the weights in memory).

    Returns (generator, h, mel_cfg).
    """
    from BigVGAN.bigvgan import BigVGAN, load_config

    config = config or os.path.join(os.path.dirname(os.path.abspath(checkpoint_file)), "config.json")
    h = load_config(config)
    generator = BigVGAN(h)
    state = safe_load(checkpoint_file, "cpu")
    state = state.get("generator", state) if isinstance(state, dict) else state
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BadInputError(checkpoint_file, f"generator weights do not fit {config} ({str(err).splitlines()[0]})") from None
    generator.remove_weight_norm()
    generator.compile_activations(compile)
    generator.pack_convolutions(pack)
    return generator.eval().to(device), h, MelConfig.from_dict(dict(h), source=config)


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint_file", required=True)
    p.add_argument("--config", default=None, help="default: config.json beside the checkpoint")
    p.add_argument("--mel_left_dir", required=True)
    p.add_argument("--mel_right_dir", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--subtype", default="PCM_16", choices=("PCM_16", "PCM_24", "FLOAT"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--chunk_frames", type=int, default=512)
    p.add_argument("--phase_dir", default=None,
                   help="interaural phase channels {name}.npy (default: {dir}/phase/{split} beside the left mel dir, if any)")
    p.add_argument("--phase", action=argparse.BooleanOptionalAction, default=True,
                   help="apply the interaural phase when there is one (--no-phase: the ears as vocoded)")
    add_speed_flags(p)
    args = p.parse_args()
    phase_dir = args.phase_dir or default_phase_dir(args.mel_left_dir)
    if args.phase_dir and not os.path.isdir(args.phase_dir):
        raise BadInputError(args.phase_dir, "phase directory not found")
    phase_dir = phase_dir if args.phase else None
    generator, _, cfg = load_generator(args.checkpoint_file, config=args.config, device=args.device,
                                       compile=args.compile, pack=args.pack)
    for d in (args.mel_left_dir, args.mel_right_dir):
        check_mel_dir(d, cfg)
    names = [sorted(f[:-4] for f in os.listdir(d) if f.endswith(".npy")) for d in (args.mel_left_dir, args.mel_right_dir)]
    if names[0] != names[1]:
        raise BadInputError(args.mel_left_dir, f"left and right mel dirs hold different clips (e.g. "
                                               f"{sorted(set(names[0]) ^ set(names[1]))[:3]})")
    from tqdm import tqdm

    for name in tqdm(names[0], desc="vocoding"):
        left, right = (load_mel_file(os.path.join(d, f"{name}.npy"), cfg) for d in (args.mel_left_dir, args.mel_right_dir))
        if left.shape != right.shape:
            raise BadInputError(os.path.join(args.mel_right_dir, f"{name}.npy"), f"shape {right.shape} != left {left.shape}")
        wav = vocode(generator, torch.from_numpy(np.stack([left, right])), hop=cfg.hop_size, chunk_frames=args.chunk_frames)
        if phase_dir is not None:
            wav = impose_ipd(wav, torch.from_numpy(load_phase_file(os.path.join(phase_dir, f"{name}.npy"), cfg,
                                                                   frames=left.shape[1])), cfg)
        save_wav(os.path.join(args.output_dir, f"{name}.wav"), wav.numpy(), cfg.sampling_rate, subtype=args.subtype)
    print(f"wrote {len(names[0])} stereo wav(s) to {args.output_dir}"
          + (f" with the interaural phase of {phase_dir}" if phase_dir else " (no interaural phase)"))


if __name__ == "__main__":
    cli_main(main)
