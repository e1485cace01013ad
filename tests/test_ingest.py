"""Unit tests of keel.ingest: formats, data version, snapshot and the errors a user can cause."""

from __future__ import annotations

import gzip
import json
import os
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


@pytest.mark.parametrize("source", ["s3://bucket/t.csv", "https://example.com/t.csv"])
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
