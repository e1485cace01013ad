"""The training pipeline, ingest to promote, with the search as a ParallelFor of tune tasks.

Between publish and promote, deploy serves the published version in Keel's model server and
checks its golden rows (and, with a namespace, deploys it to KServe): promote moves production
only to a version that serves.

Compile with ``make compile`` (or ``keel compile``); the committed spec in
``pipelines/compiled/training.yaml`` is what users upload to Kubeflow or pass to
``kfp run create``. Every run setting is a pipeline parameter, declared in ``keel.settings``
(a test fails when this signature and that table disagree); its docstring comes from the table.
"""

from pathlib import Path
from typing import TypeVar

from kfp import compiler, dsl, kubernetes

from keel.cluster import pod_settings
from keel.components import (
    deploy,
    evaluate,
    ingest,
    preprocess,
    promote,
    publish,
    train,
    tune,
    validate,
)
from keel.settings import pipeline_docstring
from keel.stages import stage

COMPILED = Path(__file__).parent / "compiled" / "training.yaml"
SUMMARY = "Train, evaluate and publish a scikit-learn model; promote it only if it passes the gate."
Task = TypeVar("Task", bound=dsl.PipelineTask)
#: Trials of a search running at once on a cluster (kfp.local runs at most 2 at a time).
SEARCH_PARALLELISM = 8
#: Keys of the source secret (the source_secret parameter) -> the variables ingest reads them
#: from; the secret and each key are optional, so a public source needs no secret.
SOURCE_SECRET_KEYS = {"password": "KEEL_SOURCE_PASSWORD", "token": "KEEL_SOURCE_TOKEN"}


def as_stage(task: Task) -> Task:
    """Apply the stage's caching rule and, when compiling for an environment, its pod settings.

    A stage that reads fresh state is never cached (the stage table says which). Pod settings
    are set only by ``keel cluster compile`` (``keel.cluster.pod_settings``).
    """
    name = task.component_spec.name
    return pod_settings(task.set_caching_options(stage(name).cacheable), name)


def ingest_step(source: str, source_format: str, source_encoding: str, source_query: str,
                source_table: str, records_key: str, source_secret: str) -> dsl.PipelineTask:
    """The ingest task of a pipeline (training or batch prediction), with its credentials.

    Credentials reach ingest only as environment variables from a Kubernetes secret: never a
    parameter, so never in the compiled spec or the run's inputs.
    """
    ingested = as_stage(ingest(source=source, source_format=source_format,
                               source_encoding=source_encoding, source_query=source_query,
                               source_table=source_table, records_key=records_key))
    kubernetes.use_secret_as_env(ingested, secret_name=source_secret,
                                 secret_key_to_env=SOURCE_SECRET_KEYS, optional=True)
    return ingested


def training_pipeline(
    source: str,
    target: str,
    store: str,
    model_name: str = "model",
    task: str = "auto",
    estimator: str = "hist_gradient_boosting",
    params: str = "{}",
    test_size: float = 0.2,
    seed: int = 0,
    encoding: str = "auto",
    thresholds: dict = {},  # noqa: B006 - KFP reads defaults from the signature
    override_reason: str = "",
    source_format: str = "auto",
    source_encoding: str = "utf-8",
    source_query: str = "",
    source_table: str = "",
    records_key: str = "",
    source_secret: str = "keel-source",
    validation_rules: str = "{}",
    severity: list = [],  # noqa: B006
    exclude_columns: list = [],  # noqa: B006
    min_test_rows: int = 20,
    min_class_test_rows: int = 5,
    allow_target_change: bool = False,
    split_key: list = [],  # noqa: B006
    split_time_column: str = "",
    split_salt: str = "keel",
    grid: str = "{}",
    search_random: int = 0,
    validation_size: float = 0.2,
    replace_default_rule: bool = False,
    change_bound: str = "estimate",
    confidence: float = 0.95,
    bootstrap_rounds: int = 1000,
    slices: list = [],  # noqa: B006
    min_slice_rows: int = 30,
    mlflow_uri: str = "",
    model_registry_uri: str = "",
    deploy_namespace: str = "",
    serving_account: str = "keel-serving",
    serving_replicas: int = 1,
    deployment_mode: str = "Serverless",
    deploy_timeout: int = 600,
) -> str:
    ingested = ingest_step(source, source_format, source_encoding, source_query, source_table,
                           records_key, source_secret)
    checked = as_stage(validate(
        snapshot=ingested.outputs["snapshot"], target=target, task=task, test_size=test_size,
        min_test_rows=min_test_rows, min_class_test_rows=min_class_test_rows, store=store,
        model_name=model_name, allow_target_change=allow_target_change, split_key=split_key,
        split_time_column=split_time_column, slices=slices, validation_rules=validation_rules,
        severity=severity, exclude_columns=exclude_columns, seed=seed,
    ))
    split = as_stage(preprocess(
        dataset=checked.outputs["dataset"], schema=checked.outputs["schema"],
        test_size=test_size, min_test_rows=min_test_rows, split_key=split_key,
        split_time_column=split_time_column, split_salt=split_salt, encoding=encoding,
        estimator=estimator, params=params, grid=grid, search_random=search_random, seed=seed,
    ))
    # One trial per parameter set; with no search, one trial that returns at once.
    with dsl.ParallelFor(split.outputs["Output"], parallelism=SEARCH_PARALLELISM) as trial:
        tried = as_stage(tune(
            train=split.outputs["train"], feature_spec=split.outputs["feature_spec"],
            estimator=estimator, trial=trial, seed=seed, validation_size=validation_size,
        ))
    fitted = as_stage(train(
        train=split.outputs["train"], feature_spec=split.outputs["feature_spec"],
        estimator=estimator, params=params, seed=seed, trials=dsl.Collected(tried.output),
        validation_size=validation_size, search_random=search_random,
    ))
    scored = as_stage(evaluate(
        model=fitted.outputs["model"], test=split.outputs["test"],
        feature_spec=split.outputs["feature_spec"], schema=checked.outputs["schema"],
        store=store, model_name=model_name, thresholds=thresholds,
        override_reason=override_reason, allow_target_change=allow_target_change,
        replace_default_rule=replace_default_rule, change_bound=change_bound,
        confidence=confidence, bootstrap_rounds=bootstrap_rounds, slices=slices,
        min_slice_rows=min_slice_rows, min_test_rows=min_test_rows, seed=seed,
    ))
    published = as_stage(publish(
        store=store, model_name=model_name, model=fitted.outputs["model"],
        snapshot=ingested.outputs["snapshot"], schema=checked.outputs["schema"],
        statistics=checked.outputs["statistics"], checks=checked.outputs["checks"],
        validation_report=checked.outputs["report_html"],
        feature_spec=split.outputs["feature_spec"], split=split.outputs["split"],
        record=fitted.outputs["record"], decision=scored.outputs["decision"],
        report=scored.outputs["report"], ingest_info=ingested.outputs["Output"],
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    ))
    deployed = as_stage(deploy(
        publication=published.outputs["Output"], decision=scored.outputs["decision"],
        deploy_namespace=deploy_namespace, serving_account=serving_account,
        serving_replicas=serving_replicas, deployment_mode=deployment_mode,
        deploy_timeout=deploy_timeout,
    ))
    promoted = as_stage(promote(
        publication=published.outputs["Output"], decision=scored.outputs["decision"],
        deployment=deployed.outputs["deployment"], run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        mlflow_uri=mlflow_uri, model_registry_uri=model_registry_uri,
    ))
    return promoted.output


training_pipeline.__doc__ = pipeline_docstring(SUMMARY)
training_pipeline = dsl.pipeline(name="keel-training", description=SUMMARY)(training_pipeline)


def compile_pipeline(path: str | Path = COMPILED) -> Path:
    """Write the pipeline spec (YAML) to ``path``."""
    compiler.Compiler().compile(training_pipeline, str(path))
    return Path(path)


if __name__ == "__main__":
    print(compile_pipeline())
