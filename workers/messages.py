"""Messages for users: one line each, and the same wording for the same mistake.

Error messages end up in a terminal, in `dead` entries and in feed statuses; a message
that spans lines breaks all three.
"""

from __future__ import annotations

from collections.abc import Iterable


def one_line(text: str) -> str:
    """`text` with every run of white space (newlines included) made one space."""
    return " ".join(text.split())


def check_keys(keys: Iterable[str], allowed: frozenset[str], *where: str) -> None:
    """A ValueError naming the keys of a config table that are not `allowed`; `where`
    (the file, then the table) starts the message."""
    unknown = sorted(set(keys) - allowed)
    if unknown:
        named = ", ".join(repr(key) for key in unknown)
        plural = "s" if len(unknown) > 1 else ""
        expected = ", ".join(sorted(allowed))
        raise ValueError(f"{': '.join(where)}: unknown key{plural} {named} (allowed: {expected})")


def printable(text: str) -> str:
    """`text` safe to print on a terminal: every character `str.isprintable` refuses
    (control characters such as ESC and newline, bidi overrides, separators) shown as its
    Python escape, e.g. \\x1b or \\n, so input-controlled names cannot move the cursor,
    recolour or rewrite the operator's screen. JSON output keeps the real value."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
