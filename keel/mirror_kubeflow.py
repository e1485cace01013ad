"""The Kubeflow Model Registry mirror: each Keel version as a model version the dashboard lists.

Talks to the Model Registry's REST API (``/api/model_registry/v1alpha3``, the OpenAPI document
``api/openapi/model-registry.yaml`` of kubeflow/model-registry):

- the Keel model is a *RegisteredModel* of the same name (``GET /registered_model?name=``, else
  ``POST /registered_models``);
- each Keel version is a *ModelVersion* named by its number, ``"7"`` (``GET /model_version?name=7
  &parentResourceId=<model id>``, else ``POST /model_versions``), whose customProperties carry the
  metrics (double values), data version, gate decision, Keel version, git commit, run id and the
  version's folder in the store;
- that version has one *ModelArtifact* named after the model (``GET /model_artifact?name=
  &parentResourceId=<version id>``, else ``POST /model_versions/<id>/artifacts``) whose ``uri`` is
  the version's folder (it holds ``model.joblib``, what KServe's sklearn runtime loads), with
  ``modelFormatName`` "sklearn" and ``modelFormatVersion`` the scikit-learn version that fitted it.

The Model Registry has no aliases, so production is a marker in customProperties: the bool
``keel.production`` on every version (true on exactly one), and ``keel.production_version`` on the
registered model (the version number as text, or "none"). Everything is found before it is made
and a property is written only when it differs, so recording again changes nothing, and a call
after a failure finishes what the failed one left undone. A PATCH of customProperties replaces
the whole map on the server, so every update sends the properties already there plus Keel's.
"""

from __future__ import annotations

import os
import re
from typing import Any

import requests

from keel.contracts import Manifest
from keel.errors import one_line
from keel.mirrors import Mirror, MirrorError, VersionRecord

API = "/api/model_registry/v1alpha3"
TOKEN_ENV = "KEEL_MODEL_REGISTRY_TOKEN"
TIMEOUT = (5.0, 15.0)  # seconds: to connect, then to wait for each answer
PAGE_SIZE = 100
FORMAT_NAME = "sklearn"  # KServe's sklearn runtime loads the model.joblib of the artifact's uri
PRODUCTION = "keel.production"  # bool, on each model version
PRODUCTION_VERSION = "keel.production_version"  # string, on the registered model
NO_PRODUCTION = "none"
METRIC_PREFIX = "keel.metric."
SERVICE = "Kubeflow Model Registry"

Json = dict[str, Any]


# -- customProperties values (MetadataValue of the OpenAPI document) -----------------------------
def string_value(text: str) -> Json:
    """A ``MetadataStringValue``."""
    return {"string_value": text, "metadataType": "MetadataStringValue"}


def double_value(number: float) -> Json:
    """A ``MetadataDoubleValue``."""
    return {"double_value": float(number), "metadataType": "MetadataDoubleValue"}


def bool_value(flag: bool) -> Json:
    """A ``MetadataBoolValue``."""
    return {"bool_value": flag, "metadataType": "MetadataBoolValue"}


def decision_of(manifest: Manifest) -> str:
    """What the gate decided: "passed", "rejected", or "override" (promoted whatever the checks)."""
    if manifest.decision.override is not None:
        return "override"
    return "passed" if manifest.decision.passed else "rejected"


def version_properties(record: VersionRecord) -> Json:
    """The customProperties Keel writes on a model version.

    An empty text is left out: the dashboard shows a string property whose value is "" as a label.
    """
    manifest = record.manifest
    texts = {
        "keel.decision": decision_of(manifest),
        "keel.data_version": manifest.data.data_version,
        "keel.keel_version": manifest.environment.keel,
        "keel.git_commit": manifest.environment.git_commit,
        "keel.run_id": manifest.run_id,
        "keel.store_path": record.version_uri,
        "keel.registered_at": manifest.registered_at,
    }
    properties: Json = {key: string_value(text) for key, text in texts.items() if text}
    properties.update({f"{METRIC_PREFIX}{name}": double_value(value)
                       for name, value in sorted(manifest.metrics.items())})
    properties[PRODUCTION] = bool_value(record.production)
    return properties


def artifact_fields(record: VersionRecord) -> Json:
    """The ModelArtifact fields Keel sets (besides its name and type)."""
    manifest = record.manifest
    fields: Json = {
        "uri": record.version_uri,
        "modelFormatName": FORMAT_NAME,
        "modelFormatVersion": manifest.environment.scikit_learn,
    }
    if manifest.run_id:  # where the model came from (ModelArtifact's modelSource* fields)
        fields.update(modelSourceKind="kfp", modelSourceClass="pipelinerun",
                      modelSourceId=manifest.run_id,
                      modelSourceName=f"{manifest.model}/{manifest.version}")
    return fields


def _reason(exc: requests.RequestException, timeout: tuple[float, float]) -> str:
    """The short cause of a failed connection ("Connection refused"), not urllib3's whole story."""
    if isinstance(exc, requests.Timeout):
        return f"no answer in time (connect {timeout[0]:g} s, read {timeout[1]:g} s)"
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    cause = found[1].strip() if found else type(exc).__name__
    return f"could not connect: {cause}"


def _server_message(response: requests.Response) -> str:
    """The ``message`` of the server's Error document, else the start of its body."""
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return one_line(doc["message"], 160)
    return one_line(response.text.strip() or response.reason or "no message", 160)


class ModelRegistryMirror(Mirror):
    """Records Keel's versions and production marker in a Kubeflow Model Registry.

    Args:
        url: The Model Registry's REST address, e.g.
            ``http://model-registry-service.kubeflow.svc:8080`` (with or without the API path).
        token: A bearer token; default: the environment variable ``KEEL_MODEL_REGISTRY_TOKEN``.
        timeout: Seconds to connect and to wait for an answer.
    """

    name = "kubeflow"

    def __init__(self, url: str, token: str | None = None,
                 timeout: tuple[float, float] = TIMEOUT):
        base = url.strip().rstrip("/").removesuffix(API).rstrip("/")
        if not re.match(r"^https?://[^/\s]+", base):
            raise MirrorError(f"{SERVICE}: {url!r} is not an http:// or https:// address.")
        self.url = base
        self.timeout = timeout
        self.session = requests.Session()  # no retries: requests' default adapter makes none
        self.session.headers["Accept"] = "application/json"
        token = os.environ.get(TOKEN_ENV, "") if token is None else token
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    # -- the Mirror interface --------------------------------------------------------------------
    def record_version(self, record: VersionRecord) -> None:
        """Make sure the registered model, the model version and its artifact exist and are right."""
        manifest = record.manifest
        model = self._registered_model(manifest.model, record)
        version = self._model_version(model["id"], record)
        self._model_artifact(version["id"], record)

    def set_production(self, model: str, version: int | None) -> None:
        """Mark ``version`` (None: none) as production: on the versions, then on the model.

        Versions marked before are cleared first, so at no moment are two versions marked.
        """
        found = self._find("/registered_model", {"name": model})
        if found is None:
            if version is None:
                return  # nothing recorded, nothing marked: already true
            raise MirrorError(f"{SERVICE} at {self.url} has no registered model {model!r}, so "
                              f"version {version} cannot be marked production: record the "
                              f"versions first (`keel models sync`).")
        target = None if version is None else str(version)
        versions = self._versions(found["id"])
        if target is not None and target not in {v.get("name") for v in versions}:
            raise MirrorError(f"{SERVICE} at {self.url} has no version {target} of {model!r}, so it "
                              f"cannot be marked production: record it first "
                              f"(`keel models sync`).")
        for item in versions:
            if item.get("name") != target and _is_true(item, PRODUCTION):
                self._update(f"/model_versions/{item['id']}", item, {PRODUCTION: bool_value(False)})
        for item in versions:
            if item.get("name") == target:
                self._update(f"/model_versions/{item['id']}", item, {PRODUCTION: bool_value(True)})
        self._update(f"/registered_models/{found['id']}", found,
                     {PRODUCTION_VERSION: string_value(target or NO_PRODUCTION)})

    # -- the objects -----------------------------------------------------------------------------
    def _registered_model(self, name: str, record: VersionRecord) -> Json:
        found = self._find("/registered_model", {"name": name})
        if found is not None:
            return found
        folder = record.version_uri.rsplit("/versions/", 1)[0]
        body = {"name": name,
                "description": f"Scikit-learn model versioned by Keel; its store: {folder}"}
        return self._create("/registered_models", body, "/registered_model", {"name": name})

    def _model_version(self, model_id: str, record: VersionRecord) -> Json:
        manifest = record.manifest
        name = str(manifest.version)
        properties = version_properties(record)
        query = {"name": name, "parentResourceId": model_id}
        found = self._find("/model_version", query)
        if found is not None:
            return self._update(f"/model_versions/{found['id']}", found, properties)
        body = {
            "name": name,
            "registeredModelId": model_id,
            "description": f"Keel version {name} of {manifest.model} ({decision_of(manifest)}); "
                           f"files: {record.version_uri}",
            "customProperties": properties,
        }
        created = self._create("/model_versions", body, "/model_version", query)
        return self._update(f"/model_versions/{created['id']}", created, properties)

    def _model_artifact(self, version_id: str, record: VersionRecord) -> Json:
        name = record.manifest.model
        fields = artifact_fields(record)
        query = {"name": name, "parentResourceId": version_id}
        found = self._find("/model_artifact", query)
        if found is None:
            body = {"artifactType": "model-artifact", "name": name, **fields}
            found = self._create(f"/model_versions/{version_id}/artifacts", body,
                                 "/model_artifact", query)
        if any(found.get(key) != value for key, value in fields.items()):
            return self._request("PATCH", f"/model_artifacts/{found['id']}",
                                 body={"artifactType": "model-artifact", **fields})
        return found

    def _versions(self, model_id: str) -> list[Json]:
        """Every model version of a registered model, page by page."""
        items: list[Json] = []
        token = ""
        for _page in range(10_000):
            params = {"pageSize": str(PAGE_SIZE)}
            if token:
                params["nextPageToken"] = token
            page = self._request("GET", f"/registered_models/{model_id}/versions", params=params,
                                 listing=True)
            batch = page.get("items") or []
            items.extend(item for item in batch if isinstance(item, dict))
            following = page.get("nextPageToken") or ""
            if not batch or not following or following == token:
                break
            token = following
        return items

    # -- HTTP --------------------------------------------------------------------------------------
    def _find(self, path: str, params: dict[str, str]) -> Json | None:
        """The one object a find path returns, or None when the server answers 404."""
        return self._call("GET", path, params=params, missing=True)

    def _create(self, path: str, body: Json, find: str, params: dict[str, str]) -> Json:
        """POST a new object; if another writer made it first (409), the one it made."""
        created = self._call("POST", path, body=body, conflict=True)
        if created is not None:
            return created
        found = self._find(find, params)
        if found is None:
            raise self._error(f"POST {self.url}{API}{path}",
                              "HTTP 409 (conflict), yet the object cannot be found")
        return found

    def _update(self, path: str, current: Json, properties: Json) -> Json:
        """Set ``properties`` on an object unless it has them (a PATCH replaces the whole map)."""
        existing = current.get("customProperties") or {}
        merged = {**existing, **properties}
        if merged == existing:
            return current
        return self._request("PATCH", path, body={"customProperties": merged})

    def _request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                 body: Json | None = None, listing: bool = False) -> Json:
        found = self._call(method, path, params=params, body=body, listing=listing)
        assert found is not None  # only 404 and 409 give None, and only when asked
        return found

    def _call(self, method: str, path: str, *, params: dict[str, str] | None = None,
              body: Json | None = None, missing: bool = False, conflict: bool = False,
              listing: bool = False) -> Json | None:
        """One request: its JSON object; None for 404 (``missing``) or 409 (``conflict``)."""
        url = f"{self.url}{API}{path}"
        shown = f"{method} {url}"
        if params:
            shown += "?" + "&".join(f"{key}={value}" for key, value in params.items())
        try:
            response = self.session.request(method, url, params=params, json=body,
                                            timeout=self.timeout)
        except requests.RequestException as exc:
            raise self._error(shown, _reason(exc, self.timeout)) from None
        if (missing and response.status_code == 404) or (conflict and response.status_code == 409):
            return None
        if response.status_code >= 400:
            raise self._error(shown, f"HTTP {response.status_code}: {_server_message(response)}")
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or not (listing or "id" in doc):
            raise self._error(shown, f"HTTP {response.status_code}, but the answer is not the "
                                     f"JSON object expected")
        return doc

    def _error(self, request: str, what: str) -> MirrorError:
        return MirrorError(one_line(f"{SERVICE}: {request} failed: {what}", 280))


def _is_true(item: Json, key: str) -> bool:
    value = (item.get("customProperties") or {}).get(key)
    return isinstance(value, dict) and value.get("bool_value") is True
