"""Unit tests of keel.evaluate: metrics, curves, threshold checking and the decision record."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from keel.contracts import (
    SCHEMA_VERSION,
    Baseline,
    Check,
    ColumnInfo,
    Comparison,
    DataLineage,
    Decision,
    Environment,
    EvaluationReport,
    FeatureSpec,
    Interval,
    Lineage,
    Override,
    SliceMetrics,
    SplitRule,
    TableSchema,
    TrainRecord,
)
from keel.errors import ParameterError, RegistryError
from keel.evaluate import (
    Evaluation,
    check_thresholds,
    compare,
    decide,
    normalise_thresholds,
    primary_metric,
    run,
)
from keel.metrics import TASK_METRICS, metrics_of, predict
from keel.split import is_test
from keel.validate import schema_hash


class FixedModel:
    """A fitted model whose outputs are given: metrics can be checked by hand."""

    def __init__(self, classes=None, proba=None, predictions=None):
        self.classes_ = np.array(classes) if classes is not None else None
        self.proba = None if proba is None else np.asarray(proba, dtype=float)
        self.predictions = predictions

    def predict_proba(self, x):
        assert len(x) == len(self.proba)
        return self.proba

    def predict(self, x):
        if self.predictions is not None:
            return np.asarray(self.predictions)
        return self.classes_[self.proba.argmax(axis=1)]


def spec(task: str = "classification") -> FeatureSpec:
    return FeatureSpec(target="y", task=task, numeric=["x"], categorical=[], encoding="auto")


def table_schema(
    task: str = "classification",
    classes: Sequence[Any] = ("bad", "good"),
    numeric: Sequence[str] = ("x",),
    categorical: Sequence[str] = (),
    rows: int = 100,
) -> TableSchema:
    """A valid schema document for target ``y`` (``classes`` ignored for regression)."""
    regression = task == "regression"
    columns = [ColumnInfo(name=n, dtype="float64", kind="numeric", role="feature", missing=0,
                          unique=rows) for n in numeric]
    columns += [ColumnInfo(name=n, dtype="str", kind="categorical", role="feature", missing=0,
                           unique=3) for n in categorical]
    columns.append(ColumnInfo(name="y", dtype="float64" if regression else "str",
                              kind="numeric" if regression else "categorical", role="target",
                              missing=0, unique=rows if regression else len(classes)))
    return TableSchema(
        target="y", task=task, classes=None if regression else list(classes), rows_in=rows,
        rows_dropped_missing_target=0, rows=rows, infinite_values={},
        numeric_features=list(numeric), categorical_features=list(categorical), excluded={},
        columns=columns, schema_hash=schema_hash(columns),
    )


def frame(y) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(len(y), dtype=float), "y": y})


def binary_model(positive: list[float], classes=("bad", "good")) -> FixedModel:
    p = np.asarray(positive)
    return FixedModel(list(classes), np.column_stack([1 - p, p]))


def round_trips(record: Decision) -> Decision:
    """The record read back from its JSON: equal to the record, or the test fails."""
    again = Decision.from_json(record.to_json())
    assert again == record
    return again


# --- the primary metric -----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:R\\^2 score is not well-defined")
def test_a_metric_undefined_on_the_test_rows_is_left_out_of_the_record():
    # r2 of a single row is undefined (NaN): it must not reach the JSON decision record.
    result = metrics_of(predict(FixedModel(predictions=[4.0]), frame([3.0]), spec("regression")))
    assert "r2" not in result and "rmse" in result
    record = decide(result, None, {"r2": {"lower": 0.5}}, 1)
    assert record.passed is False and record.metrics == result
    round_trips(record)  # a NaN would be written as null and refused when read back


@pytest.mark.parametrize(
    ("schema", "expected"),
    [(table_schema("regression"), "rmse"),
     (table_schema(classes=["no", "yes"]), "roc_auc"),
     (table_schema(classes=[False, True]), "roc_auc"),
     (table_schema(classes=[1, 2, 3]), "f1_macro")],
)
def test_primary_metric(schema, expected):
    assert primary_metric(schema) == expected


# --- thresholds --------------------------------------------------------------------------------

BINARY = table_schema(classes=["bad", "good"])
MULTICLASS = table_schema(classes=["a", "b", "c"])
REGRESSION = table_schema("regression")
CLASSIFICATION_METRICS = ", ".join(sorted(TASK_METRICS["classification"]))
REGRESSION_METRICS = ", ".join(sorted(TASK_METRICS["regression"]))
RULES = "lower, upper, min_relative_change, min_absolute_change, max_slice_drop"


@pytest.mark.parametrize(
    ("schema", "metric"), [(BINARY, "roc_auc"), (REGRESSION, "rmse"), (MULTICLASS, "f1_macro")],
)
def test_no_thresholds_means_no_worse_than_production_on_the_primary_metric(schema, metric):
    assert normalise_thresholds({}, schema) == {metric: {"min_absolute_change": 0.0}}


def test_user_thresholds_add_to_the_default_rule_unless_it_is_replaced():
    given = {"accuracy": {"lower": 0.7}, "roc_auc": {"min_relative_change": 0.01}}
    assert normalise_thresholds(given, BINARY) == {
        "roc_auc": {"min_absolute_change": 0.0, "min_relative_change": 0.01},
        "accuracy": {"lower": 0.7}}
    # the same rule of the same metric: the user's value replaces the default's
    assert normalise_thresholds({"roc_auc": {"min_absolute_change": -0.01}}, BINARY) == {
        "roc_auc": {"min_absolute_change": -0.01}}
    assert normalise_thresholds(given, BINARY, replace_default_rule=True) == {
        "accuracy": {"lower": 0.7}, "roc_auc": {"min_relative_change": 0.01}}
    assert normalise_thresholds({}, BINARY, replace_default_rule=True) == {}
    record = decide({"roc_auc": 0.5}, baseline({"roc_auc": 0.9}), {}, ROWS)
    assert record.passed and "no gate rules" in record.notes[0]


def test_a_slice_rule_needs_slices_and_a_drop_of_zero_or_more():
    with pytest.raises(ParameterError, match="needs columns to slice by"):
        normalise_thresholds({"roc_auc": {"max_slice_drop": 0.05}}, BINARY)
    with pytest.raises(ParameterError, match="must be 0 or more"):
        normalise_thresholds({"roc_auc": {"max_slice_drop": -0.05}}, BINARY, slices=["c"])
    assert normalise_thresholds({"roc_auc": {"max_slice_drop": 0.05}}, BINARY, slices=["c"]) == {
        "roc_auc": {"min_absolute_change": 0.0, "max_slice_drop": 0.05}}


@pytest.mark.parametrize("given", [None, 0.7, [("roc_auc", {"lower": 0.7})]])
def test_thresholds_that_are_not_a_mapping_are_a_parameter_error(given):
    # The settings table checks the value: None is no longer read as "no thresholds".
    with pytest.raises(ParameterError) as caught:
        normalise_thresholds(given, BINARY)
    assert str(caught.value) == (
        f"[evaluate] The 'thresholds' parameter of evaluate must be a mapping of metric to "
        f"rules. Got {given!r}.")


def test_thresholds_are_converted_to_floats():
    given = {"rmse": {"upper": 10, "min_relative_change": "0.05"}, "r2": {"lower": 0}}
    rules = normalise_thresholds(given, REGRESSION, replace_default_rule=True)
    assert rules == {"rmse": {"upper": 10.0, "min_relative_change": 0.05}, "r2": {"lower": 0.0}}
    assert all(type(v) is float for metric in rules.values() for v in metric.values())


def test_unknown_metric_is_a_parameter_error():
    with pytest.raises(ParameterError) as caught:
        normalise_thresholds({"auc": {"lower": 0.7}}, BINARY)
    message = str(caught.value)
    assert message.startswith("[evaluate] ")
    assert "'thresholds'" in message and "unknown metric 'auc'" in message
    assert f"expected one of {CLASSIFICATION_METRICS}." in message


def test_unknown_metric_is_refused_before_the_task_is_known():
    with pytest.raises(ParameterError) as caught:
        check_thresholds({"auc": {"lower": 0.7}})
    message = str(caught.value)
    assert "unknown metric 'auc'" in message and "does not compute" not in message
    everything = ", ".join(sorted(TASK_METRICS["classification"] + TASK_METRICS["regression"]))
    assert f"expected one of {everything}." in message


@pytest.mark.parametrize(
    ("schema", "metric", "task", "expected"),
    [(BINARY, "rmse", "classification", CLASSIFICATION_METRICS),
     (MULTICLASS, "r2", "classification", CLASSIFICATION_METRICS),
     (REGRESSION, "roc_auc", "regression", REGRESSION_METRICS),
     (REGRESSION, "log_loss", "regression", REGRESSION_METRICS)],
)
def test_a_metric_the_task_does_not_compute_is_a_parameter_error(schema, metric, task, expected):
    for refuse in (lambda t: normalise_thresholds(t, schema),
                   lambda t: check_thresholds(t, task)):
        with pytest.raises(ParameterError) as caught:
            refuse({metric: {"lower": 0.5}})
        message = str(caught.value)
        assert message == (
            f"[evaluate] The 'thresholds' parameter of evaluate names metric {metric!r}, which "
            f"{task} does not compute; expected one of {expected}.")


def test_before_the_task_is_known_any_tasks_metric_is_accepted():
    given = {"rmse": {"upper": 3}, "roc_auc": {"lower": 0.7}}
    assert check_thresholds(given) == check_thresholds(given, "auto") == {
        "rmse": {"upper": 3.0}, "roc_auc": {"lower": 0.7}}


@pytest.mark.parametrize(("schema", "metric"), [(BINARY, "roc_auc"), (REGRESSION, "rmse")])
def test_a_metric_with_no_rules_is_a_parameter_error(schema, metric):
    # An empty mapping would check nothing while looking like a gate.
    with pytest.raises(ParameterError) as caught:
        normalise_thresholds({metric: {}}, schema)
    assert str(caught.value) == (
        f"[evaluate] The thresholds of {metric!r} must be a mapping with keys among {RULES}. "
        "Got {}.")
    with pytest.raises(ParameterError):
        check_thresholds({metric: {}})


@pytest.mark.parametrize("rules", [{"minimum": 0.7}, {"lower": 0.7, "relative": 0.1}, 0.7,
                                   [0.7]])
def test_unknown_rule_is_a_parameter_error(rules):
    with pytest.raises(ParameterError) as caught:
        normalise_thresholds({"roc_auc": rules}, BINARY)
    message = str(caught.value)
    assert message.startswith("[evaluate] ")
    assert "'roc_auc'" in message and RULES in message
    assert repr(rules) in message


@pytest.mark.parametrize("value", ["high", None, [0.7], float("nan"), float("inf"), "nan", True])
def test_non_number_threshold_is_a_parameter_error(value):
    with pytest.raises(ParameterError) as caught:
        normalise_thresholds({"roc_auc": {"lower": value}}, BINARY)
    message = str(caught.value)
    assert message.startswith("[evaluate] ")
    assert "'lower'" in message and "'roc_auc'" in message and "finite number" in message
    assert f"Got {value!r}" in message


# --- decide ------------------------------------------------------------------------------------


ROWS = 200  # the test rows a decision records


def baseline(metrics: dict[str, float] | None, error: str | None = None) -> Baseline:
    return Baseline(version=3, generation=7, metrics=metrics, error=error)


def only(record: Decision, check: str) -> Check:
    (found,) = [c for c in record.checks if c.check == check]
    return found


def test_first_run_skips_change_checks_and_says_so():
    rules = {"roc_auc": {"min_absolute_change": 0.0, "min_relative_change": 0.02}}

    record = decide({"roc_auc": 0.61}, None, rules, ROWS)

    assert isinstance(record, Decision)
    assert record.passed is True and record.first_run is True
    assert record.checks == [] and record.baseline is None
    assert record.notes == [
        "first run: no production model, so the change and slice thresholds on roc_auc do not "
        "apply"]
    assert record.override is None and record.thresholds == rules
    assert record.metrics == {"roc_auc": 0.61} and record.test_rows == ROWS
    round_trips(record)


def test_first_run_still_applies_value_thresholds():
    record = decide({"roc_auc": 0.61}, None, {"roc_auc": {"lower": 0.7,
                                                           "min_absolute_change": 0.0}}, ROWS)
    assert record.passed is False
    assert only(record, "lower") == Check(metric="roc_auc", check="lower", candidate=0.61,
                                          baseline=None, threshold=None, required=0.7,
                                          passed=False, note=None)
    assert len(record.notes) == 1


@pytest.mark.parametrize(
    ("metric", "rule", "bound", "value", "passes"),
    [("roc_auc", "lower", 0.8, 0.8, True), ("roc_auc", "lower", 0.8, 0.79, False),
     ("rmse", "upper", 12.5, 12.5, True), ("rmse", "upper", 12.5, 12.6, False),
     ("r2", "lower", 0.0, -0.1, False), ("mae", "upper", 3.0, 2.0, True)],
)
def test_value_thresholds(metric, rule, bound, value, passes):
    record = decide({metric: value}, baseline({metric: value}), {metric: {rule: bound}}, ROWS)
    check = only(record, rule)
    assert (check.candidate, check.required, check.passed) == (value, bound, passes)
    assert record.passed is passes and record.first_run is False


@pytest.mark.parametrize(
    ("candidate", "passes"), [(0.75, True), (0.76, True), (0.7499, False)],
)
def test_relative_change_for_higher_is_better(candidate, passes):
    record = decide({"roc_auc": candidate}, baseline({"roc_auc": 0.5}),
                    {"roc_auc": {"min_relative_change": 0.5}}, ROWS)
    check = only(record, "relative_change")
    assert check.required == 0.75  # 0.5 * (1 + 0.5)
    assert (check.baseline, check.threshold, check.candidate) == (0.5, 0.5, candidate)
    assert check.passed is passes and record.passed is passes


@pytest.mark.parametrize(("candidate", "passes"), [(9.0, True), (8.5, True), (9.01, False)])
def test_relative_change_for_lower_is_better(candidate, passes):
    record = decide({"rmse": candidate}, baseline({"rmse": 10.0}),
                    {"rmse": {"min_relative_change": 0.1}}, ROWS)
    check = only(record, "relative_change")
    assert check.required == 9.0  # 10 * (1 - 0.1)
    assert check.passed is passes and record.passed is passes


def test_relative_change_on_a_negative_baseline_still_asks_for_better():
    rules = {"r2": {"min_relative_change": 0.5}}
    worse = decide({"r2": -0.3}, baseline({"r2": -0.2}), rules, ROWS)
    better = decide({"r2": -0.1}, baseline({"r2": -0.2}), rules, ROWS)
    assert only(worse, "relative_change").required == pytest.approx(-0.1)
    assert worse.passed is False
    assert better.passed is True


@pytest.mark.parametrize(
    ("metric", "base", "change", "required", "candidate", "passes"),
    [("roc_auc", 0.5, 0.25, 0.75, 0.75, True), ("roc_auc", 0.5, 0.25, 0.75, 0.7, False),
     ("roc_auc", 0.5, 0.0, 0.5, 0.5, True), ("roc_auc", 0.5, -0.25, 0.25, 0.3, True),
     ("rmse", 10.0, 0.5, 9.5, 9.5, True), ("rmse", 10.0, 0.5, 9.5, 9.75, False),
     ("rmse", 10.0, 0.0, 10.0, 10.25, False), ("log_loss", 0.5, 0.25, 0.25, 0.25, True)],
)
def test_absolute_change(metric, base, change, required, candidate, passes):
    record = decide({metric: candidate}, baseline({metric: base}),
                    {metric: {"min_absolute_change": change}}, ROWS)
    check = only(record, "absolute_change")
    assert check == Check(metric=metric, check="absolute_change", candidate=candidate,
                          baseline=base, threshold=change, required=required, passed=passes)
    assert record.passed is passes


def test_every_check_must_pass():
    rules = {"roc_auc": {"lower": 0.7, "min_absolute_change": 0.0},
             "accuracy": {"lower": 0.9}}
    record = decide({"roc_auc": 0.8, "accuracy": 0.85}, baseline({"roc_auc": 0.75}), rules, ROWS)
    assert [(c.metric, c.check, c.passed) for c in record.checks] == [
        ("roc_auc", "lower", True), ("roc_auc", "absolute_change", True),
        ("accuracy", "lower", False)]
    assert record.passed is False


def test_a_metric_the_task_does_not_compute_fails_with_a_note():
    record = decide({"rmse": 1.0, "mae": 0.5, "r2": 0.9}, None, {"roc_auc": {"lower": 0.5}}, ROWS)
    check = only(record, "available")
    assert check.passed is False and check.candidate is None and check.required is None
    assert check.note.startswith("roc_auc is not computed for this task")
    assert record.passed is False


def test_a_baseline_that_could_not_be_scored_fails_the_change_check_with_a_note():
    broken = baseline(None, error="ValueError: columns are missing: ['age']")
    record = decide({"roc_auc": 0.9}, broken, {"roc_auc": {"min_absolute_change": 0.0}}, ROWS)

    check = only(record, "baseline")
    assert check.passed is False and check.candidate == 0.9 and check.required is None
    assert check.note == ("production version 3 could not be scored: "
                          "ValueError: columns are missing: ['age']")
    assert record.passed is False and record.first_run is False
    assert record.baseline == broken
    assert round_trips(record).baseline == broken


def test_a_baseline_without_the_metric_fails_the_change_check():
    record = decide({"f1_macro": 0.9}, baseline({"accuracy": 0.8}),
                    {"f1_macro": {"min_relative_change": 0.0}}, ROWS)
    assert only(record, "baseline").note.endswith("could not be scored: metric missing")
    assert record.passed is False


def test_override_passes_a_failed_gate_and_is_recorded():
    record = decide({"rmse": 12.0}, baseline({"rmse": 10.0}),
                    {"rmse": {"min_absolute_change": 0.0}}, ROWS,
                    override_reason="  hotfix for the new data feed, approved by J. Doe  ")

    assert record.passed is True
    assert record.override == Override(reason="hotfix for the new data feed, approved by J. Doe",
                                       checks_passed=False)
    assert only(record, "absolute_change").passed is False
    assert record.notes == ["manual override: hotfix for the new data feed, approved by J. Doe"]
    round_trips(record)


def test_an_override_of_a_passing_gate_records_that_the_checks_passed():
    record = decide({"rmse": 9.0}, baseline({"rmse": 10.0}),
                    {"rmse": {"min_absolute_change": 0.0}}, ROWS, "release 2.1")
    assert record.passed is True
    assert record.override == Override(reason="release 2.1", checks_passed=True)


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_blank_override_reason_is_no_override(reason):
    record = decide({"rmse": 12.0}, baseline({"rmse": 10.0}),
                    {"rmse": {"min_absolute_change": 0.0}}, ROWS, override_reason=reason)
    assert record.passed is False and record.override is None and record.notes == []


def test_decision_record_is_strict_json_with_every_field():
    rules = normalise_thresholds({"roc_auc": {"lower": 0.6, "min_relative_change": 0.01,
                                              "min_absolute_change": 0.0},
                                  "log_loss": {"upper": 0.7}}, BINARY)
    candidate = {"roc_auc": 0.82, "log_loss": 0.41, "accuracy": 0.8}
    record = decide(candidate, baseline({"roc_auc": 0.8, "log_loss": 0.45}), rules, ROWS)
    document = json.loads(record.to_json(), parse_constant=lambda name: pytest.fail(name))
    assert document == record.to_dict()
    assert set(document) == {"schema_version", "passed", "checks", "baseline", "first_run",
                             "thresholds", "override", "notes", "metrics", "test_rows",
                             "comparison", "per_class", "slices"}
    assert document["schema_version"] == SCHEMA_VERSION
    assert document["metrics"] == candidate and document["test_rows"] == ROWS
    assert [c["check"] for c in document["checks"]] == [
        "lower", "relative_change", "absolute_change", "upper"]
    assert record.passed is True


SCORED = baseline({"roc_auc": 0.8, "accuracy": 0.75})
UNSCORED = baseline(None, error="ValueError: columns are missing: ['age']")


@pytest.mark.parametrize(
    ("candidate", "production", "rules", "override_reason"),
    [({"roc_auc": 0.82}, None, {"roc_auc": {"lower": 0.7, "min_absolute_change": 0.0}}, ""),
     ({"roc_auc": 0.82}, SCORED, {"roc_auc": {"lower": 0.7, "min_relative_change": 0.01}}, ""),
     ({"roc_auc": 0.79}, SCORED, {"roc_auc": {"min_absolute_change": 0.0}}, "approved"),
     ({"roc_auc": 0.82}, UNSCORED, {"roc_auc": {"min_absolute_change": 0.0}}, ""),
     ({"roc_auc": 0.82}, UNSCORED, {"roc_auc": {"min_absolute_change": 0.0}}, "approved"),
     ({"rmse": 1.5}, None, {"roc_auc": {"lower": 0.5}}, "")],
    ids=["first-run", "scored-baseline", "override", "unscored-baseline",
         "unscored-baseline-override", "metric-not-computed"],
)
def test_the_decision_round_trips_through_json(tmp_path, candidate, production, rules,
                                               override_reason):
    record = decide(candidate, production, rules, ROWS, override_reason)

    again = round_trips(record)
    assert again.baseline == production and again.metrics == candidate
    assert again.test_rows == ROWS and again.checks == record.checks
    record.write(tmp_path / "decision.json")
    assert Decision.read(tmp_path / "decision.json", stage="publish") == record


def test_an_unscored_baseline_is_written_with_null_metrics_and_its_error():
    record = decide({"roc_auc": 0.82}, UNSCORED, {"roc_auc": {"min_absolute_change": 0.0}}, ROWS)
    written = json.loads(record.to_json())["baseline"]
    assert written == {"version": 3, "generation": 7, "metrics": None,
                       "error": "ValueError: columns are missing: ['age']", "not_compared": None}
    again = round_trips(record)
    assert again.baseline.metrics is None and again.baseline.error == UNSCORED.error
    assert again.passed is False


@pytest.mark.parametrize("test_rows", [-1, 1.5, "200"])
def test_a_decision_needs_a_count_of_test_rows(test_rows):
    with pytest.raises(ValueError, match="test_rows"):  # pydantic's ValidationError
        decide({"roc_auc": 0.82}, None, {"roc_auc": {"lower": 0.7}}, test_rows)


# --- the baseline, re-scored on the rows it never trained on -----------------------------------


RULE = SplitRule(method="hash", test_size=0.3, columns=["c", "x", "y"], salt="keel")


def holdout_rows(n: int, seed: int, rule: SplitRule = RULE) -> pd.DataFrame:
    """Rows that ``rule`` puts in the test split (what preprocess would hand evaluate)."""
    rows = credit_rows(n, seed)
    return rows[is_test(rows, rule)].reset_index(drop=True)


def test_no_production_model_means_no_baseline(tmp_path):
    from keel.registry import Registry
    from keel.storage import open_store

    registry = Registry(open_store(str(tmp_path)), "credit")
    candidate = predict(binary_model([0.2, 0.8]), frame(["bad", "good"]), spec())
    assert compare(registry, frame(["bad", "good"]), BINARY, candidate) is None


def test_the_baseline_is_scored_on_the_same_comparable_rows_with_intervals(tmp_path):
    schema = table_schema(classes=["bad", "good"], numeric=["x"], categorical=["c"], rows=400)
    store = tmp_path / "store"
    production = fitted(tmp_path / "v1", schema, credit_rows(400, seed=1))
    decision = decide({"roc_auc": 0.8}, None, {"roc_auc": {"lower": 0.5}}, 10)
    generation = publish_and_promote(store, production, decision)
    candidate = fitted(tmp_path / "v2", schema, credit_rows(400, seed=4))
    test = holdout_rows(600, seed=2)
    mine = predict(candidate["model"], test, candidate["spec"])
    registry = registry_at(store)

    compared = compare(registry, test, schema, mine, interval_metrics=["roc_auc"], rounds=200,
                       level=0.9, seed=3, min_rows=20)

    theirs = metrics_of(predict(production["model"], test, production["spec"]))
    assert compared.baseline == Baseline(version=1, generation=generation, metrics=theirs)
    comparison = compared.comparison
    assert (comparison.rows, comparison.excluded, comparison.reason) == (len(test), 0, "")
    assert comparison.candidate == metrics_of(mine)
    interval = comparison.intervals["roc_auc"]
    assert (interval.level, interval.rounds) == (0.9, 200)
    assert interval.low <= comparison.candidate["roc_auc"] - theirs["roc_auc"] <= interval.high
    again = compare(registry, test, schema, mine, interval_metrics=["roc_auc"], rounds=200,
                    level=0.9, seed=3, min_rows=20)
    assert again.comparison == comparison  # seeded: the same interval every time


def test_rows_production_trained_on_are_left_out_of_both_scores(tmp_path):
    schema = table_schema(classes=["bad", "good"], numeric=["x"], categorical=["c"], rows=400)
    store = tmp_path / "store"
    production = fitted(tmp_path / "v1", schema, credit_rows(400, seed=1))
    old_rule = RULE.model_copy(update={"salt": "last year"})
    decision = decide({"roc_auc": 0.8}, None, {"roc_auc": {"lower": 0.5}}, 10)
    publish_and_promote(store, production, decision, rule=old_rule)
    test = holdout_rows(900, seed=2)  # this run's rule: another salt
    mine = predict(production["model"], test, production["spec"])

    compared = compare(registry_at(store), test, schema, mine)

    trained = ~is_test(test, old_rule)
    assert 0 < trained.sum() < len(test)
    assert (compared.comparable == ~trained).all()
    assert compared.comparison.rows == (~trained).sum()
    assert compared.comparison.excluded == trained.sum()
    assert "training side of production version 1's split" in compared.comparison.reason
    kept = test[~trained].reset_index(drop=True)
    assert compared.baseline.metrics == metrics_of(predict(production["model"], kept,
                                                           production["spec"]))
    assert compared.comparison.candidate == compared.baseline.metrics  # same model, same rows


def test_too_few_comparable_rows_fail_the_change_checks_with_the_reason():
    comparison = Comparison(rows=7, excluded=193, reason="on the training side of ...",
                            candidate={"roc_auc": 0.9})
    record = decide({"roc_auc": 0.9}, baseline({"roc_auc": 0.8}),
                    {"roc_auc": {"min_absolute_change": 0.0, "lower": 0.5}}, ROWS,
                    comparison=comparison, min_rows=20)
    assert not record.passed
    check = only(record, "comparable_rows")
    assert check.rows == 7 and "only 7 of 200 test rows" in check.note
    assert "at least 20 needed" in check.note and "on the training side" in check.note
    assert only(record, "lower").passed  # value thresholds still judge all test rows
    assert "193 of 200 test rows left out" in record.notes[0]
    round_trips(record)


@pytest.mark.parametrize(("metric", "low", "high", "passes"), [
    ("roc_auc", 0.001, 0.05, True), ("roc_auc", -0.001, 0.05, False),
    ("rmse", -2.0, -0.5, True), ("rmse", -2.0, 0.1, False)])
def test_change_on_the_interval_needs_its_conservative_end_to_clear_the_bar(metric, low, high,
                                                                             passes):
    values = {"roc_auc": (0.82, 0.80), "rmse": (9.0, 10.0)}[metric]
    comparison = Comparison(rows=100, excluded=0, candidate={metric: values[0]},
                            intervals={metric: Interval(low=low, high=high, level=0.95,
                                                        rounds=1000)})
    rules = {metric: {"min_absolute_change": 0.0}}
    estimate = decide({metric: values[0]}, baseline({metric: values[1]}), rules, ROWS,
                      comparison=comparison)
    bound = decide({metric: values[0]}, baseline({metric: values[1]}), rules, ROWS,
                   comparison=comparison, change_bound="interval")
    assert estimate.passed  # the point estimate is better either way
    assert bound.passed is passes
    check = only(bound, "absolute_change")
    assert check.interval == comparison.intervals[metric] and "interval's" in check.note
    round_trips(bound)


def test_change_on_the_interval_without_an_interval_fails():
    comparison = Comparison(rows=100, excluded=0, candidate={"roc_auc": 0.9})
    record = decide({"roc_auc": 0.9}, baseline({"roc_auc": 0.8}),
                    {"roc_auc": {"min_absolute_change": 0.0}}, ROWS, comparison=comparison,
                    change_bound="interval")
    assert not record.passed and "no bootstrap interval" in record.checks[0].note


def test_the_change_checks_compare_on_the_comparable_rows_not_all_test_rows():
    comparison = Comparison(rows=100, excluded=100, reason="r", candidate={"roc_auc": 0.70})
    record = decide({"roc_auc": 0.95}, baseline({"roc_auc": 0.75}),
                    {"roc_auc": {"min_absolute_change": 0.0}}, ROWS, comparison=comparison)
    check = only(record, "absolute_change")
    assert (check.candidate, check.baseline, check.rows) == (0.70, 0.75, 100)
    assert not record.passed


def test_a_slice_worse_than_production_by_more_than_the_drop_fails_the_gate():
    slices = [
        SliceMetrics(column="home", value="rent", rows=80, candidate={"roc_auc": 0.70},
                     baseline={"roc_auc": 0.80}),
        SliceMetrics(column="home", value="own", rows=120, candidate={"roc_auc": 0.90},
                     baseline={"roc_auc": 0.80}),
        SliceMetrics(column="home", value="(missing)", rows=5, candidate={"roc_auc": 0.1},
                     baseline={"roc_auc": 0.9}),  # too small to gate
    ]
    comparison = Comparison(rows=205, excluded=0, candidate={"roc_auc": 0.85})
    rules = {"roc_auc": {"min_absolute_change": 0.0, "max_slice_drop": 0.05}}
    record = decide({"roc_auc": 0.85}, baseline({"roc_auc": 0.80}), rules, 205,
                    comparison=comparison, slices=slices, min_slice_rows=30)
    assert only(record, "absolute_change").passed  # better overall ...
    drops = [c for c in record.checks if c.check == "slice_drop"]
    assert [(c.slice, c.passed) for c in drops] == [("home=rent", False), ("home=own", True)]
    assert drops[0].required == pytest.approx(0.75) and drops[0].rows == 80
    assert record.passed is False  # ... but clearly worse on renters
    assert record.slices == slices
    loose = decide({"roc_auc": 0.85}, baseline({"roc_auc": 0.80}),
                   {"roc_auc": {"max_slice_drop": 0.2}}, 205, comparison=comparison,
                   slices=slices, min_slice_rows=30)
    assert loose.passed
    round_trips(record)


def test_a_first_run_reports_slices_without_gating_them():
    slices = [SliceMetrics(column="home", value="rent", rows=80, candidate={"roc_auc": 0.7})]
    record = decide({"roc_auc": 0.85}, None, {"roc_auc": {"max_slice_drop": 0.01}}, 80,
                    slices=slices)
    assert record.passed and record.slices == slices
    assert "change and slice thresholds on roc_auc do not apply" in record.notes[0]


def test_a_baseline_that_fails_to_score_is_reported_not_raised(tmp_path):
    store = tmp_path / "store"
    old_schema = table_schema(classes=["bad", "good"], numeric=["x_old"], rows=400)
    old_rows = credit_rows(400, seed=1).rename(columns={"x": "x_old"})
    production = fitted(tmp_path / "v1", old_schema, old_rows)
    decision = decide({"roc_auc": 0.8}, None, {"roc_auc": {"lower": 0.5}}, 10)
    publish_and_promote(store, production, decision)
    test = holdout_rows(300, seed=2)
    mine = predict(binary_model([0.5] * len(test)), test, spec())
    result = compare(registry_at(store), test, BINARY, mine)
    assert (result.baseline.version, result.baseline.metrics) == (1, None)
    assert result.baseline.error == (
        "this table lacks column(s) 'x_old' that production version 1 was trained on")
    assert Baseline.from_json(result.baseline.to_json()) == result.baseline


def test_a_missing_or_damaged_production_alias_stops_the_run(tmp_path):
    from keel.registry import MissingAlias

    schema = table_schema(classes=["bad", "good"], numeric=["x"], categorical=["c"], rows=400)
    store = tmp_path / "store"
    production = fitted(tmp_path / "v1", schema, credit_rows(400, seed=1))
    decision = decide({"roc_auc": 0.8}, None, {"roc_auc": {"lower": 0.5}}, 10)
    publish_and_promote(store, production, decision)
    (store / "registry/credit/aliases/production.json").unlink()
    test = holdout_rows(300, seed=2)
    with pytest.raises(MissingAlias):
        compare(registry_at(store), test, schema, predict(production["model"], test,
                                                            production["spec"]))


def test_an_unpicklable_production_model_in_a_real_store_stops_the_run(tmp_path):
    from keel.registry import MODEL_FILE, Registry
    from keel.storage import open_store

    schema = table_schema(classes=["bad", "good"], numeric=["x"], categorical=["c"], rows=400)
    made = fitted(tmp_path / "v1", schema, credit_rows(400, seed=1))
    made["paths"]["model"].write_bytes(b"not a pickle")  # registered as is: its sha256 matches
    decision = decide({"roc_auc": 0.8}, None, {"roc_auc": {"lower": 0.5}}, 10)
    registry = Registry(open_store(str(tmp_path / "store")), "credit")
    registry.publish({MODEL_FILE: made["paths"]["model"]}, lineage_of(made, decision))
    registry.move_alias(1, expected_generation=0, action="promote", reason="test")
    test = holdout_rows(300, seed=2)
    mine = predict(binary_model([0.5] * len(test)), test, spec())
    with pytest.raises(RegistryError, match="cannot be loaded here"):
        compare(registry, test, schema, mine)


def registry_at(store: Path) -> Any:
    from keel.registry import Registry
    from keel.storage import open_store

    return Registry(open_store(str(store)), "credit")


@pytest.mark.parametrize("estimator", ["linear", "random_forest", "hist_gradient_boosting"])
def test_predictions_from_probabilities_equal_the_estimators_predict(estimator):
    from keel.preprocess import feature_spec
    from keel.train import train

    rng = np.random.default_rng(0)
    data = pd.DataFrame({"x": rng.normal(size=300), "c": rng.choice(["a", "b", "c"], 300)})
    data["y"] = np.where(data.x + (data.c == "a") > 0.3, "hi", np.where(data.x < -0.5, "lo", "mid"))
    schema = table_schema(classes=["hi", "lo", "mid"], numeric=["x"], categorical=["c"], rows=300)
    model, _ = train(data, feature_spec(schema), estimator, {}, seed=0)
    predictions = predict(model, data, feature_spec(schema))
    assert (predictions.pred == model.predict(data[["x", "c"]])).all()


# --- the evaluate stage, against a real registry -----------------------------------------------


def credit_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame({"x": rng.normal(size=n), "c": rng.choice(["a", "b", "c"], n)})
    data["y"] = np.where(data.x + (data.c == "a") + rng.normal(scale=0.5, size=n) > 0.3,
                         "good", "bad")
    return data


def saved(path: Path, rows: pd.DataFrame) -> Path:
    rows.to_parquet(path, index=False)
    return path


def fitted(folder: Path, schema: TableSchema, train_rows: pd.DataFrame) -> dict[str, Any]:
    """Train a model as the pipeline does and save what evaluate reads: model, spec, schema."""
    import joblib

    from keel.preprocess import feature_spec
    from keel.train import train

    folder.mkdir(parents=True, exist_ok=True)
    features = feature_spec(schema)
    model, record = train(train_rows, features, "linear", {}, seed=0)
    paths = {"model": folder / "model.joblib", "spec": folder / "feature_spec.json",
             "schema": folder / "schema.json"}
    joblib.dump(model, paths["model"])
    features.write(paths["spec"])
    schema.write(paths["schema"])
    return {"model": model, "record": record, "spec": features, "schema": schema,
            "paths": paths}


def lineage_of(made: dict[str, Any], decision: Decision, rule: SplitRule | None = RULE
               ) -> Lineage:
    """The lineage publish would record for ``made`` (see keel.publish.run)."""
    schema: TableSchema = made["schema"]
    record: TrainRecord = made["record"]
    return Lineage(
        data=DataLineage(source="data/credit.csv", format="csv", data_version="0" * 64,
                         rows=schema.rows_in, columns=[c.name for c in schema.columns],
                         snapshot="data/" + "0" * 64 + "/snapshot.parquet", rows_used=schema.rows,
                         rows_dropped_missing_target=schema.rows_dropped_missing_target),
        schema_hash=schema.schema_hash, task=schema.task, target=schema.target,
        features=made["spec"], excluded_columns=schema.excluded, training=record, split=rule,
        hyperparameters=record.params, metrics=decision.metrics, baseline=decision.baseline,
        decision=decision,
        environment=Environment(keel="0.0.0", git_commit="unknown", python="3.11",
                                scikit_learn="1.0", images={}, ran_in_image=None),
        run_id="test-run",
    )


def evaluate_stage(made: dict[str, Any], test_path: Path, store: Path, out: Path,
                   thresholds: dict[str, Any] | None = None, override_reason: str = "",
                   **settings: Any) -> Evaluation:
    paths = made["paths"]
    return run(str(paths["model"]), str(test_path), str(paths["spec"]), str(paths["schema"]),
               str(store), "credit", {} if thresholds is None else thresholds, override_reason,
               str(out), str(out.with_suffix(".report.json")),
               **{"bootstrap_rounds": 200, **settings})


def publish_and_promote(store: Path, made: dict[str, Any], decision: Decision,
                        rule: SplitRule | None = RULE) -> int:
    from keel.registry import MODEL_FILE, Registry
    from keel.storage import open_store

    registry = Registry(open_store(str(store)), "credit")
    paths = made["paths"]
    manifest = registry.publish({MODEL_FILE: paths["model"], "schema.json": paths["schema"],
                                 "feature_spec.json": paths["spec"]},
                                lineage_of(made, decision, rule))
    registry.move_alias(manifest.version, expected_generation=registry.alias().generation,
                        action="promote", reason="test")
    return registry.alias().generation


def test_run_on_a_new_model_is_a_first_run_and_writes_the_decision(tmp_path):
    schema = table_schema(classes=["bad", "good"], numeric=["x"], categorical=["c"], rows=400)
    made = fitted(tmp_path / "candidate", schema, credit_rows(400, seed=1))
    test = credit_rows(120, seed=2)

    result = evaluate_stage(made, saved(tmp_path / "test.parquet", test), tmp_path / "store",
                            tmp_path / "decision.json", slices=["c"])

    assert isinstance(result, Evaluation)
    assert result.metrics == metrics_of(predict(made["model"], test, made["spec"]))
    assert result.report.labels == ["bad", "good"] and "roc" in result.report.curves
    assert EvaluationReport.read(tmp_path / "decision.report.json") == result.report
    decision = result.decision
    assert {s.value for s in decision.slices} == {"a", "b", "c"}
    assert all(s.baseline is None for s in decision.slices)
    assert set(decision.per_class) == {"bad", "good"}
    assert decision.first_run is True and decision.baseline is None and decision.passed is True
    assert decision.thresholds == {"roc_auc": {"min_absolute_change": 0.0}}
    assert decision.metrics == result.metrics and decision.test_rows == 120
    assert Decision.read(tmp_path / "decision.json", stage="publish") == decision


def test_run_rescores_the_production_model_on_this_runs_test_rows(tmp_path):
    schema = table_schema(classes=["bad", "good"], numeric=["x"], categorical=["c"], rows=400)
    store = tmp_path / "store"
    production = fitted(tmp_path / "v1", schema, credit_rows(400, seed=1))
    first = evaluate_stage(production, saved(tmp_path / "old.parquet", credit_rows(100, 3)),
                           store, tmp_path / "d1.json")
    generation = publish_and_promote(store, production, first.decision)

    candidate = fitted(tmp_path / "v2", schema, credit_rows(400, seed=4))
    test = holdout_rows(400, seed=2)
    test_path = saved(tmp_path / "test.parquet", test)
    rules = {"roc_auc": {"min_relative_change": 0.5}}
    result = evaluate_stage(candidate, test_path, store, tmp_path / "d2.json", thresholds=rules,
                            replace_default_rule=True)

    decision = result.decision
    rescored = metrics_of(predict(production["model"], test, production["spec"]))
    assert rescored != first.metrics  # so the baseline cannot come from the stored number
    assert decision.baseline == Baseline(version=1, generation=generation, metrics=rescored)
    assert decision.first_run is False
    assert decision.comparison.rows == len(test) and decision.comparison.excluded == 0
    assert decision.comparison.intervals["roc_auc"].rounds == 200
    (check,) = decision.checks
    assert (check.metric, check.check, check.baseline) == ("roc_auc", "relative_change",
                                                           rescored["roc_auc"])
    assert check.candidate == result.metrics["roc_auc"]
    assert check.required == pytest.approx(rescored["roc_auc"] * 1.5)
    assert check.required > 1.0  # a roc_auc 50% better than production's: out of reach
    assert check.passed is False and decision.passed is False
    assert Decision.read(tmp_path / "d2.json") == decision

    overridden = evaluate_stage(candidate, test_path, store, tmp_path / "d3.json",
                                thresholds=rules, override_reason=" approved by J. Doe ",
                                replace_default_rule=True)
    assert overridden.decision.passed is True
    assert overridden.decision.override == Override(reason="approved by J. Doe",
                                                    checks_passed=False)
    assert overridden.decision.checks == decision.checks
    assert Decision.read(tmp_path / "d3.json") == overridden.decision


def test_run_with_a_production_model_it_cannot_score_fails_the_gate_with_the_reason(tmp_path):
    store = tmp_path / "store"
    old_schema = table_schema(classes=["bad", "good"], numeric=["x_old"], rows=400)
    old_rows = credit_rows(400, seed=1).rename(columns={"x": "x_old"})
    production = fitted(tmp_path / "v1", old_schema, old_rows)
    first = evaluate_stage(production, saved(tmp_path / "old.parquet", old_rows), store,
                           tmp_path / "d1.json")
    rule = RULE
    publish_and_promote(store, production, first.decision, rule=rule)

    schema = table_schema(classes=["bad", "good"], numeric=["x"], categorical=["c"], rows=400)
    candidate = fitted(tmp_path / "v2", schema, credit_rows(400, seed=4))
    result = evaluate_stage(candidate, saved(tmp_path / "test.parquet",
                                             holdout_rows(300, 2, rule=rule)),
                            store, tmp_path / "d2.json")

    decision = result.decision
    assert decision.baseline.version == 1 and decision.baseline.metrics is None
    assert "x_old" in decision.baseline.error
    assert [(c.check, c.passed) for c in decision.checks] == [("baseline", False)]
    assert decision.passed is False
    written = Decision.read(tmp_path / "d2.json")
    assert written == decision and written.baseline.error == decision.baseline.error



def segmented(n_a: int, n_b: int, seed: int, scramble_b: bool = False) -> pd.DataFrame:
    """Segment a's class follows x, segment b's follows z: one model can be good on a only."""
    rng = np.random.default_rng(seed)
    segment = np.array(["a"] * n_a + ["b"] * n_b)
    x, z = rng.normal(size=n_a + n_b), rng.normal(size=n_a + n_b)
    signal = np.where(segment == "a", x, z) + rng.normal(scale=0.6, size=n_a + n_b)
    y = np.where(signal > 0, "good", "bad")
    if scramble_b:
        y[segment == "b"] = rng.permutation(y[segment == "b"])
    return pd.DataFrame({"x": x, "z": z, "c": segment, "y": y})


def test_a_challenger_better_overall_but_worse_on_a_slice_is_rejected_by_a_slice_rule(tmp_path):
    schema = table_schema(classes=["bad", "good"], numeric=["x", "z"], categorical=["c"],
                          rows=3000)
    store = tmp_path / "store"
    # production: little of segment a, all it needs of b; the challenger: the reverse
    production = fitted(tmp_path / "v1", schema, segmented(60, 600, seed=1))
    publish_and_promote(store, production,
                        decide({"roc_auc": 0.8}, None, {"roc_auc": {"lower": 0.5}}, 10))
    challenger = fitted(tmp_path / "v2", schema, segmented(3000, 600, seed=2, scramble_b=True))
    test = segmented(1700, 300, seed=4)
    test = test[is_test(test, RULE)].reset_index(drop=True)
    test_path = saved(tmp_path / "test.parquet", test)

    plain = evaluate_stage(challenger, test_path, store, tmp_path / "d1.json", slices=["c"])
    sliced = evaluate_stage(challenger, test_path, store, tmp_path / "d2.json", slices=["c"],
                            thresholds={"roc_auc": {"max_slice_drop": 0.05}})

    overall = only(plain.decision, "absolute_change")
    assert overall.passed and overall.candidate > overall.baseline  # better on average ...
    assert plain.decision.passed
    by_value = {s.value: s for s in sliced.decision.slices}
    assert by_value["b"].candidate["roc_auc"] < by_value["b"].baseline["roc_auc"] - 0.2
    drops = {c.slice: c for c in sliced.decision.checks if c.check == "slice_drop"}
    assert not drops["c=b"].passed and drops["c=a"].passed  # ... clearly worse on b
    assert sliced.decision.passed is False


def test_a_version_without_a_split_rule_is_compared_only_on_rows_outside_its_data(tmp_path):
    """Keel 0.1.0's versions record no rule: rows of their data snapshot are never scored."""
    from keel.registry import Registry
    from keel.storage import open_store

    schema = table_schema(classes=["bad", "good"], numeric=["x"], categorical=["c"], rows=400)
    store = tmp_path / "store"
    old_data = credit_rows(400, seed=1)
    production = fitted(tmp_path / "v1", schema, old_data)
    decision = decide({"roc_auc": 0.8}, None, {"roc_auc": {"lower": 0.5}}, 10)
    publish_and_promote(store, production, decision, rule=None)
    registry = Registry(open_store(str(store)), "credit")
    registry.store_snapshot(saved(tmp_path / "snapshot.parquet", old_data), "0" * 64)
    test = pd.concat([old_data.iloc[:60], credit_rows(90, seed=5)], ignore_index=True)
    mine = predict(production["model"], test, production["spec"])

    compared = compare(registry, test, schema, mine)
    assert compared.comparable.tolist() == [False] * 60 + [True] * 90
    assert compared.comparison.excluded == 60 and "no recorded split rule" in (
        compared.comparison.reason)

    same_table = compare(registry, old_data.iloc[:100], schema, predict(
        production["model"], old_data.iloc[:100], production["spec"]))
    assert same_table.comparison.rows == 0
    record = decide({"roc_auc": 0.8}, same_table.baseline, {"roc_auc": {"min_absolute_change": 0}},
                    100, comparison=same_table.comparison, min_rows=20)
    assert not record.passed and "only 0 of 100 test rows" in record.checks[0].note
