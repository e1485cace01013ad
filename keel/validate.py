"""Validate: infer the schema (column kinds and roles), check the table is usable, report.

Blocking problems raise (the run stops before anything is registered); repairable ones are
repaired and reported: rows with a missing target are dropped and counted, and columns that
cannot be features (identifiers, free text, constant or empty columns, dates) are excluded with
the reason written next to them.

Two more rules stop a run before it trains a model that would mislead:

- the evaluation must mean something: the test split (sized as scikit-learn's
  ``train_test_split`` sizes it) needs ``min_test_rows`` rows and, for a classifier, each class
  about ``min_class_test_rows``;
- a model name keeps what it predicts: a run whose target, task or classes differ from those of
  the model's production version is refused unless ``allow_target_change``.

Every message stays one readable line whatever the data: a list of classes, columns or reasons
shows a few entries and then "... and N more".
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from keel.contracts import (
    ColumnInfo,
    ColumnKind,
    Scalar,
    TableSchema,
    TableStatistics,
    Task,
    ValidationResult,
    ValidationRules,
)
from keel.errors import (
    MAX_DETAILS,
    DataValidationError,
    ParameterError,
    SchemaError,
    reports_errors,
)
from keel.registry import Registry
from keel.settings import DEFAULTS, SETTINGS, checked
from keel.storage import open_store

# An integer-valued numeric target with at most this many distinct values is a class label.
MAX_CLASSES_FOR_NUMERIC_TARGET = 20
# A string column with more distinct values than this (and than half its rows) is free text.
MAX_CATEGORIES = 50
# Messages quote a name or value in at most NAME_WIDTH characters, and list at most MAX_SHOWN
# entries in at most LIST_WIDTH characters: a 5,000-class target still gives one short line.
NAME_WIDTH = 40
LIST_WIDTH = 100
MAX_SHOWN = 5
SCHEMA_FILE = "schema.json"  # the schema document publish stores with every version
STATISTICS_FILE = "statistics.json"  # the statistics publish stores: the next run's reference
EXCLUDED_BY_USER = "excluded by the user (exclude_columns or the validation rules)"


def _plain(value: Any) -> Any:
    """Turn numpy scalars into JSON-ready Python values."""
    return value.item() if hasattr(value, "item") else value


def _clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in '...' when it was longer."""
    return text if len(text) <= width else text[: max(width - 3, 1)] + "..."


def shown(value: Any, width: int = NAME_WIDTH) -> str:
    """A name or value as a message quotes it: its repr, clipped to ``width`` characters."""
    return _clip(repr(_plain(value)), width)


def listing(
    items: Sequence[Any], width: int = LIST_WIDTH, *, render: Callable[[Any], str] = shown,
    sep: str = ", ",
) -> str:
    """The first entries of ``items`` (at most MAX_SHOWN, in ``width`` characters), then a count.

    ``['a', 'b', 'c', ...]`` -> ``"'a', 'b', 'c' ... and 4997 more"``.
    """
    parts: list[str] = []
    used = 0
    for index, item in enumerate(items[:MAX_SHOWN]):
        rest = len(items) - index - 1
        tail = len(f" ... and {rest} more") if rest else 0
        text = render(item)
        if not parts:  # the first entry is always shown, clipped if it must be
            text = _clip(text, max(width - tail, 12))
        elif used + len(sep) + len(text) + tail > width:
            break
        used += (len(sep) if parts else 0) + len(text)
        parts.append(text)
    more = len(items) - len(parts)
    return sep.join(parts) + (f" ... and {more} more" if more else "")


def _flag(name: str) -> str:
    """The ``keel run`` option of a setting, as messages name it."""
    return SETTINGS[name].cli_flag


def _number(count: int) -> str:
    """A row count for a message: digits, or a short power of ten when it is huge."""
    digits = str(count)
    return digits if len(digits) <= 12 else f"about {digits[0]}.{digits[1:3]}e{len(digits) - 1}"


def _kind(series: pd.Series, rows: int) -> tuple[ColumnKind, str]:
    """The column's kind, and why it cannot be a feature ('' when it can)."""
    non_null = series.dropna()
    unique = non_null.nunique()
    if non_null.empty:
        return "empty", "every value is missing"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime", "date/time columns are not turned into features yet"
    if unique == 1:
        return "constant", f"it has a single value ({shown(non_null.iloc[0])})"
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
        with np.errstate(over="ignore", invalid="ignore"):  # huge floats: stats become None
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
            f"The target {shown(target.name)} holds dates or times ({target.dtype}), which Keel "
            "cannot predict yet: expected numbers, text or booleans. Convert it (for example to a "
            "number of days) or choose another --target."
        )
    numeric = pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target)
    if task == "regression" and not numeric:
        raise SchemaError(
            f"Regression needs a numeric target, but column {shown(target.name)} has type "
            f"{target.dtype} (for example {shown(target.iloc[0])}). Use --task classification."
        )
    if task != "auto":
        return cast(Task, task)
    if not numeric:
        return "classification"
    integral = bool((target == target.round()).all())
    if integral and target.nunique() <= MAX_CLASSES_FOR_NUMERIC_TARGET:
        return "classification"
    return "regression"


def _class_counts(target: pd.Series) -> pd.Series:
    """Rows per class; at least two classes, or a DataValidationError naming the only one."""
    counts = target.value_counts()
    counts = counts[counts > 0]  # a categorical target also counts its unused categories
    if len(counts) < 2:
        raise DataValidationError(
            f"Classification needs at least two classes in target {shown(target.name)}, but "
            f"every row has {shown(counts.index[0])}. Check the target column or the source data."
        )
    return counts


def _smallest_first(counts: pd.Series) -> list[tuple[Any, int]]:
    """(class, rows) pairs, smallest class first; ties in the order of the classes' text."""
    pairs = [(_plain(c), int(n)) for c, n in counts.items()]
    return sorted(pairs, key=lambda pair: (pair[1], str(pair[0])))


def _check_stratifiable(target: pd.Series, counts: pd.Series) -> None:
    """A stratified split puts each class on both sides: every class needs two rows."""
    rare = _smallest_first(counts[counts < 2])
    if rare:
        raise DataValidationError(
            f"Every class of target {shown(target.name)} needs at least 2 rows for a stratified "
            f"split; {len(rare)} class(es) have only 1: {listing([c for c, _ in rare])}."
        )


def held_out_rows(rows: int, test_size: float) -> int:
    """Rows the test split gets: ``ceil(test_size * rows)``, as ``train_test_split`` computes it."""
    return math.ceil(test_size * rows)


def rows_needed(min_test_rows: int, test_size: float) -> int:
    """The fewest rows that split into ``min_test_rows`` test rows and at least one training row."""
    min_test_rows = max(min_test_rows, 1)
    # ceil(t * n) >= m exactly when t * n > m - 1, and n - ceil(t * n) >= 1 when n >= 1 / (1 - t):
    # exact arithmetic for the estimate, then the float product train_test_split computes decides.
    t = Fraction(test_size)
    estimate = max(math.floor((min_test_rows - 1) / t), math.ceil(1 / (1 - t)) - 1, 1)
    if estimate > 2**40:  # floats no longer tell neighbouring row counts apart
        return estimate + 1
    for rows in range(max(estimate - 1, 1), estimate + 8):
        if min_test_rows <= held_out_rows(rows, test_size) < rows:
            return rows
    return estimate + 1


def class_rows_needed(min_class_test_rows: int, test_size: float) -> int:
    """The fewest rows a class needs for about ``min_class_test_rows`` test rows.

    A stratified split gives a class about ``rows * test_size`` test rows; a product short of the
    minimum by floating-point error only (10 * 0.3) reaches it.
    """
    if min_class_test_rows <= 0:
        return 0
    return math.ceil((Fraction(min_class_test_rows) - Fraction(1, 10**9)) / Fraction(test_size))


def check_evaluation_size(
    target: pd.Series, task: Task, rows_in: int, *, test_size: float, min_test_rows: int,
    min_class_test_rows: int,
) -> None:
    """Refuse a table whose test split would be too small for its metrics to mean anything.

    Checked before training: a 3-row table would otherwise train on 2 rows, test on 1 and be
    promoted on that one row's score.
    """
    rows = len(target)
    held_out = held_out_rows(rows, test_size)
    if held_out < min_test_rows or held_out >= rows:
        dropped = rows_in - rows
        read = f" ({dropped} of {rows_in} dropped for a missing target)" if dropped else ""
        problem = (f"below {_flag('min_test_rows')} {min_test_rows}" if held_out < min_test_rows
                   else "leaving no row to train on")
        raise DataValidationError(
            f"The table is too small for a meaningful evaluation: {rows} usable rows{read} give "
            f"a test split of {held_out} at test_size {test_size}, {problem}; it needs at least "
            f"{_number(rows_needed(min_test_rows, test_size))} rows. Add rows, or change "
            f"{_flag('test_size')} or {_flag('min_test_rows')}."
        )
    if task != "classification":
        return
    needed = class_rows_needed(min_class_test_rows, test_size)
    small = _smallest_first(target.value_counts()[lambda n: (n > 0) & (n < needed)])
    if small:
        classes = listing(small, 70, render=lambda pair: f"{shown(pair[0], 24)} ({pair[1]} rows)")
        raise DataValidationError(
            f"{len(small)} class(es) of target {shown(target.name, 30)} are too small to "
            f"evaluate: each needs {_number(needed)} rows ({min_class_test_rows} test rows at "
            f"test_size {test_size}); smallest: {classes}. Add rows or merge classes, or change "
            f"{_flag('test_size')} or {_flag('min_class_test_rows')}."
        )


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


# -- what production predicts ------------------------------------------------------------------
@dataclass(frozen=True)
class Production:
    """What a model's production version predicts, and the reference its data is checked against.

    Target and task come from the manifest, classes from the schema.
    """

    model: str
    version: int
    target: str
    task: Task
    classes: list[Scalar] | None
    features: tuple[str, ...] = ()
    schema: TableSchema | None = None
    #: None when the version was published before Keel stored statistics (schema 3 and older)
    statistics: TableStatistics | None = None
    rows: int | None = None

    @property
    def note(self) -> str:
        """What the data is compared with, in a few words, for the report and the summary."""
        where = f"production version {self.version} of model {self.model!r}"
        if self.statistics is None:
            return (f"{where}, which has no stored statistics (published by an older Keel): "
                    "columns and types compared, no drift")
        return f"{where} ({self.statistics.rows} rows)"


def read_production(store: str, model_name: str, *, reference: bool = False) -> Production | None:
    """What the model's production version predicts; None when it has none (a first run).

    With ``reference``, also its schema, features and statistics, which the data checks compare
    this run's table with. Registry damage (production.json missing while versions exist, a
    file that fails its sha256) is the registry's error and propagates: damage is never taken
    for a first run.
    """
    registry = Registry(open_store(store), model_name)
    version = registry.alias().version
    if version is None:
        return None
    manifest = registry.manifest(version)

    def stored(name: str, contract: Any, tmp: str) -> Any:
        path = registry.download_verified(version, name, Path(tmp) / name, manifest)
        return contract.from_json(
            path.read_bytes(), stage="validate",
            origin=registry.store.url(f"{registry.root}/versions/{version}/{name}"))

    with tempfile.TemporaryDirectory(prefix="keel-validate-") as tmp:
        schema: TableSchema = stored(SCHEMA_FILE, TableSchema, tmp)
        statistics = (stored(STATISTICS_FILE, TableStatistics, tmp)
                      if reference and STATISTICS_FILE in manifest.files else None)
    classes = schema.classes if manifest.task == "classification" else None
    return Production(
        model=registry.model, version=version, target=manifest.target, task=manifest.task,
        classes=classes, features=tuple(manifest.features.features),
        schema=schema if reference else None, statistics=statistics,
        rows=statistics.rows if statistics is not None else schema.rows_in)


def _class_key(value: Scalar) -> tuple[str, Scalar]:
    """Classes compare by value (1 and 1.0 are one class), but True is not 1 nor '1'."""
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, int | float):
        return "number", float(value)
    return "text", value


def _predicts(target: str, task: Task, classes: list[Scalar] | None, width: int = 32) -> str:
    """``'status' (classification, 2 classes)``: what a model predicts, in a few words."""
    kind = task if task == "regression" or classes is None else f"{task}, {len(classes)} classes"
    return f"{shown(target, width)} ({kind})"


def target_change(production: Production, schema: TableSchema) -> str:
    """How this run's target, task or classes differ from production's; '' when they do not.

    One short phrase whatever the data: names are clipped and long class lists end in a count.
    """
    if (production.target, production.task) != (schema.target, schema.task):
        return (f"predicts {_predicts(production.target, production.task, production.classes)}; "
                f"this run would predict {_predicts(schema.target, schema.task, schema.classes)}")
    if production.classes is None or schema.classes is None:
        return ""
    before = {_class_key(c): c for c in production.classes}
    now = {_class_key(c): c for c in schema.classes}
    new = [c for key, c in now.items() if key not in before]
    gone = [c for key, c in before.items() if key not in now]
    if not new and not gone:
        return ""
    width = 33 if new and gone else 70  # both lists, and the line, stay short
    changes = ([f"new {listing(new, width)}"] if new else []) + (
        [f"without {listing(gone, width)}"] if gone else [])
    theirs = _predicts(production.target, production.task, production.classes, width=24)
    return f"predicts {theirs}; this run's classes: {', '.join(changes)}"


def _check_production(
    production: Production | None, schema: TableSchema, allow_target_change: bool
) -> None:
    """Refuse a run that would change what the model name predicts, unless it is allowed."""
    if production is None or allow_target_change:
        return
    change = target_change(production, schema)
    if change:
        raise SchemaError(
            f"Production version {production.version} of model {production.model!r} {change}. "
            f"Use a new {_flag('model_name')} name, or pass {_flag('allow_target_change')} if the "
            "change is intended."
        )


# -- the stage ---------------------------------------------------------------------------------
def validate(
    snapshot_path: str,
    target: str,
    task: str,
    output_path: str,
    *,
    test_size: float = DEFAULTS["test_size"],
    min_test_rows: int = DEFAULTS["min_test_rows"],
    min_class_test_rows: int = DEFAULTS["min_class_test_rows"],
    production: Production | None = None,
    allow_target_change: bool = False,
) -> TableSchema:
    """Check the snapshot, write the usable rows to ``output_path``, return the schema document.

    ``production`` is what the model's production version predicts (:func:`read_production`);
    None compares nothing.
    """
    schema, frame = usable_table(
        snapshot_path, target, task, test_size=test_size, min_test_rows=min_test_rows,
        min_class_test_rows=min_class_test_rows, production=production,
        allow_target_change=allow_target_change)
    frame.to_parquet(output_path, index=False, compression="zstd")
    return schema


def usable_table(
    snapshot_path: str,
    target: str,
    task: str,
    *,
    test_size: float = DEFAULTS["test_size"],
    min_test_rows: int = DEFAULTS["min_test_rows"],
    min_class_test_rows: int = DEFAULTS["min_class_test_rows"],
    production: Production | None = None,
    allow_target_change: bool = False,
    excluded: Sequence[str] = (),
    categorical: Sequence[str] = (),
) -> tuple[TableSchema, pd.DataFrame]:
    """The schema document and the usable rows of the snapshot (see :func:`validate`).

    ``excluded`` columns are never features (the user said so); ``categorical`` number columns
    are categories, not quantities (codes such as a postal code), as the user's rules expect.
    """
    target = checked("target", target)
    test_size = checked("test_size", test_size)
    min_test_rows = checked("min_test_rows", min_test_rows)
    min_class_test_rows = checked("min_class_test_rows", min_class_test_rows)
    allow_target_change = checked("allow_target_change", allow_target_change)
    arrow_schema = pq.read_schema(snapshot_path)
    names = arrow_schema.names  # before reading: pyarrow refuses duplicates
    duplicated = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicated:
        raise SchemaError(f"Column names must be unique; {len(duplicated)} appear more than once: "
                          f"{listing(duplicated)}.")
    frame = pq.read_table(snapshot_path).to_pandas()
    if target not in frame.columns:
        raise SchemaError(
            f"The 'target' parameter must be a column of the input table. Got {shown(target)}; "
            f"the {len(names)} columns are {listing(names, 120)}."
        )
    rows_in = len(frame)
    if rows_in == 0:
        raise DataValidationError("The table is empty: expected at least one row, got 0.")
    infinite = _infinite_to_missing(frame)
    missing_target = int(frame[target].isna().sum())
    if missing_target == rows_in:
        raise DataValidationError(
            f"Every value of target {shown(target)} is missing ({rows_in} rows).")
    if missing_target:
        frame = frame[frame[target].notna()].reset_index(drop=True)
        target_type = arrow_schema.field(target).type
        if pa.types.is_integer(target_type):
            # Read with a gap, integers became floats: one empty cell must not turn the classes
            # 0, 1, 2 into 0.0, 1.0, 2.0 (or merge large integers into one float).
            frame[target] = frame[target].astype(target_type.to_pandas_dtype())
    rows = len(frame)
    task = infer_task(frame[target], task)
    counts = _class_counts(frame[target]) if task == "classification" else None
    check_evaluation_size(frame[target], task, rows_in, test_size=test_size,
                          min_test_rows=min_test_rows, min_class_test_rows=min_class_test_rows)
    classes = None
    if counts is not None:
        _check_stratifiable(frame[target], counts)
        classes = sorted((_plain(c) for c in counts.index), key=str)

    columns: list[ColumnInfo] = []
    for name in frame.columns:
        series = frame[name]
        if name == target:
            kind: ColumnKind = "numeric" if task == "regression" else "categorical"
            role: Literal["feature", "target", "excluded"] = "target"
            reason = ""
        else:
            kind, reason = _kind(series, rows)
            if kind == "numeric" and name in categorical:
                kind = "categorical"
            if name in excluded:
                reason = EXCLUDED_BY_USER
            role = "excluded" if reason else "feature"
        columns.append(ColumnInfo(
            name=name, dtype=str(series.dtype), kind=kind, role=role, reason=reason,
            missing=int(series.isna().sum()), unique=int(series.nunique()),
            stats=_stats(series, kind),
        ))

    features = [c for c in columns if c.role == "feature"]
    if not features:
        unusable = [c for c in columns if c.role == "excluded"]
        reasons = listing(unusable, 180, sep="; ",
                          render=lambda c: f"{_clip(c.name, 30)}: {_clip(c.reason, 60)}")
        raise DataValidationError(
            f"No column can be used as a feature besides target {shown(target)} "
            f"({reasons or 'none'})."
        )
    schema = TableSchema(
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
    _check_production(production, schema, allow_target_change)
    return schema, frame


def production_note(production: Production | None, schema: TableSchema, compared: bool) -> str:
    """The report's line on the production comparison (``compared``: a store and model given)."""
    if not compared:
        return "production: not compared (no store and model name given)"
    if production is None:
        return "production: none yet (a first run), nothing compared"
    where = f"version {production.version} of model {production.model!r}"
    change = target_change(production, schema)
    if change:
        return (f"**target changed** (allowed by {_flag('allow_target_change')}): production "
                f"{where} {change}")
    return f"production: {where} predicts the same target, task and classes"


def reference_note(production: Production | None, compared: bool) -> str:
    """What this run's data is checked against, for the validation result."""
    if not compared:
        return "no reference: not compared with a production version (no store and model given)"
    if production is None:
        return "no reference: the model has no production version yet (a first run)"
    return f"compared with {production.note}"


def require_columns(schema: TableSchema, named: dict[str, list[str]],
                    also: Sequence[str] = ()) -> None:
    """Every column a setting names is a column of the table (features or not), or of ``also``.

    ``also`` are the reference's columns: a rule for a column that production had and this
    table lacks is not a typo (its absence is an anomaly of its own). A name that is neither is
    refused with the nearest names, so that a misspelt rule never silently checks nothing.
    """
    import difflib

    columns = [c.name for c in schema.columns]
    known = set(columns) | set(also)
    for setting, wanted in named.items():
        missing = list(dict.fromkeys(c for c in wanted if c not in known))
        if missing:
            near = difflib.get_close_matches(missing[0], columns, n=1)
            hint = f" (did you mean {shown(near[0])}?)" if near else ""
            raise SchemaError(
                f"The {setting!r} parameter of {SETTINGS[setting].stage} must name columns of "
                f"the table. Got {listing(missing, 80)}{hint}; the {len(columns)} columns are "
                f"{listing(columns, 120)}.",
                stage="validate")


@dataclass(frozen=True)
class Validated:
    """What the validate stage found: the schema, the statistics and the data checks."""

    schema: TableSchema
    statistics: TableStatistics
    result: ValidationResult
    reference: TableStatistics | None


@reports_errors
def run(
    snapshot_path: str,
    target: str,
    task: str,
    dataset_out: str,
    schema_out: str,
    report_out: str,
    *,
    statistics_out: str = "",
    validation_out: str = "",
    report_html_out: str = "",
    test_size: float = DEFAULTS["test_size"],
    min_test_rows: int = DEFAULTS["min_test_rows"],
    min_class_test_rows: int = DEFAULTS["min_class_test_rows"],
    store: str = "",
    model_name: str = "",
    allow_target_change: bool = False,
    split_key: Sequence[str] = (),
    split_time_column: str = "",
    slices: Sequence[str] = (),
    validation_rules: str | ValidationRules = DEFAULTS["validation_rules"],
    severity: Sequence[str] = (),
    exclude_columns: Sequence[str] = (),
    seed: int = DEFAULTS["seed"],
) -> Validated:
    """The validate stage: usable rows, schema, statistics, data checks and the reports.

    The columns later stages are told to use (``split_key``, ``split_time_column``, ``slices``)
    and the ones the user excludes are checked here, so that a misspelt one stops the run
    before anything is trained.

    With ``store`` and ``model_name`` (the pipeline always gives both) the run is compared with
    the model's production version: what it predicts, and its stored statistics (the reference
    of the data checks); with neither (the component used on its own) it is not. The reports
    are written before a blocking anomaly stops the run, so ``keel validate`` can show them.
    The ``*_out`` paths left empty are not written.
    """
    from keel.data_checks import (
        check_data,
        error_message,
        leakage_scores,
        parse_severity_overrides,
        summary_lines,
        with_excluded,
    )
    from keel.statistics import compute_statistics
    from keel.validation_report import report_html, report_markdown

    if not isinstance(store, str) or not isinstance(model_name, str) or bool(store) != bool(
            model_name):
        raise ParameterError(
            "The 'store' and 'model_name' parameters of validate go together: both, to compare "
            "the table with the model's production version, or both empty. Got "
            f"store={_clip(repr(store), 80)} and model_name={_clip(repr(model_name), 80)}.",
            stage="validate",
        )
    # Every setting is checked before the registry is read, as keel run checks them before ingest.
    test_size = checked("test_size", test_size)
    min_test_rows = checked("min_test_rows", min_test_rows)
    min_class_test_rows = checked("min_class_test_rows", min_class_test_rows)
    allow_target_change = checked("allow_target_change", allow_target_change)
    rules: ValidationRules = (validation_rules if isinstance(validation_rules, ValidationRules)
                              else checked("validation_rules", validation_rules))
    severity = checked("severity", list(severity))
    excluded = checked("exclude_columns", list(exclude_columns))
    seed = checked("seed", seed)
    named = {"split_key": checked("split_key", list(split_key)),
             "split_time_column": [checked("split_time_column", split_time_column)] if
             split_time_column else [], "slices": checked("slices", list(slices)),
             "exclude_columns": excluded}
    target_rule = rules.columns.get(target)
    if target in excluded or (target_rule is not None and target_rule.exclude):
        raise ParameterError(
            f"The target {shown(target)} cannot be excluded (exclude_columns or the validation "
            "rules): it is what the model predicts.", stage="validate")
    compared = bool(store)
    production = None
    if compared:
        production = read_production(checked("store", store), checked("model_name", model_name),
                                     reference=True)
    statistics = compute_statistics(snapshot_path)
    schema, frame = usable_table(
        snapshot_path, target, task, test_size=test_size, min_test_rows=min_test_rows,
        min_class_test_rows=min_class_test_rows, production=production,
        allow_target_change=allow_target_change,
        excluded=[*excluded, *(c for c, rule in rules.columns.items() if rule.exclude)],
        categorical=[c for c, rule in rules.columns.items() if rule.type == "categorical"],
    )
    rule_columns = {"validation_rules": list(rules.columns),
                    "severity": [c for c in parse_severity_overrides(severity)[1]]}
    reference_columns = [c.name for c in production.schema.columns] if (
        production is not None and production.schema is not None) else []
    require_columns(schema, {**named, **rule_columns}, also=reference_columns)
    features = [c.name for c in schema.columns if c.role == "feature"]
    result = check_data(
        statistics, schema, reference=None if production is None else production.statistics,
        reference_schema=None if production is None else production.schema,
        production_features=() if production is None else production.features,
        reference_version=None if production is None else production.version,
        reference_note=reference_note(production, compared),
        rules=with_excluded(rules, excluded), severity=severity,
        leakage=leakage_scores(frame, target, schema.task, features, seed=seed),
    )
    reference = None if production is None else production.statistics
    notes = [production_note(production, schema, compared)]
    schema.write(schema_out)
    with open(report_out, "w") as f:
        f.write(report_markdown(schema, statistics, result, reference, notes))
    if statistics_out:
        statistics.write(statistics_out)
    if validation_out:
        result.write(validation_out)
    if report_html_out:
        with open(report_html_out, "w") as f:
            f.write(report_html(schema, statistics, result, reference, notes,
                                title=model_name or target))
    if result.errors:
        # the CLI prints each detail after two spaces
        details = summary_lines(result, width=98, max_lines=MAX_DETAILS)
        raise DataValidationError(error_message(result), details=details)
    frame.to_parquet(dataset_out, index=False, compression="zstd")
    return Validated(schema=schema, statistics=statistics, result=result, reference=reference)
