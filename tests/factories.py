"""Shared test helpers: valid contract objects (made from a real manifest that Keel 0.1.0 wrote),
and ways to damage a store behind the registry's back and to see that nothing changed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from keel.contracts import Lineage, Manifest
from keel.storage import LocalStore, Store

STORE_0_1_0 = Path(__file__).parent / "data" / "store-0.1.0"
MANIFEST_0_1_0 = STORE_0_1_0 / "registry" / "credit" / "versions" / "1" / "manifest.json"


def lineage(**changes: Any) -> Lineage:
    """The lineage of version 1 of the bundled sample, with ``changes`` applied."""
    recorded = Manifest.from_json(MANIFEST_0_1_0.read_bytes())
    fields = {name: getattr(recorded, name) for name in Lineage.model_fields}
    fields["schema_version"] = Lineage.model_fields["schema_version"].default
    return Lineage(**{**fields, **changes})


def overwrite(store: Any, key: str, data: bytes) -> None:
    """Replace an object behind the registry's back (what tampering or bit rot would do)."""
    if isinstance(store, LocalStore):
        (store.root / key).write_bytes(data)
    else:
        store.bucket.blob(store._name(key)).upload_from_string(data)


def delete(store: Any, key: str) -> None:
    """Remove an object behind the registry's back."""
    if isinstance(store, LocalStore):
        (store.root / key).unlink()
    else:
        store.bucket.blob(store._name(key)).delete()


def state(store: Store | Any) -> dict[str, str]:
    """Every object of the store with its content hash (and GCS generation): "unchanged" is equality.

    Locally this includes hidden files (lock files) and folders, so nothing a failed command
    creates can hide.
    """
    if isinstance(store, LocalStore):
        if not store.root.exists():
            return {}
        return {str(p.relative_to(store.root)):
                hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
                for p in sorted(store.root.rglob("*"))}
    return {b.name: f"{b.md5_hash}@{b.generation}"
            for b in store.bucket.list_blobs(prefix=f"{store.prefix}/")}


@pytest.fixture(autouse=True)
def one_thread():
    """OpenMP threads fighting over 2 shared cores make HistGradientBoosting 100x slower.

    Autouse in the modules that import it (test_train, test_search), which fit many models.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


#: Every file the stages write on the way from a CSV to a published version.
STAGE_FILES = (
    "snapshot.parquet", "dataset.parquet", "schema.json", "report.md", "statistics.json",
    "validation.json", "validation_report.html", "train.parquet", "test.parquet", "spec.json",
    "split.json", "model.joblib", "golden_rows.json", "record.json", "decision.json",
    "report.json", "model_card.html")


def run_stages(folder: Path, csv: Path, store: str, model: str, target: str, *,
               estimator: str = "linear", params: str = "{}", test_size: float = 0.25,
               thresholds: dict[str, Any] | None = None, bootstrap_rounds: int = 50
               ) -> dict[str, str]:
    """ingest -> validate -> preprocess -> train -> evaluate, for real, on ``csv``; the paths of
    what they wrote (``ingest``: the ingest result as JSON). Nothing is published yet."""
    from keel import evaluate, ingest, preprocess, train, validate

    folder.mkdir(parents=True, exist_ok=True)
    p = {name: str(folder / name) for name in STAGE_FILES}
    p["ingest"] = ingest.ingest(str(csv), p["snapshot.parquet"]).to_json()
    validate.run(p["snapshot.parquet"], target, "auto", p["dataset.parquet"], p["schema.json"],
                 p["report.md"], statistics_out=p["statistics.json"],
                 validation_out=p["validation.json"],
                 report_html_out=p["validation_report.html"])
    preprocess.run(p["dataset.parquet"], p["schema.json"], test_size, "auto", p["train.parquet"],
                   p["test.parquet"], p["spec.json"], p["split.json"], estimator=estimator)
    train.run(p["train.parquet"], p["spec.json"], estimator, params, 0, p["model.joblib"],
              p["record.json"], golden_out=p["golden_rows.json"])
    evaluate.run(p["model.joblib"], p["test.parquet"], p["spec.json"], p["schema.json"], store,
                 model, thresholds or {}, "", p["decision.json"], p["report.json"],
                 replace_default_rule=bool(thresholds), bootstrap_rounds=bootstrap_rounds)
    return p


def publish_stages(p: dict[str, str], store: str, model: str, run_id: str = "run-1") -> Any:
    """Publish what :func:`run_stages` wrote; the Publication."""
    from keel import publish

    return publish.run(
        store, model, p["model.joblib"], p["snapshot.parquet"], p["schema.json"], p["spec.json"],
        p["record.json"], p["decision.json"], p["ingest"], run_id, split_path=p["split.json"],
        report_path=p["report.json"], card_out=p["model_card.html"],
        statistics_path=p["statistics.json"], checks_path=p["validation.json"],
        validation_report_path=p["validation_report.html"], golden_path=p["golden_rows.json"])
