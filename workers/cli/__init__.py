"""The `newsdedup` command line: the click group, and one module per command group.

- backfill.py: `backfill`, `job`;
- feeds.py: `poll`, `feeds` (its table: feed_table.py);
- worker.py: `worker`, `beat`, `run` (Celery in this process);
- inspect.py: `stats`, `metrics`, `tail`;
- explain.py: `explain` (its work: workers/explain/);
- admin.py: `reset`, `index ...`, `boilerplate ...`;
- supervisor.py: the worker a command starts for itself, and following its progress;
- common.py: the context, opening the runtime, and how failures end (one line and a
  non-zero exit; tracebacks are for bugs only).

At import these modules load click and the standard library only; each command imports
what it needs when it runs, after checking its arguments (see common.py).
"""

from __future__ import annotations

from pathlib import Path

import click

from workers.cli import admin, backfill, explain, feeds, inspect, worker
from workers.cli.common import Context


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML file of settings (also NEWSDEDUP_CONFIG); see docs/configuration.md.",
)
@click.version_option(package_name="newsdedup")
@click.pass_context
def cli(click_ctx: click.Context, config_file: Path | None) -> None:
    """Streaming ingest and near-duplicate removal for news.

    Without REDIS_URL every command uses an embedded Redis kept in NEWSDEDUP_DATA_DIR
    (default ./.newsdedup), so later commands see the same state.
    """
    # Read when a command first needs them: `newsdedup CMD --help` loads no settings.
    click_ctx.obj = Context(config_file)


for command in (
    backfill.backfill,
    backfill.job,
    feeds.poll,
    feeds.feeds,
    worker.worker,
    worker.beat,
    worker.run,
    inspect.stats,
    inspect.metrics,
    inspect.tail,
    explain.explain,
    admin.reset,
    admin.index,
    admin.boilerplate,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="newsdedup")
