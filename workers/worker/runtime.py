"""Per-process wiring: settings, the Redis client, rules, fingerprinter and index.

Built once per process (a Celery pool child or a CLI command) and reused by every task,
so rule files are parsed and MinHash permutations generated once, not per batch.

The settings, client, keys and feeds are read when the runtime is built (a bad feeds
file fails there), and the boilerplate rules too unless the caller leaves them out; the
rules, fingerprinter, index, learner and article extractor, and the modules they need
(numpy, the index's scripts, trafilatura), are otherwise built on first use: a command
that only reads counters (`stats`, `tail`) never loads them. A worker process builds them
all at once (`worker_runtime`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import cache, cached_property
from typing import TYPE_CHECKING

import redis

from workers.config import ConfigError, Settings, process_settings
from workers.feeds.spec import FeedSpec, load_feeds
from workers.index.keys import Keys
from workers.ops.connection import (
    DENIED,
    Endpoints,
    HoldingRetry,
    RedisUnavailable,
    ServerEvicts,
    endpoints,
    outage_reason,
    ping,
    redact,
    redis_from_url,
)

if TYPE_CHECKING:
    from workers.clean.boilerplate.learner import LearnerSettings, LineLearner
    from workers.clean.boilerplate.rules import RuleSet
    from workers.clean.fingerprint import Fingerprinter, FingerprintParams
    from workers.feeds.fetch import Fetcher
    from workers.index.dedup import DecisionRule, DedupIndex
    from workers.ingest.extraction import ArticleExtractor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    client: redis.Redis
    hold: HoldingRetry  # the client's retry policy: how long its commands wait out an outage
    keys: Keys
    feeds: tuple[FeedSpec, ...]  # from the feeds config, enabled or not

    @cached_property
    def rules(self) -> RuleSet:
        """The boilerplate rules with the feeds' own (`build_runtime` may set them)."""
        return rules_for(self.settings, self.feeds)

    @cached_property
    def fingerprinter(self) -> Fingerprinter:
        from workers.clean.fingerprint import Fingerprinter

        return Fingerprinter(fingerprint_params(self.settings), self.settings.dedup.min_shingles)

    @cached_property
    def index(self) -> DedupIndex:
        from workers.index.dedup import DedupIndex, IndexLayout

        dedup, streams = self.settings.dedup, self.settings.streams
        return DedupIndex(
            self.client,
            self.keys,
            IndexLayout(fingerprint_params(self.settings)),
            decision_rule(self.settings),
            retention_seconds=int(dedup.retention_days * 86400),
            retention_clock=dedup.retention_clock,
            sweep_limit=dedup.sweep_limit,
            docs_maxlen=streams.docs_maxlen,
            duplicates_maxlen=streams.duplicates_maxlen,
            dead_maxlen=streams.dead_maxlen,
            source_policies=self.settings.sources,
        )

    @cached_property
    def learner(self) -> LineLearner:
        from workers.clean.boilerplate.learner import LineLearner

        return LineLearner(self.client, self.keys, learner_settings(self.settings))

    @cached_property
    def extractor(self) -> ArticleExtractor:
        """Reads article pages (HTML files, fetched articles); starts its process on first
        use."""
        from workers.ingest.extraction import ArticleExtractor, ExtractLimits

        return ArticleExtractor(ExtractLimits.from_settings(self.settings))

    def load_all(self) -> Runtime:
        """Build every lazily built part now (a worker process, before its first task)."""
        _ = (self.rules, self.fingerprinter, self.index, self.learner, self.extractor)
        return self


def fingerprint_params(settings: Settings) -> FingerprintParams:
    from workers.clean.fingerprint import FingerprintParams

    dedup = settings.dedup
    return FingerprintParams(
        dedup.num_perm, dedup.seed, dedup.shingle_size, dedup.lsh_threshold, dedup.facts_bits
    )


def learner_settings(settings: Settings) -> LearnerSettings:
    from workers.clean.boilerplate.learner import LearnerSettings

    bp = settings.boilerplate
    return LearnerSettings(
        bp.learn, bp.min_docs, bp.min_share, bp.prune_every, bp.zone_lines, bp.link_memory
    )


def decision_rule(settings: Settings) -> DecisionRule:
    from workers.index.dedup import DecisionRule

    names = {field.name for field in fields(DecisionRule)}
    return DecisionRule(**settings.dedup.model_dump(include=names))


def load_feed_specs(settings: Settings) -> tuple[FeedSpec, ...]:
    """The feeds config; a problem in it is a ConfigError naming the file."""
    interval = settings.feeds.default_interval
    try:
        return tuple(load_feeds(settings.feeds_config_path(), default_interval=interval))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def rules_for(settings: Settings, feeds: tuple[FeedSpec, ...]) -> RuleSet:
    """The boilerplate rules, with each feed's own rules added to its source's. A problem
    is a ConfigError naming the file."""
    from workers.clean.boilerplate.rules import load_rules, parse_source_rules

    feeds_path = settings.feeds_config_path()
    try:
        rules = load_rules(settings.boilerplate_rules_path())
        taken = {rule.name for rule in rules.rules}
        for spec in feeds:
            if spec.boilerplate:
                where = f"feed {spec.name!r} boilerplate"
                more = parse_source_rules(spec.boilerplate, str(feeds_path), where, taken)
                rules = rules.with_source_rules({spec.source: more})
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return rules


def load_feeds_and_rules(settings: Settings) -> tuple[tuple[FeedSpec, ...], RuleSet]:
    """The feeds config and the boilerplate rules, with each feed's own rules added to its
    source's. A problem in either file is a ConfigError naming the file."""
    feeds = load_feed_specs(settings)
    return feeds, rules_for(settings, feeds)


class OutageLog:
    """Logs that Redis refuses work while a command waits for it: the first time, then at
    most every `every` seconds, so a long outage is visible but does not flood the log."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self._last = -float("inf")

    def __call__(self, reason: str, waited: float) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            log.warning("Redis is %s: waiting (%.0f s so far)", reason, waited)


def build_runtime(
    settings: Settings,
    redis_url: str,
    feeds: tuple[FeedSpec, ...] | None = None,
    rules: RuleSet | None = None,
) -> Runtime:
    """The runtime on `redis_url`. Without `feeds` it reads the feeds config and the rules
    now (`load_feeds_and_rules`); with them, the rules given, else on first use."""
    if feeds is None:
        feeds, rules = load_feeds_and_rules(settings)
    hold = HoldingRetry(on_wait=OutageLog())
    runtime = Runtime(
        settings=settings,
        client=redis_from_url(redis_url, hold),
        hold=hold,
        keys=Keys(settings.prefix),
        feeds=feeds,
    )
    if rules is not None:
        runtime.__dict__["rules"] = rules  # what the cached property would have computed
    return runtime


@contextmanager
def connected_runtime(
    settings: Settings,
    *,
    rules: bool = False,
    feeds: tuple[FeedSpec, ...] | None = None,
    writes: bool = False,
) -> Iterator[tuple[Runtime, Endpoints]]:
    """A runtime on the configured Redis, or on the embedded one in `settings.data_dir`
    (started or attached to for the time of the block), checked to answer. The feeds
    config is read first (unless the caller read it: `feeds`), and with `rules` (whoever
    processes documents) the boilerplate rules too: a mistake there is reported before any
    server starts. Without, the rules are read if they come to be needed. With `writes`
    (a command that processes or queues work), a Redis that would delete keys when full,
    data or broker, is refused (`ServerEvicts`)."""
    if feeds is None:
        feeds = load_feed_specs(settings)
    rule_set = rules_for(settings, feeds) if rules else None
    with endpoints(settings.redis_url, settings.broker_url, settings.data_dir) as ends:
        runtime = build_runtime(settings, ends.redis_url, feeds, rule_set)
        try:
            ping(runtime.client, ends.redis_url, writes=writes)
            if writes:
                _refuse_denied_writes(runtime, ends.redis_url)
                _refuse_unusable_broker(ends)
            yield runtime, ends
        finally:
            runtime.client.close()


def _refuse_denied_writes(runtime: Runtime, url: str) -> None:
    """A command that processes or queues work needs its Redis user to run scripts and to
    write under the prefix: the write probe finds an ACL that denies either, at once and
    in one line (a worker would otherwise start, then wait on every batch). Redis full or
    away is no reason to refuse here: those commands wait it out, saying so."""
    from workers.index.args import ProbeArgs
    from workers.index.scripts import PROBE_WRITE

    try:
        with runtime.hold.holding(until=0.0):
            PROBE_WRITE(runtime.client, [runtime.keys.write_probe], ProbeArgs(b""))
    except Exception as exc:
        reason = outage_reason(exc)
        if reason is None:
            raise
        if reason.startswith(DENIED):
            raise RedisUnavailable(f"Redis at {redact(url)} is {reason}") from None


def _refuse_unusable_broker(ends: Endpoints) -> None:
    """A Redis broker other than the data Redis holds the queued batches: checked as the
    data Redis is (`ping`): it must answer, be a version we support and not evict them.
    A backfill would otherwise wait without end to send its first batch."""
    from workers.worker.broker import broker_redis_url

    url = broker_redis_url(ends.broker_url)
    if url is None or url == ends.redis_url:
        return
    client = redis_from_url(url, HoldingRetry(window=0.3))
    try:
        ping(client, url, writes=True)
    except ServerEvicts:
        raise
    except RedisUnavailable as exc:
        raise RedisUnavailable(f"the Celery broker (BROKER_URL): {exc}") from None
    finally:
        client.close()


def build_fetcher(runtime: Runtime) -> Fetcher:
    """The HTTP client for feeds and articles, polite per host across every worker."""
    from workers.feeds.fetch import Fetcher
    from workers.feeds.gate import RedisHostGate
    from workers.feeds.policy import HttpPolicy

    feeds = runtime.settings.feeds
    # The gate is held for one request attempt, which ends by the request deadline.
    lease = feeds.request_deadline + 10
    gate = RedisHostGate(
        runtime.client, runtime.keys, delay=feeds.host_delay, lease=lease, wait=2 * lease
    )
    return Fetcher(HttpPolicy.from_settings(runtime.settings), gate)


@cache
def worker_fetcher() -> Fetcher:
    return build_fetcher(worker_runtime())


def worker_redis_url(settings: Settings) -> str:
    """The data Redis of a worker process: the command that started it set redis_url, or
    the app located it (workers.worker.app)."""
    assert settings.redis_url, "a worker's settings name its Redis"
    return settings.redis_url


@cache
def worker_runtime() -> Runtime:
    """The runtime of a worker process, from this process's settings."""
    settings = process_settings()
    return build_runtime(settings, worker_redis_url(settings)).load_all()
