"""keel.statistics: one streaming pass, checked against pandas on the whole table."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasketches import kll_doubles_sketch
from hypothesis import given, settings
from hypothesis import strategies as hs

from keel import statistics as st
from keel.contracts import TableStatistics
from keel.errors import SchemaError

RANK_ERROR = 0.0165  # KLL k=200, 99 % confidence
BATCHES = [7, 100, st.BATCH_ROWS]


def write(tmp_path, table: pa.Table | dict, name: str = "snapshot.parquet",
          row_group_size: int | None = None) -> str:
    if isinstance(table, dict):
        table = pa.table(table)
    path = tmp_path / name
    pq.write_table(table, path, compression="zstd", row_group_size=row_group_size)
    return str(path)


def mixed_table(rows: int = 3000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)

    def masked(values, share):
        return pa.array(values, mask=rng.random(rows) < share)

    words = np.array(["alpha", "beta", "gamma", "delta", "épsilon", "ζeta", "日本"])
    return pa.table({
        "age": masked(rng.integers(18, 90, rows), 0.1),
        "income": masked(rng.lognormal(10, 1, rows), 0.05),
        "score": pa.array(rng.normal(0, 1, rows)),
        "flag": masked(rng.random(rows) < 0.3, 0.2),
        "city": masked(rng.choice(words, rows, p=[.3, .2, .2, .1, .1, .05, .05]), 0.15),
        "day": masked(np.datetime64("2024-01-01") + rng.integers(0, 400, rows), 0.05),
    })


def exact_rank_error(values: np.ndarray, quantile: float, rank: float) -> float:
    """How far ``quantile`` is from being a ``rank`` quantile of ``values`` (0 when it is one)."""
    ordered = np.sort(values)
    below = np.searchsorted(ordered, quantile, "left") / ordered.size
    at_or_below = np.searchsorted(ordered, quantile, "right") / ordered.size
    return max(0.0, below - rank, rank - at_or_below)


# -- against pandas ---------------------------------------------------------------------------
@pytest.mark.parametrize("batch_rows", BATCHES)
def test_numbers_match_pandas(tmp_path, batch_rows):
    table = mixed_table()
    path = write(tmp_path, table)
    stats = st.compute_statistics(path, batch_rows=batch_rows)
    frame = table.to_pandas()
    assert stats.rows == len(frame)
    for name in ("age", "income", "score"):
        column, series = stats.column(name), frame[name]
        assert column is not None and column.kind == "numeric"
        assert (column.count, column.missing) == (series.count(), series.isna().sum())
        assert (column.min, column.max) == (series.min(), series.max())
        assert column.mean == pytest.approx(series.mean(), rel=1e-9)
        assert column.std == pytest.approx(series.std(), rel=1e-9)
        assert column.distinct == series.nunique() and column.distinct_exact
        assert list(column.quantiles) == list(st.QUANTILES)
        values = series.dropna().to_numpy(dtype=float)
        for rank, value in column.quantiles.items():
            assert exact_rank_error(values, value, float(rank)) <= RANK_ERROR, (name, rank)
        histogram = column.histogram
        assert histogram is not None and len(histogram.counts) == st.HISTOGRAM_BINS
        assert (histogram.edges[0], histogram.edges[-1]) == (column.min, column.max)
        assert sum(histogram.counts) == column.count
        exact, _ = np.histogram(values, bins=histogram.edges)
        assert np.abs(np.cumsum(exact) - np.cumsum(histogram.counts)).max() <= (
            RANK_ERROR * column.count)


@pytest.mark.parametrize("batch_rows", BATCHES)
def test_categories_booleans_and_dates_match_pandas(tmp_path, batch_rows):
    table = mixed_table()
    stats = st.compute_statistics(write(tmp_path, table), batch_rows=batch_rows)
    frame = table.to_pandas()

    city = stats.column("city")
    assert city is not None and city.kind == "categorical"
    counts = frame["city"].value_counts()
    assert city.categories == {str(k): int(v) for k, v in counts.items()}
    assert [(f.value, f.count) for f in city.top] == sorted(
        counts.items(), key=lambda kv: (-kv[1], kv[0]))
    assert (city.count, city.missing, city.distinct) == (
        frame["city"].count(), frame["city"].isna().sum(), frame["city"].nunique())
    lengths = frame["city"].dropna().str.len()
    assert (city.min_length, city.max_length) == (lengths.min(), lengths.max())
    assert city.mean_length == pytest.approx(lengths.mean(), rel=1e-12)

    flag = stats.column("flag")
    assert flag is not None and flag.kind == "boolean"
    true, false = int(frame["flag"].eq(True).sum()), int(frame["flag"].eq(False).sum())
    assert flag.categories == {"true": true, "false": false}
    assert [f.value for f in flag.top] == (["false", "true"] if false > true else ["true", "false"])
    assert (flag.count, flag.missing, flag.distinct) == (true + false, frame["flag"].isna().sum(), 2)

    day = stats.column("day")
    assert day is not None and day.kind == "datetime" and day.type == "date32[day]"
    dates = frame["day"].dropna()
    assert (day.earliest, day.latest) == (min(dates).isoformat(), max(dates).isoformat())
    assert (day.count, day.missing, day.distinct) == (len(dates), frame["day"].isna().sum(),
                                                      dates.nunique())


def test_exact_fields_do_not_depend_on_the_batch_size(tmp_path):
    path = write(tmp_path, mixed_table(2000, seed=3), row_group_size=500)
    small, whole = (st.compute_statistics(path, batch_rows=b) for b in (7, st.BATCH_ROWS))
    for a, b in zip(small.columns, whole.columns, strict=True):
        assert (a.name, a.kind, a.count, a.missing, a.distinct, a.min, a.max) == (
            b.name, b.kind, b.count, b.missing, b.distinct, b.min, b.max)
        assert (a.top, a.categories, a.min_length, a.max_length, a.earliest, a.latest) == (
            b.top, b.categories, b.min_length, b.max_length, b.earliest, b.latest)
        for x, y in ((a.mean, b.mean), (a.std, b.std), (a.mean_length, b.mean_length)):
            assert (x is None) == (y is None) and (x is None or x == pytest.approx(y, rel=1e-9))


# -- moments merged across batches ------------------------------------------------------------
def exact_moments(values: list[float]) -> tuple[Fraction, Fraction | None]:
    exact = [Fraction(v) for v in values]
    mean = sum(exact, Fraction(0)) / len(exact)
    if len(exact) < 2:
        return mean, None
    return mean, sum(((v - mean) ** 2 for v in exact), Fraction(0)) / (len(exact) - 1)


def fraction_sqrt(value: Fraction) -> float:
    """The square root of an exact non-negative number as a float (inf beyond the floats)."""
    if value == 0:
        return 0.0
    shift = value.numerator.bit_length() - value.denominator.bit_length()
    shift -= shift % 2
    root = math.sqrt(float(value / Fraction(2) ** shift))
    try:
        return math.ldexp(root, shift // 2)
    except OverflowError:
        return math.inf


finite = hs.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(values=hs.lists(finite, min_size=1, max_size=40),
       cuts=hs.lists(hs.integers(min_value=0, max_value=40), max_size=6))
def test_moments_merged_in_any_batches_are_exact_to_rounding(values, cuts):
    moments = st._Moments()
    bounds = sorted({0, len(values), *(c for c in cuts if c < len(values))})
    for start, stop in zip(bounds, bounds[1:], strict=False):
        part = np.sort(np.array(values[start:stop]))
        moments.update(part, float(np.abs(part).max()))
    mean, std = moments.result()
    exact_mean, exact_variance = exact_moments(values)
    scale = max(abs(v) for v in values)
    assert mean is not None
    assert abs(Fraction(mean) - exact_mean) <= Fraction(1e-13) * scale
    if exact_variance is None:
        assert std is None
        return
    exact_std = fraction_sqrt(exact_variance)
    if std is None:
        assert not math.isfinite(exact_std) or exact_std > 1e307
    else:
        assert abs(std - exact_std) <= 1e-9 * exact_std + 1e-13 * scale


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(values=hs.lists(hs.floats(min_value=-1e6, max_value=1e6), min_size=2, max_size=300),
       batch=hs.integers(min_value=1, max_value=50))
def test_moments_match_numpy_whatever_the_batches(values, batch):
    moments = st._Moments()
    array = np.array(values)
    for start in range(0, array.size, batch):
        part = np.sort(array[start:start + batch])
        moments.update(part, float(np.abs(part).max()))
    mean, std = moments.result()
    assert mean == pytest.approx(array.mean(), rel=1e-9, abs=1e-9)
    assert std == pytest.approx(array.std(ddof=1), rel=1e-9, abs=1e-9)


# -- edge cases -------------------------------------------------------------------------------
def test_an_all_missing_column_and_an_empty_table(tmp_path):
    columns = {"n": pa.array([None] * 5, pa.float64()), "s": pa.array([None] * 5, pa.string()),
               "b": pa.array([None] * 5, pa.bool_()), "t": pa.array([None] * 5, pa.timestamp("us"))}
    for rows, path in ((5, write(tmp_path, columns)),
                       (0, write(tmp_path, pa.table(columns).slice(0, 0), "empty.parquet"))):
        stats = st.compute_statistics(path)
        assert stats.rows == rows
        for column in stats.columns:
            assert (column.count, column.missing, column.distinct) == (0, rows, 0)
            assert column.distinct_exact
        n = stats.column("n")
        assert n is not None and n.kind == "numeric"
        assert (n.min, n.max, n.mean, n.std, n.quantiles, n.histogram, n.sketch) == (
            None, None, None, None, {}, None, "")
        s = stats.column("s")
        assert s is not None and s.kind == "categorical" and s.categories == {} and s.top == []
        assert (s.min_length, s.mean_length, s.max_length) == (None, None, None)
        t = stats.column("t")
        assert t is not None and (t.earliest, t.latest) == (None, None)
        assert st.sketch_of(n) is None
        with pytest.raises(SchemaError, match="'n' must be a numeric column with values"):
            st.cdf(n, [0.0])
        assert TableStatistics.from_json(stats.to_json()) == stats


def test_nan_and_infinite_values_are_missing(tmp_path):
    values = [1.0, math.inf, 2.0, -math.inf, math.nan, None, 4.0]
    stats = st.compute_statistics(write(tmp_path, {"x": pa.array(values, pa.float64())}))
    x = stats.column("x")
    assert x is not None
    assert (x.count, x.missing, x.distinct, x.min, x.max) == (3, 4, 3, 1.0, 4.0)
    assert x.mean == pytest.approx(7 / 3) and x.std == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert st.sketch_of(x).n == 3
    assert sum(x.histogram.counts) == 3
    assert TableStatistics.from_json(stats.to_json()) == stats  # no NaN or inf anywhere


def test_a_constant_column_has_one_bin(tmp_path):
    stats = st.compute_statistics(write(tmp_path, {"c": [7] * 500}), batch_rows=64)
    c = stats.column("c")
    assert c is not None
    assert (c.count, c.distinct, c.min, c.max, c.mean, c.std) == (500, 1, 7.0, 7.0, 7.0, 0.0)
    assert c.histogram is not None and (c.histogram.edges, c.histogram.counts) == ([7.0, 7.0], [500])
    assert set(c.quantiles.values()) == {7.0}


def test_huge_and_tiny_floats(tmp_path):
    huge = [1.7e308, -1.7e308, 1.6e308, 1e308]
    tiny = [1e-310, 3e-310, 2e-310, 5e-324]
    beyond = [1.7e308, -1.7e308, None, None]  # their standard deviation is beyond a float
    path = write(tmp_path, {"huge": huge, "tiny": tiny, "beyond": beyond})
    h, t, b = st.compute_statistics(path, batch_rows=3).columns
    assert (h.min, h.max, t.min, t.max) == (-1.7e308, 1.7e308, 5e-324, 3e-310)
    for column, values in ((h, huge), (t, tiny)):
        mean, variance = exact_moments(values)
        assert variance is not None
        assert column.mean == pytest.approx(float(mean), rel=1e-12)
        assert column.std == pytest.approx(fraction_sqrt(variance), rel=1e-9)
    # pandas loses both: the sum overflows (inf, nan), the squares underflow (std 0)
    with np.errstate(all="ignore"):
        assert not math.isfinite(pd.Series(huge).std()) and pd.Series(tiny).std() == 0
    assert (b.mean, b.std) == (0.0, None)
    assert h.histogram is not None and len(h.histogram.counts) == st.HISTOGRAM_BINS
    stats = st.compute_statistics(path)
    assert TableStatistics.from_json(stats.to_json()) == stats


def test_unicode_text_lengths_are_in_characters(tmp_path):
    words = ["é", "日本語", "🙂🙂", "a", None, "naïve café"]
    stats = st.compute_statistics(write(tmp_path, {"w": pa.array(words)}))
    w = stats.column("w")
    assert w is not None
    assert (w.min_length, w.max_length) == (1, 10)
    assert w.mean_length == pytest.approx((1 + 3 + 2 + 1 + 10) / 5)
    assert w.categories == {"a": 1, "naïve café": 1, "é": 1, "日本語": 1, "🙂🙂": 1}


def test_timestamps_with_a_time_zone_are_written_in_utc(tmp_path):
    paris = pa.array([dt.datetime(2024, 3, 1, 12, 30, tzinfo=dt.UTC),
                      dt.datetime(2023, 1, 5, 0, 0, 0, 250000, tzinfo=dt.UTC), None],
                     pa.timestamp("us", tz="Europe/Paris"))
    naive = pa.array([dt.datetime(2024, 3, 1, 12, 30), dt.datetime(2024, 3, 1, 12, 30), None],
                     pa.timestamp("us"))
    stats = st.compute_statistics(write(tmp_path, {"paris": paris, "naive": naive}))
    p, n = stats.column("paris"), stats.column("naive")
    assert p is not None and (p.earliest, p.latest) == ("2023-01-05T00:00:00.250Z",
                                                        "2024-03-01T12:30Z")
    assert n is not None and (n.earliest, n.latest, n.distinct) == (
        "2024-03-01T12:30", "2024-03-01T12:30", 1)
    for text in (p.earliest, p.latest, n.latest):
        dt.datetime.fromisoformat(text)  # ISO 8601


def test_dictionary_strings_and_other_types(tmp_path):
    frame = pd.DataFrame({"grade": pd.Categorical(["A", "B", None, "A"]),
                          "wait": pd.to_timedelta([1, 2, None, 4], unit="s"),
                          "blob": [b"x", None, b"y", b"z"]})
    path = str(tmp_path / "frame.parquet")
    frame.to_parquet(path)
    stats = st.compute_statistics(path)
    grade = stats.column("grade")
    assert grade is not None and grade.type.startswith("dictionary<values=string")
    assert (grade.kind, grade.categories, grade.missing) == ("categorical", {"A": 2, "B": 1}, 1)
    for name in ("wait", "blob"):
        other = stats.column(name)
        assert other is not None and (other.kind, other.count, other.missing) == ("other", 3, 1)


def test_column_kinds():
    assert [st.column_kind(t) for t in (
        pa.int8(), pa.uint64(), pa.float32(), pa.float64(), pa.decimal128(10, 2), pa.bool_(),
        pa.string(), pa.large_string(), pa.dictionary(pa.int32(), pa.string()),
        pa.timestamp("us"), pa.date32(), pa.duration("s"), pa.binary(), pa.null(),
    )] == ["numeric"] * 5 + ["boolean"] + ["categorical"] * 3 + ["datetime"] * 2 + ["other"] * 3


def test_strings_are_text_when_most_rows_are_distinct(tmp_path):
    rows = 200
    stats = st.compute_statistics(write(tmp_path, {
        "few": [f"v{i % 40}" for i in range(rows)],  # <= MAX_CATEGORIES: categorical
        "half": [f"v{i % 100}" for i in range(rows)],  # 100 of 200 rows: categorical
        "most": [f"v{i % 101}" for i in range(rows)],  # 101 of 200 rows: text
    }))
    assert [c.kind for c in stats.columns] == ["categorical", "categorical", "text"]


def test_columns_are_chosen_by_name_in_the_order_asked(tmp_path):
    path = write(tmp_path, mixed_table(50))
    stats = st.compute_statistics(path, columns=["score", "age", "score"])
    assert [c.name for c in stats.columns] == ["score", "age"]
    assert st.compute_statistics(path, columns=[]).rows == 50
    with pytest.raises(SchemaError, match=r"Got \['nope'\] instead"):
        st.compute_statistics(path, columns=["age", "nope"])


# -- beyond the caps: sketches ----------------------------------------------------------------
def test_many_distinct_numbers_are_estimated_within_three_percent(tmp_path):
    rng = np.random.default_rng(5)
    below = rng.integers(0, 10_000, 150_000)  # about 10,000 distinct: under the cap, exact
    above = rng.normal(size=150_000).round(5)  # about 120,000 distinct: estimated
    stats = st.compute_statistics(write(tmp_path, {"below": below, "above": above}))
    b, a = stats.column("below"), stats.column("above")
    assert b is not None and a is not None
    assert (b.distinct, b.distinct_exact) == (len(np.unique(below)), True)
    truth = len(np.unique(above))
    assert truth > st.DISTINCT_SKETCH_SIZE and not a.distinct_exact
    assert abs(a.distinct - truth) <= 0.03 * truth


def test_many_distinct_strings_keep_the_frequent_ones(tmp_path):
    rng = np.random.default_rng(6)
    rows = 60_000
    heavy = np.array(["x", "y", "z"])[rng.integers(0, 3, rows)]
    unique = np.array([f"id-{i}" for i in range(rows)])
    values = np.where(rng.random(rows) < 0.3, heavy, unique)  # ~42,000 distinct
    mid = np.array([f"m{i}" for i in rng.integers(0, 5000, rows)])  # 5,000 distinct: exact
    stats = st.compute_statistics(write(tmp_path, {"v": values, "mid": mid}), batch_rows=4096)
    v, m = stats.column("v"), stats.column("mid")
    assert v is not None and m is not None
    truth = pd.Series(values).value_counts()
    assert v.kind == "text" and v.categories is None and not v.distinct_exact
    assert abs(v.distinct - len(truth)) <= 0.03 * len(truth)
    bound = rows / (st.MAX_TRACKED + 1)  # Misra-Gries: counts are lower bounds within this
    assert [f.value for f in v.top[:3]] == list(truth.index[:3])
    for frequency in v.top:
        assert truth[frequency.value] - bound <= frequency.count <= truth[frequency.value]
    assert len(v.top) <= st.TOP  # values seen once are under the bound: not listed
    assert (m.distinct, m.distinct_exact, m.categories) == (len(set(mid)), True, None)
    assert m.kind == "categorical"


# -- reading back: sketch and cdf -------------------------------------------------------------
def test_cdf_of_a_known_distribution(tmp_path):
    values = np.arange(100_000, dtype=np.float64)
    np.random.default_rng(7).shuffle(values)
    u = st.compute_statistics(write(tmp_path, {"u": values})).columns[0]
    points = [-1.0, 0.0, 24_999.0, 49_999.0, 89_999.0, 99_999.0, math.inf, 10.0]
    shares = st.cdf(u, points)
    expected = [0.0, 1e-5, 0.25, 0.5, 0.9, 1.0, 1.0, 11e-5]
    assert shares == pytest.approx(expected, abs=RANK_ERROR)
    assert (shares[0], shares[5], shares[6]) == (0.0, 1.0, 1.0)
    sketch = st.sketch_of(u)
    assert isinstance(sketch, kll_doubles_sketch)
    assert (sketch.n, sketch.get_min_value(), sketch.get_max_value()) == (100_000, 0.0, 99_999.0)
    small = st.compute_statistics(write(tmp_path, {"x": values[:150]}, "s.parquet")).columns[0]
    # at most 200 values: exact
    ordered = np.sort(values[:150])
    assert st.cdf(small, ordered.tolist()) == pytest.approx(np.arange(1, 151) / 150)
    city = st.compute_statistics(write(tmp_path, {"c": ["a", "b"]}, "c.parquet")).columns[0]
    with pytest.raises(SchemaError, match="Got a categorical column"):
        st.cdf(city, [1.0])


def test_the_sketch_is_what_datasketches_writes_for_few_values(tmp_path):
    values = [3.0, 1.0, 2.0]
    stats = st.compute_statistics(write(tmp_path, {"x": values}))
    column = stats.columns[0]
    ours, theirs = st.sketch_of(column), kll_doubles_sketch(st.SKETCH_K)
    for value in values:
        theirs.update(value)
    ranks = [0.0, 0.2, 0.5, 0.7, 1.0]
    assert ours.get_quantiles(ranks) == theirs.get_quantiles(ranks)
    single = st.compute_statistics(write(tmp_path, {"x": [3.0]}, "one.parquet")).columns[0]
    one = kll_doubles_sketch(st.SKETCH_K)
    one.update(3.0)
    assert st.sketch_of(single).serialize() == one.serialize()


# -- determinism ------------------------------------------------------------------------------
def test_the_same_file_gives_byte_identical_json_in_another_process(tmp_path):
    rng = np.random.default_rng(8)
    path = write(tmp_path, {"x": rng.normal(size=50_000), "s": rng.choice(["a", "b"], 50_000)})
    here = st.compute_statistics(path, batch_rows=5000).to_json()
    assert st.compute_statistics(path, batch_rows=5000).to_json() == here
    code = ("import sys; from keel.statistics import compute_statistics; "
            "sys.stdout.write(compute_statistics(sys.argv[1], batch_rows=5000).to_json())")
    there = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                           check=True).stdout
    assert there == here
    assert json.loads(here)["columns"][0]["sketch"]  # a sketch past compaction: seeded


def test_values_counted_in_small_batches_pass_the_cap_together(tmp_path):
    values = [f"v{i}" for i in range(1500)] * 2  # each batch under MAX_TRACKED, all over it
    stats = st.compute_statistics(write(tmp_path, {"v": values}), batch_rows=600)
    v = stats.columns[0]
    assert (v.count, v.distinct, v.distinct_exact, v.categories) == (3000, 1500, True, None)
    bound = 3000 / (st.MAX_TRACKED + 1)
    assert all(2 - bound <= f.count <= 2 for f in v.top)


def test_arrays_with_an_offset_are_read_from_their_offset():
    array = pa.array([1.0, 2.0, 3.0, 4.0]).slice(1, 2)
    assert st._numpy(array, np.float64).tolist() == [2.0, 3.0]
    assert st._numpy(pa.array([], pa.int64()), np.int64).size == 0


def test_ordinary_columns_need_neither_pandas_nor_scikit_learn(tmp_path):
    path = write(tmp_path, mixed_table(300))
    code = ("import sys; from keel.statistics import compute_statistics; "
            "compute_statistics(sys.argv[1]); print(sorted({'pandas', 'sklearn'} & {"
            "m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_repeated_column_names_are_read_by_position(tmp_path):
    table = pa.Table.from_arrays([pa.array([1, 2, 3]), pa.array(["x", None, "x"])],
                                 names=["a", "a"])
    path = write(tmp_path, table)
    for stats in (st.compute_statistics(path), st.compute_statistics(path, columns=["a"])):
        assert [(c.name, c.kind, c.count) for c in stats.columns] == [
            ("a", "numeric", 3), ("a", "categorical", 2)]


def test_the_histogram_of_few_values_is_numpys(tmp_path):
    values = np.random.default_rng(9).gamma(2.0, 3.0, 180)  # at most 200 values: exact
    column = st.compute_statistics(write(tmp_path, {"x": values})).columns[0]
    counts, edges = np.histogram(values, bins=st.HISTOGRAM_BINS)
    assert column.histogram is not None
    assert column.histogram.edges == edges.tolist()
    assert column.histogram.counts == counts.tolist()


def test_long_text_values_are_counted_under_a_short_key_that_finds_new_ones(tmp_path):
    """Three 100,000-character values in 600 rows were kept whole in ``categories`` and ``top``:
    600 KB of statistics.json for one column, and memory growing with the values' length."""
    from keel.contracts import ColumnInfo, TableSchema, ValidationRules
    from keel.data_checks import check_data

    texts = [letter * 100_000 + str(i) for i, letter in enumerate("abc")]
    before = write(tmp_path, {"doc": [texts[i % 3] for i in range(600)]}, "before.parquet")
    after = write(tmp_path, {"doc": [texts[i % 3] if i % 2 else "d" * 100_000
                                     for i in range(600)]}, "after.parquet")
    reference, current = st.compute_statistics(before), st.compute_statistics(after)
    doc = reference.columns[0]
    assert len(doc.model_dump_json()) < 5000
    assert doc.count == 600 and doc.distinct == 3 and doc.distinct_exact
    assert doc.max_length == doc.min_length == 100_001  # lengths are of the values themselves
    assert doc.categories is not None and sorted(doc.categories.values()) == [200, 200, 200]
    key = st.value_key(texts[0])
    assert doc.categories[key] == 200 and key.startswith("a" * st.KEPT_CHARS + "... (100,001 ")
    assert st.value_key("short") == "short" and st.value_key(texts[1]) != key

    def schema(rows: int) -> TableSchema:
        return TableSchema(
            target="y", task="regression", classes=None, rows_in=rows,
            rows_dropped_missing_target=0, rows=rows, infinite_values={}, numeric_features=[],
            categorical_features=[], excluded={}, schema_hash="0" * 64,
            columns=[ColumnInfo(name="doc", dtype="object", kind="categorical", role="feature",
                                missing=0, unique=3, reason="", stats={})])

    result = check_data(current, schema(600), reference=reference, reference_schema=schema(600),
                        production_features=(), reference_version=1, reference_note="",
                        rules=ValidationRules())
    new = [a for a in result.anomalies if a.kind == "new_category"]
    assert len(new) == 1 and "50.0% (300 of 600 values) are new: 'ddd" in new[0].message
