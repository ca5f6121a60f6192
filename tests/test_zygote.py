"""The suite's `python` (tests/_zygote.py): a script run through the warm fork server sees what the real
interpreter would give it, and its caller sees what the real interpreter would return."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import _proc
import pytest

SCRIPT = """
import os, sys
print("argv", sys.argv[1:], "name", __name__, "cwd", os.getcwd(), "env", os.environ.get("ZT"))
print("path0", sys.path[0])
print("to stderr", file=sys.stderr)
data = sys.stdin.read()
if data:
    print("stdin", data.strip())
sys.exit(int(os.environ.get("ZT_CODE", "0")))
"""


def _both(*args, **kwargs):
    """The same command through the client and through the real interpreter."""
    return [subprocess.run([py, *map(str, args)], capture_output=True, text=True, timeout=120, **kwargs)
            for py in (_proc.python(), sys.executable)]


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "sub" / "s.py"
    path.parent.mkdir()
    path.write_text(SCRIPT)
    return path


def test_the_server_is_running_in_this_session():
    assert _proc.python() != sys.executable and os.path.exists(os.environ["DIFFBINAURAL_ZYGOTE"]), (
        "conftest.py did not start tests/_zygote.py (DIFFBINAURAL_TEST_FORK=0?)")


def test_a_script_sees_its_argv_cwd_env_stdin_and_returns_its_status(script, tmp_path):
    env = {**os.environ, "ZT": "yes", "ZT_CODE": "7"}
    forked, real = _both(script, "a b", "--x", cwd=tmp_path, env=env, input="piped\n")
    assert forked.returncode == real.returncode == 7
    assert forked.stdout == real.stdout and forked.stderr == real.stderr
    assert f"cwd {tmp_path}" in forked.stdout and "env yes" in forked.stdout and "stdin piped" in forked.stdout
    assert f"path0 {script.parent}" in forked.stdout and "argv ['a b', '--x'] name __main__" in forked.stdout


def test_a_module_an_exception_and_a_string_exit_are_reported_as_python_reports_them():
    forked, real = _both("-m", "DiffBinaural.dataset.synthetic", "--num_clips", "x")
    assert forked.returncode == real.returncode == 2 and forked.stderr == real.stderr
    forked, real = _both("-c", "raise ValueError('boom')")
    assert forked.returncode == real.returncode == 1 and "ValueError: boom" in forked.stderr
    forked, real = _both("-c", "import sys; sys.exit('stopped')")
    assert forked.returncode == real.returncode == 1 and forked.stderr == real.stderr == "stopped\n"


def test_torch_runs_in_parallel_in_the_child():
    """The server never ran torch code, so the child's OpenMP threads start (a fork after it hangs)."""
    code = "import torch; x = torch.randn(400, 400); print(float((x @ x).abs().sum()) > 0, torch.get_num_threads())"
    proc = subprocess.run([_proc.python(), "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("True"), proc.stderr


def test_a_signal_reaches_the_child_and_killing_the_client_kills_the_child(tmp_path):
    marker = tmp_path / "alive"
    code = (f"import time, pathlib\nwhile True:\n    pathlib.Path({str(marker)!r}).write_text(str(time.time()))\n"
            "    time.sleep(0.02)")
    proc = subprocess.Popen([_proc.python(), "-c", code])
    _wait_for(marker.exists)
    proc.send_signal(signal.SIGTERM)  # forwarded: the child dies of it, and so does the client
    assert proc.wait(timeout=30) == -signal.SIGTERM
    _assert_stopped(marker)
    marker.unlink()
    proc = subprocess.Popen([_proc.python(), "-c", code])
    _wait_for(marker.exists)
    proc.kill()
    proc.wait(timeout=30)
    _assert_stopped(marker)


def test_without_a_server_the_client_is_the_real_interpreter():
    env = {k: v for k, v in os.environ.items() if k != "DIFFBINAURAL_ZYGOTE"}
    proc = subprocess.run([_proc.python(), "-c", "import sys; print(sys.argv, 'torch' in sys.modules)", "z"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "['-c', 'z'] False"


def _wait_for(cond, timeout=60.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout
        time.sleep(0.01)


def _assert_stopped(marker):
    """The child no longer writes its heartbeat."""
    time.sleep(0.3)
    before = marker.read_text()
    time.sleep(0.3)
    assert marker.read_text() == before
