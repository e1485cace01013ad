"""Serving and batch prediction against a gs:// store (fake-gcs-server), equal to the model in Python.

The versions are trained by the real stages from a Parquet source written by pandas, so training
reads its nullable dtypes back: a ``boolean`` column with gaps (``pd.NA``, which the model's
encoder reads as ``'<NA>'``), a ``string`` column with gaps, unicode categories, integers and NaN.
The reference is ``joblib.load`` + ``predict_proba`` on the snapshot read the way training reads
it (``pd.read_parquet``); the server (V1 and V2, from gs://) and ``keel predict`` (source on
gs://) must give exactly the same numbers, whatever JSON form a boolean or a whole number takes.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from keel import promote
from keel.contracts import FeatureSpec
from keel.serving import load_version, serving
from keel.smoke_test import golden_rows

try:
    from factories import one_thread, publish_stages, run_stages  # noqa: F401 - autouse fixture
except ImportError:  # tests/ imported as a package
    from tests.factories import one_thread, publish_stages, run_stages  # noqa: F401

pytestmark = pytest.mark.gcs

CLASSIFIER, REGRESSOR = "members", "spend"
FEATURES = ["age", "income", "member", "city", "plan"]


def table(rows: int = 500, seed: int = 0) -> pd.DataFrame:
    """Nullable pandas dtypes with gaps, unicode categories, integers, NaN; two targets."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, rows).astype("int64"),
        "income": rng.normal(50, 15, rows),
        "member": pd.array(rng.random(rows) < 0.5, dtype="boolean"),
        "city": rng.choice(["Zürich", "Köln", "東京", "São Paulo"], rows).astype(object),
        "plan": pd.array(rng.choice(["basic", "pro", "équipe"], rows), dtype="string"),
    })
    frame.loc[rng.random(rows) < 0.1, "income"] = np.nan
    frame.loc[rng.random(rows) < 0.25, "member"] = pd.NA
    frame.loc[rng.random(rows) < 0.15, "city"] = None
    frame.loc[rng.random(rows) < 0.2, "plan"] = pd.NA
    member = frame.member.map({True: 3.0, False: 0.0}).astype(float).fillna(-3.0)
    plan = frame.plan.map({"pro": 2.0, "basic": 0.0, "équipe": 1.0}).astype(float).fillna(-2.0)
    score = frame.age / 10 + member + plan + rng.normal(0, 1, rows)
    frame["tier"] = np.select([score < 4, score < 7], ["bronze", "argent"], "or")  # 3 classes
    frame["spend"] = score * 10 + frame.income.fillna(50)
    return frame


@pytest.fixture(scope="module")
def gcs(gcs_emulator: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A bucket with the source; a store with the classifier (v1, v2: production), the regressor."""
    from google.cloud import storage
    from threadpoolctl import threadpool_limits

    bucket = storage.Client().create_bucket(f"keel-serve-{uuid.uuid4().hex[:10]}")
    root = tmp_path_factory.mktemp("serving-gcs")
    source = root / "customers.parquet"
    table().to_parquet(source, index=False)
    bucket.blob("in/customers.parquet").upload_from_filename(str(source))
    store = f"gs://{bucket.name}/store"
    snapshots = {}
    with threadpool_limits(limits=1):
        for model, target, drop, estimator in (
                (CLASSIFIER, "tier", "spend", "linear"),
                (CLASSIFIER, "tier", "spend", "hist_gradient_boosting"),
                (REGRESSOR, "spend", "tier", "linear")):
            folder = root / f"{model}-{estimator}"
            folder.mkdir()
            table().drop(columns=[drop]).to_parquet(folder / "source.parquet", index=False)
            p = run_stages(folder, folder / "source.parquet", store, model, target,
                           estimator=estimator)
            published = publish_stages(p, store, model)
            promote.run(published.to_json(), p["decision.json"], "run")  # production: the latest
            version = published.version
            snapshots[model, version] = p["snapshot.parquet"]
    return {"bucket": bucket, "store": store, "snapshots": snapshots,
            "source": f"gs://{bucket.name}/in/customers.parquet"}


def in_process(gcs: dict[str, Any], model: str, version: int | None) -> tuple[Any, pd.DataFrame]:
    """The version's (None: production's) pipeline, joblib.load-ed, and its feature frame as
    training read it."""
    from keel.registry import Registry
    from keel.storage import open_store

    registry = Registry(open_store(gcs["store"]), model)
    version = registry.alias().version if version is None else version
    pipeline = registry.load_model(version)
    frame = pd.read_parquet(gcs["snapshots"][model, version])
    return pipeline, frame[list(pipeline.feature_names_in_)]


def json_value(value: Any, booleans: str = "json", whole: str = "int") -> Any:
    """A frame value as a client sends it: null for gaps; booleans and whole numbers in a form."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return {"json": bool(value), "int": int(value), "text": str(bool(value)).lower()}[booleans]
    if isinstance(value, np.integer):
        return int(value) if whole == "int" else float(value)
    return value.item() if isinstance(value, np.generic) else value


def records(frame: pd.DataFrame, booleans: str = "json", whole: str = "int") -> list[dict]:
    return [{c: json_value(v, booleans, whole) for c, v in row.items()}
            for row in frame.to_dict(orient="records")]


@pytest.mark.parametrize(("model", "version"), [(CLASSIFIER, 1), (CLASSIFIER, 2),
                                                (CLASSIFIER, None), (REGRESSOR, None)])
def test_served_from_gcs_v1_and_v2_equal_the_model_in_python(gcs, model, version):
    pipeline, frame = in_process(gcs, model, version)
    assert frame.member.dtype == "boolean" and frame.member.isna().any()  # what training read
    served = load_version(gcs["store"], model, version)
    classifier = model == CLASSIFIER
    with serving(served, log=None) as server:
        v1 = requests.post(f"{server.url}/v1/models/{model}:predict", json={
            "instances": records(frame), "parameters": {"probabilities": classifier}}, timeout=60)
        columns = [{"name": c, "shape": [len(frame)], "data": [json_value(v) for v in frame[c]]}
                   for c in reversed(frame.columns)]
        v2 = requests.post(f"{server.url}/v2/models/{model}/infer", json={
            "inputs": columns, "parameters": {"content_type": "pd", "probabilities": classifier}},
            timeout=60)
    assert v1.status_code == v2.status_code == 200, (v1.text[:300], v2.text[:300])
    expected = pipeline.predict(frame).tolist()
    outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    assert v1.json()["predictions"] == outputs["predict"] == expected
    if classifier:
        proba = pipeline.predict_proba(frame)
        assert v1.json()["probabilities"] == proba.tolist()  # exactly, rows with gaps included
        assert outputs["predict_proba"] == proba.ravel().tolist()


@pytest.mark.parametrize("booleans", ["json", "int", "text"])
@pytest.mark.parametrize("whole", ["int", "float"])
def test_true_1_and_the_text_true_and_3_or_3_0_are_the_same_value(gcs, booleans, whole):
    pipeline, frame = in_process(gcs, CLASSIFIER, 2)
    with serving(load_version(gcs["store"], CLASSIFIER, 2), log=None) as server:
        answer = requests.post(f"{server.url}/v1/models/{CLASSIFIER}:predict", json={
            "instances": records(frame, booleans, whole), "parameters": {"probabilities": True}},
            timeout=60)
        refused = requests.post(f"{server.url}/v1/models/{CLASSIFIER}:predict", json={
            "instances": [{**records(frame.head(1))[0], "member": "maybe"}]}, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["probabilities"] == pipeline.predict_proba(frame).tolist()
    assert refused.status_code == 400 and "'member'" in refused.json()["error"]


def keel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "keel"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize(("model", "version"), [(CLASSIFIER, "1"), (CLASSIFIER, "2"),
                                                (CLASSIFIER, "production"),
                                                (REGRESSOR, "production")])
def test_keel_predict_from_gcs_equals_the_model_in_python(gcs, tmp_path, model, version):
    out = tmp_path / "scored.parquet"
    result = keel("predict", "--store", gcs["store"], "--model", model, "--version", version,
                  "--source", gcs["source"], "--output", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    from keel.registry import Registry
    from keel.storage import open_store

    number = int(version) if version.isdigit() else Registry(
        open_store(gcs["store"]), model).alias().version
    pipeline, _ = in_process(gcs, model, number)
    source = pd.read_parquet(gcs["snapshots"][model, number])  # the same rows, read as training
    frame = pd.read_parquet(out)
    assert len(frame) == len(source) and (frame.model_version == number).all()
    assert frame.age.tolist() == source.age.tolist()  # row order kept
    features = source[list(pipeline.feature_names_in_)]
    assert frame.prediction.tolist() == pipeline.predict(features).tolist()
    if model == CLASSIFIER:
        columns = [f"probability_{c}" for c in pipeline.classes_]
        assert frame[columns].to_numpy().tolist() == pipeline.predict_proba(features).tolist()


def test_keel_predict_reads_booleans_as_1_0_and_text_like_training(gcs, tmp_path):
    pipeline, frame = in_process(gcs, CLASSIFIER, 2)
    expected = pipeline.predict_proba(frame).tolist()
    for form in ("int", "text"):
        csv = tmp_path / f"{form}.csv"
        pd.DataFrame(records(frame, form)).to_csv(csv, index=False)
        out = tmp_path / f"{form}.parquet"
        result = keel("predict", "--store", gcs["store"], "--model", CLASSIFIER, "--version", "2",
                      "--source", str(csv), "--output", str(out))
        assert result.returncode == 0, result.stderr[-2000:]
        columns = [f"probability_{c}" for c in pipeline.classes_]
        assert pd.read_parquet(out)[columns].to_numpy().tolist() == expected, form


def test_golden_rows_hold_the_in_process_answers(gcs):
    pipeline, frame = in_process(gcs, CLASSIFIER, 2)
    spec = FeatureSpec(target="tier", task="classification", numeric=["age", "income"],
                       categorical=["member", "city", "plan"], encoding="auto")
    golden = golden_rows(pipeline, frame, spec, rows=30, seed=0)
    assert any(r["member"] is None for r in golden.rows)
    chosen = [next(i for i, r in enumerate(records(frame)) if r == row) for row in golden.rows]
    assert golden.probabilities == pipeline.predict_proba(frame.iloc[chosen]).tolist()


def test_a_replaced_model_object_is_refused_by_serve_and_predict(gcs, tmp_path):
    bucket, store = gcs["bucket"], gcs["store"]
    prefix = f"store/registry/{CLASSIFIER}/versions"
    original = bucket.blob(f"{prefix}/1/model.joblib").download_as_bytes()
    bucket.copy_blob(bucket.blob(f"{prefix}/2/model.joblib"), bucket, f"{prefix}/1/model.joblib")
    try:
        served = keel("serve", "--store", store, "--model", CLASSIFIER, "--version", "1",
                      "--port", "0")
        out = tmp_path / "out.parquet"
        scored = keel("predict", "--store", store, "--model", CLASSIFIER, "--version", "1",
                      "--source", gcs["source"], "--output", str(out))
    finally:
        bucket.blob(f"{prefix}/1/model.joblib").upload_from_string(original)
    for result in (served, scored):
        assert result.returncode == 1 and "sha256" in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr and "Serving model" not in result.stdout
    assert not out.exists()


def test_a_missing_bucket_is_one_line_naming_the_store(gcs, tmp_path):
    store = f"gs://no-such-bucket-{uuid.uuid4().hex[:8]}/store"
    for args in (("serve", "--store", store, "--model", CLASSIFIER, "--port", "0"),
                 ("predict", "--store", store, "--model", CLASSIFIER, "--source", gcs["source"],
                  "--output", str(tmp_path / "o.parquet")),
                 ("models", "list", "--store", store)):
        result = keel(*args)
        assert result.returncode == 1, result.stderr
        assert f"The store {store} cannot be read: its bucket" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_no_credentials_is_one_line_naming_the_store(gcs, tmp_path):
    env = {"STORAGE_EMULATOR_HOST": "", "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "none"),
           "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud")}
    result = keel("serve", "--store", gcs["store"], "--model", CLASSIFIER, "--port", "0", env=env)
    assert result.returncode == 1
    assert f"The store {gcs['store']} cannot be opened" in result.stderr, result.stderr
    assert "credentials" in result.stderr and "Traceback" not in result.stderr
