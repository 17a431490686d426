"""Hostile inputs from the outside: the real CLI, real worker processes, real files.

File names that are not UTF-8, files swapped for symlinks while their batch waits in the
queue, a broker message naming a folder nobody asked to backfill, compression bombs and
oversized records and titles, and texts with nothing visible or no word: each input
still ends in exactly one of `docs`, `duplicates` or `dead`, with a reason when dead.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SEEDS, RedisTarget, cli_env, run_cli, start_worker, stop_workers

from workers.config import Settings
from workers.ingest.spec import Location, TaskSpec
from workers.worker.app import make_app

SEED_FILES = sorted(SEEDS.glob("*.txt"))
MiB = 1024 * 1024


def stream(env: dict[str, str], name: str) -> list[dict[str, Any]]:
    done = run_cli(["tail", "--stream", name, "--from-start", "--json"], env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def dead_reasons(env: dict[str, str]) -> dict[str, str]:
    return {entry["input_ref"]: entry["reason"] for entry in stream(env, "dead")}


def summary(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout.strip().splitlines()[-1]


def copy_seeds(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in SEED_FILES[:count]:
        shutil.copy(seed, folder / seed.name)
    return [seed.name for seed in SEED_FILES[:count]]


def write_bytes_named(folder: Path, name: bytes, data: bytes) -> None:
    """A file whose name is raw bytes (not necessarily UTF-8)."""
    with open(os.fsencode(folder) + b"/" + name, "wb") as out:
        out.write(data)


def record(doc_id: str, text: str, **extra: str) -> str:
    return json.dumps({"id": doc_id, "text": text, **extra}, ensure_ascii=False)


def article(n: int) -> str:
    """A distinct plausible article text: never a duplicate of another `article(m)`."""
    rng = random.Random(n)
    words = SEED_FILES[n % len(SEED_FILES)].read_text("utf-8").split()
    return " ".join(rng.choice(words) for _ in range(120))


def write_gz(path: Path, pieces: Iterable[bytes]) -> None:
    """Compress `pieces` into `path` without ever holding the whole text."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip container
    with path.open("wb") as out:
        for piece in pieces:
            out.write(packer.compress(piece))
        out.write(packer.flush())


def repeated(unit: bytes, total: int) -> Iterator[bytes]:
    block = unit * (MiB // len(unit))
    for _ in range(total // len(block)):
        yield block


# ------------------------------------------------------------ names that are not UTF-8


def test_a_file_name_that_is_not_utf8_is_accounted_for(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    copy_seeds(folder, 3)
    write_bytes_named(folder, b"bad\xff.txt", SEED_FILES[3].read_bytes())
    env = cli_env(data_dir=tmp_path / "data")
    line = summary(run_cli(["backfill", str(folder)], env, timeout=180))
    assert "4 inputs, 4 published" in line, line
    docs = {doc["input_ref"]: doc for doc in stream(env, "docs")}
    escaped = "bad\\xff.txt"  # the byte 0xff as the four characters \xff
    assert escaped in docs, sorted(docs)
    assert docs[escaped]["id"] == escaped
    assert docs[escaped]["text"].strip()


def test_names_that_are_not_utf8_survive_a_careful_rerun(tmp_path: Path) -> None:
    """A giant article makes the first run of the batch hit the soft time limit; the
    careful reruns name each input in the job's cursor and look it up in the done set
    (workers/worker/batches.py). Files and a folder whose names are not UTF-8 go through them."""
    folder = tmp_path / "in"
    copy_seeds(folder, 4)
    words = " ".join(p.read_text("utf-8") for p in SEED_FILES).split()
    rng = random.Random(7)
    lines = (" ".join(rng.choice(words) for _ in range(30)) for _ in range(120_000))
    (folder / "3_giant.txt").write_text("عنوان طويل جدا\n" + "\n".join(lines), "utf-8")
    write_bytes_named(folder, b"z_bad\xff.txt", SEED_FILES[4].read_bytes())
    os.mkdir(os.fsencode(folder) + b"/d\xfe")
    records = "".join(record(f"rec-{n}", article(n)) + "\n" for n in (1, 2))
    write_bytes_named(folder, b"d\xfe/news.jsonl", records.encode())
    env = cli_env(
        data_dir=tmp_path / "data",
        NEWSDEDUP_WORKER__TASK_SOFT_TIME_LIMIT="3",
        NEWSDEDUP_WORKER__TASK_TIME_LIMIT="60",
        NEWSDEDUP_WORKER__VISIBILITY_TIMEOUT="120",
    )
    line = summary(run_cli(["backfill", str(folder)], env, timeout=240))
    assert "8 inputs, 7 published" in line and "1 dead (1 time_limit)" in line, line
    docs = {doc["input_ref"]: doc for doc in stream(env, "docs")}
    assert {"z_bad\\xff.txt", "d\\xfe/news.jsonl:1", "d\\xfe/news.jsonl:2"} <= set(docs)
    assert docs["d\\xfe/news.jsonl:1"]["source"] == "d\\xfe"  # the folder, escaped
    assert dead_reasons(env) == {"3_giant.txt": "time_limit"}
    log = (tmp_path / "data" / "worker.log").read_text(errors="replace")
    assert "careful" in log or "time_limit" in log, log[-3000:]
    assert "UnicodeEncodeError" not in log, log[-3000:]


def test_lone_surrogates_in_json_fields_do_not_lose_the_batch(tmp_path: Path) -> None:
    """JSON can spell what no UTF-8 can carry: "\\udcff" without its pair. In an id or a
    source it would reach the job's cursor and its dead entry, and lose the whole batch."""
    folder = tmp_path / "in"
    folder.mkdir()
    fields = '"id": "lone-\\udcff", "source": "src\\ud800", "title": "t\\udfff"'
    lines = ["{" + fields + ', "text": "' + article(1) + ' \\ud800"}', record("fine", article(2))]
    (folder / "odd.jsonl").write_text("\n".join(lines) + "\n")
    env = cli_env(data_dir=tmp_path / "data")
    line = summary(run_cli(["backfill", "--timeout", "90", str(folder)], env, timeout=180))
    assert "2 inputs, 2 published" in line, line
    docs = {doc["input_ref"]: doc for doc in stream(env, "docs")}
    odd = docs["odd.jsonl:1"]
    assert (odd["id"], odd["source"], odd["title"]) == ("lone-\ufffd", "src\ufffd", "t\ufffd")
    assert odd["text"].endswith("\ufffd")


def test_dates_no_reader_expected_do_not_hold_the_backfill(tmp_path: Path) -> None:
    """A date of 10**400 (or -10**400, or 400 digits in a string) is no date: its article is
    published undated, and the backfill ends (before, the batch raised on every start and
    the job waited for ever)."""
    folder = tmp_path / "in"
    folder.mkdir()
    lines = [
        json.dumps({"id": "huge", "text": article(1), "published": 10**400}),
        json.dumps({"id": "minus", "text": article(2), "date": -(10**400)}),
        json.dumps({"id": "digits", "text": article(3), "pubDate": "9" * 400}),
        record("fine", article(4), date="2015-08-01"),
    ]
    (folder / "dates.jsonl").write_text("\n".join(lines) + "\n")
    env = cli_env(data_dir=tmp_path / "data")
    line = summary(run_cli(["backfill", "--timeout", "90", str(folder)], env, timeout=180))
    assert "4 inputs, 4 published" in line, line
    dated = {doc["id"]: doc.get("published_at", "") for doc in stream(env, "docs")}
    assert dated == {"huge": "", "minus": "", "digits": "", "fine": "2015-08-01T00:00:00"}


def test_a_record_whose_reading_raises_is_dead_and_its_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.ingest import load

    def broken(value: object) -> str:
        raise ArithmeticError("no reader expected this")

    monkeypatch.setattr(load, "parse_date", broken)
    dead = load.document_from_record(
        {"id": "x", "text": "some text", "date": 1}, "f.jsonl:1", default_source="s",
        max_title_chars=100,
    )  # fmt: skip
    assert dead == load.DeadInput(
        "f.jsonl:1",
        "processing_error",
        "reading the record raised ArithmeticError: no reader expected this",
        "",
        "s",
    )


# ----------------------------------------------------------- symlinks swapped later


def test_a_file_swapped_for_a_symlink_after_planning_is_not_read(
    tmp_path: Path, redis_target: RedisTarget, prefix: str
) -> None:
    folder = tmp_path / "in"
    names = copy_seeds(folder, 3)
    copy_seeds(folder / "sub", 1)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = "TOPSECRETMARKER the contents of a file nobody asked to backfill " * 5
    (outside / "secret.txt").write_text(f"Secret title\n{secret}\n")
    (outside / names[0]).write_text(f"Secret title\n{secret}\n")
    env = cli_env(redis_url=redis_target.url, prefix=prefix)
    # Planned and queued; no worker runs yet, so the batch waits in the queue.
    queued = run_cli(["backfill", "--no-wait", str(folder)], env)
    assert queued.returncode == 0, queued.stderr
    assert "enqueued 4 inputs" in queued.stdout, queued.stdout
    # Meanwhile: one planned file becomes a symlink to a file outside the root, and the
    # planned folder `sub` becomes a symlink to a folder outside holding the same name.
    (folder / names[1]).unlink()
    (folder / names[1]).symlink_to(outside / "secret.txt")
    (folder / "sub").rename(tmp_path / "sub_moved")
    (folder / "sub").symlink_to(outside)
    log = tmp_path / "worker.log"
    worker = start_worker(env, "swap", log)
    try:
        waited = run_cli(["job", "--wait"], env, timeout=180)
        assert waited.returncode == 0, waited.stderr + log.read_text()
    finally:
        stop_workers([worker])
    assert dead_reasons(env) == {
        names[1]: "symlink_outside_root",
        f"sub/{names[0]}": "symlink_outside_root",
    }
    docs = stream(env, "docs")
    assert sorted(doc["input_ref"] for doc in docs) == sorted([names[0], names[2]])
    assert not any("TOPSECRETMARKER" in json.dumps(doc) for doc in docs)


# ------------------------------------------------- files rewritten while queued


def test_an_export_rewritten_while_its_batches_wait_is_file_changed(
    tmp_path: Path, redis_target: RedisTarget, prefix: str
) -> None:
    """An exporter regenerates latest.jsonl (other records) after the backfill queued it
    and before a worker runs: no planned line number is published with another record's
    text, nothing is read from the middle of a line (malformed_json), and the next
    backfill reads the new file whole."""
    folder = tmp_path / "in"
    folder.mkdir()
    export = folder / "latest.jsonl"

    rng = random.Random(7)
    vocabulary = ["".join(rng.choices("abcdefghijklmnoprstuvy", k=6)) for _ in range(3000)]

    def write(first: int, count: int) -> None:
        records = [
            {
                "id": f"a{i}",
                "title": f"Story {i}",
                "text": " ".join(rng.choices(vocabulary, k=80 + i % 7)),
            }
            for i in range(first, first + count)
        ]
        export.write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")

    write(0, 60)
    env = cli_env(redis_url=redis_target.url, prefix=prefix, NEWSDEDUP_INGEST__BATCH_SIZE="20")
    queued = run_cli(["backfill", "--no-wait", str(folder)], env)
    assert queued.returncode == 0 and "enqueued 60 inputs" in queued.stdout, queued
    write(100, 70)
    log = tmp_path / "worker.log"
    worker = start_worker(env, "rewrite", log)
    try:
        waited = run_cli(["job", "--wait"], env, timeout=180)
        assert "60 inputs, 0 published" in summary(waited), summary(waited)
        assert not stream(env, "docs"), "a record of the new file published under an old line"
        reasons = dead_reasons(env)
        assert len(reasons) == 60 and set(reasons.values()) == {"file_changed"}, reasons
        again = run_cli(["backfill", "--wait", str(folder)], env, timeout=180)
        assert "70 inputs, 70 published" in summary(again), summary(again) + log.read_text()
    finally:
        stop_workers([worker])
    assert {doc["id"] for doc in stream(env, "docs")} == {f"a{i}" for i in range(100, 170)}


# ----------------------------------------------------- batches nobody planned


def test_a_forged_batch_naming_another_folder_reads_nothing(
    tmp_path: Path, redis_target: RedisTarget, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    copy_seeds(folder, 2)
    other = tmp_path / "other"
    other.mkdir()
    private = "PRIVATEMARKER a document in a folder no backfill registered " * 5
    (other / "private.txt").write_text(f"Private title\n{private}\n")
    env = cli_env(redis_url=redis_target.url, prefix=prefix)
    queued = run_cli(["backfill", "--no-wait", str(folder)], env)
    assert queued.returncode == 0, queued.stderr
    job_id = queued.stdout.split()[1].rstrip(":")

    # Whoever can write to the broker sends batches of their own: one under the real job,
    # one under a job that does not exist.
    forged = TaskSpec(str(other.resolve()), (Location("private.txt"),), inputs=1)
    monkeypatch.delenv("NEWSDEDUP_PREFIX", raising=False)
    monkeypatch.delenv("BROKER_URL", raising=False)
    sender = make_app(Settings(prefix=prefix, redis_url=redis_target.url))
    try:
        for target_job in (job_id, "20200101T000000-forged"):
            sender.send_task("newsdedup.ingest_batch", args=[target_job, 0, forged.to_json(), None])
    finally:
        sender.close()

    log = tmp_path / "worker.log"
    worker = start_worker(env, "forged", log)
    try:
        waited = run_cli(["job", job_id, "--wait"], env, timeout=180)
        assert waited.returncode == 0, waited.stderr + log.read_text()
        deadline = time.monotonic() + 60
        while log.read_text(errors="replace").count("refused") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        stop_workers([worker])
    text = log.read_text(errors="replace")
    assert f"job {job_id} registered no root" in text, text
    assert "no job '20200101T000000-forged'" in text, text
    docs = stream(env, "docs")
    assert sorted(doc["input_ref"] for doc in docs) == sorted(p.name for p in folder.iterdir())
    assert not any("PRIVATEMARKER" in json.dumps(doc) for doc in docs)
    assert stream(env, "dead") == []
    progress = json.loads(run_cli(["job", job_id, "--json"], env).stdout)
    assert (progress["total"], progress["published"], progress["dead"]) == (2, 2, 0)


# ------------------------------------------------------------------------- caps

PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(f'peak_rss_kib={peak}', file=sys.stderr)\n"
    "sys.exit(done.returncode)\n"
)


def run_cli_measured(
    args: list[str], env: dict[str, str], timeout: float
) -> tuple[subprocess.CompletedProcess[str], int]:
    """The CLI as `run_cli` runs it, plus the peak RSS in bytes of the largest process of
    its tree (the CLI itself, its embedded Redis, its worker processes)."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "workers.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    peak = next(
        int(line.split("=")[1]) for line in done.stderr.splitlines() if "peak_rss_kib=" in line
    )
    return done, peak * 1024


def test_a_gz_line_bomb_is_dead_and_memory_stays_bounded(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.jsonl").write_text(record("good-1", article(1)) + "\n")
    # 1.5 MB on disk, one line of 600 MiB once decompressed.
    head = b'{"id": "bomb", "text": "'
    write_gz(folder / "bomb.jsonl.gz", [head, *repeated(b"a", 600 * MiB), b'"}\n'])
    assert (folder / "bomb.jsonl.gz").stat().st_size < 5 * MiB
    env = cli_env(data_dir=tmp_path / "data")
    done, peak = run_cli_measured(["backfill", str(folder)], env, timeout=300)
    line = summary(done)
    assert "2 inputs, 1 published" in line and "1 dead (1 record_too_large)" in line, line
    assert dead_reasons(env) == {"bomb.jsonl.gz:1": "record_too_large"}
    assert peak < 500 * MiB, f"peak RSS {peak / MiB:.0f} MiB"


def test_a_gz_over_the_decompressed_cap_keeps_what_came_before(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    lines = [record(f"r{n}", article(n)) + "\n" for n in range(40)]
    with gzip.open(folder / "many.jsonl.gz", "wt", encoding="utf-8") as out:
        out.writelines(lines)
    cap = sum(len(line.encode()) for line in lines[:25]) + 10  # the cap falls in line 26
    env = cli_env(data_dir=tmp_path / "data", NEWSDEDUP_INGEST__MAX_DECOMPRESSED_BYTES=str(cap))
    line = summary(run_cli(["backfill", str(folder)], env, timeout=180))
    assert "26 inputs, 25 published" in line, line
    assert dead_reasons(env) == {"many.jsonl.gz:26": "decompressed_too_large"}


def test_a_newline_bomb_plans_and_loads_in_seconds(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    first = (record("first", article(1)) + "\n").encode()
    last = (record("last", article(2)) + "\n").encode()
    write_gz(folder / "newlines.jsonl.gz", [first, *repeated(b"\n", 512 * MiB), last])
    assert (folder / "newlines.jsonl.gz").stat().st_size < 2 * MiB
    env = cli_env(data_dir=tmp_path / "data")
    started = time.monotonic()
    line = summary(run_cli(["backfill", str(folder)], env, timeout=300))
    elapsed = time.monotonic() - started
    assert "2 inputs, 2 published" in line, line
    assert elapsed < 45, f"{elapsed:.0f} s"
    refs = sorted(doc["input_ref"] for doc in stream(env, "docs"))
    assert refs == ["newlines.jsonl.gz:1", f"newlines.jsonl.gz:{512 * MiB + 2}"]


def test_a_50_mb_jsonl_record_is_dead_not_published(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    paragraphs = "\\n".join([article(9)] * (50 * MiB // len(article(9))))
    with (folder / "big.jsonl").open("w") as out:
        out.write(record("before", article(1)) + "\n")
        out.write('{"id": "huge", "text": "' + paragraphs + '"}\n')
        out.write(record("after", article(2)) + "\n")
    assert (folder / "big.jsonl").stat().st_size > 50 * MiB
    env = cli_env(data_dir=tmp_path / "data")
    done, peak = run_cli_measured(["backfill", str(folder)], env, timeout=300)
    line = summary(done)
    assert "3 inputs, 2 published" in line and "1 dead (1 record_too_large)" in line, line
    assert dead_reasons(env) == {"big.jsonl:2": "record_too_large"}
    assert sorted(doc["id"] for doc in stream(env, "docs")) == ["after", "before"]
    assert peak < 500 * MiB, f"peak RSS {peak / MiB:.0f} MiB"


def test_a_5_mb_title_is_cut_and_the_article_kept(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    title = "Breaking " + "news " * (MiB)  # 5 MiB
    (folder / "titles.jsonl").write_text(record("long-title", article(3), title=title) + "\n")
    env = cli_env(data_dir=tmp_path / "data")
    line = summary(run_cli(["backfill", str(folder)], env, timeout=180))
    assert "1 input, 1 published" in line, line
    (doc,) = stream(env, "docs")
    assert doc["id"] == "long-title" and doc["text"].strip()
    assert 500 <= len(doc["title"]) <= 1000, len(doc["title"])
    assert doc["title"].startswith("Breaking news news") and doc["title"].endswith("news…")


# ------------------------------------------------------------- texts with no words


def test_invisible_and_wordless_texts_are_dead_not_duplicates(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    copy_seeds(folder, 2)
    texts = {
        # zero-width space, ZWJ, RLM, bidi isolates, variation selector, soft hyphen,
        # combining grapheme joiner, Hangul filler, LRM, braille blank
        "invisible.txt": "A headline\n\u200b\u200d\u200f\u2066\u2069\ufe0f\u00ad\u034f\u3164 "
        "\u200e\n\u2800\n",
        "emoji_a.txt": "Goal\n🔥🔥🔥 ⚽ 🎉\n",
        "emoji_b.txt": "Party\n🎂 🎈🎈 🥳\n",
        "emoji_a_again.txt": "Again\n🔥🔥🔥 ⚽ 🎉\n",
        "punctuation.txt": "Dots\n... !!! ??? --- ***\n",
    }
    for name, text in texts.items():
        (folder / name).write_text(text, "utf-8")
    env = cli_env(data_dir=tmp_path / "data")
    line = summary(run_cli(["backfill", str(folder)], env, timeout=180))
    assert "7 inputs, 2 published, 0 exact duplicates" in line, line
    assert dead_reasons(env) == {
        "invisible.txt": "empty_text",
        "emoji_a.txt": "no_words",
        "emoji_b.txt": "no_words",
        "emoji_a_again.txt": "no_words",
        "punctuation.txt": "no_words",
    }
    assert stream(env, "duplicates") == []


# ------------------------------------------- the streaming readers, against references
