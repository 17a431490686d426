"""Mending an AOF file that Redis wrote with holes in it after a full disk.

When a write to the AOF is cut short (the disk full), Redis truncates the file back to
its last complete command and keeps the data to write again. The file it opened for the
commands after an AOF rewrite is not opened for appending, and the truncation leaves
its write offset where the short write ended: once the disk has room again, the next
write lands past the end, and the file gets a run of zero bytes (a hole) between two
commands. Redis then refuses to load it ("Bad file format reading the append only
file"), though every command it acknowledged is in the file, whole.

`mend_holes` takes the zero runs out, only where a command may start and only if every
byte besides them parses as commands: any other damage is left for a person to judge
(valkey-check-aof). Standard library only: the embedded server's supervisor imports its
caller.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

# What precedes a file's commands or sits between them: a command (`*<n>\r\n` and n bulk
# strings `$<len>\r\n<bytes>\r\n`) or an annotation line (`#...\r\n`, the timestamps of
# aof-timestamp-enabled).
_COMMAND = ord("*")
_ANNOTATION = ord("#")
_BULK = ord("$")
_CRLF = b"\r\n"
_ZEROS = re.compile(rb"\0+")


class NotMendable(Exception):
    """The file holds something other than commands and zero runs between them."""


def _extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each stretch of the file that holds data, holes skipped: a hole
    left by the fault can be far larger than the disk (each retry moved the offset on)."""
    position = 0
    while position < size:
        try:
            start = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nothing but a hole from here on
                return
            if exc.errno == errno.EINVAL:  # a file system without SEEK_DATA: read it all
                yield position, size
                return
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        position = end


def _line_end(data: bytes, start: int) -> int:
    end = data.find(_CRLF, start)
    if end < 0:
        raise NotMendable(f"a line without its end at byte {start}")
    return end


def _header_number(data: bytes, start: int, end: int) -> int:
    try:
        return int(data[start:end])
    except ValueError:
        raise NotMendable(f"no number at byte {start}") from None


def _command_end(data: bytes, start: int) -> int:
    """Where the command starting at `start` ends (past its last CRLF), or the end of
    `data` when the file ends inside it."""
    end = _line_end(data, start)
    count = _header_number(data, start + 1, end)
    position = end + 2
    for _ in range(count):
        if position >= len(data):
            return len(data)  # cut off at the end of the file
        if data[position] != _BULK:
            raise NotMendable(f"no bulk string at byte {position}")
        end = _line_end(data, position)
        length = _header_number(data, position + 1, end)
        position = end + 2 + length
        if data[position : position + 2] != _CRLF:
            if position + 2 > len(data):
                return len(data)
            raise NotMendable(f"a bulk string of the wrong length at byte {end + 2}")
        position += 2
    return position


def mended(data: bytes) -> tuple[bytes, int]:
    """`data` without the zero runs between its commands, and how many bytes went.
    A last command cut off at the end stays as it is: Redis loads the commands before it
    (aof-load-truncated), as after any crash. `NotMendable` for any other damage."""
    kept: list[bytes] = []
    removed = 0
    position = 0
    while position < len(data):
        first = data[position]
        if first == 0:
            end = _ZEROS.match(data, position).end()  # type: ignore[union-attr]
            removed += end - position
            position = end
            continue
        if first == _ANNOTATION:
            end = _line_end(data, position) + 2
        elif first == _COMMAND:
            end = _command_end(data, position)
        else:
            raise NotMendable(f"no command at byte {position}")
        kept.append(data[position:end])
        position = end
    return b"".join(kept), removed


def mend_holes(path: Path) -> int:
    """Rewrite the AOF file `path` without the zero runs between its commands (see the
    module docstring); how many bytes of zeros went (0: nothing done). `NotMendable`
    when the file is damaged otherwise; OSError when it cannot be read or rewritten."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        pieces = []
        for start, end in _extents(handle.fileno(), size):
            handle.seek(start)
            pieces.append(handle.read(end - start))
    # Holes skipped by _extents are zeros too: they count, though nothing reads them.
    data = b"".join(pieces)
    commands, removed = mended(data)
    removed += size - len(data)
    if removed == 0:
        return 0
    partial = path.with_name(path.name + ".mending")
    try:
        with open(partial, "wb") as out:
            out.write(commands)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return removed
