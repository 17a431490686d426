"""A folder with one file of each bad kind next to good ones, through the CLI on the
embedded default: the good ones are published, each bad one is in `dead` with its reason
(or skipped and counted), the command exits 0 and its summary counts each kind."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SEEDS, cli_env, run_cli
from support.articles import article


def bad_folder(root: Path) -> dict[str, str]:
    """Writes the folder; returns input_ref -> expected dead reason."""
    root.mkdir()
    for seed in sorted(SEEDS.glob("*.txt")):
        (root / seed.name).write_bytes(seed.read_bytes())
    (root / "legacy_cp1256.txt").write_bytes(
        "عنوان الخبر\nنص الخبر بالعربية هنا\n".encode("cp1256")
    )
    (root / "utf16.txt").write_bytes("عنوان\nنص آخر بالعربية\n".encode("utf-16"))
    (root / "invalid_utf8.txt").write_bytes(
        b"Title\n\xff\xfe\xfa\x80\x81 broken \xc3\x28 x \xe2\x82\n"
    )
    (root / "empty.txt").write_bytes(b"")
    (root / "blank.txt").write_bytes(b"   \n\n \t \n")
    (root / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    (root / "too_big.txt").write_text("Title\n" + "word " * 300_000)
    (root / "long_line.txt").write_text("Title\n" + "x" * 150_000 + "\n")
    records = [
        {"id": "good-1", "title": "t", "text": "a good record with enough text in it"},
        "{broken json",
        {"id": "no-text", "title": "no text field"},
        {"id": "good-2", "text": "another good record, different words entirely"},
    ]
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    (root / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    (root.parent / "outside.txt").write_text("Outside\nnot to be read\n")
    (root / "link_out.txt").symlink_to(root.parent / "outside.txt")
    (root / "report.pdf").write_bytes(b"%PDF-1.4")
    return {
        "invalid_utf8.txt": "decode_undecodable",
        "empty.txt": "decode_empty",
        "blank.txt": "decode_empty",
        "binary.txt": "decode_binary",
        "too_big.txt": "too_large",
        "long_line.txt": "line_too_long",
        "mixed.jsonl:2": "malformed_json",
        "mixed.jsonl:3": "missing_text",
    }


def test_bad_inputs_are_dead_with_reasons_and_the_run_goes_on(tmp_path: Path) -> None:
    expected_dead = bad_folder(tmp_path / "in")
    env = cli_env(data_dir=tmp_path / "data", NEWSDEDUP_INGEST__MAX_FILE_BYTES="1000000")
    done = run_cli(["backfill", str(tmp_path / "in")], env)
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    good = 5 + 2 + 2  # seeds, cp1256 and UTF-16, two JSONL records
    assert f"{good} published" in summary, summary
    assert f"{len(expected_dead)} dead" in summary, summary
    for reason, count in (
        ("decode_empty", 2),
        ("decode_binary", 1),
        ("decode_undecodable", 1),
        ("too_large", 1),
        ("line_too_long", 1),
        ("malformed_json", 1),
        ("missing_text", 1),
    ):
        assert f"{count} {reason}" in summary, summary
    assert "1 symlink_outside_root" in summary and "1 unknown_extension" in summary, summary

    dead = run_cli(["tail", "--stream", "dead", "--from-start", "--json"], env)
    assert dead.returncode == 0, dead.stderr
    got = {
        json.loads(line)["input_ref"]: json.loads(line)["reason"]
        for line in dead.stdout.splitlines()
    }
    assert got == expected_dead
    docs = run_cli(["tail", "--stream", "docs", "--from-start", "--json"], env)
    refs = {json.loads(line)["input_ref"] for line in docs.stdout.splitlines()}
    assert {"legacy_cp1256.txt", "utf16.txt", "mixed.jsonl:1", "mixed.jsonl:4"} <= refs
    assert len(refs) == good


def test_a_bad_array_element_is_dead_alone_whatever_the_batch_size(tmp_path: Path) -> None:
    """A malformed element in the middle of a .json array, and a form feed (no JSON space)
    before another array's first element: through the CLI with tasks of 200 inputs and
    of 2, each element has the same fate, every well-formed one is published, and the
    summary, `stats` and the streams count each element once. (Before, the bad element's
    task range was dead whole: 5 dead with 200, 2 with 2.)"""
    (tmp_path / "in").mkdir()
    texts = [json.dumps({"id": f"k{i}", "text": article(i)}) for i in range(9)]
    middle = [*texts[:5], '{"id": "k5", "text": }', *texts[6:]]
    (tmp_path / "in" / "middle.json").write_text("[" + ",\n".join(middle) + "]")
    (tmp_path / "in" / "form_feed.json").write_text(
        "[\x0c"
        + ",".join(json.dumps({"id": f"f{i}", "text": article(20 + i)}) for i in range(5))
        + "]"
    )
    fates = []
    for size in (200, 2):
        env = cli_env(data_dir=tmp_path / f"data{size}", NEWSDEDUP_INGEST__BATCH_SIZE=str(size))
        done = run_cli(["backfill", str(tmp_path / "in")], env)
        assert done.returncode == 0, done.stderr
        summary = done.stdout.strip().splitlines()[-1]
        assert "14 inputs, 12 published, 0 exact duplicates, 0 near duplicates" in summary, summary
        assert "2 dead (2 malformed_json)" in summary, summary
        stats = json.loads(run_cli(["stats", "--json"], env).stdout)
        assert stats["streams"] == {"docs": 12, "duplicates": 0, "dead": 2}, stats
        fate = {}
        for stream in ("docs", "duplicates", "dead"):
            tail = run_cli(["tail", "--stream", stream, "--from-start", "--json"], env)
            for line in tail.stdout.splitlines():
                entry = json.loads(line)
                assert entry["input_ref"] not in fate, entry
                fate[entry["input_ref"]] = stream
        fates.append(fate)
    assert fates[0] == fates[1]
    assert fates[0] == {
        **{f"middle.json#{i}": "dead" if i == 5 else "docs" for i in range(9)},
        **{f"form_feed.json#{i}": "dead" if i == 0 else "docs" for i in range(5)},
    }
