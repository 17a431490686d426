"""What every command shares: the context, opening the runtime, and how failures end.

Expected failures (Redis unreachable, a missing path, bad config) print one line to
stderr and exit non-zero; tracebacks are for bugs only.
"""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar, cast

import click
import kombu.exceptions
import redis
from click.core import ParameterSource

from workers.config import ConfigError, Settings, use_settings
from workers.index.dedup import IndexMismatch
from workers.ingest.plan import PlanError
from workers.ops.connection import (
    Endpoints,
    RedisUnavailable,
    connected_settings,
    outage_reason,
    redact,
)
from workers.worker.runtime import Runtime, connected_runtime

if TYPE_CHECKING:
    from celery import Celery

EXIT_FAILURE = 1
EXIT_USAGE = 2

# --concurrency of every command that runs Celery worker processes (worker, run, backfill).
CONCURRENCY = click.IntRange(1, 256)

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"newsdedup: error: {message}", err=True)
    sys.exit(code)


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn the failures a user can act on into one line and a non-zero exit."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (RedisUnavailable, ConfigError, IndexMismatch) as exc:
            fail(str(exc))
        except PlanError as exc:
            fail(str(exc), EXIT_USAGE)
        except (redis.RedisError, kombu.exceptions.OperationalError) as exc:
            reason = outage_reason(exc)
            if reason is None and isinstance(exc, kombu.exceptions.OperationalError):
                fail(f"cannot reach the Celery broker: {redact(str(exc))}")
            if reason is None:
                raise  # a bug: the traceback is for us
            fail(f"Redis is {reason}")
        except KeyboardInterrupt:
            fail("interrupted", 130)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


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


@dataclass(slots=True)
class Context:
    settings: Settings


def open_runtime(ctx: Context) -> AbstractContextManager[tuple[Runtime, Endpoints]]:
    """Connect to the configured Redis, or start/attach the embedded one."""
    return connected_runtime(ctx.settings)


def command_app(ctx: Context, ends: Endpoints) -> Celery:
    """The Celery app for this command, on the Redis and broker of `ends`: this process's
    settings become the command's, connected, so that the app (built on first use) and
    every process the command starts use exactly them."""
    use_settings(connected_settings(ctx.settings, ends))
    from workers.worker.app import app

    return app


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
