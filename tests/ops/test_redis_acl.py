"""A Redis ACL that denies newsdedup's user a command or key (NOPERM).

Commands that process or queue work find out at start, in one line (before, `worker`
printed Celery's banner and a traceback and exited 0, and `backfill` queued batches no
worker could run). A permission taken away while workers run is waited out like an
outage: each task holds its batch, the workers log what the ACL refuses, and once it is
granted again the job ends with every input accounted for once.
"""

from __future__ import annotations

from pathlib import Path

import redis
from conftest import cli_env, run_cli
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
    try:
        faults.held_mid_job(
            admin,
            keys,
            tmp_path,
            env,
            inputs,
            fault=lambda: admin.execute_command("ACL", "SETUSER", USER, "-evalsha"),
            repair=lambda: admin.execute_command("ACL", "SETUSER", USER, "+evalsha"),
            worker_says="Redis is refusing this user a command or key (NOPERM): this user "
            "has no permissions to run the 'evalsha' command; grant it in the server's ACL",
        )
    finally:
        admin.close()
