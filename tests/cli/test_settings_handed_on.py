"""Settings are read once per process and handed on: what `--config FILE` gives reaches
every process a command starts (its local worker, a worker or beat run in the command's
process and their pool children), not only the command itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, RedisTarget, cli_env, run_cli, start_worker, stop_workers

from workers.config import (
    SETTINGS_ENV,
    ConfigError,
    Settings,
    exported_settings,
    imported_settings,
    load_settings,
)
from workers.ops.connection import Endpoints, child_environment, connected_settings


def _config(folder: Path, prefix: str) -> Path:
    path = folder / "alt.toml"
    path.write_text(f'prefix = "{prefix}"\n\n[ingest]\nbatch_size = 2\n', "utf-8")
    return path


def test_backfill_with_config_runs_its_worker_with_that_file(tmp_path: Path) -> None:
    """The embedded backfill's worker gets the file: it used to wait at 0/5 until the
    timeout, its worker reading the default prefix."""
    config = _config(tmp_path, "alt:")
    env = cli_env(data_dir=tmp_path / "data")
    result = run_cli(["--config", str(config), "backfill", "seeds/", "--timeout", "120"], env)
    assert result.returncode == 0, result.stderr + (tmp_path / "data" / "worker.log").read_text()
    assert "5 inputs, 5 published" in result.stdout
    # Under alt: and nowhere else.
    alt = json.loads(run_cli(["--config", str(config), "stats", "--json"], env).stdout)
    default = json.loads(run_cli(["stats", "--json"], env).stdout)
    assert alt["streams"] == {"docs": 5, "duplicates": 0, "dead": 0}
    assert default["streams"] == {"docs": 0, "duplicates": 0, "dead": 0}
    assert default["seen"] == 0
    tail = run_cli(
        ["--config", str(config), "tail", "--stream", "docs", "--from-start", "--json"], env
    )
    assert len(tail.stdout.splitlines()) == 5


def test_worker_started_with_config_uses_that_file(
    tmp_path: Path, redis_target: RedisTarget, prefix: str
) -> None:
    """`newsdedup --config FILE worker` and its pool children run with the file's prefix."""
    config = _config(tmp_path, prefix)
    env = cli_env(redis_url=redis_target.url)  # no NEWSDEDUP_PREFIX: the file alone says it
    log = tmp_path / "worker.log"
    worker = start_worker(env, "cfg", log, options=("--config", str(config)))
    try:
        result = run_cli(
            ["--config", str(config), "backfill", "--wait", "seeds/", "--timeout", "120"], env
        )
        assert result.returncode == 0, result.stderr + log.read_text()
        assert "5 inputs, 5 published" in result.stdout
    finally:
        stop_workers([worker])
    client = redis_target.client
    assert client.xlen(f"{prefix}docs") == 5
    # The queue and the job lived under the file's prefix too.
    assert list(client.scan_iter(match=f"{prefix}job:*", count=1000))


def _in_child(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


_READ = (
    "from workers.config import process_settings as p; "
    "from workers.worker.app import app; "
    "print(p().prefix, p() is p(), app.conf.broker_transport_options['global_keyprefix'])"
)


def test_a_process_reads_the_settings_it_was_handed_over_files_and_environment(
    tmp_path: Path,
) -> None:
    # The app needs to know its Redis (it does not connect on import: nothing listens here).
    nowhere = "redis://127.0.0.1:1/0"
    handed = Settings(prefix="handed:", redis_url=nowhere)
    config = _config(tmp_path, "file:")
    env = cli_env(NEWSDEDUP_CONFIG=str(config), NEWSDEDUP_PREFIX="env:", REDIS_URL=nowhere)
    assert _in_child(_READ, env) == "env: True env:"
    assert _in_child(_READ, {**env, **exported_settings(handed)}) == "handed: True handed:"
    del env["NEWSDEDUP_PREFIX"]
    assert _in_child(_READ, env) == "file: True file:"


def test_exported_settings_come_back_equal_and_the_environment_is_not_applied_twice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NEWSDEDUP_CONFIG", raising=False)
    monkeypatch.delenv("NEWSDEDUP_PREFIX", raising=False)
    settings = load_settings(_config(tmp_path, "file:"))
    assert (settings.prefix, settings.ingest.batch_size) == ("file:", 2)
    monkeypatch.setenv("NEWSDEDUP_PREFIX", "other:")  # the child's environment differs
    back = imported_settings(exported_settings(settings)[SETTINGS_ENV])
    assert back == settings
    assert back.prefix == "file:"


def test_child_environment_hands_on_the_settings_with_the_commands_redis() -> None:
    settings = Settings(prefix="p:")
    ends = Endpoints("unix:///tmp/x.sock?db=0", "redis+socket:///tmp/x.sock", embedded=True)
    env = child_environment(ends, settings)
    back = imported_settings(env[SETTINGS_ENV])
    assert back == connected_settings(settings, ends)
    assert (back.prefix, back.redis_url, back.broker_url) == ("p:", ends.redis_url, ends.broker_url)


def test_bad_handed_settings_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=SETTINGS_ENV):
        imported_settings(json.dumps({"prefix": ""}))
