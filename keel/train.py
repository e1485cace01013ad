"""Train: fit ``Pipeline(features, estimator)`` with tracked, checked hyperparameters."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from keel.contracts import FeatureSpec, TrainRecord
from keel.errors import reports_errors
from keel.estimators import get_estimator, make_estimator
from keel.preprocess import build_transformer, resolve_encoding
from keel.settings import checked


def _json_safe(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, str | int | float | bool | None) else repr(v)
            for k, v in params.items()}


def train(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    estimator: str,
    params: dict[str, Any],
    seed: int,
) -> tuple[Any, TrainRecord]:
    """Fit the model; return it and the record of what was fitted and how."""
    from sklearn.pipeline import Pipeline

    entry = get_estimator(checked("estimator", estimator))
    seed = checked("seed", seed)
    model = make_estimator(entry.name, spec.task, params, seed)
    encoding = resolve_encoding(spec, entry)
    if entry.native_categorical and encoding == "ordinal" and spec.categorical \
            and "categorical_features" not in params:
        mask = [False] * len(spec.numeric) + [True] * len(spec.categorical)
        model.set_params(categorical_features=mask)
    pipeline = Pipeline([("features", build_transformer(spec, encoding, entry)), ("model", model)])
    started = time.perf_counter()
    pipeline.fit(frame[spec.features], frame[spec.target])
    record = TrainRecord(
        estimator=entry.name,
        estimator_class=type(model).__name__,
        params=params,
        effective_params=_json_safe(model.get_params()),
        encoding=encoding,
        features=spec.features,
        train_rows=len(frame),
        fit_seconds=round(time.perf_counter() - started, 3),
        seed=int(seed),
    )
    return pipeline, record


@reports_errors
def run(
    train_path: str, spec_path: str, estimator: str, params_json: str, seed: int,
    model_out: str, record_out: str,
) -> TrainRecord:
    """The train stage: fit, save ``model.joblib`` (what KServe's sklearn runtime loads)."""
    import joblib

    spec = FeatureSpec.read(spec_path, stage="train")
    params = checked("params", params_json, estimator=estimator, task=spec.task)
    pipeline, record = train(pd.read_parquet(train_path), spec, estimator, params,
                             checked("seed", seed))
    joblib.dump(pipeline, model_out)
    record.write(record_out)
    return record
