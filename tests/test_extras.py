"""The core install binauralizes; each optional feature without its extra is one line naming the extra.

A fresh interpreter hides the optional packages (``sys.modules[name] = None`` makes their import fail, as
when they are not installed), then runs the Python API on a micro model and asks each feature for its
package."""

from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = r'''
import json, os, sys, tempfile
for m in ("transformers", "pesq", "auraloss", "matplotlib", "tensorboard", "nnAudio", "h5py"):
    sys.modules[m] = None  # not installed
import numpy as np
from binaural_core.audio import BadInputError
from binaural_core.checkpoint import atomic_save
from DiffBinaural import Binauralizer
from DiffBinaural.model import Stage1Model
from DiffBinaural.utils.arguments import model_config, save_model_config, train_parser

out = {}
work = tempfile.mkdtemp()
args = train_parser("x").parse_args(["--data_root", "-", "--list_train", "-", "--list_val", "-", "--config", "micro"])
cfg = model_config(args)
save_model_config(cfg, os.path.join(work, "config.json"))
model = Stage1Model(cfg)
atomic_save(model.unet.state_dict(), os.path.join(work, "unet_best.pth"))
atomic_save(model.encoder.state_dict(), os.path.join(work, "frame_best.pth"))
b = Binauralizer.from_pretrained(work, steps=2, device="cpu")
t = np.arange(22050) / 22050
stereo = b(0.1 * np.sin(2 * np.pi * 440 * t), 22050, frames=[np.full((36, 64, 3), 90, np.uint8)] * 10)
out["binauralized"] = list(stereo.shape)


def line(call):
    try:
        call()
    except BadInputError as err:
        return str(err)
    return "no error"


from DiffBinaural.evaluation import metrics
out["pesq"] = line(lambda: metrics._pesq(np.zeros((2, 16000)), np.zeros((2, 16000))))
from binaural_core.splits import read_split_list
open(os.path.join(work, "s.h5"), "wb").write(b"")
out["h5"] = line(lambda: read_split_list(os.path.join(work, "s.h5")))
from DiffBinaural.modules.visual_encoder import VisualEncoder
out["resnet"] = line(lambda: VisualEncoder(backbone="resnet18"))
from DiffBinaural.evaluation.listening import cue_only_figure
out["figure"] = line(lambda: cue_only_figure("x", stereo, 22050, os.path.join(work, "c.png")))
from binaural_core.extras import need
out["tensorboard"] = line(lambda: need("tensorboard", "training (its TensorBoard logs)"))
print(json.dumps(out))
'''


def test_core_install_binauralizes_and_extras_are_named():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["binauralized"] == [2, 22050]
    for key, extra, package in (("pesq", "eval", "pesq"), ("h5", "fairplay", "h5py"), ("resnet", "vision", "transformers"),
                                ("figure", "eval", "matplotlib"), ("tensorboard", "train", "tensorboard")):
        assert f'pip install "diffbinaural[{extra}]"' in out[key] and package in out[key], (key, out[key])
