"""Fingerprints for duplicate detection: a content hash and a MinHash signature.

Both are computed on matching-normalised tokens (see `stages.matching`), never on the
published text, so diacritics, letter variants and punctuation do not hide a copy.

The MinHash is datasketch's `affine32` scheme (its permutations for the seed, its fmix
pre-mix, `a*h+b mod 2^32`, column minimum), applied to a whole batch of documents in one
numpy pass; `tests/clean/test_fingerprint.py` checks it value for value against
`datasketch.MinHash.update_batch`. The scheme's few lines (`affine32_permutations`, the
fmix, and the LSH (bands, rows) optimiser `lsh_bands_rows`) are written out here in
numpy rather than imported: importing datasketch imports scipy, a second or more of
start-up for every worker and command, for one numerical integration.

The shingle hash combines per-token hashes, and the token hash (`token_hash`, a
polynomial over the token's UTF-8 bytes, then fmix32) is computed for a whole batch in
numpy from the joined text: per-token work in Python costs more than everything else here
together. The index keeps the high 16 bits of each MinHash
value: two different minima then collide with probability 2^-16, a negligible bias in the
Jaccard estimate for half the memory.

Beside the signature each document carries its *facts*: the distinct tokens, with numbers
reduced to their digit runs (`fact_tokens`), each as its 32-bit `token_hash`. The index
counts them in a table of document frequencies (a fact's counter cell is `fact_cells`) and
keeps the rare ones (see `keyspace`): copies of one story share them, same-template
articles (a cable to another country, another day's weather) differ exactly there.
bench/NEARDUP_RESEARCH.md has the measurements behind this.

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

import numpy as np

from workers.clean.matching import TOKENS_SCHEME
from workers.config import DEFAULTS
from workers.index.keys import LEAD_PERM

SCHEME = "datasketch-affine32/poly32-fmix-token/xor-mul-shingle/hi16"
FACTS_SCHEME = "digit-runs/poly32-fmix/fmix-salted-cell"
# Bytes per fact in `Fingerprint.facts`: its token hash, big-endian.
FACT_BYTES = 4
_MASK32 = 0xFFFFFFFF
_TOKEN_PRIME = 0x01000193  # the polynomial's base (FNV's prime): odd, so no bit is lost
_LENGTH_MIX = 0x9E3779B1  # mixes the byte length in: "ab" and "\0ab" differ
_CELL_SALT = 0x5BD1E995  # a fact's counter cell comes from other bits than its hash
_DIGIT_0, _DIGIT_9, _SPACE = ord("0"), ord("9"), ord(" ")
_DIGIT_RUNS = re.compile(r"[0-9]+")
SIGNATURE_BITS = 16
# The lead signature (`Fingerprint.lead`): a MinHash of a document's first LEAD_SHINGLES
# shingles under the signature's first LEAD_PERM permutations, high 16 bits. 40 shingles
# are about the first two sentences of a news story: enough to tell which article a text
# starts with. The index compares leads (a trimmed copy starts as its original does, a
# round-up that embeds an article does not) and looks them up in LEAD_BANDS extra LSH
# bands of LEAD_ROWS values: a short trimmed copy of a long story (J ~ 0.1-0.3 over the
# whole texts, rarely an LSH candidate) shares its lead.
# LEAD_PERM, LEAD_BANDS and LEAD_ROWS are sizes of the index's records (index.keys).
LEAD_SHINGLES = 40
# Multipliers of the shingle hash: odd, so each token position is a bijection mod 2^32.
_SHINGLE_MULTIPLIERS = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1)
_MAX_SHINGLE = len(_SHINGLE_MULTIPLIERS) + 1
# Rows of the permutation matrix per numpy pass (rows x num_perm x 4 bytes): small enough
# to stay in the CPU's cache between the multiply, the add and the minimum, which is three
# times faster than one pass over a whole batch.
_CHUNK_ROWS = 1024


@lru_cache(maxsize=32)
def lsh_bands_rows(
    threshold: float,
    num_perm: int,
    false_positive_weight: float = 0.5,
    false_negative_weight: float = 0.5,
) -> tuple[int, int]:
    """The (bands, rows) that datasketch's MinHashLSH picks for a threshold (its
    `_optimal_param`): of every b x r <= num_perm, the first (b ascending, then r) with the
    least weighted sum of the false positive area (the integral of P(candidate | s) =
    1 - (1 - s^r)^b over s in [0, threshold]) and the false negative area (of
    1 - P(candidate | s) over [threshold, 1]).

    datasketch integrates with scipy's adaptive quadrature; the integrand is a polynomial
    of degree b x r <= num_perm, which Gauss-Legendre quadrature on num_perm // 2 + 1 nodes
    integrates exactly, so this needs numpy only and agrees with it
    (tests/clean/test_fingerprint.py compares the two over a grid of parameters)."""
    if not 0.0 <= threshold <= 1.0 or num_perm < 1:
        raise ValueError("threshold must be in [0, 1] and num_perm positive")
    nodes, weights = np.polynomial.legendre.leggauss(num_perm // 2 + 1)
    pairs = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
    bands = np.array([b for b, _ in pairs], dtype=np.float64).reshape(-1, 1)
    rows = np.array([r for _, r in pairs], dtype=np.float64).reshape(-1, 1)

    def area(low: float, high: float, candidate: bool) -> np.ndarray:
        # ∫_low^high f(s) ds with s = mid + half * x, x the nodes on [-1, 1].
        half, mid = (high - low) / 2.0, (high + low) / 2.0
        s = mid + half * nodes
        never = (1.0 - s**rows) ** bands  # P(not a candidate | s), per pair and node
        values = 1.0 - never if candidate else never
        result: np.ndarray = half * (values @ weights)
        return result

    error = false_positive_weight * area(0.0, threshold, True) + false_negative_weight * area(
        threshold, 1.0, False
    )
    best = int(np.argmin(error))  # the first of equal minima, as datasketch's strict `<`
    return pairs[best]


def affine32_permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters for `seed` (`MinHash(num_perm, seed,
    scheme="affine32").permutations`): odd multipliers a and offsets b, uint32."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


@lru_cache(maxsize=1)
def _datasketch_version() -> str:
    """The installed datasketch, recorded in the index for information only (the values
    come from the scheme written out here); read from its metadata, not by importing it."""
    from importlib import metadata

    try:
        return metadata.version("datasketch")
    except metadata.PackageNotFoundError:
        return "none"


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
    facts_bits: int = DEFAULTS.dedup.facts_bits  # the fact table has 2^facts_bits counters

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
            "tokens": TOKENS_SCHEME,
            "datasketch": _datasketch_version(),
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
    facts: bytes = b""  # distinct facts not known to be common: uint32 hashes, ascending
    # The lead signature: LEAD_PERM big-endian uint16, the MinHash of the document's first
    # LEAD_SHINGLES shingles (b"" without a shingle). A trimmed copy starts as its
    # original does; a round-up that embeds an article does not (PARTIAL in
    # scripts/accept_documents.lua).
    lead: bytes = b""

    @property
    def content_key(self) -> bytes:
        """The 8 bytes of the content hash the index stores."""
        return bytes.fromhex(self.content_hash[:16])


def content_hash(tokens: Sequence[str]) -> str:
    """Hash of the token sequence: equal for texts that differ only in normalised-away detail."""
    return _content_hash_of(" ".join(tokens).encode("utf-8"))


def _content_hash_of(joined: bytes) -> str:
    return hashlib.blake2b(joined, digest_size=16).hexdigest()


def url_key(canonical_url: str) -> bytes:
    """8-byte key of a canonical URL for the index's exact-URL path; b"" when there is none."""
    if not canonical_url:
        return b""
    return hashlib.blake2b(canonical_url.encode("utf-8"), digest_size=8).digest()


def input_key(title: str, text: str) -> bytes:
    """8-byte key of an input as read (its normalised title and text, before any line is
    stripped): the same input read again has the same key, whatever boilerplate was
    learned in between and strips now."""
    said = f"{title}\n{text}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(said, digest_size=8, person=b"input").digest()


def title_key(title: str) -> bytes:
    """4-byte key of a normalised title: an update may change only its headline."""
    return hashlib.blake2b(title.encode("utf-8"), digest_size=4).digest()


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
            facts.update(_run_fact(run) for run in runs)
    return facts


def _run_fact(run: str) -> str:
    return "#" + (run.lstrip("0") or "0")


def _fmix32(value: int) -> int:
    value ^= value >> 16
    value = (value * 0x85EBCA6B) & _MASK32
    value ^= value >> 13
    value = (value * 0xC2B2AE35) & _MASK32
    return value ^ (value >> 16)


def _fmix32_array(values: np.ndarray) -> np.ndarray:
    """`_fmix32` on a uint32 array (multiplication wraps mod 2^32)."""
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values ^= values >> np.uint32(13)
    values *= np.uint32(0xC2B2AE35)
    mixed: np.ndarray = values ^ (values >> np.uint32(16))
    return mixed


def token_hash(token: str) -> int:
    """32-bit hash of a token: sum of its UTF-8 bytes b_i * P^(n-1-i) mod 2^32, the length
    mixed in, through fmix32. `hash_tokens` computes the same for a whole text in numpy."""
    data = token.encode("utf-8")
    poly = 0
    for byte in data:
        poly = (poly * _TOKEN_PRIME + byte) & _MASK32
    return _fmix32(poly ^ ((len(data) * _LENGTH_MIX) & _MASK32))


def hash_tokens(text: bytes) -> tuple[np.ndarray, np.ndarray]:
    """`token_hash` of every space-separated token of `text` (UTF-8), in order, and whether
    each token has an ASCII digit."""
    data = np.frombuffer(text, dtype=np.uint8)
    inside = data != _SPACE
    starts = inside & np.concatenate(([True], ~inside[:-1]))
    raw = data[inside].astype(np.uint32)
    if not len(raw):
        return np.empty(0, dtype=np.uint32), np.empty(0, dtype=bool)
    token_of = np.cumsum(starts[inside]) - 1  # token number of every byte
    lengths = np.bincount(token_of)
    first = np.cumsum(lengths) - lengths
    exponent = (lengths - 1)[token_of] - (np.arange(len(raw)) - first[token_of])
    powers = np.full(int(lengths.max()), _TOKEN_PRIME, dtype=np.uint32)
    powers[0] = 1
    powers = np.cumprod(powers, dtype=np.uint32)  # P^k mod 2^32 (uint32 wraps)
    poly = np.add.reduceat(raw * powers[exponent], first).astype(np.uint32)
    mixed = _fmix32_array(poly ^ (lengths.astype(np.uint32) * np.uint32(_LENGTH_MIX)))
    digits = ((raw >= _DIGIT_0) & (raw <= _DIGIT_9)).astype(np.uint32)
    return mixed, np.add.reduceat(digits, first) > 0


def fact_cells(fact_hashes: np.ndarray, bits: int) -> np.ndarray:
    """The frequency-table cell of each fact hash (uint32 array): other bits than the 16
    the index's sketch keeps, so two facts sharing a cell rarely share a sketch entry."""
    mixed = _fmix32_array(fact_hashes ^ np.uint32(_CELL_SALT))
    cells: np.ndarray = mixed & np.uint32((1 << bits) - 1)
    return cells


@dataclass(frozen=True, slots=True)
class _TokenBatch:
    """A batch's tokens, hashed once for shingles and facts alike."""

    joined: list[bytes]  # each document's tokens joined by spaces, UTF-8
    lengths: np.ndarray  # tokens per document
    hashes: np.ndarray  # `token_hash` of every token, documents concatenated
    doc_of: np.ndarray  # document number of every token (uint64)
    has_digit: np.ndarray  # whether every token has an ASCII digit


class Fingerprinter:
    """Computes fingerprints with one fixed parameter set; reuse one per process."""

    def __init__(self, params: FingerprintParams, min_shingles: int) -> None:
        self.params = params
        self.min_shingles = min_shingles
        self._a, self._b = affine32_permutations(params.num_perm, params.seed)
        self._multipliers = np.array(
            _SHINGLE_MULTIPLIERS[: params.shingle_size - 1], dtype=np.uint32
        )
        self._run_hashes: dict[str, int] = {}
        # Counter cells the index reported as too frequent to be rare while its tag holds:
        # facts counted there are not sent, which spares most of the index's counting.
        self._common_cells = np.zeros(1 << params.facts_bits, dtype=bool)
        self._common_tag = ""

    def learn_common(self, tag: str, cells: Iterable[int]) -> None:
        """Remember the counter cells the index found common under `tag`."""
        if tag != self._common_tag:
            self._common_cells[:] = False
            self._common_tag = tag
        self._common_cells[list(cells)] = True

    def _batch_tokens(self, token_lists: Sequence[Sequence[str]]) -> _TokenBatch:
        joined = [" ".join(tokens).encode("utf-8") for tokens in token_lists]
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        hashes, has_digit = hash_tokens(b" ".join(joined))
        if len(hashes) != int(lengths.sum()):
            raise ValueError("tokens must be non-empty and free of spaces")
        doc_of = np.repeat(np.arange(len(token_lists), dtype=np.uint64), lengths)
        return _TokenBatch(joined, lengths, hashes, doc_of, has_digit)

    def _batch_facts(self, token_lists: Sequence[Sequence[str]], batch: _TokenBatch) -> list[bytes]:
        """Each document's distinct fact hashes not known to be common, ascending, as
        big-endian uint32 bytes (`fact_tokens`, hashed with `token_hash`)."""
        hashes, doc_of, has_digit = batch.hashes, batch.doc_of, batch.has_digit
        words = ~has_digit
        keys = [(doc_of[words] << np.uint64(32)) | hashes[words]]
        numbered = np.flatnonzero(has_digit)
        if len(numbered):
            # Tokens with digits stand for their digit runs: few, so done one by one.
            flat = list(chain.from_iterable(token_lists))
            runs = self._run_hashes
            if len(runs) > 1_000_000:
                runs.clear()
            extra: list[int] = []
            for position, doc in zip(numbered.tolist(), doc_of[numbered].tolist(), strict=True):
                for run in _DIGIT_RUNS.findall(flat[position]):
                    value = runs.get(run)
                    if value is None:
                        value = runs[run] = token_hash(_run_fact(run))
                    extra.append((doc << 32) | value)
            keys.append(np.array(extra, dtype=np.uint64))
        distinct = _sorted_distinct(np.concatenate(keys))
        values = (distinct & np.uint64(_MASK32)).astype(np.uint32)
        keep = ~self._common_cells[fact_cells(values, self.params.facts_bits)]
        kept_docs = (distinct[keep] >> np.uint64(32)).astype(np.int64)
        kept = values[keep].astype(">u4")
        ends = np.cumsum(np.bincount(kept_docs, minlength=len(token_lists))).tolist()
        starts = [0, *ends[:-1]]
        return [kept[lo:hi].tobytes() for lo, hi in zip(starts, ends, strict=True)]

    def batch_shingles(self, token_lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Distinct 32-bit hashes of the word n-gram shingles of each document (a document
        shorter than n is one shingle): the hashes of all documents concatenated, each
        document's ascending, and their counts."""
        hashes, counts, _ = self._shingles(self._batch_tokens(token_lists))
        return hashes, counts

    def _shingles(self, batch: _TokenBatch) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
        """`batch_shingles`, and each document's lead signature (`Fingerprint.lead`)."""
        hashes, doc_of, lengths = batch.hashes, batch.doc_of, batch.lengths
        total = len(hashes)
        size = self.params.shingle_size
        keys = [np.empty(0, dtype=np.uint64)]
        starts = np.cumsum(lengths) - lengths
        leads = [b""] * len(lengths)
        if total >= size:
            # Shingles at every position of the concatenation; keep those inside one document.
            count = total - size + 1
            combined = hashes[size - 1 :].copy()
            for offset, multiplier in enumerate(self._multipliers):
                combined ^= hashes[offset : offset + count] * multiplier  # wraps mod 2^32
            owner = doc_of[:count]
            inside = owner == doc_of[size - 1 :]
            keys.append((owner[inside] << np.uint64(32)) | combined[inside])
            position = np.arange(count, dtype=np.int64) - starts[owner.astype(np.int64)]
            leads = self._lead_signatures(
                combined, owner, inside & (position < LEAD_SHINGLES), len(lengths)
            )
        for doc in np.flatnonzero((lengths > 0) & (lengths < size)):
            # Shorter than a shingle: the whole text is one, hashed with its own length.
            start, length = int(starts[doc]), int(lengths[doc])
            value = int(hashes[start + length - 1])
            for offset in range(length - 1):
                value ^= int(hashes[start + offset]) * int(self._multipliers[offset]) & _MASK32
            keys.append(np.array([(int(doc) << 32) | value], dtype=np.uint64))
        distinct = _sorted_distinct(np.concatenate(keys))  # by document, then by hash
        counts = np.bincount((distinct >> np.uint64(32)).astype(np.int64), minlength=len(lengths))
        return (distinct & np.uint64(_MASK32)).astype(np.uint32), counts, leads

    def _lead_signatures(
        self, shingles: np.ndarray, owner: np.ndarray, lead: np.ndarray, documents: int
    ) -> list[bytes]:
        """Each document's lead signature (`Fingerprint.lead`): `shingles` are the batch's
        positional shingle hashes, `owner` each one's document (ascending), `lead` marks
        those among their document's first LEAD_SHINGLES."""
        out = [b""] * documents
        counts = np.bincount(owner[lead].astype(np.int64), minlength=documents)
        signed = np.flatnonzero(counts)
        if not len(signed):
            return out
        values = self._minhash_concatenated(shingles[lead], counts[signed], LEAD_PERM)
        high = (values >> np.uint32(16)).astype(">u2")
        for row, doc in enumerate(signed.tolist()):
            out[doc] = high[row].tobytes()
        return out

    def shingle_hashes(self, tokens: Sequence[str]) -> np.ndarray:
        """Distinct 32-bit hashes of one document's shingles, ascending."""
        return self.batch_shingles([tokens])[0]

    def _minhash_concatenated(
        self, hashes: np.ndarray, counts: np.ndarray, perms: int | None = None
    ) -> np.ndarray:
        """MinHash of consecutive runs of `hashes` (each count > 0) under the first `perms`
        permutations (default all): (len(counts), perms)."""
        perms = self.params.num_perm if perms is None else perms
        a, b = self._a[:perms], self._b[:perms]
        out = np.empty((len(counts), perms), dtype=np.uint32)
        mixed = _fmix32_array(hashes.astype(np.uint32)).reshape(-1, 1)
        offsets = np.cumsum(counts) - counts
        buffer = np.empty((_CHUNK_ROWS, perms), dtype=np.uint32)
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
                buffer[:rows] if rows <= _CHUNK_ROWS else np.empty_like(buffer, shape=(rows, perms))
            )
            np.multiply(mixed[first : first + rows], a, out=permuted)
            np.add(permuted, b, out=permuted)
            out[start:stop] = np.minimum.reduceat(permuted, offsets[start:stop] - first, axis=0)
            start = stop
        return out

    def minhash_many(self, shingle_sets: Sequence[np.ndarray]) -> np.ndarray:
        """datasketch affine32 MinHash of each non-empty set: shape (len, num_perm), uint32."""
        counts = np.fromiter(map(len, shingle_sets), dtype=np.int64, count=len(shingle_sets))
        hashes = np.concatenate(shingle_sets) if shingle_sets else np.empty(0, np.uint32)
        return self._minhash_concatenated(hashes, counts)

    def fingerprint_many(self, token_lists: Sequence[Sequence[str]]) -> list[Fingerprint]:
        if not token_lists:  # a chunk of nothing but dead inputs
            return []
        batch = self._batch_tokens(token_lists)
        shingle_hashes, counts, leads = self._shingles(batch)
        wanted = counts >= self.min_shingles
        signatures: list[bytes] = [b""] * len(token_lists)
        if wanted.any():
            values = self._minhash_concatenated(
                shingle_hashes[np.repeat(wanted, counts)], counts[wanted]
            )
            high = (values >> 16).astype(">u2")
            for row, i in enumerate(np.flatnonzero(wanted).tolist()):
                signatures[i] = high[row].tobytes()
        facts = self._batch_facts(token_lists, batch)
        return [
            Fingerprint(_content_hash_of(text), signature, shingles, document_facts, lead)
            for text, signature, shingles, document_facts, lead in zip(
                batch.joined, signatures, counts.tolist(), facts, leads, strict=True
            )
        ]

    def fingerprint(self, tokens: Sequence[str]) -> Fingerprint:
        return self.fingerprint_many([tokens])[0]
