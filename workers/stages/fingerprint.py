"""Fingerprints for duplicate detection: a content hash and a MinHash signature.

Both are computed on matching-normalised tokens (see `stages.matching`), never on the
published text, so diacritics, letter variants and punctuation do not hide a copy.

The MinHash is datasketch's `affine32` scheme (its permutations for the seed, its fmix
pre-mix, `a*h+b mod 2^32`, column minimum), applied to a whole batch of documents in one
numpy pass; `tests/test_fingerprint.py` checks it value for value against
`datasketch.MinHash.update_batch`. The shingle hash combines per-token xxh32 values, so a
token is hashed once per process, not once per shingle it appears in. The index keeps
the high 16 bits of each value: two different minima then collide with probability
2^-16, a negligible bias in the Jaccard estimate for half the memory.

Beside the signature each document carries its *facts*: the distinct tokens, with numbers
reduced to their digit runs, each as a 2-byte hash and the cell of its counter in the index's
table of document frequencies. The index keeps the rare ones (see
`keyspace`): copies of one story share them, same-template articles (a cable to another
country, another day's weather) differ exactly there. bench/NEARDUP_RESEARCH.md has the
measurements behind this.

Everything that changes stored values is pinned in `FingerprintParams` and recorded in
the index, which refuses documents fingerprinted any other way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain

import datasketch
import numpy as np
import xxhash
from datasketch import MinHash
from datasketch.lsh import _optimal_param
from datasketch.minhash import _fmix

SCHEME = "datasketch-affine32/xxh32-token-poly/hi16"
FACTS_SCHEME = "digit-runs/xxh32-hi16/xxh64-cell"
# Bytes per fact in `Fingerprint.facts`: 2-byte hash, then its 3-byte frequency counter.
FACT_BYTES = 5
_DIGIT_RUNS = re.compile(r"[0-9]+")
SIGNATURE_BITS = 16
# Multipliers of the shingle hash: odd, so each token position is a bijection mod 2^32.
_SHINGLE_MULTIPLIERS = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1)
_MAX_SHINGLE = len(_SHINGLE_MULTIPLIERS) + 1
# Rows of the permutation matrix per numpy pass (rows x num_perm x 4 bytes): small enough
# to stay in the CPU's cache between the multiply, the add and the minimum, which is three
# times faster than one pass over a whole batch.
_CHUNK_ROWS = 1024


@lru_cache(maxsize=32)
def lsh_bands_rows(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's optimal (bands, rows) for a threshold: a numerical integration of tens of
    milliseconds, so computed once per parameter set, never per document."""
    bands, rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
    return int(bands), int(rows)


def _sorted_distinct(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting: numpy 2's np.unique hashes first, ten times slower here."""
    ordered = np.sort(values)
    keep = np.empty(len(ordered), dtype=bool)
    keep[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


@dataclass(frozen=True, slots=True)
class FingerprintParams:
    num_perm: int
    seed: int
    shingle_size: int
    lsh_threshold: float
    facts_bits: int = 21  # the fact frequency table has 2^facts_bits counters

    def __post_init__(self) -> None:
        if not 1 <= self.shingle_size <= _MAX_SHINGLE:
            raise ValueError(f"shingle_size must be 1..{_MAX_SHINGLE}")
        if not 10 <= self.facts_bits <= 24:  # a cell travels in 3 bytes
            raise ValueError("facts_bits must be 10..24")

    @property
    def bands_rows(self) -> tuple[int, int]:
        return lsh_bands_rows(self.lsh_threshold, self.num_perm)

    def as_metadata(self) -> dict[str, str]:
        bands, rows = self.bands_rows
        return {
            "scheme": SCHEME,
            "datasketch": datasketch.__version__,
            "num_perm": str(self.num_perm),
            "seed": str(self.seed),
            "shingle_size": str(self.shingle_size),
            "bands": str(bands),
            "rows": str(rows),
            "facts": FACTS_SCHEME,
            "facts_bits": str(self.facts_bits),
        }


@dataclass(frozen=True, slots=True)
class Fingerprint:
    content_hash: str  # hex, published with the document
    signature: bytes  # num_perm big-endian uint16; b"" when too short for near matching
    shingles: int  # distinct shingles
    facts: tuple[bytes, ...] = ()  # one FACT_BYTES code per distinct fact, ascending

    @property
    def content_key(self) -> bytes:
        """The 8 bytes of the content hash the index stores."""
        return bytes.fromhex(self.content_hash[:16])


def content_hash(tokens: Sequence[str]) -> str:
    """Hash of the token sequence: equal for texts that differ only in normalised-away detail."""
    return hashlib.blake2b(" ".join(tokens).encode("utf-8"), digest_size=16).hexdigest()


def url_key(canonical_url: str) -> bytes:
    """8-byte key of a canonical URL for the index's exact-URL path; b"" when there is none."""
    if not canonical_url:
        return b""
    return hashlib.blake2b(canonical_url.encode("utf-8"), digest_size=8).digest()


def fact_tokens(tokens: Sequence[str]) -> set[str]:
    """Distinct tokens, a token with digits standing for its digit runs ("1437ه",
    "ال1437" and "1437" all give "#1437"): the figures and names that tell one
    same-template article from another."""
    facts = set(tokens)
    # Most tokens are plain words (isalpha is a C call); only the rest are searched.
    for token in [t for t in facts if not t.isalpha()]:
        runs = _DIGIT_RUNS.findall(token)
        if runs:
            facts.discard(token)
            facts.update("#" + (run.lstrip("0") or "0") for run in runs)
    return facts


class _FactCodes(dict[str, bytes]):
    """Fact -> its FACT_BYTES code, computed on first sight (news reuses its vocabulary)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self._mask = (1 << bits) - 1

    def __missing__(self, fact: str) -> bytes:
        raw = fact.encode("utf-8")
        cell = xxhash.xxh64_intdigest(raw) & self._mask
        code = (xxhash.xxh32_intdigest(raw) >> 16).to_bytes(2, "big") + cell.to_bytes(3, "big")
        self[fact] = code
        return code


class _TokenHashes(dict[str, int]):
    """Token -> xxh32, filled on first sight; lookups stay in C via dict.__getitem__."""

    def __missing__(self, token: str) -> int:
        value = self[token] = xxhash.xxh32_intdigest(token.encode("utf-8"))
        return value


class Fingerprinter:
    """Computes fingerprints with one fixed parameter set; reuse one per process."""

    def __init__(self, params: FingerprintParams, min_shingles: int) -> None:
        self.params = params
        self.min_shingles = min_shingles
        permutations = MinHash(
            num_perm=params.num_perm, seed=params.seed, scheme="affine32"
        ).permutations
        self._a = np.asarray(permutations[0], dtype=np.uint32)
        self._b = np.asarray(permutations[1], dtype=np.uint32)
        self._multipliers = np.array(
            _SHINGLE_MULTIPLIERS[: params.shingle_size - 1], dtype=np.uint32
        )
        self._token_hashes = _TokenHashes()
        self._fact_codes = _FactCodes(params.facts_bits)
        # Codes the index reported as far too frequent to be rare, valid while its tag
        # holds: not sending them spares most of the index's counting work.
        self._common: set[bytes] = set()
        self._common_tag = ""

    def facts(self, tokens: Sequence[str]) -> tuple[bytes, ...]:
        """The document's facts, encoded for the index: sorted codes, so ascending hash."""
        codes = self._fact_codes
        if len(codes) > 2_000_000:
            codes.clear()
        # difference() walks the document's few hundred codes, not the common set.
        wanted = set(map(codes.__getitem__, fact_tokens(tokens))).difference(self._common)
        return tuple(sorted(wanted))

    def learn_common(self, tag: str, codes: Iterable[bytes]) -> None:
        """Remember the fact codes the index found common under `tag`."""
        if tag != self._common_tag or len(self._common) > 1_000_000:
            self._common.clear()
            self._common_tag = tag
        self._common.update(codes)

    def batch_shingles(self, token_lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Distinct 32-bit hashes of the word n-gram shingles of each document (a document
        shorter than n is one shingle), for a whole batch in a few numpy passes: the hashes
        of all documents concatenated, each document's ascending, and their counts."""
        cache = self._token_hashes
        if len(cache) > 2_000_000:  # a long-running worker must not grow without bound
            cache.clear()
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        total = int(lengths.sum())
        hashes = np.fromiter(
            map(cache.__getitem__, chain.from_iterable(token_lists)), dtype=np.uint32, count=total
        )
        doc_of = np.repeat(np.arange(len(token_lists), dtype=np.uint64), lengths)
        size = self.params.shingle_size
        keys = [np.empty(0, dtype=np.uint64)]
        if total >= size:
            # Shingles at every position of the concatenation; keep those inside one document.
            count = total - size + 1
            combined = hashes[size - 1 :].copy()
            for offset, multiplier in enumerate(self._multipliers):
                combined ^= hashes[offset : offset + count] * multiplier  # wraps mod 2^32
            inside = doc_of[:count] == doc_of[size - 1 :]
            keys.append((doc_of[:count][inside] << np.uint64(32)) | combined[inside])
        starts = np.cumsum(lengths) - lengths
        for doc in np.flatnonzero((lengths > 0) & (lengths < size)):
            # Shorter than a shingle: the whole text is one, hashed with its own length.
            start, length = int(starts[doc]), int(lengths[doc])
            value = int(hashes[start + length - 1])
            for offset in range(length - 1):
                value ^= int(hashes[start + offset]) * int(self._multipliers[offset]) & 0xFFFFFFFF
            keys.append(np.array([(int(doc) << 32) | value], dtype=np.uint64))
        distinct = _sorted_distinct(np.concatenate(keys))  # by document, then by hash
        counts = np.bincount(
            (distinct >> np.uint64(32)).astype(np.int64), minlength=len(token_lists)
        )
        return (distinct & np.uint64(0xFFFFFFFF)).astype(np.uint32), counts

    def shingle_hashes(self, tokens: Sequence[str]) -> np.ndarray:
        """Distinct 32-bit hashes of one document's shingles, ascending."""
        return self.batch_shingles([tokens])[0]

    def _minhash_concatenated(self, hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """MinHash of consecutive runs of `hashes` (each count > 0): (len(counts), num_perm)."""
        out = np.empty((len(counts), self.params.num_perm), dtype=np.uint32)
        mixed = _fmix(hashes.astype(np.uint32), 32).reshape(-1, 1)
        offsets = np.cumsum(counts) - counts
        buffer = np.empty((_CHUNK_ROWS, self.params.num_perm), dtype=np.uint32)
        lengths = counts.tolist()
        start = 0
        while start < len(lengths):
            # Group documents while their rows fit the buffer (one document may overflow it:
            # it gets a buffer of its own).
            stop, rows = start, 0
            while stop < len(lengths) and (rows == 0 or rows + lengths[stop] <= _CHUNK_ROWS):
                rows += lengths[stop]
                stop += 1
            first = int(offsets[start])
            permuted = (
                buffer[:rows]
                if rows <= _CHUNK_ROWS
                else np.empty_like(buffer, shape=(rows, self.params.num_perm))
            )
            np.multiply(mixed[first : first + rows], self._a, out=permuted)
            np.add(permuted, self._b, out=permuted)
            out[start:stop] = np.minimum.reduceat(permuted, offsets[start:stop] - first, axis=0)
            start = stop
        return out

    def minhash_many(self, shingle_sets: Sequence[np.ndarray]) -> np.ndarray:
        """datasketch affine32 MinHash of each non-empty set: shape (len, num_perm), uint32."""
        counts = np.fromiter(map(len, shingle_sets), dtype=np.int64, count=len(shingle_sets))
        hashes = np.concatenate(shingle_sets) if shingle_sets else np.empty(0, np.uint32)
        return self._minhash_concatenated(hashes, counts)

    def fingerprint_many(self, token_lists: Sequence[Sequence[str]]) -> list[Fingerprint]:
        hashes, counts = self.batch_shingles(token_lists)
        wanted = counts >= self.min_shingles
        signatures: list[bytes] = [b""] * len(token_lists)
        if wanted.any():
            values = self._minhash_concatenated(hashes[np.repeat(wanted, counts)], counts[wanted])
            high = (values >> 16).astype(">u2")
            for row, i in enumerate(np.flatnonzero(wanted).tolist()):
                signatures[i] = high[row].tobytes()
        shingle_counts = counts.tolist()
        return [
            Fingerprint(content_hash(tokens), signatures[i], shingle_counts[i], self.facts(tokens))
            for i, tokens in enumerate(token_lists)
        ]

    def fingerprint(self, tokens: Sequence[str]) -> Fingerprint:
        return self.fingerprint_many([tokens])[0]
