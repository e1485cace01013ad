"""Run the training pipeline on this machine through ``kfp.local`` (no cluster).

The stages run as subprocesses of this Python (``SubprocessRunner(use_venv=False)``), with the
very pipeline function that is compiled for Kubeflow. Their output goes to a log file; the
terminal gets one progress line per task, and a failing stage's KeelError comes back through
KEEL_ERROR_FILE as one readable line.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import redirect_stdout
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from keel.contracts import Promotion
from keel.errors import ERROR_FILE_ENV, KeelError, from_report

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")


class _ProgressLog(io.TextIOBase):
    """Everything goes to the log file; task start/finish lines also go to ``progress``."""

    def __init__(self, log: IO[str], progress: Callable[[str], None], echo: bool):
        self.log, self.progress, self.echo = log, progress, echo
        self.started: dict[str, float] = {}

    def write(self, text: str) -> int:
        self.log.write(text)
        if self.echo:
            self.progress(text.rstrip("\n"))
            return len(text)
        for line in _ANSI.sub("", text).splitlines():
            if match := _STARTED.search(line):
                self.started[match[1]] = time.perf_counter()
                self.progress(f"  {match[1]:<11} running")
            elif match := _FINISHED.search(line):
                took = time.perf_counter() - self.started.get(match[1], time.perf_counter())
                self.progress(f"  {match[1]:<11} {match[2].lower()} ({took:.1f}s)")
        return len(text)

    def flush(self) -> None:
        self.log.flush()


def run_training(
    arguments: dict[str, Any],
    work_dir: Path,
    progress: Callable[[str], None],
    debug: bool = False,
) -> tuple[Promotion, str]:
    """Run ``training_pipeline(**arguments)`` locally; what promote did, and the log's path."""
    from kfp import local

    from keel.pipelines.training import training_pipeline

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    pipeline_root = work_dir / "pipeline_root"
    log_path = work_dir / "logs" / f"{stamp}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))

    fd, error_file = tempfile.mkstemp(prefix="keel-error-", suffix=".json")
    os.close(fd)
    previous = os.environ.get(ERROR_FILE_ENV)
    os.environ[ERROR_FILE_ENV] = error_file
    try:
        with (
            open(log_path, "w") as log,
            redirect_stdout(_ProgressLog(log, progress, echo=debug)),
            warnings.catch_warnings(),
        ):
            # kfp.local warns that our stage images are not used locally: that is the point.
            warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
            try:
                task = training_pipeline(**arguments)
            except RuntimeError as exc:
                report = Path(error_file).read_text()
                if report:
                    raise from_report(json.loads(report), log=str(log_path)) from None
                raise KeelError(
                    f"The pipeline failed ({exc}); the full log is {log_path}", stage="run"
                ) from None
    finally:
        if previous is None:
            os.environ.pop(ERROR_FILE_ENV, None)
        else:
            os.environ[ERROR_FILE_ENV] = previous
        os.unlink(error_file)
    return Promotion.from_json(task.output, origin="the promote output"), str(log_path)
