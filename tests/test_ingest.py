"""Unit tests of keel.ingest: formats, data version, snapshot and the errors a user can cause."""

from __future__ import annotations

import gzip
import json
import os
import re
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import keel.sources as sources_module
from keel.contracts import IngestResult
from keel.errors import ParameterError, SourceError
from keel.ingest import ingest
from keel.sources import detect_format


def sample() -> pd.DataFrame:
    """Integers (one missing), floats, strings and booleans: every type each format can hold."""
    return pd.DataFrame(
        {
            "age": pd.array([31, 45, None, 22, 58, 39], dtype="Int64"),
            "income": [1200.5, 880.25, 430.0, 2210.75, 99.5, 1500.0],
            "home": ["rent", "owner", "rent", "parents", "owner", "other"],
            "married": [True, False, False, True, True, False],
        }
    )


def write(frame: pd.DataFrame, path: Path, **parquet_options) -> str:
    """Write ``frame`` in the format its file name says."""
    name = path.name
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, **parquet_options)
    elif name.endswith(".jsonl"):
        path.write_text(frame.to_json(orient="records", lines=True))
    elif name.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz")):
        text = frame.to_csv(index=False, sep="\t" if ".tsv" in name else ",")
        if name.endswith(".gz"):
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
    else:  # pragma: no cover - a test bug
        raise AssertionError(name)
    return str(path)


def run(tmp_path: Path, source: str, **kwargs) -> IngestResult:
    return ingest(source, str(tmp_path / "snapshot.parquet"), **kwargs)


# --- data version ------------------------------------------------------------------------------

FORMATS = ["data.csv", "data.parquet", "data.jsonl", "data.csv.gz", "data.tsv", "data.tsv.gz"]


def test_same_rows_give_the_same_data_version_in_every_format(tmp_path):
    results = {name: run(tmp_path, write(sample(), tmp_path / name)) for name in FORMATS}

    versions = {name: r.data_version for name, r in results.items()}
    assert len(set(versions.values())) == 1, versions
    assert len(versions["data.csv"]) == 64 and int(versions["data.csv"], 16) >= 0
    assert {r.format for r in results.values()} == {"csv", "parquet", "jsonl"}
    for result in results.values():
        assert result.rows == 6
        assert result.columns == ["age", "income", "home", "married"]


def test_a_changed_value_changes_the_data_version(tmp_path):
    changed = sample()
    changed.loc[3, "income"] = 2210.5
    original = run(tmp_path, write(sample(), tmp_path / "a.parquet")).data_version
    assert run(tmp_path, write(changed, tmp_path / "b.parquet")).data_version != original


def test_a_changed_row_order_changes_the_data_version(tmp_path):
    swapped = sample().iloc[[1, 0, 2, 3, 4, 5]].reset_index(drop=True)
    original = run(tmp_path, write(sample(), tmp_path / "a.csv")).data_version
    assert run(tmp_path, write(swapped, tmp_path / "b.csv")).data_version != original


def test_a_renamed_column_changes_the_data_version(tmp_path):
    renamed = sample().rename(columns={"home": "housing"})
    original = run(tmp_path, write(sample(), tmp_path / "a.csv")).data_version
    assert run(tmp_path, write(renamed, tmp_path / "b.csv")).data_version != original


def test_parquet_row_groups_do_not_change_the_data_version(tmp_path):
    one = write(sample(), tmp_path / "one.parquet")
    small = write(sample(), tmp_path / "small.parquet", row_group_size=2)
    assert pq.ParquetFile(one).metadata.num_row_groups == 1
    assert pq.ParquetFile(small).metadata.num_row_groups == 3

    assert run(tmp_path, small).data_version == run(tmp_path, one).data_version


def test_batch_boundaries_do_not_change_the_data_version(tmp_path, monkeypatch):
    # Integers and booleans with their only missing value in one batch: the other batches must
    # hash 31 as 31 (not 31.0) and True as True (not an object), or the version depends on
    # where the batches were cut. No pandas metadata here, as in a file written by Spark.
    table = pa.table({
        "age": pa.array([31, 45, None, 22, 58, 39], pa.int32()),
        "married": pa.array([True, False, False, None, True, False]),
        "home": ["rent", "owner", None, "parents", "owner", "other"],
    })
    source = str(tmp_path / "data.parquet")
    pq.write_table(table, source)
    whole = run(tmp_path, source)
    monkeypatch.setattr(sources_module, "BATCH_ROWS", 2)
    batched = run(tmp_path, source)

    assert batched.rows == whole.rows == 6
    assert batched.data_version == whole.data_version


def test_csv_blocks_do_not_change_the_data_version(tmp_path, monkeypatch):
    source = write(sample(), tmp_path / "data.csv")
    whole = run(tmp_path, source)
    monkeypatch.setattr(sources_module, "CSV_BLOCK_BYTES", 64)  # a few rows per block
    import pyarrow.csv as pcsv

    blocks = pcsv.open_csv(source, read_options=pcsv.ReadOptions(block_size=64))
    assert sum(1 for _ in blocks) > 1
    assert run(tmp_path, source).data_version == whole.data_version


GOLDEN_CSV = (
    "age,income,home,married\n31,1200.5,rent,true\n45,880.25,owner,false\n,430.0,rent,false\n"
    "22,2210.75,parents,true\n"
)
GOLDEN_VERSION = "a3092a2ba5cf972ab91c21a4b7354337d8813abb28fe5c780d634f4865087927"


@pytest.mark.parametrize("name", ["golden.csv", "golden.parquet"])
def test_data_version_of_known_rows_never_changes(tmp_path, name):
    # Pinned: registered models record the data version they were trained on, so a change of the
    # hashing (or of what the readers hand to it) would make the same data look new.
    csv = tmp_path / "golden.csv"
    csv.write_text(GOLDEN_CSV)
    if name.endswith(".parquet"):
        import pyarrow.csv as pcsv

        pq.write_table(pcsv.read_csv(csv), tmp_path / name)
    assert run(tmp_path, str(tmp_path / name)).data_version == GOLDEN_VERSION


# Empty text cells, a date and an all-missing row: pinned since missing text and dates have one
# canonical form (null; a timestamp in microseconds) whatever the format.
GOLDEN_MISSING_CSV = "name,joined,score\nann,2024-01-31,0.5\n,2023-05-01,\n\"\",,1.5\n,,\n"
GOLDEN_MISSING_VERSION = "d90a2586c7f597beaed86536d4999a7b6e87176b41059ddee15f1751a0573ff5"


@pytest.mark.parametrize("name", ["golden.csv", "golden.jsonl", "golden.parquet"])
def test_data_version_of_known_rows_with_missing_values_never_changes(tmp_path, name):
    csv = tmp_path / "golden.csv"
    csv.write_text(GOLDEN_MISSING_CSV)
    rows = [{"name": "ann", "joined": "2024-01-31", "score": 0.5},
            {"name": None, "joined": "2023-05-01", "score": None},
            {"name": "", "joined": None, "score": 1.5},
            {"name": None, "joined": None, "score": None}]
    if name.endswith(".jsonl"):
        (tmp_path / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif name.endswith(".parquet"):
        table = pa.table({
            "name": pa.array([r["name"] for r in rows], pa.string()),
            "joined": pa.array([date(2024, 1, 31), date(2023, 5, 1), None, None], pa.date32()),
            "score": [0.5, float("nan"), 1.5, None],
        })
        pq.write_table(table, tmp_path / name)
    assert run(tmp_path, str(tmp_path / name)).data_version == GOLDEN_MISSING_VERSION


# --- encodings ---------------------------------------------------------------------------------

ACCENTED = pd.DataFrame({
    "name": ["José", "Læticia", "Zoë", "Ørjan"],
    "city": ["Zürich", "Besançon", "Ålesund", "Köln"],
    "visits": [3, 1, 4, 1],
})


def encoded(frame: pd.DataFrame, path: Path, encoding: str) -> str:
    """``frame`` as CSV or JSON Lines (by the name, optionally gzipped) in ``encoding``."""
    if ".jsonl" in path.name:
        text = frame.to_json(orient="records", lines=True, force_ascii=False)
    else:
        text = frame.to_csv(index=False)
    data = text.encode(encoding)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return str(path)


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-16", "utf-8-sig"])
@pytest.mark.parametrize("name", ["data.csv", "data.csv.gz", "data.jsonl", "data.jsonl.gz"])
def test_the_data_version_does_not_depend_on_the_encoding(tmp_path, encoding, name):
    reference = run(tmp_path, encoded(ACCENTED, tmp_path / "utf8.csv", "utf-8"))
    reference_table = pq.read_table(tmp_path / "snapshot.parquet")

    result = run(tmp_path, encoded(ACCENTED, tmp_path / name, encoding), encoding=encoding)

    assert result.data_version == reference.data_version
    assert (result.rows, result.columns) == (4, ["name", "city", "visits"])
    assert pq.read_table(tmp_path / "snapshot.parquet").equals(reference_table)


def test_parquet_ignores_the_encoding(tmp_path):
    source = write(ACCENTED, tmp_path / "data.parquet")
    assert run(tmp_path, source, encoding="latin-1") == run(tmp_path, source)


@pytest.mark.parametrize("name", ["data.csv", "data.csv.gz", "data.jsonl"])
def test_a_latin1_file_read_as_utf8_is_a_source_error_saying_where_and_how_to_fix(tmp_path, name):
    source = encoded(ACCENTED, tmp_path / name, "latin-1")
    with pytest.raises(SourceError) as caught:
        run(tmp_path, source)
    message = str(caught.value)
    assert message.startswith(f"[ingest] The source {source!r} is not readable as ")
    offset = Path(source).read_bytes().find(b"\xe9") if ".gz" not in name else None
    assert "byte 0xe9 at byte offset " in message and "is not valid utf-8 text" in message
    if offset is not None:
        assert f"at byte offset {offset} " in message
    assert "Pass --source-encoding latin-1 (or the file's encoding)." in message
    assert caught.value.stage == "ingest"


@pytest.mark.parametrize("encoding", ["klingon", "", "   "])
def test_an_unknown_encoding_is_a_parameter_error(tmp_path, encoding):
    source = write(sample(), tmp_path / "data.csv")
    with pytest.raises(ParameterError) as caught:
        run(tmp_path, source, encoding=encoding)
    assert "'source_encoding'" in str(caught.value)
    assert not (tmp_path / "snapshot.parquet").exists()


# --- missing values: one definition for every format -------------------------------------------

MISSING = pa.table({
    "name": pa.array(["ann", None, "bo", None, "cy"]),
    "count": pa.array([1, None, 3, None, 5], pa.int64()),
    "score": pa.array([0.5, 1.25, None, None, 2.0]),
    "member": pa.array([True, None, False, None, True]),
    "joined": pa.array([date(2024, 1, 31), date(2023, 5, 1), None, None, date(2022, 12, 24)]),
})
# Empty cells unquoted (row 2) and quoted (rows 3 and 4), in every column type.
MISSING_CSV = (
    "name,count,score,member,joined\n"
    "ann,1,0.5,true,2024-01-31\n"
    ",,1.25,,2023-05-01\n"
    '"bo",3,"",false,""\n'
    '"","","","",""\n'
    "cy,5,2.0,true,2022-12-24\n"
)


def write_missing(path: Path) -> str:
    """:data:`MISSING` in the format its name says: empty cells in CSV, nulls elsewhere."""
    if path.name.endswith(".parquet"):
        pq.write_table(MISSING, path)
    elif path.name.endswith(".jsonl"):
        rows = MISSING.to_pylist()
        path.write_text("".join(json.dumps(row, default=str) + "\n" for row in rows))
    elif path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(MISSING_CSV.encode()))
    else:
        path.write_text(MISSING_CSV)
    return str(path)


def test_missing_values_are_the_same_in_every_format(tmp_path):
    versions, tables = {}, {}
    for name in ["data.csv", "data.csv.gz", "data.parquet", "data.jsonl"]:
        snapshot = tmp_path / f"{name}.snapshot.parquet"
        versions[name] = ingest(write_missing(tmp_path / name), str(snapshot)).data_version
        tables[name] = pq.read_table(snapshot)

    assert len(set(versions.values())) == 1, versions
    reference = tables["data.parquet"]
    for name, table in tables.items():
        assert table.schema.equals(reference.schema), (name, table.schema)
        assert table.equals(reference), name
    assert {c: reference[c].null_count for c in reference.column_names} == {
        "name": 2, "count": 2, "score": 2, "member": 2, "joined": 2,
    }
    assert reference.schema.field("joined").type == pa.timestamp("us")


@pytest.mark.parametrize("name", ["data.parquet", "data.jsonl"])
def test_empty_text_and_nan_are_missing_in_every_format(tmp_path, name):
    with_empty = pa.table({"home": ["rent", "", None, "own"], "x": [1.0, float("nan"), 2.0, None]})
    with_nulls = pa.table({"home": ["rent", None, None, "own"], "x": [1.0, None, 2.0, None]})
    if name.endswith(".parquet"):
        pq.write_table(with_empty, tmp_path / name)
    else:  # JSON has no NaN: only the empty text
        with_empty = with_empty.set_column(1, "x", pa.array([1.0, None, 2.0, None]))
        (tmp_path / name).write_text(
            "".join(json.dumps(row) + "\n" for row in with_empty.to_pylist()))
    pq.write_table(with_nulls, tmp_path / "nulls.parquet")
    csv = tmp_path / "data.csv"
    csv.write_text("home,x\nrent,1.0\n,\n,2.0\nown,\n")

    result = run(tmp_path, str(tmp_path / name))

    assert pq.read_table(tmp_path / "snapshot.parquet").equals(with_nulls)
    assert result.data_version == run(tmp_path, str(tmp_path / "nulls.parquet")).data_version
    assert result.data_version == run(tmp_path, str(csv)).data_version


def test_empty_target_cells_are_missing_and_dropped_not_a_class(tmp_path):
    from keel.validate import validate

    lines = [f"{i % 7},{i % 5},{['yes', 'no'][i % 2] if i % 3 else ''}" for i in range(300)]
    source = tmp_path / "data.csv"
    source.write_text("a,b,label\n" + "\n".join(lines) + "\n")
    snapshot = tmp_path / "snapshot.parquet"
    ingest(str(source), str(snapshot))
    assert pq.read_table(snapshot)["label"].null_count == 100

    schema = validate(str(snapshot), "label", "auto", str(tmp_path / "valid.parquet"))

    assert schema.classes == ["no", "yes"]
    assert schema.rows_dropped_missing_target == 100 and schema.rows == 200


def test_dates_and_timestamps_have_one_form_whatever_the_format(tmp_path):
    frame = pd.DataFrame({
        "day": pd.to_datetime(["2024-01-31", "2023-05-01", None]),
        "at": pd.to_datetime(["2024-01-31 10:15:00", None, "2020-02-29 23:59:59"]),
        "n": [1, 2, 3],
    })
    (tmp_path / "data.csv").write_text(
        "day,at,n\n2024-01-31,2024-01-31 10:15:00,1\n2023-05-01,,2\n,2020-02-29 23:59:59,3\n")
    (tmp_path / "data.jsonl").write_text(
        '{"day": "2024-01-31", "at": "2024-01-31 10:15:00", "n": 1}\n'
        '{"day": "2023-05-01", "at": null, "n": 2}\n'
        '{"day": null, "at": "2020-02-29 23:59:59", "n": 3}\n')
    frame.to_parquet(tmp_path / "pandas.parquet")  # microseconds
    ms = pa.Table.from_pandas(frame, preserve_index=False)
    ms = ms.cast(pa.schema([("day", pa.date32()), ("at", pa.timestamp("ms")), ("n", pa.int64())]))
    pq.write_table(ms, tmp_path / "spark.parquet")  # a date and milliseconds, as Spark writes

    versions = {name: run(tmp_path, str(tmp_path / name)).data_version
                for name in ["data.csv", "data.jsonl", "pandas.parquet", "spark.parquet"]}

    assert len(set(versions.values())) == 1, versions
    snapshot = pq.read_table(tmp_path / "snapshot.parquet")
    assert snapshot.schema.field("day").type == snapshot.schema.field("at").type == pa.timestamp("us")


# --- bounded messages --------------------------------------------------------------------------


def error_of(tmp_path: Path, name: str, content: bytes, **kwargs) -> str:
    """The message of ingesting ``content`` as ``name``, the temporary folder left out."""
    source = tmp_path / name
    source.write_bytes(content)
    with pytest.raises(SourceError) as caught:
        run(tmp_path, str(source), **kwargs)
    return str(caught.value).replace(str(tmp_path), "")


def test_a_json_document_is_a_short_error_saying_what_json_lines_is(tmp_path):
    document = {"data": [{f"key{i}": "v" * 10} for i in range(3000)], "more": {"a": [1]}}
    message = error_of(tmp_path, "export.json", json.dumps(document, indent=2).encode())
    assert len(message) < 500, len(message)
    assert "'data'" in message and "nested" in message and "characters, cut" in message
    assert "JSON Lines holds one flat object per line" in message


def test_many_nested_columns_are_listed_briefly(tmp_path):
    row = {f"c{i}": [i] for i in range(40)}
    message = error_of(tmp_path, "t.jsonl", (json.dumps(row) + "\n").encode())
    assert "'c0' (list<item: int64>)" in message and "and 35 more" in message
    assert len(message) < 500


def test_a_malformed_csv_row_is_echoed_short_and_escaped(tmp_path):
    row = b"3,4,\x1b[31m" + b"x" * 50_000
    message = error_of(tmp_path, "bad.csv", b"a,b\n1,2\n" + row + b"\n")
    assert len(message) < 300, len(message)
    assert "Expected 2 columns, got 3: '3,4,\\x1b[31mxxx" in message
    assert message.endswith("xxx'... (cut)")  # pyarrow cut it: its length is unknown
    assert "\x1b" not in message


def test_a_bad_value_is_echoed_short_with_its_column_name(tmp_path, monkeypatch):
    monkeypatch.setattr(sources_module, "CSV_BLOCK_BYTES", 256)  # typed int64 by the first block
    content = b"id,age\n" + b"1,2\n" * 200 + b"2," + b"y" * 200 + b"\n"
    message = error_of(tmp_path, "t.csv", content)
    assert "In CSV column #1 ('age'): CSV conversion error to int64: invalid value 'yyy" in message
    assert "(200 characters, cut)" in message and len(message) < 300


def test_a_read_that_fails_midway_leaves_no_snapshot_and_says_how_far_it_got(tmp_path,
                                                                              monkeypatch):
    """The snapshot written so far was left at the output path: a part of the table that a
    later look (keel validate's --output folder, a rerun) could take for all of it."""
    monkeypatch.setattr(sources_module, "CSV_BLOCK_BYTES", 256)  # several batches before the row
    content = b"id,age\n" + b"1,2\n" * 500 + b"3,4,5\n"
    message = error_of(tmp_path, "t.csv", content)
    assert re.search(r"not readable as csv \(after row [1-9][0-9,]*\): ", message), message
    assert "Expected 2 columns, got 3: '3,4,5'" in message
    assert not (tmp_path / "snapshot.parquet").exists()


@pytest.mark.parametrize(("name", "expected"), [
    ("t.csv", "a row is longer than 1 MiB (is a quote left open?)"),
    ("t.jsonl", "a line is longer than 1 MiB; JSON Lines holds one object per line"),
])
def test_a_row_longer_than_a_block_is_a_short_error(tmp_path, monkeypatch, name, expected):
    monkeypatch.setattr(sources_module, "CSV_BLOCK_BYTES", 1 << 20)
    if name.endswith(".csv"):
        content = b'a,b\n1,2\n"' + b"x," * (1 << 20) + b"\n"
    else:
        content = b'{"a": 1}\n{"a": "' + b"x" * (2 << 20) + b'"}\n'
    message = error_of(tmp_path, name, content)
    assert expected in message and len(message) < 300


def test_a_long_reader_message_is_cut(tmp_path, memory_scheme_broken):
    message = memory_scheme_broken("x" * 5000 + "\nsecond line")
    assert message.startswith("[ingest] The source 'mem://x' is not readable as mem: xxx")
    assert "(message cut, 5,000 characters)" in message and len(message) < 400


@pytest.fixture
def memory_scheme_broken(monkeypatch, tmp_path):
    """Register ``mem://`` as a source whose read fails with a given message; the error text."""
    import contextlib

    from keel.sources import SOURCES, Source, SourceRows, SourceScheme

    def fail_with(text: str) -> str:
        class Broken(Source):
            @contextlib.contextmanager
            def open(self):
                def batches():
                    raise pa.ArrowInvalid(text)
                    yield  # pragma: no cover - a generator

                yield SourceRows(schema=pa.schema({"a": pa.int64()}), batches=batches(),
                                 format=self.format)

        monkeypatch.setitem(SOURCES, "mem", SourceScheme(Broken, "mem://name"))
        with pytest.raises(SourceError) as caught:
            ingest("mem://x", str(tmp_path / "m.parquet"))
        return str(caught.value)

    return fail_with


# --- result and snapshot -----------------------------------------------------------------------


def test_result_counts_rows_and_lists_columns(tmp_path):
    result = run(tmp_path, write(sample(), tmp_path / "data.jsonl"))

    assert result == IngestResult(
        source=str(tmp_path / "data.jsonl"), format="jsonl", data_version=result.data_version,
        rows=6, columns=["age", "income", "home", "married"],
    )
    decoded = json.loads(result.to_json())
    assert decoded["rows"] == 6 and isinstance(decoded["rows"], int)
    assert decoded["data_version"] == result.data_version


def test_snapshot_is_zstd_parquet_with_the_same_values(tmp_path):
    snapshot = tmp_path / "snapshot.parquet"
    ingest(write(sample(), tmp_path / "data.csv"), str(snapshot))

    metadata = pq.ParquetFile(snapshot).metadata
    codecs = {metadata.row_group(g).column(c).compression
              for g in range(metadata.num_row_groups) for c in range(metadata.num_columns)}
    assert codecs == {"ZSTD"}
    read = pq.read_table(snapshot).to_pandas()
    expected = sample()
    assert list(read.columns) == list(expected.columns)
    assert read["age"].isna().tolist() == [False, False, True, False, False, False]
    assert read["age"].dropna().tolist() == [31, 45, 22, 58, 39]
    assert read["income"].tolist() == expected["income"].tolist()
    assert read["home"].tolist() == expected["home"].tolist()
    assert read["married"].tolist() == expected["married"].tolist()


def test_header_only_csv_gives_zero_rows(tmp_path):
    source = tmp_path / "empty.csv"
    source.write_text("age,income,home\n")
    snapshot = tmp_path / "snapshot.parquet"

    result = ingest(str(source), str(snapshot))

    assert result.rows == 0
    assert result.columns == ["age", "income", "home"]
    table = pq.read_table(snapshot)
    assert table.num_rows == 0 and table.column_names == ["age", "income", "home"]


# --- format detection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.csv", "csv"), ("A.CSV", "csv"), ("a.tsv", "csv"), ("a.csv.gz", "csv"),
     ("a.parquet", "parquet"), ("a.pq", "parquet"), ("a.jsonl", "jsonl"), ("a.ndjson", "jsonl"),
     ("a.json", "jsonl"), ("gs://bucket/x/a.jsonl.gz", "jsonl")],
)
def test_format_is_detected_from_the_name(name, expected):
    assert detect_format(name) == expected


def test_explicit_format_overrides_the_extension(tmp_path):
    csv_named_txt = tmp_path / "export.txt"
    csv_named_txt.write_text(sample().to_csv(index=False))
    jsonl_named_csv = tmp_path / "mislabelled.csv"
    jsonl_named_csv.write_text(sample().to_json(orient="records", lines=True))
    reference = run(tmp_path, write(sample(), tmp_path / "data.csv")).data_version

    from_txt = run(tmp_path, str(csv_named_txt), fmt="csv")
    from_mislabelled = run(tmp_path, str(jsonl_named_csv), fmt="jsonl")

    assert (from_txt.format, from_txt.rows) == ("csv", 6)
    assert (from_mislabelled.format, from_mislabelled.rows) == ("jsonl", 6)
    assert from_txt.data_version == from_mislabelled.data_version == reference


def test_explicit_format_that_does_not_match_the_content_is_a_source_error(tmp_path):
    source = write(sample(), tmp_path / "data.csv")
    with pytest.raises(SourceError) as caught:
        run(tmp_path, source, fmt="parquet")
    assert str(caught.value).startswith("[ingest] ")
    assert "data.csv" in str(caught.value) and "parquet" in str(caught.value)


@pytest.mark.parametrize("fmt", ["xlsx", "CSV", "", "json"])
def test_invalid_format_parameter_is_a_parameter_error(tmp_path, fmt):
    source = write(sample(), tmp_path / "data.csv")
    with pytest.raises(ParameterError) as caught:
        run(tmp_path, source, fmt=fmt)
    message = str(caught.value)
    assert message.startswith("[ingest] ")
    assert "'source_format'" in message and repr(fmt) in message
    assert "csv, parquet, jsonl" in message


# --- sources that cannot be read ---------------------------------------------------------------


def test_missing_file_is_a_source_error(tmp_path):
    missing = str(tmp_path / "nowhere" / "data.csv")
    with pytest.raises(SourceError) as caught:
        run(tmp_path, missing)
    assert str(caught.value).startswith("[ingest] ")
    assert missing in str(caught.value)
    assert caught.value.stage == "ingest"


@pytest.mark.parametrize("source", ["s3://bucket/t.csv", "ftp://example.com/t.csv"])
def test_unsupported_scheme_is_a_parameter_error_not_a_missing_local_file(tmp_path, source):
    with pytest.raises(ParameterError) as caught:
        run(tmp_path, source)
    message = str(caught.value)
    assert message.startswith("[ingest] The 'source' parameter of ingest must be ")
    assert "local path" in message and "gs://" in message and repr(source) in message
    assert os.getcwd() not in message
    assert not (tmp_path / "snapshot.parquet").exists()


def test_unknown_extension_is_a_source_error_listing_the_known_ones(tmp_path):
    source = tmp_path / "data.xlsx"
    source.write_bytes(b"whatever")
    with pytest.raises(SourceError) as caught:
        run(tmp_path, str(source))
    message = str(caught.value)
    assert message.startswith("[ingest] ")
    assert "data.xlsx" in message
    for suffix in (".csv", ".parquet", ".jsonl", ".tsv"):
        assert suffix in message


@pytest.mark.parametrize(
    ("name", "content", "fmt"),
    [
        ("junk.parquet", os.urandom(4096), "parquet"),
        ("tiny.parquet", b"PAR1" + b"\x00" * 20 + b"PAR1", "parquet"),
        ("empty.parquet", b"", "parquet"),
        ("junk.jsonl", b'{"a": 1}\n{"a": \x00\xff garbled\n', "jsonl"),
        ("empty.csv", b"", "csv"),
        ("ragged.csv", b"a,b\n1,2\n3,4,5\n", "csv"),
        ("junk.csv.gz", b"this is not gzip at all", "csv"),
        ("types.jsonl", b'{"a": 1}\n{"a": "one"}\n', "jsonl"),
    ],
)
def test_unreadable_content_is_a_source_error(tmp_path, name, content, fmt):
    source = tmp_path / name
    source.write_bytes(content)
    with pytest.raises(SourceError) as caught:
        run(tmp_path, str(source))
    message = str(caught.value)
    assert message.startswith("[ingest] ")
    assert name in message and f"as {fmt}" in message


def test_nested_json_values_are_a_source_error_naming_the_column(tmp_path):
    source = tmp_path / "nested.jsonl"
    source.write_text('{"id": 1, "tags": ["a", "b"]}\n{"id": 2, "tags": ["c"]}\n')
    with pytest.raises(SourceError) as caught:
        run(tmp_path, str(source))
    message = str(caught.value)
    assert message.startswith("[ingest] ")
    assert "'tags'" in message and "nested" in message and "'id'" not in message


def test_gzipped_parquet_is_a_source_error_saying_to_decompress(tmp_path):
    plain = tmp_path / "t.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(plain)
    source = tmp_path / "t.parquet.gz"
    source.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(SourceError) as caught:
        ingest(str(source), str(tmp_path / "out.parquet"))
    assert str(caught.value).startswith("[ingest] ")
    assert "gzipped Parquet" in str(caught.value) and "gunzip" in str(caught.value)
    assert not (tmp_path / "out.parquet").exists()


# --- gs:// (fake-gcs-server) ----------------------------------------------------------------------


@pytest.mark.gcs
@pytest.mark.parametrize("name", ["in/data.csv.gz", "in/data.parquet", "in/data.jsonl"])
def test_gcs_source_gives_the_same_result_as_the_local_file(tmp_path, gcs_bucket, name):
    from google.cloud import storage

    local = tmp_path / name.rsplit("/", 1)[1]
    write(sample(), local)
    storage.Client().bucket(gcs_bucket).blob(name).upload_from_filename(str(local))
    uri = f"gs://{gcs_bucket}/{name}"

    remote = run(tmp_path, uri)

    expected = run(tmp_path, str(local))
    assert remote.source == uri
    assert (remote.format, remote.rows, remote.columns) == (expected.format, 6, expected.columns)
    assert remote.data_version == expected.data_version


@pytest.mark.gcs
def test_missing_gcs_object_is_a_source_error(tmp_path, gcs_bucket):
    uri = f"gs://{gcs_bucket}/in/absent.csv"
    with pytest.raises(SourceError) as caught:
        run(tmp_path, uri)
    assert str(caught.value).startswith("[ingest] ")
    assert uri in str(caught.value) and "does not exist" in str(caught.value)
