"""Batch prediction: keel.predict, `keel predict`, and the compiled batch prediction pipeline.

The models come from the real stages (ingest ... publish, promote, called without KFP), so what
batch prediction loads is exactly what a training run registers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from keel import ingest, promote
from keel.cli import KeelGroup
from keel.contracts import FeatureSpec
from keel.errors import IntegrityError, RegistryError, SchemaError
from keel.predict import (
    METADATA_KEY,
    PredictionResult,
    check_columns,
    predict,
    probability_columns,
    training_frame,
)
from keel.predict_cli import predict as predict_command
from keel.registry import Registry
from keel.storage import open_store

try:
    from factories import (  # noqa: F401 - one_thread is an autouse fixture
        one_thread,
        overwrite,
        publish_stages,
        run_stages,
    )
except ImportError:  # tests/ imported as a package
    from tests.factories import (  # noqa: F401
        one_thread,
        overwrite,
        publish_stages,
        run_stages,
    )

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "pipelines" / "compiled" / "batch_prediction.yaml"
CLASSIFIER, REGRESSOR = "churn", "price"


def table(rows: int, seed: int) -> pd.DataFrame:
    """Customers: a numeric and a categorical feature with gaps, two targets."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.integers(18, 80, rows).astype(float),
                          "city": rng.choice(["paris", "lyon", "nice"], rows).astype(object)})
    frame.loc[rng.random(rows) < 0.2, "city"] = None  # an empty CSV cell: missing
    boost = frame.city.map({"paris": 15, "lyon": -10, "nice": 0}).fillna(25)
    frame["churn"] = np.where(frame.age + boost + rng.normal(0, 8, rows) > 55, "yes", "no")
    frame["price"] = frame.age * 3 + boost + rng.normal(0, 5, rows)
    return frame


def train_version(folder: Path, store: str, model: str, frame: pd.DataFrame, target: str,
                  estimator: str, promote_it: bool) -> int:
    """ingest -> validate -> preprocess -> train -> evaluate -> publish (-> promote)."""
    folder.mkdir(parents=True)
    frame.drop(columns=[c for c in ("churn", "price") if c != target]).to_csv(
        folder / "table.csv", index=False)
    p = run_stages(folder, folder / "table.csv", store, model, target, estimator=estimator)
    published = publish_stages(p, store, model, "run")
    if promote_it:
        promote.run(published.to_json(), p["decision.json"], "run")
    return published.version


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """churn: version 1 (production) and 2 (not promoted); price: version 1 (production)."""
    from threadpoolctl import threadpool_limits

    root = tmp_path_factory.mktemp("predict")
    uri = str(root / "store")
    with threadpool_limits(limits=1):
        assert train_version(root / "c1", uri, CLASSIFIER, table(400, 0), "churn", "linear",
                             True) == 1
        assert train_version(root / "c2", uri, CLASSIFIER, table(400, 1).assign(
            age=lambda f: f.age * 1.5), "churn", "linear", False) == 2
        assert train_version(root / "r1", uri, REGRESSOR, table(400, 2), "price",
                             "hist_gradient_boosting", True) == 1
    return uri


def snapshot_of(folder: Path, frame: pd.DataFrame, name: str = "score.csv"):
    """The ingest snapshot of ``frame`` written as CSV (the way users hand Keel a table)."""
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / name, index=False)
    result = ingest.ingest(str(folder / name), str(folder / "snapshot.parquet"))
    return str(folder / "snapshot.parquet"), result


def scoring_table(rows: int = 150, seed: int = 7) -> pd.DataFrame:
    frame = table(rows, seed).drop(columns=["churn", "price"])
    frame.insert(0, "customer_id", [f"c{i:04d}" for i in range(rows)])  # extra: carried through
    frame["note"] = np.where(np.arange(rows) % 3 == 0, "vip", None)
    return frame


def model_and_spec(store: str, model: str, version: int):
    registry = Registry(open_store(store), model)
    spec = FeatureSpec.from_json(registry.store.read_bytes(
        registry.version_key(version, "feature_spec.json")))
    return registry.load_model(version), spec


def test_every_row_gets_the_models_prediction_and_probabilities(store, tmp_path):
    snapshot, ingested = snapshot_of(tmp_path, scoring_table())
    out = tmp_path / "out.parquet"
    result = predict(snapshot, store, CLASSIFIER, None, str(out),
                     data_version=ingested.data_version)
    assert isinstance(result, PredictionResult)
    assert (result.model, result.version, result.rows) == (CLASSIFIER, 1, 150)
    assert result.data_version == ingested.data_version

    written = pd.read_parquet(out)
    model, spec = model_and_spec(store, CLASSIFIER, 1)
    frame = pd.read_parquet(snapshot)  # read as train reads its rows
    assert list(written.columns) == result.columns == [
        *frame.columns, "prediction", "probability_no", "probability_yes", "model_version",
        "data_version"]
    pd.testing.assert_frame_equal(written[frame.columns], frame)  # inputs carried through
    assert (written.prediction.to_numpy() == model.predict(frame[spec.features])).all()
    proba = written[["probability_no", "probability_yes"]].to_numpy()
    np.testing.assert_allclose(proba, model.predict_proba(frame[spec.features]))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert written.model_version.dtype == np.int64 and (written.model_version == 1).all()
    assert (written.data_version == ingested.data_version).all()
    meta = json.loads(pq.read_schema(out).metadata[METADATA_KEY])
    assert meta["probabilities"] == {"probability_no": "no", "probability_yes": "yes"}
    assert (meta["model"], meta["version"]) == (CLASSIFIER, 1)


def test_a_missing_category_reaches_the_model_as_in_training_never_as_none(store, tmp_path):
    # A null in a categorical column is NaN (encoded 'nan', a category training saw), never
    # None (encoded 'None', a category training never saw).
    frame = scoring_table()
    assert frame.city.isna().sum() > 10
    snapshot, ingested = snapshot_of(tmp_path, frame)
    out = tmp_path / "out.parquet"
    predict(snapshot, store, CLASSIFIER, None, str(out), data_version=ingested.data_version)
    written = pd.read_parquet(out)
    model, spec = model_and_spec(store, CLASSIFIER, 1)
    gaps = frame.city.isna().to_numpy()
    as_nan = frame[spec.features].astype({"city": object}).where(frame.notna(), np.nan)
    as_none = frame[spec.features].astype({"city": object}).where(frame.notna(), None)
    proba = written[["probability_no", "probability_yes"]].to_numpy()
    np.testing.assert_allclose(proba, model.predict_proba(as_nan))
    assert not np.allclose(proba[gaps], model.predict_proba(as_none)[gaps])


def test_a_regressor_writes_numbers_and_no_probabilities(store, tmp_path):
    snapshot, ingested = snapshot_of(tmp_path, scoring_table())
    out = tmp_path / "out.parquet"
    result = predict(snapshot, store, REGRESSOR, None, str(out),
                     data_version=ingested.data_version)
    written = pd.read_parquet(out)
    model, spec = model_and_spec(store, REGRESSOR, 1)
    frame = pd.read_parquet(snapshot)
    assert not [c for c in written.columns if c.startswith("probability_")]
    assert written.prediction.dtype == np.float64
    np.testing.assert_allclose(written.prediction, model.predict(frame[spec.features]))
    assert result.columns[-3:] == ["prediction", "model_version", "data_version"]


def test_a_given_version_or_production(store, tmp_path):
    snapshot, ingested = snapshot_of(tmp_path, scoring_table())
    frame = pd.read_parquet(snapshot)
    for version, expected in ((None, 1), (0, 1), (1, 1), (2, 2)):
        out = tmp_path / f"out-{version}.parquet"
        result = predict(snapshot, store, CLASSIFIER, version, str(out),
                         data_version=ingested.data_version)
        written = pd.read_parquet(out)
        model, spec = model_and_spec(store, CLASSIFIER, expected)
        assert result.version == expected and (written.model_version == expected).all()
        np.testing.assert_allclose(written.probability_yes,
                                   model.predict_proba(frame[spec.features])[:, 1])
    # the two versions really differ, so the test above tells them apart
    first, second = (pd.read_parquet(tmp_path / f"out-{v}.parquet") for v in (1, 2))
    assert not np.allclose(first.probability_yes, second.probability_yes)
    with pytest.raises(RegistryError, match="no version 9"):
        predict(snapshot, store, CLASSIFIER, 9, str(tmp_path / "x.parquet"),
                data_version=ingested.data_version)
    assert not (tmp_path / "x.parquet").exists()


def test_no_production_version_is_a_clear_error(store, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    (copy / "registry" / CLASSIFIER / "aliases" / "production.json").unlink()
    shutil.rmtree(copy / "registry" / CLASSIFIER / "events")  # never promoted: not damage
    snapshot, ingested = snapshot_of(tmp_path, scoring_table())
    with pytest.raises(RegistryError, match=r"no production version.*--version N.*1, 2"):
        predict(snapshot, str(copy), CLASSIFIER, None, str(tmp_path / "out.parquet"),
                data_version=ingested.data_version)


def test_streaming_in_small_batches_gives_the_same_file(store, tmp_path):
    snapshot, ingested = snapshot_of(tmp_path, scoring_table(rows=100))
    whole, small = tmp_path / "whole.parquet", tmp_path / "small.parquet"
    predict(snapshot, store, CLASSIFIER, None, str(whole), data_version=ingested.data_version)
    predict(snapshot, store, CLASSIFIER, None, str(small), data_version=ingested.data_version,
            batch_rows=7)
    assert pq.ParquetFile(small).metadata.num_row_groups == 15  # one per batch of 7 rows
    pd.testing.assert_frame_equal(pd.read_parquet(small), pd.read_parquet(whole))


def test_extra_and_clashing_columns(store, tmp_path):
    frame = scoring_table().assign(prediction=1.0)
    snapshot, ingested = snapshot_of(tmp_path, frame)
    with pytest.raises(SchemaError, match="already has column.*'prediction'"):
        predict(snapshot, store, CLASSIFIER, None, str(tmp_path / "out.parquet"),
                data_version=ingested.data_version)
    assert not (tmp_path / "out.parquet").exists()


def test_a_damaged_model_is_refused(store, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    target = open_store(str(copy))
    key = f"registry/{CLASSIFIER}/versions/1/model.joblib"
    data = bytearray(target.read_bytes(key))
    data[len(data) // 2] ^= 0xFF
    overwrite(target, key, bytes(data))
    snapshot, ingested = snapshot_of(tmp_path, scoring_table())
    with pytest.raises(IntegrityError, match="model.joblib has sha256"):
        predict(snapshot, str(copy), CLASSIFIER, None, str(tmp_path / "out.parquet"),
                data_version=ingested.data_version)
    assert not (tmp_path / "out.parquet").exists()


# -- the frame training saw ---------------------------------------------------------------------
SPEC = FeatureSpec(target="y", task="classification", numeric=["n"], categorical=["code", "t"],
                   encoding="onehot")


def test_categories_keep_their_training_form_whatever_the_batch_holds():
    batch = pa.RecordBatch.from_pydict({
        "n": pa.array([1, None, 3]),  # integers with a gap
        "code": pa.array([75001, None, 13001]),  # integers in training too: '75001', not '.0'
        "t": pa.array([None, None, None], pa.null()),  # text in training, all missing here
    })
    frame = training_frame(batch, SPEC, {"n": "int64", "code": "int64", "t": "str"})
    assert frame.n.dtype == np.float64 and np.isnan(frame.n[1])
    assert np.asarray(frame[["code", "t"]], dtype=str).tolist() == [
        ["75001", "nan"], ["nan", "nan"], ["13001", "nan"]]
    # numbers where training had text: their text, the missing value as NaN
    mixed = pa.RecordBatch.from_pydict({"n": pa.array([np.inf, 2.0]), "code": pa.array([1, 2]),
                                        "t": pa.array([True, None])})
    frame = training_frame(mixed, SPEC, {"code": "str", "t": "str"})
    assert np.isnan(frame.n[0])  # infinities are missing, as validate made them
    assert np.asarray(frame[["code", "t"]], dtype=str).tolist() == [["1", "True"], ["2", "nan"]]


def test_a_numeric_feature_holding_text_is_refused_before_scoring():
    schema = pa.schema([("n", pa.string()), ("code", pa.int64()), ("t", pa.string())])
    with pytest.raises(SchemaError, match="'n' is a numeric feature.*float64 in training.*string"):
        check_columns(schema, SPEC, "m", 3, {"n": "float64"})
    with pytest.raises(SchemaError, match=r"lacks 2 feature column\(s\).*'code', 't'"):
        check_columns(pa.schema([("n", pa.float64())]), SPEC, "m", 3, {})


def test_probability_column_names_are_safe_and_unique():
    assert probability_columns(["yes", "no"]) == ["probability_yes", "probability_no"]
    assert probability_columns([0, 1]) == ["probability_0", "probability_1"]
    assert probability_columns(["a b", "a-b", "é/x"]) == [
        "probability_a_b", "probability_a_b_2", "probability_x"]


# -- keel predict -------------------------------------------------------------------------------
def keel_predict(*args: str) -> object:
    group = KeelGroup()  # what `keel` wraps its commands in: errors become one line
    group.add_command(predict_command)
    return CliRunner().invoke(group, ["predict", *args])


def test_keel_predict_from_a_csv(store, tmp_path):
    scoring_table().to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "preds" / "out.parquet"
    args = ["--store", store, "--model", CLASSIFIER, "--source", str(tmp_path / "new.csv"),
            "--output", str(out)]
    ran = keel_predict(*args)
    assert ran.exit_code == 0, ran.output
    line = ran.stdout.strip().splitlines()[-1]
    assert line.startswith(f"Predicted 150 rows with '{CLASSIFIER}' version 1 (data version ")
    assert line.endswith(str(out))
    written = pd.read_parquet(out)
    assert len(written) == 150 and (written.model_version == 1).all()
    assert written.customer_id.tolist() == scoring_table().customer_id.tolist()
    assert sorted(os.listdir(out.parent)) == ["out.parquet"]  # no temporary file left

    again = keel_predict(*args, "--version", "2")
    assert again.exit_code == 1 and "exists; pass --overwrite" in again.stderr
    replaced = keel_predict(*args, "--version", "2", "--overwrite", "--json")
    assert replaced.exit_code == 0, replaced.output
    doc = json.loads(replaced.stdout.strip().splitlines()[-1])
    assert (doc["version"], doc["rows"], doc["output"]) == (2, 150, str(out))
    assert (pd.read_parquet(out).model_version == 2).all()


def test_keel_predict_from_a_folder_of_files(store, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    frame = scoring_table(rows=90)
    for i in range(3):
        frame.iloc[i * 30:(i + 1) * 30].to_csv(folder / f"part-{i}.csv", index=False)
    out = tmp_path / "out.parquet"
    ran = keel_predict("--store", store, "--model", REGRESSOR, "--source", str(folder),
                       "--output", str(out), "--json")
    assert ran.exit_code == 0, ran.output
    doc = json.loads(ran.stdout.strip().splitlines()[-1])
    assert doc["rows"] == 90 and doc["model"] == REGRESSOR
    written = pd.read_parquet(out)
    assert len(written) == 90 and written.prediction.notna().all()
    assert (written.data_version == doc["data_version"]).all()


def test_keel_predict_missing_feature_is_one_line_and_writes_nothing(store, tmp_path):
    scoring_table().drop(columns=["city"]).to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "out.parquet"
    ran = keel_predict("--store", store, "--model", CLASSIFIER, "--source",
                       str(tmp_path / "new.csv"), "--output", str(out))
    assert ran.exit_code == 1
    [line] = [line for line in ran.stderr.splitlines() if line.startswith("keel: error")]
    assert ran.stderr.strip().splitlines()[-1] == line
    assert line.startswith("keel: error: [predict] The input table lacks 1 feature column(s)")
    assert "'city'" in line
    assert sorted(os.listdir(tmp_path)) == ["new.csv"]  # no output, no temporary file


@pytest.mark.parametrize("source", ["new.csv", "absent.csv"])
def test_a_failed_predict_leaves_no_folder_it_made_for_the_output(store, tmp_path, source):
    # The folders of --output were created before the source was read, and stayed behind
    # (empty) when reading or scoring failed.
    scoring_table().drop(columns=["city"]).to_csv(tmp_path / "new.csv", index=False)
    (tmp_path / "kept").mkdir()
    for out in (tmp_path / "runs" / "2024" / "out.parquet", tmp_path / "kept" / "out.parquet"):
        ran = keel_predict("--store", store, "--model", CLASSIFIER, "--source",
                           str(tmp_path / source), "--output", str(out))
        assert ran.exit_code == 1 and "keel: error:" in ran.stderr, ran.output
    assert sorted(os.listdir(tmp_path)) == ["kept", "new.csv"]  # an existing folder stays
    assert os.listdir(tmp_path / "kept") == []


def test_keel_predict_refuses_a_damaged_model(store, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    model = copy / "registry" / CLASSIFIER / "versions" / "1" / "model.joblib"
    model.write_bytes(model.read_bytes() + b"\0")
    scoring_table().to_csv(tmp_path / "new.csv", index=False)
    ran = keel_predict("--store", str(copy), "--model", CLASSIFIER, "--source",
                       str(tmp_path / "new.csv"), "--output", str(tmp_path / "out.parquet"))
    line = ran.stderr.strip().splitlines()[-1]
    assert ran.exit_code == 1 and line.startswith("keel: error: [registry] ")
    assert "model.joblib has sha256" in line
    assert not (tmp_path / "out.parquet").exists()


def test_an_empty_table_gives_an_empty_file_with_every_column(store, tmp_path):
    (tmp_path / "empty.csv").write_text("customer_id,age,city\n")  # no rows: null-typed columns
    out = tmp_path / "out.parquet"
    ran = keel_predict("--store", store, "--model", CLASSIFIER, "--source",
                       str(tmp_path / "empty.csv"), "--output", str(out), "--json")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout.strip().splitlines()[-1])["rows"] == 0
    schema = pq.read_schema(out)
    assert schema.names[3:] == ["prediction", "probability_no", "probability_yes",
                                "model_version", "data_version"]
    assert pq.read_metadata(out).num_rows == 0


def test_keel_predict_needs_a_model_name_when_the_store_holds_several(store, tmp_path):
    ran = keel_predict("--store", store, "--source", "x.csv", "--output",
                       str(tmp_path / "out.parquet"))
    assert ran.exit_code == 1
    assert "holds 2 models (churn, price); name one with --model" in ran.stderr


@pytest.mark.parametrize("output, message", [
    ("out.csv", "ending in .parquet"), ("gs://b/out.parquet", "a local file path")])
def test_keel_predict_refuses_an_output_it_cannot_write(store, tmp_path, output, message):
    ran = keel_predict("--store", store, "--model", CLASSIFIER, "--source", "x.csv",
                       "--output", output)
    assert ran.exit_code == 1 and message in ran.stderr


# -- the batch prediction pipeline --------------------------------------------------------------
def test_committed_batch_spec_is_what_the_code_compiles_to(tmp_path):
    fresh = tmp_path / "batch_prediction.yaml"
    code = ("import sys; from keel.pipelines import batch_prediction as b; "
            "b.compile_pipeline(sys.argv[1])")
    env = {k: v for k, v in os.environ.items() if k != "KEEL_IMAGE_REGISTRY"}
    done = subprocess.run([sys.executable, "-c", code, str(fresh)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert fresh.read_text() == COMMITTED.read_text(), (
        f"{COMMITTED.relative_to(REPO)} is stale: run `keel compile` and commit the result.")


def test_batch_spec_wires_ingest_to_predict_uncached_with_the_secret():
    import yaml

    spec, platform = list(yaml.safe_load_all(COMMITTED.read_text()))
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"ingest", "predict"}
    assert all(t["cachingOptions"].get("enableCache", False) is False for t in tasks.values())
    inputs = tasks["predict"]["inputs"]
    assert inputs["artifacts"]["snapshot"]["taskOutputArtifact"] == {
        "outputArtifactKey": "snapshot", "producerTask": "ingest"}
    assert inputs["parameters"]["ingest_info"]["taskOutputParameter"] == {
        "outputParameterKey": "Output", "producerTask": "ingest"}
    images = {name: e["container"]["image"] for name, e in spec["deploymentSpec"]["executors"]
              .items()}
    assert images == {"exec-ingest": "localhost/keel/ingest:0.1.0",
                      "exec-predict": "localhost/keel/predict:0.1.0"}
    [secret] = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][
        "exec-ingest"]["secretAsEnv"]
    assert secret["optional"] is True
    assert secret["secretNameParameter"] == {"componentInputParameter": "source_secret"}
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert {n for n, p in parameters.items() if not p.get("isOptional")} == {
        "source", "store", "model_name"}
    assert all(p.get("description") for p in parameters.values())


@pytest.mark.e2e
def test_batch_pipeline_runs_through_kfp_local(store, tmp_path):
    from kfp import local

    from keel.pipelines.batch_prediction import batch_prediction_pipeline

    scoring_table().to_csv(tmp_path / "new.csv", index=False)
    local.init(runner=local.SubprocessRunner(use_venv=False),
               pipeline_root=str(tmp_path / "root"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        task = batch_prediction_pipeline(source=str(tmp_path / "new.csv"), store=store,
                                         model_name=CLASSIFIER, version=2)
    result = PredictionResult.from_json(task.output)
    assert (result.version, result.rows) == (2, 150)
    written = pd.read_parquet(result.output)
    assert (written.model_version == 2).all() and len(written) == 150
