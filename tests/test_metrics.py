"""keel.metrics: the metric table against scikit-learn, paired bootstrap intervals, slices, report."""

import math
import time
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, label_binarize

from keel import metrics as km
from keel.contracts import EvaluationReport, FeatureSpec, SliceMetrics
from keel.errors import ParameterError
from keel.metrics import (
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    METRIC_RANGES,
    METRICS,
    TASK_METRICS,
    Predictions,
    evaluation_report,
    metrics_of,
    paired_bootstrap,
    per_class,
    predict,
    primary_metric,
    slice_metrics,
)


# -- helpers ----------------------------------------------------------------------------------
def classified(y, proba, classes):
    proba = np.asarray(proba, dtype=float)
    return Predictions(pd.Series(y), np.asarray(classes)[proba.argmax(axis=1)],
                       proba, list(classes))


def random_binary(rng, n, ties=True, classes=("neg", "pos")):
    p1 = rng.random(n)
    if ties:
        p1 = np.round(p1, 1)
    return classified(rng.choice(classes, n), np.c_[1 - p1, p1], classes)


def random_multiclass(rng, n, classes=("ant", "bee", "cat")):
    raw = np.round(rng.random((n, len(classes))), 1) + 0.05  # ties on purpose
    return classified(rng.choice(classes, n), raw / raw.sum(axis=1, keepdims=True), classes)


def random_regression(rng, n):
    y = np.round(rng.normal(size=n), 1)
    y[:3] = 0.0
    return Predictions(pd.Series(y), y + rng.normal(size=n))


def better_and_worse(n=600, seed=0):
    """A clearly better and a clearly worse binary model of the same rows."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)

    def model(noise):
        p1 = 1 / (1 + np.exp(-(3 * (2 * y - 1) + rng.normal(scale=noise, size=n))))
        return Predictions(pd.Series(y), (p1 > 0.5).astype(int), np.c_[1 - p1, p1], [0, 1])

    return model(1.0), model(6.0)


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    assert not caught, [str(w.message) for w in caught]


# -- the table --------------------------------------------------------------------------------
def test_the_table_is_consistent():
    assert set(TASK_METRICS["classification"]) | set(TASK_METRICS["regression"]) == set(METRICS)
    assert HIGHER_IS_BETTER | LOWER_IS_BETTER == set(METRICS)
    assert not HIGHER_IS_BETTER & LOWER_IS_BETTER
    assert {"accuracy", "roc_auc", "r2", "f1"} <= HIGHER_IS_BETTER
    assert {"log_loss", "brier", "rmse", "mae", "mape"} <= LOWER_IS_BETTER
    for name, m in METRICS.items():
        assert m.name == name and METRIC_RANGES[name] == (m.low, m.high) and m.low < m.high
        assert m.help
    assert primary_metric("classification", 2) == "roc_auc"
    assert primary_metric("classification", 3) == "f1_macro"
    assert primary_metric("regression", 0) == "rmse"


def test_binary_metrics_match_scikit_learn(no_warnings):
    y = ["pos", "neg", "pos", "pos", "neg", "neg", "pos", "neg"]
    p1 = np.array([0.9, 0.2, 0.6, 0.4, 0.4, 0.7, 0.8, 0.1])
    p = classified(y, np.c_[1 - p1, p1], ["neg", "pos"])
    pred = np.where(p1 > 0.5, "pos", "neg")
    positive = np.array(y) == "pos"
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "precision_macro": skm.precision_score(y, pred, average="macro"),
        "recall_macro": skm.recall_score(y, pred, average="macro"),
        "f1_macro": skm.f1_score(y, pred, average="macro"),
        "precision": skm.precision_score(y, pred, pos_label="pos"),
        "recall": skm.recall_score(y, pred, pos_label="pos"),
        "f1": skm.f1_score(y, pred, pos_label="pos"),
        "roc_auc": skm.roc_auc_score(positive, p1),
        "pr_auc": skm.average_precision_score(positive, p1),
        "log_loss": skm.log_loss(y, np.c_[1 - p1, p1], labels=["neg", "pos"]),
        "brier": np.mean((positive - p1) ** 2),
    }
    got = metrics_of(p)
    assert list(got) == list(TASK_METRICS["classification"])
    assert got == pytest.approx(expected, abs=1e-12)
    # a tie between a positive and a negative (0.4, 0.4) counts one half: 13.5 of 16 pairs
    assert got["roc_auc"] == pytest.approx(13.5 / 16)
    assert got["precision"] == pytest.approx(3 / 4) and got["recall"] == pytest.approx(3 / 4)


def test_the_positive_class_is_classes_1_not_the_label_1():
    # classes [1, 0] is not sklearn's order, but the table must follow classes_ as given
    y = [0, 0, 1, 1, 0]
    p1 = np.array([0.8, 0.3, 0.2, 0.6, 0.9])  # probability of class 0, the second column
    p = classified(y, np.c_[1 - p1, p1], [1, 0])
    got = metrics_of(p, ["precision", "roc_auc", "log_loss", "brier"])
    pred = np.where(p1 > 0.5, 0, 1)
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, pos_label=0))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(np.array(y) == 0, p1))
    # scikit-learn reads probability columns in sorted label order: [0, 1] is p[:, ::-1]
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, np.c_[p1, 1 - p1]))
    assert got["brier"] == pytest.approx(np.mean(((np.array(y) == 0) - p1) ** 2))
    for name in got:  # and so does each metric's reference
        assert METRICS[name].compute(p) == pytest.approx(got[name], abs=1e-12)


def test_unsorted_multiclass_classes_follow_the_probability_columns():
    rng = np.random.default_rng(9)
    p = random_multiclass(rng, 40, classes=("cat", "ant", "bee"))
    order = [1, 2, 0]  # the columns of ant, bee, cat
    in_sorted_order = replace(p, proba=p.proba[:, order], classes=["ant", "bee", "cat"])
    assert metrics_of(p) == pytest.approx(metrics_of(in_sorted_order), abs=1e-12)
    assert metrics_of(p)["roc_auc"] == pytest.approx(skm.roc_auc_score(
        p.y, p.proba[:, order], multi_class="ovr"))
    for name in TASK_METRICS["classification"]:
        if METRICS[name].applies(p):
            assert METRICS[name].compute(p) == pytest.approx(metrics_of(p)[name], abs=1e-12)


def test_multiclass_metrics_match_scikit_learn(no_warnings):
    classes = ["ant", "bee", "cat"]
    y = ["ant", "bee", "cat", "cat", "bee", "ant", "cat", "bee", "ant"]
    proba = np.array([[.7, .2, .1], [.1, .5, .4], [.2, .2, .6], [.3, .4, .3], [.6, .3, .1],
                      [.4, .4, .2], [.1, .1, .8], [.2, .6, .2], [.5, .25, .25]])
    p = classified(y, proba, classes)
    pred = p.pred
    onehot = label_binarize(y, classes=classes)
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "precision_macro": skm.precision_score(y, pred, average="macro", zero_division=0),
        "recall_macro": skm.recall_score(y, pred, average="macro"),
        "f1_macro": skm.f1_score(y, pred, average="macro"),
        "roc_auc": skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes),
        "pr_auc": np.mean([skm.average_precision_score(onehot[:, c], proba[:, c])
                           for c in range(3)]),
        "log_loss": skm.log_loss(y, proba, labels=classes),
        "brier": np.mean(((onehot - proba) ** 2).sum(axis=1)),  # multiclass: in [0, 2]
    }
    got = metrics_of(p)
    assert got == pytest.approx(expected, abs=1e-12)
    assert not {"precision", "recall", "f1"} & set(got)  # binary only


@pytest.mark.parametrize("pred", [
    ["ant", "cat", "ant", "bee", "cat"],  # a class predicted that is not among the true values
    ["ant", "bee", "bee", "bee", "ant"],  # a class of the model that is in neither
])
def test_macro_averages_count_the_labels_scikit_learn_counts(pred, no_warnings):
    y = ["ant", "bee", "ant", "bee", "bee"]
    p = Predictions(pd.Series(y), np.array(pred, dtype=object), None, ["ant", "bee", "cat"])
    got = metrics_of(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        balanced = skm.balanced_accuracy_score(y, pred)  # the classes of y_true only
    assert got == pytest.approx({
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": balanced,
        "precision_macro": skm.precision_score(y, pred, average="macro", zero_division=0),
        "recall_macro": skm.recall_score(y, pred, average="macro", zero_division=0),
        "f1_macro": skm.f1_score(y, pred, average="macro", zero_division=0),
    }, abs=1e-12)


def test_regression_metrics_match_scikit_learn_and_mape_skips_zeros(no_warnings):
    y = np.array([3.0, 0.0, -2.0, 5.0, 0.0, 1.5])
    pred = np.array([2.5, 0.3, -1.0, 5.5, -0.2, 2.0])
    got = metrics_of(Predictions(pd.Series(y), pred))
    nonzero = y != 0
    assert got == pytest.approx({
        "rmse": skm.root_mean_squared_error(y, pred),
        "mae": skm.mean_absolute_error(y, pred),
        "r2": skm.r2_score(y, pred),
        "mape": np.mean(np.abs(y[nonzero] - pred[nonzero]) / np.abs(y[nonzero])),
    }, abs=1e-12)
    assert list(got) == ["rmse", "mae", "r2", "mape"]
    # scikit-learn's own mape divides by eps for a zero: astronomically large
    assert skm.mean_absolute_percentage_error(y, pred) > 1e10
    every_zero = metrics_of(Predictions(pd.Series([0.0, 0.0, 0.0]), np.array([1.0, 0.0, 2.0])))
    assert "mape" not in every_zero and "r2" not in every_zero and "rmse" in every_zero


def test_names_pick_metrics_in_table_order_and_unknown_names_are_refused():
    p = random_binary(np.random.default_rng(1), 50)
    assert list(metrics_of(p, ["log_loss", "accuracy"])) == ["accuracy", "log_loss"]
    assert metrics_of(p, ["rmse"]) == {}  # another task's metric: not defined here
    with pytest.raises(ValueError, match="Unknown metric.*'auc'"):
        metrics_of(p, ["auc"])


def test_values_respect_directions_and_ranges():
    rng = np.random.default_rng(2)
    cases = [random_binary(rng, 80), random_multiclass(rng, 80), random_regression(rng, 80)]
    for p in cases:
        for name, value in metrics_of(p).items():
            low, high = METRIC_RANGES[name]
            assert low <= value <= high, (name, value)
    # perfect predictions reach the best end of each range
    y = np.array(["a", "b", "a", "b", "b"])
    perfect = classified(y, np.c_[y == "a", y == "b"].astype(float), ["a", "b"])
    exact = Predictions(pd.Series([1.0, 2.0, 4.0]), np.array([1.0, 2.0, 4.0]))
    for p in (perfect, exact):
        got = metrics_of(p)
        assert set(got) == set(TASK_METRICS[p.task])
        for name, value in got.items():
            best = METRICS[name].high if name in HIGHER_IS_BETTER else METRICS[name].low
            assert value == pytest.approx(best, abs=1e-9), name
    # and a worse model scores worse in the direction the table says
    good, bad = better_and_worse()
    for name, value in metrics_of(good).items():
        other = metrics_of(bad)[name]
        assert value > other if name in HIGHER_IS_BETTER else value < other, name


def test_undefined_metrics_are_left_out_without_warnings(no_warnings):
    one_class = classified(["pos"] * 4, [[.2, .8], [.6, .4], [.1, .9], [.3, .7]], ["neg", "pos"])
    got = metrics_of(one_class)
    assert "roc_auc" not in got and "pr_auc" not in got
    assert got["accuracy"] == 0.75 and "log_loss" in got and "f1" in got
    # multiclass with a class missing from the rows: no roc_auc, the rest is there
    missing = classified(["ant", "bee", "ant", "bee"],
                         [[.5, .3, .2], [.2, .5, .3], [.3, .3, .4], [.1, .8, .1]],
                         ["ant", "bee", "cat"])
    got = metrics_of(missing)
    assert "roc_auc" not in got and "pr_auc" not in got and "f1_macro" in got
    # no probabilities: only the label metrics
    labels_only = Predictions(pd.Series(["a", "b"]), np.array(["a", "a"]), None, ["a", "b"])
    assert set(metrics_of(labels_only)) == {"accuracy", "balanced_accuracy", "precision_macro",
                                            "recall_macro", "f1_macro", "precision", "recall",
                                            "f1"}
    # a true label the model does not know: no probability for it, accuracy still counts it
    unknown = classified(["a", "b", "c"], [[.9, .1], [.2, .8], [.5, .5]], ["a", "b"])
    got = metrics_of(unknown)
    assert got["accuracy"] == pytest.approx(2 / 3)
    assert got["balanced_accuracy"] == pytest.approx(
        skm.balanced_accuracy_score(["a", "b", "c"], unknown.pred))
    assert not {"log_loss", "roc_auc", "brier", "precision"} & set(got)
    assert metrics_of(Predictions(pd.Series([], dtype=float), np.array([]))) == {}


def test_per_class():
    y = ["ant", "bee", "cat", "cat", "bee", "ant"]
    pred = np.array(["ant", "bee", "bee", "cat", "bee", "bee"])
    got = per_class(Predictions(pd.Series(y), pred, None, ["ant", "bee", "cat"]))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, pred, labels=["ant", "bee", "cat"])
    assert list(got) == ["ant", "bee", "cat"]
    for i, label in enumerate(got):
        assert got[label] == pytest.approx({"precision": precision[i], "recall": recall[i],
                                            "f1": f1[i], "support": support[i]})
    assert per_class(Predictions(pd.Series([1.0]), np.array([1.0]))) == {}


def test_take_subsets_rows_by_position_or_mask():
    p = classified(["a", "b", "a"], [[.9, .1], [.3, .7], [.4, .6]], ["a", "b"])
    p = replace(p, y=p.y.set_axis([10, 20, 30]))
    sub = p.take(np.array([2, 0]))
    assert sub.y.tolist() == ["a", "a"] and sub.y.index.tolist() == [0, 1]
    assert sub.proba.tolist() == [[.4, .6], [.9, .1]] and sub.classes == ["a", "b"]
    assert p.take(np.array([False, True, True])).pred.tolist() == ["b", "b"]


# -- fast forms against scikit-learn ----------------------------------------------------------
@pytest.mark.parametrize("make", [random_binary, random_multiclass, random_regression])
@pytest.mark.parametrize("seed", [3, 4])
def test_every_fast_form_equals_scikit_learn_on_resampled_rows(make, seed):
    rng = np.random.default_rng(seed)
    p = make(rng, 60)
    encoded = km._encode(p)
    drawn = rng.integers(0, len(p.y), size=(8, len(p.y)))
    weights = np.stack([np.ones(len(p.y))]  # the rows as they are, then the resamples
                       + [np.bincount(row, minlength=len(p.y)) for row in drawn]).astype(float)
    checked = 0
    for name in TASK_METRICS[p.task]:
        m = METRICS[name]
        if not m.applies(p):
            continue
        assert m.fast is not None, name
        fast = km._values(m, p, encoded, weights)
        for row, value in zip(drawn, fast[1:], strict=True):
            reference = m.compute(p.take(row))
            if math.isfinite(reference):
                assert value == pytest.approx(reference, rel=1e-9, abs=1e-9), name
                checked += 1
            else:
                assert not math.isfinite(value), name
        assert fast[0] == pytest.approx(m.compute(p), rel=1e-9, abs=1e-9), name
    assert checked >= 8 * 3


def test_fast_forms_see_undefined_rounds():
    p = random_multiclass(np.random.default_rng(5), 30)
    encoded = km._encode(p)
    only_ants = (p.y == "ant").to_numpy().astype(float)[None, :]
    for name in ("roc_auc", "pr_auc"):
        assert np.isnan(km._values(METRICS[name], p, encoded, only_ants)).all()
        assert not math.isfinite(METRICS[name].compute(p.take(only_ants[0] > 0)))
    binary = random_binary(np.random.default_rng(5), 30)
    for label in ("neg", "pos"):
        one_class = (binary.y == label).to_numpy()
        for name in ("roc_auc", "pr_auc"):
            assert np.isnan(km._values(METRICS[name], binary, km._encode(binary),
                                       one_class[None, :].astype(float))).all()
            assert not math.isfinite(METRICS[name].compute(binary.take(one_class)))
    regression = random_regression(np.random.default_rng(5), 30)
    zeros = (regression.y == 0).to_numpy().astype(float)[None, :]  # a constant target
    encoded = km._encode(regression)
    for name in ("r2", "mape"):
        assert np.isnan(km._values(METRICS[name], regression, encoded, zeros)).all()
    assert km._values(METRICS["rmse"], regression, encoded, zeros)[0] >= 0


# -- paired bootstrap -------------------------------------------------------------------------
def test_bootstrap_is_deterministic_and_paired():
    good, bad = better_and_worse()
    names = ["roc_auc", "log_loss", "accuracy", "brier"]
    first = paired_bootstrap(good, bad, names, 300, 0.9, seed=7)
    assert first == paired_bootstrap(good, bad, names, 300, 0.9, seed=7)
    assert first != paired_bootstrap(good, bad, names, 300, 0.9, seed=8)
    assert first["roc_auc"].low > 0 and first["accuracy"].low > 0  # clearly better
    assert first["log_loss"].high < 0 and first["brier"].high < 0  # less error
    assert all(i.rounds == 300 and i.level == 0.9 for i in first.values())
    same = paired_bootstrap(good, good, names, 200, 0.95, seed=1)
    assert all((i.low, i.high) == (0.0, 0.0) for i in same.values())
    # the other way round, the interval flips
    flipped = paired_bootstrap(bad, good, names, 300, 0.9, seed=7)
    assert flipped["roc_auc"].low == pytest.approx(-first["roc_auc"].high)


def test_bootstrap_scores_both_models_on_the_same_draws():
    # the reference: draw every round's rows, score each model with scikit-learn on them
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 40)
    a, b = (Predictions(pd.Series(y), rng.integers(0, 2, 40), None, [0, 1]) for _ in range(2))
    rounds, level = 50, 0.8
    drawn = np.random.default_rng(3).integers(0, 40, size=(rounds, 40))
    differences = [skm.f1_score(y[r], a.pred[r], average="macro")
                   - skm.f1_score(y[r], b.pred[r], average="macro") for r in drawn]
    low, high = np.percentile(differences, [10, 90])
    got = paired_bootstrap(a, b, ["f1_macro"], rounds, level, seed=3)["f1_macro"]
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-12)


def test_bootstrap_skips_undefined_rounds():
    rng = np.random.default_rng(12)
    y = np.array([1] + [0] * 19)  # one positive: about a third of the draws miss it
    p1 = rng.random(20)
    a = Predictions(pd.Series(y), (p1 > .5).astype(int), np.c_[1 - p1, p1], [0, 1])
    b = replace(a, proba=np.c_[p1, 1 - p1])
    got = paired_bootstrap(a, b, ["roc_auc", "accuracy"], 400, 0.95, seed=0)
    assert 200 <= got["roc_auc"].rounds < 350
    assert got["accuracy"].rounds == 400
    # two rare classes of three: most draws miss one, so fewer than half are usable
    y3 = np.array(["a"] * 18 + ["b", "c"])
    raw = rng.random((20, 3))
    c = classified(y3, raw / raw.sum(axis=1, keepdims=True), ["a", "b", "c"])
    assert "roc_auc" not in paired_bootstrap(c, c, ["roc_auc", "f1_macro"], 200, 0.95, 0)


def test_bootstrap_refuses_predictions_of_other_rows():
    good, bad = better_and_worse()
    with pytest.raises(ValueError, match="same rows"):
        paired_bootstrap(good, bad.take(np.arange(10)), ["accuracy"], 10, 0.95, 0)
    shuffled = replace(bad, y=bad.y.sample(frac=1, random_state=0).reset_index(drop=True))
    with pytest.raises(ValueError, match="same order"):
        paired_bootstrap(good, shuffled, ["accuracy"], 10, 0.95, 0)
    for rounds, level in ((0, 0.95), (10, 1.0), (10, 0.0)):
        with pytest.raises(ValueError):
            paired_bootstrap(good, bad, ["accuracy"], rounds, level, 0)
    with pytest.raises(ValueError, match="Unknown metric"):
        paired_bootstrap(good, bad, ["auc"], 10, 0.95, 0)


def test_a_metric_without_fast_form_is_bootstrapped_with_scikit_learn(monkeypatch):
    good, bad = better_and_worse(n=80)
    fast = paired_bootstrap(good, bad, ["roc_auc", "log_loss"], 40, 0.9, seed=2)
    for name in ("roc_auc", "log_loss"):
        monkeypatch.setitem(METRICS, name, replace(METRICS[name], fast=None))
    slow = paired_bootstrap(good, bad, ["roc_auc", "log_loss"], 40, 0.9, seed=2)
    for name in fast:
        assert (slow[name].low, slow[name].high) == pytest.approx(
            (fast[name].low, fast[name].high), abs=1e-9)


def test_bootstrap_is_fast():
    good, bad = better_and_worse(n=1000)
    started = time.perf_counter()
    paired_bootstrap(good, bad, ["roc_auc", "log_loss", "accuracy"], 1000, 0.95, seed=0)
    assert time.perf_counter() - started < 1.0  # about 0.03 s on two cores


# -- slices -----------------------------------------------------------------------------------
@pytest.fixture
def sliced():
    rng = np.random.default_rng(20)
    n = 200
    frame = pd.DataFrame({
        "city": pd.Series(rng.choice(["Oslo", "Rome", "Lima", "Pune"], n, p=[.4, .3, .2, .1]),
                          dtype="str"),
        "age": rng.normal(40, 10, n),
        "kids": rng.integers(0, 3, n).astype(float),
        "member": rng.random(n) > 0.5,
    })
    frame.loc[[0, 1, 2], "city"] = None
    frame.loc[[3, 4], "age"] = np.nan
    good, bad = better_and_worse(n=n)
    return frame, good, bad


def test_slices_of_a_text_column_with_missing_and_other(sliced):
    frame, good, bad = sliced
    got = slice_metrics(frame, good, bad, ["city"], ["accuracy", "roc_auc"], max_values=2)
    assert [s.value for s in got] == ["Oslo", "Rome", "(other)", "(missing)"]
    assert sum(s.rows for s in got) == len(frame)
    for s in got:
        mask = {"(missing)": frame.city.isna(),
                "(other)": frame.city.isin(["Lima", "Pune"])}.get(s.value, frame.city == s.value)
        rows = np.flatnonzero(mask.to_numpy())
        assert s.rows == len(rows)
        assert s.candidate == pytest.approx(metrics_of(good.take(rows), ["accuracy", "roc_auc"]))
        assert s.baseline == pytest.approx(metrics_of(bad.take(rows), ["accuracy", "roc_auc"]))
        SliceMetrics.from_json(s.to_json())


def test_slices_of_numeric_columns(sliced):
    frame, good, _ = sliced
    got = slice_metrics(frame, good, None, ["age", "kids", "member"], ["accuracy"])
    age = [s for s in got if s.column == "age"]
    assert len(age) == 5 and age[-1].value == "(missing)" and age[-1].rows == 2
    assert all(s.value.startswith("[") and s.value.endswith(")") for s in age[:3])
    assert age[3].value.endswith("]")
    assert sum(s.rows for s in age[:4]) == 198 and min(s.rows for s in age[:4]) >= 45
    low, high = (float(v) for v in age[0].value.strip("[)").split(", "))
    assert low == pytest.approx(frame.age.min(), rel=1e-3)
    assert (frame.age.dropna() < high).sum() == pytest.approx(age[0].rows, abs=2)
    assert [s.value for s in got if s.column == "kids"] == ["0", "1", "2"]  # few values
    assert [s.value for s in got if s.column == "member"] == ["False", "True"] or \
        [s.value for s in got if s.column == "member"] == ["True", "False"]
    assert all(s.baseline is None for s in got)


def test_a_metric_undefined_on_a_slice_is_left_out_of_it(sliced):
    frame, good, bad = sliced
    frame = frame.assign(label=good.y.map({0: "zero", 1: "one"}))
    got = slice_metrics(frame, good, bad, ["label"], ["accuracy", "roc_auc"])
    assert {s.value for s in got} == {"zero", "one"}
    assert all(set(s.candidate) == {"accuracy"} == set(s.baseline) for s in got)


def test_an_unknown_slice_column_is_a_parameter_error(sliced):
    frame, good, bad = sliced
    with pytest.raises(ParameterError) as caught:
        slice_metrics(frame, good, bad, ["city", "country"], ["accuracy"])
    message = str(caught.value)
    assert caught.value.stage == "evaluate"
    assert "'slices' parameter of evaluate" in message and "'country'" in message
    assert "'city', 'age', 'kids', 'member'" in message
    wide = pd.DataFrame({f"column_{i}": [0] for i in range(50)})
    one = Predictions(pd.Series([1.0]), np.array([1.0]))
    with pytest.raises(ParameterError, match="and 38 more"):
        slice_metrics(wide, one, None, ["nope"], ["rmse"])


# -- the evaluation report --------------------------------------------------------------------
def fitted_classifier(classes, n=300, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"signal": rng.normal(size=n), "noise": rng.normal(size=n),
                          "colour": rng.choice(["red", "blue"], n)})
    cut = np.quantile(frame.signal, np.linspace(0, 1, len(classes) + 1)[1:-1])
    frame["target"] = np.asarray(classes)[np.searchsorted(cut, frame.signal)]
    flip = rng.random(n) < 0.1
    frame.loc[flip, "target"] = rng.choice(classes, flip.sum())
    spec = FeatureSpec(target="target", task="classification", numeric=["signal", "noise"],
                       categorical=["colour"], encoding="onehot")
    model = Pipeline([("features", ColumnTransformer(
        [("n", "passthrough", ["signal", "noise"]), ("c", OneHotEncoder(), ["colour"])])),
        ("model", LogisticRegression())]).fit(frame[spec.features], frame.target)
    return model, frame, spec


def check_contract(report):
    again = EvaluationReport.from_json(report.to_json())
    assert again == report
    for curve in report.curves.values():
        assert len(curve.x) <= 500
        assert all(math.isfinite(v) for v in curve.x + curve.y + curve.thresholds)


def test_evaluation_report_of_a_binary_model():
    model, frame, spec = fitted_classifier(["no", "yes"], n=1200)
    p = predict(model, frame, spec)
    report = evaluation_report(model, frame, spec, p, "roc_auc", seed=0, max_rows=500)
    check_contract(report)
    assert report.labels == ["no", "yes"] and report.primary_metric == "roc_auc"
    assert np.array(report.confusion_matrix).sum() == len(frame)
    assert report.confusion_matrix == skm.confusion_matrix(frame.target, p.pred).tolist()
    roc, pr, calibration = report.curves["roc"], report.curves["pr"], report.curves["calibration"]
    assert 100 < len(roc.x) <= 200 and len(pr.x) <= 200 and len(roc.thresholds) == len(roc.x)
    assert (roc.x[0], roc.y[0], roc.x[-1], roc.y[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert all(0 <= t <= 1 for t in roc.thresholds + pr.thresholds)
    assert pr.x[-1] == 0.0 and pr.y[-1] == 1.0 and pr.x[0] == 1.0
    assert 2 <= len(calibration.x) <= 10 and calibration.x == sorted(calibration.x)
    assert calibration.y[0] < 0.3 < 0.7 < calibration.y[-1]  # a calibrated model
    assert report.importance_rows == 500
    assert [i.feature for i in report.importance][0] == "signal"
    assert sorted(i.feature for i in report.importance) == sorted(spec.features)
    means = [i.mean for i in report.importance]
    assert means == sorted(means, reverse=True) and means[0] > 0.1
    assert report == evaluation_report(model, frame, spec, p, "roc_auc", seed=0, max_rows=500)


def test_evaluation_report_of_a_multiclass_model():
    model, frame, spec = fitted_classifier(["ant", "bee", "cat"], n=300)
    p = predict(model, frame, spec)
    report = evaluation_report(model, frame, spec, p, "f1_macro", seed=1)
    check_contract(report)
    assert report.labels == ["ant", "bee", "cat"] and len(report.confusion_matrix) == 3
    assert report.curves == {}
    assert report.importance_rows == 300 and report.importance[0].feature == "signal"


def test_evaluation_report_of_a_regression_model():
    rng = np.random.default_rng(3)
    n = 700
    frame = pd.DataFrame({"signal": rng.normal(size=n), "noise": rng.normal(size=n)})
    frame["target"] = 3 * frame.signal + rng.normal(scale=0.3, size=n)
    spec = FeatureSpec(target="target", task="regression", numeric=["signal", "noise"],
                       categorical=[], encoding="auto")
    model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(
        frame[spec.features], frame.target)
    p = predict(model, frame, spec)
    report = evaluation_report(model, frame, spec, p, "rmse", seed=0, max_rows=300)
    check_contract(report)
    residuals = report.curves["residuals"]
    assert len(residuals.x) == 500 and residuals.thresholds == []
    assert list(report.curves) == ["residuals"] and report.confusion_matrix is None
    residual = {(round(x, 9), round(y, 9))
                for x, y in zip(p.pred, frame.target - p.pred, strict=True)}
    shown = zip(residuals.x, residuals.y, strict=True)
    assert {(round(x, 9), round(y, 9)) for x, y in shown} <= residual
    # rmse is an error: shuffling the signal increases it, reported as a positive importance
    assert report.importance[0].feature == "signal" and report.importance[0].mean > 1.0
    assert report.importance_rows == 300


class CountingPasses(LogisticRegression):
    """A real classifier that counts the passes over rows, to bound the cost of importance."""

    passes = 0

    def predict_proba(self, x):
        type(self).passes += 1
        return super().predict_proba(x)


def wide_classifier(features=60, n=900, seed=4):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, features)),
                         columns=[f"x{i:02d}" for i in range(features)])
    frame["kind"] = pd.Categorical(rng.choice(["a", "b", "c"], n))
    frame["target"] = np.where(2 * frame.x00 - frame.x01 + 0.3 * rng.normal(size=n) > 0,
                               "yes", "no")
    numeric = [c for c in frame.columns if c.startswith("x")]
    spec = FeatureSpec(target="target", task="classification", numeric=numeric,
                       categorical=["kind"], encoding="onehot")
    model = Pipeline([("features", ColumnTransformer(
        [("n", "passthrough", numeric), ("c", OneHotEncoder(), ["kind"])])),
        ("model", CountingPasses(max_iter=500))]).fit(frame[spec.features], frame.target)
    return model, frame, spec


def test_a_wide_table_ranks_every_feature_by_one_shuffle_and_measures_the_top_ones():
    model, frame, spec = wide_classifier()
    p = predict(model, frame, spec)
    CountingPasses.passes = 0
    report = evaluation_report(model, frame, spec, p, "roc_auc", seed=0, max_rows=800)
    check_contract(report)
    features = len(spec.features)  # 61
    # one pass per feature to rank them, five per refined feature, and one base pass each
    assert CountingPasses.passes == features + km.IMPORTANCE_REFINED * 5 + 2
    assert report.importance_rows == 800
    assert report.importance_screen_rows == min(800, km.IMPORTANCE_SCREEN_CELLS // features)
    assert sorted(i.feature for i in report.importance) == sorted(spec.features)
    shuffles = [i.shuffles for i in report.importance]
    assert shuffles == [5] * km.IMPORTANCE_REFINED + [1] * (features - km.IMPORTANCE_REFINED)
    assert [i.feature for i in report.importance[:2]] == ["x00", "x01"]
    refined = [i.mean for i in report.importance[:km.IMPORTANCE_REFINED]]
    assert refined == sorted(refined, reverse=True) and refined[0] > 0.1
    assert all(i.std == 0.0 for i in report.importance[km.IMPORTANCE_REFINED:])
    assert report == evaluation_report(model, frame, spec, p, "roc_auc", seed=0, max_rows=800)


def test_a_narrow_table_gets_every_shuffle_for_every_feature():
    model, frame, spec = wide_classifier(features=km.IMPORTANCE_REFINED - 1)
    p = predict(model, frame, spec)
    CountingPasses.passes = 0
    report = evaluation_report(model, frame, spec, p, "roc_auc", seed=0, max_rows=400)
    assert CountingPasses.passes == len(spec.features) * 5 + 1
    assert report.importance_screen_rows == 0
    assert {i.shuffles for i in report.importance} == {5}


def test_shuffling_keeps_each_column_s_dtype():
    kinds = []

    def encode(x):
        kinds.append(x["kind"].dtype)
        return pd.get_dummies(x, dtype=float)

    model, frame, spec = wide_classifier(features=3)
    piped = Pipeline([("encode", FunctionTransformer(encode)),
                      ("model", LogisticRegression(max_iter=500))])
    piped.fit(frame[spec.features], frame.target)
    evaluation_report(piped, frame, spec, predict(piped, frame, spec), "roc_auc", seed=0)
    assert len(kinds) > 20 and all(isinstance(k, pd.CategoricalDtype) for k in kinds)
