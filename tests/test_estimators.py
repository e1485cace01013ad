"""Unit tests of keel.estimators: the table of trainable estimators and the parameter checks.

Adding an estimator is one entry in ``ESTIMATORS``; these tests hold every entry to what train,
preprocess and hyperparameter search rely on, and pin the one private scikit-learn API Keel calls.
"""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
from sklearn.base import is_classifier, is_regressor

import keel.estimators
from keel.contracts import FeatureSpec
from keel.errors import ParameterError
from keel.estimators import (
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    TASKS,
    Estimator,
    check_declared_constraints,
    check_params,
    get_estimator,
    make_estimator,
)

ENTRIES = list(ESTIMATORS)
CASES = [(name, task) for name in ENTRIES for task in TASKS]
IS_KIND = {"classification": is_classifier, "regression": is_regressor}
OTHER = {"classification": "regression", "regression": "classification"}


@pytest.fixture(autouse=True)
def one_thread():
    """OpenMP threads fighting over 2 shared cores make HistGradientBoosting 100x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


# --- the table -----------------------------------------------------------------------------------


def test_each_entry_is_filed_under_its_name_and_the_default_is_one_of_them():
    assert ENTRIES, "the table is empty"
    assert all(entry.name == name for name, entry in ESTIMATORS.items())
    assert DEFAULT_ESTIMATOR in ESTIMATORS
    assert TASKS == ("classification", "regression")


@pytest.mark.parametrize(("name", "task"), CASES)
def test_each_entry_has_a_scikit_learn_estimator_of_the_right_kind_for_each_task(name, task):
    entry = ESTIMATORS[name]
    assert set(entry.classes) == set(TASKS)
    assert entry.classes[task].startswith("sklearn.")  # KServe's sklearn runtime loads the model

    cls = entry.estimator_class(task)

    assert inspect.isclass(cls) and cls.__name__ == entry.classes[task].rpartition(".")[2]
    instance = cls()
    assert IS_KIND[task](instance), f"{cls.__name__} is not a {task} estimator"
    assert not IS_KIND[OTHER[task]](instance)
    assert hasattr(instance, "fit") and hasattr(instance, "predict")
    if task == "classification":
        assert hasattr(instance, "predict_proba")  # evaluate scores probabilities


@pytest.mark.parametrize("name", ENTRIES)
def test_each_entry_describes_what_the_transformer_must_do(name):
    entry = ESTIMATORS[name]
    assert entry.encoding in ("onehot", "ordinal")
    assert all(isinstance(flag, bool) for flag in
               (entry.scales_numbers, entry.native_missing, entry.native_categorical))
    assert set(entry.defaults) <= set(TASKS)
    if entry.native_categorical:  # train hands it the categorical mask
        for task in TASKS:
            assert "categorical_features" in inspect.signature(entry.estimator_class(task)).parameters


@pytest.mark.parametrize(("name", "task"), CASES)
def test_each_entrys_defaults_are_accepted_and_applied(name, task):
    entry = ESTIMATORS[name]
    defaults = entry.defaults.get(task, {})

    model = make_estimator(name, task, {}, seed=0)
    explicit = make_estimator(name, task, dict(defaults), seed=0)

    effective = model.get_params()
    assert {key: effective[key] for key in defaults} == defaults
    assert explicit.get_params() == effective


@pytest.mark.parametrize(
    ("name", "task", "param", "value"),
    [(name, task, param, value)
     for name, task in CASES
     for param, values in ESTIMATORS[name].search_space[task].items()
     for value in values],
)
def test_each_search_space_value_is_accepted_for_each_task(name, task, param, value):
    """Hyperparameter search draws from these: every candidate must make a valid estimator."""
    model = make_estimator(name, task, {param: value}, seed=0)
    assert model.get_params()[param] == value


@pytest.mark.parametrize("name", ENTRIES)
def test_each_search_space_lists_distinct_candidates_for_both_tasks(name):
    space = ESTIMATORS[name].search_space
    assert set(space) == {"classification", "regression"}
    for task in space:
        for param, values in space[task].items():
            assert isinstance(values, list) and len(values) >= 2, param
            assert len({repr(v) for v in values}) == len(values), param


def test_the_estimator_setting_offers_exactly_the_table():
    from keel.settings import DEFAULTS, SETTINGS

    assert SETTINGS["estimator"].choices == tuple(ESTIMATORS)
    assert DEFAULTS["estimator"] == DEFAULT_ESTIMATOR
    for name in ESTIMATORS:
        assert name in SETTINGS["estimator"].help


# --- get_estimator -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ENTRIES)
def test_get_estimator_returns_the_entry(name):
    assert get_estimator(name) is ESTIMATORS[name]


@pytest.mark.parametrize("name", ["xgboost", "Linear", "", None, ["linear"]])
def test_get_estimator_of_an_unknown_name_lists_the_known_ones(name):
    with pytest.raises(ParameterError) as caught:
        get_estimator(name)
    message = str(caught.value)
    assert message.startswith("[train] The 'estimator' parameter of train must be one of ")
    assert ", ".join(ESTIMATORS) in message
    assert message.endswith(f"Got {name!r}.")


def test_get_estimator_names_the_stage_that_asked():
    with pytest.raises(ParameterError) as caught:
        get_estimator("xgboost", stage="evaluate")
    assert str(caught.value).startswith("[evaluate] The 'estimator' parameter of evaluate ")
    assert caught.value.stage == "evaluate"


# --- check_declared_constraints: pins scikit-learn's private _validate_params ---------------------
# If a scikit-learn upgrade renames, removes or weakens ``_validate_params``, these fail: then a
# bad --param would only be caught minutes into training, or not at all.


def _classes(name: str) -> list[type]:
    return [ESTIMATORS[name].estimator_class(task) for task in TASKS]


@pytest.mark.parametrize(
    ("name", "param", "value"),
    [
        ("hist_gradient_boosting", "max_depth", "abc"),
        ("hist_gradient_boosting", "max_depth", -3),
        ("hist_gradient_boosting", "max_depth", 2.5),
        ("random_forest", "max_depth", "abc"),
        ("random_forest", "max_depth", -3),
        ("hist_gradient_boosting", "learning_rate", 0),
        ("hist_gradient_boosting", "learning_rate", -0.1),
        ("hist_gradient_boosting", "learning_rate", "fast"),
    ],
)
def test_check_declared_constraints_refuses_bad_values_naming_the_parameter(name, param, value):
    for cls in _classes(name):
        model = cls(**{param: value})  # scikit-learn's constructors store, they do not check
        with pytest.raises(ParameterError) as caught:
            check_declared_constraints(model)
        message = str(caught.value)
        assert message.startswith(f"[train] The {param!r} parameter of {cls.__name__} must be ")
        assert f"Got {value!r}" in message
        assert caught.value.stage == "train"


@pytest.mark.parametrize(
    ("name", "param", "value"),
    [
        ("hist_gradient_boosting", "max_depth", None),
        ("hist_gradient_boosting", "max_depth", 1),
        ("hist_gradient_boosting", "max_depth", 8),
        ("random_forest", "max_depth", None),
        ("random_forest", "max_depth", 16),
        ("hist_gradient_boosting", "learning_rate", 0.1),
        ("hist_gradient_boosting", "learning_rate", 1),
        ("hist_gradient_boosting", "learning_rate", 3.0),
    ],
)
def test_check_declared_constraints_passes_good_values(name, param, value):
    for cls in _classes(name):
        model = cls(**{param: value})
        assert check_declared_constraints(model) is None
        assert model.get_params()[param] == value  # checking does not change the model


@pytest.mark.parametrize(("name", "task"), CASES)
def test_check_declared_constraints_passes_scikit_learns_own_defaults(name, task):
    check_declared_constraints(ESTIMATORS[name].estimator_class(task)())


def test_check_declared_constraints_does_not_fit():
    model = ESTIMATORS["random_forest"].estimator_class("classification")(n_estimators=3)
    check_declared_constraints(model)
    assert not hasattr(model, "estimators_")


# --- check_params --------------------------------------------------------------------------------


def test_check_params_with_task_auto_accepts_a_parameter_only_one_tasks_class_takes():
    assert check_params("random_forest", "auto", {"class_weight": "balanced"}) is None
    assert check_params("random_forest", "classification", {"class_weight": "balanced"}) is None
    assert check_params("linear", "auto", {"alpha": 2.0}) is None  # Ridge's only
    assert check_params("linear", "auto", {"C": 2.0}) is None  # LogisticRegression's only


def test_check_params_refuses_the_other_tasks_parameter_once_the_task_is_known():
    with pytest.raises(ParameterError) as caught:
        check_params("random_forest", "regression", {"class_weight": "balanced"})
    message = str(caught.value)
    assert message.startswith("[train] RandomForestRegressor has no parameter 'class_weight'.")
    assert "Its parameters are: " in message and "n_estimators" in message

    with pytest.raises(ParameterError, match="LogisticRegression has no parameter 'alpha'"):
        check_params("linear", "classification", {"alpha": 2.0})


@pytest.mark.parametrize("task", ["auto", *TASKS])
def test_check_params_refuses_unknown_names_listing_the_accepted_ones(task):
    with pytest.raises(ParameterError) as caught:
        check_params("hist_gradient_boosting", task, {"max_dept": 3, "learning_rate": 0.1})
    message = str(caught.value)
    assert message.startswith("[train] HistGradientBoosting")
    assert "has no parameter 'max_dept'." in message
    accepted = message.partition("Its parameters are: ")[2]
    for name in ("max_depth", "learning_rate", "max_iter", "random_state", "categorical_features"):
        assert name in accepted
    assert "learning_rate" not in message.partition("Its parameters are: ")[0]


@pytest.mark.parametrize("task", ["auto", *TASKS])
@pytest.mark.parametrize(
    ("name", "params", "named"),
    [
        ("hist_gradient_boosting", {"max_depth": -3}, "'max_depth'"),
        ("hist_gradient_boosting", {"learning_rate": "fast"}, "'learning_rate'"),
        ("random_forest", {"n_estimators": 0}, "'n_estimators'"),
        ("random_forest", {"max_features": "most"}, "'max_features'"),
    ],
)
def test_check_params_refuses_bad_values(task, name, params, named):
    with pytest.raises(ParameterError) as caught:
        check_params(name, task, params)
    message = str(caught.value)
    assert message.startswith("[train] The " + named + " parameter of ")
    assert f"Got {next(iter(params.values()))!r}" in message


def test_check_params_with_task_auto_reports_the_bad_value_not_the_unknown_name():
    """Only classifiers take class_weight: the classifier's complaint about the value is the one."""
    with pytest.raises(ParameterError) as caught:
        check_params("random_forest", "auto", {"class_weight": "heavy"})
    message = str(caught.value)
    assert "The 'class_weight' parameter of RandomForestClassifier must be " in message
    assert "has no parameter" not in message


def test_check_params_with_task_auto_accepts_a_value_one_tasks_class_takes():
    assert check_params("random_forest", "auto", {"criterion": "gini"}) is None
    assert check_params("random_forest", "auto", {"criterion": "squared_error"}) is None
    with pytest.raises(ParameterError, match="'criterion'"):
        check_params("random_forest", "regression", {"criterion": "gini"})
    with pytest.raises(ParameterError, match="'criterion'"):
        check_params("random_forest", "auto", {"criterion": "entropic"})


def test_check_params_of_an_unknown_estimator_lists_the_known_ones():
    with pytest.raises(ParameterError) as caught:
        check_params("xgboost", "auto", {})
    assert ", ".join(ESTIMATORS) in str(caught.value) and "'xgboost'" in str(caught.value)


# --- adding an estimator is one entry ------------------------------------------------------------

EXTRA_TREES = Estimator(
    name="extra_trees",
    classes={"classification": "sklearn.ensemble.ExtraTreesClassifier",
             "regression": "sklearn.ensemble.ExtraTreesRegressor"},
    encoding="ordinal", scales_numbers=False, native_missing=True, native_categorical=False,
    defaults={"classification": {"n_estimators": 20}, "regression": {"n_estimators": 20}},
    search_space=dict.fromkeys(("classification", "regression"),
                               {"max_depth": [None, 8], "min_samples_leaf": [1, 5]}),
)


def small_frame(rows: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    amount = rng.normal(size=rows)
    home = np.array(["rent", "owner", "parents"])[np.arange(rows) % 3]
    frame = pd.DataFrame({
        "amount": amount,
        "home": home,
        "risk": np.where(amount + (home == "rent") > 0.5, "bad", "good"),
        "price": 3 * amount + 2 * (home == "owner"),
    })
    frame.loc[[2, 7], "amount"] = np.nan
    return frame


@pytest.mark.parametrize(("task", "target", "expected_class"), [
    ("classification", "risk", "ExtraTreesClassifier"),
    ("regression", "price", "ExtraTreesRegressor"),
])
def test_a_new_table_entry_is_all_it_takes_to_train_an_estimator(
    monkeypatch, task, target, expected_class
):
    from keel.settings import checked
    from keel.train import train

    monkeypatch.setitem(keel.estimators.ESTIMATORS, "extra_trees", EXTRA_TREES)
    frame = small_frame()
    spec = FeatureSpec(target=target, task=task, numeric=["amount"], categorical=["home"],
                       encoding="auto")
    # the stage's checks find the entry: the settings table looks names up in ESTIMATORS
    assert checked("estimator", "extra_trees") == "extra_trees"
    params = checked("params", '{"max_depth": 8}', estimator="extra_trees", task=task)

    pipeline, record = train(frame, spec, "extra_trees", params, seed=3)

    assert (record.estimator, record.estimator_class) == ("extra_trees", expected_class)
    assert record.encoding == "ordinal"  # the entry's preference for "auto"
    assert record.effective_params["n_estimators"] == 20  # the entry's defaults
    assert record.effective_params["max_depth"] == 8 and record.effective_params["random_state"] == 3
    model = pipeline.named_steps["model"]
    assert type(model).__name__ == expected_class
    x = frame[["amount", "home"]]
    assert pipeline.score(x, frame[target]) > 0.8
    unseen = pd.DataFrame({"amount": [np.nan], "home": ["castle"]})
    assert pipeline.predict(unseen).shape == (1,)
    with pytest.raises(ParameterError, match="'max_depth'"):
        train(frame, spec, "extra_trees", {"max_depth": -1}, seed=3)


def test_a_monkeypatched_entry_is_gone_afterwards():
    """The previous test changes the module's table only for itself."""
    assert "extra_trees" not in ESTIMATORS
    with pytest.raises(ParameterError):
        get_estimator("extra_trees")
