"""Per-process wiring: settings, the Redis client, rules, fingerprinter and index.

Built once per process (a Celery pool child or a CLI command) and reused by every task,
so rule files are parsed and MinHash permutations generated once, not per batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import cache

import redis

from workers.clean.boilerplate.learner import LearnerSettings, LineLearner
from workers.clean.boilerplate.rules import RuleSet, load_rules, parse_source_rules
from workers.clean.fingerprint import Fingerprinter, FingerprintParams
from workers.config import ConfigError, Settings, process_settings
from workers.feeds.fetch import Fetcher
from workers.feeds.gate import RedisHostGate
from workers.feeds.policy import HttpPolicy
from workers.feeds.spec import FeedSpec, load_feeds
from workers.index.dedup import DecisionRule, DedupIndex, IndexLayout
from workers.index.keys import Keys
from workers.ingest.extraction import ArticleExtractor, ExtractLimits
from workers.ops.connection import (
    Endpoints,
    HoldingRetry,
    endpoints,
    ping,
    redis_from_url,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    client: redis.Redis
    hold: HoldingRetry  # the client's retry policy: how long its commands wait out an outage
    keys: Keys
    rules: RuleSet
    fingerprinter: Fingerprinter
    index: DedupIndex
    learner: LineLearner
    feeds: tuple[FeedSpec, ...]  # from the feeds config, enabled or not
    # Reads article pages (HTML files, fetched articles); starts its process on first use.
    extractor: ArticleExtractor


def fingerprint_params(settings: Settings) -> FingerprintParams:
    dedup = settings.dedup
    return FingerprintParams(
        dedup.num_perm, dedup.seed, dedup.shingle_size, dedup.lsh_threshold, dedup.facts_bits
    )


def learner_settings(settings: Settings) -> LearnerSettings:
    bp = settings.boilerplate
    return LearnerSettings(
        bp.learn, bp.min_docs, bp.min_share, bp.prune_every, bp.zone_lines, bp.link_memory
    )


def decision_rule(settings: Settings) -> DecisionRule:
    names = {field.name for field in fields(DecisionRule)}
    return DecisionRule(**settings.dedup.model_dump(include=names))


def load_feeds_and_rules(settings: Settings) -> tuple[tuple[FeedSpec, ...], RuleSet]:
    """The feeds config and the boilerplate rules, with each feed's own rules added to its
    source's. A problem in either file is a ConfigError naming the file."""
    feeds_path = settings.feeds_config_path()
    try:
        feeds = tuple(load_feeds(feeds_path, default_interval=settings.feeds.default_interval))
        rules = load_rules(settings.boilerplate_rules_path())
        taken = {rule.name for rule in rules.rules}
        for spec in feeds:
            if spec.boilerplate:
                where = f"feed {spec.name!r} boilerplate"
                more = parse_source_rules(spec.boilerplate, str(feeds_path), where, taken)
                rules = rules.with_source_rules({spec.source: more})
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return feeds, rules


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


def build_runtime(settings: Settings, redis_url: str) -> Runtime:
    feeds, rules = load_feeds_and_rules(settings)
    hold = HoldingRetry(on_wait=OutageLog())
    client = redis_from_url(redis_url, hold)
    keys = Keys(settings.prefix)
    params = fingerprint_params(settings)
    dedup, streams = settings.dedup, settings.streams
    index = DedupIndex(
        client,
        keys,
        IndexLayout(params),
        decision_rule(settings),
        retention_seconds=int(dedup.retention_days * 86400),
        retention_clock=dedup.retention_clock,
        sweep_limit=dedup.sweep_limit,
        docs_maxlen=streams.docs_maxlen,
        duplicates_maxlen=streams.duplicates_maxlen,
        dead_maxlen=streams.dead_maxlen,
    )
    return Runtime(
        settings=settings,
        client=client,
        hold=hold,
        keys=keys,
        rules=rules,
        fingerprinter=Fingerprinter(params, dedup.min_shingles),
        index=index,
        learner=LineLearner(client, keys, learner_settings(settings)),
        feeds=feeds,
        extractor=ArticleExtractor(ExtractLimits.from_settings(settings)),
    )


@contextmanager
def connected_runtime(settings: Settings) -> Iterator[tuple[Runtime, Endpoints]]:
    """A runtime on the configured Redis, or on the embedded one in `settings.data_dir`
    (started or attached to for the time of the block), checked to answer."""
    with endpoints(settings.redis_url, settings.broker_url, settings.data_dir) as ends:
        runtime = build_runtime(settings, ends.redis_url)
        try:
            ping(runtime.client, ends.redis_url)
            yield runtime, ends
        finally:
            runtime.client.close()


def build_fetcher(runtime: Runtime) -> Fetcher:
    """The HTTP client for feeds and articles, polite per host across every worker."""
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
    return build_runtime(settings, worker_redis_url(settings))
