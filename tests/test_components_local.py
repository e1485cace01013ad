"""Single components through kfp.local, the way KFP calls them (executor input in, outputs out)."""

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
from kfp import dsl, local

from keel.components import ingest, validate

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "credit.csv"


@pytest.fixture
def kfp_local(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        yield tmp_path


@pytest.mark.e2e
def test_ingest_component_outputs_snapshot_and_version(kfp_local):
    task = ingest(source=str(SAMPLE))
    info = json.loads(task.outputs["Output"])
    snapshot = task.outputs["snapshot"]
    assert info["rows"] == 4454 and info["format"] == "csv"
    assert snapshot.metadata["data_version"] == info["data_version"]
    assert len(pd.read_parquet(snapshot.path)) == 4454


@dsl.pipeline
def ingest_then_validate(source: str, target: str) -> str:
    # kfp.local takes artifact inputs only from upstream tasks, hence this two-task pipeline.
    snapshot = ingest(source=source).outputs["snapshot"]
    return validate(snapshot=snapshot, target=target, task="auto").outputs["Output"]


@pytest.mark.e2e
def test_validate_component_decides_task_and_fails_on_unknown_target(kfp_local):
    assert ingest_then_validate(source=str(SAMPLE), target="Status").output == "classification"
    assert ingest_then_validate(source=str(SAMPLE), target="Price").output == "regression"
    with pytest.raises(RuntimeError, match="FAILURE"):
        ingest_then_validate(source=str(SAMPLE), target="nope")
