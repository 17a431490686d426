"""File names as newsdedup carries them, and opening a planned file safely in the worker.

A POSIX file name is bytes, not text: `bad\\xff.txt` is a valid name that is not UTF-8.
Python hands such a name over as a `str` with lone surrogates (PEP 383), which Redis, JSON
consumers and most terminals refuse. Every path newsdedup carries (a task's root and
locations, `input_ref`, the document id of a file, the done-set guard, the job's roots)
is therefore the *escaped* name: the bytes that are valid UTF-8 as they are, each byte
that is not as `\\xHH`, and a backslash as `\\\\` so the escaping stays reversible and two
names never share an escaped form. `os_path` turns the escaped form back into the name
on disk when the file is opened.

`open_in_root` is the check made when a planned file is read, after any amount of queue
time: the last component is opened with O_NOFOLLOW (a symlink there is only followed
when it resolves inside the root), and the path the kernel actually opened must lie
inside the root, so a file or folder swapped for a symlink to somewhere else since
planning is refused (`symlink_outside_root`). FIFOs and devices are refused too
(`not_a_regular_file`): opening is non-blocking, so a FIFO swapped in cannot hang it.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from typing import BinaryIO

_SURROGATE_ESCAPES = range(0xDC80, 0xDD00)  # how PEP 383 spells an undecodable byte
_ESCAPED = re.compile(r"\\(\\|x[0-9a-fA-F]{2})")


def escape_name(name: str) -> str:
    """The printable, reversible form of an OS path or name (see the module docstring)."""
    if "\\" not in name and _is_utf8(name):
        return name  # the common case, without a pass over every character
    out: list[str] = []
    for char in name:
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif code in _SURROGATE_ESCAPES:
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(char)
    return "".join(out)


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def os_path(escaped: str) -> str:
    """The OS path (surrogate-escaped `str`, as `os` functions take it) of an escaped one."""
    if "\\" not in escaped:
        return escaped
    raw = bytearray()
    last = 0
    for match in _ESCAPED.finditer(escaped):
        raw += escaped[last : match.start()].encode("utf-8", "surrogateescape")
        token = match.group(1)
        raw += b"\\" if token == "\\" else bytes([int(token[1:], 16)])
        last = match.end()
    raw += escaped[last:].encode("utf-8", "surrogateescape")
    return os.fsdecode(bytes(raw))


class PathRefused(OSError):
    """A planned file that must not be read any more; `reason` is the dead-letter slug."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def inside(root: str, path: str) -> bool:
    """Whether `path` is `root` or below it (both absolute and free of symlinks)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def open_in_root(root: str, rel: str) -> BinaryIO:
    """Open `root/rel` (OS paths; `root` absolute and resolved) for binary reading, refusing
    what lies outside `root` or is not a regular file (PathRefused). Other failures raise
    the OSError of the open (missing, permission denied, ...)."""
    path = os.path.join(root, rel)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        # The last component is a symlink. Planning follows one only when it resolves
        # inside the root; the same rule holds now, and the target is opened without
        # following anything further.
        target = os.path.realpath(path)
        if not inside(root, target):
            raise _outside(rel, target) from None
        fd = os.open(target, flags)
    try:
        real = _opened_path(fd, path)
        if not inside(root, real):
            raise _outside(rel, real)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PathRefused("not_a_regular_file", f"{escape_name(rel)} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _outside(rel: str, real: str) -> PathRefused:
    return PathRefused(
        "symlink_outside_root",
        f"{escape_name(rel)} now leads outside the backfill root (to {escape_name(real)})",
    )


def _opened_path(fd: int, path: str) -> str:
    """The real path of an open file: the kernel's own record on Linux; elsewhere the
    resolved path, provided it is still the very file that was opened."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = os.path.realpath(path)
        opened, found = os.fstat(fd), os.stat(real)
        if (opened.st_dev, opened.st_ino) != (found.st_dev, found.st_ino):
            raise PathRefused("symlink_outside_root", "the file changed while opened") from None
        return real
