"""Pages refused before any parsing (too many bytes, too many elements) and the limits
taken from the settings: no extraction child is started for them."""

from __future__ import annotations

import time

import pytest
from support.pages import SIBLINGS

from workers.config import Settings
from workers.ingest.extraction import ArticleExtractor, ExtractLimits
from workers.ingest.html import ArticleError, check_page_size

pytestmark = pytest.mark.unit


def test_million_siblings_are_refused_before_parsing(extractor: ArticleExtractor) -> None:
    started = time.monotonic()
    with pytest.raises(ArticleError) as info:
        extractor.read(SIBLINGS, "")
    assert time.monotonic() - started < 1.0
    assert info.value.reason == "html_too_complex"
    assert "1000002 elements" in str(info.value) and "html.max_elements" in str(info.value)
    assert extractor._child is None  # nothing was parsed


def test_over_the_byte_cap_is_refused(extractor: ArticleExtractor) -> None:
    small = ArticleExtractor(ExtractLimits.defaults(max_bytes=4096))
    with pytest.raises(ArticleError) as info:
        small.read(b"<p>" + b"x" * 5000 + b"</p>", "")
    assert info.value.reason == "html_too_large" and "html.max_bytes" in str(info.value)


def test_check_page_size_counts_elements_not_end_tags() -> None:
    page = b"<html><body>" + b"<p>x</p>" * 98 + b"</body></html>"  # 100 elements
    check_page_size(page, max_bytes=len(page), max_elements=100)
    with pytest.raises(ArticleError) as info:
        check_page_size(page, max_bytes=len(page), max_elements=99)
    assert info.value.reason == "html_too_complex"
    with pytest.raises(ArticleError) as info:
        check_page_size(page, max_bytes=len(page) - 1, max_elements=100)
    assert info.value.reason == "html_too_large"


def test_limits_from_settings() -> None:
    settings = Settings(
        html={"max_bytes": 2048, "max_elements": 500, "extract_timeout": 3, "extract_memory_mb": 0}
    )
    assert ExtractLimits.from_settings(settings) == ExtractLimits(2048, 500, 3.0, 0)
    defaults = ExtractLimits.from_settings(Settings())
    assert defaults.max_elements < 1_000_000 and defaults.timeout < 60
