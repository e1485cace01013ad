"""Preprocess: the holdout, the feature transformer spec and the search plan.

The holdout is stable across runs (:mod:`keel.split`): a row's side depends on its values, not on
the seed. The search plan is the list of parameter sets train's ``ParallelFor`` fans out over
(one set, the given parameters, when no search was asked for).

The spec is data (column lists and an encoding), turned into an unfitted scikit-learn
``ColumnTransformer`` by :func:`build_transformer`; train fits it inside the model's ``Pipeline``,
so serving applies exactly the training transform. Only scikit-learn classes go into the model,
so KServe's scikit-learn runtime can load it without Keel installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from keel.contracts import FeatureSpec, SplitResult, TableSchema
from keel.errors import DataValidationError, reports_errors
from keel.estimators import Estimator
from keel.settings import DEFAULTS, checked
from keel.split import apply, describe, make_rule

# Categories seen fewer times than this in training are grouped as "infrequent".
MIN_CATEGORY_COUNT = 5
MAX_ONEHOT_CATEGORIES = 30
MAX_ORDINAL_CATEGORIES = 250  # HistGradientBoosting bins categories into at most 255 bins


def feature_spec(schema: TableSchema, encoding: str = "auto") -> FeatureSpec:
    """The transformer spec: the schema's feature columns and the requested encoding."""
    return FeatureSpec(
        target=schema.target,
        task=schema.task,
        numeric=list(schema.numeric_features),
        categorical=list(schema.categorical_features),
        encoding=checked("encoding", encoding),
    )


def resolve_encoding(spec: FeatureSpec, estimator: Estimator) -> Literal["onehot", "ordinal"]:
    """``auto``: the estimator's preferred encoding (one-hot for linear, ordinal for trees)."""
    return estimator.encoding if spec.encoding == "auto" else spec.encoding


def build_transformer(spec: FeatureSpec, encoding: str, estimator: Estimator) -> Any:
    """An unfitted ColumnTransformer: numeric columns first, then categorical ones.

    Numbers are imputed and standardised for an estimator that needs it (linear), imputed for one
    that cannot take missing values, and passed as they are to trees that route missing values
    themselves. Categories are one-hot or ordinal encoded as ``encoding`` says.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        OneHotEncoder,
        OrdinalEncoder,
        StandardScaler,
    )

    # Categories as strings whatever their storage (bool, mixed, missing -> "nan"), so one
    # encoder sees one type. np.asarray pickles by reference: no Keel code in the model.
    as_text = FunctionTransformer(
        np.asarray, kw_args={"dtype": str}, feature_names_out="one-to-one"
    )
    numeric: Any = "passthrough"
    if estimator.scales_numbers:
        numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    elif not estimator.native_missing:
        numeric = SimpleImputer(strategy="median")
    if encoding == "onehot":
        categorical = make_pipeline(
            as_text,
            OneHotEncoder(
                handle_unknown="infrequent_if_exist",
                min_frequency=MIN_CATEGORY_COUNT,
                max_categories=MAX_ONEHOT_CATEGORIES,
                sparse_output=False,
            ),
        )
    else:
        # Unknown categories become missing values: trees route them like any other gap.
        categorical = make_pipeline(
            as_text,
            OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=np.nan,
                min_frequency=MIN_CATEGORY_COUNT,
                max_categories=MAX_ORDINAL_CATEGORIES,
            ),
        )
        if not estimator.native_missing:
            categorical.steps.append(("impute", SimpleImputer(strategy="most_frequent")))
    return ColumnTransformer(
        [("numeric", numeric, spec.numeric), ("categorical", categorical, spec.categorical)],
        remainder="drop",
        verbose_feature_names_out=False,
    )


@reports_errors
def run(
    dataset_path: str, schema_path: str, test_size: float, encoding: str,
    train_out: str, test_out: str, spec_out: str, split_out: str, *,
    min_test_rows: int = DEFAULTS["min_test_rows"], split_key: Sequence[str] = (),
    split_time_column: str = "", split_salt: str = "keel",
    estimator: str = DEFAULTS["estimator"], params: str = "{}",
    grid: str = "{}", search_random: int = 0, seed: int = 0,
) -> list[str]:
    """The preprocess stage: train/test Parquet files, feature spec, split record; the trials."""
    from keel.search import plan

    schema = TableSchema.read(schema_path, stage="preprocess")
    spec = feature_spec(schema, encoding)
    others = {"estimator": estimator, "task": schema.task, "params": params,
              "search_random": search_random}
    base_params = checked("params", params, **others)
    space = checked("grid", grid, **others)
    trials = plan(checked("estimator", estimator), schema.task, base_params, space,
                  checked("search_random", search_random, grid=grid, **others),
                  checked("seed", seed))
    frame = pd.read_parquet(dataset_path)
    rule = make_rule(frame, schema, checked("test_size", test_size),
                     checked("split_key", list(split_key)),
                     checked("split_time_column", split_time_column, split_key=list(split_key)),
                     checked("split_salt", split_salt))
    train, test = apply(frame, schema, rule)
    fewest = checked("min_test_rows", min_test_rows)
    if len(test) < fewest:
        raise DataValidationError(
            f"The split ({describe(rule)}) puts {len(test)} of {len(frame)} rows in the test "
            f"split; at least {fewest} are needed (min_test_rows). Raise test_size, add rows, or "
            "lower min_test_rows.", stage="preprocess")
    train.to_parquet(train_out, index=False, compression="zstd")
    test.to_parquet(test_out, index=False, compression="zstd")
    spec.write(spec_out)
    SplitResult(train_rows=len(train), test_rows=len(test), rule=rule).write(split_out)
    return trials
