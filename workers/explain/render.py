"""An explanation as terminal text, JSON and a self-contained HTML page.

Everything shown comes from inputs: on a terminal it is escaped (`printable`) so that an
article cannot move the cursor or recolour the screen, and in HTML every text is escaped,
so an article's `<script>` is shown, never run.
"""

from __future__ import annotations

import html
import json
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

from workers.explain.explanation import Explanation
from workers.explain.find import FoundDead
from workers.explain.passages import SharedPassages
from workers.messages import printable
from workers.records import VERDICTS, DecisionCandidate

_REVERSE, _PLAIN = "\x1b[7m", "\x1b[27m"
# Without a terminal a passage is bracketed with its number instead: ⟦1 ... ⟧.
CANDIDATE_HEADER = ("id", "J", "C", "rare facts", "gap", "verdict")


def facts_cell(c: DecisionCandidate) -> str:
    """`agree 0.75 (4/5)`: the agreement, the share of the smaller rare-fact set found in
    the other, and the rare facts on each side (this input's / the candidate's)."""
    mine, theirs = c.rare_facts
    share = "-" if c.facts_share < 0 else f"{c.facts_share:.2f}"
    return f"{c.facts} {share} ({mine}/{theirs})"


def candidate_row(c: DecisionCandidate) -> tuple[str, ...]:
    return (
        c.id,
        f"{c.similarity:.2f}",
        f"{c.containment:.2f}",
        facts_cell(c),
        f"{c.gap_hours}h",
        c.verdict,
    )


def _decision_line(e: Explanation) -> str:
    record = e.record
    said = e.decision
    if e.entry.stream == "duplicates":
        kind = getattr(record, "kind", None) or "?"
        match = getattr(record, "match", None) or "?"
        said = f"duplicate ({kind}, matched by {match}) of {getattr(record, 'duplicate_of', '')}"
        similarity = getattr(record, "similarity", None)
        if similarity is not None:
            said += f", similarity {similarity:.2f}"
    else:
        said += f" as {record.id}"
        if getattr(record, "input_id", None):
            said += f" (input id {getattr(record, 'input_id', '')})"
        version = getattr(record, "version", None)
        if e.decision == "update":
            said += f", version {version or '?'} of {getattr(record, 'update_of', '')}"
    return said


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"dedup.{k} = {v}" for k, v in settings.items())


def _candidate_table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]  # fmt: skip


def _segments(text: str, spans: Sequence[tuple[int, int]]) -> Iterator[tuple[int, str]]:
    """`text` cut at the spans: (passage number, piece), 0 for a piece outside them."""
    at = 0
    for n, (start, end) in sorted(enumerate(spans, 1), key=lambda x: x[1]):
        if start > at:
            yield 0, text[at:start]
        yield n, text[start:end]
        at = end
    if at < len(text):
        yield 0, text[at:]


def _escaped(piece: str) -> str:
    return "\n".join(printable(line) for line in piece.split("\n"))


def marked_text(text: str, spans: Sequence[tuple[int, int]], color: bool) -> str:
    """`text` with each span marked: reverse video on a terminal, else ⟦n ... ⟧."""
    out = []
    for n, piece in _segments(text, spans):
        shown = _escaped(piece)
        if n == 0:
            out.append(shown)
        elif color:
            # Reverse video stops at each line end, so a pager cuts no line mid-mark.
            out.append("\n".join(f"{_REVERSE}{line}{_PLAIN}" for line in shown.split("\n")))
        else:
            out.append(f"⟦{n} {shown}⟧")
    return "".join(out)


def _passage_lines(shared: SharedPassages, a: str, b: str) -> list[str]:
    lines = [shared.summary()]
    for n, p in enumerate(shared.passages, 1):
        words = f"{p.words} words"
        lines.append(
            f"  {n}. A[{p.a_chars[0]}:{p.a_chars[1]}] = B[{p.b_chars[0]}:{p.b_chars[1]}], {words}: "
            f"{_excerpt(a[p.a_chars[0] : p.a_chars[1]])}"
        )
    return lines


def _excerpt(text: str, edge: int = 30) -> str:
    flat = printable(" ".join(text.split()))
    return flat if len(flat) <= 2 * edge + 5 else f"{flat[:edge]} … {flat[-edge:]}"


def render_text(e: Explanation, *, color: bool = False) -> str:
    """The explanation for a terminal: the decision and rule, the candidates, the linked
    documents, the shared passages as spans, then both texts with them marked."""
    record = e.record
    p = printable
    lines = [
        f"{p(record.id)}: {e.entry.stream} entry {e.entry.stream_id}, source {p(record.source)}, "
        f"ingested {record.ingested_at}",
        f"  title: {p(record.title)}",
        f"decision: {p(_decision_line(e))}",
        f"rule: {p(e.rule or '(none)')}: {e.meaning}",
    ]
    if e.settings:
        lines.append(f"  settings: {_settings_text(e.settings)}")
    if e.candidates:
        lines.append(f"candidates ({len(e.candidates)}, best first):")
        rows = [CANDIDATE_HEADER, *(tuple(p(c) for c in candidate_row(c)) for c in e.candidates)]
        lines += _candidate_table(rows)
    else:
        lines.append("candidates: none recorded")
    for link in e.links:
        if link.found is None:
            where = "not in docs any more (trimmed or expired)"
        else:
            where = f"docs entry {link.found.stream_id}: {p(link.found.record.title)}"
        lines.append(f"{link.relation}: {p(link.id)} ({where})")
    compared = e.compared.found if e.compared else None
    if e.passages is not None and compared is not None:
        a, b = record.text or "", compared.record.text or ""
        lines.append(
            f"A = {p(record.id)} (this {e.entry.stream} entry), B = {p(compared.record.id)}"
        )
        lines += _passage_lines(e.passages, a, b)
        spans_a = [q.a_chars for q in e.passages.passages]
        spans_b = [q.b_chars for q in e.passages.passages]
        lines += ["", f"--- A: {p(record.id)}", marked_text(a, spans_a, color)]
        lines += ["", f"--- B: {p(compared.record.id)}", marked_text(b, spans_b, color)]
    return "\n".join(lines)


def render_json(query: str, explanations: Sequence[Explanation]) -> str:
    """One JSON object: the id asked for and each entry found's explanation, newest first."""
    return json.dumps(
        {"query": query, "matches": [e.to_json() for e in explanations]}, ensure_ascii=False
    )


def render_dead_text(dead: FoundDead) -> str:
    """A dead input for a terminal: why it was not processed."""
    record, p = dead.record, printable
    return "\n".join(
        [
            f"{p(record.id)}: dead entry {dead.stream_id}, source {p(record.source)}, "
            f"failed {record.failed_at}",
            f"  input: {p(record.input_ref)}",
            f"decision: dead ({p(record.reason)}): not published, not indexed",
            f"error: {p(record.error)}",
        ]
    )


def render_dead_json(query: str, dead: FoundDead) -> str:
    """A dead input as `render_json` gives an entry: one match, decision "dead"."""
    record = dead.record
    # The dead entry's own fields as the record types them (`DeadRecord.to_json`).
    match = {
        "id": record.id,
        "stream": "dead",
        "stream_id": dead.stream_id,
        "decision": "dead",
        **record.to_json(),
    }
    return json.dumps({"query": query, "matches": [match]}, ensure_ascii=False)


# --- HTML ---------------------------------------------------------------------------

# Fonts with Arabic glyphs first where a system has them, then the generic fallbacks.
_FONTS = (
    '"Noto Naskh Arabic", "Noto Sans Arabic", "Amiri", "Geeza Pro", "Arial Unicode MS", '
    '"Tahoma", "DejaVu Sans", "Segoe UI", "Arial", system-ui, sans-serif'
)
_CSS = f"""
body {{ font-family: {_FONTS}; margin: 1.5em; color: #1b1b1b; background: #fff; }}
h1 {{ font-size: 1.3em; margin: 0 0 .3em; }}
h2 {{ font-size: 1.1em; margin: 1.2em 0 .4em; }}
.decision {{ font-weight: bold; }}
.meaning, .settings {{ color: #444; }}
table {{ border-collapse: collapse; margin: .5em 0; }}
th, td {{ border: 1px solid #bbb; padding: .2em .6em; text-align: start; }}
th {{ background: #f0f0f0; }}
td.num {{ text-align: end; font-variant-numeric: tabular-nums; }}
.columns {{ display: flex; gap: 1.5em; align-items: flex-start; }}
.column {{ flex: 1 1 0; min-width: 0; border: 1px solid #ccc; padding: .8em; }}
.column h3 {{ margin: 0 0 .5em; font-size: 1em; }}
.text {{ white-space: pre-wrap; line-height: 1.7; font-size: 1.05em; }}
mark {{ background: #ffe066; color: #000; padding: 0 .1em; border-radius: 2px; }}
.none {{ color: #777; font-style: italic; }}
section.match {{ border-top: 3px solid #888; margin-top: 1.5em; padding-top: .5em; }}
"""


def _strong_direction(text: str) -> str:
    """`rtl` when the first letter with a strong direction is right-to-left (Arabic,
    Hebrew...), else `ltr`."""
    for ch in text:
        bidi = unicodedata.bidirectional(ch)
        if bidi in ("R", "AL"):
            return "rtl"
        if bidi == "L":
            return "ltr"
    return "ltr"


def _marked_html(text: str, spans: Sequence[tuple[int, int]], prefix: str) -> str:
    out = []
    for n, piece in _segments(text, spans):
        shown = html.escape(piece)
        if n == 0:
            out.append(shown)
        else:
            out.append(
                f'<mark data-passage="{prefix}{n}" title="shared passage {n}">{shown}</mark>'
            )
    return "".join(out)


def _column(label: str, side: dict[str, Any], spans: list[tuple[int, int]], key: str) -> str:
    text = side["text"]
    direction = _strong_direction(text)
    lang = f' lang="{html.escape(side["language"])}"' if side.get("language") else ""
    title = html.escape(side["title"])
    return (
        f'<div class="column" data-side="{label}">'
        f"<h3>{label}: {html.escape(side['id'])} "
        f"<small>({html.escape(side['stream'])} {html.escape(side['stream_id'])})</small></h3>"
        f'<div class="title" dir="{_strong_direction(side["title"])}"{lang}><b>{title}</b></div>'
        f'<div class="text" dir="{direction}"{lang}>{_marked_html(text, spans, key)}</div>'
        "</div>"
    )


def _section(e: Explanation, key: str) -> str:
    data = e.to_json()
    esc = html.escape
    parts = [
        '<section class="match">',
        f"<h1>{esc(data['id'])} <small>({esc(data['stream'])} entry "
        f"{esc(data['stream_id'])})</small></h1>",
        f'<p class="decision" data-decision="{esc(e.decision)}">Decision: '
        f"{esc(_decision_line(e))}</p>",
        f'<p>Rule: <code data-rule="{esc(e.rule)}">{esc(e.rule or "(none)")}</code> '
        f'<span class="meaning">{esc(e.meaning)}</span></p>',
    ]
    if e.settings:
        parts.append(f'<p class="settings">Settings: {esc(_settings_text(e.settings))}</p>')
    parts.append(f"<h2>Candidates ({len(e.candidates)})</h2>")
    if e.candidates:
        head = "".join(f"<th>{esc(h)}</th>" for h in CANDIDATE_HEADER)
        rows = []
        for c in e.candidates:
            cells = candidate_row(c)
            tds = "".join(
                f'<td class="num">{esc(v)}</td>' if i in (1, 2, 4) else f"<td>{esc(v)}</td>"
                for i, v in enumerate(cells)
            )
            verdict = esc(VERDICTS.get(c.verdict, ""))
            rows.append(f'<tr title="{verdict}">{tds}</tr>')
        parts.append(f'<table class="candidates"><tr>{head}</tr>{"".join(rows)}</table>')
    else:
        parts.append('<p class="none">none recorded</p>')
    if e.links:
        items = []
        for link in data["links"]:
            where = (
                f"docs entry {esc(link['stream_id'])}: {esc(link['title'] or '')}"
                if link["stream_id"]
                else "not in docs any more (trimmed or expired)"
            )
            items.append(f"<li>{esc(link['relation'])}: <b>{esc(link['id'])}</b> ({where})</li>")
        parts.append(f'<h2>Linked documents</h2><ul class="links">{"".join(items)}</ul>')
    if e.passages is not None and data["b"] is not None:
        parts.append(f"<h2>{esc(e.passages.summary())}</h2>")
        # Pointing at a passage in one column lights it in the other too, without script.
        pairs = [f'mark[data-passage="{key}{n}"]' for n in range(1, len(e.passages.passages) + 1)]
        if pairs:
            rules = "".join(f".columns:has({m}:hover) {m}{{background:#ff9f43}}" for m in pairs)
            parts.append(f"<style>{rules}</style>")
        spans_a = [p.a_chars for p in e.passages.passages]
        spans_b = [p.b_chars for p in e.passages.passages]
        parts.append(
            '<div class="columns">'
            + _column("A", data["a"], spans_a, key)
            + _column("B", data["b"], spans_b, key)
            + "</div>"
        )
    else:
        parts.append('<p class="none">No linked document to compare the text with.</p>')
    parts.append("</section>")
    return "\n".join(parts)


def render_html(query: str, explanations: Sequence[Explanation]) -> str:
    """A self-contained page (inline CSS, no script, no external asset): each entry's
    decision, rule and candidates, and the two texts side by side, the passages they
    share highlighted; a passage's <mark> has the same `data-passage` in both columns."""
    sections = "\n".join(_section(e, f"m{i}-") for i, e in enumerate(explanations, 1))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<title>newsdedup explain {html.escape(query)}</title>"
        f"<style>{_CSS}</style></head>\n<body>\n{sections}\n</body></html>\n"
    )
