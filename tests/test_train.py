"""Unit tests of keel.train: estimators, hyperparameter checking and parsing, the fitted pipeline.

The estimator table itself (classes, defaults, search spaces, the constraint check) is tested in
test_estimators.py; here, what train does with it.
"""

from __future__ import annotations

import json
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn

from keel.contracts import ContractError, FeatureSpec, TrainRecord
from keel.errors import ParameterError, from_report
from keel.estimators import ESTIMATORS, make_estimator
from keel.settings import checked, params_from_cli, parse_param_value
from keel.train import run, train

try:
    from factories import one_thread  # noqa: F401 - an autouse fixture
except ImportError:  # tests/ imported as a package
    from tests.factories import one_thread  # noqa: F401


TARGETS = {"binary": "risk", "multiclass": "band", "regression": "price"}


def dataset(rows: int = 90, seed: int = 0) -> pd.DataFrame:
    """Targets that the features explain, so a fitted model scores well on its training rows."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(size=rows)
    home = np.array(["rent", "owner", "parents"])[np.arange(rows) % 3]
    score = amount + (home == "rent") * 1.5
    frame = pd.DataFrame({
        "amount": amount,
        "age": rng.integers(18, 70, rows).astype(float),
        "home": home,
        "risk": np.where(score > 0.5, "bad", "good"),
        "band": np.select([score < -0.3, score < 0.9], ["low", "mid"], "high"),
        "price": 3 * amount + 2 * (home == "owner") + rng.normal(scale=0.05, size=rows),
    })
    frame.loc[[4, 11], "amount"] = np.nan
    return frame


def spec_for(
    kind: str, encoding: str = "auto", categorical: tuple[str, ...] = ("home",)
) -> FeatureSpec:
    return FeatureSpec(target=TARGETS[kind],
                       task="regression" if kind == "regression" else "classification",
                       numeric=["amount", "age"], categorical=list(categorical),
                       encoding=encoding)


def load_params(text: str, estimator: str = "hist_gradient_boosting",
                task: str = "regression") -> dict[str, Any]:
    """The params setting as train's stage reads it (a JSON string, checked for the estimator)."""
    return checked("params", text, estimator=estimator, task=task)


# --- every estimator x task --------------------------------------------------------------------

EXPECTED_CLASSES = {
    ("linear", "classification"): "LogisticRegression", ("linear", "regression"): "Ridge",
    ("random_forest", "classification"): "RandomForestClassifier",
    ("random_forest", "regression"): "RandomForestRegressor",
    ("hist_gradient_boosting", "classification"): "HistGradientBoostingClassifier",
    ("hist_gradient_boosting", "regression"): "HistGradientBoostingRegressor",
}


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_each_estimator_fits_and_predicts_each_task(estimator, kind):
    frame, spec = dataset(), spec_for(kind)

    pipeline, record = train(frame, spec, estimator, {}, seed=0)

    assert type(pipeline.named_steps["model"]).__name__ == EXPECTED_CLASSES[
        (estimator, spec.task)]
    x, y = frame[["amount", "age", "home"]], frame[spec.target]
    predicted = pipeline.predict(x)
    assert predicted.shape == (len(frame),)
    if kind == "regression":
        assert pipeline.score(x, y) > 0.8  # r2
    else:
        assert sorted(pipeline.classes_) == sorted(set(y))
        assert set(predicted) <= set(y)
        assert (predicted == y).mean() > 0.8
        proba = pipeline.predict_proba(x)
        assert proba.shape == (len(frame), y.nunique())
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # serving sends what training never saw: a new category and missing numbers
    unseen = pd.DataFrame({"amount": [np.nan], "age": [np.nan], "home": ["castle"]})
    assert pipeline.predict(unseen).shape == (1,)
    assert record.estimator_class == type(pipeline.named_steps["model"]).__name__
    assert record.estimator == estimator


# --- unseen values at serving time --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["binary", "regression"])
def test_linear_with_ordinal_encoding_predicts_an_unseen_category_and_a_missing_number(kind):
    """Ordinal codes for a model without missing-value support: an unseen category used to be NaN."""
    frame, spec = dataset(), spec_for(kind, encoding="ordinal")

    pipeline, record = train(frame, spec, "linear", {}, seed=0)

    assert record.encoding == "ordinal"
    unseen = pd.DataFrame({"amount": [np.nan, 0.3], "age": [40.0, np.nan],
                           "home": ["castle", "rent"]})
    assert not np.isnan(pipeline.named_steps["features"].transform(unseen)).any()
    predicted = pipeline.predict(unseen)
    assert predicted.shape == (2,)
    if kind == "regression":
        assert np.isfinite(predicted).all()
    else:
        assert set(predicted) <= set(frame[spec.target])
        np.testing.assert_allclose(pipeline.predict_proba(unseen).sum(axis=1), 1.0)


# --- estimator and parameter errors ------------------------------------------------------------


@pytest.mark.parametrize("name", ["xgboost", "Linear", ""])
def test_unknown_estimator_is_a_parameter_error_listing_the_choices(name):
    for attempt in (lambda: make_estimator(name, "classification", {}, 0),
                    lambda: train(dataset(), spec_for("binary"), name, {}, 0)):
        with pytest.raises(ParameterError) as caught:
            attempt()
        message = str(caught.value)
        assert message.startswith("[train] ")
        assert "'estimator'" in message and repr(name) in message
        assert "linear, random_forest, hist_gradient_boosting" in message


def test_unknown_parameter_is_named_and_the_valid_ones_listed():
    with pytest.raises(ParameterError) as caught:
        make_estimator("random_forest", "regression", {"max_dept": 3, "n_estimator": 5}, 0)
    message = str(caught.value)
    assert message.startswith("[train] RandomForestRegressor has no parameter ")
    assert "'max_dept', 'n_estimator'" in message
    assert "max_depth" in message and "n_estimators" in message and "random_state" in message
    assert "self" not in message


@pytest.mark.parametrize(
    ("estimator", "params", "named", "got"),
    [
        ("hist_gradient_boosting", {"max_depth": -3}, "'max_depth'", "-3"),
        ("hist_gradient_boosting", {"learning_rate": "fast"}, "'learning_rate'", "'fast'"),
        ("random_forest", {"n_estimators": 0}, "'n_estimators'", "0"),
        ("random_forest", {"criterion": "gini"}, "'criterion'", "'gini'"),  # regression only
        ("linear", {"alpha": -1.0}, "'alpha'", "-1.0"),
        ("random_forest", {"class_weight": "balanced"}, "'class_weight'", None),  # no such name
    ],
)
def test_invalid_parameter_fails_before_fitting(monkeypatch, estimator, params, named, got):
    from sklearn.pipeline import Pipeline

    def no_fit(*args, **kwargs):
        raise AssertionError("fit was called with invalid parameters")

    monkeypatch.setattr(Pipeline, "fit", no_fit)
    with pytest.raises(ParameterError) as caught:
        train(dataset(), spec_for("regression"), estimator, params, seed=0)
    message = str(caught.value)
    assert message.startswith("[train] ")
    assert named in message
    assert got is None or f"Got {got}" in message


# --- parameters as the stage receives them -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", 5), ("-3", -3), ("0.1", 0.1), ("1e-3", 0.001), ("1.0", 1.0),
        ("true", True), ("False", False), ("TRUE", True),
        ("none", None), ("None", None), ("null", None),
        ("[1, 2, 3]", [1, 2, 3]), ('["a", "b"]', ["a", "b"]), ('{"a": 1}', {"a": 1}),
        ("balanced", "balanced"), ("log_loss", "log_loss"), ('"5"', "5"), ("", ""),
    ],
)
def test_parse_param_value(text, expected):
    value = parse_param_value(text)
    assert value == expected
    assert type(value) is type(expected)


def test_params_from_cli_split_on_the_first_equals_sign():
    text = params_from_cli(("max_depth=5", " learning_rate = 0.1", "class_weight=balanced",
                            "monotonic_cst=[1,0]", "label=a=b"))
    assert isinstance(text, str)
    assert json.loads(text) == {
        "max_depth": 5, "learning_rate": 0.1, "class_weight": "balanced",
        "monotonic_cst": [1, 0], "label": "a=b",
    }
    assert json.loads(params_from_cli(())) == {}


@pytest.mark.parametrize("pair", ["max_depth", "=5", " =5", ""])
def test_params_from_cli_rejects_a_pair_without_name_or_equals(pair):
    with pytest.raises(ParameterError) as caught:
        params_from_cli(("max_iter=10", pair))
    message = str(caught.value)
    assert message.startswith("[train] ")
    assert "name=value" in message and f"Got {pair!r}" in message


def test_params_setting_reads_a_json_object():
    assert load_params('{"max_depth": 3, "learning_rate": 0.5, "max_features": 1.0}') == {
        "max_depth": 3, "learning_rate": 0.5, "max_features": 1.0}
    assert type(load_params('{"max_features": 1.0}')["max_features"]) is float
    assert type(load_params('{"max_features": 1}', "random_forest")["max_features"]) is int
    assert load_params("") == {} and load_params("{}") == {}


@pytest.mark.parametrize("text", ["max_depth=3", "{'max_depth': 3}", "[1, 2]", "3", "null",
                                  '"max_depth"'])
def test_params_setting_rejects_non_json_and_non_objects(text):
    with pytest.raises(ParameterError) as caught:
        load_params(text)
    message = str(caught.value)
    assert message.startswith("[train] ")
    assert "'params'" in message and "JSON object" in message and repr(text) in message


@pytest.mark.parametrize(
    ("text", "estimator", "task", "named"),
    [
        ('{"max_depth": -3}', "hist_gradient_boosting", "regression", "'max_depth'"),
        ('{"C": 0.5}', "linear", "regression", "'C'"),  # LogisticRegression's, not Ridge's
        ('{"alpha": 1.0}', "linear", "classification", "'alpha'"),
        ('{"n_estimators": 2}', "linear", "auto", "'n_estimators'"),
    ],
)
def test_params_setting_checks_names_and_values_for_the_estimator_and_task(
    text, estimator, task, named
):
    with pytest.raises(ParameterError) as caught:
        load_params(text, estimator, task)
    assert str(caught.value).startswith("[train] ") and named in str(caught.value)


def test_params_setting_checks_for_the_default_estimator_when_none_is_given():
    from keel.estimators import DEFAULT_ESTIMATOR

    assert DEFAULT_ESTIMATOR == "hist_gradient_boosting"
    assert checked("params", '{"learning_rate": 0.5}') == {"learning_rate": 0.5}
    with pytest.raises(ParameterError, match="'n_estimators'"):
        checked("params", '{"n_estimators": 5}')


# --- seeds and defaults ------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_random_state_defaults_to_the_seed(estimator):
    assert make_estimator(estimator, "classification", {}, 42).random_state == 42
    assert make_estimator(estimator, "regression", {}, "7").random_state == 7
    assert make_estimator(estimator, "regression", {"random_state": 3}, 42).random_state == 3


def test_same_seed_gives_identical_predictions_and_another_seed_does_not():
    frame, spec = dataset(), spec_for("binary")
    params = {"n_estimators": 15, "max_features": 0.5}
    x = frame[["amount", "age", "home"]]

    first = train(frame, spec, "random_forest", params, seed=11)[0].predict_proba(x)
    again = train(frame, spec, "random_forest", params, seed=11)[0].predict_proba(x)
    other = train(frame, spec, "random_forest", params, seed=12)[0].predict_proba(x)

    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_linear_classifier_gets_more_iterations_unless_told_otherwise():
    assert make_estimator("linear", "classification", {}, 0).max_iter == 2000
    assert make_estimator("linear", "classification", {"max_iter": 50}, 0).max_iter == 50


# --- categorical handling of HistGradientBoosting ----------------------------------------------


def test_hist_gradient_boosting_gets_the_categorical_mask_for_ordinal_codes():
    spec = spec_for("binary", categorical=("home", "band"))
    pipeline, record = train(dataset(), spec, "hist_gradient_boosting", {"max_iter": 10}, 0)

    model = pipeline.named_steps["model"]
    assert record.encoding == "ordinal"
    assert model.categorical_features == [False, False, True, True]
    np.testing.assert_array_equal(model.is_categorical_, [False, False, True, True])
    assert record.effective_params["categorical_features"] == repr([False, False, True, True])
    assert record.params == {"max_iter": 10}


@pytest.mark.parametrize(
    ("spec", "params"),
    [
        (spec_for("binary", encoding="onehot"), {}),
        (spec_for("binary", categorical=()), {}),
        (spec_for("binary"), {"categorical_features": [False, False, False]}),
    ],
    ids=["onehot", "no-categorical-column", "user-mask"],
)
def test_hist_gradient_boosting_mask_is_left_alone(spec, params):
    pipeline, _ = train(dataset(), spec, "hist_gradient_boosting", {"max_iter": 5, **params}, 0)
    model = pipeline.named_steps["model"]
    assert model.categorical_features == params.get("categorical_features", "from_dtype")
    assert not np.any(model.is_categorical_ if model.is_categorical_ is not None else False)


def test_other_estimators_get_no_categorical_mask():
    pipeline, record = train(dataset(), spec_for("binary"), "random_forest",
                             {"n_estimators": 5}, 0)
    assert "categorical_features" not in pipeline.named_steps["model"].get_params()
    assert record.encoding == "ordinal"


# --- the record and the stage entry point ------------------------------------------------------


def test_record_says_what_was_fitted_and_how():
    frame = dataset()
    pipeline, record = train(frame, spec_for("multiclass"), "linear", {"C": 0.5}, seed=9)

    assert isinstance(record, TrainRecord)
    assert set(record.to_dict()) == {
        "schema_version", "estimator", "estimator_class", "params", "effective_params",
        "encoding", "features", "train_rows", "fit_seconds", "seed", "search", "scikit_learn"}
    assert record.scikit_learn == sklearn.__version__  # what loads the model, not publish's
    assert record.search is None  # one parameter set: no search
    assert record.estimator == "linear"
    assert record.estimator_class == "LogisticRegression"
    assert record.params == {"C": 0.5}
    assert record.effective_params["C"] == 0.5
    assert record.effective_params["max_iter"] == 2000
    assert record.effective_params["random_state"] == 9
    assert record.encoding == "onehot"
    assert record.features == ["amount", "age", "home"]
    assert record.train_rows == len(frame)
    assert record.seed == 9 and isinstance(record.seed, int)
    assert isinstance(record.fit_seconds, float) and record.fit_seconds >= 0
    assert TrainRecord.from_json(record.to_json()) == record
    assert json.loads(json.dumps(record.to_dict(), allow_nan=False)) == record.to_dict()
    assert pipeline.named_steps["model"].get_params()["C"] == 0.5


def test_run_saves_a_loadable_model_and_the_record(tmp_path):
    frame = dataset()
    frame.to_parquet(tmp_path / "train.parquet", index=False)
    spec_for("regression").write(tmp_path / "spec.json")

    record = run(str(tmp_path / "train.parquet"), str(tmp_path / "spec.json"), "random_forest",
                 '{"n_estimators": 8}', 4, str(tmp_path / "model.joblib"),
                 str(tmp_path / "record.json"))

    assert TrainRecord.read(tmp_path / "record.json") == record
    assert record.params == {"n_estimators": 8} and record.seed == 4
    model = joblib.load(tmp_path / "model.joblib")
    assert model.named_steps["model"].n_estimators == 8
    assert model.named_steps["model"].random_state == 4
    assert model.predict(frame[["amount", "age", "home"]]).shape == (len(frame),)


def test_run_takes_the_seed_as_kfp_hands_it_over(tmp_path):
    """KFP passes ints as floats: 4.0 is the seed 4 (and an int in the record)."""
    dataset().to_parquet(tmp_path / "train.parquet", index=False)
    spec_for("regression").write(tmp_path / "spec.json")

    record = run(str(tmp_path / "train.parquet"), str(tmp_path / "spec.json"), "random_forest",
                 '{"n_estimators": 3}', 4.0, str(tmp_path / "model.joblib"),
                 str(tmp_path / "record.json"))

    assert record.seed == 4 and isinstance(record.seed, int)
    written = json.loads((tmp_path / "record.json").read_text())["seed"]
    assert written == 4 and isinstance(written, int)


@pytest.mark.parametrize(
    ("estimator", "params_json"),
    [("linear", "alpha=1"), ("linear", '{"C": 1.0}'), ("xgboost", "{}"),
     ("random_forest", '{"class_weight": "balanced"}')],
    ids=["not-json", "other-task's-parameter", "unknown-estimator", "classifier-only"],
)
def test_run_rejects_bad_params_before_writing_anything(tmp_path, monkeypatch, estimator,
                                                        params_json):
    dataset().to_parquet(tmp_path / "train.parquet", index=False)
    spec_for("regression").write(tmp_path / "spec.json")
    monkeypatch.setenv("KEEL_ERROR_FILE", str(tmp_path / "error.json"))

    with pytest.raises(ParameterError):
        run(str(tmp_path / "train.parquet"), str(tmp_path / "spec.json"), estimator,
            params_json, 0, str(tmp_path / "model.joblib"), str(tmp_path / "record.json"))

    assert not (tmp_path / "model.joblib").exists()
    assert not (tmp_path / "record.json").exists()
    report: dict[str, Any] = json.loads((tmp_path / "error.json").read_text())
    assert report["stage"] == "train" and not report["unexpected"]
    # an unknown name is reported as UnknownParameter, a ParameterError subclass
    assert report["type"] in ("ParameterError", "UnknownParameter")
    rebuilt = from_report(report)
    assert isinstance(rebuilt, ParameterError) and str(rebuilt).startswith("[train] ")


def test_run_refuses_a_spec_that_is_not_a_feature_spec(tmp_path):
    dataset().to_parquet(tmp_path / "train.parquet", index=False)
    bad = spec_for("regression").to_dict() | {"encoding": "target"}
    (tmp_path / "spec.json").write_text(json.dumps(bad))

    with pytest.raises(ContractError) as caught:
        run(str(tmp_path / "train.parquet"), str(tmp_path / "spec.json"), "linear", "{}", 0,
            str(tmp_path / "model.joblib"), str(tmp_path / "record.json"))

    message = str(caught.value)
    assert message.startswith("[train] The feature spec") and "'encoding'" in message
    assert not (tmp_path / "model.joblib").exists()
