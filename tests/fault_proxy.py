"""A small threaded HTTP proxy in front of fake-gcs-server that injects the failures real GCS has.

Each request is forwarded (method, path, headers, body) to the emulator and its response returned,
except for a share of them, chosen by a seeded random generator, and for requests matched by rules:

- ``UNAVAILABLE`` / ``RATE_LIMITED``: answer 503 / 429 without forwarding;
- ``DROP_REQUEST``: close the connection without forwarding or answering;
- ``DROP_RESPONSE``: forward, let the emulator do the work, then close without answering — the
  case where a client cannot tell that its write happened.

The emulator's own URL in JSON bodies (``mediaLink``) and in ``Location`` headers (resumable
uploads) is rewritten to the proxy's, so that no request bypasses it.
"""

from __future__ import annotations

import enum
import http.client
import random
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "transfer-encoding", "upgrade", "content-length", "host"}


class Fault(enum.Enum):
    """What the proxy does with one request."""

    NONE = "none"
    UNAVAILABLE = "503"
    RATE_LIMITED = "429"
    DROP_REQUEST = "drop request"
    DROP_RESPONSE = "drop response"


RANDOM_FAULTS = (Fault.UNAVAILABLE, Fault.RATE_LIMITED, Fault.DROP_REQUEST, Fault.DROP_RESPONSE)

# The client library looks buckets up from a background thread, at times that vary from run to run;
# random faults spare those lookups so that a seed gives every run the same faults.
BUCKET_LOOKUP = re.compile(r"^GET /storage/v1/b/[^/?]+(\?|$)")


@dataclass
class Rule:
    """Give ``fault`` to the next ``times`` requests whose :func:`describe` line matches ``pattern``.

    ``before`` runs first (on the proxy's thread), e.g. to let another writer act in between.
    """

    pattern: str
    fault: Fault
    times: int = 1
    before: Callable[[], object] | None = None
    hits: int = 0

    def matches(self, line: str) -> bool:
        return self.hits < self.times and re.search(self.pattern, line) is not None


@dataclass
class Plan:
    """Which requests fail: a seeded random ``share``, targeted rules, or everything (outage)."""

    seed: int = 0
    share: float = 0.0
    kinds: tuple[Fault, ...] = RANDOM_FAULTS
    rules: list[Rule] = field(default_factory=list)
    outage: Fault | None = None
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def choose(self, line: str) -> tuple[Fault, Callable[[], object] | None]:
        for rule in self.rules:
            if rule.matches(line):
                rule.hits += 1
                return rule.fault, rule.before
        if self.outage is not None:
            return self.outage, None
        if self.share and not BUCKET_LOOKUP.match(line) and self.rng.random() < self.share:
            return self.rng.choice(self.kinds), None
        return Fault.NONE, None


UPLOADED_NAME = re.compile(rb'"name":\s*"([^"]+)"')


def describe(method: str, path: str, body: bytes) -> str:
    """``METHOD path`` (decoded), plus `` name=<object>`` for an upload, whose name is in the body."""
    line = f"{method} {unquote(path)}"
    if path.startswith("/upload/"):
        found = UPLOADED_NAME.search(body[:4096])
        if found:
            line += f" name={found.group(1).decode()}"
    return line


class QuietServer(ThreadingHTTPServer):
    """A client that gave up on a dropped connection is expected here, not a stack trace."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class FaultProxy:
    """The proxy server; ``url`` is what STORAGE_EMULATOR_HOST should point at."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.plan = Plan()
        self.lock = threading.Lock()
        self.counts: Counter[Fault] = Counter()
        self.log: list[tuple[str, Fault]] = []
        self.errors: list[BaseException] = []  # raised by a rule's ``before``: the test must fail
        self.server = QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def use(self, plan: Plan) -> None:
        """Switch to a new plan and forget what the previous one did."""
        with self.lock:
            self.plan = plan
            self.counts.clear()
            self.log.clear()

    def faulted(self, pattern: str, fault: Fault) -> int:
        """How many requests matching ``pattern`` got ``fault``."""
        with self.lock:
            return sum(1 for line, f in self.log if f is fault and re.search(pattern, line))

    def _decide(self, line: str) -> tuple[Fault, Callable[[], object] | None]:
        with self.lock:
            fault, before = self.plan.choose(line)
            self.counts[fault] += 1
            self.log.append((line, fault))
            return fault, before

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self
        target = urlsplit(self.upstream)
        host, port = str(target.hostname), target.port

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        chunk = self.rfile.read(size)
                        self.rfile.readline()
                        if size == 0:
                            break
                        chunks.append(chunk)
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _drop(self) -> None:
                self.close_connection = True  # no response at all: the client sees the socket close

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(host, port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    headers["Host"] = target.netloc
                    headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    out = []
                    for name, value in response.getheaders():
                        if name.lower() in HOP_BY_HOP:
                            continue
                        if name.lower() == "location":
                            value = value.replace(proxy.upstream, proxy.url)
                        out.append((name, value))
                    if "json" in (response.getheader("Content-Type") or ""):
                        data = data.replace(proxy.upstream.encode(), proxy.url.encode())
                    return response.status, out, data
                finally:
                    conn.close()

            def _handle(self) -> None:
                body = self._body()
                fault, before = proxy._decide(describe(self.command, self.path, body))
                if before is not None:
                    try:
                        before()
                    except BaseException as exc:
                        proxy.errors.append(exc)
                        raise
                if fault is Fault.DROP_REQUEST:
                    return self._drop()
                if fault in (Fault.UNAVAILABLE, Fault.RATE_LIMITED):
                    status = int(fault.value)
                    error = (b'{"error": {"code": %d, "message": "injected by the fault proxy"}}'
                             % status)
                    return self._answer(status, [("Content-Type", "application/json")], error)
                status, headers, data = self._forward(body)
                if fault is Fault.DROP_RESPONSE:
                    return self._drop()
                self._answer(status, headers, data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        return Handler
