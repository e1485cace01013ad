"""Shared fixtures: a GCS emulator per test session (so one per xdist worker), fresh buckets, stores.

Tests that touch ``gs://`` ask for ``gcs_bucket`` (or ``store_uri``'s ``gcs`` case) and carry the
``gcs`` marker; the emulator starts on first use and stops at the end of the session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

import keel.storage

try:
    from gcs_emulator import Emulator
except ImportError:  # tests/ imported as a package
    from tests.gcs_emulator import Emulator

EMULATOR_ENV = {"STORAGE_EMULATOR_HOST": None, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """Start fake-gcs-server (in memory) and point every GCS client, here and in subprocesses, at it."""
    emulator = Emulator()
    url = emulator.start()
    previous = {name: os.environ.get(name) for name in EMULATOR_ENV}
    os.environ["STORAGE_EMULATOR_HOST"] = url
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    keel.storage._client = None  # re-created against the emulator on first use
    try:
        yield url
    finally:
        keel.storage._client = None
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        emulator.close()


@pytest.fixture
def gcs_bucket(gcs_emulator: str) -> str:
    """A new, empty bucket in the emulator; its name."""
    from google.cloud import storage

    name = f"keel-test-{uuid.uuid4().hex[:12]}"
    storage.Client().create_bucket(name)
    return name


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.gcs)])
def store_uri(request: pytest.FixtureRequest, tmp_path) -> str:
    """A registry root: a local folder, or ``gs://<fresh bucket>/some/prefix``."""
    if request.param == "local":
        return str(tmp_path / "store")
    return f"gs://{request.getfixturevalue('gcs_bucket')}/some/prefix"
