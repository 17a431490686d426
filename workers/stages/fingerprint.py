"""Fingerprints for duplicate detection: a content hash and a MinHash signature.

Both are computed on matching-normalised text (see `stages.matching`), never on the
published text, so diacritics, letter variants and punctuation do not hide a copy.
The MinHash scheme (datasketch's affine32 permutations, xxh32 shingle hash, seed,
num_perm, shingle size) is pinned in `FingerprintParams` and recorded in the index, which
refuses documents fingerprinted any other way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import cast

import datasketch
import numpy as np
import xxhash
from datasketch import MinHash
from datasketch.lsh import _optimal_param

SCHEME = "affine32+xxh32"


@dataclass(frozen=True, slots=True)
class FingerprintParams:
    num_perm: int
    seed: int
    shingle_size: int
    lsh_threshold: float

    @property
    def bands_rows(self) -> tuple[int, int]:
        bands, rows = _optimal_param(self.lsh_threshold, self.num_perm, 0.5, 0.5)
        return int(bands), int(rows)

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
        }


@dataclass(frozen=True, slots=True)
class Fingerprint:
    content_hash: str
    signature: bytes  # num_perm little-endian uint32; b"" when too short for near matching
    shingles: int  # distinct shingles
    buckets: tuple[str, ...]  # "<band>:<bucket hex>" per LSH band; () when no signature


def content_hash(tokens: list[str]) -> str:
    """Hash of the token sequence: equal for texts that differ only in normalised-away detail."""
    return hashlib.blake2b(" ".join(tokens).encode("utf-8"), digest_size=16).hexdigest()


def word_shingles(tokens: list[str], size: int) -> set[bytes]:
    if len(tokens) < size:
        return {" ".join(tokens).encode("utf-8")} if tokens else set()
    return {" ".join(tokens[i : i + size]).encode("utf-8") for i in range(len(tokens) - size + 1)}


def _xxh32(data: bytes) -> int:
    return xxhash.xxh32_intdigest(data)


class Fingerprinter:
    """Computes fingerprints with one fixed parameter set; reuse one per process."""

    def __init__(self, params: FingerprintParams, min_shingles: int) -> None:
        self.params = params
        self.min_shingles = min_shingles
        self.bands, self.rows = params.bands_rows

    @cached_property
    def _permutations(self) -> np.ndarray:
        # Generating permutations costs more than hashing a short article: do it once.
        perms = MinHash(num_perm=self.params.num_perm, seed=self.params.seed).permutations
        return cast(np.ndarray, perms)

    def signature(self, shingles: set[bytes]) -> np.ndarray:
        minhash = MinHash(
            num_perm=self.params.num_perm,
            seed=self.params.seed,
            hashfunc=_xxh32,
            permutations=self._permutations,
            scheme="affine32",
        )
        minhash.update_batch(list(shingles))
        return cast(np.ndarray, minhash.hashvalues.astype("<u4"))

    def buckets(self, signature: np.ndarray) -> tuple[str, ...]:
        rows = self.rows
        return tuple(
            f"{band}:{xxhash.xxh64_hexdigest(signature[band * rows : (band + 1) * rows].tobytes())}"
            for band in range(self.bands)
        )

    def fingerprint(self, tokens: list[str]) -> Fingerprint:
        shingles = word_shingles(tokens, self.params.shingle_size)
        chash = content_hash(tokens)
        if len(shingles) < self.min_shingles:
            return Fingerprint(chash, b"", len(shingles), ())
        signature = self.signature(shingles)
        return Fingerprint(chash, signature.tobytes(), len(shingles), self.buckets(signature))
