"""The house rules, checked from the source: the direction of imports between the three packages,
libraries never importing scripts, and files small enough to read (docs/design.md)."""

from __future__ import annotations

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("binaural_core", "BigVGAN", "DiffBinaural")
# what Stage 1 may use of the vocoder: its model and its inference API, nothing else
VOCODER_API = ("BigVGAN.bigvgan", "BigVGAN.vocode")
MAX_LINES = 500


def _modules() -> dict[str, str]:
    """``{dotted module name: path}`` of every module in the three packages."""
    out = {}
    for package in PACKAGES:
        for root, _, files in os.walk(os.path.join(REPO, package)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(root, f), REPO)[:-3].replace(os.sep, ".")
                    out[rel.removesuffix(".__init__")] = os.path.join(root, f)
    return out


MODULES = _modules()


def _imports(path: str) -> set[str]:
    """Absolute module names a file imports (``from a.b import c`` counts ``a.b`` and ``a.b.c``)."""
    tree = ast.parse(open(path).read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _is_script(path: str) -> bool:
    return 'if __name__ == "__main__":' in open(path).read()


def _ours(names: set[str]) -> set[str]:
    """The imported names that are modules of the three packages (not functions inside them)."""
    return {n for n in names if n in MODULES}


def test_the_three_packages_exist_and_are_scanned():
    assert {"binaural_core.mel", "binaural_core.mel_dir", "binaural_core.splits", "binaural_core.runtime",
            "BigVGAN.bigvgan", "BigVGAN.vocode", "DiffBinaural.model"} <= set(MODULES)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("binaural_core")))
def test_the_shared_package_imports_neither_stage(module):
    bad = {n for n in _imports(MODULES[module]) if n.split(".")[0] in ("BigVGAN", "DiffBinaural")}
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("BigVGAN")))
def test_bigvgan_imports_only_itself_and_the_shared_package(module):
    bad = {n for n in _imports(MODULES[module]) if n.split(".")[0] == "DiffBinaural"}
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("DiffBinaural")))
def test_stage1_uses_the_vocoder_only_through_its_api(module):
    used = {n for n in _ours(_imports(MODULES[module])) if n.startswith("BigVGAN")}
    if module.startswith(("DiffBinaural.dataset", "DiffBinaural.modules", "DiffBinaural.diffusion_utils")):
        assert not used, f"{module} imports {sorted(used)}"
    assert used <= set(VOCODER_API), f"{module} imports {sorted(used - set(VOCODER_API))}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not _is_script(MODULES[m])))
def test_libraries_never_import_scripts(module):
    scripts = {n for n in _ours(_imports(MODULES[module])) if _is_script(MODULES[n])}
    assert not scripts, f"library {module} imports script(s) {sorted(scripts)}"


def test_no_file_over_500_lines():
    files = [p for p in MODULES.values()]
    for folder in ("tests", "bench"):
        files += [os.path.join(REPO, folder, f) for f in os.listdir(os.path.join(REPO, folder)) if f.endswith(".py")]
    files.append(os.path.join(REPO, "binauralize.py"))
    long = {os.path.relpath(p, REPO): n for p in files if (n := sum(1 for _ in open(p))) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def _console_scripts() -> dict[str, str]:
    """``{command: "module:function"}`` of pyproject.toml's [project.scripts]."""
    import re

    text = open(os.path.join(REPO, "pyproject.toml")).read()
    section = re.search(r"^\[project\.scripts\]\n(.*?)(?=^\[)", text, flags=re.M | re.S).group(1)
    return dict(re.findall(r'^([\w-]+) = "([\w.:]+)"', section, flags=re.M))


def test_every_console_script_is_a_scripts_cli():
    scripts = _console_scripts()
    assert {"diffbinaural-binauralize", "diffbinaural-train", "diffbinaural-dump-mels", "diffbinaural-render",
            "diffbinaural-evaluate", "diffbinaural-train-vocoder"} <= set(scripts)
    import importlib

    for command, target in scripts.items():
        module, function = target.split(":")
        assert module in MODULES and _is_script(MODULES[module]), f"{command}: {module} is not one of the scripts"
        assert callable(getattr(importlib.import_module(module), function)), command


def test_the_top_of_diffbinaural_holds_scripts_and_the_model_only():
    """The reader meets the scripts at the door; the library lives in packages (training/, inference/,
    evaluation/, detection/, dataset/, modules/, ...)."""
    top = [m for m in MODULES if m.count(".") == 1 and m.startswith("DiffBinaural.")
           and not MODULES[m].endswith("__init__.py")]  # files, not packages
    libraries = sorted(m for m in top if not _is_script(MODULES[m]))
    assert libraries == ["DiffBinaural.model"], libraries
