"""`make install` keeps a torch that is already there (a user's CUDA build), installs TORCH_SPEC only where
none is importable, and uses the active environment: a virtualenv, or a conda environment. The installer
is stubbed (PIP=echo ...), so the test shows what make would run without installing anything."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_TORCH = "__version__ = '2.5.1+cu124'\n\n\nclass cuda:\n    @staticmethod\n    def is_available():\n        return True\n"


def _env_dir(tmp_path, name, *, torch: bool) -> str:
    """A stand-in environment: bin/python runs this Python with a fake CUDA torch (or none) on its path."""
    prefix = tmp_path / name
    site = prefix / "site"
    (prefix / "bin").mkdir(parents=True)
    site.mkdir()
    if torch:
        (site / "torch").mkdir()
        (site / "torch" / "__init__.py").write_text(FAKE_TORCH)
    else:  # hide any real torch of this interpreter
        (site / "torch.py").write_text("raise ImportError('no torch here')\n")
    python = prefix / "bin" / "python"
    python.write_text(f"#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    return str(prefix)


def _make_install(env: dict) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "MAKEFLAGS")}
    proc = subprocess.run(["make", "-s", "install", "PIP=echo PIP"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**base, **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("variable", ["VIRTUAL_ENV", "CONDA_PREFIX"])
def test_an_existing_cuda_torch_is_kept_in_the_active_environment(tmp_path, variable):
    prefix = _env_dir(tmp_path, "env", torch=True)
    out = _make_install({variable: prefix})
    assert "keeping torch 2.5.1+cu124 (CUDA)" in out
    assert "torch==" not in out  # no second torch
    assert "PIP install --quiet -e .[dev]" in out
    assert os.path.isfile(os.path.join(prefix, ".diffbinaural-installed"))  # the stamp is the environment's


def test_torch_spec_is_installed_only_where_none_is_found(tmp_path):
    prefix = _env_dir(tmp_path, "env", torch=False)
    out = _make_install({"VIRTUAL_ENV": prefix, "TORCH_INDEX": "https://download.pytorch.org/whl/cpu"})
    assert "keeping torch" not in out
    assert "PIP install --quiet torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in out


def test_conda_base_is_not_installed_into(tmp_path):
    """conda exports CONDA_PREFIX for its base environment too: make does not pip-install into base."""
    prefix = _env_dir(tmp_path, "base", torch=True)
    base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "MAKEFLAGS")}
    proc = subprocess.run(["make", "-n", "--always-make", "install"], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**base, "CONDA_PREFIX": prefix, "CONDA_DEFAULT_ENV": "base"})
    assert proc.returncode == 0 and ".venv/bin/python" in proc.stdout and prefix not in proc.stdout
