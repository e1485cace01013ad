"""The JSON API source (keel.source_http) against a local HTTP server the tests start."""

from __future__ import annotations

import csv
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

import keel.source_http as http
from keel.errors import ParameterError, SourceError
from keel.ingest import ingest
from keel.source_http import HttpSource
from keel.sources import SourceOptions, check_source_options, check_source_uri, open_source

try:
    from http_api import JsonApi, Reply
except ImportError:  # tests/ imported as a package
    from tests.http_api import JsonApi, Reply

ROWS: list[dict[str, Any]] = [
    {"age": 31, "income": 1200.5, "home": "rent", "married": True, "day": "2024-01-31"},
    {"age": 45, "income": 880.25, "home": "owner", "married": False, "day": "2024-02-01"},
    {"age": None, "income": 430.5, "home": "rent", "married": False, "day": "2024-02-02"},
    {"age": 22, "income": 2210.75, "home": "parents", "married": True, "day": "2024-02-03"},
    {"age": 58, "income": 99.5, "home": "owner", "married": True, "day": "2024-02-04"},
    {"age": 39, "income": 1500.25, "home": "other", "married": False, "day": "2024-02-05"},
    {"age": 27, "income": 310.75, "home": "rent", "married": True, "day": "2024-02-06"},
]
PAGES = [ROWS[:3], ROWS[3:5], ROWS[5:]]
TOKEN = "s3cr3t-t0ken-value"


@pytest.fixture(autouse=True)
def quick_and_clean(monkeypatch):
    """No token unless a test sets one, short retry waits, no proxy between us and 127.0.0.1."""
    monkeypatch.delenv(http.TOKEN_ENV, raising=False)
    monkeypatch.setattr(http, "BACKOFF_SECONDS", 0.001)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")


@pytest.fixture
def api() -> Iterator[JsonApi]:
    yield from JsonApi.running()


def csv_of(rows: list[dict[str, Any]], path: Path) -> str:
    """The rows as a CSV file (an empty cell for None, true/false for booleans)."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else str(v).lower() if isinstance(v, bool) else v
                             for k, v in row.items()})
    return str(path)


def read(uri: str, **options: str) -> tuple[pa.Table, Any]:
    with open_source(uri, options=SourceOptions(**options)).open() as rows:
        batches = list(rows.batches)
        return pa.Table.from_batches(batches, schema=rows.schema), rows


def message(caught: pytest.ExceptionInfo[Any]) -> str:
    return str(caught.value)


# --- registration and URIs ---------------------------------------------------------------------


def test_http_and_https_are_registered_and_read_by_the_api_source():
    for uri in ("https://api.example.com/v1/loans", "http://127.0.0.1:8080/x?page=1"):
        assert check_source_uri(uri) == uri
        assert type(open_source(uri)) is HttpSource  # constructing does no I/O
    assert open_source("https://api.example.com/v1/loans").format == "https"


@pytest.mark.parametrize("uri", ["https://user:pw@api.example.com/x",
                                 "https://tok3n@api.example.com/x"])
def test_credentials_in_the_url_are_refused_without_echoing_them(uri):
    with pytest.raises(ParameterError) as caught:
        check_source_uri(uri)
    assert "KEEL_SOURCE_TOKEN" in message(caught)
    assert "pw" not in message(caught) and "tok3n" not in message(caught)
    assert "***@api.example.com" in message(caught)


def test_a_url_without_a_host_is_refused():
    with pytest.raises(ParameterError, match="must name a host"):
        check_source_uri("https:///v1/loans")


def test_records_key_applies_to_the_api_only(tmp_path):
    options = SourceOptions(records_key="rows")
    assert check_source_options("https://api.example.com/x", options) is options
    with pytest.raises(ParameterError) as caught:
        check_source_options(str(tmp_path / "t.csv"), options)
    assert "'records_key'" in message(caught) and "https://host/path (a JSON API)" in message(caught)


# --- the same rows, the same data version ------------------------------------------------------


@pytest.mark.parametrize("style", ["list", "body links", "relative links", "link header",
                                   "page numbers"])
def test_every_pagination_style_gives_the_data_version_of_the_csv(tmp_path, api, style):
    if style == "list":
        api.route("/loans", lambda request: Reply(body=ROWS))
        url = api.url("/loans")
    elif style in ("body links", "relative links"):
        api.serve_body_links("/loans", PAGES, absolute=style == "body links")
        url = api.url("/loans")
    elif style == "link header":
        api.serve_link_header("/loans", PAGES)
        url = api.url("/loans")
    else:
        api.serve_page_numbers("/loans", PAGES)
        url = api.url("/loans?page=1&per_page=3")

    from_api = ingest(url, str(tmp_path / "api.parquet"))
    from_csv = ingest(csv_of(ROWS, tmp_path / "same.csv"), str(tmp_path / "csv.parquet"))

    assert from_api.data_version == from_csv.data_version
    assert (from_api.rows, from_api.columns) == (7, ["age", "income", "home", "married", "day"])
    assert from_api.source == url and from_api.format == "http"
    assert from_api.parts == (1 if style == "list" else 3)
    assert pq.read_table(tmp_path / "api.parquet").equals(pq.read_table(tmp_path / "csv.parquet"))
    # every page read once; page numbers end with one empty page
    assert len(api.seen("/loans")) == {"list": 1, "page numbers": 4}.get(style, 3)


def test_page_numbers_keep_the_other_parameters_and_start_where_the_url_says(api):
    api.serve_page_numbers("/loans", [[{"a": 1}], [{"a": 2}], [{"a": 3}]], key=None)
    table, _ = read(api.url("/loans?status=open&page=2&size=1"))
    assert table.column("a").to_pylist() == [2, 3]
    assert [r.query for r in api.seen("/loans")] == [
        {"status": "open", "page": str(n), "size": "1"} for n in (2, 3, 4)]


def test_without_links_or_a_page_parameter_one_page_is_read(api):
    api.route("/loans", lambda request: Reply(body={"items": ROWS[:2], "total": 2}))
    table, rows = read(api.url("/loans"))
    assert table.num_rows == 2 and rows.parts == 1
    assert len(api.seen("/loans")) == 1


def test_a_null_next_link_ends_even_a_url_with_a_page_parameter(api):
    # DRF answers 404 past the last page: a body with a 'next' key is never paged by number.
    api.route("/loans", lambda request: Reply(body={"next": None, "results": ROWS[:2]}))
    table, _ = read(api.url("/loans?page=1"))
    assert table.num_rows == 2 and len(api.seen("/loans")) == 1


def test_a_next_link_inside_links_is_followed(api):
    def answer(request):
        index = int(request.query.get("p", 0))
        more = {"next": f"/loans?p={index + 1}"} if index < 2 else {"next": None}
        return Reply(body={"data": [{"n": index}], "links": more})

    api.route("/loans", answer)
    assert read(api.url("/loans"))[0].column("n").to_pylist() == [0, 1, 2]


# --- where the records are ---------------------------------------------------------------------


@pytest.mark.parametrize("key", http.RECORDS_KEYS)
def test_records_are_found_under_each_common_key(api, key):
    api.route("/x", lambda request: Reply(body={"meta": {"n": 2}, key: ROWS[:2]}))
    assert read(api.url("/x"))[0].num_rows == 2


def test_records_key_names_the_key_or_a_dotted_path(api):
    api.route("/a", lambda request: Reply(body={"loans": ROWS[:3], "data": ROWS[:1]}))
    api.route("/b", lambda request: Reply(body={"response": {"docs": ROWS[:2]}}))
    assert read(api.url("/a"), records_key="loans")[0].num_rows == 3
    assert read(api.url("/a"))[0].num_rows == 1  # 'data' without the option
    assert read(api.url("/b"), records_key="response.docs")[0].num_rows == 2


def test_an_object_without_records_is_an_error_listing_its_keys(api):
    api.route("/x", lambda request: Reply(body={"loans": ROWS, "total": 7}))
    with pytest.raises(SourceError) as caught:
        read(api.url("/x"))
    assert "an object with keys 'loans', 'total'" in message(caught)
    assert "'results', 'data', 'items', 'records'" in message(caught)
    assert "'records_key'" in message(caught)
    with pytest.raises(SourceError, match="no list of records under the key 'rows'"):
        read(api.url("/x"), records_key="rows")


def test_records_that_are_not_objects_are_refused(api):
    api.route("/x", lambda request: Reply(body=[{"a": 1}, [1, 2]]))
    with pytest.raises(SourceError, match=r"list \[1, 2\] as record 2 of page 1"):
        read(api.url("/x"))


def test_an_empty_first_page_is_an_error(api):
    api.route("/x", lambda request: Reply(body={"results": []}))
    with pytest.raises(SourceError, match="returned no records on its first page"):
        read(api.url("/x"))


# --- types across pages ------------------------------------------------------------------------


def test_types_meet_across_pages_and_keys_may_come_and_go(api):
    pages = [[{"n": 1, "x": 1, "gone": "a"}, {"n": 2, "x": 2}],
             [{"n": 3, "x": 2.5, "late": True}],
             [{"n": 4, "x": None}]]
    api.serve_body_links("/x", pages)
    table, _ = read(api.url("/x"))
    assert table.schema == pa.schema({"n": pa.int64(), "x": pa.float64(), "gone": pa.string(),
                                      "late": pa.bool_()})
    assert table.to_pylist() == [
        {"n": 1, "x": 1.0, "gone": "a", "late": None}, {"n": 2, "x": 2.0, "gone": None, "late": None},
        {"n": 3, "x": 2.5, "gone": None, "late": True}, {"n": 4, "x": None, "gone": None, "late": None},
    ]


def test_text_where_earlier_pages_have_numbers_names_the_page_and_key(api):
    api.serve_body_links("/x", [[{"n": 1}], [{"n": 2}], [{"n": "three"}]])
    with pytest.raises(SourceError) as caught:
        read(api.url("/x"))
    assert "text (string) under the key 'n' on page 3" in message(caught)
    assert "cursor=2" in message(caught) and "numbers (int64)" in message(caught)


def test_a_page_mixing_numbers_and_text_in_one_key_is_an_error_naming_the_page(api):
    api.route("/x", lambda request: Reply(body=[{"n": 1}, {"n": "x"}]))
    with pytest.raises(SourceError, match=r"not readable on page 1: .*changed from number to string"):
        read(api.url("/x"))


def test_nested_values_are_refused_by_ingest(tmp_path, api):
    api.route("/x", lambda request: Reply(body=[{"id": 1, "tags": ["a", "b"]}]))
    with pytest.raises(SourceError, match="nested values in column.*'tags'"):
        ingest(api.url("/x"), str(tmp_path / "s.parquet"))


def test_nan_is_read_as_missing(api):
    api.route("/x", lambda request: Reply(body=b'[{"a": 1.5}, {"a": NaN}]'))
    assert read(api.url("/x"))[0].column("a").to_pylist() == [1.5, None]


def test_pages_are_spooled_one_batch_per_page(api, monkeypatch):
    api.serve_body_links("/x", [[{"n": i}] * 2 for i in range(5)])
    with open_source(api.url("/x")).open() as rows:
        assert [b.num_rows for b in rows.batches] == [2] * 5


# --- pagination guards -------------------------------------------------------------------------


def test_a_link_back_to_a_page_already_read_is_an_error(api):
    def answer(request):
        return Reply(body={"results": [{"a": 1}], "next": api.url("/x?cursor=0")
                           if request.query.get("cursor") == "1" else api.url("/x?cursor=1")})

    api.route("/x", answer)
    with pytest.raises(SourceError, match="a page already read"):
        read(api.url("/x?cursor=0"))
    assert len(api.seen("/x")) == 2


def test_pages_past_the_limit_are_an_error(api, monkeypatch):
    monkeypatch.setattr(http, "MAX_PAGES", 3)
    api.route("/x", lambda request: Reply(body={"results": [{"a": 1}],
                                                "next": f"/x?c={int(request.query.get('c', 0)) + 1}"}))
    with pytest.raises(SourceError, match="still had a next page after 3 pages"):
        read(api.url("/x"))
    assert len(api.seen("/x")) == 3


def test_an_api_ignoring_the_page_parameter_is_stopped(api):
    api.route("/x", lambda request: Reply(body=[{"a": 1}, {"a": 2}]))
    with pytest.raises(SourceError, match="does not seem to read the 'page' parameter"):
        read(api.url("/x?page=1"))
    assert len(api.seen("/x")) == 2


def test_a_cursor_token_as_next_is_refused(api):
    api.route("/x", lambda request: Reply(body={"results": [{"a": 1}], "next": "dGhlIGN1cnNvcg"}))
    with pytest.raises(SourceError, match="expected a link .cursor tokens are not supported"):
        read(api.url("/x"))


# --- failures ----------------------------------------------------------------------------------


def test_429_and_503_are_tried_again_honouring_retry_after(api):
    api.serve_sequence("/x", [Reply(429, {"detail": "slow down"}, {"Retry-After": "0"}),
                              Reply(503, "busy", {"Content-Type": "text/plain"}),
                              Reply(body=ROWS[:2])])
    assert read(api.url("/x"))[0].num_rows == 2
    assert len(api.seen("/x")) == 3


def test_retry_after_is_honoured_and_capped():
    response = requests.models.Response()
    response.headers["Retry-After"] = "7"
    assert http._retry_after(response, 1.0) == 7.0
    response.headers["Retry-After"] = "86400"
    assert http._retry_after(response, 1.0) == http.MAX_RETRY_AFTER_SECONDS
    response.headers["Retry-After"] = "Wed, 21 Oct 2015 07:28:00 GMT"  # in the past
    assert http._retry_after(response, 1.0) == 0.0
    del response.headers["Retry-After"]
    assert http._retry_after(response, 1.5) == 1.5


def test_a_permanent_500_is_an_error_naming_host_status_and_tries(tmp_path, api):
    api.route("/x", lambda request: Reply(500, {"error": "boom"}))
    host = api.base.removeprefix("http://")
    with pytest.raises(SourceError) as caught:
        ingest(api.url("/x"), str(tmp_path / "s.parquet"))
    assert f"host {host!r} kept failing (HTTP 500 Internal Server Error) after 5 tries" \
        in message(caught)
    assert len(api.seen("/x")) == http.MAX_TRIES
    assert not (tmp_path / "s.parquet").exists()


def test_a_failing_later_page_is_named(api):
    def answer(request):
        if request.query.get("cursor") == "1":
            return Reply(502, "bad gateway")
        return Reply(body={"results": [{"a": 1}], "next": "/x?cursor=1"})

    api.route("/x", answer)
    with pytest.raises(SourceError, match=r"kept failing for page 2 \('.*cursor=1'\) \(HTTP 502"):
        read(api.url("/x"))


def test_a_timeout_is_tried_again(api, monkeypatch):
    monkeypatch.setattr(http, "TIMEOUT_SECONDS", (2.0, 0.3))
    api.serve_sequence("/x", [Reply(body=[{"a": 1}], delay=1.0), Reply(body=[{"a": 2}])])
    assert read(api.url("/x"))[0].column("a").to_pylist() == [2]
    api.route("/y", lambda request: Reply(body=[{"a": 1}], delay=1.0))
    monkeypatch.setattr(http, "MAX_TRIES", 2)
    with pytest.raises(SourceError, match=r"kept failing \(timed out\) after 2 tries"):
        read(api.url("/y"))


def test_an_unreachable_port_names_the_host(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    url = f"http://127.0.0.1:{port}/v1/loans"
    with pytest.raises(SourceError) as caught:
        ingest(url, str(tmp_path / "s.parquet"))
    assert message(caught).startswith(f"[ingest] The source {url!r} cannot be read: host "
                                      f"'127.0.0.1:{port}' kept failing (connection refused)")
    assert not (tmp_path / "s.parquet").exists()


@pytest.mark.parametrize(("status", "words"), [(404, "HTTP 404 Not Found"),
                                               (400, "HTTP 400 Bad Request")])
def test_other_4xx_answers_are_errors_at_once_with_the_body(api, status, words):
    api.route("/x", lambda request: Reply(status, {"detail": "no such list"}))
    with pytest.raises(SourceError) as caught:
        read(api.url("/x"))
    assert words in message(caught) and "no such list" in message(caught)
    assert len(api.seen("/x")) == 1


def test_a_body_that_is_not_json_is_an_error(api):
    page = "<html><body>" + "Sign in " * 100 + "</body></html>"
    api.route("/x", lambda request: Reply(body=page, headers={"Content-Type": "text/html"}))
    with pytest.raises(SourceError) as caught:
        read(api.url("/x"))
    assert "with a body that is not JSON (text/html;" in message(caught)
    assert "'<html><body>Sign in" in message(caught) and message(caught).endswith("....")
    assert len(message(caught)) < 500


def test_infinity_is_read_as_a_jsonl_file_and_a_csv_read_it(api, tmp_path):
    # Python's json.dumps writes Infinity and NaN; pyarrow reads them in a JSON Lines file
    body = b'[{"a": Infinity, "b": 1.5}, {"a": -Infinity, "b": NaN}, {"a": 2.0, "b": 0.5}]'
    api.route("/x", lambda request: Reply(body=body))
    (tmp_path / "same.jsonl").write_text(
        '{"a": Infinity, "b": 1.5}\n{"a": -Infinity, "b": NaN}\n{"a": 2.0, "b": 0.5}\n')
    (tmp_path / "same.csv").write_text("a,b\ninf,1.5\n-inf,\n2.0,0.5\n")

    versions = {name: ingest(source, str(tmp_path / f"{name}.parquet")).data_version
                for name, source in [("api", api.url("/x")),
                                     ("jsonl", str(tmp_path / "same.jsonl")),
                                     ("csv", str(tmp_path / "same.csv"))]}

    assert len(set(versions.values())) == 1, versions
    assert pq.read_table(tmp_path / "api.parquet").to_pylist() == [
        {"a": float("inf"), "b": 1.5}, {"a": float("-inf"), "b": None}, {"a": 2.0, "b": 0.5}]


def test_redirects_are_followed(api):
    api.route("/old", lambda request: Reply(301, b"", {"Location": "/new"}))
    api.route("/new", lambda request: Reply(body=ROWS[:2]))
    assert read(api.url("/old"))[0].num_rows == 2


# --- the token ---------------------------------------------------------------------------------


def requires_token(token: str):
    def answer(request):
        if request.authorization != f"Bearer {token}":
            return Reply(401, {"detail": f"bad credentials {request.authorization}"})
        return Reply(body=ROWS[:2])

    return answer


def test_without_a_token_a_401_says_where_the_token_comes_from(api):
    api.route("/x", requires_token(TOKEN))
    with pytest.raises(SourceError) as caught:
        read(api.url("/x"))
    assert "HTTP 401 Unauthorized" in message(caught)
    assert "Set KEEL_SOURCE_TOKEN to a bearer token" in message(caught)
    assert api.seen("/x")[0].authorization is None


def test_the_token_comes_from_the_environment_as_a_bearer_header(api, monkeypatch):
    api.route("/x", requires_token(TOKEN))
    monkeypatch.setenv("KEEL_SOURCE_TOKEN", TOKEN)
    assert read(api.url("/x"))[0].num_rows == 2
    assert api.seen("/x")[0].authorization == f"Bearer {TOKEN}"


def test_a_refused_token_is_never_shown(api, monkeypatch):
    api.route("/x", requires_token("another"))  # echoes the header it got in its body
    monkeypatch.setenv("KEEL_SOURCE_TOKEN", TOKEN)
    with pytest.raises(SourceError) as caught:
        read(api.url("/x"))
    assert "was not accepted" in message(caught) and "Bearer ***" in message(caught)
    assert TOKEN not in message(caught)


def test_the_token_is_sent_only_to_the_sources_own_host_and_port(api, monkeypatch):
    other = JsonApi().start()
    try:
        other.route("/more", lambda request: Reply(body={"results": [{"a": 2}], "next": None}))
        api.route("/x", lambda request: Reply(body={"results": [{"a": 1}],
                                                    "next": other.url("/more")}))
        monkeypatch.setenv("KEEL_SOURCE_TOKEN", TOKEN)
        assert read(api.url("/x"))[0].column("a").to_pylist() == [1, 2]
        assert api.seen("/x")[0].authorization == f"Bearer {TOKEN}"
        assert other.seen("/more")[0].authorization is None
    finally:
        other.close()


def test_netrc_credentials_are_not_used(api, monkeypatch, tmp_path):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    api.route("/x", lambda request: Reply(body=[{"a": 1}]))
    read(api.url("/x"))
    assert api.seen("/x")[0].authorization is None
