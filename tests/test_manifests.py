"""The Kubernetes manifests: schema-valid (strict, offline schemas) and wired as the docs say.

Each resource file is validated as written; when kubectl is installed, the kustomizations are
also rendered (``kubectl kustomize``, offline) and what they render is validated too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
BASE = MANIFESTS / "base"
KUSTOMIZATIONS = sorted(MANIFESTS.rglob("kustomization.yaml"))
RESOURCE_FILES = sorted(
    path for path in MANIFESTS.rglob("*.yaml") if path.name != "kustomization.yaml"
)
KUBERNETES_VERSION = "1.34"  # a recent release; kubernetes-validate bundles the schemas
SERVICE_ACCOUNT = "keel-pipeline-runner"
NAMESPACE = "kubeflow"
WORKLOAD_IDENTITY = "iam.gke.io/gcp-service-account"
PLACEHOLDER = "keel-runner@PROJECT_ID.iam.gserviceaccount.com"
KUBECTL = shutil.which("kubectl")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def check(doc: dict[str, Any], where: str) -> None:
    """validate(), failing with one readable line instead of the whole schema."""
    try:
        validate(doc)
        return
    except kubernetes_validate.ValidationError as error:
        field = ".".join(str(part) for part in error.path) or "(top level)"
        problem = f"{field}: {error.message}"
    pytest.fail(f"{where}: {doc.get('kind')} is not valid Kubernetes {KUBERNETES_VERSION}: {problem}",
                pytrace=False)


def render(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [doc["kind"] for doc in docs]
    assert len(kinds) == len(set(kinds)), kinds
    return {doc["kind"]: doc for doc in docs}


needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) is not installed")


def test_there_are_manifests_to_check():
    assert {path.name for path in RESOURCE_FILES} >= {"serviceaccount.yaml", "rolebinding.yaml"}
    assert BASE / "kustomization.yaml" in KUSTOMIZATIONS


@pytest.mark.parametrize("path", RESOURCE_FILES, ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_resource_files_validate_strictly(path):
    docs = documents(path)
    assert docs, f"{path} holds no resource"
    for doc in docs:
        check(doc, str(path.relative_to(REPO)))


def test_strict_validation_rejects_unknown_and_mistyped_fields():
    good = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT}}
    validate(good)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate({**good, "metadata": {"name": SERVICE_ACCOUNT, "annotation": {}}})
    with pytest.raises(kubernetes_validate.ValidationError):
        validate({**good, "automountServiceAccountToken": "yes"})


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=lambda p: str(p.parent.relative_to(MANIFESTS)))
def test_kustomizations_refer_to_existing_paths(path):
    kustomization = documents(path)[0]
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert kustomization.get("resources"), f"{path} lists no resources"
    for resource in kustomization["resources"]:
        assert (path.parent / resource).exists(), f"{path} lists {resource}, which does not exist"


def test_base_lists_every_resource_file_and_sets_the_namespace():
    kustomization = documents(BASE / "kustomization.yaml")[0]
    assert kustomization["namespace"] == NAMESPACE
    in_base = {path.name for path in BASE.glob("*.yaml") if path.name != "kustomization.yaml"}
    assert set(kustomization["resources"]) == in_base


def test_service_account_carries_the_workload_identity_placeholder():
    account = documents(BASE / "serviceaccount.yaml")[0]
    assert account["kind"] == "ServiceAccount"
    assert account["metadata"]["name"] == SERVICE_ACCOUNT
    assert account["metadata"]["annotations"] == {WORKLOAD_IDENTITY: PLACEHOLDER}


def test_role_binding_grants_the_kfp_runner_role_to_the_service_account():
    binding = documents(BASE / "rolebinding.yaml")[0]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pipeline-runner",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT}]


@needs_kubectl
@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=lambda p: str(p.parent.relative_to(MANIFESTS)))
def test_rendered_kustomizations_validate_strictly(path):
    docs = render(path.parent)
    assert {doc["kind"] for doc in docs} == {"ServiceAccount", "RoleBinding"}
    for doc in docs:
        check(doc, f"kubectl kustomize {path.parent.relative_to(REPO)}")


@needs_kubectl
def test_base_renders_into_the_kubeflow_namespace():
    resources = by_kind(render(BASE))
    for doc in resources.values():
        assert doc["metadata"]["namespace"] == NAMESPACE
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "keel"
    subject = resources["RoleBinding"]["subjects"][0]
    assert subject == {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}


@needs_kubectl
def test_example_overlay_replaces_the_placeholder():
    resources = by_kind(render(MANIFESTS / "overlays" / "example"))
    annotation = resources["ServiceAccount"]["metadata"]["annotations"][WORKLOAD_IDENTITY]
    assert "PROJECT_ID" not in annotation
    account = r"[a-z][-a-z0-9]{4,28}[a-z0-9]"
    assert re.fullmatch(rf"{account}@{account}\.iam\.gserviceaccount\.com", annotation), annotation


@needs_kubectl
def test_an_overlay_namespace_moves_the_binding_subject_too(tmp_path):
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": "team-a", "resources": [os.path.relpath(BASE, overlay)],
    }))
    resources = by_kind(render(overlay))
    assert resources["ServiceAccount"]["metadata"]["namespace"] == "team-a"
    assert resources["RoleBinding"]["subjects"][0]["namespace"] == "team-a"
