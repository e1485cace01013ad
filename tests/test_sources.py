"""Unit tests of keel.sources: the format table, URI schemes, the registry and its plug-in seam."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pytest

import keel.sources as sources
from keel.errors import ParameterError, SourceError
from keel.ingest import ingest
from keel.sources import (
    FORMAT_NAMES,
    FORMATS,
    SOURCES,
    FileSource,
    InvalidText,
    Source,
    SourceRows,
    SourceScheme,
    check_source_uri,
    detect_format,
    find_invalid_text,
    open_source,
)

# --- the format table --------------------------------------------------------------------------

SUFFIXES = {
    ".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
}


def stable_gzip(data: bytes) -> bytes:
    """Gzip with no timestamp: the bytes (and so the test ids xdist compares) never change."""
    return gzip.compress(data, mtime=0)


def test_format_names_come_from_the_table_in_order():
    assert FORMAT_NAMES == ("csv", "parquet", "jsonl")
    assert tuple(f.name for f in FORMATS) == FORMAT_NAMES
    assert {s: f.name for f in FORMATS for s in f.suffixes} == SUFFIXES


@pytest.mark.parametrize("suffix", sorted(SUFFIXES))
@pytest.mark.parametrize("prefix", ["data", "/abs/dir.v2/data", "gs://b/x/data", "a:b"])
def test_every_suffix_resolves_plain_and_gzipped(suffix, prefix):
    uri = prefix + suffix
    assert detect_format(uri) == SUFFIXES[suffix]
    assert detect_format(uri.upper()) == SUFFIXES[suffix]
    assert detect_format(uri + ".gz") == SUFFIXES[suffix]
    assert detect_format(uri + ".GZ") == SUFFIXES[suffix]


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_explicit_format_overrides_the_suffix(fmt):
    assert detect_format("mislabelled.csv", fmt) == fmt
    assert detect_format("no-suffix", fmt) == fmt
    assert open_source("export.txt", fmt).format == fmt


@pytest.mark.parametrize("name", ["data.xlsx", "data", "data.gz", "data.csv.zip", "csv"])
def test_unknown_suffix_is_a_source_error_listing_suffixes_and_formats(name):
    with pytest.raises(SourceError) as caught:
        detect_format(name)
    message = str(caught.value)
    assert message.startswith(f"[ingest] Cannot tell the format of {name!r} from its name")
    for suffix in SUFFIXES:
        assert suffix in message
    assert "(optionally .gz)" in message
    assert "'source_format'" in message and "csv, parquet, jsonl" in message


@pytest.mark.parametrize("fmt", ["xlsx", "CSV", "", "json", "tsv", "Auto"])
def test_invalid_explicit_format_is_a_parameter_error(fmt):
    with pytest.raises(ParameterError) as caught:
        detect_format("data.csv", fmt)
    assert str(caught.value) == (
        "[ingest] The 'source_format' parameter of ingest must be one of auto, csv, parquet, "
        f"jsonl. Got {fmt!r}."
    )
    with pytest.raises(ParameterError):
        open_source("data.csv", fmt)


def rows_of(path: Path, fmt: str = "auto") -> tuple[list[str], list[dict[str, object]], str]:
    with open_source(str(path), fmt).open() as rows:
        table = pa.Table.from_batches(list(rows.batches), schema=rows.schema)
        return rows.schema.names, table.to_pylist(), rows.format


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("t.csv", b"a,b\n1,x\n2,y\n"),
        ("t.tsv", b"a\tb\n1\tx\n2\ty\n"),
        ("t.csv.gz", stable_gzip(b"a,b\n1,x\n2,y\n")),
        ("t.tsv.gz", stable_gzip(b"a\tb\n1\tx\n2\ty\n")),
        ("t.jsonl", b'{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n'),
        ("t.ndjson.gz", stable_gzip(b'{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n')),
    ],
)
def test_file_source_reads_each_format(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    names, rows, fmt = rows_of(path)
    assert names == ["a", "b"]
    assert rows == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert fmt == detect_format(name)


def test_file_source_reads_parquet_in_batches_of_batch_rows(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": list(range(10))}), tmp_path / "t.pq")
    monkeypatch.setattr(sources, "BATCH_ROWS", 4)
    with open_source(str(tmp_path / "t.pq")).open() as rows:
        assert [b.num_rows for b in rows.batches] == [4, 4, 2]
        assert rows.format == "parquet"


def test_csv_types_are_inferred_from_a_large_first_block(tmp_path):
    # 2 MiB of integers, then a float: with pyarrow's default 1 MiB block the column would be
    # typed int64 from the first block and the float would fail to convert later.
    path = tmp_path / "t.csv"
    path.write_text("a\n" + "1\n" * (1 << 20) + "1.5\n")
    with open_source(str(path)).open() as rows:
        assert rows.schema.field("a").type == pa.float64()
        assert sum(b.num_rows for b in rows.batches) == (1 << 20) + 1


def test_gzipped_parquet_is_refused_before_any_read(tmp_path):
    # The file does not even exist: the name alone decides.
    with pytest.raises(SourceError) as caught:
        open_source(str(tmp_path / "t.parquet.gz"))
    assert "gzipped Parquet" in str(caught.value) and "gunzip" in str(caught.value)
    with pytest.raises(SourceError, match="gzipped Parquet"):
        open_source(str(tmp_path / "t.data.gz"), "parquet")


def test_missing_file_is_a_source_error_when_opened(tmp_path):
    missing = str(tmp_path / "absent.csv")
    source = open_source(missing)  # nothing is read yet
    with pytest.raises(SourceError) as caught, source.open():
        pass
    assert str(caught.value).startswith(f"[ingest] The source {missing!r} cannot be read: ")


def test_file_source_closes_its_stream(tmp_path, monkeypatch):
    stream = io.BytesIO(b"a\n1\n")
    monkeypatch.setattr(FileSource, "open_stream", lambda self: stream)
    with open_source("anything.csv").open() as rows:
        assert not stream.closed
        assert sum(b.num_rows for b in rows.batches) == 1
    assert stream.closed


def test_empty_csv_cells_are_null_in_number_boolean_and_date_columns(tmp_path):
    # Quoted or not. Empty text cells stay "" here: ingest makes them missing for every source.
    path = tmp_path / "t.csv"
    path.write_text('n,x,b,d,s\n1,1.5,true,2024-01-31,a\n,,,,\n"","","","",""\n4,2.5,false,2024-02-01,b\n')
    names, rows, _ = rows_of(path)
    assert [row["n"] for row in rows] == [1, None, None, 4]
    assert [row["x"] for row in rows] == [1.5, None, None, 2.5]
    assert [row["b"] for row in rows] == [True, None, None, False]
    assert [row["d"] is None for row in rows] == [False, True, True, False]
    assert [row["s"] for row in rows] == ["a", "", "", "b"]


def test_csv_values_may_span_lines_when_quoted(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('a,b\n"two\nlines",1\n"three\r\nlines\n",2\n')
    assert rows_of(path)[1] == [{"a": "two\nlines", "b": 1}, {"a": "three\r\nlines\n", "b": 2}]


# --- encodings ---------------------------------------------------------------------------------

TEXT = "name,city\nJosé,Zürich\nLæticia,Besançon\n"
ROWS = [{"name": "José", "city": "Zürich"}, {"name": "Læticia", "city": "Besançon"}]
JSONL = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ROWS)


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "cp1252", "utf-16", "utf-8-sig"])
@pytest.mark.parametrize(("name", "text"), [("t.csv", TEXT), ("t.jsonl", JSONL)])
def test_text_formats_are_read_in_the_given_encoding(tmp_path, encoding, name, text):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    with open_source(str(path), encoding=encoding).open() as rows:
        assert pa.Table.from_batches(list(rows.batches), schema=rows.schema).to_pylist() == ROWS


def test_parquet_ignores_the_encoding(tmp_path):
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "t.parquet")
    assert rows_of(tmp_path / "t.parquet")[1] == ROWS
    with open_source(str(tmp_path / "t.parquet"), encoding="latin-1").open() as rows:
        assert pa.Table.from_batches(list(rows.batches)).to_pylist() == ROWS


def test_non_utf8_json_lines_are_transcoded_in_a_stream(tmp_path, monkeypatch):
    path = tmp_path / "t.jsonl"
    path.write_bytes((JSONL * 200).encode("latin-1"))
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 1024)  # many blocks: never the whole file
    with open_source(str(path), encoding="latin-1").open() as rows:
        batches = list(rows.batches)
    assert len(batches) > 5
    assert pa.Table.from_batches(batches).to_pylist() == ROWS * 200


@pytest.mark.parametrize(
    ("name", "content", "offset", "line"),
    [
        ("value.csv", TEXT.encode("latin-1"), 13, 2),  # pyarrow would type the column binary
        ("header.csv", "café,b\n1,2\n".encode("latin-1"), 3, 1),
        ("value.jsonl", JSONL.encode("latin-1"), 13, 1),  # pyarrow's JSON reader does not check
        ("key.jsonl", '{"café": 1}\n'.encode("latin-1"), 5, 1),
        ("t.csv.gz", stable_gzip(b"a,b\n" + b"x,y\n" * 1000 + "é,y\n".encode("latin-1")), 4004,
         1002),
        ("cut.csv", b"a\nb\n\xe2\x82", 4, 3),  # a sequence cut by the end of the file
    ],
)
def test_invalid_utf8_is_a_source_error_naming_offset_line_and_fix(tmp_path, name, content, offset,
                                                                  line):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SourceError) as caught:
        rows_of(path)
    message = str(caught.value)
    assert message.startswith(f"[ingest] The source {str(path)!r} is not readable as ")
    assert f"at byte offset {offset} " in message and f"(line {line})" in message
    assert "is not valid utf-8 text" in message
    assert message.endswith("Pass --source-encoding latin-1 (or the file's encoding).")
    assert ("of the decompressed text" in message) == name.endswith(".gz")


def test_invalid_text_after_the_first_block_is_found_too(tmp_path, monkeypatch):
    # The first block types the column as text; the invalid byte comes in a later block.
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 64)
    path = tmp_path / "t.csv"
    path.write_bytes(b"a\n" + b"abc\n" * 100 + "é\n".encode("latin-1"))
    with pytest.raises(SourceError, match=r"byte 0xe9 at byte offset 402 \(line 102\)"):
        rows_of(path)


@pytest.mark.parametrize("fmt", ["t.csv", "t.jsonl"])
def test_bytes_not_valid_in_another_encoding_are_named_with_it(tmp_path, fmt):
    path = tmp_path / fmt
    content = b"a\ncaf\x81\n" if fmt == "t.csv" else b'{"a": "caf\x81"}\n'
    path.write_bytes(content)
    with pytest.raises(SourceError) as caught, open_source(str(path), encoding="cp1252").open() as r:
        list(r.batches)
    assert "byte 0x81 at byte offset " in str(caught.value)
    assert "is not valid cp1252 text" in str(caught.value)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 1 << 20])
def test_find_invalid_text_counts_offsets_across_chunks(monkeypatch, chunk):
    monkeypatch.setattr(sources, "SCAN_BYTES", chunk)
    valid = "a€b\n日本\nçé\n".encode()  # multi-byte characters cut by every chunk size
    assert find_invalid_text(io.BytesIO(valid), "utf-8") is None
    found = find_invalid_text(io.BytesIO(valid + b"x\xffy\n"), "utf-8")
    assert found == InvalidText(offset=len(valid) + 1, line=4, invalid=b"\xff")
    assert found.shown == "byte 0xff"
    cut = find_invalid_text(io.BytesIO(valid + b"\xe2\x82"), "utf-8")
    assert cut is not None and (cut.offset, cut.line) == (len(valid), 4)
    assert find_invalid_text(io.BytesIO(b"\xe2\x28\xa1"), "utf-8") == InvalidText(0, 1, b"\xe2")
    assert find_invalid_text(io.BytesIO(b"ab\n\x81"), "cp1252") == InvalidText(3, 2, b"\x81")
    assert find_invalid_text(io.BytesIO("é\n".encode("utf-16") + b"\x00"), "utf-16") is not None


def test_a_parse_error_that_is_not_about_encoding_does_not_read_the_file_again(tmp_path,
                                                                              monkeypatch):
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\n1,2\n3,4,5\n")
    opened = []
    real = FileSource.open_stream
    monkeypatch.setattr(FileSource, "open_stream", lambda self: opened.append(1) or real(self))
    with pytest.raises(pa.ArrowInvalid, match="Expected 2 columns, got 3"):
        rows_of(path)
    assert len(opened) == 1


# --- URI schemes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    ["/data/t.csv", "data/t.csv", "t.csv", "./t.csv", "a:b.csv", "dir/x://y.csv", "C:\\data\\t.csv",
     "gs://bucket/t.csv", "gs://bucket/deep/er/t.parquet"],
)
def test_local_paths_and_gs_uris_are_accepted_unchanged(uri):
    assert check_source_uri(uri) is uri
    assert type(open_source(uri)) is FileSource


def test_supported_forms_name_files_folders_apis_and_databases():
    forms = sources.supported_forms()
    assert forms.startswith("a local path, gs://bucket/object, ")
    assert "https://host/path (a JSON API)" in forms and " or " in forms


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [("s3://bucket/t.csv", "s3://"), ("ftp://host/t.csv", "ftp://"),
     ("file:///tmp/t.csv", "file://"), ("hdfs://nn/t.csv", "hdfs://"),
     ("s3a+x.y-z://b/t.csv", "s3a+x.y-z://")],
)
def test_unknown_schemes_are_refused_naming_scheme_and_supported_forms(uri, scheme):
    with pytest.raises(ParameterError) as caught:
        check_source_uri(uri)
    assert caught.value.stage == "ingest"
    assert str(caught.value) == (
        f"[ingest] The 'source' parameter of ingest must be {sources.supported_forms()}; "
        f"the scheme {scheme!r} is not supported. Got {uri!r}."
    )
    with pytest.raises(ParameterError):
        open_source(uri)


@pytest.mark.parametrize("uri", ["", "   "])
def test_an_empty_source_is_refused(uri):
    with pytest.raises(ParameterError) as caught:
        check_source_uri(uri)
    assert str(caught.value) == (
        f"[ingest] The 'source' parameter of ingest must be {sources.supported_forms()}. "
        f"Got {uri!r}."
    )


@pytest.mark.parametrize("uri", ["gs://", "gs:///t.csv", "gs:///"])
def test_gs_uri_without_bucket_is_refused(uri):
    with pytest.raises(ParameterError) as caught:
        check_source_uri(uri)
    assert str(caught.value) == (
        "[ingest] The 'source' parameter of ingest must name a bucket, like gs://bucket/object "
        f"or gs://bucket/prefix/. Got {uri!r}."
    )


@pytest.mark.parametrize(
    ("uri", "fmt", "folder"),
    [("gs://bucket", "auto", True), ("gs://bucket/", "auto", True),
     ("gs://bucket/exports/2026-11/", "auto", True), ("gs://bucket/exports/2026-11", "auto", True),
     ("gs://bucket/exports/2026-11", "csv", False), ("gs://bucket/exports/t.csv", "auto", False),
     ("gs://bucket/out.csv/", "auto", True), ("no/such/folder/", "auto", True),
     ("no/such/file", "csv", False)],
)
def test_folders_and_prefixes_are_told_from_files_by_name_without_reading(uri, fmt, folder):
    # No emulator runs here: deciding must not touch GCS.
    assert check_source_uri(uri) == uri
    source = open_source(uri, fmt)
    assert type(source) is (sources.FolderSource if folder else FileSource)


def test_an_existing_local_folder_is_a_folder_source_whatever_its_name(tmp_path):
    (tmp_path / "tables.csv").mkdir()
    assert type(open_source(str(tmp_path / "tables.csv"))) is sources.FolderSource
    assert type(open_source(str(tmp_path))) is sources.FolderSource


def test_supported_forms_in_messages_come_from_the_registry(memory_scheme):
    assert check_source_uri("mem://rows") == "mem://rows"
    with pytest.raises(ParameterError) as caught:
        check_source_uri("s3://bucket/t.csv")
    assert str(caught.value).startswith(
        "[ingest] The 'source' parameter of ingest must be a local path, gs://bucket/object, ")
    assert "mem://name" in str(caught.value) and "the scheme 's3://'" in str(caught.value)


# --- the plug-in seam: a source that is not a file ---------------------------------------------

class MemorySource(Source):
    """Rows held by this process, by name (``mem://<name>``), handed out two rows per batch."""

    tables: ClassVar[dict[str, pa.Table]] = {}

    @contextlib.contextmanager
    def open(self) -> Iterator[SourceRows]:
        table = self.tables[self.uri.removeprefix("mem://")]
        yield SourceRows(schema=table.schema, batches=iter(table.to_batches(max_chunksize=2)),
                         format=self.format)


@pytest.fixture
def memory_scheme(monkeypatch) -> dict[str, pa.Table]:
    """Register ``mem://`` for one test (monkeypatch restores the registry); its tables."""
    monkeypatch.setitem(SOURCES, "mem", SourceScheme(MemorySource, "mem://name"))
    monkeypatch.setattr(MemorySource, "tables", {})
    return MemorySource.tables


CSV = "age,income,home,married\n31,1200.5,rent,true\n45,880.25,owner,false\n,430.0,rent,false\n" \
      "22,2210.75,parents,true\n58,99.5,owner,true\n"


def test_a_registered_source_is_read_by_ingest_unchanged(tmp_path, memory_scheme):
    csv = tmp_path / "people.csv"
    csv.write_text(CSV)
    memory_scheme["people"] = pa.table({
        "age": pa.array([31, 45, None, 22, 58], pa.int64()),
        "income": [1200.5, 880.25, 430.0, 2210.75, 99.5],
        "home": ["rent", "owner", "rent", "parents", "owner"],
        "married": [True, False, False, True, True],
    })

    from_memory = ingest("mem://people", str(tmp_path / "m.parquet"))
    from_csv = ingest(str(csv), str(tmp_path / "c.parquet"))

    assert from_memory.source == "mem://people" and from_memory.format == "mem"
    assert (from_memory.rows, from_memory.columns) == (5, ["age", "income", "home", "married"])
    assert from_memory.data_version == from_csv.data_version
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "m.parquet").equals(pq.read_table(tmp_path / "c.parquet"))


def test_a_source_that_is_not_a_file_takes_no_file_format(tmp_path, memory_scheme):
    with pytest.raises(ParameterError) as caught:
        ingest("mem://people", str(tmp_path / "m.parquet"), "csv")
    assert "'source_format'" in str(caught.value) and "mem://" in str(caught.value)
    with pytest.raises(ParameterError, match="'source_format'"):
        open_source("mem://people", "xlsx")


def test_read_errors_of_a_registered_source_are_source_errors(tmp_path, memory_scheme):
    class Broken(MemorySource):
        @contextlib.contextmanager
        def open(self) -> Iterator[SourceRows]:
            def batches() -> Iterator[pa.RecordBatch]:
                yield pa.record_batch({"a": [1]})
                raise pa.ArrowInvalid("connection reset in row 2\nmore detail")

            yield SourceRows(schema=pa.schema({"a": pa.int64()}), batches=batches(),
                             format=self.format)

    SOURCES["mem"] = SourceScheme(Broken, "mem://name")  # restored by the fixture's monkeypatch
    with pytest.raises(SourceError) as caught:
        ingest("mem://x", str(tmp_path / "m.parquet"))
    assert str(caught.value) == (
        "[ingest] The source 'mem://x' is not readable as mem (after row 1): connection reset in "
        "row 2"
    )
    assert not (tmp_path / "m.parquet").exists()  # the row written before is not left behind


def test_nested_columns_are_refused_whatever_the_source(tmp_path, memory_scheme):
    memory_scheme["nested"] = pa.table({"id": [1], "tags": [["a", "b"]]})
    with pytest.raises(SourceError) as caught:
        ingest("mem://nested", str(tmp_path / "m.parquet"))
    assert "'tags'" in str(caught.value) and "nested" in str(caught.value)


def test_the_registry_holds_files_until_the_plugins_load_on_the_first_look_up():
    code = ("import json, sys; import keel.sources as s; before = sorted(s.SOURCES); "
            "after = {k: v.source.__module__ for k, v in s.registered().items()}; "
            "print(json.dumps([before, after, 'pyarrow' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    before, after, pyarrow_loaded = json.loads(out.stdout)
    assert before == ["", "gs"]
    assert after["http"] == after["https"] == "keel.source_http"
    assert after[""] == after["gs"] == "keel.sources"
    assert set(after.values()) == {"keel.sources", "keel.source_http", "keel.source_sql"}
    assert not pyarrow_loaded  # loading the plugins stays cheap for the CLI
    with pytest.raises(ParameterError):
        check_source_uri("mem://people")


# --- import cost -------------------------------------------------------------------------------


def test_importing_sources_does_not_import_pyarrow_or_pandas():
    code = ("import json, sys; import keel.sources as s; "
            "print(json.dumps([s.FORMAT_NAMES, sorted({m.split('.')[0] for m in sys.modules})]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    names, modules = json.loads(out.stdout)
    assert names == ["csv", "parquet", "jsonl"]
    assert "keel" in modules
    assert not {"pyarrow", "pandas", "numpy"} & set(modules)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_read_error_lets_go_of_the_reader_at_once(tmp_path, monkeypatch, suffix):
    """pyarrow's readers read ahead on threads; one kept alive by a traceback until shutdown can
    abort the process (seen: `keel validate` exiting -6, not 1, on a CSV broken midway)."""
    import gc
    import weakref

    good = "a,b\n" + "1,x\n" * 20_000 if suffix == ".csv" else '{"a": 1, "b": "x"}\n' * 20_000
    path = tmp_path / f"broken{suffix}"
    path.write_text(good + ("1,2,3\n" if suffix == ".csv" else "{not json\n"))
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 1 << 14)  # the error comes after batches
    made = []
    real = sources._ReaderBatches.__init__

    def remember(self, reader, *args, **kwargs):
        made.append(weakref.ref(reader))
        real(self, reader, *args, **kwargs)

    monkeypatch.setattr(sources._ReaderBatches, "__init__", remember)
    with open_source(str(path)).open() as rows, pytest.raises(Exception) as failed:
        for _ in rows.batches:
            pass
    gc.disable()  # reference counting only: let go of at once, not at a later collection
    try:
        assert made and made[0]() is None, failed.value  # while the traceback is still held
    finally:
        gc.enable()
