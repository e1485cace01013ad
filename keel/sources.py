"""Where ingest reads a table from: one :class:`Source` interface, a class per URI scheme.

Ingest sees only a schema and a stream of Arrow record batches, so a new kind of source (a
database, an HTTP endpoint) is one :class:`Source` subclass and one :data:`SOURCES` entry, with
no change to ingest, its data version or its snapshot. Files (a local path or ``gs://``) are one
such class; the file formats it reads are the :data:`FORMATS` table.

pyarrow is imported only inside functions: the CLI and the settings table import this module
just to check a URI or list :data:`FORMAT_NAMES`, and must stay fast to start.
"""

from __future__ import annotations

import abc
import contextlib
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
    #: (stream, file name in lower case without ``.gz``) -> the schema and the record batches.
    Reader: TypeAlias = Callable[[BinaryStream, str], tuple[pa.Schema, Iterator[pa.RecordBatch]]]

BATCH_ROWS = 65_536  # rows per Parquet record batch
CSV_BLOCK_BYTES = 16 << 20  # CSV/JSON types are inferred from the first block: make it large


# -- file formats -----------------------------------------------------------------------------
def _read_csv(stream: BinaryStream, name: str) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    import pyarrow.csv as pcsv

    reader = pcsv.open_csv(
        stream,
        read_options=pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
        parse_options=pcsv.ParseOptions(delimiter="\t" if name.endswith(".tsv") else ","),
    )
    return reader.schema, iter(reader)


def _read_parquet(stream: BinaryStream, name: str) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(stream)
    return parquet.schema_arrow, parquet.iter_batches(batch_size=BATCH_ROWS)


def _read_jsonl(stream: BinaryStream, name: str) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    import pyarrow.json as pjson

    reader = pjson.open_json(stream, read_options=pjson.ReadOptions(block_size=CSV_BLOCK_BYTES))
    return reader.schema, iter(reader)


@dataclass(frozen=True)
class FileFormat:
    """A file format: its name, the file-name suffixes that mean it, and its reader.

    Any suffix may be followed by ``.gz`` (read through a gzip stream) unless ``gzip_refusal``
    says why the format cannot be read that way.
    """

    name: str
    suffixes: tuple[str, ...]
    read: Reader
    gzip_refusal: str = ""  # the end of the message refusing ``<name>.gz``; "" if it is readable


FORMATS: tuple[FileFormat, ...] = (
    FileFormat("csv", (".csv", ".tsv"), _read_csv),
    FileFormat(
        "parquet", (".parquet", ".pq"), _read_parquet,
        gzip_refusal="is a gzipped Parquet file, which cannot be read in a stream: Parquet "
                     "compresses its own pages, so store it uncompressed (gunzip it).",
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
    format, and yields record batches itself.
    """

    def __init__(self, uri: str, fmt: str = "auto") -> None:
        self.uri = uri
        self.format = self.resolve_format(check_format_name(fmt))

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

    def __init__(self, uri: str, fmt: str = "auto") -> None:
        super().__init__(uri, fmt)
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

    @override
    @contextlib.contextmanager
    def open(self) -> Iterator[SourceRows]:
        import pyarrow as pa

        with self.open_stream() as raw:
            stream: BinaryStream = raw
            if self.gzipped:
                stream = pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), "gzip")
            name = self.uri.lower().removesuffix(".gz")
            schema, batches = self.file_format.read(stream, name)
            yield SourceRows(schema=schema, batches=batches, format=self.format)


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


def open_source(uri: str, fmt: str = "auto") -> Source:
    """The source at ``uri``, read as ``fmt`` (``"auto"``: decided by the source); not opened yet."""
    return SOURCES[scheme_of(check_source_uri(uri))].source(uri, fmt)
