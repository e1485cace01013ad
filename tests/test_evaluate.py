"""Unit tests of keel.evaluate: metrics, curves, threshold checking and the decision record."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as m

from keel.errors import IntegrityError, ParameterError
from keel.evaluate import (
    curves_of,
    decide,
    normalise_thresholds,
    predict,
    primary_metric,
    score,
    score_baseline,
)


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


def spec(task: str = "classification") -> dict[str, Any]:
    return {"target": "y", "task": task, "numeric": ["x"], "categorical": [], "encoding": "auto"}


def frame(y) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(len(y), dtype=float), "y": y})


def binary_model(positive: list[float], classes=("bad", "good")) -> FixedModel:
    p = np.asarray(positive)
    return FixedModel(list(classes), np.column_stack([1 - p, p]))


def serialisable(record: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(record, allow_nan=False))


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
    record = decide(result, None, {"r2": {"lower": 0.5}})
    assert record["passed"] is False
    json.dumps(record, allow_nan=False)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [({"task": "regression", "classes": None}, "rmse"),
     ({"task": "classification", "classes": ["no", "yes"]}, "roc_auc"),
     ({"task": "classification", "classes": [1, 2, 3]}, "f1_macro")],
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

BINARY = {"task": "classification", "classes": ["bad", "good"]}
REGRESSION = {"task": "regression", "classes": None}


@pytest.mark.parametrize(
    ("schema", "metric"),
    [(BINARY, "roc_auc"), (REGRESSION, "rmse"),
     ({"task": "classification", "classes": ["a", "b", "c"]}, "f1_macro")],
)
@pytest.mark.parametrize("given", [{}, None])
def test_no_thresholds_means_no_worse_than_production_on_the_primary_metric(schema, metric, given):
    assert normalise_thresholds(given, schema) == {metric: {"min_absolute_change": 0.0}}


def test_thresholds_are_converted_to_floats():
    given = {"rmse": {"upper": 10, "min_relative_change": "0.05"}, "r2": {"lower": 0}}
    assert normalise_thresholds(given, REGRESSION) == {
        "rmse": {"upper": 10.0, "min_relative_change": 0.05}, "r2": {"lower": 0.0}}


def test_unknown_metric_is_a_parameter_error():
    with pytest.raises(ParameterError) as caught:
        normalise_thresholds({"auc": {"lower": 0.7}}, BINARY)
    message = str(caught.value)
    assert message.startswith("[evaluate] ")
    assert "'thresholds'" in message and "'auc'" in message and "roc_auc" in message


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


def baseline(metrics: dict[str, float] | None, **extra: Any) -> dict[str, Any]:
    return {"version": 3, "generation": 7, "metrics": metrics, **extra}


def only(record: dict[str, Any], check: str) -> dict[str, Any]:
    (found,) = [c for c in record["checks"] if c["check"] == check]
    return found


def test_first_run_skips_change_checks_and_says_so():
    rules = {"roc_auc": {"min_absolute_change": 0.0, "min_relative_change": 0.02}}

    record = decide({"roc_auc": 0.61}, None, rules)

    assert record["passed"] is True and record["first_run"] is True
    assert record["checks"] == [] and record["baseline"] is None
    assert record["notes"] == [
        "first run: no production model, so the change thresholds on roc_auc do not apply"]
    assert record["override"] is None and record["thresholds"] == rules
    serialisable(record)


def test_first_run_still_applies_value_thresholds():
    record = decide({"roc_auc": 0.61}, None, {"roc_auc": {"lower": 0.7,
                                                           "min_absolute_change": 0.0}})
    assert record["passed"] is False
    assert only(record, "lower") == {"metric": "roc_auc", "check": "lower", "candidate": 0.61,
                                     "baseline": None, "threshold": None, "required": 0.7,
                                     "passed": False}
    assert len(record["notes"]) == 1


@pytest.mark.parametrize(
    ("metric", "rule", "bound", "value", "passes"),
    [("roc_auc", "lower", 0.8, 0.8, True), ("roc_auc", "lower", 0.8, 0.79, False),
     ("rmse", "upper", 12.5, 12.5, True), ("rmse", "upper", 12.5, 12.6, False),
     ("r2", "lower", 0.0, -0.1, False), ("mae", "upper", 3.0, 2.0, True)],
)
def test_value_thresholds(metric, rule, bound, value, passes):
    record = decide({metric: value}, baseline({metric: value}), {metric: {rule: bound}})
    check = only(record, rule)
    assert (check["candidate"], check["required"], check["passed"]) == (value, bound, passes)
    assert record["passed"] is passes and record["first_run"] is False


@pytest.mark.parametrize(
    ("candidate", "passes"), [(0.75, True), (0.76, True), (0.7499, False)],
)
def test_relative_change_for_higher_is_better(candidate, passes):
    record = decide({"roc_auc": candidate}, baseline({"roc_auc": 0.5}),
                    {"roc_auc": {"min_relative_change": 0.5}})
    check = only(record, "relative_change")
    assert check["required"] == 0.75  # 0.5 * (1 + 0.5)
    assert (check["baseline"], check["threshold"], check["candidate"]) == (0.5, 0.5, candidate)
    assert check["passed"] is passes and record["passed"] is passes


@pytest.mark.parametrize(("candidate", "passes"), [(9.0, True), (8.5, True), (9.01, False)])
def test_relative_change_for_lower_is_better(candidate, passes):
    record = decide({"rmse": candidate}, baseline({"rmse": 10.0}),
                    {"rmse": {"min_relative_change": 0.1}})
    check = only(record, "relative_change")
    assert check["required"] == 9.0  # 10 * (1 - 0.1)
    assert check["passed"] is passes and record["passed"] is passes


def test_relative_change_on_a_negative_baseline_still_asks_for_better():
    rules = {"r2": {"min_relative_change": 0.5}}
    worse = decide({"r2": -0.3}, baseline({"r2": -0.2}), rules)
    better = decide({"r2": -0.1}, baseline({"r2": -0.2}), rules)
    assert only(worse, "relative_change")["required"] == pytest.approx(-0.1)
    assert worse["passed"] is False
    assert better["passed"] is True


@pytest.mark.parametrize(
    ("metric", "base", "change", "required", "candidate", "passes"),
    [("roc_auc", 0.5, 0.25, 0.75, 0.75, True), ("roc_auc", 0.5, 0.25, 0.75, 0.7, False),
     ("roc_auc", 0.5, 0.0, 0.5, 0.5, True), ("roc_auc", 0.5, -0.25, 0.25, 0.3, True),
     ("rmse", 10.0, 0.5, 9.5, 9.5, True), ("rmse", 10.0, 0.5, 9.5, 9.75, False),
     ("rmse", 10.0, 0.0, 10.0, 10.25, False), ("log_loss", 0.5, 0.25, 0.25, 0.25, True)],
)
def test_absolute_change(metric, base, change, required, candidate, passes):
    record = decide({metric: candidate}, baseline({metric: base}),
                    {metric: {"min_absolute_change": change}})
    check = only(record, "absolute_change")
    assert check == {"metric": metric, "check": "absolute_change", "candidate": candidate,
                     "baseline": base, "threshold": change, "required": required,
                     "passed": passes}
    assert record["passed"] is passes


def test_every_check_must_pass():
    rules = {"roc_auc": {"lower": 0.7, "min_absolute_change": 0.0},
             "accuracy": {"lower": 0.9}}
    record = decide({"roc_auc": 0.8, "accuracy": 0.85}, baseline({"roc_auc": 0.75}), rules)
    assert [(c["metric"], c["check"], c["passed"]) for c in record["checks"]] == [
        ("roc_auc", "lower", True), ("roc_auc", "absolute_change", True),
        ("accuracy", "lower", False)]
    assert record["passed"] is False


def test_a_metric_the_task_does_not_compute_fails_with_a_note():
    record = decide({"rmse": 1.0, "mae": 0.5, "r2": 0.9}, None, {"roc_auc": {"lower": 0.5}})
    check = only(record, "available")
    assert check["passed"] is False and check["candidate"] is None
    assert check["note"].startswith("roc_auc is not computed for this task")
    assert record["passed"] is False


def test_a_baseline_that_could_not_be_scored_fails_the_change_check_with_a_note():
    broken = baseline(None, error="ValueError: columns are missing: ['age']")
    record = decide({"roc_auc": 0.9}, broken, {"roc_auc": {"min_absolute_change": 0.0}})

    check = only(record, "baseline")
    assert check["passed"] is False and check["candidate"] == 0.9 and check["required"] is None
    assert check["note"] == ("production version 3 could not be scored: "
                             "ValueError: columns are missing: ['age']")
    assert record["passed"] is False and record["first_run"] is False
    assert record["baseline"] == broken
    serialisable(record)


def test_a_baseline_without_the_metric_fails_the_change_check():
    record = decide({"f1_macro": 0.9}, baseline({"accuracy": 0.8}),
                    {"f1_macro": {"min_relative_change": 0.0}})
    assert only(record, "baseline")["note"].endswith("could not be scored: metric missing")
    assert record["passed"] is False


def test_override_passes_a_failed_gate_and_is_recorded():
    record = decide({"rmse": 12.0}, baseline({"rmse": 10.0}),
                    {"rmse": {"min_absolute_change": 0.0}},
                    override_reason="  hotfix for the new data feed, approved by J. Doe  ")

    assert record["passed"] is True
    assert record["override"] == {"reason": "hotfix for the new data feed, approved by J. Doe",
                                  "checks_passed": False}
    assert only(record, "absolute_change")["passed"] is False
    assert record["notes"] == ["manual override: hotfix for the new data feed, approved by J. Doe"]
    serialisable(record)


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_blank_override_reason_is_no_override(reason):
    record = decide({"rmse": 12.0}, baseline({"rmse": 10.0}),
                    {"rmse": {"min_absolute_change": 0.0}}, override_reason=reason)
    assert record["passed"] is False and record["override"] is None


def test_decision_record_is_strict_json_with_every_field():
    rules = normalise_thresholds({"roc_auc": {"lower": 0.6, "min_relative_change": 0.01,
                                              "min_absolute_change": 0.0},
                                  "log_loss": {"upper": 0.7}}, BINARY)
    record = decide({"roc_auc": 0.82, "log_loss": 0.41}, baseline({"roc_auc": 0.8,
                                                                    "log_loss": 0.45}), rules)
    assert serialisable(record) == record
    assert set(record) == {"passed", "checks", "baseline", "first_run", "thresholds", "override",
                           "notes"}
    assert [c["check"] for c in record["checks"]] == [
        "lower", "relative_change", "absolute_change", "upper"]
    assert record["passed"] is True


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
    assert result == {"version": 2, "generation": 5,
                      "metrics": score(model, test, spec("regression"))}


def test_a_baseline_that_fails_to_score_is_reported_not_raised():
    def incompatible(version):
        return FixedModel(predictions=[1.0])  # wrong length: sklearn raises ValueError

    result = score_baseline(FakeRegistry(4, incompatible), frame([3.0, 5.0]), spec("regression"))
    assert result["version"] == 4 and result["metrics"] is None
    assert result["error"].startswith("ValueError: ")


def test_an_integrity_failure_of_the_baseline_is_raised():
    def tampered(version):
        raise IntegrityError("model.joblib does not match its sha256")

    with pytest.raises(IntegrityError):
        score_baseline(FakeRegistry(4, tampered), frame([3.0, 5.0]), spec("regression"))


@pytest.mark.parametrize("estimator", ["linear", "random_forest", "hist_gradient_boosting"])
def test_predictions_from_probabilities_equal_the_estimators_predict(estimator):
    from keel.preprocess import feature_spec
    from keel.train import train

    rng = np.random.default_rng(0)
    data = pd.DataFrame({"x": rng.normal(size=300), "c": rng.choice(["a", "b", "c"], 300)})
    data["y"] = np.where(data.x + (data.c == "a") > 0.3, "hi", np.where(data.x < -0.5, "lo", "mid"))
    schema = {"target": "y", "task": "classification", "numeric_features": ["x"],
              "categorical_features": ["c"]}
    model, _ = train(data, feature_spec(schema), estimator, {}, seed=0)
    predictions = predict(model, data, feature_spec(schema))
    assert (predictions.pred == model.predict(data[["x", "c"]])).all()
