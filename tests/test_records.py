"""The output contract (workers/records.py): typed records that write exactly the fields
the streams always had, read entries back typed, generate docs/streams.md's schema tables,
and serve `tail` as the old hand-written decoding did."""

from __future__ import annotations

import contextlib
import io
import json
import re
from typing import Any

import pytest
from conftest import ROOT, RedisTarget

from workers.document import DeadInput, Document, StrippedLine
from workers.index.keys import STREAM_NAMES
from workers.ops.streams import as_record
from workers.records import (
    RECORD_TYPES,
    RULES,
    VERDICTS,
    DeadRecord,
    DocRecord,
    DuplicateRecord,
    RemovedLine,
    markdown_tables,
    read_entry,
)

GOLDEN = json.loads((ROOT / "tests" / "golden" / "stream_entries.json").read_text("utf-8"))
REMOVED = [StrippedLine(0, "تابعونا", "follow"), StrippedLine(5, "x | y", "learned")]
DOC = Document(
    "a1", "outlet", "نص\n\nفقرة", "dir/a1.txt", "عنوان", "https://example.org/a",
    "2024-05-01T10:00:00+00:00", "كاتب", "ar", REMOVED,
)  # fmt: skip


def _golden(stream: str) -> list[dict[str, str]]:
    return [dict(pairs) for pairs in GOLDEN[stream]]


def test_one_record_type_per_stream() -> None:
    assert tuple(RECORD_TYPES) == STREAM_NAMES
    assert [record.stream for record in RECORD_TYPES.values()] == list(STREAM_NAMES)


def test_records_write_the_fields_the_streams_always_had() -> None:
    doc = DocRecord.for_document(DOC, "hash", "2024-05-02T00:00:00.000Z").to_fields()
    # The same names, in order; the index appends its own (`filled_by_index`).
    written = [k for k, _ in GOLDEN["docs"][0]]
    assert list(doc) == [k for k in written if k not in DocRecord.filled_by_index]
    assert written[len(doc) :] == ["reason"]  # a new document links to nothing
    assert doc["id"] == "a1" and next(iter(doc)) == "id"  # the index replaces the first
    assert doc["stripped_lines"] == "2"
    assert json.loads(doc["stripped"]) == [
        {"line": "تابعونا", "rule": "follow"},
        {"line": "x | y", "rule": "learned"},
    ]
    assert "تابعونا" in doc["stripped"]  # not \\u-escaped
    dup = DuplicateRecord.for_document(DOC, "hash", "t").to_fields()
    # The worker's part, then what the index appends.
    assert [*dup, *DuplicateRecord.filled_by_index] == [k for k, _ in GOLDEN["duplicates"][0]]
    assert dup["text"] == DOC.text
    dead = DeadRecord.for_input(DeadInput("f.txt", "too_large", "big", "", "src"), "t")
    assert dead.to_fields() == {
        "id": "f.txt",  # no id of its own: its input_ref
        "input_ref": "f.txt",
        "source": "src",
        "reason": "too_large",
        "error": "big",
        "failed_at": "t",
    }


@pytest.mark.parametrize("stream", STREAM_NAMES)
def test_real_entries_read_back_typed_and_write_out_the_same(stream: str) -> None:
    record_type = RECORD_TYPES[stream]
    for entry in _golden(stream):
        record = record_type.from_fields(entry)
        assert isinstance(record, record_type)
        again = record.to_fields()
        assert list(again) == list(entry)
        for name, value in entry.items():
            if name in ("similarity", "containment"):
                assert float(again[name]) == float(value)  # "1" comes back as "1.0"
            elif name == "reason" and stream != "dead":
                # The script's JSON and Python's differ in spelling ("\/", "1.0000"), not
                # in value.
                assert json.loads(again[name]) == json.loads(value)
            else:
                assert again[name] == value, (stream, name)
        assert record_type.from_fields(again) == record
        # As redis-py gives them without decode_responses.
        raw = {k.encode(): v.encode() for k, v in entry.items()}
        assert record_type.from_fields(raw) == record


def test_typed_values() -> None:
    doc = read_entry("docs", _golden("docs")[-1])
    assert isinstance(doc, DocRecord)
    assert doc.input_id == "a/000_b1ab6303fef3538a.txt" and doc.id.endswith("~2")
    assert isinstance(doc.stripped_lines, int)
    first = read_entry("docs", _golden("docs")[0])
    assert isinstance(first, DocRecord) and first.input_id is None
    assert all(isinstance(line, RemovedLine) for line in first.stripped)
    dup = read_entry("duplicates", _golden("duplicates")[-1])
    assert isinstance(dup, DuplicateRecord)
    assert (dup.kind, dup.match, dup.similarity) == ("near", "minhash", 0.8906)
    exact = read_entry("duplicates", _golden("duplicates")[0])
    assert isinstance(exact, DuplicateRecord) and exact.similarity == 1.0


def test_entries_from_other_versions_are_read() -> None:
    # An older entry without author/language/stripped, and a field no record knows.
    old = {"id": "x", "source": "s", "text": "t", "stripped_lines": "0", "later": "v"}
    doc = DocRecord.from_fields(old)
    assert (doc.author, doc.language, doc.stripped, doc.stripped_lines) == ("", "", (), 0)
    shown = as_record("docs", ("1-0", old))
    assert shown["later"] == "v" and shown["stripped_lines"] == 0


def _old_as_record(stream: str, entry: tuple[str, dict[str, str]]) -> dict[str, Any]:
    """What `tail --json` printed before the records (workers/streams.py, verbatim), and
    the fields added since, typed: a decision's `reason` as its JSON, `version` a number."""
    entry_id, fields = entry
    record: dict[str, Any] = {"stream_id": entry_id}
    for name, value in fields.items():
        if name == "reason" and stream != "dead":
            record[name] = json.loads(value)
        elif name in {"stripped_lines", "version"}:
            record[name] = int(value)
        elif name in {"similarity", "containment"}:
            record[name] = float(value)
        elif name in {"stripped"}:
            record[name] = json.loads(value) if value else []
        else:
            record[name] = value
    return record


@pytest.mark.parametrize("stream", STREAM_NAMES)
def test_tail_prints_what_it_printed_before(stream: str) -> None:
    for n, entry in enumerate(_golden(stream)):
        pair = (f"{n}-0", entry)
        new, old = as_record(stream, pair), _old_as_record(stream, pair)
        assert json.dumps(new, ensure_ascii=False) == json.dumps(old, ensure_ascii=False)


def test_the_streams_doc_schema_tables_are_generated_from_the_records() -> None:
    doc = (ROOT / "docs" / "streams.md").read_text("utf-8")
    block = re.search(r"<!-- records:[^\n]*-->\n(.*?)<!-- /records -->", doc, re.S)
    assert block, "docs/streams.md's generated records block is missing"
    assert block.group(1) == markdown_tables(), (
        "out of date: replace the block with the output of `python -m workers.records`"
    )
    for record in RECORD_TYPES.values():
        for name, _, doc in record.schema():
            assert doc.strip(), (record, name)


def test_the_consumer_example_in_the_module_docstring_runs(
    redis_target: RedisTarget, prefix: str
) -> None:
    import workers.records

    code = (workers.records.__doc__ or "").split("any consumer:\n", 1)[1].split("\n\n", 2)
    example = "\n".join(line[4:] for line in "\n\n".join(code[:2]).splitlines())
    assert "DocRecord.from_fields" in example
    example = example.replace("redis://127.0.0.1:6379/0", redis_target.url).replace(
        '"newsdedup:docs"', f'"{prefix}docs"'
    )
    for entry in _golden("docs")[:2]:
        redis_target.client.xadd(f"{prefix}docs", entry)  # type: ignore[arg-type]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, "records-example", "exec"), {})
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "a/000_b1ab6303fef3538a.txt a 3 " in lines[0]


def test_every_rule_and_verdict_is_documented_in_the_streams_doc() -> None:
    doc = (ROOT / "docs" / "streams.md").read_text("utf-8")
    for rule in RULES:
        if rule:
            assert f"| `{rule}` |" in doc, rule
    for verdict in VERDICTS:
        assert f"`{verdict}`" in doc, verdict
