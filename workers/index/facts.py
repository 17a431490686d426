"""A document's facts as the index counts them, and which of them are rare.

The worker counts each chunk's facts in the frequency tables with plain BITFIELD commands
(`dedup.DedupIndex`) and decides here, from the counts it gets back, which facts are rare
(scripts/facts.lua has the why); the index script stores and compares only the rare ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise

import numpy as np

from workers.clean.fingerprint import FACT_BYTES, Fingerprint, fact_cells
from workers.index.encoding import FactOperation, packed_fact_operations

# As scripts/records.lua keeps them: the smallest FACTS_K rare-fact hashes of a document.
from workers.index.keys import FACTS_K

# No fact counted this often is rare: below the counters' saturation at 255.
RARE_CAP = 250


@dataclass(frozen=True, slots=True)
class Facts:
    """One document's facts, as the worker counts them."""

    kept: np.ndarray  # the 16 bits of each fact hash the index keeps (uint16, ascending)
    cells: np.ndarray  # their counter cells


def facts_of(fingerprints: Sequence[Fingerprint], bits: int) -> list[Facts]:
    """The facts of a whole batch, prepared in a few numpy passes."""
    hashes = np.frombuffer(b"".join(fp.facts for fp in fingerprints), dtype=">u4")
    cells = fact_cells(hashes, bits)
    kept = (hashes >> 16).astype(np.uint16)
    # An empty batch (every input dead or a duplicate by ref) has no facts at all.
    offsets = list(accumulate((len(fp.facts) // FACT_BYTES for fp in fingerprints), initial=0))
    return [Facts(kept[start:end], cells[start:end]) for start, end in pairwise(offsets)]


def packed_operations(documents: Sequence[Facts], operation: FactOperation) -> list[bytes]:
    """Each document's BITFIELD `operation` on its facts' counters, packed in the Redis
    protocol (`encoding.packed_fact_operations`), for the whole batch in one pass."""
    if not documents:
        return []
    packed, lengths = packed_fact_operations(
        np.concatenate([facts.cells for facts in documents]), operation
    )
    byte_at = [0, *np.cumsum(lengths).tolist()]  # where each fact's operation starts
    facts_at = accumulate((len(facts.cells) for facts in documents), initial=0)
    return [packed[byte_at[start] : byte_at[end]] for start, end in pairwise(facts_at)]


@dataclass(frozen=True, slots=True)
class RareFacts:
    """A document's rare facts, decided from the counts of the documents before it."""

    sketch: bytes  # the smallest FACTS_K of their kept hashes, u16 big-endian, ascending
    count: int  # how many distinct kept hashes are rare
    common_cells: tuple[int, ...]  # counter cells too common to be rare while `tag` holds
    tag: str


def rare_facts(
    documents: Sequence[Facts],
    counts: np.ndarray,
    seen: np.ndarray,
    rare_floor: int,
    rare_ratio: float,
    generation: int,
) -> list[RareFacts]:
    """The rare ones among each document's facts, given every fact's count over the
    documents before it (`counts`: the documents' facts concatenated), and how many
    documents those are in the current and the previous generation (`seen`, one each).

    A fact is rare when counted at most max(rare_floor, rare_ratio x documents) times
    (never RARE_CAP times or more). That limit only grows within a generation, but stays
    below the next power of two for a while: a fact counted at least that often is common
    for as long as the generation and that power last. The tag names both; the worker
    stops counting the common facts while it holds (`Fingerprinter.learn_common`), which
    spares most of the counting. One numpy pass for a whole batch."""
    lengths = np.array([len(facts.cells) for facts in documents], dtype=np.int64)
    limit = np.minimum(RARE_CAP, np.maximum(rare_floor, rare_ratio * seen))
    # The smallest power of two above the limit.
    bound = np.exp2(np.floor(np.log2(np.maximum(limit, 0.5))) + 1).astype(np.int64)
    doc_of = np.repeat(np.arange(len(documents)), lengths)
    kept = np.concatenate([facts.kept for facts in documents]) if len(doc_of) else doc_of
    cells = np.concatenate([facts.cells for facts in documents]) if len(doc_of) else doc_of
    rare = counts <= limit[doc_of]
    # Each document's kept hashes ascend: a repeated 16-bit value is one fact to the index.
    rare_doc, rare_kept = doc_of[rare], kept[rare]
    first = np.ones(len(rare_kept), dtype=bool)
    first[1:] = (rare_doc[1:] != rare_doc[:-1]) | (rare_kept[1:] != rare_kept[:-1])
    rare_doc, rare_kept = rare_doc[first], rare_kept[first].astype(">u2")
    distinct = np.bincount(rare_doc, minlength=len(documents))
    rare_at = np.concatenate(([0], np.cumsum(distinct)))
    common = counts >= bound[doc_of]
    common_doc, common_cells = doc_of[common], cells[common]
    common_at = np.searchsorted(common_doc, np.arange(len(documents) + 1))
    found = []
    for i in range(len(documents)):
        start = int(rare_at[i])
        found.append(
            RareFacts(
                rare_kept[start : start + min(int(distinct[i]), FACTS_K)].tobytes(),
                min(int(distinct[i]), 65535),
                tuple(common_cells[common_at[i] : common_at[i + 1]].tolist()),
                f"{generation}:{int(bound[i])}",
            )
        )
    return found
