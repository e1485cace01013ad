"""Data checks of the validate stage: anomalies, drift and target leakage against a reference.

The reference is the statistics (and schema) stored with the model's production version. Each
run is compared with it column by column; on a first run (no production version) only the
checks that need no reference run: constant columns, a single class, the types and ranges the
user expects, and target leakage. A production version from before statistics were stored gives
what its schema document holds: columns, types, kinds, ranges and missing counts.

Everything found is an :class:`~keel.contracts.Anomaly` with a severity: ``error`` stops the run
before training, ``warning`` is reported, ``ignore`` is recorded but neither stops nor prints.
A severity comes from, first to last: the column's rule in the validation rules, a per-column
``--severity COLUMN:KIND=LEVEL``, a global ``--severity KIND=LEVEL``, the rules' ``severity``,
then :data:`DEFAULT_SEVERITY`.

Drift is computed from the statistics alone (no second pass over the data): numbers from their
KLL sketches over the reference's deciles, categories from their counts. Leakage needs the rows
and is computed by :func:`leakage_scores` (numpy and pandas only: validate never imports
scikit-learn). Every message is one line that names the column and its numbers.
"""

from __future__ import annotations

import base64
import math
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from datasketches import kll_doubles_sketch  # type: ignore[import-untyped, unused-ignore]

from keel.contracts import (
    Anomaly,
    AnomalyKind,
    ColumnInfo,
    ColumnRule,
    ColumnStatistics,
    Drift,
    DriftMethod,
    LeakageScore,
    Severity,
    TableSchema,
    TableStatistics,
    Task,
    ValidationResult,
    ValidationRules,
)
from keel.settings import SETTINGS, checked
from keel.statistics import MAX_TRACKED

DEFAULT_SEVERITY: dict[AnomalyKind, Severity] = {
    # a column production's model reads is gone: production cannot be re-scored on this table
    "production_feature_missing": "error",
    "missing_column": "warning",  # a column no model uses is gone: worth knowing, not blocking
    "new_column": "warning",  # it becomes a feature of the new model: reported
    # a number arriving as text (or a date as a number) is almost always a broken extract
    "type_change": "error",
    # same type, another kind (a category column with many new values now reads as free text):
    # validate handles it (the column is excluded or encoded differently), so it is reported
    "kind_change": "warning",
    "new_category": "warning",  # the model encodes unseen categories as unknown: reported
    "out_of_range": "warning",
    "missing_rate": "warning",
    "row_count": "warning",
    "constant": "warning",  # validate already excludes it from the features
    "single_class": "error",  # nothing to learn: a classifier needs two classes
    "drift": "warning",  # drift is why models are retrained: reported, never blocking by default
    "target_leakage": "warning",  # a suspicion, not a proof: the user decides (--exclude-column)
}

DEFAULT_DRIFT_THRESHOLD: dict[DriftMethod, float] = {
    # The usual bar of credit scoring: PSI < 0.1 stable, 0.1-0.25 moving, above: act. A
    # resample of the same distribution stays under 0.05 from 1,000 rows up; a shift of half a
    # standard deviation scores about 0.25.
    "psi": 0.2,
    # Jensen-Shannon distance (base 2, 0..1) of 0.1 is a shift of about 0.2 standard deviation
    # (Evidently's default); a same-distribution resample scores about 0.06 at 1,000 rows.
    "js": 0.1,
    # L-infinity: some category's share of rows moved by 10 points. A share's sampling noise is
    # about 2 points at 1,000 rows, so 0.1 flags real moves only.
    "linf": 0.1,
}

NAME_WIDTH = 30  # a column name quoted in a message, clipped
MAX_EXAMPLES = 3  # new categories named in a message
MAX_SHOWN = 5  # anomalies named in an error line
ERROR_WIDTH = 270  # characters of that line: the CLI's error line (300) less its prefix
DECILES = [i / 10 for i in range(1, 10)]  # drift bins of numbers: the reference's deciles
SMOOTHING = 1e-4  # share given to an empty bin, so that PSI stays finite
MIN_LEAKAGE_ROWS = 8  # fewer usable rows: no leakage score
LEAKAGE_BINS = (10, 100)  # bins of a numeric feature: one per 20 fit rows, within these bounds

_SEVERITY_RANK: dict[Severity, int] = {"error": 0, "warning": 1, "ignore": 2}
_NO_REFERENCE_KINDS = frozenset({"constant", "empty"})  # schema kinds a kind change skips


# -- message helpers ---------------------------------------------------------------------------
def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 1)] + "..."


def _shown(value: Any, width: int = NAME_WIDTH) -> str:
    """A column name or value as a message quotes it: its repr, clipped."""
    return _clip(repr(value.item() if hasattr(value, "item") else value), width)


def _share(value: float) -> str:
    """A share of rows as a percent: one decimal, two below 0.1% (never a misleading 0.0%)."""
    if 0 < abs(value) < 0.001:
        return f"{value:.2%}"
    return f"{value:.1%}"


def _number(value: float) -> str:
    """A value read from the data: whole numbers with thousands separators, else 4 digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def _score(value: float) -> str:
    return f"{value:.3f}"


# -- severities --------------------------------------------------------------------------------
def parse_severity_overrides(
    entries: Sequence[str],
) -> tuple[dict[AnomalyKind, Severity], dict[str, dict[AnomalyKind, Severity]]]:
    """``[COLUMN:]KIND=LEVEL`` entries -> (global overrides, per-column overrides).

    The entries were checked by the ``severity`` setting. A column name may hold ':' and '=':
    LEVEL is what follows the last '=', KIND what follows the last ':' before it.
    """
    overall: dict[AnomalyKind, Severity] = {}
    per_column: dict[str, dict[AnomalyKind, Severity]] = {}
    for entry in checked("severity", list(entries)):
        head, _, level = entry.rpartition("=")
        column, sep, kind = head.rpartition(":")
        if sep:
            per_column.setdefault(column, {})[kind] = level
        else:
            overall[kind] = level
    return overall, per_column


class _Severities:
    """The severity of an anomaly kind for a column, by the precedence in the module docstring."""

    def __init__(self, rules: ValidationRules, entries: Sequence[str]):
        self.rules = rules
        self.overall, self.per_column = parse_severity_overrides(entries)

    def __call__(self, kind: AnomalyKind, column: str = "") -> Severity:
        rule = self.rules.columns.get(column) if column else None
        for layer in (rule.severity if rule else {}, self.per_column.get(column, {}) if column
                      else {}, self.overall, self.rules.severity, DEFAULT_SEVERITY):
            if kind in layer:
                return layer[kind]
        return "warning"  # unreachable: DEFAULT_SEVERITY names every kind


def with_excluded(rules: ValidationRules, columns: Iterable[str]) -> ValidationRules:
    """``rules`` with ``columns`` excluded (the ``exclude_columns`` setting, folded in)."""
    merged = dict(rules.columns)
    for name in columns:
        rule = merged.get(name, ColumnRule())
        merged[name] = rule.model_copy(update={"exclude": True})
    return rules.model_copy(update={"columns": merged})


# -- types -------------------------------------------------------------------------------------
def type_family(type_name: str) -> str:
    """The family of an Arrow type (``int64``) or pandas dtype (``object``): number, string, ...

    Families: number, string, boolean, datetime, duration, null, or else the name itself.

    Widening within a family (int64 to double: a gap in a CSV column) is not a type change.
    """
    name = type_name.strip().lower()
    if name.startswith("dictionary<values="):  # Arrow dictionary: its values' type
        name = name.removeprefix("dictionary<values=").split(",", 1)[0]
    if name.startswith(("int", "uint", "float", "double", "halffloat", "decimal")):
        return "number"
    if name in {"bool", "boolean"}:
        return "boolean"
    if name.startswith(("timestamp", "date", "time", "datetime64")):
        return "datetime"
    if name.startswith(("duration", "timedelta")):
        return "duration"
    if name in {"string", "large_string", "string_view", "utf8", "large_utf8", "str", "object"}:
        return "string"
    return name  # null (every value missing) and category (pandas) match any family


_ANY_FAMILY = frozenset({"null", "category"})  # types that say nothing of the values'
# the families a column whose rule expects ColumnRule.type may have
_EXPECTED_FAMILIES: dict[str, frozenset[str]] = {
    "numeric": frozenset({"number"}),
    "categorical": frozenset({"string", "boolean", "number"}),
    "boolean": frozenset({"boolean"}),
    "text": frozenset({"string"}),
    "datetime": frozenset({"datetime"}),
}


# -- the tables compared -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Column:
    """What is known of one column of a table: from its statistics, its schema entry, or both."""

    name: str
    type: str
    kind: str | None  # the schema's kind (numeric, categorical, text, ...)
    role: str | None
    missing_rate: float | None
    low: float | None
    high: float | None
    stats: ColumnStatistics | None
    info: ColumnInfo | None


def _columns(stats: TableStatistics | None, schema: TableSchema | None) -> dict[str, _Column]:
    """Every column of a table, in its order, from whatever describes it."""
    infos = {c.name: c for c in schema.columns} if schema else {}
    by_stats = {c.name: c for c in stats.columns} if stats else {}
    names = list(by_stats) + [n for n in infos if n not in by_stats]
    result = {}
    for name in names:
        s, info = by_stats.get(name), infos.get(name)
        if s is not None:
            rows = s.count + s.missing
            rate = s.missing / rows if rows else None
            low, high = s.min, s.max
        else:
            assert info is not None and schema is not None
            rate = info.missing / schema.rows if schema.rows else None
            low, high = (_float(info.stats.get("min")), _float(info.stats.get("max"))) if (
                info.kind == "numeric") else (None, None)
        result[name] = _Column(
            name=name, type=s.type if s is not None else info.dtype if info else "",
            kind=info.kind if info else None, role=info.role if info else None,
            missing_rate=rate, low=low, high=high, stats=s, info=info)
    return result


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _is_numeric(stats: ColumnStatistics | None) -> bool:
    return stats is not None and stats.kind == "numeric" and bool(stats.sketch)


def _is_categorical(stats: ColumnStatistics | None) -> bool:
    return (stats is not None and stats.kind in ("categorical", "boolean", "text")
            and stats.categories is not None)


def _is_summarised(stats: ColumnStatistics | None) -> bool:
    """Categories with too many distinct values to count each: only the most frequent are known."""
    return (stats is not None and stats.kind in ("categorical", "text") and stats.categories is None
            and bool(stats.top) and stats.count > 0)


def _share_bounds(stats: ColumnStatistics) -> tuple[dict[str, tuple[float, float]], float]:
    """Each listed value's share of the values as (low, high), and the most an unlisted one has.

    Exact with every value's count. Past :data:`~keel.statistics.MAX_TRACKED` distinct values
    only ``top`` is known, from a Misra-Gries summary whose counts are at most
    ``count / (MAX_TRACKED + 1)`` below the truth; a value not in ``top`` has at most the last
    one's count plus that.
    """
    if stats.categories is not None:
        total = sum(stats.categories.values()) or 1
        return {v: (n / total, n / total) for v, n in stats.categories.items()}, 0.0
    slack = 1 / (MAX_TRACKED + 1)
    shares = {f.value: (f.count / stats.count, min(f.count / stats.count + slack, 1.0))
              for f in stats.top}
    return shares, min(stats.top[-1].count / stats.count + slack, 1.0)


def _linf_at_least(reference: ColumnStatistics, current: ColumnStatistics) -> float:
    """The least L-infinity distance the two columns' known shares allow (no false alarm)."""
    before, before_rest = _share_bounds(reference)
    now, now_rest = _share_bounds(current)
    gap = 0.0
    for value in set(before) | set(now):
        low_a, high_a = before.get(value, (0.0, before_rest))
        low_b, high_b = now.get(value, (0.0, now_rest))
        gap = max(gap, low_a - high_b, low_b - high_a)
    return gap


# -- drift -------------------------------------------------------------------------------------
def _sketch(stats: ColumnStatistics) -> Any:
    return kll_doubles_sketch.deserialize(base64.b64decode(stats.sketch))


def _bin_shares(sketch: Any, edges: list[float]) -> np.ndarray:
    """Shares of values in (-inf, e0), [e0, e1), ..., [e_last, inf), from a sketch's CDF."""
    cdf = np.asarray(sketch.get_cdf(edges), dtype=float)
    return np.diff(np.concatenate([[0.0], cdf]))


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    p = np.maximum(expected, SMOOTHING)
    q = np.maximum(actual, SMOOTHING)
    return float(np.sum((q - p) * np.log(q / p)))


def _js(expected: np.ndarray, actual: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2: 0 for equal distributions, 1 for disjoint ones."""
    p = expected / expected.sum()
    q = actual / actual.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        present = a > 0
        return float(np.sum(a[present] * np.log2(a[present] / m[present])))

    return math.sqrt(min(max((kl(p) + kl(q)) / 2, 0.0), 1.0))


def _distance(expected: np.ndarray, actual: np.ndarray, method: DriftMethod) -> float:
    if method == "psi":
        score = _psi(expected, actual)
    elif method == "js":
        score = _js(expected, actual)
    else:
        score = float(np.max(np.abs(actual - expected)))
    return max(score, 0.0) if math.isfinite(score) else 0.0


def drift_score(
    reference: ColumnStatistics, current: ColumnStatistics, method: DriftMethod
) -> float | None:
    """How far ``current``'s distribution moved from ``reference``'s; None when not comparable.

    Numbers (both with a sketch): the shares of values in the reference's decile bins, each side
    from its own sketch. Categories and booleans (both with every value's count): the shares of
    each value over the union of values. Missing values are left out (``missing_rate`` checks
    them). ``psi``, ``js`` and ``linf`` work on both; validate uses psi or js for numbers and
    linf or js for categories by default. A category column with more distinct values than
    statistics count one by one has only its most frequent values' (approximate) counts: ``linf``
    is then the least distance they prove, and the other methods give None.
    """
    if reference.count == 0 or current.count == 0:
        return None
    if _is_numeric(reference) and _is_numeric(current):
        before, now = _sketch(reference), _sketch(current)
        if before.is_empty() or now.is_empty():
            return None
        edges = sorted({float(e) for e in before.get_quantiles(DECILES)})
        return _distance(_bin_shares(before, edges), _bin_shares(now, edges), method)
    if (method == "linf" and (_is_summarised(reference) or _is_summarised(current))
            and (_is_categorical(reference) or _is_summarised(reference))
            and (_is_categorical(current) or _is_summarised(current))
            and "boolean" not in {reference.kind, current.kind}):
        # past MAX_TRACKED distinct values on a side: the least distance its top values prove
        return _linf_at_least(reference, current)
    if _is_categorical(reference) and _is_categorical(current):
        assert reference.categories is not None and current.categories is not None
        values = sorted(set(reference.categories) | set(current.categories))
        before_counts = np.array([reference.categories.get(v, 0) for v in values], dtype=float)
        now_counts = np.array([current.categories.get(v, 0) for v in values], dtype=float)
        if before_counts.sum() == 0 or now_counts.sum() == 0:
            return None
        return _distance(before_counts / before_counts.sum(), now_counts / now_counts.sum(),
                         method)
    return None


def _drift_setting(
    rules: ValidationRules, name: str, stats: ColumnStatistics
) -> tuple[DriftMethod, float]:
    rule = rules.columns.get(name)
    method = (rule.drift_method if rule and rule.drift_method else
              rules.numeric_drift if stats.kind == "numeric" else rules.categorical_drift)
    threshold = (rule.drift_threshold if rule and rule.drift_threshold else
                 rules.drift_threshold.get(method, DEFAULT_DRIFT_THRESHOLD[method]))
    return method, threshold


# -- target leakage ----------------------------------------------------------------------------
def _feature_codes(series: pd.Series, fit: np.ndarray) -> np.ndarray:
    """Each row's bin: 0 for a missing value, then quantile bins (numbers) or values (others).

    Numbers with few distinct values are taken value by value; quantile edges come from the fit
    rows only, so the other half is binned as new data would be.
    """
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if numeric:
        values = series.to_numpy(dtype=float, na_value=np.nan)
        present = np.isfinite(values)
        fitted = values[fit & present]
        bins = int(min(max(len(fitted) // 20, LEAKAGE_BINS[0]), LEAKAGE_BINS[1]))
        if len(fitted) and len(np.unique(fitted)) > bins:
            inner = np.linspace(0, 1, bins + 1)[1:-1]
            edges = np.unique(np.quantile(fitted, inner))
            codes = np.searchsorted(edges, np.where(present, values, 0.0), side="right") + 1
            return np.where(present, codes, 0)
        series = pd.Series(np.where(present, values, np.nan))
    codes, _ = pd.factorize(series, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64) + 1


def _balanced_accuracy(codes: np.ndarray, labels: np.ndarray, classes: int,
                       fit: np.ndarray) -> float:
    """Per-bin majority class fitted on ``fit`` rows, balanced accuracy on the others.

    Class numbers go by frequency (0 the most frequent), so a tie picks the commoner class and a
    bin the fit rows never saw predicts the majority class.
    """
    bins = int(codes.max()) + 1
    table = np.bincount(codes[fit] * classes + labels[fit], minlength=bins * classes)
    table = table.reshape(bins, classes)
    predicted = np.where(table.sum(axis=1) > 0, table.argmax(axis=1), 0)[codes[~fit]]
    truth = labels[~fit]
    right = np.bincount(truth[predicted == truth], minlength=classes)
    seen = np.bincount(truth, minlength=classes)
    return float(np.mean(right[seen > 0] / seen[seen > 0]))


def _r2(codes: np.ndarray, target: np.ndarray, fit: np.ndarray) -> float:
    """Per-bin mean fitted on ``fit`` rows, R² on the others (the fit mean for unseen bins)."""
    bins = int(codes.max()) + 1
    sums = np.bincount(codes[fit], weights=target[fit], minlength=bins)
    counts = np.bincount(codes[fit], minlength=bins)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), target[fit].mean())
    truth = target[~fit]
    total = float(np.sum((truth - truth.mean()) ** 2))
    if total == 0:
        return 0.0
    return 1.0 - float(np.sum((truth - means[codes[~fit]]) ** 2)) / total


def leakage_scores(
    frame: pd.DataFrame, target: str, task: Task, features: Sequence[str], *, seed: int = 0,
    max_rows: int = 200_000,
) -> list[LeakageScore]:
    """How well each feature alone predicts the target on rows it was not fitted on; best first.

    Rows with a target (at most ``max_rows``, a seeded sample) are split in two halves by a
    seeded permutation. Each feature is cut into bins on the first half (numbers: up to 100
    quantile bins, one per 20 rows; other columns: their values; missing values: a bin of their
    own) and predicts each bin's majority class (classification, scored by balanced accuracy) or
    mean (regression, scored by R²) for the second half; values the first half never saw predict
    the majority or mean. An identifier therefore scores like a constant, and a column computed
    from the target scores close to 1.

    Regression is scored on the target's ranks (``rank_r2``): on raw values a few extreme rows
    dominate R², and a copy of a skewed target (incomes) would score 0.8 and go unnoticed.
    """
    labels_in = frame[target]
    usable = np.flatnonzero(labels_in.notna().to_numpy())
    rng = np.random.default_rng(seed)
    if len(usable) > max_rows:
        usable = np.sort(rng.choice(usable, size=max_rows, replace=False))
    if len(usable) < MIN_LEAKAGE_ROWS:
        return []
    fit = np.zeros(len(usable), dtype=bool)
    fit[rng.permutation(len(usable))[: len(usable) // 2]] = True
    y = labels_in.iloc[usable]
    if task == "classification":
        order = y.value_counts().index  # most frequent first
        if len(order) < 2:
            return []
        labels = pd.Categorical(y, categories=order).codes.astype(np.int64)
        metric = "balanced_accuracy"
    else:
        ranks = y.astype(float).rank(pct=True).to_numpy(dtype=float)
        if np.nanmax(ranks) == np.nanmin(ranks):
            return []
        metric = "rank_r2"
    scores = []
    for name in features:
        if name == target or name not in frame.columns:
            continue
        codes = _feature_codes(frame[name].iloc[usable].reset_index(drop=True), fit)
        if task == "classification":
            value = _balanced_accuracy(codes, labels, len(order), fit)
        else:
            value = _r2(codes, ranks, fit)
        scores.append(LeakageScore(column=name, metric=metric, score=round(value, 6)))
    return sorted(scores, key=lambda s: (-s.score, s.column))


# -- the checks --------------------------------------------------------------------------------
class _Findings:
    """The anomalies of one run, each given its severity as it is found."""

    def __init__(self, severities: _Severities):
        self.severity = severities
        self.anomalies: list[Anomaly] = []

    def add(self, kind: AnomalyKind, column: str, detail: str, *, value: float | None = None,
            reference: float | None = None, threshold: float | None = None) -> None:
        head = f"{_shown(column)} {kind}" if column else kind
        self.anomalies.append(Anomaly(
            kind=kind, column=column, severity=self.severity(kind, column),
            message=f"{head}: {detail}", value=value, reference=reference,
            threshold=threshold))

    def ordered(self) -> list[Anomaly]:
        """Errors first, then warnings, then ignored ones; found order within each."""
        return sorted(self.anomalies, key=lambda a: _SEVERITY_RANK[a.severity])


def _out_of_range(stats: ColumnStatistics, low: float | None,
                  high: float | None) -> tuple[float, float]:
    """Shares of values below ``low`` and above ``high``, from the sketch (exact at the ends)."""
    below = above = 0.0
    if stats.count == 0:
        return below, above
    sketch = _sketch(stats) if stats.sketch else None
    at_least = 1 / stats.count  # a min or max beyond the bound is at least one value
    if low is not None and stats.min is not None and stats.min < low:
        estimate = sketch.get_rank(low, inclusive=False) if sketch is not None else 0.0
        below = max(float(estimate), at_least)
    if high is not None and stats.max is not None and stats.max > high:
        estimate = 1 - sketch.get_rank(high, inclusive=True) if sketch is not None else 0.0
        above = max(float(estimate), at_least)
    return below, above


def _bound(value: float | None, infinite: str) -> str:
    """A range's end: no thousands separator (the range's comma separates), 4 digits at most."""
    if value is None:
        return infinite
    if float(value).is_integer() and abs(value) < 1e9 or 1000 <= abs(value) < 1e9:
        return f"{value:.0f}"
    return f"{value:.4g}"


def _range_text(low: float | None, high: float | None) -> str:
    return f"[{_bound(low, '-inf')}, {_bound(high, 'inf')}]"


def _check_range(found: _Findings, column: _Column, reference: _Column | None,
                 rule: ColumnRule | None, rules: ValidationRules) -> None:
    stats = column.stats
    if not _is_numeric(stats) or column.kind not in (None, "numeric"):
        return
    assert stats is not None
    low = rule.min if rule and rule.min is not None else reference.low if reference else None
    high = rule.max if rule and rule.max is not None else reference.high if reference else None
    if low is None and high is None:
        return
    below, above = _out_of_range(stats, low, high)
    share = below + above
    if share > rules.out_of_range_share:
        source = "expected" if rule and (rule.min is not None or rule.max is not None) else (
            "reference")
        where = "outside" if below and above else "below" if below else "above"
        found.add("out_of_range", column.name,
                  f"{_share(share)} {where} the {source} range "
                  f"{_range_text(low, high)} (threshold {_share(rules.out_of_range_share)})",
                  value=share, threshold=rules.out_of_range_share)


def _check_categories(found: _Findings, column: _Column, reference: _Column,
                      rules: ValidationRules) -> None:
    """Values the reference never had, when the reference counted each of its values.

    A column past MAX_TRACKED distinct values now (often because new values flooded in) has only
    its most frequent values counted, each at least as often as listed: the share is then a
    lower bound ("at least"), which also counts one row for each new value beyond those listed
    when the number of distinct values is exact.
    """
    stats, before = column.stats, reference.stats
    if not (_is_categorical(stats) or _is_summarised(stats)) or not _is_categorical(
            before) or column.kind not in (None, "categorical"):
        return
    assert stats is not None and before is not None and before.categories is not None
    if stats.count == 0:
        return
    if stats.categories is not None:
        new = {v: n for v, n in stats.categories.items() if v not in before.categories and n > 0}
        rows, values, bound = sum(new.values()), len(new), ""
    else:
        new = {f.value: f.count for f in stats.top if f.value not in before.categories}
        unlisted = max(stats.distinct - len(before.categories) - len(new), 0) if (
            stats.distinct_exact) else 0
        rows, values, bound = sum(new.values()) + unlisted, len(new) + unlisted, "at least "
    if not rows:
        return
    share = rows / stats.count
    if share > rules.new_category_share:
        examples = sorted(new, key=lambda v: (-new[v], v))[:MAX_EXAMPLES]
        named = ", ".join(_shown(v, 20) for v in examples)
        more = f" and {values - len(examples):,} more" if values > len(examples) else ""
        which = f"{named}{more}" if named else f"{values:,} values the reference never had"
        found.add("new_category", column.name,
                  f"{bound}{_share(share)} ({rows:,} of {stats.count:,} values) are new: "
                  f"{which} (threshold {_share(rules.new_category_share)})",
                  value=share, threshold=rules.new_category_share)


def _check_types(found: _Findings, column: _Column, reference: _Column | None,
                 rule: ColumnRule | None, target: str) -> None:
    family = type_family(column.type)
    if rule and rule.type and family not in _ANY_FAMILY | _EXPECTED_FAMILIES[rule.type]:
        found.add("type_change", column.name, f"expected {rule.type}, got {column.type}")
        return
    if reference is None:
        return
    before = type_family(reference.type)
    if not _ANY_FAMILY & {family, before} and family != before:
        found.add("type_change", column.name,
                  f"{reference.type} in the reference, {column.type} now")
        return
    kinds = (reference.kind, column.kind)
    if (None not in kinds and kinds[0] != kinds[1] and column.name != target
            and not _NO_REFERENCE_KINDS & set(kinds)):
        reason = f" ({_clip(column.info.reason, 60)})" if column.info and column.info.reason else ""
        found.add("kind_change", column.name,
                  f"kind {reference.kind} in the reference, {column.kind} now{reason}")


def _check_missing_rate(found: _Findings, column: _Column, reference: _Column,
                        rules: ValidationRules) -> None:
    now, before = column.missing_rate, reference.missing_rate
    if now is None or before is None:
        return
    if now - before > rules.missing_rate_jump:
        found.add("missing_rate", column.name,
                  f"{_share(now)} missing, {_share(before)} in the reference (a rise of "
                  f"{_share(now - before)}; threshold {_share(rules.missing_rate_jump)})",
                  value=now, reference=before, threshold=rules.missing_rate_jump)


def _is_constant(column: _Column) -> bool:
    stats = column.stats
    if stats is not None and stats.count > 0 and stats.distinct_exact:
        return stats.distinct == 1
    return column.kind == "constant"


def _check_constant(found: _Findings, column: _Column, reference: _Column | None,
                    target: str) -> None:
    """A column with a single value: on a first run, or when the reference had more."""
    if column.name == target or not _is_constant(column):
        return
    if reference is not None and (_is_constant(reference) or reference.kind == "empty"):
        return
    stats = column.stats
    value = ""
    if stats is not None and stats.top:
        value = f" ({_shown(stats.top[0].value, 24)})"
    elif stats is not None and stats.min is not None and stats.min == stats.max:
        value = f" ({_number(stats.min)})"
    found.add("constant", column.name,
              f"a single value{value} in every row that has one; not usable as a feature")


def _check_single_class(found: _Findings, schema: TableSchema) -> None:
    if schema.task != "classification" or schema.classes is None or len(schema.classes) != 1:
        return
    found.add("single_class", schema.target,
              f"every row has class {_shown(schema.classes[0], 24)}; a classifier needs two",
              value=1)


def _check_row_count(found: _Findings, rows: int, reference_rows: int | None,
                     rules: ValidationRules) -> None:
    if not reference_rows:
        return
    ratio = rows / reference_rows
    if ratio > rules.row_count_ratio or ratio < 1 / rules.row_count_ratio:
        found.add("row_count", "",
                  f"{rows:,} rows, {ratio:.2g}x the reference's {reference_rows:,} (allowed: "
                  f"{rules.row_count_ratio:g}x either way)",
                  value=rows, reference=reference_rows, threshold=rules.row_count_ratio)


def check_data(
    current: TableStatistics,
    schema: TableSchema,
    *,
    reference: TableStatistics | None,
    reference_schema: TableSchema | None,
    production_features: Sequence[str],
    reference_version: int | None,
    reference_note: str,
    rules: ValidationRules,
    severity: Sequence[str] = (),
    leakage: list[LeakageScore] | None = None,
) -> ValidationResult:
    """Compare this run's statistics and schema with the reference; every anomaly and drift.

    ``reference`` and ``reference_schema`` are those of the production version (None on a first
    run; statistics None alone for a version stored before statistics were). ``severity`` is the
    ``[COLUMN:]KIND=LEVEL`` overrides, ``leakage`` what :func:`leakage_scores` found (None: not
    computed). Columns a rule excludes are not checked.
    """
    found = _Findings(_Severities(rules, severity))
    excluded = {name for name, rule in rules.columns.items() if rule.exclude}
    now = {n: c for n, c in _columns(current, schema).items() if n not in excluded}
    compared = reference is not None or reference_schema is not None
    before = {n: c for n, c in _columns(reference, reference_schema).items()
              if n not in excluded}
    reference_rows = (reference.rows if reference is not None else
                      reference_schema.rows_in if reference_schema is not None else None)

    _check_row_count(found, current.rows, reference_rows, rules)
    if schema.target not in excluded:
        _check_single_class(found, schema)
    for name, column in now.items():
        old = before.get(name) if compared else None
        rule = rules.columns.get(name)
        if compared and old is None:
            found.add("new_column", name, f"not in the reference ({column.type})")
        _check_types(found, column, old, rule, schema.target)
        _check_constant(found, column, old, schema.target)
        _check_range(found, column, old, rule, rules)
        if old is not None:
            _check_categories(found, column, old, rules)
            _check_missing_rate(found, column, old, rules)
    production = set(production_features)
    version = f"production version {reference_version}" if reference_version is not None else (
        "the production model")
    for name in list(before) + [n for n in production_features if n not in before]:
        if name in now or name in excluded:
            continue
        if name in production:
            found.add("production_feature_missing", name,
                      f"not in this table; {version} uses it")
        else:
            found.add("missing_column", name, "in the reference, not in this table")

    drift = _drift(now, before, reference is not None, rules)
    for d in drift:
        if d.drifted:
            found.add("drift", d.column,
                      f"{d.method} {_score(d.score)} above threshold {_score(d.threshold)}",
                      value=d.score, threshold=d.threshold)
    scores = sorted((s for s in leakage or [] if s.column not in excluded),
                    key=lambda s: (-s.score, s.column))
    for s in scores:
        if s.score >= rules.leakage_threshold and s.column != schema.target:
            found.add("target_leakage", s.column,
                      f"possible target leakage, it alone scores {s.metric} {_score(s.score)} "
                      f"(threshold {_score(rules.leakage_threshold)})",
                      value=s.score, threshold=rules.leakage_threshold)
    return ValidationResult(
        reference_version=reference_version, reference_rows=reference_rows,
        reference_note=reference_note, anomalies=found.ordered(), drift=drift, leakage=scores)


def _drift(now: dict[str, _Column], before: dict[str, _Column], has_statistics: bool,
           rules: ValidationRules) -> list[Drift]:
    """Drift of every feature present on both sides with statistics; worst (score/bar) first."""
    if not has_statistics:
        return []
    drift = []
    for name, column in now.items():
        old = before.get(name)
        if column.role != "feature" or old is None or old.stats is None or column.stats is None:
            continue
        method, threshold = _drift_setting(rules, name, column.stats)
        score = drift_score(old.stats, column.stats, method)
        if score is not None:
            drift.append(Drift(column=name, method=method, score=round(score, 6),
                               threshold=threshold))
    return sorted(drift, key=lambda d: (-d.score / d.threshold, d.column))


# -- what the run prints -----------------------------------------------------------------------
SUMMARY_INDENT = 8  # where a summary line's message starts: its continuation lines too


def _wrapped(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters, the later ones indented.

    The continuation lines start under the message (after the severity); nothing is cut, so
    every number stays visible.
    """
    return textwrap.wrap(text, width=max(width, SUMMARY_INDENT + 12),
                         subsequent_indent=" " * SUMMARY_INDENT, break_on_hyphens=False) or [""]


def summary_lines(result: ValidationResult, width: int = 100,
                  max_lines: int | None = None) -> list[str]:
    """The CLI's lines: every error and warning (drift above threshold included).

    Each anomaly starts a line with its severity and names the column and its numbers; a long
    one goes on over the next lines, indented, rather than being cut. Ignored anomalies are not
    shown. With ``max_lines``, the anomalies that do not fit whole are counted on a last line.
    With nothing to show, one line (or two) says what was compared.
    """
    shown = [a for a in result.anomalies if a.severity != "ignore"]
    if shown:
        lines: list[str] = []
        for index, anomaly in enumerate(shown):
            block = _wrapped(f"{anomaly.severity:<7} {anomaly.message}", width)
            rest = len(shown) - index - 1
            room = None if max_lines is None else max_lines - (1 if rest else 0)
            if room is not None and len(lines) + len(block) > room:
                lines.append(f"... and {len(shown) - index} more (the validation report lists "
                             "them all)")
                break
            lines += block
        return lines
    if result.drift:
        worst = result.drift[0]
        return _wrapped(f"no anomalies; {len(result.drift)} features compared, largest drift "
                        f"{_shown(worst.column)} {worst.method} {_score(worst.score)} "
                        f"(threshold {_score(worst.threshold)})", width)
    return ["no anomalies"]


def error_message(result: ValidationResult) -> str:
    """The one line of the DataValidationError that stops a run on blocking anomalies.

    A few anomalies (each clipped), then how many more, then how to downgrade them: the line
    fits the CLI's error line whatever the data.
    """
    errors = result.errors
    kind = errors[0].kind if errors else "KIND"
    flag, rules_flag = SETTINGS["severity"].cli_flag, SETTINGS["validation_rules"].cli_flag
    noun = "anomaly" if len(errors) == 1 else "anomalies"
    head = f"{len(errors)} blocking data {noun}: "
    advice = f"Fix the data, or downgrade with {flag} [COLUMN:]{kind}=warning or {rules_flag}."
    width = ERROR_WIDTH - len(head) - len(advice) - 2
    each = width if len(errors) == 1 else max(width // 2 - 2, 40)  # two named at least
    found = _listing([_clip(a.message, each) for a in errors], width)
    return f"{head}{found}{' ' if found.endswith('...') else '. '}{advice}"


def _listing(items: Sequence[str], width: int) -> str:
    """The first items in about ``width`` characters, then '... and N more'."""
    parts: list[str] = []
    used = 0
    for index, text in enumerate(items[:MAX_SHOWN]):
        rest = len(items) - index - 1
        tail = len(f"; ... and {rest} more") if rest else 0
        if parts and used + 2 + len(text) + tail > width:
            break
        parts.append(text)
        used += len(text) + (2 if len(parts) > 1 else 0)
    more = len(items) - len(parts)
    return "; ".join(parts) + (f"; ... and {more} more" if more else "")
