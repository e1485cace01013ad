"""Golden rows and the serving smoke test (keel.smoke_test), against real servers on 127.0.0.1."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from keel.contracts import FeatureSpec, GoldenRows
from keel.serving import load_version, serving
from keel.smoke_test import endpoint_smoke_test, golden_rows, smoke_test

try:
    from test_serving import CLASSIFIER, REGRESSOR, built  # noqa: F401 - built is a fixture
except ImportError:  # tests/ imported as a package
    from tests.test_serving import CLASSIFIER, REGRESSOR, built  # noqa: F401


def golden(built: dict[str, Any], model: str, rows: int = 20) -> GoldenRows:
    paths = built[model]
    return golden_rows(joblib.load(paths["model.joblib"]), pd.read_parquet(paths["train.parquet"]),
                       FeatureSpec.read(paths["spec.json"]), rows=rows, seed=0)


def test_golden_rows_hold_gaps_every_class_and_json_values(built):
    rows = golden(built, CLASSIFIER)
    assert rows.columns == ["age", "visits", "city", "member"]
    assert len(rows.rows) == len(rows.predictions) == len(rows.probabilities) == 20
    assert set(rows.predictions) == {"yes", "no"} and rows.classes == ["no", "yes"]
    for column in rows.columns:  # a row missing each column that has gaps in training
        assert any(r[column] is None for r in rows.rows) or column == "visits", column
    assert all(isinstance(r["visits"], int) for r in rows.rows)
    json.dumps(rows.to_dict(), allow_nan=False)
    assert GoldenRows.from_json(rows.to_json()) == rows
    assert golden(built, CLASSIFIER) == rows  # seeded
    # The answers are the pipeline's on the training frame's own rows (as Parquet typed them).
    frame = pd.read_parquet(built[CLASSIFIER]["train.parquet"])[rows.columns]
    pipeline = joblib.load(built[CLASSIFIER]["model.joblib"])
    records = json.loads(frame.to_json(orient="records"))
    positions = [records.index(row) for row in rows.rows]
    assert rows.predictions == pipeline.predict(frame.iloc[positions]).tolist()
    assert rows.probabilities == pipeline.predict_proba(frame.iloc[positions]).tolist()


def test_smoke_test_passes_for_a_good_version(built):
    for model in (CLASSIFIER, REGRESSOR):
        result = smoke_test(built["store"], model, 1, golden(built, model))
        assert result.passed, result.reason
        assert result.reason == "" and result.rows == 20 and result.latency_ms > 0
        assert result.where.startswith("http://127.0.0.1:")
        assert result.where.endswith(f"/v1/models/{model}:predict")


def test_smoke_test_fails_naming_the_row_when_answers_differ(built):
    rows = golden(built, CLASSIFIER)
    flipped = list(rows.predictions)
    flipped[3] = "no" if flipped[3] == "yes" else "yes"
    tampered = rows.model_copy(update={"predictions": flipped})
    result = smoke_test(built["store"], CLASSIFIER, 1, tampered)
    assert not result.passed and result.rows == 20
    assert f"golden row 3 was predicted {rows.predictions[3]!r} by the server and " \
           f"{flipped[3]!r} in training" in result.reason

    probabilities = [list(p) for p in rows.probabilities]
    probabilities[5][0] += 1e-6
    tampered = rows.model_copy(update={"probabilities": probabilities})
    result = smoke_test(built["store"], CLASSIFIER, 1, tampered)
    assert not result.passed and "golden row 5 got probabilities" in result.reason

    values = golden(built, REGRESSOR)
    shifted = [values.predictions[0] * (1 + 1e-6), *values.predictions[1:]]
    result = smoke_test(built["store"], REGRESSOR, 1,
                        values.model_copy(update={"predictions": shifted}))
    assert not result.passed and "golden row 0 was predicted" in result.reason
    within = [values.predictions[0] * (1 + 1e-12), *values.predictions[1:]]
    assert smoke_test(built["store"], REGRESSOR, 1,
                      values.model_copy(update={"predictions": within})).passed


def test_smoke_test_fails_for_a_damaged_model_file(built, tmp_path: Path):
    store = tmp_path / "store"
    shutil.copytree(built["store"], store)
    target = store / "registry" / "churn" / "versions" / "1" / "model.joblib"
    target.write_bytes(target.read_bytes() + b"\0")
    result = smoke_test(str(store), CLASSIFIER, 1, golden(built, CLASSIFIER))
    assert not result.passed and result.rows == 0
    assert "could not be loaded" in result.reason and "sha256" in result.reason
    missing = smoke_test(built["store"], CLASSIFIER, 9, golden(built, CLASSIFIER))
    assert not missing.passed and "no version 9" in missing.reason


def test_endpoint_smoke_test_against_a_running_server(built):
    served = load_version(built["store"], CLASSIFIER)
    rows = golden(built, CLASSIFIER, rows=8)
    with serving(served, log=io.StringIO()) as running:
        result = endpoint_smoke_test(running.url + "/", CLASSIFIER, rows, timeout=10)
        assert result.passed, result.reason
        wrong = endpoint_smoke_test(running.url, "other", rows, timeout=10)
        assert not wrong.passed and "HTTP 404" in wrong.reason and "'other'" in wrong.reason
        url = running.url
    gone = endpoint_smoke_test(url, CLASSIFIER, rows, timeout=5)
    assert not gone.passed and "request to" in gone.reason and gone.latency_ms is None
