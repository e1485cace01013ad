"""Train: fit ``Pipeline(features, estimator)`` with tracked, checked hyperparameters."""

from __future__ import annotations

import inspect
import json
import time
from importlib import import_module
from typing import Any

import pandas as pd

from keel.errors import ParameterError, reports_errors
from keel.preprocess import build_transformer, resolve_encoding
from keel.storage import read_json_file, write_json_file

DEFAULT_ESTIMATOR = "hist_gradient_boosting"
ESTIMATORS: dict[str, dict[str, str]] = {
    "linear": {
        "classification": "sklearn.linear_model.LogisticRegression",
        "regression": "sklearn.linear_model.Ridge",
    },
    "random_forest": {
        "classification": "sklearn.ensemble.RandomForestClassifier",
        "regression": "sklearn.ensemble.RandomForestRegressor",
    },
    "hist_gradient_boosting": {
        "classification": "sklearn.ensemble.HistGradientBoostingClassifier",
        "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
    },
}
# Keel's defaults where scikit-learn's do not suit unattended weekly runs.
DEFAULT_PARAMS: dict[tuple[str, str], dict[str, Any]] = {
    ("linear", "classification"): {"max_iter": 2000},
}


def check_estimator(estimator: str) -> str:
    if estimator not in ESTIMATORS:
        raise ParameterError(
            f"The 'estimator' parameter of train must be one of {', '.join(ESTIMATORS)}. "
            f"Got {estimator!r}.",
            stage="train",
        )
    return estimator


def estimator_class(estimator: str, task: str) -> type:
    check_estimator(estimator)
    module, _, name = ESTIMATORS[estimator][task].rpartition(".")
    return getattr(import_module(module), name)


def parse_param_value(text: str) -> Any:
    """``5`` -> 5, ``0.1`` -> 0.1, ``true`` -> True, ``none`` -> None, ``[1,2]`` -> list, else str."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_params(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ParameterError(
                f"A --param must look like name=value (for example max_depth=5). Got {pair!r}.",
                stage="train",
            )
        params[key.strip()] = parse_param_value(value)
    return params


def load_params(params_json: str) -> dict[str, Any]:
    """Hyperparameters arrive as a JSON object, so 1 (a count) and 1.0 (a fraction) stay apart."""
    try:
        params = json.loads(params_json or "{}")
    except ValueError as exc:
        raise ParameterError(
            f"The 'params' parameter of train must be a JSON object. Got {params_json!r} ({exc}).",
            stage="train",
        ) from None
    if not isinstance(params, dict):
        raise ParameterError(
            f"The 'params' parameter of train must be a JSON object. Got {params_json!r}.",
            stage="train",
        )
    return params


def make_estimator(estimator: str, task: str, params: dict[str, Any], seed: int):
    """The unfitted estimator, its parameters checked against the constructor and its constraints."""
    cls = estimator_class(estimator, task)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ParameterError(
            f"{cls.__name__} has no parameter {', '.join(map(repr, unknown))}. "
            f"Its parameters are: {', '.join(accepted)}.",
            stage="train",
        )
    full = {**DEFAULT_PARAMS.get((estimator, task), {}), **params}
    if "random_state" in accepted and "random_state" not in params:
        full["random_state"] = int(seed)
    model = cls(**full)
    try:
        model._validate_params()  # scikit-learn's declared constraints, before any data is read
    except (ValueError, TypeError) as exc:
        raise ParameterError(str(exc), stage="train") from None
    return model


def _json_safe(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, str | int | float | bool | None) else repr(v)
            for k, v in params.items()}


def train(
    frame: pd.DataFrame,
    spec: dict[str, Any],
    estimator: str,
    params: dict[str, Any],
    seed: int,
):
    """Fit the model; return it and the record of what was fitted and how."""
    from sklearn.pipeline import Pipeline

    model = make_estimator(estimator, spec["task"], params, seed)
    encoding = resolve_encoding(spec, estimator)
    if encoding == "ordinal" and estimator == "hist_gradient_boosting" and spec["categorical"]:
        if "categorical_features" not in params:
            mask = [False] * len(spec["numeric"]) + [True] * len(spec["categorical"])
            model.set_params(categorical_features=mask)
    pipeline = Pipeline([("features", build_transformer(spec, encoding)), ("model", model)])
    features = spec["numeric"] + spec["categorical"]
    started = time.perf_counter()
    pipeline.fit(frame[features], frame[spec["target"]])
    record = {
        "estimator": estimator,
        "estimator_class": type(model).__name__,
        "params": params,
        "effective_params": _json_safe(model.get_params()),
        "encoding": encoding,
        "features": features,
        "train_rows": len(frame),
        "fit_seconds": round(time.perf_counter() - started, 3),
        "seed": int(seed),
    }
    return pipeline, record


@reports_errors
def run(
    train_path: str, spec_path: str, estimator: str, params_json: str, seed: int,
    model_out: str, record_out: str,
) -> dict[str, Any]:
    """The train stage: fit, save ``model.joblib`` (what KServe's sklearn runtime loads)."""
    import joblib

    params = load_params(params_json)
    spec = read_json_file(spec_path)
    pipeline, record = train(pd.read_parquet(train_path), spec, estimator, params, seed)
    joblib.dump(pipeline, model_out)
    write_json_file(record_out, record)
    return record
