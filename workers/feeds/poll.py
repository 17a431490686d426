"""Polling one feed: the I/O edge that turns a feed URL into pipeline inputs.

A poll is: take the feed's lock, conditional GET, parse, keep the entries not accounted
for before, fetch article pages where the entries are only summaries, then the same
strip -> dedup -> publish stages as files (`process_inputs`), and record the feed's status.

Exactly once per entry: a feed is one never-ending job, `feed-<key>`, whose done set
(see workers/index/keys.py) holds every entry key accounted for, added by the same Lua
script that publishes the entry, so an entry is in `docs`, `duplicates` or `dead` once
whatever crashes or redeliveries happen. Before fetching anything, a poll drops the
entries already in that set. The set forgets entries after `feeds.seen_days`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import redis

from workers.document import DeadInput, LoadedInput
from workers.feeds.fetch import Fetcher
from workers.feeds.gate import gate_host
from workers.feeds.policy import FetchError
from workers.feeds.spec import FeedEntry, FeedSpec, entry_document, needs_article, parse_feed
from workers.feeds.status import PollReport, feed_job, feed_key
from workers.index.keys import Keys, done_member, revised_ref
from workers.index.locks import RedisLock
from workers.ingest.decode import DecodeError, declared_page_encoding, decode_bytes
from workers.ingest.html import ArticleError, ArticleReader, ArticleText
from workers.ops.connection import as_text, redact
from workers.pipeline.process import process_with_runtime

if TYPE_CHECKING:
    from workers.config import Settings
    from workers.worker.runtime import Runtime

log = logging.getLogger(__name__)

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/rdf+xml;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
ARTICLE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
# Polls in a row an entry's article page may fail transiently (timeout, 5xx) before the
# entry goes ahead with its summary, or to `dead` when it has none.
ARTICLE_ATTEMPTS = 3
# Seconds a quick request takes: with the politeness delay after it, how long a poll's
# request waits for a host that another request holds (`host_patience`).
QUICK_REQUEST = 2.0


def host_patience(settings: Settings) -> float:
    """How long a poll's request waits for a host busy with another request before the
    poll steps aside (`HostBusy`; article pages are left for the next poll): a host held
    longer than a quick request and its politeness delay is slow or stalled, and a poll
    waiting for it would keep a worker process from the feeds of every other host."""
    return settings.feeds.host_delay + QUICK_REQUEST


class HostBusy(Exception):
    """The feed's host stayed busy with another request for longer than the poll waits
    for it (before its first attempt, or between retries of a failed one): nothing was
    recorded, and the poll is to be tried again later (`workers.worker.tasks.poll_feed`)."""

    def __init__(self, error: FetchError) -> None:
        super().__init__(str(error))
        self.error = error


def poll_once(
    runtime: Runtime,
    spec: FeedSpec,
    *,
    task_id: str,
    fetcher: Fetcher,
    step_aside: bool = False,
) -> PollReport:
    """Poll `spec` once. `task_id` owns the feed's lock; a redelivered task with the same
    id takes its own lock back instead of waiting for it to expire. With `step_aside`, a
    feed whose host stays busy with another request past `host_patience` raises
    `HostBusy`; without, the feed's request waits for it until its deadline, and fails
    as `host_busy` past that."""
    started = time.monotonic()
    key = feed_key(spec.url)
    report = PollReport(spec.name, spec.shown_url, key)
    lease_ms = (runtime.settings.worker.task_time_limit + 60) * 1000
    # Article pages are fetched while a poll has time for one more within half the soft
    # time limit, so that slow article servers defer entries instead of costing the poll.
    fetch_until = started + runtime.settings.worker.task_soft_time_limit / 2
    lock = RedisLock(runtime.client, runtime.keys.feed_lock(key), token=task_id)
    with lock.held(lease_ms) as held:
        if not held:
            report.outcome = "locked"
        else:
            _poll_locked(runtime, spec, task_id, fetcher, report, fetch_until, step_aside)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _poll_locked(
    runtime: Runtime,
    spec: FeedSpec,
    task_id: str,
    fetcher: Fetcher,
    report: PollReport,
    fetch_until: float,
    step_aside: bool,
) -> None:
    client, keys, key = runtime.client, runtime.keys, report.key
    raw: Any = client.hgetall(keys.feed(key))
    state = {as_text(k): as_text(v) for k, v in raw.items()}
    now = time.time()
    status: dict[str, str] = {}
    try:
        response = fetcher.get(
            spec.url,
            etag=state.get("etag", ""),
            last_modified=state.get("last_modified", ""),
            accept=FEED_ACCEPT,
            host_wait=host_patience(runtime.settings) if step_aside else None,
        )
    except FetchError as exc:
        if step_aside and exc.reason == "host_busy":
            raise HostBusy(exc) from None
        report.outcome, report.error, report.http_status = "failed", str(exc), exc.status or 0
        # Only the first failure of a streak is dead-lettered: a feed that is down for a
        # day must not bury the dead stream; `newsdedup feeds` shows the streak.
        if int(state.get("failures_in_row", "0")) == 0:
            dead = DeadInput(
                f"poll:{task_id}", f"feed_{exc.reason}", str(exc), spec.shown_url, spec.source
            )
            _count(report, _process(runtime, key, [dead]))
        _record_status(client, keys, spec, report, now, status)
        return

    report.http_status = response.status
    if response.not_modified:
        report.outcome = "not_modified"
        _record_status(client, keys, spec, report, now, status)
        return
    body_hash = hashlib.blake2b(response.content, digest_size=16).hexdigest()
    conditional = {
        "etag": response.etag,
        "last_modified": response.last_modified,
        "body_hash": body_hash,
    }
    # A server that ignores conditional GET but sends the same bytes costs no parsing
    # either, unless entries were left for this poll.
    if body_hash == state.get("body_hash") and state.get("deferred", "0") == "0":
        report.outcome = "unchanged"
        _record_status(client, keys, spec, report, now, conditional)
        return

    parsed = parse_feed(response.content, response.headers, response.url)
    report.entries = len(parsed.entries)
    report.empty = parsed.dropped
    report.repeated = parsed.repeated
    report.bozo = parsed.bozo_message if parsed.bozo else ""
    if not parsed.entries and parsed.bozo:
        report.outcome, report.error = "failed", f"not a usable feed: {parsed.bozo_message}"
        # Keyed by the body: the same broken document is dead-lettered once.
        dead = DeadInput(
            f"body:{body_hash}", "feed_unparseable", report.error, spec.shown_url, spec.source
        )
        _count(report, _process(runtime, key, [dead]))
        _record_status(client, keys, spec, report, now, status)
        return

    new = _unseen(client, keys, key, parsed.entries)
    # Entries an earlier poll left for this one come first, listed or not: a feed that
    # moved on since must not lose them.
    waiting = _waiting(client, keys, key, new)
    report.new = len(waiting) + len(new)
    inputs, left = _inputs_for(runtime, spec, key, [*waiting, *new], fetcher, report, fetch_until)
    _count(report, _process(runtime, key, inputs))
    _leave(client, keys, key, left, done=[*waiting, *new])
    seen_days = runtime.settings.feeds.seen_days
    if seen_days > 0:
        client.zremrangebyscore(keys.job_done(feed_job(key)), "-inf", now - seen_days * 86400)
    # With entries left over, the next poll must get the whole feed again, not a 304.
    _record_status(
        client,
        keys,
        spec,
        report,
        now,
        {**conditional, "etag": "", "last_modified": "", "body_hash": ""}
        if report.deferred
        else conditional,
    )


def _unseen(client: redis.Redis, keys: Keys, key: str, entries: list[FeedEntry]) -> list[FeedEntry]:
    if not entries:
        return []
    members = [done_member(revised_ref(entry.key, entry.revision)) for entry in entries]
    # redis-py hints str members; bytes are what the scripts add.
    scores: Any = client.zmscore(keys.job_done(feed_job(key)), members)  # type: ignore[arg-type]
    return [entry for entry, score in zip(entries, scores, strict=True) if score is None]


def _waiting(client: redis.Redis, keys: Keys, key: str, new: list[FeedEntry]) -> list[FeedEntry]:
    """The entries an earlier poll left for a later one (`_leave`), but those the feed
    lists again (`new` has them as they are now) and those accounted for since."""
    stored: dict[bytes, bytes] = client.hgetall(keys.feed_deferred(key))  # type: ignore[assignment]
    if not stored:
        return []
    listed = {entry.key for entry in new}
    entries = []
    for field, raw in stored.items():
        try:
            entries.append(FeedEntry(**json.loads(raw)))
        except (ValueError, TypeError):
            # Damaged, or written by a version whose entries had other fields: it cannot
            # be taken as it was; if the feed still lists the entry, it is taken from there.
            log.warning("feed %s: a deferred entry could not be read back; dropped", key)
            client.hdel(keys.feed_deferred(key), field)
    return _unseen(client, keys, key, [e for e in entries if e.key not in listed])


def _leave(
    client: redis.Redis, keys: Keys, key: str, left: list[FeedEntry], done: list[FeedEntry]
) -> None:
    """Keep the entries this poll left for the next one, with all they say (the feed may
    not list them then), and forget the ones it took. After they were processed: a poll
    that dies before leaves the last poll's list, whose processed entries the done set
    then filters out."""
    deferred = keys.feed_deferred(key)
    pipe = client.pipeline(transaction=True)
    taken = {entry.key for entry in done} - {entry.key for entry in left}
    if taken:
        pipe.hdel(deferred, *taken)
    if left:
        pipe.hset(
            deferred,
            mapping={entry.key: json.dumps(asdict(entry), ensure_ascii=False) for entry in left},
        )
    pipe.execute()


def _inputs_for(
    runtime: Runtime,
    spec: FeedSpec,
    key: str,
    entries: list[FeedEntry],
    fetcher: Fetcher,
    report: PollReport,
    fetch_until: float,
) -> tuple[list[LoadedInput], list[FeedEntry]]:
    """Documents for the new entries, with article pages fetched where needed (while
    there is time for one more before `fetch_until`; the first always is, so a feed
    always moves on), and the entries left for the next poll."""
    settings = runtime.settings.feeds
    # The longest one article can take: its request, then its extraction.
    longest = settings.request_deadline + runtime.settings.html.extract_timeout
    wanted = [
        e for e in entries if needs_article(e, spec.fetch_article, settings.fetch_below_chars)
    ]
    tries_key = runtime.keys.feed_tries(key)
    tries: dict[str, int] = {}
    if wanted:
        counts: Any = runtime.client.hmget(tries_key, [e.key for e in wanted])
        tries = {e.key: int(c or 0) for e, c in zip(wanted, counts, strict=True)}
    budget = settings.max_articles_per_poll
    patience = host_patience(runtime.settings)
    inputs: list[LoadedInput] = []
    left: list[FeedEntry] = []
    failed_again: list[str] = []
    settled: list[str] = []
    # Hosts found busy with another request: their pages wait for the next poll, which
    # counts no try against them (the page was never asked for).
    busy: set[str] = set()
    for entry in entries:
        if entry.key not in tries:
            inputs.append(entry_document(entry, spec))
            continue
        out_of_time = report.articles > 0 and time.monotonic() + longest > fetch_until
        if budget <= 0 or out_of_time or gate_host(entry.link) in busy:
            report.deferred += 1
            left.append(entry)
            continue
        budget -= 1
        report.articles += 1
        article, error = _fetch_article(fetcher, runtime.extractor.read, entry.link, patience)
        if article is not None:
            inputs.append(entry_document(entry, spec, article))
            settled.append(entry.key)
            continue
        report.article_errors += 1
        reason = _article_failure(error)
        report.article_failures[reason] = report.article_failures.get(reason, 0) + 1
        if isinstance(error, FetchError) and error.reason == "host_busy":
            busy.add(gate_host(entry.link))
            report.deferred += 1
            left.append(entry)
            continue
        transient = isinstance(error, FetchError) and error.transient
        if transient and tries[entry.key] + 1 < ARTICLE_ATTEMPTS:
            report.deferred += 1
            left.append(entry)
            failed_again.append(entry.key)
            continue
        settled.append(entry.key)
        message = str(error)
        if entry.text or entry.title:
            # The summary (or the headline) is better than nothing, and the entry is not lost.
            log.warning(
                "%s: using the summary of %s (%s): %s", spec.name, entry.link, reason, message
            )
            inputs.append(entry_document(entry, spec))
        else:
            doc = entry_document(entry, spec)
            inputs.append(
                DeadInput(entry.key, reason, message, redact(doc.id), spec.source, entry.revision)
            )
    pipe = runtime.client.pipeline(transaction=False)
    for entry_key in failed_again:
        pipe.hincrby(tries_key, entry_key, 1)
    if settled:
        pipe.hdel(tries_key, *settled)
    pipe.execute()
    return inputs, left


ArticleFailure = FetchError | ArticleError | str


def _fetch_article(
    fetcher: Fetcher, read: ArticleReader, url: str, host_wait: float
) -> tuple[ArticleText | None, ArticleFailure]:
    """The page's main text, or why there is none: the fetch failed (FetchError; its
    host busy with another request for `host_wait` seconds among them), the page could
    not be read (ArticleError: too large or complex, too slow), or it has no main text
    (a message)."""
    try:
        response = fetcher.get(url, accept=ARTICLE_ACCEPT, host_wait=host_wait)
    except FetchError as exc:
        return None, exc
    # The page is read as a saved .html file is (workers/ingest/decode.py), its HTTP
    # charset first: trafilatura's own guess reads Greek, Turkish or Polish pages in the
    # wrong code page.
    try:
        html = decode_bytes(
            response.content,
            declared_page_encoding(response.content, response.headers.get("content-type", "")),
        ).text
    except DecodeError as exc:
        return None, ArticleError(f"GET {redact(url)}: {exc}", f"decode_{exc.reason}")
    try:
        article = read(html, response.url)
    except ArticleError as exc:
        return None, ArticleError(f"GET {redact(url)}: {exc}", exc.reason)
    if article is None or not article.text.strip():
        return None, f"GET {redact(url)}: no main text found in the article page"
    return article, ""


def _article_failure(error: ArticleFailure) -> str:
    """The reason an article page failed, as `dead` and the poll report name it."""
    if isinstance(error, (FetchError, ArticleError)):
        return f"article_{error.reason}"
    return "article_no_text"


def _process(runtime: Runtime, key: str, inputs: list[LoadedInput]) -> dict[str, int]:
    if not inputs:
        return {}
    result = process_with_runtime(runtime, inputs, job_id=feed_job(key), keep_headlines=True)
    return result.counts()


def _count(report: PollReport, counts: Mapping[str, int]) -> None:
    report.published += counts.get("published", 0)
    report.exact += counts.get("exact", 0)
    report.near += counts.get("near", 0)
    report.dead += counts.get("dead", 0)


def _record_status(
    client: redis.Redis,
    keys: Keys,
    spec: FeedSpec,
    report: PollReport,
    now: float,
    extra: Mapping[Any, Any],
) -> None:
    key = keys.feed(report.key)
    failed = report.outcome == "failed"
    pipe = client.pipeline(transaction=True)
    pipe.sadd(keys.feeds, report.key)
    pipe.hset(
        key,
        mapping={
            "name": spec.name,
            "url": spec.shown_url,
            "source": spec.source,
            "interval": spec.interval,
            "last_polled": now,
            "next_poll": now + spec.interval,
            "last_outcome": report.outcome,
            "last_status": report.http_status,
            "last_new": report.new,
            "last_error": report.error,
            "deferred": report.deferred,
            **extra,
        },
    )
    if report.outcome == "polled":  # otherwise the feed's entries are as last seen
        pipe.hset(key, "last_entries", report.entries)
    pipe.hincrby(key, "polls", 1)
    pipe.hincrby(key, "new_total", report.new)
    if report.outcome in ("not_modified", "unchanged"):
        pipe.hincrby(key, "not_modified", 1)
    if failed:
        pipe.hincrby(key, "failures", 1)
        pipe.hincrby(key, "failures_in_row", 1)
    else:
        pipe.hset(key, "failures_in_row", 0)
    pipe.execute()
