"""Named presets: --config NAME sets the model flags from DiffBinaural/configs/NAME.json, flags override."""

from __future__ import annotations

import json
import os

import pytest

from binaural_core.audio import BadInputError
from DiffBinaural.utils.arguments import PRESET_DIR, PRESET_KEYS, inference_parser, train_parser

REQUIRED = ["--data_root", "d", "--list_train", "a.csv", "--list_val", "b.csv"]


def test_base_preset_is_the_default_model():
    defaults = vars(train_parser("t").parse_args(REQUIRED))
    base = json.load(open(os.path.join(PRESET_DIR, "base.json")))
    assert base == {k: defaults[k] for k in base}, "base.json drifted from the flag defaults"
    assert set(base) >= {"unet_channels", "unet_mults", "attn_levels", "num_res_blocks", "context_dim", "img_size"}


@pytest.mark.parametrize("name", ["tiny", "micro", "base", "gpu"])
def test_presets_set_flags_and_command_line_flags_win(name, tmp_path):
    preset = json.load(open(os.path.join(PRESET_DIR, f"{name}.json")))
    args = train_parser("t").parse_args([*REQUIRED, "--config", name])
    assert {k: getattr(args, k) for k in preset} == preset
    args = train_parser("t").parse_args(["--unet_channels", "8", *REQUIRED, "--config", name, "--num_frames", "7"])
    assert args.unet_channels == 8 and args.num_frames == 7  # before or after --config: the flag wins
    by_path = inference_parser("t").parse_args(["--data_root", "d", "--list_test", "t.csv", "--output_dir", "o",
                                                "--config", os.path.join(PRESET_DIR, f"{name}.json")])
    assert {k: getattr(by_path, k) for k in preset} == preset


def test_tiny_is_the_demo_size():
    args = train_parser("t").parse_args([*REQUIRED, "--config", "tiny"])
    assert (args.unet_channels, args.unet_mults, args.segment_frames, args.target, args.interaural_phase) == \
        (32, [1, 2, 2], 32, "residual", True)
    makefile = open(os.path.join(os.path.dirname(PRESET_DIR), "..", "Makefile")).read()
    assert "--config tiny" in makefile and "--unet_channels" not in makefile  # the demo uses the preset


def test_bad_presets_stop_with_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"unet_channels": 8, "num_epoch": 3}))
    with pytest.raises(BadInputError, match=r"bad.json: unknown preset key\(s\): num_epoch") as err:
        train_parser("t").parse_args([*REQUIRED, "--config", str(bad)])
    assert "\n" not in str(err.value)
    bad.write_text(json.dumps({"target": "stereo"}))
    with pytest.raises(BadInputError, match=r"target: 'stereo' is not one of"):
        train_parser("t").parse_args([*REQUIRED, "--config", str(bad)])
    with pytest.raises(BadInputError, match=r"preset not found \(named presets: base, gpu, micro, tiny\)"):
        train_parser("t").parse_args([*REQUIRED, "--config", "huge"])
    assert "num_epoch" not in PRESET_KEYS and "unet_channels" in PRESET_KEYS


def test_gpu_is_the_base_size_with_the_measured_recipe():
    """The preset for GPU users: the base network with the recipe the CPU comparison supports (the residual
    from the mono mel, x0-prediction, interaural phase), not the original's ε on the L/R mels."""
    base = json.load(open(os.path.join(PRESET_DIR, "base.json")))
    gpu = json.load(open(os.path.join(PRESET_DIR, "gpu.json")))
    recipe = {"target": "residual", "prediction_type": "sample", "interaural_phase": True}
    assert {k: gpu[k] for k in recipe} == recipe
    assert {k: v for k, v in gpu.items() if k not in recipe} == {k: v for k, v in base.items() if k not in recipe}
