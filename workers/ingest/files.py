"""Backfill from files: plan folders into task payloads, load each payload's inputs.

Planning runs in the CLI and only counts: it walks the paths, opens JSON/JSONL files to
count records, and packs record ranges into `TaskSpec`s of about `batch_size` inputs that
carry paths and line/element ranges, never article text. Loading runs in the workers and
turns one `TaskSpec` back into `Document`s and `DeadInput`s.

The contract between the two halves is exact accounting: every planned input is yielded
exactly once, as a `Document` or a `DeadInput`, even when the file went missing, shrank
or broke between planning and loading ("missing", "unreadable", "read_error").

Paths travel escaped (workers/ingest/paths.py), so a file name that is not UTF-8 is an
input like any other. Loading opens each file with `open_in_root`: a file swapped for a
symlink leading out of the root since planning is `symlink_outside_root`.

Both halves stream and cap what one input may cost (`Limits`, from config [ingest]):
a JSONL line over `max_record_bytes` is `record_too_large` (never held in memory: only
its size is counted), a .gz stops at `max_decompressed_bytes` (the rest of the file is one
`decompressed_too_large` input), a file read whole is at most `max_file_bytes`
(`too_large`), and a title over `max_title_chars` is cut at a word boundary and ends in
"…": the article is kept, and the ellipsis says the headline was cut.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal

from workers.config import DEFAULTS
from workers.document import DeadInput, Document, LoadedInput
from workers.ingest.dates import parse_date
from workers.ingest.decode import DecodeError, decode_bytes
from workers.ingest.html import ArticleError, ArticleReader
from workers.ingest.paths import PathRefused, escape_name, open_in_root, os_path
from workers.ingest.scan import Line, LineScanner, TotalCapExceeded, count_json_array
from workers.messages import one_line

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
_TEXT_FIELDS = ("text", "content", "body")
_URL_FIELDS = ("url", "link")
_DATE_FIELDS = ("published", "published_at", "date", "time", "date_extracted", "pubDate")
_READ_ERRORS = (OSError, EOFError, zlib.error)  # what a truncated or corrupt .gz raises
_SURROGATE = re.compile("[\ud800-\udfff]")


class PlanError(Exception):
    """A user error in the backfill paths (missing, unreadable); the message says which."""


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


@dataclass(frozen=True, slots=True)
class Location:
    """A range of inputs inside one file under a task's root.

    `start`/`count` are physical lines for JSONL (blank lines included), elements for a
    JSON array, and 0/1 for single-document files. `inputs` is how many inputs the range
    holds: fewer than `count` when a JSONL range spans blank lines. `offset` is the byte
    offset of line `start` in a plain .jsonl, so the loader seeks instead of scanning.
    """

    path: str  # POSIX, relative to the task root
    start: int = 0
    count: int = 1
    offset: int = -1
    inputs: int = -1  # -1 means "same as count"

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
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Location:
        return cls(
            path=str(d["path"]),
            start=int(d.get("start", 0)),
            count=int(d.get("count", 1)),
            offset=int(d.get("offset", -1)),
            inputs=int(d.get("inputs", -1)),
        )


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One Celery task's worth of inputs: ranges of files under one root folder."""

    root: str  # absolute, resolved when planned, escaped (workers/ingest/paths.py)
    locations: tuple[Location, ...]
    inputs: int  # exactly how many LoadedInputs `load_task` yields
    limits: Limits = Limits()  # the caps the plan used, so loading agrees

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


@dataclass(slots=True)
class Plan:
    tasks: list[TaskSpec]
    total_inputs: int
    skipped: dict[str, int]  # reason -> number of files (or folders) not planned
    files: int  # files that contribute at least one input
    unknown_extensions: dict[str, int] = field(default_factory=dict)  # ".pdf" -> 3


def file_kind(name: str) -> Kind | None:
    """The input kind a file name maps to, or None when it is not a supported input."""
    lower = name.lower()
    for suffix, kind in _SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    return None


# --------------------------------------------------------------------------- planning


def plan_backfill(paths: Sequence[Path], *, batch_size: int, limits: Limits = Limits()) -> Plan:
    """Walk `paths` (folders recursively, or single files) and pack their inputs into tasks.

    Raises PlanError when a given path does not exist or cannot be read; problems with
    files found inside a folder never raise, they are skipped or planned as dead inputs.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if not paths:
        raise PlanError("no input paths given")
    planner = _Planner(batch_size, limits)
    for given in paths:
        path = Path(given)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise PlanError(f"{path}: no such file or folder") from None
        except OSError as exc:
            raise PlanError(f"{path}: cannot access: {exc.strerror or exc}") from None
        if stat.S_ISDIR(st.st_mode):
            if not os.access(path, os.R_OK | os.X_OK):
                raise PlanError(f"{path}: permission denied (cannot list the folder)")
            planner.plan_folder(path.resolve())
        elif stat.S_ISREG(st.st_mode):
            if not os.access(path, os.R_OK):
                raise PlanError(f"{path}: permission denied (cannot read the file)")
            # An explicitly named file is taken as given: no hidden/symlink rules apply. It
            # is planned under its real path, which is where the worker will find it.
            real = path.resolve()
            planner.plan_file(real.parent, escape_name(real.name), st)
        else:
            raise PlanError(f"{path}: not a regular file or folder")
    return planner.finish()


class _Packer:
    """Fills tasks for one root up to `batch_size` inputs; ranged files are cut to fit."""

    def __init__(self, root: str, batch_size: int, limits: Limits, out: list[TaskSpec]):
        self.root = root
        self.batch_size = batch_size
        self.limits = limits
        self.out = out
        self.locations: list[Location] = []
        self.inputs = 0

    @property
    def room(self) -> int:
        return self.batch_size - self.inputs

    def add(self, loc: Location) -> None:
        self.locations.append(loc)
        self.inputs += loc.inputs
        if self.inputs >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if self.locations:
            spec = TaskSpec(self.root, tuple(self.locations), self.inputs, self.limits)
            self.out.append(spec)
        self.locations, self.inputs = [], 0


class _Planner:
    def __init__(self, batch_size: int, limits: Limits):
        self.batch_size = batch_size
        self.limits = limits
        self.tasks: list[TaskSpec] = []
        self.packers: dict[str, _Packer] = {}
        self.skipped: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()
        self.total = 0
        self.files = 0
        # A file reached twice (symlink inside the root, hard link, a path given twice) is
        # planned once, so no input is loaded twice.
        self.seen_files: set[tuple[int, int]] = set()

    def finish(self) -> Plan:
        for packer in self.packers.values():
            packer.flush()
        return Plan(
            tasks=self.tasks,
            total_inputs=self.total,
            skipped=dict(sorted(self.skipped.items())),
            files=self.files,
            unknown_extensions=dict(sorted(self.unknown.items())),
        )

    def plan_folder(self, root: Path) -> None:
        found: list[tuple[str, os.stat_result, bool]] = []
        try:
            self._walk(root, root, "", linked=False, ancestors={_key(root.stat())}, found=found)
        except _UnreadableRoot as exc:
            raise PlanError(f"{root}: cannot list the folder: {exc}") from None
        # A file reachable both directly and through a symlink inside the root is planned
        # once, under its real path, whichever comes first in sorted order.
        direct = {_key(st) for _, st, linked in found if not linked}
        for rel, st, linked in found:
            if linked and file_kind(rel) and _key(st) in direct:
                self.skipped["duplicate_path"] += 1
            else:
                self.plan_file(root, rel, st)

    def _walk(
        self,
        root: Path,
        folder: Path,
        rel: str,
        *,
        linked: bool,
        ancestors: set[tuple[int, int]],
        found: list[tuple[str, os.stat_result, bool]],
    ) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if not rel:
                raise _UnreadableRoot(exc.strerror or str(exc)) from None
            self.skipped["unreadable_folder"] += 1
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            name = escape_name(entry.name)
            entry_rel = f"{rel}/{name}" if rel else name
            is_link = entry.is_symlink()
            if is_link and (problem := _symlink_problem(root, entry.path)):
                self.skipped[problem] += 1
                continue
            try:
                st = entry.stat()
            except OSError:
                self.skipped["unreadable_entry"] += 1
                continue
            if stat.S_ISDIR(st.st_mode):
                if _key(st) in ancestors:  # a symlink back up the tree
                    self.skipped["symlink_loop"] += 1
                    continue
                self._walk(
                    root,
                    Path(entry.path),
                    entry_rel,
                    linked=linked or is_link,
                    ancestors=ancestors | {_key(st)},
                    found=found,
                )
            elif stat.S_ISREG(st.st_mode):
                found.append((entry_rel, st, linked or is_link))
            else:  # FIFOs, sockets, devices: reading them could block or never end
                self.skipped["not_a_regular_file"] += 1

    def plan_file(self, root: Path, rel: str, st: os.stat_result) -> None:
        """Plan one file: `root` an OS path, `rel` escaped."""
        kind = file_kind(rel)
        if kind is None:
            self.skipped["unknown_extension"] += 1
            self.unknown[PurePosixPath(rel).suffix.lower() or "(none)"] += 1
            return
        if _key(st) in self.seen_files:
            self.skipped["duplicate_path"] += 1
            return
        self.seen_files.add(_key(st))
        spec_root = escape_name(str(root))
        packer = self.packers.get(spec_root)
        if packer is None:
            packer = _Packer(spec_root, self.batch_size, self.limits, self.tasks)
            self.packers[spec_root] = packer
        if kind in ("jsonl", "jsonl_gz"):
            gz = kind == "jsonl_gz"
            records = _scan_jsonl(str(root), rel, gz=gz, limits=self.limits)
            n = _pack_ranges(packer, rel, records, seekable=not gz)
        elif kind == "json" and st.st_size <= self.limits.max_file_bytes:
            n = _plan_json(packer, str(root), rel)
        else:  # one input: a document, or a dead input (unreadable, too large) when loaded
            packer.add(Location(rel))
            n = 1
        if n:
            self.files += 1
            self.total += n
        else:
            self.skipped["no_records"] += 1


class _UnreadableRoot(Exception):
    pass


def _key(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _symlink_problem(root: Path, link: str) -> str | None:
    try:
        target = Path(link).resolve(strict=True)
    except (OSError, RuntimeError):  # dangling, or a loop (RuntimeError on 3.11)
        return "broken_symlink"
    return None if target.is_relative_to(root) else "symlink_outside_root"


def _pack_ranges(
    packer: _Packer, rel: str, records: Iterable[tuple[int, int]], *, seekable: bool
) -> int:
    """Pack (index, byte offset) records into Locations filling the packer's open task."""
    total = 0
    first: tuple[int, int] | None = None
    last = n = 0
    for index, offset in records:
        if first is None:
            first, n = (index, offset), 0
        n += 1
        last = index
        total += 1
        if n == packer.room:
            packer.add(_range(rel, first, last, n, seekable))
            first = None
    if first is not None:
        packer.add(_range(rel, first, last, n, seekable))
    return total


def _range(rel: str, first: tuple[int, int], last: int, n: int, seekable: bool) -> Location:
    start, offset = first
    return Location(rel, start, last - start + 1, offset if seekable else -1, n)


def _scan_jsonl(root: str, rel: str, *, gz: bool, limits: Limits) -> Iterator[tuple[int, int]]:
    """Yield (line index, byte offset) of each non-blank line, in bounded memory.

    A read failure (unreadable file, truncated .gz) or the decompressed cap becomes one
    final pseudo-record at the line it struck in: loading hits the same failure there and
    reports it as a DeadInput.
    """
    scanner: LineScanner | None = None
    try:
        with _open_jsonl(root, os_path(rel), gz=gz) as stream:
            scanner = _line_scanner(stream, limits, gz=gz)
            for line in scanner:
                yield line.index, line.offset
    except (TotalCapExceeded, *_READ_ERRORS):
        yield (scanner.index, scanner.offset) if scanner is not None else (0, 0)


def _plan_json(packer: _Packer, root: str, rel: str) -> int:
    """A JSON object is one input; an array of N values is N (split into ranges). The
    array is counted in chunks, never parsed whole."""
    try:
        with open_in_root(root, os_path(rel)) as f:
            count = count_json_array(f)
    except OSError:
        count = None
    if count is None:  # not an array, or unreadable: loads as one input or its DeadInput
        packer.add(Location(rel))
        return 1
    return _pack_ranges(packer, rel, ((i, -1) for i in range(count)), seekable=False)


# ---------------------------------------------------------------------------- loading


def load_task(
    spec: TaskSpec, *, default_source: str | None, read_html: ArticleReader
) -> Iterator[LoadedInput]:
    """Yield exactly `spec.inputs` Documents/DeadInputs for one planned task. HTML pages
    are read with `read_html` (in a worker: the bounded `Runtime.extractor.read`)."""
    for loc in spec.locations:
        yield from load_location(
            spec.root, loc, default_source=default_source, read_html=read_html, limits=spec.limits
        )


def load_location(
    root: Path | str,
    loc: Location,
    *,
    default_source: str | None,
    read_html: ArticleReader,
    limits: Limits = Limits(),
) -> Iterator[LoadedInput]:
    """Yield exactly `loc.inputs` Documents/DeadInputs for one planned range of the task
    root `root` (escaped, as in TaskSpec.root)."""
    kind = file_kind(loc.path)
    if kind is None:
        raise ValueError(f"not a supported input file: {loc.path!r}")
    root = str(root)
    source = default_source or _folder_source(root, loc.path)
    ctx = _Ctx(os_path(root), os_path(loc.path), loc, source, limits, read_html)
    if kind in ("jsonl", "jsonl_gz"):
        yield from _load_jsonl(ctx, gz=kind == "jsonl_gz")
    elif kind == "json":
        yield from _load_json(ctx)
    else:
        if loc.start != 0 or loc.count != 1:
            raise ValueError(f"a {kind} file holds exactly one input: {loc!r}")
        yield _load_single(ctx, kind)


def jsonl_ref(rel: str, line_no: int) -> str:
    """The input_ref of a JSONL record: its path and 1-based line number."""
    return f"{rel}:{line_no + 1}"


def element_ref(rel: str, index: int) -> str:
    """The input_ref of a JSON array's element."""
    return f"{rel}#{index}"


def single_input_ref(loc: Location) -> str | None:
    """The input_ref of a range that holds exactly one input, known before reading it (the
    loaders name inputs the same way), or None for a range of several."""
    if loc.inputs != 1 or loc.count != 1:
        return None
    kind = file_kind(loc.path)
    if kind in ("jsonl", "jsonl_gz"):
        return jsonl_ref(loc.path, loc.start)
    if kind == "json":  # element 0 is named `path#0` in an array, `path` for an object
        return element_ref(loc.path, loc.start) if loc.start else None
    return loc.path


@dataclass(frozen=True, slots=True)
class _Ctx:
    root: str  # OS paths (not escaped)
    rel: str
    loc: Location
    source: str  # used when a record names no source of its own
    limits: Limits
    read_html: ArticleReader

    def open(self) -> BinaryIO:
        return open_in_root(self.root, self.rel)

    def title(self, title: str) -> str:
        return cap_title(title, self.limits.max_title_chars)

    def dead(self, reject: _Reject, ref: str) -> DeadInput:
        return DeadInput(
            ref, reject.reason, reject.message, reject.id, reject.source or self.source
        )


class _Reject(Exception):
    """Internal: why an input becomes a DeadInput (turned into one by the loaders)."""

    def __init__(self, reason: str, message: str, *, id: str = "", source: str = ""):
        super().__init__(message)
        self.reason = reason
        self.message = _encodable(one_line(message)[:500])
        self.id = id
        self.source = source


def _folder_source(root: str, rel: str) -> str:
    parts = PurePosixPath(rel).parts
    return parts[-2] if len(parts) > 1 else PurePosixPath(root).name


def cap_title(title: str, max_chars: int) -> str:
    """`title` if it fits in `max_chars`, else cut at a word boundary (unless that would
    lose more than half of it) and ended with "…", so readers see it was cut."""
    if len(title) <= max_chars:
        return title
    cut = title[: max_chars - 1]
    head = cut.rsplit(maxsplit=1)[0] if cut.strip() else ""
    if len(head) >= max_chars // 2:
        cut = head
    return cut.rstrip() + "…"


def _load_single(ctx: _Ctx, kind: Kind) -> LoadedInput:
    rel = ctx.loc.path
    try:
        text = _decode(_read_capped(ctx))
        if kind == "txt":
            return _txt_document(text, ctx)
        return _html_document(text, ctx)
    except _Reject as reject:
        return ctx.dead(reject, rel)


def _txt_document(text: str, ctx: _Ctx) -> Document:
    rel, source = ctx.loc.path, ctx.source
    # The first non-empty line is the headline; the body is kept raw for later stages.
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.strip():
            title, body = line.strip(), "\n".join(lines[i + 1 :])
            break
    else:
        title, body = "", ""
    if not body.strip():
        raise _Reject("missing_text", "text file has no body after its title line", id=rel)
    return Document(id=rel, source=source, text=body, input_ref=rel, title=ctx.title(title))


def _html_document(html: str, ctx: _Ctx) -> Document:
    rel, source = ctx.loc.path, ctx.source
    try:
        article = ctx.read_html(html, "")
    except ArticleError as exc:  # refused, too slow, or the parser failed: never the batch
        raise _Reject(exc.reason, str(exc), id=rel) from None
    if article is None:
        raise _Reject("no_text", "no main text found in the HTML page", id=rel)
    return Document(
        id=rel,
        source=source,
        text=article.text,
        input_ref=rel,
        title=ctx.title(article.title),
        url=article.url,
        published_at=article.published_at,
    )


def _load_json(ctx: _Ctx) -> Iterator[LoadedInput]:
    loc, rel = ctx.loc, ctx.loc.path
    indexes = range(loc.start, loc.start + loc.count)

    def ref(i: int) -> str:
        # Planned as a whole-file object (or the file failed): the bare path names it.
        return rel if loc.start == 0 and loc.count == 1 else element_ref(rel, i)

    try:
        parsed = _loads(_decode(_read_capped(ctx)))
    except _Reject as reject:
        for i in indexes:
            yield ctx.dead(reject, ref(i))
        return
    if isinstance(parsed, list):
        for i in indexes:
            if i < len(parsed):
                yield _record(ctx, parsed[i], element_ref(rel, i))
            else:
                yield ctx.dead(_Reject("missing", f"array has no element {i} any more"), ref(i))
        return
    for i in indexes:  # planned as an array, now a single value (or planned as an object)
        if i == 0:
            yield _record(ctx, parsed, rel)
        else:
            yield ctx.dead(_Reject("missing", "file no longer holds a JSON array"), ref(i))


def _load_jsonl(ctx: _Ctx, *, gz: bool) -> Iterator[LoadedInput]:
    loc, rel = ctx.loc, ctx.loc.path
    end = loc.start + loc.count
    used: set[int] = set()
    failure: _Reject | None = None
    seek = loc.offset >= 0 and not gz  # a .gz cannot seek: its lines are skipped
    try:
        with _open_jsonl(ctx.root, ctx.rel, gz=gz, seek=loc.offset if seek else 0) as stream:
            start = (loc.start, loc.offset) if seek else (0, 0)
            for line in _line_scanner(stream, ctx.limits, gz=gz, start=start):
                if line.index < loc.start:
                    continue
                if line.index >= end:
                    break
                used.add(line.index)
                yield _jsonl_record(ctx, line)
                if len(used) >= loc.inputs:
                    break
    except TotalCapExceeded:
        cap = ctx.limits.max_decompressed_bytes
        failure = _Reject("decompressed_too_large", f"decompresses to more than {cap} bytes")
    except _READ_ERRORS as exc:
        failure = _os_reject(exc)
    if len(used) < loc.inputs:
        # The file vanished, shrank or broke since planning: account for every input, named
        # by line numbers of this range not already used so input_refs stay unique.
        reject = failure or _Reject("missing", "file has fewer records than when planned")
        free = (n for n in range(loc.start, end) if n not in used)
        for n in islice(free, loc.inputs - len(used)):
            yield ctx.dead(reject, jsonl_ref(rel, n))


def _jsonl_record(ctx: _Ctx, line: Line) -> LoadedInput:
    ref = jsonl_ref(ctx.loc.path, line.index)
    if line.data is None:
        cap = ctx.limits.max_record_bytes
        reject = _Reject("record_too_large", f"a line of {line.size} bytes (at most {cap})")
        return ctx.dead(reject, ref)
    try:
        try:
            text = line.data.decode("utf-8")
        except UnicodeDecodeError:  # rare: let the shared decoder guess the legacy charset
            text = _decode(line.data)
        return _record(ctx, _loads(text), ref)
    except _Reject as reject:
        return ctx.dead(reject, ref)


def _record(ctx: _Ctx, obj: object, ref: str) -> LoadedInput:
    """Map one JSON value to a Document; `ref` doubles as the id when the record has none."""
    if not isinstance(obj, dict):
        reject = _Reject("not_an_object", f"expected a JSON object, got {_json_type(obj)}")
        return ctx.dead(reject, ref)
    doc_id = _scalar(obj.get("id")) or ref
    source = _scalar(obj.get("source")) or ctx.source
    text = next((v for k in _TEXT_FIELDS if isinstance(v := obj.get(k), str) and v.strip()), "")
    text = _encodable(text)
    if not text:
        message = "record has no text, content or body"
        return ctx.dead(_Reject("missing_text", message, id=doc_id, source=source), ref)
    date = next((v for k in _DATE_FIELDS if (v := obj.get(k)) not in (None, "")), None)
    return Document(
        id=doc_id,
        source=source,
        text=text,
        input_ref=ref,
        title=ctx.title(_scalar(obj.get("title"))),
        url=next((u for k in _URL_FIELDS if (u := _scalar(obj.get(k)))), ""),
        published_at=parse_date(date),
        author=_scalar(obj.get("author")),
        language=_scalar(obj.get("language")) or _scalar(obj.get("lang")),
    )


# ------------------------------------------------------------------------------ helpers


@contextmanager
def _open_jsonl(root: str, rel: str, *, gz: bool, seek: int = 0) -> Iterator[BinaryIO]:
    """The (decompressed) bytes of the JSONL file `rel` under `root` (OS paths, not
    escaped), from byte `seek`."""
    with open_in_root(root, rel) as raw:
        if seek:
            raw.seek(seek)
        if not gz:
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
            yield unzipped  # type: ignore[misc]  # GzipFile is a binary file, typeshed aside


def _line_scanner(
    stream: BinaryIO, limits: Limits, *, gz: bool, start: tuple[int, int] = (0, 0)
) -> LineScanner:
    # Shared by planner and loader: they must agree on what counts as an input.
    return LineScanner(
        stream,
        max_line_bytes=limits.max_record_bytes,
        max_total_bytes=limits.max_decompressed_bytes if gz else None,
        start_index=start[0],
        start_offset=start[1],
    )


def _read_capped(ctx: _Ctx) -> bytes:
    max_bytes = ctx.limits.max_file_bytes
    try:
        with ctx.open() as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(max_bytes + 1)
    except _READ_ERRORS as exc:
        raise _os_reject(exc) from None
    if size > max_bytes or len(data) > max_bytes:
        raise _Reject("too_large", f"file is {max(size, len(data))} bytes, over {max_bytes}")
    return data


def _os_reject(exc: BaseException) -> _Reject:
    if isinstance(exc, PathRefused):
        return _Reject(exc.reason, str(exc))
    if isinstance(exc, FileNotFoundError):
        return _Reject("missing", "file no longer exists")
    if isinstance(exc, PermissionError):
        where = escape_name(str(exc.filename or ""))
        return _Reject("unreadable", f"permission denied: {where}".strip())
    return _Reject("read_error", f"{type(exc).__name__}: {exc}")


def _decode(data: bytes) -> str:
    try:
        return decode_bytes(data).text
    except DecodeError as exc:
        raise _Reject(f"decode_{exc.reason}", str(exc) or exc.reason) from None


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge ints, deep nesting
        raise _Reject("malformed_json", f"malformed JSON: {exc}") from None


def _scalar(value: object) -> str:
    """A record field as a stripped string; containers and null count as absent."""
    if isinstance(value, str):
        return _encodable(value.strip())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _encodable(text: str) -> str:
    """`text` with each lone surrogate (a JSON "\\ud800" escape without its pair, or an OS
    path's undecodable byte) as U+FFFD: no UTF-8 can carry one, so it would fail every
    write of the input to Redis, its `dead` entry and its cursor included."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text
