"""The ``keel`` command against gs:// (fake-gcs-server): two runs, the registry, a rollback, bad input.

The CLI runs as a subprocess (and kfp.local runs each stage in its own subprocess); they reach the
emulator through STORAGE_EMULATOR_HOST, which the ``gcs_emulator`` fixture put in the environment.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from keel.registry import MODEL_FILE, Registry
from keel.storage import open_store

try:
    from factories import lineage
except ImportError:  # tests/ imported as a package
    from tests.factories import lineage

pytestmark = [pytest.mark.gcs, pytest.mark.e2e]

CREDIT = Path(__file__).resolve().parents[1] / "data" / "credit.csv"
CREDIT_ROWS = 4454


def keel(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "keel"
    command = [str(script)] if script.exists() else [
        sys.executable, "-c", "import sys; from keel.cli import main; sys.argv[0] = 'keel'; main()"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)


def last_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def objects(bucket) -> dict[str, tuple]:
    return {b.name: (b.md5_hash, b.crc32c, b.generation) for b in bucket.list_blobs()}


@pytest.fixture
def bucket(gcs_bucket):
    from google.cloud import storage

    bucket = storage.Client().bucket(gcs_bucket)
    bucket.blob("in/credit.csv").upload_from_filename(str(CREDIT))
    return bucket


def test_two_runs_list_and_rollback_on_gcs(bucket, tmp_path):
    store = f"gs://{bucket.name}/store"
    run = ["run", "--source", f"gs://{bucket.name}/in/credit.csv", "--target", "Status",
           "--store", store, "--work-dir", str(tmp_path / "work"), "--json"]

    first = last_json(keel(*run))
    assert (first["status"], first["version"], first["production_version"]) == ("promoted", 1, 1)
    assert first["baseline"] is None
    assert first["model"] == "credit" and first["store"] == store
    assert first["rows"] == CREDIT_ROWS

    second = last_json(keel(*run))
    assert (second["status"], second["version"], second["production_version"]) == ("promoted", 2, 2)
    assert second["baseline"]["version"] == 1
    baseline_metrics = second["baseline"]["metrics"]
    assert baseline_metrics and set(baseline_metrics) == set(second["metrics"])
    assert all(isinstance(v, float) for v in baseline_metrics.values())
    assert second["data_version"] == first["data_version"]

    listing = last_json(keel("models", "list", "--store", store, "--json"))
    assert listing["model"] == "credit" and listing["production_version"] == 2
    assert [(v["version"], v["production"]) for v in listing["versions"]] == [(1, False), (2, True)]

    rollback = last_json(keel("models", "rollback", "--store", store, "--json"))
    assert (rollback["action"], rollback["from"], rollback["to"]) == ("rollback", 2, 1)
    registry = Registry(open_store(store), "credit")
    assert registry.alias().version == 1
    assert [(e["action"], e["to"]) for e in registry.events()] == [
        ("promote", 1), ("promote", 2), ("rollback", 1)]

    # The stored objects: sha256 of every file in the manifest, one content-addressed snapshot.
    for version in (1, 2):
        manifest = json.loads(
            bucket.blob(f"store/registry/credit/versions/{version}/manifest.json").download_as_bytes())
        assert set(manifest["files"]) >= {MODEL_FILE, "schema.json", "feature_spec.json"}
        for name, entry in manifest["files"].items():
            data = bucket.blob(f"store/registry/credit/versions/{version}/{name}").download_as_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        data_version = manifest["data"]["data_version"]
        assert data_version == first["data_version"] and len(data_version) == 64
        snapshot = f"store/data/{data_version}/snapshot.parquet"
        assert manifest["data"]["snapshot"] == f"gs://{bucket.name}/{snapshot}"
    import pyarrow.parquet as pq

    snapshots = [n for n in objects(bucket) if n.startswith("store/data/")]
    assert snapshots == [snapshot]
    table = pq.read_table(io.BytesIO(bucket.blob(snapshot).download_as_bytes()))
    assert table.num_rows == CREDIT_ROWS and "Status" in table.column_names
    assert registry.load_model(1) is not None  # verified against its sha256 and unpickled


def test_missing_gcs_source_fails_cleanly_and_changes_nothing(bucket, tmp_path):
    store = f"gs://{bucket.name}/store"
    # Something already in the store that a failed run must leave alone.
    version_file = tmp_path / "model.bin"
    version_file.write_bytes(b"an earlier version")
    registry = Registry(open_store(store), "credit")
    registry.publish({MODEL_FILE: version_file}, lineage(run_id="earlier"))
    registry.move_alias(1, expected_generation=0, action="promote", reason="earlier")
    before = objects(bucket)

    result = keel("run", "--source", f"gs://{bucket.name}/in/missing.csv", "--target", "Status",
                  "--store", store, "--model", "credit", "--work-dir", str(tmp_path / "work"),
                  "--json")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("keel: error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip("\n").splitlines()[-1] == errors[0]
    assert errors[0].startswith("keel: error: [ingest] ")
    assert f"gs://{bucket.name}/in/missing.csv" in errors[0]
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == ""
    assert objects(bucket) == before
