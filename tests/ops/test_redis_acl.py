"""A Redis ACL that denies newsdedup's user a command or key (NOPERM).

Commands that process or queue work find out at start, in one line (before, `worker`
printed Celery's banner and a traceback and exited 0, and `backfill` queued batches no
worker could run). A permission taken away while workers run is waited out like an
outage: each task holds its batch, the workers log what the ACL refuses, and once it is
granted again the job ends with every input accounted for once.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis
from conftest import cli_env, run_cli, start_cli
from support import faults

from workers.index.keys import Keys

PREFIX = "acl:"
USER, PASSWORD = "newsdedup", "s3cret"
# Everything newsdedup needs: every command, every key, every channel.
GRANTED = ("on", f">{PASSWORD}", "~*", "&*", "+@all")


def _user_url(server: faults.PrivateRedis) -> str:
    return server.url.replace("redis://", f"redis://{USER}:{PASSWORD}@", 1)


@faults.needs_redis_server
def test_commands_that_write_refuse_a_user_the_acl_denies_scripts(
    tmp_path: Path, private_redis: faults.PrivateRedis
) -> None:
    admin = redis.Redis.from_url(private_redis.url)
    admin.acl_setuser(USER, enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"],
                      channels=["*"], commands=["+@all", "-evalsha", "-eval"])  # fmt: skip
    env = cli_env(redis_url=_user_url(private_redis), prefix=PREFIX)
    inputs = faults.write_inputs(tmp_path / "in", 20, seed=2)
    try:
        for args in (["backfill", str(inputs.folder)], ["worker", "--concurrency", "1"]):
            result = run_cli(args, env, timeout=60)
            assert result.returncode == 1, (args, result.stdout, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, (args, result.stderr)
            assert lines[0].startswith(
                f"newsdedup: error: Redis at redis://{USER}:***@127.0.0.1:"
            ), lines[0]
            assert lines[0].endswith(
                "is refusing this user a command or key (NOPERM): this user has no "
                "permissions to run the 'evalsha' command; grant it in the server's ACL"
            ), lines[0]
        assert admin.zcard(Keys(PREFIX).jobs) == 0, "a refused backfill recorded a job"
        # Reading needs no script.
        stats = run_cli(["job"], env, timeout=60)
        assert stats.returncode == 1 and "no jobs recorded yet" in stats.stderr, stats.stderr
    finally:
        admin.close()


@faults.needs_redis_server
def test_a_permission_taken_away_mid_job_is_waited_out(
    tmp_path: Path, private_redis: faults.PrivateRedis
) -> None:
    keys = Keys(PREFIX)
    admin = redis.Redis.from_url(private_redis.url)
    admin.execute_command("ACL", "SETUSER", USER, *GRANTED)
    env = cli_env(
        redis_url=_user_url(private_redis), prefix=PREFIX, NEWSDEDUP_INGEST__BATCH_SIZE="20"
    )
    inputs = faults.write_inputs(tmp_path / "in", 1500, seed=8)
    logs = faults.JobLogs(admin, keys, tmp_path)
    try:
        with faults.running_workers(env, tmp_path, 1, "WARNING"):
            log = tmp_path / "backfill.log"
            backfill = start_cli(["backfill", "--wait", str(inputs.folder)], env, log)

            def all_logs() -> str:
                return logs() + "\n----- backfill\n" + log.read_text("utf-8", "replace")

            faults.wait_until(lambda: admin.zcard(keys.jobs) == 1, 60, "the job", all_logs)
            logs.job_id = admin.zrange(keys.jobs, -1, -1)[0].decode()
            faults.wait_until(
                lambda: faults.processed_at_least(admin, keys, logs.job_id, 100),
                120,
                "100 inputs processed",
                all_logs,
            )
            admin.execute_command("ACL", "SETUSER", USER, "-evalsha")
            denied = "refusing this user a command or key (NOPERM)"
            faults.wait_until(
                lambda: denied in faults.worker_logs(tmp_path), 60, "the worker's wait", all_logs
            )
            held = faults.progress_or_none(admin, keys, logs.job_id)
            time.sleep(6)
            later = faults.progress_or_none(admin, keys, logs.job_id)
            assert held is not None and later is not None, all_logs()
            assert later.processed == held.processed < len(inputs.refs), (held, later)
            admin.execute_command("ACL", "SETUSER", USER, "+evalsha")
            backfill.wait(timeout=300)
            assert backfill.returncode == 0, all_logs()
            assert "Traceback" not in faults.worker_logs(tmp_path), all_logs()
            faults.check_accounting(admin, keys, logs.job_id, inputs, env)
    finally:
        admin.close()
