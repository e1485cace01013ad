"""Ingest: read a CSV, Parquet or JSON Lines source into one Parquet snapshot, streaming.

The data version is a sha256 over a canonical encoding of the rows (column names, then a
value hash per row, in order), so the same rows give the same version whatever the file's
format, compression or block boundaries. Memory stays flat: one record batch at a time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq

from keel.errors import ParameterError, SourceError, reports_errors
from keel.storage import ObjectNotFound, open_binary

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
BATCH_ROWS = 65_536
CSV_BLOCK_BYTES = 16 << 20  # types are inferred from the first block: make it large
SNAPSHOT_COMPRESSION = "zstd"


@dataclass(frozen=True)
class IngestResult:
    source: str
    format: str
    data_version: str
    rows: int
    columns: list[str]

    def to_json(self) -> str:
        """JSON keeps the row count an integer (KFP parameters carry numbers as floats)."""
        return json.dumps(asdict(self))


def detect_format(source: str, fmt: str = "auto") -> str:
    if fmt != "auto":
        if fmt not in set(FORMATS.values()):
            raise ParameterError(
                f"The 'format' parameter of ingest must be one of auto, csv, parquet, jsonl. "
                f"Got {fmt!r}.",
                stage="ingest",
            )
        return fmt
    name = source.lower().removesuffix(".gz")
    for suffix, found in FORMATS.items():
        if name.endswith(suffix):
            return found
    raise SourceError(
        f"Cannot tell the format of {source!r} from its name: expected a name ending in "
        f"{', '.join(sorted(FORMATS))} (optionally .gz), or an explicit format."
    )


def _open_reader(
    stream: IO[bytes], fmt: str, source: str
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The source's schema and a stream of its record batches."""
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson

    if source.lower().endswith(".gz"):
        stream = pa.CompressedInputStream(pa.PythonFile(stream, mode="r"), "gzip")
    if fmt == "csv":
        delimiter = "\t" if source.lower().removesuffix(".gz").endswith(".tsv") else ","
        reader = pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
        )
        return reader.schema, iter(reader)
    if fmt == "parquet":
        parquet = pq.ParquetFile(stream)
        return parquet.schema_arrow, parquet.iter_batches(batch_size=BATCH_ROWS)
    reader = pjson.open_json(stream, read_options=pjson.ReadOptions(block_size=CSV_BLOCK_BYTES))
    return reader.schema, iter(reader)


def _row_hashes(batch: pa.RecordBatch) -> bytes:
    """One 64-bit value hash per row, independent of how the rows were batched or stored."""
    import pandas as pd

    # Integers and booleans convert to nullable pandas types whether or not this batch has a
    # null: numpy conversion would turn them into float/object only in batches with a null,
    # and the same value would hash differently depending on where the batches were cut.
    def stable_dtype(arrow_type: pa.DataType):
        if pa.types.is_boolean(arrow_type):
            return pd.BooleanDtype()
        if pa.types.is_integer(arrow_type):
            name = str(arrow_type)  # int8 ... uint64 -> Int8 ... UInt64
            return pd.api.types.pandas_dtype(
                "UInt" + name[4:] if name.startswith("uint") else "Int" + name[3:]
            )
        return None

    frame = batch.to_pandas(types_mapper=stable_dtype)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()


@reports_errors
def ingest(source: str, output_path: str, fmt: str = "auto") -> IngestResult:
    """Stream ``source`` into a zstd Parquet file at ``output_path`` and compute its data version."""
    fmt = detect_format(source, fmt)
    if fmt == "parquet" and source.lower().endswith(".gz"):
        raise SourceError(
            f"The source {source!r} is a gzipped Parquet file, which cannot be read in a stream: "
            "Parquet compresses its own pages, so store it uncompressed (gunzip it)."
        )
    try:
        stream = open_binary(source)
    except ObjectNotFound as exc:
        raise SourceError(f"The source {source!r} cannot be read: {exc.args[0]}") from None

    digest = hashlib.sha256()
    rows = 0
    try:
        with stream:
            schema, batches = _open_reader(stream, fmt, source)
            nested = [f"{f.name!r} ({f.type})" for f in schema if pa.types.is_nested(f.type)]
            if nested:
                raise SourceError(
                    f"The source {source!r} has nested values in column(s) {', '.join(nested)}; "
                    f"expected one flat value (number, string, boolean, date) per cell."
                )
            digest.update("\x1f".join(schema.names).encode() + b"\x1e")
            with pq.ParquetWriter(output_path, schema, compression=SNAPSHOT_COMPRESSION) as writer:
                for batch in batches:
                    if batch.num_rows:
                        writer.write_batch(batch)
                        digest.update(_row_hashes(batch))
                        rows += batch.num_rows
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, UnicodeDecodeError) as exc:
        raise SourceError(
            f"The source {source!r} is not readable as {fmt}: {str(exc).splitlines()[0]}"
        ) from None
    return IngestResult(
        source=source, format=fmt, data_version=digest.hexdigest(), rows=rows,
        columns=schema.names,
    )
