"""Vocode left/right mel directories into stereo wavs with one (shared) generator.

    python BigVGAN/inference.py --checkpoint_file CKPT/g_00010000 --mel_left_dir MELS/left/test \
        --mel_right_dir MELS/right/test --output_dir OUT [--subtype PCM_16|FLOAT] [--device cuda]

The generator's config is ``config.json`` beside the checkpoint (or ``--config``); a mel dir whose
``meta.json`` mel parameters differ from it is refused. Output: ``{output_dir}/{name}.wav``, 2 channels
(0 = left), ``frames * hop`` samples at the config's rate. Long mels are vocoded in chunks with
overlapping context so that memory does not grow with the clip's length.

Interaural phase: two ears vocoded independently have no interaural phase (no ITD). When the mel dir
has phase channels (``{dir}/phase/{split}/{name}.npy``, beside ``{dir}/left/{split}``; or
``--phase_dir``), each clip's ears are given that phase (``binaural_core.interaural.impose_ipd``: every ear
keeps its magnitude, the pair is rotated apart by the predicted IPD per bin); ``--no-phase`` skips it.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from BigVGAN.vocode import add_speed_flags, load_generator, vocode
from binaural_core.audio import BadInputError, cli_main, save_wav
from binaural_core.interaural import impose_ipd
from binaural_core.mel_dir import check_mel_dir, load_mel_file, load_phase_file, phase_dir_of


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
    phase_dir = args.phase_dir or phase_dir_of(args.mel_left_dir)
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

    for name in tqdm(names[0], desc="vocoding", disable=None):  # a bar on a terminal only
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


def cli() -> None:
    """The console script of this file (pyproject.toml [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
