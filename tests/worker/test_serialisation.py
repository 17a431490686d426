"""No module under workers/ imports a pickle-like serialiser: task messages and
everything read from Redis are JSON or our own byte layouts."""

from __future__ import annotations

import ast

import pytest
from conftest import ROOT

pytestmark = pytest.mark.unit


PICKLE_LIKE = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "shelve", "marshal"}


def test_no_pickle_like_module_is_imported_under_workers() -> None:
    offenders = []
    for path in sorted((ROOT / "workers").rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "__import__"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names = [str(node.args[0].value)]
            offenders += [
                f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)} {name}"
                for name in names
                if name.split(".")[0] in PICKLE_LIKE
            ]
    assert not offenders, offenders
