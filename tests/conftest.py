"""Shared by the tests: the Stage 1 model size they train (a named preset, not a copied flag list)."""

from __future__ import annotations

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# DiffBinaural/configs/micro.json: the test suite's size (seconds per run on a CPU); flags after it override
MICRO = ["--config", "micro"]


def pytest_sessionstart(session):
    """Start the warm fork server that runs the suite's scripts (tests/_zygote.py; ``_proc.python()`` is its
    client), unless DIFFBINAURAL_TEST_FORK=0. Without it every script run imports torch & co. anew."""
    import subprocess
    import sys
    import tempfile
    import time

    import _zygote

    if os.environ.get("DIFFBINAURAL_TEST_FORK", "1") == "0" or os.path.exists(os.environ.get(_zygote.ENV, "")):
        return  # turned off, or a session inside a test (bench/gpu_check.sh's pytest) that uses the outer server
    folder = tempfile.mkdtemp(prefix="zygote-")
    path = os.path.join(folder, "socket")
    log = open(os.path.join(folder, "server.log"), "w")
    server = subprocess.Popen([sys.executable, _zygote.__file__, path], stdin=subprocess.PIPE, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(path) and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not os.path.exists(path):  # the scripts then run on the real interpreter: slower, the same results
        server.kill()
        print(f"tests/_zygote.py did not start (see {log.name}); running scripts without it", file=sys.stderr)
        return
    session.config._zygote = (server, folder)
    os.environ[_zygote.ENV] = path
    os.environ["DIFFBINAURAL_TEST_PYTHON"] = _zygote.write_client(os.path.join(folder, "python"))


def pytest_sessionfinish(session, exitstatus):
    import shutil
    import signal

    server, folder = getattr(session.config, "_zygote", (None, None))
    if server is not None:
        os.killpg(server.pid, signal.SIGKILL)  # the server and any request it still serves
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory):
    """A folder where QUICKSTART.md's sections 1 to 6 ran as written, at test size (tests/test_quickstart.py):
    its data, Stage 1 run, mel dirs, vocoders, waveforms, metrics and report. Read it; do not write in it."""
    from test_quickstart import run_quickstart

    folder = tmp_path_factory.mktemp("quickstart")
    run_quickstart(folder)
    return folder
