"""Unit tests of keel.preprocess: the seeded split, the feature spec and the transformer."""

from __future__ import annotations

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

from keel.errors import DataValidationError, ParameterError
from keel.preprocess import (
    MIN_CATEGORY_COUNT,
    build_transformer,
    feature_spec,
    resolve_encoding,
    run,
    split,
)

REPO = Path(__file__).resolve().parents[1]


def labelled(counts: dict[str, int]) -> pd.DataFrame:
    """Rows with a unique ``id``, a feature and a class label, ``counts[label]`` rows per label."""
    labels = [label for label, n in counts.items() for _ in range(n)]
    return pd.DataFrame({"id": range(len(labels)), "x": np.arange(len(labels)) * 0.5,
                         "label": labels})


def schema_for(task: str, target: str = "label") -> dict[str, Any]:
    return {"target": target, "task": task, "numeric_features": ["x"],
            "categorical_features": [], "classes": None}


SPEC = {"target": "y", "task": "classification", "numeric": ["amount", "age"],
        "categorical": ["home", "flag", "mixed"], "encoding": "auto"}


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


def test_split_is_deterministic_for_a_seed_and_differs_for_another():
    frame = labelled({"a": 30, "b": 20, "c": 10})
    schema = schema_for("classification")

    train1, test1 = split(frame, schema, 0.25, seed=7)
    train2, test2 = split(frame, schema, 0.25, seed=7)
    _, other = split(frame, schema, 0.25, seed=8)

    pd.testing.assert_frame_equal(train1, train2)
    pd.testing.assert_frame_equal(test1, test2)
    assert sorted(test1["id"]) != sorted(other["id"])


def test_split_is_a_partition_with_fresh_indexes():
    frame = labelled({"a": 30, "b": 20, "c": 10})
    train, test = split(frame, schema_for("classification"), 0.25, seed=1)

    assert len(test) == 15 and len(train) == 45
    assert sorted([*train["id"], *test["id"]]) == list(range(60))
    assert list(train.index) == list(range(45)) and list(test.index) == list(range(15))
    # rows stay whole: each id keeps its own x and label
    merged = pd.concat([train, test]).set_index("id").sort_index()
    pd.testing.assert_frame_equal(merged, frame.set_index("id"))


@pytest.mark.parametrize("seed", range(8))
def test_classification_split_keeps_class_proportions_within_one_row(seed):
    counts = {"common": 90, "rare": 10, "middle": 20}
    test_size = 0.3
    train, test = split(labelled(counts), schema_for("classification"), test_size, seed)
    for label, n in counts.items():
        assert abs((test["label"] == label).sum() - n * test_size) <= 1, label
        assert (train["label"] == label).sum() + (test["label"] == label).sum() == n


def test_regression_split_is_not_stratified_and_works_on_continuous_targets():
    frame = pd.DataFrame({"x": np.arange(50.0), "price": np.linspace(0.1, 99.9, 50)})
    train, test = split(frame, schema_for("regression", target="price"), 0.2, seed=0)
    assert (len(train), len(test)) == (40, 10)
    assert sorted([*train["price"], *test["price"]]) == frame["price"].tolist()


@pytest.mark.parametrize("test_size", [0, 0.0, 1, 1.0, -0.2, 1.5, float("nan")])
def test_test_size_outside_zero_one_is_a_parameter_error(test_size):
    with pytest.raises(ParameterError) as caught:
        split(labelled({"a": 10, "b": 10}), schema_for("classification"), test_size, seed=0)
    message = str(caught.value)
    assert message.startswith("[preprocess] ")
    assert "'test_size'" in message and "(0, 1)" in message and repr(test_size) in message


@pytest.mark.parametrize(
    ("frame", "task", "test_size"),
    [
        (labelled({"a": 2, "b": 2}), "classification", 0.25),  # 1 test row for 2 classes
        (labelled({"a": 2, "b": 2, "c": 2}), "classification", 0.9),  # no train row per class
        (pd.DataFrame({"x": [1.0], "label": [2.0]}), "regression", 0.5),
    ],
)
def test_too_few_rows_is_a_data_validation_error(frame, task, test_size):
    with pytest.raises(DataValidationError) as caught:
        split(frame, schema_for(task), test_size, seed=0)
    message = str(caught.value)
    assert message.startswith("[preprocess] ")
    assert f"Cannot split {len(frame)} rows with test_size={test_size}" in message


# --- feature spec ------------------------------------------------------------------------------


def test_feature_spec_copies_the_schema_lists():
    schema = {"target": "y", "task": "regression", "numeric_features": ["a", "b"],
              "categorical_features": ["c"], "columns": []}
    spec = feature_spec(schema, "onehot")
    assert spec == {"target": "y", "task": "regression", "numeric": ["a", "b"],
                    "categorical": ["c"], "encoding": "onehot"}
    spec["numeric"].append("z")
    assert schema["numeric_features"] == ["a", "b"]
    assert feature_spec(schema)["encoding"] == "auto"


@pytest.mark.parametrize("encoding", ["one-hot", "target", "", "ONEHOT"])
def test_invalid_encoding_is_a_parameter_error(encoding):
    schema = {"target": "y", "task": "regression", "numeric_features": [],
              "categorical_features": []}
    with pytest.raises(ParameterError) as caught:
        feature_spec(schema, encoding)
    message = str(caught.value)
    assert message.startswith("[preprocess] ")
    assert "'encoding'" in message and repr(encoding) in message
    assert "auto, onehot, ordinal" in message


@pytest.mark.parametrize(
    ("encoding", "estimator", "expected"),
    [("auto", "linear", "onehot"), ("auto", "random_forest", "ordinal"),
     ("auto", "hist_gradient_boosting", "ordinal"), ("ordinal", "linear", "ordinal"),
     ("onehot", "hist_gradient_boosting", "onehot")],
)
def test_resolve_encoding(encoding, estimator, expected):
    assert resolve_encoding({"encoding": encoding}, estimator) == expected


# --- transformer -------------------------------------------------------------------------------


def test_onehot_transformer_imputes_scales_and_encodes():
    frame = features()
    transformer = build_transformer(SPEC, "onehot")

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


def test_onehot_unknown_category_is_all_zeros_without_infrequent_categories():
    frame = pd.DataFrame({"amount": np.arange(20.0), "age": np.arange(20.0),
                          "home": ["rent", "owner"] * 10, "flag": [True, False] * 10,
                          "mixed": [1, "x"] * 10})
    transformer = build_transformer(SPEC, "onehot").fit(frame)
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
    transformer = build_transformer(SPEC, "onehot").fit(frame)
    names = list(transformer.get_feature_names_out())
    assert "home_infrequent_sklearn" in names

    out = transformer.transform(frame.iloc[[6]].assign(home="castle"))

    home = {n: out[0, i] for i, n in enumerate(names) if n.startswith("home_")}
    assert home.pop("home_infrequent_sklearn") == 1
    assert set(home.values()) == {0}


def test_ordinal_transformer_keeps_missing_numbers_and_codes_categories():
    frame = features()
    transformer = build_transformer(SPEC, "ordinal")

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


def test_ordinal_unknown_category_is_nan():
    frame = features()
    transformer = build_transformer(SPEC, "ordinal").fit(frame)
    new = frame.iloc[[6, 7]].assign(home=["castle", "rent"], mixed=[99, "one"])

    out = transformer.transform(new)

    assert np.isnan(out[0, 2]) and np.isnan(out[0, 4])
    assert not np.isnan(out[1, 2:]).any()
    assert out[1, 2] == transformer.transform(frame.iloc[[0]].assign(home="rent"))[0, 2]


def test_rare_categories_are_grouped(tmp_path):
    counts = {"a": MIN_CATEGORY_COUNT, "b": MIN_CATEGORY_COUNT - 1, "c": 1}
    values = [k for k, n in counts.items() for _ in range(n)]
    frame = pd.DataFrame({"amount": np.arange(len(values), dtype=float), "age": 1.0,
                          "home": values, "flag": True, "mixed": "x"})
    out = build_transformer(SPEC, "ordinal").fit_transform(frame)
    home = out[:, 2]
    assert home[0] != home[-1]
    assert len(set(home[counts["a"]:])) == 1  # b and c share the infrequent code


# --- what goes into the model ------------------------------------------------------------------


def _pickled_strings(obj: Any) -> set[str]:
    return {arg for _, arg, _ in pickletools.genops(pickle.dumps(obj)) if isinstance(arg, str)}


@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
def test_fitted_transformer_pickles_without_any_keel_reference(encoding):
    transformer = build_transformer(SPEC, encoding).fit(features())
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


def test_fitted_transformer_loads_where_keel_is_not_installed(tmp_path):
    frame = features()
    transformer = build_transformer(SPEC, "ordinal").fit(frame)
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


def test_run_writes_train_test_and_spec(tmp_path):
    frame = labelled({"a": 12, "b": 8})
    frame.to_parquet(tmp_path / "valid.parquet", index=False)
    (tmp_path / "schema.json").write_text(json.dumps(schema_for("classification")))
    outs = [str(tmp_path / n) for n in ("train.parquet", "test.parquet", "spec.json")]

    counts = run(str(tmp_path / "valid.parquet"), str(tmp_path / "schema.json"), 0.25, 5,
                 "ordinal", *outs)

    assert counts == {"train_rows": 15, "test_rows": 5}
    train, test = pd.read_parquet(outs[0]), pd.read_parquet(outs[1])
    expected_train, expected_test = split(frame, schema_for("classification"), 0.25, 5)
    pd.testing.assert_frame_equal(train, expected_train)
    pd.testing.assert_frame_equal(test, expected_test)
    assert json.loads(Path(outs[2]).read_text())["encoding"] == "ordinal"
