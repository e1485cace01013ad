"""Where ingest reads a table from: one :class:`Source` interface, a class per URI scheme.

Ingest sees only a schema and a stream of Arrow record batches, so a new kind of source (a
database, an HTTP endpoint) is one :class:`Source` subclass and one :data:`SOURCES` entry, with
no change to ingest, its data version or its snapshot. Files (a local path or ``gs://``) are one
such class; the file formats it reads are the :data:`FORMATS` table. A local folder or a
``gs://`` prefix is read as one table by :class:`FolderSource`, one file at a time.

Text formats (CSV, JSON Lines) are read in the source's encoding (``source_encoding``): bytes
that are not valid in it are a SourceError naming the byte offset, never a binary column or a
decoding error in a later stage.

pyarrow is imported only inside functions: the CLI and the settings table import this module
just to check a URI or list :data:`FORMAT_NAMES`, and must stay fast to start.
"""

from __future__ import annotations

import abc
import codecs
import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, TypeAlias

from typing_extensions import override

from keel.errors import ParameterError, SourceError
from keel.storage import ObjectNotFound, open_binary

if TYPE_CHECKING:
    import pyarrow as pa

    #: What a reader reads: a Python binary file, or a pyarrow stream (gzip decompression).
    BinaryStream: TypeAlias = IO[bytes] | pa.NativeFile
    #: (stream, file name in lower case without ``.gz``, encoding) -> the schema and the batches.
    Reader: TypeAlias = Callable[
        [BinaryStream, str, str], tuple[pa.Schema, Iterator[pa.RecordBatch]]
    ]

BATCH_ROWS = 65_536  # rows per Parquet record batch
CSV_BLOCK_BYTES = 16 << 20  # CSV/JSON types are inferred from the first block: make it large
SCAN_BYTES = 1 << 20  # chunk size when looking for the first byte that is not valid text
DEFAULT_ENCODING = "utf-8"
#: pyarrow's messages when text is not valid UTF-8 (its readers' own wording varies).
_ENCODING_PROBLEM = re.compile(r"utf-?8|unicode|encod|decod", re.IGNORECASE)


def is_utf8(encoding: str) -> bool:
    """Whether ``encoding`` is UTF-8 itself, which pyarrow reads with no transcoding."""
    return codecs.lookup(encoding).name == "utf-8"


# -- file formats -----------------------------------------------------------------------------
def _read_csv(
    stream: BinaryStream, name: str, encoding: str
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """CSV/TSV; an empty cell (quoted or not) is null in number, boolean and date columns.

    Empty text cells are read as ``""`` here and made missing by ingest, for every source alike.
    Quoted values may span lines (RFC 4180), as pandas and spreadsheets write them.
    """
    import pyarrow.csv as pcsv

    reader = pcsv.open_csv(
        stream,
        read_options=pcsv.ReadOptions(
            block_size=CSV_BLOCK_BYTES, encoding="utf8" if is_utf8(encoding) else encoding
        ),
        parse_options=pcsv.ParseOptions(
            delimiter="\t" if name.endswith(".tsv") else ",", newlines_in_values=True
        ),
        convert_options=pcsv.ConvertOptions(quoted_strings_can_be_null=True),
    )
    return reader.schema, _ReaderBatches(reader, None)


def _read_parquet(
    stream: BinaryStream, name: str, encoding: str
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Parquet, in batches of :data:`BATCH_ROWS`; its text is UTF-8 by definition (no encoding)."""
    import pyarrow.parquet as pq

    # pre_buffer keeps every column chunk it has read until the file is closed: memory would
    # grow with the file (3M rows: 416 MiB against 148 MiB)
    parquet = pq.ParquetFile(stream, pre_buffer=False)
    return parquet.schema_arrow, parquet.iter_batches(batch_size=BATCH_ROWS)


def _read_jsonl(
    stream: BinaryStream, name: str, encoding: str
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """JSON Lines; another encoding than UTF-8 is transcoded in a stream (pyarrow reads UTF-8 only).

    pyarrow's JSON reader does not check that strings are valid UTF-8, so every batch is checked
    here: invalid text fails at ingest instead of being written to the snapshot.
    """
    import pyarrow as pa
    import pyarrow.json as pjson

    utf8 = is_utf8(encoding)
    if not utf8:
        native = stream if isinstance(stream, pa.NativeFile) else pa.PythonFile(stream, mode="r")
        stream = pa.transcoding_input_stream(native, encoding, "utf-8")
    checked = _ReaderBatches(
        pjson.open_json(stream, read_options=pjson.ReadOptions(block_size=CSV_BLOCK_BYTES)),
        _checked_utf8 if utf8 else None)
    first = next(checked, None)  # the block the reader inferred its types from, read already
    if first is None:
        return checked.schema, iter(())
    schema = json_timestamp_schema(first)

    def convert(batch: pa.RecordBatch) -> pa.RecordBatch:
        return as_json_timestamps(_checked_utf8(batch) if utf8 else batch, schema)

    return schema, _ReaderBatches(checked.reader, convert,
                                  first=as_json_timestamps(first, schema))


class _ReaderBatches:
    """A pyarrow reader's batches, each converted; the reader is let go of when they end or fail.

    pyarrow's CSV and JSON readers read ahead on threads of their own, and their ``close()``
    does not stop that. A reader still referenced when a read error propagates (a traceback
    holds every frame that refers to it) lives until interpreter shutdown, where its threads can
    abort the process ("terminate called without an active exception", apache/arrow#34314)
    instead of letting it exit with Keel's error. So only this object holds the reader, reads
    it here, and drops it on the first exception, on the end and on ``close()``: it is destroyed
    at once, while Arrow is alive.
    """

    def __init__(self, reader: Any, convert: Callable[[pa.RecordBatch], pa.RecordBatch] | None,
                 first: pa.RecordBatch | None = None):
        self.reader: Any = reader
        self.schema: pa.Schema = reader.schema
        self.convert = convert
        self.first = first

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self

    def __next__(self) -> pa.RecordBatch:
        if self.first is not None:
            batch, self.first = self.first, None
            return batch
        if self.reader is None:
            raise StopIteration
        try:
            batch = self.reader.read_next_batch()
            return batch if self.convert is None else self.convert(batch)
        except BaseException:  # the end, a read error or an interrupt: the reader is done
            self.close()
            raise

    def close(self) -> None:
        self.reader = None


def _timestamp_of_text(column: pa.Array) -> pa.DataType | None:
    """The timestamp type a CSV reader infers for text ``column``, or None if it infers none.

    pyarrow's JSON reader types text as a timestamp only when every value has whole seconds and
    it drops a zone offset; its CSV reader reads ISO 8601 text with fractional seconds as
    nanosecond timestamps, and text whose every value has a zone offset (``Z``, ``+01:00``) as
    UTC timestamps. Text mixing values with and without an offset stays text, as in CSV.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pc.drop_null(pc.if_else(pc.equal(column, ""), None, column))  # "" is missing
    if not len(values):
        return None
    for candidate in (pa.timestamp("s"), pa.timestamp("ns"), pa.timestamp("s", tz="UTC"),
                      pa.timestamp("ns", tz="UTC")):
        try:
            values.cast(candidate)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return candidate
    return None


def json_timestamp_schema(batch: pa.RecordBatch) -> pa.Schema:
    """``batch``'s schema, its text columns holding only ISO 8601 timestamps typed as CSV would.

    So the same timestamps (JavaScript's ``2024-01-31T10:15:00.000Z``, Python's
    ``isoformat()`` with microseconds) are timestamps in JSON Lines and JSON APIs as in CSV,
    Parquet and databases, with the same data version.
    """
    import pyarrow as pa

    fields = []
    for column, field_ in zip(batch.columns, batch.schema, strict=True):
        found = _timestamp_of_text(column) if _is_text_type(field_.type) else None
        fields.append(field_ if found is None else field_.with_type(found))
    return pa.schema(fields, metadata=batch.schema.metadata)


def as_json_timestamps(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with the text columns :func:`json_timestamp_schema` typed as timestamps cast.

    A value that is no timestamp in such a column is an error (ArrowInvalid), as in a CSV
    column typed from its first block.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if batch.schema.equals(schema):
        return batch
    columns = []
    for column, field_ in zip(batch.columns, schema, strict=True):
        if column.type != field_.type:
            column = pc.if_else(pc.equal(column, ""), None, column).cast(field_.type)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _checked_utf8(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch``, each string column checked to be valid UTF-8 (ArrowInvalid if not)."""
    import pyarrow as pa

    for column in batch.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            column.validate(full=True)
    return batch


@dataclass(frozen=True)
class FileFormat:
    """A file format: its name, the file-name suffixes that mean it, and its reader.

    Any suffix may be followed by ``.gz`` (read through a gzip stream) unless ``gzip_refusal``
    says why the format cannot be read that way. A text format is read in the source's encoding;
    the others ignore it.
    """

    name: str
    suffixes: tuple[str, ...]
    read: Reader
    gzip_refusal: str = ""  # the end of the message refusing ``<name>.gz``; "" if it is readable
    text: bool = True


FORMATS: tuple[FileFormat, ...] = (
    FileFormat("csv", (".csv", ".tsv"), _read_csv),
    FileFormat(
        "parquet", (".parquet", ".pq"), _read_parquet,
        gzip_refusal="is a gzipped Parquet file, which cannot be read in a stream: Parquet "
                     "compresses its own pages, so store it uncompressed (gunzip it).",
        text=False,
    ),
    FileFormat("jsonl", (".jsonl", ".ndjson", ".json"), _read_jsonl),
)
FORMAT_NAMES: tuple[str, ...] = tuple(f.name for f in FORMATS)
_BY_NAME: dict[str, FileFormat] = {f.name: f for f in FORMATS}


def file_format(name: str) -> FileFormat:
    """The format called ``name`` (one of :data:`FORMAT_NAMES`)."""
    return _BY_NAME[check_format_name(name)]


def check_format_name(fmt: str) -> str:
    """``fmt`` if it is ``"auto"`` or a format name; else a ParameterError naming 'source_format'."""
    if fmt != "auto" and fmt not in _BY_NAME:
        raise ParameterError(
            f"The 'source_format' parameter of ingest must be one of "
            f"{', '.join(('auto', *FORMAT_NAMES))}. Got {fmt!r}.",
            stage="ingest",
        )
    return fmt


def detect_format(uri: str, fmt: str = "auto") -> str:
    """The format name of the file at ``uri``: ``fmt`` if explicit, else from the file's suffix."""
    if check_format_name(fmt) != "auto":
        return fmt
    name = uri.lower().removesuffix(".gz")
    for found in FORMATS:
        if name.endswith(found.suffixes):
            return found.name
    suffixes = sorted(s for f in FORMATS for s in f.suffixes)
    raise SourceError(
        f"Cannot tell the format of {uri!r} from its name: expected a name ending in "
        f"{', '.join(suffixes)} (optionally .gz), or an explicit format (the 'source_format' "
        f"parameter: {', '.join(FORMAT_NAMES)})."
    )


# -- the interface ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceOptions:
    """What a source needs besides its URI: a SQL query or table, the key an API's records are under.

    A source refuses options it does not take (:meth:`Source.check_options`).
    """

    query: str = ""
    table: str = ""
    records_key: str = ""

    def given(self) -> dict[str, str]:
        """The options that are set, by setting name (``source_query``, ...)."""
        named = {"source_query": self.query, "source_table": self.table,
                 "records_key": self.records_key}
        return {name: value for name, value in named.items() if value}


NO_OPTIONS = SourceOptions()


@dataclass(frozen=True)
class SourceRows:
    """An opened source: its schema and its record batches (read lazily, inside the ``with``)."""

    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    format: str  # what the rows were read as: a file format name, or the source's scheme
    query: str = ""  # what was asked of it (a SQL query or table), for the manifest
    parts: int = 1  # files read (a folder or prefix), or pages (a JSON API)


class Source(abc.ABC):
    """A table ingest can read, named by a URI; subclasses are registered in :data:`SOURCES`.

    Constructing one checks the URI and the format (no I/O); :meth:`open` reads it. A source that
    is not a file has no file format: it accepts only ``"auto"``, reports its scheme as its
    format, and yields record batches itself. ``encoding`` (a codec name Python knows, checked by
    the caller) is the encoding of text the source reads as bytes.
    """

    #: the options (SourceOptions field names) this kind of source takes
    takes: frozenset[str] = frozenset()

    def __init__(
        self, uri: str, fmt: str = "auto", encoding: str = DEFAULT_ENCODING,
        options: SourceOptions = NO_OPTIONS,
    ) -> None:
        self.uri = uri
        self.format = self.resolve_format(check_format_name(fmt))
        self.encoding = encoding  # of text a source reads as bytes; others ignore it
        self.options = options

    @classmethod
    def create(
        cls, uri: str, fmt: str = "auto", encoding: str = DEFAULT_ENCODING,
        options: SourceOptions = NO_OPTIONS,
    ) -> Source:
        """The source reading ``uri``: an instance of this class, or of one it hands ``uri`` to.

        :class:`FileSource` hands folders and prefixes to :class:`FolderSource`.
        """
        return cls(uri, fmt, encoding, options)

    @classmethod
    def check_uri(cls, uri: str) -> None:
        """Refuse a URI of this scheme that can never be read (ParameterError); no I/O.

        The default accepts every URI of the scheme.
        """
        return None

    @classmethod
    def check_options(cls, uri: str, options: SourceOptions) -> None:
        """Refuse options this source does not take, or lacks (ParameterError); no I/O."""
        fields = {"source_query": "query", "source_table": "table", "records_key": "records_key"}
        for name, value in options.given().items():
            if fields[name] not in cls.takes:
                raise ParameterError(
                    f"The {name!r} parameter of ingest applies to "
                    f"{_taking(fields[name])}, not to {uri!r}. Got {value!r}.",
                    stage="ingest",
                )

    def resolve_format(self, fmt: str) -> str:
        """What the rows are read as, reported in the ingest result and in read errors."""
        scheme = scheme_of(self.uri)
        if fmt != "auto":
            raise ParameterError(
                f"The 'source_format' parameter of ingest must be auto for a {scheme}:// source, "
                f"which is not a file. Got {fmt!r}.",
                stage="ingest",
            )
        return scheme

    @abc.abstractmethod
    def open(self) -> contextlib.AbstractContextManager[SourceRows]:
        """Open the source; the batches can be read until the ``with`` block ends.

        Raises SourceError when the source does not exist; pyarrow, OS and decoding errors while
        reading propagate (ingest reports them with the source and its format).
        """


class FileSource(Source):
    """A CSV, Parquet or JSON Lines file, optionally gzipped: a local path or ``gs://`` object.

    The format comes from the file name unless given. A folder or a ``gs://`` prefix is handed to
    :class:`FolderSource` (:meth:`create`), and so is a ``gs://`` name found, when opened, to be
    no object but a prefix (Spark writes ``out.csv/part-*.csv``). A subclass reading files from
    elsewhere (HTTP) only overrides :meth:`open_stream`.
    """

    def __init__(
        self, uri: str, fmt: str = "auto", encoding: str = DEFAULT_ENCODING,
        options: SourceOptions = NO_OPTIONS,
    ) -> None:
        self.given_format = fmt  # "auto" or the format asked for, kept for a prefix found later
        super().__init__(uri, fmt, encoding, options)
        self.file_format = _BY_NAME[self.format]
        self.gzipped = uri.lower().endswith(".gz")
        if self.gzipped and self.file_format.gzip_refusal:
            raise SourceError(f"The source {uri!r} {self.file_format.gzip_refusal}")

    @override
    @classmethod
    def create(
        cls, uri: str, fmt: str = "auto", encoding: str = DEFAULT_ENCODING,
        options: SourceOptions = NO_OPTIONS,
    ) -> Source:
        if names_folder(uri, fmt):
            return FolderSource(uri, fmt, encoding, options)
        return cls(uri, fmt, encoding, options)

    @override
    @classmethod
    def check_uri(cls, uri: str) -> None:
        if scheme_of(uri) == "gs" and not uri[len("gs://"):].partition("/")[0]:
            raise ParameterError(
                "The 'source' parameter of ingest must name a bucket, like gs://bucket/object or "
                f"gs://bucket/prefix/. Got {uri!r}.",
                stage="ingest",
            )

    @override
    def resolve_format(self, fmt: str) -> str:
        return detect_format(self.uri, fmt)

    def open_stream(self) -> IO[bytes]:
        """The file's raw bytes; SourceError when it does not exist."""
        try:
            return open_binary(self.uri)
        except ObjectNotFound as exc:
            raise SourceError(f"The source {self.uri!r} cannot be read: {exc.args[0]}") from None

    def _prefix_instead(self) -> FolderSource | None:
        """The ``gs://`` prefix named like this missing object, if objects are under it."""
        if scheme_of(self.uri) != "gs":
            return None
        folder = FolderSource(self.uri.rstrip("/") + "/", self.given_format, self.encoding)
        return folder if folder.listing() else None

    def _content(self, raw: IO[bytes]) -> BinaryStream:
        """The file's content: ``raw``, decompressed in a stream if the file is gzipped."""
        import pyarrow as pa

        if self.gzipped:
            return pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), "gzip")
        return raw

    @override
    @contextlib.contextmanager
    def open(self) -> Iterator[SourceRows]:
        import pyarrow as pa

        try:
            stream = self.open_stream()
        except SourceError:
            prefix = self._prefix_instead()
            if prefix is None:
                raise
            with prefix.open() as rows:
                yield rows
            return
        with stream as raw:
            name = self.uri.lower().removesuffix(".gz")
            try:
                schema, batches = self.file_format.read(self._content(raw), name, self.encoding)
                schema.names  # noqa: B018 - decoded lazily by pyarrow: fail here if not UTF-8
            except Exception as exc:
                self._refuse_invalid_text(exc)
                raise
            try:
                if self.file_format.text and any(pa.types.is_binary(f.type) for f in schema):
                    # pyarrow's CSV reader types a column holding invalid UTF-8 as binary.
                    self._refuse_invalid_text(None)
                yield SourceRows(schema=schema, batches=self._explained(batches),
                                 format=self.format)
            finally:
                close = getattr(batches, "close", None)  # a reader, a generator: not an iter(())
                if close is not None:
                    close()  # the reader stops before the stream under it is closed

    def _explained(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """The batches; a read error caused by invalid text becomes a SourceError saying where."""
        try:
            yield from batches
        except Exception as exc:
            self._refuse_invalid_text(exc)
            raise

    def _refuse_invalid_text(self, error: Exception | None) -> None:
        """SourceError naming the first invalid byte, if the file is text and has one.

        Called when reading failed with ``error`` (only an error that can come from invalid text
        starts the scan: it reads the file again) or, with None, when the content already shows
        invalid text. Returns when no invalid byte is found: the caller reports its own error.
        """
        if not self.file_format.text or (error is not None and not _may_be_invalid_text(error)):
            return
        try:
            with self.open_stream() as raw:
                found = find_invalid_text(self._content(raw), self.encoding)
        except Exception:  # the scan is a diagnosis: the original error stands if it fails
            return
        if found is not None:
            where = "of the decompressed text " if self.gzipped else ""
            raise SourceError(
                f"The source {self.uri!r} is not readable as {self.format}: {found.shown} at byte "
                f"offset {found.offset} {where}(line {found.line}) is not valid {self.encoding} "
                f"text. Pass --source-encoding latin-1 (or the file's encoding)."
            ) from None


def _may_be_invalid_text(error: Exception) -> bool:
    """Whether a read error may come from text that is not valid in the expected encoding."""
    import pyarrow as pa

    if isinstance(error, UnicodeError):
        return True
    return isinstance(error, pa.ArrowException | OSError) and bool(
        _ENCODING_PROBLEM.search(str(error))
    )


@dataclass(frozen=True)
class InvalidText:
    """Where the first byte that is not valid text is: byte offset and line (from 1)."""

    offset: int
    line: int
    invalid: bytes  # the bytes that cannot be decoded (the start of the invalid sequence)

    @property
    def shown(self) -> str:
        """``byte 0xe9`` or ``bytes 0xe2 0x82``, for messages."""
        hexed = " ".join(f"0x{b:02x}" for b in self.invalid[:4])
        return f"byte {hexed}" if len(self.invalid) == 1 else f"bytes {hexed}"


def find_invalid_text(stream: BinaryStream, encoding: str) -> InvalidText | None:
    """The first byte of ``stream`` not valid in ``encoding``; None if the whole stream decodes.

    Reads :data:`SCAN_BYTES` at a time through an incremental decoder, so memory stays flat
    whatever the size of the file.
    """
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    consumed = lines = 0
    while True:
        chunk = stream.read(SCAN_BYTES)
        pending = len(decoder.getstate()[0])  # bytes of a sequence cut by the previous chunk
        try:
            lines += decoder.decode(chunk, final=not chunk).count("\n")
        except UnicodeDecodeError as exc:
            before = exc.object[:exc.start].decode(encoding, "replace")
            return InvalidText(
                offset=consumed - pending + exc.start, line=lines + before.count("\n") + 1,
                invalid=bytes(exc.object[exc.start:exc.end]),
            )
        if not chunk:
            return None
        consumed += len(chunk)


# -- one table from many parts -----------------------------------------------------------------
def common_type(first: pa.DataType, other: pa.DataType) -> pa.DataType | None:
    """The type holding values of both types without loss of meaning; None if there is none.

    Used where one table comes in parts (files of a folder, pages of an API), each typed on its
    own: a column null in one part takes the other's type; integers of any width and floats
    meet as float64 (integers of one signedness as the wider one); dates and timestamps meet as
    a timestamp in the finer unit (ingest stores both as timestamps anyway), timestamps in two
    zones as UTC (the same instants), times of day as the finer time; dictionary-encoded text
    meets plain text as text. Numbers, text, booleans and dates never mix, nor do timestamps
    with and without a zone.
    """
    import pyarrow as pa

    t = pa.types
    if first == other:
        return first
    if t.is_null(first):
        return other
    if t.is_null(other):
        return first
    if t.is_dictionary(first) or t.is_dictionary(other):
        return common_type(_plain(first), _plain(other))
    if t.is_integer(first) and t.is_integer(other):
        if t.is_signed_integer(first) == t.is_signed_integer(other):
            return first if first.bit_width >= other.bit_width else other
        return pa.int64()
    numbers = (t.is_integer, t.is_floating, t.is_decimal)
    if any(f(first) for f in numbers) and any(f(other) for f in numbers):
        return pa.float64()
    if _is_text_type(first) and _is_text_type(other):
        return pa.large_string() if pa.large_string() in (first, other) else pa.string()
    if t.is_temporal(first) and t.is_temporal(other):
        return _common_time(first, other)
    return None


def _plain(arrow_type: pa.DataType) -> pa.DataType:
    """The values' type of a dictionary type; any other type unchanged."""
    import pyarrow as pa

    return arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type


def _is_text_type(arrow_type: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))


_UNITS = ("s", "ms", "us", "ns")


def _common_time(first: pa.DataType, other: pa.DataType) -> pa.DataType | None:
    """The type two dates, times of day or timestamps meet as; None if they cannot meet.

    Two dates: date64; two times of day: the finer; a date or timestamp with a timestamp: the
    finer timestamp, in their zone, or in UTC for two zones (never a zone with no zone).
    """
    import pyarrow as pa

    t = pa.types
    if t.is_time(first) and t.is_time(other):  # a CSV's time32[s], Parquet's time64[us]
        unit = max(first.unit, other.unit, key=_UNITS.index)
        return pa.time32(unit) if unit in ("s", "ms") else pa.time64(unit)
    stamps = [x for x in (first, other) if t.is_timestamp(x)]
    if not stamps:
        return pa.date64() if t.is_date(first) and t.is_date(other) else None
    if not all(t.is_date(x) or t.is_timestamp(x) for x in (first, other)):
        return None
    zones = {x.tz for x in stamps}
    if len(zones) > 1 and None in zones:
        return None  # a time with a zone and one without: not comparable
    # two zones (a CSV's UTC offsets, a Parquet file's Europe/Berlin): the same instants in UTC
    zone = stamps[0].tz if len(zones) == 1 else "UTC"
    units = [x.unit for x in stamps] + ["ms" for x in (first, other) if t.is_date64(x)]
    return pa.timestamp(max(units, key=_UNITS.index), tz=zone)


def decimal_to_float(column: pa.Array) -> pa.Array:
    """A decimal column as float64, each value the double nearest its digits.

    Through its text, as a CSV reader parses the same digits (and as the SQL source reads
    ``numeric``): pyarrow's own decimal-to-float cast can be one unit in the last place off.
    """
    import pyarrow as pa

    return column.cast(pa.string()).cast(pa.float64())


def value_kind(arrow_type: pa.DataType) -> str:
    """What a column holds, in words for messages: ``numbers (int64)``, ``text (string)``."""
    import pyarrow as pa

    t = pa.types
    plain = _plain(arrow_type)
    if t.is_integer(plain) or t.is_floating(plain) or t.is_decimal(plain):
        kind = "numbers"
    elif _is_text_type(plain):
        kind = "text"
    elif t.is_boolean(plain):
        kind = "booleans"
    elif t.is_temporal(plain):
        kind = "dates or times"
    elif t.is_null(plain):
        kind = "only missing values"
    else:
        kind = "values"
    return f"{kind} ({arrow_type})"


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` (the same column names) with each column cast to ``schema``'s common type.

    Integers become floats unchecked (as a CSV reader parses them when a column holds both),
    every other cast is checked.
    """
    import pyarrow as pa

    if batch.schema.equals(schema):
        return batch
    columns = []
    for column, field in zip(batch.columns, schema, strict=True):
        if column.type != field.type:
            to_float = pa.types.is_integer(column.type) and pa.types.is_floating(field.type)
            if pa.types.is_decimal(column.type) and pa.types.is_floating(field.type):
                column = decimal_to_float(column)
            column = column.cast(field.type, safe=not to_float)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


# -- folders and prefixes ---------------------------------------------------------------------
#: Suffixes of files that are never data: Hadoop/Spark checksums (their other marker files,
#: ``_SUCCESS``, ``_committed_*``, start with ``_`` and are left out by name).
SKIPPED_SUFFIXES = (".crc",)
FOLDER_SHOWN_FILES = 3  # files named in a message listing several
NAME_CHARS = 40  # a column name quoted in a message about a folder's files, cut in the middle


def names_folder(uri: str, fmt: str = "auto") -> bool:
    """Whether ``uri`` names a folder or prefix rather than one file (a local stat at most).

    A local path that is a folder or ends in ``/``; a ``gs://`` URI ending in ``/`` or naming a
    bucket only, or whose name has no data file suffix (and no format is given). A ``gs://`` name
    with a suffix that turns out to be a prefix is found when it is opened.
    """
    if scheme_of(uri) == "gs":
        name = uri[len("gs://"):].partition("/")[2]
        return not name or uri.endswith("/") or (fmt == "auto" and _suffix_format(uri) is None)
    return not scheme_of(uri) and (uri.endswith(("/", os.sep)) or os.path.isdir(uri))


def _suffix_format(uri: str) -> str | None:
    """The format a file name's suffix says; None if it says none."""
    name = uri.lower().removesuffix(".gz")
    return next((f.name for f in FORMATS if name.endswith(f.suffixes)), None)


def _left_out(key: str) -> bool:
    """Whether a file of a folder is not data: hidden, ``_SUCCESS``-like, or in such a folder."""
    parts = key.split("/")
    return (not parts[-1] or any(p.startswith((".", "_")) for p in parts)
            or parts[-1].lower().endswith(SKIPPED_SUFFIXES))


class FolderSource(Source):
    """Every data file under a local folder or a ``gs://`` prefix, read as one table.

    - Files are found recursively and read in the order of their paths (sorted by code point:
      zero-pad numbers in names). Files or folders whose names start with ``_`` or ``.``
      (``_SUCCESS``, ``_temporary/``, hidden files) are left out, and so are ``.crc`` checksums.
      Folder names are not read as columns (no Hive partitioning).
    - Each file's format comes from its name unless a format is given for all of them; formats
      may be mixed. A file whose name says no format is an error naming it (a README left in an
      export is more likely a mistake than something to skip).
    - Every file must have the first file's columns, in its order. Each file's types are read
      first (Parquet: its footer; CSV and JSON Lines: their first block, where the readers infer
      types; so that block is read twice), and the table's type of a column is the
      :func:`common_type` of its types in every file: int64 in one file and double in another is
      double, a column empty in one file takes the others' type, text in one file and numbers in
      another is an error naming the file.
    - Files are then read one at a time in record batches, each cast to the table's types, so
      memory holds one batch whatever the number and size of the files.
    """

    def __init__(
        self, uri: str, fmt: str = "auto", encoding: str = DEFAULT_ENCODING,
        options: SourceOptions = NO_OPTIONS,
    ) -> None:
        super().__init__(uri, fmt, encoding, options)
        self.given_format = fmt
        self._keys: list[str] | None = None

    @override
    def resolve_format(self, fmt: str) -> str:
        return fmt  # "auto" until opened; then the formats of its files, e.g. "csv+parquet"

    @property
    def kind(self) -> str:
        """``folder`` or ``prefix``, for messages."""
        return "prefix" if scheme_of(self.uri) == "gs" else "folder"

    def listing(self) -> list[str]:
        """Every object or file under the folder (paths relative to it, sorted); read once."""
        from keel.storage import LocalStore, open_store

        if self._keys is None:
            if scheme_of(self.uri) != "gs" and not os.path.isdir(self.uri):
                raise SourceError(f"The source {self.uri!r} cannot be read: it does not exist "
                                  "or is not a folder.")
            store = open_store(self.uri) if scheme_of(self.uri) == "gs" else LocalStore(self.uri)
            try:
                self._keys = store.list("")
            except ObjectNotFound as exc:
                raise SourceError(f"The source {self.uri!r} cannot be read: "
                                  f"{exc.args[0]}") from None
        return self._keys

    def file_uri(self, key: str) -> str:
        """The URI of the file at ``key`` (relative to the folder), as the user would write it."""
        if scheme_of(self.uri) == "gs":
            return f"{self.uri.rstrip('/')}/{key}"
        return os.path.join(self.uri, *key.split("/"))

    def inner(self, part: FileSource) -> str:
        """A file's path inside the folder, for messages that name the folder already."""
        folder = self.uri.rstrip("/" + os.sep)
        for sep in ("/", os.sep):
            if part.uri.startswith(folder + sep):
                return part.uri[len(folder) + 1:]
        return part.uri

    def files(self) -> list[FileSource]:
        """The data files, in reading order; SourceError if there is none or one is not data."""
        keys = self.listing()
        if not keys and scheme_of(self.uri) == "gs":
            self._refuse_missing_prefix()
        kept = [key for key in keys if not _left_out(key)]
        if not kept:
            found = (f"its {len(keys)} file(s) are all left out: names starting with '_' or '.', "
                     "and .crc files" if keys else "it is empty")
            raise SourceError(
                f"The source {self.uri!r} is a {self.kind} holding no data file ({found}); "
                "expected CSV, Parquet or JSON Lines files in it, optionally gzipped."
            )
        if self.given_format == "auto":
            unknown = [self.file_uri(k) for k in kept if _suffix_format(k) is None]
            if unknown:
                shown = ", ".join(repr(u) for u in unknown[:FOLDER_SHOWN_FILES])
                more = (f" and {len(unknown) - FOLDER_SHOWN_FILES} more"
                        if len(unknown) > FOLDER_SHOWN_FILES else "")
                suffixes = sorted(x for f in FORMATS for x in f.suffixes)
                raise SourceError(
                    f"The source {self.uri!r} is a {self.kind} holding files whose format cannot "
                    f"be told from their names: {shown}{more}; expected names ending in "
                    f"{', '.join(suffixes)} (optionally .gz). Give the format of all its files "
                    "(the 'source_format' parameter), or leave a file out by starting its name "
                    "with '_' or '.'."
                )
        return [FileSource(self.file_uri(k), self.given_format, self.encoding) for k in kept]

    def _refuse_missing_prefix(self) -> None:
        """SourceError for a ``gs://`` name with no object under it: why it cannot be read."""
        if not self.uri.endswith("/"):
            from keel.storage import open_store

            bucket, _, name = self.uri[len("gs://"):].partition("/")
            if name and open_store(f"gs://{bucket}").exists(name):  # an object of no known format
                detect_format(self.uri)
        raise SourceError(
            f"The source {self.uri!r} cannot be read: no object is named so, and none is under "
            f"{self.uri.rstrip('/') + '/'!r}."
        )

    @override
    @contextlib.contextmanager
    def open(self) -> Iterator[SourceRows]:
        parts = self.files()
        schema = self._table_schema(parts)
        names = list(dict.fromkeys(part.format for part in parts))
        self.format = "+".join(f for f in FORMAT_NAMES if f in names)
        yield SourceRows(schema=schema, batches=self._batches(parts, schema), format=self.format,
                         parts=len(parts))

    def _table_schema(self, parts: list[FileSource]) -> pa.Schema:
        """The first file's columns, each of the :func:`common_type` of its types in all files."""
        import pyarrow as pa

        names: list[str] = []
        types: list[pa.DataType] = []
        for index, part in enumerate(parts):
            with self._reading(part), part.open() as rows:
                schema = rows.schema
            if index == 0:
                names, types = list(schema.names), list(schema.types)
                continue
            self._check_columns(part, parts[0], schema.names, names)
            for i, found in enumerate(schema.types):
                common = common_type(types[i], found)
                if common is None:
                    raise SourceError(
                        f"The source {self.uri!r} is one table, but its file {part.uri!r} has "
                        f"{value_kind(found)} in column {names[i]!r}, where the files before it "
                        f"have {value_kind(types[i])}; expected one kind of value per column."
                    )
                types[i] = common
        return pa.schema([pa.field(name, type_) for name, type_ in zip(names, types, strict=True)])

    def _check_columns(
        self, part: FileSource, first: FileSource, found: list[str], expected: list[str]
    ) -> None:
        """SourceError naming ``part`` and how its columns differ from the first file's."""
        if found == expected:
            return
        from keel.errors import shorten

        def name(column: str) -> str:  # a name from a file can be any length: one line stays
            return shorten(repr(column), NAME_CHARS)

        missing = [n for n in expected if n not in found]
        extra = [n for n in found if n not in expected]
        if not missing and not extra:  # where the order first differs: a list is cut if wide
            index = next(i for i, (a, b) in enumerate(zip(found, expected, strict=True)) if a != b)
            raise SourceError(
                f"The source {self.uri!r} is one table, but its file {self.inner(part)!r} has "
                f"the columns of {self.inner(first)!r} in another order: its column {index + 1} "
                f"is {name(found[index])}, not {name(expected[index])}. Expected the same order "
                "in every file."
            )
        what = "; ".join(
            f"{label} {', '.join(name(n) for n in names[:5])}"
            + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            for label, names in (("missing", missing), ("extra", extra)) if names
        )
        raise SourceError(
            f"The source {self.uri!r} is one table, but its file {self.inner(part)!r} has other "
            f"columns than its first file {self.inner(first)!r}: {what}. Expected the same "
            "columns, in the same order, in every file."
        )

    def _batches(self, parts: list[FileSource], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """Every file's batches in turn, cast to the table's types; one file open at a time."""
        for part in parts:
            with self._reading(part), part.open() as rows:
                self._check_columns(part, parts[0], rows.schema.names, schema.names)
                for batch in rows.batches:
                    yield conform(batch, schema)

    @contextlib.contextmanager
    def _reading(self, part: FileSource) -> Iterator[None]:
        """A read error inside the block becomes a SourceError naming the file it came from."""
        import pyarrow as pa

        try:
            yield
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, UnicodeDecodeError) as exc:
            from keel.ingest import read_error_detail  # the same wording as for a single file

            raise SourceError(
                f"The source {self.uri!r} is not readable: its file {part.uri!r} is not readable "
                f"as {part.format}: {read_error_detail(exc, part.format)}"
            ) from None


# -- the registry -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceScheme:
    """A registered kind of source: the class that reads it, and how its URIs look in messages."""

    source: type[Source]
    form: str  # e.g. "a local path", "gs://bucket/object"


#: URI scheme ("" for a plain local path) -> the source that reads it. Sources in other modules
#: (:data:`PLUGINS`) add theirs with :func:`register` when they are imported.
SOURCES: dict[str, SourceScheme] = {
    "": SourceScheme(FileSource, "a local path"),
    "gs": SourceScheme(FileSource, "gs://bucket/object"),
}
#: Modules holding more sources, imported on the first look-up (not at import: the CLI starts
#: fast, and a plugin imports this module).
PLUGINS = ("keel.source_http", "keel.source_sql")
_plugins_loaded = False


def register(scheme: str, entry: SourceScheme) -> None:
    """Make ``entry`` read URIs of ``scheme`` (a SQL dialect also reads ``dialect+driver``)."""
    SOURCES[scheme] = entry


def registered() -> dict[str, SourceScheme]:
    """Every registered source, the plugins' included."""
    global _plugins_loaded
    if not _plugins_loaded:
        import importlib

        for module in PLUGINS:
            importlib.import_module(module)
        _plugins_loaded = True
    return SOURCES


def _entry(scheme: str) -> SourceScheme | None:
    """The source reading ``scheme``: itself, else its base before ``+`` (``postgresql+psycopg``)."""
    sources = registered()
    return sources.get(scheme) or sources.get(scheme.partition("+")[0])


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(uri: str) -> str:
    """``gs://b/o`` -> ``"gs"``; a path with no ``scheme://`` prefix (a local path) -> ``""``."""
    match = _SCHEME.match(uri)
    return match.group(1) if match else ""


def _taking(option: str) -> str:
    """``"a SQL source (postgresql://...)"``: the kinds of source that take ``option``."""
    forms = [entry.form for entry in registered().values() if option in entry.source.takes]
    return " or ".join(dict.fromkeys(forms)) or "no source"


def supported_forms() -> str:
    """The registered forms for messages: ``"a local path or gs://bucket/object"``."""
    forms = list(dict.fromkeys(entry.form for entry in registered().values()))
    return forms[0] if len(forms) == 1 else f"{', '.join(forms[:-1])} or {forms[-1]}"


def check_source_uri(uri: str) -> str:
    """``uri`` unchanged if a registered source reads its scheme; else a ParameterError.

    Run by the settings table before any stage starts and by ingest itself, so an ``s3://`` or
    ``http://`` URI is refused as such instead of being looked for as a local file.
    """
    if not uri.strip():
        raise ParameterError(
            f"The 'source' parameter of ingest must be {supported_forms()}. Got {uri!r}.",
            stage="ingest",
        )
    scheme = scheme_of(uri)
    entry = _entry(scheme)
    if entry is None:
        raise ParameterError(
            f"The 'source' parameter of ingest must be {supported_forms()}; the scheme "
            f"{scheme + '://'!r} is not supported. Got {uri!r}.",
            stage="ingest",
        )
    entry.source.check_uri(uri)
    return uri


def source_class(uri: str) -> type[Source]:
    """The Source class that reads ``uri`` (checked by :func:`check_source_uri`)."""
    entry = _entry(scheme_of(check_source_uri(uri)))
    assert entry is not None  # checked just above
    return entry.source


def check_source_options(uri: str, options: SourceOptions) -> SourceOptions:
    """``options`` unchanged if the source at ``uri`` takes them; else a ParameterError."""
    source_class(uri).check_options(uri, options)
    return options


def open_source(
    uri: str, fmt: str = "auto", encoding: str = DEFAULT_ENCODING,
    options: SourceOptions = NO_OPTIONS,
) -> Source:
    """The source at ``uri``, read as ``fmt`` (``"auto"``: decided by the source); not opened yet.

    ``encoding`` is the text encoding of a CSV or JSON Lines file; Parquet ignores it.
    ``options`` are checked against what the source takes.
    """
    cls = source_class(uri)
    cls.check_options(uri, options)
    return cls.create(uri, fmt, encoding, options)
