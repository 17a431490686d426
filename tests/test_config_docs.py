"""Defaults live in the settings model alone: config/default.toml and docs/configuration.md
are generated from it and must match, and the value objects built from settings take
their defaults from it rather than restating them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import ROOT

from workers.clean.fingerprint import FingerprintParams
from workers.config import DEFAULTS, DEFAULTS_DIR, Settings, SourcePolicy, load_settings
from workers.config_docs import render_markdown, render_toml, sections
from workers.feeds.policy import HttpPolicy
from workers.ingest.extraction import ExtractLimits
from workers.ingest.spec import Limits

DOCS = ROOT / "docs" / "configuration.md"
DEFAULT_CONFIG_FILE = ROOT / "config" / "default.toml"
REGENERATE = "python -m workers.config_docs --markdown > docs/configuration.md"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("NEWSDEDUP_") or name in ("REDIS_URL", "BROKER_URL"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_configuration_docs_are_generated_from_the_model() -> None:
    assert DOCS.read_text("utf-8") == render_markdown(), f"out of date: run `{REGENERATE}`"


def test_default_toml_is_generated_from_the_model() -> None:
    assert DEFAULT_CONFIG_FILE.read_text("utf-8") == render_toml(), (
        "out of date: run `python -m workers.config_docs --toml > config/default.toml`"
    )


@pytest.mark.parametrize("name", ["boilerplate.toml", "feeds.toml"])
def test_config_folder_holds_the_packaged_defaults(name: str) -> None:
    """config/ is the documented, editable copy of the files the package ships and reads."""
    copy = ROOT / "config" / name
    assert copy.read_bytes() == (DEFAULTS_DIR / name).read_bytes(), (
        f"config/{name} differs from the packaged default: copy workers/defaults/{name} there"
    )
    assert Settings().config_dir == DEFAULTS_DIR


def test_the_generator_command_prints_both(tmp_path: Path) -> None:
    for flag, expected in (("--markdown", render_markdown()), ("--toml", render_toml())):
        result = subprocess.run(
            [sys.executable, "-m", "workers.config_docs", flag],
            cwd=tmp_path,  # from anywhere
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == expected


def test_default_toml_as_a_config_file_gives_the_model_defaults(
    clean_env: pytest.MonkeyPatch,
) -> None:
    assert load_settings(DEFAULT_CONFIG_FILE) == Settings() == load_settings()
    assert Settings() == DEFAULTS


def test_every_setting_is_documented_once_with_its_env_var_and_default() -> None:
    documented = [s for section in sections() for s in section.settings]
    keys = [s.key for s in documented]
    per_name = {"sources": SourcePolicy}  # tables per name: `[sources."<name>"]`
    leaves = [
        f"{name}.{key}" if hasattr(info.annotation, "model_fields") else name
        for name, info in Settings.model_fields.items()
        if name not in per_name
        for key in (getattr(info.annotation, "model_fields", None) or [name])
    ] + [f'{name}."<name>".{key}' for name, model in per_name.items() for key in model.model_fields]
    assert sorted(keys) == sorted(leaves) and len(set(keys)) == len(keys)
    text = DOCS.read_text("utf-8")
    for setting in documented:
        assert setting.description.strip()
        row = next(line for line in text.splitlines() if line.startswith(f"| `{setting.key}` |"))
        assert f"`{setting.env}`" in row
    # What the README's table used to miss.
    assert "| `boilerplate.link_memory` | `NEWSDEDUP_BOILERPLATE__LINK_MEMORY` | `4` |" in text


def test_documented_env_vars_set_the_setting(clean_env: pytest.MonkeyPatch) -> None:
    by_key = {s.key: s for section in sections() for s in section.settings}
    changes = {
        "prefix": "env:",
        "boilerplate.link_memory": "2",
        "dedup.threshold": "0.6",
        "ingest.max_file_bytes": "1000",
        "allow_private_networks": "true",
        "redis_url": "redis://127.0.0.1:1/3",
    }
    for key, value in changes.items():
        clean_env.setenv(by_key[key].env, value)
    settings = load_settings()
    assert settings.prefix == "env:"
    assert settings.boilerplate.link_memory == 2
    assert settings.dedup.threshold == 0.6
    assert settings.ingest.max_file_bytes == 1000
    assert settings.allow_private_networks is True
    assert settings.redis_url == "redis://127.0.0.1:1/3"


def test_a_partial_file_and_the_environment_merge_over_the_defaults(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('prefix = "file:"\n[dedup]\nseed = 2\nthreshold = 0.7\n', "utf-8")
    clean_env.setenv("NEWSDEDUP_DEDUP__THRESHOLD", "0.6")
    settings = load_settings(config)
    assert (settings.prefix, settings.dedup.seed, settings.dedup.threshold) == ("file:", 2, 0.6)
    assert settings.dedup.num_perm == DEFAULTS.dedup.num_perm
    assert settings.streams == DEFAULTS.streams


def test_value_objects_take_their_defaults_from_the_model() -> None:
    ingest = DEFAULTS.ingest
    assert Limits() == Limits(
        ingest.max_file_bytes,
        ingest.max_record_bytes,
        ingest.max_decompressed_bytes,
        ingest.max_title_chars,
    )
    assert ExtractLimits.defaults() == ExtractLimits.from_settings(DEFAULTS)
    assert ExtractLimits.defaults(timeout=2.0).timeout == 2.0
    policy = HttpPolicy.from_settings(DEFAULTS)
    assert HttpPolicy(user_agent=policy.user_agent) == policy
    params = FingerprintParams(num_perm=128, seed=1, shingle_size=3, lsh_threshold=0.25)
    assert params.facts_bits == DEFAULTS.dedup.facts_bits


def test_no_setting_default_is_restated_in_the_code() -> None:
    """The numbers of the model's byte caps and limits appear in workers/config.py only."""
    restated = {
        "50 * 1024 * 1024",
        "10 * 1024 * 1024",
        "20 * 1024 * 1024",
        "2 * 1024**3",
        "user_agent: str = ",
        "newsdedup/0.1 (+",
    }
    for path in sorted((ROOT / "workers").rglob("*.py")):
        if path.name == "config.py":
            continue
        text = path.read_text("utf-8")
        found = [s for s in restated if s in text]
        assert not found, f"{path.relative_to(ROOT)} restates {found}"
    # A dataclass mirroring a settings section takes no literal default.
    for cls in (Limits, ExtractLimits, HttpPolicy):
        source = Path(sys.modules[cls.__module__].__file__ or "").read_text("utf-8")
        body = source.split(f"class {cls.__name__}", 1)[1].split("\n\n\n", 1)[0]
        for field in fields(cls):
            assert not re.search(rf"\n    {field.name}: [^=\n]+= [0-9\"]", body), (cls, field)


def test_readme_points_to_the_generated_docs() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    assert "docs/configuration.md" in section
    assert "| key | default | meaning |" not in section  # the hand-kept table is gone
