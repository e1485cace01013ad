"""A warm worker for ``keel run``: the heavy libraries imported once, then one fork per stage.

Each stage of a local run is a KFP lightweight component: kfp.local starts ``sh -ec SCRIPT CODE
ARGS...``, whose script writes the component's code to a file and runs ``python3 -m
kfp.dsl.executor_main`` on it, a new interpreter that imports pandas, pyarrow and scikit-learn
again (0.3 to 1.5 s a stage). The warm worker is one process, started with the run, that imports
them once; for each stage it forks a child that does exactly what that script does (the same
code, the same executor, the same arguments and environment) in a process of its own, with its
own process group, its output on the pipe Keel reads. Stages stay isolated from each other: each
is a separate process that exits when its stage ends.

Protocol, on a Unix socket: a client connects, sends one JSON line ``{"code", "args", "env"}``
with the write end of its output pipe attached (SCM_RIGHTS); the worker answers ``{"pid": N}``
when the child runs and ``{"status": S}`` when it has ended (S as ``subprocess.Popen.returncode``).

    python -m keel.warm_worker SOCKET    # serves until its socket is closed or it is signalled
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import tempfile
from typing import Any

#: Imported before serving: what most stages import. A stage imports anything else itself.
PRELOAD: tuple[str, ...] = (
    "numpy", "pandas", "pyarrow", "pyarrow.compute", "pyarrow.csv", "pyarrow.parquet",
    "sklearn", "sklearn.compose", "sklearn.ensemble", "sklearn.linear_model", "sklearn.metrics",
    "sklearn.model_selection", "sklearn.pipeline", "sklearn.preprocessing", "joblib",
    "threadpoolctl", "pydantic", "kfp.dsl.executor_main", "keel.contracts", "keel.storage",
    "keel.registry", "keel.settings", "keel.errors",
)
READY = "ready"  # the line the worker prints on standard output once it serves
PARENT_CHECK = 1.0  # seconds between checks that Keel (the parent) is still there


def preload() -> None:
    """Import :data:`PRELOAD`, skipping what this installation lacks."""
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _child(code: str, args: list[str], env: dict[str, str], output: int) -> int:
    """In the forked child: what the component's ``sh -ec`` script does; the exit status."""
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT
                      else signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(env)
    os.environ["_KFP_RUNTIME"] = "true"
    tempfile.tempdir = None  # TMPDIR is the stage's
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - for the process
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    program = os.path.join(tempfile.mkdtemp(), "ephemeral_component.py")
    with open(program, "w") as file:
        file.write(code)
    sys.argv = ["executor_main", "--component_module_path", program, *args]
    try:
        from kfp.dsl.executor_main import executor_main  # what `python -m` would run

        executor_main()
        return 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except BaseException:
        import traceback

        traceback.print_exc()
        return 1
    finally:
        # The fork leaves through os._exit, which runs no exit handlers: flush what they would.
        with contextlib.suppress(Exception):
            import logging

            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()


def _status(wait_status: int) -> int:
    """``waitpid``'s status as ``Popen.returncode`` has it (minus the signal number if killed)."""
    if os.WIFSIGNALED(wait_status):
        return -os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def _send(connection: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        connection.sendall((json.dumps(message) + "\n").encode())


def _start(connection: socket.socket, children: dict[int, socket.socket],
           inherited: list[int]) -> None:
    """Read one request from ``connection`` and fork its stage."""
    data = b""
    fds: list[int] = []
    while not data.endswith(b"\n"):
        chunk, received, _, _ = socket.recv_fds(connection, 1 << 20, 1)
        fds += received
        if not chunk:
            break
        data += chunk
    if not data.endswith(b"\n") or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        _send(connection, {"error": "a request is one JSON line with one file descriptor"})
        connection.close()
        return
    request = json.loads(data)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the stage
        status = 1
        try:
            os.setpgid(0, 0)
            signal.set_wakeup_fd(-1)
            connection.close()
            for other in children.values():
                other.close()
            for fd in inherited:  # the worker's socket and wake-up pipe
                os.close(fd)
            status = _child(request["code"], request["args"], request["env"], fds[0])
        finally:
            os._exit(status)
    with contextlib.suppress(OSError):  # also in the parent: no race with an early killpg
        os.setpgid(pid, pid)
    os.close(fds[0])
    children[pid] = connection
    _send(connection, {"pid": pid})


def serve(path: str) -> None:
    """Serve stage requests on the Unix socket ``path`` until it is removed or closed."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through the pipe
    children: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_read, selectors.EVENT_READ, "child")
    print(READY, flush=True)
    parent = os.getppid()
    while True:
        if os.getppid() != parent or not os.path.exists(path):
            return  # Keel is gone (or its run folder is): nothing will ask any more
        for key, _ in selector.select(timeout=PARENT_CHECK):
            if key.data == "accept":
                connection, _ = listener.accept()
                _start(connection, children, [listener.fileno(), wake_read, wake_write])
            else:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_read, 512)
        while children:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in children:
                connection = children.pop(pid)
                _send(connection, {"status": _status(wait_status)})
                connection.close()


def main() -> None:
    """``python -m keel.warm_worker SOCKET``: preload, then serve until stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Keel stops the worker itself (SIGTERM)
    preload()
    serve(sys.argv[1])


if __name__ == "__main__":
    main()
