"""A JSON API for the HTTP source's tests: a threaded http.server on 127.0.0.1, port 0.

A test sets what each path answers (:meth:`JsonApi.route`, or the helpers serving paginated
records in each pagination style) and reads back every request the server saw.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


def send_json(handler: BaseHTTPRequestHandler, status: int, doc: Any) -> None:
    """Answer ``handler``'s request with ``doc`` as JSON (the stand-in servers of the tests)."""
    data = json.dumps(doc).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@dataclass(frozen=True)
class Request:
    """A request the server saw: path, query parameters and headers."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]

    @property
    def authorization(self) -> str | None:
        """The Authorization header, whatever its case; None if absent."""
        return next((v for k, v in self.headers.items() if k.lower() == "authorization"), None)


@dataclass
class Reply:
    """An answer: status, body (bytes or str as is, anything else as JSON), headers, delay."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (to make a client time out)

    def content(self) -> bytes:
        """The body's bytes."""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


Answer = Callable[[Request], Reply]


class JsonApi:
    """The server: ``start()``, ``route(path, answer)``, ``url(path)``, ``close()``."""

    def __init__(self) -> None:
        self.routes: dict[str, Answer] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                request = Request(parts.path, dict(parse_qsl(parts.query)), dict(self.headers))
                with api._lock:
                    api.requests.append(request)
                answer = api.routes.get(parts.path)
                reply = answer(request) if answer else Reply(404, {"detail": "Not found."})
                if reply.delay:
                    time.sleep(reply.delay)
                content = reply.content()
                try:
                    self.send_response(reply.status)
                    headers = {"Content-Type": "application/json", **reply.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Quiet: the tests read :attr:`JsonApi.requests` instead."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                        daemon=True)

    def start(self) -> JsonApi:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()

    @classmethod
    def running(cls) -> Iterator[JsonApi]:
        """A started server, closed afterwards: the body of a pytest fixture."""
        server = cls().start()
        try:
            yield server
        finally:
            server.close()

    @property
    def base(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        """The full URL of ``path`` (which may carry a query)."""
        return self.base + path

    def route(self, path: str, answer: Answer) -> None:
        """Answer GET ``path`` (any query) with ``answer(request)``."""
        self.routes[path] = answer

    def seen(self, path: str) -> list[Request]:
        """The requests made to ``path``, in order."""
        return [r for r in self.requests if r.path == path]

    # -- the three pagination styles, each serving ``pages`` (lists of records) at ``path`` ----
    def serve_body_links(self, path: str, pages: Sequence[list[dict[str, Any]]],
                         key: str = "results", absolute: bool = True) -> None:
        """Django REST framework style: ``{"count", "next", "previous", key: [...]}``."""

        def answer(request: Request) -> Reply:
            index = int(request.query.get("cursor", 0))
            later = f"{path}?cursor={index + 1}"
            link = (self.url(later) if absolute else later) if index + 1 < len(pages) else None
            return Reply(body={"count": sum(map(len, pages)), "next": link, "previous": None,
                               key: pages[index]})

        self.route(path, answer)

    def serve_link_header(self, path: str, pages: Sequence[list[dict[str, Any]]]) -> None:
        """GitHub style: a JSON list per page, ``Link: <...>; rel="next"`` while there is one."""

        def answer(request: Request) -> Reply:
            index = int(request.query.get("after", 0))
            links = [f'<{self.url(path)}?after=0>; rel="first"']
            if index + 1 < len(pages):
                links.append(f'<{self.url(path)}?after={index + 1}>; rel="next"')
            return Reply(body=pages[index], headers={"Link": ", ".join(links)})

        self.route(path, answer)

    def serve_page_numbers(self, path: str, pages: Sequence[list[dict[str, Any]]],
                           key: str | None = "data") -> None:
        """``?page=N`` from 1, no links; an empty page after the last one."""

        def answer(request: Request) -> Reply:
            number = int(request.query.get("page", 1))
            records = pages[number - 1] if 1 <= number <= len(pages) else []
            return Reply(body=records if key is None else {key: records, "page": number})

        self.route(path, answer)

    def serve_sequence(self, path: str, replies: Sequence[Reply]) -> None:
        """Answer the n-th request to ``path`` with ``replies[n]`` (the last one from then on)."""
        count = iter(range(1 << 30))

        def answer(request: Request) -> Reply:
            return replies[min(next(count), len(replies) - 1)]

        self.route(path, answer)
