"""Ingest: read a source into one Parquet snapshot and its data version, streaming.

Reading is :mod:`keel.sources`' job (files by format, other sources by URI scheme); ingest sees
only a schema and record batches. The data version is a sha256 over a canonical encoding of the
rows (column names, then a value hash per row, in order), so the same rows give the same version
whatever their source, format, compression or batch boundaries. Memory stays flat: one record
batch at a time.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from keel.contracts import IngestResult
from keel.errors import SourceError, reports_errors
from keel.sources import open_source

SNAPSHOT_COMPRESSION = "zstd"
#: Errors pyarrow and Python raise on content they cannot read: reported as a SourceError.
READ_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, UnicodeDecodeError)


def _row_hashes(batch: pa.RecordBatch) -> bytes:
    """One 64-bit value hash per row, independent of how the rows were batched or stored."""
    import pandas as pd

    # Integers and booleans convert to nullable pandas types whether or not this batch has a
    # null: numpy conversion would turn them into float/object only in batches with a null,
    # and the same value would hash differently depending on where the batches were cut.
    def stable_dtype(arrow_type: pa.DataType) -> Any:
        if pa.types.is_boolean(arrow_type):
            return pd.BooleanDtype()
        if pa.types.is_integer(arrow_type):
            name = str(arrow_type)  # int8 ... uint64 -> Int8 ... UInt64
            return pd.api.types.pandas_dtype(
                "UInt" + name[4:] if name.startswith("uint") else "Int" + name[3:]
            )
        return None

    frame = batch.to_pandas(types_mapper=stable_dtype)
    hashes: bytes = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    return hashes


def _check_flat(source: str, schema: pa.Schema) -> None:
    """Every column must hold one flat value per cell, whatever the source."""
    nested = [f"{f.name!r} ({f.type})" for f in schema if pa.types.is_nested(f.type)]
    if nested:
        raise SourceError(
            f"The source {source!r} has nested values in column(s) {', '.join(nested)}; "
            f"expected one flat value (number, string, boolean, date) per cell."
        )


@reports_errors
def ingest(source: str, output_path: str, fmt: str = "auto") -> IngestResult:
    """Stream ``source`` into a zstd Parquet file at ``output_path`` and compute its data version."""
    opened = open_source(source, fmt)
    digest = hashlib.sha256()
    rows = 0
    try:
        with opened.open() as table:
            schema = table.schema
            _check_flat(source, schema)
            digest.update("\x1f".join(schema.names).encode() + b"\x1e")
            with pq.ParquetWriter(output_path, schema, compression=SNAPSHOT_COMPRESSION) as writer:
                for batch in table.batches:
                    if batch.num_rows:
                        writer.write_batch(batch)
                        digest.update(_row_hashes(batch))
                        rows += batch.num_rows
    except READ_ERRORS as exc:
        raise SourceError(
            f"The source {source!r} is not readable as {opened.format}: "
            f"{(str(exc).splitlines() or [type(exc).__name__])[0]}"
        ) from None
    return IngestResult(
        source=source, format=table.format, data_version=digest.hexdigest(), rows=rows,
        columns=list(schema.names),
    )
