"""`keel cluster`: env files, compiling for an environment, upload/submit/schedule via kfp.Client.

The KFP API server is the one part these tests cannot reach (no Kubeflow cluster here): the
requests go to :class:`FakeKfp`, an in-memory stand-in on 127.0.0.1 that answers the v2beta1
REST paths kfp.Client calls, keeps what was created, and records every request for the tests to
read. Everything else is real: the env files, the compiling subprocess, kfp.Client and its REST
client, the CLI.
"""

from __future__ import annotations

import inspect
import itertools
import json
import re
import socket
import threading
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml
from click.testing import CliRunner

from keel.cli import main
from keel.cluster import (
    DEFAULT,
    EnvFileError,
    PodSettings,
    Toleration,
    compile_for,
    load_environment,
)
from keel.stages import STAGE_NAMES

try:
    from http_api import send_json
except ImportError:  # tests/ imported as a package
    from tests.http_api import send_json

REPO = Path(__file__).resolve().parents[1]
DEV = REPO / "manifests" / "env" / "dev.yaml"
PROD = REPO / "manifests" / "env" / "prod.yaml"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "s3cr3t-token-value"
API = "/apis/v2beta1"


# -- the fake KFP API server ---------------------------------------------------------------------
@dataclass
class Seen:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A header, whatever its case (kfp's REST client sends ``authorization``)."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)

    def upload(self) -> tuple[str, bytes]:
        """The (file name, content) of a multipart upload."""
        message = BytesParser(policy=email_policy).parsebytes(
            b"Content-Type: " + (self.header("Content-Type") or "").encode() + b"\r\n\r\n" + self.body)
        part = next(message.iter_parts())
        return part.get_filename(), part.get_payload(decode=True)


class FakeKfp:
    """KFP's v2beta1 API as kfp.Client uses it: pipelines, versions, experiments, runs, schedules.

    ``fail[(method, path)] = (status, body)`` makes that request fail, as the real server does.
    """

    def __init__(self, multi_user: bool = True):
        self.multi_user = multi_user
        self.requests: list[Seen] = []
        self.pipelines: list[dict[str, Any]] = []
        self.versions: list[dict[str, Any]] = []
        self.experiments: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.recurring: list[dict[str, Any]] = []
        self.packages: dict[str, bytes] = {}
        self.fail: dict[tuple[str, str], tuple[int, Any]] = {}
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, parts.path, dict(parse_qsl(parts.query)),
                            dict(self.headers), self.rfile.read(length))
                with fake._lock:
                    fake.requests.append(seen)
                    status, body = fake.fail.get((seen.method, seen.path)) or fake.answer(seen)
                send_json(self, status, body)

            do_GET = do_POST = do_DELETE = _serve  # noqa: N815 - http.server's names

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Quiet: the tests read FakeKfp.requests."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def host(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def seen(self, method: str, path: str) -> list[Seen]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def _id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    def _time(self) -> str:
        return f"2026-01-01T00:00:{next(self._clock):02d}Z"

    @staticmethod
    def _matches(item: dict[str, Any], query: dict[str, str]) -> bool:
        if "filter" not in query:
            return True
        return all(item.get(p["key"]) == p["stringValue"]
                   for p in json.loads(query["filter"])["predicates"])

    def answer(self, seen: Seen) -> tuple[int, Any]:
        path, query = seen.path, seen.query
        if seen.method == "GET" and path == f"{API}/healthz":
            return 200, {"multi_user": self.multi_user}
        if seen.method == "GET" and path == f"{API}/pipelines":
            found = [p for p in self.pipelines if self._matches(p, query)
                     and p["namespace"] == query.get("namespace", "")]
            return 200, {"pipelines": found, "total_size": len(found)} if found else {}
        if seen.method == "POST" and path == f"{API}/pipelines":
            pipeline = {**seen.json(), "pipeline_id": self._id("pipeline"),
                        "created_at": self._time()}
            pipeline.setdefault("namespace", "")
            self.pipelines.append(pipeline)
            return 200, pipeline
        if seen.method == "POST" and path == f"{API}/pipelines/upload_version":
            if not any(p["pipeline_id"] == query["pipelineid"] for p in self.pipelines):
                return 404, {"message": f"pipeline {query['pipelineid']} not found"}
            version = {"pipeline_id": query["pipelineid"], "display_name": query["name"],
                       "description": query.get("description", ""),
                       "pipeline_version_id": self._id("version"), "created_at": self._time()}
            self.versions.append(version)
            self.packages[version["pipeline_version_id"]] = seen.upload()[1]
            return 200, version
        found = re.fullmatch(rf"{API}/pipelines/([^/]+)/versions", path)
        if seen.method == "GET" and found:
            versions = [v for v in self.versions
                        if v["pipeline_id"] == found[1] and self._matches(v, query)]
            if query.get("sort_by") == "created_at desc":
                versions.sort(key=lambda v: v["created_at"], reverse=True)
            versions = versions[:int(query.get("page_size", 10))]
            return 200, {"pipeline_versions": versions} if versions else {}
        if seen.method == "GET" and path == f"{API}/experiments":
            found_experiments = [e for e in self.experiments if self._matches(e, query)
                                 and e["namespace"] == query.get("namespace", "")]
            return 200, {"experiments": found_experiments} if found_experiments else {}
        if seen.method == "POST" and path == f"{API}/experiments":
            experiment = {**seen.json(), "experiment_id": self._id("experiment")}
            experiment.setdefault("namespace", "")
            self.experiments.append(experiment)
            return 200, experiment
        if seen.method == "POST" and path == f"{API}/runs":
            run = {**seen.json(), "run_id": self._id("run")}
            self.runs.append(run)
            return 200, run
        if seen.method == "GET" and path == f"{API}/recurringruns":
            found_runs = [r for r in self.recurring if self._matches(r, query)
                          and r["experiment_id"] == query.get("experiment_id")]
            return 200, {"recurringRuns": found_runs} if found_runs else {}
        if seen.method == "POST" and path == f"{API}/recurringruns":
            recurring = {**seen.json(), "recurring_run_id": self._id("recurring")}
            self.recurring.append(recurring)
            return 200, recurring
        found = re.fullmatch(rf"{API}/recurringruns/([^/]+)", path)
        if seen.method == "DELETE" and found:
            self.recurring = [r for r in self.recurring if r["recurring_run_id"] != found[1]]
            return 200, {}
        return 404, {"error": "not found", "code": 5, "message": f"no route {seen.method} {path}"}


@pytest.fixture
def kfp_api():
    fake = FakeKfp()
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No KFP setting or credential of the machine leaks in; kfp's context file is a temp one."""
    for name in ("KFP_HOST", "KFP_NAMESPACE", "KFP_EXPERIMENT", "KFP_PIPELINE",
                 "KFP_SERVICE_ACCOUNT", "KF_PIPELINES_TOKEN", "KF_PIPELINES_COOKIES",
                 "KF_PIPELINES_SA_TOKEN_PATH", "KF_PIPELINES_ENDPOINT", "KEEL_IMAGE_DIGESTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KEEL_GIT_COMMIT", COMMIT)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def keel(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def error_line(result: Any) -> str:
    """The command failed as Keel fails: exit 1, one error line on stderr, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("keel: error: [cluster] "), lines[0]
    return lines[0]


def env_file(tmp_path: Path, base: Path = DEV, name: str = "dev", **changes: Any) -> Path:
    """A copy of ``base`` with ``changes`` (``"a.b": value``; None deletes the key)."""
    doc = yaml.safe_load(base.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = doc
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- env files ---------------------------------------------------------------------------------
def test_the_committed_env_files_load_with_what_they_say():
    from keel.pipelines.training import training_pipeline

    dev, prod = load_environment(DEV), load_environment(PROD)
    assert (dev.target.host, dev.target.namespace, dev.target.experiment) == (
        "http://127.0.0.1:8888", "keel-dev", "keel-dev")
    assert (prod.target.namespace, prod.target.service_account, prod.target.pipeline) == (
        "keel-prod", "keel-pipeline-runner", "keel-training")
    assert dev.image_registry == "localhost/keel"
    assert prod.image_registry == "europe-docker.pkg.dev/PROJECT_ID/keel"
    signature = set(inspect.signature(training_pipeline.pipeline_func).parameters)
    for environment in (dev, prod):
        assert set(environment.parameters) <= signature
        assert {"source", "target", "store"} <= set(environment.parameters)
        assert environment.schedule is not None
        assert environment.schedule.cron == "0 0 6 * * 1"
        assert (environment.schedule.catchup, environment.schedule.max_concurrency) == (False, 1)
        assert set(environment.stages) == {DEFAULT, *STAGE_NAMES}
    assert prod.parameters["deploy_namespace"] == "keel-prod"
    assert dev.parameters["deploy_namespace"] == ""
    # prod: train and tune on the big node pool, with the toleration; the others on defaults
    big = prod.stages["train"]
    assert big == prod.stages["tune"]
    assert (big.cpu_request, big.memory_request, big.memory_limit) == ("2", "4Gi", "16Gi")
    assert big.node_selector == {"cloud.google.com/gke-nodepool": "keel-highmem"}
    assert big.tolerations == (Toleration("dedicated", "Equal", "keel-training", "NoSchedule"),)
    assert prod.stages["ingest"] == prod.stages[DEFAULT] == PodSettings(
        cpu_request="500m", memory_request="1Gi", memory_limit="4Gi")
    # a stage's key replaces default's; the keys it does not set come from default
    assert prod.stages["evaluate"].memory_limit == "8Gi"
    assert not any(s.node_selector or s.tolerations for s in dev.stages.values())


@pytest.mark.parametrize("changes, expected", [
    ({"kfp_host": "x"}, r"kfp_host: unknown key; expected one of kfp, image_registry"),
    ({"kfp.hots": "http://x"}, r"kfp\.hots: unknown key \(did you mean host\?\)"),
    ({"kfp.host": None}, r"kfp\.host: missing; it is required"),
    ({"kfp.host": "127.0.0.1:8888"},
     r"kfp\.host: expected an http:// or https:// URL .*; got '127\.0\.0\.1:8888' \(str\)"),
    ({"kfp.namespace": "Keel_Dev"}, r"kfp\.namespace: expected a Kubernetes namespace"),
    ({"schedule.max_concurrency": "one"},
     r"schedule\.max_concurrency: expected a whole number from 1 to 10 \(KFP's range\); "
     r"got 'one' \(str\)"),
    ({"schedule.max_concurrency": 11}, r"schedule\.max_concurrency: .*got 11 \(int\)"),
    ({"schedule.catchup": "no"}, r"schedule\.catchup: expected true or false; got 'no' \(str\)"),
    ({"schedule.cron": "0 6 * * 1"}, r"schedule\.cron: .*five-field cron lacks the seconds"),
    ({"stages.trian": {"cpu_request": "1"}},
     r"stages\.trian: expected a stage name \(default, ingest, validate, .*\); got 'trian'"),
    ({"stages.train": {"cpu": "1"}},
     r"stages\.train\.cpu: unknown key \(did you mean cpu_request or cpu_limit\?\)"),
    ({"stages.train": {"cpu_request": "2 cores"}},
     r"stages\.train\.cpu_request: expected a CPU quantity.*; got '2 cores' \(str\)"),
    ({"stages.train": {"memory_request": "4GB"}},
     r"stages\.train\.memory_request: expected a memory quantity"),
    ({"stages.train": {"memory_request": "8Gi"}},  # default's limit is 2Gi
     r"stages\.train\.memory_request: expected at most the stage's memory_limit '2Gi'"),
    ({"stages.train": {"node_selector": {"gpu": True}}},
     r"stages\.train\.node_selector\.gpu: expected a label value as a string .*got True \(bool\)"),
    ({"stages.train": {"tolerations": [{"key": "a", "effect": "Never"}]}},
     r"stages\.train\.tolerations\[0\]\.effect: expected one of NoSchedule, PreferNoSchedule, "
     r"NoExecute; got 'Never'"),
    ({"stages.train": {"tolerations": [{"key": "a", "operator": "Exists", "value": "b"}]}},
     r"tolerations\[0\]\.value: expected no value with operator Exists"),
    ({"stages.ingest": {"secret_env": {"keel-db": {"password": "DB-PASSWORD"}}}},
     r"stages\.ingest\.secret_env\.keel-db\.password: expected an environment variable name"),
    ({"stages.train": {"image_pull_secrets": "regcred"}},
     r"stages\.train\.image_pull_secrets: expected a list of Secret names"),
    ({"parameters.sorce": "gs://b/t.csv"},
     r"parameters\.sorce: unknown key \(did you mean source or store\?\); expected a "
     r"parameter of the training pipeline"),
    ({"parameters.seed": "zero"},
     r"parameters\.seed: expected an integer \(the pipeline parameter's type\); got 'zero'"),
    ({"parameters.test_size": True}, r"parameters\.test_size: expected a number"),
    ({"image_registry": "localhost/keel:latest"}, r"image_registry: expected an image registry"),
])
def test_a_bad_env_file_is_refused_naming_file_key_expected_and_got(tmp_path, changes, expected):
    path = env_file(tmp_path, **changes)
    with pytest.raises(EnvFileError) as caught:
        load_environment(path)
    message = caught.value.args[0]
    assert message.startswith(f"{path}: "), message
    assert re.search(expected, message), message


@pytest.mark.parametrize("text, expected", [
    ("kfp: [unclosed\n", r"not valid YAML at line 2"),
    ("stages:\n  train: {cpu_request: '1'}\n  train: {cpu_request: '2'}\n",
     r"line 3: the key 'train' appears twice"),
    ("- a list\n", r": expected a mapping with keys kfp, image_registry"),
])
def test_a_file_that_is_not_an_env_file_is_refused(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(EnvFileError, match=expected):
        load_environment(path)


def test_the_cli_reports_a_bad_env_file_in_one_line(tmp_path):
    line = error_line(keel("cluster", "compile", "--env", str(tmp_path / "missing.yaml")))
    assert "missing.yaml: cannot read the env file (No such file or directory)" in line
    bad = env_file(tmp_path, **{"stages.trian": {}})
    line = error_line(keel("cluster", "schedule", "--env", str(bad), "--dry-run"))
    assert "stages.trian: expected a stage name" in line


# -- compiling for an environment ------------------------------------------------------------------
def executors(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(container of each executor, Kubernetes settings of each executor) of a compiled spec."""
    spec, platform = yaml.safe_load_all(path.read_text())
    containers = {name: e["container"] for name, e in spec["deploymentSpec"]["executors"].items()}
    return containers, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_compiling_for_prod_puts_train_and_tune_on_the_big_nodes_and_nothing_else(tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setenv("KEEL_IMAGE_REGISTRY", "elsewhere/ignored")  # the env file decides
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    path = compile_for(load_environment(PROD), tmp_path / "prod" / "training.yaml")
    containers, kubernetes = executors(path)
    assert set(containers) == {f"exec-{stage}" for stage in STAGE_NAMES}
    for name, container in containers.items():
        assert container["image"] == \
            f"europe-docker.pkg.dev/PROJECT_ID/keel/{name[len('exec-'):]}:0.1.0"
    big = {"resourceCpuRequest": "2", "resourceMemoryRequest": "4Gi",
           "resourceMemoryLimit": "16Gi"}
    normal = {"resourceCpuRequest": "500m", "resourceMemoryRequest": "1Gi",
              "resourceMemoryLimit": "4Gi"}
    for stage in STAGE_NAMES:
        resources = {k: v for k, v in containers[f"exec-{stage}"]["resources"].items()
                     if k.startswith("resource")}
        if stage in ("train", "tune"):  # tune: the tasks inside the search's ParallelFor
            assert resources == big, stage
            assert kubernetes[f"exec-{stage}"]["nodeSelector"] == {
                "labels": {"cloud.google.com/gke-nodepool": "keel-highmem"}}
            assert kubernetes[f"exec-{stage}"]["tolerations"] == [
                {"key": "dedicated", "operator": "Equal", "value": "keel-training",
                 "effect": "NoSchedule"}]
        else:
            expected = dict(normal)
            if stage == "evaluate":
                expected.update(resourceCpuRequest="1", resourceMemoryRequest="2Gi",
                                resourceMemoryLimit="8Gi")
            assert resources == expected, stage
            assert "nodeSelector" not in kubernetes.get(f"exec-{stage}", {}), stage
            assert "tolerations" not in kubernetes.get(f"exec-{stage}", {}), stage
    # ingest keeps the source secret as environment variables, by name only
    assert kubernetes["exec-ingest"]["secretAsEnv"][0]["secretNameParameter"] == {
        "componentInputParameter": "source_secret"}
    assert TOKEN not in path.read_text()


def test_compiling_for_dev_uses_its_registry_and_extra_secret_env(tmp_path):
    environment = load_environment(env_file(tmp_path, **{
        "stages.ingest": {"secret_env": {"keel-db": {"password": "DB_PASSWORD"}}},
        "stages.default.image_pull_secrets": ["regcred"]}))
    path = compile_for(environment, tmp_path / "out" / "training.yaml")
    containers, kubernetes = executors(path)
    assert containers["exec-train"]["image"] == "localhost/keel/train:0.1.0"
    assert {k: v for k, v in containers["exec-train"]["resources"].items()
            if k.startswith("resource")} == {"resourceCpuRequest": "1",
                                             "resourceMemoryRequest": "1Gi",
                                             "resourceMemoryLimit": "4Gi"}
    secrets = kubernetes["exec-ingest"]["secretAsEnv"]
    assert [s.get("secretName") for s in secrets] == ["keel-db", None]
    assert secrets[0]["keyToEnv"] == [{"secretKey": "password", "envVar": "DB_PASSWORD"}]
    assert secrets[1]["secretNameParameter"] == {"componentInputParameter": "source_secret"}
    assert "secretAsEnv" not in kubernetes["exec-train"]
    for stage in STAGE_NAMES:
        assert kubernetes[f"exec-{stage}"]["imagePullSecret"] == [
            {"secretName": "regcred", "secretNameParameter": {"runtimeValue": {
                "constant": "regcred"}}}], stage
        assert "nodeSelector" not in kubernetes[f"exec-{stage}"]


def test_keel_cluster_compile_writes_the_spec_under_build(tmp_path):
    result = keel("cluster", "compile", "--env", str(DEV))
    assert result.exit_code == 0, result.output
    written = tmp_path / "build" / "dev" / "training.yaml"
    assert result.stdout.strip() == str(written)
    assert "localhost/keel/ingest:0.1.0" in written.read_text()


# -- dry runs: the request, and no server contacted ----------------------------------------------
def test_schedule_dry_run_prints_the_request_and_contacts_nothing(kfp_api, monkeypatch):
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    monkeypatch.setenv("KFP_HOST", kfp_api.host)
    result = keel("cluster", "schedule", "--env", str(PROD), "--dry-run",
                  "--param", "seed=3", "--param", "split_key=[\"customer\"]",
                  "--max-concurrency", "2", "--catchup")
    assert result.exit_code == 0, result.output
    request = json.loads(result.stdout)
    assert request == {
        "action": "schedule", "dry_run": True, "host": kfp_api.host, "namespace": "keel-prod",
        "experiment": "keel-prod", "pipeline": "keel-training", "pipeline_version": "newest",
        "package": None, "recurring_run": "keel-training-prod", "cron": "0 0 6 * * 1",
        "catchup": True, "max_concurrency": 2, "replace": False,
        "service_account": "keel-pipeline-runner", "env_file": str(PROD),
        "parameters": {"source": "gs://DATA_BUCKET/credit.csv", "target": "Status",
                       "store": "gs://REGISTRY_BUCKET/keel", "model_name": "credit",
                       "deploy_namespace": "keel-prod", "seed": 3, "split_key": ["customer"]},
    }
    assert kfp_api.requests == []
    assert TOKEN not in result.output


def test_dry_runs_need_no_reachable_host(tmp_path):
    host = f"http://127.0.0.1:{closed_port()}"
    submit = keel("cluster", "submit", "--env", str(DEV), "--host", host, "--dry-run",
                  "--namespace", "", "--service-account", "other-runner", "--name", "try-1")
    assert submit.exit_code == 0, submit.output
    request = json.loads(submit.stdout)
    assert (request["action"], request["host"], request["namespace"], request["run_name"],
            request["service_account"]) == ("submit", host, "", "try-1", "other-runner")
    upload = keel("cluster", "upload", "--env", str(DEV), "--host", host, "--dry-run")
    assert upload.exit_code == 0, upload.output
    request = json.loads(upload.stdout)
    assert re.fullmatch(r"0\.1\.0-0123456789ab-\d{8}T\d{6}Z", request["pipeline_version"])
    assert request["package"] == str(tmp_path / "build" / "dev" / "training.yaml")
    assert "localhost/keel/train:0.1.0" in Path(request["package"]).read_text()


@pytest.mark.parametrize("args, expected", [
    (["--param", "sed=3"], r"'sed' is not a parameter of the training pipeline; did you mean "
                           r"seed"),
    (["--param", "seed=three"], r"seed takes an integer; got 'three'"),
    (["--param", "seed"], r"expected NAME=VALUE"),
    (["--param", "estimator=svm"], r"parameters: in .*dev\.yaml, then --param\) are not valid: "
                                   r"The 'estimator' parameter of train must be one of linear"),
    (["--param", "source="], r"not valid: The 'source' parameter of ingest must be a non-empty"),
    (["--cron", "@fortnightly"], r"--cron: expected a KFP cron expression"),
    (["--max-concurrency", "0"], r"--max-concurrency: expected a whole number from 1 to 10"),
    (["--host", "localhost:8888"], r"--host \(or KFP_HOST\): host: expected an http://"),
])
def test_bad_options_are_refused_before_anything_is_sent(kfp_api, args, expected):
    line = error_line(keel("cluster", "schedule", "--env", str(DEV), "--host", kfp_api.host,
                           *args))
    assert re.search(expected, line), line
    assert kfp_api.requests == []


# -- against the KFP API -----------------------------------------------------------------------
def cluster(kfp_api: FakeKfp, command: str, *args: str, env: Path = DEV) -> dict[str, Any]:
    result = keel("cluster", command, "--env", str(env), "--host", kfp_api.host, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_upload_creates_the_pipeline_once_then_adds_named_versions(kfp_api, monkeypatch, tmp_path):
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    first = cluster(kfp_api, "upload", "--version-name", "v-one")
    second = cluster(kfp_api, "upload")
    assert first["created_pipeline"] is True and second["created_pipeline"] is False
    assert first["pipeline_id"] == second["pipeline_id"]
    created = kfp_api.seen("POST", f"{API}/pipelines")
    assert len(created) == 1
    assert created[0].json()["display_name"] == "keel-training"
    assert created[0].json()["namespace"] == "keel-dev"
    uploads = kfp_api.seen("POST", f"{API}/pipelines/upload_version")
    assert [u.query["name"] for u in uploads] == ["v-one", second["pipeline_version"]]
    assert re.fullmatch(r"0\.1\.0-0123456789ab-\d{8}T\d{6}Z", second["pipeline_version"])
    assert all(u.query["pipelineid"] == first["pipeline_id"] for u in uploads)
    # the package sent is the spec compiled for dev
    package = yaml.safe_load_all(kfp_api.packages[second["pipeline_version_id"]])
    spec = next(package)
    assert spec["pipelineInfo"]["name"] == "keel-training"
    assert spec["deploymentSpec"]["executors"]["exec-train"]["container"]["image"] == \
        "localhost/keel/train:0.1.0"
    # the pipeline was looked up in the env's namespace, with the token from the environment
    lookups = kfp_api.seen("GET", f"{API}/pipelines")
    assert lookups and all(r.query["namespace"] == "keel-dev" for r in lookups)
    assert all(r.header("Authorization") == f"Bearer {TOKEN}" for r in kfp_api.requests)


def test_submit_runs_the_newest_version_with_the_env_parameters_and_account(kfp_api):
    cluster(kfp_api, "upload", "--version-name", "old")
    newest = cluster(kfp_api, "upload", "--version-name", "new")
    result = cluster(kfp_api, "submit", "--param", "seed=7", "--param", "allow_target_change=true",
                     "--name", "first-run")
    experiments = kfp_api.seen("POST", f"{API}/experiments")
    assert [e.json()["display_name"] for e in experiments] == ["keel-dev"]
    assert experiments[0].json()["namespace"] == "keel-dev"
    (run,) = [r.json() for r in kfp_api.seen("POST", f"{API}/runs")]
    assert run["display_name"] == "first-run"
    assert run["experiment_id"] == kfp_api.experiments[0]["experiment_id"]
    assert run["service_account"] == "keel-pipeline-runner"
    assert run["pipeline_version_reference"] == {
        "pipeline_id": newest["pipeline_id"], "pipeline_version_id": newest["pipeline_version_id"]}
    assert "pipeline_spec" not in run
    assert run["runtime_config"]["parameters"] == {
        "source": "gs://DATA_BUCKET/credit.csv", "target": "Status",
        "store": "gs://REGISTRY_BUCKET/keel-dev", "model_name": "credit",
        "deploy_namespace": "", "seed": 7, "allow_target_change": True}
    assert result["run_id"] == kfp_api.runs[0]["run_id"]
    assert result["pipeline_version"] == "new"
    # a second submit reuses the experiment, and may name an older version
    cluster(kfp_api, "submit", "--pipeline-version", "old")
    assert len(kfp_api.seen("POST", f"{API}/experiments")) == 1
    old = kfp_api.seen("POST", f"{API}/runs")[-1].json()
    assert old["pipeline_version_reference"]["pipeline_version_id"] == \
        kfp_api.versions[0]["pipeline_version_id"]


def test_submit_a_compiled_package_sends_the_spec_itself(kfp_api, tmp_path):
    package = compile_for(load_environment(DEV), tmp_path / "spec.yaml")
    cluster(kfp_api, "submit", "--package", str(package))
    run = kfp_api.seen("POST", f"{API}/runs")[0].json()
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "keel-training"
    assert "exec-ingest" in run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"][
        "deploymentSpec"]["executors"]
    assert "pipeline_version_reference" not in run
    assert kfp_api.seen("POST", f"{API}/pipelines") == []


def test_schedule_creates_one_weekly_run_at_a_time_and_refuses_a_second(kfp_api):
    version = cluster(kfp_api, "upload")
    result = cluster(kfp_api, "schedule")
    (job,) = [r.json() for r in kfp_api.seen("POST", f"{API}/recurringruns")]
    assert job["display_name"] == "keel-training-dev"
    assert job["trigger"] == {"cron_schedule": {"cron": "0 0 6 * * 1"}}
    assert int(job["max_concurrency"]) == 1
    assert job["no_catchup"] is True
    assert job["mode"] == "ENABLE"
    assert job["service_account"] == "keel-pipeline-runner"
    assert job["pipeline_version_reference"]["pipeline_version_id"] == \
        version["pipeline_version_id"]
    assert job["runtime_config"]["parameters"]["store"] == "gs://REGISTRY_BUCKET/keel-dev"
    assert result["recurring_run_id"] == kfp_api.recurring[0]["recurring_run_id"]

    again = keel("cluster", "schedule", "--env", str(DEV), "--host", kfp_api.host)
    line = error_line(again)
    assert "already has the recurring run 'keel-training-dev'" in line and "--replace" in line
    assert len(kfp_api.seen("POST", f"{API}/recurringruns")) == 1

    replaced = cluster(kfp_api, "schedule", "--replace", "--cron", "0 30 5 * * *")
    assert replaced["replaced"] == [result["recurring_run_id"]]
    assert [r["trigger"]["cron_schedule"]["cron"] for r in kfp_api.recurring] == ["0 30 5 * * *"]
    # the new schedule existed before the old one was deleted
    order = [(r.method, r.path) for r in kfp_api.requests]
    created = max(i for i, request in enumerate(order)
                  if request == ("POST", f"{API}/recurringruns"))
    assert order.index(("DELETE", f"{API}/recurringruns/{result['recurring_run_id']}")) > created


def test_a_standalone_kfp_gets_no_namespace(kfp_api):
    kfp_api.multi_user = False
    cluster(kfp_api, "upload", "--namespace", "")
    cluster(kfp_api, "submit", "--namespace", "", "--service-account", "")
    assert kfp_api.pipelines[0]["namespace"] == ""
    assert "namespace" not in kfp_api.seen("GET", f"{API}/pipelines")[0].query
    run = kfp_api.seen("POST", f"{API}/runs")[0].json()
    assert "service_account" not in run


# -- failures: one line naming the host and what was attempted -----------------------------------
def test_an_unreachable_host_is_one_line_naming_it():
    host = f"http://127.0.0.1:{closed_port()}"
    line = error_line(keel("cluster", "submit", "--env", str(DEV), "--host", host))
    assert f"Cannot reach the KFP API at {host} to submit a run: Connection refused" in line
    assert "port-forward" in line


def test_refused_credentials_name_the_variables_to_set(kfp_api):
    kfp_api.fail[("GET", f"{API}/healthz")] = (401, {"message": "no token"})
    line = error_line(keel("cluster", "schedule", "--env", str(DEV), "--host", kfp_api.host))
    assert f"The KFP API at {kfp_api.host} refused the credentials (HTTP 401) when trying to " \
           "schedule runs" in line
    assert "KF_PIPELINES_TOKEN" in line and "KF_PIPELINES_COOKIES" in line


def test_a_server_error_is_reported_with_its_message(kfp_api):
    cluster(kfp_api, "upload")
    kfp_api.fail[("POST", f"{API}/runs")] = (
        400, {"error": "bad", "code": 3, "message": "Invalid input error: service account "
                                                    "keel-pipeline-runner not found"})
    line = error_line(keel("cluster", "submit", "--env", str(DEV), "--host", kfp_api.host,
                           "--name", "r1"))
    assert f"The KFP API at {kfp_api.host} refused to create run 'r1': HTTP 400" in line
    assert "service account keel-pipeline-runner not found" in line


def test_submitting_before_any_upload_says_to_upload(kfp_api):
    line = error_line(keel("cluster", "submit", "--env", str(DEV), "--host", kfp_api.host))
    assert f"KFP at {kfp_api.host} has no pipeline 'keel-training' in namespace 'keel-dev'" in line
    assert "keel cluster upload" in line
    assert kfp_api.seen("POST", f"{API}/runs") == []
