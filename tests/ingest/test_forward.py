"""Files that cannot seek (.jsonl.gz, UTF-16 JSONL) are read about once per worker process,
not once per batch, and every input still comes out exactly once whatever order the
batches come in or whatever happens to the file between them."""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.document import DeadInput, Document, LoadedInput
from workers.ingest import forward, spec
from workers.ingest.html import read_article
from workers.ingest.load import load_task
from workers.ingest.plan import plan_backfill
from workers.ingest.spec import TaskSpec

RECORDS = 230
BATCH = 20


@pytest.fixture(autouse=True)
def _no_kept_streams() -> Iterator[None]:
    forward.close_kept_streams()
    yield
    forward.close_kept_streams()


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every opening of an input file's stream by `jsonl_lines` (planning's and loading's)."""
    opened: list[str] = []
    real = spec.open_in_root

    def counting(root: str, rel: str):  # type: ignore[no-untyped-def]
        opened.append(rel)
        return real(root, rel)

    monkeypatch.setattr(spec, "open_in_root", counting)
    return opened


def _lines(n: int = RECORDS) -> str:
    # Blank lines between some records: line numbers and record counts differ.
    out = []
    for i in range(n):
        out.append(json.dumps({"id": f"r{i}", "title": f"t{i}", "text": f"نص الخبر رقم {i} " * 5}))
        if i % 7 == 3:
            out.append("")
    return "\n".join(out) + "\n"


def _write(path: Path, text: str, kind: str) -> None:
    if kind == "gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:  # as Windows PowerShell 5 writes it: UTF-16 LE with a BOM
        path.write_bytes(text.encode("utf-16"))


def _name(kind: str) -> str:
    return "a.jsonl.gz" if kind == "gz" else "a.jsonl"


def _tasks(root: Path) -> list[TaskSpec]:
    plan = plan_backfill([root], batch_size=BATCH)
    return [TaskSpec.from_json(json.loads(json.dumps(t.to_json()))) for t in plan.tasks]


def _load(task: TaskSpec) -> list[LoadedInput]:
    return list(load_task(task, default_source=None, read_html=read_article))


def _ids(items: list[LoadedInput]) -> list[str]:
    return [item.id for item in items if isinstance(item, Document)]


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["gz", "utf16"])
def test_batches_in_order_read_the_file_once(tmp_path: Path, kind: str, opens: list[str]) -> None:
    _write(tmp_path / _name(kind), _lines(), kind)
    tasks = _tasks(tmp_path)
    assert len(tasks) == 12
    planned = len(opens)
    items = [item for task in tasks for item in _load(task)]
    # One opening for all twelve batches (each batch opened the file again before).
    assert len(opens) - planned == 1
    assert _ids(items) == [f"r{i}" for i in range(RECORDS)]
    assert not [item for item in items if isinstance(item, DeadInput)]
    assert len({item.input_ref for item in items}) == RECORDS


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["gz", "utf16"])
def test_batches_out_of_order_give_the_same_inputs(
    tmp_path: Path, kind: str, opens: list[str]
) -> None:
    """A retried batch (a range before the kept position), a batch of another file between
    two of this one, a batch that skips ranges (another process took them): each gives
    what it gives alone."""
    _write(tmp_path / _name(kind), _lines(), kind)
    (tmp_path / "other").mkdir()
    _write(tmp_path / "other" / _name(kind), _lines(50), kind)
    tasks = _tasks(tmp_path)
    alone: dict[int, list[LoadedInput]] = {}
    for k, task in enumerate(tasks):
        forward.close_kept_streams()
        alone[k] = _load(task)
    forward.close_kept_streams()
    # Mostly forward, as a queue gives them, with retries, skips and a step back.
    n = len(tasks)
    order = [0, 1, 5, 2, n - 2, 3, 6, 6, n - 1, 7, n - 3, 4, 0, *range(8, n - 3)]
    assert sorted(set(order)) == list(range(n))
    for k in order:
        assert _load(tasks[k]) == alone[k], k


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["gz", "utf16"])
def test_file_rewritten_between_batches(tmp_path: Path, kind: str) -> None:
    """The kept stream is of the file as it was: a rewritten file is opened again, and its
    changed lines are `file_changed` as for any batch."""
    path = tmp_path / _name(kind)
    _write(path, _lines(), kind)
    tasks = _tasks(tmp_path)
    _load(tasks[0])
    assert forward.kept_streams() == 1
    _write(path, _lines().replace('"id": "r', '"id": "x'), kind)
    later = _load(tasks[1])
    assert {item.reason for item in later if isinstance(item, DeadInput)} == {"file_changed"}
    assert len(later) == tasks[1].inputs


@pytest.mark.unit
def test_file_deleted_between_batches(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.gz"
    _write(path, _lines(), "gz")
    tasks = _tasks(tmp_path)
    _load(tasks[0])
    path.unlink()
    later = _load(tasks[1])
    assert len(later) == tasks[1].inputs
    assert {item.reason for item in later if isinstance(item, DeadInput)} == {"missing"}
    assert forward.kept_streams() == 0


@pytest.mark.unit
def test_a_batch_abandoned_midway_is_not_kept(tmp_path: Path) -> None:
    _write(tmp_path / "a.jsonl.gz", _lines(), "gz")
    tasks = _tasks(tmp_path)
    items = load_task(tasks[1], default_source=None, read_html=read_article)
    next(items)
    items.close()  # the task failed after its first input
    assert forward.kept_streams() == 0
    assert _load(tasks[1])[0] == _load(tasks[1])[0]


@pytest.mark.unit
def test_seekable_files_are_not_kept(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(_lines(), encoding="utf-8")
    for task in _tasks(tmp_path):
        _load(task)
    assert forward.kept_streams() == 0


def test_open_streams_are_bounded_and_closed_when_idle(  # waits for the reaper: not unit
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forward, "IDLE_SECONDS", 0.5)
    for n in range(forward.MAX_OPEN + 2):
        folder = tmp_path / f"f{n}"
        folder.mkdir()
        _write(folder / "a.jsonl.gz", _lines(60), "gz")
        _load(_tasks(folder)[0])
    assert forward.kept_streams() == forward.MAX_OPEN
    fds = len(os.listdir("/proc/self/fd"))
    deadline = time.monotonic() + 10
    while forward.kept_streams() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert forward.kept_streams() == 0
    # Their files are closed: a deleted input's disk space is given back.
    assert len(os.listdir("/proc/self/fd")) <= fds - forward.MAX_OPEN
