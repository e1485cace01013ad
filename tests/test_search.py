"""Unit tests of keel.search: the --grid form, the checks, the plan, one trial, the choice.

And train.run with the trials' results: the best on validation rows is fitted on all training rows.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from keel.contracts import ContractError, FeatureSpec, Search, TrainRecord, Trial
from keel.errors import KeelError, ParameterError
from keel.estimators import ESTIMATORS
from keel.search import (
    MAX_TRIALS,
    SearchError,
    check_grid,
    check_search_random,
    choose,
    grid_from_cli,
    plan,
    run_trial,
    validation_split,
)
from keel.train import run

try:
    from factories import one_thread  # noqa: F401 - an autouse fixture
except ImportError:  # tests/ imported as a package
    from tests.factories import one_thread  # noqa: F401


# --- data --------------------------------------------------------------------------------------

TARGETS = {"binary": "risk", "multiclass": "band", "regression": "price"}


def dataset(rows: int = 80, seed: int = 0) -> pd.DataFrame:
    """60 'good' and 20 'bad' rows (binary), three bands, a price: all explained by the features.

    ``row_id`` is no feature: it tells which rows a trial fitted on and was scored on.
    """
    rng = np.random.default_rng(seed)
    amount = rng.normal(size=rows)
    home = np.array(["rent", "owner", "parents", "rent"])[np.arange(rows) % 4]
    order = np.argsort(amount + (home == "rent") * 0.8 + rng.normal(scale=0.3, size=rows))
    risk = np.full(rows, "good", dtype=object)
    risk[order[-rows // 4:]] = "bad"
    return pd.DataFrame({
        "row_id": np.arange(rows),
        "amount": amount,
        "age": rng.integers(18, 70, rows).astype(float),
        "home": home,
        "risk": risk,
        "band": np.array(["low", "mid", "high"])[np.arange(rows) % 3],
        "price": 3 * amount + 2 * (home == "owner") + rng.normal(scale=0.3, size=rows),
    })


def spec_for(kind: str) -> FeatureSpec:
    return FeatureSpec(target=TARGETS[kind],
                       task="regression" if kind == "regression" else "classification",
                       numeric=["amount", "age"], categorical=["home"], encoding="auto")


def inputs(folder: Path, kind: str = "binary", frame: pd.DataFrame | None = None
           ) -> tuple[str, str]:
    """The two inputs of a trial, and nothing else, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (dataset() if frame is None else frame).to_parquet(folder / "train.parquet", index=False)
    spec_for(kind).write(folder / "spec.json")
    return str(folder / "train.parquet"), str(folder / "spec.json")


def item(params: dict[str, Any], index: int = 0, method: str = "grid") -> str:
    return json.dumps({"index": index, "params": params, "method": method})


def trial(index: int, score: float | None, metric: str = "roc_auc", **params: Any) -> Trial:
    return Trial(index=index, params=params or {"max_iter": index + 1}, metric=metric,
                 score=score, error=None if score is not None else "ValueError: no",
                 fit_seconds=0.01, validation_rows=20)


def items_of(texts: list[str]) -> list[dict[str, Any]]:
    return [json.loads(text) for text in texts]


# --- --grid on the command line ----------------------------------------------------------------


def test_grid_from_cli_reads_each_value_as_a_param_value():
    grid = grid_from_cli(("max_depth=3,5", "learning_rate=0.05,0.1"))
    assert grid == {"max_depth": [3, 5], "learning_rate": [0.05, 0.1]}
    assert [type(v) for v in grid["max_depth"]] == [int, int]
    assert [type(v) for v in grid["learning_rate"]] == [float, float]

    grid = grid_from_cli((" max_depth = none , 4 ", "warm_start=true,FALSE",
                          "class_weight=balanced,null", "max_features=1,1.0"))
    assert grid == {"max_depth": [None, 4], "warm_start": [True, False],
                    "class_weight": ["balanced", None], "max_features": [1, 1.0]}
    assert [type(v) for v in grid["max_features"]] == [int, float]
    assert grid_from_cli(()) == {}


def test_grid_from_cli_takes_a_json_list_and_merges_a_name_given_twice():
    grid = grid_from_cli(('class_weight=[null,"balanced"]', "monotonic_cst=[[1,0],[0,1]]",
                          "max_depth=3", "max_depth=5,8", "max_depth=[12]"))
    assert grid == {"class_weight": [None, "balanced"], "monotonic_cst": [[1, 0], [0, 1]],
                    "max_depth": [3, 5, 8, 12]}


@pytest.mark.parametrize(
    ("text", "why"),
    [("max_depth", "'=' is missing"), ("=3,5", "the name is missing"),
     (" =3", "the name is missing"), ("max_depth=", "a value is empty"),
     ("max_depth=3,,5", "a value is empty"), ("max_depth=3,", "a value is empty"),
     ("max_depth=[3,5", "not valid JSON"), ("max_depth=[3]]", "not valid JSON"),
     ("max_depth=[]", "the list is empty"), ("", "'=' is missing")],
)
def test_grid_from_cli_refuses_malformed_items(text, why):
    with pytest.raises(ParameterError) as caught:
        grid_from_cli(("max_iter=10,20", text))
    message = str(caught.value)
    assert message.startswith("[train] A --grid must look like NAME=V1,V2")
    assert why in message
    assert message.endswith(f"Got {text!r}.")


# --- check_grid --------------------------------------------------------------------------------


def test_check_grid_returns_the_grid_names_sorted_values_as_given():
    grid = check_grid({"max_iter": [10, 20], "learning_rate": [0.3, 0.1], "max_depth": [None, 3]},
                      "hist_gradient_boosting", "regression", {"l2_regularization": 1.0})
    assert list(grid) == ["learning_rate", "max_depth", "max_iter"]
    assert grid == {"learning_rate": [0.3, 0.1], "max_depth": [None, 3], "max_iter": [10, 20]}
    assert check_grid({}, "linear", "regression", {}) == {}
    assert check_grid("", "linear", "regression", {}) == {}


def test_check_grid_takes_back_the_ints_kfp_turned_into_floats():
    """A grid mapping went through KFP: 3 arrives as 3.0; JSON text keeps 1 and 1.0 apart."""
    grid = check_grid({"max_depth": [3.0, None], "learning_rate": [1.0], "max_iter": [20.0]},
                      "hist_gradient_boosting", "classification", {})
    assert grid == {"learning_rate": [1.0], "max_depth": [3, None], "max_iter": [20]}
    assert type(grid["max_depth"][0]) is int and type(grid["max_iter"][0]) is int
    assert type(grid["learning_rate"][0]) is float  # the float is valid: kept as it is
    # min_samples_leaf=1.0 is no valid fraction: it is the int 1
    assert check_grid({"min_samples_leaf": [1.0, 5.0, 0.1]}, "random_forest", "regression",
                      {})["min_samples_leaf"] == [1, 5, 0.1]

    text = check_grid('{"max_features": [1, 1.0], "max_depth": [3]}', "random_forest",
                      "regression", {})
    assert text == {"max_depth": [3], "max_features": [1, 1.0]}
    assert [type(v) for v in text["max_features"]] == [int, float]
    with pytest.raises(ParameterError, match=r"max_depth=3\.0"):
        check_grid('{"max_depth": [3.0]}', "random_forest", "regression", {})


def test_check_grid_checks_for_the_task_or_for_either_task_when_auto():
    assert check_grid({"class_weight": [None, "balanced"]}, "random_forest", "auto", {}) == {
        "class_weight": [None, "balanced"]}
    with pytest.raises(ParameterError, match="class_weight"):
        check_grid({"class_weight": [None, "balanced"]}, "random_forest", "regression", {})
    with pytest.raises(ParameterError, match="'C'"):
        check_grid({"C": [1.0]}, "linear", "regression", {})
    assert check_grid({"C": [1.0]}, "linear", "auto", {}) == {"C": [1.0]}


@pytest.mark.parametrize(
    ("grid", "params", "expected"),
    [
        ({"max_dept": [3, 5]}, {},
         ["'grid'", "max_dept=3", "has no parameter 'max_dept'", "max_depth"]),
        ({"max_depth": [3, -3]}, {},
         ["'grid'", "max_depth=-3", "refuses", "'max_depth'", "Got -3"]),
        ({"learning_rate": [0.1, "fast"]}, {}, ["'grid'", 'learning_rate="fast"', "Got 'fast'"]),
        ({"max_depth": [3, 8]}, {"max_depth": 5},
         ["'grid'", "'params'", "both set 'max_depth'", "params: 5", "grid: [3, 8]"]),
        ({"max_depth": []}, {}, ["'grid'", "non-empty list", "Got max_depth=[]"]),
        ({"max_depth": 3}, {}, ["'grid'", "non-empty list", "Got max_depth=3"]),
        ({"max_depth": [3, 5, 3]}, {}, ["'grid'", "max_depth=3 twice"]),
        ({"learning_rate": [0.1, math.nan]}, {}, ["'grid'", "learning_rate=nan",
                                                  "not a JSON value"]),
        ({"": [1]}, {}, ["'grid'", "parameter names", "Got ''"]),
        (["max_depth"], {}, ["'grid'", "a mapping", "Got ['max_depth']"]),
        ("max_depth=3", {}, ["'grid'", "JSON object", "Got 'max_depth=3'"]),
        ({"learning_rate": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07],
          "max_iter": [10, 20, 30, 40, 50, 60, 70], "max_leaf_nodes": [2, 3, 4, 5, 6, 7, 8]}, {},
         ["'grid'", "343 parameter sets (7 x 7 x 7)", f"the {MAX_TRIALS} trials",
          "search_random"]),
    ],
    ids=["unknown-name", "bad-value", "bad-type", "in-params-too", "empty-list", "not-a-list",
         "duplicate", "nan", "empty-name", "not-a-mapping", "not-json", "too-large"],
)
def test_check_grid_refuses_with_a_message_naming_the_grid(grid, params, expected):
    with pytest.raises(ParameterError) as caught:
        check_grid(grid, "hist_gradient_boosting", "regression", params)
    message = str(caught.value)
    assert message.startswith("[train] The 'grid' parameter of train")
    for part in expected:
        assert part in message, (part, message)


def test_a_grid_larger_than_the_trials_may_be_sampled_from():
    big = {"learning_rate": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07],
           "max_iter": [10, 20, 30, 40, 50, 60, 70], "max_leaf_nodes": [2, 3, 4, 5, 6, 7, 8]}
    assert check_grid(big, "hist_gradient_boosting", "regression", {}, search_random=5) == big
    assert check_grid(big, "hist_gradient_boosting", "regression", {}, search_random=5.0) == big
    assert len(plan("hist_gradient_boosting", "regression", {}, big, 5, 0)) == 5
    with pytest.raises(ParameterError, match="343 parameter sets"):
        plan("hist_gradient_boosting", "regression", {}, big, 0, 0)


# --- check_search_random -----------------------------------------------------------------------


@pytest.mark.parametrize(("n", "expected"), [(0, 0), (3, 3), (3.0, 3), (0.0, 0), (18, 18)])
def test_search_random_is_a_whole_number_kfp_may_hand_as_a_float(n, expected):
    count = check_search_random(n, {}, "hist_gradient_boosting", "classification")
    assert count == expected and type(count) is int


@pytest.mark.parametrize("n", [3.5, True, False, -1, "3", None, math.nan, math.inf, 257])
def test_search_random_refuses_what_is_not_a_count_of_trials(n):
    with pytest.raises(ParameterError) as caught:
        check_search_random(n, {}, "hist_gradient_boosting", "classification")
    message = str(caught.value)
    assert message.startswith("[train] The 'search_random' parameter of train must be ")
    assert f"Got {n!r}." in message or f"Got {int(n)}." in message


def test_search_random_cannot_ask_for_more_sets_than_the_grid_has():
    grid = {"max_depth": [3, 5], "max_iter": [10, 20]}
    assert check_search_random(4, grid, "hist_gradient_boosting", "regression") == 4
    with pytest.raises(ParameterError) as caught:
        check_search_random(5, grid, "hist_gradient_boosting", "regression")
    message = str(caught.value)
    assert "asks for 5 distinct parameter sets, but the grid has only 4 (2 x 2" in message
    assert "leave search_random at 0 to try the whole grid" in message


def test_search_random_without_a_grid_samples_the_default_search_space():
    # hist_gradient_boosting's space: 3 learning rates x 3 depths x 2 l2 = 18 sets
    assert check_search_random(18, {}, "hist_gradient_boosting", "auto") == 18
    with pytest.raises(ParameterError) as caught:
        check_search_random(19, {}, "hist_gradient_boosting", "regression")
    assert "the default search space of hist_gradient_boosting for regression has only 18" \
        in str(caught.value)
    # a name params sets is not searched: 3 x 2 sets are left
    assert check_search_random(6, {}, "hist_gradient_boosting", "regression",
                               params={"max_depth": 4}) == 6
    with pytest.raises(ParameterError, match="has only 6 "):
        check_search_random(7, {}, "hist_gradient_boosting", "regression",
                            params={"max_depth": 4})
    with pytest.raises(ParameterError, match="nothing is left to search"):
        check_search_random(1, {}, "linear", "classification", params={"C": 2.0})
    with pytest.raises(ParameterError, match="'estimator'"):
        check_search_random(1, {}, "xgboost", "classification")


def test_search_random_needs_a_default_space_for_each_possible_task(monkeypatch):
    only_classification = replace(ESTIMATORS["linear"],
                                  search_space={"classification": {"C": [0.1, 1.0]}})
    monkeypatch.setitem(ESTIMATORS, "linear", only_classification)

    assert check_search_random(2, {}, "linear", "classification") == 2
    assert check_search_random(2, {"alpha": [1.0, 2.0]}, "linear", "auto") == 2
    assert check_search_random(0, {}, "linear", "auto") == 0
    for task in ("auto", "regression"):
        with pytest.raises(ParameterError) as caught:
            check_search_random(2, {}, "linear", task)
        message = str(caught.value)
        assert "linear has no default search space for regression" in message
        assert "--grid" in message


# --- plan --------------------------------------------------------------------------------------


def test_plan_without_a_search_is_one_item_with_the_base_params():
    items = plan("hist_gradient_boosting", "classification", {"max_iter": 10}, {}, 0, 3)
    assert items_of(items) == [{"index": 0, "params": {"max_iter": 10}, "method": "none"}]


def test_plan_of_a_grid_is_its_whole_product_in_a_stable_order():
    grid = {"max_depth": [3, 5], "learning_rate": [0.05, 0.1, 0.2]}
    items = items_of(plan("hist_gradient_boosting", "regression", {"max_iter": 10}, grid, 0, 0))

    assert [i["index"] for i in items] == list(range(6))
    assert {i["method"] for i in items} == {"grid"}
    assert [i["params"] for i in items] == [
        {"max_iter": 10, "learning_rate": rate, "max_depth": depth}
        for rate, depth in itertools.product([0.05, 0.1, 0.2], [3, 5])]
    # a grid whose keys come in another order (KFP does not keep them) plans the same items
    again = plan("hist_gradient_boosting", "regression", {"max_iter": 10},
                 dict(reversed(grid.items())), 0, 99)
    assert items_of(again) == items


def test_plan_items_carry_the_ints_kfp_turned_into_floats_as_ints():
    items = plan("hist_gradient_boosting", "regression", {}, {"max_depth": [3.0, 5.0]}, 0, 0)
    assert items == ['{"index": 0, "params": {"max_depth": 3}, "method": "grid"}',
                     '{"index": 1, "params": {"max_depth": 5}, "method": "grid"}']


def test_plan_refuses_what_the_checks_refuse():
    with pytest.raises(ParameterError, match="max_depth=-1"):
        plan("hist_gradient_boosting", "regression", {}, {"max_depth": [-1]}, 0, 0)
    with pytest.raises(ParameterError, match="has only 2"):
        plan("hist_gradient_boosting", "regression", {}, {"max_depth": [3, 4]}, 3, 0)
    with pytest.raises(ParameterError, match="'seed'"):
        plan("hist_gradient_boosting", "regression", {}, {"max_depth": [3, 4]}, 0, -1)
    with pytest.raises(ValueError, match="task"):
        plan("hist_gradient_boosting", "auto", {}, {}, 3, 0)


GRID = {"max_depth": [2, 3, 4, 5], "learning_rate": [0.05, 0.1, 0.2],
        "max_iter": [5, 10]}  # 24 sets


def test_random_search_samples_distinct_sets_of_the_grid_with_the_seed():
    product = [{"learning_rate": r, "max_depth": d, "max_iter": i}
               for r, d, i in itertools.product(*(GRID[n] for n in sorted(GRID)))]
    first = items_of(plan("hist_gradient_boosting", "classification", {"max_bins": 32}, GRID,
                          5, 7))

    assert len(first) == 5 and [i["index"] for i in first] == list(range(5))
    assert {i["method"] for i in first} == {"random"}
    points = [{k: v for k, v in i["params"].items() if k != "max_bins"} for i in first]
    assert all(i["params"]["max_bins"] == 32 for i in first)
    assert all(point in product for point in points)
    assert len({json.dumps(point) for point in points}) == 5  # distinct
    assert points == sorted(points, key=product.index)  # in the grid's order
    assert items_of(plan("hist_gradient_boosting", "classification", {"max_bins": 32}, GRID,
                         5, 7)) == first
    others = [items_of(plan("hist_gradient_boosting", "classification", {"max_bins": 32}, GRID,
                            5, seed)) for seed in (8, 9, 10)]
    assert any(other != first for other in others)
    # asking for every set gives the whole grid
    every = items_of(plan("hist_gradient_boosting", "classification", {}, GRID, 24, 0))
    assert [i["params"] for i in every] == product


def test_random_search_without_a_grid_samples_the_estimator_search_space():
    space = ESTIMATORS["random_forest"].search_space["classification"]
    items = items_of(plan("random_forest", "classification", {"n_jobs": 1}, {}, 6, 1))

    assert len(items) == 6 and {i["method"] for i in items} == {"random"}
    for entry in items:
        params = entry["params"]
        assert set(params) == {"n_jobs", *space}
        assert all(params[name] in values for name, values in space.items())
    assert len({json.dumps(i["params"]) for i in items}) == 6
    assert items_of(plan("random_forest", "classification", {"n_jobs": 1}, {}, 6, 1)) == items

    # a name params sets stays as params set it: the rest is searched
    fixed = items_of(plan("random_forest", "regression", {"max_depth": 4}, {}, 4, 1))
    assert {i["params"]["max_depth"] for i in fixed} == {4}
    assert len({(i["params"]["n_estimators"], i["params"]["min_samples_leaf"])
                for i in fixed}) == 4


# --- one trial ---------------------------------------------------------------------------------


def test_a_trial_without_a_search_returns_at_once_without_the_data_stack():
    none = item({"max_iter": 10}, method="none")
    code = ("import sys, json; from keel.search import run_trial; "
            f"r = run_trial('/nowhere/train.parquet', '/nowhere/spec.json', 'linear', {none!r}, "
            "0, 0.2); "
            "print(json.dumps([r, sorted(m for m in ('pandas', 'sklearn', 'numpy', 'pyarrow') "
            "if m in sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == ["", []]


def test_a_trial_is_scored_on_validation_rows_carved_from_the_training_rows(tmp_path, monkeypatch):
    import keel.metrics
    import keel.train

    fitted: list[pd.DataFrame] = []
    scored: list[pd.DataFrame] = []
    real_train, real_predict = keel.train.train, keel.metrics.predict

    def spy_train(frame, *args, **kwargs):
        fitted.append(frame.copy())
        return real_train(frame, *args, **kwargs)

    def spy_predict(model, frame, spec):
        scored.append(frame.copy())
        return real_predict(model, frame, spec)

    monkeypatch.setattr(keel.train, "train", spy_train)
    monkeypatch.setattr(keel.metrics, "predict", spy_predict)
    train_path, spec_path = inputs(tmp_path)
    frame = dataset()

    results = [Trial.from_json(run_trial(train_path, spec_path, "hist_gradient_boosting",
                                         item({"max_iter": n}, index), 5, 0.25))
               for index, n in enumerate((3, 10))]

    assert [t.index for t in results] == [0, 1]
    assert [t.params for t in results] == [{"max_iter": 3}, {"max_iter": 10}]
    assert {t.metric for t in results} == {"roc_auc"}
    assert all(t.score is not None and 0.5 < t.score <= 1.0 and t.error is None
               for t in results)
    assert results[0].score != results[1].score  # the params were used
    assert all(t.validation_rows == 20 for t in results)
    assert len(fitted) == len(scored) == 2
    validation = [set(f["row_id"]) for f in scored]
    fit = [set(f["row_id"]) for f in fitted]
    assert validation[0] == validation[1] and fit[0] == fit[1]  # the same rows for every trial
    assert len(validation[0]) == 20
    assert validation[0] | fit[0] == set(frame["row_id"]) and not validation[0] & fit[0]
    # stratified: the validation rows have each class in its share of the training rows
    assert scored[0]["risk"].value_counts().to_dict() == {"good": 15, "bad": 5}
    # the rows are the training rows as they were
    pd.testing.assert_frame_equal(
        scored[0].sort_values("row_id").reset_index(drop=True),
        frame[frame["row_id"].isin(validation[0])].reset_index(drop=True))


@pytest.mark.parametrize(("kind", "metric"), [("multiclass", "f1_macro"),
                                              ("regression", "rmse")])
def test_a_trial_scores_the_task_primary_metric(tmp_path, kind, metric):
    train_path, spec_path = inputs(tmp_path, kind)
    result = Trial.from_json(run_trial(train_path, spec_path, "linear", item({}), 4.0, 0.2))
    assert result.metric == metric and result.score is not None and result.score >= 0
    assert result.validation_rows == 16


def test_validation_split_is_seeded_and_stratified():
    frame, spec = dataset(), spec_for("binary")
    fit, validation = validation_split(frame, spec, 0.25, 3)
    again = validation_split(frame, spec, 0.25, 3)[1]
    other = validation_split(frame, spec, 0.25, 4)[1]
    assert list(validation["row_id"]) == list(again["row_id"])
    assert set(validation["row_id"]) != set(other["row_id"])
    assert validation["risk"].value_counts().to_dict() == {"good": 15, "bad": 5}
    assert len(fit) == 60


def test_a_trial_reads_its_two_inputs_and_nothing_else(tmp_path, monkeypatch):
    """No test input at all; the folder holds only the trial's inputs and every open is watched."""
    assert list(inspect.signature(run_trial).parameters) == [
        "train_path", "spec_path", "estimator", "item", "seed", "validation_size"]
    folder = tmp_path / "trial"
    train_path, spec_path = inputs(folder)
    dataset(seed=9).to_parquet(tmp_path / "test.parquet")  # beside it, never to be read
    opened: list[str] = []
    read_parquet = pd.read_parquet

    def spy_read_parquet(path, *args, **kwargs):
        opened.append(str(path))
        return read_parquet(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", spy_read_parquet)
    WATCH.append(opened)
    try:
        result = run_trial(train_path, spec_path, "random_forest",
                           item({"n_estimators": 5}, 2), 0, 0.2)
    finally:
        WATCH.clear()
    assert Trial.from_json(result).score is not None
    touched = {path for path in opened if path.startswith(str(tmp_path))}
    assert touched == {train_path, spec_path}
    assert sorted(p.name for p in folder.iterdir()) == ["spec.json", "train.parquet"]


WATCH: list[list[str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if WATCH and event == "open" and isinstance(args[0], str | Path):
        WATCH[0].append(str(args[0]))


sys.addaudithook(_audit)


def test_a_parameter_combination_the_fit_refuses_is_a_trial_with_its_error(tmp_path):
    train_path, spec_path = inputs(tmp_path)
    items = plan("random_forest", "classification", {"n_estimators": 5, "max_samples": 0.5},
                 {"bootstrap": [True, False]}, 0, 0)

    results = [Trial.from_json(run_trial(train_path, spec_path, "random_forest", text, 0, 0.2))
               for text in items]

    works, fails = results
    assert works.params["bootstrap"] is True and works.score is not None and works.error is None
    assert fails.params == {"n_estimators": 5, "max_samples": 0.5, "bootstrap": False}
    assert fails.score is None and fails.metric == "roc_auc"
    assert fails.error is not None and fails.error.startswith("ValueError: ")
    assert "bootstrap" in fails.error and "\n" not in fails.error
    assert fails.validation_rows == 16
    search = choose(results, "grid", 0.2)
    assert search.best == 0


@pytest.mark.parametrize("text", ["", "{}", "[1]", "not json",
                                  '{"index": 0, "params": {}, "method": "best"}',
                                  '{"index": -1, "params": {}, "method": "grid"}',
                                  '{"index": 0, "params": [], "method": "grid"}'])
def test_a_trial_refuses_an_item_the_plan_did_not_make(tmp_path, text):
    with pytest.raises(KeelError) as caught:
        run_trial(str(tmp_path / "x.parquet"), str(tmp_path / "spec.json"), "linear", text, 0,
                  0.2)
    assert str(caught.value).startswith("[tune] A trial item must be")
    assert f"Got {text!r}" in str(caught.value)


@pytest.mark.parametrize("size", [0, 1, 1.5, -0.2, True, "0.2", math.nan])
def test_a_trial_refuses_a_validation_size_that_is_no_fraction(tmp_path, size):
    train_path, spec_path = inputs(tmp_path)
    with pytest.raises(ParameterError) as caught:
        run_trial(train_path, spec_path, "linear", item({}), 0, size)
    message = str(caught.value)
    assert message.startswith("[train] The 'validation_size' parameter of train must be ")
    assert f"Got {size!r}." in message


def test_a_trial_says_when_the_training_rows_are_too_few_to_carve_validation_rows(tmp_path):
    train_path, spec_path = inputs(tmp_path, frame=dataset().head(8))
    with pytest.raises(KeelError) as caught:
        run_trial(train_path, spec_path, "linear", item({}), 0, 0.1)
    assert str(caught.value).startswith("[tune] Cannot carve validation rows from 8 training "
                                        "rows with validation_size=0.1")


# --- choose ------------------------------------------------------------------------------------


def test_choose_takes_the_highest_roc_auc_and_records_the_search():
    trials = [trial(2, 0.8), trial(0, 0.7), trial(1, 0.9), trial(3, None)]
    search = choose(trials, "random", 0.25)

    assert isinstance(search, Search)
    assert [t.index for t in search.candidates] == [0, 1, 2, 3]
    assert search.best == 1 and search.candidates[1].score == 0.9
    assert search.metric == "roc_auc" and search.higher_is_better
    assert search.method == "random" and search.validation_size == 0.25
    assert Search.from_json(search.to_json()) == search


def test_choose_takes_the_lowest_rmse_and_skips_unscored_trials():
    trials = [trial(0, None, "rmse"), trial(1, 2.0, "rmse"), trial(2, 1.0, "rmse"),
              trial(3, 3.0, "rmse")]
    search = choose(trials, "grid", 0.2)
    assert search.best == 2 and not search.higher_is_better and search.method == "grid"


@pytest.mark.parametrize(("metric", "scores", "best"),
                         [("roc_auc", [0.8, 0.9, 0.7, 0.9], 1), ("rmse", [2.0, 1.5, 1.5, 3.0], 1),
                          ("f1_macro", [0.5, 0.5, 0.5], 0)])
def test_choose_breaks_ties_by_the_lowest_index(metric, scores, best):
    trials = [trial(i, s, metric) for i, s in enumerate(scores)]
    assert choose(trials, "grid", 0.2).best == best
    assert choose(list(reversed(trials)), "grid", 0.2).best == best


def test_choose_without_a_scored_trial_lists_the_errors_shortened():
    trials = [Trial(index=i, params={"max_depth": i}, metric="rmse", score=None,
                    error=f"ValueError: bad {i} " + "x" * 5000, fit_seconds=0.0,
                    validation_rows=10) for i in range(7)]
    with pytest.raises(SearchError) as caught:
        choose(trials, "grid", 0.2)
    error = caught.value
    assert isinstance(error, KeelError) and error.stage == "train"
    message = str(error)
    assert message.startswith("[train] No trial of the search could be fitted and scored on "
                              "rmse (7 tried): #0 {\"max_depth\": 0}: ValueError: bad 0")
    assert "#4 " in message and "#5 " not in message and "and 2 more" in message
    assert len(message) < 1200


@pytest.mark.parametrize(
    ("trials", "method", "error"),
    [([], "grid", SearchError), ([trial(0, 0.5), trial(0, 0.6)], "grid", SearchError),
     ([trial(0, 0.5), trial(1, 0.6, "rmse")], "grid", SearchError),
     ([trial(0, 0.5)], "none", ValueError)],
    ids=["no-trial", "same-index", "two-metrics", "no-method"],
)
def test_choose_refuses_trials_that_are_not_one_search(trials, method, error):
    with pytest.raises(error):
        choose(trials, method, 0.2)


def test_choose_checks_the_validation_size():
    with pytest.raises(ParameterError, match="'validation_size'"):
        choose([trial(0, 0.5)], "grid", 1.0)


# --- train.run with the trials -----------------------------------------------------------------


def run_train(folder: Path, trials: list[str], params: str = "{}", kind: str = "binary",
              **kwargs: Any) -> TrainRecord:
    train_path, spec_path = inputs(folder, kind)
    return run(train_path, spec_path, "hist_gradient_boosting", params, 1,
               str(folder / "model.joblib"), str(folder / "record.json"), trials, **kwargs)


def test_train_fits_the_best_trial_on_all_training_rows_and_records_the_search(tmp_path):
    trials = [trial(0, 0.71, max_iter=5), trial(1, 0.93, max_iter=12), trial(2, 0.88, max_iter=20)]

    record = run_train(tmp_path, [t.to_json() for t in trials], '{"max_iter": 7}',
                       validation_size=0.25)

    assert record.params == {"max_iter": 12}
    assert record.train_rows == 80  # all the training rows, validation rows included
    assert record.search is not None
    assert record.search.best == 1 and record.search.candidates == trials
    assert record.search.method == "grid" and record.search.validation_size == 0.25
    assert joblib.load(tmp_path / "model.joblib").named_steps["model"].max_iter == 12
    assert TrainRecord.read(tmp_path / "record.json") == record


def test_train_records_a_random_search_as_random(tmp_path):
    record = run_train(tmp_path, [trial(0, 0.7).to_json(), trial(1, 0.6).to_json()],
                       search_random=2.0)
    assert record.search is not None and record.search.method == "random"
    assert record.params == {"max_iter": 1}


def test_train_without_a_search_fits_the_params_as_before(tmp_path):
    record = run_train(tmp_path, ["", ""], '{"max_iter": 7}')
    assert record.search is None and record.params == {"max_iter": 7}
    assert joblib.load(tmp_path / "model.joblib").named_steps["model"].max_iter == 7
    with pytest.raises(ParameterError, match="'validation_size'"):
        run_train(tmp_path, [], '{"max_iter": 6}', validation_size=5)


@pytest.mark.parametrize(
    ("trials", "kwargs", "error", "expected"),
    [(['{"index": 0}'], {}, ContractError, "[train] The search trial (trial 0) is not valid"),
     ([trial(0, None).to_json()], {}, SearchError, "[train] No trial of the search"),
     ([trial(0, 0.5).to_json()], {"validation_size": 1.2}, ParameterError, "'validation_size'"),
     ([trial(0, 0.5).to_json()], {"search_random": -1}, ParameterError, "'search_random'")],
    ids=["not-a-trial", "none-scored", "bad-validation-size", "bad-search-random"],
)
def test_train_refuses_search_results_it_cannot_use_before_writing(tmp_path, trials, kwargs,
                                                                   error, expected):
    with pytest.raises(error) as caught:
        run_train(tmp_path, trials, **kwargs)
    assert expected in str(caught.value)
    assert not (tmp_path / "model.joblib").exists() and not (tmp_path / "record.json").exists()


def test_an_eight_point_grid_search_chooses_the_best_on_validation_rows(tmp_path):
    """Plan, one trial per item, train: the set chosen is the one the validation rows prefer."""
    train_path, spec_path = inputs(tmp_path, "regression")
    grid = {"max_iter": [2, 25], "learning_rate": [0.02, 0.3], "max_depth": [1, 3]}
    items = plan("hist_gradient_boosting", "regression", {"min_samples_leaf": 5}, grid, 0, 2)
    assert len(items) == 8

    texts = [run_trial(train_path, spec_path, "hist_gradient_boosting", text, 2, 0.25)
             for text in items]
    results = [Trial.from_json(text) for text in texts]
    scores = [t.score for t in results]
    assert all(score is not None for score in scores) and len(set(scores)) == 8
    best = min(range(8), key=lambda i: scores[i])  # type: ignore[arg-type,return-value]
    worst = max(range(8), key=lambda i: scores[i])  # type: ignore[arg-type,return-value]
    assert best != worst

    record = run(train_path, spec_path, "hist_gradient_boosting", '{"min_samples_leaf": 5}', 2,
                 str(tmp_path / "model.joblib"), str(tmp_path / "record.json"), texts, 0.25)

    assert record.search is not None and record.search.best == best
    assert record.search.metric == "rmse" and not record.search.higher_is_better
    assert record.params == results[best].params
    assert record.params["min_samples_leaf"] == 5
    model = joblib.load(tmp_path / "model.joblib").named_steps["model"]
    assert {name: model.get_params()[name] for name in grid} == {
        name: results[best].params[name] for name in grid}


def test_a_trial_run_by_keel_locally_gets_its_share_of_the_cores(monkeypatch):
    """kfp.local runs two trials at once: each limits its OpenMP/BLAS pools before they start."""
    import os

    from keel import tune
    from keel.local_run import LOCAL_TRIAL_THREADS

    for pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(pool, "0")  # so that the undo removes what the trial sets
        monkeypatch.delenv(pool)
    monkeypatch.setenv(tune.TRIAL_THREADS_ENV, str(LOCAL_TRIAL_THREADS))
    item = json.dumps({"index": 0, "params": {}, "method": "none"})
    assert tune.run("unused.parquet", "unused.json", "linear", item, 0, 0.2) == ""
    assert os.environ["OMP_NUM_THREADS"] == str(LOCAL_TRIAL_THREADS)
    assert LOCAL_TRIAL_THREADS == max(1, (os.cpu_count() or 2) // 2)
