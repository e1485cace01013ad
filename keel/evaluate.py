"""Evaluate: score the candidate and the production model on the same fair rows, then gate.

The baseline is re-scored on this run's test rows, never compared through a number stored from
an older test set, and never scored on a row it trained on: the test rows that production's own
split rule put on its training side are left out of both scores (:func:`keel.split.rows_trained_on`).
Change thresholds compare the two on those comparable rows, with a paired-bootstrap interval of the
difference; slices repeat the comparison per value of chosen columns. The decision record lists
every check with its numbers; promotion reads only that record (DESIGN.md, "The evaluation gate").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel.contracts import (
    Baseline,
    Check,
    Comparison,
    Decision,
    EvaluationReport,
    FeatureSpec,
    Interval,
    Override,
    SliceMetrics,
    TableSchema,
)
from keel.errors import ParameterError, reports_errors
from keel.metrics import (
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    METRIC_RANGES,
    TASK_METRICS,
    Predictions,
    evaluation_report,
    metrics_of,
    paired_bootstrap,
    per_class,
    predict,
    slice_metrics,
)
from keel.metrics import primary_metric as primary_for
from keel.settings import checked

if TYPE_CHECKING:
    from keel.registry import Registry

CHANGE_RULES = ("min_relative_change", "min_absolute_change")
THRESHOLD_KEYS = ("lower", "upper", *CHANGE_RULES, "max_slice_drop")


def primary_metric(schema: TableSchema) -> str:
    """The metric of the default rule: roc_auc (binary), f1_macro (multiclass), rmse."""
    return primary_for(schema.task, len(schema.classes or ()))


def normalise_thresholds(
    thresholds: dict[str, Any], schema: TableSchema, replace_default_rule: bool = False,
    slices: Sequence[str] = (),
) -> dict[str, dict[str, float]]:
    """The gate's rules: the default rule plus the user's, or only the user's.

    The default is "no worse than production on the primary metric"; a user's rule of the same
    metric and kind replaces the default's. ``replace_default_rule`` keeps only the user's.
    """
    rules: dict[str, dict[str, float]] = checked("thresholds", thresholds, task=schema.task,
                                                 slices=list(slices))
    if replace_default_rule:
        return rules
    merged = {primary_metric(schema): {"min_absolute_change": 0.0}}
    for metric, metric_rules in rules.items():
        merged[metric] = {**merged.get(metric, {}), **metric_rules}
    return merged


def check_thresholds(
    thresholds: dict[str, Any], task: str = "auto", slices: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics the task computes (any task's while it is "auto"), known rules, finite numbers.

    ``slices`` None: not known yet (a slice rule is then not checked against them).
    """
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
        if "max_slice_drop" in result[metric]:
            if result[metric]["max_slice_drop"] < 0:
                raise ParameterError(
                    f"The 'max_slice_drop' threshold of {metric!r} must be 0 or more (how much "
                    f"worse than production a slice may be). Got {rules['max_slice_drop']!r}.",
                    stage="evaluate")
            if slices is not None and not slices:
                raise ParameterError(
                    f"The 'max_slice_drop' threshold of {metric!r} needs columns to slice by: "
                    "give them with the 'slices' parameter (--slice COLUMN). Got none.",
                    stage="evaluate")
    return result


@dataclass(frozen=True)
class Compared:
    """Production re-scored on the comparable test rows (the rows it never trained on)."""

    baseline: Baseline
    comparison: Comparison | None = None
    predictions: Predictions | None = None  # production's, on the comparable rows
    comparable: np.ndarray | None = None  # mask over the test rows


def compare(
    registry: Registry, test: pd.DataFrame, schema: TableSchema, candidate: Predictions, *,
    allowed_change: bool = False, interval_metrics: Sequence[str] = (), rounds: int = 0,
    level: float = 0.95, seed: int = 0, min_rows: int = 1,
) -> Compared | None:
    """Re-score the production model on the test rows it never trained on (None: first run).

    With ``allowed_change`` (allow_target_change) and a production model that predicts another
    target, task or classes than ``schema``, production is not re-scored: the scores would not
    be comparable. The baseline then says why, and the change thresholds do not apply.

    Damage stops the run: a missing or corrupt production.json, a damaged manifest, a model file
    that is missing, fails its sha256 check or cannot be unpickled (all raised by the registry).
    Only a model that loads but cannot score these rows (other columns or classes) is a baseline
    that "could not be scored", which fails the change checks with the reason.
    """
    from keel.split import rows_trained_on

    alias = registry.alias()
    if alias.version is None:
        return None
    version, generation = alias.version, alias.generation
    if allowed_change:
        from keel.validate import read_production, target_change

        production = read_production(registry.store.uri, registry.model)
        change = target_change(production, schema) if production is not None else ""
        if change:
            return Compared(Baseline(version=version, generation=generation, metrics=None,
                                     not_compared=change))
    manifest = registry.manifest(version)
    model = registry.load_model(version)  # never caught: damage is not a gate result
    trained, why = rows_trained_on(
        test, manifest.split, registry, version, manifest.data.data_version,
        [*manifest.features.features, manifest.target])
    comparable = ~trained
    rows = int(comparable.sum())
    mine = candidate.take(comparable)
    comparison = Comparison(rows=rows, excluded=len(test) - rows, reason=why,
                            candidate=metrics_of(mine) if rows else {})
    if rows == 0:
        return Compared(Baseline(version=version, generation=generation, metrics={}),
                        comparison, None, comparable)
    lacking = [c for c in manifest.features.features if c not in test.columns]
    if lacking:
        return Compared(Baseline(
            version=version, generation=generation, metrics=None,
            error=f"this table lacks column(s) {', '.join(map(repr, lacking))} that production "
                  f"version {version} was trained on"), comparison)
    try:
        theirs = predict(model, test[comparable].reset_index(drop=True), manifest.features)
        metrics = metrics_of(theirs)
    except Exception as exc:  # a model trained on other columns or classes: say why, don't crash
        return Compared(Baseline(version=version, generation=generation, metrics=None,
                                 error=f"{type(exc).__name__}: {exc}"), comparison)
    if rounds and rows >= min_rows and interval_metrics:
        intervals = paired_bootstrap(mine, theirs, list(interval_metrics), rounds, level, seed)
        comparison = comparison.model_copy(update={"intervals": intervals})
    return Compared(Baseline(version=version, generation=generation, metrics=metrics),
                    comparison, theirs, comparable)


def _better(metric: str, difference: float, required: float) -> bool:
    """Whether candidate - baseline = ``difference`` meets the ``required`` improvement."""
    return difference >= required if metric in HIGHER_IS_BETTER else -difference >= required


def _change_check(
    metric: str, kind: str, threshold: float, value: float, base: float, rows: int | None,
    interval: Interval | None, bound: str,
) -> Check:
    """One change rule: the improvement required of candidate over baseline, on paired rows."""
    higher = metric in HIGHER_IS_BETTER
    gain = abs(base) * threshold if kind == "relative_change" else threshold
    required = base + gain if higher else base - gain
    note = None
    if bound == "interval":
        if interval is None:
            passed = False
            note = "no bootstrap interval could be computed on these rows"
        else:
            end = interval.low if higher else interval.high
            passed = _better(metric, end, gain)
            note = (f"the interval's {'lower' if higher else 'upper'} end of candidate - "
                    f"baseline is {end:+.4g}; it must be {'at least' if higher else 'at most'} "
                    f"{gain if higher else -gain:+.4g}")
    else:
        passed = _better(metric, value - base, gain)
    return Check(metric=metric, check=kind, candidate=value, baseline=base, threshold=threshold,
                 required=required, passed=passed, note=note, interval=interval, rows=rows)


def decide(
    candidate: dict[str, float],
    baseline: Baseline | None,
    thresholds: dict[str, dict[str, float]],
    test_rows: int,
    override_reason: str = "",
    *,
    comparison: Comparison | None = None,
    slices: Sequence[SliceMetrics] = (),
    change_bound: str = "estimate",
    min_rows: int = 1,
    min_slice_rows: int = 1,
    per_class_metrics: dict[str, dict[str, float]] | None = None,
) -> Decision:
    """Apply value, change and slice thresholds; return the decision record.

    ``baseline`` is the production model re-scored on the ``comparison`` rows (its ``metrics``
    None with an ``error`` when it could not be scored), or None on the first run. Value
    thresholds judge the candidate on all test rows; change and slice thresholds judge it
    against production on the comparable rows only.
    """
    checks: list[Check] = []
    notes: list[str] = []
    if not thresholds:
        notes.append("no gate rules (replace_default_rule without thresholds): every candidate "
                     "passes")
    if comparison is not None and comparison.excluded:
        notes.append(f"{comparison.excluded} of {test_rows} test rows left out of the comparison "
                     f"with production: {comparison.reason}")
    for metric, rules in thresholds.items():
        value = candidate.get(metric)
        if value is None:
            checks.append(Check(metric=metric, check="available", candidate=None, required=None,
                                passed=False,
                                note=f"{metric} is not computed for this task or is undefined "
                                     "on this test split"))
            continue
        if "lower" in rules:
            checks.append(Check(metric=metric, check="lower", candidate=value,
                                required=rules["lower"], passed=value >= rules["lower"]))
        if "upper" in rules:
            checks.append(Check(metric=metric, check="upper", candidate=value,
                                required=rules["upper"], passed=value <= rules["upper"]))
        compared_rules = [k for k in (*CHANGE_RULES, "max_slice_drop") if k in rules]
        if not compared_rules:
            continue
        if baseline is None:
            notes.append(f"first run: no production model, so the change and slice thresholds "
                         f"on {metric} do not apply")
            continue
        if baseline.not_compared:
            notes.append(f"production version {baseline.version} was not compared "
                         f"({baseline.not_compared}; allowed by allow_target_change), so the "
                         f"change and slice thresholds on {metric} do not apply")
            continue
        rows = comparison.rows if comparison is not None else None
        if comparison is not None and comparison.rows < min_rows:
            checks.append(Check(
                metric=metric, check="comparable_rows", candidate=None, required=None,
                passed=False, rows=comparison.rows,
                note=f"only {comparison.rows} of {test_rows} test rows can be compared with production "
                     f"version {baseline.version} (at least {min_rows} needed, min_test_rows): "
                     f"{comparison.reason}"))
            continue
        base = (baseline.metrics or {}).get(metric)
        mine = (comparison.candidate if comparison is not None else candidate).get(metric)
        if base is None or mine is None:
            checks.append(Check(metric=metric, check="baseline", candidate=mine, required=None,
                                passed=False, rows=rows,
                                note=f"production version {baseline.version} could not be "
                                     f"scored: {baseline.error or 'metric missing'}"))
            continue
        interval = comparison.intervals.get(metric) if comparison is not None else None
        if "min_relative_change" in rules:
            checks.append(_change_check(metric, "relative_change", rules["min_relative_change"],
                                        mine, base, rows, interval, change_bound))
        if "min_absolute_change" in rules:
            checks.append(_change_check(metric, "absolute_change", rules["min_absolute_change"],
                                        mine, base, rows, interval, change_bound))
        if "max_slice_drop" in rules:
            checks += _slice_checks(metric, rules["max_slice_drop"], slices, min_slice_rows)
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
        comparison=comparison,
        per_class=per_class_metrics or {},
        slices=list(slices),
    )


def _slice_checks(metric: str, drop: float, slices: Sequence[SliceMetrics], min_rows: int
                  ) -> list[Check]:
    """No slice with enough rows may be more than ``drop`` worse than production on it."""
    checks = []
    higher = metric in HIGHER_IS_BETTER
    for piece in slices:
        mine, base = piece.candidate.get(metric), (piece.baseline or {}).get(metric)
        if piece.rows < min_rows or mine is None or base is None:
            continue
        required = base - drop if higher else base + drop
        checks.append(Check(
            metric=metric, check="slice_drop", candidate=mine, baseline=base, threshold=drop,
            required=required, passed=mine >= required if higher else mine <= required,
            rows=piece.rows, slice=f"{piece.column}={piece.value}"))
    return checks


@dataclass(frozen=True)
class Evaluation:
    """What the evaluate component logs to the dashboard, the decision record and the report."""

    metrics: dict[str, float]
    report: EvaluationReport
    decision: Decision


@reports_errors
def run(
    model_path: str, test_path: str, spec_path: str, schema_path: str, store: str, model: str,
    thresholds: dict[str, Any], override_reason: str, decision_out: str, report_out: str, *,
    allow_target_change: bool = False, replace_default_rule: bool = False,
    change_bound: str = "estimate", confidence: float = 0.95, bootstrap_rounds: int = 1000,
    slices: Sequence[str] = (), min_slice_rows: int = 30, min_test_rows: int = 20, seed: int = 0,
) -> Evaluation:
    """The evaluate stage: candidate metrics, baseline re-scored fairly, decision and report."""
    import joblib

    from keel.registry import Registry
    from keel.storage import open_store

    spec = FeatureSpec.read(spec_path, stage="evaluate")
    schema = TableSchema.read(schema_path, stage="evaluate")
    slices = checked("slices", list(slices))
    rules = normalise_thresholds(thresholds, schema,
                                 checked("replace_default_rule", replace_default_rule), slices)
    rounds = checked("bootstrap_rounds", bootstrap_rounds)
    bound = checked("change_bound", change_bound, bootstrap_rounds=rounds)
    min_rows, seed = checked("min_test_rows", min_test_rows), checked("seed", seed)
    registry = Registry(open_store(checked("store", store)), checked("model_name", model))
    test = pd.read_parquet(test_path)
    candidate_model = joblib.load(model_path)
    predictions = predict(candidate_model, test, spec)
    metrics = metrics_of(predictions)
    compared = compare(
        registry, test, schema, predictions,
        allowed_change=checked("allow_target_change", allow_target_change),
        interval_metrics=[m for m, r in rules.items() if set(r) & set(CHANGE_RULES)],
        rounds=rounds, level=checked("confidence", confidence), seed=seed, min_rows=min_rows)
    gated = list(rules) or [primary_metric(schema)]
    if compared is not None and compared.comparable is not None:
        mask = compared.comparable
        pieces = slice_metrics(test[mask].reset_index(drop=True), predictions.take(mask),
                               compared.predictions, slices, gated)
    else:
        pieces = slice_metrics(test, predictions, None, slices, gated)
    decision = decide(
        metrics, compared.baseline if compared else None, rules, len(test),
        checked("override_reason", override_reason),
        comparison=compared.comparison if compared else None, slices=pieces,
        change_bound=bound, min_rows=min_rows,
        min_slice_rows=checked("min_slice_rows", min_slice_rows),
        per_class_metrics=per_class(predictions))
    decision.write(decision_out)
    report = evaluation_report(candidate_model, test, spec, predictions, primary_metric(schema),
                               seed)
    report.write(report_out)
    return Evaluation(metrics=metrics, report=report, decision=decision)
