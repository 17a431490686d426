"""Typed settings: the model's defaults, then a --config TOML file, then environment.

Precedence (highest first): NEWSDEDUP_* environment variables, the file given with
--config (or NEWSDEDUP_CONFIG), the defaults below. Connection URLs are read from
REDIS_URL / BROKER_URL so they match what every Redis/Celery user already sets.

The defaults and descriptions live here and nowhere else: config/default.toml (every
setting with its default, to copy and edit) and docs/configuration.md are generated from
this model by `python -m workers.config_docs` (tests/test_config_docs.py keeps them equal).

A process reads its settings once, with `process_settings()`. A `newsdedup` command reads
them with `load_settings(--config)`, makes them its own (`use_settings`) and hands them on
to every process it starts in NEWSDEDUP_SETTINGS (`exported_settings`): its worker and
beat then run with exactly the command's settings, `--config` included, whatever their
own environment. A process started otherwise (`celery -A workers worker` by hand) loads
them from the files and environment it was given.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from workers.tomlfile import read_toml

# The default rules and feeds files ship inside the package (package data), so that an
# installed wheel finds them wherever it runs. A wheel installs unpacked, so the resource
# is a real folder. config/ at the top of the repository holds editable copies of them
# (tests/test_config_docs.py keeps them equal).
DEFAULTS_DIR = Path(str(resources.files("workers").joinpath("defaults")))


class ConfigError(Exception):
    """A configuration problem the user can fix; the message is one line."""


class _Section(BaseModel):
    """A [section] of the settings; each field's description is the docstring under it."""

    model_config = ConfigDict(use_attribute_docstrings=True)


class StreamSettings(_Section):
    """The output streams."""

    docs_maxlen: int = Field(1_000_000, ge=0)
    """Approximate length cap of `docs` (XADD MAXLEN ~); 0: none."""
    duplicates_maxlen: int = Field(1_000_000, ge=0)
    """Approximate length cap of `duplicates`; 0: none."""
    dead_maxlen: int = Field(100_000, ge=0)
    """Approximate length cap of `dead`; 0: none."""


class DedupSettings(_Section):
    """Near-duplicate decision for an LSH candidate, on the estimated Jaccard (J) of
    matching-normalised word shingles, the estimated containment (C), the two documents'
    rare facts (names and figures few documents mention) and the hours between them.
    bench/NEARDUP_RESEARCH.md has the measurements behind each value.

    `num_perm`, `seed`, `shingle_size`, `lsh_threshold` and `facts_bits` are recorded in
    the index: changing one needs `newsdedup index rebuild --yes`. The others can change
    at any time."""

    threshold: float = Field(0.5, gt=0, le=1)
    """J at which a candidate is a duplicate when the rare facts neither agree nor conflict
    (too few rare facts to judge)."""
    containment_threshold: float = Field(0.8, gt=0, le=1)
    """A shorter text is contained in a longer one when C reaches this value: a duplicate
    when it is a trimmed copy (the two start alike: `lead_agreement`) and the facts do not
    conflict, whichever of the two came later; else a partial, published with a
    `partial_of` / `contains` link."""
    lead_agreement: float = Field(0.3, ge=0, le=1)
    """Estimated Jaccard of the two texts' leads (their first 40 shingles) from which a
    contained text is a trimmed copy of the longer one rather than a part of a round-up
    or feature."""
    facts_threshold: float = Field(0.35, gt=0, le=1)
    """J at which a candidate is a duplicate when both documents' rare facts agree: reworded
    and trimmed copies."""
    facts_agreement: float = Field(0.6, gt=0, le=1)
    """The facts agree when at least this share of the smaller rare-fact set is in the
    other; below it they conflict (same template, other facts) and the pair is never a
    duplicate."""
    facts_min_count: int = Field(2, ge=1)
    """Rare facts both sides need before agreement or conflict counts."""
    max_gap_hours: float = Field(48, ge=0)
    """A candidate more than this many hours from its story's latest copy is a duplicate
    only when J >= `stale_threshold`; 0 turns the time condition off. The hour is the
    document's published date when it has one, else when it was ingested."""
    stale_threshold: float = Field(0.7, gt=0, le=1)
    """J a candidate beyond `max_gap_hours` needs."""
    rare_floor: int = Field(10, ge=0)
    """A fact is rare when its document frequency so far is at most max(rare_floor,
    rare_ratio x documents counted), and never once counted 250 times."""
    rare_ratio: float = Field(0.001, ge=0, le=1)
    """See `rare_floor`."""
    facts_bits: int = Field(20, ge=10, le=24)
    """Fact frequencies are counted in a table of 2^facts_bits one-byte counters (20: 1 MiB
    per generation; 19 already loses a dev-pair duplicate). Fixed at index creation."""
    facts_generation: int = Field(50_000, ge=0)
    """Documents per frequency-table generation: frequencies come from the current and the
    previous generation, so a stream without end neither saturates the table nor remembers
    forever. 0 keeps one generation."""
    lsh_threshold: float = Field(0.25, gt=0, le=1)
    """LSH candidate threshold: bands and rows are chosen by datasketch's optimiser for it
    (0.25: 42 bands x 3 rows). Lower than `threshold` so trimmed copies reach verification."""
    num_perm: int = Field(128, ge=16, le=1024)
    """MinHash permutations."""
    shingle_size: int = Field(3, ge=1, le=10)
    """Word n-gram size of the shingles (a character of Chinese or Japanese is a word)."""
    min_shingles: int = Field(5, ge=1)
    """Documents with fewer distinct shingles take part only in exact matching."""
    seed: int = 1
    """MinHash seed."""
    max_candidates: int = Field(64, ge=1)
    """At most this many LSH candidates are verified per document."""
    retention_days: float = Field(30, ge=0)
    """Documents older than this (on the retention clock) stop matching and are freed; 0
    keeps everything forever."""
    retention_clock: Literal["ingested", "published"] = "ingested"
    """"ingested": when newsdedup saw the document (right for backfills of old archives);
    "published": the document's own date when it has a plausible one (a sliding window over
    a feed)."""
    sweep_limit: int = Field(4, ge=1, le=1000)
    """Expired documents freed per indexed document: more than 1 so freeing keeps up with
    inserting."""


class IngestSettings(_Section):
    """Backfill batching, and the caps on what one input may cost: an input over one goes
    to `dead` with the reason named."""

    batch_size: int = Field(200, ge=1, le=100_000)
    """Documents per Celery task."""
    max_file_bytes: int = Field(50 * 1024 * 1024, ge=1)
    """A larger single-document file (.txt, .html, .json) goes to `dead` as `too_large`."""
    max_record_bytes: int = Field(10 * 1024 * 1024, ge=1)
    """A longer JSONL line (one record) goes to `dead` as `record_too_large`. Lines are read
    in bounded memory, so a longer one is never held whole."""
    max_decompressed_bytes: int = Field(2 * 1024**3, ge=1)
    """A .jsonl.gz is read up to this many decompressed bytes; whatever lies beyond is one
    input, `decompressed_too_large` (a small .gz can expand to gigabytes)."""
    max_title_chars: int = Field(1000, ge=2)
    """A longer title is cut at a word boundary and ends in "…"; the article is kept."""
    boilerplate_rules: str = "boilerplate.toml"
    """The boilerplate rules file (a relative path resolves against `config_dir`)."""


class HtmlSettings(_Section):
    """Article pages: .html/.htm files and the pages fetched for feed entries. Their main
    text is extracted in a child process of each worker, so that no page can hold its
    batch. A page over a cap is refused before parsing and goes to `dead` (`html_too_large`,
    `html_too_complex`; `article_html_too_...` for a feed entry without a summary); so does
    one whose extraction takes longer than `extract_timeout` (`extract_timeout`): its
    extraction process is killed and replaced."""

    max_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    """Largest page accepted, in bytes."""
    max_elements: int = Field(100_000, ge=100)
    """Most elements a page may have, counted before parsing (every '<' that does not start
    an end tag). Real article pages have a few thousand."""
    extract_timeout: float = Field(20, gt=0)
    """Seconds one page's extraction may take."""
    extract_memory_mb: int = Field(2048, ge=0)
    """Address space of the extraction process, in MiB (0: no cap). A page that needs more
    goes to `dead` as `extract_error`."""


class BoilerplateSettings(_Section):
    """Per-source learning of boilerplate lines; the rules themselves are in the file named
    by `ingest.boilerplate_rules`. A line among the first or last `zone_lines` lines of a
    source's documents is learned once it has been seen in at least `min_docs` kept
    (non-duplicate) documents of that source and in at least `min_share` of those counted
    since it was first seen; learned lines are then trimmed in unbroken runs at the top and
    bottom only."""

    learn: bool = True
    """Learn each source's boilerplate lines; false: the rules only."""
    min_docs: int = Field(5, ge=2)
    """Kept documents of its source a line must be seen in to be learned."""
    min_share: float = Field(0.005, ge=0, le=1)
    """Share of its source's documents counted since the line was first seen that it must be
    in to be learned."""
    prune_every: int = Field(1000, ge=10)
    """Lossy counting: every this many documents of a source, lines seen too rarely to ever
    be learned are forgotten, so memory per source stays bounded. Keep it at least 1 /
    min_share."""
    zone_lines: int = Field(10, ge=1, le=1000)
    """Lines counted at the top and at the bottom of each document."""
    link_memory: int = Field(4, ge=0, le=100)
    """Links to other articles of the same source: each document's title and lead are
    counted this many times at once (less than min_docs, so never learned), so that lossy
    counting keeps them for about link_memory x prune_every documents; a later document's
    line equal to one is a related-article link and is removed. 0: off."""


class WorkerSettings(_Section):
    """Celery task limits. The broker's visibility timeout must exceed the hard limit, so a
    running task is never handed to a second worker."""

    task_time_limit: int = Field(600, ge=1)
    """Hard per-task limit, in seconds."""
    task_soft_time_limit: int = Field(540, ge=1)
    """Soft per-task limit, in seconds (at most the hard one)."""
    visibility_timeout: int = Field(900, ge=1)
    """Seconds before the broker hands an unacknowledged task to another worker: longer than
    the hard limit. Also how long a batch held by a worker that died outright (SIGKILL,
    machine lost) waits to run again."""
    lost_batch_after: int = Field(120, ge=1)
    """Seconds a backfill job may go without progress, while one of its batches is neither
    queued nor held by any worker, before that batch is sent again: its message was lost
    between Redis and a worker (a connection cut, or Redis killed, just as a worker took
    it). Checked by the workers every min(30, this / 4) seconds, with a Redis broker."""

    @model_validator(mode="after")
    def _limits_in_order(self) -> WorkerSettings:
        if self.task_soft_time_limit > self.task_time_limit:
            raise ValueError(
                f"worker.task_soft_time_limit ({self.task_soft_time_limit} s) must not exceed "
                f"worker.task_time_limit ({self.task_time_limit} s)"
            )
        # Redis hands a message not acknowledged within the visibility timeout to another
        # worker: shorter than a task may run, and a slow batch would run twice at once.
        if self.visibility_timeout <= self.task_time_limit:
            raise ValueError(
                f"worker.visibility_timeout ({self.visibility_timeout} s) must be longer "
                f"than worker.task_time_limit ({self.task_time_limit} s)"
            )
        return self


class FeedSettings(_Section):
    """Feed polling and HTTP. The feeds themselves are listed in the file named by
    `config` (see config/feeds.toml), polled by `newsdedup beat` / `newsdedup run`."""

    config: str = "feeds.toml"
    """The feeds file (a relative path resolves against `config_dir`)."""
    default_interval: int = Field(900, ge=10)
    """Poll interval, in seconds, of a feed that sets none."""
    fetch_below_chars: int = Field(800, ge=0)
    """With fetch_article = "auto", an entry without full content whose text is shorter than
    this many characters is a summary: its article page is fetched instead."""
    max_articles_per_poll: int = Field(50, ge=0)
    """Article pages fetched per poll at most; the rest wait for the next poll."""
    seen_days: float = Field(90, ge=0)
    """How long a feed entry already accounted for is remembered (by guid, else link) and
    neither fetched nor processed again; 0: forever. Keep it longer than a feed keeps an
    item."""
    user_agent: str = "newsdedup/0.1 (+https://github.com/newsdedup/newsdedup)"
    """User-Agent of every request."""
    connect_timeout: float = Field(5, gt=0)
    """Seconds to connect."""
    read_timeout: float = Field(20, gt=0)
    """Seconds to wait for each read."""
    request_deadline: float = Field(60, gt=0)
    """Seconds a whole request may take, whatever the reads do: waiting for the host,
    connecting, redirects, retries, headers and body. A feed over it fails the poll
    (`feed_timeout`); an article page over it is tried again at the next polls like any
    timeout."""
    retries: int = Field(3, ge=0, le=20)
    """Extra attempts on timeouts, connection errors, bodies cut off in transit, 5xx and
    429 (never on other 4xx), after a backoff with full jitter: random(0, min(backoff_max,
    backoff_base x 2^n)), or the server's Retry-After (capped at backoff_max)."""
    backoff_base: float = Field(0.5, ge=0)
    """See `retries`, in seconds."""
    backoff_max: float = Field(30, ge=0)
    """See `retries`, in seconds."""
    max_redirects: int = Field(5, ge=0, le=50)
    """Redirects followed per request; each hop is checked like the first URL."""
    max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    """Largest response body accepted, after decompression."""
    host_delay: float = Field(1.0, ge=0)
    """Politeness: one request at a time per host across all workers, and this many seconds
    between the end of one and the start of the next."""


class SourcePolicy(BaseModel):
    """A feed's own `dedup = {...}` in feeds.toml (the same keys) wins over its
    source's."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    near_duplicates: bool = True
    """Match its documents against near-duplicates; false: exact matching only, and its
    documents are no near-duplicate candidates for others either."""
    threshold: float | None = Field(None, gt=0, le=1)
    """Its own J bar: it replaces `dedup.threshold`, `dedup.facts_threshold` and, when
    higher, `dedup.stale_threshold` for its documents; unset: the settings'."""
    updates: bool = True
    """Publish a changed text under a known guid or URL as an update (`update_of`,
    `version`); false: keep the first version only (later ones are exact duplicates)."""

    def script_arg(self, default_threshold: float) -> str:
        """The policy as the index script takes it (`DocumentArgs.policy`)."""
        threshold = default_threshold if self.threshold is None else self.threshold
        return f"{int(self.near_duplicates)} {threshold!r} {int(self.updates)}"


# The schemes of the data Redis's URL that redis-py connects with.
REDIS_SCHEMES = ("redis", "rediss", "unix")


class Settings(BaseSettings):
    """Everything newsdedup reads from its configuration."""

    model_config = SettingsConfigDict(
        env_prefix="NEWSDEDUP_",
        env_nested_delimiter="__",
        # A variable set to nothing (`NEWSDEDUP_DATA_DIR=`) means the default, as an unset
        # one: an empty data dir would be the current directory itself.
        env_ignore_empty=True,
        extra="ignore",
        use_attribute_docstrings=True,
    )
    # False for settings handed over by another process (`_Exported`).
    reads_environment: ClassVar[bool] = True

    prefix: str = "newsdedup:"
    """Every Redis key newsdedup writes starts with it. `reset` deletes only newsdedup's own
    key names after it, so `nd:` and `nd:b:` can share a Redis, but a prefix must not
    continue another with one of those names (`nd:ix:`, `nd:src:` next to `nd:`)."""
    data_dir: Path = Path(".newsdedup")
    """Where the embedded Redis keeps its files and log, and a command's worker its log (a
    relative path resolves against the working directory)."""
    # Not NEWSDEDUP_-prefixed: read from REDIS_URL / BROKER_URL in load_settings.
    redis_url: str | None = None
    """The data Redis (redis://, rediss://, unix://); unset: the embedded server in
    `data_dir`."""
    broker_url: str | None = None
    """The Celery broker (e.g. RabbitMQ); unset: the data Redis."""
    allow_private_networks: bool = False
    """Let feeds and article links reach loopback, private and link-local addresses. Off, a
    feed cannot make workers call internal services (SSRF)."""
    config_dir: Path = DEFAULTS_DIR
    """Where relative paths of the rules and feeds files resolve. To change the rules or the
    feeds, copy the file from config/ and point `ingest.boilerplate_rules` or `feeds.config`
    at the copy, or set this to a folder holding both."""
    streams: StreamSettings = StreamSettings()
    dedup: DedupSettings = DedupSettings()
    ingest: IngestSettings = IngestSettings()
    html: HtmlSettings = HtmlSettings()
    boilerplate: BoilerplateSettings = BoilerplateSettings()
    worker: WorkerSettings = WorkerSettings()
    feeds: FeedSettings = FeedSettings()
    sources: dict[str, SourcePolicy] = {}
    """Dedup policies by source name, a table each (`[sources."okaz"]`, the keys below);
    in the environment as JSON: NEWSDEDUP_SOURCES='{"okaz": {"updates": false}}'."""

    @field_validator("prefix")
    @classmethod
    def _prefix_not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("prefix must not be empty")
        return value

    @field_validator("redis_url", "broker_url")
    @classmethod
    def _url_usable(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Checked here so that a mistyped URL is one line, not a client's traceback. The
        # messages never quote the URL: it may hold a password.
        if value is None:
            return value
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises for a port that is not a number in range
        except ValueError as exc:
            raise ValueError(f"not a usable URL: {exc}") from None
        if not parts.scheme:
            raise ValueError("not a URL: it needs a scheme, such as redis://")
        if info.field_name == "redis_url" and parts.scheme not in REDIS_SCHEMES:
            schemes = ", ".join(f"{scheme}://" for scheme in REDIS_SCHEMES)
            raise ValueError(f"scheme {parts.scheme}:// is not one of {schemes}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the TOML values passed in as init kwargs.
        return (env_settings, init_settings) if cls.reads_environment else (init_settings,)

    def boilerplate_rules_path(self) -> Path:
        return self._config_path(self.ingest.boilerplate_rules)

    def feeds_config_path(self) -> Path:
        return self._config_path(self.feeds.config)

    def _config_path(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.config_dir / path


# The model's defaults, files and environment aside (model_construct reads neither): for a
# value object's default outside the settings, so that no default is written twice.
DEFAULTS: Settings = Settings.model_construct()


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return read_toml(path)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except ValueError as exc:
        raise ConfigError(f"config file {exc}") from None


def load_settings(config_file: Path | str | None = None) -> Settings:
    """Settings from the model's defaults, an optional TOML file and the environment."""
    file = config_file or os.environ.get("NEWSDEDUP_CONFIG")
    values = _read_toml(Path(file)) if file else {}
    if file:
        # A misspelt name would otherwise leave its default in place without a word.
        try:
            _check_names(Settings, values, "")
        except ConfigError as exc:
            raise ConfigError(f"config file {file}: {exc}") from None
    values["redis_url"] = os.environ.get("REDIS_URL") or values.get("redis_url")
    values["broker_url"] = os.environ.get("BROKER_URL") or values.get("broker_url")
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise _invalid(exc) from None
    except SettingsError as exc:
        # An environment variable holding a whole table (NEWSDEDUP_SOURCES='{...}') that is
        # not JSON: pydantic-settings names the field, its cause says what is wrong.
        field = re.search(r'field "(\w+)"', str(exc))
        what = f"NEWSDEDUP_{field.group(1).upper()}" if field else "an environment variable"
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise ConfigError(f"{what} is not valid JSON{cause}") from None


def _invalid(exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    # Our validators' messages come prefixed "Value error, ": the reader needs only ours.
    message = first["msg"].removeprefix("Value error, ")
    return ConfigError(f"invalid setting {where}: {message}")


# The settings a `newsdedup` command hands to the processes it starts, as JSON. Internal:
# set by the command, read by `process_settings`; not meant to be set by hand.
SETTINGS_ENV = "NEWSDEDUP_SETTINGS"


class _Exported(Settings):
    """Settings read back from NEWSDEDUP_SETTINGS: taken as they are. The exporting
    process applied its environment already; reading it again here could only differ."""

    reads_environment: ClassVar[bool] = False


def exported_settings(settings: Settings) -> dict[str, str]:
    """The environment that hands `settings` to a process this one starts."""
    return {SETTINGS_ENV: settings.model_dump_json()}


def imported_settings(text: str) -> Settings:
    """Settings exported by `exported_settings`, validated again."""
    try:
        taken = _Exported.model_validate_json(text)
    except ValidationError as exc:
        raise ConfigError(f"invalid {SETTINGS_ENV}: {exc.errors()[0]['msg']}") from None
    return _as_settings(taken)


def override_settings(settings: Settings, overrides: Mapping[str, Any]) -> Settings:
    """`settings` with `overrides` applied and validated again. `overrides` is nested like
    the TOML file (`{"prefix": "nd:", "dedup": {"threshold": 0.6}}`) and wins over the
    environment: a program's explicit choice. A name the model does not know is a
    ConfigError, as in the file (the environment ignores unknown names: other programs'
    variables may share the prefix)."""
    _check_names(Settings, overrides, "")
    try:
        taken = _Exported.model_validate(_merged(settings.model_dump(), overrides))
    except ValidationError as exc:
        raise _invalid(exc) from None
    return _as_settings(taken)


def _as_settings(taken: _Exported) -> Settings:
    """Validated settings as a plain `Settings` (one that reads its environment if copied)."""
    return Settings.model_construct(taken.model_fields_set, **dict(taken))


def _check_names(model: type[BaseModel], values: Mapping[str, Any], where: str) -> None:
    for name, value in values.items():
        field = model.model_fields.get(name)
        if field is None:
            close = difflib.get_close_matches(name, list(model.model_fields), n=1)
            hint = f" (did you mean {where}{close[0]}?)" if close else ""
            raise ConfigError(f"unknown setting {where}{name}{hint}")
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            if not isinstance(value, Mapping):
                raise ConfigError(f"setting {where}{name} is a section: give a mapping")
            _check_names(section, value, f"{where}{name}.")


def _merged(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for name, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(name), dict):
            out[name] = _merged(out[name], value)
        else:
            out[name] = value
    return out


_process_settings: Settings | None = None


def process_settings() -> Settings:
    """This process's settings: read on first use, the same object after. From the
    command that started this process (NEWSDEDUP_SETTINGS) when there is one, else from
    the files and environment (`load_settings`)."""
    global _process_settings
    if _process_settings is None:
        exported = os.environ.get(SETTINGS_ENV)
        _process_settings = imported_settings(exported) if exported else load_settings()
    return _process_settings


def use_settings(settings: Settings) -> Settings:
    """Make `settings` this process's (a command, once it has read --config)."""
    global _process_settings
    _process_settings = settings
    return settings
