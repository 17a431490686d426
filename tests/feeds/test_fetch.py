"""workers.feeds.fetch against a real HTTP server on 127.0.0.1 (support/loopback.py), no mocks.

Backoff sleeps go to a recorder instead of the clock, except where real timing is what
is tested (read timeouts, the host gate).
"""

from __future__ import annotations

import gzip
import itertools
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

import pytest
from conftest import RedisTarget
from support.loopback import LoopbackServer, Scripted
from support.resolvers import PUBLIC_IP, addr, stub_resolver

from workers.feeds.fetch import Fetcher
from workers.feeds.gate import NoHostGate, RedisHostGate
from workers.feeds.policy import FetchError, HttpPolicy
from workers.index.keys import Keys
from workers.ops.connection import redact

UA = "newsdedup-test/1.0 (+https://example.org/bot)"
CAP = 64 * 1024


def make_policy(**overrides: Any) -> HttpPolicy:
    values: dict[str, Any] = {
        "user_agent": UA,
        "connect_timeout": 1.0,
        "read_timeout": 0.3,
        "retries": 2,
        "backoff_base": 0.1,
        "backoff_max": 5.0,
        "max_redirects": 3,
        "max_bytes": CAP,
        "allow_private_networks": True,
    }
    values.update(overrides)
    return HttpPolicy(**values)


class Sleeps(list[float]):
    """Records the fetcher's backoff sleeps instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def fetcher(sleeps: Sleeps) -> Iterator[Fetcher]:
    with Fetcher(make_policy(), sleep=sleeps) as f:
        yield f


def fetch_error(fetcher: Fetcher, url: str, **kwargs: str) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetcher.get(url, **kwargs)
    error = info.value
    assert "\n" not in str(error)
    return error


# ---------------------------------------------------------------------------- plain GETs


def test_ok_body_headers_and_request_headers(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    body = b"<rss><channel><title>t</title></channel></rss>"
    loopback.serve("/feed", body, headers={"X-Feed-Thing": "Yes"})
    response = fetcher.get(loopback.url("/feed"), accept="application/rss+xml")
    assert response.status == 200
    assert response.content == body
    assert response.url == loopback.url("/feed")
    assert response.attempts == 1
    assert not response.not_modified
    assert all(name == name.lower() for name in response.headers)
    assert response.headers["x-feed-thing"] == "Yes"
    assert response.headers["content-type"].startswith("application/rss+xml")
    assert response.etag.startswith('"') and response.last_modified.endswith("GMT")
    (request,) = loopback.requests("/feed")
    assert request.method == "GET"
    assert request.headers["user-agent"] == UA
    assert request.headers["accept"] == "application/rss+xml"
    assert request.headers["accept-encoding"] == "gzip, deflate"
    assert "if-none-match" not in request.headers
    assert "if-modified-since" not in request.headers


def test_gzip_is_decoded(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    body = "<rss>خبر عاجل</rss>\n".encode() * 500
    loopback.serve("/feed", body, gzip=True)
    response = fetcher.get(loopback.url("/feed"))
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) < len(body)
    assert response.content == body


@pytest.mark.parametrize(
    "encoding, encode",
    [
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, seen in the wild
        ("gzip, gzip", lambda data: gzip.compress(gzip.compress(data))),
        ("br", lambda data: data),  # not one we ask for: passed through undecoded
    ],
    ids=["deflate", "raw-deflate", "stacked-gzip", "unknown"],
)
def test_other_content_encodings(
    loopback: LoopbackServer, fetcher: Fetcher, encoding: str, encode: Any
) -> None:
    body = b"<p>article text</p>\n" * 300
    loopback.script("/x", [Scripted(200, encode(body), {"Content-Encoding": encoding})])
    assert fetcher.get(loopback.url("/x")).content == body


def test_a_plain_body_labelled_gzip_is_read_as_it_is(
    loopback: LoopbackServer, fetcher: Fetcher
) -> None:
    """A server that says gzip and compresses nothing (no gzip magic number at the start):
    the body is the feed itself (it was retried, then dead-lettered as a transfer failure)."""
    body = "<rss>خبر عاجل</rss>\n".encode() * 50
    loopback.script("/x", [Scripted(200, body, {"Content-Encoding": "gzip"})])
    assert fetcher.get(loopback.url("/x")).content == body


def test_corrupt_gzip_is_a_transfer_failure(
    loopback: LoopbackServer, fetcher: Fetcher, sleeps: Sleeps
) -> None:
    corrupt = gzip.compress(b"<rss>" * 100)[:12] + b"not the rest of the stream"
    loopback.script("/x", [Scripted(200, corrupt, {"Content-Encoding": "gzip"})])
    error = fetch_error(fetcher, loopback.url("/x"))
    assert error.reason == "connect_error" and error.transient
    assert error.attempts == 3 and len(sleeps) == 2


STORY = "<rss>خبر عاجل: افتتاح المعرض</rss>\n".encode() * 200


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("encoding", "cut", "chunked"),
    [
        ("gzip", _half(gzip.compress(STORY)), False),  # Content-Length of the cut body
        ("gzip", _half(gzip.compress(STORY)), True),
        ("gzip", gzip.compress(STORY)[:-8], False),  # all the data, no CRC trailer
        ("deflate", _half(zlib.compress(STORY)), False),
        ("deflate", _half(zlib.compress(STORY)[2:-4]), False),  # raw deflate
        ("gzip, gzip", gzip.compress(_half(gzip.compress(STORY))), False),  # inner layer cut
    ],
    ids=["gzip", "gzip-chunked", "gzip-no-trailer", "deflate", "raw-deflate", "stacked-inner"],
)
def test_a_compressed_body_cut_off_is_a_transfer_failure(
    loopback: LoopbackServer,
    fetcher: Fetcher,
    sleeps: Sleeps,
    encoding: str,
    cut: bytes,
    chunked: bool,
) -> None:
    """A compressed stream that does not end (no end-of-stream block, no trailer) is
    provably incomplete, whatever Content-Length said: never a body, retried, then
    `truncated` with a message saying so."""
    loopback.script("/x", [Scripted(200, cut, {"Content-Encoding": encoding}, chunked=chunked)])
    error = fetch_error(fetcher, loopback.url("/x"))
    assert error.reason == "truncated" and error.transient
    assert "body cut off: its " in str(error) and "stream" in str(error)
    assert "has no end (no end-of-stream marker or trailer)" in str(error)
    assert error.attempts == 3 and len(sleeps) == 2


def test_a_cut_compressed_body_then_a_whole_one_is_retried_within_one_get(
    loopback: LoopbackServer, fetcher: Fetcher, sleeps: Sleeps
) -> None:
    whole = gzip.compress(STORY)
    loopback.script(
        "/x",
        [
            Scripted(200, _half(whole), {"Content-Encoding": "gzip"}),
            Scripted(200, whole, {"Content-Encoding": "gzip"}),
        ],
    )
    response = fetcher.get(loopback.url("/x"))
    assert (response.content, response.attempts, len(sleeps)) == (STORY, 2, 1)


def test_a_body_shorter_than_its_content_length_is_truncated(
    loopback: LoopbackServer, fetcher: Fetcher, sleeps: Sleeps
) -> None:
    """The connection closes before the bytes Content-Length announced arrived."""
    short = Scripted(200, STORY[:100], {"Content-Length": str(len(STORY))}, close=True)
    loopback.script("/x", [short])
    error = fetch_error(fetcher, loopback.url("/x"))
    assert error.reason == "truncated" and error.transient and error.attempts == 3
    assert f"100 of the {len(STORY)} bytes" in str(error)
    loopback.script("/y", [short, Scripted(200, STORY)])
    assert fetcher.get(loopback.url("/y")).content == STORY


def test_bodies_that_are_not_provably_cut_are_taken(
    loopback: LoopbackServer, fetcher: Fetcher
) -> None:
    # No Content-Length and no compression: the close is the end of the body (HTTP/1.0
    # style), nothing says more was coming.
    loopback.script("/close", [Scripted(200, STORY[:100], content_length=False)])
    assert fetcher.get(loopback.url("/close")).content == STORY[:100]
    # An empty body labelled gzip holds no stream to be cut.
    loopback.script("/empty", [Scripted(200, b"", {"Content-Encoding": "gzip"})])
    assert fetcher.get(loopback.url("/empty")).content == b""
    # A whole stream that arrives one byte at a time ends properly.
    whole = gzip.compress(STORY[:300])
    loopback.script("/slow", [Scripted(200, whole, {"Content-Encoding": "gzip"}, drip=1e-4)])
    assert fetcher.get(loopback.url("/slow")).content == STORY[:300]


# ---------------------------------------------------------------------------- validators


def test_etag_and_last_modified_round_trip(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    url = loopback.url("/feed")
    loopback.serve("/feed", b"<rss>one</rss>")
    first = fetcher.get(url)
    assert first.status == 200 and first.etag and first.last_modified

    again = fetcher.get(url, etag=first.etag, last_modified=first.last_modified)
    assert again.status == 304 and again.not_modified
    assert again.content == b""
    assert again.etag == first.etag
    seen = loopback.requests("/feed")[-1].headers
    assert seen["if-none-match"] == first.etag
    assert seen["if-modified-since"] == first.last_modified

    # Last-Modified alone is honoured too (a server without ETags).
    assert fetcher.get(url, last_modified=first.last_modified).not_modified

    loopback.serve("/feed", b"<rss>two</rss>")
    changed = fetcher.get(url, etag=first.etag, last_modified=first.last_modified)
    assert changed.status == 200 and changed.content == b"<rss>two</rss>"
    assert changed.etag != first.etag
    later = parsedate_to_datetime(changed.last_modified)
    assert later > parsedate_to_datetime(first.last_modified)
    # A stale date alone no longer matches either.
    assert fetcher.get(url, last_modified=first.last_modified).status == 200


# ---------------------------------------------------------------------------- retries


def test_a_304_to_a_request_without_validators_is_an_error(
    loopback: LoopbackServer, fetcher: Fetcher
) -> None:
    """A server (or a cache in front of it) answering 304 when nothing was asked about:
    taken as "not modified", the feed was never read, every poll said unchanged."""
    loopback.script("/stuck", [Scripted(304, b"")])
    error = fetch_error(fetcher, loopback.url("/stuck"))
    assert (error.reason, error.status, error.transient) == ("http_status", 304, False)
    assert "named no version" in str(error)
    # Asked with a validator, the same answer is what it says.
    assert fetcher.get(loopback.url("/stuck"), etag='"v1"').not_modified


def test_server_error_then_success_retries_once(
    loopback: LoopbackServer, fetcher: Fetcher, sleeps: Sleeps
) -> None:
    loopback.script("/flaky", [Scripted(500), Scripted(200, b"ok")])
    response = fetcher.get(loopback.url("/flaky"))
    assert response.content == b"ok" and response.attempts == 2
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.1
    assert loopback.hits("/flaky") == 2


def test_backoff_is_exponential_with_full_jitter_and_capped(loopback: LoopbackServer) -> None:
    loopback.script("/down", [Scripted(502)])
    recorded = Sleeps()
    policy = make_policy(retries=4, backoff_base=1.0, backoff_max=3.0)
    with Fetcher(policy, sleep=recorded, random=lambda: 1.0) as top:
        fetch_error(top, loopback.url("/down"))
    assert recorded == [1.0, 2.0, 3.0, 3.0]
    recorded.clear()
    with Fetcher(policy, sleep=recorded, random=lambda: 0.25) as quarter:
        fetch_error(quarter, loopback.url("/down"))
    assert recorded == [0.25, 0.5, 0.75, 0.75]


@pytest.mark.parametrize("backoff_max, expected", [(5.0, 2.0), (1.5, 1.5)])
def test_retry_after_seconds(loopback: LoopbackServer, backoff_max: float, expected: float) -> None:
    loopback.script("/busy", [Scripted(503, headers={"Retry-After": "2"}), Scripted(200, b"ok")])
    recorded = Sleeps()
    with Fetcher(make_policy(backoff_max=backoff_max), sleep=recorded) as f:
        assert f.get(loopback.url("/busy")).attempts == 2
    assert recorded == [expected]


def test_retry_after_http_date_and_429(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    when = formatdate(time.time() + 4, usegmt=True)
    loopback.script(
        "/limited", [Scripted(429, headers={"Retry-After": when}), Scripted(200, b"ok")]
    )
    recorded = Sleeps()
    with Fetcher(make_policy(), sleep=recorded) as f:
        assert f.get(loopback.url("/limited")).content == b"ok"
    assert len(recorded) == 1 and 2.5 <= recorded[0] <= 4.0


def test_client_error_is_not_retried(
    loopback: LoopbackServer, fetcher: Fetcher, sleeps: Sleeps
) -> None:
    error = fetch_error(fetcher, loopback.url("/missing"))
    assert error.reason == "http_status" and error.status == 404
    assert error.attempts == 1 and not error.transient
    assert loopback.hits("/missing") == 1 and sleeps == []
    assert str(error) == f"GET {loopback.url('/missing')}: HTTP 404"


def test_server_error_forever_gives_up(
    loopback: LoopbackServer, fetcher: Fetcher, sleeps: Sleeps
) -> None:
    loopback.script("/down", [Scripted(500)])
    error = fetch_error(fetcher, loopback.url("/down"))
    assert error.reason == "http_status" and error.status == 500
    assert error.attempts == 3 and error.transient
    assert loopback.hits("/down") == 3 and len(sleeps) == 2
    assert "after 3 attempts" in str(error)


def test_too_many_requests_forever_is_transient(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.script("/limited", [Scripted(429)])
    error = fetch_error(fetcher, loopback.url("/limited"))
    assert (error.reason, error.status, error.attempts, error.transient) == (
        "http_status",
        429,
        3,
        True,
    )


def test_slow_server_times_out_and_is_retried(
    loopback: LoopbackServer, fetcher: Fetcher, sleeps: Sleeps
) -> None:
    loopback.script("/slow", [Scripted(200, b"late", delay=2.0)])
    started = time.monotonic()
    error = fetch_error(fetcher, loopback.url("/slow"))
    elapsed = time.monotonic() - started
    assert error.reason == "timeout" and error.transient
    assert error.attempts == 3 and loopback.hits("/slow") == 3 and len(sleeps) == 2
    assert "timed out" in str(error) and "after 3 attempts" in str(error)
    assert 0.9 <= elapsed < 3.0  # three read timeouts of 0.3 s; the server would take 6 s


def test_slow_once_then_fast(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.script("/slow", [Scripted(200, b"late", delay=1.0), Scripted(200, b"ok")])
    response = fetcher.get(loopback.url("/slow"))
    assert response.content == b"ok" and response.attempts == 2


def test_refused_connection_is_a_transient_connect_error(sleeps: Sleeps) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on `port` now.
    with Fetcher(make_policy(), sleep=sleeps) as f:
        error = fetch_error(f, f"http://127.0.0.1:{port}/feed")
    assert error.reason == "connect_error" and error.transient and error.attempts == 3


# ---------------------------------------------------------------------------- deadline


def test_dripping_body_ends_at_the_deadline(loopback: LoopbackServer, sleeps: Sleeps) -> None:
    """One byte every 0.1 s never lets a 0.3 s read time out: only the total deadline
    stops it, and then no retry is made (none could finish in time)."""
    loopback.script("/tarpit", [Scripted(200, b"x" * 1000, drip=0.1, drip_headers=False)])
    with Fetcher(make_policy(deadline=1.5), sleep=sleeps) as f:
        started = time.monotonic()
        error = fetch_error(f, loopback.url("/tarpit"))
        elapsed = time.monotonic() - started
        assert error.reason == "timeout" and error.attempts == 1
        assert "within the 1.5 s request deadline" in str(error)
        assert 1.5 <= elapsed < 2.5, elapsed
        assert loopback.hits("/tarpit") == 1 and sleeps == []
        # The same client goes on working for the next request.
        loopback.serve("/ok", b"fine")
        assert f.get(loopback.url("/ok")).content == b"fine"


def test_dripping_status_line_and_headers_end_at_the_deadline(loopback: LoopbackServer) -> None:
    loopback.script("/tarpit", [Scripted(200, b"<rss/>", drip=0.1)])
    with Fetcher(make_policy(deadline=1.0)) as f:
        started = time.monotonic()
        error = fetch_error(f, loopback.url("/tarpit"))
        assert error.reason == "timeout" and "deadline" in str(error)
        assert time.monotonic() - started < 2.0


def test_one_read_waits_no_longer_than_the_deadline(loopback: LoopbackServer) -> None:
    """A read timeout longer than the deadline is cut to what is left of it."""
    loopback.script("/silent", [Scripted(200, b"late", delay=10.0)])
    with Fetcher(make_policy(read_timeout=30.0, deadline=1.0)) as f:
        started = time.monotonic()
        error = fetch_error(f, loopback.url("/silent"))
        elapsed = time.monotonic() - started
    assert error.reason == "timeout" and error.attempts == 1
    assert 1.0 <= elapsed < 1.8, elapsed


def test_deadline_spans_redirect_hops(loopback: LoopbackServer) -> None:
    """Each hop alone is within the deadline; together they are not."""
    loopback.script(
        "/old",
        [Scripted(302, b"", {"Location": "/new"}, drip=0.01)],  # ~0.6 s of headers
    )
    loopback.script("/new", [Scripted(200, b"y" * 100, drip=0.01, drip_headers=False)])
    with Fetcher(make_policy(deadline=1.0)) as f:
        started = time.monotonic()
        error = fetch_error(f, loopback.url("/old"))
        elapsed = time.monotonic() - started
    assert error.reason == "timeout" and "(redirected to" in str(error)
    assert loopback.hits("/new") == 1 and 1.0 <= elapsed < 1.8, elapsed


def test_no_retry_that_cannot_finish_before_the_deadline(
    loopback: LoopbackServer, sleeps: Sleeps
) -> None:
    loopback.script("/busy", [Scripted(503, headers={"Retry-After": "4"})])
    with Fetcher(make_policy(deadline=2.0), sleep=sleeps) as f:
        error = fetch_error(f, loopback.url("/busy"))
    assert (error.reason, error.status, error.attempts) == ("http_status", 503, 1)
    assert "no time left for another within the 2 s request deadline" in str(error)
    assert sleeps == [] and loopback.hits("/busy") == 1


def test_waiting_for_a_busy_host_counts_against_the_deadline(
    loopback: LoopbackServer, redis_target: RedisTarget, prefix: str
) -> None:
    gate = RedisHostGate(redis_target.client, Keys(prefix), delay=0, lease=30, wait=30)
    loopback.serve("/ok", b"fine")
    with gate.hold(f"127.0.0.1:{loopback.port}"), Fetcher(make_policy(deadline=0.5), gate) as f:
        started = time.monotonic()
        error = fetch_error(f, loopback.url("/ok"))
        assert error.reason == "host_busy" and time.monotonic() - started < 1.5
    assert loopback.hits("/ok") == 0


# ---------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_relative_redirect_is_followed(
    loopback: LoopbackServer, fetcher: Fetcher, status: int
) -> None:
    loopback.redirect("/old/feed", "../new/feed?x=1", status=status)
    loopback.serve("/new/feed", b"moved")
    response = fetcher.get(loopback.url("/old/feed"), etag='"abc"')
    assert response.content == b"moved"
    assert response.url == loopback.url("/new/feed?x=1")
    assert response.attempts == 1
    # Conditional headers go with every hop.
    assert loopback.requests("/new/feed")[0].headers["if-none-match"] == '"abc"'


def test_absolute_redirect_chain_up_to_the_limit(
    loopback: LoopbackServer, fetcher: Fetcher
) -> None:
    for i in range(3):
        loopback.redirect(f"/r{i}", loopback.url(f"/r{i + 1}"))
    loopback.serve("/r3", b"end")
    response = fetcher.get(loopback.url("/r0"))
    assert response.content == b"end" and response.url == loopback.url("/r3")


def test_redirect_loop(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.redirect("/a", "/b")
    loopback.redirect("/b", "/a#again")
    error = fetch_error(fetcher, loopback.url("/a"))
    assert error.reason == "redirect_loop" and not error.transient
    assert error.url == loopback.url("/a")
    assert loopback.hits("/a") == 1 and loopback.hits("/b") == 1


def test_too_many_redirects(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    for i in range(6):
        loopback.redirect(f"/r{i}", f"/r{i + 1}")
    error = fetch_error(fetcher, loopback.url("/r0"))
    assert error.reason == "too_many_redirects" and not error.transient
    assert [loopback.hits(f"/r{i}") for i in range(6)] == [1, 1, 1, 1, 0, 0]


@pytest.mark.parametrize(
    "target",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/feed",
        "gopher://127.0.0.1:70/_x",
        "javascript:alert(1)",
        "https:///feed",
        "http://[::1",  # malformed: refused, not mistaken for a failed transfer and retried
        "http://exa mple.com:99999/",
    ],
)
def test_redirect_to_a_bad_url_is_refused(
    loopback: LoopbackServer, fetcher: Fetcher, target: str
) -> None:
    loopback.redirect("/go", target)
    error = fetch_error(fetcher, loopback.url("/go"))
    assert error.reason == "bad_url" and not error.transient
    assert loopback.url("/go") in str(error)
    assert loopback.hits("/go") == 1


def test_redirect_without_location_is_an_http_status(
    loopback: LoopbackServer, fetcher: Fetcher
) -> None:
    loopback.script("/odd", [Scripted(302)])
    error = fetch_error(fetcher, loopback.url("/odd"))
    assert error.reason == "http_status" and error.status == 302


# ---------------------------------------------------------------------------- size cap


def test_exactly_the_cap_is_accepted(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.script("/cap", [Scripted(200, b"x" * CAP, chunked=True)])
    assert len(fetcher.get(loopback.url("/cap")).content) == CAP
    loopback.serve("/gz", b"y" * CAP, gzip=True)
    assert len(fetcher.get(loopback.url("/gz")).content) == CAP


def test_too_large_by_content_length_is_refused_without_reading(
    loopback: LoopbackServer, fetcher: Fetcher, sleeps: Sleeps
) -> None:
    # The header promises 1 GB and only 10 bytes come: reading would wait for a timeout.
    loopback.script("/big", [Scripted(200, b"x" * 10, {"Content-Length": str(10**9)})])
    started = time.monotonic()
    error = fetch_error(fetcher, loopback.url("/big"))
    assert time.monotonic() - started < 0.25
    assert error.reason == "too_large" and not error.transient and error.attempts == 1
    assert sleeps == [] and loopback.hits("/big") == 1
    loopback.serve("/honest", b"x" * (CAP + 1))
    assert fetch_error(fetcher, loopback.url("/honest")).reason == "too_large"


def test_too_large_without_content_length(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.script("/stream", [Scripted(200, b"x" * (CAP * 20), chunked=True)])
    error = fetch_error(fetcher, loopback.url("/stream"))
    assert error.reason == "too_large" and loopback.hits("/stream") == 1


def test_gzip_bomb(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    bomb = gzip.compress(b"\0" * (CAP * 100))
    assert len(bomb) < CAP // 10
    loopback.script("/bomb", [Scripted(200, bomb, {"Content-Encoding": "gzip"})])
    assert fetch_error(fetcher, loopback.url("/bomb")).reason == "too_large"
    loopback.script(
        "/bomb-chunked", [Scripted(200, bomb, {"Content-Encoding": "gzip"}, chunked=True)]
    )
    assert fetch_error(fetcher, loopback.url("/bomb-chunked")).reason == "too_large"


def test_stacked_gzip_bomb_stays_small_in_memory(
    loopback: LoopbackServer, fetcher: Fetcher
) -> None:
    # 64 MiB of zeros in two gzip layers is a few hundred bytes on the wire; a decoder
    # that inflates a whole network chunk per layer would hold all 64 MiB at once.
    inner = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1 << 20)
    layer = b"".join(inner.compress(block) for _ in range(64)) + inner.flush()
    bomb = gzip.compress(layer)
    loopback.script("/bomb", [Scripted(200, bomb, {"Content-Encoding": "gzip, gzip"})])
    tracemalloc.start()
    try:
        error = fetch_error(fetcher, loopback.url("/bomb"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.reason == "too_large"
    assert peak < 8 * 1024 * 1024


# ---------------------------------------------------------------------------- SSRF guard


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/feed",
        "http://localhost:{port}/feed",
        "http://[::1]:{port}/feed",
        "http://[::ffff:127.0.0.1]:{port}/feed",
        "http://2130706433:{port}/feed",  # 127.0.0.1 spelled as one number
        "http://0.0.0.0:{port}/feed",
        "http://10.0.0.1/feed",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://100.100.100.200/latest/meta-data",  # carrier-grade NAT space, a cloud metadata
        "https://[fe80::1]/",
    ],
)
def test_private_addresses_are_blocked(
    loopback: LoopbackServer, sleeps: Sleeps, template: str
) -> None:
    loopback.serve("/feed", b"internal")
    url = template.format(port=loopback.port)
    with Fetcher(make_policy(allow_private_networks=False), sleep=sleeps) as f:
        error = fetch_error(f, url)
    assert error.reason == "blocked_address" and not error.transient
    assert error.attempts == 0
    assert "address" in str(error) and "allow_private_networks" in str(error)
    assert "NEWSDEDUP_ALLOW_PRIVATE_NETWORKS=1" in str(error)
    assert loopback.requests() == []


def test_a_name_resolving_to_loopback_is_blocked(loopback: LoopbackServer) -> None:
    resolve = stub_resolver({"feeds.example": "127.0.0.1"})
    with Fetcher(make_policy(allow_private_networks=False), resolve=resolve) as f:
        error = fetch_error(f, "http://feeds.example/rss")
    assert error.reason == "blocked_address" and "127.0.0.1" in str(error)
    assert loopback.requests() == []


def test_every_redirect_hop_is_checked(loopback: LoopbackServer) -> None:
    """The first hop passes the check (the resolver vouches for it once, like DNS that
    changes its answer) and reaches the server; the redirect to the same server must be
    checked again and refused. Without the per-hop check this would return b"secret"."""
    real = socket.getaddrinfo
    calls: list[str] = []

    def resolve(host: str, port: int, *args: Any) -> list[Any]:
        calls.append(host)
        if host == "127.0.0.1" and len(calls) == 1:
            return addr(PUBLIC_IP, port)
        return list(real(host, port, *args))

    loopback.redirect("/start", loopback.url("/inner"))
    loopback.serve("/inner", b"secret")
    with Fetcher(make_policy(allow_private_networks=False), resolve=resolve) as f:
        error = fetch_error(f, loopback.url("/start"))
    assert error.reason == "blocked_address"
    assert "redirected to" in str(error) and "127.0.0.1" in str(error)
    assert calls == ["127.0.0.1", "127.0.0.1"]
    assert loopback.hits("/start") == 1 and loopback.hits("/inner") == 0


def test_allow_private_networks_allows_loopback(loopback: LoopbackServer) -> None:
    loopback.serve("/feed", b"ok")
    with Fetcher(make_policy(allow_private_networks=True)) as f:
        assert f.get(f"http://localhost:{loopback.port}/feed").content == b"ok"


def test_dns_failure(sleeps: Sleeps) -> None:
    with Fetcher(make_policy(), resolve=stub_resolver({}), sleep=sleeps) as f:
        error = fetch_error(f, "https://nowhere.example/feed")
    assert error.reason == "dns_error" and error.transient and error.attempts == 0


# ---------------------------------------------------------------------------- errors, policy


def test_credentials_never_appear_in_errors(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    assert redact("https://user:s3cret@host.example/feed?a=b@c") == (
        "https://user:***@host.example/feed?a=b@c"
    )
    assert redact("https://t0ken@host.example/feed") == "https://***@host.example/feed"
    assert redact("http://host.example/p@th") == "http://host.example/p@th"
    url = f"http://reader:s3cret@127.0.0.1:{loopback.port}/private"
    error = fetch_error(fetcher, url)
    assert "s3cret" not in str(error) and "s3cret" not in error.url
    # The credentials were still used for the request itself.
    assert loopback.requests("/private")[0].headers["authorization"].startswith("Basic ")


# ---------------------------------------------------------------------------- politeness


def _gate(redis_target: RedisTarget, prefix: str, **kwargs: float) -> RedisHostGate:
    options = {"delay": 0.2, "lease": 5.0, "wait": 5.0, **kwargs}
    return RedisHostGate(redis_target.client, Keys(prefix), **options)


def _fetch_in_threads(fetchers: list[Fetcher], url: str, each: int) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(fetchers))

    def run(f: Fetcher) -> None:
        start.wait()
        try:
            for _ in range(each):
                f.get(url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in fetchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    return errors


def test_without_a_gate_requests_overlap(loopback: LoopbackServer) -> None:
    """The control for the test below: the server does see overlapping requests."""
    loopback.script("/slow", [Scripted(200, b"ok", delay=0.15)])
    fetchers = [Fetcher(make_policy(), NoHostGate()) for _ in range(2)]
    try:
        assert _fetch_in_threads(fetchers, loopback.url("/slow"), 1) == []
    finally:
        for f in fetchers:
            f.close()
    assert loopback.max_in_flight == 2


def test_host_gate_serialises_and_spaces_requests(
    loopback: LoopbackServer, redis_target: RedisTarget, prefix: str
) -> None:
    loopback.script("/slow", [Scripted(200, b"ok", delay=0.1)])
    # A gate (and a client) per thread, as separate worker processes would have.
    fetchers = [Fetcher(make_policy(), _gate(redis_target, prefix)) for _ in range(2)]
    try:
        assert _fetch_in_threads(fetchers, loopback.url("/slow"), 2) == []
    finally:
        for f in fetchers:
            f.close()
    assert loopback.max_in_flight == 1
    spans = sorted(loopback.spans("/slow"), key=lambda span: span.start)
    assert len(spans) == 4
    gaps = [after.start - before.end for before, after in itertools.pairwise(spans)]
    # The client lets go a hair after the server finishes writing: allow 10 ms of that.
    assert min(gaps) >= 0.2 - 0.01, gaps
    # What is left for the next request is the politeness delay, not the lease.
    ttl = redis_target.client.pttl(Keys(prefix).host_gate(f"127.0.0.1:{loopback.port}"))
    assert ttl <= 200


def test_host_gate_is_per_host(redis_target: RedisTarget, prefix: str) -> None:
    first, second = _gate(redis_target, prefix), _gate(redis_target, prefix, wait=0.3)
    with first.hold("a.example"):
        started = time.monotonic()
        with second.hold("b.example"):
            pass
        assert time.monotonic() - started < 0.1
        with pytest.raises(FetchError) as info, second.hold("a.example"):
            pass
        assert info.value.reason == "host_busy" and info.value.transient
        assert 0.3 <= time.monotonic() - started < 1.0
    # After release the host waits out the delay, then is free again.
    started = time.monotonic()
    with second.hold("a.example"):
        assert 0.15 <= time.monotonic() - started < 0.6


def test_host_gate_without_delay_frees_at_once(redis_target: RedisTarget, prefix: str) -> None:
    gate = _gate(redis_target, prefix, delay=0)
    with gate.hold("a.example"):
        pass
    assert redis_target.client.exists(Keys(prefix).host_gate("a.example")) == 0


def test_host_busy_through_the_fetcher(
    loopback: LoopbackServer, redis_target: RedisTarget, prefix: str
) -> None:
    loopback.serve("/feed", b"ok")
    key = Keys(prefix).host_gate(f"127.0.0.1:{loopback.port}")
    redis_target.client.set(key, "another-worker", px=10_000)
    with Fetcher(make_policy(), _gate(redis_target, prefix, wait=0.3)) as f:
        started = time.monotonic()
        error = fetch_error(f, loopback.url("/feed"))
    assert 0.3 <= time.monotonic() - started < 1.0
    assert error.reason == "host_busy" and error.transient and error.attempts == 0
    assert error.url == loopback.url("/feed")
    assert loopback.requests() == []
    # Not ours: left alone.
    assert redis_target.client.get(key) == b"another-worker"


def test_host_gate_is_released_between_retries(
    loopback: LoopbackServer, redis_target: RedisTarget, prefix: str
) -> None:
    loopback.script("/flaky", [Scripted(503), Scripted(200, b"ok")])
    key = Keys(prefix).host_gate(f"127.0.0.1:{loopback.port}")
    ttls: list[int] = []

    def sleep(seconds: float) -> None:
        ttls.append(int(redis_target.client.pttl(key)))

    with Fetcher(make_policy(), _gate(redis_target, prefix), sleep=sleep) as f:
        assert f.get(loopback.url("/flaky")).attempts == 2
    # During the backoff only the politeness delay (0.2 s) remains, not the 5 s lease.
    assert len(ttls) == 1 and 0 < ttls[0] <= 200


# ---------------------------------------------------------------------------- the server


def test_loopback_close_does_not_wait_for_delays() -> None:
    server = LoopbackServer()
    server.script("/slow", [Scripted(200, b"late", delay=30)])
    with Fetcher(make_policy(retries=0)) as f:
        assert fetch_error(f, server.url("/slow")).reason == "timeout"
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 1.0
