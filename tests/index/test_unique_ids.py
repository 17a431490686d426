"""Ids are unique in `docs`, through the real CLI (embedded Redis, real worker).

Consumers key on `id`, but two files (or two outlets) may use the same ids. A document
published as new whose id a live document already holds is published as `<id>~<n>`, its
input's id in `input_id` (UNIQUE IDS in workers/index/keys.py); duplicates are unaffected
and name the original by its published id. The ids held survive `index rebuild`.
"""

from __future__ import annotations

import json
import random
import string
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env, run_cli

IDS = [f"story-{n}" for n in range(5)]
WORDS = [
    "".join(random.Random(n).choice(string.ascii_lowercase) for _ in range(3 + n % 7))
    for n in range(4000)
]


def article(rng: random.Random) -> str:
    return "\n\n".join(
        " ".join(rng.choice(WORDS) for _ in range(40)).capitalize() + "." for _ in range(4)
    )


def write_jsonl(path: Path, records: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def tail(env: dict[str, str], stream: str) -> list[dict[str, Any]]:
    result = run_cli(["tail", "--stream", stream, "--from-start", "--json"], env)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return cli_env(data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> dict[str, str]:
    """Two files with the same ids and other texts; an exact copy of one of them under the
    same id again; an input whose own id looks like a suffixed one."""
    folder = tmp_path_factory.mktemp("input")
    rng = random.Random(3)
    texts: dict[str, str] = {}
    for name in ("a", "b"):
        records = []
        for doc_id in IDS:
            texts[f"{name}/{doc_id}"] = article(rng)
            records.append({"id": doc_id, "source": name, "text": texts[f"{name}/{doc_id}"]})
        write_jsonl(folder / f"{name}.jsonl", records)
    write_jsonl(
        folder / "c.jsonl",
        [
            {"id": IDS[1], "source": "c", "text": texts[f"a/{IDS[1]}"]},  # an exact copy
            {"id": f"{IDS[0]}~2", "source": "c", "text": article(rng)},
        ],
    )
    result = run_cli(["backfill", str(folder)], env)
    assert result.returncode == 0, result.stderr
    assert "12 inputs, 11 published, 1 exact duplicate," in result.stdout, result.stdout
    return texts


def test_same_ids_in_two_files_are_published_distinct(
    env: dict[str, str], first_run: dict[str, str]
) -> None:
    docs = tail(env, "docs")
    ids = [doc["id"] for doc in docs]
    assert len(ids) == 11 and len(set(ids)) == 11, ids
    by_input: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for doc in docs:
        by_input[doc.get("input_id", doc["id"])].append(doc)
        if "input_id" in doc:  # renamed: the relation is explicit
            assert doc["id"].startswith(doc["input_id"] + "~"), doc
    for doc_id in IDS:
        published = by_input[doc_id]
        assert len(published) == 2, (doc_id, published)
        assert sorted(doc["source"] for doc in published) == ["a", "b"]
        kept = [doc for doc in published if "input_id" not in doc]
        assert len(kept) == 1 and kept[0]["id"] == doc_id  # the first keeps its own id
    # The exact copy is a duplicate, named after its original's published id.
    (duplicate,) = tail(env, "duplicates")
    original = next(doc for doc in docs if doc["id"] == duplicate["duplicate_of"])
    assert (original["source"], original.get("input_id", original["id"])) == ("a", IDS[1])
    assert (duplicate["id"], duplicate["kind"]) == (IDS[1], "exact")
    # The human view names the input's id too.
    human = run_cli(["tail", "--from-start"], env).stdout
    assert f"~2 (input id {IDS[2]})" in human, human


def test_ids_stay_held_after_an_index_rebuild(
    env: dict[str, str], first_run: dict[str, str], tmp_path: Path
) -> None:
    before = {doc["id"] for doc in tail(env, "docs")}
    rebuilt = run_cli(["index", "rebuild", "--yes"], env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "11 documents indexed" in rebuilt.stdout, rebuilt.stdout
    write_jsonl(
        tmp_path / "d.jsonl",
        [{"id": doc_id, "source": "d", "text": article(random.Random(doc_id))} for doc_id in IDS],
    )
    result = run_cli(["backfill", str(tmp_path)], env)
    assert result.returncode == 0, result.stderr
    assert "5 inputs, 5 published" in result.stdout, result.stdout
    new = [doc for doc in tail(env, "docs") if doc["source"] == "d"]
    assert len(new) == 5
    for doc in new:
        assert doc["id"] not in before and doc["input_id"] in IDS, doc
