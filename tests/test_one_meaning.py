"""One name, one meaning: no two modules of the package define a function, class or type
of the same name (two `_one_line`s, two `Outcome`s, a `poll_feed` task and a `poll_feed`
function once said different things under one name)."""

from __future__ import annotations

import ast
from collections import defaultdict

import pytest
from conftest import ROOT

# Entry points of `python -m workers.<module>`, each module's logger, and the module-level
# `__getattr__` of the modules whose attributes are built on first use (the Celery app).
SHARED_BY_DESIGN = {"main", "log", "__getattr__"}

pytestmark = pytest.mark.unit


def _definitions() -> dict[str, list[str]]:
    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted((ROOT / "workers").rglob("*.py")):
        for node in ast.parse(path.read_text("utf-8")).body:
            names: list[str] = []
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                # A type alias (`Outcome = Literal[...]`): CamelCase, not a CONSTANT.
                names = [
                    t.id
                    for t in targets
                    if isinstance(t, ast.Name)
                    and t.id.lstrip("_")[:1].isupper()
                    and not t.id.isupper()
                ]
            for name in names:
                where[name].append(str(path.relative_to(ROOT)))
    return where


def test_no_name_is_defined_twice_in_the_package() -> None:
    twice = {
        name: paths
        for name, paths in _definitions().items()
        if len(paths) > 1 and name not in SHARED_BY_DESIGN
    }
    assert not twice, twice


def test_the_clashing_names_have_one_meaning_each(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import config

    # The tasks module builds the Celery app, which must know its Redis (never reached).
    if config._process_settings is None or not config._process_settings.redis_url:
        named = config.Settings(redis_url="redis://127.0.0.1:1/0")
        monkeypatch.setattr(config, "_process_settings", named)
    from workers.feeds import poll
    from workers.index.dedup import DedupIndex
    from workers.pipeline import process
    from workers.worker import tasks

    assert not hasattr(poll, "poll_feed") and not hasattr(poll, "Outcome")
    assert tasks.poll_feed.name == "newsdedup.poll_feed"  # the task keeps its wire name
    assert not hasattr(DedupIndex, "prepare") and not hasattr(process, "prepare")
