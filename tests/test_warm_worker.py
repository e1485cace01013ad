"""The warm worker of ``keel run``: a fork per stage that runs the component's code as its command
would, in its own process and process group; and a run through it registers what a run of
fresh interpreters registers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel.local_run import WarmWorker, component_call
from keel.registry import Registry
from keel.storage import open_store

REPO = Path(__file__).resolve().parents[1]
CREDIT = REPO / "data" / "credit.csv"
SCRIPT = ('program_path=$(mktemp -d)\n\nprintf "%s" "$0" > "$program_path/ephemeral_component.py"\n'
          f'_KFP_RUNTIME=true {sys.executable} -m kfp.dsl.executor_main'
          '                         --component_module_path'
          '                         "$program_path/ephemeral_component.py"'
          '                         "$@"\n')

# A lightweight component as kfp writes it into the command; the executor calls `stage`.
CODE = '''
import kfp
from kfp import dsl
from kfp.dsl import *
from typing import *

def stage(seconds: float, status: int) -> str:
    import os, sys, time
    print("in the stage", os.getpid(), os.getpgid(0), os.environ.get("KEEL_MARK"), flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    time.sleep(seconds)
    if status:
        raise SystemExit(status)
    return "done"
'''


def command(tmp_path: Path, seconds: float = 0.0, status: int = 0) -> list[str]:
    executor_input = {
        "inputs": {"parameterValues": {"seconds": seconds, "status": status}},
        "outputs": {"parameters": {"Output": {"outputFile": str(tmp_path / "output")}},
                    "outputFile": str(tmp_path / "executor_output.json")},
    }
    return ["sh", "-ec", SCRIPT, CODE, "--executor_input", json.dumps(executor_input),
            "--function_to_execute", "stage"]


@pytest.fixture
def worker(tmp_path):
    started = WarmWorker(str(tmp_path))
    yield started
    started.close()


def read_until(stage, text: str) -> None:
    """Read the stage's output up to the first line holding ``text``."""
    for line in stage.stdout:
        if text in line:
            return
    pytest.fail(f"the stage never printed {text!r}")


def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmp_path), "KEEL_MARK": "marked"}


def test_component_call_is_the_code_and_arguments_of_kfp_s_command(tmp_path):
    full = command(tmp_path)
    assert component_call(full) == (CODE, full[4:])
    assert component_call(["sh", "-c", "echo hi"]) is None
    other_python = [full[0], full[1], full[2].replace(sys.executable, "/usr/bin/python3"), *full[3:]]
    assert component_call(other_python) is None, "another interpreter: run the command as it is"
    with_pip = [full[0], full[1], "python3 -m pip install x && " + full[2], *full[3:]]
    assert component_call(with_pip) is None


def test_a_forked_stage_runs_the_component_in_its_own_process_group(worker, tmp_path):
    stage = worker.start(command(tmp_path), env(tmp_path))
    assert stage is not None, "the worker did not become ready"
    output = stage.stdout.read()
    assert stage.wait(timeout=30) == 0
    match = re.search(r"in the stage (\d+) (\d+) marked", output)
    assert match and int(match[1]) == stage.pid == int(match[2]), output
    assert stage.pid != os.getpid() and stage.pid != worker.process.pid
    assert "to stderr" in output
    written = json.loads((tmp_path / "executor_output.json").read_text())
    assert written["parameterValues"]["Output"] == "done"


def test_a_failing_stage_reports_its_status(worker, tmp_path):
    stage = worker.start(command(tmp_path, status=3), env(tmp_path))
    assert stage is not None
    stage.stdout.read()
    assert stage.wait(timeout=30) == 3


def test_sigint_to_the_stage_s_group_interrupts_it(worker, tmp_path):
    stage = worker.start(command(tmp_path, seconds=60), env(tmp_path))
    assert stage is not None
    read_until(stage, "in the stage")
    with pytest.raises(subprocess.TimeoutExpired):
        stage.wait(timeout=0.2)
    os.killpg(stage.pid, signal.SIGINT)
    assert stage.wait(timeout=30) == 128 + signal.SIGINT
    assert worker.process.poll() is None, "the worker outlives its stages"


def test_a_stage_whose_worker_died_has_failed(worker, tmp_path):
    stage = worker.start(command(tmp_path, seconds=60), env(tmp_path))
    assert stage is not None
    read_until(stage, "in the stage")
    worker.process.kill()
    worker.process.wait()
    assert stage.wait(timeout=30) == 1
    os.killpg(stage.pid, signal.SIGKILL)


def test_two_stages_at_once(worker, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = worker.start(command(tmp_path / "a", seconds=1), env(tmp_path))
    second = worker.start(command(tmp_path / "b", status=4), env(tmp_path))
    assert first is not None and second is not None and first.pid != second.pid
    second.stdout.read()
    first.stdout.read()
    assert (second.wait(timeout=30), first.wait(timeout=30)) == (4, 0)


def test_a_worker_that_cannot_start_leaves_stages_to_subprocesses(tmp_path):
    broken = WarmWorker(str(tmp_path / "missing-folder"))  # cannot bind its socket: it exits
    deadline = time.monotonic() + 30
    while broken.process is not None and broken.process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert broken.start(command(tmp_path), env(tmp_path)) is None
    broken.close()


def keel_run(store: Path, work: Path, *extra_env: tuple[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "keel"), "run", "--source", str(CREDIT), "--target",
         "Status", "--store", str(store), "--work-dir", str(work), "--json"],
        capture_output=True, text=True, timeout=600, env={**os.environ, **dict(extra_env)})


@pytest.mark.e2e
def test_a_run_through_the_worker_registers_what_fresh_interpreters_register(tmp_path):
    warm = keel_run(tmp_path / "warm", tmp_path / "warm-work")
    cold = keel_run(tmp_path / "cold", tmp_path / "cold-work", ("KEEL_WARM_WORKER", "0"))
    assert warm.returncode == 0 and cold.returncode == 0, warm.stderr + cold.stderr
    warm_log = Path(json.loads(warm.stdout.splitlines()[-1])["log"]).read_text()
    cold_log = Path(json.loads(cold.stdout.splitlines()[-1])["log"]).read_text()
    assert warm_log.count("Forked by the warm worker") >= 5  # every stage using scikit-learn
    assert "Forked by the warm worker" not in cold_log
    manifests = [Registry(open_store(str(tmp_path / name)), "credit").manifest(1)
                 for name in ("warm", "cold")]
    assert manifests[0].metrics == manifests[1].metrics
    assert manifests[0].files["model.joblib"].sha256 == manifests[1].files["model.joblib"].sha256
    assert manifests[0].training.effective_params == manifests[1].training.effective_params


def test_the_worker_stops_when_keel_is_gone(tmp_path):
    """A run killed outright (SIGKILL) cannot stop its worker: the worker notices by itself."""
    parent = subprocess.run(
        [sys.executable, "-c", "import sys, time; from keel.local_run import WarmWorker; "
         "w = WarmWorker(sys.argv[1]); assert w._is_ready(60); print(w.process.pid)",
         str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert parent.returncode == 0, parent.stderr
    pid = int(parent.stdout.split()[-1])
    deadline = time.monotonic() + 20
    while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the worker outlived Keel"
        time.sleep(0.2)
