"""Start-up: what `newsdedup` loads before it does anything, how fast `--help` answers, and
that a command's arguments are checked before any server or worker starts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SEEDS, cli_env, run_cli
from support.faults import PrivateRedis
from support.loopback import LoopbackServer

# Modules `import workers.cli` must not load: each costs `--help` a tenth of a second or
# more (scipy, through datasketch, more than a second).
HEAVY = (
    "scipy",
    "datasketch",
    "celery",
    "kombu",
    "redis",
    "numpy",
    "pydantic",
    "pydantic_settings",
    "rich",
    "httpx",
    "trafilatura",
    "feedparser",
)

# Every command and group, as `newsdedup ... --help` names it.
COMMANDS = (
    [],
    ["backfill"],
    ["job"],
    ["poll"],
    ["feeds"],
    ["worker"],
    ["beat"],
    ["run"],
    ["stats"],
    ["metrics"],
    ["tail"],
    ["explain"],
    ["reset"],
    ["index"],
    ["index", "stats"],
    ["index", "reset"],
    ["index", "rebuild"],
    ["boilerplate"],
    ["boilerplate", "show"],
    ["boilerplate", "reset"],
)
# `--help` of a command in CI: typically 0.1 s here; more would mean a heavy import again.
HELP_SECONDS = 1.0


def loaded_after(code: str) -> set[str]:
    """The top-level packages loaded by a fresh interpreter after running `code`."""
    listing = "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    script = f"{code}\nimport json, sys\n{listing}"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_importing_the_cli_loads_click_and_the_standard_library_only() -> None:
    assert sorted(loaded_after("import workers.cli") & set(HEAVY)) == []


def test_the_worker_path_never_imports_scipy_or_datasketch() -> None:
    """A worker's runtime, everything built, fingerprinting a document: datasketch's scheme
    is computed here (tests/clean/test_fingerprint.py compares it with datasketch's)."""
    code = (
        "import os; os.environ['REDIS_URL'] = 'redis://127.0.0.1:1/0'  # named, not reached\n"
        "import workers.worker.tasks\n"
        "from workers.config import process_settings\n"
        "from workers.worker.runtime import build_runtime\n"
        "rt = build_runtime(process_settings(), 'redis://127.0.0.1:1/0').load_all()\n"
        "assert rt.fingerprinter.fingerprint(['كلمة%d' % i for i in range(50)]).signature\n"
        "assert rt.index.params.bands_rows == (42, 3)\n"
    )
    loaded = loaded_after(code)
    assert "celery" in loaded and "numpy" in loaded  # it did load the worker
    assert not loaded & {"scipy", "datasketch"}


Run = tuple[float, subprocess.CompletedProcess[str]]


def _seconds(args: list[str], env: dict[str, str]) -> Run:
    started = time.perf_counter()
    result = run_cli(args, env, timeout=60)
    return time.perf_counter() - started, result


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "newsdedup")
def test_help_is_fast(command: list[str], tmp_path: Path) -> None:
    env = cli_env(data_dir=tmp_path / "data")
    # The best of three: one slow run on a busy machine is not a slow start.
    best, result = min((_seconds([*command, "--help"], env) for _ in range(3)), key=lambda r: r[0])
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    assert best < HELP_SECONDS, f"`newsdedup {' '.join(command)} --help` took {best:.2f}s"
    assert not (tmp_path / "data").exists()  # no settings read, no server started


# Argument mistakes found before any server or worker starts: the data dir is never
# even created, nothing connects to REDIS_URL (nothing listens there: a command that
# tried would fail with exit 1, "cannot reach Redis"), and the answer comes at once.
NOBODY = "redis://127.0.0.1:1/0"
USAGE_ERRORS = [
    (["poll", "nosuchfeed"], None, "neither an http(s) URL nor a feed"),
    (["poll", "https://example.org/feed", "nosuchfeed"], None, "neither an http(s) URL"),
    (["poll", "nosuchfeed", "--wait"], NOBODY, "neither an http(s) URL nor a feed"),
    (["poll", "https://example.org/feed", "--no-wait"], None, "--no-wait needs REDIS_URL"),
    (["poll", "http://[::1", "--wait"], NOBODY, "neither an http(s) URL nor a feed"),
    (["poll", "http://127.0.0.1:99999/x", "--wait"], NOBODY, "neither an http(s) URL"),
    (["poll", "http://example.org:abc/x", "--wait"], NOBODY, "neither an http(s) URL"),
    (["backfill", "/nonexistent/newsdedup-input"], None, "/nonexistent/newsdedup-input"),
    (["backfill", "/nonexistent/newsdedup-input"], NOBODY, "/nonexistent/newsdedup-input"),
    (["backfill", str(SEEDS), "--no-wait"], None, "--no-wait needs REDIS_URL"),
    (["backfill", str(SEEDS), "--timeout", "5"], NOBODY, "--timeout"),
    (["backfill", str(SEEDS), "--wait", "--timeout", "0"], NOBODY, "--timeout"),
    (["backfill", str(SEEDS), "--wait", "--concurrency", "2"], NOBODY, "--concurrency"),
    (["backfill", str(SEEDS), "--wait", "--timeout", "nan"], NOBODY, "--timeout"),
    (["job", "--wait", "--timeout", "nan"], NOBODY, "--timeout"),
    (["job", "--wait", "--timeout", "-5"], NOBODY, "--timeout"),
    (["job", "--timeout", "5"], NOBODY, "--timeout is how long --wait waits"),
    (["tail", "--group", "g"], None, "--group and --consumer go together"),
    (["boilerplate", "reset"], None, "name one SOURCE or pass --all"),
    (["boilerplate", "reset", "src", "--all"], None, "name one SOURCE or pass --all, not both"),
    (["backfill"], None, "give the PATHS to backfill (folders or files), or --resume JOB"),
    (["backfill", str(SEEDS), ""], None, "an empty path was given: name a folder or file"),
    (["reset"], None, "pass --yes"),
    (["--config", "/nonexistent/newsdedup.toml", "stats"], None, "newsdedup.toml"),
    (["stats"], "redis://:s3cret@127.0.0.1:99999/0", "redis_url: not a usable URL: Port out"),
    (["stats"], "http://:s3cret@127.0.0.1:6379/0", "scheme http:// is not one of redis://"),
    (["backfill", str(SEEDS)], "127.0.0.1:6379", "not a URL: it needs a scheme, such as redis://"),
]


@pytest.mark.parametrize(
    ("args", "redis_url", "message"), USAGE_ERRORS, ids=[" ".join(a) for a, _, _ in USAGE_ERRORS]
)
def test_usage_errors_come_before_any_server_starts(
    args: list[str], redis_url: str | None, message: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    seconds, result = _seconds(args, cli_env(data_dir=data_dir, redis_url=redis_url))
    assert result.returncode == 2, (result.stdout, result.stderr)
    # One line of ours, or click's usage message ending in its one "Error:" line.
    last = result.stderr.strip().splitlines()[-1]
    assert message in last and last.startswith(("newsdedup: error:", "Error:")), result.stderr
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert not data_dir.exists(), "a server was started for a command that could not run"
    assert seconds < 5.0, f"{args}: {seconds:.1f}s to a usage error"


def test_a_misspelt_name_in_the_config_file_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "newsdedup.toml"
    config.write_text("[dedup]\nthreshhold = 0.6\n[ingst]\nbatch_size = 10\n", "utf-8")
    result = run_cli(["--config", str(config), "stats"], cli_env(data_dir=tmp_path / "data"))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip() == (
        f"newsdedup: error: config file {config}: unknown setting dedup.threshhold "
        "(did you mean dedup.threshold?)"
    )
    assert not (tmp_path / "data").exists()


def test_planning_loads_no_html_reader_nor_celery() -> None:
    """`newsdedup backfill` plans before any worker reads a page: planning (which asks the
    loader whether a JSON object wraps records) imports neither the HTML reader nor
    Celery."""
    code = (
        "import json, sys\n"
        "import workers.ingest.plan\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.splitlines()[-1]))
    assert "workers" in loaded  # it did run
    assert sorted(loaded & {"lxml", "trafilatura", "celery", "kombu", "httpx"}) == []


def test_stats_loads_neither_the_pipeline_nor_celery(tmp_path: Path) -> None:
    """`stats` reads counters: no numpy, no Celery, no HTTP client, no HTML reader, no
    rules; just the settings, redis-py and rich. Its start-up is then mostly the
    embedded server's (docs/operations.md, Start-up)."""
    code = (
        "import runpy, sys\n"
        "sys.argv = ['newsdedup', 'stats', '--json']\n"
        "try:\n"
        "    runpy.run_module('workers.cli', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
    )
    env = cli_env(data_dir=tmp_path / "data")
    listing = "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", f"{code}import json\n{listing}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.splitlines()[-1]))
    assert "redis" in loaded  # it did run
    heavy = {"numpy", "scipy", "datasketch", "celery", "kombu", "httpx", "trafilatura"}
    assert sorted(loaded & heavy) == []
    # Typically 0.5 s here; before this test existed, 1.5 s on an empty data dir.
    assert seconds < 3.0, f"stats took {seconds:.1f}s on an empty data dir"


@pytest.mark.parametrize("command", [["stats"], ["backfill", str(SEEDS)], ["worker"]])
def test_a_redis_url_naming_a_database_the_server_lacks_is_one_line(
    private_redis: PrivateRedis, command: list[str], tmp_path: Path
) -> None:
    url = private_redis.url.removesuffix("/0") + "/99"
    result = run_cli(command, cli_env(redis_url=url, data_dir=tmp_path), timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"newsdedup: error: Redis at {url} has no database of the number its URL gives (the "
        "URL's path, /0 to /15 on a default server: the server's `databases` setting)"
    )


@pytest.mark.parametrize("command", [["stats"], ["backfill", str(SEEDS)]])
def test_a_redis_url_naming_a_web_server_is_one_line(
    loopback: LoopbackServer, command: list[str], tmp_path: Path
) -> None:
    url = loopback.url("/").replace("http://", "redis://").rstrip("/") + "/0"
    result = run_cli(command, cli_env(redis_url=url, data_dir=tmp_path), timeout=60)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"newsdedup: error: what answers at {url} does not speak Redis's")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"NEWSDEDUP_CONFIG": "<bad_toml>"}, "not UTF-8 text"),
        ({"NEWSDEDUP_CONFIG": "<folder>"}, "a directory, not a TOML file"),
        ({"NEWSDEDUP_SOURCES": "{bad"}, "NEWSDEDUP_SOURCES is not valid JSON"),
        ({"NEWSDEDUP_DEDUP": "{bad"}, "NEWSDEDUP_DEDUP is not valid JSON"),
        ({"NEWSDEDUP_INGEST__BOILERPLATE_RULES": "<missing>"}, "no such rules file"),
        ({"NEWSDEDUP_INGEST__BOILERPLATE_RULES": "<folder>"}, "a directory, not a TOML file"),
        ({"NEWSDEDUP_CONFIG_DIR": "<missing>"}, "no such rules file"),
    ],
)
def test_unreadable_settings_are_one_line(
    setting: dict[str, str], message: str, tmp_path: Path
) -> None:
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_bytes(b"\xff\xfe prefix = 1\n")
    places = {"bad_toml": bad_toml, "folder": tmp_path, "missing": tmp_path / "nowhere"}
    values = dict(setting)
    for name, place in places.items():
        values = {k: v.replace(f"<{name}>", str(place)) for k, v in values.items()}
    env = cli_env(data_dir=tmp_path / "data", **values)
    result = run_cli(["backfill", str(SEEDS)], env, timeout=120)
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("newsdedup: error:") and message in line, line


def test_an_empty_data_dir_variable_means_the_default(tmp_path: Path) -> None:
    """NEWSDEDUP_DATA_DIR= (set to nothing) is ./.newsdedup, not the current directory
    itself strewn with the server's files."""
    env = {**cli_env(), "NEWSDEDUP_DATA_DIR": ""}
    result = run_cli(["stats", "--json"], env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".newsdedup"]


def test_a_server_that_takes_the_connection_and_never_answers_is_one_line(
    tmp_path: Path,
) -> None:
    """A stopped (SIGSTOP) or wedged Redis, or a silent listener: the command gives up
    after its probe's 10 s with one line, instead of waiting for ever."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    taken: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not done.is_set():
            try:
                taken.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        seconds, result = _seconds(["stats"], cli_env(redis_url=url, data_dir=tmp_path))
    finally:
        done.set()
        thread.join()
        for conn in taken:
            conn.close()
        listener.close()
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"newsdedup: error: Redis at {url} took the connection but did not answer within "
        "10 s (a stopped or wedged server, or not Redis)"
    )
    assert seconds < 30


@pytest.mark.parametrize("command", [["backfill", str(SEEDS)], ["worker"]])
def test_an_unreachable_redis_broker_is_one_line_at_once(
    private_redis: PrivateRedis, command: list[str], tmp_path: Path
) -> None:
    """The data Redis answers, the separate broker does not: said at once, naming the
    broker (a backfill waited for ever to send its first batch, blaming "Redis")."""
    env = cli_env(redis_url=private_redis.url, data_dir=tmp_path, BROKER_URL=NOBODY)
    seconds, result = _seconds(command, env)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(
        f"newsdedup: error: the Celery broker (BROKER_URL): cannot reach Redis at {NOBODY}"
    )
    assert seconds < 20
