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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

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
# Rows of the permutation matrix per numpy pass: bounds memory (rows x num_perm x 4 bytes).
_CHUNK_ROWS = 16384


@lru_cache(maxsize=32)
def lsh_bands_rows(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's optimal (bands, rows) for a threshold: a numerical integration of tens of
    milliseconds, so computed once per parameter set, never per document."""
    bands, rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
    return int(bands), int(rows)


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
    facts: bytes = b""  # FACT_BYTES per distinct fact, ascending by its 2-byte hash

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

    def facts(self, tokens: Sequence[str]) -> bytes:
        """The document's facts, encoded for the index: sorted codes, so ascending hash."""
        codes = self._fact_codes
        if len(codes) > 2_000_000:
            codes.clear()
        wanted = map(codes.__getitem__, fact_tokens(tokens))
        return b"".join(sorted(code for code in wanted if code not in self._common))

    def learn_common(self, tag: str, codes: bytes) -> None:
        """Remember the fact codes the index found common (`codes`: FACT_BYTES each)."""
        if tag != self._common_tag or len(self._common) > 1_000_000:
            self._common.clear()
            self._common_tag = tag
        self._common.update(codes[i : i + FACT_BYTES] for i in range(0, len(codes), FACT_BYTES))

    def _token_hash_array(self, tokens: Sequence[str]) -> np.ndarray:
        cache = self._token_hashes
        if len(cache) > 2_000_000:  # a long-running worker must not grow without bound
            cache.clear()
        return np.fromiter(map(cache.__getitem__, tokens), dtype=np.uint32, count=len(tokens))

    def shingle_hashes(self, tokens: Sequence[str]) -> np.ndarray:
        """Distinct 32-bit hashes of the word n-gram shingles (one shingle if shorter)."""
        if not tokens:
            return np.empty(0, dtype=np.uint32)
        hashes = self._token_hash_array(tokens)
        size = min(self.params.shingle_size, len(hashes))
        count = len(hashes) - size + 1
        combined = hashes[size - 1 : size - 1 + count].copy()
        for offset, multiplier in enumerate(self._multipliers[: size - 1]):
            combined ^= hashes[offset : offset + count] * multiplier  # wraps mod 2^32
        return np.unique(combined)

    def minhash_many(self, shingle_sets: Sequence[np.ndarray]) -> np.ndarray:
        """datasketch affine32 MinHash of each non-empty set: shape (len, num_perm), uint32."""
        out = np.empty((len(shingle_sets), self.params.num_perm), dtype=np.uint32)
        start = 0
        while start < len(shingle_sets):
            # Group documents until the permutation matrix would exceed the chunk size.
            stop, rows = start, 0
            while stop < len(shingle_sets) and (
                rows == 0 or rows + len(shingle_sets[stop]) <= _CHUNK_ROWS
            ):
                rows += len(shingle_sets[stop])
                stop += 1
            group = shingle_sets[start:stop]
            mixed = _fmix(np.concatenate(group).astype(np.uint32), 32).reshape(-1, 1)
            permuted = mixed * self._a + self._b
            offsets = np.cumsum([0] + [len(s) for s in group[:-1]])
            out[start:stop] = np.minimum.reduceat(permuted, offsets, axis=0)
            start = stop
        return out

    def fingerprint_many(self, token_lists: Sequence[Sequence[str]]) -> list[Fingerprint]:
        shingle_sets = [self.shingle_hashes(tokens) for tokens in token_lists]
        wanted = [i for i, s in enumerate(shingle_sets) if len(s) >= self.min_shingles]
        signatures: dict[int, bytes] = {}
        if wanted:
            values = self.minhash_many([shingle_sets[i] for i in wanted])
            high = (values >> 16).astype(">u2")
            signatures = {i: high[row].tobytes() for row, i in enumerate(wanted)}
        return [
            Fingerprint(
                content_hash(tokens),
                signatures.get(i, b""),
                len(shingle_sets[i]),
                self.facts(tokens),
            )
            for i, tokens in enumerate(token_lists)
        ]

    def fingerprint(self, tokens: Sequence[str]) -> Fingerprint:
        return self.fingerprint_many([tokens])[0]
