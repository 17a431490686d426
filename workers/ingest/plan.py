"""Planning a backfill: folders and files into `TaskSpec`s of about `batch_size` inputs.

Planning runs in the CLI and only counts: it walks the paths, opens JSON/JSONL files to
count records (streaming, capped by `Limits` as loading will be), and packs record ranges
into tasks (spec.py). Problems with the paths given are a `PlanError` (a user error);
problems with files found inside a folder never are: those files are skipped and
counted, or planned as inputs that loading turns into dead ones.
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice, repeat
from pathlib import Path, PurePosixPath

from workers.ingest.decode import DecodeError, decode_bytes
from workers.ingest.load import count_wrapped_records
from workers.ingest.paths import escape_name, open_in_root, os_path
from workers.ingest.scan import Line, LineScanner, TotalCapExceeded, scan_json_array
from workers.ingest.spec import (
    DEFAULT_LIMITS,
    READ_ERRORS,
    Limits,
    Location,
    TaskSpec,
    file_kind,
    jsonl_lines,
    line_check,
)


class PlanError(Exception):
    """A user error in the backfill paths (missing, unreadable); the message says which."""


@dataclass(slots=True)
class Plan:
    tasks: list[TaskSpec]
    total_inputs: int
    skipped: dict[str, int]  # reason -> number of files (or folders) not planned
    files: int  # files that contribute at least one input
    unknown_extensions: dict[str, int] = field(default_factory=dict)  # ".pdf" -> 3


def plan_backfill(
    paths: Sequence[Path], *, batch_size: int, limits: Limits = DEFAULT_LIMITS
) -> Plan:
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
                self.skipped["hidden"] += 1  # a hidden folder as one, unread
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
        elif kind == "json" and _holds_json_lines(str(root), rel, self.limits):
            records = _scan_jsonl(str(root), rel, gz=False, limits=self.limits)
            n = _pack_ranges(packer, rel, records, seekable=True, lines=True)
        elif kind == "json" and st.st_size <= self.limits.max_file_bytes:
            n = _plan_json(packer, str(root), rel, self.limits.max_file_bytes)
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
    packer: _Packer,
    rel: str,
    records: Iterable[tuple[int, int, Line | None]],
    *,
    seekable: bool,
    lines: bool = False,
) -> int:
    """Pack (index, byte offset, the line when a JSONL one) records into Locations filling
    the packer's open task; each range keeps its first line's `line_check`. `lines`: a
    .json file read as JSON Lines."""
    total = 0
    first: tuple[int, int, Line | None] | None = None
    last = n = 0
    for record in records:
        if first is None:
            first, n = record, 0
        n += 1
        last = record[0]
        total += 1
        if n == packer.room:
            packer.add(_range(rel, first, last, n, seekable, lines))
            first = None
    if first is not None:
        packer.add(_range(rel, first, last, n, seekable, lines))
    return total


def _range(
    rel: str, first: tuple[int, int, Line | None], last: int, n: int, seekable: bool, lines: bool
) -> Location:
    start, offset, line = first
    head = -1 if line is None else line_check(line)
    return Location(rel, start, last - start + 1, offset if seekable else -1, n, head, lines)


def _holds_json_lines(root: str, rel: str, limits: Limits) -> bool:
    """Whether a .json file holds JSON Lines (one object per line, as mongoexport and many
    scrapers write them) rather than one JSON value. Its first line starts an object, and
    either that line is a whole object with more lines after it (one JSON value cannot go
    on after a whole object), or the file is not one JSON value and at least two of its
    first lines are whole objects: a first record cut short or garbled must not take its
    valid neighbours with it. (A pretty-printed object's first line is "{" alone; a
    one-line object has no second line.)"""
    try:
        with jsonl_lines(root, os_path(rel), limits, gz=False) as scanner:
            head = list(islice(scanner, _JSON_LINES_LOOKED_AT))
    except (TotalCapExceeded, *READ_ERRORS):
        return False
    if len(head) < 2 or not (head[0].data or b"").lstrip().startswith(b"{"):
        return False
    whole = [_is_whole_object(line) for line in head]
    if whole[0]:
        return True
    return sum(whole) >= 2 and not _is_one_json_value(root, rel, limits)


# How many lines of a .json file are looked at to tell JSON Lines from one JSON value.
_JSON_LINES_LOOKED_AT = 8


def _is_whole_object(line: Line) -> bool:
    if line.data is None:  # over the record cap
        return False
    try:
        return isinstance(json.loads(line.data), dict)  # the scanner drops a leading BOM
    except (ValueError, RecursionError):
        return False


def _is_one_json_value(root: str, rel: str, limits: Limits) -> bool:
    """Whether the file parses as one JSON value, as loading a .json file reads it (at
    most `max_file_bytes`, decoded the same way); a file over that would be dead."""
    try:
        with open_in_root(root, os_path(rel)) as f:
            data = f.read(limits.max_file_bytes + 1)
        if len(data) > limits.max_file_bytes:
            return False
        json.loads(decode_bytes(data).text)
    except (DecodeError, ValueError, RecursionError, *READ_ERRORS):
        return False
    return True


def _scan_jsonl(
    root: str, rel: str, *, gz: bool, limits: Limits
) -> Iterator[tuple[int, int, Line | None]]:
    """Yield (line index, byte offset, line) of each non-blank line, in bounded memory.

    A read failure (unreadable file, truncated .gz) or the decompressed cap becomes one
    final pseudo-record at the line it struck in, with no line: loading hits the same
    failure there and reports it as a DeadInput.
    """
    scanner: LineScanner | None = None
    try:
        with jsonl_lines(root, os_path(rel), limits, gz=gz) as scanner:
            for line in scanner:
                yield line.index, line.offset, line
    except (TotalCapExceeded, *READ_ERRORS):
        yield (scanner.index, scanner.offset, None) if scanner is not None else (0, 0, None)


def _plan_json(packer: _Packer, root: str, rel: str, max_bytes: int) -> int:
    """A JSON object is one input; an array of N values is N (split into ranges), and so
    is an object that wraps an array of N records (`load.wrapped_records`). An array is
    scanned in chunks, never parsed whole, and its ranges start at their first element's
    offset when the scan found them (`scan_json_array`); an object is parsed (at most
    `max_bytes`, as loading it will be)."""
    offsets = None
    try:
        with open_in_root(root, os_path(rel)) as f:
            scanned = scan_json_array(f)
            if scanned is not None:
                count: int | None = scanned.count
                offsets = scanned.offsets
            else:
                f.seek(0)
                count = count_wrapped_records(f.read(max_bytes + 1))
    except OSError:
        count = None
    if count is None:  # not an array, or unreadable: loads as one input or its DeadInput
        packer.add(Location(rel))
        return 1
    # One offset per element, or none known (-1 each: repeat, so not strict); no head
    # check (a rewritten array is found by `load._values_at` or the whole file's parse).
    at = offsets if offsets is not None else repeat(-1)
    records = zip(range(count), at, repeat(None), strict=False)
    return _pack_ranges(packer, rel, records, seekable=offsets is not None)
