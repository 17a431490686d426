"""What every command shares: the context, opening the runtime, and how failures end.

Expected failures (Redis unreachable, a missing path, bad config) print one line to
stderr and exit non-zero; tracebacks are for bugs only.
"""

from __future__ import annotations

import functools
import math
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar, cast

import click
from click.core import ParameterSource

if TYPE_CHECKING:
    from celery import Celery

    from workers.config import Settings
    from workers.feeds.spec import FeedSpec
    from workers.ops.connection import Endpoints
    from workers.worker.runtime import Runtime

# Only click and the standard library here, and in every module of this package at
# import: `newsdedup --help` and `newsdedup CMD --help` load nothing else (no settings
# model, no Redis client, no Celery, no numpy); a command imports what it uses when it
# runs. tests/cli/test_startup.py holds this.

EXIT_FAILURE = 1
EXIT_USAGE = 2

# --concurrency of every command that runs Celery worker processes (worker, run, backfill).
CONCURRENCY = click.IntRange(1, 256)


# --timeout of the commands that queue tasks and wait for them (backfill, poll): seconds, > 0.
class _Seconds(click.FloatRange):
    """A number of seconds above 0 (FloatRange lets "nan" through: no comparison fails)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        return seconds


TIMEOUT = _Seconds(min=0, min_open=True)

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"newsdedup: error: {message}", err=True)
    sys.exit(code)


def _loaded(module: str, name: str) -> type[BaseException] | None:
    """The exception class `module.name` if that module is loaded, else None: an error
    cannot be an instance of a class never imported, and importing it to ask would cost a
    usage error the start-up this package avoids."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _is(exc: BaseException, module: str, name: str) -> bool:
    cls = _loaded(module, name)
    return cls is not None and isinstance(exc, cls)


def _explain(exc: Exception) -> None:
    """End with one line for the failures a user can act on; return for a bug."""
    if any(
        _is(exc, module, name)
        for module, name in (
            ("workers.ops.connection", "RedisUnavailable"),
            ("workers.index.dedup", "IndexMismatch"),
        )
    ):
        fail(str(exc))
    # A mistake in what the user gave (a settings, feeds or rules file, the paths): as
    # the settings' own errors, a usage error.
    if _is(exc, "workers.config", "ConfigError") or _is(exc, "workers.ingest.plan", "PlanError"):
        fail(str(exc), EXIT_USAGE)
    broker_error = _is(exc, "kombu.exceptions", "OperationalError")
    if broker_error or _is(exc, "redis.exceptions", "RedisError"):
        from workers.ops.connection import outage_reason, redact

        reason = outage_reason(exc)
        if reason is not None:
            fail(f"Redis is {reason}")
        if broker_error:
            fail(f"cannot reach the Celery broker: {redact(str(exc))}")


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn the failures a user can act on into one line and a non-zero exit."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as exc:
            _explain(exc)
            raise  # a bug: the traceback is for us

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


class Context:
    """What the group passes to every command: the settings, read on first use (so that
    `newsdedup CMD --help` reads no file and loads no settings model)."""

    def __init__(self, config_file: Path | None) -> None:
        self.config_file = config_file
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from workers.config import ConfigError, load_settings, use_settings

            try:
                self._settings = use_settings(load_settings(self.config_file))
            except ConfigError as exc:
                fail(str(exc), EXIT_USAGE)
        return self._settings


def old_option_name(old: str, new: str, dest: str, **option: Any) -> Callable[[F], F]:
    """Accept `old`, the name option `new` had before, so that scripts using it keep
    working: hidden from --help, its value goes to `new`'s parameter `dest`. Giving both
    names with different values is a usage error. `option`: `new`'s type and the like."""
    alias_dest = f"old_{dest}"

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            old_value = kwargs.pop(alias_dest)
            if old_value is not None:
                click_ctx = click.get_current_context()
                given = click_ctx.get_parameter_source(dest) == ParameterSource.COMMANDLINE
                if given and kwargs[dest] != old_value:
                    fail(f"{old} is the old name of {new}: give one of them", EXIT_USAGE)
                kwargs[dest] = old_value
            return func(*args, **kwargs)

        hidden = click.option(old, alias_dest, hidden=True, default=None, **option)
        return cast(F, hidden(wrapper))

    return decorate


def open_runtime(
    ctx: Context,
    *,
    rules: bool = False,
    feeds: tuple[FeedSpec, ...] | None = None,
    writes: bool = False,
) -> AbstractContextManager[tuple[Runtime, Endpoints]]:
    """Connect to the configured Redis, or start/attach the embedded one (see
    `connected_runtime`: with `rules`, the boilerplate rules are read before any server
    starts; `feeds`, the feeds config when the command has read it already; `writes`, the
    command processes or queues work, which a Redis that evicts keys would lose)."""
    from workers.worker.runtime import connected_runtime

    return connected_runtime(ctx.settings, rules=rules, feeds=feeds, writes=writes)


def command_app(ctx: Context, ends: Endpoints) -> Celery:
    """The Celery app for this command, on the Redis and broker of `ends`: this process's
    settings become the command's, connected, so that the app (built on first use) and
    every process the command starts use exactly them."""
    from workers.config import use_settings
    from workers.ops.connection import connected_settings

    use_settings(connected_settings(ctx.settings, ends))
    from workers.worker.app import app

    return app


def check_waiting(settings: Settings, wait: bool | None, timeout: float | None, what: str) -> bool:
    """Whether a command that queues tasks (`backfill`, `poll`) waits for them, after
    refusing option combinations that cannot do what they say: usage errors, before any
    server starts."""
    embedded = not settings.redis_url
    if embedded and wait is False:
        fail(
            f"--no-wait needs REDIS_URL: on the embedded Redis {what} runs its own worker "
            "and waits for it",
            EXIT_USAGE,
        )
    waits = embedded or bool(wait)
    timeout_needs_waiting(timeout, waits)
    return waits


def timeout_needs_waiting(timeout: float | None, waits: bool) -> None:
    """--timeout without waiting would be ignored without a word: a usage error."""
    if timeout is not None and not waits:
        fail("--timeout is how long --wait waits: pass --wait too", EXIT_USAGE)


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM end a long-running command with KeyboardInterrupt, also when the
    process started with SIGINT ignored (a shell's background job). Only the first: a
    repeated signal must not cut short the stopping of the worker and the server."""

    def interrupt(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def confirm(yes: bool, action: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"this will {action}; pass --yes to confirm", EXIT_USAGE)
    click.confirm(f"This will {action}. Continue?", abort=True)
