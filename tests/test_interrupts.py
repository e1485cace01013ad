"""Interrupting `keel run` with real processes and real signals.

`keel run` starts on the bundled sample with TMPDIR pointing at a test folder; when its stderr
shows a given stage running, the test sends SIGINT (to the process group, as a terminal's Ctrl-C
does, or to keel alone) or SIGTERM. Then: the exit status, the last line, the store state that
line claims (checked with Registry), no stage process left, and nothing left in TMPDIR.

To hold a stage in a known state (no race with a 0.1 s promote), a ``sitecustomize.py`` put on
the stages' PYTHONPATH makes the stage named by KEEL_TEST_HOLD wait, at its start or after its
work; synchronisation is by polling stderr or the registry, with timeouts, never by sleeping.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keel.local_run import STOP_GRACE
from keel.registry import Registry
from keel.storage import LocalStore

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "credit.csv"
KEEL = str(Path(sys.executable).with_name("keel"))
TIMEOUT = 120.0

pytestmark = pytest.mark.e2e

HOOK = '''
"""Test hook (tests/test_interrupts.py): hold one stage of `keel run`, as KEEL_TEST_HOLD says."""
import os, signal, sys, tempfile, time

_stage, _, _rest = os.environ.get("KEEL_TEST_HOLD", "").partition(":")
_when, _, _how = _rest.partition(":")
if "--function_to_execute" in sys.argv and _stage:
    if sys.argv[sys.argv.index("--function_to_execute") + 1] == _stage:
        tempfile.mkstemp(prefix="stage-scratch-")  # a temporary file the stage never removes
        with open(os.environ["KEEL_TEST_PIDS"], "a") as pids:
            pids.write(f"{os.getpid()}\\n")
        if _how == "ignore-sigint":
            signal.signal(signal.SIGINT, signal.SIG_IGN)

        def _hold():
            time.sleep(600)

        if _when == "start":
            _hold()
        else:
            import atexit
            atexit.register(_hold)
'''


class KeelProcess:
    """A running `keel run`, with its stderr collected line by line as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.process = subprocess.Popen(
            [KEEL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            cwd=REPO, start_new_session=True,  # its own group, as a shell's foreground job
        )
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self.changed = threading.Condition()
        self.readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                        for stream, lines in ((self.process.stderr, self.stderr),
                                              (self.process.stdout, self.stdout))]
        for reader in self.readers:
            reader.start()

    def _read(self, stream, lines: list[str]) -> None:
        for line in stream:
            with self.changed:
                lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for_stderr(self, pattern: str, timeout: float = TIMEOUT) -> None:
        """Until a stderr line matches ``pattern``; fails if keel ended or time ran out."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.changed:
            while not any(regex.search(line) for line in self.stderr):
                left = deadline - time.monotonic()
                assert left > 0 and self.process.poll() is None, (
                    f"never saw {pattern!r}:\n" + "\n".join(self.stderr))
                self.changed.wait(min(left, 0.5))

    def finish(self, timeout: float = TIMEOUT) -> int:
        status = self.process.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout)
        return status

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` (state, not time, is what we synchronise on)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def state(store: Path) -> tuple[list[int], int | None]:
    registry = Registry(LocalStore(store), "credit")
    return registry.versions(), registry.alias().version


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose: /proc says so on Linux.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


@pytest.fixture(scope="module")
def store_with_one_version(tmp_path_factory) -> Path:
    """The sample trained once (version 1, in production) by a run that leaves no temp file."""
    root = tmp_path_factory.mktemp("interrupts")
    tmp = root / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    result = subprocess.run(
        [KEEL, "run", "--source", str(SAMPLE), "--target", "Status", "--store",
         str(root / "store"), "--work-dir", str(root / "work"), "--estimator", "linear"],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert sorted(tmp.iterdir()) == []  # not even kfp's tmp*/ephemeral_component.py
    assert state(root / "store") == ([1], 1)
    return root / "store"


@pytest.fixture
def start(store_with_one_version: Path, tmp_path: Path) -> Iterator[Callable[..., KeelProcess]]:
    """Start `keel run` on a copy of the one-version store; kills what a failed test left."""
    started: list[KeelProcess] = []
    store = tmp_path / "store"
    shutil.copytree(store_with_one_version, store)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(HOOK)

    def launch(hold: str = "") -> KeelProcess:
        env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "KEEL_TEST_HOLD": hold,
               "KEEL_TEST_PIDS": str(tmp_path / "pids"),
               "PYTHONPATH": os.pathsep.join(
                   filter(None, [str(tmp_path / "hook"), os.environ.get("PYTHONPATH")]))}
        process = KeelProcess(
            ["run", "--source", str(SAMPLE), "--target", "Status", "--store", str(store),
             "--work-dir", str(tmp_path / "work"), "--estimator", "linear"], env)
        started.append(process)
        return process

    yield launch
    for process in started:
        process.kill()


def held_pids(tmp_path: Path) -> list[int]:
    path = tmp_path / "pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def assert_clean(tmp_path: Path) -> None:
    """Nothing in TMPDIR, and no stage process still running."""
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == []
    for pid in held_pids(tmp_path):
        wait_until(lambda pid=pid: not alive(pid), f"stage process {pid} is gone", timeout=10)


def running(stage: str) -> str:
    return rf"^  {stage}\s+running$"


def test_sigint_during_train_registers_nothing(start, tmp_path):
    keel = start(hold="train:start")
    keel.wait_for_stderr(running("train"))
    wait_until(lambda: held_pids(tmp_path), "the train stage started")
    os.killpg(keel.process.pid, signal.SIGINT)  # Ctrl-C in a terminal: the foreground group

    assert keel.finish() == 130
    assert keel.stderr[-1] == "keel: interrupted: nothing was registered", keel.stderr
    assert state(tmp_path / "store") == ([1], 1)
    assert "Traceback" not in "\n".join(keel.stderr + keel.stdout)
    assert_clean(tmp_path)


def test_sigint_while_train_is_really_fitting(start, tmp_path):
    """No hold: the signal reaches a stage at work, which must stop."""
    keel = start()
    keel.wait_for_stderr(running("train"))
    os.kill(keel.process.pid, signal.SIGINT)  # to keel alone, as `kill -INT` does

    assert keel.finish() == 130
    assert keel.stderr[-1] == "keel: interrupted: nothing was registered", keel.stderr
    assert not any(re.search(running(s), line) for s in ("evaluate", "publish")
                   for line in keel.stderr)
    assert state(tmp_path / "store") == ([1], 1)
    assert_clean(tmp_path)


def test_sigterm_during_promote_leaves_the_new_version_unpromoted(start, tmp_path):
    keel = start(hold="promote:start")
    keel.wait_for_stderr(running("promote"))
    wait_until(lambda: held_pids(tmp_path), "the promote stage started")
    keel.process.terminate()

    assert keel.finish() == 143
    assert keel.stderr[-1] == ("keel: interrupted: version 2 was registered but not promoted "
                               "(production is still version 1)"), keel.stderr
    assert state(tmp_path / "store") == ([1, 2], 1)
    assert_clean(tmp_path)


def test_sigint_after_promote_moved_production_says_so(start, tmp_path):
    keel = start(hold="promote:end")
    keel.wait_for_stderr(running("promote"))
    wait_until(lambda: state(tmp_path / "store")[1] == 2, "promote moved production")
    os.killpg(keel.process.pid, signal.SIGINT)

    assert keel.finish() == 130
    assert keel.stderr[-1] == ("keel: interrupted: version 2 was registered and promoted before "
                               "the interrupt"), keel.stderr
    assert state(tmp_path / "store") == ([1, 2], 2)
    assert_clean(tmp_path)


def test_a_stage_that_ignores_sigint_is_killed_after_the_grace_period(start, tmp_path):
    keel = start(hold="train:start:ignore-sigint")
    keel.wait_for_stderr(running("train"))
    wait_until(lambda: held_pids(tmp_path), "the train stage started")
    sent = time.monotonic()
    os.killpg(keel.process.pid, signal.SIGINT)

    assert keel.finish() == 130
    assert time.monotonic() - sent < STOP_GRACE + 20
    assert keel.stderr[-1] == "keel: interrupted: nothing was registered", keel.stderr
    assert_clean(tmp_path)


def test_a_second_signal_does_not_cut_the_cleanup(start, tmp_path):
    keel = start(hold="train:start:ignore-sigint")
    keel.wait_for_stderr(running("train"))
    wait_until(lambda: held_pids(tmp_path), "the train stage started")
    os.killpg(keel.process.pid, signal.SIGINT)
    os.kill(keel.process.pid, signal.SIGTERM)  # impatient user; the first signal counts
    os.killpg(keel.process.pid, signal.SIGINT)

    assert keel.finish() == 130
    assert keel.stderr[-1] == "keel: interrupted: nothing was registered", keel.stderr
    assert_clean(tmp_path)


def other_threads(pid: int) -> list[int]:
    return [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_signal_delivered_to_another_thread_still_interrupts(start, tmp_path):
    """The kernel may hand a process-directed signal to any thread (numpy starts some)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "tgkill"):
        pytest.skip("libc has no tgkill")
    keel = start(hold="train:start")
    keel.wait_for_stderr(running("train"))
    wait_until(lambda: held_pids(tmp_path), "the train stage started")
    threads = other_threads(keel.process.pid)
    if not threads:
        pytest.skip("keel runs a single thread here")
    assert libc.tgkill(keel.process.pid, threads[0], signal.SIGINT) == 0

    assert keel.finish() == 130
    assert keel.stderr[-1] == "keel: interrupted: nothing was registered", keel.stderr
    assert_clean(tmp_path)
