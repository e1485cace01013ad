"""A paginated JSON API as an ingest source: ``--source https://api.example.com/v1/loans``.

What it reads, page by page:

- **records**: a page is a JSON list of flat objects, or an object holding that list under
  ``results``, ``data``, ``items`` or ``records`` (the first present), or under the key given as
  ``records_key`` (a dotted path such as ``response.items`` reaches into nested objects).
- **pagination**, decided on the first page: an RFC 8288 ``Link: <...>; rel="next"`` header, or
  a next link in the body (top-level ``next``, ``next_page_url`` or ``@odata.nextLink``, or
  ``next`` inside ``links`` or ``paging``; relative links are resolved against the page). When
  the first page has neither (nor any ``Link`` header or next key at all) and the URL carries
  ``page=N``, pages N+1, N+2, ... are asked for. Reading stops at a page with no records, at the
  end of the links, or with an error at a link seen before, at a page returning the previous
  page again, or past :data:`MAX_PAGES`.
- **types**: each page is typed as a JSON Lines file holding its records would be (so the same
  rows give the same data version as a CSV or JSON Lines file), and the table's type of a column
  is the :func:`~keel.sources.common_type` over all pages: integers on one page and floats on
  another make floats, a key missing from a record (or from a whole page) is null, a key first
  seen on a later page is a column null before it, and text on one page where another has numbers
  is an error naming the page and the key. So that types come from every page and memory holds
  one page, pages are spooled to a temporary Arrow file and read back once all are fetched.
- **failures**: 429, 5xx, timeouts and dropped connections are tried again, :data:`MAX_TRIES`
  times in all, waiting ``Retry-After`` (at most :data:`MAX_RETRY_AFTER_SECONDS`) or an
  exponential backoff from :data:`BACKOFF_SECONDS`; then a SourceError names the host and the last
  failure. Other 4xx answers and bodies that are not JSON are errors at once.
- **credentials**: a bearer token from the ``KEEL_SOURCE_TOKEN`` environment variable, sent only
  to the source's own scheme, host and port; never taken from the URL, ``~/.netrc`` or a
  parameter, and never written to a message.

requests and pyarrow are imported when a source is opened: importing this module only registers
the ``http`` and ``https`` schemes.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import os
import random
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from typing_extensions import override

from keel.errors import ParameterError, SourceError
from keel.errors import shorten as shorten_middle
from keel.sources import (
    Source,
    SourceRows,
    SourceScheme,
    as_json_timestamps,
    common_type,
    conform,
    json_timestamp_schema,
    register,
    value_kind,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import requests

TOKEN_ENV = "KEEL_SOURCE_TOKEN"
#: Keys a response object may hold its records under, tried in this order.
RECORDS_KEYS = ("results", "data", "items", "records")
#: Paths of a next link in a response object, tried in this order.
NEXT_LINKS = (("next",), ("next_page_url",), ("@odata.nextLink",), ("links", "next"),
              ("paging", "next"))
MAX_PAGES = 100_000
MAX_TRIES = 5  # requests per page, first one included
BACKOFF_SECONDS = 1.0  # wait before the 2nd try; doubled each time, with jitter
MAX_BACKOFF_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 60.0
TIMEOUT_SECONDS = (10.0, 60.0)  # to connect, and between bytes of an answer
SHOWN_BODY_CHARS = 160  # of an answer's body, in a message
SHOWN_URL_CHARS = 120


def shown_url(url: str) -> str:
    """``url`` quoted, its middle cut if long: a message stays one line."""
    return repr(shorten_middle(url, SHOWN_URL_CHARS))


def _port(url: str) -> int | None:
    """The URL's port if it names one (an invalid port is none: requests refuses the URL)."""
    try:
        return urlsplit(url).port
    except ValueError:
        return None


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port: where a token may be sent."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), _port(url) or default


def _host(url: str) -> str:
    """``host`` or ``host:port`` of ``url``, without any user information."""
    host = urlsplit(url).hostname or ""
    port = _port(url)
    return f"{host}:{port}" if port else host


def page_name(number: int, url: str, source: str) -> str:
    """``page 3 ('https://...?page=3')`` for messages; ``page 1`` alone at the source's URL."""
    return f"page {number}" if url == source else f"page {number} ({shown_url(url)})"


@dataclass
class _Page:
    """One page read: its URL and number (from 1), and its records."""

    url: str
    number: int
    where: str  # its name in messages (:func:`page_name`)
    records: list[dict[str, Any]]
    body: Any  # the whole JSON document, for its next link
    response: requests.Response


@dataclass
class _Spool:
    """Pages typed one by one, written to Arrow files and read back as one table.

    Consecutive pages of the same types share a file; the columns are the keys in the order
    first seen, each of the common type of its types on every page.
    """

    folder: str
    types: dict[str, pa.DataType] = field(default_factory=dict)
    segments: list[str] = field(default_factory=list)
    rows: int = 0
    _writer: Any = None
    _schema: pa.Schema | None = None

    def add(self, batch: pa.RecordBatch, source: str, where: str) -> None:
        """Write ``batch`` (one page); SourceError if a column's type cannot meet earlier ones."""
        import pyarrow as pa

        for name, found in zip(batch.schema.names, batch.schema.types, strict=True):
            before = self.types.get(name)
            common = found if before is None else common_type(before, found)
            if common is None:
                assert before is not None
                raise SourceError(
                    f"The source {source!r} has {value_kind(found)} under the key {name!r} on "
                    f"{where}, where earlier pages have {value_kind(before)}; expected one kind "
                    "of value per key."
                )
            self.types[name] = common
        if self._schema is None or not batch.schema.equals(self._schema):
            self.close()
            path = os.path.join(self.folder, f"{len(self.segments):06d}.arrow")
            options = pa.ipc.IpcWriteOptions(compression="lz4")
            self._writer = pa.ipc.new_file(path, batch.schema, options=options)
            self._schema = batch.schema
            self.segments.append(path)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        """Finish the file being written."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    @property
    def schema(self) -> pa.Schema:
        """Every key seen, in the order first seen, with its common type."""
        import pyarrow as pa

        return pa.schema([pa.field(name, type_) for name, type_ in self.types.items()])

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The pages back, in order, each with every column (null where a page had not the key)."""
        import pyarrow as pa

        self.close()
        schema = self.schema
        for path in self.segments:
            with pa.memory_map(path) as source:
                reader = pa.ipc.open_file(source)
                for i in range(reader.num_record_batches):
                    batch = reader.get_batch(i)
                    columns = [
                        batch.column(name) if name in batch.schema.names
                        else pa.nulls(batch.num_rows, type_)
                        for name, type_ in self.types.items()
                    ]
                    yield conform(pa.RecordBatch.from_arrays(
                        columns, names=list(self.types)), schema)


class HttpSource(Source):
    """Records from a JSON API over HTTP(S), read page by page (see the module's docstring)."""

    takes = frozenset({"records_key"})

    @override
    @classmethod
    def check_uri(cls, uri: str) -> None:
        parts = urlsplit(uri)
        if parts.username is not None or parts.password is not None:
            hidden = urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))
            raise ParameterError(
                "The 'source' parameter of ingest must not hold credentials: a JSON API's bearer "
                f"token comes from the {TOKEN_ENV} environment variable. Got {hidden!r}.",
                stage="ingest",
            )
        try:
            parts.port  # noqa: B018 - parsed lazily: raises if the port is not a number
        except ValueError:
            parts = parts._replace(netloc="")
        if not parts.hostname:
            raise ParameterError(
                "The 'source' parameter of ingest must name a host (and a port, if any, in "
                "digits), like "
                f"https://api.example.com/v1/loans. Got {uri!r}.",
                stage="ingest",
            )

    @override
    @contextlib.contextmanager
    def open(self) -> Iterator[SourceRows]:
        import requests

        with tempfile.TemporaryDirectory(prefix="keel-api-") as folder:
            spool = _Spool(folder)
            pages = 0
            with requests.Session() as session:
                try:
                    for page in self._pages(session):
                        for batch in self._batches(page):
                            spool.add(batch, self.uri, page.where)
                        pages += 1
                        del page  # memory holds one page: this one goes before the next comes
                finally:
                    spool.close()
            if not pages:
                raise SourceError(
                    f"The source {self.uri!r} returned no records on its first page; expected a "
                    "list of records (JSON objects)."
                )
            yield SourceRows(schema=spool.schema, batches=spool.batches(), format=self.format,
                             parts=pages)

    # -- pages --------------------------------------------------------------------------------
    def _pages(self, session: requests.Session) -> Iterator[_Page]:
        """Every page with records, in order, following the pagination the first page shows."""
        url, number = self.uri, 1
        seen = {url}
        page_param = _page_number(url)
        links: bool | None = None  # decided on the first page
        previous = ""  # digest of the previous page's body, when pages are numbered
        while True:
            if number > MAX_PAGES:
                raise SourceError(
                    f"The source {self.uri!r} still had a next page after {MAX_PAGES:,} pages; "
                    "expected the pagination to end (is it looping?)."
                )
            response = self._get(session, url, number)
            where = page_name(number, url, self.uri)
            body = self._json(response, where)
            page = _Page(url, number, where, self._records(body, where), body, response)
            if not page.records:
                return
            if links is None:
                links = bool(response.links) or _has_next_key(body)
            elif not links and hashlib.sha256(response.content).hexdigest() == previous:
                raise SourceError(
                    f"The source {self.uri!r} returned the same records for {page.where} as for "
                    f"page {number - 1}: the API does not seem to read the 'page' parameter."
                )
            if not links:
                previous = hashlib.sha256(response.content).hexdigest()
            yield page
            if links:
                found = self._next_link(page)
                if found is None:
                    return
                if found in seen:
                    raise SourceError(
                        f"The source {self.uri!r} links from {page.where} to {shown_url(found)}, "
                        "a page already read; expected the pagination to end."
                    )
                url = found
            elif page_param is not None:
                url = _with_page(url, page_param + number)
            else:
                return
            del page, body, response  # before the next page is fetched
            seen.add(url)
            number += 1

    def _next_link(self, page: _Page) -> str | None:
        """The next page's URL: the ``Link`` header's, else the body's; None at the end."""
        header = page.response.links.get("next", {}).get("url")
        link = header or _next_in_body(page.body)
        if link is None:
            return None
        if not isinstance(link, str) or not re.match(r"(https?://|/|\?|\.{1,2}/)", link):
            raise SourceError(
                f"The source {self.uri!r} gives {shorten_middle(repr(link), 80)} as the next "
                f"page on {page.where}; expected a link (cursor tokens are not supported)."
            )
        return urljoin(page.url, link)

    def _records(self, body: Any, where: str) -> list[dict[str, Any]]:
        """The records of a page's body; SourceError if it holds none where expected."""
        key = self.options.records_key
        found: Any
        if key:
            found = _at(body, key)
            if not isinstance(found, list):
                raise SourceError(
                    f"The source {self.uri!r} has no list of records under the key {key!r} (the "
                    f"'records_key' parameter) on {where}; found {_describe(body)}."
                )
        elif isinstance(body, list):
            found = body
        else:
            found = next((body[k] for k in RECORDS_KEYS
                          if isinstance(body, dict) and isinstance(body.get(k), list)), None)
            if found is None:
                raise SourceError(
                    f"The source {self.uri!r} answered {where} with {_describe(body)}; expected "
                    "a JSON list of records, or an object holding it under "
                    f"{', '.join(repr(k) for k in RECORDS_KEYS)} (or name the key with the "
                    "'records_key' parameter)."
                )
        records: list[dict[str, Any]] = found
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise SourceError(
                    f"The source {self.uri!r} has {type(record).__name__} {_excerpt(record)} as "
                    f"record {index + 1} of {where}; expected each record to be a JSON object."
                )
        return records

    def _batches(self, page: _Page) -> list[pa.RecordBatch]:
        """A page's records typed as a JSON Lines file holding them would be."""
        import io

        import pyarrow as pa
        import pyarrow.json as pjson

        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in page.records).encode()
        read_options = pjson.ReadOptions(block_size=len(lines) + 1)
        try:
            table = pjson.read_json(io.BytesIO(lines), read_options=read_options)
            if any(pa.types.is_timestamp(t) for t in table.schema.types):
                # pyarrow types text with whole seconds as a timestamp with no zone, dropping an
                # offset: read it as text, typed below as a CSV reader types it (offsets: UTC),
                # so that pages with and without fractional seconds meet
                as_text = pa.schema([f.with_type(pa.string()) if pa.types.is_timestamp(f.type)
                                     else f for f in table.schema])
                table = pjson.read_json(io.BytesIO(lines), read_options=read_options,
                                        parse_options=pjson.ParseOptions(explicit_schema=as_text))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            detail = str(exc).splitlines()[0]
            raise SourceError(
                f"The source {self.uri!r} is not readable on {page.where}: {detail}"
            ) from None
        if not table.num_columns:
            raise SourceError(
                f"The source {self.uri!r} has only empty records (no key) on {page.where}; "
                "expected records with at least one key."
            )
        batches = table.combine_chunks().to_batches()
        if not batches:
            return []
        # typed as a JSON Lines file is: ISO 8601 text with fractional seconds or a zone offset
        # as timestamps, like a CSV reader does
        # (one batch: the whole page, whose every value the schema was decided on)
        schema = json_timestamp_schema(batches[0])
        return [as_json_timestamps(batch, schema) for batch in batches]

    # -- HTTP ---------------------------------------------------------------------------------
    def _get(self, session: requests.Session, url: str, number: int) -> requests.Response:
        """The answer to GET ``url``, tried again on 429, 5xx and network failures."""
        import requests

        token = os.environ.get(TOKEN_ENV, "")
        auth = _Bearer(token if token and _origin(url) == _origin(self.uri) else "")
        where = "" if number == 1 else f" for {page_name(number, url, self.uri)}"
        last = ""
        started = time.monotonic()
        for attempt in range(MAX_TRIES):
            wait = min(BACKOFF_SECONDS * 2 ** attempt, MAX_BACKOFF_SECONDS)
            wait *= random.uniform(0.5, 1.0)
            try:
                response = session.get(url, auth=auth, timeout=TIMEOUT_SECONDS,
                                       headers={"Accept": "application/json"})
            except requests.exceptions.SSLError as exc:
                raise SourceError(
                    f"The source {self.uri!r} cannot be read: the TLS connection to host "
                    f"{_host(url)!r} failed{where} ({_network_problem(exc)})."
                ) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                last = _network_problem(exc)
            except requests.exceptions.RequestException as exc:
                raise SourceError(
                    f"The source {self.uri!r} cannot be read from host {_host(url)!r}{where}: "
                    f"{type(exc).__name__} ({shorten_middle(str(exc).splitlines()[0], 120)})."
                ) from None
            else:
                if response.status_code != 429 and response.status_code < 500:
                    self._refuse_status(response, url, where, token)
                    return response
                last = f"HTTP {response.status_code} {response.reason}"
                wait = _retry_after(response, wait)
            if attempt + 1 < MAX_TRIES:
                time.sleep(wait)
        raise SourceError(
            f"The source {self.uri!r} cannot be read: host {_host(url)!r} kept failing{where} "
            f"({last}) after {MAX_TRIES} tries in {time.monotonic() - started:.1f} s."
        )

    def _refuse_status(self, response: requests.Response, url: str, where: str,
                       token: str) -> None:
        """SourceError for an answer that is no success (4xx other than 429)."""
        if response.ok:
            return
        status = f"HTTP {response.status_code} {response.reason}"
        hint = ""
        if response.status_code in (401, 403):
            hint = (f" The bearer token in {TOKEN_ENV} was not accepted." if token else
                    f" Set {TOKEN_ENV} to a bearer token if the API needs one.")
        raise SourceError(
            f"The source {self.uri!r} answered {status}{where}: "
            f"{_body_excerpt(response, token)}.{hint}"
        )

    def _json(self, response: requests.Response, where: str) -> Any:
        """The page's body as JSON; NaN is read as null and +/-Infinity as infinite floats.

        Python's json module writes them; a JSON Lines file holding the same rows is read so by
        pyarrow, and a CSV's ``inf`` is infinite too: one data version for the three.
        """
        def constant(name: str) -> Any:
            return None if name == "NaN" else float(name)

        try:
            return json.loads(response.content, parse_constant=constant)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            kind = response.headers.get("Content-Type", "no content type")
            problem = str(exc).splitlines()[0]
            raise SourceError(
                f"The source {self.uri!r} answered {where} with a body that is not JSON ({kind}; "
                f"{problem}): {_body_excerpt(response, os.environ.get(TOKEN_ENV, ''))}."
            ) from None


class _Bearer:
    """Sends ``Authorization: Bearer <token>`` (nothing if the token is empty).

    Given as the request's auth even without a token, so that requests never falls back to
    credentials from ``~/.netrc``.
    """

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: Any) -> Any:
        if self.token:
            request.headers["Authorization"] = f"Bearer {self.token}"
        return request


# -- helpers ------------------------------------------------------------------------------------
def _page_number(url: str) -> int | None:
    """The value of the URL's ``page`` parameter, if it is a whole number."""
    values = [v for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True) if k == "page"]
    return int(values[0]) if len(values) == 1 and values[0].isdigit() else None


def _with_page(url: str, page: int) -> str:
    """``url`` with its ``page`` parameter set to ``page``, the other parameters unchanged."""
    parts = urlsplit(url)
    query = [(k, str(page) if k == "page" else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _at(body: Any, path: str) -> Any:
    """``body[path]``, else the value at the dotted ``path`` (``response.items``); None if none."""
    if isinstance(body, dict) and path in body:
        return body[path]
    for key in path.split("."):
        if not isinstance(body, dict) or key not in body:
            return None
        body = body[key]
    return body


def _walk(body: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    """Whether the body has the key at ``path`` (its last key may hold null), and its value."""
    for key in path:
        if not isinstance(body, dict) or key not in body:
            return False, None
        body = body[key]
    return True, body


def _has_next_key(body: Any) -> bool:
    """Whether the body has a next-link key at all (null on a last page still counts)."""
    return any(_walk(body, path)[0] for path in NEXT_LINKS)


def _next_in_body(body: Any) -> Any:
    """The first non-empty next link of :data:`NEXT_LINKS` in the body; None if none."""
    for path in NEXT_LINKS:
        value = _walk(body, path)[1]
        if value not in (None, ""):
            return value
    return None


def _describe(body: Any) -> str:
    """What a JSON document is, for messages: ``an object with keys 'a', 'b'``."""
    if isinstance(body, dict):
        keys = list(body)
        if not keys:
            return "an empty object"
        shown = ", ".join(repr(shorten_middle(str(k), 40)) for k in keys[:8])
        return f"an object with keys {shown}" + (f" and {len(keys) - 8} more" if len(keys) > 8
                                                 else "")
    if isinstance(body, list):
        return f"a list of {len(body)} values"
    return f"{type(body).__name__} {_excerpt(body)}"


def _excerpt(value: Any) -> str:
    return shorten_middle(json.dumps(value, ensure_ascii=False), 60)


def _body_excerpt(response: requests.Response, token: str) -> str:
    """The start of an answer's body on one line, the token blanked out if it is echoed."""
    text = " ".join(response.text[:SHOWN_BODY_CHARS * 4].split())
    if token:
        text = text.replace(token, "***")
    if not text:
        return "(empty body)"
    cut = len(text) > SHOWN_BODY_CHARS or len(response.content) > SHOWN_BODY_CHARS * 4
    return repr(text[:SHOWN_BODY_CHARS]) + ("..." if cut else "")


def _retry_after(response: requests.Response, default: float) -> float:
    """Seconds the ``Retry-After`` header asks to wait (capped); ``default`` without one."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def _network_problem(error: Exception) -> str:
    """A network failure in a few words: ``connection refused``, ``timed out``, ..."""
    import requests

    text = str(error)
    if isinstance(error, requests.exceptions.Timeout) or "timed out" in text.lower():
        return "timed out"
    if "NameResolution" in text or "resolve" in text.lower():
        return "its name does not resolve"
    found = _ERRNO.search(text)
    if found:
        return found.group(1).strip().lower()
    return type(error).__name__


FORM = "https://host/path (a JSON API)"
register("http", SourceScheme(HttpSource, FORM))
register("https", SourceScheme(HttpSource, FORM))
