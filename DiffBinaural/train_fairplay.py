"""Train Stage 1 on FAIR-Play (official h5 splits as --list_train/--list_val) (layout: docs/formats.md). All logic: DiffBinaural.training.trainer."""

from binaural_core.audio import cli_main
from DiffBinaural.training.trainer import run
from DiffBinaural.utils.arguments import train_parser


def main() -> None:
    run(train_parser(__doc__).parse_args(), dataset_kind="fairplay")


def cli() -> None:
    """The console script of this file (pyproject.toml [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
