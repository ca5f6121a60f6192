"""bench/gpu_check.sh, the one prepared GPU check, runs end to end on CPU (tiny sizes) so it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess

import _proc
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# on CPU: no stage1_bf16 / stage1_fp16 (autocast is CUDA-only, they would repeat stage1_fp32)
STEPS = ["cuda_tests", "data", "stage1_fp32", "stage1_both_bf16", "ddp_2proc", "vocoder_step",
         "binauralize_mono", "binauralize_vocoder", "bench_stage1", "bench_vocoder"]


@pytest.mark.slow
def test_gpu_check_runs_every_step_on_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": _proc.python()}
    proc = subprocess.run(["bash", os.path.join(REPO, "bench", "gpu_check.sh"), "--device", "cpu"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    log = (tmp_path / "gpu_check_cpu.log").read_text()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:] + log[-4000:]
    doc = json.loads((tmp_path / "gpu_check_cpu.json").read_text())
    assert [s["name"] for s in doc["steps"]] == STEPS
    assert doc["passed"] and all(s["status"] == "ok" and s["seconds"] > 0 for s in doc["steps"])
    assert doc["device"] == "cpu" and doc["bench_stage1"] and doc["bench_vocoder"]
    assert "2 rank(s) x batch" in log  # the 2-process run really ran 2 ranks


def test_gpu_check_refuses_a_bad_device():
    proc = subprocess.run(["bash", os.path.join(REPO, "bench", "gpu_check.sh"), "--device", "tpu"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--device must be cuda or cpu" in proc.stderr
