"""Loading a task's inputs: one `TaskSpec` back into `Document`s and `DeadInput`s.

Loading runs in the workers. Its contract with planning is exact accounting: every
planned input is yielded exactly once, as a `Document` or a `DeadInput`, even when the
file went missing, shrank, broke or was rewritten between planning and loading
("missing", "unreadable", "read_error", "file_changed": a JSONL range whose first line is
not the one planned; lines appended since are no change, and are not read).

Each file is opened with `open_in_root`: a file swapped for a symlink leading out of the
root since planning is `symlink_outside_root`. What one input may cost is capped
(`Limits`, from config [ingest]): a JSONL line over `max_record_bytes` is
`record_too_large` (never held in memory: only its size is counted), a .gz stops at
`max_decompressed_bytes` (the rest of the file is one `decompressed_too_large` input), a
file read whole is at most `max_file_bytes` (`too_large`), and a title over
`max_title_chars` is cut at a word boundary and ends in "…": the article is kept, and
the ellipsis says the headline was cut.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from html.entities import html5
from itertools import islice, zip_longest
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from workers.clean.boilerplate.teasers import is_headline_text
from workers.document import DeadInput, Document, LoadedInput
from workers.ingest.dates import parse_date
from workers.ingest.decode import DecodeError, declared_html_encoding, decode_bytes
from workers.ingest.forward import range_lines
from workers.ingest.paths import PathRefused, escape_name, open_in_root, os_path
from workers.ingest.scan import Line, TotalCapExceeded, json_array_elements
from workers.ingest.spec import (
    DEFAULT_LIMITS,
    JSON_FEED_VERSION,
    READ_ERRORS,
    Kind,
    Limits,
    Location,
    TaskSpec,
    input_kind,
    line_check,
)
from workers.messages import one_line

if TYPE_CHECKING:
    # Only where an HTML page is read (`_html_document`): lxml, trafilatura and Celery
    # stay out of the processes that only plan, such as `newsdedup backfill` enqueuing.
    from workers.ingest.html import ArticleReader

# The fields a record's text, URL and date are read from, first found first; besides our
# own names, those of the usual exports: NewsAPI (content, publishedAt), schema.org's
# NewsArticle (articleBody, datePublished), RSS (link, pubDate), JSON Feed (content_text,
# content_html, date_published, authors), WordPress's REST API ({"rendered": ...} values).
_TEXT_FIELDS = ("text", "content", "body", "articleBody", "content_text", "content_html")
_URL_FIELDS = ("url", "link")
_DATE_FIELDS = (
    "published",
    "published_at",
    "date",
    "time",
    "date_extracted",
    "pubDate",
    "publishedAt",
    "datePublished",
    "date_published",
)
# NewsAPI cuts `content` at 200 characters and says how much it left out: the marker is
# no part of the article, and copies of one story cut alike would all share it.
_CUT_MARKER = re.compile(r"\s*\[\+\d+ chars\]\s*\Z")
# A text holding a block-level tag is an HTML fragment (a CMS's content, JSON Feed's
# content_html): read as a page's paragraphs, not published with its tags. An inline tag
# or a bracketed word alone ("<b>", "<Reuters>") is no reason to fold a plain text's lines.
_BLOCK_TAG = re.compile(
    r"<(?:p|br|div|li|ul|ol|h[1-6]|blockquote|table|tr|figure|section|article)\b[^<>]*>",
    re.IGNORECASE,
)


_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON = json.JSONDecoder()
_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def load_task(
    spec: TaskSpec, *, default_source: str | None, read_html: ArticleReader
) -> Iterator[LoadedInput]:
    """Yield exactly `spec.inputs` Documents/DeadInputs for one planned task. HTML pages
    are read with `read_html` (in a worker: the bounded `Runtime.extractor.read`)."""
    for loc in spec.locations:
        yield from load_location(
            spec.root, loc, default_source=default_source, read_html=read_html, limits=spec.limits
        )


def load_location(
    root: Path | str,
    loc: Location,
    *,
    default_source: str | None,
    read_html: ArticleReader,
    limits: Limits = DEFAULT_LIMITS,
) -> Iterator[LoadedInput]:
    """Yield exactly `loc.inputs` Documents/DeadInputs for one planned range of the task
    root `root` (escaped, as in TaskSpec.root)."""
    kind = input_kind(loc)
    if kind is None:
        raise ValueError(f"not a supported input file: {loc.path!r}")
    root = str(root)
    source = default_source or _folder_source(root, loc.path)
    ctx = _Ctx(os_path(root), os_path(loc.path), loc, source, limits, read_html)
    if kind in ("jsonl", "jsonl_gz"):
        yield from _load_jsonl(ctx, gz=kind == "jsonl_gz")
    elif kind == "json":
        yield from _load_json(ctx)
    else:
        if loc.start != 0 or loc.count != 1:
            raise ValueError(f"a {kind} file holds exactly one input: {loc!r}")
        yield _load_single(ctx, kind)


def jsonl_ref(rel: str, line_no: int) -> str:
    """The input_ref of a JSONL record: its path and 1-based line number."""
    return f"{rel}:{line_no + 1}"


def element_ref(rel: str, index: int) -> str:
    """The input_ref of a JSON array's element."""
    return f"{rel}#{index}"


def single_input_ref(loc: Location) -> str | None:
    """The input_ref of a range that holds exactly one input, known before reading it (the
    loaders name inputs the same way), or None for a range of several."""
    if loc.inputs != 1 or loc.count != 1:
        return None
    kind = input_kind(loc)
    if kind in ("jsonl", "jsonl_gz"):
        return jsonl_ref(loc.path, loc.start)
    if kind == "json":  # element 0 is named `path#0` in an array, `path` for an object
        return element_ref(loc.path, loc.start) if loc.start else None
    return loc.path


@dataclass(frozen=True, slots=True)
class _Ctx:
    root: str  # OS paths (not escaped)
    rel: str
    loc: Location
    source: str  # used when a record names no source of its own
    limits: Limits
    read_html: ArticleReader

    def open(self) -> BinaryIO:
        return open_in_root(self.root, self.rel)

    def title(self, title: str) -> str:
        return cap_title(title, self.limits.max_title_chars)

    def dead(self, reject: _Reject, ref: str) -> DeadInput:
        return DeadInput(
            ref, reject.reason, reject.message, reject.id, reject.source or self.source
        )


class _Reject(Exception):
    """Internal: why an input becomes a DeadInput (turned into one by the loaders)."""

    def __init__(self, reason: str, message: str, *, id: str = "", source: str = ""):
        super().__init__(message)
        self.reason = reason
        self.message = encodable(one_line(message)[:500])
        self.id = id
        self.source = source


def _folder_source(root: str, rel: str) -> str:
    parts = PurePosixPath(rel).parts
    return parts[-2] if len(parts) > 1 else PurePosixPath(root).name


def cap_title(title: str, max_chars: int) -> str:
    """`title` if it fits in `max_chars`, else cut at a word boundary (unless that would
    lose more than half of it) and ended with "…", so readers see it was cut."""
    if len(title) <= max_chars:
        return title
    cut = title[: max_chars - 1]
    head = cut.rsplit(maxsplit=1)[0] if cut.strip() else ""
    if len(head) >= max_chars // 2:
        cut = head
    return cut.rstrip() + "…"


def _load_single(ctx: _Ctx, kind: Kind) -> LoadedInput:
    rel = ctx.loc.path
    try:
        data = _read_capped(ctx)
        if kind == "txt":
            return _txt_document(_decode(data), ctx)
        # A page in GBK or Shift_JIS reads only with the encoding its head declares.
        return _html_document(_decode(data, declared_html_encoding(data)), ctx)
    except _Reject as reject:
        return ctx.dead(reject, rel)


def _txt_document(text: str, ctx: _Ctx) -> Document:
    rel, source = ctx.loc.path, ctx.source
    # The first non-empty line is the headline; the body is kept raw for later stages.
    # Lines end in \n, \r\n or, from old Mac editors and some exporters, a bare \r.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for i, line in enumerate(lines):
        if line.strip():
            title, body = line.strip(), "\n".join(lines[i + 1 :])
            break
    else:
        title, body = "", ""
    if not body.strip():
        # A lone line is the article itself unless it has a headline's shape: files of
        # one paragraph each are common, and losing them all as "title only" is not.
        if not title or is_headline_text(title):
            raise _Reject("missing_text", "text file has only a title line, no body", id=rel)
        title, body = "", title
    return Document(id=rel, source=source, text=body, input_ref=rel, title=ctx.title(title))


def _html_document(html: str, ctx: _Ctx) -> Document:
    from workers.ingest.html import ArticleError

    rel, source = ctx.loc.path, ctx.source
    try:
        article = ctx.read_html(html, "")
    except ArticleError as exc:  # refused, too slow, or the parser failed: never the batch
        raise _Reject(exc.reason, str(exc), id=rel) from None
    if article is None:
        raise _Reject("no_text", "no main text found in the HTML page", id=rel)
    return Document(
        id=rel,
        source=source,
        text=article.text,
        input_ref=rel,
        title=ctx.title(article.title),
        url=article.url,
        published_at=article.published_at,
    )


def _load_json(ctx: _Ctx) -> Iterator[LoadedInput]:
    loc, rel = ctx.loc, ctx.loc.path
    indexes = range(loc.start, loc.start + loc.count)

    def ref(i: int) -> str:
        # Planned as a whole-file object (or the file failed): the bare path names it.
        return rel if loc.start == 0 and loc.count == 1 else element_ref(rel, i)

    if loc.offset >= 0:
        values = _values_at(ctx, loc.offset, loc.count)
        if values is not None:
            for i, value in zip(indexes, values, strict=True):
                yield _record(ctx, value, element_ref(rel, i))
            return
    try:
        text = _decode(_read_capped(ctx))
    except _Reject as reject:
        for i in indexes:
            yield ctx.dead(reject, ref(i))
        return
    try:
        parsed = _loads(text)
    except _Reject as reject:
        # Not valid JSON as a whole: an array's elements are read one by one, the same
        # whatever range this is; anything else (no array whose brackets pair) is dead.
        spans = json_array_elements(text, indexes)
        if spans is not None:
            yield from _elements(ctx, text, indexes, spans)
            return
        for i in indexes:
            yield ctx.dead(reject, ref(i))
        return
    wrapped = wrapped_records(parsed)
    if wrapped is not None:
        parsed = wrapped
    if isinstance(parsed, list):
        for i in indexes:
            if i < len(parsed):
                yield _record(ctx, parsed[i], element_ref(rel, i))
            else:
                yield ctx.dead(_Reject("missing", f"array has no element {i} any more"), ref(i))
        return
    for i in indexes:  # planned as an array, now a single value (or planned as an object)
        if i == 0:
            yield _record(ctx, parsed, rel)
        else:
            yield ctx.dead(_Reject("missing", "file no longer holds a JSON array"), ref(i))


def _elements(
    ctx: _Ctx, text: str, indexes: range, spans: list[tuple[int, int]]
) -> Iterator[LoadedInput]:
    """The inputs `indexes` of an array that is not valid JSON as a whole, each element
    read on its own from its `spans` in the whole file's `text`: a malformed one is one
    dead input, the others are read as the whole file's parse would read them."""
    for i, span in zip_longest(indexes, spans[: len(indexes)]):
        ref = element_ref(ctx.loc.path, i)
        if span is None:
            yield ctx.dead(_Reject("missing", f"array has no element {i} any more"), ref)
            continue
        try:
            value = _element(text, span, i)
        except _Reject as reject:
            yield ctx.dead(reject, ref)
            continue
        yield _record(ctx, value, ref)


def _element(text: str, span: tuple[int, int], index: int) -> Any:
    """The value of the array element `span` delimits in `text` (`json_array_elements`);
    a malformed one is a `_Reject` naming the element and the line and column of the file
    where it breaks."""
    start, end = span
    try:
        value, stop = _JSON.raw_decode(text, start)
        stop = _after_space(text, stop)
        if stop != end:
            raise json.JSONDecodeError("Extra data", text, stop)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge ints, deep nesting
        raise _Reject("malformed_json", f"malformed JSON in element {index}: {exc}") from None
    return value


def _values_at(ctx: _Ctx, offset: int, count: int) -> list[Any] | None:
    """`count` elements of a JSON array read from the byte `offset` where the first starts
    (planned by `scan_json_array` in a plain UTF-8 file): the values the whole file's
    parse would give them, without parsing the rest. None when the file is not as planned
    any more (moved bytes, a size over the cap) or an element is malformed: the range is
    then read from the whole file (`_load_json`), a malformed element dead on its own."""
    try:
        with ctx.open() as f:
            size = os.fstat(f.fileno()).st_size
            if size > ctx.limits.max_file_bytes or offset >= size:
                return None
            f.seek(offset)
            text = f.read(size - offset).decode("utf-8")
    except (*READ_ERRORS, UnicodeDecodeError):
        return None
    values: list[Any] = []
    pos = 0
    try:
        for k in range(count):
            value, pos = _JSON.raw_decode(text, pos)
            values.append(value)
            pos = _after_space(text, pos)
            after = text[pos : pos + 1]
            if after == ",":
                pos = _after_space(text, pos + 1)
            elif after != "]" or k < count - 1:
                return None
    except (ValueError, RecursionError):
        return None
    return values


def _after_space(text: str, pos: int) -> int:
    """The position of the first character at or after `pos` that is not JSON space."""
    space = _JSON_SPACE.match(text, pos)
    return space.end() if space else pos


def _load_jsonl(ctx: _Ctx, *, gz: bool) -> Iterator[LoadedInput]:
    loc, rel = ctx.loc, ctx.loc.path
    end = loc.start + loc.count
    used: set[int] = set()
    failure: _Reject | None = None
    seek = loc.offset >= 0 and not gz  # a .gz cannot seek: its lines are skipped
    try:
        offset, first = (loc.offset, loc.start) if seek else (0, 0)
        with range_lines(
            ctx.root, ctx.rel, ctx.limits, gz=gz, seek=offset, line=first, first=loc.start
        ) as lines:
            for line in lines:
                if line.index < loc.start:
                    continue
                if (
                    not used
                    and loc.head != -1
                    and (line.index != loc.start or line_check(line) != loc.head)
                ):
                    # Not the line planned here: the file was rewritten (not only appended
                    # to) since. Its lines now would be read under other lines' numbers,
                    # or from the middle of one: none of the range is read.
                    failure = _Reject(
                        "file_changed",
                        f"line {loc.start + 1} is not the one the backfill planned: the file "
                        "was rewritten since; back it up again",
                    )
                    break
                if line.index >= end:
                    lines.put_back(line)  # the next range's first line
                    lines.finished()
                    break
                used.add(line.index)
                yield _jsonl_record(ctx, line)
                if len(used) >= loc.inputs:
                    lines.finished()
                    break
    except TotalCapExceeded:
        cap = ctx.limits.max_decompressed_bytes
        failure = _Reject("decompressed_too_large", f"decompresses to more than {cap} bytes")
    except READ_ERRORS as exc:
        failure = _os_reject(exc)
    if len(used) < loc.inputs:
        # The file vanished, shrank or broke since planning: account for every input, named
        # by line numbers of this range not already used so input_refs stay unique.
        reject = failure or _Reject("missing", "file has fewer records than when planned")
        free = (n for n in range(loc.start, end) if n not in used)
        for n in islice(free, loc.inputs - len(used)):
            yield ctx.dead(reject, jsonl_ref(rel, n))


def _jsonl_record(ctx: _Ctx, line: Line) -> LoadedInput:
    ref = jsonl_ref(ctx.loc.path, line.index)
    if line.data is None:
        cap = ctx.limits.max_record_bytes
        reject = _Reject("record_too_large", f"a line of {line.size} bytes (at most {cap})")
        return ctx.dead(reject, ref)
    try:
        try:
            text = line.data.decode("utf-8")
        except UnicodeDecodeError:  # rare: let the shared decoder guess the legacy charset
            text = _decode(line.data)
        # Files joined with `cat` carry each part's UTF-8 BOM at the start of a line (the
        # scanner drops only the file's own, at offset 0).
        return _record(ctx, _loads(text.removeprefix("\ufeff")), ref)
    except _Reject as reject:
        return ctx.dead(reject, ref)


def _record(ctx: _Ctx, obj: object, ref: str) -> LoadedInput:
    return document_from_record(
        obj, ref, default_source=ctx.source, max_title_chars=ctx.limits.max_title_chars
    )


def record_text(record: Mapping[str, object]) -> str:
    """A record's text as given: its first non-blank `_TEXT_FIELDS` value (a string,
    WordPress's {"rendered": "..."}, or a list of paragraphs, one per line), else ""."""
    text = next((v for k in _TEXT_FIELDS if (v := _paragraphs(record.get(k))).strip()), "")
    return encodable(text)


def _paragraphs(value: object) -> str:
    """A text field: as `_rendered`, or a list of paragraph strings (scrapers' and
    datasets' shape) joined one per line."""
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return "\n".join(value)
    return _rendered(value)


def _rendered(value: object) -> str:
    """A string field, or the "rendered" string of WordPress's {"rendered": ...}."""
    if isinstance(value, dict):
        value = value.get("rendered")
    return value if isinstance(value, str) else ""


def readable_text(text: str) -> str:
    """A record's text (`record_text`) as published: an HTML fragment as its lines of
    text (`html.html_to_text`, as a feed entry's content), without the marker NewsAPI
    puts where it cut the text ("... diverted to… [+2345 chars]" ends "diverted to…"),
    anything else as it is."""
    text = _CUT_MARKER.sub("", text)
    if not is_html_fragment(text):
        return text
    from workers.ingest.html import html_to_text  # lxml: only for records that need it

    return html_to_text(text)


def is_html_fragment(text: str) -> bool:
    """Whether a record's text is HTML (`_BLOCK_TAG`), to be read as a page's lines."""
    return _BLOCK_TAG.search(text) is not None


def document_from_record(
    obj: object,
    ref: str,
    *,
    default_source: str,
    max_title_chars: int,
    default_id: str | None = None,
) -> LoadedInput:
    """One JSON object (a JSON or JSONL record, a dict given to workers.api) as a Document,
    or a DeadInput saying why it is none. `default_id` is the id of a record that has none
    (None: `ref`); `default_source` the source of one that names none. A record whose
    reading raises (a value no reader expected) is dead as `processing_error`: one odd
    record must not fail the batch that holds it, run after run."""
    try:
        return _document_from_record(obj, ref, default_source, max_title_chars, default_id)
    except Exception as exc:
        from celery.exceptions import SoftTimeLimitExceeded  # only when one raised

        if isinstance(exc, SoftTimeLimitExceeded):
            raise
        error = one_line(f"reading the record raised {type(exc).__name__}: {exc}")[:500]
        return DeadInput(ref, "processing_error", error, "", default_source)


def _document_from_record(
    obj: object, ref: str, default_source: str, max_title_chars: int, default_id: str | None
) -> LoadedInput:
    if not isinstance(obj, dict):
        reason = f"expected a JSON object, got {_json_type(obj)}"
        return DeadInput(ref, "not_an_object", reason, "", default_source)
    doc_id = _scalar(obj.get("id")) or (ref if default_id is None else default_id)
    source = _named(obj.get("source")) or default_source
    text = record_text(obj)
    if not text:
        message = "record has no text, content, body, articleBody, content_text or content_html"
        # Several arrays of records in one object: which one holds the articles is not
        # ours to guess (`wrapped_records` takes a single one).
        held = _record_arrays(obj)
        if held:
            fields = ", ".join(json.dumps(name[:60]) for name in held[:5])
            message += f"; it holds records under {fields}: give them as a JSON array or JSONL"
        return DeadInput(ref, "missing_text", one_line(message), doc_id, source)
    title = _record_title(obj.get("title"), html_text=is_html_fragment(text))
    readable = readable_text(text)
    if not readable.strip():
        message = "record's text is HTML without any text"
        return DeadInput(ref, "missing_text", message, doc_id, source)
    date = next((v for k in _DATE_FIELDS if (v := obj.get(k)) not in (None, "")), None)
    authors = obj.get("authors")
    return Document(
        id=doc_id,
        source=source,
        text=readable,
        input_ref=ref,
        title=cap_title(title, max_title_chars),
        url=next((u for k in _URL_FIELDS if (u := _scalar(obj.get(k)))), ""),
        published_at=parse_date(date),
        author=_named(obj.get("author"))
        or (_named(authors[0]) if isinstance(authors, list) and authors else ""),
        language=_scalar(obj.get("language")) or _scalar(obj.get("lang")),
    )


def _record_title(value: object, *, html_text: bool) -> str:
    """A record's title as plain text on one line. It is read as HTML (tags dropped,
    character references decoded, as a feed's title) when it is: the record's text is HTML
    (`html_text`), so is its title; WordPress's {"rendered": ...} is HTML; or the title
    holds a tag or a character reference of its own ("<b>Gaza</b>", "&#8211;", "&amp;").
    A title given as a list of strings is their words joined; a number is its digits."""
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        value = " ".join(value)
    if isinstance(value, dict):
        rendered = _rendered(value)
        return one_line(_html_title(rendered)) if rendered.strip() else ""
    title = _scalar(value)
    if html_text or _TITLE_MARKUP.search(title):
        title = _html_title(title)
    return one_line(title)


def _html_title(title: str) -> str:
    from workers.ingest.html import html_to_text  # lxml: only for titles that need it

    return html_to_text(title)


# A tag of the elements titles carry, or a character reference (decimal, hex, or a name
# HTML knows, with its semicolon): a title holding one was given as HTML. "AT&T" and
# "<Reuters>" are no reason.
_TITLE_MARKUP = re.compile(
    r"</?(?:b|i|em|strong|span|a|br|font|sup|sub|u|small|mark|abbr|cite|q|s|del|ins|"
    r"script|style|p|div|h[1-6])\b[^<>]*>"
    r"|&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|"
    + "|".join(sorted({re.escape(name[:-1]) for name in html5 if name.endswith(";")}))
    + r");",
    re.IGNORECASE,
)


def _record_arrays(obj: dict[str, Any]) -> list[str]:
    """The fields of `obj` that hold a non-empty array starting with an object."""
    return [k for k, v in obj.items() if isinstance(v, list) and v and isinstance(v[0], dict)]


def wrapped_records(value: object) -> list[Any] | None:
    """The records a JSON object wraps, as API exports do (NewsAPI's {"status": "ok",
    "totalResults": 2, "articles": [...]}): an object with no text of its own and exactly
    one field holding an array of objects, or a JSON Feed's `items` (its feed-level
    `authors` are an array of objects too). None for anything else. Planning and loading
    both ask this, so the file's inputs are that array's elements (`path#i`)."""
    if not isinstance(value, dict) or record_text(value):
        return None
    version, items = value.get("version"), value.get("items")
    if (
        isinstance(version, str)
        and version.startswith(JSON_FEED_VERSION)
        and isinstance(items, list)
    ):
        return items
    held = _record_arrays(value)
    return value[held[0]] if len(held) == 1 else None


def count_wrapped_records(data: bytes) -> int | None:
    """How many records the JSON file `data` wraps (`wrapped_records`), or None."""
    try:
        wrapped = wrapped_records(_loads(_decode(data)))
    except _Reject:
        return None
    return None if wrapped is None else len(wrapped)


def _read_capped(ctx: _Ctx) -> bytes:
    max_bytes = ctx.limits.max_file_bytes
    try:
        with ctx.open() as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(max_bytes + 1)
    except READ_ERRORS as exc:
        raise _os_reject(exc) from None
    if size > max_bytes or len(data) > max_bytes:
        raise _Reject("too_large", f"file is {max(size, len(data))} bytes, over {max_bytes}")
    return data


def _os_reject(exc: BaseException) -> _Reject:
    if isinstance(exc, PathRefused):
        return _Reject(exc.reason, str(exc))
    if isinstance(exc, FileNotFoundError):
        return _Reject("missing", "file no longer exists")
    if isinstance(exc, PermissionError):
        where = escape_name(str(exc.filename or ""))
        return _Reject("unreadable", f"permission denied: {where}".strip())
    return _Reject("read_error", f"{type(exc).__name__}: {exc}")


def _decode(data: bytes, declared: str = "") -> str:
    try:
        return decode_bytes(data, declared).text
    except DecodeError as exc:
        raise _Reject(f"decode_{exc.reason}", str(exc) or exc.reason) from None


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge ints, deep nesting
        raise _Reject("malformed_json", f"malformed JSON: {exc}") from None


def _scalar(value: object) -> str:
    """A record field as a stripped string; containers and null count as absent."""
    if isinstance(value, str):
        return encodable(value.strip())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _named(value: object) -> str:
    """A field that names something: a string, or an object's `name` (NewsAPI's source
    {"id": ..., "name": "BBC News"}, schema.org's author {"@type": "Person", "name": ...})."""
    if isinstance(value, dict):
        return _scalar(value.get("name"))
    return _scalar(value)


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def encodable(text: str) -> str:
    """`text` with each lone surrogate (a JSON "\\ud800" escape without its pair, or an OS
    path's undecodable byte) as U+FFFD: no UTF-8 can carry one, so it would fail every
    write of the input to Redis, its `dead` entry and its cursor included."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text
