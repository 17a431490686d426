"""Stats and metrics: counters, per-minute rates, streams and consumer groups, Redis memory
(`collect_stats` on a real Redis, documents through `process_inputs`), the Prometheus
rendering and server, and the `stats` / `metrics` commands as a user runs them."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RedisTarget, cli_env, run_cli, start_cli
from support.articles import article
from support.exposition import parse_exposition
from support.settings import settings_for

import workers.ops.stats
from workers.document import DeadInput, Document, LoadedInput
from workers.index.keys import MINUTE_KINDS, RATE_BUCKET_TTL, RATE_KINDS, Keys
from workers.ops.metrics import (
    CONTENT_TYPE,
    MetricsServer,
    Scraper,
    render_prometheus,
    scrape_client,
)
from workers.ops.stats import collect_stats, window_rates
from workers.ops.streams import ensure_group, read_group
from workers.pipeline.process import process_inputs
from workers.worker.runtime import Runtime, build_runtime


def make_doc(n: int, source: str, text: str | None = None) -> Document:
    return Document(
        id=f"{source}-{n}", source=source, text=text or article(n), input_ref=f"{source}-{n}"
    )


def run(rt: Runtime, inputs: list[LoadedInput], job: str = "stats") -> None:
    process_inputs(
        inputs,
        job_id=job,
        rules=rt.rules,
        fingerprinter=rt.fingerprinter,
        index=rt.index,
        learner=rt.learner,
    )


@pytest.fixture
def rt(redis_target: RedisTarget, prefix: str) -> Iterator[Runtime]:
    runtime = build_runtime(settings_for(prefix), redis_target.url)
    yield runtime
    runtime.client.close()


def minute_counts(rt: Runtime, minutes: range) -> dict[int, dict[str, int]]:
    return {
        m: {k.decode(): int(v) for k, v in rt.client.hgetall(rt.keys.stats_minute(m)).items()}
        for m in minutes
    }


def redis_major(stats: dict[str, Any]) -> int:
    return int(stats["redis"]["version"].split(".")[0])


# --------------------------------------------------------------------------- collect_stats


def test_counts_rates_streams_groups_and_memory(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha = [make_doc(n, "alpha") for n in range(12)]
    beta = [make_doc(n, "beta", text=alpha[n].text) for n in range(3)]  # exact copies
    dead = DeadInput("bad-1", "malformed_json", "not JSON", id="bad-1", source="beta")
    run(rt, [*alpha, *beta, dead])

    stats = collect_stats(rt.client, rt.keys)
    assert (stats["seen"], stats["published"], stats["exact"], stats["dead"]) == (16, 12, 3, 1)
    assert stats["duplicates"] == 3
    assert stats["sources"]["alpha"]["published"] == 12
    assert stats["sources"]["beta"] == {
        **stats["sources"]["beta"],
        "seen": 4,
        "exact": 3,
        "dead": 1,
        "published": 0,
    }
    assert stats["dead_reasons"] == {"malformed_json": 1}
    assert stats["streams"] == {"docs": 12, "duplicates": 3, "dead": 1}
    assert stats["index"]["documents"] == 12

    # Rates: everything happened within the last minute (or two, across a boundary).
    now = stats["time"]
    current = int(now // 60)
    buckets = minute_counts(rt, range(current - 1, current + 1))
    for b in buckets.values():  # "seen" is the sum of the outcomes, not kept per minute
        b["seen"] = sum(b.get(kind, 0) for kind in MINUTE_KINDS)
    assert sum(b["seen"] for b in buckets.values()) == 16
    assert sum(b.get("exact", 0) for b in buckets.values()) == 3
    one = stats["rates"]["1m"]
    assert one["seen"] > 0 and one["published"] > 0 and one["dead"] > 0
    # 60 x the 1-minute rate: this minute's count plus the previous minute's share.
    assert buckets[current]["seen"] - 0.01 <= one["seen"] * 60 <= 16 + 0.01
    expected = window_rates(buckets, now, 1)
    for kind in RATE_KINDS:
        assert one[kind] == pytest.approx(expected[kind], abs=1e-4)
        assert stats["rates"]["5m"][kind] * 300 == pytest.approx(
            sum(b.get(kind, 0) for b in buckets.values()), abs=0.05
        )

    # Consumer groups: one reads 5 entries without acknowledging, one starts at the end,
    # one at the start has read nothing.
    docs = rt.keys.docs
    ensure_group(rt.client, docs, "indexer")
    ensure_group(rt.client, docs, "new-only", new_only=True)
    ensure_group(rt.client, docs, "idle")
    assert len(read_group(rt.client, docs, "indexer", "c1", count=5, block_ms=None)) == 5
    stats = collect_stats(rt.client, rt.keys)
    groups = {g["name"]: g for g in stats["consumer_groups"]["docs"]}
    assert groups["indexer"]["pending"] == 5
    assert groups["indexer"]["consumers"] == 1
    assert groups["indexer"]["lag"] == 7
    assert (groups["new-only"]["pending"], groups["new-only"]["lag"]) == (0, 0)
    assert (groups["idle"]["pending"], groups["idle"]["lag"]) == (0, 12)
    assert stats["consumer_groups"]["duplicates"] == []

    # Beyond the scan limit, Redis < 7 cannot tell: unknown (None), never a crash.
    monkeypatch.setattr(workers.ops.stats, "LAG_SCAN_LIMIT", 3)
    stats = collect_stats(rt.client, rt.keys)
    groups = {g["name"]: g for g in stats["consumer_groups"]["docs"]}
    assert groups["indexer"]["lag"] == (7 if redis_major(stats) >= 7 else None)
    assert groups["idle"]["lag"] == 12  # follows from XINFO STREAM alone

    memory = stats["redis"]
    assert memory["used_memory"] > 0 and memory["used_memory_human"]
    assert memory["maxmemory"] >= 0 and memory["maxmemory_policy"]
    assert stats["feeds"] == {"total": 0, "polled": 0, "failing": 0}


def test_minute_buckets_expire_and_leave_the_short_windows(rt: Runtime) -> None:
    run(rt, [make_doc(n, "alpha") for n in range(3)])
    now = float(rt.client.time()[0])
    current = int(now // 60)
    live = [m for m in range(current - 1, current + 1) if rt.client.exists(rt.keys.stats_minute(m))]
    assert live
    for minute in live:
        assert 0 < rt.client.ttl(rt.keys.stats_minute(minute)) <= RATE_BUCKET_TTL
    assert RATE_BUCKET_TTL > 16 * 60  # the 15-minute window reads 16 buckets

    # A bucket from 10 minutes ago counts in the 15-minute rate only.
    old = rt.keys.stats_minute(current - 10)
    rt.client.hset(old, mapping={"published": 500, "near": 100})
    rt.client.expire(old, RATE_BUCKET_TTL)
    stats = collect_stats(rt.client, rt.keys)
    assert stats["rates"]["5m"]["seen"] * 300 == pytest.approx(3, abs=0.05)
    assert stats["rates"]["15m"]["seen"] * 900 == pytest.approx(603, abs=0.1)
    assert stats["rates"]["15m"]["near"] * 900 == pytest.approx(100, abs=0.1)
    assert stats["rates"]["5m"]["near"] == 0
    assert stats["rates"]["1m"]["seen"] * 60 <= 3 + 0.01


def test_rebuild_does_not_count(rt: Runtime) -> None:
    from workers.pipeline.process import rebuild_index

    run(rt, [make_doc(n, "alpha") for n in range(4)])
    before = collect_stats(rt.client, rt.keys)
    rt.index.reset()
    rebuild_index(rt)
    after = collect_stats(rt.client, rt.keys)
    assert after["index"]["documents"] == 4
    assert after["seen"] == before["seen"] == 4
    assert after["rates"]["15m"]["seen"] == pytest.approx(before["rates"]["15m"]["seen"], abs=0.01)


def test_prometheus_rendering_parses_and_escapes_labels(rt: Runtime) -> None:
    weird = 'say "hi"\\there'
    run(rt, [make_doc(n, weird) for n in range(3)])
    run(rt, [make_doc(0, "plain", text=article(0))], job="again")  # an exact duplicate
    ensure_group(rt.client, rt.keys.docs, "g")
    read_group(rt.client, rt.keys.docs, "g", "c", count=1, block_ms=None)
    families = parse_exposition(render_prometheus(collect_stats(rt.client, rt.keys)))

    def samples(name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {tuple(sorted(labels.items())): v for labels, v in families[name]["samples"]}

    assert samples("newsdedup_up") == {(): 1}
    assert samples("newsdedup_documents_published_total") == {
        (("source", weird),): 3,
        (("source", "plain"),): 0,
    }
    assert samples("newsdedup_documents_seen_total")[(("source", weird),)] == 3
    dups = samples("newsdedup_duplicates_total")
    assert dups[(("kind", "exact"), ("source", "plain"))] == 1
    assert dups[(("kind", "near"), ("source", weird))] == 0
    assert families["newsdedup_duplicates_total"]["type"] == "counter"
    assert samples("newsdedup_stream_length") == {
        (("stream", "docs"),): 3,
        (("stream", "duplicates"),): 1,
        (("stream", "dead"),): 0,
    }
    assert samples("newsdedup_consumer_group_pending") == {(("group", "g"), ("stream", "docs")): 1}
    assert samples("newsdedup_consumer_group_lag") == {(("group", "g"), ("stream", "docs")): 2}
    assert samples("newsdedup_index_documents") == {(): 3}
    assert samples("newsdedup_redis_used_memory_bytes")[()] > 0
    for name in (
        "newsdedup_dead_total",
        "newsdedup_dead_by_reason_total",
        "newsdedup_boilerplate_lines_stripped_total",
        "newsdedup_bytes_in_total",
        "newsdedup_redis_maxmemory_bytes",
    ):
        assert name in families
    assert families["newsdedup_stream_length"]["type"] == "gauge"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_server_answers_up_0_while_redis_is_unreachable() -> None:
    client = scrape_client(f"redis://:s3cret@127.0.0.1:{_closed_port()}/0")
    server = MetricsServer("127.0.0.1", 0, Scraper(client, Keys("nd:")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for _ in range(2):  # the server keeps answering
            with urllib.request.urlopen(server.url, timeout=10) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == CONTENT_TYPE
                text = response.read().decode()
            assert "newsdedup_up 0\n" in text
            assert "# scrape error: " in text and "s3cret" not in text
            assert parse_exposition(text)["newsdedup_up"]["samples"] == [({}, 0)]
    finally:
        server.shutdown()
        server.server_close()
        client.close()


# --------------------------------------------------------------------------- commands


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("data")
    result = run_cli(["backfill", "seeds/"], cli_env(data_dir=data_dir))
    assert result.returncode == 0, result.stderr
    return data_dir


def wait_for(out: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = out.read_text("utf-8", "replace")
        if text in content:
            return content
        assert process.poll() is None, f"exited {process.returncode}: {content}"
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"{text!r} not printed within {timeout}s: {out.read_text()}")


def interrupt(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def test_stats_json_and_table(seeded: Path) -> None:
    env = cli_env(data_dir=seeded)
    result = run_cli(["stats", "--json"], env)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert (stats["seen"], stats["published"], stats["duplicates"]) == (5, 5, 0)
    assert stats["streams"] == {"docs": 5, "duplicates": 0, "dead": 0}
    assert stats["sources"]["seeds"]["stripped_lines"] > 0
    assert set(stats["rates"]) == {"1m", "5m", "15m"}
    assert stats["rates"]["15m"]["published"] > 0
    assert stats["consumer_groups"] == {"docs": [], "duplicates": [], "dead": []}
    assert stats["redis"]["used_memory"] > 0
    assert stats["redis"]["maxmemory_policy"] == "noeviction"
    assert stats["feeds"]["total"] >= 0

    result = run_cli(["stats"], env)
    assert result.returncode == 0, result.stderr
    for heading in ("documents by source", "documents per second", "streams", "index: 5"):
        assert heading in result.stdout
    assert "seeds" in result.stdout


def test_stats_watch_refreshes_until_ctrl_c(seeded: Path, tmp_path: Path) -> None:
    out = tmp_path / "watch.out"
    process = start_cli(["stats", "--watch", "1"], cli_env(data_dir=seeded), out)
    wait_for(out, "documents by source", process)
    time.sleep(1.5)
    assert interrupt(process) == 0
    content = out.read_text()
    assert content.count("documents by source") >= 2  # refreshed (printed again: no tty)
    assert "Traceback" not in content and "error" not in content


def test_metrics_command_serves_prometheus(seeded: Path, tmp_path: Path) -> None:
    out = tmp_path / "metrics.out"
    process = start_cli(["metrics", "--port", "0"], cli_env(data_dir=seeded), out)
    try:
        line = wait_for(out, "/metrics", process)
        match = re.search(r"http://127\.0\.0\.1:\d+/metrics", line)
        assert match, line
        url = match.group(0)
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"] == CONTENT_TYPE
            families = parse_exposition(response.read().decode())
        assert families["newsdedup_up"]["samples"] == [({}, 1)]
        assert families["newsdedup_documents_published_total"]["samples"] == [
            ({"source": "seeds"}, 5)
        ]
        for name in (
            "newsdedup_documents_seen_total",
            "newsdedup_duplicates_total",
            "newsdedup_dead_total",
            "newsdedup_dead_by_reason_total",
            "newsdedup_boilerplate_lines_stripped_total",
            "newsdedup_bytes_in_total",
            "newsdedup_stream_length",
            "newsdedup_consumer_group_pending",
            "newsdedup_consumer_group_lag",
            "newsdedup_index_documents",
            "newsdedup_redis_used_memory_bytes",
            "newsdedup_redis_maxmemory_bytes",
        ):
            assert name in families, name
        with urllib.request.urlopen(url.removesuffix("metrics"), timeout=10) as response:
            assert b'href="/metrics"' in response.read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url.removesuffix("metrics") + "nope", timeout=10)
        assert missing.value.code == 404
    finally:
        code = interrupt(process)
    assert code == 0, out.read_text()
    assert "Traceback" not in out.read_text()
