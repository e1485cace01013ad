"""Validate: infer the schema (column kinds and roles), check the table is usable, report.

Blocking problems raise (the run stops before anything is registered); repairable ones are
repaired and reported: rows with a missing target are dropped and counted, and columns that
cannot be features (identifiers, free text, constant or empty columns, dates) are excluded with
the reason written next to them.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from keel.contracts import ColumnInfo, ColumnKind, TableSchema, Task
from keel.errors import DataValidationError, SchemaError, reports_errors
from keel.settings import checked

# An integer-valued numeric target with at most this many distinct values is a class label.
MAX_CLASSES_FOR_NUMERIC_TARGET = 20
# A string column with more distinct values than this (and than half its rows) is free text.
MAX_CATEGORIES = 50


def _plain(value: Any) -> Any:
    """Turn numpy scalars into JSON-ready Python values."""
    return value.item() if hasattr(value, "item") else value


def _kind(series: pd.Series, rows: int) -> tuple[ColumnKind, str]:
    """The column's kind, and why it cannot be a feature ('' when it can)."""
    non_null = series.dropna()
    unique = non_null.nunique()
    if non_null.empty:
        return "empty", "every value is missing"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime", "date/time columns are not turned into features yet"
    if unique == 1:
        return "constant", f"it has a single value ({_plain(non_null.iloc[0])!r})"
    if pd.api.types.is_bool_dtype(series):
        return "categorical", ""
    if pd.api.types.is_numeric_dtype(series):
        is_int = pd.api.types.is_integer_dtype(series)
        if is_int and unique == rows and rows > MAX_CATEGORIES:
            ordered = non_null.sort_values().to_numpy()
            if (ordered[1:] - ordered[:-1] == 1).all():
                return "identifier", "it numbers the rows (unique, consecutive integers)"
        return "numeric", ""
    if unique == rows and rows > 1:
        return "identifier", "it is unique for every row (an identifier or name)"
    if unique > MAX_CATEGORIES and unique > rows / 2:
        return "text", (
            f"it looks like free text ({unique} distinct values in {rows} rows); "
            "text features are not supported yet"
        )
    return "categorical", ""


def _stats(series: pd.Series, kind: str) -> dict[str, Any]:
    if kind == "numeric":
        described = series.describe()
        # inf or NaN (a column holding inf) would make the schema document invalid JSON
        return {k: _plain(described[k]) if math.isfinite(described[k]) else None
                for k in ("mean", "std", "min", "max") if k in described}
    if kind == "categorical":
        top = series.value_counts().head(5)
        return {"top": {str(k): int(v) for k, v in top.items()}}
    return {}


def infer_task(target: pd.Series, task: str) -> Task:
    """The task asked for, or (``auto``) the one the target's values imply."""
    task = checked("task", task)
    if pd.api.types.is_datetime64_any_dtype(target) or pd.api.types.is_timedelta64_dtype(target):
        raise SchemaError(
            f"The target {target.name!r} holds dates or times ({target.dtype}), which Keel cannot "
            "predict yet: expected numbers, text or booleans. Convert it (for example to a "
            "number of days) or choose another --target."
        )
    numeric = pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target)
    if task == "regression" and not numeric:
        raise SchemaError(
            f"Regression needs a numeric target, but column {target.name!r} has type "
            f"{target.dtype} (for example {_plain(target.iloc[0])!r}). Use --task classification."
        )
    if task != "auto":
        return cast(Task, task)
    if not numeric:
        return "classification"
    integral = bool((target == target.round()).all())
    if integral and target.nunique() <= MAX_CLASSES_FOR_NUMERIC_TARGET:
        return "classification"
    return "regression"


def _check_classes(target: pd.Series) -> list[Any]:
    counts = target.value_counts()
    counts = counts[counts > 0]  # a categorical target also counts its unused categories
    if len(counts) < 2:
        raise DataValidationError(
            f"Classification needs at least two classes in target {target.name!r}, but every "
            f"row has {_plain(counts.index[0])!r}. Check the target column or the source data."
        )
    rare = counts[counts < 2]
    if len(rare):
        raise DataValidationError(
            f"Every class of target {target.name!r} needs at least 2 rows for a stratified split; "
            f"{', '.join(repr(_plain(c)) for c in rare.index)} has only 1."
        )
    return sorted((_plain(c) for c in counts.index), key=str)


def _infinite_to_missing(frame: pd.DataFrame) -> dict[str, int]:
    """Turn +/-inf into missing values (in place), counted per column for the report.

    scikit-learn refuses infinite inputs; as missing values they are imputed (linear) or routed
    by the trees like any other gap, and a target that is infinite drops its row.
    """
    counts = {}
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_float_dtype(series):
            infinite = np.isinf(series.to_numpy(dtype=float, na_value=np.nan))
            if infinite.any():
                counts[name] = int(infinite.sum())
                frame.loc[infinite, name] = np.nan
    return counts


def schema_hash(columns: list[ColumnInfo]) -> str:
    """A hash of each column's name, type, kind and role: equal schemas, equal hashes."""
    canonical = json.dumps(
        [(c.name, c.dtype, c.kind, c.role) for c in columns], separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate(snapshot_path: str, target: str, task: str, output_path: str) -> TableSchema:
    """Check the snapshot, write the usable rows to ``output_path``, return the schema document."""
    target = checked("target", target)
    names = pq.read_schema(snapshot_path).names  # before reading: pyarrow refuses duplicates
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SchemaError(f"Column names must be unique; {duplicated} appear more than once.")
    frame = pq.read_table(snapshot_path).to_pandas()
    if target not in frame.columns:
        shown = ", ".join(map(repr, names[:30])) + (" ..." if len(names) > 30 else "")
        raise SchemaError(
            f"The 'target' parameter must be a column of the input table. Got {target!r}; "
            f"the columns are {shown}."
        )
    rows_in = len(frame)
    if rows_in == 0:
        raise DataValidationError("The table is empty: expected at least one row, got 0.")
    infinite = _infinite_to_missing(frame)
    missing_target = int(frame[target].isna().sum())
    if missing_target == rows_in:
        raise DataValidationError(f"Every value of target {target!r} is missing ({rows_in} rows).")
    if missing_target:
        frame = frame[frame[target].notna()].reset_index(drop=True)
    rows = len(frame)
    task = infer_task(frame[target], task)
    classes = _check_classes(frame[target]) if task == "classification" else None

    columns: list[ColumnInfo] = []
    for name in frame.columns:
        series = frame[name]
        if name == target:
            kind: ColumnKind = "numeric" if task == "regression" else "categorical"
            role: Literal["feature", "target", "excluded"] = "target"
            reason = ""
        else:
            kind, reason = _kind(series, rows)
            role = "excluded" if reason else "feature"
        columns.append(ColumnInfo(
            name=name, dtype=str(series.dtype), kind=kind, role=role, reason=reason,
            missing=int(series.isna().sum()), unique=int(series.nunique()),
            stats=_stats(series, kind),
        ))

    features = [c for c in columns if c.role == "feature"]
    if not features:
        excluded = "; ".join(f"{c.name}: {c.reason}" for c in columns if c.role == "excluded")
        raise DataValidationError(
            f"No column can be used as a feature besides target {target!r} ({excluded or 'none'})."
        )
    frame.to_parquet(output_path, index=False, compression="zstd")
    return TableSchema(
        target=target,
        task=task,
        classes=classes,
        rows_in=rows_in,
        rows_dropped_missing_target=missing_target,
        rows=rows,
        infinite_values=infinite,
        numeric_features=[c.name for c in features if c.kind == "numeric"],
        categorical_features=[c.name for c in features if c.kind == "categorical"],
        excluded={c.name: c.reason for c in columns if c.role == "excluded"},
        columns=columns,
        schema_hash=schema_hash(columns),
    )


def report_markdown(schema: TableSchema) -> str:
    """The validation report shown in the Kubeflow dashboard."""
    lines = [
        f"# Validation report: target `{schema.target}` ({schema.task})",
        "",
        f"- rows read: {schema.rows_in}",
        f"- rows dropped because the target is missing: {schema.rows_dropped_missing_target}",
        "- infinite values read as missing: "
        + (", ".join(f"{k} ({v})" for k, v in schema.infinite_values.items()) or "none"),
        f"- rows kept: {schema.rows}",
        f"- numeric features: {len(schema.numeric_features)}, "
        f"categorical features: {len(schema.categorical_features)}, "
        f"excluded columns: {len(schema.excluded)}",
        "",
        "| column | type | kind | role | missing | distinct | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in schema.columns:
        cells = [c.name, c.dtype, c.kind, c.role, c.missing, c.unique, c.reason]
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in cells) + " |")
    return "\n".join(lines) + "\n"


@reports_errors
def run(
    snapshot_path: str, target: str, task: str, dataset_out: str, schema_out: str, report_out: str
) -> TableSchema:
    """The validate stage: usable rows, schema document and Markdown report; returns the schema."""
    schema = validate(snapshot_path, target, task, dataset_out)
    schema.write(schema_out)
    with open(report_out, "w") as f:
        f.write(report_markdown(schema))
    return schema
