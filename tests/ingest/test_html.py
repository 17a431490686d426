"""HTML to text: feed fragments (html_to_text) and article pages (extract_article)."""

from __future__ import annotations

import io
import random
from pathlib import Path

import feedparser
import lxml.html
import pytest
import trafilatura
from conftest import shared_path
from support.pages import ARTICLE_PAGE, FURNITURE, PARAGRAPHS

from workers.ingest.html import ArticleError, extract_article, html_to_text, read_article

pytestmark = pytest.mark.unit

# ------------------------------------------------------------------------- html_to_text


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ("<p>One</p><p>Two</p>", "One\nTwo"),
        ("<div>a<div>b</div>c</div>", "a\nb\nc"),
        ("first<br>second<br/>third<br />", "first\nsecond\nthird"),
        ("<ul><li>one</li><li>two <b>bold</b></li></ul>after", "one\ntwo bold\nafter"),
        ("<ol><li>x</li></ol><h2>Head</h2><blockquote>quoted</blockquote>", "x\nHead\nquoted"),
        ("<table><tr><th>a</th><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"),
        ("<p>inline <a href='/x'>link</a> and <em>emphasis</em>.</p>", "inline link and emphasis."),
        ("<figure><img src='x.jpg'><figcaption>Caption</figcaption></figure>", "Caption"),
        ("<pre>line 1\n  line 2</pre>", "line 1\nline 2"),
    ],
)
def test_blocks_become_lines(markup: str, expected: str) -> None:
    assert html_to_text(markup) == expected


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ("<p>Fish &amp; chips &lt;3 &quot;q&quot; &#39;s&#39;</p>", "Fish & chips <3 \"q\" 's'"),
        ("<p>&#1575;&#1604;&#1593;&#1585;&#1576;&#1610;&#1577;</p>", "العربية"),
        ("<p>&#x627;&#x644;&hellip;&nbsp;&mdash;</p>", "ال… —"),
        ("AT&amp;T &lt; 5 &copy; plain", "AT&T < 5 © plain"),
    ],
)
def test_entities_are_unescaped(markup: str, expected: str) -> None:
    assert html_to_text(markup) == expected


def test_invisible_content_is_dropped() -> None:
    markup = (
        "<p>visible</p><script>var x = '<p>no</p>';</script><style>p{color:red}</style>"
        "<iframe src='https://x'>frame text</iframe><noscript>enable js</noscript>"
        "<!-- a comment --><p>also <span>visible</span></p>"
    )
    assert html_to_text(markup) == "visible\nalso visible"


def test_whitespace_is_folded_and_empty_lines_dropped() -> None:
    markup = "<p>  a \t b\n c  </p><p> </p><p>&nbsp;</p><div><br><br></div><p>d</p>"
    assert html_to_text(markup) == "a b c\nd"


def test_plain_text_passes_through() -> None:
    assert html_to_text("A plain summary.\n\n  Second   paragraph. ") == (
        "A plain summary.\nSecond paragraph."
    )
    assert html_to_text("profits < forecasts and 3 > 2") == "profits < forecasts and 3 > 2"
    assert html_to_text("I <3 feeds") == "I <3 feeds"


def test_entity_escaped_html_is_read_as_html() -> None:
    # Some summaries are escaped one time too many: the tags arrive as text.
    assert html_to_text("&lt;p&gt;First&lt;/p&gt;&lt;p&gt;Second &amp;amp; third&lt;/p&gt;") == (
        "First\nSecond & third"
    )


def test_arabic_text_is_preserved_exactly() -> None:
    paragraphs = [
        "أعلنت وزارة الصحة اليوم عن افتتاح مستشفى جديد.",
        "وقال الوزير إن المستشفى سيضم ٥٠٠ سرير، بتكلفة مليار ريال.",
        "كلمة‌ بنصف فاصلة وتطويـــل",  # ZWNJ and tatweel are text, not whitespace
    ]
    markup = "".join(f'<p dir="rtl">{p}</p>' for p in paragraphs)
    assert html_to_text(markup) == "\n".join(paragraphs)
    assert html_to_text(paragraphs[0]) == paragraphs[0]


def test_full_documents_and_xml_declarations() -> None:
    doc = "<html><head><title>Tab title</title></head><body><p>Body</p></body></html>"
    assert html_to_text(doc) == "Body"
    assert html_to_text("<?xml version='1.0' encoding='utf-8'?><p>x</p>") == "x"


@pytest.mark.parametrize(
    "markup",
    [
        "",
        "   \n\t ",
        "<",
        "<<<>>>",
        "</p></div>",
        "<p><b><i>unclosed",
        "\x00\x01\x02<p>\x0b nul</p>",
        "<p>lone \ud800 surrogate</p>",
        "<div>" * 5000 + "deep" + "</div>" * 5000,
        "<![CDATA[ x ]]><!DOCTYPE html><?php echo 1 ?>",
        "<p " + "a=" * 1000 + ">",
        "\ufeff<p>bom</p>",
    ],
)
def test_never_raises(markup: str) -> None:
    first = html_to_text(markup)
    assert isinstance(first, str)
    assert html_to_text(markup) == first  # deterministic
    assert "\n\n" not in first and first == first.strip()


def test_never_raises_on_random_markup() -> None:
    rng = random.Random(7)
    pieces = ["<p>", "</p>", "<br>", "<div", ">", "&amp;", "&#", "x", "عربي", "<!--", "-->", "\n"]
    pieces += ["<script>", "</script>", "<table><tr><td>", "<", "&", "\x00", "\ud800", " "]
    for _ in range(300):
        markup = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 40)))
        assert html_to_text(markup) == html_to_text(markup)


def test_non_string_input_is_empty() -> None:
    assert html_to_text(b"<p>bytes</p>") == ""  # type: ignore[arg-type]
    assert html_to_text(None) == ""  # type: ignore[arg-type]


def _feed_fragments(path: Path) -> list[str]:
    parsed = feedparser.parse(io.BytesIO(path.read_bytes()))
    out: list[str] = []
    for entry in parsed.entries:
        out.extend(c.value for c in entry.get("content", []))
        if entry.get("summary"):
            out.append(entry.summary)
    return [f for f in out if "<" in f]


def _visible_chars(markup: str) -> str:
    """Every non-space character lxml sees as text, script/style/svg aside."""
    tree = lxml.html.fragment_fromstring(markup, create_parent="div")
    for hidden in tree.xpath(".//script|.//style|.//*[local-name()='svg']"):
        hidden.drop_tree()
    return "".join(tree.text_content().split())


@pytest.mark.shared
def test_feed_fragments_keep_every_character() -> None:
    """On real content:encoded and descriptions: no tags left, nothing lost, blocks split.

    This is why html_to_text does not use trafilatura: on these same fragments it drops
    whole paragraphs (headings, italic intros, image captions, link-only lines).
    """
    files = sorted(shared_path("feeds", "news-snapshots").glob("*__20260813T042436__*.xml"))
    files += sorted(shared_path("feeds", "real-samples").glob("*/*.*"))
    checked = multi_line = 0
    for path in files:
        for fragment in _feed_fragments(path):
            text, visible = html_to_text(fragment), _visible_chars(fragment)
            assert "".join(text.split()) == visible, path.name
            if "<" not in visible:  # escaped markup shown in a <pre> is text, not tags
                assert "<" not in text, path.name
            checked += 1
            multi_line += "\n" in text
    assert checked > 1000
    assert multi_line > 300  # content:encoded keeps its paragraphs apart


@pytest.mark.shared
def test_content_encoded_paragraphs_become_lines() -> None:
    path = shared_path("feeds", "real-samples", "rss-parser", "content-encoded.rss")
    entry = feedparser.parse(io.BytesIO(path.read_bytes())).entries[0]
    text = html_to_text(entry.content[0].value)
    lines = text.split("\n")
    assert len(lines) >= 10
    assert "Using Wild Ingredients in the Kitchen" in lines  # a heading trafilatura drops
    assert all(line == " ".join(line.split()) and line for line in lines)


@pytest.mark.shared
def test_trafilatura_loses_fragment_paragraphs() -> None:
    """The evidence behind the choice, kept honest: trafilatura on a short fragment."""
    path = shared_path("feeds", "real-samples", "rss-parser", "many-links.rss")
    fragment = _feed_fragments(path)[0]
    intro = "This is another post in our Code Health series."
    assert intro in html_to_text(fragment)
    config = trafilatura.settings.use_config()
    for key in ("MIN_EXTRACTED_SIZE", "MIN_OUTPUT_SIZE"):
        config.set("DEFAULT", key, "1")
    extracted = trafilatura.extract(
        f"<html><body>{fragment}</body></html>",
        config=config,
        favor_recall=True,
        include_comments=False,
        include_tables=True,
    )
    assert extracted and intro not in extracted


# ---------------------------------------------------------------------- extract_article


def test_extract_article_main_text_and_metadata() -> None:
    article = extract_article(ARTICLE_PAGE, "https://news.example.com/x?utm_source=rss")
    assert article is not None
    for paragraph in PARAGRAPHS:
        assert paragraph in article.text.split("\n")
    for furniture in FURNITURE:
        assert furniture not in article.text
    assert "dataLayer" not in article.text
    assert article.title == "افتتاح مستشفى جديد في جدة"
    assert article.author == "سارة العتيبي"
    assert article.published_at.startswith("2024-03-05")
    assert article.url == "https://news.example.com/health/2024/03/05/new-hospital"


def test_extract_article_accepts_bytes() -> None:
    assert extract_article(ARTICLE_PAGE.encode("utf-8")) == extract_article(ARTICLE_PAGE)
    legacy = ARTICLE_PAGE.replace('charset="utf-8"', 'charset="windows-1256"')
    article = extract_article(legacy.encode("cp1256"))
    assert article is not None and PARAGRAPHS[0] in article.text


def test_extract_article_falls_back_to_the_title_element() -> None:
    page = ARTICLE_PAGE.replace(
        '<meta property="og:title" content="افتتاح مستشفى جديد في جدة">', ""
    )
    page = page.replace("<h1>افتتاح مستشفى جديد في جدة</h1>", "")
    article = extract_article(page)
    assert article is not None
    assert "افتتاح مستشفى جديد في جدة" in article.title


@pytest.mark.parametrize(
    "page",
    [
        "",
        b"",
        b"\x00\xff\xfe garbage \x00",
        "<html><body><script>var a = 1;</script></body></html>",
        "<html><head><title>Only a title</title></head><body></body></html>",
    ],
)
def test_extract_article_without_text_is_none(page: str | bytes) -> None:
    assert extract_article(page) is None


def test_parser_failure_is_none_or_article_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(trafilatura, "extract", boom)
    assert extract_article(ARTICLE_PAGE) is None
    with pytest.raises(ArticleError, match="RecursionError"):
        read_article(ARTICLE_PAGE)


# ------------------------------------------------------------------ publication dates

_BODY = "".join(f"<p>{p}</p>" for p in PARAGRAPHS)


def _page(head: str = "", article: str = "", footer: str = "") -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>خبر</title>{head}</head>"
        f"<body><main><article><h1>افتتاح مستشفى جديد</h1>{article}{_BODY}</article></main>"
        f"<footer>{footer}</footer></body></html>"
    )


@pytest.mark.parametrize(
    "page",
    [
        _page(footer="<p>Copyright 2024 Example News</p>"),
        _page(footer="<p>© 2023 Example News. All rights reserved.</p>"),
        _page(footer="<p>جميع الحقوق محفوظة لصحيفة المثال 2024</p>"),
        _page(head="<meta itemprop='copyrightYear' content='2024'>"),
        _page(footer="<span itemprop='copyrightYear'>2022</span> Example News"),
        _page(article="<p>Published 12 May 2022</p>"),  # free text: a guess, not stated
        _page(),
    ],
    ids=[
        "copyright",
        "c-symbol",
        "arabic-rights",
        "copyright-meta",
        "copyright-span",
        "text",
        "none",
    ],
)
def test_no_date_is_guessed_from_a_footer_or_the_text(page: str) -> None:
    """A copyright year is not when an article was published; without a stated date the
    document has none (the time gap then goes by when it arrived), not January 1st."""
    article = read_article(page)
    assert article is not None and PARAGRAPHS[0] in article.text
    assert article.published_at == ""


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (
            _page(
                head="<meta property='article:published_time' content='2024-03-05T10:20:00+00:00'>",
                footer="<p>Copyright 2025 Example News</p>",
            ),
            "2024-03-05T10:20:00+00:00",
        ),
        (
            _page(
                article="<time datetime='2023-11-02T08:00:00Z'>2 November</time>",
                footer="<p>© 2025 Example News</p>",
            ),
            "2023-11-02T08:00:00+00:00",
        ),
        (
            _page(
                head='<script type="application/ld+json">{"@type": "NewsArticle", '
                '"datePublished": "2024-02-01T09:30:00+01:00"}</script>',
                footer="<p>Copyright 2025</p>",
            ),
            "2024-02-01T09:30:00+01:00",
        ),
        (
            _page(head="<meta property='article:published_time' content='2024-03-05'>"),
            "2024-03-05T00:00:00",
        ),
    ],
    ids=["meta", "time-element", "json-ld", "meta-date-only"],
)
def test_a_stated_date_is_taken_with_its_time(page: str, expected: str) -> None:
    article = read_article(page)
    assert article is not None and article.published_at == expected


def test_the_page_date_wins_over_the_url_date() -> None:
    """The URL's date has no time of day; the page's metadata has one (ARTICLE_PAGE's
    canonical URL holds /2024/03/05/, its meta 09:30 at +03:00)."""
    article = read_article(ARTICLE_PAGE, "https://news.example.com/health/2024/03/05/x")
    assert article is not None and article.published_at == "2024-03-05T09:30:00+03:00"
    only_url = read_article(_page(), "https://news.example.com/2021/04/07/story")
    assert only_url is not None and only_url.published_at == "2021-04-07T00:00:00"
