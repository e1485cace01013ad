"""Unit tests of keel.preprocess: the stable split, the feature spec, the transformer, the plan."""

from __future__ import annotations

import dataclasses
import json
import pickle
import pickletools
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from keel.contracts import ColumnInfo, FeatureSpec, SplitResult, TableSchema
from keel.errors import DataValidationError, ParameterError
from keel.estimators import ESTIMATORS, Estimator, get_estimator
from keel.preprocess import (
    MIN_CATEGORY_COUNT,
    build_transformer,
    feature_spec,
    resolve_encoding,
    run,
)
from keel.split import apply, make_rule
from keel.validate import schema_hash

REPO = Path(__file__).resolve().parents[1]


def labelled(counts: dict[str, int]) -> pd.DataFrame:
    """Rows with a unique ``id``, a feature and a class label, ``counts[label]`` rows per label."""
    labels = [label for label, n in counts.items() for _ in range(n)]
    return pd.DataFrame({"id": range(len(labels)), "x": np.arange(len(labels)) * 0.5,
                         "label": labels})


def schema_for(frame: pd.DataFrame, task: str, target: str = "label") -> TableSchema:
    """The schema document validate would write for ``frame``: every other column a feature."""
    classification = task == "classification"
    names = [n for n in frame.columns if n != target]
    numeric = [n for n in names if pd.api.types.is_numeric_dtype(frame[n])]
    categorical = [n for n in names if n not in numeric]
    columns = [
        ColumnInfo(name=n, dtype=str(frame[n].dtype),
                   kind="numeric" if n in numeric else "categorical", role="feature",
                   missing=int(frame[n].isna().sum()), unique=int(frame[n].nunique()))
        for n in names
    ]
    columns.append(ColumnInfo(
        name=target, dtype=str(frame[target].dtype),
        kind="categorical" if classification else "numeric", role="target", missing=0,
        unique=int(frame[target].nunique())))
    return TableSchema(
        target=target, task=task,
        classes=sorted(set(frame[target]), key=str) if classification else None,
        rows_in=len(frame), rows_dropped_missing_target=0, rows=len(frame), infinite_values={},
        numeric_features=numeric, categorical_features=categorical, excluded={},
        columns=columns, schema_hash=schema_hash(columns),
    )


SPEC = FeatureSpec(target="y", task="classification", numeric=["amount", "age"],
                   categorical=["home", "flag", "mixed"], encoding="auto")
LINEAR = get_estimator("linear")
FOREST = get_estimator("random_forest")
BOOSTING = get_estimator("hist_gradient_boosting")
# Neither scales nor takes missing values: no table entry is like this yet, the rule covers it.
NO_MISSING_TREE = dataclasses.replace(FOREST, name="no_missing_tree", native_missing=False)


def features(rows: int = 40) -> pd.DataFrame:
    """Numbers and categories with missing values; ``flag`` is bool, ``mixed`` mixes types."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "amount": rng.normal(100, 20, rows),
        "age": rng.integers(18, 80, rows).astype(float),
        "home": (["rent", "owner", "parents", "other"] * rows)[:rows],
        "flag": pd.Series([True, False] * (rows // 2), dtype=object),
        "mixed": pd.Series([1, "one", 2.5, "two"] * (rows // 4), dtype=object),
        "y": ["a", "b"] * (rows // 2),
    })
    frame.loc[[0, 5], "amount"] = np.nan
    frame.loc[3, "age"] = np.nan
    frame.loc[[1, 2], "home"] = None
    frame.loc[4, "flag"] = None
    return frame


# --- split -------------------------------------------------------------------------------------


def split(frame: pd.DataFrame, schema: TableSchema, test_size: float, **kwargs: Any
          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    return apply(frame, schema, make_rule(frame, schema, test_size, **kwargs))


def test_the_split_does_not_depend_on_the_seed_and_the_salt_draws_another():
    frame = labelled({"a": 300, "b": 200, "c": 100})
    schema = schema_for(frame, "classification")

    train1, test1 = split(frame, schema, 0.25)
    train2, test2 = split(frame, schema, 0.25)
    _, other = split(frame, schema, 0.25, salt="another")

    pd.testing.assert_frame_equal(train1, train2)
    pd.testing.assert_frame_equal(test1, test2)
    assert sorted(test1["id"]) != sorted(other["id"])


def test_split_is_a_partition_with_fresh_indexes():
    frame = labelled({"a": 300, "b": 200, "c": 100})
    train, test = split(frame, schema_for(frame, "classification"), 0.25)

    assert abs(len(test) - 150) < 40 and len(train) + len(test) == 600
    assert sorted([*train["id"], *test["id"]]) == list(range(600))
    assert list(train.index) == list(range(len(train)))
    assert list(test.index) == list(range(len(test)))
    # rows stay whole: each id keeps its own x and label
    merged = pd.concat([train, test]).set_index("id").sort_index()
    pd.testing.assert_frame_equal(merged, frame.set_index("id"))


def test_regression_split_works_on_continuous_targets():
    frame = pd.DataFrame({"x": np.arange(500.0), "price": np.linspace(0.1, 99.9, 500)})
    train, test = split(frame, schema_for(frame, "regression", target="price"), 0.2)
    assert abs(len(test) - 100) < 30
    assert sorted([*train["price"], *test["price"]]) == frame["price"].tolist()


@pytest.mark.parametrize(
    ("test_size", "expected"),
    [(0, "a finite fraction strictly between 0 and 1"), (0.0, "strictly between 0 and 1"),
     (1, "strictly between 0 and 1"), (1.0, "strictly between 0 and 1"),
     (-0.2, "strictly between 0 and 1"), (1.5, "strictly between 0 and 1"),
     (float("nan"), "a finite fraction"), (float("inf"), "a finite fraction"),
     ("0.2", "a number in (0, 1)"), (True, "a number in (0, 1)"), (None, "a number in (0, 1)")],
)
def test_test_size_outside_zero_one_is_a_parameter_error(test_size, expected):
    frame = labelled({"a": 10, "b": 10})
    with pytest.raises(ParameterError) as caught:
        split(frame, schema_for(frame, "classification"), test_size)
    message = str(caught.value)
    assert message.startswith("[preprocess] The 'test_size' parameter of preprocess must be ")
    assert expected in message and message.endswith(f"Got {test_size!r}.")


@pytest.mark.parametrize("seed", [-1, 1.5, 2**32, "7", None, True])
def test_bad_seed_is_a_parameter_error(tmp_path, seed):
    frame = labelled({"a": 10, "b": 10})
    with pytest.raises(ParameterError) as caught:
        run_stage(tmp_path, frame, schema_for(frame, "classification"), seed=seed)
    message = str(caught.value)
    assert message.startswith("[preprocess] The 'seed' parameter of preprocess must be ")
    assert message.endswith(f"Got {seed!r}.")


@pytest.mark.parametrize(
    ("frame", "task", "test_size", "expected"),
    [
        (labelled({"a": 2, "b": 2}), "classification", 0.01, "leaves the test split empty"),
        (labelled({"a": 2, "b": 2, "c": 2}), "classification", 0.99,
         "leaves the training split empty"),
        (pd.DataFrame({"x": [1.0], "label": [2.0]}), "regression", 0.5, "leaves the"),
    ],
)
def test_too_few_rows_is_a_data_validation_error(frame, task, test_size, expected):
    with pytest.raises(DataValidationError) as caught:
        split(frame, schema_for(frame, task), test_size)
    message = str(caught.value)
    assert message.startswith("[preprocess] ") and expected in message


# --- feature spec ------------------------------------------------------------------------------


def test_feature_spec_copies_the_schema_lists():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "c": ["x", "y"], "y": [0.5, 1.5]})
    schema = schema_for(frame, "regression", target="y")
    spec = feature_spec(schema, "onehot")
    assert spec == FeatureSpec(target="y", task="regression", numeric=["a", "b"],
                               categorical=["c"], encoding="onehot")
    assert spec.features == ["a", "b", "c"]
    spec.numeric.append("z")  # frozen model, but a list field is still a list
    assert schema.numeric_features == ["a", "b"]
    assert feature_spec(schema).encoding == "auto"


def test_feature_spec_keeps_the_task_of_the_schema():
    frame = labelled({"a": 3, "b": 3})
    spec = feature_spec(schema_for(frame, "classification"), "ordinal")
    assert (spec.target, spec.task, spec.encoding) == ("label", "classification", "ordinal")
    assert FeatureSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("encoding", ["one-hot", "target", "", "ONEHOT", None])
def test_invalid_encoding_is_a_parameter_error(encoding):
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": [0.5, 1.5]})
    with pytest.raises(ParameterError) as caught:
        feature_spec(schema_for(frame, "regression", target="y"), encoding)
    message = str(caught.value)
    assert message.startswith("[preprocess] ")
    assert "'encoding'" in message and repr(encoding) in message
    assert "auto, onehot, ordinal" in message


@pytest.mark.parametrize(
    ("encoding", "estimator", "expected"),
    [("auto", "linear", "onehot"), ("auto", "random_forest", "ordinal"),
     ("auto", "hist_gradient_boosting", "ordinal"), ("ordinal", "linear", "ordinal"),
     ("onehot", "hist_gradient_boosting", "onehot"), ("onehot", "random_forest", "onehot")],
)
def test_resolve_encoding(encoding, estimator, expected):
    spec = SPEC.model_copy(update={"encoding": encoding})
    assert resolve_encoding(spec, get_estimator(estimator)) == expected


def test_auto_encoding_is_the_estimator_entrys_preference():
    """Not a name test: an entry's ``encoding`` decides, whatever the estimator is called."""
    spec = SPEC.model_copy(update={"encoding": "auto"})
    assert resolve_encoding(spec, dataclasses.replace(LINEAR, encoding="ordinal")) == "ordinal"
    assert resolve_encoding(spec, dataclasses.replace(FOREST, encoding="onehot")) == "onehot"


# --- transformer -------------------------------------------------------------------------------


def test_onehot_transformer_for_linear_imputes_scales_and_encodes():
    frame = features()
    transformer = build_transformer(SPEC, "onehot", LINEAR)

    out = transformer.fit_transform(frame)

    names = list(transformer.get_feature_names_out())
    assert names[:2] == ["amount", "age"]
    assert {"home_rent", "home_owner", "home_parents", "home_other", "flag_True", "flag_False",
            "mixed_1", "mixed_one", "mixed_2.5", "mixed_two"} <= set(names)
    assert out.shape == (40, len(names))
    assert not np.isnan(out).any()
    # numeric columns: median-imputed then standardised
    assert out[:, 0].mean() == pytest.approx(0.0, abs=1e-9)
    assert out[:, 0].std() == pytest.approx(1.0)
    # each categorical column yields exactly one 1 per row
    for prefix in ("home_", "flag_", "mixed_"):
        block = out[:, [i for i, n in enumerate(names) if n.startswith(prefix)]]
        assert (block.sum(axis=1) == 1).all(), prefix
    assert out[1, names.index("home_rent")] == 0  # a missing home is not 'rent'


def _numeric_out(estimator: Estimator, encoding: str) -> tuple[pd.DataFrame, np.ndarray]:
    frame = features()
    out = build_transformer(SPEC, encoding, estimator).fit_transform(frame)
    return frame, out[:, :2]


@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
def test_numbers_are_imputed_and_scaled_for_an_estimator_that_scales_numbers(encoding):
    """The rule follows the estimator, not the encoding (it used to follow the encoding)."""
    frame, numbers = _numeric_out(LINEAR, encoding)
    assert not np.isnan(numbers).any()
    np.testing.assert_allclose(numbers.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(numbers.std(axis=0), 1.0)
    # a missing amount is the median, which is scaled like the other values
    amount = frame["amount"]
    expected = (amount.median() - amount.fillna(amount.median()).mean()) \
        / amount.fillna(amount.median()).std(ddof=0)
    assert numbers[0, 0] == pytest.approx(expected)


@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
@pytest.mark.parametrize("estimator", [FOREST, BOOSTING], ids=lambda e: e.name)
def test_numbers_pass_through_for_an_estimator_that_takes_missing_values(estimator, encoding):
    """Trees get the raw numbers, missing ones included, whatever the categorical encoding."""
    frame, numbers = _numeric_out(estimator, encoding)
    np.testing.assert_array_equal(numbers, frame[["amount", "age"]].to_numpy())
    assert np.isnan(numbers[[0, 5], 0]).all() and np.isnan(numbers[3, 1])


@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
def test_numbers_are_imputed_not_scaled_for_an_estimator_without_missing_support(encoding):
    frame, numbers = _numeric_out(NO_MISSING_TREE, encoding)
    assert not np.isnan(numbers).any()
    assert numbers[0, 0] == numbers[5, 0] == pytest.approx(frame["amount"].median())
    assert numbers[3, 1] == pytest.approx(frame["age"].median())
    np.testing.assert_array_equal(numbers[6:, 0], frame["amount"].to_numpy()[6:])  # unscaled


def test_onehot_unknown_category_is_all_zeros_without_infrequent_categories():
    frame = pd.DataFrame({"amount": np.arange(20.0), "age": np.arange(20.0),
                          "home": ["rent", "owner"] * 10, "flag": [True, False] * 10,
                          "mixed": [1, "x"] * 10})
    transformer = build_transformer(SPEC, "onehot", LINEAR).fit(frame)
    names = list(transformer.get_feature_names_out())
    assert not any("infrequent" in n for n in names)

    new = pd.DataFrame({"amount": [np.nan], "age": [3.0], "home": ["castle"], "flag": [None],
                        "mixed": [3]})
    out = transformer.transform(new)

    home = [i for i, n in enumerate(names) if n.startswith("home_")]
    assert (out[0, home] == 0).all()
    assert (out[0, [i for i, n in enumerate(names) if n.startswith("mixed_")]] == 0).all()
    assert not np.isnan(out).any()


def test_onehot_unknown_category_goes_to_the_infrequent_column():
    frame = features()  # 'home' has two missing values: a category seen fewer than 5 times
    transformer = build_transformer(SPEC, "onehot", LINEAR).fit(frame)
    names = list(transformer.get_feature_names_out())
    assert "home_infrequent_sklearn" in names

    out = transformer.transform(frame.iloc[[6]].assign(home="castle"))

    home = {n: out[0, i] for i, n in enumerate(names) if n.startswith("home_")}
    assert home.pop("home_infrequent_sklearn") == 1
    assert set(home.values()) == {0}


@pytest.mark.parametrize("estimator", [FOREST, BOOSTING], ids=lambda e: e.name)
def test_ordinal_transformer_for_trees_keeps_missing_numbers_and_codes_categories(estimator):
    frame = features()
    transformer = build_transformer(SPEC, "ordinal", estimator)

    out = transformer.fit_transform(frame)

    assert list(transformer.get_feature_names_out()) == ["amount", "age", "home", "flag", "mixed"]
    assert out.shape == (40, 5)
    assert np.isnan(out[[0, 5], 0]).all() and np.isnan(out[3, 1])  # numbers pass through
    np.testing.assert_array_equal(out[6:, 0], frame["amount"].to_numpy()[6:])
    codes = out[:, 2:]
    assert not np.isnan(codes).any()
    assert (codes == codes.round()).all() and codes.min() >= 0
    assert len(np.unique(out[:, 3])) == 3  # True, False, and the rare missing flag grouped
    assert len(np.unique(out[:, 4])) == 4  # 1, 'one', 2.5, 'two' stay apart


@pytest.mark.parametrize("estimator", [FOREST, BOOSTING], ids=lambda e: e.name)
def test_ordinal_unknown_category_is_nan_for_an_estimator_that_takes_missing_values(estimator):
    frame = features()
    transformer = build_transformer(SPEC, "ordinal", estimator).fit(frame)
    new = frame.iloc[[6, 7]].assign(home=["castle", "rent"], mixed=[99, "one"])

    out = transformer.transform(new)

    assert np.isnan(out[0, 2]) and np.isnan(out[0, 4])
    assert not np.isnan(out[1, 2:]).any()
    assert out[1, 2] == transformer.transform(frame.iloc[[0]].assign(home="rent"))[0, 2]


@pytest.mark.parametrize("estimator", [LINEAR, NO_MISSING_TREE], ids=lambda e: e.name)
def test_ordinal_unknown_category_is_the_most_frequent_code_without_missing_support(estimator):
    """Linear + ordinal used to hand NaN to the model for an unseen category."""
    frame = features()
    transformer = build_transformer(SPEC, "ordinal", estimator).fit(frame)
    seen = transformer.transform(frame)[:, 2:]
    most_frequent = [pd.Series(seen[:, j]).mode().min() for j in range(seen.shape[1])]
    new = frame.iloc[[6, 7]].assign(home=["castle", "rent"], mixed=[99, "one"],
                                    amount=[np.nan, 1.0])

    out = transformer.transform(new)

    assert not np.isnan(out).any()
    assert out[0, 2] == most_frequent[0] and out[0, 4] == most_frequent[2]
    assert out[1, 2] == transformer.transform(frame.iloc[[0]].assign(home="rent"))[0, 2]
    assert (out[:, 2:] == out[:, 2:].round()).all()  # still codes


def test_rare_categories_are_grouped():
    counts = {"a": MIN_CATEGORY_COUNT, "b": MIN_CATEGORY_COUNT - 1, "c": 1}
    values = [k for k, n in counts.items() for _ in range(n)]
    frame = pd.DataFrame({"amount": np.arange(len(values), dtype=float), "age": 1.0,
                          "home": values, "flag": True, "mixed": "x"})
    out = build_transformer(SPEC, "ordinal", BOOSTING).fit_transform(frame)
    home = out[:, 2]
    assert home[0] != home[-1]
    assert len(set(home[counts["a"]:])) == 1  # b and c share the infrequent code


# --- what goes into the model ------------------------------------------------------------------


def _pickled_strings(obj: Any) -> set[str]:
    return {arg for _, arg, _ in pickletools.genops(pickle.dumps(obj)) if isinstance(arg, str)}


@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_fitted_transformer_pickles_without_any_keel_reference(estimator, encoding):
    transformer = build_transformer(SPEC, encoding, get_estimator(estimator)).fit(features())
    strings = _pickled_strings(transformer)
    assert any(s.startswith("sklearn.") for s in strings)  # the scan sees module names
    assert not [s for s in strings if s == "keel" or s.startswith("keel.")]


UNPICKLE_WITHOUT_KEEL = """
import sys, importlib.abc
repo = sys.argv[1]

class NoKeel(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "keel" or name.startswith("keel."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoKeel())
sys.path = [p for p in sys.path if p not in ("", ".", repo)]
try:
    import keel  # noqa
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("keel is importable: the check would prove nothing")

import joblib, numpy as np, pandas as pd
model = joblib.load(sys.argv[2])
out = model.transform(pd.read_pickle(sys.argv[3]))
np.save(sys.argv[4], out)
assert not [m for m in sys.modules if m == "keel" or m.startswith("keel.")]
"""


@pytest.mark.parametrize("estimator", [BOOSTING, LINEAR], ids=lambda e: e.name)
def test_fitted_transformer_loads_where_keel_is_not_installed(tmp_path, estimator):
    frame = features()
    transformer = build_transformer(SPEC, "ordinal", estimator).fit(frame)
    joblib.dump(transformer, tmp_path / "model.joblib")
    frame.to_pickle(tmp_path / "frame.pkl")

    done = subprocess.run(
        [sys.executable, "-I", "-c", UNPICKLE_WITHOUT_KEEL, str(REPO), str(tmp_path / "model.joblib"),
         str(tmp_path / "frame.pkl"), str(tmp_path / "out.npy")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )

    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), transformer.transform(frame))


# --- stage entry point -------------------------------------------------------------------------


def run_stage(folder: Path, frame: pd.DataFrame, schema: TableSchema, **settings: Any
              ) -> tuple[list[str], list[str]]:
    """The preprocess stage on ``frame``: its trials, and the paths of its four outputs."""
    frame.to_parquet(folder / "valid.parquet", index=False)
    schema.write(folder / "schema.json")
    outs = [str(folder / n) for n in ("train.parquet", "test.parquet", "spec.json", "split.json")]
    trials = run(str(folder / "valid.parquet"), str(folder / "schema.json"),
                 settings.pop("test_size", 0.25), settings.pop("encoding", "ordinal"), *outs,
                 **settings)
    return trials, outs


def test_run_writes_train_test_spec_split_and_the_plan(tmp_path):
    frame = labelled({"a": 120, "b": 80})
    schema = schema_for(frame, "classification")

    trials, outs = run_stage(tmp_path, frame, schema, estimator="hist_gradient_boosting",
                             params='{"max_iter": 20}', seed=5)

    assert [json.loads(t) for t in trials] == [
        {"index": 0, "params": {"max_iter": 20}, "method": "none"}]
    train, test = pd.read_parquet(outs[0]), pd.read_parquet(outs[1])
    expected_train, expected_test = split(frame, schema, 0.25)
    pd.testing.assert_frame_equal(train, expected_train)
    pd.testing.assert_frame_equal(test, expected_test)
    written = FeatureSpec.read(outs[2])
    assert written == feature_spec(schema, "ordinal")
    assert written.encoding == "ordinal" and written.numeric == ["id", "x"]
    assert json.loads(Path(outs[2]).read_text())["encoding"] == "ordinal"
    result = SplitResult.read(outs[3])
    assert (result.train_rows, result.test_rows) == (len(train), len(test))
    assert result.rule == make_rule(frame, schema, 0.25)


def test_run_plans_a_grid_and_splits_by_key_or_time(tmp_path):
    frame = labelled({"a": 120, "b": 80}).assign(
        customer=lambda f: f["id"] % 40,
        when=pd.date_range("2026-01-01", periods=200, freq="D").astype("datetime64[us]"))
    schema = schema_for(frame, "classification")
    trials, outs = run_stage(tmp_path, frame, schema, estimator="hist_gradient_boosting",
                             grid=json.dumps({"max_depth": [2, 3], "learning_rate": [0.1, 0.2]}),
                             split_key=["customer"])
    assert len(trials) == 4 and {json.loads(t)["method"] for t in trials} == {"grid"}
    test = pd.read_parquet(outs[1])
    train = pd.read_parquet(outs[0])
    assert set(test["customer"]).isdisjoint(set(train["customer"]))
    assert SplitResult.read(outs[3]).rule.columns == ["customer"]

    _, outs = run_stage(tmp_path, frame, schema, split_time_column="when", test_size=0.2)
    test, train = pd.read_parquet(outs[1]), pd.read_parquet(outs[0])
    assert len(test) == 40 and test["when"].min() > train["when"].max()


def test_run_refuses_a_test_split_smaller_than_min_test_rows(tmp_path):
    frame = labelled({"a": 60, "b": 40})
    schema = schema_for(frame, "classification")
    _, outs = run_stage(tmp_path, frame, schema, min_test_rows=0)
    rows = len(pd.read_parquet(outs[1]))
    with pytest.raises(DataValidationError) as caught:
        run_stage(tmp_path, frame, schema, min_test_rows=rows + 1)
    message = str(caught.value)
    assert f"puts {rows} of 100 rows in the test split; at least {rows + 1} are needed" in message
    assert "Raise test_size" in message


def test_run_refuses_a_bad_grid_before_splitting(tmp_path):
    frame = labelled({"a": 12, "b": 8})
    with pytest.raises(ParameterError, match="grid"):
        run_stage(tmp_path, frame, schema_for(frame, "classification"),
                  estimator="hist_gradient_boosting", grid=json.dumps({"no_such_param": [1, 2]}))
    assert not (tmp_path / "train.parquet").exists()


def test_run_refuses_a_schema_document_that_is_not_one(tmp_path):
    from keel.contracts import ContractError

    frame = labelled({"a": 12, "b": 8})
    frame.to_parquet(tmp_path / "valid.parquet", index=False)
    (tmp_path / "schema.json").write_text(json.dumps({"target": "label", "task": "classification"}))
    outs = [str(tmp_path / n) for n in ("train.parquet", "test.parquet", "spec.json",
                                        "split.json")]

    with pytest.raises(ContractError) as caught:
        run(str(tmp_path / "valid.parquet"), str(tmp_path / "schema.json"), 0.25, "ordinal",
            *outs)

    assert str(caught.value).startswith("[preprocess] The schema document")
    assert not any(Path(out).exists() for out in outs)
