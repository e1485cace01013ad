"""SQL sources: the rows of one query, or of one whole table, in a database SQLAlchemy reaches.

``keel run --source postgresql://USER@HOST:PORT/DB --query "SELECT ..."`` (or ``--table NAME``):
the URL is any SQLAlchemy URL of a registered dialect (:data:`DIALECTS`; ``postgresql://`` reads
through psycopg 3, which Keel installs; another driver is named in the URL, ``mysql+pymysql://``,
and must be installed). The rows are streamed through a server-side cursor, :data:`CHUNK_ROWS` at
a time, so memory holds one chunk whatever the size of the result.

Credentials never travel in the URL, which is a pipeline parameter and ends up in the compiled
YAML, the manifest and the logs: a URL holding a password is refused before any connection. The
password comes from the environment variable :data:`PASSWORD_ENV` (on Kubeflow, from a
Kubernetes secret: the ``source_secret`` setting); psycopg also honours ``PGPASSWORD`` and
``~/.pgpass``.

The read runs in a read-only transaction where the database has one (PostgreSQL, MySQL/MariaDB,
Oracle; a SQLite file is opened read-only; SQL Server has none: use a login that may only read),
so a query cannot change the data it reads, even through a function it calls.

Types come from the database's description of the result, not from the values of a first chunk
(a column that starts with NULLs keeps its type). PostgreSQL's types map to the types pyarrow's
CSV reader gives the same values (numbers, text, booleans, dates, timestamps), so a table and its
CSV export have the same data version:

=====================================================  ===========================================
PostgreSQL                                             Arrow
=====================================================  ===========================================
smallint, integer, bigint, oid                         int64
real, double precision, numeric                        float64 (numeric: the nearest double, as a
                                                       CSV reader parses the same digits)
boolean                                                bool
text, varchar, char, name, enums and unknown types     string
uuid, json(b), interval, inet, money, time with tz...  string: PostgreSQL's own text form
date / timestamp / timestamptz                         date32 / timestamp[us] / timestamp[us, UTC]
time                                                   time64[us]
arrays, bytea, ranges, geometry, composite             refused: cast them in the query
=====================================================  ===========================================

Other dialects have no type description Keel reads: their types are inferred from the first
chunk's values (decimals as float64); a column NULL all through the first chunk that holds values
later is an error saying so.

SQLAlchemy and the drivers are imported only when a SQL source is checked or read: importing
this module (the source registry does, on its first look-up) stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import re
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from typing_extensions import override

from keel.errors import ParameterError, SourceError
from keel.sources import (
    DEFAULT_ENCODING,
    NO_OPTIONS,
    Source,
    SourceOptions,
    SourceRows,
    SourceScheme,
    register,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.engine import URL, Connection, CursorResult

CHUNK_ROWS = 65_536  # rows fetched from the server-side cursor at a time: one Arrow batch
CONNECT_TIMEOUT_S = 10  # an unreachable host fails after this long instead of hanging
PASSWORD_ENV = "KEEL_SOURCE_PASSWORD"
SHOWN_QUERY_CHARS = 120  # a query quoted in a message is cut to this length
MAX_DETAIL_CHARS = 240  # a database's message longer than this is cut

#: The dialect names registered as URI schemes (``dialect+driver`` resolves to the dialect).
DIALECTS = ("postgresql", "mysql", "mariadb", "sqlite", "mssql", "oracle")
FORM = "a SQLAlchemy URL (postgresql://user@host/db)"
#: The driver used when the URL names none, where SQLAlchemy's own default is not installed.
DEFAULT_DRIVERS = {"postgresql": "psycopg"}
#: dialect -> port its servers listen on when the URL names none (for messages)
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433, "oracle": 1521}
#: driver -> the connect() argument bounding how long connecting may take
TIMEOUT_ARGUMENTS = {
    "psycopg": "connect_timeout", "psycopg2": "connect_timeout", "pg8000": "timeout",
    "mysqldb": "connect_timeout", "pymysql": "connect_timeout",
    "mariadbconnector": "connect_timeout", "pyodbc": "timeout", "pymssql": "login_timeout",
    "oracledb": "tcp_connect_timeout",
}
#: dialect -> the statement that makes the transaction read-only, run before the query
READ_ONLY_STATEMENTS = {
    "postgresql": "SET TRANSACTION READ ONLY",
    "mysql": "SET TRANSACTION READ ONLY",
    "mariadb": "SET TRANSACTION READ ONLY",
    "oracle": "SET TRANSACTION READ ONLY",
}
#: module a driver imports -> the package that installs it (for "install it" messages)
DRIVER_PACKAGES = {
    "MySQLdb": "mysqlclient", "pymysql": "PyMySQL", "mariadb": "mariadb", "pyodbc": "pyodbc",
    "pymssql": "pymssql", "oracledb": "oracledb", "cx_Oracle": "cx-Oracle",
    "psycopg2": "psycopg2-binary", "pg8000": "pg8000", "asyncpg": "asyncpg",
}
#: URL query keys drivers read a password from: refused like a password in the URL
PASSWORD_KEYS = frozenset({"password", "passwd", "pwd", "sslpassword"})
#: words a query returning rows starts with (for the hint when the database refuses a query)
ROW_QUERIES = frozenset({"select", "with", "values", "table", "("})
TEXT_SQL_COMMENT = re.compile(r"^\s*(--[^\n]*\n|/\*.*?\*/)", re.DOTALL)


# -- PostgreSQL types -------------------------------------------------------------------------
#: PostgreSQL type name (psycopg's registry) -> Arrow type name, for types psycopg loads as such
_PG_ARROW = {
    "bool": "bool", "int2": "int64", "int4": "int64", "int8": "int64", "oid": "int64",
    "float4": "float64", "float8": "float64", "numeric": "float64",
    "text": "string", "varchar": "string", "bpchar": "string", "name": "string",
    "char": "string", "date": "date32", "timestamp": "timestamp", "timestamptz": "timestamptz",
    "time": "time64",
}
#: PostgreSQL types read as their text form (PostgreSQL's own output) into string columns
_PG_AS_TEXT = frozenset({
    "uuid", "json", "jsonb", "xml", "interval", "timetz", "inet", "cidr", "macaddr",
    "macaddr8", "money", "bit", "varbit", "regclass", "regtype",
})


def _arrow_type(name: str) -> pa.DataType:
    import pyarrow as pa

    return {
        "bool": pa.bool_(), "int64": pa.int64(), "float64": pa.float64(), "string": pa.string(),
        "date32": pa.date32(), "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"), "time64": pa.time64("us"),
    }[name]


def _numeric_loader() -> type:
    """A psycopg loader of numeric's text as the nearest float, beyond a double's range +/-inf.

    psycopg's own FloatLoader (its C version) raises OverflowError on a numeric past 1.8e308,
    ending the read with no word of the column; a CSV reader gives the same digits as inf (which
    validate treats as missing), and so does this loader: one data version for both.
    """
    from psycopg.adapt import Loader

    class NumericAsFloat(Loader):
        def load(self, data: Any) -> float:
            return float(bytes(data))

    return NumericAsFloat


def _postgresql_loaders(dbapi_connection: Any) -> None:
    """Make psycopg load numeric as float (not Decimal) and :data:`_PG_AS_TEXT` types as text.

    Set on the connection before the query runs: a cursor copies the connection's loaders.
    """
    from psycopg.types.string import TextLoader

    adapters = dbapi_connection.adapters
    adapters.register_loader("numeric", _numeric_loader())
    for name in _PG_AS_TEXT:
        adapters.register_loader(name, TextLoader)


def _postgresql_schema(description: Sequence[Any], uri: str) -> pa.Schema:
    """The Arrow schema of a psycopg result, from its columns' type OIDs (in the query's order)."""
    import pyarrow as pa
    from psycopg.postgres import types

    fields = []
    for column in description:
        info = types.get(column.type_code)
        if info is None:  # a type of this database (enum, extension): psycopg reads it as text
            arrow = pa.string()
        elif info.array_oid == column.type_code and info.oid != column.type_code:
            _refuse_type(uri, column.name, f"{info.regtype}[]", "an array")
        elif info.name in _PG_ARROW:
            arrow = _arrow_type(_PG_ARROW[info.name])
        elif info.name in _PG_AS_TEXT:
            arrow = pa.string()
        else:
            _refuse_type(uri, column.name, info.regtype, "not a flat value")
        fields.append(pa.field(column.name, arrow))
    return pa.schema(fields)


def _refuse_type(uri: str, column: str, type_name: str, why: str) -> NoReturn:
    raise SourceError(
        f"The source {uri!r} has column {column!r} of type {type_name} ({why}); expected one "
        f"flat value (number, text, boolean, date) per cell. Cast it in the query, e.g. "
        f"CAST({column} AS text), or leave it out."
    )


# -- the source -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Where:
    """Where a URL points, for messages: never its password."""

    host: str
    user: str

    def __str__(self) -> str:
        return f"{self.host} as user {self.user!r}" if self.user else self.host


class SqlSource(Source):
    """The rows of ``--query`` (a SELECT) or ``--table`` in the database at a SQLAlchemy URL."""

    takes = frozenset({"query", "table"})

    def __init__(
        self, uri: str, fmt: str = "auto", encoding: str = DEFAULT_ENCODING,
        options: SourceOptions = NO_OPTIONS,
    ) -> None:
        self.check_uri(uri)
        self.check_options(uri, options)
        super().__init__(uri, fmt, encoding, options)

    @override
    @classmethod
    def check_uri(cls, uri: str) -> None:
        url = _parse(uri)
        given = sorted(k for k in url.query if k.lower() in PASSWORD_KEYS)
        if url.password is not None or given:
            shown = url.render_as_string(hide_password=True)
            for key in given:
                shown = re.sub(rf"([?&]{re.escape(key)}=)[^&]*", r"\1***", shown)
            raise ParameterError(
                f"The 'source' parameter of ingest must not hold a password (the URL is kept "
                f"in the pipeline and the manifest): set {PASSWORD_ENV} instead (on Kubeflow, "
                f"key 'password' of the secret named by 'source_secret'). Got {shown!r}.",
                stage="ingest",
            )

    @override
    @classmethod
    def check_options(cls, uri: str, options: SourceOptions) -> None:
        super().check_options(uri, options)
        query, table = options.query.strip(), options.table.strip()
        if query and table:
            raise ParameterError(
                f"The 'source_query' and 'source_table' parameters of ingest exclude each other "
                f"for the SQL source {uri!r}: give one. Got query {_shown(query)} and table "
                f"{table!r}.",
                stage="ingest",
            )
        if not query and not table:
            raise ParameterError(
                f"The SQL source {uri!r} needs the 'source_query' (--query \"SELECT ...\") or "
                f"the 'source_table' (--table NAME) parameter of ingest. Got neither.",
                stage="ingest",
            )
        if table:
            _table_parts(table)

    @override
    def resolve_format(self, fmt: str) -> str:
        super().resolve_format(fmt)  # refuses a file format: a database is not a file
        return _parse(self.uri).get_backend_name()

    @property
    def described(self) -> str:
        """What is read, for the manifest: the query as given, or ``table <name>``."""
        table = self.options.table.strip()
        return f"table {table}" if table else self.options.query.strip()

    @override
    @contextlib.contextmanager
    def open(self) -> Iterator[SourceRows]:
        with contextlib.ExitStack() as stack:
            engine = self._engine()
            stack.callback(engine.dispose)
            connection = stack.enter_context(self._connect(engine))  # closing it rolls back
            typed = _typed_by_oid(engine.dialect)
            if typed:
                _postgresql_loaders(connection.connection.dbapi_connection)
            cursor = self._execute(connection, typed)
            stack.callback(cursor.close)
            batches: Iterator[pa.RecordBatch]
            if typed:
                schema = _postgresql_schema(cursor.description, self.uri)
                batches = (self._batch(chunk, schema) for chunk in self._chunks(cursor))
            else:
                schema, batches = self._inferred(cursor)
            yield SourceRows(schema=schema, batches=batches, format=self.format,
                             query=self.described)

    # -- connecting ---------------------------------------------------------------------------
    def _url(self) -> URL:
        """The URL to connect with: its default driver resolved, the password from the env."""
        url = _parse(self.uri)
        backend = url.get_backend_name()
        if "+" not in url.drivername and backend in DEFAULT_DRIVERS:
            url = url.set(drivername=f"{backend}+{DEFAULT_DRIVERS[backend]}")
        password = os.environ.get(PASSWORD_ENV)
        if password:
            url = url.set(password=password)
        if backend == "sqlite" and url.database and url.database != ":memory:":
            # A missing file would be created empty: open it read-only, which also refuses it.
            path = urllib.parse.quote(os.path.abspath(url.database))
            url = url.set(database=f"file:{path}?mode=ro", query={**url.query, "uri": "true"})
        return url

    def _engine(self) -> Any:
        """A SQLAlchemy engine with no pool (one connection, closed at the end of the read)."""
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        url = self._url()
        driver = url.drivername
        try:
            driver = url.get_dialect().driver
            connect_args: dict[str, Any] = {}
            if driver in TIMEOUT_ARGUMENTS:
                connect_args[TIMEOUT_ARGUMENTS[driver]] = CONNECT_TIMEOUT_S
            return sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=connect_args)
        except ModuleNotFoundError as exc:
            module = (exc.name or "").partition(".")[0]
            package = DRIVER_PACKAGES.get(module, module)
            raise SourceError(
                f"The source {self.uri!r} needs the database driver {driver!r}, which is not "
                f"installed: install the Python package {package!r} into Keel's environment "
                f"(or its image), or name an installed driver in the URL "
                f"({url.get_backend_name()}+<driver>://...)."
            ) from None
        except sqlalchemy.exc.NoSuchModuleError:
            raise SourceError(
                f"The source {self.uri!r} names the driver {url.drivername!r}, which SQLAlchemy "
                f"does not know; expected {url.get_backend_name()}://... or a driver SQLAlchemy "
                f"lists for {url.get_backend_name()}."
            ) from None

    def _where(self) -> _Where:
        url = _parse(self.uri)
        backend = url.get_backend_name()
        if backend == "sqlite":
            return _Where(url.database or ":memory:", "")
        host = url.host or "the local socket"
        port = url.port or DEFAULT_PORTS.get(backend)
        return _Where(f"{host}:{port}" if url.host and port else host, url.username or "")

    def _connect(self, engine: Any) -> Connection:
        import sqlalchemy

        try:
            connection: Connection = engine.connect()
        except sqlalchemy.exc.DBAPIError as exc:
            detail = _database_message(exc)
            hint = ""
            if re.search(r"password|authentication", detail, re.IGNORECASE):
                given = "is set" if os.environ.get(PASSWORD_ENV) else "is not set"
                hint = f" (the password comes from {PASSWORD_ENV}, which {given})"
            raise SourceError(
                f"The source {self.uri!r} cannot be reached: connecting to {self._where()} "
                f"failed: {detail}{hint}."
            ) from None
        return connection

    # -- reading ------------------------------------------------------------------------------
    def _statement(self, connection: Connection, typed: bool) -> Any:
        """The query's text, or a SELECT of the whole table with its name quoted by SQLAlchemy.

        For the psycopg cursor (``typed``) the SELECT is compiled to text here, with no ``%``
        doubled: the driver receives no parameters, so it would not undo the doubling.
        """
        import sqlalchemy

        table = self.options.table.strip()
        if not table:
            return self.options.query.strip()
        schema, name = _table_parts(table)
        select: Any = sqlalchemy.select(sqlalchemy.literal_column("*")).select_from(
            sqlalchemy.table(name, schema=schema)
        )
        if typed:
            dialect: Any = type(connection.dialect)
            return str(select.compile(dialect=dialect(paramstyle="named")))
        return select

    def _execute(self, connection: Connection, typed: bool) -> _Cursor:
        """Run the read in a read-only transaction, on a server-side cursor.

        With psycopg (``typed``) the server-side cursor is psycopg's own, fetched a chunk at a
        time with no SQLAlchemy row objects in between; otherwise SQLAlchemy streams the result.
        """
        statement = self._statement(connection, typed)
        errors = _driver_errors(connection.dialect)
        try:
            read_only = READ_ONLY_STATEMENTS.get(connection.dialect.name)
            if read_only:  # before the options below: they change `connection` itself
                connection.exec_driver_sql(read_only)
            if typed:
                raw = connection.connection.dbapi_connection
                assert raw is not None  # an open connection has its DBAPI connection
                server_side = raw.cursor(name="keel_source")
                server_side.execute(statement)  # no parameters: the SQL reaches the server as is
                self._check_rows(server_side.description)
                return _Cursor(server_side.description, lambda: server_side.fetchmany(CHUNK_ROWS),
                               server_side.close, errors)
            streaming = connection.execution_options(
                stream_results=True, yield_per=CHUNK_ROWS, no_parameters=True
            )
            result: CursorResult[Any] = (
                streaming.exec_driver_sql(statement) if isinstance(statement, str)
                else streaming.execute(statement)
            )
            self._check_rows(result.cursor.description if result.returns_rows else None)
            partitions = result.partitions(CHUNK_ROWS)
            return _Cursor(result.cursor.description, lambda: next(partitions, []),
                           result.close, errors)
        except errors as exc:
            raise self._query_error(exc, "failed") from None

    def _check_rows(self, description: Sequence[Any] | None) -> None:
        """A statement that returns no rows (a setting, a write the database allowed) is refused."""
        if description is None:
            raise SourceError(
                f"The source {self.uri!r}: the query {_shown(self.described)} returns no rows; "
                f"expected a query whose rows are the table (SELECT ...)."
            )

    def _query_error(self, error: Any, what: str) -> SourceError:
        """The database's own message, with the query and where it ran.

        An error the driver raised itself while turning a value into Python (a date past year
        9999, such as PostgreSQL's 'infinity') did not happen in the database: it says so, and
        how to read such values.
        """
        table = self.options.table.strip()
        asked = f"reading the table {table!r}" if table else f"the query {_shown(self.described)}"
        if _loading_error(error):
            return SourceError(
                f"The source {self.uri!r}: {asked} {what}: a value cannot be read "
                f"({_database_message(error)}); cast its column in the query, to text say."
            )
        hint = ""
        if not table and _first_word(self.described) not in ROW_QUERIES:
            hint = (" (a SQL source reads the rows of one query: SELECT, WITH ... SELECT, "
                    "VALUES or TABLE; the read is read-only)")
        return SourceError(
            f"The source {self.uri!r}: {asked} {what} in the database at {self._where().host}: "
            f"{_database_message(error)}{hint}"
        )

    def _chunks(self, cursor: _Cursor) -> Iterator[Sequence[Sequence[Any]]]:
        """The result's rows, :data:`CHUNK_ROWS` at a time; a database error is a SourceError."""
        read = 0
        # the last two: raised by a value's loader (psycopg raises them as they are)
        failures: tuple[type[BaseException], ...] = (*cursor.errors, OverflowError, ValueError)
        while True:
            try:
                chunk = cursor.fetch()
            except failures as exc:
                raise self._query_error(exc, f"failed after {read:,} rows") from None
            if not chunk:
                return
            read += len(chunk)
            yield chunk

    def _batch(
        self, rows: Sequence[Sequence[Any]], schema: pa.Schema, *, decimals: bool = False
    ) -> pa.RecordBatch:
        """One chunk of rows as a record batch of ``schema``; a value that does not fit is named.

        ``decimals``: the driver may return Decimals, made floats for a float column.
        """
        import pyarrow as pa

        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        arrays = []
        for values, field in zip(columns, schema, strict=True):
            try:
                arrays.append(pa.array(_plain(values, field.type) if decimals else values,
                                       type=field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ValueError) as exc:
                raise self._type_error(field, exc) from None
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def _type_error(self, field: pa.Field, error: Exception) -> SourceError:
        """A value that does not fit its column's type (a driver that does not describe types)."""
        import pyarrow as pa

        where = f"The source {self.uri!r}: column {field.name!r} of {_shown(self.described)}"
        if pa.types.is_null(field.type):
            return SourceError(
                f"{where} is NULL in all of the first {CHUNK_ROWS:,} rows, where the column types "
                f"of a {self.format} source are read from (its driver does not describe them), "
                f"and holds values after them. Put a row with a value first (ORDER BY "
                f"{field.name} IS NULL), or leave the column out."
            )
        return SourceError(
            f"{where} was read as {field.type}, but holds a value that is not: "
            f"{str(error).splitlines()[0][:MAX_DETAIL_CHARS]}. Cast the column in the query so "
            f"that it has one type."
        )

    def _inferred(self, cursor: _Cursor) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """Schema from the first chunk's values, for drivers whose column types Keel cannot read."""
        import pyarrow as pa

        chunks = self._chunks(cursor)
        first = next(chunks, None)
        fields = []
        for index, column in enumerate(cursor.description):
            values = [_plain_value(row[index]) for row in first or ()]
            arrow = pa.array(values).type if values else pa.null()
            if pa.types.is_decimal(arrow):
                arrow = pa.float64()
            fields.append(pa.field(column[0], arrow))
        schema = pa.schema(fields)

        def batches() -> Iterator[pa.RecordBatch]:
            if first is not None:
                yield self._batch(first, schema, decimals=True)
            for chunk in chunks:
                yield self._batch(chunk, schema, decimals=True)

        return schema, batches()


@dataclass(frozen=True)
class _Cursor:
    """An executed read: its columns (DBAPI description), the next chunk ([] at the end)."""

    description: Sequence[Any]
    fetch: Callable[[], Sequence[Sequence[Any]]]
    close: Callable[[], None]
    errors: tuple[type[BaseException], ...]  # what fetching raises when the database fails


def _loading_error(error: Any) -> bool:
    """Whether a read error was raised by the driver on a value it received, not by the database.

    psycopg gives the errors the server sent a SQLSTATE; the ones its loaders raise have none.
    """
    original = getattr(error, "orig", None) or error
    module = type(original).__module__ or ""
    return (isinstance(original, OverflowError | ValueError) or (
        module.startswith("psycopg") and hasattr(original, "sqlstate")
        and original.sqlstate is None))


def _typed_by_oid(dialect: Any) -> bool:
    """Whether the result's column types can be read from the cursor (PostgreSQL, psycopg)."""
    return bool(dialect.name == "postgresql" and dialect.driver == "psycopg")


def _driver_errors(dialect: Any) -> tuple[type[BaseException], ...]:
    """What a failing read raises: SQLAlchemy's wrapped errors, and the driver's own."""
    import sqlalchemy

    errors: tuple[type[BaseException], ...] = (sqlalchemy.exc.DBAPIError,)
    dbapi = getattr(dialect, "loaded_dbapi", None)
    if dbapi is not None and isinstance(getattr(dbapi, "Error", None), type):
        errors += (dbapi.Error,)
    return errors


# -- helpers ----------------------------------------------------------------------------------
def _parse(uri: str) -> URL:
    """The SQLAlchemy URL of ``uri``; a ParameterError naming 'source' if it is not one."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(uri)
    except (ArgumentError, ValueError) as exc:
        raise ParameterError(
            f"The 'source' parameter of ingest must be {FORM} for a SQL source "
            f"({str(exc).splitlines()[0][:MAX_DETAIL_CHARS]}). Got {_redacted(uri)!r}.",
            stage="ingest",
        ) from None


def _redacted(uri: str) -> str:
    """``uri`` with anything between ``user:`` and ``@`` hidden (it may be a password)."""
    return re.sub(r"^([^:/]+://[^:/@]*:)[^@/]*@", r"\1***@", uri)


def _table_parts(table: str) -> tuple[str | None, str]:
    """``name`` or ``schema.name`` -> (schema, name); a ParameterError for anything else."""
    parts = table.split(".")
    if len(parts) > 2 or not all(p.strip() for p in parts):
        raise ParameterError(
            f"The 'source_table' parameter of ingest must be a table name or schema.table (a "
            f"name holding a dot needs --query). Got {table!r}.",
            stage="ingest",
        )
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def _plain_value(value: Any) -> Any:
    """A driver's value as pyarrow reads it: a Decimal becomes the nearest float."""
    from decimal import Decimal

    return float(value) if isinstance(value, Decimal) else value


def _plain(values: Sequence[Any], arrow_type: pa.DataType) -> Sequence[Any]:
    """``values`` ready for ``arrow_type``: Decimals as floats for a float column."""
    import pyarrow as pa

    if pa.types.is_floating(arrow_type) or pa.types.is_null(arrow_type):
        from decimal import Decimal

        if any(isinstance(v, Decimal) for v in values):
            return [_plain_value(v) for v in values]
    return values


def _database_message(error: Any) -> str:
    """The first line of the database's (driver's) own message, cut to a readable length."""
    original = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    message = lines[0] if lines else type(original).__name__
    password = os.environ.get(PASSWORD_ENV)
    if password and password in message:  # no driver echoes it; make sure of it
        message = message.replace(password, "***")
    if len(message) > MAX_DETAIL_CHARS:
        message = f"{message[:MAX_DETAIL_CHARS]}... (message cut)"
    return message


def _shown(query: str) -> str:
    """``query`` on one line, quoted, cut to :data:`SHOWN_QUERY_CHARS`."""
    flat = " ".join(query.split())
    if len(flat) > SHOWN_QUERY_CHARS:
        return f"{flat[:SHOWN_QUERY_CHARS]!r}... ({len(flat):,} characters, cut)"
    return repr(flat)


def _first_word(query: str) -> str:
    """The query's first word in lower case, past leading comments (``(`` counts as a word)."""
    text = query
    while True:
        stripped = TEXT_SQL_COMMENT.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    match = re.match(r"\s*(\(|\w+)", text)
    return match.group(1).lower() if match else ""


for _dialect in DIALECTS:
    register(_dialect, SourceScheme(SqlSource, FORM))
