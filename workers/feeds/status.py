"""What polls leave in Redis, and reading it back: each feed's status, the record of a poll
queued by `newsdedup poll`, and the report of one poll.

Light on purpose (no HTTP client, no HTML reader, no pipeline): `newsdedup stats` and
`feeds` read feed statuses, `poll` resolves its targets, with this module alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal
from urllib.parse import urlsplit

import redis

from workers.clean.urls import canonical_url
from workers.feeds.spec import FeedSpec
from workers.index.keys import Keys
from workers.messages import counted
from workers.ops.connection import as_text

POLL_RECORD_TTL = 24 * 3600

PollOutcome = Literal["polled", "not_modified", "unchanged", "locked", "failed"]


def feed_key(url: str) -> str:
    """A feed's id in Redis keys: a hash of its canonical URL, so `http://www.x/feed` and
    `https://x/feed/` share state and key names stay short and safe."""
    canonical = canonical_url(url) or url.strip()
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=8).hexdigest()


def feed_job(key: str) -> str:
    return f"feed-{key}"


def ad_hoc_feed(
    url: str, *, source: str | None, fetch_article: str | None, interval: int
) -> FeedSpec:
    """A spec for a URL that is not in feeds.toml: named after its host and path, its
    documents' source named after its host."""
    parts = urlsplit(url)
    host = (parts.hostname or "feed").lower().removeprefix("www.")
    return FeedSpec.from_json(
        {
            "name": host + parts.path.rstrip("/"),
            "url": url,
            "source": source or host,
            "interval": interval,
            "fetch_article": fetch_article or "auto",
        }
    )


@dataclass(slots=True)
class PollReport:
    feed: str
    url: str
    key: str
    outcome: PollOutcome = "polled"
    http_status: int = 0
    entries: int = 0  # in the feed document
    # Items with no guid, no link and no text: nothing to process, nothing to name them
    # by in `dead` (not inputs, and not in `entries`), but said.
    empty: int = 0
    # Items listed again under the guid or link of one listed before them in the same
    # document: the first is the entry (not in `entries` either).
    repeated: int = 0
    new: int = 0  # not accounted for before this poll
    published: int = 0
    exact: int = 0
    near: int = 0
    dead: int = 0
    deferred: int = 0  # new entries left for the next poll (article budget, retries)
    articles: int = 0  # article pages fetched
    article_errors: int = 0
    # Why article pages failed in this poll: `article_<reason>` -> pages (those retried
    # at the next poll too, and those whose entry went out with its summary instead).
    article_failures: dict[str, int] = field(default_factory=dict)
    bozo: str = ""  # feedparser's complaint about an ill-formed feed it still read
    error: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PollReport:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def summary(self) -> str:
        """One line for the `poll` command."""
        head = f"{self.feed} ({self.url}): "
        if self.outcome == "failed":
            return head + f"failed: {self.error}"
        if self.outcome == "locked":
            return head + "skipped: another poll of this feed is running"
        if self.outcome in ("not_modified", "unchanged"):
            why = "304 not modified" if self.outcome == "not_modified" else "content unchanged"
            return head + f"{why}, nothing new"
        parts = [
            counted(self.entries, "entry", "entries"),
            f"{self.new} new",
            f"{self.published} published",
            counted(self.exact, "exact duplicate"),
            counted(self.near, "near duplicate"),
            f"{self.dead} dead",
        ]
        if self.articles:
            failures = f"{self.article_errors} failed"
            if self.article_failures:
                reasons = sorted(self.article_failures.items())
                failures += ": " + ", ".join(f"{reason} {n}" for reason, n in reasons)
            parts.append(f"{counted(self.articles, 'article page')} fetched ({failures})")
        if self.deferred:
            parts.append(f"{self.deferred} left for the next poll")
        if self.empty:
            parts.append(f"{counted(self.empty, 'empty item')} skipped")
        if self.repeated:
            parts.append(
                f"{counted(self.repeated, 'item')} listed again under an earlier item's guid "
                "or link (the first kept)"
            )
        line = head + f"HTTP {self.http_status}, " + ", ".join(parts)
        return line + (f" (ill-formed feed: {self.bozo})" if self.bozo else "")


# ---------------------------------------------------------------------------- status


@dataclass(frozen=True, slots=True)
class FeedStatus:
    key: str
    name: str
    url: str
    source: str
    interval: int
    last_polled: float | None
    next_poll: float | None
    last_outcome: str
    last_status: int
    last_entries: int
    last_new: int
    last_error: str
    polls: int
    new_total: int
    published: int
    exact: int
    near: int
    dead: int
    failures: int
    failures_in_row: int
    configured: bool


def feed_statuses(client: redis.Redis, keys: Keys, configured: list[FeedSpec]) -> list[FeedStatus]:
    """Every configured feed (polled or not) and every other feed polled by hand."""
    known: Any = client.smembers(keys.feeds)
    by_key = {feed_key(spec.url): spec for spec in configured}
    order = list(by_key) + sorted(as_text(k) for k in known if as_text(k) not in by_key)
    pipe = client.pipeline(transaction=False)
    for key in order:
        pipe.hgetall(keys.feed(key))
        pipe.hgetall(keys.job(feed_job(key)))
    replies: list[Any] = pipe.execute()

    def number(state: Mapping[str, str], name: str) -> int:
        value = state.get(name, "")
        return int(float(value)) if value else 0

    statuses = []
    for i, key in enumerate(order):
        state = {as_text(k): as_text(v) for k, v in replies[2 * i].items()}
        totals = {as_text(k): int(v) for k, v in replies[2 * i + 1].items()}
        spec = by_key.get(key)

        statuses.append(
            FeedStatus(
                key=key,
                name=spec.name if spec else state.get("name", key),
                url=spec.shown_url if spec else state.get("url", ""),
                source=spec.source if spec else state.get("source", ""),
                interval=spec.interval if spec else number(state, "interval"),
                last_polled=float(state["last_polled"]) if state.get("last_polled") else None,
                next_poll=float(state["next_poll"]) if state.get("next_poll") else None,
                last_outcome=state.get("last_outcome", "never polled"),
                last_status=number(state, "last_status"),
                last_entries=number(state, "last_entries"),
                last_new=number(state, "last_new"),
                last_error=state.get("last_error", ""),
                polls=number(state, "polls"),
                new_total=number(state, "new_total"),
                published=totals.get("published", 0),
                exact=totals.get("exact", 0),
                near=totals.get("near", 0),
                dead=totals.get("dead", 0),
                failures=number(state, "failures"),
                failures_in_row=number(state, "failures_in_row"),
                configured=spec is not None,
            )
        )
    return statuses


# ---------------------------------------------------------------------------- poll records


def record_poll_queued(client: redis.Redis, keys: Keys, task_id: str, spec: FeedSpec) -> None:
    key = keys.poll(task_id)
    client.hset(key, mapping={"state": "queued", "url": spec.shown_url, "feed": spec.name})
    client.expire(key, POLL_RECORD_TTL)


def record_poll_result(
    client: redis.Redis, keys: Keys, task_id: str, report: PollReport | None, error: str = ""
) -> None:
    """What a poll did, for the `poll` command that is waiting on it."""
    key = keys.poll(task_id)
    fields_: dict[Any, Any] = {"state": "done" if report is not None else "crashed"}
    if report is not None:
        fields_["report"] = json.dumps(report.to_json(), ensure_ascii=False)
    if error:
        fields_["error"] = error
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, mapping=fields_)
    pipe.expire(key, POLL_RECORD_TTL)
    pipe.execute()


def read_poll(client: redis.Redis, keys: Keys, task_id: str) -> dict[str, str]:
    raw: Any = client.hgetall(keys.poll(task_id))
    return {as_text(k): as_text(v) for k, v in raw.items()}
