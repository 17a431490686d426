"""Turn raw input bytes into text, guessing the encoding the way news archives need.

Order matters: a BOM is authoritative; UTF-16 without a BOM must be recognised before the
binary check (its NUL bytes would otherwise look binary); strict UTF-8 is tried before the
encoding a page declares (pages labelled ISO-8859-1 that are really UTF-8 are common, and
valid UTF-8 is almost never a legacy encoding by accident) and before the legacy Arabic
code page, because cp1256 decodes *any* byte string; lenient UTF-8 comes last so a file
with a few corrupt bytes keeps its text instead of being dead-lettered.

An HTML page names its encoding in its head (`<meta charset>`, `<meta http-equiv>`, an
XML declaration: `declared_html_encoding`), and a page in GBK, Shift_JIS, Big5, EUC-KR
or windows-1251 is undecodable without it.
"""

from __future__ import annotations

import codecs
import re
from collections import Counter
from dataclasses import dataclass

# A few stray control bytes happen (a DOS Ctrl-Z at the end); many mean it is not text.
_MAX_CONTROL_SHARE = 0.05
# UTF-16 candidates must decode to text with (almost) no control characters.
_MAX_UTF16_CONTROL_SHARE = 0.01
# Lenient UTF-8 keeps the text only while corruption stays this small.
_MAX_BAD_BYTE_SHARE = 0.01
# Share of non-ASCII characters that must be Arabic-block when read as cp1256. Real cp1256
# Arabic scores ~1.0; UTF-8 Arabic misread as cp1256 scores ~0.6 (continuation bytes land
# on Latin-1 symbols), so 0.8 separates them.
_MIN_CP1256_ARABIC_SHARE = 0.8

# Longest BOMs first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16-be"),
)

# C0 controls and DEL, minus the whitespace ones text legitimately contains.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13)) + b"\x7f"
# C0 controls other than the text ones (tab, newlines, vertical tab, form feed), DEL, C1.
_CONTROL_CHAR = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")
# The same C1 characters as UTF-8 bytes (U+0080..U+009F).
_C1_UTF8 = re.compile(b"\xc2[\x80-\x9f]")
# Invisible characters that do not make a document non-empty.
_INVISIBLE = "\ufeff\u200b\u2060"


def has_control_characters(data: bytes) -> bool:
    """Whether UTF-8 `data` holds a control byte or character `decode_bytes` weighs
    (`_CONTROL_BYTES`, C1): without any, valid UTF-8 decodes as plain UTF-8 there."""
    return len(data.translate(None, _CONTROL_BYTES)) != len(data) or bool(_C1_UTF8.search(data))


class DecodeError(ValueError):
    """The bytes are not usable text; `reason` is a slug: "binary", "undecodable", "empty"."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    encoding: str  # the codec actually used, e.g. "utf-8", "utf-16-le", "windows-1256"
    replaced: int  # how many U+FFFD were substituted for bad bytes


def decode_bytes(data: bytes, declared: str = "") -> Decoded:
    """Decode `data` to text or raise DecodeError; never raises anything else. `declared`:
    the encoding label the input gives for itself (`declared_html_encoding`), tried after
    strict UTF-8; an unknown label is ignored."""
    data = bytes(data)
    if not data.strip():
        raise DecodeError("empty", "input is empty or whitespace only")

    for bom, codec, label in _BOMS:
        if data.startswith(bom):
            text, bad, replaced = _lenient(data[len(bom) :], codec)
            if bad > len(data) * _MAX_BAD_BYTE_SHARE:
                raise DecodeError("undecodable", f"{bad} invalid bytes after a {label} BOM")
            return _finish(text, label, replaced)

    controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    if controls:
        sniffed = _sniff_utf16(data)
        if sniffed is not None:
            return _finish(sniffed[0], sniffed[1], 0)
        if b"\x00" in data:
            raise DecodeError("binary", "NUL bytes outside a UTF-16 pattern")
        if controls > len(data) * _MAX_CONTROL_SHARE:
            raise DecodeError("binary", f"{controls} control bytes in {len(data)}")

    try:
        return _finish(data.decode("utf-8"), "utf-8", 0)
    except UnicodeDecodeError:
        pass

    declared_codec = codec_for_label(declared)
    if declared_codec is not None and declared_codec != "utf-8":
        text, bad, replaced = _lenient(data, declared_codec)
        if bad <= len(data) * _MAX_BAD_BYTE_SHARE:
            return _finish(text, declared_codec, replaced)

    if _looks_cp1256(data):
        return _finish(data.decode("cp1256", errors="replace"), "windows-1256", 0)

    text, bad, replaced = _lenient(data, "utf-8")
    if bad > len(data) * _MAX_BAD_BYTE_SHARE:
        raise DecodeError("undecodable", f"{bad} of {len(data)} bytes are not valid UTF-8")
    return _finish(text, "utf-8", replaced)


# Where a page declares its encoding: the first bytes of its head, as browsers look (the
# HTML standard's prescan reads 1,024 bytes; some pages put a long head first).
_PRESCAN_BYTES = 4096
_DECLARATIONS = (
    # <meta charset="gbk">, <meta http-equiv="Content-Type" content="text/html; charset=gbk">
    re.compile(rb"<meta\b[^>]*?\bcharset\s*=\s*[\"']?\s*([A-Za-z0-9_.:()+-]+)", re.IGNORECASE),
    re.compile(rb"<\?xml\b[^>]*?\bencoding\s*=\s*[\"']([A-Za-z0-9_.:()+-]+)", re.IGNORECASE),
)
# Labels the HTML standard reads as a larger encoding than Python's codec of that name:
# pages labelled GB2312 or ISO-8859-1 use the whole of GBK or windows-1252, and so on.
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "gb_2312-80": "gb18030",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso8859-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "big5": "big5hkscs",
    "tis-620": "cp874",
    "iso-8859-11": "cp874",
    "iso-8859-9": "cp1254",
}


def declared_html_encoding(data: bytes) -> str:
    """The encoding label an HTML page declares in its first bytes, or ""."""
    head = bytes(data[:_PRESCAN_BYTES])
    for declaration in _DECLARATIONS:
        found = declaration.search(head)
        if found:
            return found.group(1).decode("ascii").strip()
    return ""


def codec_for_label(label: str) -> str | None:
    """Python's codec for an encoding label, as the HTML standard reads it, or None for
    an unknown label. A UTF-16 or UTF-32 label declared inside a page the prescan could
    read is wrong by construction (the page is ASCII-compatible): it reads as UTF-8."""
    name = label.strip().lower()
    if not name:
        return None
    name = _SUPERSETS.get(name, name)
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    if codec.startswith(("utf-16", "utf-32")) or codec == "utf-8-sig":
        return "utf-8"
    # Codecs that turn bytes into bytes (base64, zlib) or text into text (rot13) are no
    # text encodings, whatever a page says.
    if codec in _NOT_TEXT:
        return None
    return codec


_NOT_TEXT = frozenset(
    {
        "base64",
        "bz2",
        "hex",
        "quopri",
        "uu",
        "zlib",
        "rot-13",
        "rot13",
        "idna",
        "punycode",
        "raw-unicode-escape",
        "unicode-escape",
        "undefined",
        "mbcs",
        "oem",
        "utf-7",
    }
)


def _lenient(payload: bytes, codec: str) -> tuple[str, int, int]:
    """Decode with replacement; return (text, bad byte count, U+FFFD substituted).

    "replace" emits one U+FFFD per bad *sequence*, so bad bytes are counted separately via
    surrogateescape (one lone surrogate per byte). Subtracting the U+FFFD already present
    in the escaped text keeps genuine U+FFFD in the input from being counted.
    """
    escaped = payload.decode(codec, errors="surrogateescape")
    bad = sum(1 for ch in escaped if "\udc80" <= ch <= "\udcff")
    text = payload.decode(codec, errors="replace")
    return text, bad, text.count("\ufffd") - escaped.count("\ufffd")


def _sniff_utf16(data: bytes) -> tuple[str, str] | None:
    """Recognise BOM-less UTF-16 by its high bytes: in real text one byte of every pair
    takes very few values (0x00 for Latin, 0x06 for Arabic), which random binary never does.
    """
    if len(data) < 2 or len(data) % 2:
        return None
    for codec, high in (("utf-16-le", data[1::2]), ("utf-16-be", data[0::2])):
        top = sum(count for _, count in Counter(high).most_common(3))
        if top < len(high) * 0.9:
            continue
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        if _control_chars(text) <= len(text) * _MAX_UTF16_CONTROL_SHARE:
            return text, codec
    return None


def _looks_cp1256(data: bytes) -> bool:
    text = data.decode("cp1256", errors="replace")
    non_ascii = [ch for ch in text if ord(ch) > 127 and not ch.isspace()]
    if not non_ascii:
        return False
    arabic = sum(1 for ch in non_ascii if "\u0600" <= ch <= "\u06ff")
    return arabic >= len(non_ascii) * _MIN_CP1256_ARABIC_SHARE


def _control_chars(text: str) -> int:
    # A regex scan: a Python loop over the characters took 9 s on a 20 MB file.
    return sum(1 for _ in _CONTROL_CHAR.finditer(text))


def _finish(text: str, encoding: str, replaced: int) -> Decoded:
    if not text.strip().strip(_INVISIBLE).strip():
        raise DecodeError("empty", f"no text after decoding as {encoding}")
    if _control_chars(text) > len(text) * _MAX_CONTROL_SHARE:
        raise DecodeError("binary", f"too many control characters after decoding as {encoding}")
    return Decoded(text=text, encoding=encoding, replaced=replaced)
