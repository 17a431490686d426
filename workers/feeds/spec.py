"""RSS/Atom/JSON feeds: the feeds config, parsing a fetched feed body, entries to Documents.

Pure: no network and no Redis. The poller fetches the bytes and hands them here with the
response headers; everything below is a function of its arguments.

Identity: an entry's `key` names it within its feed across polls, so a re-polled entry is
recognised and not processed twice. The feed's own guid/id is the best name; else the
canonical link (tracking parameters dropped, so utm_ variants are one entry); else a hash
of its text.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import ValidationError

from workers.clean.urls import canonical_guid, canonical_url
from workers.config import SourcePolicy
from workers.document import Document
from workers.ingest.dates import parse_date
from workers.ingest.decode import (
    DecodeError,
    codec_for_label,
    declared_page_encoding,
    decode_bytes,
    has_bom,
)
from workers.ingest.spec import JSON_FEED_VERSION
from workers.messages import check_keys, one_line
from workers.tomlfile import read_toml

if TYPE_CHECKING:
    from workers.ingest.html import ArticleText

# feedparser, Celery and the HTML reader (trafilatura) are imported where a feed is parsed,
# not here: every command reads the feeds config (`load_feeds`), and they would cost it a
# quarter of a second.

FetchArticle = Literal["auto", "always", "never"]

_FETCH_MODES: dict[str, FetchArticle] = {"auto": "auto", "always": "always", "never": "never"}
_FEED_KEYS = frozenset(
    {
        "name",
        "url",
        "source",
        "interval",
        "language",
        "fetch_article",
        "enabled",
        "boilerplate",
        "dedup",
    }
)
_DEFAULT_KEYS = _FEED_KEYS - {"name", "url"}
_TOP_KEYS = frozenset({"defaults", "feed"})
_NAME = re.compile(r"[a-z0-9_-]+")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")  # "ar", "en-GB", "zh-Hant"
MIN_INTERVAL = 10
_MESSAGE_CHARS = 300  # a bozo message is for a log line and a report, not a traceback


# ------------------------------------------------------------------------------ config


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One feed to poll, as configured in feeds.toml (or made up for an ad-hoc URL)."""

    name: str
    url: str
    source: str  # Document.source of its entries; feeds.toml defaults it to the name
    interval: int  # seconds between polls
    language: str = ""
    fetch_article: FetchArticle = "auto"
    enabled: bool = True
    # Raw [source.<name>]-style table of boilerplate rules for this feed's source (rule,
    # names, boilerplate_lines, content_lines); the strip stage validates it.
    boilerplate: Mapping[str, Any] = field(default_factory=dict)
    # Its own dedup policy ([feed.dedup]), over its source's (`Settings.sources`).
    dedup: SourcePolicy | None = None

    @property
    def shown_url(self) -> str:
        """The URL as reports, `dead` entries and the feeds table show it: a password or
        lone token in it redacted."""
        from workers.ops.connection import redact

        return redact(self.url)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "source": self.source,
            "interval": self.interval,
            "language": self.language,
            "fetch_article": self.fetch_article,
            "enabled": self.enabled,
            "boilerplate": dict(self.boilerplate),
            "dedup": None if self.dedup is None else self.dedup.model_dump(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeedSpec:
        """Rebuild a spec from `to_json` output (a Celery argument). Only types are checked
        here; feeds.toml is validated by `load_feeds`."""
        mode = str(data.get("fetch_article", "auto"))
        if mode not in _FETCH_MODES:
            raise ValueError(f"fetch_article must be auto, always or never, not {mode!r}")
        name = str(data["name"])
        return cls(
            name=name,
            url=str(data["url"]),
            source=str(data.get("source") or name),
            interval=int(data["interval"]),
            language=str(data.get("language") or ""),
            fetch_article=_FETCH_MODES[mode],
            enabled=bool(data.get("enabled", True)),
            boilerplate=dict(data.get("boilerplate") or {}),
            dedup=SourcePolicy.model_validate(data["dedup"]) if data.get("dedup") else None,
        )


def load_feeds(path: Path, *, default_interval: int) -> list[FeedSpec]:
    """Read and validate the feeds config. A missing file is no feeds; any problem is one
    ValueError line naming the file and the feed."""
    try:
        data = read_toml(path)
    except FileNotFoundError:
        return []
    return parse_feeds(data, str(path), default_interval=default_interval)


def parse_feeds(data: Mapping[str, Any], origin: str, *, default_interval: int) -> list[FeedSpec]:
    """Validate already-parsed TOML data; `origin` names it in error messages."""
    if unknown := sorted(set(data) - _TOP_KEYS):
        raise ValueError(
            f"{origin}: unknown top-level key {unknown[0]!r} (expected defaults, feed)"
        )
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ValueError(f"{origin}: [defaults] must be a table")
    if defaults:  # checked on their own, so a bad default is not blamed on feed #1
        probe = {"name": "defaults", "url": "https://example.org/", "interval": default_interval}
        probe.update(defaults)
        _parse_feed_table(probe, f"{origin}: [defaults]", set(defaults), _DEFAULT_KEYS)
    defaults = {"interval": default_interval, **defaults}
    feeds = data.get("feed", [])
    if not isinstance(feeds, list):
        raise ValueError(f"{origin}: feed must be an array of tables ([[feed]])")

    specs: list[FeedSpec] = []
    names: set[str] = set()
    urls: dict[str, str] = {}
    for i, table in enumerate(feeds):
        where = f"{origin}: feed #{i + 1}"
        if not isinstance(table, dict):
            raise ValueError(f"{where}: must be a table")
        if isinstance(table.get("name"), str):
            where += f" {table['name']!r}"
        spec = _parse_feed_table({**defaults, **table}, where, set(table), _FEED_KEYS)
        if spec.name in names:
            raise ValueError(f"{where}: duplicate name (feed names must be unique)")
        same = _url_identity(spec.url)
        if same in urls:
            raise ValueError(f"{where}: same url as feed {urls[same]!r}")
        names.add(spec.name)
        urls[same] = spec.name
        specs.append(spec)
    return specs


def _parse_feed_table(
    table: Mapping[str, Any], where: str, given: set[str], allowed: frozenset[str]
) -> FeedSpec:
    """One [[feed]] table merged over the defaults; `given` are the keys it set itself."""
    check_keys(given, allowed, where)
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{where}: name must be a slug of a-z, 0-9, _ and - (got {name!r})")
    url = table.get("url")
    if not isinstance(url, str) or not is_http_url(url):
        raise ValueError(f"{where}: url must be an absolute http(s) URL (got {url!r})")
    source = table.get("source", name)
    if not isinstance(source, str) or not source.strip() or source != source.strip():
        raise ValueError(f"{where}: source must be a non-empty string without outer spaces")
    interval = table.get("interval")
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < MIN_INTERVAL:
        raise ValueError(f"{where}: interval must be an integer >= {MIN_INTERVAL} (seconds)")
    language = table.get("language", "")
    if not isinstance(language, str) or (language and not _LANGUAGE.fullmatch(language)):
        raise ValueError(f"{where}: language must be a language code like 'ar' or 'en-GB'")
    mode = table.get("fetch_article", "auto")
    if not isinstance(mode, str) or mode not in _FETCH_MODES:
        raise ValueError(f"{where}: fetch_article must be auto, always or never (got {mode!r})")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"{where}: enabled must be true or false")
    boilerplate = table.get("boilerplate", {})
    if not isinstance(boilerplate, dict):
        raise ValueError(f"{where}: boilerplate must be a table ([feed.boilerplate])")
    if not _json_safe(boilerplate):
        # The spec travels as a JSON task argument; TOML dates would not survive.
        raise ValueError(f"{where}: boilerplate holds a value JSON cannot carry (a date?)")
    return FeedSpec(
        name=name,
        url=url,
        source=source,
        interval=interval,
        language=language,
        fetch_article=_FETCH_MODES[mode],
        enabled=enabled,
        boilerplate=boilerplate,
        dedup=_policy(table.get("dedup"), where),
    )


def _policy(table: object, where: str) -> SourcePolicy | None:
    """A feed's [feed.dedup] table as a SourcePolicy; a bad one is a ValueError naming it."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ValueError(f"{where}: dedup must be a table ([feed.dedup])")
    try:
        return SourcePolicy.model_validate(table)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise ValueError(f"{where}: dedup: {problems}") from None


def is_http_url(url: str) -> bool:
    """An absolute http(s) URL with a host, a valid port and no spaces: what a feed's
    `url` must be, in the feeds config or on the command line."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not any(c.isspace() for c in url)
    )


def _url_identity(url: str) -> str:
    # The same feed spelled twice: scheme, host case, www. and a default port aside. Not
    # canonical_url: that drops query parameters (src, ref...) that may select the feed.
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    if parts.port not in (None, 80, 443):
        host = f"{host}:{parts.port}"
    return f"{host}{parts.path.rstrip('/')}?{parts.query}"


def _json_safe(value: object) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_safe(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_json_safe(v) for v in value)
    return isinstance(value, str | int | float | bool)


# ----------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class FeedEntry:
    key: str  # identity within its feed: "guid:...", "url:<canonical link>" or "hash:..."
    guid: str  # the feed's own guid/id element (RSS 1.0: rdf:about), or ""
    link: str  # absolute http(s) link as given (relative ones resolved), or ""
    title: str  # plain text, one line
    text: str  # plain text, one paragraph per line
    full_content: bool  # text came from a content element, not a summary/description
    published_at: str  # ISO 8601, or ""
    author: str

    @property
    def revision(self) -> str:
        """A digest of what the entry says (headline and text): an entry whose revision is
        new to its feed's done set is processed again, and may be an update."""
        said = f"{self.title}\n{self.text}".encode("utf-8", "surrogatepass")
        return hashlib.blake2b(said, digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    entries: list[FeedEntry]  # feed order, duplicates by key removed (first kept)
    bozo: bool  # ill-formed, or not a feed at all
    bozo_message: str  # one line, "" when not bozo
    title: str
    version: str  # feedparser's: "rss20", "atom10", "rss10"...; "" when not a feed
    dropped: int  # entries with no guid, no link and no text (nothing to process or name)
    repeated: int = 0  # entries listed again under a key already listed (the first kept)


def parse_feed(content: bytes, headers: Mapping[str, str], url: str) -> ParsedFeed:
    """Parse a fetched feed body. `headers` are the HTTP response headers (the charset of
    content-type decides the encoding together with the XML declaration); relative links
    resolve against content-location, else `url`. Never raises: unreadable input is a
    ParsedFeed without entries, bozo and saying why.
    """
    from celery.exceptions import SoftTimeLimitExceeded

    try:
        return _parse_feed(content, headers, url)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:  # feedparser on arbitrary bytes: a bad feed, never a crash
        return _not_a_feed(f"{type(exc).__name__}: {exc}")


def _parse_feed(content: bytes, headers: Mapping[str, str], url: str) -> ParsedFeed:
    import feedparser

    if not isinstance(content, bytes | bytearray):
        return _not_a_feed(f"expected bytes, got {type(content).__name__}")
    if not content.strip():
        return _not_a_feed("empty document")
    response_headers = {name.lower(): value for name, value in headers.items()}
    json_text = _json_text(bytes(content), response_headers.get("content-type", ""))
    if json_text is not None:
        return _parse_json_feed(json_text, url)
    # Relative links resolve here, against content-location, else the feed's URL. Not in
    # feedparser: given a base, it resolves every guid as a link too, and a guid "1" (RSS
    # guids are permalinks unless they say otherwise) became <feed folder>/1, the same URL
    # for two outlets that share a host and folder.
    location = response_headers.pop("content-location", "")
    base = urljoin(url, location) if url else location
    # Without a content-type feedparser would take headers as "no type declared": decode
    # as iso-8859-1 and complain. Declaring generic XML keeps its no-headers behaviour:
    # the XML declaration's encoding, else UTF-8.
    response_headers.setdefault("content-type", "application/xml")
    transcoded = _legacy_feed_as_utf8(bytes(content), response_headers["content-type"])
    if transcoded is not None:
        content = transcoded.data
        response_headers["content-type"] = "application/xml; charset=utf-8"
    # A stream, never bytes or str: feedparser fetches a str that looks like a URL and
    # opens bytes that name a local file, and a feed body must do neither.
    parsed = feedparser.parse(io.BytesIO(bytes(content)), response_headers=response_headers)

    entries, dropped, repeated = _collect(lambda raw: _entry(raw, base), parsed.get("entries", []))
    version = str(parsed.get("version") or "")
    bozo = bool(parsed.get("bozo"))
    message = _exception_line(parsed.get("bozo_exception")) if bozo else ""
    if transcoded is not None and not bozo:
        # Read right, but ill-formed all the same: its declaration is missing or wrong.
        bozo, message = True, transcoded.note
    if not version and not parsed.get("entries"):
        # feedparser calls a well-formed HTML or XML page "not bozo": for us it is no feed.
        bozo, message = True, message or "not an RSS, Atom, RDF or JSON feed"
    feed = dict(parsed.get("feed", {}))
    return ParsedFeed(
        entries=entries,
        bozo=bozo,
        bozo_message=message,
        title=one_line(_plain(feed.get("title_detail"), feed.get("title"))),
        version=version,
        dropped=dropped,
        repeated=repeated,
    )


@dataclass(frozen=True, slots=True)
class _Transcoded:
    data: bytes  # UTF-8
    note: str  # why the feed is ill-formed all the same, for its bozo message


def _legacy_feed_as_utf8(content: bytes, content_type: str) -> _Transcoded | None:
    """A feed body that is neither UTF-8 nor in the encoding it declares (an Arabic feed in
    windows-1256 whose XML declaration names none, so UTF-8 by XML's rule), decoded as a
    saved file would be (workers/ingest/decode.py) and written as UTF-8, or a UTF-8 body
    labelled in a legacy encoding, taken as UTF-8; None when feedparser can read it as it
    is. feedparser's own fallback reads such a feed as
    windows-1252 and publishes "ÃÚáäÊ ÇáÍßæãÉ" for "أعلنت الحكومة"."""
    # A byte order mark or a NUL in the first bytes (UTF-16 or UTF-32 "<?xml") is an
    # encoding feedparser recognises itself, as XML's appendix on autodetection says.
    if has_bom(content) or b"\x00" in content[:4]:
        return None
    label = declared_page_encoding(content, content_type)
    declared = codec_for_label(label)
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if declared in (None, "utf-8") or content.isascii():
            return None
        # Multi-byte UTF-8 throughout, yet labelled in a legacy encoding (a CMS's template
        # header over UTF-8 content): text in windows-1256 or the like is not valid UTF-8
        # by chance, so the label is what is wrong, as for a saved page (ingest/decode.py).
        return _Transcoded(
            content, f"CharacterEncodingOverride: document declared as {label}, but read as utf-8"
        )
    if declared is not None and declared != "utf-8":
        try:
            content.decode(declared)
            return None
        except UnicodeDecodeError:
            pass
    try:
        decoded = decode_bytes(content)
    except DecodeError:
        return None
    said = f"declared as {label}" if label else "with no encoding declared (UTF-8 for XML)"
    note = f"CharacterEncodingOverride: document {said}, but read as {decoded.encoding}"
    return _Transcoded(decoded.text.encode("utf-8"), note)


# Byte order marks and the codecs that read past them, longest first: the UTF-32-LE BOM
# starts with the UTF-16-LE one.
_JSON_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# JSON's whitespace, and U+FEFF: a BOM after leading whitespace (a script that printed a
# newline before its UTF-8 file with a BOM) is no content either.
_JSON_SPACE = " \t\r\n\ufeff"
_SNIFF_BYTES = 1024
# Which of the first four bytes are NUL, for a body without a BOM that starts with an
# ASCII character ("{", "<", whitespace) in UTF-16 or UTF-32.
_NUL_PATTERNS: dict[tuple[bool, ...], str] = {
    (True, True, True, False): "utf-32-be",
    (False, True, True, True): "utf-32-le",
    (True, False, True, False): "utf-16-be",
    (False, True, False, True): "utf-16-le",
}


@dataclass(frozen=True, slots=True)
class _JsonText:
    text: str | None  # None: the bytes are not text in the encoding they must be in
    error: str  # why not, when text is None


def _json_codec(content: bytes) -> str:
    """The codec a JSON body is in: its byte order mark's, else the one the NULs around
    its first (ASCII) character give away (RFC 4627, section 3), else UTF-8."""
    for bom, codec in _JSON_BOMS:
        if content.startswith(bom):
            return codec
    nuls = tuple(byte == 0 for byte in content[:4])
    return _NUL_PATTERNS.get(nuls, "utf-8")


def _says_json(content_type: str) -> bool:
    """application/json, application/feed+json or any other +json type."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _json_text(content: bytes, content_type: str) -> _JsonText | None:
    """The text of a body that is a JSON document, or None when it is markup (XML).

    JSON when its first character (after a UTF-8, UTF-16 or UTF-32 byte order mark and
    whitespace) is "{", or when the Content-Type says JSON and the body does not start
    with "<": a body that starts with "<" is markup whatever its label says. A BOM decides
    the encoding, else UTF-8 (JSON Feed's and RFC 8259's)."""
    codec = _json_codec(content)
    # Only the start decides, so a large XML feed in a legacy encoding is not decoded twice.
    head = content[:_SNIFF_BYTES].decode(codec, errors="ignore").lstrip(_JSON_SPACE)
    if not (head.startswith("{") or (_says_json(content_type) and not head.startswith("<"))):
        return None
    try:
        return _JsonText(content.decode(codec).lstrip(_JSON_SPACE), "")
    except UnicodeDecodeError as exc:
        return _JsonText(None, f"{type(exc).__name__}: {exc}")


def _parse_json_feed(body: _JsonText, url: str) -> ParsedFeed:
    """A JSON Feed ({"version": "https://jsonfeed.org/version/1.1", "items": [...]}):
    its items as entries, as an RSS or Atom feed's would be."""
    if body.text is None:
        return _not_a_feed(f"not a JSON Feed: {body.error}")
    try:
        feed = json.loads(body.text)
    except (ValueError, RecursionError) as exc:  # bad JSON, deep nesting
        return _not_a_feed(f"not a JSON Feed: {type(exc).__name__}: {exc}")
    version = feed.get("version") if isinstance(feed, dict) else None
    items = feed.get("items") if isinstance(feed, dict) else None
    if not isinstance(version, str) or not version.startswith(JSON_FEED_VERSION):
        return _not_a_feed("a JSON document that is not a JSON Feed (no jsonfeed.org version)")
    if not isinstance(items, list):
        return _not_a_feed("a JSON Feed without an items array")
    base = _string(feed.get("feed_url")) or url
    entries, dropped, repeated = _collect(
        lambda item: _json_feed_entry(item, base) if isinstance(item, dict) else None, items
    )
    return ParsedFeed(
        entries=entries,
        bozo=False,
        bozo_message="",
        title=one_line(_plain({"type": "text/plain"}, feed.get("title"))),
        version="json" + version.removeprefix(JSON_FEED_VERSION).replace(".", ""),
        dropped=dropped,
        repeated=repeated,
    )


def _json_feed_entry(item: Mapping[str, Any], base: str) -> FeedEntry | None:
    """An item: `id`, `url` (else `external_url`), `title`, `content_html` or
    `content_text` (full content) else `summary`, `date_published` else `date_modified`,
    `authors` (1.1) or `author` (1.0)."""
    plain = {"type": "text/plain"}
    raw_id = item.get("id")
    guid = str(raw_id).strip() if isinstance(raw_id, str | int) else ""
    link = ""
    for link_field in ("url", "external_url"):
        if candidate := _string(item.get(link_field)):
            link = _http_link(candidate, base)
            break
    title = one_line(_plain(plain, item.get("title")))
    html, text = _plain(None, item.get("content_html")), _plain(plain, item.get("content_text"))
    body = max((html, text), key=len)
    full_content = bool(body)
    if not body:
        body = _plain(plain, item.get("summary"))
    if not guid and not link and not body:
        return None
    authors = item.get("authors")
    author = authors[0] if isinstance(authors, list) and authors else item.get("author")
    name = author.get("name") if isinstance(author, Mapping) else None
    return FeedEntry(
        key=_entry_key(guid, link, title, body),
        guid=guid,
        link=link,
        title=title,
        text=body,
        full_content=full_content,
        published_at=parse_date(item.get("date_published"))
        or parse_date(item.get("date_modified")),
        author=one_line(_string(name)),
    )


def _collect(
    make: Callable[[Any], FeedEntry | None], raws: Iterable[Any]
) -> tuple[list[FeedEntry], int, int]:
    """The feed's entries made by `make`, in feed order, each key once (the first kept),
    how many made none (one odd entry must not cost the feed's others), and how many
    repeated a key already listed (said in the poll report, not processed)."""
    from celery.exceptions import SoftTimeLimitExceeded

    made: list[FeedEntry] = []
    dropped = 0
    for raw in raws:
        try:
            entry = make(raw)
        except SoftTimeLimitExceeded:
            raise
        except Exception:  # arbitrary feed content: a dropped entry, never a crash
            entry = None
        if entry is None:
            dropped += 1
        else:
            made.append(entry)
    entries: list[FeedEntry] = []
    seen: set[str] = set()
    for entry in _unshared_guids(made):
        if entry.key not in seen:
            seen.add(entry.key)
            entries.append(entry)
    return entries, dropped, len(made) - len(entries)


def _unshared_guids(entries: list[FeedEntry]) -> list[FeedEntry]:
    """The entries, those whose guid the document gives to entries of two or more links
    keyed by their links instead, without that guid: such a guid (a CMS that writes one
    for every item, a template's placeholder) names none of them. Entries that share a
    guid and a link are one entry listed twice; the first is kept."""
    links: dict[str, set[str]] = {}
    for entry in entries:
        if entry.guid and entry.link:
            links.setdefault(entry.key, set()).add(canonical_url(entry.link) or entry.link)
    shared = {key for key, seen in links.items() if len(seen) > 1}
    if not shared:
        return entries
    return [
        replace(entry, guid="", key=_entry_key("", entry.link, entry.title, entry.text))
        if entry.key in shared and entry.link
        else entry
        for entry in entries
    ]


def _entry_key(guid: str, link: str, title: str, text: str) -> str:
    """An entry's identity within its feed (`FeedEntry.key`): its guid (a permalink guid's
    canonical spelling), else its canonical link, else a hash of what it says."""
    if guid:
        return f"guid:{canonical_guid(guid)}"
    if url_key := canonical_url(link):
        return f"url:{url_key}"
    digest = hashlib.blake2b(f"{title}\n{text}".encode(), digest_size=16)
    return f"hash:{digest.hexdigest()}"


def _not_a_feed(message: str) -> ParsedFeed:
    return ParsedFeed([], True, one_line(message)[:_MESSAGE_CHARS], "", "", 0)


def _entry(entry: Mapping[str, Any], base: str) -> FeedEntry | None:
    # A plain dict: FeedParserDict maps missing keys to look-alikes (updated_parsed to
    # published_parsed, with a DeprecationWarning); only what the feed has counts here.
    raw = dict(entry)
    guid = _string(raw.get("id"))
    link = _http_link(_string(raw.get("link")), base)
    title = one_line(_plain(raw.get("title_detail"), raw.get("title")))
    text, full_content = _body(raw)
    if not guid and not link and not text:
        return None
    return FeedEntry(
        key=_entry_key(guid, link, title, text),
        guid=guid,
        link=link,
        title=title,
        text=text,
        full_content=full_content,
        published_at=_entry_date(raw),
        author=_author(raw),
    )


def _http_link(link: str, base: str = "") -> str:
    """`link`, resolved against `base` when relative; "" for javascript:, mailto:, or a
    relative link with no base to resolve it against."""
    try:
        if base and link:
            link = urljoin(base, link)
        parts = urlsplit(link)
    except ValueError:  # "http://[broken"
        return ""
    return link if parts.scheme.lower() in ("http", "https") and parts.netloc else ""


def _body(raw: Mapping[str, Any]) -> tuple[str, bool]:
    """The longest text among the content elements, else the summary's."""
    best = ""
    for content in raw.get("content") or []:
        if isinstance(content, Mapping) and _readable_type(content.get("type")):
            text = _plain(content, content.get("value"))
            if len(text) > len(best):
                best = text
    if best:
        return best, True
    return _plain(raw.get("summary_detail"), raw.get("summary")), False


def _readable_type(kind: object) -> bool:
    # text/html, application/xhtml+xml, text/plain; not base64 blobs or other media.
    kind = str(kind or "text/html").lower()
    return kind.startswith("text/") or kind.endswith(("html", "xml"))


def _plain(detail: object, value: object) -> str:
    """Plain text of a feedparser text construct. feedparser already decoded the entities
    of a text/plain one, so only HTML (the default guess) goes through html_to_text."""
    if not isinstance(value, str):
        return ""
    kind = detail.get("type") if isinstance(detail, Mapping) else None
    if kind == "text/plain":
        return "\n".join(line for line in (" ".join(x.split()) for x in value.splitlines()) if line)
    from workers.ingest.html import html_to_text

    return html_to_text(value)


def _entry_date(raw: Mapping[str, Any]) -> str:
    for name in ("published", "updated"):
        parsed = raw.get(f"{name}_parsed")
        if isinstance(parsed, time.struct_time):
            try:  # feedparser's struct_time is UTC
                return datetime(*parsed[:6], tzinfo=UTC).isoformat()
            except ValueError:
                pass
        if when := parse_date(raw.get(name)):  # spellings feedparser does not read
            return when
    return ""


def _author(raw: Mapping[str, Any]) -> str:
    detail = raw.get("author_detail")
    name = detail.get("name") if isinstance(detail, Mapping) else None
    return one_line(_plain(None, _string(name) or _string(raw.get("author"))))


def _string(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _exception_line(exc: object) -> str:
    if exc is None:
        return "ill-formed feed"
    text = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)
    return one_line(text)[:_MESSAGE_CHARS]


# ---------------------------------------------------------------------------- entries


def needs_article(entry: FeedEntry, mode: FetchArticle, below_chars: int) -> bool:
    """Whether to fetch the entry's article page instead of using the feed's text."""
    if mode == "never" or not entry.link:
        return False
    if mode == "always":
        return True
    return not entry.full_content and len(entry.text) < below_chars


def entry_document(
    entry: FeedEntry, spec: FeedSpec, article: ArticleText | None = None
) -> Document:
    """The Document for an entry; the article page, when fetched, supplies the text and
    whatever the feed left blank. An entry with a headline and no text (a video, a live
    page, a feed read with fetch_article = "never") is a headline-only document: its
    text is the headline, which the pipeline publishes as such."""
    return Document(
        id=entry.guid or entry.link or entry.key,
        source=spec.source,
        text=article.text if article else (entry.text or entry.title),
        input_ref=entry.key,
        title=entry.title or (article.title if article else ""),
        url=entry.link or (article.url if article else ""),
        published_at=entry.published_at or (article.published_at if article else ""),
        author=entry.author or (article.author if article else ""),
        language=spec.language,
        guid=entry.guid,
        revision=entry.revision,
        policy=spec.dedup,
    )
