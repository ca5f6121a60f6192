"""Run the project's scripts in fresh processes forked from a warm one: the test suite's `python`.

Every script the suite runs would otherwise import torch, diffusers, scipy, librosa... anew: about 4 s
on 2 CPU cores, for each of ~130 runs. ``serve`` imports them once and then only forks: for each
request a child takes the caller's stdin, stdout and stderr (passed over a Unix socket, SCM_RIGHTS),
its working directory, environment and argv, and runs the script as ``python`` would (``runpy``,
``__name__ == "__main__"``). The child is a new process: its own memory, exit status and signals; what
differs from ``python script.py`` is only that the heavy modules were imported already, by the server.
The server never runs torch code itself: a process forked after torch has run parallel (OpenMP) code
hangs in the child's first parallel region.

``client`` is that ``python``: :func:`write_client` writes it as an executable whose ``#!`` is the real
interpreter. It sends the request, forwards SIGINT / SIGTERM to the child, and exits with the child's
status; if the caller dies, the server kills the child. Without a server (``DIFFBINAURAL_ZYGOTE`` unset
or not answering) it ``exec``s the real interpreter, so it is always a valid ``python``. Tests that
SIGKILL a run at a chosen moment use the real interpreter (a killed client would leave the child a few
milliseconds more). ``DIFFBINAURAL_TEST_FORK=0`` turns the server off for a whole session.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys

ENV = "DIFFBINAURAL_ZYGOTE"  # the server's socket path
# imported by the server once; each is what most of the scripts import (DiffBinaural's own modules are
# imported by the children: they are small, and the test session may be testing a changed one)
PRELOAD = ("torch", "numpy", "scipy.signal", "soundfile", "librosa", "diffusers", "PIL.Image", "av", "h5py",
           "auraloss", "tqdm", "matplotlib")


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _run_as_main(argv: list[str]) -> int:
    """Run ``argv`` (``script.py ARGS``, ``-m module ARGS`` or ``-c CODE ARGS``) as ``python`` would; the
    exit status."""
    import runpy
    import traceback

    try:
        if argv[0] == "-m":
            sys.argv, sys.path[0] = [argv[1], *argv[2:]], os.getcwd()
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv[0] == "-c":
            sys.argv, sys.path[0] = ["-c", *argv[2:]], ""
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        else:
            sys.argv, sys.path[0] = list(argv), os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
        return 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 - what the interpreter prints for an uncaught exception
        traceback.print_exc()
        return 1


def _child(fds: list[int], request: dict) -> None:
    """In the forked child: become the requested process, run it, exit (never returns)."""
    import atexit
    import io

    rc = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[1:1] = [os.path.abspath(p) for p in extra if os.path.abspath(p) not in sys.path]
        unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                      line_buffering=unbuffered or os.isatty(1), write_through=unbuffered)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                      line_buffering=True)
        atexit._clear()  # the server's exit handlers are not the script's
        rc = _run_as_main(request["argv"])
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe: nothing more to say
                pass
        os._exit(rc)


def _handle(conn: socket.socket) -> None:
    """In a per-request fork of the server: fork the child, tell the client its pid, wait for it (killing it if
    the client goes away), send its exit status (never returns)."""
    try:
        _, fds, _, _ = socket.recv_fds(conn, 1, 3)
        size = int.from_bytes(_recv_exact(conn, 8), "big")
        request = json.loads(_recv_exact(conn, size))
        pid = os.fork()
        if pid == 0:
            conn.close()
            _child(fds, request)
        for fd in fds:
            os.close(fd)
        conn.sendall(f"{pid}\n".encode())
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                break
            readable, _, _ = select.select([conn], [], [], 0.02)
            if readable and not conn.recv(1):  # the client died or was killed: so does its child
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
    finally:
        os._exit(0)


def serve(path: str) -> None:
    """Import :data:`PRELOAD`, listen on ``path`` and fork for each request, until stdin closes (the test
    session that started it, in a process group of its own, has ended)."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional extra that is not installed: the children import what they need
            pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path + ".tmp")
    server.listen(64)
    os.replace(path + ".tmp", path)  # the path appears only once the server listens
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the request forks are reaped by the kernel
    while True:
        readable, _, _ = select.select([server, sys.stdin], [], [])
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 1):  # the test session is gone
            os.killpg(0, signal.SIGKILL)  # and so are the requests it left running
        if server not in readable:
            continue
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # waitpid must see the child's status
            _handle(conn)
        conn.close()


def client(argv: list[str]) -> None:
    """Run ``argv`` through the server (or the real interpreter without one) and exit with its status."""
    path = os.environ.get(ENV)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if not path or not argv or (argv[0].startswith("-") and argv[0] not in ("-m", "-c")):
            raise OSError
        conn.connect(path)
    except OSError:
        os.execv(sys.executable, [sys.executable, *argv])
    payload = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    socket.send_fds(conn, [b"F"], [0, 1, 2])
    conn.sendall(len(payload).to_bytes(8, "big") + payload)
    reply = conn.makefile("r")
    pid = int(reply.readline())
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    line = reply.readline()
    code = int(line) if line else 1
    if code < 0:  # killed by a signal: die by the same one, as the caller would see the real process do
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


def write_client(path: str) -> str:
    """Write the client as an executable ``python`` at ``path`` (its ``#!`` the real interpreter)."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(path, "w") as f:
        f.write(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {here!r})\nimport _zygote\n"
                "_zygote.client(sys.argv[1:])\n")
    os.chmod(path, 0o755)
    return path


if __name__ == "__main__":
    serve(sys.argv[1])
