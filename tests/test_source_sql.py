"""The SQL source against a real PostgreSQL server (started by the tests): reads, types, errors.

The same rows read from PostgreSQL and from a CSV file have the same data version; rows stream
through a server-side cursor one chunk at a time; the read is read-only; a password is never
taken from the URL; every failure names the source, where it connected and what went wrong.
"""

from __future__ import annotations

import csv
import io
import math
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import keel.source_sql as source_sql
from keel.errors import ParameterError, SourceError
from keel.ingest import ingest
from keel.settings import checked
from keel.sources import SourceOptions, check_source_options, check_source_uri, open_source

try:
    from postgres_server import (  # noqa: F401 - postgres is a fixture
        READER,
        SECRET_PASSWORD,
        SECRET_USER,
        PostgresServer,
        free_port,
        postgres,
    )
except ImportError:  # tests/ imported as a package
    from tests.postgres_server import (  # noqa: F401 - postgres is a fixture
        READER,
        SECRET_PASSWORD,
        SECRET_USER,
        PostgresServer,
        free_port,
        postgres,
    )

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "credit.csv"
CREDIT_COLUMNS = ("Status text, Seniority bigint, Home text, Time bigint, Age bigint, "
                  "Marital text, Records text, Job text, Expenses bigint, Income numeric, "
                  "Assets double precision, Debt numeric(12,2), Amount integer, Price bigint")

#: Every type the source maps, with a NULL in each column, as a CSV file would hold them.
TYPES_CSV = """\
i,big,small,n,f,t,v,flag,day,at,at_tz
1,10000000000,7,1.25,0.1,alpha,x,true,2024-01-31,2024-01-31 12:30:00,2024-01-31T12:30:00Z
2,,,,,,,,,,
3,-5,-3,-0.5,1e-05,"with, comma",é ü,false,1969-07-20,1969-07-20 20:17:40,1999-12-31T23:59:59Z
4,0,,123456789.125,,gamma,,true,,2000-02-29 00:00:01,
"""
TYPES_COLUMNS = ("i integer, big bigint, small smallint, n numeric, f double precision, t text, "
                 "v varchar(20), flag boolean, day date, at timestamp, at_tz timestamptz")


def quoted(columns: str) -> str:
    """``Name type, ...`` with each name double-quoted (the CSV's names keep their case)."""
    parts = [part.strip().split(" ", 1) for part in columns.split(", ")]
    return ", ".join(f'"{name}" {kind}' for name, kind in parts)


def copy_csv(server: PostgresServer, table: str, text: str) -> None:
    """Load CSV ``text`` (with a header) into ``table``: an empty cell is NULL."""
    with server.connect(READER) as conn, conn.cursor() as cursor:
        with cursor.copy(f"COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
            copy.write(text.encode())


def with_ids(text: str) -> str:
    """The CSV ``text`` with a first column ``id`` numbering its rows from 1."""
    rows = list(csv.reader(io.StringIO(text)))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", *rows[0]])
    for number, row in enumerate(rows[1:], start=1):
        writer.writerow([number, *row])
    return out.getvalue()


@pytest.fixture(scope="module")
def db(postgres: PostgresServer) -> PostgresServer:
    """The server with this module's tables.

    ``credit_rows`` holds the sample with an ``id`` (read with ORDER BY id); ``credit`` holds
    the same rows stored in the file's order (clustered on the id, which is then dropped), so a
    whole-table read returns them in that order.
    """
    sample = SAMPLE.read_text()
    postgres.execute("DROP TABLE IF EXISTS credit_rows, credit, types, t CASCADE")
    postgres.execute(f"CREATE TABLE credit_rows (id integer PRIMARY KEY, "
                     f"{quoted(CREDIT_COLUMNS)})")
    copy_csv(postgres, "credit_rows", with_ids(sample))
    postgres.execute(f"CREATE TABLE credit (id integer PRIMARY KEY, {quoted(CREDIT_COLUMNS)})")
    copy_csv(postgres, "credit", with_ids(sample))
    postgres.execute("CLUSTER credit USING credit_pkey")
    postgres.execute("ALTER TABLE credit DROP COLUMN id")
    postgres.execute(f"CREATE TABLE types ({TYPES_COLUMNS})")
    copy_csv(postgres, "types", TYPES_CSV)
    postgres.execute("CREATE TABLE t (a integer)")
    postgres.execute("INSERT INTO t SELECT generate_series(1, 5)")
    return postgres


@pytest.fixture(autouse=True)
def no_ambient_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No password from the test's environment: only what a test sets."""
    for name in (source_sql.PASSWORD_ENV, "PGPASSWORD", "PGSERVICE", "PGTZ"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))


def read(uri: str, tmp_path: Path, *, query: str = "", table: str = ""):
    """Ingest the SQL source; (result, snapshot table)."""
    out = tmp_path / f"snapshot-{len(list(tmp_path.glob('snapshot-*')))}.parquet"
    result = ingest(uri, str(out), options=SourceOptions(query=query, table=table))
    return result, pq.read_table(out)


def csv_version(text: str, tmp_path: Path) -> str:
    path = tmp_path / "same.csv"
    path.write_text(text)
    return ingest(str(path), str(tmp_path / "csv.parquet")).data_version


# -- the same rows, the same data version --------------------------------------------------------
def test_a_table_and_a_query_have_the_data_version_of_the_csv_they_were_loaded_from(db, tmp_path):
    expected = ingest(str(SAMPLE), str(tmp_path / "csv.parquet"))
    names = ", ".join(f'"{n}"' for n in expected.columns)

    by_table, snapshot = read(db.url(), tmp_path, table="credit")
    by_query, _ = read(db.url(), tmp_path, query=f"SELECT {names} FROM credit_rows ORDER BY id")

    for result in (by_table, by_query):
        assert result.data_version == expected.data_version
        assert result.rows == expected.rows == 4454
        assert result.columns == expected.columns
        assert result.format == "postgresql"
        assert result.source == db.url()
    assert by_table.query == "table credit"
    assert by_query.query == f"SELECT {names} FROM credit_rows ORDER BY id"
    assert snapshot.schema == pq.read_schema(tmp_path / "csv.parquet")
    assert snapshot.column("Income").null_count > 0  # the sample's missing values came through


def test_every_type_with_nulls_matches_the_csv_of_the_same_rows(db, tmp_path):
    result, snapshot = read(db.url(), tmp_path, query="SELECT * FROM types ORDER BY i")

    assert result.data_version == csv_version(TYPES_CSV, tmp_path)
    assert dict(zip(snapshot.schema.names, map(str, snapshot.schema.types), strict=True)) == {
        "i": "int64", "big": "int64", "small": "int64", "n": "double", "f": "double",
        "t": "string", "v": "string", "flag": "bool", "day": "timestamp[us]",
        "at": "timestamp[us]", "at_tz": "timestamp[us, tz=UTC]",
    }
    rows = snapshot.to_pylist()
    assert all(value is None for name, value in rows[1].items() if name != "i")
    assert rows[2]["t"] == "with, comma" and rows[2]["v"] == "é ü"
    assert rows[3]["n"] == 123456789.125 and rows[2]["f"] == 1e-05


def test_timestamps_with_a_zone_are_the_same_instant_whatever_the_session_zone(
        db, tmp_path, monkeypatch):
    monkeypatch.setenv("PGTZ", "Asia/Kolkata")  # libpq sets the session's TimeZone from it
    _, snapshot = read(db.url(), tmp_path, query="SELECT at_tz, current_setting('TimeZone') z "
                                                 "FROM types WHERE i = 1")
    row = snapshot.to_pylist()[0]
    assert row["z"] == "Asia/Kolkata"
    assert row["at_tz"].isoformat() == "2024-01-31T12:30:00+00:00"


def test_the_data_version_does_not_depend_on_the_chunk_size(db, tmp_path, monkeypatch):
    whole, _ = read(db.url(), tmp_path, table="credit")
    monkeypatch.setattr(source_sql, "CHUNK_ROWS", 97)
    chunked, _ = read(db.url(), tmp_path, table="credit")
    assert chunked.data_version == whole.data_version


# -- streaming -----------------------------------------------------------------------------------
def test_rows_are_fetched_from_a_server_side_cursor_one_chunk_at_a_time(db, monkeypatch):
    monkeypatch.setattr(source_sql, "CHUNK_ROWS", 1000)
    source = open_source(db.url(), options=SourceOptions(table="credit"))
    with source.open() as rows:
        first = next(rows.batches)
        # While the first chunk is in hand, the server holds the cursor and was asked for 1000.
        with db.connect() as other:
            (activity,) = other.execute(
                "SELECT query FROM pg_stat_activity WHERE usename = %s AND pid <> "
                "pg_backend_pid() AND state = 'idle in transaction'", (READER,)).fetchall()
        sizes = [first.num_rows] + [batch.num_rows for batch in rows.batches]
    assert re.fullmatch(r'FETCH FORWARD 1000 FROM "?keel_source"?', activity[0])
    assert sizes == [1000, 1000, 1000, 1000, 454]


def test_a_column_null_all_through_the_first_chunk_keeps_its_type(db, tmp_path, monkeypatch):
    monkeypatch.setattr(source_sql, "CHUNK_ROWS", 100)
    query = ("SELECT g AS id, CASE WHEN g > 150 THEN g * 10 END AS late_int, "
             "CASE WHEN g > 150 THEN 'x' || g END AS late_text, "
             "CASE WHEN g > 150 THEN DATE '2024-01-01' + g END AS late_day, "
             "CASE WHEN g > 150 THEN g / 4.0 END AS late_numeric "
             "FROM generate_series(1, 250) g ORDER BY g")
    result, snapshot = read(db.url(), tmp_path, query=query)
    assert result.rows == 250
    assert [str(t) for t in snapshot.schema.types] == [
        "int64", "int64", "string", "timestamp[us]", "double"]
    assert snapshot.column("late_int").null_count == 150
    assert snapshot.column("late_int")[150].as_py() == 1510
    assert snapshot.column("late_numeric")[249].as_py() == 62.5


def test_the_query_is_passed_to_the_database_untouched(db, tmp_path):
    result, snapshot = read(
        db.url(), tmp_path,
        query="SELECT 'a%' AS pct, ':name' AS colon, '{\"k\": 1}'::jsonb AS j, "
              "'%(x)s' AS pyformat;")
    assert snapshot.to_pylist() == [
        {"pct": "a%", "colon": ":name", "j": '{"k": 1}', "pyformat": "%(x)s"}]
    assert result.query.endswith(";")


def test_types_without_an_arrow_twin_are_read_as_their_text_or_refused(db, tmp_path):
    db.execute("DROP TYPE IF EXISTS mood CASCADE")
    db.execute("CREATE TYPE mood AS ENUM ('ok', 'sad')")
    _, snapshot = read(
        db.url(), tmp_path,
        query="SELECT 'sad'::mood AS m, '00000000-0000-0000-0000-00000000000a'::uuid AS u, "
              "INTERVAL '1 day 2 hours' AS span, TIME '13:45:00.25' AS clock, "
              "TIMESTAMP '2000-02-29 00:00:00.123456' AS fine")
    assert snapshot.schema.field("clock").type == pa.time64("us")
    row = snapshot.to_pylist()[0]
    assert row.pop("clock").isoformat() == "13:45:00.250000"
    assert row.pop("fine").isoformat() == "2000-02-29T00:00:00.123456"
    assert row == {"m": "sad", "u": "00000000-0000-0000-0000-00000000000a",
                   "span": "1 day 02:00:00"}

    for expression, shown in (("ARRAY[1, 2]", "integer[]"), ("'\\x01'::bytea", "bytea")):
        with pytest.raises(SourceError) as caught:
            read(db.url(), tmp_path, query=f"SELECT 1 AS fine, {expression} AS odd")
        message = str(caught.value)
        assert f"column 'odd' of type {shown}" in message and "CAST(odd AS text)" in message


# -- errors --------------------------------------------------------------------------------------
def test_a_bad_query_shows_the_databases_message_and_writes_nothing(db, tmp_path):
    out = tmp_path / "never.parquet"
    with pytest.raises(SourceError) as caught:
        ingest(db.url(), str(out), options=SourceOptions(query="SELEC * FROM credit"))
    message = str(caught.value)
    assert message.startswith(f"[ingest] The source {db.url()!r}: the query 'SELEC * FROM credit'")
    assert 'syntax error at or near "SELEC"' in message
    assert f"127.0.0.1:{db.port}" in message
    assert "\n" not in message and "DECLARE" not in message  # the first line only
    assert not out.exists()


def test_an_error_while_rows_stream_says_how_far_the_read_got(db, tmp_path, monkeypatch):
    monkeypatch.setattr(source_sql, "CHUNK_ROWS", 100)
    with pytest.raises(SourceError) as caught:
        read(db.url(), tmp_path, query="SELECT 1 / (g - 150) AS x FROM generate_series(1, 300) g")
    assert "failed after 100 rows" in str(caught.value)
    assert "division by zero" in str(caught.value)


def test_a_numeric_beyond_a_double_is_infinite_as_in_the_csv_of_the_same_rows(db, tmp_path):
    """psycopg's own float loader raised OverflowError past 1.8e308: an 'unexpected' crash."""
    digits = "1" + "0" * 400
    result, snapshot = read(
        db.url(), tmp_path,
        query=f"SELECT {digits}::numeric AS x, -{digits}::numeric AS y, 2.5::numeric AS z")
    assert snapshot.to_pylist() == [{"x": math.inf, "y": -math.inf, "z": 2.5}]
    assert result.data_version == csv_version(f"x,y,z\n{digits},-{digits},2.5\n", tmp_path)


def test_a_value_the_driver_cannot_read_is_named_as_such_and_writes_nothing(db, tmp_path):
    out = tmp_path / "never.parquet"
    with pytest.raises(SourceError) as caught:
        ingest(db.url(), str(out), options=SourceOptions(
            query="SELECT 1 AS fine, 'infinity'::timestamp AS odd"))
    message = str(caught.value)
    assert "failed after 0 rows: a value cannot be read (" in message
    assert "'infinity'" in message and "cast its column in the query" in message
    assert "in the database at" not in message  # the database did not fail: the driver did
    assert not out.exists()


def test_a_long_query_is_shortened_in_the_message(db, tmp_path):
    query = "SELECT " + ", ".join(f"nope_{i}" for i in range(100))
    with pytest.raises(SourceError) as caught:
        read(db.url(), tmp_path, query=query)
    assert f"({len(query):,} characters, cut)" in str(caught.value)
    assert 'column "nope_0" does not exist' in str(caught.value)


def test_an_unknown_table_is_named_with_the_databases_message(db, tmp_path):
    with pytest.raises(SourceError) as caught:
        read(db.url(), tmp_path, table="no_such_table")
    assert "reading the table 'no_such_table' failed" in str(caught.value)
    assert 'relation "no_such_table" does not exist' in str(caught.value)


def test_a_table_name_is_quoted_safely_and_may_name_its_schema(db, tmp_path):
    db.execute('CREATE SCHEMA IF NOT EXISTS "Sales"')
    db.execute('DROP TABLE IF EXISTS "Sales"."Order Lines"')
    db.execute('CREATE TABLE "Sales"."Order Lines" (n integer)')
    db.execute('INSERT INTO "Sales"."Order Lines" VALUES (1), (2)')
    result, snapshot = read(db.url(), tmp_path, table="Sales.Order Lines")
    assert snapshot.column("n").to_pylist() == [1, 2]
    assert result.query == "table Sales.Order Lines"

    with pytest.raises(SourceError, match='relation "t; DROP TABLE t" does not exist'):
        read(db.url(), tmp_path, table="t; DROP TABLE t")
    assert db.execute("SELECT count(*) FROM t") == [(5,)]
    with pytest.raises(ParameterError, match="must be a table name or schema.table"):
        read(db.url(), tmp_path, table="a.b.c")


def test_a_refused_port_names_the_host_and_port(tmp_path):
    port = free_port()
    uri = f"postgresql://someone@127.0.0.1:{port}/db"
    with pytest.raises(SourceError) as caught:
        read(uri, tmp_path, query="SELECT 1")
    assert str(caught.value) == (
        f"[ingest] The source {uri!r} cannot be reached: connecting to 127.0.0.1:{port} as user "
        f"'someone' failed: connection failed: connection to server at \"127.0.0.1\", port "
        f"{port} failed: Connection refused.")


def test_an_unknown_host_is_named(tmp_path):
    with pytest.raises(SourceError) as caught:
        read("postgresql://someone@no-such-host.invalid/db", tmp_path, query="SELECT 1")
    assert "connecting to no-such-host.invalid:5432 as user 'someone' failed" in str(caught.value)
    assert "no-such-host.invalid" in str(caught.value).rpartition("failed:")[2]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a server that hangs."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def test_a_server_that_does_not_answer_times_out(tmp_path, monkeypatch, silent_port):
    monkeypatch.setattr(source_sql, "CONNECT_TIMEOUT_S", 2)  # libpq's smallest
    began = time.monotonic()
    with pytest.raises(SourceError) as caught:
        read(f"postgresql://someone@127.0.0.1:{silent_port}/db", tmp_path, query="SELECT 1")
    assert time.monotonic() - began < 8
    assert f"connecting to 127.0.0.1:{silent_port} as user 'someone' failed" in str(caught.value)
    assert "timeout" in str(caught.value).lower()


def test_the_password_comes_from_keel_source_password(db, tmp_path, monkeypatch):
    monkeypatch.setenv(source_sql.PASSWORD_ENV, SECRET_PASSWORD)
    result, _ = read(db.url(SECRET_USER), tmp_path, table="credit")
    assert result.rows == 4454
    assert SECRET_PASSWORD not in result.model_dump_json()


def test_a_missing_password_is_a_clear_error(db, tmp_path):
    with pytest.raises(SourceError) as caught:
        read(db.url(SECRET_USER), tmp_path, table="credit")
    message = str(caught.value)
    assert f"connecting to 127.0.0.1:{db.port} as user '{SECRET_USER}' failed" in message
    assert "no password supplied" in message
    assert f"the password comes from {source_sql.PASSWORD_ENV}, which is not set" in message


def test_a_wrong_password_is_refused_and_never_shown(db, tmp_path, monkeypatch):
    monkeypatch.setenv(source_sql.PASSWORD_ENV, "wrong-horse-battery")
    with pytest.raises(SourceError) as caught:
        read(db.url(SECRET_USER), tmp_path, table="credit")
    message = str(caught.value)
    assert f'password authentication failed for user "{SECRET_USER}"' in message
    assert f"{source_sql.PASSWORD_ENV}, which is set" in message
    assert "wrong-horse-battery" not in message


@pytest.mark.parametrize("uri", [
    "postgresql://someone:hunter2@127.0.0.1:1/db",
    "postgresql+psycopg://someone:hunter2@127.0.0.1:1/db",
    "postgresql://someone@127.0.0.1:1/db?password=hunter2",
    "mysql://someone@127.0.0.1:1/db?passwd=hunter2",
])
def test_a_password_in_the_url_is_refused_before_any_connection(uri, tmp_path):
    for check in (
        lambda: check_source_uri(uri),
        lambda: checked("source", uri),
        lambda: read(uri, tmp_path, query="SELECT 1"),
    ):
        with pytest.raises(ParameterError) as caught:
            check()
        message = str(caught.value)
        assert message.startswith("[ingest] The 'source' parameter of ingest must not hold a "
                                  "password")
        assert source_sql.PASSWORD_ENV in message and "'source_secret'" in message
        assert "hunter2" not in message and "***" in message


@pytest.mark.parametrize(("options", "expected"), [
    (SourceOptions(query="SELECT 1", table="t"), "exclude each other"),
    (SourceOptions(), "needs the 'source_query'"),
    (SourceOptions(query="   "), "needs the 'source_query'"),
    (SourceOptions(query="SELECT 1", records_key="items"), "'records_key' parameter of ingest "
                                                           "applies to"),
])
def test_a_sql_source_takes_a_query_or_a_table(options, expected, db):
    with pytest.raises(ParameterError, match=expected):
        check_source_options(db.url(), options)
    with pytest.raises(ParameterError, match=expected):
        open_source(db.url(), options=options)


def test_a_query_for_a_file_source_is_refused():
    with pytest.raises(ParameterError) as caught:
        checked("source_query", "SELECT 1", source=str(SAMPLE))
    message = str(caught.value)
    assert "'source_query' parameter of ingest applies to" in message
    assert source_sql.FORM in message and "SELECT 1" in message


def test_a_format_is_refused_for_a_database(db):
    with pytest.raises(ParameterError, match="'source_format' parameter of ingest must be auto"):
        open_source(db.url(), fmt="csv", options=SourceOptions(table="t"))


# -- read-only -----------------------------------------------------------------------------------
@pytest.mark.parametrize("query", [
    "DELETE FROM t",
    "SELECT 1; DELETE FROM t",
    "WITH gone AS (DELETE FROM t RETURNING a) SELECT * FROM gone",
    "SELECT purge_t()",
    "SELECT nextval('t_seq')",
])
def test_a_query_that_writes_fails_and_leaves_the_rows(query, db, tmp_path):
    db.execute("CREATE OR REPLACE FUNCTION purge_t() RETURNS integer LANGUAGE sql AS "
               "$$ DELETE FROM t RETURNING 1 $$")
    db.execute("CREATE SEQUENCE IF NOT EXISTS t_seq")
    with pytest.raises(SourceError) as caught:
        read(db.url(), tmp_path, query=query)
    assert db.execute("SELECT count(*) FROM t") == [(5,)]
    assert db.execute("SELECT last_value, is_called FROM t_seq") == [(1, False)]
    if query.startswith(("SELECT purge", "SELECT nextval")):
        assert "in a read-only transaction" in str(caught.value)
    if query.startswith("DELETE"):
        assert "reads the rows of one query: SELECT" in str(caught.value)


def test_the_same_writes_succeed_outside_a_read_only_transaction(db):
    """The reader owns t: the failures above come from Keel's read-only transaction."""
    with db.connect() as conn:
        conn.autocommit = False
        assert conn.execute("SELECT purge_t()").fetchall() == [(1,)]
        assert conn.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
        conn.rollback()
    assert db.execute("SELECT count(*) FROM t") == [(5,)]


# -- drivers and other dialects ------------------------------------------------------------------
def test_a_driver_that_is_not_installed_names_the_package_to_install(tmp_path):
    with pytest.raises(SourceError) as caught:
        read("mysql://someone@127.0.0.1:1/db", tmp_path, query="SELECT 1")
    message = str(caught.value)
    assert "needs the database driver 'mysqldb', which is not installed" in message
    assert "install the Python package 'mysqlclient'" in message

    with pytest.raises(SourceError, match="names the driver 'postgresql\\+nosuch'"):
        read("postgresql+nosuch://someone@127.0.0.1:1/db", tmp_path, query="SELECT 1")


@pytest.mark.parametrize("scheme", source_sql.DIALECTS)
def test_every_dialect_is_a_registered_source(scheme):
    assert check_source_uri(f"{scheme}://u@h/db") == f"{scheme}://u@h/db"
    assert type(open_source(f"{scheme}://u@h/db", options=SourceOptions(table="t"))) \
        is source_sql.SqlSource


def test_a_sqlite_file_is_read_read_only_with_types_from_its_values(tmp_path, monkeypatch):
    monkeypatch.setattr(source_sql, "CHUNK_ROWS", 2)
    path = tmp_path / "local.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (n INTEGER, x REAL, s TEXT, d NUMERIC)")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?)",
                         [(1, 0.5, "a", 1.5), (2, None, None, None), (3, 2.0, "c", 2)])
    conn.close()
    result, snapshot = read(f"sqlite:///{path}", tmp_path, query="SELECT n, x, s FROM t")
    assert result.format == "sqlite" and result.rows == 3
    assert [str(t) for t in snapshot.schema.types] == ["int64", "double", "string"]
    assert result.data_version == csv_version("n,x,s\n1,0.5,a\n2,,\n3,2.0,c\n", tmp_path)

    with pytest.raises(SourceError, match="attempt to write a readonly database"):
        read(f"sqlite:///{path}", tmp_path, query="DELETE FROM t RETURNING n")
    with pytest.raises(SourceError, match="PRAGMA foreign_keys = ON' returns no rows"):
        read(f"sqlite:///{path}", tmp_path, query="PRAGMA foreign_keys = ON")
    with pytest.raises(SourceError, match="connecting to .*missing.db failed: unable to open "
                                          "database file"):
        read(f"sqlite:///{tmp_path / 'missing.db'}", tmp_path, table="t")
    assert not (tmp_path / "missing.db").exists()


def test_a_sqlite_column_null_through_its_first_chunk_must_be_cast(tmp_path, monkeypatch):
    monkeypatch.setattr(source_sql, "CHUNK_ROWS", 2)
    path = tmp_path / "late.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (n INTEGER, late INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(1, None), (2, None), (3, 30)])
    conn.close()
    with pytest.raises(SourceError) as caught:
        read(f"sqlite:///{path}", tmp_path, table="t")
    assert "column 'late' of 'table t' is NULL in all of the first 2 rows" in str(caught.value)
    assert "ORDER BY late IS NULL" in str(caught.value)
