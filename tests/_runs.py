"""A Stage 1 run folder written from a model, as the loaders read one (``config.json``, ``unet_best.pth``,
``frame_best.pth``): for tests that need a run without training one."""

from __future__ import annotations

import os

from binaural_core.checkpoint import atomic_save
from DiffBinaural.model import Stage1Model
from DiffBinaural.utils.arguments import model_config, save_model_config, train_parser


def micro_config(*flags: str) -> dict:
    """The model config ``train_*.py --config micro FLAGS`` would save (no data read)."""
    args = train_parser("x").parse_args(["--data_root", "-", "--list_train", "-", "--list_val", "-",
                                         "--config", "micro", *flags])
    return model_config(args)


def write_run(run_dir, cfg: dict, model: Stage1Model | None = None) -> str:
    """Write ``cfg`` and ``model``'s weights (a fresh :class:`Stage1Model` of ``cfg`` if None) to ``run_dir``."""
    model = Stage1Model(cfg) if model is None else model
    save_model_config(cfg, os.path.join(run_dir, "config.json"))
    atomic_save(model.unet.state_dict(), os.path.join(run_dir, "unet_best.pth"))
    atomic_save(model.encoder.state_dict(), os.path.join(run_dir, "frame_best.pth"))
    return str(run_dir)
