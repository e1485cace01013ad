"""keel.deploy and keel.kube: manifests checked against KServe's CRD schemas, and deployments.

No real Kubernetes cluster (nor KServe, nor Knative) can run in this test environment, so the
Kubernetes API is faked at its HTTP boundary (tests/fake_kube.py): Keel's real client speaks real
HTTP to a local server that does server-side apply and reports scripted KServe statuses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from factories import lineage
from fake_kube import FakeKube, Script

from keel.contracts import SmokeTest
from keel.deploy import (
    MODE_ANNOTATION,
    PREVIOUS_ANNOTATION,
    VERSION_ANNOTATION,
    DeployError,
    ManifestInvalid,
    check_manifest,
    deploy,
    dry_run_manifests,
    isvc_name,
    render_isvc,
    render_serving_runtime,
    scikit_learn_version,
)
from keel.errors import ParameterError
from keel.kube import APPLY_CONTENT_TYPE, KubeClient, KubeConfig, KubeError, kubeconfig
from keel.registry import Registry
from keel.storage import LocalStore

NS = "models"
IMAGE = "localhost/keel/serve:0.1.0"
SERVING_STORE = "gs://bucket/keel"
PASSED = SmokeTest(passed=True, reason="", rows=3, where="loopback")


def folder(version: int, model: str = "credit") -> str:
    return f"{SERVING_STORE}/registry/{model}/versions/{version}"


def publish(store: Path, model: str = "credit", *, files: tuple[str, ...] = ("model.joblib",),
            scikit_learn: str | None = None) -> int:
    registry = Registry(LocalStore(store), model)
    base = lineage()
    environment = base.environment.model_copy(
        update={"scikit_learn": scikit_learn or scikit_learn_version()})
    paths = {}
    for name in files:
        path = store.parent / f"{model}-{name}"
        path.write_bytes(f"not really a model: {name}".encode())
        paths[name] = str(path)
    return registry.publish(paths, base.model_copy(update={"environment": environment})).version


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    for _ in range(3):
        publish(root)
    return root


@pytest.fixture
def fake():
    with FakeKube() as server:
        yield server


def client_of(fake: FakeKube) -> KubeClient:
    return KubeClient(KubeConfig(server=fake.url, token="t0ken", source="test"))


def smoke_ok(url: str) -> SmokeTest:
    return SmokeTest(passed=True, reason="", rows=3, where=url)


def run(store: Path, fake: FakeKube, version: int, **kwargs: Any):
    options: dict[str, Any] = {"namespace": NS, "image": IMAGE, "smoke": smoke_ok,
                               "smoke_test": PASSED, "client": client_of(fake), "timeout": 5,
                               "poll": 0.01, "serving_store": SERVING_STORE}
    return deploy(str(store), "credit", version, **{**options, **kwargs})


def isvc(version: int, previous: int | None = None, **kwargs: Any) -> dict[str, Any]:
    return render_isvc(model="credit", version=version, storage_uri=folder(version),
                       namespace=NS, previous_version=previous, **kwargs)


# -- manifests ----------------------------------------------------------------------------------
def test_isvc_points_at_the_version_folder_with_an_explicit_runtime_and_annotations():
    doc = isvc(3, previous=2)
    check_manifest(doc)
    predictor = doc["spec"]["predictor"]
    assert predictor["model"] == {"modelFormat": {"name": "sklearn", "version": "1"},
                                  "runtime": "keel-sklearn", "storageUri": folder(3)}
    assert predictor["serviceAccountName"] == "keel-serving"
    assert doc["metadata"]["annotations"] == {
        "keel.dev/model": "credit", VERSION_ANNOTATION: "3", PREVIOUS_ANNOTATION: "2",
        MODE_ANNOTATION: "Serverless"}
    assert "deploymentStrategy" not in predictor  # Knative: a new revision, traffic when ready
    assert PREVIOUS_ANNOTATION not in isvc(1)["metadata"]["annotations"]


def test_raw_deployment_rolls_out_without_taking_pods_away_first():
    doc = isvc(2, deployment_mode="RawDeployment", min_replicas=2, max_replicas=3)
    check_manifest(doc)
    assert doc["spec"]["predictor"]["deploymentStrategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    with pytest.raises(ParameterError, match="scale to zero"):
        isvc(2, deployment_mode="RawDeployment", min_replicas=0)
    with pytest.raises(ParameterError, match="deployment_mode"):
        isvc(2, deployment_mode="Serverles")


def test_serving_runtime_runs_keel_non_root_and_validates():
    doc = render_serving_runtime(IMAGE, namespace=NS)
    check_manifest(doc)
    container = doc["spec"]["containers"][0]
    assert container["name"] == "kserve-container" and container["image"] == IMAGE
    assert container["command"] == ["keel"]
    assert container["args"][:5] == ["serve", "--model-dir", "/mnt/models", "--model", "{{.Name}}"]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert doc["spec"]["supportedModelFormats"] == [
        {"name": "sklearn", "version": "1", "autoSelect": False}]
    assert doc["spec"]["protocolVersions"] == ["v1", "v2"]


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["spec"]["predictor"]["model"].update(storageURI="gs://x"),
     "spec.predictor.model.storageURI"),
    (lambda d: d["spec"]["predictor"].update(minReplicas="one"), "spec.predictor.minReplicas"),
    (lambda d: d["spec"].update(predictr={}), "spec.predictr"),
])
def test_a_broken_manifest_is_refused_naming_the_field(change, field):
    doc = isvc(1)
    change(doc)
    with pytest.raises(ManifestInvalid, match=f"schema: {field}:"):
        check_manifest(doc)


def test_a_runtime_with_a_bad_container_is_refused():
    doc = render_serving_runtime(IMAGE, namespace=NS)
    doc["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    with pytest.raises(ManifestInvalid, match=r"spec\.containers\.0\.ports\.0\.containerPort"):
        check_manifest(doc)


def test_model_names_become_dns_labels_or_are_refused():
    assert isvc_name("credit_risk.v2") == "credit-risk-v2"
    with pytest.raises(ParameterError, match="DNS-1035"):
        isvc_name("7days")
    with pytest.raises(ParameterError, match="DNS-1035"):
        isvc_name("a" * 46)


def test_a_local_store_is_refused_as_a_storage_uri(store):
    with pytest.raises(ParameterError, match="storage initializer"):
        dry_run_manifests(str(store), "credit", 1, namespace=NS, image=IMAGE)


def test_dry_run_yaml_parses_back_and_validates(store):
    text = dry_run_manifests(str(store), "credit", 2, namespace=NS, image=IMAGE,
                             serving_store=SERVING_STORE)
    runtime, service = [d for d in yaml.safe_load_all(text) if d]
    assert (runtime["kind"], service["kind"]) == ("ServingRuntime", "InferenceService")
    check_manifest(runtime)
    check_manifest(service)
    assert service["spec"]["predictor"]["model"]["storageUri"] == folder(2)


# -- preflight ----------------------------------------------------------------------------------
def test_a_scikit_learn_mismatch_is_refused_before_the_cluster_is_contacted(store, fake):
    version = publish(store, scikit_learn="1.5.2")
    with pytest.raises(DeployError, match=r"scikit-learn 1\.5\.2.*scikit-learn "):
        run(store, fake, version)
    assert fake.requests == []


def test_two_model_files_are_refused(store, fake):
    version = publish(store, files=("model.joblib", "extra.pkl"))
    with pytest.raises(DeployError, match="exactly one model file.*extra.pkl, model.joblib"):
        run(store, fake, version)
    assert fake.requests == []


def test_a_failed_loopback_smoke_test_applies_nothing(store, fake):
    failed = SmokeTest(passed=False, reason="golden row 0 differs", rows=3)
    result = run(store, fake, 1, smoke_test=failed)
    assert not result.deployed and "nothing was applied" in result.reason
    assert fake.requests == []


def test_a_dry_run_refused_by_the_api_changes_nothing(store, fake, monkeypatch):
    original = fake.apply

    def refuse(kind, namespace, name, doc, *, dry_run):
        if dry_run and kind == "InferenceService":
            return 422, {"kind": "Status", "reason": "Invalid", "code": 422,
                         "message": "admission webhook denied: runtime keel-sklearn not found"}
        return original(kind, namespace, name, doc, dry_run=dry_run)

    monkeypatch.setattr(fake, "apply", refuse)
    with pytest.raises(DeployError, match="Preflight.*HTTP 422 Invalid.*runtime keel-sklearn"):
        run(store, fake, 1)
    assert fake.applies(dry_run=False) == []


# -- apply, wait, roll back -------------------------------------------------------------------
def test_first_deployment_applies_with_server_side_apply_and_waits(store, fake):
    fake.scripts["1"] = Script("ready", after=3)
    result = run(store, fake, 1)
    assert result.deployed and not result.rolled_back, result.reason
    assert result.previous_version is None
    assert result.url == f"http://credit.{NS}.example.com"
    assert result.revision == "credit-predictor-00001"
    assert result.endpoint_smoke_test is not None and result.endpoint_smoke_test.passed
    patches = [r for r in fake.requests if r.method == "PATCH"]
    assert patches and all(r.content_type == APPLY_CONTENT_TYPE for r in patches)
    assert all(r.query["fieldManager"] == "keel-deploy" and r.query["force"] == "true"
               for r in patches)
    dry = fake.applies(dry_run=True)
    assert [r.body["kind"] for r in dry] == ["ServingRuntime", "InferenceService"]
    assert all(r.query["dryRun"] == "All" for r in dry)
    real = fake.applies(dry_run=False)
    assert [r.body["kind"] for r in real] == ["ServingRuntime", "InferenceService"]
    stored = fake.isvc(NS, "credit")
    assert stored["spec"]["predictor"]["model"]["storageUri"] == folder(1)
    assert fake.tracked[(NS, "credit")].polls > 3  # it waited for the revision


def test_a_new_version_records_the_previous_one(store, fake):
    fake.put(isvc(1), status=None)
    result = run(store, fake, 2)
    assert result.deployed and result.previous_version == 1
    annotations = fake.isvc(NS, "credit")["metadata"]["annotations"]
    assert (annotations[VERSION_ANNOTATION], annotations[PREVIOUS_ANNOTATION]) == ("2", "1")
    assert result.revision == "credit-predictor-00002"


def test_failed_to_load_fails_fast_and_re_applies_the_previous_version(store, fake):
    fake.put(isvc(1))
    fake.scripts["2"] = Script("failed", message="No module named 'sklearn._loss'")
    result = run(store, fake, 2, timeout=60)
    assert not result.deployed and result.rolled_back
    assert "failed to load (ModelLoadFailed): No module named 'sklearn._loss'" in result.reason
    assert "version 1 was re-applied and is serving again" in result.reason
    last = fake.applies("InferenceService", dry_run=False)[-1].body
    assert last["metadata"]["annotations"][VERSION_ANNOTATION] == "1"
    assert last["spec"]["predictor"]["model"]["storageUri"] == folder(1)
    assert fake.isvc(NS, "credit")["metadata"]["annotations"][VERSION_ANNOTATION] == "1"


def test_a_version_never_ready_times_out_and_rolls_back(store, fake):
    fake.put(isvc(1))
    fake.scripts["3"] = Script("never")
    result = run(store, fake, 3, timeout=0.3)
    assert not result.deployed and result.rolled_back
    assert "was not ready after 0.3 s" in result.reason
    assert fake.applies("InferenceService", dry_run=False)[-1].body["metadata"]["annotations"][
        VERSION_ANNOTATION] == "1"


def test_an_endpoint_smoke_failure_rolls_back(store, fake):
    fake.put(isvc(1))
    asked = []

    def smoke(url: str) -> SmokeTest:
        asked.append(url)
        return SmokeTest(passed=False, reason="golden row 2 was predicted 1", rows=3, where=url)

    result = run(store, fake, 2, smoke=smoke)
    assert asked == [f"http://credit.{NS}.example.com"]
    assert not result.deployed and result.rolled_back
    assert "endpoint smoke test failed: golden row 2" in result.reason
    assert result.endpoint_smoke_test is not None and not result.endpoint_smoke_test.passed
    assert fake.isvc(NS, "credit")["metadata"]["annotations"][VERSION_ANNOTATION] == "1"


def test_a_failed_first_deployment_deletes_nothing_and_says_so(store, fake):
    fake.scripts["1"] = Script("failed")
    result = run(store, fake, 1)
    assert not result.deployed and not result.rolled_back
    assert "no previous version to go back to: nothing was deleted" in result.reason
    assert fake.isvc(NS, "credit") is not None
    assert all(r.method in ("GET", "PATCH") for r in fake.requests)


def test_the_previous_runtime_is_re_applied_too(store, fake):
    old_runtime = render_serving_runtime("localhost/keel/serve:0.0.9", namespace=NS)
    fake.put(old_runtime)
    fake.put(isvc(1))
    fake.scripts["2"] = Script("failed")
    result = run(store, fake, 2)
    assert result.rolled_back
    runtimes = fake.applies("ServingRuntime", dry_run=False)
    assert [r.body["spec"]["containers"][0]["image"] for r in runtimes] == [
        IMAGE, "localhost/keel/serve:0.0.9"]


def test_an_inference_service_keel_did_not_make_is_not_taken_over(store, fake):
    foreign = isvc(1)
    del foreign["metadata"]["annotations"]["keel.dev/model"]
    fake.put(foreign)
    with pytest.raises(DeployError, match="was not made by Keel"):
        run(store, fake, 2)
    assert fake.applies() == []


def test_raw_deployment_waits_for_the_rollout(store, fake):
    fake.put(isvc(1, deployment_mode="RawDeployment"))
    fake.scripts["2"] = Script("ready", after=4)
    result = run(store, fake, 2, deployment_mode="RawDeployment")
    assert result.deployed, result.reason
    assert result.revision == "credit-predictor-2"
    deployments = [r for r in fake.requests if r.path.endswith("/deployments/credit-predictor")]
    assert len(deployments) >= 1


# -- the client -------------------------------------------------------------------------------
def test_api_errors_name_the_status_message_and_object(fake):
    client = client_of(fake)
    assert client.get("serving.kserve.io/v1beta1", "InferenceService", NS, "absent") is None
    doc = isvc(1)
    doc["kind"] = "InferenceService"
    client.apply(doc, dry_run=True)
    assert fake.requests[-1].query == {"fieldManager": "keel-deploy", "force": "true",
                                       "dryRun": "All"}
    bare = KubeClient(KubeConfig(server=fake.url), field_manager="")
    with pytest.raises(KubeError, match=r"HTTP 400 BadRequest to apply InferenceService "
                                        r"models/credit: PATCH .* fieldManager is required"):
        bare.apply(doc)


def test_kubeconfig_is_read_from_a_file(tmp_path):
    config = tmp_path / "config"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dev",
        "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443",
                                                "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "s3cret"}}],
        "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "u",
                                                 "namespace": "team-a"}}],
    }))
    loaded = kubeconfig(str(config))
    assert loaded.server == "https://10.0.0.1:6443"
    assert loaded.token == "s3cret" and loaded.verify is False
    assert loaded.namespace == "team-a" and not loaded.in_cluster
    with pytest.raises(KubeError, match="No kubeconfig"):
        kubeconfig(str(tmp_path / "missing"))


# -- the command ------------------------------------------------------------------------------
def test_keel_deploy_dry_run_prints_the_manifests(store):
    from keel.deploy_cli import deploy_command

    result = CliRunner().invoke(deploy_command, [
        "--store", str(store), "--model", "credit", "--namespace", NS, "--dry-run",
        "--version", "3", "--serving-store", SERVING_STORE, "--image", IMAGE])
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.output) if d]
    assert [d["kind"] for d in docs] == ["ServingRuntime", "InferenceService"]
    for doc in docs:
        check_manifest(doc)
    assert docs[1]["spec"]["predictor"]["model"]["storageUri"] == folder(3)


def test_keel_deploy_json_dry_run(store):
    from keel.deploy_cli import deploy_command

    result = CliRunner().invoke(deploy_command, [
        "--store", str(store), "--model", "credit", "--namespace", NS, "--dry-run", "--json",
        "--version", "2", "--serving-store", SERVING_STORE])
    assert result.exit_code == 0, result.output
    docs = json.loads(result.output.splitlines()[-1])["manifests"]
    assert docs[1]["metadata"]["annotations"][VERSION_ANNOTATION] == "2"


@pytest.mark.parametrize("option, value, words", [
    ("--namespace", "a" * 64, ["'namespace'", "at most 63", "a" * 64]),
    ("--namespace", "Models", ["'namespace'", "'Models'"]),
    ("--namespace", "team_a", ["'namespace'", "'team_a'"]),
    ("--service-account", "Keel_Serving", ["'service_account'", "'Keel_Serving'"]),
    ("--image", "my image:1", ["'image'", "'my image:1'"]),
    ("--serving-store", "gs://", ["serving store 'gs://'", "bucket"]),
    ("--serving-store", "gs://Bad Bucket/keel", ["serving store", "no spaces"]),
    ("--serving-store", "gs://UPPER/keel", ["bucket 'UPPER'", "GCS bucket name"]),
    ("--serving-store", "s3://b/my keel", ["serving store", "no spaces"]),
])
def test_keel_deploy_refuses_names_kubernetes_or_kserve_would_not_take(store, fake, option,
                                                                      value, words):
    # These used to print (or apply) manifests the API server or KServe's storage initializer
    # refuses: a 64-character namespace, a ServiceAccount with '_', a bucket with a space.
    from keel.deploy_cli import deploy_command

    args = {"--namespace": NS, "--serving-store": SERVING_STORE, "--image": IMAGE,
            option: value}
    for dry_run in (["--dry-run"], ["--kubeconfig", str(kubeconfig_of(fake, store.parent))]):
        result = CliRunner().invoke(deploy_command, [
            "--store", str(store), "--model", "credit", "--version", "2", *dry_run,
            *[part for pair in args.items() for part in pair]])
        assert result.exit_code != 0 and isinstance(result.exception, ParameterError), (
            result.output, result.exception)
        message = str(result.exception)
        assert message.startswith("[deploy]") and all(w in message for w in words), message
    assert fake.requests == []  # refused before the cluster was contacted


def kubeconfig_of(fake: FakeKube, folder: Path) -> Path:
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
        "users": [{"name": "me", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}]}))
    return path


def test_render_isvc_checks_its_namespace_and_storage_uri():
    with pytest.raises(ParameterError, match="'namespace'.*'Models'"):
        render_isvc(model="credit", version=1, storage_uri=folder(1), namespace="Models")
    with pytest.raises(ParameterError, match="storageUri 'gs:///registry"):
        render_isvc(model="credit", version=1, storage_uri="gs:///registry/credit/versions/1",
                    namespace=NS)
