"""Must-show: 2,000 real SaudiNewsNet articles plus 300 lightly edited copies of some.

Every record must end in exactly one stream, and ≥ 95% of the copies must land in the
same duplicate cluster as their original (clusters = union of `duplicate_of` links, as
in ../shared/eval/README.md; with parallel workers a copy may be seen before its
original, in which case the original is the one marked duplicate).
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
from conftest import cli_env, run_cli, shared_path
from support.edit_copies import lightly_edit

pytestmark = pytest.mark.shared

ORIGINALS = 2000
COPIES = 300


def _json_lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def build_input(folder: Path) -> tuple[Path, dict[str, str]]:
    corpus = shared_path("corpus", "saudinewsnet.jsonl.gz")
    records = []
    with gzip.open(corpus, "rt", encoding="utf-8") as handle:
        for line in handle:
            records.append(json.loads(line))
            if len(records) == ORIGINALS:
                break
    rng = random.Random(20261123)
    # Copies of articles with a real body (a 10-word item has no room for "light" edits).
    eligible = [r for r in records if len(r["text"].split()) >= 40]
    copies, copy_of = [], {}
    for n, original in enumerate(rng.sample(eligible, COPIES)):
        # A reprint elsewhere: under its own URL (the same URL with an edited text would be
        # an update of the original, tests/index/test_relations.py).
        copy = dict(
            original,
            id=f"copy-{n:03d}-{original['id']}",
            url=f"https://reprints.example/{n:03d}",
            text=lightly_edit(original["text"], n),
        )
        copies.append(copy)
        copy_of[copy["id"]] = original["id"]
    path = folder / "sample.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for record in records + copies:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path, copy_of


def test_copies_are_found_and_every_record_lands_once(tmp_path: Path) -> None:
    path, copy_of = build_input(tmp_path)
    env = cli_env(data_dir=tmp_path / "data")
    result = run_cli(["backfill", str(path)], env, timeout=900)
    assert result.returncode == 0, result.stderr
    streams = {
        name: _json_lines(run_cli(["tail", "--stream", name, "--from-start", "--json"], env).stdout)
        for name in ("docs", "duplicates", "dead")
    }
    refs = [str(e["input_ref"]) for entries in streams.values() for e in entries]
    assert len(refs) == ORIGINALS + COPIES
    assert len(set(refs)) == len(refs), "an input was published twice"

    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for dup in streams["duplicates"]:
        parent[find(str(dup["id"]))] = find(str(dup["duplicate_of"]))
    found = sum(find(copy) == find(original) for copy, original in copy_of.items())
    print(f"copies joined to their original: {found}/{COPIES}")
    assert found >= 0.95 * COPIES
