"""Write Stage 1 mels (or, with --mode gt, ground-truth mels) of FAIR-Play clips (--list_test: an official split .h5) to a mel directory."""

from binaural_core.audio import cli_main
from DiffBinaural.inference.stage1 import run_inference
from DiffBinaural.utils.arguments import inference_parser


def main() -> None:
    run_inference(inference_parser(__doc__).parse_args(), dataset_kind="fairplay")


def cli() -> None:
    """The console script of this file (pyproject.toml [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
