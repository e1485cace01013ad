"""A small Kubernetes API client over ``requests``: server-side apply, get, and nothing else.

Keel needs four calls from the API (apply, dry-run apply, get, and reading a Deployment's
rollout), so it speaks HTTP itself instead of carrying a generated client. Every write is a
server-side apply (``PATCH`` with ``Content-Type: application/apply-patch+yaml``, a field manager
and ``force=true``), never a merge patch: a field Keel stops setting is removed from the object,
and another manager's fields are left alone.

Configuration comes from the pod's service account when running in a cluster
(``KUBERNETES_SERVICE_HOST``, the token and CA under
``/var/run/secrets/kubernetes.io/serviceaccount``), else from a kubeconfig (``KUBECONFIG`` or
``~/.kube/config``), loaded by the ``kubernetes`` package so that exec credential plugins
(``gke-gcloud-auth-plugin``), embedded certificates and tokens all work.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from keel.errors import KeelError

FIELD_MANAGER = "keel-deploy"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
REQUEST_TIMEOUT = 30.0  # seconds for one API call

#: The resources Keel reads or writes: kind -> plural (the URL's resource name).
PLURALS = {
    "InferenceService": "inferenceservices",
    "ServingRuntime": "servingruntimes",
    "Deployment": "deployments",
}


class KubeError(KeelError):
    """The Kubernetes API refused a request, could not be reached, or is not configured."""

    stage = "deploy"

    def __init__(self, message: str, *, status: int | None = None, reason: str = ""):
        super().__init__(message)
        self.status = status
        self.reason = reason  # the API's Status reason: NotFound, Conflict, Invalid, Forbidden...


@dataclass(frozen=True)
class KubeConfig:
    """Where the API server is and how to authenticate to it.

    ``token_file`` is re-read on every request (projected service-account tokens rotate).
    ``verify`` is the CA bundle to check the server against, or False
    (``insecure-skip-tls-verify``), or True (the system's CAs).
    """

    server: str
    token: str = ""
    token_file: str = ""
    verify: str | bool = True
    cert: tuple[str, str] | None = None  # client certificate and key files
    namespace: str = ""  # the context's (or the pod's) namespace, when known
    in_cluster: bool = False
    source: str = ""  # where it came from, for messages

    def bearer(self) -> str:
        """The bearer token to send, or "" for none (client-certificate authentication)."""
        if self.token_file:
            try:
                return Path(self.token_file).read_text().strip()
            except OSError as exc:
                raise KubeError(f"Cannot read the service account token {self.token_file}: "
                                f"{exc.strerror}.") from None
        return self.token


def in_cluster_config(directory: str | os.PathLike[str] = SERVICE_ACCOUNT_DIR,
                      environ: dict[str, str] | None = None) -> KubeConfig | None:
    """The pod's service account, or None when not running in a cluster."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    folder = Path(directory)
    if not host or not port or not (folder / "token").is_file():
        return None
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    namespace_file = folder / "namespace"
    ca = folder / "ca.crt"
    return KubeConfig(
        server=f"https://{host}:{port}", token_file=str(folder / "token"),
        verify=str(ca) if ca.is_file() else True,
        namespace=namespace_file.read_text().strip() if namespace_file.is_file() else "",
        in_cluster=True, source=f"the pod's service account ({folder})")


def kubeconfig(path: str | None = None, context: str | None = None) -> KubeConfig:
    """The configuration of a kubeconfig file's current context (or ``context``).

    ``path`` defaults to ``KUBECONFIG`` (its first file), else ``~/.kube/config``.
    """
    from kubernetes import config as kube_config  # type: ignore[import-untyped]
    from kubernetes.client import Configuration  # type: ignore[import-untyped]

    if path is None:
        listed = os.environ.get("KUBECONFIG", "")
        path = listed.split(os.pathsep)[0] if listed else str(Path("~/.kube/config").expanduser())
    if not Path(path).is_file():
        raise KubeError(f"No kubeconfig at {path}: set KUBECONFIG, or run where "
                        "~/.kube/config reaches the cluster (or in a pod of the cluster).")
    configuration = Configuration()
    try:
        kube_config.load_kube_config(config_file=path, context=context,
                                     client_configuration=configuration)
        _, active = kube_config.list_kube_config_contexts(config_file=path)
    except (kube_config.ConfigException, ValueError, KeyError, OSError) as exc:
        raise KubeError(f"The kubeconfig {path} cannot be used: {exc}") from None
    if context is not None:
        contexts, _ = kube_config.list_kube_config_contexts(config_file=path)
        active = next((c for c in contexts if c.get("name") == context), active)
    authorization = (configuration.api_key or {}).get("authorization", "")
    token = authorization.removeprefix("Bearer ").strip() if authorization else ""
    verify: str | bool = bool(configuration.verify_ssl)
    if verify and configuration.ssl_ca_cert:
        verify = str(configuration.ssl_ca_cert)
    cert = ((str(configuration.cert_file), str(configuration.key_file))
            if configuration.cert_file and configuration.key_file else None)
    namespace = str(((active or {}).get("context") or {}).get("namespace") or "")
    return KubeConfig(server=str(configuration.host).rstrip("/"), token=token, verify=verify,
                      cert=cert, namespace=namespace,
                      source=f"kubeconfig {path} (context {(active or {}).get('name', '?')})")


def load_config(kubeconfig_path: str | None = None, context: str | None = None) -> KubeConfig:
    """In a pod, its service account (unless a kubeconfig is named); elsewhere, the kubeconfig."""
    if kubeconfig_path is None and context is None:
        found = in_cluster_config()
        if found is not None:
            return found
    return kubeconfig(kubeconfig_path, context)


def api_path(api_version: str, kind: str, namespace: str, name: str = "") -> str:
    """The URL path of a namespaced object (or of its collection, without ``name``)."""
    plural = PLURALS.get(kind)
    if plural is None:
        raise KubeError(f"Keel does not know the resource of kind {kind!r}; it knows "
                        f"{', '.join(PLURALS)}.")
    root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{root}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def describe(doc: dict[str, Any]) -> str:
    """``Kind namespace/name``, for messages."""
    metadata = doc.get("metadata") or {}
    return f"{doc.get('kind')} {metadata.get('namespace', '')}/{metadata.get('name', '')}"


class KubeClient:
    """The calls Keel makes to the Kubernetes API, with errors that name the object and status."""

    def __init__(self, config: KubeConfig, *, field_manager: str = FIELD_MANAGER,
                 timeout: float = REQUEST_TIMEOUT, session: requests.Session | None = None):
        self.config = config
        self.field_manager = field_manager
        self.timeout = timeout
        self.session = session or requests.Session()

    def _request(self, method: str, path: str, what: str, *, params: dict[str, str] | None = None,
                 body: bytes | None = None, content_type: str = "") -> requests.Response:
        headers = {"Accept": "application/json"}
        token = self.config.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        try:
            return self.session.request(
                method, self.config.server + path, params=params, data=body, headers=headers,
                verify=self.config.verify, cert=self.config.cert, timeout=self.timeout)
        except requests.RequestException as exc:
            raise KubeError(f"The Kubernetes API at {self.config.server} could not be reached "
                            f"to {what}: {type(exc).__name__}: {exc}") from None

    def _error(self, response: requests.Response, what: str) -> KubeError:
        message, reason = response.text[:300], ""
        try:
            status = response.json()
            if isinstance(status, dict):
                message = str(status.get("message") or message)
                reason = str(status.get("reason") or "")
        except ValueError:
            pass
        hint = ""
        if response.status_code in (401, 403):
            hint = (f" The identity from {self.config.source} needs the Role in "
                    "manifests/deploy/ (see manifests/README.md).")
        elif response.status_code == 404 and "the server could not find the requested resource" in \
                message:
            hint = " Is KServe installed in the cluster (its CRDs)?"
        return KubeError(f"The Kubernetes API answered HTTP {response.status_code} "
                         f"{reason or response.reason} to {what}: {message}.{hint}",
                         status=response.status_code, reason=reason)

    def apply(self, doc: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply ``doc``; the object as the API server stored (or would store) it.

        JSON is YAML, so the body is the document as JSON with the apply-patch content type.
        """
        metadata = doc.get("metadata") or {}
        path = api_path(doc["apiVersion"], doc["kind"], metadata["namespace"], metadata["name"])
        params = {"fieldManager": self.field_manager, "force": "true"}
        if dry_run:
            params["dryRun"] = "All"
        what = f"{'dry-run ' if dry_run else ''}apply {describe(doc)}"
        response = self._request("PATCH", path, what, params=params,
                                 body=json.dumps(doc).encode(), content_type=APPLY_CONTENT_TYPE)
        if response.status_code not in (200, 201):
            raise self._error(response, what)
        result: dict[str, Any] = response.json()
        return result

    def get(self, api_version: str, kind: str, namespace: str, name: str
            ) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        what = f"get {kind} {namespace}/{name}"
        response = self._request("GET", api_path(api_version, kind, namespace, name), what)
        if response.status_code == 404:
            # The object is absent when the Status names it; a 404 without details.name is a
            # resource the server does not have (KServe not installed): an error.
            try:
                details = response.json().get("details") or {}
            except (ValueError, AttributeError):
                details = {}
            if details.get("name") == name:
                return None
        if response.status_code != 200:
            raise self._error(response, what)
        result: dict[str, Any] = response.json()
        return result
