"""The one definition of a learned line (`learner.is_learned`), on its own."""

from __future__ import annotations

import pytest

from workers.clean.boilerplate.learner import LearnerSettings, is_learned, unpack_counter
from workers.index.args import LEARNER_SPLIT

pytestmark = pytest.mark.unit

SETTINGS = LearnerSettings(
    enabled=True, min_docs=5, min_share=0.01, prune_every=100, zone_lines=10, link_memory=4
)


@pytest.mark.parametrize(
    ("count", "since", "docs", "learned"),
    [
        (4, 0, 10, False),  # under min_docs, however large its share
        (5, 0, 10, True),
        (9, 0, 1000, False),  # 0.9% of all the source's documents
        (10, 0, 1000, True),
        (9, 900, 1000, True),  # 9% of the documents since it was first counted
        (5, 1000, 1000, True),  # counted from the current bucket on
    ],
)
def test_is_learned(count: int, since: int, docs: int, learned: bool) -> None:
    assert is_learned(count, since, docs, SETTINGS) is learned


def test_counter_unpacks_to_count_and_the_document_counting_began_at() -> None:
    assert unpack_counter(7, SETTINGS) == (7, 0)
    assert unpack_counter(3 * LEARNER_SPLIT + 7, SETTINGS) == (7, 300)
