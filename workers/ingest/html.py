"""HTML to plain text: feed entry fragments (`html_to_text`) and article pages (`extract_article`).

Both are pure and total: arbitrary markup never raises, it yields "" or None.

A feed fragment is already the article (or its summary): every paragraph the publisher put
there is kept, one per line, and furniture lines are left to the boilerplate stage. That is
a block-aware walk of the lxml tree, not trafilatura: trafilatura scores blocks to find a
page's main text and, on short fragments, drops link-only and lone inline paragraphs
(measured on the saved feeds). A full article page is where that scoring pays, and
`extract_article` uses trafilatura with the options the file backfill has always used.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import lxml.html
import trafilatura
from celery.exceptions import SoftTimeLimitExceeded

from workers.ingest.dates import parse_date

# Elements whose content is never text a reader sees.
_SKIP = frozenset(
    {
        "script",
        "style",
        "iframe",
        "noscript",
        "template",
        "head",
        "title",
        "svg",
        "math",
        "object",
        "embed",
        "canvas",
        "audio",
        "video",
        "select",
        "textarea",
        "button",
    }
)
# Elements that start and end a line of their own.
_BLOCK = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "center",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hgroup",
        "hr",
        "html",
        "legend",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "tfoot",
        "thead",
        "tr",
        "ul",
    }
)
_CELLS = frozenset({"td", "th"})  # cells of one row share its line, space separated
# Looks like markup: a start or end tag with a name, a comment, a CDATA section. "a < b"
# and "<3" in plain text do not.
_TAG = re.compile(r"<(?:/?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>|!--|!\[CDATA\[)")
# C0 controls (bar tab, newline, carriage return) and lone surrogates: lxml refuses them.
_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment: one block (paragraph, list item, heading, table row,
    `<br>`-separated line) per line, whitespace folded, empty lines dropped, entities
    unescaped. Text without tags is unescaped and keeps its own line breaks. "" for input
    that holds no text (or that nothing can read).
    """
    try:
        if not isinstance(markup, str):
            return ""
        markup = _UNSAFE.sub("", markup)
        if not _TAG.search(markup):
            # Plain text, or HTML escaped once more than it should be (summaries often are).
            markup = html_lib.unescape(markup)
            if not _TAG.search(markup):
                return _join(markup.splitlines())
        return _join(_tree_lines(markup))
    except SoftTimeLimitExceeded:
        raise
    except Exception:  # lxml on arbitrary input: a fragment without text, never an error
        return ""


def _tree_lines(markup: str) -> list[str]:
    # Bytes plus an explicit encoding: a str with an XML declaration is refused by lxml.
    # A parser per call: lxml parser objects must not be shared between threads.
    parser = lxml.html.HTMLParser(
        encoding="utf-8", remove_comments=True, remove_pis=True, no_network=True
    )
    root = lxml.html.document_fromstring(markup.encode("utf-8"), parser=parser)
    lines: list[str] = []
    line: list[str] = []

    def flush() -> None:
        if line:
            lines.append("".join(line))
            line.clear()

    def add(text: str | None, pre: bool) -> None:
        if not text:
            return
        if not pre:
            line.append(text)
            return
        first, *rest = text.split("\n")  # <pre> keeps its own line breaks
        line.append(first)
        for part in rest:
            flush()
            line.append(part)

    for event, el, pre in _walk(root):
        tag = el.tag if isinstance(el.tag, str) else ""
        if event == "start":
            if tag in _BLOCK or tag == "br":
                flush()
            elif tag in _CELLS:
                line.append(" ")
            add(el.text, pre)
            continue
        if event == "end":
            if tag in _BLOCK:
                flush()
            elif tag in _CELLS:
                line.append(" ")
        add(el.tail, pre)  # the tail follows the element in its parent's flow
    flush()
    return lines


def _walk(root: lxml.html.HtmlElement) -> Iterator[tuple[str, lxml.html.HtmlElement, bool]]:
    """(event, element, pre) in document order. Events: "start" (then read the element's
    text), "end" and "skip" (a script, comment... reported once without its content; then
    read its tail). `pre` says whether the text about to be read is inside a <pre>.
    Iterative, so deep nesting cannot exhaust the call stack.
    """
    stack: list[tuple[lxml.html.HtmlElement, bool, bool]] = [(root, False, False)]
    while stack:
        el, pre, done = stack.pop()  # pre: the element sits inside a <pre>
        if done:
            yield "end", el, pre
            continue
        tag = el.tag if isinstance(el.tag, str) else ""  # comments and PIs have no name
        if not tag or tag in _SKIP:
            yield "skip", el, pre
            continue
        inner = pre or tag == "pre"
        yield "start", el, inner
        stack.append((el, pre, True))
        stack.extend((child, inner, False) for child in reversed(el))


def _join(lines: list[str]) -> str:
    folded = (" ".join(line.split()) for line in lines)
    return "\n".join(line for line in folded if line)


# ----------------------------------------------------------------------- article pages


@dataclass(frozen=True, slots=True)
class ArticleText:
    """The main text and metadata of an article page."""

    text: str
    title: str
    published_at: str  # ISO 8601, or ""
    author: str
    url: str  # the page's own canonical/og URL, or ""


class ArticleError(Exception):
    """A page whose main text could not be read (not a page without text): `reason` says
    why, for `dead`: `extract_error` (the parser failed: its limit or bug),
    `html_too_large` / `html_too_complex` (refused before parsing, see `check_page_size`)
    or `extract_timeout` (workers/ingest/extraction.py)."""

    def __init__(self, message: str, reason: str = "extract_error") -> None:
        super().__init__(message)
        self.reason = reason


# Reads an article page (markup, URL): its text, None when it has none, ArticleError when
# it cannot be read. `read_article` is one; workers/ingest/extraction.py bounds it in time.
ArticleReader = Callable[[str | bytes, str], "ArticleText | None"]


def check_page_size(page: bytes, *, max_bytes: int, max_elements: int) -> None:
    """Refuse, before any parsing, a page the parser would take too long or too much
    memory on: ArticleError `html_too_large` over `max_bytes`, `html_too_complex` with more
    than `max_elements` elements. Elements are counted as '<' not followed by '/', two
    scans in C that never build a tree: comments and a '<' in a script count too, which
    only errs on the side of refusing (real pages stay far below any sensible cap)."""
    if len(page) > max_bytes:
        raise ArticleError(
            f"page of {len(page)} bytes, over the cap of {max_bytes} (html.max_bytes)",
            "html_too_large",
        )
    elements = page.count(b"<") - page.count(b"</")
    if elements > max_elements:
        raise ArticleError(
            f"page of about {elements} elements, over the cap of {max_elements} "
            "(html.max_elements)",
            "html_too_complex",
        )


# The publication date: only from where a page states it (meta tags such as
# article:published_time, JSON-LD datePublished, <time datetime>, a date in the URL,
# date-like elements), never guessed from its text. htmldate's extensive search reads
# free text and in the end takes a copyright footer's year ("© 2024" becomes 2024-01-01),
# and a wrong date is worse than none: it feeds the near-duplicate time gap
# (dedup.max_gap_hours), where a document without a date falls back to when it arrived.
# The time of day and offset are kept when the page gives them.
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def _date_config() -> dict[str, object]:
    return {
        "original_date": True,  # the publication date, not the last update
        "extensive_search": False,
        "outputformat": _DATE_FORMAT,
        # A date in the URL has no time of day: the page's own metadata first.
        "deferred_url_extractor": True,
        # No date after today (htmldate's bound; trafilatura sets the same by default).
        "max_date": datetime.now().astimezone().strftime("%Y-%m-%d"),
    }


def _drop_copyright_year(tree: lxml.html.HtmlElement) -> None:
    """Unname `<meta itemprop="copyrightYear">` (the element and its text stay): htmldate
    takes its year as January 1st when the page states no date, and a copyright year is
    not a publication date."""
    for meta in tree.iter("meta"):
        if str(meta.get("itemprop", "")).lower() == "copyrightyear":
            del meta.attrib["itemprop"]


def extract_article(html: str | bytes, url: str = "") -> ArticleText | None:
    """Main text and metadata of a full article page, or None when there is none or the
    page cannot be read. Never raises.
    """
    try:
        return read_article(html, url)
    except ArticleError:
        return None


def read_article(html: str | bytes, url: str = "") -> ArticleText | None:
    """`extract_article` for callers that report a parser failure apart from a page
    without main text: raises ArticleError for the former, returns None for the latter.
    """
    try:
        tree = trafilatura.load_html(html)
        if tree is None:
            return None
        fallback_title = (tree.findtext(".//title") or "").strip()
        _drop_copyright_year(tree)
        # Metadata first: it reads the tree as given.
        meta = trafilatura.extract_metadata(
            tree, default_url=url or None, date_config=_date_config()
        )
        text = trafilatura.extract(
            tree, url=url or None, include_comments=False, include_tables=True, favor_recall=True
        )
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:  # third-party parser on arbitrary HTML
        raise ArticleError(f"{type(exc).__name__}: {exc}") from None
    if not text or not text.strip():
        return None
    return ArticleText(
        text=text,
        title=(meta.title or "").strip() or fallback_title,
        published_at=parse_date(meta.date),
        author=(meta.author or "").strip(),
        url=meta.url or "",
    )
