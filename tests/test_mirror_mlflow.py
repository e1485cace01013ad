"""The MLflow mirror against a real MLflow 3.17 server (``make mlflow-venv``), checked over REST.

Versions are published into real stores (local; gs:// through fake-gcs-server) with the
factories, then recorded with :class:`keel.mirror_mlflow.MLflowMirror`. What MLflow holds is read
with plain HTTP requests to its REST API, never with the client under test. One server is shared
by the module; each test uses its own model name, so tests do not see each other's records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel.contracts import Decision, Manifest, Search, SplitRule, Trial
from keel.mirror_mlflow import HTTP_SETTINGS, MLflowMirror
from keel.mirrors import MirrorError, VersionRecord
from keel.registry import MODEL_FILE, Registry
from keel.storage import open_store

try:
    from factories import STORE_0_1_0, lineage
    from mlflow_server import MLflowServer
except ImportError:  # tests/ imported as a package
    from tests.factories import STORE_0_1_0, lineage
    from tests.mlflow_server import MLflowServer

RECORDED_2 = STORE_0_1_0 / "registry" / "credit" / "versions" / "2" / "manifest.json"
CARD = "<html><body><h1>Model card of {model} version {version}</h1></body></html>\n"


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server() -> Iterator[MLflowServer]:
    """One real MLflow server for the module (SQLite database, served artifacts)."""
    mlflow = MLflowServer()
    try:
        mlflow.start()
        print(f"mlflow server started in {mlflow.start_seconds:.1f}s", file=sys.stderr)
        yield mlflow
    finally:
        mlflow.close()


@pytest.fixture
def model() -> str:
    """A model name of its own for each test (the server is shared)."""
    return f"credit-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A small fitted scikit-learn model."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    path = tmp_path_factory.mktemp("model") / "model.joblib"
    x = np.arange(20, dtype=float).reshape(10, 2)
    joblib.dump(LogisticRegression().fit(x, [0] * 5 + [1] * 5), path)
    return path


def first_lineage():
    """Version 1: the 0.1.0 sample, passed, no baseline, no split rule, no search."""
    base = lineage()
    return lineage(hyperparameters={"max_depth": 3, "criterion": "gini", "class_weight": None},
                   metrics={"accuracy": 0.79, "roc_auc": 0.83},
                   training=base.training.model_copy(update={"params": {"max_depth": 3}}))


def second_lineage(override: bool = False):
    """Version 2: rejected against version 1 (or overridden), with a comparison, intervals, a
    grid search and a hash split rule."""
    doc = Manifest.from_json(RECORDED_2.read_bytes()).decision.to_dict()
    doc["comparison"] = {
        "rows": 812, "excluded": 79, "reason": "rows version 1 trained on",
        "candidate": {"accuracy": 0.8, "roc_auc": 0.85},
        "intervals": {"roc_auc": {"low": -0.031, "high": 0.012, "level": 0.95, "rounds": 500}}}
    if override:
        doc.update(passed=True, override={"reason": "audit", "checks_passed": False})
    decision = Decision.from_dict(doc)
    base = lineage()
    search = Search(metric="roc_auc", higher_is_better=True, method="grid", validation_size=0.2,
                    best=1, candidates=[
                        Trial(index=i, params={"max_depth": d}, metric="roc_auc", score=s,
                              fit_seconds=0.1, validation_rows=700)
                        for i, (d, s) in enumerate([(3, 0.81), (5, 0.84)])])
    training = base.training.model_copy(update={"params": {"max_depth": 5}, "search": search,
                                                "seed": 7})
    environment = base.environment.model_copy(update={"git_commit": "b" * 40})
    data = base.data.model_copy(update={"data_version": "ab" * 32})
    return lineage(training=training, hyperparameters={"max_depth": 5},
                   metrics={"accuracy": 0.80, "roc_auc": 0.85}, decision=decision,
                   baseline=decision.baseline, environment=environment, data=data,
                   split=SplitRule(method="hash", test_size=0.25, columns=["Status", "Age"],
                                   salt="pepper"),
                   run_id="kfp-run-0002")


def publish(registry: Registry, model_file: Path, record, card: bool = True) -> VersionRecord:
    """Publish a version into the store; the record a mirror is given for it."""
    tmp = model_file.parent / f"card-{uuid.uuid4().hex}.html"

    def numbered(version: int) -> dict[str, str | os.PathLike[str]]:
        if not card:
            return {}
        tmp.write_text(CARD.format(model=registry.model, version=version))
        return {"model_card.html": tmp}

    manifest = registry.publish({MODEL_FILE: model_file}, record, numbered)
    version_uri = registry.file_url(manifest.version, "").rstrip("/")
    return VersionRecord(
        manifest=manifest, version_uri=version_uri,
        model_uri=registry.file_url(manifest.version, MODEL_FILE),
        model_card=tmp.read_text() if card else None, production=False)


@pytest.fixture
def versions(tmp_path, model, model_file) -> list[VersionRecord]:
    """Versions 1 (passed, with a card) and 2 (rejected, with a card) in a local store."""
    registry = Registry(open_store(str(tmp_path / "store")), model)
    return [publish(registry, model_file, first_lineage()),
            publish(registry, model_file, second_lineage())]


# -- MLflow's REST API, read with plain HTTP ---------------------------------------------------
def api(server: MLflowServer, method: str, path: str, body: dict[str, Any] | None = None,
        **query: Any) -> dict[str, Any]:
    url = f"{server.url}/api/2.0/mlflow/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def runs(server: MLflowServer, model: str) -> list[dict[str, Any]]:
    """Every run of the model's experiment, oldest first (none when there is no experiment)."""
    try:
        experiment = api(server, "GET", "experiments/get-by-name", experiment_name=model)
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        return []
    found = api(server, "POST", "runs/search", {
        "experiment_ids": [experiment["experiment"]["experiment_id"]], "max_results": 100,
        "order_by": ["attributes.start_time ASC"]})
    return found.get("runs", [])


def run_of(server: MLflowServer, model: str, version: int) -> dict[str, Any]:
    matching = [r for r in runs(server, model) if tags(r)["keel.version"] == str(version)]
    assert len(matching) == 1, f"{len(matching)} runs for version {version}"
    return matching[0]


def assert_has(found: dict[str, Any], expected: dict[str, Any]) -> None:
    assert {key: found.get(key) for key in expected} == expected


def tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def params(run: dict[str, Any]) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def metrics(run: dict[str, Any]) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def model_versions(server: MLflowServer, model: str) -> list[dict[str, Any]]:
    found = api(server, "GET", "model-versions/search", filter=f"name = '{model}'")
    return sorted(found.get("model_versions", []), key=lambda mv: int(mv["version"]))


def keel_version(mv: dict[str, Any]) -> str:
    return {t["key"]: t["value"] for t in mv.get("tags", [])}["keel.version"]


def production(server: MLflowServer, model: str) -> str | None:
    """The Keel version the MLflow alias ``production`` points at (None: no alias)."""
    try:
        found = api(server, "GET", "registered-models/alias", name=model, alias="production")
    except urllib.error.HTTPError as exc:  # 400 "Registered model alias production not found"
        assert exc.code in (400, 404) and "not found" in exc.read().decode()
        return None
    return keel_version(found["model_version"])


def artifact(server: MLflowServer, run: dict[str, Any], path: str) -> bytes:
    query = urllib.parse.urlencode({"path": path, "run_uuid": run["info"]["run_id"]})
    with urllib.request.urlopen(f"{server.url}/get-artifact?{query}", timeout=10) as response:
        return response.read()


def artifact_names(server: MLflowServer, run: dict[str, Any]) -> list[str]:
    listed = api(server, "GET", "artifacts/list", run_id=run["info"]["run_id"])
    return sorted(f["path"] for f in listed.get("files", []))


def snapshot(server: MLflowServer, model: str) -> tuple[Any, ...]:
    """Everything the mirror may write for a model: runs (with data), model versions, alias."""
    return (json.dumps(runs(server, model), sort_keys=True),
            json.dumps(model_versions(server, model), sort_keys=True),
            production(server, model))


# -- tests -----------------------------------------------------------------------------------------
def test_two_versions_are_two_runs_two_model_versions_and_the_alias_follows(
        server, model, versions, capfd):
    settings = {name: os.environ.get(name) for name in HTTP_SETTINGS}
    mirror = MLflowMirror(server.url)
    began = time.monotonic()
    for record in versions:
        mirror.record_version(record)
    print(f"two records took {time.monotonic() - began:.2f}s", file=sys.stderr)
    mirror.set_production(model, 1)
    assert capfd.readouterr().out == ""  # Keel's stdout is its summary: MLflow prints nothing
    assert {name: os.environ.get(name) for name in HTTP_SETTINGS} == settings  # restored

    found = runs(server, model)
    assert [tags(r)["keel.version"] for r in found] == ["1", "2"]
    assert all(r["info"]["status"] == "FINISHED" for r in found)
    first, second = found
    v1, v2 = (record.manifest for record in versions)

    assert_has(tags(second), {
        "keel.model": model, "keel.version": "2", "keel.decision": "rejected",
        "keel.git_commit": "b" * 40, "keel.data_version": "ab" * 32,
        "kfp.run_id": "kfp-run-0002", "keel.store_uri": versions[1].version_uri,
        "keel.package_version": v2.environment.keel})
    assert tags(second)["keel.store_uri"].endswith(f"/registry/{model}/versions/2")
    assert tags(first)["keel.decision"] == "passed" and tags(first)["kfp.run_id"] == v1.run_id

    p2 = params(second)
    assert_has(p2, {"estimator": v2.training.estimator,
                  "estimator_class": v2.training.estimator_class,
                  "param.max_depth": "5", "seed": "7", "test_size": "0.25",
                  "split.method": "hash", "split.columns": '["Status", "Age"]',
                  "split.salt": "pepper", "search.method": "grid", "search.metric": "roc_auc"})
    assert json.loads(p2["thresholds"]) == v2.decision.thresholds
    p1 = params(first)
    assert p1["param.max_depth"] == "3" and p1["param.criterion"] == "gini"
    assert p1["param.class_weight"] == "null"
    assert not any(key.startswith(("search.", "split.")) for key in p1)  # none recorded

    m2 = metrics(second)
    assert m2["accuracy"] == 0.80 and m2["roc_auc"] == 0.85
    assert m2["baseline.roc_auc"] == pytest.approx(v2.baseline.metrics["roc_auc"])
    assert (m2["interval_low.roc_auc"], m2["interval_high.roc_auc"]) == (-0.031, 0.012)
    assert m2["comparable_rows"] == 812 and m2["test_rows"] == v2.decision.test_rows
    m1 = metrics(first)
    assert m1["roc_auc"] == 0.83 and not any(k.startswith(("baseline.", "interval_")) for k in m1)

    registered = api(server, "GET", "registered-models/get", name=model)["registered_model"]
    assert registered["name"] == model
    mvs = model_versions(server, model)
    assert [keel_version(mv) for mv in mvs] == ["1", "2"]
    for mv, run, record in zip(mvs, found, versions, strict=True):
        mv_tags = {t["key"]: t["value"] for t in mv["tags"]}
        assert mv_tags["keel.store_uri"] == record.version_uri
        assert mv["run_id"] == run["info"]["run_id"]
        # A local store: the server refuses local paths, so the source is the version's run.
        assert mv["source"] == f"runs:/{run['info']['run_id']}"
    assert production(server, model) == "1"

    mirror.set_production(model, 2)
    assert production(server, model) == "2"
    mirror.set_production(model, 1)  # a rollback moves the alias back
    assert production(server, model) == "1"
    mirror.set_production(model, None)
    assert production(server, model) is None
    mirror.set_production(model, None)  # nothing to remove: still fine
    assert production(server, model) is None


def test_recording_again_creates_nothing(server, model, versions):
    mirror = MLflowMirror(server.url)
    for record in versions:
        mirror.record_version(record)
    mirror.set_production(model, 2)
    before = snapshot(server, model)
    again = MLflowMirror(server.url)  # a later sync: a new mirror, the same server
    for record in [*versions, *versions]:
        again.record_version(record)
    again.set_production(model, 2)
    assert snapshot(server, model) == before
    assert len(runs(server, model)) == 2 and len(model_versions(server, model)) == 2


def test_a_production_record_sets_the_alias(server, model, versions):
    mirror = MLflowMirror(server.url)
    mirror.record_version(versions[0])
    assert production(server, model) is None
    mirror.record_version(VersionRecord(**{**versions[1].__dict__, "production": True}))
    assert production(server, model) == "2"


def test_decision_and_model_card_are_downloadable(server, model, versions, tmp_path, model_file):
    mirror = MLflowMirror(server.url)
    mirror.record_version(versions[1])
    run = run_of(server, model, 2)
    assert artifact_names(server, run) == ["decision.json", "model_card.html"]
    decision = Decision.from_json(artifact(server, run, "decision.json"))
    assert decision == versions[1].manifest.decision
    assert artifact(server, run, "model_card.html").decode() == versions[1].model_card
    assert f"{model} version 2" in versions[1].model_card

    registry = Registry(open_store(str(tmp_path / "store")), model)
    no_card = publish(registry, model_file, second_lineage(override=True), card=False)
    mirror.record_version(no_card)
    run = run_of(server, model, no_card.manifest.version)
    assert artifact_names(server, run) == ["decision.json"]
    assert tags(run)["keel.decision"] == "override"


@pytest.mark.gcs
def test_a_gs_store_version_is_registered_as_a_pointer_to_its_folder(
        server, model, model_file, gcs_bucket):
    registry = Registry(open_store(f"gs://{gcs_bucket}/some/prefix"), model)
    record = publish(registry, model_file, first_lineage())
    assert record.version_uri == f"gs://{gcs_bucket}/some/prefix/registry/{model}/versions/1"
    MLflowMirror(server.url).record_version(record)
    [mv] = model_versions(server, model)
    assert mv["source"] == record.version_uri  # accepted by the server; the one copy stays in GCS
    assert mv["run_id"] == run_of(server, model, 1)["info"]["run_id"]
    assert tags(run_of(server, model, 1))["keel.store_uri"] == record.version_uri


def test_a_record_cut_off_half_way_is_completed_by_the_next(server, model, versions, monkeypatch):
    mirror = MLflowMirror(server.url)

    def connection_lost(*args, **kwargs):
        raise ConnectionError("connection reset by peer")

    with monkeypatch.context() as patch:
        patch.setattr(mirror.client, "log_text", connection_lost)
        with pytest.raises(MirrorError, match="could not upload the artifacts of version 1"):
            mirror.record_version(versions[0])
    [half] = runs(server, model)
    assert half["info"]["status"] == "RUNNING" and model_versions(server, model) == []

    mirror.record_version(versions[0])
    [run] = runs(server, model)
    assert run["info"]["run_id"] == half["info"]["run_id"]  # completed, not doubled
    assert run["info"]["status"] == "FINISHED"
    assert artifact_names(server, run) == ["decision.json", "model_card.html"]
    history = api(server, "GET", "metrics/get-history", run_id=run["info"]["run_id"],
                  metric_key="roc_auc")["metrics"]
    assert len(history) == 1  # logged twice, at the same point: one value
    assert [keel_version(mv) for mv in model_versions(server, model)] == ["1"]


def test_server_down_fails_fast_then_recording_again_repairs(server, model, versions):
    mirror = MLflowMirror(server.url)
    mirror.record_version(versions[0])
    mirror.set_production(model, 1)
    server.stop()
    try:
        for call, step in ((lambda: mirror.record_version(versions[1]),
                            f"find or create the experiment '{model}'"),
                           (lambda: mirror.set_production(model, 2),
                            f"move the alias 'production' of '{model}' to version 2")):
            began = time.monotonic()
            with pytest.raises(MirrorError) as failed:
                call()
            seconds = time.monotonic() - began
            print(f"server down: MirrorError after {seconds:.2f}s", file=sys.stderr)
            assert seconds < 10
            message = failed.value.args[0]
            assert message.startswith(f"MLflow at {server.url}: could not {step}: ")
            assert "\n" not in message and len(message) < 400
    finally:
        server.start()
    print(f"mlflow server restarted in {server.start_seconds:.1f}s", file=sys.stderr)
    assert production(server, model) == "1"  # what was recorded before is still there
    mirror.record_version(versions[1])  # the sync after the outage
    mirror.set_production(model, 2)
    assert [tags(r)["keel.version"] for r in runs(server, model)] == ["1", "2"]
    assert [keel_version(mv) for mv in model_versions(server, model)] == ["1", "2"]
    assert production(server, model) == "2"


def test_unreachable_server_names_mlflow_the_uri_and_the_step():
    mirror = MLflowMirror("http://127.0.0.1:9")  # nothing listens on the discard port
    began = time.monotonic()
    with pytest.raises(MirrorError) as failed:
        mirror.set_production("credit", None)
    assert time.monotonic() - began < 10
    message = failed.value.args[0]
    assert message.startswith("MLflow at http://127.0.0.1:9: could not remove the alias "
                              "'production' of 'credit': ")
    assert "Connection refused" in message and len(message) <= 300


def test_production_on_a_version_mlflow_does_not_have_says_to_record_it(server, model, versions):
    mirror = MLflowMirror(server.url)
    mirror.record_version(versions[0])
    with pytest.raises(MirrorError, match=r"could not move the alias 'production' of 'credit-\w+' "
                                          r"to version 2: it has no model version of Keel version "
                                          r"2 .*`keel models sync`"):
        mirror.set_production(model, 2)
    assert production(server, model) is None


def test_keel_imports_mlflow_only_when_a_mirror_is_made():
    code = ("import sys, keel.mirrors, keel.registry, keel.cli\n"
            "assert not [m for m in sys.modules if m.split('.')[0] == 'mlflow'], 'imported'\n"
            "import keel.mirror_mlflow\n"
            "assert 'mlflow' not in sys.modules, 'imported by keel.mirror_mlflow'\n"
            "keel.mirror_mlflow.MLflowMirror('http://127.0.0.1:9')\n"
            "assert 'mlflow' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_the_mlflow_venv_the_tests_fail_saying_how_to_make_it(monkeypatch, tmp_path):
    mlflow_server = sys.modules[MLflowServer.__module__]
    monkeypatch.setattr(mlflow_server, "MLFLOW", tmp_path / "missing" / "mlflow")
    with pytest.raises(RuntimeError, match=r"is missing: .* Run `make mlflow-venv`"):
        mlflow_server.MLflowServer()
