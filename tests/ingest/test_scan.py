"""Reading hostile files without trusting them: file names that are not UTF-8 escaped
and back, JSON arrays counted without loading them, lines scanned in bounded chunks."""

from __future__ import annotations

import io
import json
import os
import random
from typing import Any

import pytest

from workers.ingest.paths import escape_name, os_path
from workers.ingest.scan import LineScanner, json_array_elements, scan_json_array

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_line_scanner_agrees_with_splitting_lines(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("workers.ingest.scan.CHUNK_BYTES", chunk)
    rng = random.Random(chunk)
    pieces = [b"", b" ", b"\t \r", b'{"a": 1}', b"  x  ", b"\x0b", b"abc def", b"0123456789"]
    for _ in range(200):
        data = b"\xef\xbb\xbf" if rng.random() < 0.2 else b""
        data += b"".join(rng.choice(pieces) + b"\n" for _ in range(rng.randint(0, 12)))
        data += b"tail" if rng.random() < 0.5 else b""
        expected, offset = [], 0
        for index, raw in enumerate(data.split(b"\n")):
            if (raw.removeprefix(b"\xef\xbb\xbf") if index == 0 else raw).strip():
                expected.append((index, offset))
            offset += len(raw) + 1
        lines = list(LineScanner(io.BytesIO(data), max_line_bytes=5))
        assert [(line.index, line.offset) for line in lines] == expected, data
        assert all(line.data is None or len(line.data) <= 5 for line in lines)
        assert all((line.data is None) == (line.size > 5) for line in lines)


def test_json_array_count_agrees_with_json_loads() -> None:
    rng = random.Random(3)

    def value(depth: int = 0) -> Any:
        roll = rng.random()
        if depth > 3 or roll < 0.3:
            return rng.choice([1, 'q\\"]x,', None, True, 2.5, "a\\", "[{", "", "ن"])
        if roll < 0.6:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return {f"k{i},]": value(depth + 1) for i in range(rng.randint(0, 3))}

    decoder = json.JSONDecoder()
    for _ in range(200):
        array = [value() for _ in range(rng.randint(0, 6))]
        text = json.dumps(array, indent=rng.choice([None, 1]), ensure_ascii=rng.random() < 0.5)
        for encoding in ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"):
            data = text.encode(encoding)
            scanned = scan_json_array(io.BytesIO(data))
            assert scanned is not None and scanned.count == len(array), text
            if not encoding.startswith("utf-8"):
                assert scanned.offsets is None  # decoded to scan: no byte offsets
                continue
            # Each element parses from its offset to the value the whole parse gives.
            assert scanned.offsets is not None and len(scanned.offsets) == len(array)
            for offset, element in zip(scanned.offsets, array, strict=True):
                assert decoder.raw_decode(data[offset:].decode("utf-8"))[0] == element
        assert scan_json_array(io.BytesIO(json.dumps({"a": array}).encode())) is None
        assert scan_json_array(io.BytesIO(text.encode()[:-1])) is None  # never closed


@pytest.mark.parametrize(
    ("text", "elements"),
    [
        ("[]", []),
        (" [ ] ", []),
        ('[{"a": "x,]"}, 2 ]', ['{"a": "x,]"}', "2 "]),
        ('[1, {"a": 1}}, 3]', None),  # the array's brackets do not pair: no array
        ("[1, {]", None),  # never closed
        ("[1} ", None),  # closed by a brace
        ("[1 2, 3]", ["1 2", "3"]),  # a missing comma: one malformed element
        ("[1, x, 3]", ["1", "x", "3"]),
        ("[1,,3]", ["1", "", "3"]),  # a missing value is an (empty) element
        ("[1, 2,]", ["1", "2", ""]),
        ("[,]", ["", ""]),
        ("[\x0c{}, 2\x0c]", ["\x0c{}", "2\x0c"]),  # a form feed is no JSON space
        ("[1,\x0b 2]", ["1", "\x0b 2"]),  # nor a vertical tab
    ],
)
def test_json_array_elements_are_what_the_array_s_own_commas_delimit(
    text: str, elements: list[str] | None
) -> None:
    """An array's elements are delimited by its own commas and brackets, whatever they
    hold: a malformed element is one element, never a reason to lose its neighbours, and
    planning (which counts them) and loading (which reads them) see the same ones."""
    spans = json_array_elements(text, range(0, 100))
    assert (None if spans is None else [text[a:b] for a, b in spans]) == elements
    scanned = scan_json_array(io.BytesIO(text.encode()))
    assert (None if scanned is None else scanned.count) == (
        None if elements is None else len(elements)
    )
    if elements:
        assert scanned is not None and scanned.offsets is not None
        assert spans is not None and list(scanned.offsets) == [a for a, _ in spans]
        assert json_array_elements(text, range(1, 2)) == spans[1:2]


@pytest.mark.parametrize(
    "data",
    [
        b'[{"text": "a"}, {"text": "b\x01"}]',
        '[{"text": "a"}, {"text": "b\u0085"}]'.encode(),
        b'[{"text": "a"}, {"text": "caf\xe9"}]',  # cp1256 or Latin-1, not UTF-8
    ],
    ids=["control byte", "C1 character", "not UTF-8"],
)
def test_json_offsets_only_where_a_range_decodes_as_the_whole_file(data: bytes) -> None:
    """Offsets are kept only when decode_bytes would read the file as plain UTF-8: then a
    range decoded from its offset is the same text as the whole file's."""
    scanned = scan_json_array(io.BytesIO(data))
    assert scanned is not None and scanned.count == 2 and scanned.offsets is None


def test_escaped_names_round_trip_and_never_collide() -> None:
    rng = random.Random(5)
    # ASCII, a backslash, the letters of an escape, bytes that are not UTF-8 (a lone 0xff,
    # a cut sequence, an encoded surrogate) and real UTF-8 (é, ع).
    alphabet = [b"a", b"\\", b"x", b"f", b"\xff", b"\xc3", b"\xed\xa0\x80"]
    alphabet += [b"\xc3\xa9", b"\xd8\xb9"]
    seen: dict[str, bytes] = {}
    for _ in range(3000):
        raw = b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
        escaped = escape_name(os.fsdecode(raw))
        escaped.encode("utf-8")  # always encodable: Redis, JSON and terminals take it
        assert os.fsencode(os_path(escaped)) == raw
        assert seen.setdefault(escaped, raw) == raw, (escaped, raw)
    assert escape_name(os.fsdecode(b"bad\xff.txt")) == "bad\\xff.txt"
    assert escape_name("a\\xff.txt") == "a\\\\xff.txt"  # a real backslash stays apart
    assert escape_name("عربي.txt") == "عربي.txt"
