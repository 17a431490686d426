"""The output streams on the wire, from the outside: a backfill through the CLI and a real
worker, every entry of docs, duplicates and dead read back raw (XRANGE) and compared field
by field, in order, with tests/golden/stream_entries.json, recorded before the entries
were built from workers/records.py. Only the clocks are masked.

NEWSDEDUP_RECORD_GOLDEN=1 rewrites the golden file instead (then review its diff).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import ROOT, RedisTarget, cli_env, run_cli, start_worker, stop_workers
from support.edit_copies import make_corpus as copies_and_edits

from workers.ops.connection import as_text

GOLDEN = ROOT / "tests" / "golden" / "stream_entries.json"
CLOCKS = ("ingested_at", "failed_at")
STREAMS = ("docs", "duplicates", "dead")


def make_corpus(folder: Path) -> Path:
    """Every kind of entry: published, exact and near duplicates (a/, b/, c/), an id
    published under a suffix, and dead inputs (d/)."""
    copies_and_edits(folder)
    (folder / "d").mkdir()
    other = " ".join(f"كلمة{n} في نص آخر عن موضوع مختلف تماما رقم {n}." for n in range(40))
    records = [
        json.dumps(
            {
                "id": "a/000_b1ab6303fef3538a.txt",  # taken by a/: published as ...~2
                "source": "other-outlet",
                "title": "عنوان آخر",
                "text": other,
                "url": "https://example.org/news/1?utm_source=x",
                "published_at": "2024-05-01T10:00:00Z",
                "author": "كاتب",
                "language": "ar",
            },
            ensure_ascii=False,
        ),
        '{"id": "broken", "text": ',
        json.dumps({"id": "empty", "source": "other-outlet", "text": "   "}),
        json.dumps({"id": "no-text", "source": "other-outlet"}),
    ]
    (folder / "d" / "records.jsonl").write_text("\n".join(records) + "\n", "utf-8")
    (folder / "d" / "empty.txt").write_bytes(b"")
    return folder


def test_stream_entries_are_unchanged_on_the_wire(
    tmp_path: Path, redis_target: RedisTarget, prefix: str
) -> None:
    make_corpus(tmp_path / "corpus")  # relative in the command: input refs do not vary
    config = tmp_path / "c.toml"
    config.write_text(f'prefix = "{prefix}"\n[ingest]\nbatch_size = 1000\n', "utf-8")
    env = cli_env(redis_url=redis_target.url, NEWSDEDUP_CONFIG=str(config))
    log = tmp_path / "worker.log"
    worker = start_worker(env, "wire", log, cwd=tmp_path)
    try:
        result = run_cli(["backfill", "--wait", "corpus", "--timeout", "180"], env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr + log.read_text()
    finally:
        stop_workers([worker])

    client = redis_target.client
    found: dict[str, list[list[list[str]]]] = {}
    for stream in STREAMS:
        entries = []
        for _, fields in client.xrange(f"{prefix}{stream}"):
            pairs = [[as_text(k), as_text(v)] for k, v in fields.items()]
            entries.append([[k, "<clock>" if k in CLOCKS else v] for k, v in pairs])
        found[stream] = entries
    assert [len(found[s]) for s in STREAMS] == [6, 10, 4], {s: len(found[s]) for s in STREAMS}

    if os.environ.get("NEWSDEDUP_RECORD_GOLDEN"):
        GOLDEN.write_text(json.dumps(found, ensure_ascii=False, indent=1) + "\n", "utf-8")
    golden = json.loads(GOLDEN.read_text("utf-8"))
    for stream in STREAMS:
        for n, (got, want) in enumerate(zip(found[stream], golden[stream], strict=True)):
            assert [k for k, _ in got] == [k for k, _ in want], (stream, n)  # names, in order
            assert got == want, (stream, n)
