"""What the test servers (GCS emulator, MLflow) share: waiting until one answers over HTTP."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request


def answers(process: subprocess.Popen | None, url: str, timeout: float,
            interval: float = 0.1) -> bool:
    """Whether ``url`` answers 200 within ``timeout`` s while ``process`` keeps running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is None or process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(interval)
    return False
