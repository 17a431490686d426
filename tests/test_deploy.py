"""The deploy recipes must not drift from the CLI: they parse, and their commands exist."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import ROOT

DEPLOY = ROOT / "deploy"


def _newsdedup_commands() -> list[list[str]]:
    commands = []
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        command = service.get("command")
        if command and command[0] == "newsdedup":
            commands.append(command)
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("CMD "):
            commands.append(json.loads(line[4:]))
    for line in (DEPLOY / "docker-compose.yml").read_text().splitlines():
        if "newsdedup backfill" in line:
            commands.append(shlex.split(line[line.index("newsdedup") :]))
    return commands


def test_recipes_name_real_commands(tmp_path: Path) -> None:
    commands = _newsdedup_commands()
    assert len(commands) >= 3
    for command in commands:
        subcommand = command[1]
        result = subprocess.run(
            [sys.executable, "-m", "workers.cli", subcommand, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (command, result.stderr)
        for option in (arg for arg in command[2:] if arg.startswith("--")):
            assert option in result.stdout, (command, option)
