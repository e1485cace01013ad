"""Where ingest reads a table from: one :class:`Source` interface, a class per URI scheme.

Ingest sees only a schema and a stream of Arrow record batches, so a new kind of source (a
database, an HTTP endpoint) is one :class:`Source` subclass and one :data:`SOURCES` entry, with
no change to ingest, its data version or its snapshot. Files (a local path or ``gs://``) are one
such class; the file formats it reads are the :data:`FORMATS` table.

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
from typing import IO, TYPE_CHECKING, TypeAlias

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
    return reader.schema, iter(reader)


def _read_parquet(
    stream: BinaryStream, name: str, encoding: str
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Parquet, in batches of :data:`BATCH_ROWS`; its text is UTF-8 by definition (no encoding)."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(stream)
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
    reader = pjson.open_json(stream, read_options=pjson.ReadOptions(block_size=CSV_BLOCK_BYTES))
    return reader.schema, (_checked_utf8(reader) if utf8 else iter(reader))


def _checked_utf8(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The batches, each string column checked to be valid UTF-8 (ArrowInvalid if not)."""
    import pyarrow as pa

    for batch in batches:
        for column in batch.columns:
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                column.validate(full=True)
        yield batch


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
class SourceRows:
    """An opened source: its schema and its record batches (read lazily, inside the ``with``)."""

    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    format: str  # what the rows were read as: a file format name, or the source's scheme


class Source(abc.ABC):
    """A table ingest can read, named by a URI; subclasses are registered in :data:`SOURCES`.

    Constructing one checks the URI and the format (no I/O); :meth:`open` reads it. A source that
    is not a file has no file format: it accepts only ``"auto"``, reports its scheme as its
    format, and yields record batches itself. ``encoding`` (a codec name Python knows, checked by
    the caller) is the encoding of text the source reads as bytes.
    """

    def __init__(self, uri: str, fmt: str = "auto", encoding: str = DEFAULT_ENCODING) -> None:
        self.uri = uri
        self.format = self.resolve_format(check_format_name(fmt))
        self.encoding = encoding  # of text a source reads as bytes; others ignore it

    @classmethod
    def check_uri(cls, uri: str) -> None:
        """Refuse a URI of this scheme that can never be read (ParameterError); no I/O.

        The default accepts every URI of the scheme.
        """
        return None

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

    The format comes from the file name unless given. A subclass reading files from elsewhere
    (HTTP) only overrides :meth:`open_stream`.
    """

    def __init__(self, uri: str, fmt: str = "auto", encoding: str = DEFAULT_ENCODING) -> None:
        if not scheme_of(uri) and os.path.isdir(uri):  # before its name is read as a format
            raise SourceError(
                f"The source {uri!r} is a folder; expected one CSV, Parquet or JSON Lines file "
                "in it (name the file)."
            )
        super().__init__(uri, fmt, encoding)
        self.file_format = _BY_NAME[self.format]
        self.gzipped = uri.lower().endswith(".gz")
        if self.gzipped and self.file_format.gzip_refusal:
            raise SourceError(f"The source {uri!r} {self.file_format.gzip_refusal}")

    @override
    @classmethod
    def check_uri(cls, uri: str) -> None:
        if scheme_of(uri) == "gs":
            bucket, _, name = uri[len("gs://"):].partition("/")
            if not bucket or not name.strip("/"):
                raise ParameterError(
                    "The 'source' parameter of ingest must name a bucket and an object, like "
                    f"gs://bucket/object. Got {uri!r}.",
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

        with self.open_stream() as raw:
            name = self.uri.lower().removesuffix(".gz")
            try:
                schema, batches = self.file_format.read(self._content(raw), name, self.encoding)
                schema.names  # noqa: B018 - decoded lazily by pyarrow: fail here if not UTF-8
            except Exception as exc:
                self._refuse_invalid_text(exc)
                raise
            if self.file_format.text and any(pa.types.is_binary(f.type) for f in schema):
                # pyarrow's CSV reader types a column holding invalid UTF-8 as binary.
                self._refuse_invalid_text(None)
            yield SourceRows(schema=schema, batches=self._explained(batches), format=self.format)

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


# -- the registry -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceScheme:
    """A registered kind of source: the class that reads it, and how its URIs look in messages."""

    source: type[Source]
    form: str  # e.g. "a local path", "gs://bucket/object"


#: URI scheme ("" for a plain local path) -> the source that reads it.
SOURCES: dict[str, SourceScheme] = {
    "": SourceScheme(FileSource, "a local path"),
    "gs": SourceScheme(FileSource, "gs://bucket/object"),
}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(uri: str) -> str:
    """``gs://b/o`` -> ``"gs"``; a path with no ``scheme://`` prefix (a local path) -> ``""``."""
    match = _SCHEME.match(uri)
    return match.group(1) if match else ""


def supported_forms() -> str:
    """The registered forms for messages: ``"a local path or gs://bucket/object"``."""
    forms = [entry.form for entry in SOURCES.values()]
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
    entry = SOURCES.get(scheme)
    if entry is None:
        raise ParameterError(
            f"The 'source' parameter of ingest must be {supported_forms()}; the scheme "
            f"{scheme + '://'!r} is not supported. Got {uri!r}.",
            stage="ingest",
        )
    entry.source.check_uri(uri)
    return uri


def open_source(uri: str, fmt: str = "auto", encoding: str = DEFAULT_ENCODING) -> Source:
    """The source at ``uri``, read as ``fmt`` (``"auto"``: decided by the source); not opened yet.

    ``encoding`` is the text encoding of a CSV or JSON Lines file; Parquet ignores it.
    """
    return SOURCES[scheme_of(check_source_uri(uri))].source(uri, fmt, encoding)
