"""The clone stands alone: every link and path that the README, QUICKSTART, docs/ and the scripts' --help
texts name exists in the repository, nothing points outside it, and the README stays a front page."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", "QUICKSTART.md", "DiffBinaural/README.md", "BigVGAN/README.md", "bench/README.md"] + [
    f"docs/{f}" for f in sorted(os.listdir(os.path.join(REPO, "docs"))) if f.endswith(".md")]
# a repository path as the texts spell them: DiffBinaural/inference/renderer.py, docs/formats.md, BigVGAN/configs/x.json
PATH = re.compile(r"(?<![\w./-])((?:DiffBinaural|BigVGAN|binaural_core|docs|bench|tests)/[\w./-]*\.(?:py|md|json|sh|png))")


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in out.stdout.splitlines() if os.path.isfile(os.path.join(REPO, f))]


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES)
def test_every_link_of_a_page_exists(page):
    text = open(os.path.join(REPO, page)).read()
    folder = os.path.dirname(os.path.join(REPO, page))
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(folder, path)) if path else os.path.join(REPO, page)
        assert os.path.exists(full), f"{page}: link to {target} ({os.path.relpath(full, REPO)} does not exist)"
        if anchor and full.endswith(".md"):
            headings = {_slug(h) for h in re.findall(r"^#+ (.*)$", open(full).read(), flags=re.M)}
            assert anchor in headings, f"{page}: link to {target}: no such heading"


def test_every_path_named_in_the_pages_and_scripts_exists():
    texts = {page: open(os.path.join(REPO, page)).read() for page in PAGES}
    for f in _tracked():  # the scripts' --help texts and docstrings are in their source
        if f.endswith(".py") or f in ("Makefile", "requirements.txt", "pyproject.toml"):
            texts[f] = open(os.path.join(REPO, f)).read()
    missing = sorted({(where, p) for where, text in texts.items() for p in PATH.findall(text)
                      if not os.path.exists(os.path.join(REPO, p.rstrip(".")))
                      and not any(c in p for c in "*{XN")})
    assert not missing, f"paths named but not in the repository: {missing}"


def test_nothing_points_outside_the_clone():
    bad = [f for f in _tracked() if not f.endswith((".png", ".jpg", ".pt"))
           and re.search(r"\.\./shared|DESIGN\.md|seed_spec", open(os.path.join(REPO, f), errors="ignore").read())
           and f != "tests/test_docs.py"]
    assert not bad, f"files that refer to material outside the repository: {bad}"


def test_the_readme_is_a_front_page():
    text = open(os.path.join(REPO, "README.md")).read()
    assert text.count("\n") <= 250
    for needed in ("make demo", "make test", "binauralize.py --video", "FAIR-Play", "## Results", "Citation",
                   "LICENSE", "CITATION.cff"):
        assert needed in text, needed
    for f in ("LICENSE", "CITATION.cff"):
        assert os.path.isfile(os.path.join(REPO, f)), f
    assert "NVIDIA" in open(os.path.join(REPO, "LICENSE")).read()  # the notice of the BigVGAN parts


def test_inference_help_lists_only_the_flags_it_uses():
    """The model of test_*.py comes from config.json: model flags are accepted (old command lines) but not
    listed, since they would change nothing."""
    from DiffBinaural.utils.arguments import inference_parser, train_parser

    infer, train = inference_parser("x").format_help(), train_parser("x").format_help()
    for flag in ("--unet_channels", "--arch_frame", "--prediction_type", "--num_gpus", "--config"):
        assert flag in train and flag not in infer, flag
    for flag in ("--steps", "--num_samples", "--flip_tta", "--weights_unet", "--output_dir", "--list_test"):
        assert flag in infer, flag
    args = inference_parser("x").parse_args(["--data_root", "d", "--list_test", "t", "--output_dir", "o",
                                             "--unet_channels", "8"])
    assert args.unet_channels == 8  # still parsed


def test_one_name_per_thing_across_the_stages():
    """The vocoder's split lists take Stage 1's names; the original names still work, hidden from --help.
    report.py has one flag for the systems (--system is its hidden alias)."""
    import argparse

    from BigVGAN.trainer import add_common_args
    from DiffBinaural.report import build_parser

    p = argparse.ArgumentParser()
    add_common_args(p)
    text = p.format_help()
    assert "--list_train" in text and "--list_val" in text and "--train_list" not in text
    for old, new in (("--train_list", "train_list"), ("--list_train", "train_list"), ("--val_list", "val_list")):
        args = p.parse_args(["--audio_dir", "a", "--checkpoint_path", "c", old, "x.csv"])
        assert getattr(args, new) == "x.csv"
    r = build_parser()
    assert "--system" not in r.format_help()
    args = r.parse_args(["--out_dir", "o", "--gt_wavs", "g", "--system", "a=A", "--pred_dirs", "b=B", "c=C"])
    assert args.pred_dirs == ["a=A", "b=B", "c=C"]
