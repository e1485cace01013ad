"""Evaluate: score the candidate and the production model on this run's test split, then gate.

The baseline is always re-scored on the same rows as the candidate, never compared through a
number stored from an older test set. The decision record lists every check with its numbers;
promotion reads only that record (DESIGN.md, "The evaluation gate").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel.contracts import Baseline, Check, Decision, FeatureSpec, Override, TableSchema
from keel.errors import ParameterError, reports_errors
from keel.settings import checked

if TYPE_CHECKING:
    from keel.registry import Registry

# The metrics each task computes, and which way is better.
TASK_METRICS = {
    "classification": ("accuracy", "balanced_accuracy", "f1_macro", "log_loss", "roc_auc"),
    "regression": ("rmse", "mae", "r2"),
}
HIGHER_IS_BETTER = {"accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "r2"}
LOWER_IS_BETTER = {"rmse", "mae", "log_loss"}
THRESHOLD_KEYS = ("lower", "upper", "min_relative_change", "min_absolute_change")
# The values each metric can take: a lower bound above the top (or an upper one below the
# bottom) can never pass, and is refused before any stage rather than rejecting every run.
METRIC_RANGES = {
    "accuracy": (0.0, 1.0), "balanced_accuracy": (0.0, 1.0), "f1_macro": (0.0, 1.0),
    "roc_auc": (0.0, 1.0), "r2": (-math.inf, 1.0), "rmse": (0.0, math.inf),
    "mae": (0.0, math.inf), "log_loss": (0.0, math.inf),
}


def primary_metric(schema: TableSchema) -> str:
    """The metric of the default rule: roc_auc (binary), f1_macro (multiclass), rmse."""
    if schema.task == "regression":
        return "rmse"
    return "roc_auc" if len(schema.classes or ()) == 2 else "f1_macro"


@dataclass(frozen=True)
class Predictions:
    """One pass of a model over the test split, shared by the metrics and the curves."""

    y: pd.Series
    pred: np.ndarray
    proba: np.ndarray | None = None
    classes: list[Any] = field(default_factory=list)


def predict(model: Any, test: pd.DataFrame, spec: FeatureSpec) -> Predictions:
    """One pass of ``model`` over the test rows."""
    x, y = test[spec.features], test[spec.target]
    if spec.task == "regression":
        return Predictions(y, model.predict(x))
    # A scikit-learn classifier's predict is the argmax of predict_proba: compute it once.
    proba = model.predict_proba(x)
    classes = list(model.classes_)
    return Predictions(y, np.asarray(model.classes_)[proba.argmax(axis=1)], proba, classes)


def score(model: Any, test: pd.DataFrame, spec: FeatureSpec) -> dict[str, float]:
    """The task metrics of ``model`` on the test rows."""
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
    if len(p.classes) == 2 and p.proba is not None:
        fpr, tpr, thresholds = roc_curve(p.y, p.proba[:, 1], pos_label=p.classes[1])
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).astype(int))
        result["roc"] = {
            "fpr": fpr[keep].tolist(),
            "tpr": tpr[keep].tolist(),
            "threshold": np.clip(thresholds[keep], 0.0, 1.0).tolist(),
        }
    return result


def normalise_thresholds(thresholds: dict[str, Any], schema: TableSchema) -> dict[str, dict[str, float]]:
    """The gate's rules; none given means "no worse than production" on the primary metric."""
    rules: dict[str, dict[str, float]] = checked("thresholds", thresholds, task=schema.task)
    return rules or {primary_metric(schema): {"min_absolute_change": 0.0}}


def check_thresholds(thresholds: dict[str, Any], task: str = "auto") -> dict[str, dict[str, float]]:
    """Metrics the task computes (any task's while it is "auto"), known rules, finite numbers."""
    known = set(TASK_METRICS.get(task, HIGHER_IS_BETTER | LOWER_IS_BETTER))
    result: dict[str, dict[str, float]] = {}
    for metric, rules in thresholds.items():
        if metric not in known:
            what = (f"metric {metric!r}, which {task} does not compute"
                    if metric in HIGHER_IS_BETTER | LOWER_IS_BETTER else
                    f"unknown metric {metric!r}")
            raise ParameterError(
                f"The 'thresholds' parameter of evaluate names {what}; expected one of "
                f"{', '.join(sorted(known))}.",
                stage="evaluate",
            )
        if not isinstance(rules, dict) or set(rules) - set(THRESHOLD_KEYS) or not rules:
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
        bottom, top = METRIC_RANGES[metric]
        if result[metric].get("lower", bottom) > top or result[metric].get("upper", top) < bottom:
            raise ParameterError(
                f"The thresholds of {metric!r} can never pass: {metric} lies in "
                f"[{bottom:g}, {top:g}]. Got {rules!r}.",
                stage="evaluate",
            )
    return result


def decide(
    candidate: dict[str, float],
    baseline: Baseline | None,
    thresholds: dict[str, dict[str, float]],
    test_rows: int,
    override_reason: str = "",
) -> Decision:
    """Apply value and change thresholds; return the decision record.

    ``baseline`` is the production model re-scored on the same rows (its ``metrics`` None with
    an ``error`` when it could not be scored), or None on the first run.
    """
    checks: list[Check] = []
    notes: list[str] = []
    for metric, rules in thresholds.items():
        value = candidate.get(metric)
        if value is None:
            checks.append(Check(metric=metric, check="available", candidate=None, required=None,
                                passed=False,
                                note=f"{metric} is not computed for this task or is undefined "
                                     "on this test split"))
            continue
        higher = metric in HIGHER_IS_BETTER
        if "lower" in rules:
            checks.append(Check(metric=metric, check="lower", candidate=value,
                                required=rules["lower"], passed=value >= rules["lower"]))
        if "upper" in rules:
            checks.append(Check(metric=metric, check="upper", candidate=value,
                                required=rules["upper"], passed=value <= rules["upper"]))
        change_rules = {k: rules[k] for k in ("min_relative_change", "min_absolute_change")
                        if k in rules}
        if not change_rules:
            continue
        if baseline is None:
            notes.append(f"first run: no production model, so the change thresholds on "
                         f"{metric} do not apply")
            continue
        if baseline.not_compared:
            notes.append(f"production version {baseline.version} was not compared "
                         f"({baseline.not_compared}; allowed by allow_target_change), so the "
                         f"change thresholds on {metric} do not apply")
            continue
        base = (baseline.metrics or {}).get(metric)
        if base is None:
            checks.append(Check(metric=metric, check="baseline", candidate=value, required=None,
                                passed=False,
                                note=f"production version {baseline.version} could not be "
                                     f"scored: {baseline.error or 'metric missing'}"))
            continue
        if "min_relative_change" in rules:
            r = rules["min_relative_change"]
            # relative to the baseline's size, so a negative baseline (r2) still asks for better
            required = base + abs(base) * r if higher else base - abs(base) * r
            passed = value >= required if higher else value <= required
            checks.append(Check(metric=metric, check="relative_change", candidate=value,
                                baseline=base, threshold=r, required=required, passed=passed))
        if "min_absolute_change" in rules:
            a = rules["min_absolute_change"]
            required = base + a if higher else base - a
            passed = value >= required if higher else value <= required
            checks.append(Check(metric=metric, check="absolute_change", candidate=value,
                                baseline=base, threshold=a, required=required, passed=passed))
    passed = all(c.passed for c in checks)
    override = None
    if override_reason.strip():
        override = Override(reason=override_reason.strip(), checks_passed=passed)
        notes.append(f"manual override: {override_reason.strip()}")
    return Decision(
        passed=passed or override is not None,
        checks=checks,
        baseline=baseline,
        first_run=baseline is None,
        thresholds=thresholds,
        override=override,
        notes=notes,
        metrics=candidate,
        test_rows=test_rows,
    )


def score_baseline(
    registry: Registry, test: pd.DataFrame, spec: FeatureSpec, schema: TableSchema | None = None,
    allowed_change: bool = False,
) -> Baseline | None:
    """Re-score the production model on this test split (None when there never was one).

    With ``allowed_change`` (allow_target_change) and a production model that predicts another
    target, task or classes than ``schema``, production is not re-scored: the scores would not
    be comparable. The baseline then says why, and the change thresholds do not apply.

    Damage stops the run: a missing or corrupt production.json, a damaged manifest, a model file
    that is missing, fails its sha256 check or cannot be unpickled (all raised by the registry).
    Only a model that loads but cannot score these rows (other columns or classes) is a baseline
    that "could not be scored", which fails the change checks with the reason.
    """
    alias = registry.alias()
    if alias.version is None:
        return None
    if allowed_change and schema is not None:
        from keel.validate import read_production, target_change

        production = read_production(registry.store.uri, registry.model)
        change = target_change(production, schema) if production is not None else ""
        if change:
            return Baseline(version=alias.version, generation=alias.generation, metrics=None,
                            not_compared=change)
    model = registry.load_model(alias.version)  # never caught: damage is not a gate result
    try:
        metrics = score(model, test, spec)
    except Exception as exc:  # a model trained on other columns or classes: say why, don't crash
        return Baseline(version=alias.version, generation=alias.generation, metrics=None,
                        error=f"{type(exc).__name__}: {exc}")
    return Baseline(version=alias.version, generation=alias.generation, metrics=metrics)


@dataclass(frozen=True)
class Evaluation:
    """What the evaluate component logs to the dashboard, and the decision record."""

    metrics: dict[str, float]
    curves: dict[str, Any] | None
    decision: Decision


@reports_errors
def run(
    model_path: str, test_path: str, spec_path: str, schema_path: str, store: str, model: str,
    thresholds: dict[str, Any], override_reason: str, decision_out: str,
    allow_target_change: bool = False,
) -> Evaluation:
    """The evaluate stage: candidate metrics, baseline re-scored, decision record written."""
    import joblib

    from keel.registry import Registry
    from keel.storage import open_store

    spec = FeatureSpec.read(spec_path, stage="evaluate")
    schema = TableSchema.read(schema_path, stage="evaluate")
    rules = normalise_thresholds(thresholds, schema)
    registry = Registry(open_store(checked("store", store)), checked("model_name", model))
    test = pd.read_parquet(test_path)
    predictions = predict(joblib.load(model_path), test, spec)
    metrics = metrics_of(predictions)
    baseline = score_baseline(registry, test, spec, schema,
                              checked("allow_target_change", allow_target_change))
    decision = decide(metrics, baseline, rules, len(test), checked("override_reason", override_reason))
    decision.write(decision_out)
    curves = curves_of(predictions) if predictions.proba is not None else None
    return Evaluation(metrics=metrics, curves=curves, decision=decision)
