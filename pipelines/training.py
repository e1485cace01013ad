"""The training pipeline: ingest -> validate -> preprocess -> train -> evaluate -> register.

Compile with ``make compile`` (or ``python -m keel.pipelines.training``); the committed spec in
``pipelines/compiled/training.yaml`` is what users upload to Kubeflow or pass to
``kfp run create``. Every setting is a pipeline parameter.
"""

from pathlib import Path

from kfp import compiler, dsl

from keel.components import evaluate, ingest, preprocess, register, train, validate

COMPILED = Path(__file__).parent / "compiled" / "training.yaml"


@dsl.pipeline(
    name="keel-training",
    description="Train, evaluate and register a scikit-learn model from a table.",
)
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
) -> str:
    """Train, evaluate and register a model; promote it only if it passes the gate.

    Args:
        source: Table to learn from: a path or gs:// URI of CSV, Parquet or JSON Lines.
        target: Column to predict.
        store: Registry root: gs://bucket/prefix (or a local folder in kfp.local).
        model_name: Registry name of the model.
        task: auto, classification or regression.
        estimator: linear, random_forest or hist_gradient_boosting.
        params: JSON object of hyperparameters for the scikit-learn estimator, e.g.
            {"max_depth": 5} (JSON, so 1 and 1.0 stay different, as scikit-learn needs).
        test_size: Fraction of rows held out for evaluation.
        seed: Random seed of the split and the estimator.
        encoding: Categorical encoding: auto, onehot or ordinal.
        thresholds: Gate per metric, e.g. {"roc_auc": {"lower": 0.7, "min_absolute_change": 0}};
            empty means "no worse than production" on the task's primary metric.
        override_reason: Promote regardless of the gate, recording this reason.
        source_format: auto (from the file name), csv, parquet or jsonl.
    """
    # Never cached: the same source URI holds new rows every week, evaluate reads the registry's
    # current production model, and register writes to the store.
    ingested = ingest(source=source, source_format=source_format).set_caching_options(False)
    checked = validate(snapshot=ingested.outputs["snapshot"], target=target, task=task)
    split = preprocess(
        dataset=checked.outputs["dataset"], schema=checked.outputs["schema"],
        test_size=test_size, seed=seed, encoding=encoding,
    )
    fitted = train(
        train=split.outputs["train"], feature_spec=split.outputs["feature_spec"],
        estimator=estimator, params=params, seed=seed,
    )
    scored = evaluate(
        model=fitted.outputs["model"], test=split.outputs["test"],
        feature_spec=split.outputs["feature_spec"], schema=checked.outputs["schema"],
        store=store, model_name=model_name, thresholds=thresholds,
        override_reason=override_reason,
    ).set_caching_options(False)
    registered = register(
        store=store, model_name=model_name, model=fitted.outputs["model"],
        snapshot=ingested.outputs["snapshot"], schema=checked.outputs["schema"],
        feature_spec=split.outputs["feature_spec"], record=fitted.outputs["record"],
        decision=scored.outputs["decision"], ingest_info=ingested.outputs["Output"],
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    ).set_caching_options(False)
    return registered.output


def compile_pipeline(path: str | Path = COMPILED) -> Path:
    compiler.Compiler().compile(training_pipeline, str(path))
    return Path(path)


if __name__ == "__main__":
    print(compile_pipeline())
