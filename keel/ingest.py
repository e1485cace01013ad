"""Ingest: read a source into one Parquet snapshot and its data version, streaming.

Reading is :mod:`keel.sources`' job (files by format, other sources by URI scheme); ingest sees
only a schema and record batches. Before a batch is written and hashed it is put in one canonical
form, so that what differs between formats does not reach the snapshot or the data version:

- **missing values**: null, an empty text cell (``""``: CSV cannot tell it from a missing cell)
  and a float NaN are all stored as null;
- **dates and times**: a date (CSV reads ``2024-01-31`` as a date, JSON Lines as a timestamp)
  and a timestamp in any unit are stored as a timestamp in microseconds (pandas' unit, and what
  databases hold): a CSV with fractional seconds (read as nanoseconds) and the same rows from
  PostgreSQL get one data version. A value with sub-microsecond digits is refused, never
  silently cut. A time of day (CSV: seconds, databases: microseconds) is stored in microseconds.
- **decimals** (Parquet ``decimal128``, as pandas and Spark write ``Decimal`` values) are stored
  as float64, each value the double nearest its digits: what a CSV reader makes of the same
  digits, and what the SQL source reads ``numeric`` as.
- **a column with no value** in any row is stored with the null type: a CSV or JSON reader has
  no other type to give it, while Parquet, a database or an API's declared type (an ``integer``
  column that is NULL throughout) would otherwise hash the same missing values differently. It
  is found only once every row is read: the snapshot is then read again and rewritten, which
  happens only for such tables.

The data version is a sha256 over the canonical rows (column names, then a value hash per row,
in order), so the same rows give the same version whatever their source, format, encoding,
compression or batch boundaries. Memory stays flat: one record batch at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keel import sources
from keel.contracts import IngestResult
from keel.errors import SourceError, reports_errors
from keel.settings import checked
from keel.sources import DEFAULT_ENCODING, NO_OPTIONS, SourceOptions, open_source

SNAPSHOT_COMPRESSION = "zstd"
#: Errors pyarrow and Python raise on content they cannot read: reported as a SourceError.
READ_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, UnicodeDecodeError)
TIMESTAMP_UNIT = "us"
SHOWN_CHARS = 80  # content echoed in a message (a row, a value, a name) is cut to this length
MAX_DETAIL_CHARS = 240  # a reader's message longer than this is cut


# -- the canonical form -----------------------------------------------------------------------
def canonical_type(arrow_type: pa.DataType) -> pa.DataType:
    """The type a column is stored as: us timestamps for dates and timestamps, float64 for decimals.

    Times of day are stored in microseconds.
    """
    if pa.types.is_decimal(arrow_type):
        return pa.float64()
    if pa.types.is_date(arrow_type):
        return pa.timestamp(TIMESTAMP_UNIT)
    if pa.types.is_timestamp(arrow_type):
        return pa.timestamp(TIMESTAMP_UNIT, tz=arrow_type.tz)
    if pa.types.is_time(arrow_type):
        return pa.time64(TIMESTAMP_UNIT)
    return arrow_type


def canonical_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every column in its canonical type (names and metadata unchanged)."""
    return pa.schema(
        [field.with_type(canonical_type(field.type)) for field in schema], metadata=schema.metadata
    )


def _is_text(arrow_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow_type):
        return _is_text(arrow_type.value_type)
    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))


def _missing_as_null(column: pa.Array) -> pa.Array:
    """``column`` with its empty text cells or NaN floats as nulls: one kind of missing value."""
    if _is_text(column.type):
        missing = pc.equal(column, "")
    elif pa.types.is_float32(column.type) or pa.types.is_float64(column.type):
        missing = pc.is_nan(column)
    else:
        return column
    if not pc.any(missing).as_py():
        return column
    return pc.if_else(missing, pa.scalar(None, column.type), column)


def canonical_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` in the canonical form: missing values as null, columns cast to ``schema``."""
    columns = []
    for column, field in zip(batch.columns, schema, strict=True):
        column = _missing_as_null(column)
        if pa.types.is_decimal(column.type) and pa.types.is_floating(field.type):
            column = sources.decimal_to_float(column)
        columns.append(column if column.type == field.type else column.cast(field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


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

    if len(set(batch.schema.names)) < batch.num_columns:
        # pandas matches repeated names to the wrong columns' types: convert by position (the
        # names are hashed apart, and pandas' value hashes do not include them)
        batch = pa.RecordBatch.from_arrays(
            batch.columns, names=[str(i) for i in range(batch.num_columns)]
        )
    frame = batch.to_pandas(types_mapper=stable_dtype)
    hashes: bytes = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    return hashes


def _store_without_values(path: str, header: Any, empty: set[int]) -> Any:
    """Rewrite the snapshot at ``path`` with columns ``empty`` (no value in any row) as null.

    Reads the snapshot one row group at a time, so memory stays flat; returns the digest of the
    rewritten rows, continued from ``header`` (the digest of the column names).
    """
    snapshot = pq.ParquetFile(path)
    schema = pa.schema([field.with_type(pa.null()) if i in empty else field
                        for i, field in enumerate(snapshot.schema_arrow)],
                       metadata=snapshot.schema_arrow.metadata)
    digest = header.copy()
    rewritten = f"{path}.rewrite"
    try:
        with pq.ParquetWriter(rewritten, schema, compression=SNAPSHOT_COMPRESSION) as writer:
            for batch in snapshot.iter_batches(batch_size=sources.BATCH_ROWS):
                columns = [pa.nulls(batch.num_rows) if i in empty else column
                           for i, column in enumerate(batch.columns)]
                batch = pa.RecordBatch.from_arrays(columns, schema=schema)
                writer.write_batch(batch)
                digest.update(_row_hashes(batch))
        snapshot.close()
        os.replace(rewritten, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(rewritten)
    return digest


# -- messages ---------------------------------------------------------------------------------
def shorten(text: str, limit: int = SHOWN_CHARS, *, quote: bool = True) -> str:
    """``text`` quoted (control characters escaped), cut to ``limit`` characters with a note.

    Content a reader echoes (a CSV row, a value, a column name, a type) can be any length: a
    message must stay one short line.
    """
    show = repr if quote else str
    if text.endswith(_PYARROW_CUT):  # pyarrow cut it already: its full length is unknown
        return f"{show(text.removesuffix(_PYARROW_CUT)[:limit])}... (cut)"
    if len(text) <= limit:
        return show(text)
    return f"{show(text[:limit])}... ({len(text):,} characters, cut)"


#: pyarrow messages that end with content from the file: (what is wrong, the content).
_ECHOES = (
    re.compile(r"(?P<head>[^\n]*?\bExpected \d+ columns?, got \d+: )(?P<echo>.*)", re.DOTALL),
    re.compile(r"(?P<head>[^\n]*?\binvalid value )'(?P<echo>.*)'", re.DOTALL),
)
_CSV_COLUMN = re.compile(r"\bIn CSV column #(\d+)")
_PYARROW_CUT = " ..."  # how pyarrow ends a CSV row it echoes in part
_STRADDLING = "straddling object straddles two block boundaries"


def read_error_detail(error: BaseException, fmt: str, schema: pa.Schema | None = None) -> str:
    """A reader's error as one short line: what is wrong and where, echoed content cut."""
    message = str(error)
    if _STRADDLING in message:
        limit = f"{sources.CSV_BLOCK_BYTES >> 20} MiB"
        if fmt == "jsonl":
            return (f"a line is longer than {limit}; JSON Lines holds one object per line (a "
                    "file holding one JSON document or array is not JSON Lines)")
        return f"a row is longer than {limit} (is a quote left open?)"
    for pattern in _ECHOES:
        match = pattern.fullmatch(message)
        if match:
            message = match["head"] + shorten(match["echo"])
            break
    else:
        message = (message.splitlines() or [type(error).__name__])[0]
        if len(message) > MAX_DETAIL_CHARS:
            message = (f"{message[:MAX_DETAIL_CHARS]}... (message cut, "
                       f"{len(message):,} characters)")
    if schema is not None:  # pyarrow numbers CSV columns from 0: name them too
        def named(found: re.Match[str]) -> str:
            index = int(found.group(1))
            name = f" ({shorten(schema.names[index])})" if index < len(schema.names) else ""
            return f"{found.group(0)}{name}"

        message = _CSV_COLUMN.sub(named, message)
    return message


def _check_flat(source: str, schema: pa.Schema, fmt: str) -> None:
    """Every column must hold one flat value per cell, whatever the source."""
    nested = [f for f in schema if pa.types.is_nested(f.type)]
    if nested:
        shown = [f"{shorten(f.name)} ({shorten(str(f.type), quote=False)})" for f in nested[:5]]
        if len(nested) > 5:
            shown.append(f"and {len(nested) - 5} more")
        hint = (" JSON Lines holds one flat object per line; a file holding one JSON document "
                "is not JSON Lines." if fmt == "jsonl" else "")
        raise SourceError(
            f"The source {source!r} has nested values in column(s) {', '.join(shown)}; "
            f"expected one flat value (number, string, boolean, date) per cell.{hint}"
        )


# -- the stage --------------------------------------------------------------------------------
@reports_errors
def ingest(
    source: str, output_path: str, fmt: str = "auto", encoding: str = DEFAULT_ENCODING,
    options: SourceOptions = NO_OPTIONS,
) -> IngestResult:
    """Stream ``source`` into a zstd Parquet file at ``output_path`` and compute its data version.

    ``encoding`` is the text encoding of a CSV or JSON Lines source (Parquet ignores it); text
    that is not valid in it is a SourceError naming the offset of the first invalid byte.
    ``options`` carry a SQL query or table, or the key an API's records are under.
    """
    checked("source_encoding", encoding)
    opened = open_source(source, fmt, encoding, options)
    digest = hashlib.sha256()
    rows = 0
    schema: pa.Schema | None = None
    try:
        with opened.open() as table:
            _check_flat(source, table.schema, table.format)
            schema = canonical_schema(table.schema)
            digest.update("\x1f".join(schema.names).encode() + b"\x1e")
            empty = {i for i, field in enumerate(schema) if not pa.types.is_null(field.type)}
            header = digest.copy()  # the column names alone: where a second pass starts
            with pq.ParquetWriter(output_path, schema, compression=SNAPSHOT_COMPRESSION) as writer:
                for batch in table.batches:
                    if batch.num_rows:
                        batch = canonical_batch(batch, schema)
                        writer.write_batch(batch)
                        digest.update(_row_hashes(batch))
                        rows += batch.num_rows
                        empty -= {i for i in empty if batch.column(i).null_count < batch.num_rows}
            if rows and empty:
                digest = _store_without_values(output_path, header, empty)
    except BaseException as exc:
        # a failed read leaves no snapshot: a partial one must never pass for the table
        with contextlib.suppress(OSError):
            os.unlink(output_path)
        if isinstance(exc, READ_ERRORS):
            after = f" (after row {rows:,})" if rows else ""
            raise SourceError(
                f"The source {source!r} is not readable as {opened.format}{after}: "
                f"{read_error_detail(exc, opened.format, schema)}"
            ) from None
        raise
    return IngestResult(
        source=source, format=table.format, data_version=digest.hexdigest(), rows=rows,
        columns=list(schema.names), query=table.query, parts=table.parts,
    )
