"""The lines of a JSONL file that cannot seek, kept open from one batch to the next.

A .jsonl.gz has no offsets to seek to, and a UTF-16 or UTF-32 file is read recoded from
its start (`spec.jsonl_lines`): each batch of such a file reads every line before its
range again. A file of B batches is then decompressed about B/2 times, which grows with
the square of its size (a 1 GB .jsonl.gz in 200-record batches: thousands of passes).
A worker process gets one file's batches in queue order, so it keeps the stream where its
last batch stopped and the next batch reads on from there: each process reads such a
file about once. A range before the kept position (a retried batch), a file that changed
on disk (another inode, size or modification time) or a different `Limits` opens the
file again from its start, as without this cache.

An open stream holds a file descriptor, and a deleted file's disk space stays allocated
while it is open: a process keeps at most `MAX_OPEN` streams, and closes any that no
batch has used for `IDLE_SECONDS` (a daemon thread looks while some are open).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from workers.ingest.scan import Line, Utf8Recoded
from workers.ingest.spec import Limits, jsonl_lines

MAX_OPEN = 4
IDLE_SECONDS = 30.0

_Identity = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns
_Key = tuple[str, str, bool, Limits]
_UNKNOWN: _Identity = (0, 0, 0, 0)


@dataclass(slots=True)
class _Open:
    identity: _Identity
    stack: contextlib.ExitStack
    lines: Iterator[Line]
    last: int  # the index of the last line taken from `lines` (-1: none yet)
    pending: Line | None  # that line, when the batch that read it did not use it
    used_at: float

    def gives(self, first: int) -> bool:
        """Whether line `first` is still ahead (or pending)."""
        if self.pending is not None:
            return self.pending.index <= first
        return self.last < first

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stack.close()


class ForwardLines:
    """One batch's lines, from the kept stream of its file when there is one.

    Iterate it for the lines from where the stream is; `put_back(line)` the line the
    batch stopped at without using it, so the next batch gets it first, and say
    `finished` when the batch ended where it meant to: only then is the stream kept
    (`range_lines`)."""

    def __init__(self, entry: _Open) -> None:
        self._entry = entry
        self.complete = False  # the batch ended where it meant to (`finished`)
        self.exhausted = False  # the stream has no more lines

    def __iter__(self) -> Iterator[Line]:
        entry = self._entry
        if entry.pending is not None:
            line, entry.pending = entry.pending, None
            yield line
        # A batch that stops early leaves this generator, not `entry.lines`, unfinished:
        # the scanner stays where it is for the next batch.
        for line in entry.lines:
            entry.last = line.index
            yield line
        self.exhausted = True

    def put_back(self, line: Line) -> None:
        self._entry.pending = line

    def finished(self) -> None:
        """The batch read what it needed: the stream is where the next batch expects it
        (not left at a line the batch refused, say)."""
        self.complete = True


class _Streams:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: OrderedDict[_Key, _Open] = OrderedDict()
        self._reaper: threading.Thread | None = None
        self._pid = os.getpid()
        self._tick = threading.Event()  # never set: its wait is the reaper's pause

    def take(self, key: _Key, first: int, identity: _Identity | None) -> _Open | None:
        """The kept stream of `key` if it is of the file as it is now (`identity`) and can
        still give line `first`, taken out of the cache (a batch owns it while it reads)."""
        with self._lock:
            self._after_fork()
            entry = self._open.pop(key, None)
        if entry is None:
            return None
        if identity is not None and entry.identity == identity and entry.gives(first):
            return entry
        entry.close()
        return None

    def keep(self, key: _Key, entry: _Open) -> None:
        entry.used_at = time.monotonic()
        with self._lock:
            self._after_fork()
            self._open[key] = entry
            self._open.move_to_end(key)
            while len(self._open) > MAX_OPEN:
                self._open.popitem(last=False)[1].close()
            if self._reaper is None:
                self._reaper = threading.Thread(
                    target=self._reap, name="newsdedup-forward-lines", daemon=True
                )
                self._reaper.start()

    def close_all(self) -> None:
        with self._lock:
            entries = list(self._open.values())
            self._open.clear()
        for entry in entries:
            entry.close()

    def open_count(self) -> int:
        with self._lock:
            return len(self._open)

    def _reap(self) -> None:
        while True:
            self._tick.wait(min(IDLE_SECONDS, 5.0))
            now = time.monotonic()
            with self._lock:
                idle = [k for k, e in self._open.items() if now - e.used_at >= IDLE_SECONDS]
                closing = [self._open.pop(k) for k in idle]
                done = not self._open
                if done:
                    self._reaper = None
            for entry in closing:
                entry.close()
            if done:
                return

    def _after_fork(self) -> None:
        # A forked child (a Celery pool process) inherits the parent's entries and no
        # reaper thread: they are the parent's streams, whose positions it must not move.
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._open = OrderedDict()
            self._reaper = None


_STREAMS = _Streams()


def _identity(key: _Key) -> _Identity | None:
    root, rel = key[0], key[1]
    try:
        st = os.stat(os.path.join(root, rel))
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@contextlib.contextmanager
def range_lines(
    root: str, rel: str, limits: Limits, *, gz: bool, seek: int, line: int, first: int
) -> Iterator[ForwardLines]:
    """The lines of `rel` under `root` (OS paths) for a range starting at line `first`:
    from the kept stream of the file when it can still give that line, else as
    `jsonl_lines` gives them from byte `seek` (line `line`). Raises what `jsonl_lines`
    raises; a stream that raised or was left mid-batch is closed, never kept."""
    key: _Key = (root, rel, gz, limits)
    identity = _identity(key)
    entry = _STREAMS.take(key, first, identity)
    if entry is None:
        stack = contextlib.ExitStack()
        try:
            scanner = stack.enter_context(
                jsonl_lines(root, rel, limits, gz=gz, seek=seek, line=line)
            )
        except BaseException:
            stack.close()
            raise
        # Only a stream that cannot seek to a range is worth keeping.
        keep = gz or isinstance(scanner.stream, Utf8Recoded) or scanner.index < first
        entry = _Open(identity or _UNKNOWN, stack, iter(scanner), scanner.index - 1, None, 0.0)
    else:
        keep = True
    reader = ForwardLines(entry)
    try:
        yield reader
    finally:
        if keep and reader.complete and not reader.exhausted and entry.identity != _UNKNOWN:
            _STREAMS.keep(key, entry)
        else:
            entry.close()


def close_kept_streams() -> None:
    """Close every kept stream of this process (tests; a process about to exit)."""
    _STREAMS.close_all()


def kept_streams() -> int:
    """How many streams this process keeps open."""
    return _STREAMS.open_count()
