"""Train: fit ``Pipeline(features, estimator)`` with tracked, checked hyperparameters."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from keel.contracts import FeatureSpec, Search, TrainRecord, Trial
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
    search: Search | None = None,
) -> tuple[Any, TrainRecord]:
    """Fit the model; return it and the record of what was fitted and how (and chosen how)."""
    import sklearn
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
        search=search,
        scikit_learn=sklearn.__version__,
    )
    return pipeline, record


@reports_errors
def run(
    train_path: str, spec_path: str, estimator: str, params_json: str, seed: int,
    model_out: str, record_out: str, trials: Sequence[str] = (),
    validation_size: float = 0.2, search_random: int = 0, golden_out: str = "",
) -> TrainRecord:
    """The train stage: fit, save ``model.joblib`` (what KServe's sklearn runtime loads).

    ``golden_out`` (when given) gets a sample of training rows with the answers the model gave
    them here: the smoke test asks a model server the same rows before promotion.

    ``trials``: the results of a hyperparameter search (``keel.search.run_trial``; ``""`` for
    none). When there are any, the best on validation rows is fitted on all training rows and the
    search is recorded; ``search_random`` (above 0: a random search) names its method.
    """
    import joblib

    from keel.search import choose, sample_size

    spec = FeatureSpec.read(spec_path, stage="train")
    params = checked("params", params_json, estimator=estimator, task=spec.task)
    seed = checked("seed", seed)
    validation_size = checked("validation_size", validation_size)
    method = "random" if sample_size(search_random) else "grid"
    results = [Trial.from_json(text, origin=f"trial {number}", stage="train")
               for number, text in enumerate(trials) if text]
    search = choose(results, method, validation_size) if results else None
    if search is not None:
        params = dict(search.candidates[search.best].params)
    frame = pd.read_parquet(train_path)
    pipeline, record = train(frame, spec, estimator, params, seed, search)
    joblib.dump(pipeline, model_out)
    record.write(record_out)
    if golden_out:
        from keel.smoke_test import golden_rows

        golden_rows(pipeline, frame, spec, seed=seed).write(golden_out)
    return record
