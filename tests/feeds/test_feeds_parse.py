"""Feed parsing, entry identity, the feeds config, and entries to Documents (no network)."""

from __future__ import annotations

import ast
import codecs
import io
import json
import re
from collections import defaultdict
from pathlib import Path

import feedparser
import pytest

from tests.conftest import ROOT, shared_path
from workers.clean.boilerplate.rules import load_rules, parse_source_rules
from workers.feeds.spec import (
    FeedEntry,
    FeedSpec,
    ParsedFeed,
    entry_document,
    load_feeds,
    needs_article,
    parse_feed,
)
from workers.ingest.html import ArticleText

pytestmark = pytest.mark.unit

RSS = {"content-type": "application/rss+xml"}
FEED_URL = "https://news.example.com/feeds/all.xml"
TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")


def rss(items: str, *, channel: str = "<title>Example</title>", decl: str = "") -> bytes:
    head = decl or '<?xml version="1.0" encoding="utf-8"?>'
    return (
        f'{head}\n<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">'
        f"<channel>{channel}{items}</channel></rss>"
    ).encode()


def keys(parsed: ParsedFeed) -> list[str]:
    return [e.key for e in parsed.entries]


# ----------------------------------------------------------------------- inline feeds


def test_rss_entry_fields() -> None:
    body = rss(
        """<item>
          <title>عنوان &amp; خبر</title>
          <link>https://news.example.com/a/1</link>
          <guid isPermaLink="false">story-1</guid>
          <description>&lt;p&gt;ملخص الخبر&lt;/p&gt;</description>
          <pubDate>Tue, 05 Mar 2024 09:30:00 +0300</pubDate>
          <author>editor@example.com (سارة العتيبي)</author>
        </item>"""
    )
    parsed = parse_feed(body, RSS, FEED_URL)
    assert (parsed.bozo, parsed.bozo_message, parsed.version) == (False, "", "rss20")
    assert parsed.title == "Example"
    (entry,) = parsed.entries
    assert entry == FeedEntry(
        key="guid:story-1",
        guid="story-1",
        link="https://news.example.com/a/1",
        title="عنوان & خبر",
        text="ملخص الخبر",
        full_content=False,
        published_at="2024-03-05T06:30:00+00:00",
        author="سارة العتيبي",
    )


def test_content_encoded_is_full_content() -> None:
    body = rss(
        """<item><title>T</title><link>https://news.example.com/a/2</link>
        <description>Short teaser.</description>
        <content:encoded><![CDATA[<p>First paragraph.</p><p>Second <b>one</b>.</p>
        <ul><li>item</li></ul><script>alert(1)</script>]]></content:encoded></item>"""
    )
    (entry,) = parse_feed(body, RSS, FEED_URL).entries
    assert entry.full_content
    assert entry.text == "First paragraph.\nSecond one.\nitem"


def test_atom_longest_content_relative_links_and_updated_date() -> None:
    body = b"""<?xml version="1.0" encoding="utf-8"?>
    <feed xmlns="http://www.w3.org/2005/Atom"><title type="html">Atom &amp;lt;i&amp;gt;x</title>
    <entry><id>tag:example.com,2024:1</id><title>Entry</title>
      <link rel="alternate" href="/articles/1?utm_source=atom"/>
      <updated>2024-03-05T09:30:00Z</updated>
      <summary>Summary text.</summary>
      <content type="html">&lt;p&gt;Body one.&lt;/p&gt;&lt;p&gt;Body two.&lt;/p&gt;</content>
    </entry></feed>"""
    parsed = parse_feed(body, {"Content-Type": "application/atom+xml"}, FEED_URL)
    assert parsed.version == "atom10" and not parsed.bozo
    assert parsed.title == "Atom x"
    (entry,) = parsed.entries
    assert entry.link == "https://news.example.com/articles/1?utm_source=atom"
    assert (entry.text, entry.full_content) == ("Body one.\nBody two.", True)
    assert entry.published_at == "2024-03-05T09:30:00+00:00"  # updated, no published


def test_content_location_header_wins_over_url_for_relative_links() -> None:
    body = rss("<item><title>x</title><link>/story/9</link></item>")
    headers = {**RSS, "Content-Location": "https://mirror.example.org/feed/"}
    (entry,) = parse_feed(body, headers, FEED_URL).entries
    assert entry.link == "https://mirror.example.org/story/9"


def test_a_guid_that_is_no_url_stays_as_the_feed_gives_it() -> None:
    """RSS guids are permalinks unless they say otherwise, so a parser given a base would
    resolve a guid "1" to <feed folder>/1: the same id for two outlets' feeds in one
    folder, which would make one outlet's article an update of the other's."""
    body = rss("<item><title>x</title><guid>1</guid><link>/story/1</link></item>")
    headers = {**RSS, "Content-Location": "https://mirror.example.org/feeds/outlet-a"}
    for given in (RSS, headers):
        (entry,) = parse_feed(body, given, "https://feeds.example.org/feeds/outlet-a").entries
        assert (entry.guid, entry.key) == ("1", "guid:1")
    (entry,) = parse_feed(body, headers, FEED_URL).entries
    assert entry.link == "https://mirror.example.org/story/1"
    # With no <link>, a relative permalink guid is still the entry's link, resolved.
    body = rss("<item><title>x</title><guid>/story/2</guid></item>")
    (entry,) = parse_feed(body, RSS, FEED_URL).entries
    assert (entry.guid, entry.link) == ("/story/2", "https://news.example.com/story/2")


def test_identity_guid_then_canonical_url_then_hash() -> None:
    body = rss(
        """
        <item><title>a</title><guid isPermaLink="false">g-1</guid>
              <link>https://news.example.com/a?utm_source=rss</link></item>
        <item><title>b</title><link>https://www.news.example.com/b/?utm_source=rss&amp;id=2</link></item>
        <item><title>b again</title><link>http://news.example.com/b?id=2&amp;utm_medium=x#top</link></item>
        <item><title>c</title><description>only text</description></item>
        <item><title>c</title><description>only text</description></item>
        <item><title>a again</title><guid isPermaLink="false">g-1</guid></item>
        <item><title>title only, no id</title></item>
        <item><title>headline</title><link>https://news.example.com/h</link></item>
        """
    )
    parsed = parse_feed(body, RSS, FEED_URL)
    assert keys(parsed)[:3] == ["guid:g-1", "url:news.example.com/b?id=2", keys(parsed)[2]]
    assert keys(parsed)[2].startswith("hash:") and len(keys(parsed)[2]) == len("hash:") + 32
    assert keys(parsed)[3] == "url:news.example.com/h"
    assert len(parsed.entries) == 4  # duplicates by key collapsed, first kept
    assert parsed.repeated == 3  # b again, the second c, a again
    assert parsed.entries[0].title == "a"
    assert parsed.entries[1].title == "b"
    assert parsed.dropped == 1  # the title-only entry with neither guid nor link
    headline = parsed.entries[3]
    assert (headline.text, headline.guid, headline.full_content) == ("", "", False)


def test_guid_is_the_feeds_own_id_not_the_link() -> None:
    body = rss(
        """<item><title>no guid</title><link>https://news.example.com/x</link></item>
        <item><title>permalink guid</title><guid>https://news.example.com/y</guid></item>"""
    )
    first, second = parse_feed(body, RSS, FEED_URL).entries
    assert (first.guid, first.key) == ("", "url:news.example.com/x")
    # A permalink guid is both the id and (with no <link>) the link.
    assert (second.guid, second.link) == ("https://news.example.com/y",) * 2
    assert second.key == "guid:news.example.com/y"


def test_rss10_rdf_about_is_the_guid() -> None:
    body = b"""<?xml version="1.0"?>
    <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/">
    <channel rdf:about="https://example.com/"><title>DW</title></channel>
    <item rdf:about="https://example.com/a-1"><title>One</title><link>https://example.com/a-1</link>
    <description>Desc</description></item></rdf:RDF>"""
    parsed = parse_feed(body, {"content-type": "application/rdf+xml"}, FEED_URL)
    assert parsed.version == "rss10"
    assert keys(parsed) == ["guid:example.com/a-1"]


def test_unusable_links_are_dropped() -> None:
    body = rss(
        """<item><guid>x-1</guid><title>t</title><link>javascript:alert(1)</link></item>
        <item><guid>x-2</guid><title>t</title><link>http://[broken/a</link></item>
        <item><guid>x-3</guid><title>t</title><link>/relative/no/base</link></item>"""
    )
    parsed = parse_feed(body, RSS, "")
    assert [(e.key, e.link) for e in parsed.entries] == [
        ("guid:x-1", ""),
        ("guid:x-2", ""),
        ("guid:x-3", ""),
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   \n",
        b"\x00\x01\xff\xfe garbage \x89PNG",
        b"<!DOCTYPE html><html><head><title>Home</title></head><body><p>hi</p></body></html>",
        b'{"items": [{"title": "json"}]}',
        b"<rss><channel><item><title>unclosed",
    ],
)
def test_garbage_is_an_empty_bozo_feed(body: bytes) -> None:
    parsed = parse_feed(body, {"content-type": "text/html"}, FEED_URL)
    assert parsed.bozo
    assert parsed.bozo_message and "\n" not in parsed.bozo_message
    assert len(parsed.bozo_message) <= 300
    if b"<item>" not in body:
        assert parsed.entries == [] and parsed.version == ""


def test_json_feed_items_are_entries() -> None:
    # JSON Feed 1.1 (https://jsonfeed.org): content_html or content_text is the full
    # content, summary the teaser; ids may be numbers; relative urls resolve against the
    # feed's own feed_url; 1.0's single author object is read too.
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Example News",
        "feed_url": "https://example.org/feed.json",
        "items": [
            {
                "id": "1",
                "url": "/a1",
                "title": "Council approves budget",
                "content_html": "<p>The council approved.</p><p>Bridges &amp; buses.</p>",
                "date_published": "2026-12-01T10:00:00+01:00",
                "authors": [{"name": "Jane Roe"}],
            },
            {"id": 2, "url": "https://example.org/a2", "summary": "Storm closes schools"},
            {
                "url": "https://example.org/a3?utm_source=x",
                "content_text": "Line one\n\nLine two",
                "date_modified": "2026-12-02T07:30:00Z",
                "author": {"name": "Old Style"},
            },
            "not an item",
            {},
        ],
    }
    parsed = parse_feed(json.dumps(feed).encode(), {"content-type": "application/feed+json"}, "")
    assert (parsed.version, parsed.title, parsed.bozo, parsed.dropped) == (
        "json11",
        "Example News",
        False,
        2,
    )
    first, second, third = parsed.entries
    assert (first.key, first.link, first.text, first.full_content) == (
        "guid:1",
        "https://example.org/a1",
        "The council approved.\nBridges & buses.",
        True,
    )
    assert (first.published_at, first.author) == ("2026-12-01T10:00:00+01:00", "Jane Roe")
    assert (second.key, second.text, second.full_content) == (
        "guid:2",
        "Storm closes schools",
        False,
    )
    assert (third.key, third.text, third.published_at, third.author) == (
        "url:example.org/a3",
        "Line one\nLine two",
        "2026-12-02T07:30:00+00:00",
        "Old Style",
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"version": "https://jsonfeed.org/version/1.1"}',
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [',
        b'\xff{"version": "https://jsonfeed.org/version/1.1", "items": []}',
        b"[" * 100_000,
    ],
)
def test_broken_json_feeds_are_bozo(body: bytes) -> None:
    parsed = parse_feed(body, {"content-type": "application/feed+json"}, FEED_URL)
    assert parsed.bozo and parsed.entries == []
    assert parsed.bozo_message and "\n" not in parsed.bozo_message


_JSON_FEED = {
    "version": "https://jsonfeed.org/version/1.1",
    "title": "أخبار",
    "items": [
        {"id": "1", "title": "عاجل: افتتاح المعرض", "content_text": "افتتح أمير الرياض المعرض."},
        {"id": "2", "title": "Storm", "content_text": "Schools stay closed today."},
    ],
}
_JSON_TEXT = json.dumps(_JSON_FEED, ensure_ascii=False)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (codecs.BOM_UTF8 + _JSON_TEXT.encode(), "application/feed+json"),
        (codecs.BOM_UTF8 + _JSON_TEXT.encode(), "application/octet-stream"),
        (codecs.BOM_UTF8 + b"\r\n  " + _JSON_TEXT.encode(), "text/plain"),
        (_JSON_TEXT.encode("utf-16"), "application/feed+json"),  # with its BOM
        (codecs.BOM_UTF16_BE + _JSON_TEXT.encode("utf-16-be"), "application/json"),
        (_JSON_TEXT.encode("utf-32"), "application/feed+json"),
        (codecs.BOM_UTF32_BE + _JSON_TEXT.encode("utf-32-be"), "text/plain"),
        (_JSON_TEXT.encode("utf-16-le"), "application/feed+json"),  # no BOM: NULs tell
        # Labelled JSON: whitespace, then a BOM (a script that printed a newline before
        # its UTF-8 file with a BOM).
        (b"\n \t" + codecs.BOM_UTF8 + _JSON_TEXT.encode(), "application/feed+json"),
        (b"\r\n" + codecs.BOM_UTF8 + _JSON_TEXT.encode(), "application/json; charset=utf-8"),
    ],
    ids=[
        "utf8-bom",
        "utf8-bom-unlabelled",
        "utf8-bom-then-space",
        "utf16-le",
        "utf16-be",
        "utf32-le",
        "utf32-be",
        "utf16-le-no-bom",
        "space-then-bom-feed+json",
        "space-then-bom-json",
    ],
)
def test_json_feeds_with_a_bom_or_in_utf16_or_utf32_are_read(
    body: bytes, content_type: str
) -> None:
    """They were taken for XML: "not well-formed (invalid token)", and the poll failed."""
    parsed = parse_feed(body, {"content-type": content_type}, FEED_URL)
    assert (parsed.version, parsed.bozo, parsed.title) == ("json11", False, "أخبار")
    assert [(e.key, e.title, e.text) for e in parsed.entries] == [
        ("guid:1", "عاجل: افتتاح المعرض", "افتتح أمير الرياض المعرض."),
        ("guid:2", "Storm", "Schools stay closed today."),
    ]


@pytest.mark.parametrize(
    "body",
    [
        codecs.BOM_UTF8 + rss("<item><guid>1</guid><title>خبر</title></item>"),
        rss(
            "<item><guid>1</guid><title>خبر</title></item>",
            decl='<?xml version="1.0" encoding="utf-16"?>',
        )
        .decode()
        .encode("utf-16"),
        b"\n" + rss("<item><guid>1</guid><title>خبر</title></item>"),
    ],
    ids=["utf8-bom", "utf16-bom", "leading-space"],
)
@pytest.mark.parametrize("content_type", ["application/rss+xml", "application/json"])
def test_xml_feeds_with_a_bom_stay_xml(body: bytes, content_type: str) -> None:
    # Even labelled JSON: a body that starts with "<" is markup whatever its label says.
    parsed = parse_feed(body, {"content-type": content_type}, FEED_URL)
    assert parsed.version == "rss20"
    assert [(e.key, e.title) for e in parsed.entries] == [("guid:1", "خبر")]


def test_a_body_labelled_json_that_is_not_a_json_feed_says_so() -> None:
    parsed = parse_feed(b"  \n[1, 2]", {"content-type": "application/json"}, FEED_URL)
    assert parsed.bozo and parsed.entries == []
    assert parsed.bozo_message.startswith("a JSON document that is not a JSON Feed")


def test_never_fetches_or_opens_files(tmp_path: Path) -> None:
    # feedparser fetches a str that looks like a URL and opens bytes naming a file.
    local = tmp_path / "feed.xml"
    local.write_bytes(rss("<item><guid>secret</guid><title>local file</title></item>"))
    assert parse_feed(str(local).encode(), RSS, FEED_URL).entries == []
    assert parse_feed(b"http://127.0.0.1:9/feed.xml", RSS, FEED_URL).entries == []
    str_body = parse_feed(str(local), RSS, FEED_URL)  # type: ignore[arg-type]
    assert str_body.entries == [] and str_body.bozo


def test_unparsable_dates_and_missing_fields() -> None:
    body = rss(
        """<item><guid isPermaLink="false">1</guid><title>t</title><pubDate>never</pubDate></item>
        <item><guid isPermaLink="false">2</guid><title>t</title>
        <pubDate>2024-03-05 09:30:00</pubDate></item>"""
    )
    first, second = parse_feed(body, RSS, FEED_URL).entries
    assert first.published_at == ""
    assert second.published_at.startswith("2024-03-05")
    assert (first.author, first.link, first.text) == ("", "", "")


def _arabic_feed(encoding: str, *, declare: bool) -> bytes:
    decl = f'<?xml version="1.0" encoding="{encoding}"?>' if declare else '<?xml version="1.0"?>'
    text = (
        f'{decl}<rss version="2.0"><channel><title>أخبار</title>'
        "<item><guid>1</guid><title>عاجل: افتتاح المعرض</title>"
        "<description>افتتح أمير الرياض المعرض.</description></item></channel></rss>"
    )
    return text.encode(encoding)


@pytest.mark.parametrize(
    ("encoding", "declare", "headers"),
    [
        ("windows-1256", True, {"content-type": "application/rss+xml"}),
        ("windows-1256", False, {"content-type": "application/rss+xml; charset=windows-1256"}),
        ("iso-8859-6", True, {}),
        ("iso-8859-6", False, {"Content-Type": "text/xml; charset=ISO-8859-6"}),
        ("utf-16", True, {"content-type": "application/xml"}),
        ("utf-8", False, {}),
    ],
)
def test_declared_encodings_decode_arabic(
    encoding: str, declare: bool, headers: dict[str, str]
) -> None:
    parsed = parse_feed(_arabic_feed(encoding, declare=declare), headers, FEED_URL)
    assert parsed.title == "أخبار"
    (entry,) = parsed.entries
    assert (entry.title, entry.text) == ("عاجل: افتتاح المعرض", "افتتح أمير الرياض المعرض.")


@pytest.mark.parametrize(
    ("declared_in", "headers"),
    [
        ("xml", {"content-type": "application/rss+xml; charset=windows-1256"}),
        ("xml", {"content-type": "application/rss+xml"}),
        ("header", {"content-type": "text/xml; charset=windows-1256"}),
        ("xml", {"content-type": "text/xml; charset=iso-8859-1"}),
    ],
)
def test_utf8_labelled_in_a_legacy_encoding_is_read_as_utf8(
    declared_in: str, headers: dict[str, str]
) -> None:
    """A CMS's template says windows-1256 over UTF-8 content: read as what it is, and
    flagged, as a saved page would be."""
    body = _arabic_feed("utf-8", declare=False)
    if declared_in == "xml":
        body = body.replace(
            b'<?xml version="1.0"?>', b'<?xml version="1.0" encoding="windows-1256"?>'
        )
    parsed = parse_feed(body, headers, FEED_URL)
    assert parsed.title == "أخبار"
    (entry,) = parsed.entries
    assert (entry.title, entry.text) == ("عاجل: افتتاح المعرض", "افتتح أمير الرياض المعرض.")
    assert parsed.bozo and "read as utf-8" in parsed.bozo_message


def test_windows_1252_via_http_header_only() -> None:
    body = '<?xml version="1.0"?><rss version="2.0"><channel><title>Café “quoted” £</title>'
    body += "</channel></rss>"
    parsed = parse_feed(
        body.encode("cp1252"), {"content-type": "text/xml; charset=windows-1252"}, ""
    )
    assert parsed.title == "Café “quoted” £"


# --------------------------------------------------------------------- entries → docs


def _entry(**fields: object) -> FeedEntry:
    base: dict[str, object] = {
        "key": "guid:g",
        "guid": "g",
        "link": "https://news.example.com/a",
        "title": "Title",
        "text": "short summary",
        "full_content": False,
        "published_at": "",
        "author": "",
    }
    base.update(fields)
    return FeedEntry(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "mode", "expected"),
    [
        ({}, "never", False),
        ({}, "always", True),
        ({"full_content": True, "text": "x" * 5000}, "always", True),
        ({"link": ""}, "always", False),
        ({}, "auto", True),
        ({"text": ""}, "auto", True),
        ({"text": "x" * 800}, "auto", False),
        ({"text": "x" * 799}, "auto", True),
        ({"full_content": True, "text": "short"}, "auto", False),
        ({"link": ""}, "auto", False),
    ],
)
def test_needs_article(fields: dict[str, object], mode: str, expected: bool) -> None:
    assert needs_article(_entry(**fields), mode, 800) is expected  # type: ignore[arg-type]


SPEC = FeedSpec(name="bbc_arabic", url=FEED_URL, source="bbc", interval=600, language="ar")
ARTICLE = ArticleText(
    text="Full article text.\nSecond paragraph.",
    title="Article title",
    published_at="2024-03-05T00:00:00",
    author="Page Author",
    url="https://news.example.com/canonical",
)


def test_entry_document_from_the_feed() -> None:
    doc = entry_document(_entry(published_at="2024-03-05T06:30:00+00:00", author="A"), SPEC)
    assert (doc.id, doc.source, doc.input_ref, doc.language) == ("g", "bbc", "guid:g", "ar")
    assert (doc.text, doc.title, doc.url) == (
        "short summary",
        "Title",
        "https://news.example.com/a",
    )
    assert (doc.published_at, doc.author, doc.stripped) == ("2024-03-05T06:30:00+00:00", "A", [])


def test_entry_document_with_article() -> None:
    doc = entry_document(_entry(), SPEC, ARTICLE)
    assert doc.text == ARTICLE.text
    assert (doc.title, doc.url) == ("Title", "https://news.example.com/a")  # the feed's win
    assert (doc.published_at, doc.author) == (ARTICLE.published_at, ARTICLE.author)  # gaps
    bare = _entry(guid="", link="", title="", key="hash:ab")
    doc = entry_document(bare, SPEC, ARTICLE)
    assert (doc.id, doc.input_ref) == ("hash:ab", "hash:ab")
    assert (doc.title, doc.url) == (ARTICLE.title, ARTICLE.url)
    assert entry_document(_entry(guid=""), SPEC).id == "https://news.example.com/a"


# ------------------------------------------------------------------------ feeds config


def test_feed_spec_json_round_trip() -> None:
    spec = FeedSpec(
        name="x",
        url=FEED_URL,
        source="src",
        interval=60,
        language="ar",
        fetch_article="never",
        enabled=False,
        boilerplate={"names": ["المثال"], "rule": [{"name": "r", "pattern": "x"}]},
    )
    wire = json.loads(json.dumps(spec.to_json()))
    assert FeedSpec.from_json(wire) == spec
    minimal = FeedSpec.from_json({"name": "n", "url": FEED_URL, "interval": 900})
    assert (minimal.source, minimal.fetch_article, minimal.enabled) == ("n", "auto", True)
    with pytest.raises(ValueError, match="fetch_article"):
        FeedSpec.from_json({**spec.to_json(), "fetch_article": "sometimes"})


def test_shipped_config_loads() -> None:
    path = ROOT / "workers" / "defaults" / "feeds.toml"
    specs = load_feeds(path, default_interval=900)
    assert len(specs) >= 5
    assert len({s.name for s in specs}) == len(specs)
    assert all(s.url.startswith("https://") and s.interval >= 10 for s in specs)
    assert sum(s.language == "ar" for s in specs) >= 5
    bbc = next(s for s in specs if s.name == "bbc_arabic")
    assert bbc.url == "https://feeds.bbci.co.uk/arabic/rss.xml"
    assert bbc.boilerplate.get("names")
    # The boilerplate tables pass the strip stage's own validation.
    taken = {rule.name for rule in load_rules().rules}
    for spec in specs:
        if spec.boilerplate:
            parse_source_rules(spec.boilerplate, str(path), f"feed {spec.name!r}", taken)
        assert FeedSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


def test_missing_file_is_no_feeds(tmp_path: Path) -> None:
    assert load_feeds(tmp_path / "nope.toml", default_interval=900) == []
    (tmp_path / "empty.toml").write_text("")
    assert load_feeds(tmp_path / "empty.toml", default_interval=900) == []


def test_defaults_apply(tmp_path: Path) -> None:
    path = tmp_path / "feeds.toml"
    path.write_text(
        """
        [defaults]
        fetch_article = "never"
        language = "ar"

        [[feed]]
        name = "a"
        url = "https://a.example.com/rss"

        [[feed]]
        name = "b"
        url = "https://b.example.com/rss"
        interval = 30
        language = "en"
        source = "shared"
        enabled = false
        [feed.boilerplate]
        names = ["B News"]
        """
    )
    a, b = load_feeds(path, default_interval=1200)
    assert a == FeedSpec("a", "https://a.example.com/rss", "a", 1200, "ar", "never")
    assert b == FeedSpec(
        "b", "https://b.example.com/rss", "shared", 30, "en", "never", False, {"names": ["B News"]}
    )
    path.write_text('[defaults]\ninterval = 60\n[[feed]]\nname = "a"\nurl = "http://a.example/"')
    assert load_feeds(path, default_interval=1200)[0].interval == 60


GOOD = 'name = "ok"\nurl = "https://ok.example.com/rss"\n'


@pytest.mark.parametrize(
    ("toml", "where", "message"),
    [
        ("[[feed]\nname = ", "", "invalid TOML"),
        ("colour = 1", "", "unknown top-level key 'colour'"),
        ("feed = 3", "", "array of tables"),
        ("[defaults]\nname = 'x'", "[defaults]", "unknown key 'name'"),
        ("[defaults]\ninterval = 5", "[defaults]", "interval must be an integer >= 10"),
        (f"[[feed]]\n{GOOD}colour = 'red'", "feed #1 'ok'", "unknown key 'colour'"),
        ("[[feed]]\nurl = 'https://x.example/'", "feed #1", "name must be a slug"),
        ("[[feed]]\nname = 'Bad Name'\nurl = 'https://x/'", "feed #1 'Bad Name'", "slug"),
        ("[[feed]]\nname = 'x'", "feed #1 'x'", "url must be an absolute http(s) URL"),
        ("[[feed]]\nname = 'x'\nurl = 'ftp://x.example/f'", "feed #1 'x'", "http(s)"),
        ("[[feed]]\nname = 'x'\nurl = 'https:///nohost'", "feed #1 'x'", "http(s)"),
        ("[[feed]]\nname = 'x'\nurl = 'https://a b/'", "feed #1 'x'", "http(s)"),
        (f"[[feed]]\n{GOOD}interval = 5", "feed #1 'ok'", "interval must be an integer >= 10"),
        (f"[[feed]]\n{GOOD}interval = '60'", "feed #1 'ok'", "interval must be an integer"),
        (f"[[feed]]\n{GOOD}interval = true", "feed #1 'ok'", "interval must be an integer"),
        (f"[[feed]]\n{GOOD}fetch_article = 'yes'", "feed #1 'ok'", "fetch_article must be"),
        (f"[[feed]]\n{GOOD}enabled = 'no'", "feed #1 'ok'", "enabled must be true or false"),
        (f"[[feed]]\n{GOOD}source = ''", "feed #1 'ok'", "source must be a non-empty"),
        (f"[[feed]]\n{GOOD}language = 'arabic!'", "feed #1 'ok'", "language must be"),
        (f"[[feed]]\n{GOOD}boilerplate = 'x'", "feed #1 'ok'", "boilerplate must be a table"),
        (
            f"[[feed]]\n{GOOD}[feed.boilerplate]\nnames = [1979-05-27]",
            "feed #1 'ok'",
            "JSON cannot carry",
        ),
        (
            f"[[feed]]\n{GOOD}[[feed]]\nname = 'ok'\nurl = 'https://other.example/'",
            "feed #2 'ok'",
            "duplicate name",
        ),
        (
            f"[[feed]]\n{GOOD}[[feed]]\nname = 'b'\nurl = 'http://www.OK.example.com/rss/'",
            "feed #2 'b'",
            "same url as feed 'ok'",
        ),
    ],
)
def test_config_errors_are_one_line(tmp_path: Path, toml: str, where: str, message: str) -> None:
    path = tmp_path / "feeds.toml"
    path.write_text(toml)
    with pytest.raises(ValueError) as info:
        load_feeds(path, default_interval=900)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: {where}")
    assert message in text


def test_same_path_other_query_is_another_feed(tmp_path: Path) -> None:
    path = tmp_path / "feeds.toml"
    path.write_text(
        "[[feed]]\nname = 'a'\nurl = 'https://x.example/rss?src=world'\n"
        "[[feed]]\nname = 'b'\nurl = 'https://x.example/rss?src=sport'\n"
    )
    assert [s.name for s in load_feeds(path, default_interval=900)] == ["a", "b"]


# ----------------------------------------------------------------- shared: real feeds


def _snapshots() -> dict[str, list[Path]]:
    by_feed: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(shared_path("feeds", "news-snapshots").glob("*__*.xml")):
        by_feed[path.name.split("__")[0]].append(path)
    return by_feed


def _assert_plain(entry: FeedEntry) -> None:
    assert "\n" not in entry.title
    for text in (entry.title, entry.text, entry.author):
        assert not TAG.search(text), text[:200]
        assert text == text.strip() and "\n\n" not in text


@pytest.mark.shared
def test_news_snapshots_parse() -> None:
    by_feed = _snapshots()
    assert len(by_feed) == 14 and sum(map(len, by_feed.values())) == 69
    for feed, paths in by_feed.items():
        overlaps: list[int] = []
        previous: set[str] | None = None
        for path in paths:
            parsed = parse_feed(path.read_bytes(), RSS, f"https://{feed}.example/rss")
            assert parsed.entries and not parsed.bozo, (path.name, parsed.bozo_message)
            assert parsed.version in ("rss20", "atom10"), path.name
            found = keys(parsed)
            assert all(found) and len(found) == len(set(found)), path.name
            for entry in parsed.entries:
                assert entry.key.startswith(("guid:", "url:")), entry
                assert entry.link.startswith("http"), entry
                _assert_plain(entry)
            if previous is not None:
                overlaps.append(len(previous & set(found)))
            previous = set(found)
        # Re-polling sees mostly the same entries under the same keys.
        assert max(overlaps) >= len(previous or ()) // 2, (feed, overlaps)


@pytest.mark.shared
def test_news_snapshots_content_and_dates() -> None:
    by_feed = _snapshots()
    prothomalo = parse_feed(by_feed["prothomalo"][0].read_bytes(), RSS, "").entries
    assert all(e.full_content for e in prothomalo)
    assert sum("\n" in e.text for e in prothomalo) > len(prothomalo) // 2
    aljazeera = parse_feed(by_feed["aljazeera"][0].read_bytes(), RSS, "").entries
    assert not any(e.full_content for e in aljazeera)
    assert all(e.published_at.endswith("+00:00") for e in aljazeera)
    # India Today lists some stories twice and gives no guids: one entry per canonical link.
    india = by_feed["indiatoday"][0].read_bytes()
    raw = feedparser.parse(io.BytesIO(india)).entries
    parsed = parse_feed(india, RSS, "")
    assert len(parsed.entries) < len(raw)
    assert all(e.key.startswith("url:") and "traffic_source" not in e.key for e in parsed.entries)


def _real_samples() -> list[Path]:
    folder = shared_path("feeds", "real-samples")
    return sorted(p for p in folder.glob("*/*") if p.name != "LICENSE")


@pytest.mark.shared
def test_real_samples_parse_without_raising() -> None:
    with_entries = 0
    for path in _real_samples():
        parsed = parse_feed(path.read_bytes(), {}, "https://example.com/feed")
        assert parsed.bozo or parsed.entries or parsed.version, path.name
        assert "\n" not in parsed.bozo_message
        assert len(keys(parsed)) == len(set(keys(parsed)))
        for entry in parsed.entries:
            # Titles only: some of these texts quote markup as text ("<rss version=...>").
            assert "\n" not in entry.title and not TAG.search(entry.title), entry.title
        with_entries += bool(parsed.entries)
    assert with_entries >= 55


@pytest.mark.shared
@pytest.mark.parametrize(
    "name",
    [
        "rss-parser/content-encoded.rss",
        "feedjira/TechCrunch.xml",
        "feedjira/TenderLovemaking.xml",
        "feedjira/CRE.xml",
        "feedjira/HREFConsideredHarmful.xml",
    ],
)
def test_content_encoded_feeds_give_full_content(name: str) -> None:
    path = shared_path("feeds", "real-samples", *name.split("/"))
    parsed = parse_feed(path.read_bytes(), RSS, "https://example.com/feed")
    assert parsed.entries
    assert all(entry.full_content for entry in parsed.entries)
    multi_paragraph = [entry for entry in parsed.entries if entry.text.count("\n") >= 2]
    assert len(multi_paragraph) > len(parsed.entries) // 2


# ------------------------------------------------------------ shared: feedparser samples


def _header_comment(path: Path) -> dict[str, str]:
    """The Description/Header/Expect lines of a feedparser sample's leading comment."""
    data = path.read_bytes()
    for encoding in ("utf-32", "utf-16", "utf-8", "latin-1"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "<!--" in text[:400]:
            break
    else:
        return {}
    comment = text[text.find("<!--") + 4 : text.find("-->")]
    fields: dict[str, str] = {}
    for line in comment.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("Description", "Header", "Expect"):
            fields[name.strip()] = value.strip()
    return fields


def _headers(path: Path) -> dict[str, str]:
    header = _header_comment(path).get("Header", "")
    name, _, value = header.partition(":")
    return {name.strip().lower(): value.strip()} if value else {}


def _samples(folder: str) -> list[Path]:
    root = shared_path("feeds", "feedparser-samples", folder)
    return sorted(p for p in root.rglob("*.xml") if p.is_file())


@pytest.mark.shared
def test_encoding_samples_follow_feedparser_expectations() -> None:
    """Every encoding sample, parsed with the HTTP header its comment names, is as bozo
    (or not) as feedparser's own test suite expects."""
    checked = 0
    for path in _samples("encoding"):
        expect = _header_comment(path).get("Expect", "")
        parsed = parse_feed(path.read_bytes(), _headers(path), "http://example.com/feed")
        if expect.startswith("not bozo"):
            assert not parsed.bozo, (path.name, parsed.bozo_message)
        elif expect.startswith("bozo"):
            assert parsed.bozo, path.name
        checked += 1
    assert checked >= 80


@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "title", "text"),
    [
        ("http_i18n.xml", "Iñtërnâtiônàlizætiøn", None),
        ("euc-kr.xml", "\ub144", None),
        ("euc-kr-item.xml", None, "\ub144"),
        ("http_text_xml_charset_2.xml", None, "This is a \xa3\u201ctest.\u201d"),
        ("http_text_xml_charset_overrides_encoding_2.xml", None, "This is a £“test.”"),
        ("demoronize-1.xml", None, "don\u2019t"),
        ("double-encoded-html.xml", None, "\u2026"),
    ],
)
def test_encoding_samples_decode_to_the_right_characters(
    name: str, title: str | None, text: str | None
) -> None:
    path = shared_path("feeds", "feedparser-samples", "encoding", name)
    parsed = parse_feed(path.read_bytes(), _headers(path), "http://example.com/feed")
    assert not parsed.bozo, parsed.bozo_message
    if title is not None:
        assert parsed.title == title
    if text is not None:
        assert parsed.entries[0].text == text


# Feeds in a legacy encoding that their XML declaration and HTTP header do not name:
# feedparser falls back to windows-1252 and published "ÃÚáäÊ ÇáÍßæãÉ" for Arabic.
LEGACY_FEEDS = [
    (
        "cp1256",
        "أعلنت الحكومة عن إجراءات جديدة",
        "وقال وزير المالية إن البرنامج سيكلف نحو تريليون ريال.",
    ),
    (
        "cp1251",
        "Правительство объявило о новых мерах",
        "Программа будет стоить около триллиона рублей.",
    ),
    ("latin-1", "Le gouvernement annonce une réforme", "Les syndicats ont réagi avec colère."),
]


@pytest.mark.parametrize(("codec", "title", "text"), LEGACY_FEEDS)
@pytest.mark.parametrize(
    "decl", ['<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-8"?>', ""]
)
def test_a_feed_in_an_undeclared_legacy_encoding_is_read_in_it(
    codec: str, title: str, text: str, decl: str
) -> None:
    item = f"<item><guid>1</guid><title>{title}</title><description>{text}</description></item>"
    body = f'{decl}<rss version="2.0"><channel><title>t</title>{item}</channel></rss>'
    parsed = parse_feed(body.encode(codec), RSS, FEED_URL)
    assert [(e.title, e.text) for e in parsed.entries] == [(title, text)]
    # Read right, and still reported: the feed misstates its encoding.
    assert parsed.bozo and "read as" in parsed.bozo_message


@pytest.mark.parametrize(("codec", "title", "text"), LEGACY_FEEDS)
def test_a_feed_in_its_declared_legacy_encoding_is_not_bozo(
    codec: str, title: str, text: str
) -> None:
    item = f"<item><guid>1</guid><title>{title}</title><description>{text}</description></item>"
    body = f'<?xml version="1.0" encoding="{codec}"?><rss version="2.0"><channel>{item}'
    parsed = parse_feed((body + "</channel></rss>").encode(codec), RSS, FEED_URL)
    assert [(e.title, e.text) for e in parsed.entries] == [(title, text)]
    assert not parsed.bozo, parsed.bozo_message


@pytest.mark.shared
def test_feedparsers_undeclared_koi8r_sample_is_read_as_russian() -> None:
    path = shared_path("feeds", "feedparser-samples", "illformed", "chardet", "koi8r.xml")
    parsed = parse_feed(path.read_bytes(), {}, "")
    assert parsed.entries[0].title == "Как пережить новогоднюю ночь"


@pytest.mark.shared
def test_content_type_header_is_honoured() -> None:
    # text/xml without a charset means us-ascii (RFC 3023), which the utf-8 body breaks.
    path = shared_path("feeds", "feedparser-samples", "encoding", "bozo_http_i18n.xml")
    assert parse_feed(path.read_bytes(), _headers(path), "").bozo
    assert not parse_feed(path.read_bytes(), {}, "").bozo


@pytest.mark.shared
def test_illformed_samples() -> None:
    for path in _samples("illformed"):
        expect = _header_comment(path).get("Expect", "")
        body = path.read_bytes()
        parsed = parse_feed(body, _headers(path), "http://example.com/feed")
        raw = feedparser.parse(io.BytesIO(body), response_headers=_headers(path))
        if expect.startswith("bozo"):
            assert parsed.bozo and parsed.bozo_message, path.name
        assert "\n" not in parsed.bozo_message
        # Whatever feedparser recovers is kept (or counted as unusable).
        assert len(parsed.entries) + parsed.dropped == len(raw.entries), path.name
    folder = shared_path("feeds", "feedparser-samples", "illformed")
    chardet = [parse_feed(p.read_bytes(), {}, "") for p in sorted(folder.glob("chardet/*.xml"))]
    assert sum(len(p.entries) + p.dropped for p in chardet) == 7  # one title-only entry
    ampersands = parse_feed(
        (folder / "rss_item_link_corrupted_ampersands.xml").read_bytes(), {}, ""
    )
    assert ampersands.entries[0].link == "http://link/get?a=1&b=2"
    assert parse_feed((folder / "always_strip_doctype.xml").read_bytes(), {}, "").title == "found"


@pytest.mark.shared
def test_entity_samples_decode() -> None:
    """feedparser's entity samples, through our title conversion: each named or numeric
    entity becomes its character (a no-break space folds like any other space)."""
    checked = 0
    for path in _samples("entities"):
        expect = _header_comment(path).get("Expect", "")
        match = re.fullmatch(r"feed\['title'\] == (u?'.*')", expect)
        if not match:
            continue
        expected = ast.literal_eval(match.group(1))
        parsed = parse_feed(path.read_bytes(), {}, "")
        assert parsed.title == " ".join(expected.split()), path.name
        checked += 1
    assert checked >= 200


def test_a_feed_sets_its_own_dedup_policy(tmp_path: Path) -> None:
    path = tmp_path / "feeds.toml"
    path.write_text(
        "[[feed]]\nname = 'wire'\nurl = 'https://wire.example/rss'\n"
        "dedup = { updates = false, threshold = 0.8 }\n"
        "[[feed]]\nname = 'plain'\nurl = 'https://plain.example/rss'\n",
        "utf-8",
    )
    wire, plain = load_feeds(path, default_interval=900)
    assert wire.dedup is not None and (wire.dedup.updates, wire.dedup.threshold) == (False, 0.8)
    assert wire.dedup.near_duplicates and plain.dedup is None
    # It travels with the spec (a task argument) and reaches each entry's document.
    again = FeedSpec.from_json(json.loads(json.dumps(wire.to_json())))
    assert again == wire
    entry = FeedEntry("guid:1", "1", "", "t", "text", True, "", "")
    document = entry_document(entry, again)
    assert document.policy == wire.dedup and document.guid == "1" and document.revision
    path.write_text(
        "[[feed]]\nname = 'bad'\nurl = 'https://bad.example/rss'\n"
        "dedup = { updates = 'sometimes', near = false }\n",
        "utf-8",
    )
    with pytest.raises(ValueError, match=r"feed #1 'bad': dedup: updates: .*; near: Extra"):
        load_feeds(path, default_interval=900)
