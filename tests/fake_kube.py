"""A local fake of the Kubernetes API server, for the deploy tests.

No real cluster can run here (no container runtime able to host kube-apiserver, KServe and
Knative in the test environment), so the Kubernetes API is faked at its HTTP boundary: Keel's
real client (keel.kube, over requests) talks HTTP to this server on 127.0.0.1. It implements what
Keel uses, the way the API server does it:

- ``PATCH`` with ``Content-Type: application/apply-patch+yaml`` (server-side apply) of
  InferenceServices and ServingRuntimes: ``fieldManager`` is required, ``force``, ``dryRun=All``
  (validated, not stored); the stored object is the applied configuration (one manager: the
  fields it no longer sets are removed) plus ``metadata.generation`` (incremented when the spec
  changes), ``uid``, ``resourceVersion``. Any other PATCH content type is refused (415), so a test
  sees a merge patch fail;
- ``GET`` of one object, 404 with a ``Status`` naming it when absent;
- status, scripted per version by the test: ready after N polls (Knative revisions, or a
  RawDeployment predictor ``Deployment`` rolling out), FailedToLoad, or never ready.

Every request is recorded (method, path, query, content type, body).
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

try:
    from http_api import send_json
except ImportError:  # tests/ imported as a package
    from tests.http_api import send_json

APPLY = "application/apply-patch+yaml"
PLURALS = {"inferenceservices": "InferenceService", "servingruntimes": "ServingRuntime",
           "deployments": "Deployment"}


@dataclass
class Script:
    """How an InferenceService serving one version behaves: ``ready`` after ``after`` polls,
    ``failed`` (FailedToLoad), or ``never`` (stays not ready)."""

    outcome: str = "ready"
    after: int = 1
    message: str = "Failed to load model: ModuleNotFoundError: No module named 'sklearn._loss'"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any = None


@dataclass
class Tracked:
    """Per InferenceService: how many GETs since the last spec change, and its revisions."""

    polls: int = 0
    revision: int = 0
    ready_revision: int = 0
    storage: str = ""


@dataclass
class FakeKube:
    scripts: dict[str, Script] = field(default_factory=dict)  # version -> behaviour
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    tracked: dict[tuple[str, str], Tracked] = field(default_factory=dict)
    host: str = "example.com"

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(*fake.handle("GET", self.path, self.headers, b""))

            def do_PATCH(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer(*fake.handle("PATCH", self.path, self.headers, body))

            def _answer(self, status: int, doc: dict[str, Any]) -> None:
                send_json(self, status, doc)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKube:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what tests look at ----------------------------------------------------------------
    def applies(self, kind: str | None = None, *, dry_run: bool | None = None) -> list[Request]:
        """The PATCH requests, in order (of one kind; with or without dryRun)."""
        return [r for r in self.requests if r.method == "PATCH"
                and (kind is None or PLURALS.get(r.path.split("/")[-2]) == kind)
                and (dry_run is None or ("dryRun" in r.query) == dry_run)]

    def isvc(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(("InferenceService", namespace, name))

    def put(self, doc: dict[str, Any], status: dict[str, Any] | None = None) -> None:
        """Store an object as if applied earlier (by Keel or someone else), with a status."""
        metadata = doc["metadata"]
        stored = json.loads(json.dumps(doc))
        stored["metadata"].update(generation=1, uid=str(uuid.uuid4()), resourceVersion="1")
        if status is not None:
            stored["status"] = status
        self.objects[(doc["kind"], metadata["namespace"], metadata["name"])] = stored
        if doc["kind"] == "InferenceService":
            storage = doc["spec"]["predictor"]["model"]["storageUri"]
            self.tracked[(metadata["namespace"], metadata["name"])] = Tracked(
                polls=0, revision=1, ready_revision=1, storage=storage)

    # -- the API ---------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: Any, body: bytes
               ) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        content_type = headers.get("Content-Type", "")
        parsed = yaml.safe_load(body) if body else None
        with self.lock:
            self.requests.append(Request(method, parts.path, query, content_type, parsed))
            segments = parts.path.strip("/").split("/")
            # /apis/<group>/<version>/namespaces/<ns>/<plural>/<name> or /api/v1/...
            try:
                at = segments.index("namespaces")
                namespace, plural, name = segments[at + 1], segments[at + 2], segments[at + 3]
                kind = PLURALS[plural]
            except (ValueError, IndexError, KeyError):
                return 404, status_doc(404, "NotFound",
                                       "the server could not find the requested resource")
            if method == "GET":
                return self.get(kind, namespace, name, plural)
            if content_type != APPLY:
                return 415, status_doc(415, "UnsupportedMediaType",
                                       f"the fake accepts only server-side apply, got "
                                       f"{content_type!r}")
            if not query.get("fieldManager"):
                return 400, status_doc(400, "BadRequest",
                                       "PATCH ... fieldManager is required for apply requests")
            return self.apply(kind, namespace, name, parsed, dry_run=query.get("dryRun") == "All")

    def apply(self, kind: str, namespace: str, name: str, doc: dict[str, Any], *,
              dry_run: bool) -> tuple[int, dict[str, Any]]:
        if doc.get("kind") != kind or doc["metadata"].get("name") != name:
            return 400, status_doc(400, "BadRequest", "the body does not match the URL")
        key = (kind, namespace, name)
        current = self.objects.get(key)
        result = json.loads(json.dumps(doc))
        metadata = result["metadata"]
        metadata["namespace"] = namespace
        if current is None:
            metadata.update(generation=1, uid=str(uuid.uuid4()), resourceVersion="1")
            status = {}
        else:
            old = current["metadata"]
            changed = current.get("spec") != doc.get("spec")
            metadata.update(generation=old["generation"] + (1 if changed else 0), uid=old["uid"],
                            resourceVersion=str(int(old["resourceVersion"]) + 1))
            status = current.get("status", {})
        result["status"] = status
        if dry_run:
            return 200, result
        self.objects[key] = result
        if kind == "InferenceService":
            tracked = self.tracked.setdefault((namespace, name), Tracked())
            storage = doc["spec"]["predictor"]["model"]["storageUri"]
            if storage != tracked.storage:
                tracked.revision += 1
                tracked.storage = storage
            tracked.polls = 0
        return 201 if current is None else 200, result

    def get(self, kind: str, namespace: str, name: str, plural: str
            ) -> tuple[int, dict[str, Any]]:
        if kind == "Deployment":
            return self.deployment(namespace, name, plural)
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            return 404, status_doc(404, "NotFound", f'{plural}.serving.kserve.io "{name}" not '
                                   "found", name=name, kind=plural)
        if kind == "InferenceService":
            self.progress(obj)
        return 200, obj

    def script(self, obj: dict[str, Any]) -> Script:
        version = obj["metadata"].get("annotations", {}).get("keel.dev/version", "")
        return self.scripts.get(version, Script())

    def progress(self, obj: dict[str, Any]) -> None:
        """The status KServe would report on this poll, from the version's script."""
        metadata = obj["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        tracked = self.tracked[(namespace, name)]
        tracked.polls += 1
        script = self.script(obj)
        ready = script.outcome == "ready" and tracked.polls > script.after
        if ready:
            tracked.ready_revision = tracked.revision
        revision = f"{name}-predictor-{tracked.revision:05d}"
        status: dict[str, Any] = {
            "observedGeneration": metadata["generation"],
            "url": f"http://{name}.{namespace}.{self.host}",
            "address": {"url": f"http://{name}-predictor.{namespace}.svc.cluster.local"},
            "components": {"predictor": {
                "latestCreatedRevision": revision,
                "latestReadyRevision": (f"{name}-predictor-{tracked.ready_revision:05d}"
                                        if tracked.ready_revision else None),
            }},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            **({} if ready else {"reason": "RevisionMissing",
                                                 "message": "revision not ready"})}],
            "modelStatus": {"transitionStatus": "UpToDate" if ready else "InProgress",
                            "states": {"activeModelState": "Loaded" if ready else "Loading",
                                       "targetModelState": "Loaded" if ready else "Loading"}},
        }
        if script.outcome == "failed":
            status["modelStatus"] = {
                "transitionStatus": "BlockedByFailedLoad",
                "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
                "lastFailureInfo": {"reason": "ModelLoadFailed", "message": script.message},
            }
        obj["status"] = status

    def deployment(self, namespace: str, name: str, plural: str) -> tuple[int, dict[str, Any]]:
        """The predictor Deployment of a RawDeployment InferenceService, rolling out."""
        isvc_name = name.removesuffix("-predictor")
        isvc = self.objects.get(("InferenceService", namespace, isvc_name))
        if isvc is None or not name.endswith("-predictor"):
            return 404, status_doc(404, "NotFound", f'deployments.apps "{name}" not found',
                                   name=name, kind=plural)
        tracked = self.tracked[(namespace, isvc_name)]
        script = self.script(isvc)
        rolled = script.outcome == "ready" and tracked.polls > script.after
        replicas = isvc["spec"]["predictor"].get("minReplicas", 1)
        return 200, {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "generation": tracked.revision,
                         "annotations": {"deployment.kubernetes.io/revision":
                                         str(tracked.revision)}},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": tracked.revision, "replicas":
                       replicas if rolled else replicas + 1,
                       "updatedReplicas": replicas if rolled else 1,
                       "availableReplicas": replicas},
        }


def status_doc(code: int, reason: str, message: str, **details: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reason, "details": details, "code": code}
