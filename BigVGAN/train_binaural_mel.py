"""Train the binaural vocoder on mels from directories (Stage 1 predictions or ground truth) paired with
{audio_dir}/{name}.wav; without mel dirs, on ground-truth mels computed from the audio.

Left and right are separate items of one shared single-channel generator. All logic: BigVGAN.trainer.
"""

import argparse

from BigVGAN.trainer import add_common_args, run
from binaural_core.audio import BadInputError, cli_main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    add_common_args(p)
    p.add_argument("--mel_left_train_dir", default=None, help="e.g. MELDIR/left/train")
    p.add_argument("--mel_right_train_dir", default=None, help="e.g. MELDIR/right/train")
    p.add_argument("--mel_left_val_dir", default=None)
    p.add_argument("--mel_right_val_dir", default=None)
    args = p.parse_args()
    pairs = []
    for split in ("train", "val"):
        left, right = getattr(args, f"mel_left_{split}_dir"), getattr(args, f"mel_right_{split}_dir")
        if (left is None) != (right is None):
            raise BadInputError(None, f"give both --mel_left_{split}_dir and --mel_right_{split}_dir, or neither")
        pairs.append(None if left is None else (left, right))
    run(args, train_pred_dirs=pairs[0], val_pred_dirs=pairs[1])


def cli() -> None:
    """The console script of this file (pyproject.toml [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
