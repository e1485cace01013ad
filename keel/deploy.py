"""Deploy a registered version to KServe, and take it back when it does not serve.

What the deploy stage and ``keel deploy`` do, in order:

1. **Preflight**, before anything in the cluster changes: the version is intact (every file
   matches its sha256); it holds exactly one model file (``model.joblib``); it was trained with the
   scikit-learn the serving image has (Keel's own pinned one, since the image installs
   ``requirements.lock``: KServe's stock sklearn runtime pins another); both manifests validate
   against KServe's CRD schemas (:func:`check_manifest`, offline) and pass a server-side-apply
   dry run (``dryRun=All``: the API server's validation and KServe's admission webhooks).
2. Read the live ``InferenceService``: the version it serves now (annotation
   ``keel.dev/version``) is the one to go back to.
3. **Server-side apply** (field manager ``keel-deploy``) of the ``ServingRuntime`` and the
   ``InferenceService``: never a merge patch, so a field Keel stops setting is removed.
4. **Wait**, up to a timeout, for the new revision: in Knative (``Serverless``) mode until
   ``latestReadyRevision == latestCreatedRevision`` (a new one when the model folder changed),
   ``Ready`` is True and ``observedGeneration`` is the applied generation; in ``RawDeployment``
   (``Standard``) mode until the predictor ``Deployment`` has rolled out (PredictorReady stays
   True during a rollout there, kserve#4626). A model that fails to load (``FailedToLoad``,
   ``BlockedByFailedLoad``, ``InvalidSpec``) fails at once with KServe's message.
5. **Smoke test** the endpoint with the version's golden rows.
6. On any failure after the apply, **re-apply the previous version** (and the previous
   ``ServingRuntime``), wait for it, and return ``deployed=False, rolled_back=True``: the caller
   fails the stage. A first deployment that fails has nothing to go back to; nothing is deleted,
   and the result says so. Rolling back by hand is a deploy of the previous version.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from keel.contracts import Deployment, GoldenRows, SmokeTest
from keel.errors import KeelError, ParameterError, one_line, reports_errors
from keel.kube import KubeClient, KubeError, describe
from keel.settings import DEPLOYMENT_MODES, KNATIVE_MODES, SETTINGS, STANDARD_MODES

RUNTIME = "keel-sklearn"  # the ServingRuntime running Keel's model server
#: what the predictor pods (and the storage initializer) run as
SERVICE_ACCOUNT = SETTINGS["serving_account"].default
ISVC_API = "serving.kserve.io/v1beta1"
RUNTIME_API = "serving.kserve.io/v1alpha1"
DEPLOYMENT_API = "apps/v1"
MODEL_ANNOTATION = "keel.dev/model"
VERSION_ANNOTATION = "keel.dev/version"
PREVIOUS_ANNOTATION = "keel.dev/previous-version"
IMAGE_ANNOTATION = "keel.dev/image"
SCIKIT_LEARN_ANNOTATION = "keel.dev/scikit-learn"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts the storageUri's files
PORT = 8080
#: An InferenceService name: a DNS-1035 label short enough for Knative's revision names
#: (``<name>-predictor-00001`` within 63 characters).
MAX_NAME = 45
NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
#: A namespace: a DNS-1123 label (at most 63 characters).
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
#: A ServiceAccount name: a DNS-1123 subdomain (at most 253 characters).
SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: A GCS bucket name (3-63 characters per dot-separated part, 222 in all).
GCS_BUCKET = re.compile(r"^[a-z0-9][-a-z0-9_.]{1,220}[a-z0-9]$")
#: storageUri schemes KServe's storage initializer reads.
STORAGE_SCHEMES = ("gs://", "s3://", "pvc://", "https://", "http://", "hdfs://", "webhdfs://",
                   "oci://", "hf://")
MODEL_EXTENSIONS = (".joblib", ".pkl", ".pickle")
MODEL_FILE = "model.joblib"
SCHEMAS = {"InferenceService": "inferenceservice.v1beta1.json",
           "ServingRuntime": "servingruntime.v1alpha1.json"}
LABELS = {"app.kubernetes.io/part-of": "keel", "app.kubernetes.io/managed-by": "keel-deploy"}


class DeployError(KeelError):
    """The deployment was refused before anything in the cluster changed."""

    stage = "deploy"


class ManifestInvalid(DeployError):
    """A rendered manifest does not validate against KServe's CRD schema."""


class DeployFailed(DeployError):
    """The applied version did not become ready, failed to load, or failed its smoke test."""


# -- names and URIs ---------------------------------------------------------------------------
def isvc_name(model: str) -> str:
    """The InferenceService name of a model: '.' and '_' become '-' (a DNS-1035 label).

    It is also the name the model is served under (``/v1/models/<name>:predict``).
    """
    name = re.sub(r"[._]", "-", model)
    if len(name) > MAX_NAME or not NAME.fullmatch(name):
        raise ParameterError(
            f"The model name {model!r} cannot name a KServe InferenceService: with '.' and '_' "
            f"made '-' ({name!r}) it must be a DNS-1035 label of at most {MAX_NAME} characters "
            "(lowercase letters, digits and '-', starting with a letter and ending with a letter "
            "or digit).", stage="deploy")
    return name


def check_namespace(namespace: Any) -> str:
    """``namespace`` if it can name a Kubernetes namespace (a DNS-1123 label), else why not."""
    if not isinstance(namespace, str) or not NAMESPACE.fullmatch(namespace):
        raise ParameterError(
            "The 'namespace' parameter of deploy must be a Kubernetes namespace: at most 63 "
            "lowercase letters, digits and '-', starting and ending with a letter or digit. "
            f"Got {namespace!r}.", stage="deploy")
    return namespace


def check_options(*, namespace: str, service_account: str = SERVICE_ACCOUNT,
                  image: str | None = None, serving_store: str | None = None) -> None:
    """Refuse, before the store or the cluster is read, what Kubernetes or KServe would refuse."""
    _check_settings(namespace, service_account)
    if image is not None:
        _check_image(image)
    if serving_store is not None:
        check_storage_uri(serving_store, "serving store")


def _check_image(image: Any) -> None:
    if not isinstance(image, str) or not image or any(c.isspace() or ord(c) < 32 for c in image):
        raise ParameterError(f"The 'image' parameter of deploy must be an image reference "
                             f"(registry/name:tag or @sha256:digest, no spaces). Got {image!r}.",
                             stage="deploy")


def _check_settings(namespace: str, service_account: str) -> None:
    check_namespace(namespace)
    if not isinstance(service_account, str) or not SUBDOMAIN.fullmatch(service_account):
        raise ParameterError(
            "The 'service_account' parameter of deploy must be a Kubernetes ServiceAccount name: "
            "lowercase letters, digits, '-' and '.', at most 253 characters. Got "
            f"{service_account!r}.", stage="deploy")


def check_storage_uri(uri: str, what: str = "store") -> str:
    """``uri`` if KServe's storage initializer can read it, else a ParameterError naming why."""
    schemes = ", ".join(s.rstrip(":/") for s in STORAGE_SCHEMES)
    if not uri.startswith(STORAGE_SCHEMES):
        raise ParameterError(
            f"KServe's storage initializer cannot read the {what} {uri!r}: a local folder "
            "is not visible from the cluster. Deploy from a gs:// store, or name the store as the "
            f"cluster sees it ({schemes}).", stage="deploy")
    scheme, _, rest = uri.partition("://")
    bucket = rest.split("/", 1)[0]
    if not bucket or any(c.isspace() or ord(c) < 32 for c in uri):
        raise ParameterError(
            f"The {what} {uri!r} is not a URI KServe can read: it needs a "
            f"{'bucket' if scheme in ('gs', 's3') else 'host or volume'} after {scheme}:// and "
            "no spaces or control characters.", stage="deploy")
    if scheme == "gs" and (not GCS_BUCKET.fullmatch(bucket) or ".." in bucket):
        raise ParameterError(
            f"The {what} {uri!r} names the bucket {bucket!r}, which is not a GCS bucket name "
            "(3-222 lowercase letters, digits, '-', '_' and '.', starting and ending with a "
            "letter or digit).", stage="deploy")
    return uri


def version_folder(store_uri: str, model: str, version: int) -> str:
    """The storageUri of a version: its folder in the store, which KServe downloads whole."""
    check_storage_uri(store_uri)
    return f"{store_uri.rstrip('/')}/registry/{model}/versions/{version}"


def scikit_learn_version() -> str:
    """The scikit-learn of Keel's serving image: Keel's own pin (the image installs the lock)."""
    return importlib.metadata.version("scikit-learn")


# -- manifests --------------------------------------------------------------------------------
def render_isvc(*, model: str, version: int, storage_uri: str, namespace: str,
                runtime: str = RUNTIME, service_account: str = SERVICE_ACCOUNT,
                min_replicas: int = 1, max_replicas: int = 1,
                previous_version: int | None = None,
                deployment_mode: str = "Serverless") -> dict[str, Any]:
    """The InferenceService serving ``version`` of ``model`` from its folder in the store.

    The runtime is explicit (KServe's stock sklearn runtime pins another scikit-learn). In
    RawDeployment mode the predictor rolls out with ``maxUnavailable: 0`` (new pods are ready
    before old ones go); in Serverless mode Knative creates a new revision and moves traffic
    to it once it is ready.
    """
    if deployment_mode not in DEPLOYMENT_MODES:
        raise ParameterError(f"The 'deployment_mode' parameter of deploy must be one of "
                             f"{', '.join(DEPLOYMENT_MODES)}. Got {deployment_mode!r}.",
                             stage="deploy")
    if not 0 <= min_replicas <= max_replicas or max_replicas < 1:
        raise ParameterError(f"Replicas must satisfy 0 <= min_replicas <= max_replicas and "
                             f"max_replicas >= 1. Got {min_replicas} and {max_replicas}.",
                             stage="deploy")
    if min_replicas == 0 and deployment_mode in STANDARD_MODES:
        raise ParameterError("A RawDeployment cannot scale to zero: min_replicas must be at "
                             "least 1.", stage="deploy")
    name = isvc_name(model)
    _check_settings(namespace, service_account)
    check_storage_uri(storage_uri, "storageUri")
    annotations = {MODEL_ANNOTATION: model, VERSION_ANNOTATION: str(version),
                   MODE_ANNOTATION: deployment_mode}
    if previous_version is not None:
        annotations[PREVIOUS_ANNOTATION] = str(previous_version)
    predictor: dict[str, Any] = {
        "serviceAccountName": service_account,
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "model": {
            "modelFormat": {"name": "sklearn", "version": "1"},
            "runtime": runtime,
            "storageUri": storage_uri,
        },
    }
    if deployment_mode in STANDARD_MODES:
        predictor["deploymentStrategy"] = {
            "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    return {
        "apiVersion": ISVC_API,
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": name, **LABELS},
                     "annotations": annotations},
        "spec": {"predictor": predictor},
    }


def render_serving_runtime(image: str, *, namespace: str, name: str = RUNTIME,
                           scikit_learn: str | None = None) -> dict[str, Any]:
    """The ServingRuntime running Keel's model server from ``image``.

    KServe's storage initializer downloads the storageUri (the version folder, manifest
    included) to /mnt/models; the container runs ``keel serve --model-dir /mnt/models --model
    {{.Name}} --host 0.0.0.0 --port 8080``, which checks every file against the manifest's
    sha256 before loading, and serves the KServe V1 and V2 protocols.
    """
    check_namespace(namespace)
    _check_image(image)
    return {
        "apiVersion": RUNTIME_API,
        "kind": "ServingRuntime",
        "metadata": {
            "name": name, "namespace": namespace,
            "labels": {"app.kubernetes.io/name": name, **LABELS},
            "annotations": {IMAGE_ANNOTATION: image,
                            SCIKIT_LEARN_ANNOTATION: scikit_learn or scikit_learn_version()},
        },
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "version": "1", "autoSelect": False}],
            "protocolVersions": ["v1", "v2"],
            "containers": [{
                "name": "kserve-container",
                "image": image,
                "command": ["keel"],
                "args": ["serve", "--model-dir", MODEL_DIR, "--model", "{{.Name}}",
                         "--host", "0.0.0.0", "--port", str(PORT)],
                "ports": [{"containerPort": PORT, "protocol": "TCP"}],
                "securityContext": {
                    "runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False,
                    "privileged": False, "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "resources": {"requests": {"cpu": "1", "memory": "2Gi"},
                              "limits": {"cpu": "1", "memory": "2Gi"}},
                "readinessProbe": {
                    "httpGet": {"path": "/v2/health/ready", "port": PORT},
                    "periodSeconds": 5, "failureThreshold": 3, "timeoutSeconds": 5,
                },
            }],
        },
    }


# -- validation against KServe's CRD schemas --------------------------------------------------
def _closed(node: Any) -> Any:
    """The schema with unknown fields refused wherever the API server would prune them.

    A structural CRD schema silently drops unknown fields (a typo such as ``storageURI`` would
    deploy a model without its storage); offline, Keel refuses them instead.
    """
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    closed = {key: _closed(value) if key != "enum" else value for key, value in node.items()}
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        closed["additionalProperties"] = False
    return closed


@functools.cache
def crd_schema(kind: str) -> dict[str, Any]:
    """KServe's ``openAPIV3Schema`` of ``kind`` (keel/kserve_schemas/README.md says which)."""
    if kind not in SCHEMAS:
        raise ManifestInvalid(f"Keel has no KServe schema for kind {kind!r}; it has "
                              f"{', '.join(SCHEMAS)}.")
    text = resources.files("keel").joinpath("kserve_schemas", SCHEMAS[kind]).read_text()
    schema: dict[str, Any] = _closed(json.loads(text))
    return schema


def _metadata_problem(doc: dict[str, Any]) -> str:
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        return "metadata: must be an object"
    name = metadata.get("name")
    if not isinstance(name, str) or len(name) > 63 or not NAME.fullmatch(name):
        return f"metadata.name: {name!r} is not a DNS-1035 label"
    if not isinstance(metadata.get("namespace"), str) or not NAMESPACE.fullmatch(
            metadata["namespace"]):
        return (f"metadata.namespace: {metadata.get('namespace')!r} is not a namespace name (a "
                "DNS-1123 label of at most 63 characters)")
    for field in ("labels", "annotations"):
        values = metadata.get(field, {})
        if not isinstance(values, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
            return f"metadata.{field}: keys and values must be strings"
    return ""


def check_manifest(doc: dict[str, Any]) -> None:
    """Validate an InferenceService or ServingRuntime against KServe's CRD schema, offline.

    Unknown fields are refused (see :func:`_closed`). :class:`ManifestInvalid` names the first
    bad field's path (``spec.predictor.model.storageURI``) and what is wrong with it.
    """
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - a dependency of Keel
        raise ManifestInvalid("Checking manifests needs the jsonschema package.") from None

    kind = doc.get("kind") if isinstance(doc, dict) else None
    where = f"The {kind} manifest {describe(doc) if isinstance(doc, dict) else ''}".rstrip()
    schema = crd_schema(str(kind))
    if doc.get("apiVersion") != (ISVC_API if kind == "InferenceService" else RUNTIME_API):
        raise ManifestInvalid(f"{where} is not valid against KServe's CRD schema: apiVersion: "
                              f"expected {ISVC_API if kind == 'InferenceService' else RUNTIME_API}"
                              f", got {doc.get('apiVersion')!r}.")
    problem = _metadata_problem(doc)
    if problem:
        raise ManifestInvalid(f"{where} is not valid: {problem}.")
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(doc))
    if not errors:
        return
    error = jsonschema.exceptions.best_match(errors)
    path = [str(part) for part in error.absolute_path]
    message = error.message
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        unknown = sorted(key for key in error.instance if key not in known)
        if unknown:
            path.append(unknown[0])
            message = "unknown field (KServe's schema has no such field here)"
    field = ".".join(path) or "(top level)"
    more = f" ({len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    raise ManifestInvalid(one_line(f"{where} is not valid against KServe's CRD schema: {field}: "
                                   f"{message}{more}.", 600))


def manifests_yaml(docs: list[dict[str, Any]], header: str = "") -> str:
    """YAML documents, in order, each checked against KServe's schema."""
    import yaml

    for doc in docs:
        check_manifest(doc)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + str(yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False))


# -- preflight --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What a deployment will apply, made and checked before the cluster is contacted."""

    model: str
    version: int
    name: str
    namespace: str
    storage_uri: str
    runtime: dict[str, Any]
    settings: dict[str, Any]  # render_isvc's keyword arguments other than version, uri, previous

    def isvc(self, previous_version: int | None) -> dict[str, Any]:
        """The InferenceService of this plan, naming the version it replaces."""
        return render_isvc(model=self.model, version=self.version, storage_uri=self.storage_uri,
                           namespace=self.namespace, previous_version=previous_version,
                           **self.settings)


def plan(store_uri: str, model: str, version: int | str, *, namespace: str, image: str,
         serving_store: str | None = None, service_account: str = SERVICE_ACCOUNT,
         min_replicas: int = 1, max_replicas: int = 1, deployment_mode: str = "Serverless",
         runtime_scikit_learn: str | None = None) -> Plan:
    """Read the version from the store, check it can be served, and render its manifests.

    ``version`` is a number or ``production``. ``serving_store`` is the store's URI as KServe
    sees it (default: ``store_uri``, which must then be ``gs://``). Refuses, naming why: a
    damaged version, more than one model file, a scikit-learn other than the serving image's.
    """
    from keel.registry import Registry
    from keel.storage import open_store

    check_options(namespace=namespace, service_account=service_account, image=image,
                  serving_store=serving_store)  # before the store is read
    isvc_name(model)
    registry = Registry(open_store(store_uri), model)
    number = registry.resolve(version)
    check = registry.verify(number)  # an unknown version: an error listing those that exist
    if check.manifest is None or check.damaged:
        problems = "; ".join(d.problem for d in check.damage)
        raise DeployError(f"Version {number} of {model!r} is damaged and will not be deployed: "
                          f"{problems}")
    manifest = check.manifest
    models = sorted(name for name in manifest.files if name.endswith(MODEL_EXTENSIONS))
    if models != [MODEL_FILE]:
        raise DeployError(
            f"Version {number} of {model!r} must hold exactly one model file, {MODEL_FILE}, for "
            f"the serving runtime to load. Got {', '.join(models) or 'none'}.")
    serving = runtime_scikit_learn or scikit_learn_version()
    trained = manifest.environment.scikit_learn
    if trained != serving:
        raise DeployError(
            f"Version {number} of {model!r} was trained with scikit-learn {trained}, and the "
            f"serving image {image} has scikit-learn {serving}: a pickled scikit-learn model "
            "is only safe to load with the version that saved it. Deploy with a Keel (and image) "
            f"of scikit-learn {trained}, or train a new version with this one.")
    settings = {"service_account": service_account, "min_replicas": min_replicas,
                "max_replicas": max_replicas, "deployment_mode": deployment_mode}
    result = Plan(model=registry.model, version=number, name=isvc_name(model),
                  namespace=namespace,
                  storage_uri=version_folder(serving_store or registry.store.uri, model, number),
                  runtime=render_serving_runtime(image, namespace=namespace, scikit_learn=serving),
                  settings=settings)
    check_manifest(result.runtime)
    check_manifest(result.isvc(None))
    return result


def dry_run_manifests(store_uri: str, model: str, version: int | str = "production", *,
                      namespace: str, image: str, previous_version: int | None = None,
                      **options: Any) -> str:
    """The YAML that ``keel deploy --dry-run`` prints: ServingRuntime, then InferenceService.

    Made by :func:`plan` (the same checks), without contacting a cluster; ``options`` are
    :func:`plan`'s. The previous version is read from the live object at deploy time.
    """
    made = plan(store_uri, model, version, namespace=namespace, image=image, **options)
    header = (f"Keel: version {made.version} of {made.model!r} as KServe InferenceService "
              f"{namespace}/{made.name}\n(keel deploy --dry-run: nothing was applied; "
              "keel.dev/previous-version is set from the live object at deploy time)")
    return manifests_yaml([made.runtime, made.isvc(previous_version)], header)


# -- waiting ----------------------------------------------------------------------------------
def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == kind:
            return condition
    return {}


def load_failure(obj: dict[str, Any]) -> str:
    """KServe's reason when the model failed to load (or the spec is invalid); "" otherwise."""
    status = obj.get("status") or {}
    if status.get("observedGeneration") != (obj.get("metadata") or {}).get("generation"):
        return ""  # the status may be an earlier generation's
    model_status = status.get("modelStatus") or {}
    target = (model_status.get("states") or {}).get("targetModelState")
    transition = model_status.get("transitionStatus")
    if target != "FailedToLoad" and transition not in ("BlockedByFailedLoad", "InvalidSpec"):
        return ""
    info = model_status.get("lastFailureInfo") or {}
    reason = info.get("reason") or transition or target
    message = info.get("message") or "KServe gave no message"
    return f"the model failed to load ({reason}): {message}"


@dataclass(frozen=True)
class Target:
    """What the wait is for: the applied object and whether a new Knative revision must appear."""

    name: str
    namespace: str
    version: int
    generation: int
    knative: bool
    old_revision: str  # latestCreatedRevision before the apply, when a new one must replace it


@dataclass(frozen=True)
class Ready:
    """A version that is serving: its URLs and revision."""

    url: str
    internal_url: str
    revision: str


def _check_ready(client: KubeClient, target: Target) -> tuple[Ready | None, str]:
    """(Ready, "") once serving; else (None, what is still awaited). Raises on a failure."""
    obj = client.get(ISVC_API, "InferenceService", target.namespace, target.name)
    if obj is None:
        raise DeployFailed(f"InferenceService {target.namespace}/{target.name} was deleted "
                           "while Keel waited for it")
    metadata, status = obj.get("metadata") or {}, obj.get("status") or {}
    serving = (metadata.get("annotations") or {}).get(VERSION_ANNOTATION)
    if serving != str(target.version):
        raise DeployFailed(f"InferenceService {target.namespace}/{target.name} was changed to "
                           f"version {serving} by someone else while Keel waited for version "
                           f"{target.version}")
    failure = load_failure(obj)
    if failure:
        raise DeployFailed(failure)
    generation = metadata.get("generation")
    if not isinstance(generation, int) or generation < target.generation or \
            status.get("observedGeneration") != generation:
        return None, (f"KServe has not reconciled generation {generation} yet (observed "
                      f"{status.get('observedGeneration')})")
    ready = _condition(obj, "Ready")
    if ready.get("status") != "True":
        return None, (f"Ready is {ready.get('status', 'absent')}"
                      + (f" ({ready.get('reason')}: {ready.get('message', '')})"
                         if ready.get("reason") else ""))
    url = str(status.get("url") or "")
    internal = str((status.get("address") or {}).get("url") or "")
    predictor = (status.get("components") or {}).get("predictor") or {}
    if target.knative:
        created, latest = predictor.get("latestCreatedRevision"), predictor.get("latestReadyRevision")
        if not created or created != latest:
            return None, f"revision {created} is not ready yet (ready: {latest})"
        if target.old_revision and created == target.old_revision:
            return None, f"no new revision yet (latest is still {created})"
        return Ready(url, internal, str(created)), ""
    deployment = client.get(DEPLOYMENT_API, "Deployment", target.namespace,
                            f"{target.name}-predictor")
    if deployment is None:
        return None, f"Deployment {target.name}-predictor does not exist yet"
    return _rolled_out(deployment, url, internal)


def _rolled_out(deployment: dict[str, Any], url: str, internal: str) -> tuple[Ready | None, str]:
    metadata, status = deployment.get("metadata") or {}, deployment.get("status") or {}
    name = metadata.get("name")
    progressing = _condition(deployment, "Progressing")
    if progressing.get("status") == "False" and progressing.get("reason") == \
            "ProgressDeadlineExceeded":
        raise DeployFailed(f"Deployment {name} did not roll out: {progressing.get('message')}")
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    if status.get("observedGeneration") != metadata.get("generation"):
        return None, f"Deployment {name}'s controller has not seen its new spec yet"
    updated, replicas = status.get("updatedReplicas", 0), status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated != wanted or replicas != wanted or available < wanted:
        return None, (f"Deployment {name} is rolling out: {updated} updated, {available} "
                      f"available, {replicas} in all, of {wanted}")
    revision = (metadata.get("annotations") or {}).get("deployment.kubernetes.io/revision", "")
    return Ready(url, internal, f"{name}-{revision}" if revision else str(name)), ""


def wait_ready(client: KubeClient, target: Target, *, timeout: float, poll: float,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> Ready:
    """Poll until ``target`` serves; :class:`DeployFailed` on a load failure or the timeout."""
    deadline = clock() + timeout
    while True:
        ready, waiting = _check_ready(client, target)
        if ready is not None:
            return ready
        if clock() >= deadline:
            raise DeployFailed(f"version {target.version} was not ready after {timeout:g} s: "
                               f"{waiting}")
        sleep(poll)


# -- deploy -----------------------------------------------------------------------------------
def _version_of(obj: dict[str, Any], key: str) -> int | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(key)
    if value is None or value == "":
        return None
    if not str(value).isdigit():
        raise DeployError(f"{describe(obj)} has annotation {key}={value!r}, which is not a "
                          "version number; fix or remove it before deploying.")
    return int(value)


def _reapplicable(obj: dict[str, Any]) -> dict[str, Any]:
    """A live object as an apply configuration: identity, labels, annotations and spec."""
    metadata = obj.get("metadata") or {}
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items()
                   if k != "kubectl.kubernetes.io/last-applied-configuration"}
    kept = {"name": metadata["name"], "namespace": metadata["namespace"]}
    if metadata.get("labels"):
        kept["labels"] = metadata["labels"]
    if annotations:
        kept["annotations"] = annotations
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": kept,
            "spec": obj.get("spec") or {}}


def _previous_isvc(made: Plan, live: dict[str, Any], previous: int) -> dict[str, Any]:
    """The InferenceService for the version ``live`` served, with the settings it had."""
    predictor = (live.get("spec") or {}).get("predictor") or {}
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    model_spec = predictor.get("model") or {}
    settings = {**made.settings}
    for key, field in (("service_account", "serviceAccountName"),
                       ("min_replicas", "minReplicas"), ("max_replicas", "maxReplicas")):
        if field in predictor:
            settings[key] = predictor[field]
    if annotations.get(MODE_ANNOTATION) in DEPLOYMENT_MODES:
        settings["deployment_mode"] = annotations[MODE_ANNOTATION]
    storage = model_spec.get("storageUri") or made.storage_uri.rsplit("/", 1)[0] + f"/{previous}"
    return render_isvc(model=made.model, version=previous, storage_uri=storage,
                       namespace=made.namespace, runtime=model_spec.get("runtime", RUNTIME),
                       previous_version=_version_of(live, PREVIOUS_ANNOTATION), **settings)


def deploy(store_uri: str, model: str, version: int | str, *, namespace: str, image: str,
           smoke: Callable[[str], SmokeTest], smoke_test: SmokeTest, client: KubeClient,
           timeout: float = 600.0, poll: float = 2.0, serving_store: str | None = None,
           service_account: str = SERVICE_ACCOUNT, min_replicas: int = 1, max_replicas: int = 1,
           deployment_mode: str = "Serverless", runtime_scikit_learn: str | None = None,
           log: Callable[[str], None] | None = None,
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> Deployment:
    """Deploy ``version`` of ``model`` to KServe in ``namespace``; roll back when it fails.

    ``smoke(url)`` smoke-tests the served endpoint (the version's golden rows, through
    :func:`keel.smoke_test.endpoint_smoke_test` with the model name :func:`isvc_name`);
    ``smoke_test`` is the loopback smoke test already run, recorded in the result (a failed one
    stops here, before the cluster is contacted). Preflight failures raise :class:`DeployError`
    (nothing changed); failures after the apply re-apply the previous version and return
    ``deployed=False``: the caller fails the stage.
    """
    say = log or (lambda line: None)
    made = plan(store_uri, model, version, namespace=namespace, image=image,
                serving_store=serving_store, service_account=service_account,
                min_replicas=min_replicas, max_replicas=max_replicas,
                deployment_mode=deployment_mode, runtime_scikit_learn=runtime_scikit_learn)
    record: dict[str, Any] = {"model": made.model, "version": made.version, "smoke_test": smoke_test,
              "enabled": True, "namespace": namespace, "name": made.name}
    if not smoke_test.passed:
        return Deployment(**record, deployed=False, reason=(
            f"the loopback smoke test failed ({smoke_test.reason}); nothing was applied"))
    live = client.get(ISVC_API, "InferenceService", namespace, made.name)
    previous = None
    if live is not None:
        owner = ((live.get("metadata") or {}).get("annotations") or {}).get(MODEL_ANNOTATION)
        if owner != made.model:
            raise DeployError(
                f"InferenceService {namespace}/{made.name} exists and "
                + (f"serves model {owner!r}" if owner else "was not made by Keel")
                + f"; Keel will not replace it with {made.model!r}. Delete it, or deploy to "
                "another namespace.")
        previous = _version_of(live, VERSION_ANNOTATION)
    record["previous_version"] = previous
    isvc = made.isvc(previous)
    live_runtime = client.get(RUNTIME_API, "ServingRuntime", namespace, RUNTIME)
    for doc in (made.runtime, isvc):  # the API server's validation and KServe's webhooks
        try:
            client.apply(doc, dry_run=True)
        except KubeError as exc:
            raise DeployError(f"Preflight: the dry run of {describe(doc)} was refused, so "
                              f"nothing was applied: {exc.args[0]}") from None
    live_model = ((live or {}).get("spec") or {}).get("predictor", {}).get("model") or {}
    new_folder = live is None or live_model.get("storageUri") != made.storage_uri
    old_revision = str((((live or {}).get("status") or {}).get("components") or {})
                       .get("predictor", {}).get("latestCreatedRevision") or "")
    say(f"applying {describe(made.runtime)} and {describe(isvc)} (version {made.version}, "
        f"previous {previous})")
    try:
        client.apply(made.runtime)
        applied = client.apply(isvc)
        target = Target(made.name, namespace, made.version,
                        int((applied.get("metadata") or {}).get("generation") or 0),
                        deployment_mode in KNATIVE_MODES, old_revision if new_folder else "")
        ready = wait_ready(client, target, timeout=timeout, poll=poll, clock=clock, sleep=sleep)
        url = _endpoint(client, ready)
        say(f"version {made.version} is ready at {url} (revision {ready.revision}); smoke test")
        endpoint = smoke(url)
        if not endpoint.passed:
            failed = DeployFailed(f"the endpoint smoke test failed: {endpoint.reason}")
            return _roll_back(client, made, live, live_runtime, previous, record, failed,
                              timeout=timeout, poll=poll, clock=clock, sleep=sleep, say=say,
                              endpoint=endpoint)
    except KeelError as exc:
        return _roll_back(client, made, live, live_runtime, previous, record, exc,
                          timeout=timeout, poll=poll, clock=clock, sleep=sleep, say=say)
    return Deployment(**record, deployed=True, url=url, revision=ready.revision,
                      endpoint_smoke_test=endpoint)


def _endpoint(client: KubeClient, ready: Ready) -> str:
    """The URL to smoke-test: in a pod, the cluster-internal address first; else the public URL."""
    first, second = ((ready.internal_url, ready.url) if client.config.in_cluster
                     else (ready.url, ready.internal_url))
    url = first or second
    if not url:
        raise DeployFailed("KServe reports the InferenceService ready but gives no URL")
    return url


def _roll_back(client: KubeClient, made: Plan, live: dict[str, Any] | None,
               live_runtime: dict[str, Any] | None, previous: int | None,
               record: dict[str, Any], error: KeelError, *, timeout: float, poll: float,
               clock: Callable[[], float], sleep: Callable[[float], None],
               say: Callable[[str], None], endpoint: SmokeTest | None = None) -> Deployment:
    why = str(error.args[0])
    what = f"InferenceService {made.namespace}/{made.name}"
    if live is None or previous is None:
        reason = (f"version {made.version} failed: {why}. This was the first deployment of "
                  f"{what}, so there is no previous version to go back to: nothing was deleted "
                  "and it stays as applied (not serving). Fix the cause and deploy again, or "
                  f"remove it with `kubectl delete inferenceservice {made.name} -n "
                  f"{made.namespace}`.")
        return Deployment(**record, deployed=False, rolled_back=False, reason=reason,
                          endpoint_smoke_test=endpoint)
    say(f"version {made.version} failed ({why}); re-applying version {previous}")
    reapplied = False
    try:
        if live_runtime is not None:
            client.apply(_reapplicable(live_runtime))
        restored = client.apply(_previous_isvc(made, live, previous))
        reapplied = True
        knative = ((restored.get("metadata") or {}).get("annotations") or {}).get(
            MODE_ANNOTATION) in KNATIVE_MODES
        target = Target(made.name, made.namespace, previous,
                        int((restored.get("metadata") or {}).get("generation") or 0), knative,
                        "")
        wait_ready(client, target, timeout=timeout, poll=poll, clock=clock, sleep=sleep)
        after = f"version {previous} was re-applied and is serving again"
    except KeelError as exc:
        after = (f"re-applying version {previous} failed too: {exc.args[0]}; check "
                 f"`kubectl describe inferenceservice {made.name} -n {made.namespace}`")
    return Deployment(**record, deployed=False, rolled_back=reapplied,
                      reason=f"version {made.version} failed: {why}; {after}",
                      endpoint_smoke_test=endpoint)


def read_golden_rows(store: str, model: str, version: int) -> GoldenRows:
    """The golden rows published with a version (sha256 checked), for its smoke tests."""
    import tempfile
    from pathlib import Path

    from keel.errors import RegistryError
    from keel.publish import GOLDEN_ROWS_FILE
    from keel.registry import Registry
    from keel.storage import open_store

    registry = Registry(open_store(store), model)
    manifest = registry.manifest(version)
    if GOLDEN_ROWS_FILE not in manifest.files:
        raise RegistryError(f"Version {version} of {model!r} has no {GOLDEN_ROWS_FILE} (it was "
                            "published before Keel kept golden rows), so its endpoint cannot be "
                            "smoke-tested; deploy a newer version.", stage="deploy")
    with tempfile.TemporaryDirectory() as folder:
        path = registry.download_verified(version, GOLDEN_ROWS_FILE,
                                          Path(folder) / GOLDEN_ROWS_FILE, manifest)
        return GoldenRows.read(path, stage="deploy")


def deploy_stored(store: str, model: str, version: int, *, client: KubeClient,
                  golden: GoldenRows | None = None, loopback: SmokeTest | None = None,
                  log: Callable[[str], None] | None = None, **options: Any) -> Deployment:
    """Smoke-test a stored version on loopback, then :func:`deploy` it with its golden rows.

    What ``keel deploy``, ``keel models rollback --deploy`` and the deploy stage all do (the
    stage passes the ``golden`` rows and ``loopback`` smoke test it already has); ``options``
    are :func:`deploy`'s (namespace, image, timeout, replicas...).
    """
    from keel.smoke_test import endpoint_smoke_test, smoke_test

    check_options(namespace=options.get("namespace", ""),
                  service_account=options.get("service_account", SERVICE_ACCOUNT),
                  image=options.get("image"), serving_store=options.get("serving_store"))
    isvc_name(model)  # before the loopback smoke test: refusals cost nothing
    golden = golden or read_golden_rows(store, model, version)
    loopback = loopback or smoke_test(store, model, version, golden)
    served_as = isvc_name(model)
    return deploy(store, model, version, client=client, smoke_test=loopback, log=log,
                  smoke=lambda url: endpoint_smoke_test(url, served_as, golden), **options)


# -- the stage ---------------------------------------------------------------------------------
@reports_errors
def run(publication_json: str, decision_path: str, deployment_out: str, *, namespace: str = "",
        service_account: str = SERVICE_ACCOUNT, replicas: int = 1,
        mode: str = "Serverless", timeout: int = 600) -> Deployment:
    """The deploy stage: the published version's smoke test, then KServe when asked.

    The version is loaded from the store in Keel's model server on loopback and asked its golden
    rows; a failure is recorded (promote then refuses the version), not an error. With a
    ``namespace``, a version that passed the gate and the smoke test is deployed to KServe; a
    failed deployment re-applies the previous version and fails the stage, so production never
    moves to a version that does not serve.
    """
    from keel.contracts import Decision, Publication
    from keel.settings import checked
    from keel.smoke_test import smoke_test

    published = Publication.from_json(publication_json, origin="the publish output",
                                      stage="deploy")
    decision = Decision.read(decision_path, stage="deploy")
    namespace = checked("deploy_namespace", namespace)
    service_account = checked("serving_account", service_account)
    replicas = checked("serving_replicas", replicas)
    mode = checked("deployment_mode", mode)
    timeout = checked("deploy_timeout", timeout)
    store, model, version = published.store, published.model, published.version
    golden = read_golden_rows(store, model, version)
    loopback = smoke_test(store, model, version, golden)
    record = Deployment(model=model, version=version, smoke_test=loopback,
                        enabled=bool(namespace), deployed=False, namespace=namespace)
    if not namespace:
        record = record.model_copy(update={"reason": "no deploy_namespace given"})
    elif not loopback.passed:
        record = record.model_copy(update={"reason": "the loopback smoke test failed"})
    elif not decision.passed:
        record = record.model_copy(update={"reason": "rejected by the evaluation gate"})
    else:
        from keel.images import image
        from keel.kube import load_config

        record = deploy_stored(store, model, version, client=KubeClient(load_config()),
                               golden=golden, loopback=loopback, namespace=namespace,
                               image=image("serve"), timeout=timeout,
                               service_account=service_account, min_replicas=replicas,
                               max_replicas=max(replicas, 1), deployment_mode=mode, log=print)
    record.write(deployment_out)
    if record.enabled and decision.passed and loopback.passed and not record.deployed:
        rolled = (f"; version {record.previous_version} was re-applied" if record.rolled_back
                  else "")
        raise DeployFailed(f"Version {version} of {model!r} was not deployed to "
                           f"{namespace}/{record.name}: {record.reason}{rolled}.")
    return record
