"""One data version for the same rows, whatever the source, format or file split.

The same table, with every kind of value that tends to differ between formats (booleans with and
without nulls, integers with nulls, NaN and infinities, integers past 2**53, negative zero, naive
and zoned timestamps with fractional seconds, dates, unicode and empty text, text that looks like
numbers, a column with no value, decimals), is written as CSV, TSV, gzipped CSV, Parquet, JSON
Lines (plain and gzipped), a folder and a ``gs://`` prefix of mixed parts, a PostgreSQL table and
a paginated JSON API; every source must give one data version and one snapshot. The tests after
it pin each disagreement found and fixed, and the differences that are inherent to a format.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.contracts import IngestResult
from keel.errors import SourceError
from keel.ingest import ingest
from keel.sources import SourceOptions

try:
    from http_api import JsonApi
    from postgres_server import PostgresServer, postgres
except ImportError:  # tests/ imported as a package
    from tests.http_api import JsonApi
    from tests.postgres_server import PostgresServer, postgres

__all__ = ["postgres"]  # the fixture, used by name

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "credit.csv"
BERLIN = ZoneInfo("Europe/Berlin")
INF = float("inf")

#: The rows, as Python values (what a database driver hands back).
COLUMNS: dict[str, tuple[pa.DataType, str, list[Any]]] = {  # name: (Parquet type, SQL type, values)
    "k": (pa.int64(), "integer", [1, 2, 3, 4, 5, 6]),
    "flag": (pa.bool_(), "boolean", [True, False, True, True, False, False]),
    "flag_null": (pa.bool_(), "boolean", [True, None, False, None, True, False]),
    "count": (pa.int64(), "bigint", [3, None, -7, 0, None, 12]),
    "score": (pa.float64(), "double precision", [1.5, math.nan, INF, -INF, 0.1, None]),
    "big": (pa.int64(), "bigint", [2**53 + 1, -(2**62) - 7, 9007199254740993, 5, 0, -1]),
    "zero": (pa.float64(), "double precision", [-0.0, 0.0, 1.25, -0.0, -2.5, 3.0]),
    "at": (pa.timestamp("us"), "timestamp", [
        datetime(2024, 1, 31, 10, 15), datetime(2023, 5, 1, 0, 0, 0, 123456), None,
        datetime(1969, 7, 20, 20, 17, 40), datetime(2000, 2, 29, 23, 59, 59, 500000),
        datetime(2024, 3, 31, 2, 30)]),
    "at_utc": (pa.timestamp("us", tz="UTC"), "timestamptz", [
        datetime(2024, 1, 31, 10, 15, tzinfo=UTC), None,
        datetime(2023, 5, 1, 0, 0, 0, 500000, tzinfo=UTC),
        datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC),
        datetime(2024, 10, 27, 1, 30, 0, 250, tzinfo=UTC), None]),
    "at_berlin": (pa.timestamp("us", tz="Europe/Berlin"), "timestamptz", [
        datetime(2024, 1, 31, 10, 15, 0, 1000, tzinfo=BERLIN),
        datetime(2023, 7, 1, 12, 0, tzinfo=BERLIN), None,
        datetime(2024, 10, 27, 2, 30, tzinfo=BERLIN),  # the hour that happens twice
        datetime(1969, 7, 20, 21, 17, 40, tzinfo=BERLIN),
        datetime(2024, 3, 31, 3, 30, 0, 999999, tzinfo=BERLIN)]),
    "day": (pa.date32(), "date", [date(2024, 1, 31), date(2023, 5, 1), None,
                                  date(1969, 7, 20), date(2000, 2, 29), date(2024, 12, 31)]),
    "text": (pa.string(), "text", ["José", "", "日本語 😀", None, "a,b \"q\"", "line\nbreak"]),
    "code": (pa.string(), "text", ["abc", "007", "1e5", "12", None, "0.50"]),
    "empty": (pa.float64(), "integer", [None] * 6),  # typed, with no value (SQL: integer)
    "amount": (pa.decimal128(12, 3), "numeric(12,3)", [
        Decimal("1.100"), Decimal("-2.500"), None, Decimal("123456789.125"), Decimal("443.900"),
        Decimal("0.001")]),
}
NAMES = list(COLUMNS)
ROWS = [dict(zip(NAMES, values, strict=True))
        for values in zip(*(values for _, _, values in COLUMNS.values()), strict=True)]


def arrow_table(rows: list[dict[str, Any]] = ROWS) -> pa.Table:
    return pa.table({name: pa.array([row[name] for row in rows], type=type_)
                     for name, (type_, _, _) in COLUMNS.items()})


def json_value(value: Any) -> Any:
    """A value as a JSON writer (Python's json module) holds it: ISO 8601 text, floats."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def jsonl_text(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps({k: json_value(v) for k, v in row.items()}, ensure_ascii=False)
                   + "\n" for row in rows)


def csv_text(rows: list[dict[str, Any]], sep: str = ",") -> str:
    """The rows as pandas writes them (offsets for zoned timestamps, "" for a missing value)."""
    # integers with a null as pandas' nullable Int64 ("3", not "3.0": a float column's text)
    mapper = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get
    return arrow_table(rows).to_pandas(types_mapper=mapper).to_csv(index=False, sep=sep)


def write(path: Path, rows: list[dict[str, Any]] = ROWS) -> str:
    """``rows`` in the format ``path``'s name says."""
    name = path.name
    if name.endswith(".parquet"):
        pq.write_table(arrow_table(rows), path)
        return str(path)
    text = jsonl_text(rows) if ".jsonl" in name else csv_text(rows, "\t" if ".tsv" in name
                                                              else ",")
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    return str(path)


#: The folder's parts: each format once, rows split across them.
PARTS = {"part-0.csv": ROWS[:2], "part-1.parquet": ROWS[2:4], "part-2.jsonl.gz": ROWS[4:]}


def normalized(path: Path) -> list[dict[str, Any]]:
    """A snapshot's rows, zoned timestamps as UTC instants (Parquet keeps Europe/Berlin, CSV
    offsets are UTC), negative zero told apart from zero."""
    def plain(value: Any) -> Any:
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC)
        if isinstance(value, float) and value == 0:
            return math.copysign(1, value) * 0.0, math.copysign(1, value)
        return value

    return [{k: plain(v) for k, v in row.items()} for row in pq.read_table(path).to_pylist()]


def upload(bucket: str, files: dict[str, bytes]) -> None:
    from google.cloud import storage

    client = storage.Client()
    for name, content in files.items():
        client.bucket(bucket).blob(name).upload_from_string(content)


def sql_table(server: PostgresServer, name: str, columns: dict[str, str],
              rows: list[dict[str, Any]]) -> None:
    """Table ``name`` with ``columns`` (name: SQL type) holding ``rows``."""
    server.execute(f'DROP TABLE IF EXISTS "{name}"')
    declared = ", ".join(f'"{column}" {type_}' for column, type_ in columns.items())
    server.execute(f'CREATE TABLE "{name}" ({declared})')
    with server.connect() as conn, conn.cursor() as cursor:
        marks = ", ".join(["%s"] * len(columns))
        cursor.executemany(f'INSERT INTO "{name}" VALUES ({marks})',
                           [tuple(row[c] for c in columns) for row in rows])


@pytest.fixture
def api() -> Iterator[JsonApi]:
    yield from JsonApi.running()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")


# -- the matrix ----------------------------------------------------------------------------------
def test_the_same_rows_have_one_version_and_one_snapshot_from_every_source(
        tmp_path, postgres, api, request):
    sources: dict[str, tuple[str, SourceOptions]] = {}
    for name in ("data.csv", "data.tsv", "data.csv.gz", "data.parquet", "data.jsonl",
                 "data.jsonl.gz"):
        sources[name] = (write(tmp_path / name), SourceOptions())
    folder = tmp_path / "folder"
    folder.mkdir()
    for name, rows in PARTS.items():
        write(folder / name, rows)
    sources["folder"] = (str(folder), SourceOptions())
    sql_table(postgres, "matrix", {n: sql for n, (_, sql, _) in COLUMNS.items()}, ROWS)
    query = "SELECT " + ", ".join(f'"{n}"' for n in NAMES) + " FROM matrix ORDER BY k"
    sources["postgresql"] = (postgres.url(), SourceOptions(query=query))
    records = [{k: json_value(v) for k, v in row.items()} for row in ROWS]
    api.serve_body_links("/rows", [records[:3], records[3:5], records[5:]])
    sources["api"] = (api.url("/rows"), SourceOptions())

    results: dict[str, IngestResult] = {}
    snapshots: dict[str, list[dict[str, Any]]] = {}
    for label, (uri, options) in sources.items():
        out = tmp_path / f"{label}.snapshot.parquet"
        results[label] = ingest(uri, str(out), options=options)
        snapshots[label] = normalized(out)

    versions = {label: result.data_version for label, result in results.items()}
    assert len(set(versions.values())) == 1, versions
    reference = snapshots["data.parquet"]
    for label, rows in snapshots.items():
        assert rows == reference, label
    assert reference[2]["amount"] is None and reference[4]["amount"] == 443.9
    assert all(row["empty"] is None for row in reference)
    schema = pq.read_schema(tmp_path / "data.parquet.snapshot.parquet")
    assert schema.field("empty").type == pa.null() and schema.field("amount").type == pa.float64()
    # what the manifest records: source, query, rows, parts and the version
    for label, result in results.items():
        assert (result.rows, result.columns) == (6, NAMES), label
        assert result.source == sources[label][0]
    assert results["postgresql"].query == query and results["postgresql"].format == "postgresql"
    assert (results["folder"].parts, results["folder"].format) == (3, "csv+parquet+jsonl")
    assert (results["api"].parts, results["api"].format, results["api"].query) == (3, "http", "")
    assert {results[n].query for n in ("data.csv", "folder")} == {""}


@pytest.mark.gcs
def test_a_gs_prefix_of_the_parts_has_the_version_of_the_whole_file(tmp_path, gcs_bucket):
    upload(gcs_bucket, {f"export/{name}": Path(write(tmp_path / name, rows)).read_bytes()
                        for name, rows in PARTS.items()})
    whole = ingest(write(tmp_path / "data.parquet"), str(tmp_path / "whole.parquet"))

    result = ingest(f"gs://{gcs_bucket}/export/", str(tmp_path / "prefix.parquet"))

    assert result.data_version == whole.data_version
    assert (result.rows, result.parts) == (6, 3)
    assert normalized(tmp_path / "prefix.parquet") == normalized(tmp_path / "whole.parquet")


# -- each disagreement found, fixed --------------------------------------------------------------
@pytest.mark.parametrize("stamp", [
    ["2024-01-31T10:15:00.000Z", "2023-05-01T00:00:00.500Z"],  # JavaScript's toISOString()
    ["2024-01-31T10:15:00+01:00", "2023-05-01T00:00:00.123456+02:00"],  # isoformat(), a zone
    ["2024-01-31T10:15:00", "2023-05-01T00:00:00.123456"],  # isoformat(), naive
])
def test_timestamps_with_fractional_seconds_are_timestamps_in_json_as_in_csv(
        tmp_path, api, stamp):
    # pyarrow's JSON reader keeps them as text (it parses whole seconds only): another version
    # than the CSV, the Parquet file or the database holding the same instants
    records = [{"at": stamp[0], "n": 1}, {"at": "", "n": 2}, {"at": stamp[1], "n": 3}]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "data.csv").write_text(
        "at,n\n" + "".join(f"{r['at']},{r['n']}\n" for r in records))
    api.serve_page_numbers("/at", [records[:2], records[2:]])

    csv = ingest(str(tmp_path / "data.csv"), str(tmp_path / "csv.parquet"))
    jsonl = ingest(str(tmp_path / "data.jsonl"), str(tmp_path / "jsonl.parquet"))
    from_api = ingest(api.url("/at?page=1"), str(tmp_path / "api.parquet"))

    assert jsonl.data_version == from_api.data_version == csv.data_version
    snapshot = pq.read_table(tmp_path / "jsonl.parquet")
    assert pa.types.is_timestamp(snapshot.schema.field("at").type)
    assert snapshot.schema.field("at").type.tz == ("UTC" if "+" in stamp[0] or "Z" in stamp[0]
                                                   else None)
    for name in ("api", "csv"):
        assert pq.read_table(tmp_path / f"{name}.parquet").equals(snapshot), name


def test_json_text_that_is_not_all_timestamps_stays_text(tmp_path):
    (tmp_path / "data.jsonl").write_text(
        '{"a": "2024-01-31T10:15:00.5", "b": "2024-01-31T10:15:00.5Z"}\n'
        '{"a": "soon", "b": "2024-01-31T10:15:00.5"}\n')  # b: with and without a zone
    ingest(str(tmp_path / "data.jsonl"), str(tmp_path / "s.parquet"))
    assert pq.read_schema(tmp_path / "s.parquet").types == [pa.string(), pa.string()]


def test_a_later_json_block_with_text_in_a_timestamp_column_is_an_error(tmp_path, monkeypatch):
    import keel.sources

    monkeypatch.setattr(keel.sources, "CSV_BLOCK_BYTES", 64)  # a few lines per block
    lines = ['{"at": "2024-01-31T10:15:00.5"}'] * 6 + ['{"at": "not a time at all"}']
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=r"not readable as jsonl \(after row 6\).*not a time"):
        ingest(str(tmp_path / "data.jsonl"), str(tmp_path / "s.parquet"))
    assert not (tmp_path / "s.parquet").exists()


def test_decimals_have_the_version_of_their_digits_in_a_csv(tmp_path):
    # pyarrow's decimal-to-float cast is off by one unit in the last place for 443.9
    digits = ["443.9", "0.1", "-2.5", "123456789.125", "", "99999999999.999"]
    (tmp_path / "data.csv").write_text("amount,n\n" + "".join(f"{d},1\n" for d in digits))
    values = [Decimal(d) if d else None for d in digits]
    pq.write_table(pa.table({"amount": pa.array(values, pa.decimal128(14, 3)), "n": [1] * 6}),
                   tmp_path / "data.parquet")
    folder = tmp_path / "folder"  # a decimal part and a float part meet as floats
    folder.mkdir()
    (folder / "a.csv").write_text("amount,n\n" + "".join(f"{d},1\n" for d in digits[:3]))
    pq.write_table(pa.table({"amount": pa.array(values[3:], pa.decimal128(14, 3)), "n": [1] * 3}),
                   folder / "b.parquet")

    versions = {name: ingest(str(tmp_path / name), str(tmp_path / f"{name}.snap")).data_version
                for name in ("data.csv", "data.parquet", "folder")}

    assert len(set(versions.values())) == 1, versions
    snapshot = pq.read_table(tmp_path / "data.parquet.snap")
    assert snapshot.schema.field("amount").type == pa.float64()
    assert snapshot.column("amount").to_pylist() == [443.9, 0.1, -2.5, 123456789.125, None,
                                                     99999999999.999]


@pytest.mark.parametrize("type_", [pa.float64(), pa.int64(), pa.bool_(), pa.string(),
                                   pa.timestamp("us"), pa.decimal128(5, 2)])
def test_a_column_with_no_value_has_one_version_whatever_its_declared_type(tmp_path, type_):
    # A CSV or JSON reader types a column with no value as null; Parquet keeps its declared type
    (tmp_path / "data.csv").write_text("n,empty\n1,\n2,\n3,\n")
    pq.write_table(pa.table({"n": [1, 2, 3], "empty": pa.nulls(3, type_)}),
                   tmp_path / "data.parquet")

    csv = ingest(str(tmp_path / "data.csv"), str(tmp_path / "csv.parquet"))
    parquet = ingest(str(tmp_path / "data.parquet"), str(tmp_path / "parquet.parquet"))

    assert parquet.data_version == csv.data_version
    assert pq.read_table(tmp_path / "parquet.parquet").equals(pq.read_table(tmp_path / "csv.parquet"))
    assert not list(tmp_path.glob("*.rewrite"))


def test_a_column_with_no_value_past_the_first_batch_is_typed_as_usual(tmp_path, monkeypatch):
    import keel.sources

    monkeypatch.setattr(keel.sources, "BATCH_ROWS", 2)
    pq.write_table(pa.table({"x": pa.array([None, None, None, 4.5], pa.float64()),
                             "n": [1, 2, 3, 4]}), tmp_path / "data.parquet")
    (tmp_path / "data.csv").write_text("x,n\n,1\n,2\n,3\n4.5,4\n")
    parquet = ingest(str(tmp_path / "data.parquet"), str(tmp_path / "s.parquet"))
    assert pq.read_schema(tmp_path / "s.parquet").field("x").type == pa.float64()
    assert parquet.data_version == ingest(str(tmp_path / "data.csv"),
                                          str(tmp_path / "c.parquet")).data_version


def test_a_database_column_that_is_null_throughout_has_the_version_of_its_csv(tmp_path, postgres):
    rows = [{"n": 1, "score": None, "flag": None, "at": None, "note": None},
            {"n": 2, "score": None, "flag": None, "at": None, "note": ""}]
    sql_table(postgres, "nothing", {"n": "integer", "score": "double precision",
                                    "flag": "boolean", "at": "timestamptz", "note": "text"}, rows)
    (tmp_path / "same.csv").write_text("n,score,flag,at,note\n1,,,,\n2,,,,\n")

    result = ingest(postgres.url(), str(tmp_path / "db.parquet"),
                    options=SourceOptions(table="nothing"))

    csv = ingest(str(tmp_path / "same.csv"), str(tmp_path / "csv.parquet"))
    assert result.data_version == csv.data_version
    assert pq.read_table(tmp_path / "db.parquet").equals(pq.read_table(tmp_path / "csv.parquet"))


def test_a_folder_of_timestamps_in_two_zones_and_times_in_two_units_is_one_table(tmp_path):
    # A CSV's offsets are read as UTC, a Parquet file keeps Europe/Berlin; a CSV's times are
    # time32[s], Parquet's time64[us]: each pair used to be "another kind of value" in the folder
    berlin = [datetime(2024, 1, 31, 10, 15, tzinfo=BERLIN), datetime(2024, 7, 1, 12, 0, tzinfo=BERLIN)]
    clock = [time(10, 15), time(23, 59, 59)]
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.csv").write_text("at,clock\n2024-01-31T10:15:00+01:00,10:15:00\n")
    pq.write_table(pa.table({"at": pa.array(berlin[1:], pa.timestamp("us", tz="Europe/Berlin")),
                             "clock": pa.array(clock[1:], pa.time64("us"))}),
                   folder / "b.parquet")
    pq.write_table(pa.table({"at": pa.array(berlin, pa.timestamp("us", tz="Europe/Berlin")),
                             "clock": pa.array(clock, pa.time64("us"))}),
                   tmp_path / "whole.parquet")

    result = ingest(str(folder), str(tmp_path / "s.parquet"))

    assert result.data_version == ingest(str(tmp_path / "whole.parquet"),
                                         str(tmp_path / "w.parquet")).data_version
    snapshot = pq.read_table(tmp_path / "s.parquet")
    assert snapshot.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert snapshot.column("at").to_pylist() == [b.astimezone(UTC) for b in berlin]
    assert snapshot.column("clock").to_pylist() == clock


def test_timestamps_with_and_without_a_zone_in_one_folder_are_still_an_error(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.csv").write_text("at\n2024-01-31T10:15:00+01:00\n")
    (folder / "b.csv").write_text("at\n2024-01-31T10:15:00\n")
    with pytest.raises(SourceError, match="b.csv' has dates or times"):
        ingest(str(folder), str(tmp_path / "s.parquet"))


def test_sklearn_datasets_have_one_version_in_every_format(tmp_path, postgres, api):
    from sklearn.datasets import load_diabetes, load_wine

    for loader in (load_wine, load_diabetes):
        frame = loader(as_frame=True).frame
        name = loader.__name__
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
        records = frame.to_dict("records")  # json.dumps writes each float exactly
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        sql_table(postgres, name, {"id": "integer", **{
            c: "bigint" if str(t).startswith("int") else "double precision"
            for c, t in frame.dtypes.items()}},
            [{"id": i, **{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}}
             for i, r in enumerate(records)])
        api.serve_link_header(f"/{name}", [records[i:i + 50] for i in range(0, len(records), 50)])
        columns = ", ".join(f'"{c}"' for c in frame.columns)

        versions = {
            fmt: ingest(str(tmp_path / f"{name}.{fmt}"), str(tmp_path / "s.parquet")).data_version
            for fmt in ("csv", "parquet", "jsonl")}
        versions["postgresql"] = ingest(postgres.url(), str(tmp_path / "s.parquet"), options=(
            SourceOptions(query=f"SELECT {columns} FROM {name} ORDER BY id"))).data_version
        versions["api"] = ingest(api.url(f"/{name}"), str(tmp_path / "s.parquet")).data_version

        assert len(set(versions.values())) == 1, (name, versions)


def test_the_bundled_sample_keeps_its_data_version(tmp_path):
    assert ingest(str(SAMPLE), str(tmp_path / "s.parquet")).data_version.startswith("66889f209375")


# -- inherent differences: what a format cannot tell ---------------------------------------------
def test_text_that_looks_like_numbers_is_numbers_in_a_csv_and_text_elsewhere(tmp_path):
    # A CSV cell has no type: "007" and "1e5" in a column with nothing else are numbers (7.0,
    # 100000.0), where Parquet, JSON, a database or an API keep the text. Different rows, so a
    # different version; a folder mixing the two says which file.
    (tmp_path / "data.csv").write_text("code\n007\n1e5\n")
    pq.write_table(pa.table({"code": ["007", "1e5"]}), tmp_path / "data.parquet")
    csv = ingest(str(tmp_path / "data.csv"), str(tmp_path / "c.parquet"))
    parquet = ingest(str(tmp_path / "data.parquet"), str(tmp_path / "p.parquet"))
    assert csv.data_version != parquet.data_version
    assert pq.read_table(tmp_path / "c.parquet").column("code").to_pylist() == [7.0, 100000.0]

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.csv").write_text("code\n007\n")
    pq.write_table(pa.table({"code": ["1e5"]}), folder / "b.parquet")
    with pytest.raises(SourceError) as caught:
        ingest(str(folder), str(tmp_path / "s.parquet"))
    assert "file" in str(caught.value) and "b.parquet" in str(caught.value)
    assert "has text (string) in column 'code'" in str(caught.value)


def test_whole_floats_written_without_a_point_are_integers_in_a_csv(tmp_path, postgres):
    # PostgreSQL's COPY (and JavaScript's JSON) write the double 127.0 as "127": read back, the
    # column is integers, another version than the table's doubles. pandas writes "127.0".
    sql_table(postgres, "whole", {"x": "double precision"}, [{"x": 127.0}, {"x": 3.0}])
    from_db = ingest(postgres.url(), str(tmp_path / "db.parquet"),
                     options=SourceOptions(table="whole"))
    (tmp_path / "copy.csv").write_text("x\n127\n3\n")
    (tmp_path / "pandas.csv").write_text(pd.DataFrame({"x": [127.0, 3.0]}).to_csv(index=False))
    assert ingest(str(tmp_path / "copy.csv"), str(tmp_path / "c.parquet")).data_version != (
        from_db.data_version)
    assert ingest(str(tmp_path / "pandas.csv"), str(tmp_path / "p.parquet")).data_version == (
        from_db.data_version)


def test_a_timestamp_and_its_instant_in_another_zone_have_one_version(tmp_path):
    # The version hashes instants: Berlin 10:15 and UTC 09:15 are one row; the snapshot keeps
    # the zone a source has (Parquet: Europe/Berlin, CSV offsets: UTC)
    instant = datetime(2024, 1, 31, 9, 15, tzinfo=UTC)
    pq.write_table(pa.table({"at": pa.array([instant.astimezone(BERLIN)],
                                            pa.timestamp("us", tz="Europe/Berlin"))}),
                   tmp_path / "berlin.parquet")
    (tmp_path / "utc.csv").write_text("at\n2024-01-31T09:15:00Z\n")
    berlin = ingest(str(tmp_path / "berlin.parquet"), str(tmp_path / "b.parquet"))
    utc = ingest(str(tmp_path / "utc.csv"), str(tmp_path / "u.parquet"))
    assert berlin.data_version == utc.data_version
    assert pq.read_schema(tmp_path / "b.parquet").field("at").type.tz == "Europe/Berlin"
    assert (pq.read_table(tmp_path / "b.parquet").column("at").to_pylist()[0]
            - instant) == timedelta(0)
