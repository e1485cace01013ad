"""``keel run --runner docker`` without an engine or images: what reaches the containers, and the
errors a user sees before any stage starts. (tests/test_containers.py runs the real thing.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from keel.container_run import container_environment

REPO = Path(__file__).resolve().parents[1]


def test_containers_get_keel_and_storage_settings_only():
    host = {"KEEL_SOURCE_PASSWORD": "s3cret", "STORAGE_EMULATOR_HOST": "http://127.0.0.1:1",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "KEEL_IMAGE": "host/ingest:1",
            "KEEL_IMAGE_REGISTRY": "host", "KEEL_GIT_COMMIT": "abc", "HOME": "/root",
            "PATH": "/usr/bin", "AWS_SECRET_ACCESS_KEY": "x", "KEELHAUL": "no"}
    assert container_environment(host) == {
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "KEEL_SOURCE_PASSWORD": "s3cret",
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:1"}


def test_run_without_a_container_engine_says_how_to_start_one(tmp_path):
    socket = tmp_path / "no-engine.sock"
    ran = subprocess.run(
        [str(Path(sys.executable).parent / "keel"), "run", "--runner", "docker",
         "--source", str(REPO / "data" / "credit.csv"), "--target", "Status",
         "--store", str(tmp_path / "store"), "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOCKER_HOST": f"unix://{socket}"})
    assert ran.returncode == 1, ran.stderr
    assert f"--runner docker found no container engine at unix://{socket}" in ran.stderr
    assert "podman system service" in ran.stderr and "Traceback" not in ran.stderr
    assert not (tmp_path / "store").exists()


def test_run_rejects_an_unknown_runner(tmp_path):
    ran = subprocess.run(
        [str(Path(sys.executable).parent / "keel"), "run", "--runner", "kubernetes",
         "--source", "x.csv", "--target", "y", "--store", str(tmp_path / "store")],
        capture_output=True, text=True, timeout=60)
    assert ran.returncode == 2
    assert "'kubernetes' is not one of 'subprocess', 'docker'" in ran.stderr
