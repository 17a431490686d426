"""Fingerprint stage: MinHash equal to datasketch's, facts and their encoding."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from workers.clean.fingerprint import (
    Fingerprinter,
    FingerprintParams,
    affine32_permutations,
    fact_cells,
    fact_tokens,
    hash_tokens,
    lsh_bands_rows,
    token_hash,
)
from workers.clean.matching import matching_tokens
from workers.config import DEFAULTS

pytestmark = pytest.mark.unit

PARAMS = FingerprintParams(num_perm=128, seed=1, shingle_size=3, lsh_threshold=0.3)
TEXT = (
    "أعلنت وزارة الصحة اليوم تسجيل 1437 حالة جديدة في مدينة الرياض وجدة والدمام، "
    "وأكدت الوزارة أن الوضع تحت السيطرة وأن الفرق الطبية تعمل على مدار الساعة."
)


@pytest.fixture(scope="module")
def fingerprinter() -> Fingerprinter:
    return Fingerprinter(PARAMS, min_shingles=5)


def reference_shingle_hashes(fingerprinter: Fingerprinter, tokens: list[str]) -> list[int]:
    """The shingle hash written out plainly, one document at a time."""
    hashes = [token_hash(t) for t in tokens]
    if not hashes:
        return []
    size = min(fingerprinter.params.shingle_size, len(hashes))
    multipliers = [0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1]
    values = set()
    for i in range(len(hashes) - size + 1):
        value = hashes[i + size - 1]
        for offset in range(size - 1):
            value ^= hashes[i + offset] * multipliers[offset] & 0xFFFFFFFF
        values.add(value)
    return sorted(values)


def test_batch_shingles_equal_one_document_at_a_time(fingerprinter: Fingerprinter) -> None:
    words = matching_tokens(TEXT)
    # Documents shorter than a shingle, exactly one shingle, empty, repeated, and long.
    batch = [words, [], words[:1], words[:2], words[:3], words[:4] * 3, words[::-1]]
    hashes, counts = fingerprinter.batch_shingles(batch)
    assert counts.tolist() == [len(reference_shingle_hashes(fingerprinter, d)) for d in batch]
    runs = np.split(hashes, np.cumsum(counts)[:-1])
    for run, document in zip(runs, batch, strict=True):
        assert run.tolist() == reference_shingle_hashes(fingerprinter, document)
    # MinHash of the concatenated runs equals one document at a time.
    together = fingerprinter.fingerprint_many(batch)
    assert together == [fingerprinter.fingerprint(d) for d in batch]


def test_minhash_equals_datasketch_update_batch(fingerprinter: Fingerprinter) -> None:
    shingles = fingerprinter.shingle_hashes(matching_tokens(TEXT))
    reference = MinHash(num_perm=128, seed=1, scheme="affine32", hashfunc=int)
    reference.update_batch([int(h) for h in shingles])
    ours = fingerprinter.minhash_many([shingles])[0]
    assert np.array_equal(ours, np.asarray(reference.hashvalues, dtype=np.uint32))


@pytest.mark.parametrize("num_perm", [16, 64, 100, 128, 256])
def test_lsh_bands_rows_equal_datasketch_optimal_param(num_perm: int) -> None:
    """Ours integrates exactly (numpy's Gauss-Legendre), datasketch with scipy's quad: the
    same (bands, rows) over thresholds and weights. (An offline run over every num_perm
    above, thresholds 0.01..0.99 by 0.01 and three weightings agreed on all 2,079.)"""
    thresholds = [0.05, 0.1, 0.2, 0.25, 0.3, 0.37, 0.5, 0.65, 0.8, 0.9, 0.95]
    for threshold in thresholds:
        for weights in ((0.5, 0.5), (0.2, 0.8), (0.9, 0.1)):
            expected = tuple(int(v) for v in _optimal_param(threshold, num_perm, *weights))
            assert lsh_bands_rows(threshold, num_perm, *weights) == expected, (
                threshold,
                weights,
            )


def test_lsh_bands_rows_of_the_defaults() -> None:
    dedup = DEFAULTS.dedup
    expected = _optimal_param(dedup.lsh_threshold, dedup.num_perm, 0.5, 0.5)
    assert lsh_bands_rows(dedup.lsh_threshold, dedup.num_perm) == tuple(map(int, expected))


@pytest.mark.parametrize(("num_perm", "seed"), [(128, 1), (64, 7), (256, 12345)])
def test_permutations_equal_datasketch(num_perm: int, seed: int) -> None:
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    ours_a, ours_b = affine32_permutations(num_perm, seed)
    assert ours_a.dtype == ours_b.dtype == np.uint32
    assert np.array_equal(ours_a, a) and np.array_equal(ours_b, b)


def test_signature_keeps_the_high_16_bits(fingerprinter: Fingerprinter) -> None:
    tokens = matching_tokens(TEXT)
    values = fingerprinter.minhash_many([fingerprinter.shingle_hashes(tokens)])[0]
    signature = fingerprinter.fingerprint(tokens).signature
    assert len(signature) == 2 * PARAMS.num_perm
    assert np.array_equal(np.frombuffer(signature, dtype=">u2"), values >> 16)


def test_short_texts_get_no_signature(fingerprinter: Fingerprinter) -> None:
    fp = fingerprinter.fingerprint(["خبر", "قصير"])
    assert fp.signature == b"" and fp.shingles == 1


def test_facts_reduce_numbers_to_their_digits() -> None:
    assert fact_tokens(["1437ه", "ال1437", "1437", "007", "a1b22", "الرياض"]) == {
        "#1437",
        "#7",
        "#1",
        "#22",
        "الرياض",
    }


def test_token_hashes_of_a_whole_text_equal_one_token_at_a_time() -> None:
    tokens = [*matching_tokens(TEXT), "a", "a1b22", "007", "x" * 300, "\u200fب"]
    hashes, has_digit = hash_tokens(" ".join(tokens).encode("utf-8"))
    assert hashes.tolist() == [token_hash(t) for t in tokens]
    assert has_digit.tolist() == [any(c in "0123456789" for c in t) for t in tokens]
    assert token_hash("ab") != token_hash("\0ab")  # the length is mixed in
    assert len({token_hash(t) for t in tokens}) == len(set(tokens))


def test_facts_are_sorted_hashes_and_common_ones_are_not_sent() -> None:
    fingerprinter = Fingerprinter(PARAMS, min_shingles=5)
    tokens = matching_tokens(TEXT)
    facts = np.frombuffer(fingerprinter.fingerprint(tokens).facts, dtype=">u4").tolist()
    assert facts == sorted(token_hash(f) for f in fact_tokens(tokens))
    # Once the index reports two cells as common, their facts are not sent until the tag
    # changes.
    cells = fact_cells(np.array(facts, dtype=np.uint32), PARAMS.facts_bits).tolist()
    fingerprinter.learn_common("0:16", [cells[0], cells[5]])
    fewer = np.frombuffer(fingerprinter.fingerprint(tokens).facts, dtype=">u4").tolist()
    assert fewer == [f for f, c in zip(facts, cells, strict=True) if c not in (cells[0], cells[5])]
    fingerprinter.learn_common("1:16", [])
    assert np.frombuffer(fingerprinter.fingerprint(tokens).facts, dtype=">u4").tolist() == facts


def test_letter_variants_and_diacritics_give_the_same_fingerprint(
    fingerprinter: Fingerprinter,
) -> None:
    variant = TEXT.replace("ة", "ه").replace("الصحة", "الصِّحَّة").replace("1437", "١٤٣٧")
    a = fingerprinter.fingerprint(matching_tokens(TEXT))
    b = fingerprinter.fingerprint(matching_tokens(variant))
    assert a == b
