"""Reading the Prometheus text format back, strictly, for the metrics tests."""

from __future__ import annotations

import re
from typing import Any

# --------------------------------------------------------------------------- Prometheus

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_exposition(text: str) -> dict[str, dict[str, Any]]:
    """A strict little parser of the text format 0.0.4: families with their type, help
    and samples (labels, value); fails on any line it does not understand."""
    assert text.endswith("\n")
    families: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            families.setdefault(name, {"samples": []})["help"] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in ("counter", "gauge"), line
            assert "type" not in families.get(name, {}), f"duplicate TYPE {name}"
            families.setdefault(name, {"samples": []})["type"] = kind
        elif line.startswith("#"):
            continue  # a comment
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, inside, value = match.groups()
            labels: dict[str, str] = {}
            rest = inside or ""
            while rest:
                label = _LABEL.match(rest)
                assert label, f"bad labels in {line!r}"
                labels[label.group(1)] = _unescape(label.group(2))
                rest = rest[label.end() :]
            assert name in families and "type" in families[name], f"{name} before its TYPE"
            families[name]["samples"].append((labels, float(value)))
    for name, family in families.items():
        assert family.get("help"), f"{name} has no HELP"
        if family["type"] == "counter":
            assert name.endswith("_total"), name
    return families
