"""Preprocess: the seeded train/test split and the feature transformer spec.

The spec is data (column lists and an encoding), turned into an unfitted scikit-learn
``ColumnTransformer`` by :func:`build_transformer`; train fits it inside the model's ``Pipeline``,
so serving applies exactly the training transform. Only scikit-learn classes go into the model,
so KServe's scikit-learn runtime can load it without Keel installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from keel.errors import DataValidationError, ParameterError, reports_errors
from keel.storage import read_json_file, write_json_file

ENCODINGS = ("auto", "onehot", "ordinal")
# Categories seen fewer times than this in training are grouped as "infrequent".
MIN_CATEGORY_COUNT = 5
MAX_ONEHOT_CATEGORIES = 30
MAX_ORDINAL_CATEGORIES = 250  # HistGradientBoosting bins categories into at most 255 bins


def split(
    frame: pd.DataFrame, schema: dict[str, Any], test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded split; stratified by the target for classification."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise ParameterError(
            f"The 'test_size' parameter of preprocess must be a fraction in (0, 1). "
            f"Got {test_size!r}.",
            stage="preprocess",
        )
    target = schema["target"]
    stratify = frame[target] if schema["task"] == "classification" else None
    try:
        train, test = train_test_split(
            frame, test_size=test_size, random_state=int(seed), stratify=stratify
        )
    except ValueError as exc:
        raise DataValidationError(
            f"Cannot split {len(frame)} rows with test_size={test_size}: {exc}",
            stage="preprocess",
        ) from None
    return train.reset_index(drop=True), test.reset_index(drop=True)


def feature_spec(schema: dict[str, Any], encoding: str = "auto") -> dict[str, Any]:
    if encoding not in ENCODINGS:
        raise ParameterError(
            f"The 'encoding' parameter of preprocess must be one of {', '.join(ENCODINGS)}. "
            f"Got {encoding!r}.",
            stage="preprocess",
        )
    return {
        "target": schema["target"],
        "task": schema["task"],
        "numeric": list(schema["numeric_features"]),
        "categorical": list(schema["categorical_features"]),
        "encoding": encoding,
    }


def resolve_encoding(spec: dict[str, Any], estimator: str) -> str:
    """``auto``: one-hot for linear models, ordinal codes for trees (they split on them)."""
    if spec["encoding"] != "auto":
        return spec["encoding"]
    return "onehot" if estimator == "linear" else "ordinal"


def build_transformer(spec: dict[str, Any], encoding: str):
    """An unfitted ColumnTransformer: numeric columns first, then categorical ones."""
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
    if encoding == "onehot":
        numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
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
        # Trees take missing numbers as they are (NaN), and unknown categories as missing.
        numeric = "passthrough"
        categorical = make_pipeline(
            as_text,
            OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=np.nan,
                min_frequency=MIN_CATEGORY_COUNT,
                max_categories=MAX_ORDINAL_CATEGORIES,
            ),
        )
    return ColumnTransformer(
        [("numeric", numeric, spec["numeric"]), ("categorical", categorical, spec["categorical"])],
        remainder="drop",
        verbose_feature_names_out=False,
    )


@reports_errors
def run(
    dataset_path: str, schema_path: str, test_size: float, seed: int, encoding: str,
    train_out: str, test_out: str, spec_out: str,
) -> dict[str, int]:
    """The preprocess stage: train/test Parquet files and the feature spec."""
    schema = read_json_file(schema_path)
    spec = feature_spec(schema, encoding)
    train, test = split(pd.read_parquet(dataset_path), schema, test_size, seed)
    train.to_parquet(train_out, index=False, compression="zstd")
    test.to_parquet(test_out, index=False, compression="zstd")
    write_json_file(spec_out, spec)
    return {"train_rows": len(train), "test_rows": len(test)}
