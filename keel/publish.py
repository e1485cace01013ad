"""Publish: write the immutable model version with its lineage manifest, through the registry.

The manifest records which data (ingest result, stored snapshot), features, parameters, code
(package version, git commit) and images produced which results (metrics, decision record).
Publishing never moves production: that is the promote stage's job, so a smoke test or a
deployment can sit between "this version exists" and "this version is production".
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import version as installed_version
from pathlib import Path

from keel import __version__
from keel.contracts import (
    DataLineage,
    Decision,
    Environment,
    EvaluationReport,
    FeatureSpec,
    IngestResult,
    Lineage,
    Publication,
    SplitResult,
    TableSchema,
    TrainRecord,
    ValidationResult,
)
from keel.errors import reports_errors
from keel.images import image
from keel.registry import MODEL_CARD_FILE, MODEL_FILE, Registry
from keel.settings import checked
from keel.stages import STAGE_NAMES
from keel.storage import open_store
from keel.validate import SCHEMA_FILE, STATISTICS_FILE

VALIDATION_REPORT_FILE = "validation_report.html"
GOLDEN_ROWS_FILE = "golden_rows.json"  # rows and the answers training gave: the smoke test's
GIT_COMMIT_ENV = "KEEL_GIT_COMMIT"  # baked into the images at build time
IN_IMAGE_ENV = "KEEL_IMAGE"  # set by each stage image to its own reference


def git_commit() -> str:
    """The code version: from the image, else from the checkout Keel runs from."""
    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    here = Path(__file__).parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty else "")


def stage_images() -> dict[str, str]:
    """The stage images of this run: beside the image publish runs in, else as compiled here."""
    own = os.environ.get(IN_IMAGE_ENV, "")
    if not own:
        return {stage: image(stage) for stage in STAGE_NAMES}
    registry, tag = own.rsplit("/", 1)[0], own.rsplit(":", 1)[1]
    return {stage: f"{registry}/{stage}:{tag}" for stage in STAGE_NAMES}


def environment(record: TrainRecord) -> Environment:
    """The code and images this version was made with.

    The scikit-learn version is the one train fitted the model with (publish's own image has
    none); a record from before train wrote it falls back to the one installed here.
    """
    return Environment(
        keel=__version__,
        git_commit=git_commit(),
        python=platform.python_version(),
        scikit_learn=record.scikit_learn or installed_version("scikit-learn"),
        images=stage_images(),
        ran_in_image=os.environ.get(IN_IMAGE_ENV, "") or None,
    )


@reports_errors
def run(
    store: str, model: str, model_path: str, snapshot_path: str, schema_path: str,
    spec_path: str, train_record_path: str, decision_path: str, ingest_json: str, run_id: str,
    *, split_path: str, report_path: str, card_out: str, statistics_path: str,
    checks_path: str, validation_report_path: str, golden_path: str,
) -> Publication:
    """The publish stage: store the data snapshot, then the version's files, card and manifest.

    The version keeps the statistics of its data (the reference the next run is checked
    against), the validation report, and the golden rows its smoke test asks, beside its model.
    """
    from keel.model_card import render_model_card

    ingested = IngestResult.from_json(ingest_json, origin="the ingest output", stage="publish")
    schema = TableSchema.read(schema_path, stage="publish")
    spec = FeatureSpec.read(spec_path, stage="publish")
    record = TrainRecord.read(train_record_path, stage="publish")
    decision = Decision.read(decision_path, stage="publish")
    split = SplitResult.read(split_path, stage="publish")
    report = EvaluationReport.read(report_path, stage="publish")
    checks = ValidationResult.read(checks_path, stage="publish")
    registry = Registry(open_store(checked("store", store)), checked("model_name", model))
    snapshot = registry.store_snapshot(snapshot_path, ingested.data_version)
    lineage = Lineage(
        data=DataLineage(
            **ingested.model_dump(exclude={"schema_version"}), snapshot=snapshot,
            rows_used=schema.rows, rows_dropped_missing_target=schema.rows_dropped_missing_target,
        ),
        schema_hash=schema.schema_hash,
        task=schema.task,
        target=schema.target,
        features=spec,
        excluded_columns=schema.excluded,
        training=record,
        split=split.rule,
        hyperparameters=record.params,
        metrics=decision.metrics,
        baseline=decision.baseline,
        decision=decision,
        environment=environment(record),
        run_id=run_id,
        validation=checks,
    )

    def card(version: int) -> dict[str, str | os.PathLike[str]]:
        Path(card_out).write_text(render_model_card(lineage, report, model=registry.model,
                                                    version=version))
        return {MODEL_CARD_FILE: card_out}

    manifest = registry.publish(
        {MODEL_FILE: model_path, SCHEMA_FILE: schema_path, "feature_spec.json": spec_path,
         STATISTICS_FILE: statistics_path, VALIDATION_REPORT_FILE: validation_report_path,
         GOLDEN_ROWS_FILE: golden_path},
        lineage, numbered=card)
    return Publication(model=registry.model, store=registry.store.uri, version=manifest.version)
