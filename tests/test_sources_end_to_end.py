"""``keel run`` trains from a PostgreSQL query and from a paginated JSON API (real servers on
127.0.0.1, started here), and gets the data version of the CSV holding the same rows."""

from __future__ import annotations

import json

import pandas as pd
import pytest

try:
    from http_api import JsonApi
    from postgres_server import READER, SECRET_PASSWORD, SECRET_USER, PostgresServer, postgres
    from test_cli import SAMPLE, keel, keel_json
    from test_source_sql import CREDIT_COLUMNS, copy_csv, quoted, with_ids
except ImportError:  # tests/ imported as a package
    from tests.http_api import JsonApi
    from tests.postgres_server import (
        READER,
        SECRET_PASSWORD,
        SECRET_USER,
        PostgresServer,
        postgres,
    )
    from tests.test_cli import SAMPLE, keel, keel_json
    from tests.test_source_sql import CREDIT_COLUMNS, copy_csv, quoted, with_ids

__all__ = ["postgres"]  # the fixture, used by name
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def csv_version(tmp_path_factory) -> str:
    """The data version `keel run` records for the bundled CSV."""
    root = tmp_path_factory.mktemp("csv")
    summary = keel_json("run", "--source", str(SAMPLE), "--target", "Status", "--store",
                        str(root / "store"), work_dir=root / "work")
    return str(summary["data_version"])


@pytest.fixture(scope="module")
def loans(postgres: PostgresServer) -> PostgresServer:
    """The sample in table ``loans`` with a row id, readable by the password user too."""
    postgres.execute("DROP TABLE IF EXISTS loans CASCADE")
    postgres.execute(f"CREATE TABLE loans (id integer PRIMARY KEY, {quoted(CREDIT_COLUMNS)})")
    copy_csv(postgres, "loans", with_ids(SAMPLE.read_text()))
    postgres.admin(f"GRANT SELECT ON loans TO {SECRET_USER}")
    return postgres


def columns_sql() -> str:
    return ", ".join(f'"{name}"' for name in pd.read_csv(SAMPLE, nrows=0).columns)


def test_keel_run_trains_from_a_postgresql_query_with_the_csv_data_version(
        loans, csv_version, tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_SOURCE_PASSWORD", SECRET_PASSWORD)  # the stages inherit it
    query = f"SELECT {columns_sql()} FROM loans ORDER BY id"
    source = loans.url(SECRET_USER)
    assert SECRET_PASSWORD not in source

    summary = keel_json("run", "--source", source, "--query", query, "--target", "Status",
                        "--store", str(tmp_path / "store"), "--model", "loans",
                        work_dir=tmp_path / "work")

    assert summary["status"] == "promoted" and summary["rows"] == 4454
    assert summary["data_version"] == csv_version
    manifest = json.loads((tmp_path / "store" / "registry" / "loans" / "versions" / "1" /
                           "manifest.json").read_text())
    assert manifest["data"]["format"] == "postgresql" and manifest["data"]["query"] == query
    assert manifest["data"]["source"] == source  # no password in it: nothing to hide
    assert SECRET_PASSWORD not in json.dumps(manifest)


def test_keel_run_from_a_database_with_a_wrong_password_registers_nothing(loans, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("KEEL_SOURCE_PASSWORD", "not-it")
    result = keel("run", "--source", loans.url(SECRET_USER), "--table", "loans", "--target",
                  "Status", "--store", str(tmp_path / "store"), work_dir=tmp_path / "work")
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("keel: error: [ingest] ") and "127.0.0.1" in line
    assert "not-it" not in result.stderr
    assert not (tmp_path / "store" / "registry").exists()


def test_keel_run_with_a_password_in_the_url_is_refused_before_any_stage(loans, tmp_path):
    url = loans.url(READER).replace(f"{READER}@", f"{READER}:hunter2@")
    result = keel("run", "--source", url, "--table", "loans", "--target", "Status", "--store",
                  str(tmp_path / "store"), work_dir=tmp_path / "work")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # no stage started
    assert "KEEL_SOURCE_PASSWORD" in result.stderr and "hunter2" not in result.stderr


def records_of_sample() -> list[dict[str, object]]:
    """The sample as JSON records, as an API would send them: whole numbers as JSON integers,
    a missing value as null."""
    import pyarrow.csv as pcsv

    return list(pcsv.read_csv(SAMPLE).to_pylist())


@pytest.mark.parametrize("style", ["body_links", "link_header", "page_numbers"])
def test_keel_run_trains_from_a_paginated_json_api_with_the_csv_data_version(
        style, csv_version, tmp_path, monkeypatch):
    records = records_of_sample()
    pages = [records[i:i + 1000] for i in range(0, len(records), 1000)]  # 5 pages
    api = JsonApi().start()
    try:
        getattr(api, f"serve_{style}")("/v1/loans", pages)
        source = api.url("/v1/loans") + ("?page=1" if style == "page_numbers" else "")
        summary = keel_json("run", "--source", source, "--target", "Status", "--store",
                            str(tmp_path / "store"), work_dir=tmp_path / "work")
        requests = len(api.seen("/v1/loans"))
    finally:
        api.close()

    assert summary["status"] == "promoted" and summary["rows"] == len(records)
    assert summary["model"] == "loans"
    assert summary["data_version"] == csv_version
    assert requests >= len(pages)  # every page was asked for
