"""Preprocess: the seeded train/test split and the feature transformer spec.

The spec is data (column lists and an encoding), turned into an unfitted scikit-learn
``ColumnTransformer`` by :func:`build_transformer`; train fits it inside the model's ``Pipeline``,
so serving applies exactly the training transform. Only scikit-learn classes go into the model,
so KServe's scikit-learn runtime can load it without Keel installed.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from keel.contracts import FeatureSpec, SplitResult, TableSchema
from keel.errors import DataValidationError, reports_errors
from keel.estimators import Estimator
from keel.settings import checked

# Categories seen fewer times than this in training are grouped as "infrequent".
MIN_CATEGORY_COUNT = 5
MAX_ONEHOT_CATEGORIES = 30
MAX_ORDINAL_CATEGORIES = 250  # HistGradientBoosting bins categories into at most 255 bins


def split(
    frame: pd.DataFrame, schema: TableSchema, test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded split; stratified by the target for classification."""
    from sklearn.model_selection import train_test_split

    test_size, seed = checked("test_size", test_size), checked("seed", seed)
    stratify = frame[schema.target] if schema.task == "classification" else None
    try:
        train, test = train_test_split(
            frame, test_size=test_size, random_state=seed, stratify=stratify
        )
    except ValueError as exc:
        raise DataValidationError(
            f"Cannot split {len(frame)} rows with test_size={test_size}: {exc}",
            stage="preprocess",
        ) from None
    return train.reset_index(drop=True), test.reset_index(drop=True)


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
    dataset_path: str, schema_path: str, test_size: float, seed: int, encoding: str,
    train_out: str, test_out: str, spec_out: str,
) -> SplitResult:
    """The preprocess stage: train/test Parquet files and the feature spec."""
    schema = TableSchema.read(schema_path, stage="preprocess")
    spec = feature_spec(schema, encoding)
    train, test = split(pd.read_parquet(dataset_path), schema, test_size, seed)
    train.to_parquet(train_out, index=False, compression="zstd")
    test.to_parquet(test_out, index=False, compression="zstd")
    spec.write(spec_out)
    return SplitResult(train_rows=len(train), test_rows=len(test))
