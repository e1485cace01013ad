"""Register: write the immutable version with its lineage manifest; promote only on a pass.

The production alias is moved with the generation the evaluate stage read, so if another run
promoted in between, this run's version is kept but not promoted, and the run fails with a
RegistryConflict instead of silently replacing a model it was never compared with.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from keel import __version__
from keel.errors import RegistryConflict, reports_errors
from keel.images import STAGES, image
from keel.registry import MODEL_FILE, Registry
from keel.storage import open_store, read_json_file

GIT_COMMIT_ENV = "KEEL_GIT_COMMIT"  # baked into the images at build time
IN_IMAGE_ENV = "KEEL_IMAGE"  # set by each stage image to its own reference


def git_commit() -> str:
    """The code version: from the image, else from the checkout Keel runs from."""
    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
            text=True, timeout=10, check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty else "")


def stage_images() -> dict[str, str]:
    """The stage images of this run: next to the image register runs in, else as compiled here."""
    own = os.environ.get(IN_IMAGE_ENV, "")
    if not own:
        return {stage: image(stage) for stage in STAGES}
    registry, tag = own.rsplit("/", 1)[0], own.rsplit(":", 1)[1]
    return {stage: f"{registry}/{stage}:{tag}" for stage in STAGES}


def environment() -> dict[str, Any]:
    import sklearn

    return {
        "keel": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "scikit_learn": sklearn.__version__,
        "images": stage_images(),
        "ran_in_image": os.environ.get(IN_IMAGE_ENV, "") or None,
    }


def store_snapshot(store, snapshot_path: str, data_version: str) -> str:
    """Keep the data a version was trained on, content-addressed (written once, then reused)."""
    key = f"data/{data_version}/snapshot.parquet"
    if not store.exists(key):
        try:
            store.create_from_file(key, snapshot_path)
        except RegistryConflict:
            pass  # the same content was stored by a concurrent run
    return store.url(key)


@reports_errors
def run(
    store: str, model: str, model_path: str, snapshot_path: str, schema_path: str,
    spec_path: str, train_record_path: str, decision_path: str, ingest_json: str, run_id: str,
) -> str:
    """The register stage; returns the JSON run summary that ``keel run --json`` prints."""
    ingest_info = json.loads(ingest_json)
    target_store = open_store(store)
    registry = Registry(target_store, model)
    schema, decision = read_json_file(schema_path), read_json_file(decision_path)
    record = read_json_file(train_record_path)
    data_uri = store_snapshot(target_store, snapshot_path, ingest_info["data_version"])
    baseline = decision["baseline"]
    manifest = {
        "data": {**ingest_info, "snapshot": data_uri, "rows_used": schema["rows"],
                 "rows_dropped_missing_target": schema["rows_dropped_missing_target"]},
        "schema_hash": schema["schema_hash"],
        "task": schema["task"],
        "target": schema["target"],
        "features": read_json_file(spec_path),
        "training": record,
        "hyperparameters": record["params"],
        "metrics": decision["metrics"],
        "baseline": baseline,
        "decision": decision,
        "environment": environment(),
        "run_id": run_id,
    }
    version = registry.publish(
        {MODEL_FILE: model_path, "schema.json": schema_path, "feature_spec.json": spec_path},
        manifest,
    )
    if decision["passed"]:
        reason = (decision["override"] or {}).get("reason") or (
            "first model" if baseline is None else
            f"passed the evaluation gate against version {baseline['version']}")
        registry.move_alias(
            version, expected_generation=baseline["generation"] if baseline else 0,
            action="promote", reason=reason, run_id=run_id,
        )
    return json.dumps({
        "status": "promoted" if decision["passed"] else "rejected",
        "model": model,
        "store": target_store.uri,
        "version": version,
        "production_version": registry.alias().version,
        "data_version": ingest_info["data_version"],
        "rows": ingest_info["rows"],
        "task": schema["task"],
        "metrics": decision["metrics"],
        "baseline": None if baseline is None else {
            "version": baseline["version"], "metrics": baseline["metrics"],
            **({"error": baseline["error"]} if "error" in baseline else {}),
        },
        "decision": {k: decision[k] for k in ("passed", "checks", "first_run", "override",
                                              "notes")},
        "excluded_columns": schema["excluded"],
    })
