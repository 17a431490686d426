"""A real HTTP server on 127.0.0.1 for tests, programmable per path.

    with LoopbackServer() as server:
        server.serve("/feed", b"<rss/>")                    # static, with ETag/Last-Modified
        server.script("/flaky", [Scripted(500), Scripted(200, b"ok")])
        server.redirect("/old", "/feed")
        server.script("/tarpit", [Scripted(200, b"x" * 100, drip=1.0)])  # 1 byte a second
        ...  # fetch server.url("/feed")
        assert server.hits("/feed") == 1

Routing: a path's script wins over serve()/redirect() (the later of those two wins);
an exact path+query route wins over the bare path; anything else is 404. The server
speaks HTTP/1.1 with keep-alive, like the servers the fetcher meets. Handler threads are
daemons and delays wait on an event that close() sets, so close() returns at once even
while a response is being held back past a client's timeout.
"""

from __future__ import annotations

import contextlib
import gzip as gzip_module
import hashlib
import http.server
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

_CHUNK = 16 * 1024


@dataclass(frozen=True)
class Scripted:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds slept before sending the response headers
    # Send the body with Transfer-Encoding: chunked and no Content-Length. Without it the
    # server adds Content-Length: len(body) unless `headers` sets one (which may lie).
    chunked: bool = False
    # A tarpit: send the response one byte every `drip` seconds, the status line and
    # headers too unless `drip_headers` is False (then only the body drips).
    drip: float = 0.0
    drip_headers: bool = True
    # Close the connection once the response is written: with a Content-Length header
    # that promises more than `body`, the body is cut short by the close.
    close: bool = False
    # False: no Content-Length (nor chunking), so the body ends where the connection
    # closes, as HTTP/1.0 servers send it; the connection is closed after it.
    content_length: bool = True


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # path + query as requested
    headers: Mapping[str, str]  # lower-case names
    received: float = 0.0  # time.monotonic() when the request line and headers were read


@dataclass(frozen=True)
class Span:
    """One response's life on the server: request read → response fully written."""

    path: str
    start: float  # time.monotonic()
    end: float


@dataclass
class _Static:
    body: bytes
    content_type: str
    etag: str  # "" when not sent
    last_modified: float | None  # epoch seconds; None when not sent
    gzip: bool
    headers: Mapping[str, str]


@dataclass(frozen=True)
class _Redirect:
    to: str
    status: int


@dataclass
class _Script:
    responses: list[Scripted]
    next: int = 0

    def take(self) -> Scripted:
        response = self.responses[min(self.next, len(self.responses) - 1)]
        self.next += 1
        return response


def _bare(path: str) -> str:
    return urlsplit(path).path or "/"


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    # Weak comparison, as If-None-Match requires.
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag.removeprefix("W/") in candidates


def _accepts_gzip(header: str) -> bool:
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip", "*"):
            quality = params.strip().lower()
            return not (quality.startswith("q=") and float(quality[2:] or 0) == 0)
    return False


class LoopbackServer:
    """See the module docstring. Starts on construction."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._routes: dict[str, _Static | _Redirect] = {}
        self._scripts: dict[str, _Script] = {}
        self._requests: list[RecordedRequest] = []
        self._spans: list[Span] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._clock = 0  # last Last-Modified handed out (whole seconds: HTTP dates)
        self._connections: set[socket.socket] = set()

        owner = self

        class Handler(_Handler):
            server_owner = owner

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.port = port
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"loopback-{port}",
            daemon=True,
        )
        self._thread.start()

    # ------------------------------------------------------------------ programming

    def url(self, path: str) -> str:
        return self.base_url + path

    def serve(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/rss+xml; charset=utf-8",
        etag: bool = True,
        last_modified: bool = True,
        gzip: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        with self._lock:
            previous = self._routes.get(path)
            modified: float | None = None
            if last_modified:
                if (
                    isinstance(previous, _Static)
                    and previous.body == body
                    and (previous.last_modified is not None)
                ):
                    modified = previous.last_modified
                else:
                    # Later than any date handed out before, even within one second.
                    self._clock = max(int(time.time()), self._clock + 1)
                    modified = float(self._clock)
            self._routes[path] = _Static(
                body=body,
                content_type=content_type,
                etag=f'"{hashlib.sha1(body).hexdigest()}"' if etag else "",
                last_modified=modified,
                gzip=gzip,
                headers=dict(headers or {}),
            )

    def script(self, path: str, responses: Sequence[Scripted]) -> None:
        if not responses:
            raise ValueError("script() needs at least one response")
        # Copied into this module's Scripted: tests may import this file both as `loopback`
        # (what conftest does) and as `tests.loopback`, which makes two distinct classes.
        copies = [
            Scripted(
                r.status,
                r.body,
                dict(r.headers),
                r.delay,
                r.chunked,
                r.drip,
                r.drip_headers,
                r.close,
                r.content_length,
            )
            for r in responses
        ]
        with self._lock:
            self._scripts[path] = _Script(copies)

    def redirect(self, path: str, to: str, status: int = 302) -> None:
        with self._lock:
            self._routes[path] = _Redirect(to, status)

    # ------------------------------------------------------------------ inspection

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            recorded = list(self._requests)
        if path is None:
            return recorded
        wanted = _bare(path)
        return [request for request in recorded if _bare(request.path) == wanted]

    def hits(self, path: str) -> int:
        return len(self.requests(path))

    def spans(self, path: str | None = None) -> list[Span]:
        """Responses fully written, in order of completion."""
        with self._lock:
            spans = list(self._spans)
        if path is None:
            return spans
        wanted = _bare(path)
        return [span for span in spans if _bare(span.path) == wanted]

    @property
    def max_in_flight(self) -> int:
        """The most requests the server was handling at one moment."""
        with self._lock:
            return self._max_in_flight

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        # Handler threads idle on keep-alive connections would otherwise linger.
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=2)

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ used by the handler

    def _begin(self, request: RecordedRequest) -> _Static | _Redirect | Scripted | None:
        with self._lock:
            self._requests.append(request)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            bare = _bare(request.path)
            script = self._scripts.get(request.path) or self._scripts.get(bare)
            if script is not None:
                return script.take()
            return self._routes.get(request.path) or self._routes.get(bare)

    def _end(self, path: str, start: float) -> None:
        with self._lock:
            self._in_flight -= 1
            self._spans.append(Span(path, start, time.monotonic()))

    def _track(self, connection: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out and hang up are the point of several tests: stay quiet.
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_owner: LoopbackServer

    def setup(self) -> None:
        super().setup()
        self.server_owner._track(self.connection, alive=True)

    def finish(self) -> None:
        self.server_owner._track(self.connection, alive=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _respond(self, *, head: bool) -> None:
        owner = self.server_owner
        start = time.monotonic()
        headers = {name.lower(): value for name, value in self.headers.items()}
        route = owner._begin(RecordedRequest(self.command, self.path, headers, start))
        try:
            if isinstance(route, Scripted):
                self._scripted(route, head=head)
            elif isinstance(route, _Redirect):
                self._send(route.status, b"", {"Location": route.to}, head=head)
            elif isinstance(route, _Static):
                self._static(route, headers, head=head)
            else:
                self._send(404, b"not found\n", {"Content-Type": "text/plain"}, head=head)
        except OSError:
            self.close_connection = True
        finally:
            owner._end(self.path, start)

    def _scripted(self, scripted: Scripted, *, head: bool) -> None:
        # Waits on the close event, not time.sleep, so close() never waits for a delay.
        if scripted.delay > 0 and self.server_owner._closing.wait(scripted.delay):
            self.close_connection = True
            return
        if scripted.drip > 0:
            self._drip(scripted, head=head)
            return
        if scripted.chunked:
            self.send_response(scripted.status)
            for name, value in scripted.headers.items():
                self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if not head:
                for at in range(0, len(scripted.body), _CHUNK):
                    piece = scripted.body[at : at + _CHUNK]
                    self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            return
        if not scripted.content_length:
            self.send_response(scripted.status)
            for name, value in scripted.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not head:
                self.wfile.write(scripted.body)
            self.close_connection = True
            return
        self._send(scripted.status, scripted.body, scripted.headers, head=head)
        if scripted.close:
            self.close_connection = True

    def _drip(self, scripted: Scripted, *, head: bool) -> None:
        lines = [f"HTTP/1.1 {scripted.status} {self.responses[scripted.status][0]}"]
        lines += [f"{name}: {value}" for name, value in scripted.headers.items()]
        if not any(name.lower() == "content-length" for name in scripted.headers):
            lines.append(f"Content-Length: {len(scripted.body)}")
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        body = b"" if head else scripted.body
        if not scripted.drip_headers:
            self.wfile.write(head_bytes)
            self.wfile.flush()
            head_bytes = b""
        self.close_connection = True
        for byte in head_bytes + body:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            # On the close event, like delays: close() never waits for a drip.
            if self.server_owner._closing.wait(scripted.drip):
                return

    def _static(self, route: _Static, request: Mapping[str, str], *, head: bool) -> None:
        headers: dict[str, str] = {"Content-Type": route.content_type}
        if route.etag:
            headers["ETag"] = route.etag
        if route.last_modified is not None:
            headers["Last-Modified"] = formatdate(route.last_modified, usegmt=True)
        headers.update(route.headers)
        if self._not_modified(route, request):
            self._send(
                304, b"", {k: v for k, v in headers.items() if k != "Content-Type"}, head=True
            )
            return
        body = route.body
        if route.gzip:
            headers["Vary"] = "Accept-Encoding"
            if _accepts_gzip(request.get("accept-encoding", "")):
                body = gzip_module.compress(body)
                headers["Content-Encoding"] = "gzip"
        self._send(200, body, headers, head=head)

    @staticmethod
    def _not_modified(route: _Static, request: Mapping[str, str]) -> bool:
        # If-None-Match, when sent, decides alone (RFC 9110 13.2.2).
        if_none_match = request.get("if-none-match")
        if if_none_match is not None:
            return bool(route.etag) and _etag_matches(if_none_match, route.etag)
        since = request.get("if-modified-since")
        if since and route.last_modified is not None:
            try:
                return parsedate_to_datetime(since).timestamp() >= route.last_modified
            except (TypeError, ValueError):
                return False
        return False

    def _send(self, status: int, body: bytes, headers: Mapping[str, str], *, head: bool) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 304 and not any(name.lower() == "content-length" for name in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)
