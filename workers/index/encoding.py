"""How values are laid out for the index: the LSH bucket fields and the fact counters'
BITFIELD operations, computed in bulk with numpy, exactly as the scripts compute or read
them (tests/index checks the two agree)."""

from __future__ import annotations

from typing import Literal

import numpy as np

# The BITFIELD operations on a fact's counter `cell` (see `fact_operation`): count it
# (INCRBY u8 #<cell> 1) or read it (GET u8 #<cell>).
FactOperation = Literal["INCRBY", "GET"]
FACT_OPERATION_ARGS: dict[FactOperation, int] = {"INCRBY": 4, "GET": 3}


def fact_operation(cell: int, operation: FactOperation = "INCRBY") -> tuple[bytes, ...]:
    """The BITFIELD operation on the frequency counter `cell` of a fact."""
    if operation == "GET":
        return (b"GET", b"u8", b"#%d" % cell)
    return (b"INCRBY", b"u8", b"#%d" % cell, b"1")


def lsh_bucket_fields(
    signatures: np.ndarray, bands: int, rows: int, first_band: int = 0
) -> np.ndarray:
    """The LSH bucket field of every band of every signature (uint16 array, one row each),
    as scripts/records.lua's `bucket_field` computes it from a stored signature: uint32 of
    shape (signatures, bands). Bands are numbered from `first_band` (the lead signature's
    follow the signature's). The script relies on the two agreeing
    (tests/index/test_index.py checks they do)."""
    values = signatures[:, : bands * rows].astype(np.uint64).reshape(len(signatures), bands, rows)
    band = np.arange(first_band, first_band + bands, dtype=np.uint64)
    h = np.broadcast_to(band * np.uint64(2654435) + np.uint64(7), values.shape[:2]).copy()
    modulus = np.uint64(1 << 32)
    for row in range(rows):  # h < 2^32, so h * 31337 + v < 2^47: exact in uint64
        h = (h * np.uint64(31337) + values[:, :, row]) % modulus
    fields: np.ndarray = h.astype(np.uint32)
    return fields


_OPERATION_PARTS: dict[FactOperation, tuple[np.ndarray, np.ndarray]] = {
    "INCRBY": (
        np.frombuffer(b"$6\r\nINCRBY\r\n$2\r\nu8\r\n$", dtype=np.uint8),
        np.frombuffer(b"\r\n$1\r\n1\r\n", dtype=np.uint8),
    ),
    "GET": (
        np.frombuffer(b"$3\r\nGET\r\n$2\r\nu8\r\n$", dtype=np.uint8),
        np.frombuffer(b"\r\n", dtype=np.uint8),
    ),
}
_CELL_DIGITS = 8  # cells are below 2^24


def packed_fact_operations(
    cells: np.ndarray, operation: FactOperation = "INCRBY"
) -> tuple[bytes, np.ndarray]:
    """`fact_operation` of every cell, packed in the Redis protocol as
    `ops.connection.pack_command` would, all at once: the bytes, and each operation's
    length in them. Per-fact work in Python cost more than the index's work on them."""
    cells = cells.astype(np.int64)
    if len(cells) and (cells.min() < 0 or cells.max() >= 10**_CELL_DIGITS):
        raise ValueError("fact cells must be below 10^8")
    digits = np.ones(len(cells), dtype=np.int64)
    for power in range(1, _CELL_DIGITS):
        digits += cells >= 10**power
    head_bytes, tail_bytes = _OPERATION_PARTS[operation]
    head, tail = len(head_bytes), len(tail_bytes)
    width = head + 4 + _CELL_DIGITS + tail  # head, length digit, CR LF #, digits, tail
    rows = np.empty((len(cells), width), dtype=np.uint8)
    rows[:, :head] = head_bytes
    rows[:, head] = ord("1") + digits  # the length of "#<cell>": 2..9, one digit
    rows[:, head + 1 : head + 4] = np.frombuffer(b"\r\n#", dtype=np.uint8)
    first_digit = head + 4
    for k in range(_CELL_DIGITS):  # right-aligned; the unused leading columns are dropped
        rows[:, first_digit + k] = ord("0") + cells // 10 ** (_CELL_DIGITS - 1 - k) % 10
    rows[:, first_digit + _CELL_DIGITS :] = tail_bytes
    keep = np.ones((len(cells), width), dtype=bool)
    columns = np.arange(_CELL_DIGITS)
    keep[:, first_digit : first_digit + _CELL_DIGITS] = columns >= (_CELL_DIGITS - digits)[:, None]
    return rows[keep].tobytes(), width - _CELL_DIGITS + digits
