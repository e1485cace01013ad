"""Start, stop and restart a real MLflow tracking server (``mlflow server``) for the tests.

Full ``mlflow`` cannot live in Keel's .venv (it needs pyarrow < 26), so the server runs from its
own venv, ``.venv-mlflow`` (``make mlflow-venv``, pinned by requirements-mlflow.lock), with a
SQLite backend and served artifacts in a temporary folder. :meth:`MLflowServer.stop` and
:meth:`MLflowServer.start` again keep the port and the database: the "server down, then back"
case.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from pathlib import Path

try:
    from servers import answers
except ImportError:  # tests/ imported as a package
    from tests.servers import answers

ROOT = Path(__file__).resolve().parent.parent
MLFLOW = ROOT / ".venv-mlflow" / "bin" / "mlflow"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MLflowServer:
    """One ``mlflow server`` process on 127.0.0.1 with its database and artifacts in ``folder``."""

    def __init__(self, folder: Path | None = None) -> None:
        if not MLFLOW.is_file():
            raise RuntimeError(
                f"{MLFLOW} is missing: the MLflow mirror tests need a real MLflow server from "
                "its own venv. Run `make mlflow-venv` (it installs requirements-mlflow.lock into "
                ".venv-mlflow), then run the tests again.")
        self._tmp = None if folder is not None else tempfile.TemporaryDirectory(prefix="keel-mlflow-")
        self.folder = folder if folder is not None else Path(self._tmp.name)
        self.log_path = self.folder / "mlflow-server.log"
        self.port = 0
        self.url = ""
        self.process: subprocess.Popen | None = None
        self.start_seconds = 0.0  # how long the last start took, until /health answered

    def start(self, timeout: float = 90.0, attempts: int = 3) -> str:
        """Start the server (on its old port if it ran before) and wait for ``/health``."""
        error = ""
        for _ in range(attempts):  # a new port can be taken between free_port() and the bind
            port = self.port or free_port()
            began = time.monotonic()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port),
                     "--workers", "1",
                     "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
                     "--artifacts-destination", str(self.folder / "artifacts")],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=self.folder, start_new_session=True)
            url = f"http://127.0.0.1:{port}"
            if self._wait(url, timeout):
                self.port, self.url = port, url
                self.start_seconds = time.monotonic() - began
                return url
            error = self.log_path.read_text(errors="replace")[-3000:]
            self.stop()
        raise RuntimeError(f"mlflow server did not start; its log ends with:\n{error}")

    def _wait(self, url: str, timeout: float) -> bool:
        return answers(self.process, f"{url}/health", timeout, 0.1)

    def stop(self) -> None:
        """Stop the server and its workers (its own process group); the database stays."""
        import os
        import signal

        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None
        deadline = time.monotonic() + 10  # the port is free again once nothing listens on it
        while self.port and time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    break
            time.sleep(0.1)

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
