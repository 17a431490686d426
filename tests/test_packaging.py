"""The wheel is the product: it must hold every file the package reads at run time (the
default rules and feeds, the Lua scripts), since an installed wheel has no repository
next to it. `.ci/run` also installs it in a fresh venv and runs the main job elsewhere."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT


def _package_files() -> set[str]:
    """Every non-Python file under workers/ that git tracks: what the code may read."""
    listed = subprocess.run(
        ["git", "ls-files", "workers"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {name for name in listed if not name.endswith(".py")}


def test_the_wheel_holds_the_package_data(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("newsdedup-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = _package_files()
    assert {"workers/defaults/boilerplate.toml", "workers/defaults/feeds.toml"} <= data
    assert any(name.endswith(".lua") for name in data)
    assert data <= names, f"missing from the wheel: {sorted(data - names)}"
