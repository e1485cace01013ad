"""Per-column statistics of a snapshot in one streaming pass over its record batches.

:func:`compute_statistics` reads the Parquet snapshot one record batch at a time and keeps, per
column, state whose size does not depend on the number of rows, so peak memory is one batch (one
row group of the file) plus a few hundred kilobytes per column. What each kind of column gets
(the fields of :class:`~keel.contracts.ColumnStatistics`):

- every column: ``count`` (values present) and ``missing`` (nulls; also NaN and infinite
  numbers, which validate treats as missing too, so that ``count + missing`` is the row count);
- numbers (ints, floats, decimals; not booleans): ``min``/``max`` (exact), ``mean``/``std``
  (sample std, ddof=1 like pandas; None below two values or when it overflows a float),
  merged across batches exactly (Chan's parallel update, in float64 scaled by a power of two so
  that neither huge nor tiny values overflow or underflow); ``quantiles`` at
  :data:`QUANTILES`, a ``histogram`` of :data:`HISTOGRAM_BINS` equal-width bins between min and
  max, and ``sketch``, a KLL sketch (base64, DataSketches' ``kll_doubles_sketch`` format, read it
  with :func:`sketch_of`) that quantiles, the histogram and :func:`cdf` come from;
- strings (categorical or text), booleans (values ``true``/``false``): ``top``, the
  :data:`TOP` most frequent values (most frequent first, ties by value); ``categories``, every
  value's count while at most :data:`MAX_TRACKED` distinct values were seen (None beyond); text
  lengths in characters (strings only). A value longer than :data:`MAX_VALUE_CHARS` characters
  is counted and shown as its start, its length and a digest (:func:`value_key`), so that the
  state and the JSON stay small whatever the values' length;
- dates and times: ``earliest`` and ``latest`` as ISO 8601 text;
- anything else (durations, binary, ...): count and missing only.

``distinct`` is exact up to :data:`DISTINCT_SKETCH_SIZE` distinct values and estimated beyond
(``distinct_exact`` False): a k-minimum-values sketch of 64-bit hashes, relative standard error
``1/sqrt(DISTINCT_SKETCH_SIZE - 2)`` (0.8 %). Numbers and dates are hashed by a bijection of
their 64 bits, so their count below the cap is exact; strings are counted exactly up to
:data:`MAX_TRACKED` values, then by pandas' 64-bit hash (imported only then; a collision below
the cap has a chance under 1e-11).

Error bounds. Quantiles, histogram counts and :func:`cdf` come from a KLL sketch with
``k = 200``, exact while a column has at most 200 values. Beyond, DataSketches' bounds (99 %
confidence) are a rank error of 1.33 % for a quantile or a cdf point and 1.65 % for a histogram
bin's share; on 300,000 heavy-tailed values the worst of 999 quantiles was 0.9 % off in rank
(DataSketches' own sketch: 1.0 %). Past :data:`MAX_TRACKED` distinct values, ``top`` comes from a
Misra-Gries summary of :data:`MAX_TRACKED` counters: each count is a lower bound at most
``count / (MAX_TRACKED + 1)`` below the true one, every value more frequent than that is in it,
and values seen fewer times may be missing from ``top`` (``categories`` None says so).

The result is deterministic: the same file and ``batch_rows`` give byte-identical JSON (the KLL
sketch is kept here with seeded compactions rather than by DataSketches, whose compactions draw
from a generator seeded by the clock). Counts, missing, min, max, distinct below the cap, top
and categories below :data:`MAX_TRACKED`, and lengths do not depend on ``batch_rows``; mean and
std only up to float rounding.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasketches import kll_doubles_sketch  # type: ignore[import-untyped, unused-ignore]

from keel.contracts import (
    ColumnStatistics,
    Frequency,
    Histogram,
    StatisticsKind,
    TableStatistics,
)
from keel.errors import SchemaError

#: A string column with at most this many distinct values is categorical whatever its row count
#: (keel.validate's threshold); with more, it is categorical only if at most half its rows are
#: distinct, else text.
MAX_CATEGORIES = 50
#: ``categories`` holds every value's count while a column has at most this many distinct values.
MAX_TRACKED = 1000
TOP = 20  # most frequent values listed in ``top``
#: A text value longer than this is counted under :func:`value_key`: its start and a digest.
MAX_VALUE_CHARS = 256
KEPT_CHARS = 160  # of such a value's start
HISTOGRAM_BINS = 20
QUANTILES = ("0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99")
SKETCH_K = 200  # the KLL sketch's k: rank error 1.33 % (a quantile), 1.65 % (a bin's share)
#: ``distinct`` is exact up to this many distinct values, estimated by a KMV sketch beyond.
DISTINCT_SKETCH_SIZE = 16384
BATCH_ROWS = 65536
_SEED = 20240531  # the KLL compactions' pseudo-random bits: fixed, so results are reproducible

FloatArray = npt.NDArray[np.float64]
HashArray = npt.NDArray[np.uint64]


# -- kinds ------------------------------------------------------------------------------------
def _value_type(arrow_type: Any) -> Any:
    return arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type


def column_kind(arrow_type: Any) -> StatisticsKind:
    """The statistics kind of a column of Arrow type ``arrow_type``.

    Integers, floats and decimals are ``numeric`` (booleans are ``boolean``); strings are
    ``categorical`` here: whether a string column is ``text`` instead depends on its values and
    is decided by :func:`compute_statistics` once it has seen them all. Dates and timestamps are
    ``datetime``; anything else is ``other``. A dictionary type has its values' kind.
    """
    value_type = _value_type(arrow_type)
    if pa.types.is_boolean(value_type):
        return "boolean"
    if (pa.types.is_integer(value_type) or pa.types.is_floating(value_type)
            or pa.types.is_decimal(value_type)):
        return "numeric"
    if pa.types.is_string(value_type) or pa.types.is_large_string(value_type):
        return "categorical"
    if pa.types.is_timestamp(value_type) or pa.types.is_date(value_type):
        return "datetime"
    return "other"


def _string_kind(distinct: int, rows: int) -> StatisticsKind:
    """Categorical when few values repeat enough (keel.validate's rule), else text."""
    return "categorical" if distinct <= MAX_CATEGORIES or distinct <= rows / 2 else "text"


# -- distinct values: exact up to a cap, then a k-minimum-values sketch -----------------------
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix(keys: HashArray) -> HashArray:
    """SplitMix64's finalizer: a bijection of 64-bit keys that spreads them uniformly."""
    z = keys ^ (keys >> np.uint64(30))
    z = z * _MIX1
    z ^= z >> np.uint64(27)
    z = z * _MIX2
    z ^= z >> np.uint64(31)
    return z


def _hash_strings(values: Any) -> HashArray:
    """64-bit hashes of a string array's values (pandas' SipHash, fixed key: reproducible)."""
    import pandas as pd  # only for columns past MAX_TRACKED distinct values

    objects = values.to_numpy(zero_copy_only=False)
    hashed: HashArray = pd.util.hash_array(objects, categorize=False)
    return hashed


class _Distinct:
    """Distinct values: the ``size`` smallest distinct hashes (all of them while there are fewer)."""

    def __init__(self, size: int = DISTINCT_SKETCH_SIZE):
        self.size = size
        self.kept: HashArray = np.empty(0, dtype=np.uint64)
        self.saturated = False

    def update(self, hashes: HashArray) -> None:
        if self.saturated:
            hashes = hashes[hashes < self.kept[-1]]
        if not hashes.size:
            return
        merged = np.sort(np.concatenate([self.kept, hashes]))
        if merged.size > 1:  # one copy of each hash
            merged = merged[np.concatenate([[True], merged[1:] != merged[:-1]])]
        if merged.size > self.size:
            merged = merged[: self.size]
            self.saturated = True
        self.kept = merged

    def result(self, count: int) -> tuple[int, bool]:
        """The number of distinct values, and whether it is exact."""
        if not self.saturated:
            return int(self.kept.size), True
        # KMV: (k - 1) / U(k), U(k) the k-th smallest hash as a share of the hash range
        share = (float(self.kept[-1]) + 1.0) / 2.0**64
        estimate = round((self.size - 1) / share)
        return min(max(estimate, self.size + 1), count), False


# -- quantiles: a KLL sketch kept in numpy, written in DataSketches' format --------------------
@cache
def _level_capacity(k: int, levels: int, height: int, m: int = 8) -> int:
    """DataSketches' KLL level capacity: about k (2/3)^depth, at least m."""
    depth = levels - height - 1

    def aux(k: int, depth: int) -> int:  # int_cap_aux_aux: k (2/3)^depth, rounded
        return int(((2 * k << depth) // 3**depth + 1) >> 1)

    capacity = aux(k, depth) if depth <= 30 else aux(aux(k, depth // 2), depth - depth // 2)
    return max(m, capacity)


@cache
def _total_capacity(k: int, levels: int, m: int = 8) -> int:
    return sum(_level_capacity(k, levels, h, m) for h in range(levels))


class _Quantiles:
    """A KLL sketch of doubles (Karnin, Lang, Liberty 2016) with deterministic compactions.

    The layout (levels of sorted items, level h weighing 2^h, DataSketches' level capacities)
    is DataSketches', so :meth:`serialize` writes bytes that ``kll_doubles_sketch.deserialize``
    reads; what differs is that a whole batch enters level 0 at once (sorted, then compacted
    level by level as needed: fast with numpy), and that the compactions' random bits come from
    a seeded generator, so the same input gives the same sketch.
    """

    M = 8  # DataSketches' minimum level width

    def __init__(self, k: int = SKETCH_K, seed: int = _SEED):
        self.k = k
        self.n = 0
        self.low = math.inf
        self.high = -math.inf
        self.levels: list[FloatArray] = [np.empty(0)]
        self._bits = random.Random(seed)

    def update(self, ordered: FloatArray) -> None:
        """Add values, sorted ascending (finite)."""
        if not ordered.size:
            return
        self.n += int(ordered.size)
        self.low = min(self.low, float(ordered[0]))
        self.high = max(self.high, float(ordered[-1]))
        self.levels[0] = _merge_sorted(self.levels[0], ordered)
        self._compress()

    def _compress(self) -> None:
        while sum(level.size for level in self.levels) > _total_capacity(
                self.k, len(self.levels), self.M):
            count = len(self.levels)
            height = next(h for h in range(count) if self.levels[h].size >= _level_capacity(
                self.k, count, h, self.M))
            if height == count - 1:
                self.levels.append(np.empty(0))
            level = self.levels[height]
            odd = level.size % 2
            # an odd level keeps its smallest item; the rest is halved: every other item, from
            # the first or the second (a random bit), goes up a level with twice the weight
            # (a copy, so that a batch's array is not kept alive by a view of it)
            promoted = np.ascontiguousarray(level[odd + self._bits.getrandbits(1)::2])
            self.levels[height] = level[:odd].copy()
            self.levels[height + 1] = _merge_sorted(self.levels[height + 1], promoted)

    def serialize(self) -> bytes:
        """The sketch in DataSketches' KLL serialization (``kll_doubles_sketch.deserialize``)."""
        head = struct.Struct("<BBBBHBB")
        if self.n == 0:  # preamble ints, serial version, family (KLL), flags (empty), k, m
            return head.pack(2, 1, 15, 1, self.k, self.M, 0)
        if self.n == 1:  # flags: single item
            return head.pack(2, 2, 15, 4, self.k, self.M, 0) + struct.pack("<d", self.low)
        count = len(self.levels)
        sizes = [level.size for level in self.levels]
        start = _total_capacity(self.k, count, self.M) - sum(sizes)
        offsets = [start + sum(sizes[:h]) for h in range(count)]
        return b"".join([
            head.pack(5, 1, 15, 2, self.k, self.M, 0),  # flags: level zero sorted
            struct.pack("<QHBB", self.n, self.k, count, 0),
            struct.pack(f"<{count}I", *offsets),
            struct.pack("<dd", self.low, self.high),
            np.concatenate(self.levels).astype("<f8").tobytes(),
        ])


def _merge_sorted(a: FloatArray, b: FloatArray) -> FloatArray:
    if not a.size:
        return b
    if not b.size:
        return a
    merged: FloatArray = np.sort(np.concatenate([a, b]))
    return merged


# -- moments ----------------------------------------------------------------------------------
class _Moments:
    """Count, mean and sum of squared deviations, merged batch by batch (Chan et al.).

    Values are held scaled by 2^-scale, a power of two at least the largest magnitude seen, so
    that sums neither overflow (values near 1e308) nor lose squares to underflow (1e-300):
    scaling by a power of two is exact.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0  # scaled
        self.m2 = 0.0  # scaled squared
        self.scale = 0

    def update(self, values: FloatArray, largest: float) -> None:
        """Add finite ``values`` whose largest magnitude is ``largest``."""
        if not values.size:
            return
        exponent = math.frexp(largest)[1]  # largest < 2^exponent
        if self.n == 0:
            self.scale = exponent
        elif exponent > self.scale:
            shift = self.scale - exponent
            self.mean = math.ldexp(self.mean, shift)
            self.m2 = math.ldexp(self.m2, 2 * shift)
            self.scale = exponent
        scaled = _ldexp(values, -self.scale)
        n = int(scaled.size)
        mean = float(np.sum(scaled)) / n
        deviations = scaled - mean
        m2 = float(np.sum(deviations * deviations))  # not np.dot: BLAS threads spin
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total

    def result(self) -> tuple[float | None, float | None]:
        """Mean and sample standard deviation (ddof=1); None where undefined or not finite."""
        if self.n == 0:
            return None, None
        mean = _unscaled(self.mean, self.scale)
        if self.n < 2:
            return mean, None
        return mean, _unscaled(math.sqrt(max(self.m2, 0.0) / (self.n - 1)), self.scale)


def _ldexp(values: FloatArray, exponent: int) -> FloatArray:
    if -1022 <= exponent <= 1023:  # 2^exponent is a normal float: one exact multiplication
        scaled: FloatArray = values * math.ldexp(1.0, exponent)
        return scaled
    return np.ldexp(values, exponent)


def _unscaled(value: float, scale: int) -> float | None:
    """``value`` times 2^scale; None when that is beyond the floats."""
    try:
        return math.ldexp(value, scale)
    except OverflowError:
        return None


# -- per-column accumulators ------------------------------------------------------------------
class _Column:
    """What one column's statistics are built from; subclasses add what their kind needs."""

    kind: StatisticsKind = "other"

    def __init__(self, name: str, arrow_type: Any):
        self.name = name
        self.type = arrow_type
        self.count = 0
        self.missing = 0

    def update(self, column: Any) -> None:
        self.missing += column.null_count
        self.count += len(column) - column.null_count

    def result(self, rows: int) -> ColumnStatistics:
        return ColumnStatistics(name=self.name, type=str(self.type), kind=self.kind,
                                count=self.count, missing=self.missing, distinct=0)


def _numpy(array: Any, dtype: Any) -> Any:
    """A null-free Arrow array of a fixed-width type as a numpy view, without pandas.

    pyarrow's ``to_numpy`` imports pandas, a quarter of a second that validate need not pay.
    """
    width = np.dtype(dtype).itemsize
    if not len(array):
        return np.empty(0, dtype=dtype)
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array),
                         offset=array.offset * width)


def _present(column: Any) -> Any:
    """The column without its nulls, dictionary values decoded."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    return column.drop_null() if column.null_count else column


class _Numbers(_Column):
    kind: StatisticsKind = "numeric"

    def __init__(self, name: str, arrow_type: Any):
        super().__init__(name, arrow_type)
        self.low: int | float | None = None
        self.high: int | float | None = None
        self.moments = _Moments()
        self.sketch = _Quantiles()
        self.distinct = _Distinct()
        value_type = _value_type(arrow_type)
        self.integers = pa.types.is_integer(value_type)

    def update(self, column: Any) -> None:
        present = _present(column)
        self.missing += len(column) - len(present)
        if self.integers:
            unsigned = pa.types.is_unsigned_integer(present.type)
            wide = present.cast(pa.uint64() if unsigned else pa.int64())
            ordered_ints = np.sort(_numpy(wide, np.uint64 if unsigned else np.int64))
            if not ordered_ints.size:
                return
            low, high = ordered_ints[0].item(), ordered_ints[-1].item()
            ordered = ordered_ints.astype(np.float64)
            keys = ordered_ints.view(np.uint64)
        else:
            values = _numpy(present.cast(pa.float64()), np.float64)
            finite = np.isfinite(values)
            if not finite.all():  # NaN and inf: missing (validate counts them so too)
                self.missing += int(values.size - np.count_nonzero(finite))
                values = values[finite]
            if not values.size:
                return
            ordered = np.sort(values) + 0.0  # + 0.0: -0.0 becomes 0.0, one value
            low, high = float(ordered[0]), float(ordered[-1])
            keys = ordered.view(np.uint64)
        self.count += int(ordered.size)
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        self.moments.update(ordered, max(abs(float(ordered[0])), abs(float(ordered[-1]))))
        self.sketch.update(ordered)
        first = np.empty(keys.size, dtype=bool)  # sorted: a value's first copy differs from
        first[0] = True  # the one before it
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        self.distinct.update(_mix(keys[first]))

    def result(self, rows: int) -> ColumnStatistics:
        mean, std = self.moments.result()
        distinct, exact = self.distinct.result(self.count)
        quantiles: dict[str, float] = {}
        histogram = None
        sketch = ""
        if self.count:
            encoded = self.sketch.serialize()
            sketch = base64.b64encode(encoded).decode("ascii")
            kll = kll_doubles_sketch.deserialize(encoded)
            ranks = [float(q) for q in QUANTILES]
            quantiles = dict(zip(QUANTILES, kll.get_quantiles(ranks, inclusive=True), strict=True))
            histogram = _histogram(kll, self.sketch.low, self.sketch.high, self.count)
        return ColumnStatistics(
            name=self.name, type=str(self.type), kind=self.kind, count=self.count,
            missing=self.missing, distinct=distinct, distinct_exact=exact,
            min=None if self.low is None else float(self.low),
            max=None if self.high is None else float(self.high),
            mean=mean, std=std, quantiles=quantiles, histogram=histogram, sketch=sketch)


def _histogram(sketch: Any, low: float, high: float, count: int) -> Histogram:
    """Equal-width bins between ``low`` and ``high`` (one when they are equal), from the sketch."""
    if math.isfinite(high - low):  # numpy's edges (np.histogram's)
        edges = np.unique(np.linspace(low, high, HISTOGRAM_BINS + 1))
    else:  # low (1 - t) + high t: high - low overflows
        steps = np.arange(HISTOGRAM_BINS + 1) / HISTOGRAM_BINS
        edges = np.unique(np.clip(low * (1 - steps) + high * steps, low, high))
    if edges.size < 2:
        return Histogram(edges=[low, high], counts=[count])
    shares = np.asarray(sketch.get_pmf(edges[1:-1].tolist()), dtype=np.float64)
    return Histogram(edges=[float(e) for e in edges], counts=_whole(shares * count, count))


def _whole(amounts: FloatArray, total: int) -> list[int]:
    """``amounts`` rounded to integers that sum to ``total`` (largest remainders first)."""
    amounts = np.maximum(amounts, 0.0)
    floors = np.floor(amounts).astype(np.int64)
    short = max(total - int(floors.sum()), 0)
    order = np.lexsort((np.arange(amounts.size), floors - amounts))  # largest remainder first
    floors[order[:short]] += 1
    return [int(c) for c in floors]


class _Frequencies:
    """Each value's count while there are at most MAX_TRACKED, then a Misra-Gries summary.

    The summary keeps MAX_TRACKED counters: merging a batch's exact counts adds them up, then
    subtracts the (MAX_TRACKED + 1)-th largest from all and drops those left at zero (Agarwal et
    al., "Mergeable summaries"): each count stays a lower bound within n / (MAX_TRACKED + 1).
    """

    def __init__(self) -> None:
        self.exact: dict[str, int] | None = {}
        self.values: Any = None  # the summary's values (a string array) and counts
        self.counts: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self.distinct: _Distinct | None = None

    def update(self, values: Any, counts: npt.NDArray[np.int64]) -> None:
        """Add a batch's distinct values (a string array) and their counts."""
        if self.exact is not None:
            if len(values) <= MAX_TRACKED:
                for value, count in zip(values.to_pylist(), counts.tolist(), strict=True):
                    self.exact[value] = self.exact.get(value, 0) + count
                if len(self.exact) <= MAX_TRACKED:
                    return
                values, counts = values.slice(0, 0), counts[:0]  # counted: now summarised
            self._leave_exact()
        assert self.distinct is not None
        self.distinct.update(_hash_strings(values))
        merged = pa.table({
            "value": pa.concat_arrays([self.values, values.cast(pa.string())]),
            "count": np.concatenate([self.counts, counts]),
        }).group_by("value", use_threads=False).aggregate([("count", "sum")])
        values = merged.column("value").combine_chunks()
        totals = _numpy(merged.column("count_sum").combine_chunks(), np.int64)
        if totals.size > MAX_TRACKED:  # Misra-Gries: less the (MAX_TRACKED + 1)-th largest
            cut = totals.size - MAX_TRACKED - 1
            totals = totals - np.partition(totals, cut)[cut]
            kept = totals > 0
            values, totals = values.filter(pa.array(kept)), totals[kept]
        self.values, self.counts = values, totals

    def _leave_exact(self) -> None:
        """From every value's count to the summary, and from the set of values to the sketch."""
        assert self.exact is not None
        self.values = pa.array(list(self.exact), pa.string())
        self.counts = np.fromiter(self.exact.values(), dtype=np.int64, count=len(self.exact))
        self.exact = None
        self.distinct = _Distinct()
        self.distinct.update(_hash_strings(self.values))

    def result(self, count: int) -> tuple[list[Frequency], dict[str, int] | None, int, bool]:
        """Top values, every value's count (None past MAX_TRACKED), distinct and exactness."""
        if self.exact is not None:
            pairs = [(v, c) for v, c in self.exact.items() if c > 0]
            distinct, exact = len(pairs), True
        else:
            assert self.distinct is not None
            pairs = list(zip(self.values.to_pylist(), self.counts.tolist(), strict=True))
            distinct, exact = self.distinct.result(count)
        pairs.sort(key=lambda pair: (-pair[1], pair[0]))
        top = [Frequency(value=v, count=c) for v, c in pairs[:TOP]]
        return top, dict(pairs) if self.exact is not None else None, distinct, exact


class _Strings(_Column):
    kind: StatisticsKind = "categorical"

    def __init__(self, name: str, arrow_type: Any):
        super().__init__(name, arrow_type)
        self.frequencies = _Frequencies()
        self.min_length: int | None = None
        self.max_length: int | None = None
        self.total_length = 0

    def update(self, column: Any) -> None:
        present = _present(column)
        self.missing += len(column) - len(present)
        if not len(present):
            return
        self.count += len(present)
        lengths = pc.utf8_length(present)
        shortest, longest = pc.min_max(lengths).as_py().values()
        self.min_length = _lower(self.min_length, shortest)
        self.max_length = _upper(self.max_length, longest)
        self.total_length += pc.sum(lengths).as_py()
        counted = pc.value_counts(present)
        values = counted.field("values")
        if longest > MAX_VALUE_CHARS:  # rare: long values only pay for the look at each value
            values = pa.array([value_key(v) for v in values.to_pylist()], pa.string())
        self.frequencies.update(values, _numpy(counted.field("counts"), np.int64))

    def result(self, rows: int) -> ColumnStatistics:
        top, categories, distinct, exact = self.frequencies.result(self.count)
        return ColumnStatistics(
            name=self.name, type=str(self.type), kind=_string_kind(distinct, rows),
            count=self.count, missing=self.missing, distinct=distinct, distinct_exact=exact,
            top=top, categories=categories, min_length=self.min_length,
            mean_length=self.total_length / self.count if self.count else None,
            max_length=self.max_length)


def value_key(value: str) -> str:
    """How a text value is counted and stored: itself, or its start, length and digest.

    Values longer than :data:`MAX_VALUE_CHARS` get the second form. A column of long texts
    (documents, serialized payloads) with few distinct values would otherwise keep every one of
    them whole in memory and in ``statistics.json``, which each version stores. The key of a
    value is the same in every run, so new categories and drift are found as before.
    """
    if len(value) <= MAX_VALUE_CHARS:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{value[:KEPT_CHARS]}... ({len(value):,} characters, sha256 {digest})"


def _lower(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


def _upper(a: int | None, b: int) -> int:
    return b if a is None else max(a, b)


class _Booleans(_Column):
    kind: StatisticsKind = "boolean"

    def __init__(self, name: str, arrow_type: Any):
        super().__init__(name, arrow_type)
        self.true = 0

    def update(self, column: Any) -> None:
        super().update(column)
        self.true += pc.sum(_present(column)).as_py() or 0

    def result(self, rows: int) -> ColumnStatistics:
        counts = {"true": self.true, "false": self.count - self.true}
        pairs = sorted(((v, c) for v, c in counts.items() if c), key=lambda p: (-p[1], p[0]))
        return ColumnStatistics(
            name=self.name, type=str(self.type), kind=self.kind, count=self.count,
            missing=self.missing, distinct=len(pairs),
            top=[Frequency(value=v, count=c) for v, c in pairs], categories=dict(pairs))


class _Times(_Column):
    kind: StatisticsKind = "datetime"

    def __init__(self, name: str, arrow_type: Any):
        super().__init__(name, arrow_type)
        value_type = _value_type(arrow_type)
        # dates are counted as microsecond timestamps, ingest's canonical form
        self.cast = pa.timestamp("us") if pa.types.is_date(value_type) else value_type
        self.distinct = _Distinct()
        self.low: int | None = None
        self.high: int | None = None

    def update(self, column: Any) -> None:
        super().update(column)
        present = _present(column)
        if not len(present):
            return
        ticks = _numpy(present.cast(self.cast).cast(pa.int64()), np.int64)
        self.low = _lower(self.low, int(ticks.min()))
        self.high = _upper(self.high, int(ticks.max()))
        self.distinct.update(_mix(np.unique(ticks).view(np.uint64)))

    def result(self, rows: int) -> ColumnStatistics:
        distinct, exact = self.distinct.result(self.count)
        return ColumnStatistics(
            name=self.name, type=str(self.type), kind=self.kind, count=self.count,
            missing=self.missing, distinct=distinct, distinct_exact=exact,
            earliest=self._iso(self.low), latest=self._iso(self.high))

    def _iso(self, ticks: int | None) -> str | None:
        if ticks is None:
            return None
        instant = np.datetime64(ticks, self.cast.unit)
        if self.cast.tz:  # an instant with a time zone: written in UTC
            return str(np.datetime_as_string(instant, unit="auto", timezone="UTC"))
        return str(np.datetime_as_string(instant, unit="auto"))


_ACCUMULATORS: dict[StatisticsKind, type[_Column]] = {
    "numeric": _Numbers, "categorical": _Strings, "boolean": _Booleans, "datetime": _Times,
}


# -- the pass over the file -------------------------------------------------------------------
def compute_statistics(
    path: str, *, columns: Sequence[str] | None = None, batch_rows: int = BATCH_ROWS
) -> TableStatistics:
    """Every column's statistics (or ``columns``', in that order) in one pass over ``path``.

    ``path`` is a Parquet file (the ingest snapshot), read ``batch_rows`` rows at a time: memory
    holds one batch (and one row group of the file) plus a bounded state per column, whatever
    the number of rows. See the module's docstring for what each kind of column gets.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be a positive integer. Got {batch_rows!r} instead.")
    # pre_buffer=False: pre-buffering keeps every column chunk read until the file is closed,
    # so memory would grow with the file
    with pq.ParquetFile(path, pre_buffer=False) as parquet:
        return _pass(parquet, path, columns, batch_rows)


def _pass(parquet: Any, path: str, columns: Sequence[str] | None,
          batch_rows: int) -> TableStatistics:
    schema = parquet.schema_arrow
    names = list(schema.names)
    if columns is None:
        wanted = list(range(len(names)))
    else:
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise SchemaError(
                f"The columns of statistics must be columns of {path!r}. Got {unknown!r} "
                f"instead; its columns are {names!r}.")
        wanted = [i for c in dict.fromkeys(columns) for i, n in enumerate(names) if n == c]
    if not wanted:
        return TableStatistics(rows=parquet.metadata.num_rows, columns=[])
    accumulators = [
        _ACCUMULATORS.get(column_kind(schema.field(i).type), _Column)(
            names[i], schema.field(i).type) for i in wanted]
    # by name, in the order wanted; a file with repeated names is read whole, picked by position
    by_name = len(set(names)) == len(names)
    rows = 0
    for batch in parquet.iter_batches(
            batch_size=batch_rows, columns=[names[i] for i in wanted] if by_name else None):
        rows += batch.num_rows
        arrays = batch.columns if by_name else [batch.column(i) for i in wanted]
        for accumulator, array in zip(accumulators, arrays, strict=True):
            accumulator.update(array)
    return TableStatistics(rows=rows, columns=[a.result(rows) for a in accumulators])


# -- reading the statistics back --------------------------------------------------------------
def sketch_of(stats: ColumnStatistics) -> kll_doubles_sketch | None:
    """The column's KLL sketch (a ``datasketches.kll_doubles_sketch``); None when it has none.

    Numeric columns with at least one value have one.
    """
    if not stats.sketch:
        return None
    return kll_doubles_sketch.deserialize(base64.b64decode(stats.sketch))


def cdf(stats: ColumnStatistics, points: Sequence[float]) -> list[float]:
    """The share of the column's values at or below each of ``points``, from its sketch.

    Exact while the column has at most 200 values; within the sketch's rank error (1.33 %, 99 %
    confidence) beyond. Points need not be sorted; -inf gives 0 and inf gives 1.
    """
    sketch = sketch_of(stats)
    if sketch is None or sketch.is_empty():
        raise SchemaError(
            f"The column {stats.name!r} must be a numeric column with values to compute a "
            f"distribution from. Got a {stats.kind} column with {stats.count} value(s) instead.")
    shares = []
    for point in points:
        point = float(point)
        if math.isnan(point):
            raise ValueError(f"The points of cdf must be numbers. Got {point!r} instead.")
        shares.append(float(sketch.get_rank(point, inclusive=True)))
    return shares
