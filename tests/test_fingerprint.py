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
    facts = fingerprinter.facts(tokens)
    assert len(facts) == FACT_BYTES * len(fact_tokens(tokens))
    codes = [facts[i : i + FACT_BYTES] for i in range(0, len(facts), FACT_BYTES)]
    assert codes == sorted(codes)
    # Once the index reports two codes as common, they are left out until the tag changes.
    fingerprinter.learn_common("0:3", codes[0] + codes[5])
    fewer = fingerprinter.facts(tokens)
    assert len(fewer) == len(facts) - 2 * FACT_BYTES and codes[0] not in fewer
    fingerprinter.learn_common("1:3", b"")
    assert fingerprinter.facts(tokens) == facts


def test_letter_variants_and_diacritics_give_the_same_fingerprint(
    fingerprinter: Fingerprinter,
) -> None:
    variant = TEXT.replace("ة", "ه").replace("الصحة", "الصِّحَّة").replace("1437", "١٤٣٧")
    a = fingerprinter.fingerprint(matching_tokens(TEXT))
    b = fingerprinter.fingerprint(matching_tokens(variant))
    assert a == b
