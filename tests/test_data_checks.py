"""Unit tests of keel.data_checks: anomalies, drift, leakage, severities and what is printed.

Statistics are made here from pandas Series (as keel.statistics makes them from the snapshot:
moments, quantiles, a KLL sketch, every category's count), so these tests do not depend on it.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from datasketches import kll_doubles_sketch

from keel.contracts import (
    Anomaly,
    ColumnInfo,
    ColumnRule,
    ColumnStatistics,
    Frequency,
    LeakageScore,
    TableSchema,
    TableStatistics,
    ValidationResult,
    ValidationRules,
)
from keel.data_checks import (
    DEFAULT_DRIFT_THRESHOLD,
    DEFAULT_SEVERITY,
    check_data,
    drift_score,
    error_message,
    leakage_scores,
    parse_severity_overrides,
    summary_lines,
    type_family,
    with_excluded,
)
from keel.errors import ParameterError

ROWS = 5000
REGIONS = ["north", "south", "east", "west"]


# -- factories ---------------------------------------------------------------------------------
def column_stats(name: str, series: pd.Series) -> ColumnStatistics:
    """The statistics keel.statistics writes for one column, made from a pandas Series."""
    present = series.dropna()
    arrow_type = str(pa.array(series, from_pandas=True).type)
    common: dict[str, Any] = dict(name=name, type=arrow_type, count=len(present),
                                  missing=int(series.isna().sum()), distinct=int(present.nunique()))
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = np.array(present.to_numpy(dtype=float), dtype=np.float64)  # writable: nanobind
        sketch = kll_doubles_sketch(200)
        if len(values):
            sketch.update(values)
        described = {}
        if len(values):
            described = dict(min=float(values.min()), max=float(values.max()),
                             mean=float(values.mean()), std=float(values.std()),
                             quantiles={str(q): float(np.quantile(values, q))
                                        for q in (0.25, 0.5, 0.75)})
        return ColumnStatistics(kind="numeric", **common, **described,
                                sketch=base64.b64encode(sketch.serialize()).decode())
    if pd.api.types.is_bool_dtype(series):
        counts = {("true" if k else "false"): int(v) for k, v in present.value_counts().items()}
        kind = "boolean"
    else:
        counts = {str(k): int(v) for k, v in present.value_counts().items()}
        kind = "categorical"
    top = [Frequency(value=k, count=v) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]
    return ColumnStatistics(kind=kind, **common, top=top[:5],
                            categories=counts if len(counts) <= 1000 else None)


def table_stats(frame: pd.DataFrame) -> TableStatistics:
    return TableStatistics(rows=len(frame),
                           columns=[column_stats(str(c), frame[c]) for c in frame.columns])


def schema_of(frame: pd.DataFrame, target: str = "status", kinds: dict[str, str] | None = None,
              classes: list[Any] | None = None) -> TableSchema:
    """A schema document as validate infers it (simplified: numbers numeric, others categorical)."""
    kinds = kinds or {}
    columns = []
    for name in frame.columns:
        series = frame[name]
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        kind = kinds.get(name) or ("numeric" if numeric else "categorical")
        if name != target and series.nunique() == 1:
            kind = "constant"
        role = "target" if name == target else (
            "feature" if kind in ("numeric", "categorical") else "excluded")
        stats: dict[str, Any] = {}
        if kind == "numeric":
            stats = {"min": float(series.min()), "max": float(series.max())}
        columns.append(ColumnInfo(name=name, dtype=str(series.dtype), kind=kind, role=role,
                                  missing=int(series.isna().sum()),
                                  unique=int(series.nunique()),
                                  reason="" if role != "excluded" else f"it is {kind}",
                                  stats=stats))
    if classes is None:
        classes = sorted(frame[target].dropna().unique().tolist(), key=str)
    return TableSchema(
        target=target, task="classification", classes=classes, rows_in=len(frame),
        rows_dropped_missing_target=0, rows=len(frame), infinite_values={},
        numeric_features=[c.name for c in columns if c.role == "feature" and c.kind == "numeric"],
        categorical_features=[c.name for c in columns
                              if c.role == "feature" and c.kind == "categorical"],
        excluded={c.name: c.reason for c in columns if c.role == "excluded"},
        columns=columns, schema_hash="0" * 64)


def customers(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "income": rng.lognormal(10, 0.5, rows),
        "age": rng.integers(18, 80, rows),
        "region": rng.choice(REGIONS, rows, p=[0.4, 0.3, 0.2, 0.1]),
        "member": rng.random(rows) < 0.3,
        "status": rng.choice(["good", "bad"], rows, p=[0.7, 0.3]),
    })


def check(current: pd.DataFrame, reference: pd.DataFrame | None = None, *,
          rules: ValidationRules | None = None, severity: tuple[str, ...] = (),
          production_features: tuple[str, ...] = (), statistics: bool = True,
          leakage: list[LeakageScore] | None = None,
          kinds: dict[str, str] | None = None) -> ValidationResult:
    """check_data of ``current`` against ``reference`` (None: a first run)."""
    return check_data(
        table_stats(current), schema_of(current, kinds=kinds),
        reference=table_stats(reference) if reference is not None and statistics else None,
        reference_schema=schema_of(reference) if reference is not None else None,
        production_features=production_features,
        reference_version=None if reference is None else 3,
        reference_note="production version 3" if reference is not None else "first run",
        rules=rules or ValidationRules(), severity=severity, leakage=leakage)


def kinds_found(result: ValidationResult) -> list[tuple[str, str, str]]:
    return [(a.kind, a.column, a.severity) for a in result.anomalies]


def only(result: ValidationResult, kind: str, column: str = "") -> Any:
    found = [a for a in result.anomalies if a.kind == kind and (not column or a.column == column)]
    assert len(found) == 1, kinds_found(result)
    return found[0]


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return customers(seed=0)


# -- defaults ----------------------------------------------------------------------------------
def test_every_kind_has_a_default_severity_and_every_method_a_threshold():
    from typing import get_args

    from keel.contracts import AnomalyKind, DriftMethod

    assert set(DEFAULT_SEVERITY) == set(get_args(AnomalyKind))
    assert set(DEFAULT_DRIFT_THRESHOLD) == set(get_args(DriftMethod))
    assert DEFAULT_SEVERITY["production_feature_missing"] == "error"
    assert DEFAULT_SEVERITY["type_change"] == "error"
    assert DEFAULT_SEVERITY["drift"] == "warning"
    assert DEFAULT_SEVERITY["target_leakage"] == "warning"


# -- no change ---------------------------------------------------------------------------------
def test_a_resample_of_the_same_distribution_finds_nothing(reference):
    for seed in (1, 2, 3):
        result = check(customers(seed=seed), reference)
        assert result.anomalies == [], kinds_found(result)
        assert {d.column for d in result.drift} == {"income", "age", "region", "member"}
        for d in result.drift:
            assert d.score < d.threshold / 4, d
        assert result.reference_version == 3 and result.reference_rows == ROWS
    assert summary_lines(result)[0].startswith("no anomalies; 4 features compared")


# -- drift -------------------------------------------------------------------------------------
def test_a_rescaled_column_drifts_and_leaves_the_range(reference):
    current = customers(seed=1)
    current["income"] *= 1000
    result = check(current, reference)
    worst = result.drift[0]
    assert worst.column == "income" and worst.method == "psi" and worst.score > 5
    drift = only(result, "drift", "income")
    assert drift.severity == "warning" and drift.value == worst.score
    assert f"psi {worst.score:.3f} above threshold 0.200" in drift.message
    out = only(result, "out_of_range", "income")
    assert out.value > 0.95 and out.message == (
        "'income' out_of_range: 100.0% above the reference range "
        f"[{reference['income'].min():.0f}, {reference['income'].max():.0f}] (threshold 1.0%)")
    lines = summary_lines(result)
    assert any("'income' drift: psi" in line for line in lines)
    assert any("'income' out_of_range: 100.0% above" in line for line in lines)


@pytest.mark.parametrize(("shift", "drifted"), [(0.5, True), (0.1, False)])
def test_a_shifted_column_drifts_beyond_half_a_standard_deviation(reference, shift, drifted):
    current = customers(seed=1)
    logs = np.log(current["income"])
    current["income"] = np.exp(logs + shift * 0.5)  # shift standard deviations of log(income)
    result = check(current, reference)
    income = next(d for d in result.drift if d.column == "income")
    assert income.drifted is drifted, income
    assert any(a.kind == "drift" for a in result.anomalies) is drifted


def test_a_new_category_in_a_third_of_the_rows(reference):
    current = customers(seed=1)
    third = np.arange(ROWS) % 3 == 0
    current.loc[third, "region"] = "north-east"
    result = check(current, reference)
    new = only(result, "new_category", "region")
    assert new.severity == "warning" and new.value == pytest.approx(third.mean())
    assert new.message.startswith(
        "'region' new_category: 33.3% (1,667 of 5,000 values) are new: 'north-east'")
    assert "'north-east'" in new.message
    region = next(d for d in result.drift if d.column == "region")
    assert region.method == "linf" and region.score == pytest.approx(third.mean(), abs=0.02)
    assert result.drift[0].column == "region"
    assert only(result, "drift", "region").message == (
        f"'region' drift: linf {region.score:.3f} above threshold 0.100")


@pytest.mark.parametrize(("rows", "found"), [(25, False), (100, True)])
def test_new_categories_count_only_above_their_share(reference, rows, found):
    current = customers(seed=1)
    current.loc[: rows - 1, "region"] = [f"new-{i % 7}" for i in range(rows)]
    result = check(current, reference)
    assert any(a.kind == "new_category" for a in result.anomalies) is found
    if found:
        assert "2.0% (100 of 5,000 values)" in only(result, "new_category").message
        assert "and 4 more" in only(result, "new_category").message


def test_drift_is_sorted_worst_first_with_per_column_methods_and_thresholds(reference):
    current = customers(seed=1)
    current["income"] = current["income"] * 1.3
    current["age"] = current["age"] + 8
    current.loc[current.index % 10 == 0, "region"] = "north"
    rules = ValidationRules(columns={"age": ColumnRule(drift_method="js", drift_threshold=0.05)},
                            drift_threshold={"psi": 0.1})
    result = check(current, reference, rules=rules)
    by_column = {d.column: d for d in result.drift}
    assert by_column["age"].method == "js" and by_column["age"].threshold == 0.05
    assert by_column["income"].threshold == 0.1
    assert by_column["region"].threshold == DEFAULT_DRIFT_THRESHOLD["linf"]
    ratios = [d.score / d.threshold for d in result.drift]
    assert ratios == sorted(ratios, reverse=True)
    drifts = [a.column for a in result.anomalies if a.kind == "drift"]
    assert drifts == [d.column for d in result.drift if d.drifted]


def test_drift_scores_of_each_method(reference):
    now = customers(seed=1)
    before_stats, now_stats = table_stats(reference), table_stats(now)
    income = before_stats.column("income"), now_stats.column("income")
    same = before_stats.column("region")
    assert drift_score(same, same, "linf") == 0 and drift_score(same, same, "psi") == 0
    for method in ("psi", "js", "linf"):
        score = drift_score(*income, method)
        assert score is not None and 0 <= score < DEFAULT_DRIFT_THRESHOLD[method] / 2
    disjoint = column_stats("region", pd.Series(["a", "b"] * 50))
    assert drift_score(same, disjoint, "js") == pytest.approx(1.0)
    assert drift_score(same, disjoint, "linf") == pytest.approx(0.5)
    # not comparable: a number against categories, unknown categories, an empty column
    assert drift_score(income[0], same, "psi") is None
    many = column_stats("region", pd.Series([str(i) for i in range(1500)]))
    summarised = many.model_copy(update={"categories": None})  # past 1,000 values: top only
    assert drift_score(summarised, same, "js") is None
    largest = max(same.categories.values()) / same.count  # at most 1/1500 + 1/1001 in `many`
    assert drift_score(summarised, same, "linf") == pytest.approx(
        largest - 1 / 1500 - 1 / 1001)  # the least distance the top values prove
    empty = column_stats("income", pd.Series([np.nan, np.nan]))
    assert drift_score(income[0], empty, "psi") is None


def test_booleans_drift_by_their_shares(reference):
    current = customers(seed=1)
    current["member"] = np.random.default_rng(5).random(ROWS) < 0.6
    result = check(current, reference)
    member = next(d for d in result.drift if d.column == "member")
    assert member.method == "linf" and member.score == pytest.approx(0.3, abs=0.03)
    assert only(result, "drift", "member").severity == "warning"


# -- columns and types -------------------------------------------------------------------------
def test_a_removed_column_is_a_warning_unless_production_uses_it(reference):
    current = customers(seed=1).drop(columns=["age"])
    result = check(current, reference)
    missing = only(result, "missing_column", "age")
    assert missing.severity == "warning"
    assert missing.message == "'age' missing_column: in the reference, not in this table"
    result = check(current, reference, production_features=("income", "age"))
    blocking = only(result, "production_feature_missing", "age")
    assert blocking.severity == "error" and result.errors == [blocking]
    assert blocking.message == (
        "'age' production_feature_missing: not in this table; production version 3 uses it")
    assert not any(a.kind == "missing_column" for a in result.anomalies)


def test_a_new_column_is_a_warning(reference):
    current = customers(seed=1).assign(score=1.5 + np.arange(ROWS) % 7)
    result = check(current, reference)
    assert kinds_found(result) == [("new_column", "score", "warning")]
    assert "not in the reference (double)" in result.anomalies[0].message


def test_a_number_arriving_as_text_is_a_type_change(reference):
    current = customers(seed=1)
    current["income"] = current["income"].map(lambda v: f"{v:.2f} EUR")
    result = check(current, reference)
    change = only(result, "type_change", "income")
    assert change.severity == "error"
    assert "'income' type_change: double in the reference, " in change.message
    assert not any(d.column == "income" for d in result.drift)  # not comparable


def test_integers_becoming_floats_are_no_type_change(reference):
    current = customers(seed=1)
    current["age"] = current["age"].astype(float)
    current.loc[0, "age"] = np.nan
    assert not any(a.kind == "type_change" for a in check(current, reference).anomalies)


@pytest.mark.parametrize(("arrow", "family"), [
    ("int64", "number"), ("double", "number"), ("decimal128(10, 2)", "number"),
    ("float64", "number"), ("Int64", "number"), ("string", "string"),
    ("large_string", "string"), ("object", "string"), ("str", "string"),
    ("dictionary<values=string, indices=int32, ordered=0>", "string"), ("bool", "boolean"),
    ("timestamp[us, tz=UTC]", "datetime"), ("datetime64[ns]", "datetime"),
    ("date32[day]", "datetime"), ("null", "null"), ("binary", "binary"),
    ("category", "category"),
])
def test_type_families(arrow, family):
    assert type_family(arrow) == family


def test_a_change_of_kind_is_a_kind_change_reported_not_blocking(reference):
    current = customers(seed=1)
    result = check(current, reference, kinds={"region": "text"})
    change = only(result, "kind_change", "region")
    assert change.severity == "warning"
    assert change.message == (
        "'region' kind_change: kind categorical in the reference, text now (it is text)")
    assert not any(a.kind == "type_change" for a in result.anomalies)


def test_an_expected_type_is_checked_even_on_a_first_run():
    current = customers(seed=1)
    rules = ValidationRules(columns={"region": ColumnRule(type="numeric"),
                                     "age": ColumnRule(type="categorical")})
    result = check(current, rules=rules)
    assert kinds_found(result) == [("type_change", "region", "error")]
    assert "expected numeric, got" in result.anomalies[0].message


# -- values ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("share", "found"), [(0.005, False), (0.03, True)])
def test_values_outside_the_reference_range(reference, share, found):
    current = customers(seed=1)
    beyond = int(share * ROWS)
    current.loc[: beyond - 1, "age"] = 200
    result = check(current, reference)
    anomalies = [a for a in result.anomalies if a.kind == "out_of_range"]
    assert bool(anomalies) is found, kinds_found(result)
    if found:
        assert anomalies[0].value == pytest.approx(share, abs=0.01)
        assert re.match(r"'age' out_of_range: \d\.\d% above the reference range "
                        r"\[18, 79\] \(threshold 1\.0%\)$",
                        anomalies[0].message)


def test_an_expected_range_overrides_the_reference_and_applies_on_a_first_run(reference):
    current = customers(seed=1)
    rules = ValidationRules(columns={"age": ColumnRule(min=30)})
    for against in (reference, None):
        out = only(check(current, against, rules=rules), "out_of_range", "age")
        assert "% below the expected range [30, " in out.message
        assert out.value == pytest.approx((current["age"] < 30).mean(), abs=0.02)
    strict = ValidationRules(columns={"age": ColumnRule(max=79)}, out_of_range_share=0)
    assert not any(a.kind == "out_of_range" for a in check(current, rules=strict).anomalies)
    current.loc[0, "age"] = 80  # a single value beyond, with no share allowed
    one = only(check(current, rules=strict), "out_of_range", "age")
    assert 1 / ROWS <= one.value < 0.01  # one value at least; the sketch's estimate


@pytest.mark.parametrize(("share", "found"), [(0.05, False), (0.2, True)])
def test_a_jump_in_the_missing_rate(reference, share, found):
    current = customers(seed=1)
    current.loc[: int(share * ROWS) - 1, "income"] = np.nan
    result = check(current, reference)
    anomalies = [a for a in result.anomalies if a.kind == "missing_rate"]
    assert bool(anomalies) is found
    if found:
        assert anomalies[0].message == (
            "'income' missing_rate: 20.0% missing, 0.0% in the reference (a rise of 20.0%; "
            "threshold 10.0%)")


@pytest.mark.parametrize(("rows", "found"), [(ROWS * 5 // 2, True), (ROWS * 3 // 2, False),
                                             (ROWS // 3, True), (ROWS * 2 // 3, False)])
def test_a_row_count_far_from_the_reference(reference, rows, found):
    result = check(customers(rows=rows, seed=1), reference)
    anomalies = [a for a in result.anomalies if a.kind == "row_count"]
    assert bool(anomalies) is found, kinds_found(result)
    if found:
        assert anomalies[0].column == "" and anomalies[0].message.startswith(
            f"row_count: {rows:,} rows, ")


def test_a_constant_column_and_a_single_class_on_a_first_run():
    current = customers(seed=1).assign(country="FR")
    result = check(current)
    assert kinds_found(result) == [("constant", "country", "warning")]
    assert result.anomalies[0].message == (
        "'country' constant: a single value ('FR') in every row that has one; not usable as a "
        "feature")
    single = check_data(table_stats(current), schema_of(current, classes=["good"]),
                        reference=None, reference_schema=None, production_features=(),
                        reference_version=None, reference_note="first run",
                        rules=ValidationRules())
    assert kinds_found(single)[0] == ("single_class", "status", "error")
    assert "every row has class 'good'" in single.errors[0].message


def test_a_constant_column_is_reported_when_it_becomes_one(reference):
    always = check(customers(seed=1).assign(country="FR"), reference.assign(country="FR"))
    assert always.anomalies == []
    became = customers(seed=1)
    became["member"] = False
    result = check(became, reference)
    assert ("constant", "member", "warning") in kinds_found(result)
    assert "a single value ('false')" in only(result, "constant").message


def test_a_first_run_checks_only_what_needs_no_reference():
    current = customers(seed=1)
    current.loc[:2000, "income"] = np.nan
    result = check(current)
    assert result.anomalies == [] and result.drift == []
    assert result.reference_version is None and result.reference_rows is None
    assert result.reference_note == "first run"


def test_a_reference_without_statistics_compares_what_its_schema_holds(reference):
    current = customers(seed=1).drop(columns=["region"])
    current["age"] = current["age"].astype(str)
    current.loc[:299, "income"] = 1e9
    result = check(current, reference, statistics=False)
    assert result.drift == []
    assert result.reference_rows == ROWS
    assert set(kinds_found(result)) == {
        ("type_change", "age", "error"), ("out_of_range", "income", "warning"),
        ("missing_column", "region", "warning")}


# -- severities and exclusions -----------------------------------------------------------------
def test_severity_overrides_parse_column_names_with_colons():
    overall, per_column = parse_severity_overrides(
        ["drift=error", "a:b:out_of_range=ignore", "income:drift=warning", "x=y:constant=error"])
    assert overall == {"drift": "error"}
    assert per_column == {"a:b": {"out_of_range": "ignore"}, "income": {"drift": "warning"},
                          "x=y": {"constant": "error"}}
    with pytest.raises(ParameterError, match="KIND=LEVEL"):
        parse_severity_overrides(["drift=fatal"])


@pytest.mark.parametrize(("rules", "severity", "expected"), [
    ({}, (), "warning"),
    ({"severity": {"drift": "error"}}, (), "error"),
    ({"severity": {"drift": "error"}}, ("drift=ignore",), "ignore"),
    ({}, ("drift=ignore", "income:drift=error"), "error"),
    ({"columns": {"income": {"severity": {"drift": "warning"}}}},
     ("drift=error", "income:drift=error"), "warning"),
    ({}, ("age:drift=error",), "warning"),
])
def test_severity_precedence(reference, rules, severity, expected):
    current = customers(seed=1)
    current["income"] *= 2
    result = check(current, reference, rules=ValidationRules.from_dict(rules), severity=severity)
    assert only(result, "drift", "income").severity == expected


def test_ignored_anomalies_are_recorded_but_neither_block_nor_print(reference):
    current = customers(seed=1).drop(columns=["age"])
    result = check(current, reference, production_features=("age",),
                   severity=("age:production_feature_missing=ignore",))
    assert kinds_found(result) == [("production_feature_missing", "age", "ignore")]
    assert result.errors == [] and result.warnings == []
    assert summary_lines(result) == [summary_lines(result)[0]]
    assert "age" not in summary_lines(result)[0]


def test_excluded_columns_are_not_checked(reference):
    current = customers(seed=1).drop(columns=["age"])
    current["income"] = current["income"].astype(str)
    current["region"] = "elsewhere"
    rules = with_excluded(ValidationRules(columns={"income": ColumnRule(min=0)}),
                          ["income", "age"])
    rules = rules.model_copy(update={"columns": {**rules.columns,
                                                 "region": ColumnRule(exclude=True)}})
    assert rules.columns["income"].min == 0 and rules.columns["income"].exclude
    result = check(current, reference, rules=rules, production_features=("age",),
                   leakage=[LeakageScore(column="region", metric="balanced_accuracy", score=1.0)])
    assert result.anomalies == [] and result.leakage == []
    assert {d.column for d in result.drift} == {"member"}


# -- what is printed ---------------------------------------------------------------------------
def drifted_table() -> pd.DataFrame:
    """The issue's example: a column rescaled, a new category in a third of rows, one removed."""
    current = customers(seed=1).drop(columns=["age"])
    current["income"] *= 1000
    current.loc[current.index % 3 == 0, "region"] = "north-east"
    return current


def test_drifted_data_is_warned_by_default_and_each_column_is_named(reference):
    result = check(drifted_table(), reference)
    assert result.errors == []
    lines = summary_lines(result)
    text = "\n".join(lines)
    for expected in ("'income' drift: psi ", "'income' out_of_range: ",
                     "'region' new_category: 33.3% (1,667 of 5,000", "'region' drift: linf 0.3",
                     "'age' missing_column"):
        assert expected in text, text
    assert all(len(line) <= 100 for line in lines)
    starts = [line for line in lines if not line.startswith(" ")]
    assert len(starts) == len(result.warnings)  # one entry per anomaly, each whole
    assert all(line.startswith("warning ") for line in starts)
    assert all(line.startswith(" " * 8) and line[8] != " " for line in lines
               if line not in starts)  # a long one goes on under its message


def test_drifted_data_is_stopped_as_configured(reference):
    result = check(drifted_table(), reference, severity=("drift=error",),
                   production_features=("age", "income", "region"))
    assert [(a.kind, a.column) for a in result.errors] == [
        ("production_feature_missing", "age"), ("drift", "income"), ("drift", "region")]
    message = error_message(result)
    assert "\n" not in message and len(message) <= 270
    assert message.startswith(
        "3 blocking data anomalies: 'age' production_feature_missing: not in this table; "
        "producti...; 'income' drift: psi ")
    assert "; 'income' drift: psi " in message
    assert message.endswith(
        "; ... and 1 more. Fix the data, or downgrade with --severity "
        "[COLUMN:]production_feature_missing=warning or --validation-rules.")
    lines = summary_lines(result)
    assert lines[:3] == [line for line in lines if line.startswith("error ")]


def test_messages_stay_one_short_line_with_long_and_odd_column_names(reference):
    name = "a very long column name\nwith a newline " * 5
    current = customers(seed=1).rename(columns={"income": name})
    current[name] *= 1000
    reference = reference.rename(columns={"income": name})
    result = check(current, reference, severity=("drift=error", "out_of_range=error"))
    for anomaly in result.anomalies:
        assert "\n" not in anomaly.message and "psi" in anomaly.message or "%" in anomaly.message
    for line in summary_lines(result, width=80):
        assert "\n" not in line and len(line) <= 80
    message = error_message(result)
    assert "\n" not in message and len(message) <= 270 and "2 blocking" in message
    many = ValidationResult(
        reference_version=1, reference_rows=10, reference_note="", drift=[], leakage=[],
        anomalies=[a.model_copy(update={"column": f"c{i}", "message": f"'c{i}' drift: x"})
                   for i in range(40) for a in result.errors[:1]])
    assert error_message(many).startswith("40 blocking data anomalies: 'c0' drift: x; 'c1'")
    assert "; ... and " in error_message(many) and len(error_message(many)) <= 270


# -- leakage -----------------------------------------------------------------------------------
def leaky(rows: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=rows)
    status = np.where(signal + rng.normal(size=rows) > 0.5, "bad", "good")
    frame = pd.DataFrame({
        "signal": signal,  # moderately predictive
        "noise": rng.normal(size=rows),
        "customer_id": [f"C{i:06d}" for i in rng.permutation(rows)],  # unique per row
        "row_number": np.arange(rows),
        "status": status,
    })
    frame["status_code"] = (frame["status"] == "bad").astype(int) * 2  # computed from the target
    frame["status_text"] = frame["status"].map({"bad": "B!", "good": "G!"})  # a copy as text
    frame.loc[rng.random(rows) < 0.1, "status_text"] = None  # with missing values
    return frame


FEATURES = ["signal", "noise", "customer_id", "row_number", "status_code", "status_text"]


def test_leakage_of_a_classification_target():
    scores = leakage_scores(leaky(), "status", "classification", FEATURES)
    by_column = {s.column: s for s in scores}
    assert [s.column for s in scores[:2]] == ["status_code", "status_text"]
    assert by_column["status_code"].score == 1.0
    assert by_column["status_text"].score > 0.93  # its missing values are a bin of their own
    assert 0.55 < by_column["signal"].score < 0.85
    assert by_column["customer_id"].score == 0.5  # unseen values: the majority class
    assert by_column["noise"].score < 0.56 and by_column["row_number"].score < 0.56
    assert all(s.metric == "balanced_accuracy" for s in scores)
    assert [s.score for s in scores] == sorted((s.score for s in scores), reverse=True)
    assert scores == leakage_scores(leaky(), "status", "classification", FEATURES)  # seeded


def test_leakage_of_a_multiclass_target_with_missing_values():
    rng = np.random.default_rng(1)
    rows = 3000
    grade = rng.choice(["a", "b", "c"], rows)
    frame = pd.DataFrame({
        "grade": grade,
        "points": pd.Series(grade).map({"a": 90.0, "b": 70.0, "c": 50.0})
        + rng.uniform(0, 9, rows),
        "hint": np.where(rng.random(rows) < 0.5, grade, "?"),
    })
    frame.loc[rng.random(rows) < 0.01, "points"] = np.nan
    frame.loc[:9, "grade"] = None  # rows without a target are left out
    scores = {s.column: s.score for s in
              leakage_scores(frame, "grade", "classification", ["points", "hint"], seed=3)}
    assert scores["points"] > 0.98
    assert 0.55 < scores["hint"] < 0.8


def test_leakage_of_a_regression_target():
    rng = np.random.default_rng(2)
    rows = 4000
    price = rng.lognormal(10, 1, rows)  # skewed: raw R² would miss a copy of it
    frame = pd.DataFrame({
        "price": price,
        "price_in_cents": price * 100,
        "log_price": np.log(price),
        "size": np.log(price) + rng.normal(0, 1, rows),
        "listing_id": rng.permutation(rows).astype(str),
    })
    scores = {s.column: s for s in leakage_scores(
        frame, "price", "regression", ["price_in_cents", "log_price", "size", "listing_id"],
        max_rows=3000)}
    assert scores["price_in_cents"].score > 0.99 and scores["log_price"].score > 0.99
    assert scores["price_in_cents"].metric == "rank_r2"
    assert 0.2 < scores["size"].score < 0.7
    assert scores["listing_id"].score < 0.01


def test_leakage_needs_rows_and_two_classes():
    frame = pd.DataFrame({"y": ["a"] * 50, "x": range(50)})
    assert leakage_scores(frame, "y", "classification", ["x"]) == []
    assert leakage_scores(frame.head(5).assign(y=list("ababa")), "y", "classification",
                          ["x"]) == []


def test_possible_target_leakage_is_reported_naming_the_column():
    frame = leaky()
    scores = leakage_scores(frame, "status", "classification", FEATURES)
    result = check(frame, leakage=scores)
    leak = only(result, "target_leakage", "status_code")
    assert leak.severity == "warning" and leak.value == 1.0 and leak.threshold == 0.98
    assert leak.message == (
        "'status_code' target_leakage: possible target leakage, it alone scores "
        "balanced_accuracy 1.000 (threshold 0.980)")
    assert not any(a.column == "signal" for a in result.anomalies)
    assert result.leakage[0].column == "status_code"
    stopped = check(frame, leakage=scores, severity=("target_leakage=error",),
                    rules=ValidationRules(leakage_threshold=0.9))
    assert {a.column for a in stopped.errors} == {"status_code", "status_text"}
    assert error_message(stopped).startswith(
        "2 blocking data anomalies: 'status_code' target_leakage: possible target leakage, ")
    assert "'status_text' target_leakage: possible" in error_message(stopped)


def _entries(lines: list[str]) -> list[str]:
    """The summary's anomalies, each put back on one line (continuation lines are indented)."""
    entries: list[str] = []
    for line in lines:
        if line.startswith(" ") and entries:
            entries[-1] += " " + line.strip()
        else:
            entries.append(line)
    return entries


def test_the_summary_shows_every_number_of_a_long_line_wrapped_not_cut(reference):
    """A 28-character column name made the missing-rate and leakage lines pass 100 characters:
    they were cut to '... (threshold 10...' and '... (...', hiding the numbers."""
    name = "od280/od315_of_diluted_wines"  # a column of load_wine
    current = customers(seed=1).rename(columns={"income": name})
    current.loc[current.index % 2 == 0, name] = np.nan
    reference = reference.rename(columns={"income": name})
    leak = LeakageScore(column=name, metric="balanced_accuracy", score=1.0)
    result = check(current, reference, leakage=[leak])
    lines = summary_lines(result)
    assert all(len(line) <= 100 for line in lines), lines
    entries = _entries(lines)
    missing = next(e for e in entries if "missing_rate" in e)
    assert missing == (f"warning '{name}' missing_rate: 50.0% missing, 0.0% in the reference "
                       "(a rise of 50.0%; threshold 10.0%)")
    leaked = next(e for e in entries if "leakage" in e)
    assert leaked.endswith("possible target leakage, it alone scores balanced_accuracy 1.000 "
                           "(threshold 0.980)")
    assert not any("..." in line for line in lines)
    for width in (60, 80):  # narrower terminals: the same words, only more lines
        narrow = summary_lines(result, width=width)
        assert all(len(line) <= width for line in narrow)
        assert [" ".join(e.split()) for e in _entries(narrow)] == [
            " ".join(e.split()) for e in entries]


def test_the_summary_given_a_line_budget_keeps_whole_anomalies_and_counts_the_rest(reference):
    many = ValidationResult(
        reference_version=1, reference_rows=10, reference_note="", drift=[], leakage=[],
        anomalies=[Anomaly(kind="missing_rate", column=f"column_number_{i:02}", severity="error",
                           message=f"'column_number_{i:02}' missing_rate: 100.0% missing, 0.0% in "
                                   "the reference (a rise of 100.0%; threshold 10.0%)")
                   for i in range(30)])
    lines = summary_lines(many, max_lines=40)
    assert len(lines) == 39 and len(summary_lines(many)) == 60  # 19 whole, then the count
    assert lines[-1] == "... and 11 more (the validation report lists them all)"
    assert lines[-3].startswith("error   'column_number_18'") and lines[-2].endswith("10.0%)")
    assert summary_lines(many, max_lines=60) == summary_lines(many)


# -- categories past the statistics' exact counts ----------------------------------------------
def real_stats(tmp_path, name: str, frame: pd.DataFrame) -> TableStatistics:
    """keel.statistics' own statistics (past 1,000 distinct values: top values only)."""
    from keel.statistics import compute_statistics

    path = tmp_path / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    return compute_statistics(str(path))


def codes(seed: int, values: int, rows: int = 20_000, hot: float = 0.0) -> pd.DataFrame:
    """A code column of ``values`` codes, ``hot`` of its rows one new code ('castle')."""
    rng = np.random.default_rng(seed)
    code = np.array([f"z{v}" for v in rng.integers(0, values, rows)], dtype=object)
    if hot:
        code[rng.random(rows) < hot] = "castle"
    return pd.DataFrame({"code": code, "status": rng.choice(["yes", "no"], rows)})


def test_a_category_column_past_1000_values_still_drifts_and_gets_new_values(tmp_path):
    """With more than 1,000 distinct values statistics keep only the top values: drift and new
    categories were then skipped silently, even with a third of the rows on one new value."""
    def run(reference: pd.DataFrame, current: pd.DataFrame) -> ValidationResult:
        return check_data(
            real_stats(tmp_path, "now", current), schema_of(current),
            reference=real_stats(tmp_path, "before", reference),
            reference_schema=schema_of(reference), production_features=("code",),
            reference_version=3, reference_note="", rules=ValidationRules())

    wide = codes(0, 3000)
    assert real_stats(tmp_path, "w", wide).columns[0].categories is None  # top values only
    result = run(wide, codes(1, 3000, hot=0.3))
    drift = only(result, "drift", "code")
    assert 0.29 < drift.value < 0.31 and drift.message.startswith("'code' drift: linf 0.")
    steady = run(wide, codes(1, 3000))  # a resample: no drift found
    assert [d.score < 0.01 for d in steady.drift if d.column == "code"] == [True]
    assert steady.anomalies == []

    narrow = codes(0, 800)  # the reference counted each value; this run has 2,000+ values
    flooded = codes(1, 800, hot=0.3)
    flooded.loc[flooded.index % 5 == 1, "code"] = [f"new{i}" for i in range(4000)]
    assert real_stats(tmp_path, "f", flooded).columns[0].categories is None
    new = only(run(narrow, flooded), "new_category", "code")
    assert new.message.startswith("'code' new_category: at least ")
    assert "are new: 'castle' and 4,000 more (threshold 1.0%)" in new.message
    truth = float((~flooded["code"].str.startswith("z")).mean())  # castle and the 4,000 codes
    assert truth - 0.01 < new.value <= truth  # a lower bound, and a close one
    js = check_data(  # Jensen-Shannon cannot be bounded from the top values: not computed
        real_stats(tmp_path, "now", codes(1, 3000, hot=0.3)), schema_of(wide),
        reference=real_stats(tmp_path, "before", wide), reference_schema=schema_of(wide),
        production_features=(), reference_version=3, reference_note="",
        rules=ValidationRules(categorical_drift="js"))
    assert js.drift == []
