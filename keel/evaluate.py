"""Evaluate: score the candidate and the production model on this run's test split, then gate.

The baseline is always re-scored on the same rows as the candidate, never compared through a
number stored from an older test set. The decision record lists every check with its numbers;
promotion reads only that record (DESIGN.md, "The evaluation gate").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import KeelError, ParameterError, reports_errors
from keel.storage import read_json_file, write_json_file

HIGHER_IS_BETTER = {"accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "r2"}
LOWER_IS_BETTER = {"rmse", "mae", "log_loss"}
THRESHOLD_KEYS = ("lower", "upper", "min_relative_change", "min_absolute_change")


def primary_metric(schema: dict[str, Any]) -> str:
    if schema["task"] == "regression":
        return "rmse"
    return "roc_auc" if len(schema["classes"]) == 2 else "f1_macro"


def _features(spec: dict[str, Any]) -> list[str]:
    return spec["numeric"] + spec["categorical"]


@dataclass(frozen=True)
class Predictions:
    """One pass of a model over the test split, shared by the metrics and the curves."""

    y: pd.Series
    pred: np.ndarray
    proba: np.ndarray | None = None
    classes: list[Any] = field(default_factory=list)


def predict(model, test: pd.DataFrame, spec: dict[str, Any]) -> Predictions:
    x, y = test[_features(spec)], test[spec["target"]]
    if spec["task"] == "regression":
        return Predictions(y, model.predict(x))
    # A scikit-learn classifier's predict is the argmax of predict_proba: compute it once.
    proba = model.predict_proba(x)
    classes = list(model.classes_)
    return Predictions(y, np.asarray(model.classes_)[proba.argmax(axis=1)], proba, classes)


def score(model, test: pd.DataFrame, spec: dict[str, Any]) -> dict[str, float]:
    return metrics_of(predict(model, test, spec))


def metrics_of(p: Predictions) -> dict[str, float]:
    """Task metrics on the test split; a metric undefined on these rows (NaN) is left out."""
    from sklearn import metrics as m

    if p.proba is None:
        result = {
            "rmse": float(m.root_mean_squared_error(p.y, p.pred)),
            "mae": float(m.mean_absolute_error(p.y, p.pred)),
            "r2": float(m.r2_score(p.y, p.pred)),
        }
    else:
        result = {
            "accuracy": float(m.accuracy_score(p.y, p.pred)),
            "balanced_accuracy": float(m.balanced_accuracy_score(p.y, p.pred)),
            "f1_macro": float(m.f1_score(p.y, p.pred, average="macro")),
            "log_loss": float(m.log_loss(p.y, p.proba, labels=p.classes)),
        }
        if len(p.classes) == 2:
            result["roc_auc"] = float(m.roc_auc_score(p.y, p.proba[:, 1]))
        elif p.y.nunique() == len(p.classes):
            result["roc_auc"] = float(
                m.roc_auc_score(p.y, p.proba, multi_class="ovr", labels=p.classes)
            )
    return {k: v for k, v in result.items() if math.isfinite(v)}


def curves_of(p: Predictions) -> dict[str, Any]:
    """Confusion matrix (and ROC for binary) in the shape KFP's ClassificationMetrics logs."""
    from sklearn.metrics import confusion_matrix, roc_curve

    result: dict[str, Any] = {
        "labels": [str(c) for c in p.classes],
        "confusion_matrix": confusion_matrix(p.y, p.pred, labels=p.classes).tolist(),
    }
    if len(p.classes) == 2:
        fpr, tpr, thresholds = roc_curve(p.y, p.proba[:, 1], pos_label=p.classes[1])
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).astype(int))
        result["roc"] = {
            "fpr": fpr[keep].tolist(),
            "tpr": tpr[keep].tolist(),
            "threshold": np.clip(thresholds[keep], 0.0, 1.0).tolist(),
        }
    return result


def normalise_thresholds(
    thresholds: dict[str, Any], schema: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """The gate's rules; none given means "no worse than production" on the primary metric."""
    if not thresholds:
        return {primary_metric(schema): {"min_absolute_change": 0.0}}
    return check_thresholds(thresholds)


def check_thresholds(thresholds: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Known metrics, known rules, finite numbers; returned as floats."""
    known = HIGHER_IS_BETTER | LOWER_IS_BETTER
    result = {}
    for metric, rules in thresholds.items():
        if metric not in known:
            raise ParameterError(
                f"The 'thresholds' parameter of evaluate names unknown metric {metric!r}; "
                f"expected one of {', '.join(sorted(known))}.",
                stage="evaluate",
            )
        if not isinstance(rules, dict) or set(rules) - set(THRESHOLD_KEYS):
            raise ParameterError(
                f"The thresholds of {metric!r} must be a mapping with keys among "
                f"{', '.join(THRESHOLD_KEYS)}. Got {rules!r}.",
                stage="evaluate",
            )
        result[metric] = {}
        for key, value in rules.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if isinstance(value, bool) or not math.isfinite(number):
                raise ParameterError(
                    f"The {key!r} threshold of {metric!r} must be a finite number. "
                    f"Got {value!r}.",
                    stage="evaluate",
                )
            result[metric][key] = number
    return result


def _check(metric: str, kind: str, candidate: float | None, required: float | None, passed: bool,
           baseline: float | None = None, threshold: float | None = None) -> dict[str, Any]:
    return {"metric": metric, "check": kind, "candidate": candidate, "baseline": baseline,
            "threshold": threshold, "required": required, "passed": bool(passed)}


def decide(
    candidate: dict[str, float],
    baseline: dict[str, Any] | None,
    thresholds: dict[str, dict[str, float]],
    override_reason: str = "",
) -> dict[str, Any]:
    """Apply value and change thresholds; return the decision record.

    ``baseline`` is ``{"version", "generation", "metrics"}`` (``metrics`` None with an ``error``
    when the production model could not be scored), or None on the first run.
    """
    checks, notes = [], []
    for metric, rules in thresholds.items():
        value = candidate.get(metric)
        if value is None:
            checks.append({**_check(metric, "available", None, None, False),
                           "note": f"{metric} is not computed for this task or is undefined "
                                   "on this test split"})
            continue
        higher = metric in HIGHER_IS_BETTER
        if "lower" in rules:
            checks.append(_check(metric, "lower", value, rules["lower"], value >= rules["lower"]))
        if "upper" in rules:
            checks.append(_check(metric, "upper", value, rules["upper"], value <= rules["upper"]))
        change_rules = {k: rules[k] for k in ("min_relative_change", "min_absolute_change")
                        if k in rules}
        if not change_rules:
            continue
        if baseline is None:
            notes.append(f"first run: no production model, so the change thresholds on "
                         f"{metric} do not apply")
            continue
        base = (baseline.get("metrics") or {}).get(metric)
        if base is None:
            checks.append({**_check(metric, "baseline", value, None, False),
                           "note": f"production version {baseline['version']} could not be "
                                   f"scored: {baseline.get('error', 'metric missing')}"})
            continue
        if "min_relative_change" in rules:
            r = rules["min_relative_change"]
            # relative to the baseline's size, so a negative baseline (r2) still asks for better
            required = base + abs(base) * r if higher else base - abs(base) * r
            passed = value >= required if higher else value <= required
            checks.append(_check(metric, "relative_change", value, required, passed, base, r))
        if "min_absolute_change" in rules:
            a = rules["min_absolute_change"]
            required = base + a if higher else base - a
            passed = value >= required if higher else value <= required
            checks.append(_check(metric, "absolute_change", value, required, passed, base, a))
    passed = all(c["passed"] for c in checks)
    override = None
    if override_reason.strip():
        override = {"reason": override_reason.strip(), "checks_passed": passed}
        notes.append(f"manual override: {override_reason.strip()}")
    return {
        "passed": passed or override is not None,
        "checks": checks,
        "baseline": baseline,
        "first_run": baseline is None,
        "thresholds": thresholds,
        "override": override,
        "notes": notes,
    }


def score_baseline(registry, test: pd.DataFrame, spec: dict[str, Any]) -> dict[str, Any] | None:
    """Re-score the production model on this test split (None when there is none)."""
    alias = registry.alias()
    if alias.version is None:
        return None
    baseline: dict[str, Any] = {"version": alias.version, "generation": alias.generation}
    try:
        baseline["metrics"] = score(registry.load_model(alias.version), test, spec)
    except KeelError:
        raise  # an integrity failure is never papered over
    except Exception as exc:  # a model trained on other columns or classes: say why, don't crash
        baseline["metrics"] = None
        baseline["error"] = f"{type(exc).__name__}: {exc}"
    return baseline


@reports_errors
def run(
    model_path: str, test_path: str, spec_path: str, schema_path: str, store: str, model: str,
    thresholds: dict[str, Any], override_reason: str, decision_out: str,
) -> dict[str, Any]:
    """The evaluate stage: candidate metrics, baseline re-scored, decision record written."""
    import joblib

    from keel.registry import Registry
    from keel.storage import open_store

    spec, schema = read_json_file(spec_path), read_json_file(schema_path)
    rules = normalise_thresholds(thresholds, schema)
    test = pd.read_parquet(test_path)
    predictions = predict(joblib.load(model_path), test, spec)
    metrics = metrics_of(predictions)
    baseline = score_baseline(Registry(open_store(store), model), test, spec)
    decision = {**decide(metrics, baseline, rules, override_reason), "metrics": metrics,
                "test_rows": len(test)}
    write_json_file(decision_out, decision)
    curves = curves_of(predictions) if predictions.proba is not None else None
    return {"metrics": metrics, "curves": curves, "decision": decision}
