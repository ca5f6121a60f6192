"""Shared by the tests: the Stage 1 model size they train (a named preset, not a copied flag list)."""

from __future__ import annotations

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# DiffBinaural/configs/micro.json: the test suite's size (seconds per run on a CPU); flags after it override
MICRO = ["--config", "micro"]
