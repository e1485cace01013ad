"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster on 127.0.0.1.

Each test session (so each xdist worker) starts its own cluster on a free port, with its data,
its log and its Unix socket in one temporary folder, and removes it all at the end. PostgreSQL
refuses to run as root: as root (CI), the cluster is created and run by the ``postgres`` system
user that the Debian package creates, through ``runuser``.

Roles, in the database ``keel``:

- ``keel_admin``: superuser, trusted (no password), for setting up;
- ``keel_reader``: trusted, owns the database, so the test tables are its own and it could write
  to them: a write that fails proves the source's read-only transaction, not a missing grant;
- ``keel_secret``: must give its password (scram-sha-256), may read every table of the reader.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ADMIN, READER, SECRET_USER = "keel_admin", "keel_reader", "keel_secret"
SECRET_PASSWORD = "s3cret-Pa$$ word"  # with characters a URL would have to escape
DATABASE = "keel"
SYSTEM_USER = "postgres"  # runs the server when the tests run as root
MISSING = "install the Debian package postgresql (make system-deps does it)"


def newest_bin() -> Path:
    """The bin folder of the newest PostgreSQL installed under /usr/lib/postgresql."""
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")
             if (Path(p) / "initdb").is_file() and (Path(p) / "pg_ctl").is_file()]
    if not found:
        raise RuntimeError(f"No PostgreSQL server binaries in /usr/lib/postgresql: {MISSING}.")
    return max(found, key=lambda p: float(p.parent.name) if p.parent.name.replace(".", "").isdigit()
               else 0.0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only."""

    def __init__(self) -> None:
        self.bin = newest_bin()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self.owner = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                raise RuntimeError(
                    f"Running as root, and there is no {SYSTEM_USER!r} system user to run "
                    f"PostgreSQL as: {MISSING}.") from None
        else:
            self.owner = pwd.getpwuid(os.geteuid())
        # Not under pytest's tmp_path (/tmp/pytest-of-root is closed to the postgres user), nor
        # under a root-only TMPDIR: as root, in /tmp, which every user may enter.
        self.folder = Path(tempfile.mkdtemp(prefix="keel-postgres-",
                                            dir="/tmp" if self.as_root else None))
        os.chown(self.folder, self.owner.pw_uid, self.owner.pw_gid)
        self.data = self.folder / "data"
        self.log_path = self.folder / "server.log"
        self.port = 0
        self.host = "127.0.0.1"
        self.start_seconds = 0.0

    def _run(self, *command: str) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program as the cluster's owner; RuntimeError with its output if it fails."""
        argv = [str(self.bin / command[0]), *command[1:]]
        if self.as_root:
            argv = ["runuser", "-u", SYSTEM_USER, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=self.folder,
                              stdin=subprocess.DEVNULL, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n"
                               f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return done

    def _write(self, path: Path, text: str) -> None:
        path.write_text(text)
        os.chown(path, self.owner.pw_uid, self.owner.pw_gid)

    def start(self, attempts: int = 3) -> None:
        """Create the cluster, start it on a free port and create the roles and the database."""
        began = time.monotonic()
        self._run("initdb", "-D", str(self.data), "-U", ADMIN, "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync", "--no-instructions")
        self._write(self.data / "pg_hba.conf",
                    "local all all trust\n"
                    f"host all {SECRET_USER} 127.0.0.1/32 scram-sha-256\n"
                    "host all all 127.0.0.1/32 trust\n")
        error = ""
        for _ in range(attempts):  # a port can be taken between free_port() and the bind
            port = free_port()
            self._write(self.data / "postgresql.auto.conf",
                        f"listen_addresses = '127.0.0.1'\nport = {port}\n"
                        f"unix_socket_directories = '{self.folder}'\n"
                        "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                        "password_encryption = 'scram-sha-256'\nTimeZone = 'UTC'\n")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w",
                          "-t", "60", "start")
            except RuntimeError as exc:
                log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
                error = f"{exc}\n{log[-3000:]}"
                if "could not bind" not in log and "already in use" not in log:
                    break
                continue
            self.port = port
            break
        if not self.port:
            raise RuntimeError(f"PostgreSQL did not start:\n{error}")
        self.admin(f"CREATE ROLE {READER} LOGIN", database="postgres")
        self.admin(f"CREATE DATABASE {DATABASE} OWNER {READER}", database="postgres")
        from psycopg import sql

        self.admin(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(SECRET_USER), sql.Literal(SECRET_PASSWORD)))
        self.admin(f"ALTER DEFAULT PRIVILEGES FOR ROLE {READER} IN SCHEMA public "
                   f"GRANT SELECT ON TABLES TO {SECRET_USER}")
        self.admin(f"ALTER SCHEMA public OWNER TO {READER}")
        self.start_seconds = time.monotonic() - began

    def url(self, user: str = READER, database: str = DATABASE, driver: str = "") -> str:
        """A SQLAlchemy URL (no password) for ``user``; ``driver`` like ``+psycopg``."""
        return f"postgresql{driver}://{user}@{self.host}:{self.port}/{database}"

    def connect(self, user: str = READER, database: str = DATABASE) -> Any:
        """A psycopg connection (autocommit) as a trusted ``user``."""
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=user, dbname=database,
                               autocommit=True, connect_timeout=10)

    def admin(self, statement: Any, *params: Any, database: str = DATABASE) -> None:
        """Run one statement as the superuser."""
        with self.connect(ADMIN, database) as conn:
            conn.execute(statement, params or None)

    def execute(self, statement: Any, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement as the reader (the tables' owner); its rows, if it returns any."""
        with self.connect(READER) as conn:
            cursor = conn.execute(statement, params or None)
            return cursor.fetchall() if cursor.description else []

    def stop(self) -> None:
        """Stop the server (fast: open sessions are ended) and remove its folder."""
        try:
            if self.port:
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            self.port = 0
            shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A running PostgreSQL server for this test session (one per xdist worker)."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
