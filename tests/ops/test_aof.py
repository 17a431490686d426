"""Mending an AOF file with holes (zero runs) between its commands, as Redis leaves one
after short writes on a full disk: the commands kept whole, any other damage refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workers.ops.aof import NotMendable, mend_holes, mended

pytestmark = pytest.mark.unit


def command(*parts: bytes) -> bytes:
    encoded = b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)
    return b"*%d\r\n" % len(parts) + encoded


SET = command(b"SET", b"k", b"v")
# A value may hold zero bytes of its own: they are data, never a hole.
BINARY = command(b"SET", b"blob", b"\0\0\0x\0")
MULTI = command(b"MULTI")
EXEC = command(b"EXEC")


def test_zero_runs_between_commands_go() -> None:
    data = SET + b"\0" * 5000 + BINARY + MULTI + b"\0" + EXEC
    assert mended(data) == (SET + BINARY + MULTI + EXEC, 5001)


def test_a_file_of_commands_only_is_left_as_it_is() -> None:
    data = b"#TS:1796645918\r\n" + SET + BINARY
    assert mended(data) == (data, 0)


def test_a_last_command_cut_off_stays_for_redis_to_drop() -> None:
    data = SET + b"\0" * 10 + BINARY[:-7]
    assert mended(data) == (SET + BINARY[:-7], 10)


@pytest.mark.parametrize(
    "damage",
    [
        SET[:-3] + b"\0\0\0" + SET,  # zeros inside a command: its bulk string is short
        SET + b"garbage\r\n" + SET,
        SET.replace(b"$1\r\nv", b"$x\r\nv"),
        SET.replace(b"$1\r\nv", b"$5\r\nv") + SET,  # a length that does not fit
    ],
)
def test_other_damage_is_not_mended(damage: bytes) -> None:
    with pytest.raises(NotMendable):
        mended(damage)


def test_a_sparse_hole_is_taken_out_of_the_file(tmp_path: Path) -> None:
    """The hole is a real one (no blocks on disk), larger than the file's data: each
    retry of the write moved the offset on."""
    path = tmp_path / "appendonly.aof.3.incr.aof"
    with open(path, "wb") as out:
        out.write(SET)
        out.seek(64 << 20, os.SEEK_CUR)
        out.write(BINARY)
    assert path.stat().st_size > 64 << 20
    assert mend_holes(path) == 64 << 20
    assert path.read_bytes() == SET + BINARY
    assert mend_holes(path) == 0  # nothing more to do
    assert not list(tmp_path.glob("*.mending"))


def test_a_damaged_file_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "appendonly.aof.3.incr.aof"
    damaged = SET + b"\0" * 100 + b"garbage"
    path.write_bytes(damaged)
    with pytest.raises(NotMendable):
        mend_holes(path)
    assert path.read_bytes() == damaged
