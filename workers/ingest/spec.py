"""A backfill task's inputs: the payload that planning writes and loading reads.

A `TaskSpec` carries paths and line/element ranges (`Location`s) under one root, never
article text, and the `Limits` it was planned with. Planning (plan.py) and loading
(load.py) must count the same inputs: they share the file kinds (`file_kind`), the
limits and the way a JSONL file is read (`jsonl_lines`).

Paths travel escaped (workers/ingest/paths.py), so a file name that is not UTF-8 is an
input like any other.
"""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from workers.config import DEFAULTS
from workers.ingest.paths import open_in_root
from workers.ingest.scan import Line, LineScanner, Utf8Recoded, json_encoding

if TYPE_CHECKING:
    from workers.config import Settings

# A JSON Feed (https://jsonfeed.org) says so in its `version`: ".../version/1.1". Files
# and feed URLs alike may hold one.
JSON_FEED_VERSION = "https://jsonfeed.org/version/"

Kind = Literal["txt", "html", "json", "jsonl", "jsonl_gz"]

# Longest suffix first is not needed: no supported suffix ends another one.
_SUFFIXES: dict[str, Kind] = {
    ".txt": "txt",
    ".html": "html",
    ".htm": "html",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jsonl.gz": "jsonl_gz",
    ".ndjson.gz": "jsonl_gz",
}
READ_ERRORS = (OSError, EOFError, zlib.error)  # what a truncated or corrupt .gz raises
GZIP_MAGIC = b"\x1f\x8b"  # the first two bytes of every gzip file (RFC 1952)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one input may cost (config [ingest]). The plan's limits travel with its tasks,
    so planning and loading count the same inputs."""

    max_file_bytes: int = DEFAULTS.ingest.max_file_bytes  # files read whole (.txt, .html, .json)
    max_record_bytes: int = DEFAULTS.ingest.max_record_bytes  # one JSONL line
    max_decompressed_bytes: int = DEFAULTS.ingest.max_decompressed_bytes  # one .jsonl.gz
    max_title_chars: int = DEFAULTS.ingest.max_title_chars

    def __post_init__(self) -> None:
        if min(asdict(self).values()) < 1:
            raise ValueError(f"every limit must be at least 1: {self!r}")

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Limits:
        # A missing limit (a task planned by an older version) takes its default.
        return cls(**{f.name: int(d[f.name]) for f in fields(cls) if f.name in d})

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The [ingest] settings of the same names."""
        return cls(**settings.ingest.model_dump(include={f.name for f in fields(cls)}))


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Location:
    """A range of inputs inside one file under a task's root.

    `start`/`count` are physical lines for JSONL (blank lines included), elements for a
    JSON array, and 0/1 for single-document files. `inputs` is how many inputs the range
    holds: fewer than `count` when a JSONL range spans blank lines. `offset` is the byte
    offset of line `start` in a plain .jsonl, or of element `start` in a plain UTF-8 JSON
    array (`scan.scan_json_array`), so the loader seeks instead of scanning or parsing.
    """

    path: str  # POSIX, relative to the task root
    start: int = 0
    count: int = 1
    offset: int = -1
    inputs: int = -1  # -1 means "same as count"
    # JSONL: `line_check` of the range's first line as planned, so loading can tell a file
    # rewritten since (its lines moved or replaced) from one appended to; -1: not checked.
    head: int = -1
    # A .json file that holds JSON Lines (mongoexport's default, many scrapers'): read as
    # .jsonl is (`input_kind`).
    lines: bool = False

    def __post_init__(self) -> None:
        if self.inputs < 0:
            object.__setattr__(self, "inputs", self.count)
        pure = PurePosixPath(self.path)
        if not self.path or pure.is_absolute() or ".." in pure.parts or str(pure) == ".":
            raise ValueError(
                f"Location.path must be a relative path inside the root: {self.path!r}"
            )
        if self.start < 0 or self.count < 1 or not 1 <= self.inputs <= self.count:
            raise ValueError(f"inconsistent Location range: {self!r}")

    def to_json(self) -> dict[str, Any]:
        # Defaults are left out: a task of 500 single files stays a small payload.
        out: dict[str, Any] = {"path": self.path}
        if self.start:
            out["start"] = self.start
        if self.count != 1:
            out["count"] = self.count
        if self.offset != -1:
            out["offset"] = self.offset
        if self.inputs != self.count:
            out["inputs"] = self.inputs
        if self.head != -1:
            out["head"] = self.head
        if self.lines:
            out["lines"] = True
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Location:
        return cls(
            path=str(d["path"]),
            start=int(d.get("start", 0)),
            count=int(d.get("count", 1)),
            offset=int(d.get("offset", -1)),
            inputs=int(d.get("inputs", -1)),
            head=int(d.get("head", -1)),
            lines=bool(d.get("lines", False)),
        )


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One Celery task's worth of inputs: ranges of files under one root folder."""

    root: str  # absolute, resolved when planned, escaped (workers/ingest/paths.py)
    locations: tuple[Location, ...]
    inputs: int  # exactly how many LoadedInputs `load_task` yields
    limits: Limits = DEFAULT_LIMITS  # the caps the plan used, so loading agrees

    def __post_init__(self) -> None:
        if not Path(self.root).is_absolute():
            raise ValueError(f"TaskSpec.root must be absolute: {self.root!r}")
        if self.inputs != sum(loc.inputs for loc in self.locations):
            raise ValueError("TaskSpec.inputs does not match its locations")

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "inputs": self.inputs,
            **self.limits.to_json(),
            "locations": [loc.to_json() for loc in self.locations],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TaskSpec:
        return cls(
            root=str(d["root"]),
            locations=tuple(Location.from_json(loc) for loc in d["locations"]),
            inputs=int(d["inputs"]),
            limits=Limits.from_json(d),
        )


def file_kind(name: str) -> Kind | None:
    """The input kind a file name maps to, or None when it is not a supported input."""
    lower = name.lower()
    for suffix, kind in _SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    return None


def input_kind(loc: Location) -> Kind | None:
    """How a planned range is read: its file's kind, or JSONL for a .json file planned as
    JSON Lines."""
    return "jsonl" if loc.lines else file_kind(loc.path)


def line_check(line: Line) -> int:
    """What planning notes of a range's first JSONL line and loading compares: a CRC-32 of
    its bytes (of its size alone when it is over the record cap, which keeps no bytes)."""
    if line.data is None:
        return zlib.crc32(b"size:%d" % line.size)
    return zlib.crc32(line.data)


@contextmanager
def jsonl_lines(
    root: str, rel: str, limits: Limits, *, gz: bool, seek: int = 0, line: int = 0
) -> Iterator[LineScanner]:
    """The lines of the JSONL file `rel` under `root` (OS paths, not escaped),
    decompressed, from byte `seek`, which is the start of line number `line`. Shared by
    the planner and the loader: they must agree on what counts as an input.

    A file in UTF-16 or UTF-32 (by its BOM, else by where the NULs of its first character
    fall) is read recoded to UTF-8, always from its start: its offsets are the recoded
    stream's, so `seek` does not apply and the loader skips the lines before its range,
    as in a .gz. A file that is gzip-compressed is read as a .jsonl.gz whatever its name
    says (`gzip -c > items.jsonl`): its lines, not its compressed bytes cut at newlines."""
    with open_in_root(root, rel) as raw, contextlib.ExitStack() as stack:
        stream: BinaryIO = raw
        sniffed = not gz and raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        gz = gz or sniffed
        if gz:
            unzipped = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
            stream = unzipped  # type: ignore[assignment]  # a binary file, typeshed aside
        encoding = json_encoding(stream.read(4))
        wide = encoding.startswith(("utf-16", "utf-32"))
        if wide or sniffed:  # read from the start, as a .jsonl.gz (range_lines keeps it)
            seek, line = 0, 0
        stream.seek(seek)
        yield LineScanner(
            Utf8Recoded(stream, encoding) if wide else stream,  # type: ignore[arg-type]
            max_line_bytes=limits.max_record_bytes,
            max_total_bytes=limits.max_decompressed_bytes if gz else None,
            start_index=line,
            start_offset=seek,
        )
