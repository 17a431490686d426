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
        expected = ", ".join(sorted(allowed))
        word = plural(len(unknown), "key")
        raise ValueError(f"{': '.join(where)}: unknown {word} {named} (allowed: {expected})")


def plural(count: float, noun: str, plural_form: str | None = None) -> str:
    """`noun` as `count` of it needs: singular for exactly 1, else `plural_form` (default:
    `noun` + "s"; give it for "entry"/"entries"). Zero is plural, as in "0 inputs"."""
    if count == 1:
        return noun
    return plural_form if plural_form is not None else noun + "s"


def counted(count: float, noun: str, plural_form: str | None = None) -> str:
    """`count` and `noun` in the number it needs: "1 input", "2 inputs", "1 entry",
    "3 entries" (with `plural_form`); a float prints as with `:g` ("1 day", "2.5 days")."""
    number = f"{count:g}" if isinstance(count, float) else str(count)
    return f"{number} {plural(count, noun, plural_form)}"


def printable(text: str) -> str:
    """`text` safe to print on a terminal: every character `str.isprintable` refuses
    (control characters such as ESC and newline, bidi overrides, separators) shown as its
    Python escape, e.g. \\x1b or \\n, so input-controlled names cannot move the cursor,
    recolour or rewrite the operator's screen. JSON output keeps the real value."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
