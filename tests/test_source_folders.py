"""A local folder or a gs:// prefix read as one table (keel.sources.FolderSource)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

import keel.sources as sources
from keel.errors import SourceError
from keel.ingest import ingest
from keel.sources import FileSource, FolderSource, common_type, open_source

HEADER = "age,income,home,married,day"
LINES = [
    "31,1200.5,rent,true,2024-01-31",
    "45,880.25,owner,false,2024-02-01",
    ",430.0,rent,false,2024-02-02",
    "22,2210.75,parents,true,2024-02-03",
    "58,99.5,owner,true,2024-02-04",
    "39,1500.0,other,false,2024-02-05",
    "27,310.75,rent,true,2024-02-06",
]


def csv_text(lines: list[str], header: str = HEADER) -> str:
    return header + "\n" + "".join(line + "\n" for line in lines)


def whole(tmp_path: Path) -> str:
    """The whole table as one CSV file, outside the folders the tests read."""
    path = tmp_path / "whole.csv"
    path.write_text(csv_text(LINES))
    return str(path)


def version(tmp_path: Path, source: str, **kwargs) -> str:
    out = tmp_path / f"snapshot-{abs(hash(source))}.parquet"
    return ingest(source, str(out), **kwargs).data_version


def mixed_files(root: Path) -> dict[str, bytes]:
    """The table in three files of three formats: CSV, Parquet and gzipped JSON Lines."""
    table = pcsv.read_csv(pa.BufferReader(csv_text(LINES).encode()))
    parquet = pa.BufferOutputStream()
    pq.write_table(table.slice(3, 2), parquet)
    records = table.slice(5).to_pylist()
    jsonl = "".join(json.dumps(r, default=str) + "\n" for r in records).encode()
    return {
        "part-0.csv": csv_text(LINES[:3]).encode(),
        "part-1.parquet": parquet.getvalue().to_pybytes(),
        "sub/part-2.jsonl.gz": gzip.compress(jsonl, mtime=0),
    }


def write_files(root: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def read(uri: str, fmt: str = "auto") -> tuple[pa.Table, sources.SourceRows]:
    with open_source(uri, fmt).open() as rows:
        return pa.Table.from_batches(list(rows.batches), schema=rows.schema), rows


# --- the same rows, the same data version ------------------------------------------------------


def test_a_table_split_across_csv_files_has_the_version_of_the_whole_csv(tmp_path):
    folder = write_files(tmp_path / "split", {
        "a.csv": csv_text(LINES[:2]), "b.csv": csv_text(LINES[2:5]), "c.csv": csv_text(LINES[5:]),
    })
    result = ingest(str(folder), str(tmp_path / "s.parquet"))
    expected = ingest(whole(tmp_path), str(tmp_path / "w.parquet"))
    assert result.data_version == expected.data_version
    assert (result.rows, result.parts, result.format) == (7, 3, "csv")
    assert result.columns == HEADER.split(",")
    assert pq.read_table(tmp_path / "s.parquet").equals(pq.read_table(tmp_path / "w.parquet"))


def test_mixed_formats_and_gzip_in_subfolders_give_the_same_version(tmp_path):
    folder = write_files(tmp_path / "mixed", mixed_files(tmp_path))
    result = ingest(str(folder) + "/", str(tmp_path / "s.parquet"))
    assert result.data_version == version(tmp_path, whole(tmp_path))
    assert (result.rows, result.parts, result.format) == (7, 3, "csv+parquet+jsonl")


def test_files_are_read_in_the_order_of_their_paths(tmp_path):
    folder = write_files(tmp_path / "d", {
        "b.csv": "n\n2\n", "a.csv": "n\n1\n", "a/z.csv": "n\n1.5\n", "c/d/e.csv": "n\n3\n",
        "B.csv": "n\n0\n",
    })
    table, rows = read(str(folder))
    assert table.column("n").to_pylist() == [0, 1, 1.5, 2, 3]  # B < a.csv < a/z.csv < b < c/
    assert rows.parts == 5


def test_a_different_split_is_the_same_version(tmp_path):
    one = write_files(tmp_path / "one", {"x.csv": csv_text(LINES[:6]), "y.csv": csv_text(LINES[6:])})
    two = write_files(tmp_path / "two", {"x.csv": csv_text(LINES[:1]), "y.csv": csv_text(LINES[1:])})
    assert version(tmp_path, str(one)) == version(tmp_path, str(two)) == version(
        tmp_path, whole(tmp_path))


# --- what is left out, what is refused ---------------------------------------------------------


def test_markers_checksums_and_hidden_files_are_left_out(tmp_path):
    folder = write_files(tmp_path / "spark", {
        "_SUCCESS": "", "_committed_123": "{}", ".part-00000.csv.crc": b"\x00\x01",
        "part-00000.csv.crc": b"\x00", "_temporary/0/part-9.csv": "n\n99\n",
        ".hidden/part-8.csv": "n\n98\n", "part-00000.csv": "n\n1\n", "part-00001.csv": "n\n2\n",
    })
    table, rows = read(str(folder))
    assert table.column("n").to_pylist() == [1, 2] and rows.parts == 2


def test_a_file_of_unknown_format_is_refused_by_name(tmp_path):
    folder = write_files(tmp_path / "d", {"a.csv": "n\n1\n", "notes.txt": "hello",
                                          "sub/data.xlsx": "x"})
    with pytest.raises(SourceError) as caught:
        open_source(str(folder)).open().__enter__()
    message = str(caught.value)
    assert repr(str(folder / "notes.txt")) in message and repr(str(folder / "sub" / "data.xlsx")) \
        in message
    assert "'source_format'" in message and "'_' or '.'" in message


def test_an_explicit_format_reads_files_with_no_suffix(tmp_path):
    folder = write_files(tmp_path / "d", {"part-00000": "n\n1\n", "part-00001.gz":
                                          gzip.compress(b"n\n2\n", mtime=0), "_SUCCESS": ""})
    table, rows = read(str(folder), "csv")
    assert table.column("n").to_pylist() == [1, 2] and rows.format == "csv"


@pytest.mark.parametrize("files", [{}, {"_SUCCESS": "", ".keep": ""}])
def test_a_folder_without_data_files_is_an_error(tmp_path, files):
    folder = write_files(tmp_path / "empty", files)
    folder.mkdir(exist_ok=True)
    with pytest.raises(SourceError) as caught:
        ingest(str(folder), str(tmp_path / "s.parquet"))
    assert str(caught.value).startswith(f"[ingest] The source {str(folder)!r} is a folder holding "
                                        "no data file")
    assert not (tmp_path / "s.parquet").exists()


def test_a_missing_folder_is_an_error(tmp_path):
    missing = str(tmp_path / "nowhere") + "/"
    with pytest.raises(SourceError, match="does not exist or is not a folder"):
        ingest(missing, str(tmp_path / "s.parquet"))


def test_a_gzipped_parquet_file_in_a_folder_is_refused_by_name(tmp_path):
    folder = write_files(tmp_path / "d", {"a.parquet.gz": b"x", "b.csv": "n\n1\n"})
    with pytest.raises(SourceError) as caught:
        read(str(folder))
    assert repr(str(folder / "a.parquet.gz")) in str(caught.value) and "gunzip" in str(caught.value)


# --- columns and types across files ------------------------------------------------------------


@pytest.mark.parametrize(("second", "words"), [
    ("a,c\n1,2\n", "missing 'b'; extra 'c'"),
    ("a\n1\n", "missing 'b'"),
    ("a,b,c\n1,2,3\n", "extra 'c'"),
    ("a,c,b\n1,2,3\n", "extra 'c'"),
])
def test_other_columns_in_a_later_file_name_the_file_and_the_difference(tmp_path, second, words):
    folder = write_files(tmp_path / "d", {"1.csv": "a,b\n1,2\n", "2.csv": second})
    with pytest.raises(SourceError) as caught:
        ingest(str(folder), str(tmp_path / "s.parquet"))
    assert str(caught.value) == (
        f"[ingest] The source {str(folder)!r} is one table, but its file '2.csv' has other "
        f"columns than its first file '1.csv': {words}. Expected the same columns, in the same "
        "order, in every file."
    )
    assert not (tmp_path / "s.parquet").exists()


def test_columns_in_another_order_name_the_first_place_they_differ(tmp_path):
    folder = write_files(tmp_path / "d", {"1.csv": "a,b\n1,2\n", "2.csv": "b,a\n1,2\n"})
    with pytest.raises(SourceError) as caught:
        ingest(str(folder), str(tmp_path / "s.parquet"))
    assert str(caught.value) == (
        f"[ingest] The source {str(folder)!r} is one table, but its file '2.csv' has the columns "
        "of '1.csv' in another order: its column 1 is 'b', not 'a'. Expected the same order in "
        "every file."
    )


def test_a_wide_file_in_another_column_order_says_where_the_order_first_differs(tmp_path):
    """The message listed the file's first 8 names: on load_wine's 14 columns, with long names,
    the error line was cut in the middle of that list and said nothing useful."""
    from sklearn.datasets import load_wine

    from keel.errors import error_line

    frame = load_wine(as_frame=True).frame
    long = "x" * 500  # a long name is cut, not the message
    frame[long] = 1.0
    columns = list(frame.columns)
    swapped = columns[:5] + [columns[6], columns[5]] + columns[7:]
    folder = tmp_path / "exports"
    folder.mkdir()
    frame.iloc[:90].to_csv(folder / "part-1.csv", index=False)
    frame.iloc[90:][swapped].to_csv(folder / "part-2.csv", index=False)
    with pytest.raises(SourceError) as caught:
        ingest(str(folder), str(tmp_path / "s.parquet"))
    line = error_line(caught.value)
    assert "characters cut" not in line, line
    assert ("'part-2.csv' has the columns of 'part-1.csv' in another order: its column 6 is "
            "'flavanoids', not 'total_phenols'.") in line
    frame.iloc[90:].drop(columns=[long]).to_csv(folder / "part-2.csv", index=False)
    with pytest.raises(SourceError) as caught:
        ingest(str(folder), str(tmp_path / "s.parquet"))
    message = str(caught.value).replace(str(folder), "FOLDER")  # tmp_path's length varies
    assert "missing 'xxxxx [... 4" in message and len(message) < 300, message
    assert not (tmp_path / "s.parquet").exists()


def test_integers_and_floats_meet_as_floats_and_an_empty_column_takes_the_others_type(tmp_path):
    folder = write_files(tmp_path / "d", {
        "1.csv": "n,x,s\n1,,a\n2,,b\n", "2.csv": "n,x,s\n2.5,1,\n", "3.csv": "n,x,s\n3,,c\n",
    })
    table, _ = read(str(folder))
    assert table.schema == pa.schema({"n": pa.float64(), "x": pa.int64(), "s": pa.string()})
    assert table.to_pylist() == [
        {"n": 1.0, "x": None, "s": "a"}, {"n": 2.0, "x": None, "s": "b"},
        {"n": 2.5, "x": 1, "s": None}, {"n": 3.0, "x": None, "s": "c"},  # s: null-typed in 2.csv
    ]
    # the same as the one CSV holding these rows
    one = tmp_path / "one.csv"
    one.write_text("n,x,s\n1,,a\n2,,b\n2.5,1,\n3,,c\n")
    assert version(tmp_path, str(folder)) == version(tmp_path, str(one))


def test_text_where_other_files_have_numbers_names_the_file_and_column(tmp_path):
    folder = write_files(tmp_path / "d", {"1.csv": "id,n\n1,1\n", "2.csv": "id,n\n2,2\n",
                                          "3.csv": "id,n\n3,unknown\n"})
    with pytest.raises(SourceError) as caught:
        ingest(str(folder), str(tmp_path / "s.parquet"))
    assert str(caught.value) == (
        f"[ingest] The source {str(folder)!r} is one table, but its file "
        f"{str(folder / '3.csv')!r} has text (string) in column 'n', where the files before it "
        "have numbers (int64); expected one kind of value per column."
    )


def test_a_parquet_dictionary_column_meets_csv_text(tmp_path):
    dictionary = pa.table({"c": pa.array(["x", "y"]).dictionary_encode()})
    folder = tmp_path / "d"
    folder.mkdir()
    pq.write_table(dictionary, folder / "1.parquet")
    (folder / "2.csv").write_text("c\nz\n")
    table, _ = read(str(folder))
    assert table.schema == pa.schema({"c": pa.string()})
    assert table.column("c").to_pylist() == ["x", "y", "z"]


@pytest.mark.parametrize(("first", "other", "common"), [
    (pa.int64(), pa.float64(), pa.float64()),
    (pa.int32(), pa.int64(), pa.int64()),
    (pa.uint8(), pa.int8(), pa.int64()),
    (pa.float32(), pa.int16(), pa.float64()),
    (pa.null(), pa.bool_(), pa.bool_()),
    (pa.string(), pa.null(), pa.string()),
    (pa.string(), pa.large_string(), pa.large_string()),
    (pa.dictionary(pa.int32(), pa.string()), pa.string(), pa.string()),
    (pa.date32(), pa.timestamp("s"), pa.timestamp("s")),
    (pa.timestamp("ms"), pa.timestamp("us"), pa.timestamp("us")),
    (pa.date32(), pa.date64(), pa.date64()),
    # the same instants in two zones (a CSV's offsets are UTC): UTC; with no zone: none
    (pa.timestamp("s", "UTC"), pa.timestamp("ms", "Europe/Paris"), pa.timestamp("ms", "UTC")),
    (pa.timestamp("s", "Europe/Berlin"), pa.timestamp("s"), None),
    (pa.date32(), pa.timestamp("us", "Europe/Berlin"), pa.timestamp("us", "Europe/Berlin")),
    (pa.time32("s"), pa.time64("us"), pa.time64("us")),
    (pa.time32("s"), pa.timestamp("s"), None),
    (pa.string(), pa.int64(), None),
    (pa.bool_(), pa.int64(), None),
    (pa.date32(), pa.string(), None),
])
def test_common_type(first, other, common):
    assert common_type(first, other) == common
    assert common_type(other, first) == common


def test_a_read_error_in_a_later_file_names_that_file(tmp_path):
    folder = write_files(tmp_path / "d", {"1.csv": "a,b\n1,2\n", "2.csv": "a,b\n3,4\n5,6,7\n"})
    with pytest.raises(SourceError) as caught:
        ingest(str(folder), str(tmp_path / "s.parquet"))
    assert str(caught.value).startswith(
        f"[ingest] The source {str(folder)!r} is not readable: its file "
        f"{str(folder / '2.csv')!r} is not readable as csv: ")
    assert "Expected 2 columns, got 3" in str(caught.value)


def test_invalid_text_in_a_file_names_that_file(tmp_path):
    folder = write_files(tmp_path / "d", {"1.csv": "a\nx\n", "2.csv": "a\ncaf\xe9\n".encode("latin-1")})
    with pytest.raises(SourceError) as caught:
        ingest(str(folder), str(tmp_path / "s.parquet"))
    assert repr(str(folder / "2.csv")) in str(caught.value)
    assert "byte 0xe9 at byte offset 5 (line 2)" in str(caught.value)


# --- bounded memory ----------------------------------------------------------------------------


def test_one_file_is_open_at_a_time_and_read_in_batches(tmp_path, monkeypatch):
    folder = tmp_path / "d"
    folder.mkdir()
    for i in range(4):
        pq.write_table(pa.table({"n": list(range(i * 10, i * 10 + 10))}), folder / f"{i}.parquet")
    monkeypatch.setattr(sources, "BATCH_ROWS", 4)
    open_now: list[int] = []
    most = [0]
    real = FileSource.open_stream

    class Counted:
        def __init__(self, stream):
            self.stream = stream
            open_now.append(1)
            most[0] = max(most[0], len(open_now))

        def __getattr__(self, name):
            return getattr(self.stream, name)

        def __enter__(self):
            return self.stream

        def __exit__(self, *exc):
            open_now.pop()
            return self.stream.__exit__(*exc)

    monkeypatch.setattr(FileSource, "open_stream", lambda self: Counted(real(self)))
    with open_source(str(folder)).open() as rows:
        sizes = [b.num_rows for b in rows.batches]
    assert sizes == [4, 4, 2] * 4
    assert most[0] == 1 and not open_now


# --- gs:// prefixes (fake-gcs-server) ----------------------------------------------------------


def upload(bucket: str, files: dict[str, bytes]) -> None:
    from google.cloud import storage

    client = storage.Client()
    for name, content in files.items():
        client.bucket(bucket).blob(name).upload_from_string(content)


@pytest.mark.gcs
def test_a_gs_prefix_is_read_as_one_table(tmp_path, gcs_bucket):
    files = {f"exports/2026-11/{name}": content
             for name, content in mixed_files(tmp_path).items()}
    files["exports/2026-11/_SUCCESS"] = b""
    files["exports/2026-11/"] = b""  # a "folder" placeholder object, as the console makes
    files["exports/2026-110/other.csv"] = b"x\n1\n"  # shares the name's start, not the prefix
    files["exports/2026-11.csv"] = b"y\n1\n"  # nor is it under the prefix
    upload(gcs_bucket, files)
    expected = version(tmp_path, whole(tmp_path))

    for uri in (f"gs://{gcs_bucket}/exports/2026-11/", f"gs://{gcs_bucket}/exports/2026-11"):
        result = ingest(uri, str(tmp_path / "s.parquet"))
        assert result.data_version == expected, uri
        assert (result.rows, result.parts, result.source) == (7, 3, uri)


@pytest.mark.gcs
def test_a_spark_output_named_like_a_file_is_read_as_a_prefix(tmp_path, gcs_bucket):
    upload(gcs_bucket, {"out.csv/part-00000.csv": csv_text(LINES[:4]).encode(),
                        "out.csv/part-00001.csv": csv_text(LINES[4:]).encode(),
                        "out.csv/_SUCCESS": b""})
    uri = f"gs://{gcs_bucket}/out.csv"
    assert type(open_source(uri)) is FileSource  # a prefix only once it is opened
    result = ingest(uri, str(tmp_path / "s.parquet"))
    assert (result.data_version, result.parts) == (version(tmp_path, whole(tmp_path)), 2)


@pytest.mark.gcs
def test_a_whole_bucket_is_a_prefix(tmp_path, gcs_bucket):
    upload(gcs_bucket, {"a.csv": csv_text(LINES[:2]).encode(), "b/c.csv": csv_text(LINES[2:]).encode()})
    for uri in (f"gs://{gcs_bucket}", f"gs://{gcs_bucket}/"):
        assert type(open_source(uri)) is FolderSource
        assert ingest(uri, str(tmp_path / "s.parquet")).data_version == version(
            tmp_path, whole(tmp_path))


@pytest.mark.gcs
def test_a_gs_prefix_with_nothing_under_it_is_an_error(tmp_path, gcs_bucket):
    upload(gcs_bucket, {"exports/_SUCCESS": b"", "exports/report": b"x"})
    cases = {
        f"gs://{gcs_bucket}/nothing/": "no object is named so, and none is under",
        f"gs://{gcs_bucket}/nothing": "no object is named so, and none is under",
        f"gs://{gcs_bucket}/nothing.csv": "does not exist",
        f"gs://{gcs_bucket}/exports/report": "Cannot tell the format",  # an object, no suffix
    }
    for uri, words in cases.items():
        with pytest.raises(SourceError) as caught:
            ingest(uri, str(tmp_path / "s.parquet"))
        assert words in str(caught.value) and repr(uri) in str(caught.value), uri
    upload(gcs_bucket, {"markers/_SUCCESS": b""})
    with pytest.raises(SourceError, match="is a prefix holding no data file"):
        ingest(f"gs://{gcs_bucket}/markers/", str(tmp_path / "s.parquet"))
    assert not (tmp_path / "s.parquet").exists()


@pytest.mark.gcs
def test_columns_that_differ_under_a_prefix_name_the_object(tmp_path, gcs_bucket):
    upload(gcs_bucket, {"p/1.csv": b"a,b\n1,2\n", "p/2.csv": b"a,c\n1,2\n"})
    with pytest.raises(SourceError) as caught:
        ingest(f"gs://{gcs_bucket}/p/", str(tmp_path / "s.parquet"))
    assert str(caught.value).startswith(  # the object's name inside the prefix the line names
        f"[ingest] The source 'gs://{gcs_bucket}/p/' is one table, but its file '2.csv' has other "
        "columns than its first file '1.csv'")
