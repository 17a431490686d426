"""The deploy recipes must not drift from the code: they parse, their commands and options
exist, the one-beat rule holds, autoscaling watches the real queue keys, and the alert
rules only use metrics we export."""

from __future__ import annotations

import configparser
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from conftest import ROOT, RedisTarget

from workers.config import Settings
from workers.worker.app import FETCH_QUEUE, INGEST_QUEUE, make_app

# The recipes read as files are pure checks; the ones running commands or Redis are not.
unit = pytest.mark.unit

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"

# Commands whose unknown options are passed on to `celery worker` / `celery beat`.
CELERY_PASSTHROUGH = {"worker": "worker", "run": "worker", "beat": "beat"}
# Prometheus' own series an alert may use besides ours.
PROMETHEUS_BUILTINS = {"up"}
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def _default_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a deployment without overrides gets them (whatever this shell sets)."""
    monkeypatch.delenv("NEWSDEDUP_PREFIX", raising=False)
    return Settings()


def _yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])


def _k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def _containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    yield from pod.get("containers", [])
    yield from pod.get("initContainers", [])


def _is_newsdedup(argv: list[str]) -> bool:
    return bool(argv) and Path(argv[0]).name == "newsdedup"


def _deployment_running(subcommand: str) -> dict[str, Any]:
    found = [
        doc
        for _, doc in _k8s_docs()
        if doc["kind"] == "Deployment"
        for container in _containers(doc)
        if (argv := [*container.get("command", []), *container.get("args", [])])
        and _is_newsdedup(argv)
        and argv[1] == subcommand
    ]
    assert len(found) == 1, f"expected one Deployment running `newsdedup {subcommand}`"
    return found[0]


def _systemd_units() -> list[tuple[Path, configparser.ConfigParser]]:
    units = []
    for path in sorted(SYSTEMD.glob("*.service")):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(path.read_text(), source=str(path))
        units.append((path, parser))
    return units


@cache
def _cli_commands() -> dict[str, set[str] | None]:
    """Top-level subcommands of `newsdedup`, with their own subcommands for groups."""
    from workers.cli import cli

    return {
        name: set(command.commands) if isinstance(command, click.Group) else None
        for name, command in cli.commands.items()
    }


# A mention in prose, comments or code blocks: `newsdedup <word> ...` on one line, the word
# being a real subcommand (so "the newsdedup image" is not one).
_MENTION = re.compile(r"(?<![\w.-])newsdedup[ \t]+([a-z][\w-]*)([^`#\n]*)")


def _mentions(text: str) -> list[list[str]]:
    commands = []
    for match in _MENTION.finditer(text):
        if match.group(1) not in _cli_commands():
            continue
        rest = match.group(2)
        try:
            words = shlex.split(rest)
        except ValueError:  # an unbalanced quote of the surrounding shell line
            words = rest.split()
        commands.append(["newsdedup", match.group(1), *words])
    return commands


def _newsdedup_commands() -> list[list[str]]:
    """Every `newsdedup ...` command line the deploy recipes run or tell people to run."""
    commands = []
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        command = service.get("command")
        if command and _is_newsdedup(command):
            commands.append(command)
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("CMD ") and _is_newsdedup(command := json.loads(line[4:])):
            commands.append(command)
    for _, unit in _systemd_units():
        argv = shlex.split(unit["Service"]["ExecStart"])
        if _is_newsdedup(argv):
            commands.append(argv)
    for _, doc in _k8s_docs():
        for container in _containers(doc):
            argv = [*container.get("command", []), *container.get("args", [])]
            if _is_newsdedup(argv):
                commands.append(argv)
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file():
            commands += _mentions(path.read_text())
    return commands


@cache
def _help(*argv: str) -> subprocess.CompletedProcess[str]:
    # Like every recipe, with REDIS_URL set: `celery -A workers` needs to know its Redis
    # before it can load the app (it does not connect for --help; nothing listens here).
    return subprocess.run(
        [sys.executable, "-m", *argv, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"},
    )


def _names_option(help_text: str, option: str) -> bool:
    """Whether `--help` output lists the option itself (`--host` is not `--hostname`)."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text) is not None


def test_recipes_name_real_commands() -> None:
    commands = _newsdedup_commands()
    assert len(commands) >= 10
    problems = []
    for command in {tuple(c) for c in commands}:
        path = [command[1]]
        subcommands = _cli_commands().get(command[1])
        if subcommands and len(command) > 2 and command[2] in subcommands:
            path.append(command[2])  # a group: `index rebuild`, `boilerplate show`
        result = _help("workers.cli", *path)
        if result.returncode != 0:
            problems.append(f"{' '.join(command)}: `newsdedup {' '.join(path)}` fails")
            continue
        for option in (arg.split("=")[0] for arg in command[1 + len(path) :]):
            if not option.startswith("--") or _names_option(result.stdout, option):
                continue
            passthrough = CELERY_PASSTHROUGH.get(path[0])
            celery_help = _help("celery", "-A", "workers", passthrough) if passthrough else None
            if celery_help and _names_option(celery_help.stdout, option):
                continue
            problems.append(f"{' '.join(command)}: no option {option}")
    assert not problems, "\n".join(sorted(problems))


@unit
def test_every_yaml_file_parses() -> None:
    files = _yaml_files()
    assert len(files) >= 10
    for path in files:
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        assert docs, f"{path} is empty"
        assert all(isinstance(doc, dict) for doc in docs), path


@unit
def test_k8s_documents_are_named() -> None:
    docs = _k8s_docs()
    assert len(docs) >= 8
    for path, doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), path
        assert doc.get("metadata", {}).get("name"), (path, doc["kind"])


@unit
def test_exactly_one_beat_in_k8s() -> None:
    beat = _deployment_running("beat")
    assert beat["spec"]["replicas"] == 1
    # RollingUpdate would start the new beat before the old one stops.
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    scaled = {
        doc["spec"]["scaleTargetRef"]["name"]
        for _, doc in _k8s_docs()
        if doc["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")
    }
    assert beat["metadata"]["name"] not in scaled


@unit
def test_keda_scales_the_workers_on_the_queue_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = _default_settings(monkeypatch).prefix
    worker = _deployment_running("worker")
    docs = [doc for _, doc in _k8s_docs()]
    (scaled,) = [doc for doc in docs if doc["kind"] == "ScaledObject"]
    target = scaled["spec"]["scaleTargetRef"]
    assert target["name"] == worker["metadata"]["name"]
    assert target.get("kind", "Deployment") == "Deployment"
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    assert sorted(t["metadata"]["listName"] for t in triggers) == sorted(
        [prefix + INGEST_QUEUE, prefix + FETCH_QUEUE]
    )
    auths = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "TriggerAuthentication"}
    assert all(t["authenticationRef"]["name"] in auths for t in triggers)
    # The prefix the pods run with is the one the triggers assume.
    (config,) = [doc for doc in docs if doc["kind"] == "ConfigMap"]
    assert config["data"].get("NEWSDEDUP_PREFIX", prefix) == prefix
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


def test_celery_queues_are_redis_lists_named_prefix_and_queue(
    redis_target: RedisTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What KEDA's listName relies on: kombu's Redis transport with global_keyprefix keeps
    a queue's waiting messages in the list `<prefix><queue>`."""
    monkeypatch.delenv("NEWSDEDUP_PREFIX", raising=False)
    monkeypatch.delenv("BROKER_URL", raising=False)
    prefix = f"deploytest-{secrets.token_hex(4)}:"
    app = make_app(Settings(prefix=prefix, redis_url=redis_target.url))
    client = redis_target.client
    try:
        app.send_task("newsdedup.ingest_batch", args=["job", 0, []])
        app.send_task("newsdedup.poll_feed", args=[{}])
        lists = {
            key.decode(): client.llen(key)
            for key in client.scan_iter(match=f"{prefix}*")
            if client.type(key) == b"list"
        }
        assert lists == {prefix + INGEST_QUEUE: 1, prefix + FETCH_QUEUE: 1}
    finally:
        app.close()
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)


def _metric_names(expr: str) -> set[str]:
    """Series names in a PromQL expression (not functions, keywords or label names)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        name, call = match.groups()
        if not call and name.lower() not in PROMQL_KEYWORDS | {"group_left", "group_right"}:
            names.add(name)
    return names


@unit
def test_alert_rules_are_complete_and_use_our_metrics() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    assert rules["groups"]
    used: set[str] = set()
    alerts = []
    for group in rules["groups"]:
        assert group["name"] and group["rules"], group
        for rule in group["rules"]:
            alerts.append(rule["alert"])
            assert rule["expr"], rule["alert"]
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            names = _metric_names(str(rule["expr"]))
            assert names, rule["alert"]
            used |= names
    assert len(alerts) == len(set(alerts)), "duplicate alert names"
    foreign = {n for n in used if not n.startswith("newsdedup_") and n not in PROMETHEUS_BUILTINS}
    assert not foreign, f"metrics we do not export: {sorted(foreign)}"
    # Once the exporter exists in the code, every series named here must be in it, quoted
    # (a counter may be declared without its `_total`).
    sources = "\n".join(p.read_text() for p in (ROOT / "workers").rglob("*.py"))
    if '"newsdedup_up"' in sources:
        missing = {
            n
            for n in used
            if n.startswith("newsdedup_")
            and f'"{n}"' not in sources
            and f'"{n.removesuffix("_total")}"' not in sources
        }
        assert not missing, f"alert rules use metrics the exporter lacks: {sorted(missing)}"


@unit
def test_metric_name_parser() -> None:
    expr = (
        'sum by (source) (rate(newsdedup_dead_total{reason=~"feed_.*"}[15m])) / ignoring '
        '(group) group_left newsdedup_stream_length > 0.8 and absent(up{job="x"})'
    )
    assert _metric_names(expr) == {"newsdedup_dead_total", "newsdedup_stream_length", "up"}


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed")
def test_promtool_accepts_rules_config_and_rule_tests() -> None:
    prometheus = DEPLOY / "prometheus"
    for argv in (
        ["check", "rules", "alerts.yml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "alerts.test.yml"],
    ):
        result = subprocess.run(
            ["promtool", *argv], cwd=prometheus, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, (argv, result.stdout, result.stderr)


def _seconds(duration: str | int) -> int:
    """A compose/systemd duration such as `11m`, `660`, `10m30s` in seconds."""
    text = str(duration).strip()
    if text.isdigit():
        return int(text)
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)\s*(h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text.replace(" ", ""), duration
    return sum(int(n) * units[u] for n, u in parts)


@unit
def test_compose_runs_one_beat_and_a_durable_redis() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    beats = [
        service
        for service in services.values()
        if (command := service.get("command")) and _is_newsdedup(command) and command[1] == "beat"
    ]
    assert len(beats) == 1
    assert beats[0].get("deploy", {}).get("replicas", 1) <= 1
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    assert "--maxmemory-policy noeviction" in redis_command
    for service in services.values():
        for entry in service.get("env_file", []):
            entry = entry if isinstance(entry, dict) else {"path": entry}
            if entry.get("required", True):
                assert (DEPLOY / entry["path"]).is_file(), entry


def _compose_backfills() -> list[list[str]]:
    """Every `docker compose ... run ... newsdedup backfill ...` the compose file's comments
    and deploy/README.md tell people to run, as argv."""
    text = (DEPLOY / "docker-compose.yml").read_text() + (DEPLOY / "README.md").read_text()
    text = re.sub(r"\\\n#?\s*", " ", text)  # continued lines, in comments too
    found = []
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip().strip("`")
        if line.startswith("docker compose") and " run " in line and " backfill " in line:
            found.append(shlex.split(line))
    return found


@unit
def test_compose_backfills_read_what_every_worker_mounts() -> None:
    """A backfill sends paths, not text: the one-off `run` container must plan paths that
    every worker has at the same place, so it adds no mount of its own and reads under
    the worker service's mounts (whose host folders exist where they are relative)."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = {}
    for volume in compose["services"]["worker"]["volumes"]:
        # SOURCE:TARGET[:MODE], SOURCE maybe "${VAR:-default}" (a colon of its own).
        spec = re.sub(r":(ro|rw)$", "", str(volume))
        source, target = spec.rsplit(":", 1)
        mounts[target] = source
    assert "/seeds" in mounts, "the seeds example needs the repository's seeds/ mounted"
    for target, source in mounts.items():
        if source.startswith("."):
            assert (DEPLOY / source).resolve().is_dir(), (target, source)
    assert (DEPLOY / mounts["/seeds"]).resolve() == (ROOT / "seeds").resolve()
    backfills = _compose_backfills()
    assert len(backfills) >= 4  # two in the compose file's header, two in the README
    for argv in backfills:
        run_options = argv[argv.index("run") + 1 : argv.index("newsdedup")]
        assert not {"-v", "--volume"} & set(run_options), argv
        assert run_options[-1] == "worker", argv  # the service whose mounts the workers have
        path = argv[-1]
        assert any(path == t or path.startswith(t.rstrip("/") + "/") for t in mounts), argv


@unit
def test_flower_api_is_enabled_and_documented_with_its_risk() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    flower = compose["services"]["flower"]
    assert flower["environment"]["FLOWER_UNAUTHENTICATED_API"] == "true"
    # An API without login: published on the host's loopback only.
    assert all(str(port).startswith("127.0.0.1:") for port in flower["ports"])
    readme = " ".join((DEPLOY / "README.md").read_text().split())
    assert "FLOWER_UNAUTHENTICATED_API=true" in readme
    assert "private network" in readme and "FLOWER_BASIC_AUTH" in readme


def _docker_compose() -> list[str] | None:
    """The Docker Compose v2 command here, if any (the plugin, or a standalone binary)."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    if standalone:
        probe = subprocess.run([standalone, "version"], capture_output=True, text=True)
        if probe.returncode == 0 and " v2." in probe.stdout:
            return [standalone]
    return None


def test_docker_compose_accepts_the_compose_file() -> None:
    compose = _docker_compose()
    if compose is None:
        pytest.skip("needs Docker Compose v2 (`docker compose` or docker-compose v2)")
    result = subprocess.run(
        [*compose, "-f", str(DEPLOY / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    seeds = [v for v in services["worker"]["volumes"] if v["target"] == "/seeds"]
    assert [Path(v["source"]) for v in seeds] == [(ROOT / "seeds").resolve()]


@unit
def test_worker_stop_timeouts_outlast_the_task_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopping worker finishes its running tasks (Celery's warm shutdown) before it is
    killed: every recipe waits longer than the hard task time limit."""
    limits = _default_settings(monkeypatch).worker
    assert limits.task_time_limit > limits.task_soft_time_limit
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    grace = {"compose": _seconds(compose["services"]["worker"]["stop_grace_period"])}
    worker = _deployment_running("worker")
    grace["k8s"] = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    for path, unit in _systemd_units():
        if "worker" in path.name:
            assert unit["Service"]["KillSignal"] == "SIGTERM"
            grace[path.name] = _seconds(unit["Service"]["TimeoutStopSec"])
    assert len(grace) == 3
    for where, seconds in grace.items():
        assert seconds > limits.task_time_limit, (where, seconds)


@unit
def test_systemd_units() -> None:
    units = _systemd_units()
    names = {path.name for path, _ in units}
    assert {"newsdedup-beat.service", "newsdedup-metrics.service"} <= names
    assert any(name.startswith("newsdedup-worker") for name in names)
    for path, unit in units:
        assert {"Unit", "Service", "Install"} <= set(unit.sections()), path
        service = unit["Service"]
        assert service["ExecStart"].startswith("/opt/newsdedup/.venv/bin/newsdedup "), path
        assert service["EnvironmentFile"] == "/etc/newsdedup/newsdedup.env", path
        assert service["User"] == "newsdedup", path
        assert service["Restart"] == "on-failure", path
        assert service["NoNewPrivileges"] == "yes", path
        assert service["ProtectSystem"] == "strict", path
        assert unit["Install"]["WantedBy"], path
    # The beat is one fixed unit, not a template that could run several.
    (beat,) = [path for path, unit in units if " beat" in unit["Service"]["ExecStart"]]
    assert "@" not in beat.name
