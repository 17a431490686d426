"""Prometheus metrics: the stats `collect_stats` reads, in the text exposition format
0.0.4, served over HTTP by `newsdedup metrics`.

Every scrape reads Redis afresh, so the numbers are those of every worker on every
machine (the Lua scripts keep them in Redis) and no multiprocess setup is needed.
`render_prometheus` is pure; `MetricsServer` serves whatever its scrape function returns.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from workers.index.keys import Keys
from workers.messages import one_line
from workers.ops.connection import REDIS_OUTAGE, redact
from workers.ops.stats import collect_stats

if TYPE_CHECKING:
    from workers.feeds.spec import FeedSpec

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_PORT = 9808

logger = logging.getLogger(__name__)

Sample = tuple[dict[str, str], float]


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value == int(value)):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        self.lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if labels:
                inside = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
                self.lines.append(f"{name}{{{inside}}} {_number(value)}")
            else:
                self.lines.append(f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render_prometheus(
    stats: dict[str, Any] | None,
    *,
    error: str | None = None,
    scrape_seconds: float | None = None,
) -> str:
    """`collect_stats` output as Prometheus text format 0.0.4. Without stats (Redis could
    not be read) only `newsdedup_up 0`, with the error as a comment line."""
    out = _Exposition()
    if error:
        out.lines.append("# scrape error: " + one_line(error))
    out.family(
        "newsdedup_up",
        "gauge",
        "1 when the last scrape read Redis, 0 when it could not.",
        [({}, 1 if stats is not None else 0)],
    )
    if scrape_seconds is not None:
        out.family(
            "newsdedup_scrape_duration_seconds",
            "gauge",
            "Time this scrape took to read Redis.",
            [({}, round(scrape_seconds, 6))],
        )
    if stats is None:
        return out.text()
    sources: dict[str, dict[str, int]] = stats["sources"]

    def per_source(counter: str) -> list[Sample]:
        return [({"source": s}, counts[counter]) for s, counts in sources.items()]

    out.family(
        "newsdedup_documents_seen_total",
        "counter",
        "Inputs accounted for (published, duplicate or dead), per source.",
        per_source("seen"),
    )
    out.family(
        "newsdedup_documents_published_total",
        "counter",
        "Unique documents published to the docs stream, per source.",
        per_source("published"),
    )
    out.family(
        "newsdedup_duplicates_total",
        "counter",
        "Documents sent to the duplicates stream, per source and kind (exact or near).",
        [
            ({"source": s, "kind": kind}, counts[kind])
            for s, counts in sources.items()
            for kind in ("exact", "near")
        ],
    )
    out.family(
        "newsdedup_dead_total",
        "counter",
        "Inputs sent to the dead stream, per source.",
        per_source("dead"),
    )
    out.family(
        "newsdedup_dead_by_reason_total",
        "counter",
        "Inputs sent to the dead stream, per reason.",
        [({"reason": r}, n) for r, n in sorted(stats["dead_reasons"].items())],
    )
    out.family(
        "newsdedup_boilerplate_lines_stripped_total",
        "counter",
        "Boilerplate lines removed from published documents, per source.",
        per_source("stripped_lines"),
    )
    out.family(
        "newsdedup_bytes_in_total",
        "counter",
        "Bytes of input read, per source.",
        per_source("bytes_in"),
    )
    out.family(
        "newsdedup_stream_length",
        "gauge",
        "Entries in each output stream.",
        [({"stream": name}, n) for name, n in stats["streams"].items()],
    )
    groups = [
        (stream, group) for stream, rows in stats["consumer_groups"].items() for group in rows
    ]
    out.family(
        "newsdedup_consumer_group_consumers",
        "gauge",
        "Consumers in each consumer group of an output stream.",
        [({"stream": s, "group": g["name"]}, g["consumers"]) for s, g in groups],
    )
    out.family(
        "newsdedup_consumer_group_pending",
        "gauge",
        "Entries delivered to the group's consumers and not acknowledged yet.",
        [({"stream": s, "group": g["name"]}, g["pending"]) for s, g in groups],
    )
    out.family(
        "newsdedup_consumer_group_lag",
        "gauge",
        "Entries in the stream not delivered to the group yet (absent when unknown).",
        [({"stream": s, "group": g["name"]}, g["lag"]) for s, g in groups if g["lag"] is not None],
    )
    out.family(
        "newsdedup_index_documents",
        "gauge",
        "Documents in the dedup index.",
        [({}, stats["index"]["documents"])],
    )
    out.family(
        "newsdedup_redis_used_memory_bytes",
        "gauge",
        "Memory Redis uses (INFO memory used_memory).",
        [({}, stats["redis"]["used_memory"])],
    )
    out.family(
        "newsdedup_redis_maxmemory_bytes",
        "gauge",
        "Redis maxmemory; 0 means no limit.",
        [({}, stats["redis"]["maxmemory"])],
    )
    out.family(
        "newsdedup_redis_refusing_writes",
        "gauge",
        "1 while Redis refuses writes (full, read-only, loading): the workers wait.",
        [({}, 1 if stats.get("blocked") else 0)],
    )
    feeds = stats["feeds"]
    out.family(
        "newsdedup_feeds",
        "gauge",
        "Feeds configured or polled.",
        [({}, feeds["total"])],
    )
    out.family(
        "newsdedup_feeds_failing",
        "gauge",
        "Feeds whose last poll failed.",
        [({}, feeds["failing"])],
    )
    return out.text()


def scrape_client(url: str) -> redis.Redis:
    """A client that fails fast (one try, short timeouts): a scrape of an unreachable
    Redis answers `newsdedup_up 0` within the scraper's timeout instead of retrying."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=list(REDIS_OUTAGE),
    )


class Scraper:
    """Reads the stats from Redis and renders them; never raises."""

    def __init__(self, client: redis.Redis, keys: Keys, feeds: Sequence[FeedSpec] = ()) -> None:
        self.client, self.keys, self.feeds = client, keys, feeds

    def __call__(self) -> str:
        started = time.perf_counter()
        try:
            stats = collect_stats(self.client, self.keys, self.feeds)
        except Exception as exc:  # any failure still answers, with newsdedup_up 0
            message = redact(f"{type(exc).__name__}: {exc}")
            logger.warning("scrape failed: %s", message)
            return render_prometheus(None, error=message)
        return render_prometheus(stats, scrape_seconds=time.perf_counter() - started)


_INDEX_PAGE = b"""<!doctype html>
<html><head><title>newsdedup metrics</title></head>
<body><h1>newsdedup</h1><p>Prometheus metrics: <a href="/metrics">/metrics</a></p></body>
</html>
"""


class _Handler(BaseHTTPRequestHandler):
    server_version = "newsdedup-metrics"

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, *, with_body: bool) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            scrape = cast(MetricsServer, self.server).scrape
            status, content_type, body = 200, CONTENT_TYPE, scrape().encode("utf-8")
        elif path == "/":
            status, content_type, body = 200, "text/html; charset=utf-8", _INDEX_PAGE
        else:
            status, content_type, body = 404, "text/plain; charset=utf-8", b"not found\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape would drown the log


class MetricsServer(ThreadingHTTPServer):
    """Serves `/metrics` from `scrape()` (called once per request), `/` and 404s."""

    daemon_threads = True

    def __init__(self, host: str, port: int, scrape: Callable[[], str]) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)
        self.scrape = scrape

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else host
        if ":" in host_text:
            host_text = f"[{host_text}]"
        return f"http://{host_text}:{port}/metrics"
