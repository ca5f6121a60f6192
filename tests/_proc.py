"""Subprocess helpers shared by the reliability tests: start a script, wait for a condition, SIGKILL it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMP_NAME = re.compile(r"\.tmp\d+(\.npy)?$")  # atomic_save / atomic_write_text / write_clip temp files


def python() -> str:
    """The interpreter a test runs a script with: the warm fork server's client in a test session
    (tests/_zygote.py, started by conftest.py), else this one. Runs that are SIGKILLed at a chosen
    moment use ``sys.executable``."""
    return os.environ.get("DIFFBINAURAL_TEST_PYTHON", sys.executable)


def env(**extra) -> dict:
    out = dict(os.environ, PYTHONUNBUFFERED="1", **extra)
    out.pop("RANK", None)
    out.pop("WORLD_SIZE", None)
    return out


def lines(stderr: str) -> list[str]:
    """Non-empty stderr lines (tqdm's carriage-return redraws count as separate lines)."""
    return [ln for ln in re.split(r"[\r\n]+", stderr) if ln.strip()]


def start(cmd: list, log, **extra_env) -> subprocess.Popen:
    """Start a command with stderr to the file ``log`` (a pipe nobody reads could block the child)."""
    with open(log, "a") as f:
        return subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=f, text=True, cwd=REPO,
                                env=env(**extra_env))


def wait_until(cond, proc: subprocess.Popen, what: str, log, timeout: float = 180.0, poll: float = 0.0005) -> None:
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the command exited (code {proc.returncode}) before {what}:\n"
                                 + open(log).read()[-3000:])
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def kill_during_write(start, folder, check, step, log, *, tries: int) -> list[int]:
    """Start a run (``start()``) and SIGKILL it while it writes a checkpoint, i.e. once a new temp file
    exists in ``folder``; repeat until a kill leaves that temp file behind, which proves it landed
    mid-write (a finished write renames it). ``check(folder)`` validates every file under a real name
    and returns the temp files; returns ``step()`` read after each kill."""
    steps = []
    for _ in range(tries):
        before = set(os.listdir(folder))
        proc = start()
        wait_until(lambda before=before: any(TEMP_NAME.search(n) and n not in before for n in os.listdir(folder)), proc,
                   "a checkpoint write", log)
        kill(proc)
        left = set(check(folder)) - before
        steps.append(step())
        if left:
            return steps
    raise AssertionError(f"{tries} kills in a row missed the checkpoint write")
