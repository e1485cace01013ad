"""The holdout rule: which rows are test rows, decided so that a row keeps its side across runs.

A random split drawn per run lets this week's test rows include rows the production model was
trained on, and a gate that scores production on rows it has seen leans towards keeping it. So
a row's side is decided by its own values: a salted hash of the row (or of key columns the
user names, so all rows of one customer fall on one side), or its time (the newest share is
the test split). The rule is recorded with each version; evaluate applies the production
version's recorded rule to this run's test rows to leave out those production trained on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from keel.contracts import ROW_HASH, SplitRule, TableSchema
from keel.errors import DataValidationError
from keel.settings import checked

if TYPE_CHECKING:
    from keel.registry import Registry

_MISSING = "\x00missing"  # how a missing text value is hashed (never a real cell's text)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def _column_hash(values: pd.Series) -> np.ndarray:
    """A uint64 per value that depends on the value, not on how the column happens to be stored.

    1, 1.0 and 1.0 read back from Parquet as int or float hash alike (numbers as float64); times
    as UTC nanoseconds; everything else as text, with one marker for a missing value.
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        values = values.astype("float64")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        nanos = values.astype("datetime64[ns]").to_numpy().view("int64")
        return np.asarray(pd.util.hash_array(nanos.astype("float64")))
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = pd.to_numeric(values).to_numpy(dtype="float64", na_value=np.nan) + 0.0
        numbers[np.isnan(numbers)] = np.nan  # one NaN bit pattern
        return np.asarray(pd.util.hash_array(numbers))
    missing = values.isna().to_numpy()
    text = values.astype(str).to_numpy(dtype=object)
    text[missing] = _MISSING
    return np.asarray(pd.util.hash_array(text, categorize=False))


def row_hashes(frame: pd.DataFrame, columns: Sequence[str], salt: str) -> np.ndarray:
    """The salted hash of each row's values in ``columns`` (order of ``columns`` irrelevant)."""
    seed = int.from_bytes(hashlib.sha256(f"{ROW_HASH}:{salt}".encode()).digest()[:8], "little")
    acc = np.full(len(frame), seed, dtype="uint64")
    for column in sorted(columns):
        with np.errstate(over="ignore"):
            acc = pd.util.hash_array((acc * _MIX) ^ _column_hash(frame[column]))
    return acc


def _missing_columns(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    return [c for c in columns if c not in frame.columns]


def is_test(frame: pd.DataFrame, rule: SplitRule) -> np.ndarray:
    """Which rows of ``frame`` the rule puts in the test split; a missing column raises."""
    missing = _missing_columns(frame, rule.columns)
    if missing:
        raise DataValidationError(
            f"The split rule ({describe(rule)}) needs column(s) {', '.join(map(repr, missing))}, "
            "which the table does not have.",
            stage="preprocess",
        )
    if rule.method == "hash":
        if rule.algorithm != ROW_HASH:
            raise DataValidationError(
                f"The split rule uses the row hash {rule.algorithm!r}; this Keel computes "
                f"{ROW_HASH!r}.", stage="preprocess")
        unit = (row_hashes(frame, rule.columns, rule.salt) >> np.uint64(11)) / float(2**53)
        return np.asarray(unit < rule.test_size)
    times = _as_time_values(frame[rule.columns[0]], rule.columns[0])
    try:
        cutoff = _parse_cutoff(rule.cutoff or "", times)
    except (ValueError, TypeError):
        raise DataValidationError(
            f"The split rule's cutoff {rule.cutoff!r} cannot be compared with column "
            f"{rule.columns[0]!r}, which now holds {times.dtype} values.", stage="preprocess",
        ) from None
    return np.asarray((times >= cutoff).fillna(False).to_numpy(dtype=bool))


def _as_time_values(values: pd.Series, column: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return values.astype("datetime64[us]")
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return pd.to_numeric(values).astype("float64")
    raise DataValidationError(
        f"The 'split_time_column' parameter of preprocess must name a date, time or number "
        f"column. Got {column!r}, a column of {values.dtype} values.",
        stage="preprocess",
    )


def _parse_cutoff(cutoff: str, times: pd.Series) -> object:
    if pd.api.types.is_datetime64_any_dtype(times.dtype):
        stamp = pd.Timestamp(cutoff)
        return stamp.tz_localize(None) if stamp.tz is None \
            else stamp.tz_convert("UTC").tz_localize(None)
    return float(cutoff)


def _format_cutoff(value: object) -> str:
    if isinstance(value, pd.Timestamp):
        return str(value.isoformat())
    return repr(float(value))  # type: ignore[arg-type]


def make_rule(
    frame: pd.DataFrame, schema: TableSchema, test_size: float, key: Sequence[str] = (),
    time_column: str = "", salt: str = "keel",
) -> SplitRule:
    """The rule for this run: by time when ``time_column`` is set, else by the hash of the key.

    Without key columns the hash covers every feature and the target, so identical rows always
    fall on the same side; a key keeps rows of one entity together and survives added columns.
    """
    test_size = checked("test_size", test_size)
    if key and time_column:
        raise DataValidationError(
            "The 'split_key' and 'split_time_column' parameters of preprocess exclude each other: "
            f"give one. Got split_key={list(key)!r} and split_time_column={time_column!r}.",
            stage="preprocess")
    if time_column:
        _require(frame, [time_column], "split_time_column")
        times = _as_time_values(frame[time_column], time_column)
        known = times.dropna().sort_values(kind="stable").reset_index(drop=True)
        if len(known) < 2:
            raise DataValidationError(
                f"The 'split_time_column' parameter of preprocess names {time_column!r}, which "
                f"has {len(known)} non-missing value(s): a time split needs at least 2.",
                stage="preprocess")
        position = min(len(known) - 1, max(1, int(np.floor(len(known) * (1 - test_size)))))
        return SplitRule(method="time", test_size=test_size, columns=[time_column],
                         cutoff=_format_cutoff(known.iloc[position]))
    if key:
        _require(frame, key, "split_key")
        return SplitRule(method="hash", test_size=test_size, columns=list(key), keyed=True,
                         salt=salt)
    return SplitRule(method="hash", test_size=test_size,
                     columns=sorted([*schema.numeric_features, *schema.categorical_features,
                                     schema.target]), salt=salt)


def _require(frame: pd.DataFrame, columns: Sequence[str], setting: str) -> None:
    missing = _missing_columns(frame, columns)
    if missing:
        shown = ", ".join(map(repr, list(frame.columns)[:20]))
        raise DataValidationError(
            f"The {setting!r} parameter of preprocess must name columns of the table. Got "
            f"{', '.join(map(repr, missing))}; the columns are {shown}"
            f"{', ...' if len(frame.columns) > 20 else ''}.",
            stage="preprocess")


def describe(rule: SplitRule) -> str:
    """One phrase for messages and reports."""
    share = f"{rule.test_size:g} of rows"
    if rule.method == "time":
        return f"time split on {rule.columns[0]!r}: rows at or after {rule.cutoff} ({share})"
    what = ("key " + ", ".join(rule.columns)) if rule.keyed else \
        f"hash of {len(rule.columns)} column(s)"
    return f"{what}, salt {rule.salt!r} ({share})"


def apply(frame: pd.DataFrame, schema: TableSchema, rule: SplitRule
          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test rows under ``rule``; refuses a split that leaves a side unusable."""
    test_mask = is_test(frame, rule)
    train, test = frame[~test_mask], frame[test_mask]
    if train.empty or test.empty:
        side = "training" if train.empty else "test"
        raise DataValidationError(
            f"The split ({describe(rule)}) leaves the {side} split empty: {len(train)} training "
            f"and {len(test)} test rows of {len(frame)}.", stage="preprocess")
    if schema.task == "classification":
        absent = sorted(set(map(str, frame[schema.target].unique()))
                        - set(map(str, train[schema.target].unique())))
        if absent:
            raise DataValidationError(
                f"The split ({describe(rule)}) puts every row of class(es) "
                f"{', '.join(map(repr, absent))} of {schema.target!r} in the test split, so the "
                "model could not learn them: add rows of these classes or change the split.",
                stage="preprocess")
    return train.reset_index(drop=True), test.reset_index(drop=True)


def rows_trained_on(
    test: pd.DataFrame, rule: SplitRule | None, registry: Registry, version: int,
    data_version: str, columns: Sequence[str],
) -> tuple[np.ndarray, str]:
    """Which test rows version ``version`` may have trained on, and why they are left out.

    With its recorded rule: the rows that rule puts on its training side. Without one (a version
    written before rules were recorded): every row that occurs in its data snapshot (the
    hash of its feature and target values), since its random split cannot be replayed. When
    neither can be worked out, every row is left out: a row of unknown status is never scored.
    """
    if rule is not None:
        try:
            trained = ~is_test(test, rule)
        except DataValidationError as exc:
            return np.ones(len(test), dtype=bool), (
                f"production version {version}'s split rule cannot be applied to this table "
                f"({exc.args[0]}), so which rows it trained on is unknown")
        why = f"on the training side of production version {version}'s split ({describe(rule)})"
        return trained, why if trained.any() else ""
    import tempfile

    key = registry.snapshot_key(data_version)
    missing = _missing_columns(test, columns)
    if missing or not registry.store.exists(key):
        cause = (f"this table lacks its column(s) {', '.join(map(repr, missing))}" if missing
                 else f"its data snapshot {registry.store.url(key)} is not in the store")
        return np.ones(len(test), dtype=bool), (
            f"production version {version} has no recorded split rule and {cause}, so which "
            "rows it trained on is unknown")
    with tempfile.TemporaryDirectory() as tmp:
        registry.store.download(key, f"{tmp}/snapshot.parquet")
        seen = pd.read_parquet(f"{tmp}/snapshot.parquet", columns=list(columns))
    trained = np.isin(row_hashes(test, columns, "legacy"), row_hashes(seen, columns, "legacy"))
    why = (f"in the data production version {version} was trained and tested on (it has no "
           "recorded split rule, so its training rows cannot be told from its test rows)")
    return trained, why if trained.any() else ""
