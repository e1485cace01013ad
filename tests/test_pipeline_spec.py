"""The compiled pipeline spec: fresh, loadable, one pinned image per stage, the intended DAG.

These read ``pipelines/compiled/training.yaml`` (what users upload) and compare it with what the
code compiles to, so a change to a component or the pipeline that was not recompiled fails here.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import components

import keel
from keel import images
from keel.pipelines.training import training_pipeline
from keel.stages import STAGE_NAMES, STAGES

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "pipelines" / "compiled" / "training.yaml"
REQUIRED_INPUTS = {"source", "target", "store"}

# task -> the tasks whose outputs it reads. evaluate and publish also read validate's schema
# (and publish preprocess's feature spec), so those are edges too. deploy reads what publish
# wrote and the decision; promote reads those and what deploy found.
EXPECTED_UPSTREAM = {
    "ingest": set(),
    "validate": {"ingest"},
    "preprocess": {"validate"},
    "train": {"preprocess", "for-loop-1"},  # for-loop-1: the search's ParallelFor of tune
    "evaluate": {"train", "preprocess", "validate"},
    "publish": {"evaluate", "train", "ingest", "preprocess", "validate"},
    "deploy": {"publish", "evaluate"},
    "promote": {"publish", "evaluate", "deploy"},
}

# (task, input) -> (producer task, producer output): the artifacts that carry the lineage.
EXPECTED_WIRING = {
    ("validate", "snapshot"): ("ingest", "snapshot"),
    ("preprocess", "dataset"): ("validate", "dataset"),
    ("preprocess", "schema"): ("validate", "schema"),
    ("train", "train"): ("preprocess", "train"),
    ("train", "feature_spec"): ("preprocess", "feature_spec"),
    ("train", "trials"): ("for-loop-1", "pipelinechannel--tune-Output"),
    ("evaluate", "model"): ("train", "model"),
    ("evaluate", "test"): ("preprocess", "test"),
    ("evaluate", "feature_spec"): ("preprocess", "feature_spec"),
    ("evaluate", "schema"): ("validate", "schema"),
    ("publish", "model"): ("train", "model"),
    ("publish", "snapshot"): ("ingest", "snapshot"),
    ("publish", "record"): ("train", "record"),
    ("publish", "split"): ("preprocess", "split"),
    ("publish", "report"): ("evaluate", "report"),
    ("publish", "decision"): ("evaluate", "decision"),
    ("publish", "statistics"): ("validate", "statistics"),
    ("publish", "checks"): ("validate", "checks"),
    ("publish", "validation_report"): ("validate", "report_html"),
    ("publish", "ingest_info"): ("ingest", "Output"),
    ("deploy", "publication"): ("publish", "Output"),
    ("deploy", "decision"): ("evaluate", "decision"),
    ("promote", "publication"): ("publish", "Output"),
    ("promote", "decision"): ("evaluate", "decision"),
    ("promote", "deployment"): ("deploy", "deployment"),
}


def compile_in_subprocess(path: Path) -> None:
    """Compile in a fresh interpreter: image names are read when the components are imported,
    so only a new process sees the current KEEL_IMAGE_REGISTRY."""
    code = "import sys; from keel.pipelines import training; training.compile_pipeline(sys.argv[1])"
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=REPO, env=dict(os.environ),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"Compiling the pipeline failed:\n{result.stderr}"


def documents(path: Path) -> list[dict[str, Any]]:
    """The compiled file's documents: the pipeline spec, then the Kubernetes platform spec."""
    return list(yaml.safe_load_all(path.read_text()))


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return documents(COMMITTED)[0]


@pytest.fixture(scope="module")
def platform() -> dict[str, Any]:
    return documents(COMMITTED)[1]


def tasks(spec: dict[str, Any]) -> dict[str, Any]:
    """Every task of the pipeline, those inside the search's ParallelFor included."""
    found = dict(spec["root"]["dag"]["tasks"])
    for task in spec["root"]["dag"]["tasks"].values():
        inner = spec["components"][task["componentRef"]["name"]].get("dag")
        if inner:
            found.update(inner["tasks"])
    return found


def stage_tasks(spec: dict[str, Any]) -> set[str]:
    return {name for name in tasks(spec) if not name.startswith("for-loop")}


def container_of(spec: dict[str, Any], task: str) -> dict[str, Any]:
    component = spec["components"][tasks(spec)[task]["componentRef"]["name"]]
    return spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]


def test_committed_spec_is_what_the_code_compiles_to(tmp_path, monkeypatch):
    monkeypatch.delenv("KEEL_IMAGE_REGISTRY", raising=False)
    fresh = tmp_path / "training.yaml"
    compile_in_subprocess(fresh)
    assert fresh.read_text() == COMMITTED.read_text(), (
        f"{COMMITTED.relative_to(REPO)} is stale: it differs from what keel.pipelines.training "
        "compiles to. Run `make compile` (with KEEL_IMAGE_REGISTRY unset) and commit the result."
    )


def test_committed_spec_loads_as_a_component():
    component = components.load_component_from_file(str(COMMITTED))
    assert component.name == "keel-training"
    assert set(component.component_spec.inputs) == set(
        inspect.signature(training_pipeline.pipeline_func).parameters
    )


def test_the_dag_has_exactly_the_stages_of_the_stage_table(spec):
    assert stage_tasks(spec) == set(STAGE_NAMES) == set(EXPECTED_UPSTREAM) - {"for-loop-1"} \
        | {"tune"}
    assert len(STAGE_NAMES) == 9


def test_the_search_fans_out_over_preprocess_plan_and_never_sees_the_test_rows(spec):
    from keel.pipelines.training import SEARCH_PARALLELISM

    loop = spec["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--preprocess-Output"
    assert loop["iteratorPolicy"]["parallelismLimit"] == SEARCH_PARALLELISM
    # the trials get the training rows and the feature spec, never the test split
    given = {ref["taskOutputArtifact"]["outputArtifactKey"]
             for ref in loop["inputs"]["artifacts"].values()}
    assert given == {"train", "feature_spec"}
    tune = tasks(spec)["tune"]
    assert set(tune["inputs"]["artifacts"]) == {"train", "feature_spec"}
    assert set(tasks(spec)["train"]["inputs"]["artifacts"]) == {"train", "feature_spec"}


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_each_stage_runs_in_its_own_pinned_image(spec, stage, monkeypatch):
    monkeypatch.delenv("KEEL_IMAGE_REGISTRY", raising=False)
    image = container_of(spec, stage)["image"]
    assert image == images.image(stage)
    assert image.endswith(f":{keel.__version__}")


def test_stage_images_are_distinct_and_never_latest(spec):
    used = [container_of(spec, stage)["image"] for stage in STAGE_NAMES]
    assert len(set(used)) == len(used), f"Two stages share an image: {used}"
    for image in used:
        assert ":" in image.rsplit("/", 1)[-1], f"{image} has no tag"
        assert not image.endswith(":latest"), f"{image} uses the latest tag"


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_nothing_is_pip_installed_when_a_task_starts(spec, stage):
    container = container_of(spec, stage)
    text = "\n".join(container.get("command", []) + container.get("args", []))
    for forbidden in ("pip install", "pip3 install", "ensurepip"):
        assert forbidden not in text, f"The {stage} task runs `{forbidden}` at start"
    assert "python3 -m kfp.dsl.executor_main" in text  # the images' venv must provide kfp


@pytest.mark.parametrize("task", sorted(set(EXPECTED_UPSTREAM) - {"for-loop-1"}))
def test_dag_edges(spec, task):
    node = tasks(spec)[task]
    producers = set()
    inputs = node.get("inputs", {})
    for kind, key in (("artifacts", "taskOutputArtifact"), ("parameters", "taskOutputParameter")):
        for source in inputs.get(kind, {}).values():
            if key in source:
                producers.add(source[key]["producerTask"])
    assert set(node.get("dependentTasks", [])) == EXPECTED_UPSTREAM[task]
    assert producers == EXPECTED_UPSTREAM[task]


@pytest.mark.parametrize(("consumer", "producer"), EXPECTED_WIRING.items(), ids=lambda x: ".".join(x))
def test_artifact_wiring(spec, consumer, producer):
    task, name = consumer
    inputs = tasks(spec)[task]["inputs"]
    source = {**inputs.get("artifacts", {}), **inputs.get("parameters", {})}[name]
    ref = source.get("taskOutputArtifact") or source.get("taskOutputParameter")
    assert ref is not None, f"{task}.{name} is not read from another task: {source}"
    key = ref.get("outputArtifactKey") or ref.get("outputParameterKey")
    assert (ref["producerTask"], key) == producer


@pytest.mark.parametrize("task", ["publish", "promote"])
def test_publish_and_promote_record_the_run_id(spec, task):
    run_id = tasks(spec)[task]["inputs"]["parameters"]["run_id"]
    assert run_id == {"runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}}


def test_pipeline_inputs_are_described_and_only_the_data_has_no_default(spec):
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    signature = inspect.signature(training_pipeline.pipeline_func).parameters
    assert set(parameters) == set(signature)
    for name, definition in parameters.items():
        assert definition.get("description", "").strip(), f"Pipeline input {name!r} has no description"
        if name in REQUIRED_INPUTS:
            assert "defaultValue" not in definition, f"{name!r} must be required"
            assert not definition.get("isOptional", False)
        else:
            assert definition.get("isOptional") is True, f"{name!r} should have a default"
            assert definition["defaultValue"] == signature[name].default


def test_component_inputs_are_described(spec):
    for name, component in spec["components"].items():
        if "dag" in component:  # the ParallelFor's inner DAG: its inputs are KFP's channels
            continue
        for kind in ("artifacts", "parameters"):
            for input_name, definition in component["inputDefinitions"].get(kind, {}).items():
                assert definition.get("description", "").strip(), (
                    f"{name} input {input_name!r} has no description: add it to the docstring's Args"
                )


def test_image_names_follow_keel_image_registry(monkeypatch):
    monkeypatch.delenv("KEEL_IMAGE_REGISTRY", raising=False)
    assert images.image("train") == f"localhost/keel/train:{keel.__version__}"
    assert images.image("base") == f"localhost/keel/base:{keel.__version__}"
    monkeypatch.setenv("KEEL_IMAGE_REGISTRY", "europe-docker.pkg.dev/my-project/keel/")
    assert images.image("train") == f"europe-docker.pkg.dev/my-project/keel/train:{keel.__version__}"
    with pytest.raises(ValueError, match="Unknown stage 'training'"):
        images.image("training")


def test_compiling_with_keel_image_registry_changes_every_image(tmp_path, monkeypatch):
    registry = "europe-docker.pkg.dev/my-project/keel"
    monkeypatch.setenv("KEEL_IMAGE_REGISTRY", registry)
    path = tmp_path / "training.yaml"
    compile_in_subprocess(path)
    executors = documents(path)[0]["deploymentSpec"]["executors"]
    used = {executor["container"]["image"] for executor in executors.values()}
    assert used == {f"{registry}/{stage}:{keel.__version__}" for stage in STAGE_NAMES}


def test_components_readme_is_what_the_components_say():
    from keel.components import readme

    assert readme.README.read_text() == readme.render(), (
        "components/README.md is stale: run `make compile` and commit the result."
    )


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_components_readme_documents_every_input_and_output(stage):
    from keel import components as keel_components

    readme = (REPO / "components" / "README.md").read_text()
    sections = dict(re.findall(r"^## (\w+)\n(.*?)(?=^## |\Z)", readme, flags=re.M | re.S))
    assert stage in sections, f"components/README.md has no '## {stage}' section"
    rows = dict(re.findall(r"^\| `(\w+)` \| `[^`]+` \| (.*) \|$", sections[stage], flags=re.M))
    spec = getattr(keel_components, stage).component_spec
    assert set(rows) == set(spec.inputs or {}) | set(spec.outputs or {})
    for name, description in rows.items():
        assert description.strip(), f"components/README.md, {stage}: {name!r} has no description"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_caching_follows_the_stage_table(spec, stage):
    # KFP caches by default: a cached ingest would replay last week's rows from the same URI.
    enabled = tasks(spec)[stage.name].get("cachingOptions", {}).get("enableCache", False)
    assert enabled is stage.cacheable


@pytest.mark.parametrize("name", ["ingest", "validate", "evaluate", "publish", "promote"])
def test_tasks_that_read_fresh_state_or_write_the_store_are_never_cached(name):
    assert not next(s for s in STAGES if s.name == name).cacheable


def test_source_credentials_come_only_from_an_optional_kubernetes_secret(spec, platform):
    # The ingest pod gets KEEL_SOURCE_PASSWORD / KEEL_SOURCE_TOKEN from the secret that the
    # source_secret parameter names; no parameter holds a credential.
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    ingest_executor = spec["components"][tasks(spec)["ingest"]["componentRef"]["name"]][
        "executorLabel"]
    assert set(executors) == {ingest_executor}  # no other stage sees the secret
    (secret,) = executors[ingest_executor]["secretAsEnv"]
    assert secret["optional"] is True  # a public source needs no secret
    assert secret["secretNameParameter"] == {"componentInputParameter": "source_secret"}
    assert {(k["secretKey"], k["envVar"]) for k in secret["keyToEnv"]} == {
        ("password", "KEEL_SOURCE_PASSWORD"), ("token", "KEEL_SOURCE_TOKEN")}
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert not [name for name in parameters if re.search(r"pass|token|secret_value|cred", name)]
    assert parameters["source_secret"]["defaultValue"] == "keel-source"
    text = COMMITTED.read_text()
    assert "KEEL_SOURCE_PASSWORD" in text
    assert not re.search(r"postgres(ql)?://[^\s'\"@/]*:[^\s'\"@/]*@", text)  # no user:password@


def test_a_password_in_a_source_url_is_refused_before_anything_runs():
    from keel.errors import ParameterError
    from keel.settings import check_settings

    with pytest.raises(ParameterError, match="KEEL_SOURCE_PASSWORD") as caught:
        check_settings({"source": "postgresql://ml:s3cret@db:5432/loans", "target": "t",
                        "store": "/tmp/store", "source_table": "loans"})
    assert "s3cret" not in str(caught.value)
