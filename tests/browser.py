"""Headless Chromium for tests that must see what a page shows: its DOM after rendering, a screenshot.

Chromium is the Debian package ``chromium`` (``make system-deps`` installs it). A test that needs
it fails, never skips, when it is missing: a skipped browser test would hide a broken page.
Each call starts a fresh browser with its own temporary profile and no network activity of its
own, and gives up after ``TIMEOUT`` seconds.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

TIMEOUT = 60  # seconds for one browser run
FLAGS = (
    "--headless",
    "--no-sandbox",  # running as root (in containers and CI) needs this
    "--disable-gpu",
    "--disable-background-networking",
    "--hide-scrollbars",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-sync",
    "--mute-audio",
    "--force-device-scale-factor=1",
)


def chromium() -> str:
    """The path of ``chromium`` on PATH; fails the calling test with what to install if it is absent."""
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "Chromium is not installed, and this test renders a page in it: install the Debian "
            "package 'chromium' (`make system-deps`, or as root `apt-get install "
            "--no-install-recommends chromium fonts-dejavu-core`).",
            pytrace=False,
        )
    return found


def run(page: Path, *action: str,
        window: tuple[int, int] = (1280, 2000)) -> subprocess.CompletedProcess[str]:
    """Open the local file ``page`` in headless Chromium with the ``action`` flags; fail the test
    on an error or a timeout."""
    browser = chromium()
    url = page.resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="keel-chromium-") as profile:
        command = [browser, *FLAGS, f"--user-data-dir={profile}",
                   f"--window-size={window[0]},{window[1]}", *action, url]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                                  stdin=subprocess.DEVNULL, cwd=profile)
        except subprocess.TimeoutExpired:
            pytest.fail(f"Chromium did not finish rendering {page} within {TIMEOUT} s", pytrace=False)
    if done.returncode != 0:
        pytest.fail(f"Chromium failed on {page} (exit {done.returncode}):\n{done.stderr[-3000:]}",
                    pytrace=False)
    return done


def dump_dom(page: Path) -> str:
    """The page's DOM after it was rendered (scripts run, styles applied), serialised as HTML."""
    dom = run(page, "--dump-dom").stdout
    if "<html" not in dom:
        pytest.fail(f"Chromium printed no DOM for {page}: {dom[:200]!r}", pytrace=False)
    return dom


def screenshot(page: Path, png: Path | None = None, *, width: int = 1280, height: int = 2000) -> Path:
    """A PNG of the top ``width`` x ``height`` pixels of the page (a window that size), written
    next to the page unless ``png`` is given. For the whole page, pass its height as measured
    in the DOM: headless screenshots do not scroll (not even to a ``#fragment``)."""
    png = (png or page.with_suffix(".png")).resolve()
    png.unlink(missing_ok=True)
    run(page, f"--screenshot={png}", window=(width, height))
    if not png.is_file() or png.stat().st_size == 0:
        pytest.fail(f"Chromium wrote no screenshot of {page} to {png}", pytrace=False)
    return png


def measure(page: Path, script: str) -> tuple[str, dict]:
    """The page's DOM as Chromium rendered it, and what ``script`` measured in it.

    ``script`` (a ``<script>`` element, added before ``</body>`` of a copy of the page) stores
    its findings as JSON in the body's ``data-measure`` attribute.
    """
    measured = page.with_name(page.stem + "-measured.html")
    measured.write_text(page.read_text().replace("</body>", script + "</body>"))
    dom = dump_dom(measured)
    layout = re.search(r'data-measure="([^"]*)"', dom)
    assert layout, "the layout was not measured"
    return dom, json.loads(html.unescape(layout[1]))


def visible_text(dom: str) -> str:
    """The page's text as a reader sees it: no tags, styles, scripts or titles; entities decoded."""
    dom = re.sub(r"<(style|script|title)\b.*?</\1>", " ", dom, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())
