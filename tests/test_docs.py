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
# a repository path as the texts spell them: DiffBinaural/renderer.py, docs/formats.md, BigVGAN/configs/x.json
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
