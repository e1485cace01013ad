"""The deploy stage and rollback as a deployment, on real versions (trained and published here).

The smoke test runs for real: the published version is loaded from the store in Keel's model
server on 127.0.0.1 and asked its golden rows. No Kubernetes cluster (nor KServe) can run here,
so the Kubernetes API is faked at its HTTP boundary (tests/fake_kube.py), and the deployed
endpoint, which only exists inside a cluster, is stood in for by Keel's model server on loopback
serving the same version (the one mock: where the endpoint URL leads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from keel import deploy as deploy_stage
from keel import promote
from keel.cli import main
from keel.contracts import Deployment, GoldenRows
from keel.deploy import render_isvc
from keel.registry import Registry
from keel.storage import open_store

try:
    from factories import publish_stages, run_stages
    from fake_kube import FakeKube, Script
except ImportError:  # tests/ imported as a package
    from tests.factories import publish_stages, run_stages
    from tests.fake_kube import FakeKube, Script

MODEL = "churn"
NAMESPACE = "models"


def table(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.integers(18, 80, 300).astype(float),
                          "city": rng.choice(["a", "b", "c", None], 300)})
    frame["churn"] = np.where(frame.age + rng.normal(0, 10, 300) > 50, "yes", "no")
    frame.to_csv(path, index=False)
    return path


def trained(folder: Path, store: str, seed: int) -> dict[str, str]:
    folder.mkdir(parents=True)
    return run_stages(folder, table(folder / "t.csv", seed), store, MODEL, "churn")


def deploy_run(p: dict[str, str], publication: str, out: Path, **options: Any) -> Deployment:
    return deploy_stage.run(publication, p["decision.json"], str(out), **options)


def test_a_version_that_answers_its_golden_rows_is_promoted(tmp_path):
    store = str(tmp_path / "store")
    p = trained(tmp_path / "a", store, 0)
    published = publish_stages(p, store, MODEL).to_json()

    record = deploy_run(p, published, tmp_path / "deployment.json")

    assert record.smoke_test.passed and record.smoke_test.rows >= 5
    assert record.smoke_test.where.startswith("http://127.0.0.1:")
    assert not record.enabled and not record.deployed and "deploy_namespace" in record.reason
    assert Deployment.read(tmp_path / "deployment.json") == record
    promotion = promote.run(published, p["decision.json"], "run-1",
                            deployment_path=str(tmp_path / "deployment.json"))
    assert promotion.promoted and promotion.deployment == record


def test_a_version_whose_served_answers_differ_is_not_promoted_and_says_why(tmp_path):
    store = str(tmp_path / "store")
    p = trained(tmp_path / "a", store, 0)
    # golden rows whose answers the served model does not give: what a server reading
    # requests differently from training would produce
    golden = GoldenRows.read(p["golden_rows.json"])
    wrong = [("no" if answer == "yes" else "yes") for answer in golden.predictions]
    golden.model_copy(update={"predictions": wrong, "probabilities": None}).write(
        p["golden_rows.json"])
    published = publish_stages(p, store, MODEL).to_json()

    record = deploy_run(p, published, tmp_path / "deployment.json")
    promotion = promote.run(published, p["decision.json"], "run-1",
                            deployment_path=str(tmp_path / "deployment.json"))

    assert not record.smoke_test.passed and "golden row 0" in record.smoke_test.reason
    assert not promotion.promoted
    assert promotion.reason.startswith("not promoted: the serving smoke test failed: golden row")
    assert Registry(open_store(store), MODEL).alias().version is None  # production unchanged


# -- keel models rollback --deploy ------------------------------------------------------------
@pytest.fixture
def two_versions(tmp_path) -> str:
    """A store whose model was promoted twice: production is version 2."""
    store = str(tmp_path / "store")
    for number, seed in ((1, 0), (2, 0)):
        p = trained(tmp_path / f"v{number}", store, seed)
        published = publish_stages(p, store, MODEL, f"run-{number}")
        Registry(open_store(store), MODEL).move_alias(
            published.version, expected_generation=number - 1, action="promote", reason="t")
    return store


def kubeconfig_for(fake: FakeKube, path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
        "users": [{"name": "u", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "u"}}]}))
    return path


@pytest.fixture
def endpoint_on_loopback(monkeypatch, two_versions) -> dict[str, int]:
    """The deployed endpoint's URL leads to Keel's model server on loopback, serving the version
    the test names in the returned dict (``version``) from the store."""
    from keel import smoke_test as smoke
    from keel.serving import load_version, serving

    real = smoke.endpoint_smoke_test
    served: dict[str, int] = {}

    def through_loopback(url: str, model: str, golden: GoldenRows, timeout: float = 30):
        with serving(load_version(two_versions, MODEL, served["version"]), "127.0.0.1", 0) as server:
            return real(server.url, model, golden, timeout)

    monkeypatch.setattr(smoke, "endpoint_smoke_test", through_loopback)
    return served


def rollback(store: str, config: Path, *extra: str) -> Any:
    return CliRunner().invoke(main, [
        "models", "rollback", "--store", store, "--model", MODEL, "--deploy", NAMESPACE,
        "--serving-store", "gs://bucket/keel", "--kubeconfig", str(config), "--json", *extra])


def test_rollback_deploy_serves_the_previous_version_then_moves_production(
        two_versions, endpoint_on_loopback, tmp_path):
    endpoint_on_loopback["version"] = 1
    with FakeKube() as fake:
        fake.put(render_isvc(model=MODEL, version=2, namespace=NAMESPACE,
                             storage_uri="gs://bucket/keel/registry/churn/versions/2"))
        result = rollback(two_versions, kubeconfig_for(fake, tmp_path / "config"))
        applied = fake.isvc(NAMESPACE, MODEL)

    assert result.exit_code == 0, result.output
    event = json.loads(result.output.strip().splitlines()[-1])
    assert (event["from"], event["to"]) == (2, 1)
    assert event["deployment"]["deployed"] and event["deployment"]["previous_version"] == 2
    assert applied["metadata"]["annotations"]["keel.dev/version"] == "1"
    assert applied["spec"]["predictor"]["model"]["storageUri"].endswith("/versions/1")
    assert Registry(open_store(two_versions), MODEL).alias().version == 1


def test_a_rollback_whose_deployment_fails_leaves_production_and_the_service_as_they_were(
        two_versions, endpoint_on_loopback, tmp_path):
    endpoint_on_loopback["version"] = 2  # what the endpoint serves again after the re-apply
    with FakeKube() as fake:
        fake.scripts["1"] = Script(outcome="failed")  # version 1 fails to load in KServe
        fake.put(render_isvc(model=MODEL, version=2, namespace=NAMESPACE,
                             storage_uri="gs://bucket/keel/registry/churn/versions/2"))
        result = rollback(two_versions, kubeconfig_for(fake, tmp_path / "config"))
        applied = fake.isvc(NAMESPACE, MODEL)

    assert result.exit_code == 1
    assert "was not deployed" in result.output and "Failed to load model" in result.output
    assert applied["metadata"]["annotations"]["keel.dev/version"] == "2"  # re-applied
    assert Registry(open_store(two_versions), MODEL).alias().version == 2  # not moved


@pytest.mark.parametrize("damage", ["model replaced", "golden rows deleted", "manifest garbled"])
def test_a_rollback_to_a_damaged_version_is_refused_before_the_cluster_is_contacted(
        two_versions, tmp_path, damage):
    # The Kubernetes API is the local fake (no real cluster can run here); the store, the
    # registry and the CLI are real.
    folder = Path(two_versions) / "registry" / MODEL / "versions" / "1"
    if damage == "model replaced":
        (folder / "model.joblib").write_bytes((folder / "model.joblib").read_bytes() + b"\0")
    elif damage == "golden rows deleted":
        (folder / "golden_rows.json").unlink()
    else:
        (folder / "manifest.json").write_text("{not json")
    with FakeKube() as fake:
        fake.put(render_isvc(model=MODEL, version=2, namespace=NAMESPACE,
                             storage_uri="gs://bucket/keel/registry/churn/versions/2"))
        before = json.dumps(fake.isvc(NAMESPACE, MODEL), sort_keys=True)
        result = rollback(two_versions, kubeconfig_for(fake, tmp_path / "config"))
        after = json.dumps(fake.isvc(NAMESPACE, MODEL), sort_keys=True)
        contacted = list(fake.requests)

    assert result.exit_code == 1, result.output
    assert "Version 1 of 'churn' is damaged" in result.output, result.output
    assert "Traceback" not in result.output
    assert contacted == [] and after == before  # refused before any request to the cluster
    registry = Registry(open_store(two_versions), MODEL)
    assert registry.alias().version == 2
    assert [e["action"] for e in registry.events()] == ["promote", "promote"]
