"""Fine-tune the binaural vocoder with scheduled sampling: each item takes the Stage 1 mel with probability
p(epoch) and the ground-truth mel (computed from {audio_dir}/{name}.wav) otherwise.

p(epoch) is piecewise linear through --ss_schedule points (default the original's: 0 before epoch 10,
0 -> 0.5 at 30, -> 0.9 at 60, then 1.0) and is logged. All logic: BigVGAN.trainer.
"""

import argparse

from BigVGAN.trainer import DEFAULT_SCHEDULE, add_common_args, parse_schedule, run
from binaural_core.audio import BadInputError, cli_main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    add_common_args(p)
    p.add_argument("--mel_pred_left_dir", required=True, help="Stage 1 left mels of the training clips")
    p.add_argument("--mel_pred_right_dir", required=True, help="Stage 1 right mels of the training clips")
    p.add_argument("--mel_pred_left_val_dir", default=None, help="validation: Stage 1 mels (default: GT mels)")
    p.add_argument("--mel_pred_right_val_dir", default=None)
    p.add_argument("--use_scheduled_sampling", action=argparse.BooleanOptionalAction, default=True,
                   help="p(epoch) from --ss_schedule; --no-use_scheduled_sampling: always the Stage 1 mel")
    p.add_argument("--ss_schedule", default=DEFAULT_SCHEDULE, help="points EPOCH:P (default %(default)r)")
    args = p.parse_args()
    if (args.mel_pred_left_val_dir is None) != (args.mel_pred_right_val_dir is None):
        raise BadInputError(None, "give both --mel_pred_left_val_dir and --mel_pred_right_val_dir, or neither")
    val = None if args.mel_pred_left_val_dir is None else (args.mel_pred_left_val_dir, args.mel_pred_right_val_dir)
    schedule = parse_schedule(args.ss_schedule) if args.use_scheduled_sampling else None
    run(args, train_pred_dirs=(args.mel_pred_left_dir, args.mel_pred_right_dir), val_pred_dirs=val,
        schedule=schedule)


def cli() -> None:
    """The console script of this file (pyproject.toml [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
