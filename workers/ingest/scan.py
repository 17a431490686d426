"""Streaming reads of input files in bounded memory, however the file is shaped.

`LineScanner` reads JSONL in chunks: runs of blank lines are skipped inside a chunk by C
code (a regex search and a newline count), never line by line in Python, so half a GiB
of newlines goes by in seconds; a line never takes more than `max_line_bytes` of memory
(a longer one is reported with its size and no data), and with `max_total_bytes` reading
stops at that many bytes (decompressed, for a .gz).

`scan_json_array` counts the elements of a top-level JSON array in chunks, so planning
never holds a JSON file in memory either; in a UTF-8 file it also notes where each
element starts, so that loading reads a range from there instead of parsing the whole
file for it. `json_array_elements` finds the same elements in a decoded text, so that
loading reads a malformed element as one input, whatever range holds it.
"""

from __future__ import annotations

import codecs
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from workers.ingest.decode import has_control_characters

CHUNK_BYTES = 1 << 20
_BOM = codecs.BOM_UTF8
# What bytes.strip() strips: a line of nothing else is blank.
_CONTENT = re.compile(rb"[^ \t\n\r\x0b\x0c]")


class TotalCapExceeded(Exception):
    """The stream holds more than `max_total_bytes`; the scanner's `index`/`offset` name
    the line it was in."""


@dataclass(frozen=True, slots=True)
class Line:
    """One non-blank line. `data` (without the newline) is None when it is longer than the
    scanner's `max_line_bytes`; `size` is its length either way."""

    index: int  # 0-based physical line number, blank lines included
    offset: int  # byte offset of the line's first byte in the (decompressed) stream
    data: bytes | None
    size: int


class LineScanner:
    """Iterate the non-blank lines of `stream` from `start_index`/`start_offset` (where the
    stream is positioned; a UTF-8 BOM at offset 0 does not count as content).

    After an exception (a read error, TotalCapExceeded), `index` and `offset` name the
    line being read when it struck.
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        max_line_bytes: int,
        max_total_bytes: int | None = None,
        start_index: int = 0,
        start_offset: int = 0,
    ) -> None:
        self.stream = stream
        self.max_line_bytes = max_line_bytes
        self.max_total_bytes = max_total_bytes
        self.index = start_index
        self.offset = start_offset  # of the line being read
        self._read = start_offset  # bytes of the stream consumed so far

    def __iter__(self) -> Iterator[Line]:
        parts: list[bytes] | None = []  # the current line's bytes, None once over the cap
        size = 0
        content = False  # the current line has a non-blank byte
        first = self._read == 0
        cap = self.max_total_bytes
        # read1: what one read of the file (or one step of decompression) gives, so that a
        # truncated .gz still yields the lines before the point where it breaks.
        read = getattr(self.stream, "read1", self.stream.read)
        while True:
            want = CHUNK_BYTES if cap is None else min(CHUNK_BYTES, cap - self._read + 1)
            chunk: bytes = read(want)
            while first and chunk and len(chunk) < len(_BOM) and (more := read(len(_BOM))):
                chunk += more  # a short first read: make sure a BOM is seen whole
            if not chunk:
                break
            base = self._read
            self._read += len(chunk)
            over = cap is not None and self._read > cap
            if cap is not None and over:
                chunk = chunk[: len(chunk) - (self._read - cap)]
            pos, end = 0, len(chunk)
            if first:
                first = False
                if chunk.startswith(_BOM):
                    pos = len(_BOM)
            while pos < end:
                if not content:
                    found = _CONTENT.search(chunk, pos)
                    stop = end if found is None else found.start()
                    newlines = chunk.count(b"\n", pos, stop)
                    if newlines:
                        self.index += newlines
                        self.offset = base + chunk.rindex(b"\n", pos, stop) + 1
                    if found is None:
                        break
                    content, pos = True, stop
                newline = chunk.find(b"\n", pos)
                stop = end if newline < 0 else newline
                size += stop - pos
                if parts is not None:
                    if size <= self.max_line_bytes:
                        parts.append(chunk[pos:stop])
                    else:
                        parts = None  # too long to keep: only its size is counted on
                if newline < 0:
                    break
                data = None if parts is None else b"".join(parts)
                yield Line(self.index, self.offset, data, size)
                self.index += 1
                self.offset = base + newline + 1
                parts, size, content = [], 0, False
                pos = newline + 1
            if over:
                raise TotalCapExceeded
        if content:  # a last line without a newline
            yield Line(self.index, self.offset, None if parts is None else b"".join(parts), size)


# ------------------------------------------------------------------------- JSON arrays

_JSON_SPACE = " \t\r\n"
# Outside strings, at the array's own level: every non-space character matters (a value
# starts, a comma, the closing bracket). Deeper: only brackets and string quotes.
_TOP = re.compile(r"[^ \t\r\n]")
_NESTED = re.compile(r'["\[\]{}]')
_IN_STRING = re.compile(r'["\\]')
# The same, for a UTF-8 file scanned as bytes.
_TOP_BYTES = re.compile(rb"[^ \t\r\n]")
_NESTED_BYTES = re.compile(rb'["\[\]{}]')
_IN_STRING_BYTES = re.compile(rb'["\\]')


# Element offsets are kept for at most this many elements (8 bytes each): more, in a file
# of at most `max_file_bytes`, are values too small to be articles.
MAX_ELEMENT_OFFSETS = 2_000_000


@dataclass(frozen=True, slots=True)
class JsonArray:
    """What `scan_json_array` found: the number of elements and, when loading may read
    from there, the byte offset at which each starts."""

    count: int
    offsets: array[int] | None


def scan_json_array(stream: BinaryIO) -> JsonArray | None:
    """The elements of the JSON array `stream` holds, read in chunks; None when it does
    not hold one (an object, a scalar, or an array whose brackets do not pair). For valid
    JSON the count is exact; in an array with malformed elements it counts what the
    array's own commas delimit, as loading reads them (`json_array_elements`).

    A UTF-8 file is scanned as bytes: JSON's structure is ASCII, and no byte of a
    multi-byte UTF-8 character is. Its element offsets are kept when the whole file is
    valid UTF-8 without control characters, so that `decode_bytes` would read it as plain
    UTF-8 too and a range decoded from its offset is the same text."""
    head = stream.read(CHUNK_BYTES)
    while head and len(head) < 4 and (more := stream.read(CHUNK_BYTES)):
        head += more  # enough to recognise the encoding
    encoding = json_encoding(head)
    if encoding not in ("utf-8", "utf-8-sig"):
        return _scan_decoded(stream, head, encoding)
    bom = len(_BOM) if encoding == "utf-8-sig" else 0
    counter = _ArrayCounter(binary=True, base=bom)
    strict = codecs.getincrementaldecoder("utf-8")("strict")
    plain = True  # valid UTF-8 so far, without control characters
    chunk = head[bom:]
    while chunk:
        if not counter.feed(chunk):
            return None
        if plain:
            try:
                strict.decode(chunk)
                plain = not has_control_characters(chunk)
            except UnicodeDecodeError:
                plain = False
        chunk = stream.read(CHUNK_BYTES)
    if plain:
        try:
            strict.decode(b"", final=True)
        except UnicodeDecodeError:
            plain = False
    count = counter.result()
    if count is None:
        return None
    return JsonArray(count, counter.starts if plain else None)


def json_array_elements(text: str, wanted: range) -> list[tuple[int, int]] | None:
    """Where the elements numbered in `wanted` lie in the JSON array `text` (decoded,
    without a BOM): (start, end) each, from the first character of its value to the comma
    or bracket after it, by the scan `scan_json_array` counts with, so planning and
    loading see the same elements. A missing value ("[1,,2]", "[1,]") is an empty element.
    None when `text` holds no array whose brackets pair (one never closed, closed by a
    brace, or followed by more): its elements cannot be told apart."""
    counter = _ArrayCounter(binary=False, spans=wanted)
    if not counter.feed(text) or counter.result() is None:
        return None
    return counter.spans


def _scan_decoded(stream: BinaryIO, head: bytes, encoding: str) -> JsonArray | None:
    """`scan_json_array` of a UTF-16 or UTF-32 file: decoded, and without offsets."""
    decoder = codecs.getincrementaldecoder(encoding)("replace")
    counter = _ArrayCounter(binary=False)
    chunk = head
    while chunk:
        if not counter.feed(decoder.decode(chunk)):
            return None
        chunk = stream.read(CHUNK_BYTES)
    counter.feed(decoder.decode(b"", final=True))
    count = counter.result()
    return None if count is None else JsonArray(count, None)


def json_encoding(head: bytes) -> str:
    """UTF-8 (BOM or not), or UTF-16/32 by BOM or by where the NULs of "[" fall."""
    for bom, name in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if head.startswith(bom):
            return name
    start = head[:4]
    if len(start) == 4 and start[1:] == b"\x00\x00\x00":
        return "utf-32-le"
    if len(start) == 4 and start[:3] == b"\x00\x00\x00":
        return "utf-32-be"
    if start[1:2] == b"\x00":
        return "utf-16-le"
    if start[:1] == b"\x00":
        return "utf-16-be"
    return "utf-8"


class Utf8Recoded:
    """The UTF-8 bytes of a UTF-16 or UTF-32 binary stream, read chunk by chunk (what
    `LineScanner` reads a JSONL file saved in UTF-16, as Windows PowerShell 5 writes it,
    through: its newlines are two or four bytes, and a line's bytes are not UTF-8).
    Unpaired surrogates and a cut last character become U+FFFD."""

    def __init__(self, stream: BinaryIO, encoding: str) -> None:
        self.stream = stream
        self._decoder = codecs.getincrementaldecoder(encoding)("replace")
        self._done = False

    def read(self, size: int = -1) -> bytes:
        """At least one character's bytes unless at the end (a chunk may be longer than
        `size`: UTF-8 takes up to 1.5 times UTF-16's bytes)."""
        while not self._done:
            data = self.stream.read(CHUNK_BYTES if size < 0 else max(size, 4))
            self._done = not data
            text = self._decoder.decode(data, final=self._done)
            if text:
                return text.encode("utf-8", "replace")
        return b""


class _ArrayCounter:
    """Counts a top-level array's elements in text fed chunk by chunk: decoded text, or
    the bytes of a UTF-8 file (`binary`), whose offsets it then records in `starts`."""

    def __init__(self, *, binary: bool, base: int = 0, spans: range | None = None) -> None:
        self.started = False
        self.closed = False
        self.trailing = False  # something after the closing bracket
        self.depth = 0
        self.in_string = False
        self.escaped = False  # the last chunk ended inside a string on a backslash
        self.expect_value = False  # at depth 1, after "[" or ","
        self.count = 0
        self.top: re.Pattern[Any] = _TOP_BYTES if binary else _TOP
        self.nested: re.Pattern[Any] = _NESTED_BYTES if binary else _NESTED
        self.in_string_end: re.Pattern[Any] = _IN_STRING_BYTES if binary else _IN_STRING
        self.space: str | bytes = _JSON_SPACE.encode() if binary else _JSON_SPACE
        self.base = base  # the offset of the next chunk fed
        self.starts: array[int] | None = array("q") if binary else None
        # The (start, end) of the elements numbered in `window`, end the offset of the
        # comma or bracket after the element; `opened` the start of the one being read.
        self.window = spans
        self.spans: list[tuple[int, int]] = []
        self.opened = -1

    def result(self) -> int | None:
        return self.count if self.closed and not self.trailing else None

    def feed(self, text: str | bytes) -> bool:
        """Scan `text`; False as soon as the document is known not to be an array."""
        try:
            return self._scan(text)
        finally:
            self.base += len(text)

    def _scan(self, text: Any) -> bool:
        pos, end = 0, len(text)
        while pos < end:
            if self.closed:
                self.trailing = self.trailing or bool(text[pos:].strip(self.space))
                return True
            if self.in_string:
                if self.escaped:
                    self.escaped, pos = False, pos + 1
                    continue
                found = self.in_string_end.search(text, pos)
                if found is None:
                    return True
                pos = found.end()
                if _char(found) == "\\":
                    self.escaped = True
                else:
                    self.in_string = False
                continue
            if not self.started:
                found = self.top.search(text, pos)
                if found is None:
                    return True
                if _char(found) != "[":
                    return False
                self.started, self.depth, self.expect_value = True, 1, True
                pos = found.end()
                continue
            found = (self.top if self.depth == 1 else self.nested).search(text, pos)
            if found is None:
                return True
            char, pos = _char(found), found.end()
            if self.depth == 1:
                at = self.base + found.start()
                if char in ",]":
                    # A comma or the closing bracket where a value was due ("[1,,2]",
                    # "[1,]", not "[]") ends an empty element: a malformed one.
                    if self.expect_value and (char == "," or self.count):
                        self._begin(at)
                    self._end(at)
                    self.expect_value = char == ","
                    if char == "]":
                        self.depth, self.closed = 0, True
                    continue
                if char == "}":
                    return False  # the array closed by a brace: its structure is broken
                if self.expect_value:
                    self._begin(at)
            if char == '"':
                self.in_string = True
            elif char in "[{":
                self.depth += 1
            elif char in "]}":
                self.depth -= 1
                if self.depth == 0:
                    self.closed = True
        return True

    def _begin(self, at: int) -> None:
        """An element starts at offset `at` (a value, or where one was due)."""
        if self.window is not None and self.count in self.window:
            self.opened = at
        self.count += 1
        self.expect_value = False
        if self.starts is not None:
            if len(self.starts) < MAX_ELEMENT_OFFSETS:
                self.starts.append(at)
            else:
                self.starts = None

    def _end(self, at: int) -> None:
        """The element being read ends before offset `at`."""
        if self.opened >= 0:
            self.spans.append((self.opened, at))
            self.opened = -1


def _char(found: re.Match[Any]) -> str:
    """The one character a pattern matched, as text (a byte as its Latin-1 character)."""
    matched = found.group()
    return chr(matched[0]) if isinstance(matched, bytes) else matched
