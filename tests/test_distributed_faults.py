"""Stage 1 distributed faults, end to end: a dead or hung worker ends the whole ``--num_gpus 2`` job,
and no worker process is left behind (the data and flags of ``tests/test_reliability.py``)."""

from __future__ import annotations

import os
import signal
import sys
import time

import _proc
import pytest
from test_reliability import TRAIN, _check_run_dir, _flags, data  # noqa: F401  (data: a fixture)

# --- distributed faults ------------------------------------------------------------------------------


def _children(pid: int) -> list[tuple[int, int, str]]:
    """(start time, pid, command line) of the live child processes of ``pid``, oldest first (/proc scan)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # state, ppid, ..., starttime is field 22 of stat
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append((int(fields[19]), int(entry), cmdline))
    return sorted(found)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers through /proc")
def test_a_dead_worker_ends_the_whole_job(data, tmp_path):
    """--num_gpus 2 on CPU (gloo): SIGKILL rank 1 mid-training; the job exits non-zero, no worker is left."""
    ckpt = tmp_path / "ck"
    cmd = [sys.executable, TRAIN, *_flags(data, ckpt, "--num_gpus", "2", "--save_every", "1", "--max_steps", "100000")]
    log = tmp_path / "stderr.log"
    proc = _proc.start(cmd, log, DIFFBINAURAL_DIST_TIMEOUT="20")
    workers: list[int] = []
    try:
        _proc.wait_until((ckpt / "run" / "state_latest.pth").exists, proc, "the first save of the 2-worker run", log,
                    poll=0.05)
        workers = [pid for _, pid, cmdline in _children(proc.pid) if "spawn_main" in cmdline]
        assert len(workers) == 2, _children(proc.pid)
        os.kill(workers[-1], signal.SIGKILL)  # started last: rank 1
        t0 = time.monotonic()
        proc.wait(timeout=90)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert elapsed < 60, f"the job took {elapsed:.0f} s to stop after a worker died"
    assert not any(_alive(pid) for pid in workers), "a worker outlived the job"
    _check_run_dir(ckpt / "run")  # what rank 0 saved before the fault is complete


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("DIFFBINAURAL_LONG_TESTS") != "1",
                    reason="~70 s: set DIFFBINAURAL_LONG_TESTS=1 (a hung worker costs the 20 s collective "
                           "timeout plus torch's fixed 30 s SIGTERM grace period)")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers through /proc")
def test_a_hung_worker_ends_the_whole_job_after_the_timeout(data, tmp_path):
    """SIGSTOP rank 1: rank 0's collective times out after DIFFBINAURAL_DIST_TIMEOUT and the job stops."""
    ckpt = tmp_path / "ck"
    cmd = [sys.executable, TRAIN, *_flags(data, ckpt, "--num_gpus", "2", "--save_every", "1", "--max_steps", "100000")]
    log = tmp_path / "stderr.log"
    proc = _proc.start(cmd, log, DIFFBINAURAL_DIST_TIMEOUT="20")
    workers: list[int] = []
    try:
        _proc.wait_until((ckpt / "run" / "state_latest.pth").exists, proc, "the first save of the 2-worker run", log,
                    poll=0.05)
        workers = [pid for _, pid, cmdline in _children(proc.pid) if "spawn_main" in cmdline]
        assert len(workers) == 2, _children(proc.pid)
        os.kill(workers[-1], signal.SIGSTOP)
        t0 = time.monotonic()
        proc.wait(timeout=120)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert 15 < elapsed < 90, f"stopped {elapsed:.0f} s after the hang"
    assert "Timed out" in open(log).read()
