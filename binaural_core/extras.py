"""Optional dependencies: what each extra of ``pip install "diffbinaural[...]"`` brings, and one clear line
when a feature's package is missing.

The core install binauralizes (Stage 1 with the small CNN encoder, the mono renderer, the vocoder's
inference, video in and out). Training, evaluation, the pretrained image encoders and detectors, and
FAIR-Play's ``.h5`` split files each need an extra (``pyproject.toml``); ``make install`` and the ``dev``
extra install them all.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from binaural_core.audio import BadInputError

# module -> (pip package, extra)
EXTRAS = {
    "transformers": ("transformers", "vision"),
    "pesq": ("pesq", "eval"),
    "auraloss": ("auraloss", "eval"),
    "matplotlib": ("matplotlib", "eval"),
    "tensorboard": ("tensorboard", "train"),
    "nnAudio": ("nnAudio", "train"),
    "h5py": ("h5py", "fairplay"),
    "pyroomacoustics": ("pyroomacoustics", "scenes"),
    "fluidsynth": ("pyfluidsynth", "scenes"),
    "pretty_midi": ("pretty_midi", "scenes"),
}


def need(module: str, what: str) -> ModuleType:
    """``import module``, or one line: ``{what} needs {package}: pip install "diffbinaural[{extra}]"``."""
    root = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        # only "not installed" is this line; a package that is there but fails to import says why itself
        if isinstance(err, ModuleNotFoundError) and err.name and err.name.split(".")[0] != root:
            raise
        if not isinstance(err, ModuleNotFoundError) and "sys.modules" not in str(err):
            raise
        package, extra = EXTRAS[root]
        raise BadInputError(None, f"{what} needs the package {package}, which is not installed: "
                                  f'pip install "diffbinaural[{extra}]" (or pip install {package})') from None
