"""Rare facts, decided by the worker from the counts it got back: the batch computation
against the rule written out one document and one fact at a time."""

from __future__ import annotations

import numpy as np
import pytest

from workers.clean.fingerprint import Fingerprint, fact_cells
from workers.index.encoding import packed_fact_operations
from workers.index.facts import (
    FACTS_K,
    RARE_CAP,
    Facts,
    facts_of,
    packed_operations,
    rare_facts,
)

pytestmark = pytest.mark.unit


def one_by_one(kept: list[int], cells: list[int], counts: list[int], seen: int, floor: int,
               ratio: float) -> tuple[bytes, int, tuple[int, ...], int]:  # fmt: skip
    limit = min(RARE_CAP, max(floor, ratio * seen))
    bound = 1
    while bound <= limit:
        bound *= 2
    sketch: list[int] = []
    distinct, last, common = 0, -1, []
    for value, cell, count in zip(kept, cells, counts, strict=True):
        if count <= limit:
            if value != last:
                last = value
                distinct += 1
                if distinct <= FACTS_K:
                    sketch.append(value)
        elif count >= bound:
            common.append(cell)
    packed = b"".join(v.to_bytes(2, "big") for v in sketch)
    return packed, min(distinct, 65535), tuple(common), bound


@pytest.mark.parametrize("seed", range(20))
def test_batch_equals_the_rule_one_fact_at_a_time(seed: int) -> None:
    rng = np.random.default_rng(seed)
    floor = int(rng.integers(0, 4))
    ratio = float(rng.choice([0.0, 0.001, 0.01, 0.3]))
    documents, counts, seen = [], [], []
    for _ in range(int(rng.integers(1, 12))):
        size = int(rng.choice([0, 1, 5, 40, 300]))
        kept = np.sort(rng.integers(0, 400, size)).astype(np.uint16)  # repeats on purpose
        cells = rng.integers(0, 1 << 20, size)
        documents.append(Facts(kept, cells))
        counts.append(rng.integers(0, 256, size))
        seen.append(int(rng.integers(0, 100_000)))
    found = rare_facts(
        documents, np.concatenate(counts).astype(np.int64), np.array(seen), floor, ratio, 7
    )
    for facts, doc_counts, doc_seen, got in zip(documents, counts, seen, found, strict=True):
        sketch, count, common, bound = one_by_one(
            facts.kept.tolist(), facts.cells.tolist(), doc_counts.tolist(), doc_seen, floor, ratio
        )
        assert (got.sketch, got.count, got.common_cells, got.tag) == (
            sketch,
            count,
            common,
            f"7:{bound}",
        )


def test_packed_operations_split_per_document() -> None:
    rng = np.random.default_rng(3)
    documents = [
        Facts(np.zeros(size, dtype=np.uint16), rng.integers(0, 1 << 20, size))
        for size in (3, 0, 1, 17)
    ]
    for operation in ("INCRBY", "GET"):
        pieces = packed_operations(documents, operation)
        assert pieces == [packed_fact_operations(facts.cells, operation)[0] for facts in documents]
    assert packed_operations([], "GET") == []


def test_facts_of_splits_a_batch_per_document_even_when_empty() -> None:
    # A batch whose inputs were all dead or duplicates by ref has no fingerprints at all.
    assert facts_of([], 20) == []
    sizes = (0, 2, 0, 5)
    fingerprints = [
        Fingerprint("00" * 8, b"", 0, np.arange(10 * i, 10 * i + size, dtype=">u4").tobytes())
        for i, size in enumerate(sizes)
    ]
    found = facts_of(fingerprints, 20)
    assert [len(facts.cells) for facts in found] == list(sizes)
    for fingerprint, facts in zip(fingerprints, found, strict=True):
        hashes = np.frombuffer(fingerprint.facts, dtype=">u4")
        assert facts.kept.tolist() == (hashes >> 16).tolist()
        assert facts.cells.tolist() == fact_cells(hashes, 20).tolist()
    assert facts_of([Fingerprint("00" * 8, b"", 0)], 20)[0].cells.size == 0
