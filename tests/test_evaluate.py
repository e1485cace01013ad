"""Unit tests of keel.evaluate: metrics, curves, threshold checking and the decision record."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as m

from keel.contracts import (
    Baseline,
    Check,
    ColumnInfo,
    DataLineage,
    Decision,
    Environment,
    FeatureSpec,
    Lineage,
    Override,
    TableSchema,
    TrainRecord,
)
from keel.errors import IntegrityError, ParameterError, RegistryError
from keel.evaluate import (
    Evaluation,
    check_thresholds,
    curves_of,
    decide,
    normalise_thresholds,
    predict,
    primary_metric,
    run,
    score,
    score_baseline,
)
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


# --- score -------------------------------------------------------------------------------------


def test_binary_metrics_include_roc_auc():
    y = ["bad", "bad", "good", "good", "bad", "good"]
    model = binary_model([0.1, 0.6, 0.35, 0.8, 0.2, 0.9])

    result = score(model, frame(y), spec())

    assert set(result) == {"accuracy", "balanced_accuracy", "f1_macro", "log_loss", "roc_auc"}
    assert result["accuracy"] == pytest.approx(4 / 6)  # 0.6 -> good (wrong), 0.35 -> bad (wrong)
    assert result["roc_auc"] == pytest.approx(8 / 9)  # 8 of the 9 (good, bad) pairs ordered
    expected_loss = -np.mean(np.log([0.9, 0.4, 0.35, 0.8, 0.8, 0.9]))
    assert result["log_loss"] == pytest.approx(expected_loss)
    assert all(type(v) is float for v in result.values())


def test_multiclass_metrics():
    y = ["a", "b", "c", "a", "b", "c"]
    proba = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6],
             [0.3, 0.5, 0.2], [0.1, 0.6, 0.3], [0.1, 0.1, 0.8]]
    model = FixedModel(["a", "b", "c"], proba)

    result = score(model, frame(y), spec())

    assert result["accuracy"] == pytest.approx(5 / 6)
    assert result["f1_macro"] == pytest.approx(m.f1_score(y, model.predict(None), average="macro"))
    assert result["balanced_accuracy"] == pytest.approx(5 / 6)
    assert result["roc_auc"] == pytest.approx(
        m.roc_auc_score(y, np.array(proba), multi_class="ovr"))


def test_multiclass_without_every_class_in_the_test_set_has_no_roc_auc():
    proba = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3]]
    result = score(FixedModel(["a", "b", "c"], proba), frame(["a", "b", "a", "b"]), spec())
    assert "roc_auc" not in result
    assert result["accuracy"] == 1.0
    assert math.isfinite(result["log_loss"])


def test_regression_metrics():
    y = [3.0, 5.0, 7.0, 9.0]
    predicted = [4.0, 4.0, 9.0, 9.0]  # errors 1, -1, 2, 0

    result = score(FixedModel(predictions=predicted), frame(y), spec("regression"))

    assert set(result) == {"rmse", "mae", "r2"}
    assert result["rmse"] == pytest.approx(math.sqrt(6 / 4))
    assert result["mae"] == pytest.approx(1.0)
    assert result["r2"] == pytest.approx(1 - 6 / 20)


@pytest.mark.filterwarnings("ignore:R\\^2 score is not well-defined")
def test_a_metric_undefined_on_the_test_rows_is_left_out():
    # r2 of a single row is undefined (NaN): it must not reach the JSON decision record.
    result = score(FixedModel(predictions=[4.0]), frame([3.0]), spec("regression"))
    assert set(result) == {"rmse", "mae"}
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


# --- curves ------------------------------------------------------------------------------------


def test_binary_curves_have_confusion_matrix_and_a_thinned_roc():
    rng = np.random.default_rng(0)
    n = 1000
    y = np.where(rng.random(n) < 0.4, "good", "bad")
    positive = np.clip((y == "good") * 0.3 + rng.random(n) * 0.7, 0, 1)
    model = binary_model(positive.tolist())

    curves = curves_of(predict(model, frame(y), spec()))

    assert len(m.roc_curve(y, positive, pos_label="good")[0]) > 200  # so thinning is exercised
    assert curves["labels"] == ["bad", "good"]
    matrix = np.array(curves["confusion_matrix"])
    assert matrix.shape == (2, 2) and matrix.sum() == n
    assert matrix[1].sum() == (y == "good").sum()  # rows are the true labels, in label order
    roc = curves["roc"]
    assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["threshold"])
    assert len(roc["fpr"]) == 200
    assert all(0.0 <= t <= 1.0 for t in roc["threshold"])
    assert roc["fpr"][0] == 0.0 and roc["tpr"][0] == 0.0
    assert roc["fpr"][-1] == 1.0 and roc["tpr"][-1] == 1.0
    assert roc["fpr"] == sorted(roc["fpr"]) and roc["tpr"] == sorted(roc["tpr"])
    json.dumps(curves, allow_nan=False)


def test_short_roc_is_kept_whole():
    y = ["bad", "good", "bad", "good"]
    curves = curves_of(predict(binary_model([0.2, 0.7, 0.4, 0.9]), frame(y), spec()))
    fpr, tpr, _ = m.roc_curve(y, [0.2, 0.7, 0.4, 0.9], pos_label="good")
    assert curves["roc"]["fpr"] == fpr.tolist() and curves["roc"]["tpr"] == tpr.tolist()
    assert curves["confusion_matrix"] == [[2, 0], [0, 2]]


def test_multiclass_curves_have_a_full_confusion_matrix_and_no_roc():
    y = [1, 2, 3, 1, 2, 3, 3]
    proba = np.eye(3)[[0, 1, 2, 1, 1, 2, 0]]
    curves = curves_of(predict(FixedModel([1, 2, 3], proba), frame(y), spec()))
    assert curves["labels"] == ["1", "2", "3"]
    assert curves["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert "roc" not in curves


# --- thresholds --------------------------------------------------------------------------------

BINARY = table_schema(classes=["bad", "good"])
MULTICLASS = table_schema(classes=["a", "b", "c"])
REGRESSION = table_schema("regression")
CLASSIFICATION_METRICS = "accuracy, balanced_accuracy, f1_macro, log_loss, roc_auc"
REGRESSION_METRICS = "mae, r2, rmse"


@pytest.mark.parametrize(
    ("schema", "metric"), [(BINARY, "roc_auc"), (REGRESSION, "rmse"), (MULTICLASS, "f1_macro")],
)
def test_no_thresholds_means_no_worse_than_production_on_the_primary_metric(schema, metric):
    assert normalise_thresholds({}, schema) == {metric: {"min_absolute_change": 0.0}}


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
    rules = normalise_thresholds(given, REGRESSION)
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
    assert "expected one of accuracy, balanced_accuracy, f1_macro, log_loss, mae, r2, rmse, " \
           "roc_auc." in message


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
        f"[evaluate] The thresholds of {metric!r} must be a mapping with keys among lower, "
        "upper, min_relative_change, min_absolute_change. Got {}.")
    with pytest.raises(ParameterError):
        check_thresholds({metric: {}})


@pytest.mark.parametrize("rules", [{"minimum": 0.7}, {"lower": 0.7, "relative": 0.1}, 0.7,
                                   [0.7]])
def test_unknown_rule_is_a_parameter_error(rules):
    with pytest.raises(ParameterError) as caught:
        normalise_thresholds({"roc_auc": rules}, BINARY)
    message = str(caught.value)
    assert message.startswith("[evaluate] ")
    assert "'roc_auc'" in message and "lower, upper, min_relative_change, min_absolute_change" in (
        message)
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
        "first run: no production model, so the change thresholds on roc_auc do not apply"]
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
                             "thresholds", "override", "notes", "metrics", "test_rows"}
    assert document["schema_version"] == 2
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


# --- baseline scoring --------------------------------------------------------------------------


class FakeRegistry:
    def __init__(self, version, load):
        self._alias = SimpleNamespace(version=version, generation=5 if version else 0)
        self._load = load

    def alias(self):
        return self._alias

    def load_model(self, version):
        return self._load(version)


def test_no_production_model_means_no_baseline():
    def never(version):
        raise AssertionError("nothing to load")

    assert score_baseline(FakeRegistry(None, never), frame([1.0, 2.0]), spec("regression")) is None


def test_the_baseline_is_scored_on_the_same_rows():
    test = frame([3.0, 5.0, 7.0, 9.0])
    model = FixedModel(predictions=[4.0, 4.0, 9.0, 9.0])
    result = score_baseline(FakeRegistry(2, lambda v: model), test, spec("regression"))
    assert result == Baseline(version=2, generation=5,
                              metrics=score(model, test, spec("regression")), error=None)


def test_a_baseline_that_fails_to_score_is_reported_not_raised():
    def incompatible(version):
        return FixedModel(predictions=[1.0])  # wrong length: sklearn raises ValueError

    result = score_baseline(FakeRegistry(4, incompatible), frame([3.0, 5.0]), spec("regression"))
    assert isinstance(result, Baseline)
    assert (result.version, result.generation, result.metrics) == (4, 5, None)
    assert result.error.startswith("ValueError: ")
    assert Baseline.from_json(result.to_json()) == result


def test_an_integrity_failure_of_the_baseline_is_raised():
    def tampered(version):
        raise IntegrityError("model.joblib does not match its sha256")

    with pytest.raises(IntegrityError):
        score_baseline(FakeRegistry(4, tampered), frame([3.0, 5.0]), spec("regression"))


def test_a_missing_or_damaged_production_alias_stops_the_run():
    from keel.registry import MissingAlias

    class NoAlias(FakeRegistry):
        def alias(self):
            raise MissingAlias("production.json is missing, but the event log records moves")

    def never(version):
        raise AssertionError("nothing to load")

    with pytest.raises(MissingAlias):
        score_baseline(NoAlias(None, never), frame([3.0, 5.0]), spec("regression"))


@pytest.mark.parametrize("error", [
    RegistryError("model.joblib matches its recorded sha256 but cannot be loaded here"),
    ModuleNotFoundError("No module named 'sklearn.old'"),
])
def test_a_production_model_that_cannot_be_loaded_is_raised_not_scored(error):
    def unloadable(version):
        raise error

    with pytest.raises(type(error)):
        score_baseline(FakeRegistry(4, unloadable), frame([3.0, 5.0]), spec("regression"))


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
    with pytest.raises(RegistryError, match="cannot be loaded here"):
        score_baseline(registry, credit_rows(50, seed=2), made["spec"])


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


def lineage_of(made: dict[str, Any], decision: Decision) -> Lineage:
    """The lineage publish would record for ``made`` (see keel.publish.run)."""
    schema: TableSchema = made["schema"]
    record: TrainRecord = made["record"]
    return Lineage(
        data=DataLineage(source="data/credit.csv", format="csv", data_version="0" * 64,
                         rows=schema.rows_in, columns=[c.name for c in schema.columns],
                         snapshot="data/" + "0" * 64 + "/snapshot.parquet", rows_used=schema.rows,
                         rows_dropped_missing_target=schema.rows_dropped_missing_target),
        schema_hash=schema.schema_hash, task=schema.task, target=schema.target,
        features=made["spec"], excluded_columns=schema.excluded, training=record,
        hyperparameters=record.params, metrics=decision.metrics, baseline=decision.baseline,
        decision=decision,
        environment=Environment(keel="0.0.0", git_commit="unknown", python="3.11",
                                scikit_learn="1.0", images={}, ran_in_image=None),
        run_id="test-run",
    )


def evaluate_stage(made: dict[str, Any], test_path: Path, store: Path, out: Path,
                   thresholds: dict[str, Any] | None = None, override_reason: str = "",
                   ) -> Evaluation:
    paths = made["paths"]
    return run(str(paths["model"]), str(test_path), str(paths["spec"]), str(paths["schema"]),
               str(store), "credit", {} if thresholds is None else thresholds, override_reason,
               str(out))


def publish_and_promote(store: Path, made: dict[str, Any], decision: Decision) -> int:
    from keel.registry import MODEL_FILE, Registry
    from keel.storage import open_store

    registry = Registry(open_store(str(store)), "credit")
    paths = made["paths"]
    manifest = registry.publish({MODEL_FILE: paths["model"], "schema.json": paths["schema"],
                                 "feature_spec.json": paths["spec"]}, lineage_of(made, decision))
    registry.move_alias(manifest.version, expected_generation=registry.alias().generation,
                        action="promote", reason="test")
    return registry.alias().generation


def test_run_on_a_new_model_is_a_first_run_and_writes_the_decision(tmp_path):
    schema = table_schema(classes=["bad", "good"], numeric=["x"], categorical=["c"], rows=400)
    made = fitted(tmp_path / "candidate", schema, credit_rows(400, seed=1))
    test = credit_rows(120, seed=2)

    result = evaluate_stage(made, saved(tmp_path / "test.parquet", test), tmp_path / "store",
                            tmp_path / "decision.json")

    assert isinstance(result, Evaluation)
    assert result.metrics == score(made["model"], test, made["spec"])
    assert result.curves["labels"] == ["bad", "good"] and "roc" in result.curves
    decision = result.decision
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
    test = credit_rows(120, seed=2)
    test_path = saved(tmp_path / "test.parquet", test)
    rules = {"roc_auc": {"min_relative_change": 0.5}}
    result = evaluate_stage(candidate, test_path, store, tmp_path / "d2.json", thresholds=rules)

    decision = result.decision
    rescored = score(production["model"], test, production["spec"])
    assert rescored != first.metrics  # so the baseline cannot come from the stored number
    assert decision.baseline == Baseline(version=1, generation=generation, metrics=rescored)
    assert decision.first_run is False
    (check,) = decision.checks
    assert (check.metric, check.check, check.baseline) == ("roc_auc", "relative_change",
                                                           rescored["roc_auc"])
    assert check.candidate == result.metrics["roc_auc"]
    assert check.required == pytest.approx(rescored["roc_auc"] * 1.5)
    assert check.required > 1.0  # a roc_auc 50% better than production's: out of reach
    assert check.passed is False and decision.passed is False
    assert Decision.read(tmp_path / "d2.json") == decision

    overridden = evaluate_stage(candidate, test_path, store, tmp_path / "d3.json",
                                thresholds=rules, override_reason=" approved by J. Doe ")
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
    publish_and_promote(store, production, first.decision)

    schema = table_schema(classes=["bad", "good"], numeric=["x"], categorical=["c"], rows=400)
    candidate = fitted(tmp_path / "v2", schema, credit_rows(400, seed=4))
    result = evaluate_stage(candidate, saved(tmp_path / "test.parquet", credit_rows(120, 2)),
                            store, tmp_path / "d2.json")

    decision = result.decision
    assert decision.baseline.version == 1 and decision.baseline.metrics is None
    assert "x_old" in decision.baseline.error
    assert [(c.check, c.passed) for c in decision.checks] == [("baseline", False)]
    assert decision.passed is False
    written = Decision.read(tmp_path / "d2.json")
    assert written == decision and written.baseline.error == decision.baseline.error

