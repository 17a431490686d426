"""Typed settings: config/default.toml, then a --config TOML file, then environment.

Precedence (highest first): NEWSDEDUP_* environment variables, the file given with
--config (or NEWSDEDUP_CONFIG), config/default.toml. Connection URLs are read from
REDIS_URL / BROKER_URL so they match what every Redis/Celery user already sets.

A process reads its settings once, with `process_settings()`. A `newsdedup` command reads
them with `load_settings(--config)`, makes them its own (`use_settings`) and hands them on
to every process it starts in NEWSDEDUP_SETTINGS (`exported_settings`): its worker and
beat then run with exactly the command's settings, `--config` included, whatever their
own environment. A process started otherwise (`celery -A workers worker` by hand) loads
them from the files and environment it was given.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
DEFAULT_CONFIG_FILE = CONFIG_DIR / "default.toml"


class ConfigError(Exception):
    """A configuration problem the user can fix; the message is one line."""


class StreamSettings(BaseModel):
    docs_maxlen: int = Field(1_000_000, ge=0)
    duplicates_maxlen: int = Field(1_000_000, ge=0)
    dead_maxlen: int = Field(100_000, ge=0)


class DedupSettings(BaseModel):
    threshold: float = Field(0.5, gt=0, le=1)
    containment_threshold: float = Field(0.8, gt=0, le=1)
    lsh_threshold: float = Field(0.25, gt=0, le=1)
    num_perm: int = Field(128, ge=16, le=1024)
    shingle_size: int = Field(3, ge=1, le=10)
    min_shingles: int = Field(5, ge=1)
    seed: int = 1
    max_candidates: int = Field(64, ge=1)
    retention_days: float = Field(30, ge=0)
    retention_clock: Literal["ingested", "published"] = "ingested"
    sweep_limit: int = Field(4, ge=1, le=1000)
    facts_threshold: float = Field(0.3, gt=0, le=1)
    facts_agreement: float = Field(0.6, gt=0, le=1)
    facts_min_count: int = Field(2, ge=1)
    max_gap_hours: float = Field(48, ge=0)
    stale_threshold: float = Field(0.7, gt=0, le=1)
    rare_floor: int = Field(10, ge=0)
    rare_ratio: float = Field(0.001, ge=0, le=1)
    facts_bits: int = Field(20, ge=10, le=24)
    facts_generation: int = Field(50_000, ge=0)


class IngestSettings(BaseModel):
    """Backfill batching and the caps on what one input may cost (config/default.toml)."""

    batch_size: int = Field(200, ge=1, le=100_000)
    max_file_bytes: int = Field(50 * 1024 * 1024, ge=1)
    max_record_bytes: int = Field(10 * 1024 * 1024, ge=1)
    max_decompressed_bytes: int = Field(2 * 1024**3, ge=1)
    max_title_chars: int = Field(1000, ge=2)
    boilerplate_rules: str = "boilerplate.toml"


class BoilerplateSettings(BaseModel):
    learn: bool = True
    min_docs: int = Field(5, ge=2)
    min_share: float = Field(0.005, ge=0, le=1)
    prune_every: int = Field(1000, ge=10)
    zone_lines: int = Field(10, ge=1, le=1000)
    link_memory: int = Field(4, ge=0, le=100)


class FeedSettings(BaseModel):
    """Feed polling and HTTP (see the [feeds] section of config/default.toml)."""

    config: str = "feeds.toml"
    default_interval: int = Field(900, ge=10)
    fetch_below_chars: int = Field(800, ge=0)
    max_articles_per_poll: int = Field(50, ge=0)
    seen_days: float = Field(90, ge=0)
    user_agent: str = "newsdedup/0.1 (+https://github.com/newsdedup/newsdedup)"
    connect_timeout: float = Field(5, gt=0)
    read_timeout: float = Field(20, gt=0)
    retries: int = Field(3, ge=0, le=20)
    backoff_base: float = Field(0.5, ge=0)
    backoff_max: float = Field(30, ge=0)
    max_redirects: int = Field(5, ge=0, le=50)
    max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    request_deadline: float = Field(60, gt=0)
    host_delay: float = Field(1.0, ge=0)


class HtmlSettings(BaseModel):
    """Bounds on article extraction (see the [html] section of config/default.toml)."""

    max_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_elements: int = Field(100_000, ge=100)
    extract_timeout: float = Field(20, gt=0)
    extract_memory_mb: int = Field(2048, ge=0)


class WorkerSettings(BaseModel):
    task_time_limit: int = Field(600, ge=1)
    task_soft_time_limit: int = Field(540, ge=1)
    visibility_timeout: int = Field(900, ge=1)

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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NEWSDEDUP_", env_nested_delimiter="__", extra="ignore"
    )

    prefix: str = "newsdedup:"
    data_dir: Path = Path(".newsdedup")
    streams: StreamSettings = StreamSettings()
    dedup: DedupSettings = DedupSettings()
    ingest: IngestSettings = IngestSettings()
    boilerplate: BoilerplateSettings = BoilerplateSettings()
    worker: WorkerSettings = WorkerSettings()
    feeds: FeedSettings = FeedSettings()
    html: HtmlSettings = HtmlSettings()
    # Feeds and article links may point at loopback, private or link-local addresses only
    # when this is on (NEWSDEDUP_ALLOW_PRIVATE_NETWORKS=1): a feed must not reach internal
    # services (SSRF).
    allow_private_networks: bool = False
    # Not NEWSDEDUP_-prefixed: read from REDIS_URL / BROKER_URL in load_settings.
    redis_url: str | None = None
    broker_url: str | None = None
    config_dir: Path = CONFIG_DIR

    @field_validator("prefix")
    @classmethod
    def _prefix_not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("prefix must not be empty")
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
        return (env_settings, init_settings)

    def boilerplate_rules_path(self) -> Path:
        return self._config_path(self.ingest.boilerplate_rules)

    def feeds_config_path(self) -> Path:
        return self._config_path(self.feeds.config)

    def _config_path(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.config_dir / path


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(config_file: Path | str | None = None) -> Settings:
    """Build Settings from the defaults file, an optional override file and the env."""
    values = _read_toml(DEFAULT_CONFIG_FILE) if DEFAULT_CONFIG_FILE.exists() else {}
    override = config_file or os.environ.get("NEWSDEDUP_CONFIG")
    if override:
        values = _merge(values, _read_toml(Path(override)))
    values["redis_url"] = os.environ.get("REDIS_URL") or values.get("redis_url")
    values["broker_url"] = os.environ.get("BROKER_URL") or values.get("broker_url")
    try:
        return Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None


# The settings a `newsdedup` command hands to the processes it starts, as JSON. Internal:
# set by the command, read by `process_settings`; not meant to be set by hand.
SETTINGS_ENV = "NEWSDEDUP_SETTINGS"


class _Exported(Settings):
    """Settings read back from NEWSDEDUP_SETTINGS: taken as they are. The exporting
    process applied its environment already; reading it again here could only differ."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def exported_settings(settings: Settings) -> dict[str, str]:
    """The environment that hands `settings` to a process this one starts."""
    return {SETTINGS_ENV: settings.model_dump_json()}


def imported_settings(text: str) -> Settings:
    """Settings exported by `exported_settings`, validated again."""
    try:
        taken = _Exported.model_validate_json(text)
    except ValidationError as exc:
        raise ConfigError(f"invalid {SETTINGS_ENV}: {exc.errors()[0]['msg']}") from None
    return Settings.model_construct(taken.model_fields_set, **dict(taken))


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
