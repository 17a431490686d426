"""Canonical URLs: one spelling per article, and two articles never one spelling."""

from __future__ import annotations

import pytest

from workers.clean.urls import canonical_guid, canonical_url, permalink_guid

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("https://www.News.example.com/a/?utm_source=rss&id=2", "news.example.com/a?id=2"),
        ("http://news.example.com:80/a#comments", "news.example.com/a"),
        ("https://news.example.com:8443/a?b=2&a=1", "news.example.com:8443/a?a=1&b=2"),
        ("ftp://news.example.com/a", ""),
        ("not a url", ""),
        ("http://[broken/a", ""),
    ],
)
def test_one_spelling_per_article(given: str, canonical: str) -> None:
    assert canonical_url(given) == canonical


def test_a_single_page_sites_routes_are_different_pages() -> None:
    """`#/story/5` and `#!/story/6` are two articles of a single-page site (the AJAX
    crawling scheme's routes); `#section-2` is a place in one page."""
    five, six = "https://news.example.com/#/story/5", "https://news.example.com/#!/story/6"
    assert canonical_url(five) == "news.example.com/#/story/5"
    assert canonical_url(six) == "news.example.com/#!/story/6"
    assert canonical_url("https://news.example.com/a#section-2") == "news.example.com/a"
    # A permalink guid keeps any fragment (a live blog's posts), a route once.
    assert permalink_guid(five) == "news.example.com/#/story/5"
    assert permalink_guid("https://news.example.com/live#post-3") == "news.example.com/live#post-3"
    assert canonical_guid(" 42 ") == "42"
