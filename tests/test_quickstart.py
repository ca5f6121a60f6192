"""QUICKSTART.md's own commands, sections 1 to 6, run as written but at test sizes, so the guide cannot rot.

The commands are read from the ```bash blocks of the file; only sizes are turned down (clips,
seconds, epochs, steps, batch) and the vocoder checkpoint names follow from the smaller step counts.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess

import _proc
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_SECTIONS = range(1, 7)  # 0 installs, 7 and later need the user's own video and recordings
SIZES = {  # flag -> value at test size
    "--num_clips": "8", "--seconds": "1.5", "--num_epoch": "1", "--training_epochs": "1", "--eval_epoch": "1",
    "--max_steps": "2", "--steps": "2", "--batch_size_per_gpu": "2",
}


def quickstart_commands() -> list[tuple[int, str]]:
    """``[(section, command)]`` of the bash blocks, continuation lines joined, comments dropped."""
    text = open(os.path.join(REPO, "QUICKSTART.md")).read()
    out, section = [], None
    for part in re.split(r"^(## \d+\..*)$", text, flags=re.M):
        heading = re.match(r"## (\d+)\.", part)
        if heading:
            section = int(heading.group(1))
            continue
        for block in re.findall(r"```bash\n(.*?)```", part, flags=re.S):
            for command in block.replace("\\\n", " ").splitlines():
                command = command.split(" #", 1)[0].strip()
                if command and not command.startswith("#"):
                    out.append((section, command))
    return out


def at_test_size(command: str) -> str:
    for flag, value in SIZES.items():
        command = re.sub(rf"{flag} \S+", f"{flag} {value}", command)
    command = command.replace("g_00002000", "g_00000002")  # --max_steps 2000 -> 2
    command = re.sub(r"^python ", f"{_proc.python()} ", command)
    return re.sub(r"(?<=\s)((?:DiffBinaural|BigVGAN)/\S+)", lambda m: os.path.join(REPO, m.group(1)), command)


def test_the_guide_has_the_commands_it_describes():
    commands = quickstart_commands()
    scripts = [c for _, c in commands]
    assert any("--split train" in c and "runs/mels_train" in c for c in scripts), "the train-split dump is spelled out"
    for needed in ("dataset.synthetic", "train_realBinaural.py", "test_realBinaural.py", "render.py",
                   "train_binaural_mel.py", "train_binaural_both.py", "BigVGAN/inference.py", "evaluate.py",
                   "DiffBinaural.report"):
        assert any(needed in c for s, c in commands if s in RUN_SECTIONS), needed


def newest_vocoder(folder) -> str:
    """The newest generator checkpoint that section 5 wrote in ``folder``."""
    return sorted(glob.glob(os.path.join(str(folder), "runs", "voc", "g_*")))[-1]


def run_quickstart(folder) -> None:
    """Run sections 1 to 6 in ``folder``, at test size (conftest's ``quickstart`` fixture: once a session,
    for this file and for tests/test_e2e.py, which checks the same chain's artifacts)."""
    for section, command in quickstart_commands():
        if section not in RUN_SECTIONS or command.startswith(("tensorboard", "make", ". ")):
            continue
        command = at_test_size(command)
        if "g_XXXXXXXX" in command:  # "the newest checkpoint": here the one the test-size run wrote
            command = command.replace("runs/voc/g_XXXXXXXX", newest_vocoder(folder))
        proc = subprocess.run(command, shell=True, cwd=folder, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": REPO})
        assert proc.returncode == 0, f"section {section}: {command}\n{proc.stderr[-3000:]}"
        if "test_realBinaural.py" in command:  # logged to a file, not a terminal: one summary line, no bar redraws
            assert "\r" not in proc.stderr and "wrote " in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_quickstart_sections_1_to_6_run_as_written(quickstart):
    doc = json.loads((quickstart / "metrics.json").read_text())
    assert doc["num_clips"] >= 1 and "stft_distance" in doc["model"]["mean"]
    runs = quickstart / "runs"
    assert (runs / "wavs_rendered").is_dir() and (runs / "mels_train" / "meta.json").is_file()
    assert (runs / "report" / "report.html").read_text().count("<audio ") >= 4
