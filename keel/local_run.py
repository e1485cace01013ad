"""Run the training pipeline on this machine through ``kfp.local`` (no cluster).

The stages run as subprocesses of this Python (``SubprocessRunner(use_venv=False)``), with the
very pipeline function that is compiled for Kubeflow. Their output goes to a log file; the
terminal gets one progress line per task, and a failing stage's KeelError comes back through
KEEL_ERROR_FILE as one readable line.

Two things kfp.local does not do are done here:

- **Nothing is left in temporary folders.** kfp writes each stage's code to a fresh
  ``$TMPDIR/tmp*/ephemeral_component.py`` (``mktemp -d`` in the component's shell command) and
  never removes it, and ``local.init`` makes a ``kfp-workspace-*`` folder. A run gets one
  temporary folder of its own: the stages' ``TMPDIR``, kfp's workspace and the error file live in
  it, and it is removed when the run ends, normally or not.
- **Libraries are imported once.** A warm worker (:mod:`keel.warm_worker`), started with the
  run, imports pandas, pyarrow and scikit-learn once and forks a process per stage that runs the
  component's code exactly as its ``sh -ec`` command would; a stage that starts before the worker
  is ready, or any command of another shape, is started as a subprocess as before.
  ``KEEL_WARM_WORKER=0`` turns it off.
- **An interrupt stops the stages.** Each stage runs in its own process group (so a Ctrl-C in the
  terminal reaches Keel, not the stage half-way through a write); on SIGINT or SIGTERM, Keel
  sends the running stage SIGINT (Python unwinds: its ``finally`` blocks and temporary files are
  cleaned up), kills the group if it has not ended within :data:`STOP_GRACE` seconds, and raises
  :class:`~keel.errors.Interrupted`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

from keel.contracts import Promotion
from keel.errors import ERROR_FILE_ENV, Interrupted, KeelError, from_report, printable
from keel.stages import STAGE_NAMES, stage
from keel.tune import TRIAL_THREADS_ENV
from keel.warm_worker import READY

WARM_WORKER_ENV = "KEEL_WARM_WORKER"  # "0": every stage is a new interpreter
READY_WAIT = 60.0  # seconds a stage waits at most for the warm worker's imports


class _Stage(Protocol):
    """A running stage: a subprocess, or a child of the warm worker."""

    @property
    def pid(self) -> int: ...

    @property
    def stdout(self) -> IO[str] | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")

#: kfp.local runs two trials of a search at once: each gets half the cores, since two OpenMP
#: pools that each take every core slow each other down many times over.
LOCAL_TRIAL_THREADS = max(1, (os.cpu_count() or 2) // 2)
STOP_GRACE = 5.0  # seconds a stage has to unwind after SIGINT before its process group is killed
POLL = 0.2  # seconds the main thread waits at most before it runs a pending signal handler
_STAGES: set[_Stage] = set()  # the stage processes running now
_STAGES_LOCK = threading.RLock()  # re-entrant: the signal handler may run while it is held


class _ProgressLog(io.TextIOBase):
    """Everything goes to the log file; task start/finish lines also go to ``progress``."""

    def __init__(self, log: IO[str], progress: Callable[[str], None], echo: bool):
        self.log, self.progress, self.echo = log, progress, echo
        self.started: dict[str, float] = {}
        self.partial = ""  # --debug: the start of a line not yet ended

    def write(self, text: str) -> int:
        self.log.write(text)
        if self.echo:
            # --debug streams the stage logs: they quote data, so no raw control characters.
            *lines, self.partial = (self.partial + text).split("\n")
            for line in lines:
                self.progress(printable(_ANSI.sub("", line)))
            return len(text)
        for line in _ANSI.sub("", text).splitlines():
            if match := _STARTED.search(line):
                self.started[match[1]] = time.perf_counter()
                self.progress(f"  {printable(match[1]):<11} running")
            elif match := _FINISHED.search(line):
                took = time.perf_counter() - self.started.get(match[1], time.perf_counter())
                self.progress(f"  {printable(match[1]):<11} {match[2].lower()} ({took:.1f}s)")
        return len(text)

    def flush(self) -> None:
        self.log.flush()


# -- stage processes ----------------------------------------------------------------------------
def stop_stages(signum: int = signal.SIGINT) -> None:
    """Send ``signum`` to every running stage's process group (returns at once)."""
    with _STAGES_LOCK:
        running = list(_STAGES)
    for process in running:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)


def _stop(process: _Stage) -> None:
    """Stop one stage: SIGINT, :data:`STOP_GRACE` seconds to unwind, then SIGKILL its group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        pass
    # Whatever the stage started in its group (and did not stop) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Hand the stage's output lines to the main thread (None: the stage closed its output)."""
    try:
        for line in iter(stream.readline, ""):
            lines.put(line)
    except (OSError, ValueError):  # the stream was closed under us: the stage is being stopped
        pass
    finally:
        lines.put(None)


def _next_line(lines: queue.Queue[str | None]) -> str | None:
    """The stage's next line, waiting in short slices.

    A signal may be delivered to any thread of this process (numpy and scikit-learn start
    some); a main thread blocked in read() or waitpid() would then never run the Python signal
    handler. Waking up every :data:`POLL` seconds lets the handler run within that time.
    """
    while True:
        try:
            return lines.get(timeout=POLL)
        except queue.Empty:
            continue


def _wait(process: _Stage) -> int:
    """``process.wait()``, in short slices for the same reason as :func:`_next_line`."""
    while True:
        try:
            return process.wait(timeout=POLL)
        except subprocess.TimeoutExpired:
            continue


def _run_stage(full_command: list[str], env_vars: dict[str, str] | None = None, *,
               tmp: str, worker: WarmWorker | None = None) -> int:
    """kfp.local's ``run_local_subprocess``, with the stage in its own process group and TMPDIR.

    Same contract as kfp 2.17.3's: the stage's output is printed line by line (into the run log),
    and its exit status is returned. With a ready ``worker``, the stage is its fork.
    """
    env = {**os.environ, **(env_vars or {}), "TMPDIR": tmp, "TMP": tmp, "TEMP": tmp,
           TRIAL_THREADS_ENV: str(LOCAL_TRIAL_THREADS)}
    process: _Stage | None = None
    forked: _ForkedStage | None = None
    reader: threading.Thread | None = None
    try:
        with shielded():  # started and known to stop_stages() as one step
            forked = worker.start(full_command, env) if worker is not None else None
            process = forked if forked is not None else subprocess.Popen(
                full_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                errors="backslashreplace", bufsize=1, env=env, process_group=0,
            )
            with _STAGES_LOCK:
                _STAGES.add(process)
        assert process.stdout is not None
        if forked is not None:
            print(f"Forked by the warm worker as process {forked.pid}")
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True)
        reader.start()
        while (line := _next_line(lines)) is not None:
            print(line, end="")
        print("\n")
        return _wait(process)
    except BaseException:
        if process is not None:
            _stop(process)
        raise
    finally:
        if process is not None:
            with _STAGES_LOCK:
                _STAGES.discard(process)
            if reader is not None:
                reader.join(timeout=STOP_GRACE)  # the stage is gone: its output ends
            if process.stdout is not None and (reader is None or not reader.is_alive()):
                process.stdout.close()


@contextlib.contextmanager
def _stages_launched_by_keel(tmp: str, worker: WarmWorker | None) -> Iterator[None]:
    """Make kfp.local start the stages through :func:`_run_stage` for the duration.

    The stages that can go through ``worker`` do; it is stopped at the end.
    """
    from kfp.local import subprocess_task_handler

    def launch(full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        return _run_stage(full_command, env_vars, tmp=tmp, worker=worker)

    original = subprocess_task_handler.run_local_subprocess
    subprocess_task_handler.run_local_subprocess = launch
    try:
        yield
    finally:
        subprocess_task_handler.run_local_subprocess = original


# -- the warm worker ----------------------------------------------------------------------------
def component_call(full_command: list[str]) -> tuple[str, list[str]] | None:
    """(code, executor arguments) of a lightweight component's command run by this Python.

    kfp 2.17.3 runs ``sh -ec SCRIPT CODE ARGS...``, where SCRIPT writes CODE to a file and runs
    ``<python> -m kfp.dsl.executor_main --component_module_path FILE ARGS...``. None for any
    other command (then it runs as it is).
    """
    if (len(full_command) >= 4 and full_command[:2] == ["sh", "-ec"]
            and f"{sys.executable} -m kfp.dsl.executor_main" in full_command[2]
            and "pip install" not in full_command[2]):
        return full_command[3], full_command[4:]
    return None


class _ForkedStage:
    """A stage forked by the warm worker, with the part of ``Popen``'s interface Keel uses."""

    def __init__(self, connection: socket.socket, pid: int, stdout: IO[str]):
        self.connection, self.pid, self.stdout = connection, pid, stdout
        self.returncode: int | None = None
        self._buffer = b""

    def wait(self, timeout: float | None = None) -> int:
        """The exit status; ``subprocess.TimeoutExpired`` if it has not ended in ``timeout``."""
        if self.returncode is None:
            message = _read_message(self.connection, self._buffer, timeout)
            if message is None:
                raise subprocess.TimeoutExpired(f"stage {self.pid}", timeout or 0)
            self._buffer = b""
            self.returncode = int(message.get("status", 1))
            self.connection.close()
        return self.returncode


def _read_message(connection: socket.socket, buffer: bytes, timeout: float | None
                  ) -> dict[str, Any] | None:
    """One JSON line from the worker; None on timeout (``buffer`` keeps a partial line)."""
    connection.settimeout(timeout)
    data = buffer
    try:
        while not data.endswith(b"\n"):
            chunk = connection.recv(4096)
            if not chunk:  # the worker is gone: the stage's status is unknown, so a failure
                return {"status": 1}
            data += chunk
    except TimeoutError:
        return None
    message: dict[str, Any] = json.loads(data)
    return message


class WarmWorker:
    """The run's warm worker process (:mod:`keel.warm_worker`) and its socket."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, "warm-worker.sock")
        self.ready = False
        self.process: subprocess.Popen[str] | None = None
        with contextlib.suppress(OSError):
            self.process = subprocess.Popen(
                [sys.executable, "-m", "keel.warm_worker", self.path], stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True, process_group=0)

    def _is_ready(self, wait: float) -> bool:
        """Whether the worker serves (it prints one line when it does), waiting up to ``wait``."""
        output = self.process.stdout if self.process is not None else None
        if self.ready or self.process is None or output is None:
            return self.ready
        if self.process.poll() is not None:
            self.process = None
            return False
        import select

        readable, _, _ = select.select([output], [], [], wait)
        if readable:
            self.ready = output.readline().strip() == READY
            if not self.ready:  # it failed to start: its stages run as subprocesses
                self.close()
        return self.ready

    def start(self, full_command: list[str], env: dict[str, str]) -> _ForkedStage | None:
        """The stage forked by the worker, or None (not a component call, or no worker).

        A stage that uses scikit-learn waits for the worker to be ready (its own interpreter
        would import the same libraries); the others start at once as subprocesses meanwhile.
        """
        call = component_call(full_command)
        if call is None:
            return None
        code, args = call
        function = args[args.index("--function_to_execute") + 1] \
            if "--function_to_execute" in args[:-1] else ""
        needs_libraries = function not in STAGE_NAMES or stage(function).uses_scikit_learn
        if not self._is_ready(READY_WAIT if needs_libraries else 0):
            return None
        read, write = os.pipe()
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(self.path)
            request = json.dumps({"code": code, "args": args, "env": env}) + "\n"
            socket.send_fds(connection, [request.encode()], [write])
            message = _read_message(connection, b"", None)
        except OSError:
            message = None
        finally:
            os.close(write)
        if message is None or "pid" not in message:
            os.close(read)
            connection.close()
            return None
        stdout = open(read, errors="backslashreplace")  # noqa: SIM115 - closed by _run_stage
        return _ForkedStage(connection, int(message["pid"]), stdout)

    def close(self) -> None:
        """Stop the worker (its running children, if any, were stopped by then); idempotent."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                self.process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None


# -- interrupts ---------------------------------------------------------------------------------
class _Interrupts:
    """SIGINT and SIGTERM become one :class:`Interrupted`, after the stages were told to stop.

    Only the first signal counts: a second Ctrl-C while Keel cleans up is ignored, so the
    cleanup (bounded by :data:`STOP_GRACE`) always finishes. Inside :meth:`shielded`, the
    exception waits until the section ends, so a cleanup is never cut half-way.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self.raised = False
        self.depth = 0

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler (main thread)."""
        if self.received is not None:
            return
        self.received = signum
        stop_stages()
        if not self.depth:
            self.raised = True
            raise Interrupted(signum)

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """A section an interrupt does not cut: it is raised when the section ends."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.received is not None and not self.raised:
            self.raised = True
            raise Interrupted(self.received)


_interrupts: _Interrupts | None = None


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """For the duration, SIGINT and SIGTERM stop the running stage and raise Interrupted."""
    global _interrupts
    state = _Interrupts()
    previous = {signum: signal.signal(signum, state.handle)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    outer, _interrupts = _interrupts, state
    try:
        yield
    finally:
        _interrupts = outer
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def shielded() -> contextlib.AbstractContextManager[None]:
    """A section an interrupt does not cut (see :class:`_Interrupts`); plain outside a run."""
    return _interrupts.shielded() if _interrupts is not None else contextlib.nullcontext()


# -- the run ------------------------------------------------------------------------------------
def _read_report(path: Path) -> dict[str, Any] | None:
    """The error a stage reported, or None (no report, or one cut short by a killed stage)."""
    try:
        report = json.loads(path.read_text(errors="replace"))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def _run_folder() -> Path:
    """This run's own temporary folder, in the user's TMPDIR."""
    folder = "the temporary folder"
    try:
        # gettempdir() itself skips folders it cannot write; it fails when none is left.
        folder = tempfile.gettempdir()
        return Path(tempfile.mkdtemp(prefix="keel-run-", dir=folder))
    except OSError as exc:
        raise KeelError(
            f"Keel needs a folder of its own in {folder} and cannot make one "
            f"({exc.strerror or exc}); set TMPDIR to a folder you can write.",
            stage="run",
        ) from None


#: How ``keel run`` runs the stages: as subprocesses of this Python, or each in its own image.
RUNNERS: tuple[str, ...] = ("subprocess", "docker")


def _runner(runner: str, stage_tmp: str, pipeline_root: Path, error_file: Path,
            worker: WarmWorker | None) -> tuple[Any, contextlib.AbstractContextManager[None]]:
    """The kfp.local runner for ``runner``, and what must surround the run for it."""
    from kfp import local

    if runner == "subprocess":
        return local.SubprocessRunner(use_venv=False), _stages_launched_by_keel(stage_tmp, worker)

    if runner != "docker":
        raise ValueError(f"Unknown runner {runner!r}; runners are {', '.join(RUNNERS)}.")
    from keel.container_run import (
        check_images,
        container_environment,
        docker_client,
        stages_in_containers,
    )

    client = docker_client()
    try:
        check_images(client)
    finally:
        client.close()
    pipeline_root.chmod(0o777)  # the images' user writes the stages' outputs there
    environment = {**container_environment(), TRIAL_THREADS_ENV: str(LOCAL_TRIAL_THREADS),
                   ERROR_FILE_ENV: str(error_file)}
    return (local.DockerRunner(network_mode="host", environment=environment),
            stages_in_containers())


def run_training(
    arguments: dict[str, Any],
    work_dir: Path,
    progress: Callable[[str], None],
    debug: bool = False,
    runner: str = "subprocess",
) -> tuple[Promotion, str]:
    """Run ``training_pipeline(**arguments)`` locally; what promote did, and the log's path.

    ``runner`` is one of :data:`RUNNERS`. Leaves nothing in temporary folders, whether the run
    succeeds, fails or is interrupted.
    """
    run_tmp: Path | None = None
    error_file: Path | None = None
    worker: WarmWorker | None = None
    try:
        with shielded():
            run_tmp = _run_folder()
        stage_tmp = run_tmp / "tmp"
        stage_tmp.mkdir()
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        pipeline_root = work_dir / "pipeline_root"
        log_path = work_dir / "logs" / f"{stamp}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        pipeline_root.mkdir(parents=True, exist_ok=True)
        # In the pipeline root, which every stage sees (containers too), at the same path.
        error_file = pipeline_root / f".error-{stamp}.json"
        error_file.touch()
        error_file.chmod(0o666)
        if runner == "subprocess" and os.environ.get(WARM_WORKER_ENV, "1") != "0":
            worker = WarmWorker(str(stage_tmp))  # first: its imports overlap kfp's
        kfp_runner, surrounding = _runner(runner, str(stage_tmp), pipeline_root, error_file,
                                          worker)
        from kfp import local

        from keel.pipelines.training import training_pipeline

        workspace = run_tmp / "workspace"
        workspace.mkdir(mode=0o777)
        workspace.chmod(0o777)  # mkdir's mode is cut by the umask
        local.init(runner=kfp_runner, pipeline_root=str(pipeline_root),
                   workspace_root=str(workspace))
        previous = os.environ.get(ERROR_FILE_ENV)
        os.environ[ERROR_FILE_ENV] = str(error_file)
        try:
            with (
                open(log_path, "w") as log,
                redirect_stdout(_ProgressLog(log, progress, echo=debug)),
                warnings.catch_warnings(),
                surrounding,
            ):
                # kfp.local warns that our stage images are not used locally: that is the point.
                warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
                try:
                    task = training_pipeline(**arguments)
                except RuntimeError as exc:
                    report = _read_report(error_file)
                    if report is not None:
                        raise from_report(report, log=str(log_path)) from None
                    raise KeelError(
                        f"The pipeline failed ({exc}); the full log is {log_path}", stage="run"
                    ) from None
        finally:
            if previous is None:
                os.environ.pop(ERROR_FILE_ENV, None)
            else:
                os.environ[ERROR_FILE_ENV] = previous
    finally:
        with shielded():
            if worker is not None:
                worker.close()
            if run_tmp is not None:
                shutil.rmtree(run_tmp, ignore_errors=True)
            if error_file is not None:
                error_file.unlink(missing_ok=True)
    return Promotion.from_json(task.output, origin="the promote output"), str(log_path)
