"""The Kubeflow Model Registry mirror (keel.mirror_kubeflow) against a fake Model Registry.

The real server (Go, with a database behind it) cannot be installed here, so these tests talk to a
fake at the HTTP boundary: a threaded ``http.server`` on 127.0.0.1 that implements only the
endpoints the mirror uses, keeps the objects in memory, and checks every request body the way
the real server does. Its field names, value shapes and status codes come from the OpenAPI
document of kubeflow/model-registry (``api/openapi/model-registry.yaml``, API v1alpha3) and its
Go handlers (``internal/server/openapi/api_model_registry_service.go``): bodies are decoded with
DisallowUnknownFields (an unknown field is a 400), a missing required field is a 422, a name
already taken is a 409, a find that matches nothing is a 404, and a PATCH of customProperties
replaces the whole map (``internal/converter/generated/openapi_reconciler.gen.go``). So a client
that sends another shape, or forgets the properties already there, fails these tests.

Versions are published into a real local store with the factories (a real Keel 0.1.0 manifest,
changed), and the mirror gets them as ``keel.mirrors.version_record`` makes them.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from keel.mirror_kubeflow import TOKEN_ENV, ModelRegistryMirror
from keel.mirrors import MirrorError, version_record
from keel.registry import MODEL_FILE, Registry
from keel.storage import LocalStore

try:
    from http_api import send_json
    from test_models_diff_promote import (  # noqa: F401  (model_files is a fixture)
        first_lineage,
        model_files,
        overridden_decision,
        publish,
        second_lineage,
    )
except ImportError:  # tests/ imported as a package
    from tests.http_api import send_json
    from tests.test_models_diff_promote import (  # noqa: F401
        first_lineage,
        model_files,
        overridden_decision,
        publish,
        second_lineage,
    )

MODEL = "credit"
API = "/api/model_registry/v1alpha3"

# -- what the OpenAPI document allows in each request body --------------------------------------
# BaseResourceCreate / BaseResourceUpdate
BASE_CREATE = {"customProperties", "description", "externalId", "name"}
BASE_UPDATE = {"customProperties", "description", "externalId"}
# BaseModel (in RegisteredModelUpdate, so in RegisteredModelCreate too)
BASE_MODEL = {"description", "readme", "maturity", "language", "tasks", "provider", "logo",
              "license", "licenseLink", "libraryName", "customProperties"}
REGISTERED_MODEL_UPDATE = BASE_UPDATE | BASE_MODEL | {"owner", "state"}
REGISTERED_MODEL_CREATE = BASE_CREATE | REGISTERED_MODEL_UPDATE | {"name"}
MODEL_VERSION_UPDATE = BASE_UPDATE | {"state", "author"}
MODEL_VERSION_CREATE = BASE_CREATE | MODEL_VERSION_UPDATE | {"registeredModelId", "name"}
MODEL_ARTIFACT_UPDATE = BASE_UPDATE | {
    "artifactType", "modelFormatName", "storageKey", "storagePath", "modelFormatVersion",
    "serviceAccountName", "modelSourceKind", "modelSourceClass", "modelSourceGroup",
    "modelSourceId", "modelSourceName", "uri", "state"}
# ModelArtifact (the model-artifact branch of Artifact, the body of the upsert under a version):
# BaseResource, BaseResourceDates, BaseArtifact's experiment ids, ModelArtifactCreate.
MODEL_ARTIFACT = BASE_CREATE | MODEL_ARTIFACT_UPDATE | {
    "id", "createTimeSinceEpoch", "lastUpdateTimeSinceEpoch", "experimentId", "experimentRunId"}
METADATA_VALUES = {  # MetadataValue: metadataType -> its value field and the JSON type it has
    "MetadataStringValue": ("string_value", str),
    "MetadataDoubleValue": ("double_value", (int, float)),
    "MetadataBoolValue": ("bool_value", bool),
    "MetadataIntValue": ("int_value", str),  # int64 as text, like every id
}
STATES = {"LIVE", "ARCHIVED"}
ARTIFACT_STATES = {"UNKNOWN", "PENDING", "LIVE", "MARKED_FOR_DELETION", "DELETED", "ABANDONED",
                   "REFERENCE"}
ID = re.compile(r"^[1-9][0-9]{0,8}$")


class Refused(Exception):
    """A request the real server would refuse: its status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_body(body: Any, allowed: set[str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Decode like the Go handlers: unknown field 400, wrong type 400, missing required 422."""
    if not isinstance(body, dict):
        raise Refused(400, "json: cannot unmarshal into Go value of type object")
    for key, value in body.items():
        if key not in allowed:
            raise Refused(400, f'json: unknown field "{key}"')
        if key == "customProperties":
            check_properties(value)
        elif key in {"language", "tasks"}:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise Refused(400, f"json: cannot unmarshal {key} into []string")
        elif not isinstance(value, str):
            raise Refused(400, f"json: cannot unmarshal {type(value).__name__} into Go struct "
                               f"field .{key} of type string")
    for key in required:
        if not body.get(key):
            raise Refused(422, f"required field '{key}' is zero value.")
    if "state" in body and body["state"] not in (
            ARTIFACT_STATES if "artifactType" in allowed else STATES):
        raise Refused(400, f"invalid state {body['state']!r}")
    for key in ("registeredModelId", "experimentId", "experimentRunId"):
        if key in body and not ID.match(body[key]):
            raise Refused(400, f"{key} must match {ID.pattern}")
    return body


def check_properties(properties: Any) -> None:
    """customProperties: a map of MetadataValue, each exactly {metadataType, <its value>}."""
    if not isinstance(properties, dict):
        raise Refused(400, "json: cannot unmarshal customProperties into map")
    for key, value in properties.items():
        kind = value.get("metadataType") if isinstance(value, dict) else None
        if kind not in METADATA_VALUES:
            raise Refused(400, f"customProperties[{key}]: unknown metadataType {kind!r}")
        field, types = METADATA_VALUES[kind]
        if set(value) != {"metadataType", field} or not isinstance(value[field], types) or (
                kind != "MetadataBoolValue" and isinstance(value[field], bool)):
            raise Refused(400, f"customProperties[{key}]: a {kind} is "
                               f'{{"metadataType", "{field}"}}, got {value!r}')


class FakeModelRegistry:
    """The endpoints of Model Registry v1alpha3 the mirror uses, with objects kept in memory."""

    def __init__(self, token: str = "", page_cap: int = 2):
        self.token = token
        self.page_cap = page_cap  # at most this many items a page: the client must follow pages
        self.models: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, dict[str, Any]] = {}
        self.artifacts: dict[str, dict[str, Any]] = {}
        self.parent: dict[str, str] = {}  # artifact id -> model version id
        self.log: list[tuple[str, str]] = []  # (method, path) of every request
        self.fail_status: int | None = None  # answer every request with this status
        self.fail_on: tuple[str, str] | None = None  # (method, path regex) answered with 500
        self.lock = threading.Lock()
        self._ids = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, doc = fake.handle(method, url.path, query, raw,
                                          self.headers.get("Authorization", ""))
                send_json(self, status, doc)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- routing ---------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], raw: bytes, auth: str
               ) -> tuple[int, Any]:
        with self.lock:
            self.log.append((method, path))
            if self.token and auth != f"Bearer {self.token}":
                return 401, {"code": "Unauthenticated", "message": "missing or invalid token"}
            if self.fail_status is not None:
                return self.fail_status, {"code": "", "message": "database is locked"}
            if self.fail_on and method == self.fail_on[0] and re.fullmatch(self.fail_on[1], path):
                return 500, {"code": "", "message": "storage backend unavailable"}
            if not path.startswith(API + "/"):
                return 404, {"code": "", "message": "not found"}
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return 400, {"code": "", "message": "invalid JSON"}
            try:
                return self.route(method, path.removeprefix(API), query, body)
            except Refused as exc:
                return exc.status, {"code": "", "message": str(exc)}

    def route(self, method: str, path: str, query: dict[str, str], body: Any
              ) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if method == "GET" and path == "/registered_model":
            return self.find(self.models.values(), query, parent_field=None)
        if method == "POST" and path == "/registered_models":
            return self.create_model(check_body(body, REGISTERED_MODEL_CREATE, ("name",)))
        if method == "PATCH" and parts[0] == "registered_models" and len(parts) == 2:
            return self.update(self.models, parts[1], check_body(body, REGISTERED_MODEL_UPDATE))
        if method == "GET" and parts[0] == "registered_models" and parts[2:] == ["versions"]:
            return self.list_versions(parts[1], query)
        if method == "GET" and path == "/model_version":
            if "name" in query and "parentResourceId" not in query:
                raise Refused(400, "a model version's name is looked up with its parentResourceId")
            return self.find(self.versions.values(), query, parent_field="registeredModelId")
        if method == "POST" and path == "/model_versions":
            return self.create_version(
                check_body(body, MODEL_VERSION_CREATE, ("name", "registeredModelId")))
        if method == "PATCH" and parts[0] == "model_versions" and len(parts) == 2:
            return self.update(self.versions, parts[1], check_body(body, MODEL_VERSION_UPDATE))
        if method == "GET" and path == "/model_artifact":
            if "name" in query and "parentResourceId" not in query:
                raise Refused(400, "an owned artifact's name is looked up with its parent")
            items = [dict(a, _parent=self.parent[a["id"]]) for a in self.artifacts.values()]
            status, found = self.find(items, query, parent_field="_parent")
            if status == 200:
                found = {k: v for k, v in found.items() if k != "_parent"}
            return status, found
        if method == "POST" and parts[0] == "model_versions" and parts[2:] == ["artifacts"]:
            return self.upsert_artifact(parts[1], body)
        if method == "PATCH" and parts[0] == "model_artifacts" and len(parts) == 2:
            return self.update(self.artifacts, parts[1], check_body(body, MODEL_ARTIFACT_UPDATE))
        return 405, {"code": "", "message": f"{method} {path} is not served by the fake"}

    # -- objects ---------------------------------------------------------------------------------
    def new(self, body: dict[str, Any], **fields: Any) -> dict[str, Any]:
        self._ids += 1
        stamp = str(int(time.time() * 1000))
        return {"customProperties": {}, **body, **fields, "id": str(self._ids),
                "createTimeSinceEpoch": stamp, "lastUpdateTimeSinceEpoch": stamp}

    @staticmethod
    def find(items: Any, query: dict[str, str], parent_field: str | None) -> tuple[int, Any]:
        for item in items:
            if "name" in query and item.get("name") != query["name"]:
                continue
            if parent_field and "parentResourceId" in query and (
                    item.get(parent_field) != query["parentResourceId"]):
                continue
            return 200, item
        return 404, {"code": "", "message": f"no entity found for {query}"}

    def create_model(self, body: dict[str, Any]) -> tuple[int, Any]:
        if any(m["name"] == body["name"] for m in self.models.values()):
            raise Refused(409, f"registered model with name {body['name']} already exists")
        model = self.new(body, state=body.get("state", "LIVE"))
        self.models[model["id"]] = model
        return 201, model

    def create_version(self, body: dict[str, Any]) -> tuple[int, Any]:
        parent = body["registeredModelId"]
        if parent not in self.models:
            raise Refused(404, f"no registered model found for id {parent}")
        if any(v["registeredModelId"] == parent and v["name"] == body["name"]
               for v in self.versions.values()):
            raise Refused(409, f"model version with name {body['name']} already exists")
        version = self.new(body, state=body.get("state", "LIVE"))
        self.versions[version["id"]] = version
        return 201, version

    def upsert_artifact(self, version_id: str, body: Any) -> tuple[int, Any]:
        if version_id not in self.versions:
            raise Refused(404, f"no model version found for id {version_id}")
        if not isinstance(body, dict) or body.get("artifactType") != "model-artifact":
            raise Refused(400, "artifactType must name one of the Artifact types")
        check_body(body, MODEL_ARTIFACT)
        if "id" in body:
            raise Refused(400, "the mirror creates artifacts, it does not re-associate them")
        if any(self.parent[a] == version_id and self.artifacts[a].get("name") == body.get("name")
               for a in self.artifacts):
            raise Refused(409, f"artifact with name {body.get('name')} already exists")
        artifact = self.new(body, state=body.get("state", "UNKNOWN"))
        self.artifacts[artifact["id"]] = artifact
        self.parent[artifact["id"]] = version_id
        return 201, artifact

    def update(self, table: dict[str, dict[str, Any]], ident: str, body: dict[str, Any]
               ) -> tuple[int, Any]:
        if ident not in table:
            raise Refused(404, f"no entity found for id {ident}")
        if "artifactType" in body and body["artifactType"] != "model-artifact":
            raise Refused(400, "artifactType cannot change")
        table[ident] = {**table[ident], **body,  # customProperties, when given, replace the map
                        "lastUpdateTimeSinceEpoch": str(int(time.time() * 1000))}
        return 200, table[ident]

    def list_versions(self, model_id: str, query: dict[str, str]) -> tuple[int, Any]:
        if model_id not in self.models:
            raise Refused(404, f"no registered model found for id {model_id}")
        items = [v for v in self.versions.values() if v["registeredModelId"] == model_id]
        size = min(int(query.get("pageSize", "100")), self.page_cap)
        start = int(query.get("nextPageToken") or 0)
        page = items[start:start + size]
        token = str(start + size) if start + size < len(items) else ""
        return 200, {"items": page, "nextPageToken": token, "pageSize": size, "size": len(page)}

    # -- what tests look at ----------------------------------------------------------------------
    def version(self, name: str) -> dict[str, Any]:
        (found,) = [v for v in self.versions.values() if v["name"] == name]
        return found

    def artifacts_of(self, name: str) -> list[dict[str, Any]]:
        version = self.version(name)
        return [a for i, a in self.artifacts.items() if self.parent[i] == version["id"]]

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.log if m != "GET"]

    def snapshot(self) -> str:
        return json.dumps([self.models, self.versions, self.artifacts], sort_keys=True)


def prop(item: dict[str, Any], key: str) -> Any:
    """The value of one customProperty, whatever its type."""
    value = item["customProperties"][key]
    field, _ = METADATA_VALUES[value["metadataType"]]
    return value[field]


def production_versions(fake: FakeModelRegistry) -> list[str]:
    return sorted(v["name"] for v in fake.versions.values()
                  if v["customProperties"].get("keel.production", {}).get("bool_value"))


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def fake() -> Iterator[FakeModelRegistry]:
    server = FakeModelRegistry()
    yield server
    server.close()


@pytest.fixture
def registry(tmp_path, model_files) -> Registry:
    """A local store with three versions: 1 passed, 2 rejected, 3 promoted by an override."""
    registry = Registry(LocalStore(tmp_path / "store"), MODEL)
    publish(registry, model_files, first_lineage())
    publish(registry, model_files, second_lineage())
    override = overridden_decision()
    publish(registry, model_files, second_lineage().model_copy(
        update={"decision": override, "baseline": override.baseline}))
    return registry


@pytest.fixture(autouse=True)
def no_token(monkeypatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    for name in ("NO_PROXY", "no_proxy"):  # the fake is local, whatever proxy the machine has
        monkeypatch.setenv(name, "127.0.0.1,localhost")


def record_all(mirror: ModelRegistryMirror, registry: Registry, production: int | None) -> None:
    for version in registry.versions():
        mirror.record_version(version_record(registry, version, production))


# -- recording versions ------------------------------------------------------------------------
def test_versions_become_model_versions_with_artifacts_and_properties(fake, registry):
    record_all(ModelRegistryMirror(fake.url), registry, production=1)

    (model,) = fake.models.values()
    assert model["name"] == MODEL
    assert sorted(v["name"] for v in fake.versions.values()) == ["1", "2", "3"]
    assert {v["registeredModelId"] for v in fake.versions.values()} == {model["id"]}
    for version, decision in [(1, "passed"), (2, "rejected"), (3, "override")]:
        manifest = registry.manifest(version)
        item = fake.version(str(version))
        folder = registry.file_url(version, "").rstrip("/")
        assert folder.endswith(f"/versions/{version}")
        assert prop(item, "keel.decision") == decision
        assert prop(item, "keel.data_version") == manifest.data.data_version
        assert prop(item, "keel.keel_version") == manifest.environment.keel
        assert prop(item, "keel.git_commit") == manifest.environment.git_commit
        assert prop(item, "keel.run_id") == manifest.run_id
        assert prop(item, "keel.store_path") == folder
        assert prop(item, "keel.production") is (version == 1)
        metrics = {k.removeprefix("keel.metric."): v["double_value"]
                   for k, v in item["customProperties"].items() if k.startswith("keel.metric.")}
        assert metrics == manifest.metrics
        assert all(item["customProperties"][f"keel.metric.{k}"]["metadataType"]
                   == "MetadataDoubleValue" for k in metrics)
        (artifact,) = fake.artifacts_of(str(version))
        assert artifact["artifactType"] == "model-artifact"
        assert artifact["uri"] == folder
        assert (Path(artifact["uri"]) / MODEL_FILE).is_file()  # what KServe's sklearn runtime loads
        assert artifact["modelFormatName"] == "sklearn"
        assert artifact["modelFormatVersion"] == manifest.environment.scikit_learn
        assert artifact["modelSourceId"] == manifest.run_id
    assert registry.manifest(2).environment.git_commit == "b" * 40  # the versions differ
    assert prop(fake.version("2"), "keel.git_commit") != prop(fake.version("1"), "keel.git_commit")


def test_recording_again_creates_and_changes_nothing(fake, registry):
    record_all(ModelRegistryMirror(fake.url), registry, production=1)
    before, writes = fake.snapshot(), len(fake.writes())

    record_all(ModelRegistryMirror(fake.url), registry, production=1)  # a new mirror: no memory
    record_all(ModelRegistryMirror(fake.url + API + "/"), registry, production=1)

    assert fake.snapshot() == before
    assert len(fake.writes()) == writes
    assert (len(fake.models), len(fake.versions), len(fake.artifacts)) == (1, 3, 3)


def test_a_later_call_repairs_what_a_failed_one_left(fake, registry):
    mirror = ModelRegistryMirror(fake.url)
    fake.fail_on = ("POST", rf"{API}/model_versions/\d+/artifacts")
    with pytest.raises(MirrorError, match="HTTP 500: storage backend unavailable"):
        mirror.record_version(version_record(registry, 1, 1))
    assert len(fake.versions) == 1 and not fake.artifacts  # the version, without its artifact

    fake.fail_on = None
    mirror.record_version(version_record(registry, 1, 1))

    assert len(fake.versions) == 1
    (artifact,) = fake.artifacts_of("1")
    assert artifact["uri"] == registry.file_url(1, "").rstrip("/")


def test_recording_again_brings_a_changed_version_up_to_date(fake, registry):
    mirror = ModelRegistryMirror(fake.url)
    mirror.record_version(version_record(registry, 1, None))
    item = fake.version("1")
    item["customProperties"]["reviewed"] = {"string_value": "", "metadataType": "MetadataStringValue"}
    item["customProperties"]["keel.metric.roc_auc"] = {  # changed behind Keel's back
        "double_value": 0.0, "metadataType": "MetadataDoubleValue"}

    mirror.record_version(version_record(registry, 1, 1))  # now production

    item = fake.version("1")
    assert prop(item, "keel.production") is True
    assert prop(item, "keel.metric.roc_auc") == registry.manifest(1).metrics["roc_auc"]
    assert prop(item, "reviewed") == ""
    assert len(fake.versions) == 1 and len(fake.artifacts) == 1


# -- production --------------------------------------------------------------------------------
def test_production_marker_moves_and_rolls_back(fake, registry):
    mirror = ModelRegistryMirror(fake.url)
    record_all(mirror, registry, production=None)
    assert production_versions(fake) == []
    fake.version("1")["customProperties"]["reviewed"] = {  # set by someone in the dashboard
        "string_value": "", "metadataType": "MetadataStringValue"}

    mirror.set_production(MODEL, 1)
    assert production_versions(fake) == ["1"]
    mirror.set_production(MODEL, 3)  # on the second page of versions (the fake's pages have 2)
    assert production_versions(fake) == ["3"]
    (model,) = fake.models.values()
    assert prop(model, "keel.production_version") == "3"
    assert prop(fake.version("1"), "keel.production") is False

    mirror.set_production(MODEL, 1)  # a rollback
    assert production_versions(fake) == ["1"]
    assert prop(fake.models[model["id"]], "keel.production_version") == "1"
    assert prop(fake.version("1"), "reviewed") == ""  # others' properties survive every PATCH
    assert prop(fake.version("1"), "keel.metric.roc_auc") == registry.manifest(1).metrics["roc_auc"]

    writes = len(fake.writes())
    mirror.set_production(MODEL, 1)
    assert len(fake.writes()) == writes  # already so: nothing written

    mirror.set_production(MODEL, None)
    assert production_versions(fake) == []
    assert prop(fake.models[model["id"]], "keel.production_version") == "none"


def test_production_of_what_was_not_recorded_is_refused(fake, registry):
    mirror = ModelRegistryMirror(fake.url)
    mirror.set_production(MODEL, None)  # nothing recorded, nothing marked: fine
    assert fake.writes() == []
    with pytest.raises(MirrorError, match="no registered model 'credit'.*keel models sync"):
        mirror.set_production(MODEL, 1)
    mirror.record_version(version_record(registry, 1, None))
    with pytest.raises(MirrorError, match="no version 7 of 'credit'"):
        mirror.set_production(MODEL, 7)


# -- failures ----------------------------------------------------------------------------------
def test_server_error_is_one_line_naming_the_registry_and_url(fake, registry):
    fake.fail_status = 500
    started = time.monotonic()
    with pytest.raises(MirrorError) as caught:
        ModelRegistryMirror(fake.url).record_version(version_record(registry, 1, 1))
    message = caught.value.args[0]
    assert time.monotonic() - started < 2
    assert len(fake.log) == 1  # no retries
    assert "\n" not in message and len(message) <= 300
    assert message.startswith("Kubeflow Model Registry: GET ")
    assert f"{fake.url}{API}/registered_model?name=credit" in message
    assert message.endswith("failed: HTTP 500: database is locked")
    assert str(caught.value).startswith("[mirror] ")


def test_server_down_fails_fast_naming_the_url(registry):
    fake = FakeModelRegistry()
    url = fake.url
    fake.close()  # nothing listens on the port now
    started = time.monotonic()
    with pytest.raises(MirrorError) as caught:
        ModelRegistryMirror(url).record_version(version_record(registry, 1, 1))
    assert time.monotonic() - started < 3
    message = caught.value.args[0]
    assert url in message and "could not connect: Connection refused" in message
    assert "\n" not in message and "HTTPConnectionPool" not in message


def test_a_server_that_never_answers_times_out(registry):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts connections, never answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            ModelRegistryMirror(url, timeout=(1, 0.5)).set_production(MODEL, 1)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(5)
    listener.close()
    assert not worker.is_alive(), "the client waited for ever"
    (error,) = outcome
    assert isinstance(error, MirrorError)
    assert "no answer in time (connect 1 s, read 0.5 s)" in error.args[0] and url in error.args[0]


def test_default_timeouts_and_bearer_token(fake, registry, monkeypatch):
    fake.token = "s3cret"
    with pytest.raises(MirrorError, match="HTTP 401: missing or invalid token"):
        ModelRegistryMirror(fake.url).record_version(version_record(registry, 1, 1))

    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    mirror = ModelRegistryMirror(fake.url)
    timeouts = []
    send = mirror.session.request

    def spy(*args: Any, **kwargs: Any) -> Any:
        timeouts.append(kwargs.get("timeout"))
        return send(*args, **kwargs)

    mirror.session.request = spy  # type: ignore[method-assign]
    mirror.record_version(version_record(registry, 1, 1))
    assert len(fake.versions) == 1
    assert timeouts and set(timeouts) == {(5.0, 15.0)}

    monkeypatch.setenv(TOKEN_ENV, "wrong")
    with pytest.raises(MirrorError) as caught:
        ModelRegistryMirror(fake.url).set_production(MODEL, 1)
    assert "wrong" not in caught.value.args[0]  # the token never shows in messages


def test_an_address_that_is_not_http_is_refused():
    with pytest.raises(MirrorError, match="not an http:// or https:// address"):
        ModelRegistryMirror("model-registry-service.kubeflow.svc:8080")


# -- the fake itself refuses what the real server refuses --------------------------------------
@pytest.mark.parametrize("path, body, status", [
    ("/registered_models", {"name": "m", "version": "1"}, 400),  # unknown field
    ("/registered_models", {"description": "no name"}, 422),
    ("/registered_models", {"name": "m", "customProperties": {"a": {"string_value": "x"}}}, 400),
    ("/registered_models", {"name": "m", "customProperties": {
        "a": {"metadataType": "MetadataDoubleValue", "double_value": "0.8"}}}, 400),
    ("/registered_models", {"name": "m", "customProperties": {
        "a": {"metadataType": "MetadataBoolValue", "bool_value": True, "extra": 1}}}, 400),
    ("/model_versions", {"name": "1", "registeredModelId": 1}, 400),  # ids are strings
    ("/model_versions", {"name": "1", "registered_model_id": "1"}, 400),
])
def test_the_fake_refuses_wrong_shapes(fake, path, body, status):
    import requests

    answer = requests.post(f"{fake.url}{API}{path}", json=body, timeout=5)
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"code", "message"}
