"""Command-line flags of the Stage 1 scripts, and the run config saved beside every checkpoint.

Flags fall in two groups (aesthetics §3 B.7): the *model config* (network sizes, encoder, diffusion,
mel and crop shapes) is written to ``{ckpt}/{id}/config.json`` and rebuilds the model at test time;
*run options* (paths, workers, logging, epochs) are not part of it.

Named presets: ``--config tiny`` (or a path, ``--config DiffBinaural/configs/tiny.json``) sets model
flags from a JSON file; flags given on the command line override it. ``configs/base.json`` = the
defaults below, ``tiny.json`` = the CPU demo size, ``micro.json`` = the test suite's size. A preset
key that is not a model flag stops with one line naming the file.
"""

from __future__ import annotations

import argparse
import json
import os

from binaural_core.audio import BadInputError
from binaural_core.mel import DEFAULT_CONFIG, read_json
from DiffBinaural.dataset.frames import VISUAL_TOKENS
from DiffBinaural.dataset.layout import FPS
from DiffBinaural.modules.visual_encoder import DEFAULT_PRETRAINED, GRID_POOLS

# Keys of config.json: everything needed to rebuild the networks and the diffusion process.
MODEL_KEYS = (
    "mel_config", "mel", "segment_frames", "num_frames", "max_sources", "img_size", "fps",
    "arch_frame", "pretrained_frame", "context_dim",
    "unet_channels", "unet_mults", "num_res_blocks", "attn_levels", "num_heads", "dropout", "norm_groups",
    "num_train_timesteps", "target", "prediction_type", "loss", "p_drop_visual", "p_drop_mono",
    "interaural_phase", "residual_scale", "box_source", "visual_tokens", "grid", "frame_size",
    "grid_pool", "side_weight", "grid_layout", "grid_select", "token_audio",
    "binding_weight",
)
# Keys added after the first release, with the value that reproduces older runs' behaviour: a
# config.json without them still loads (and behaves as before).
# box_source (what the training set gave: "detections" or "whole_frame") is set by the trainer from
# its data, not by a flag; None = a run from before it was recorded.
# visual_tokens / grid / frame_size: runs from before grid tokens had box tokens only.
OPTIONAL_KEYS = {"interaural_phase": False, "residual_scale": 2.0, "box_source": None, "visual_tokens": "boxes",
                 "grid": None, "frame_size": None, "grid_pool": "mean", "side_weight": 0.0,
                 "grid_layout": False, "grid_select": 0, "token_audio": False,
                 "binding_weight": 0.0}
DATA_KEYS = ("box_source",)  # model keys the trainer fills from its dataset
PRESET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
PRESET_KEYS = tuple(k for k in MODEL_KEYS if k not in ("mel", "mel_config", *DATA_KEYS))


def preset_path(name: str) -> str:
    """``tiny`` → ``DiffBinaural/configs/tiny.json``; a path is returned as given."""
    if os.sep in name or name.endswith(".json"):
        return name
    return os.path.join(PRESET_DIR, f"{name}.json")


def read_preset(name: str, parser: argparse.ArgumentParser) -> dict:
    """A preset's flags, checked against the parser: unknown keys or values outside a flag's choices stop."""
    path = preset_path(name)
    if not os.path.isfile(path):
        known = ", ".join(sorted(f[:-5] for f in os.listdir(PRESET_DIR) if f.endswith(".json")))
        raise BadInputError(path, f"preset not found (named presets: {known})")
    values = read_json(path)
    if not isinstance(values, dict):
        raise BadInputError(path, "a preset is a JSON object of model flags")
    unknown = sorted(set(values) - set(PRESET_KEYS))
    if unknown:
        raise BadInputError(path, f"unknown preset key(s): {', '.join(unknown)} (model flags: {', '.join(PRESET_KEYS)})")
    for action in parser._actions:
        if action.dest in values and action.choices is not None and values[action.dest] not in action.choices:
            raise BadInputError(path, f"{action.dest}: {values[action.dest]!r} is not one of {list(action.choices)}")
    return values


class PresetParser(argparse.ArgumentParser):
    """An ArgumentParser whose ``--config PRESET`` supplies defaults that explicit flags override."""

    def parse_known_args(self, args=None, namespace=None):
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--config", default=None)
        known, _ = pre.parse_known_args(args)
        if known.config is not None:
            self.set_defaults(**read_preset(known.config, self))
        return super().parse_known_args(args, namespace)


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--config", default=None, metavar="PRESET",
                   help="named model size (tiny, micro, base = the original recipe, gpu = base size with the measured recipe: "
                        "DiffBinaural/configs/) or a JSON file of model flags; "
                        "flags on the command line override it")
    g.add_argument("--id", default="realBinaural", help="run name: outputs go to {ckpt}/{id}/")
    g.add_argument("--data_root", required=True, help="dataset root (RealBinaural or FAIR-Play layout)")
    g.add_argument("--ckpt", default="./checkpoints", help="folder holding the run folders")
    g.add_argument("--num_gpus", type=int, default=1, help="local workers to start (ignored under torchrun)")
    g.add_argument("--batch_size_per_gpu", type=int, default=8)
    g.add_argument("--workers", type=int, default=2, help="DataLoader workers per rank")
    g.add_argument("--seed", type=int, default=1234)
    g.add_argument("--skip_bad", action=argparse.BooleanOptionalAction, default=False,
                   help="skip broken clips (counted in one line) instead of stopping")

    g = p.add_argument_group("data (saved in config.json)")
    g.add_argument("--mel_config", default=DEFAULT_CONFIG, help="vocoder JSON config: the mel parameters")
    g.add_argument("--segment_frames", type=int, default=80, help="training crop in mel frames (x256 samples)")
    g.add_argument("--num_frames", type=int, default=5, help="video frames per crop (L)")
    g.add_argument("--max_sources", type=int, default=4, help="source slots per frame (N)")
    g.add_argument("--img_size", type=int, default=224, help="side of each source crop")
    g.add_argument("--fps", type=float, default=FPS, help="frame rate of the extracted frames")

    g = p.add_argument_group("visual encoder (saved in config.json)")
    g.add_argument("--arch_frame", choices=("cnn", "resnet18", "clip"), default="cnn")
    g.add_argument("--pretrained_frame", default="auto",
                   help="hub id or local folder of the resnet18/clip weights; 'auto': microsoft/resnet-18 or "
                        "openai/clip-vit-base-patch32 (downloads); 'none': random init (offline tests)")
    g.add_argument("--context_dim", type=int, default=256, help="visual token width")
    g.add_argument("--visual_tokens", choices=VISUAL_TOKENS, default=None,
                   help="boxes: a token per detection box; grid: a token per cell of the whole frame's feature "
                        "map (no detector needed); both: the two sets (default: boxes for RealBinaural, grid for "
                        "FAIR-Play)")
    g.add_argument("--grid", type=int, nargs=2, default=None, metavar=("GY", "GX"),
                   help="grid tokens: cells per frame (default: 4 rows, columns to suit --frame_size's aspect, "
                        "4 x 8 for 2:1 frames)")
    g.add_argument("--grid_pool", choices=GRID_POOLS, default=None,
                   help="grid tokens: read each kept cell as a crop of the full-size frame centred where the cell is "
                        "salient (crops; cnn only; --frame_size defaults to short side 4.5 x --img_size), average "
                        "each cell of the feature map at its centre (mean), or pool it with learned attention and "
                        "place the token at the attention's centroid (attention); default: crops with --arch_frame "
                        "cnn, mean with resnet18 / clip")
    g.add_argument("--grid_layout", action=argparse.BooleanOptionalAction, default=None,
                   help="grid tokens: add one token a frame that reads all its cells in order (a linear map of the "
                        "flattened grid), so where things are is in which inputs they fill; default: on with grid tokens")
    g.add_argument("--grid_select", type=int, default=None, metavar="K",
                   help="grid tokens: keep each frame's K cells whose features differ most from its median cell "
                        "(where the objects are; the layout token still reads all); 0 = all cells; default: 6")
    g.add_argument("--frame_size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="grid tokens: the whole frame is resized keeping its aspect into H x W (centred, zero "
                        "borders); default: the training frames' aspect, short side max(--img_size, 64)")

    g = p.add_argument_group("UNet (saved in config.json)")
    g.add_argument("--unet_channels", type=int, default=64)
    g.add_argument("--unet_mults", type=int, nargs="+", default=[1, 2, 4])
    g.add_argument("--num_res_blocks", type=int, default=2)
    g.add_argument("--attn_levels", type=int, nargs="*", default=[1, 2])
    g.add_argument("--num_heads", type=int, default=4)
    g.add_argument("--dropout", type=float, default=0.1)
    g.add_argument("--norm_groups", type=int, default=32)
    g.add_argument("--token_audio", action=argparse.BooleanOptionalAction, default=False,
                   help="each visual token also sees a summary of the mono (per-band level and spread), so that "
                        "it can tell whether its object is the one heard (the sound-to-box binding)")

    g = p.add_argument_group("diffusion (saved in config.json)")
    g.add_argument("--num_train_timesteps", type=int, default=1000)
    g.add_argument("--target", choices=("binaural", "residual"), default="binaural",
                   help="diffusion variable: the normalised L/R mels, or their difference from the mono mel")
    g.add_argument("--residual_scale", type=float, default=2.0,
                   help="--target residual: the residual's factor in the diffusion variable (DiffBinaural/model.py)")
    g.add_argument("--prediction_type", choices=("epsilon", "v_prediction", "sample"), default="epsilon",
                   help="network output: noise, velocity, or the clean mels (x0)")
    g.add_argument("--loss", choices=("l1", "l2"), default="l1")
    g.add_argument("--p_drop_visual", type=float, default=0.1, help="condition dropout for guidance")
    g.add_argument("--p_drop_mono", type=float, default=0.1)
    g.add_argument("--side_weight", type=float, default=0.0, metavar="LAMBDA",
                   help="add LAMBDA x the error of L - R to the per-ear loss (0: the per-ear loss alone)")
    g.add_argument("--binding_weight", type=float, default=0.0, metavar="LAMBDA",
                   help="with --token_audio: add LAMBDA x a per-token audio-visual correspondence loss (is this "
                        "token's object heard in this mono, or in another clip's?) to the diffusion loss")
    g.add_argument("--interaural_phase", action=argparse.BooleanOptionalAction, default=False,
                   help="also generate the interaural phase per mel band and frame (2 more channels: the complex "
                        "interaural coherence, binaural_core.interaural); the renderers then restore ITD")

    g = p.add_argument_group("sampling")
    g.add_argument("--sampler", choices=("ddim", "dpmsolver++"), default="ddim")
    g.add_argument("--steps", type=int, default=25, help="sampling steps")
    g.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0 = deterministic)")
    g.add_argument("--guidance_scale", type=float, default=1.0, help="classifier-free guidance on the video")
    g.add_argument("--num_samples", type=int, default=1,
                   help="inference: average this many samples per window (the posterior mean: lower RMSE, smoother "
                        "gains; costs that many times the sampling); validation always draws one")
    g.add_argument("--flip_tta", action=argparse.BooleanOptionalAction, default=False,
                   help="inference: also sample the left-right mirrored video (--num_samples more samples, ears "
                        "swapped back) and average all; assumes a symmetric head")


def train_parser(description: str) -> argparse.ArgumentParser:
    p = PresetParser(description=description)
    _common(p)
    g = p.add_argument_group("training")
    g.add_argument("--list_train", required=True, help="train split: CSV (RealBinaural) or .h5 (FAIR-Play)")
    g.add_argument("--list_val", required=True, help="val split: CSV (RealBinaural) or .h5 (FAIR-Play)")
    g.add_argument("--num_epoch", type=int, default=100)
    g.add_argument("--max_steps", type=int, default=0, help="stop after this many optimizer steps (0: no limit)")
    g.add_argument("--lr_unet", type=float, default=1e-4)
    g.add_argument("--lr_frame", type=float, default=1e-4)
    g.add_argument("--weight_decay", type=float, default=0.01)
    g.add_argument("--warmup_steps", type=int, default=0, help="linear LR warm-up")
    g.add_argument("--lr_schedule", choices=("step", "cosine"), default="step",
                   help="after the warm-up: step (x --decay_factor every --lr_decay_epochs epochs, the original's) "
                        "or cosine (to 0 at the last step: --max_steps, or the epochs' steps)")
    g.add_argument("--decay_factor", type=float, default=0.94, help="LR x this every --lr_decay_epochs epochs")
    g.add_argument("--lr_decay_epochs", "--learning_rate_decrease_itr", dest="lr_decay_epochs", type=int, default=50,
                   help="epochs between LR decays (it counts epochs; the original's name, which said "
                        "'itr', stays an alias)")
    g.add_argument("--grad_clip", type=float, default=1.0)
    g.add_argument("--grad_accum", type=int, default=1, help="micro-batches per optimizer step")
    g.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="autocast on CUDA")
    g.add_argument("--ema_decay", type=float, default=0.999)
    g.add_argument("--eval_epoch", type=int, default=1, help="validate every K epochs")
    g.add_argument("--num_val", type=int, default=-1, help="validation clips to sample (-1: all)")
    g.add_argument("--num_vis", type=int, default=4, help="validation clips drawn to TensorBoard")
    g.add_argument("--disp_iter", type=int, default=10, help="log every K steps")
    g.add_argument("--dup_trainset", type=int, default=1,
                   help="list every train clip K times per epoch, each copy with its own random crop")
    g.add_argument("--flip_aug", action=argparse.BooleanOptionalAction, default=False,
                   help="mirror images and swap L/R together")
    g.add_argument("--mix_aug", type=float, default=0.0, metavar="P",
                   help="probability that a training crop is the sum of two clips with both clips' boxes "
                        "(the sound-to-box binding; box tokens only)")
    g.add_argument("--save_every", type=int, default=0,
                   help="also write state_latest.pth every K optimizer steps (0: at epoch ends only)")
    g.add_argument("--resume", action=argparse.BooleanOptionalAction, default=False,
                   help="continue from {ckpt}/{id}/state_latest.pth")
    g.add_argument("--max_nonfinite", type=int, default=10,
                   help="stop after this many consecutive non-finite losses/gradients")
    return p


# Flags of _common that the inference scripts accept (old command lines keep working) but do not use:
# the model comes from the run's config.json, and inference is one process.
INFERENCE_IGNORES = frozenset(PRESET_KEYS) | {"config", "num_gpus", "batch_size_per_gpu", "workers"}


def inference_parser(description: str) -> argparse.ArgumentParser:
    p = PresetParser(description=description)
    _common(p)
    for action in p._actions:
        if action.dest in INFERENCE_IGNORES:
            action.help = argparse.SUPPRESS  # accepted, not listed: they would not change the output
    g = p.add_argument_group("inference")
    g.add_argument("--mode", choices=("test", "gt"), default="test",
                   help="test: generate mels; gt: write the ground-truth mels of the same clips")
    g.add_argument("--list_test", required=True, help="clips: CSV (RealBinaural) or .h5 (FAIR-Play)")
    g.add_argument("--split", default="test", help="split name used in the output layout")
    g.add_argument("--weights_unet", default=None, help="UNet weights (default: {ckpt}/{id}/unet_best.pth)")
    g.add_argument("--weights_frame", default=None, help="visual encoder weights (default: {ckpt}/{id}/frame_best.pth)")
    g.add_argument("--output_dir", required=True, help="mel directory to write (left/ right/ meta.json)")
    g.add_argument("--window_hop", type=int, default=None,
                   help="frames between sliding windows (default: half the training crop)")
    g.add_argument("--window_batch", type=int, default=8, help="windows sampled together")
    g.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    return p


def model_config(args: argparse.Namespace) -> dict:
    """The part of the flags that defines the model, with the mel parameters resolved."""
    from binaural_core.mel import MelConfig
    cfg = {k: getattr(args, k) for k in MODEL_KEYS if k not in ("mel", *DATA_KEYS)}
    cfg.update({k: OPTIONAL_KEYS[k] for k in DATA_KEYS})
    cfg["mel"] = MelConfig.from_json(args.mel_config).to_dict()
    if cfg["arch_frame"] == "cnn" or cfg["pretrained_frame"] in (None, "none"):
        cfg["pretrained_frame"] = None  # the cnn is always trained from scratch
    elif cfg["pretrained_frame"] == "auto":
        cfg["pretrained_frame"] = DEFAULT_PRETRAINED[cfg["arch_frame"]]
    return cfg


GRID_ROWS = 4  # default --grid rows; the columns follow the frame's aspect
GRID_SELECT = 6  # default --grid_select: the salient cells kept per frame (at most the grid's cells)


def default_grid_pool(arch_frame: str) -> str:
    """``--grid_pool`` when not given: ``crops`` with the small CNN (it reads the CNN's stages), else ``mean``."""
    return "crops" if arch_frame == "cnn" else "mean"


def default_frame_side(args) -> int | None:
    """The short side of the whole frame when ``--frame_size`` is not given: None (the dataset's own
    default, ``max(--img_size, 64)``), or with ``crops`` grid pooling 9/8 of the crop size per grid row (4.5 x
    --img_size for 4 rows; 144 for 32-px crops), so a crop one cell square is read at about the frame's
    own resolution, never upsampled."""
    if (getattr(args, "grid_pool", None) or default_grid_pool(getattr(args, "arch_frame", "cnn"))) != "crops":
        return None
    rows = args.grid[0] if getattr(args, "grid", None) else GRID_ROWS
    return round(rows * args.img_size * 9 / 8)


def default_grid(frame_size: tuple[int, int]) -> list[int]:
    """``--grid`` when not given: 4 rows and as many columns as keep the cells square-ish (4 x 8 for 2:1)."""
    height, width = frame_size
    return [GRID_ROWS, max(1, round(GRID_ROWS * width / height))]


def resolve_visual(cfg: dict, dataset) -> dict:
    """Fill the visual-token keys of a run's config from its training set: the mode it was built with,
    the whole-frame size it chose (None for box tokens only) and the grid (``--grid`` or
    :func:`default_grid`); the val set must then be built with the same frame size."""
    out = dict(cfg, visual_tokens=dataset.visual_tokens)
    out["frame_size"] = None if dataset.frame_size is None else list(dataset.frame_size)
    if cfg.get("binding_weight") and not cfg.get("token_audio"):
        raise BadInputError(None, "--binding_weight scores the audio-aware tokens: it needs --token_audio")
    if dataset.visual_tokens == "boxes":
        if cfg.get("grid_layout"):
            raise BadInputError(None, "--grid_layout reads the grid's cells: it needs --visual_tokens grid or both")
        if cfg.get("grid_select"):
            raise BadInputError(None, "--grid_select chooses among the grid's cells: it needs --visual_tokens grid or both")
        if cfg.get("grid_pool") == "crops":
            raise BadInputError(None, "--grid_pool crops reads the grid's cells: it needs --visual_tokens grid or both")
        out["grid"], out["grid_layout"], out["grid_select"], out["grid_pool"] = None, False, 0, "mean"
    else:
        out["grid_pool"] = cfg.get("grid_pool") or default_grid_pool(cfg.get("arch_frame"))
        if out["grid_pool"] == "crops" and cfg.get("arch_frame") != "cnn":
            raise BadInputError(None, f"--grid_pool crops reads the small CNN's stages: it needs --arch_frame cnn, "
                                      f"got {cfg.get('arch_frame')}")
        out["grid_layout"] = cfg.get("grid_layout") is not False  # on unless --no-grid_layout
        out["grid"] = list(cfg["grid"]) if cfg.get("grid") else default_grid(dataset.frame_size)
        if min(out["grid"]) < 1:
            raise BadInputError(None, f"--grid must be two counts GY GX >= 1, got {out['grid']}")
        cells = out["grid"][0] * out["grid"][1]
        select = cfg.get("grid_select")
        out["grid_select"] = min(GRID_SELECT, cells) if select is None else int(select)
        if not 0 <= out["grid_select"] <= cells:
            raise BadInputError(None, f"--grid_select must be 0 (all cells) .. {cells} (the grid's cells), got {out['grid_select']}")
    return out


def load_model_config(path: str) -> dict:
    """Read a saved config.json; unknown or missing keys stop with one line naming the file."""
    cfg = {**OPTIONAL_KEYS, **read_json(path)}
    unknown = sorted(set(cfg) - set(MODEL_KEYS))
    missing = sorted(set(MODEL_KEYS) - set(cfg))
    if unknown:
        raise BadInputError(path, f"unknown config key(s): {', '.join(unknown)}")
    if missing:
        raise BadInputError(path, f"missing config key(s): {', '.join(missing)}")
    # a config written without the trainer's resolution (model_config alone) builds box tokens
    cfg["visual_tokens"] = cfg["visual_tokens"] or "boxes"
    return cfg


def save_model_config(cfg: dict, path: str) -> None:
    from binaural_core.checkpoint import atomic_write_text

    atomic_write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", path)


def run_dir(args: argparse.Namespace) -> str:
    return os.path.join(args.ckpt, args.id)
