"""Fingerprint stage: MinHash equal to datasketch's, facts and their encoding."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash

from workers.stages.fingerprint import (
    FACT_BYTES,
    Fingerprinter,
    FingerprintParams,
    fact_tokens,
)
from workers.stages.matching import matching_tokens

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
    import xxhash

    hashes = [xxhash.xxh32_intdigest(t.encode("utf-8")) for t in tokens]
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


def test_facts_are_sorted_codes_and_common_ones_are_not_sent() -> None:
    fingerprinter = Fingerprinter(PARAMS, min_shingles=5)
    tokens = matching_tokens(TEXT)
    codes = fingerprinter.facts(tokens)
    assert len(codes) == len(fact_tokens(tokens))
    assert all(len(code) == FACT_BYTES for code in codes)
    assert list(codes) == sorted(codes)
    # Once the index reports two codes as common, they are left out until the tag changes.
    fingerprinter.learn_common("0:16", (codes[0], codes[5]))
    fewer = fingerprinter.facts(tokens)
    assert fewer == tuple(c for c in codes if c not in (codes[0], codes[5]))
    fingerprinter.learn_common("1:16", ())
    assert fingerprinter.facts(tokens) == codes


def test_letter_variants_and_diacritics_give_the_same_fingerprint(
    fingerprinter: Fingerprinter,
) -> None:
    variant = TEXT.replace("ة", "ه").replace("الصحة", "الصِّحَّة").replace("1437", "١٤٣٧")
    a = fingerprinter.fingerprint(matching_tokens(TEXT))
    b = fingerprinter.fingerprint(matching_tokens(variant))
    assert a == b
