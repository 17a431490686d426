"""How values are laid out for the index scripts: the LSH bucket fields and the fact
counters' BITFIELD operations, computed in bulk with numpy, exactly as the scripts
compute or read them (tests/index checks the two agree)."""

from __future__ import annotations

import numpy as np

# A boilerplate learner counter packs two numbers: count + born * LEARNER_SPLIT, where
# `born` is the lossy-counting bucket before the one the line was first seen in (see
# scripts/learn_lines.lua). HINCRBY by 1 counts.
LEARNER_SPLIT = 2**32

# Arguments per fact operation: see `fact_operation`.
FACT_OPERATION_ARGS = 4


def fact_operation(cell: int) -> tuple[bytes, bytes, bytes, bytes]:
    """The BITFIELD operation that counts a fact in its frequency counter `cell` (the index
    script passes these from its arguments to BITFIELD as they are)."""
    return (b"INCRBY", b"u8", b"#%d" % cell, b"1")


def lsh_bucket_fields(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """The LSH bucket field of every band of every signature (uint16 array, one row each),
    as scripts/records.lua's `band_field` computes it from a stored signature: uint32 of
    shape (signatures, bands). The script relies on the two agreeing (tests/index/test_index.py
    checks they do)."""
    values = signatures[:, : bands * rows].astype(np.uint64).reshape(len(signatures), bands, rows)
    band = np.arange(bands, dtype=np.uint64)
    h = np.broadcast_to(band * np.uint64(2654435) + np.uint64(7), values.shape[:2]).copy()
    modulus = np.uint64(1 << 32)
    for row in range(rows):  # h < 2^32, so h * 31337 + v < 2^47: exact in uint64
        h = (h * np.uint64(31337) + values[:, :, row]) % modulus
    fields: np.ndarray = h.astype(np.uint32)
    return fields


_OPERATION_HEAD = np.frombuffer(b"$6\r\nINCRBY\r\n$2\r\nu8\r\n$", dtype=np.uint8)
_OPERATION_TAIL = np.frombuffer(b"\r\n$1\r\n1\r\n", dtype=np.uint8)
_CELL_DIGITS = 8  # cells are below 2^24


def packed_fact_operations(cells: np.ndarray) -> tuple[bytes, np.ndarray]:
    """`fact_operation` of every cell, packed in the Redis protocol as
    `ops.connection.pack_command` would, all at once: the bytes, and each operation's
    length in them. Per-fact work in Python cost more than the index's work on them."""
    cells = cells.astype(np.int64)
    if len(cells) and (cells.min() < 0 or cells.max() >= 10**_CELL_DIGITS):
        raise ValueError("fact cells must be below 10^8")
    digits = np.ones(len(cells), dtype=np.int64)
    for power in range(1, _CELL_DIGITS):
        digits += cells >= 10**power
    head, tail = len(_OPERATION_HEAD), len(_OPERATION_TAIL)
    width = head + 4 + _CELL_DIGITS + tail  # head, length digit, CR LF #, digits, tail
    rows = np.empty((len(cells), width), dtype=np.uint8)
    rows[:, :head] = _OPERATION_HEAD
    rows[:, head] = ord("1") + digits  # the length of "#<cell>": 2..9, one digit
    rows[:, head + 1 : head + 4] = np.frombuffer(b"\r\n#", dtype=np.uint8)
    first_digit = head + 4
    for k in range(_CELL_DIGITS):  # right-aligned; the unused leading columns are dropped
        rows[:, first_digit + k] = ord("0") + cells // 10 ** (_CELL_DIGITS - 1 - k) % 10
    rows[:, first_digit + _CELL_DIGITS :] = _OPERATION_TAIL
    keep = np.ones((len(cells), width), dtype=bool)
    columns = np.arange(_CELL_DIGITS)
    keep[:, first_digit : first_digit + _CELL_DIGITS] = columns >= (_CELL_DIGITS - digits)[:, None]
    return rows[keep].tobytes(), width - _CELL_DIGITS + digits
