"""Property-based tests: any table, written as CSV or Parquet, goes through ingest and validate.

Hypothesis generates tables with every column type ingest reads (integers, floats with NaN and
infinities, booleans, text with unicode and control characters, dates), missing values anywhere,
and awkward column names (unicode, control characters, empty, duplicated). Each one is written
as CSV and as Parquet and must be ingested; validate must then either accept it (a readable
dataset and a valid schema document) or refuse it with a KeelError: any other exception is a bug.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keel.contracts import TableSchema
from keel.errors import KeelError
from keel.ingest import ingest
from keel.validate import validate

MAX_ROWS = 60
MAX_COLUMNS = 8
# validate's evaluation-size rules refuse every table this small by default (20 test rows):
# relaxed, so that generated tables reach the schema inference as well as the refusals.
SMALL_TABLES = {"min_test_rows": 1, "min_class_test_rows": 1}

# Any character but surrogates (not encodable in UTF-8): letters of every script, emoji,
# control characters (NUL, ESC, CR, LF, DEL...), quotes, commas and a byte-order mark.
CHARACTERS = st.characters(exclude_categories=("Cs",))
TEXT = st.text(CHARACTERS, max_size=12) | st.sampled_from(
    ["", " ", "NA", "null", "nan", "1", "true", "2024-01-31", '"', ",", "\r\n", "\x1b[31m"]
)
# Names: ordinary ones (so that tables are often valid), awkward ones, and "" (duplicates arise
# from drawing the same one twice).
NAMES = st.sampled_from(["y", "label", "x", "é", ""]) | st.text(CHARACTERS, max_size=8)


#: Column kinds: their Arrow type, and how to draw one of their values.
KINDS: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "int": (pa.int64(), st.integers(-(2**63), 2**63 - 1) | st.integers(-3, 3)),
    "float": (pa.float64(), st.floats(allow_nan=True, allow_infinity=True) | st.just(0.5)),
    "bool": (pa.bool_(), st.booleans()),
    "text": (pa.string(), TEXT),
    "date": (pa.date32(), st.dates(date(1, 1, 1), date(9999, 12, 31))),
}


@dataclass(frozen=True)
class Table:
    """A generated table: names (maybe repeated), column kinds, rows and the target to ask for."""

    names: list[str]
    kinds: list[str]  # keys of KINDS
    columns: list[list[Any]]  # None is a missing value
    target: str
    quoted: list[bool]  # quote every CSV cell of this column, or only where needed

    @property
    def rows(self) -> int:
        return len(self.columns[0])

    def arrow(self) -> pa.Table:
        arrays = [pa.array(column, KINDS[kind][0])
                  for column, kind in zip(self.columns, self.kinds, strict=True)]
        return pa.Table.from_arrays(arrays, names=self.names)


@st.composite
def tables(draw: st.DrawFn) -> Table:
    """Half wild tables (mostly refused), half plausible ones (mostly accepted).

    A plausible table has unique names, 20 rows or more, and a target drawn from two or three
    values that are rarely missing; its other columns and its names are as awkward as any.
    """
    plausible = draw(st.booleans())
    width = draw(st.integers(2 if plausible else 1, MAX_COLUMNS))
    rows = draw(st.integers(20 if plausible else 0, MAX_ROWS))
    names = draw(st.lists(NAMES, min_size=width, max_size=width))
    if plausible or draw(st.booleans()):  # unique, still awkward: a repeated name gets a number
        names = [name if name not in names[:i] else f"{name}{i}" for i, name in enumerate(names)]
    kinds = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=width, max_size=width))
    target_index = draw(st.integers(0, width - 1))
    if plausible:  # a target Keel can predict, under a name that is not blank
        kinds[target_index] = draw(st.sampled_from(["bool", "float", "int", "text"]))
        if not names[target_index].strip():
            names[target_index] = f"target{names[target_index]}"
    columns = []
    for index, kind in enumerate(kinds):
        is_target = plausible and index == target_index
        values = KINDS[kind][1]
        if not is_target and kind != "bool" and draw(st.integers(0, 3)) == 0:
            # A value per row (identifiers, free text), when there are enough distinct values.
            distinct = st.lists(values, min_size=rows, max_size=rows, unique_by=repr)
            columns.append(draw(distinct | st.lists(values, min_size=rows, max_size=rows)))
            continue
        # Few distinct values as often as not, so that values (and classes) repeat.
        if is_target:  # two or three classes (or values)
            pool = draw(st.lists(values, min_size=2, max_size=2 if kind == "bool" else 3,
                                 unique_by=repr))
        else:
            pool = draw(st.lists(values, min_size=1, max_size=draw(st.sampled_from([3, 30]))))
        missing = draw(st.sampled_from([0.0, 0.1] if is_target else [0.0, 0.1, 0.5, 1.0]))
        if missing == 0:
            cells = st.sampled_from(pool)
        elif missing < 1:
            cells = st.sampled_from(pool) | st.sampled_from(pool) | st.none()
        else:
            cells = st.none()
        columns.append(draw(st.lists(cells, min_size=rows, max_size=rows)))
    if plausible:
        target = names[target_index]
    else:
        target = draw(st.sampled_from(names) | st.just("no such column"))
    quoted = draw(st.lists(st.booleans(), min_size=width, max_size=width))
    return Table(names, kinds, columns, target, quoted)


def csv_cell(value: Any, quote: bool) -> str:
    """One CSV cell as pandas or a spreadsheet writes it: missing is empty, quotes doubled."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = "nan" if math.isnan(value) else repr(value)  # repr round-trips exactly
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value)
    if quote or any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_csv(table: Table, path: Path) -> None:
    def line(cells: list[str]) -> str:
        # A line of one empty cell would be a blank line, which CSV readers skip: quote it.
        return ",".join(cells) if cells != [""] else '""'

    # A byte-order mark opening the file is read as one, not as part of the first name: quote
    # a name that starts with it, as any name may be.
    lines = [line([csv_cell(name, name.startswith("\ufeff")) for name in table.names])]
    for row in zip(*table.columns, strict=True):
        lines.append(line([csv_cell(v, q) for v, q in zip(row, table.quoted, strict=True)]))
    path.write_bytes(("\n".join(lines) + "\n").encode())


def check_validate(snapshot: Path, table: Table, work: Path) -> TableSchema | None:
    """Validate the snapshot: a TableSchema that holds, or None when refused with a KeelError."""
    dataset = work / "dataset.parquet"
    try:
        schema = validate(str(snapshot), table.target, "auto", str(dataset), **SMALL_TABLES)
    except KeelError as exc:
        event(f"validate refused: {type(exc).__name__}")  # --hypothesis-show-statistics
        return None
    event(f"validate accepted: {schema.task}")
    assert isinstance(schema, TableSchema)
    assert TableSchema.from_json(schema.to_json()) == schema  # a document the next stage reads
    kept = pq.read_table(dataset)
    assert kept.num_rows == schema.rows == schema.rows_in - schema.rows_dropped_missing_target
    assert schema.rows_in == table.rows and schema.target in kept.column_names
    assert kept[schema.target].null_count == 0
    assert [c.name for c in schema.columns] == kept.column_names
    return schema


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tables())
def test_any_table_is_ingested_and_then_validated_or_refused_with_a_keel_error(table: Table):
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        write_csv(table, work / "table.csv")
        pq.write_table(table.arrow(), work / "table.parquet")
        results = {}
        for name in ("table.csv", "table.parquet"):
            snapshot = work / f"{name}.snapshot.parquet"
            result = ingest(str(work / name), str(snapshot))  # every generated table is readable
            assert (result.rows, result.columns) == (table.rows, table.names), name
            results[name] = (result, pq.ParquetFile(snapshot).read())  # names may repeat
            check_validate(snapshot, table, work)

        # Where CSV's type inference gives the Parquet file's types, the rows are the same: so
        # must be the snapshot and the data version.
        (from_csv, csv_rows), (from_parquet, parquet_rows) = results.values()
        if csv_rows.schema.equals(parquet_rows.schema):
            event("CSV and Parquet compared")
            assert csv_rows.equals(parquet_rows)
            assert from_csv.data_version == from_parquet.data_version
