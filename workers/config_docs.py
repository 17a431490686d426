"""docs/configuration.md and config/default.toml, generated from the settings model.

The model in workers/config.py holds every default and description; these two files are
its readable copies, and tests/test_config_docs.py fails when either is out of date:

    python -m workers.config_docs --markdown > docs/configuration.md
    python -m workers.config_docs --toml > config/default.toml
"""

from __future__ import annotations

import argparse
import inspect
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from workers.config import Settings
from workers.markdown import table

# Read from the variables every Redis and Celery user already sets, not NEWSDEDUP_*.
_PLAIN_ENV = {"redis_url": "REDIS_URL", "broker_url": "BROKER_URL"}
# Defaults that depend on the installation: shown in words, not written to the TOML.
_SHOWN_AS = {"config_dir": "the defaults inside the package (`workers/defaults/`)"}
_WIDTH = 88


@dataclass(frozen=True, slots=True)
class SettingDoc:
    key: str  # as in a TOML file: "prefix", "dedup.threshold"
    name: str  # the key within its section
    env: str
    default: Any
    description: str
    allowed: str  # the values the model accepts, "" when any of its type


@dataclass(frozen=True, slots=True)
class SectionDoc:
    name: str  # "" for the top level
    description: str
    settings: tuple[SettingDoc, ...]
    # A table per name (`[sources."<name>"]`): none by default, so the TOML shows it
    # commented out, as an example.
    per_name: bool = False


def sections() -> list[SectionDoc]:
    """The top level, then each [section] of the model, in the model's order."""
    top: list[SettingDoc] = []
    nested: list[SectionDoc] = []
    for name, info in Settings.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            settings = tuple(
                _setting(f"{name}.{key}", key, f"NEWSDEDUP_{name}__{key}".upper(), field)
                for key, field in model.model_fields.items()
            )
            nested.append(SectionDoc(name, _doc(model), settings))
        elif _per_name_model(info) is not None:
            entry = _per_name_model(info)
            assert entry is not None and info.description
            section = f'{name}."<name>"'
            env = f"NEWSDEDUP_{name}".upper()
            settings = tuple(
                _setting(f"{section}.{key}", key, env, field)
                for key, field in entry.model_fields.items()
            )
            description = f"{' '.join(info.description.split())} {_doc(entry)}"
            nested.append(SectionDoc(section, description, settings, per_name=True))
        else:
            env = _PLAIN_ENV.get(name, f"NEWSDEDUP_{name}".upper())
            top.append(_setting(name, name, env, info))
    return [SectionDoc("", _doc(Settings), tuple(top)), *nested]


def _per_name_model(info: FieldInfo) -> type[BaseModel] | None:
    """The model of a `dict[str, Model]` setting (a table per name), else None."""
    if get_origin(info.annotation) is not dict:
        return None
    value = get_args(info.annotation)[1]
    return value if isinstance(value, type) and issubclass(value, BaseModel) else None


def _doc(model: type[BaseModel]) -> str:
    return " ".join(inspect.cleandoc(model.__doc__ or "").split())


def _setting(key: str, name: str, env: str, info: FieldInfo) -> SettingDoc:
    if not info.description:
        raise ValueError(f"setting {key} has no description (a docstring under it)")
    description = " ".join(info.description.split())
    return SettingDoc(key, name, env, info.default, description, _allowed(info))


def _allowed(info: FieldInfo) -> str:
    if get_origin(info.annotation) is Literal:
        return " or ".join(json.dumps(value) for value in get_args(info.annotation))
    bounds = []
    for rule in info.metadata:
        if isinstance(rule, annotated_types.Ge):
            bounds.append(f">= {_bound(rule.ge)}")
        elif isinstance(rule, annotated_types.Gt):
            bounds.append(f"> {_bound(rule.gt)}")
        elif isinstance(rule, annotated_types.Le):
            bounds.append(f"<= {_bound(rule.le)}")
    return ", ".join(bounds)


def _bound(value: Any) -> str:
    return f"{value:,}".replace(",", "_") if isinstance(value, int) else str(value)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string
    raise TypeError(f"no TOML form for {value!r}")


def _shown_default(setting: SettingDoc) -> str:
    if setting.name in _SHOWN_AS:
        return _SHOWN_AS[setting.name]
    if setting.default is None:
        return "unset"
    shown = f"`{toml_value(setting.default)}`"
    if setting.name.endswith("bytes") and isinstance(setting.default, int):
        shown += _size(setting.default)
    return shown


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale and count % scale == 0:
            return f" ({count // scale} {unit})"
    return ""


def render_markdown() -> str:
    out = [
        "# Configuration",
        "",
        "<!-- Generated from workers/config.py by `python -m workers.config_docs --markdown`:",
        "     edit the model's descriptions there, not this file. -->",
        "",
        "Each setting comes from, highest first: its environment variable, a TOML file given "
        "with `--config FILE` (or `NEWSDEDUP_CONFIG`), and the default below. In a file, a "
        'top-level setting is a key at the top (`prefix = "nd:"`) and the others sit in '
        "their section (`[dedup]` then `threshold = 0.6`). "
        "[config/default.toml](../config/default.toml) lists every setting with its default: "
        "copy the lines you need into a file of your own. A name the file misspells is an "
        "error that names it (the environment ignores `NEWSDEDUP_` variables it does not "
        "know). A `newsdedup` command hands its settings, file included, to the worker and "
        "beat processes it starts.",
    ]
    for section in sections():
        title = "Top level" if not section.name else f"[{section.name}]"
        out += ["", f"## {title}", ""]
        if section.name:
            out += [section.description, ""]
        out += table(
            ("setting", "environment variable", "default", "allowed", "description"),
            (
                (f"`{s.key}`", f"`{s.env}`", _shown_default(s), s.allowed, s.description)
                for s in section.settings
            ),
        )
    return "\n".join(out) + "\n"


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH, initial_indent="# ", subsequent_indent="# ") or ["#"]


def render_toml() -> str:
    out = [
        "# newsdedup settings, each with its default and what it does. Generated from",
        "# workers/config.py by `python -m workers.config_docs --toml`: the model is where the",
        "# defaults live, and this file is not read. To change a setting, copy its lines into",
        "# a file of your own and pass it with --config (or NEWSDEDUP_CONFIG), or set its",
        "# environment variable: NEWSDEDUP_<KEY> for a top-level key (NEWSDEDUP_PREFIX=news:),",
        "# NEWSDEDUP_<SECTION>__<KEY> for the others (NEWSDEDUP_DEDUP__THRESHOLD=0.6).",
        "# docs/configuration.md has the same in a table.",
    ]
    for section in sections():
        if section.per_name:
            # None by default: an example, commented out.
            out += ["", *_comment(section.description), f"# [{section.name}]"]
            for s in section.settings:
                shown = "unset" if s.default is None else toml_value(s.default)
                out += [*_comment(s.description), f"# {s.name} = {shown}"]
            continue
        if section.name:
            out += ["", *_comment(section.description), f"[{section.name}]"]
        for s in section.settings:
            out += ["", *_comment(s.description)]
            if s.default is None or s.name in _SHOWN_AS:
                shown = _SHOWN_AS.get(s.name, "unset").replace("`", "")
                out.append(f"# {s.name}: {shown} by default ({s.env})")
            else:
                out.append(f"{s.name} = {toml_value(s.default)}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.config_docs", description=__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--markdown", action="store_true", help="docs/configuration.md")
    which.add_argument("--toml", action="store_true", help="config/default.toml")
    args = parser.parse_args(argv)
    print(render_markdown() if args.markdown else render_toml(), end="")


if __name__ == "__main__":
    main()
