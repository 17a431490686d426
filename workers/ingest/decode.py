"""Turn raw input bytes into text, guessing the encoding the way news archives need.

Order matters: a BOM is authoritative; UTF-16 without a BOM must be recognised before the
binary check (its NUL bytes would otherwise look binary); strict UTF-8 is tried before the
encoding a page declares (pages labelled ISO-8859-1 that are really UTF-8 are common, and
valid UTF-8 is almost never a legacy encoding by accident); UTF-8 with a few corrupt bytes
keeps its text (the bad bytes replaced) instead of being dead-lettered.

An HTML page names its encoding in its head (`<meta charset>`, `<meta http-equiv>`, an
XML declaration: `declared_html_encoding`). Anything else that is not UTF-8 (a .txt
archive in windows-1252, KOI8-R, Shift_JIS, ISO-8859-7...) is recognised by
charset_normalizer among the legacy encodings news archives use (`_LEGACY_CODECS`), with
the legacy Arabic code page, windows-1256, as the answer when the detector has no clean
one and the bytes read as Arabic. A guess the detector is not sure of sends the input to
`dead` rather than publishing misread text.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

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
# Mostly-UTF-8 with a few corrupt bytes: at least this many valid non-ASCII characters per
# bad sequence. A legacy file has (almost) none, so a Latin-1 text with one accented letter in
# 10 KB goes to the detector instead of losing the letter to U+FFFD.
_MIN_UTF8_CHARS_PER_BAD_BYTE = 4
# charset_normalizer's "mess" of the text its guess decodes (0 = clean). A guess is taken
# when it is clean, or nearly clean and recognisably a language (coherence); a messier
# guess is a misreading (short Arabic read as Greek scores 0.16, a run of corrupt bytes
# read as windows-1251 0.08 with no language).
_MAX_CLEAN_CHAOS = 0.05
_MAX_CHAOS_WITH_LANGUAGE = 0.15
_MIN_COHERENCE = 0.1
# The encodings the detector may answer: those news archives and pages were written in
# (Windows and ISO code pages of each script, KOI8, the CJK ones), not DOS or EBCDIC code
# pages, whose guesses on short texts are misreadings. The order is the preference among
# readings that score the same (`_reading_score`): windows-1252 first, the commonest
# legacy encoding by far, then the Arabic code page.
_LEGACY_CODECS = [
    "cp1252",
    "cp1256",
    "cp1251",
    "koi8_r",
    "cp1250",
    "cp1253",
    "iso8859_7",
    "cp1254",
    "cp1255",
    "cp1257",
    "cp1258",
    "iso8859_2",
    "iso8859_5",
    "iso8859_6",
    "iso8859_8",
    "iso8859_13",
    "iso8859_15",
    "iso8859_16",
    "koi8_u",
    "gb18030",
    "cp932",
    "euc_jp",
    "big5hkscs",
    "cp949",
    "cp874",
]
# A reading is scored on its first characters: enough to tell code pages apart.
_SCORED_CHARS = 20_000
# Readings with more odd words than this share of their words are misreadings. Real
# Arabic news reaches 0.13 on its first 80 characters (hashtags, "وNexus"; 6,431
# SaudiNewsNet and ANT texts at 80, 400 and 3,000 characters, 99.9% under 0.03); KOI8-R
# Russian read as windows-1256 scores 0.34 and more.
_MAX_ODD_WORD_SHARE = 0.2
# A declared encoding is overruled only on this many words beyond ASCII (`_misread`).
_MIN_WORDS_TO_JUDGE = 5
# ISO-2022-JP (7-bit Japanese mail and news) switches to JIS X 0208 with one of these.
_ISO2022_JP_ESCAPES = (b"\x1b$B", b"\x1b$@")

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


def has_bom(data: bytes) -> bool:
    """Whether `data` starts with a UTF-8, UTF-16 or UTF-32 byte order mark."""
    return data.startswith(tuple(bom for bom, _, _ in _BOMS))


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

    if any(escape in data for escape in _ISO2022_JP_ESCAPES):
        try:
            return _finish(data.decode("iso2022_jp"), "iso2022_jp", 0)
        except UnicodeDecodeError:
            pass

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
        if bad <= len(data) * _MAX_BAD_BYTE_SHARE and not _misread(text):
            return _finish(text, declared_codec, replaced)

    # The encoding is judged on a sample (the detector and the scoring cost time in
    # proportion to what they read); the whole file is then decoded in it.
    sample = _sample(data)
    utf8 = _mostly_utf8(sample)
    if utf8 is not None and sample is not data:
        utf8 = _mostly_utf8(data)
    if utf8 is not None and _non_ascii(utf8[0]) >= utf8[2] * _MIN_UTF8_CHARS_PER_BAD_BYTE:
        return _finish(*utf8)
    detected = _detect_legacy(sample)
    # Bytes that read as Arabic in windows-1256 are windows-1256, unless the detector reads
    # them cleanly in another script (KOI8-R Russian also falls on cp1256's Arabic letters)
    # or in a rarer Arabic code page with fewer odd words (ISO-8859-6's letters read as
    # "è" and "ê" inside Arabic words in cp1256). On a short text the detector may rank
    # ISO-8859-6 first for windows-1256 bytes; the tie goes to windows-1256, far commoner.
    # A windows-1256 reading with odd words throughout ("×" or "ë" inside Arabic words: a
    # short KOI8-R line) is no Arabic either.
    arabic = sample.decode("cp1256", errors="replace")
    arabic_odd, arabic_words = _reading_score(arabic[:_SCORED_CHARS])
    if (
        _reads_as_arabic(arabic)
        and arabic_odd <= arabic_words * _MAX_ODD_WORD_SHARE
        and (
            detected is None
            or (_reads_as_arabic(detected.text) and arabic_odd <= detected.odd_words)
        )
    ):
        return _finish(data.decode("cp1256", errors="replace"), "windows-1256", 0)
    if detected is not None:
        legacy, legacy_bad, legacy_replaced = _lenient(data, detected.codec)
        if legacy_bad <= len(data) * _MAX_BAD_BYTE_SHARE:
            return _finish(legacy, codecs.lookup(detected.codec).name, legacy_replaced)
    if utf8 is not None:
        return _finish(*utf8)
    raise DecodeError("undecodable", "neither UTF-8 nor a recognisable legacy encoding")


def _mostly_utf8(data: bytes) -> tuple[str, str, int] | None:
    """(text, "utf-8", U+FFFD substituted) when at most `_MAX_BAD_BYTE_SHARE` of `data` is
    invalid UTF-8, else None."""
    text, bad, replaced = _lenient(data, "utf-8")
    if bad > len(data) * _MAX_BAD_BYTE_SHARE:
        return None
    return text, "utf-8", replaced


# How much of a legacy file its encoding is judged on.
_SAMPLE_BYTES = 64 * 1024


def _sample(data: bytes) -> bytes:
    """The first `_SAMPLE_BYTES` of `data`, cut after a newline or space: bytes that are
    never the second byte of a Shift_JIS, GBK, Big5 or EUC character, so the cut never
    splits one."""
    if len(data) <= _SAMPLE_BYTES:
        return data
    cut = max(data.rfind(b"\n", 0, _SAMPLE_BYTES), data.rfind(b" ", 0, _SAMPLE_BYTES))
    return data[: cut + 1] if cut > 0 else data[:_SAMPLE_BYTES]


@dataclass(frozen=True, slots=True)
class _Reading:
    codec: str
    text: str
    odd_words: int  # `_reading_score` of its first `_SCORED_CHARS`


def _detect_legacy(data: bytes) -> _Reading | None:
    """The legacy encoding `data` reads best in, when the reading is clean; else None.

    charset_normalizer proposes the readings whose text is not a mess; on short texts it
    cannot rank them ("élèves" reads as windows-1250's "élčves" or as Big5 ideographs as
    well as in windows-1252), so each is scored by its odd words (`_reading_score`), then
    by the accented Latin letters no one alphabet holds (`_foreign_letters`), then by the
    detector's mess and language coherence, then by `_LEGACY_CODECS` order.
    """
    import charset_normalizer  # only inputs that are not UTF-8 need it (~40 ms to import)

    readings = []
    for match in charset_normalizer.from_bytes(data, cp_isolation=_LEGACY_CODECS):
        if match.chaos > _MAX_CLEAN_CHAOS and (
            match.chaos > _MAX_CHAOS_WITH_LANGUAGE or match.coherence < _MIN_COHERENCE
        ):
            continue
        try:
            text = data.decode(match.encoding)
        except (UnicodeDecodeError, LookupError):
            continue
        scored = text[:_SCORED_CHARS]
        odd, words = _reading_score(scored)
        if odd > words * _MAX_ODD_WORD_SHARE:
            continue
        preference = _LEGACY_CODECS.index(match.encoding)
        foreign = _foreign_letters(scored)
        rank = (odd, foreign, round(match.chaos, 2), -round(match.coherence, 2), preference)
        readings.append((rank, _Reading(str(match.encoding), text, odd)))
    return min(readings, key=lambda reading: reading[0])[1] if readings else None


def _misread(text: str) -> bool:
    """Whether a text decoded in the encoding its input declares reads as a misreading:
    most of its words with letters beyond ASCII are odd (`_reading_score`), as windows-1256
    Arabic declared ISO-8859-1 reads "ÚäæÇä ÇáÎÈÑ". The words all in ASCII are left out:
    a page's markup and scripts would outnumber its text. A single-byte label decodes any
    bytes, so only the reading can tell such a label is wrong."""
    beyond = [word for word in text[: _SCORED_CHARS * 4].split() if not word.isascii()]
    odd, words = _reading_score(" ".join(beyond)[:_SCORED_CHARS])
    return words >= _MIN_WORDS_TO_JUDGE and odd > words * _MAX_ODD_WORD_SHARE


def _reading_score(text: str) -> tuple[int, int]:
    """(odd words, words) of a decoded text. A word is a run of letters and combining
    marks; it is odd when its letters mix scripts ("Zьrich", "Les 幨鋦es" are misread
    bytes; real words keep to one script), when a capital follows a small letter inside
    it (Arabic read as windows-1251 gives "ТбТЗб"), or when a symbol other than ordinary
    punctuation is glued to it ("¶ρθρο" is windows-1253's reading of ISO-8859-7's "Άρθρο").
    Real text has a few such words ("iPhone"), misread text has them throughout."""
    odd = words = 0
    scripts: set[str] = set()
    odd_word = in_word = small_seen = False
    previous_symbol = False  # the character before is a symbol that is not punctuation
    for ch in text:
        kind = _kind(ch)
        if kind in ("small", "capital", "letter", "mark"):
            if not in_word:
                in_word, scripts, odd_word, small_seen = True, set(), previous_symbol, False
            if kind != "mark":
                scripts.add(_script(ch))
                odd_word = odd_word or (kind == "capital" and small_seen)
                small_seen = small_seen or kind == "small"
            previous_symbol = False
            continue
        symbol = kind == "symbol"
        if in_word:
            words += 1
            odd += odd_word or symbol or len(scripts) > 1
            in_word = False
        previous_symbol = symbol
    if in_word:
        words += 1
        odd += odd_word or len(scripts) > 1
    return odd, words


@lru_cache(maxsize=8192)
def _kind(ch: str) -> str:
    """The kind of a character: "small", "capital", "letter" (of a script without
    case), "mark" (combining, as Thai vowels and Arabic harakat), "symbol" (not space,
    digit or the punctuation written against words), or "other"."""
    category = unicodedata.category(ch)
    if category == "Ll":
        return "small"
    if category in ("Lu", "Lt"):
        return "capital"
    if category[0] == "L":
        return "letter"
    if category[0] == "M":
        return "mark"
    if category[0] in "NZC" or ch.isspace() or ch in _GLUED_PUNCTUATION:
        return "other"
    return "symbol"


def _foreign_letters(text: str) -> int:
    """How many of the text's distinct accented Latin letters the Latin alphabet that
    holds most of them lacks. A text is written in one language: Turkish read as
    windows-1252 has "þ" and "ý" (Icelandic) beside "ç" and "ü", which no alphabet has
    together; read as windows-1254 its "ş", "ı", "ğ", "ç", "ü" are all Turkish."""
    letters = {ch.lower()[0] for ch in _ACCENTED_LATIN.findall(text)}
    if not letters:
        return 0
    return min(len(letters - alphabet) for alphabet in _LATIN_ALPHABETS)


# Latin letters beyond ASCII (Latin-1 Supplement, Latin Extended-A and -B, the Romanian
# comma-below letters), the ones a code page can misread.
_ACCENTED_LATIN = re.compile("[\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0218-\u021b]")
# The accented letters of the languages written in Latin legacy code pages.
_LATIN_ALPHABETS = tuple(
    frozenset(letters)
    for letters in (
        "àâæçéèêëîïôœùûüÿ",  # French
        "äöüß",  # German
        "áéíñóúü",  # Spanish
        "áâãàçéêíóôõú",  # Portuguese
        "àèéìíîòóùú",  # Italian
        "àçèéíïòóúü",  # Catalan
        "áéëíïóöúü",  # Dutch
        "åæøäöé",  # Danish, Norwegian, Swedish
        "áðéíóúýþæö",  # Icelandic
        "äöåšž",  # Finnish
        "âçğıîöşûü",  # Turkish
        "ąćęłńóśźż",  # Polish
        "áčďéěíňóřšťúůýž",  # Czech
        "áäčďéíĺľňóôŕšťúýž",  # Slovak
        "áéíóöőúüű",  # Hungarian
        "ăâîșțşţ",  # Romanian
        "čćđšž",  # Croatian, Bosnian, Serbian, Slovene
        "āčēģīķļņšūž",  # Latvian
        "ąčęėįšųūž",  # Lithuanian
        "äöõüšž",  # Estonian
        "çë",  # Albanian
    )
)


# Punctuation written against a word in real text: quotes, apostrophes, brackets, dashes.
_GLUED_PUNCTUATION = frozenset(
    "'\"’‘“”«»„‚‹›()[]{}-–—.,;:!?¿¡/%&*#@+=<>|~…·•،؛؟٪_"
    "。、，．：；！？「」『』（）《》〈〉【】〔〕・〜～"
)
# Scripts written together in one run of letters: Japanese mixes kanji and kana, and CJK
# text carries full-width Latin letters and digits.
_CJK_FAMILY = frozenset(
    {"CJK", "HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA", "FULLWIDTH", "HALFWIDTH"}
)


@lru_cache(maxsize=4096)
def _script(ch: str) -> str:
    """The script a letter belongs to, as the first word of its Unicode name (LATIN,
    CYRILLIC, ARABIC, CJK...); kanji, kana and full-width forms count as one script."""
    script = unicodedata.name(ch, "").split(" ", 1)[0]
    return "CJK" if script in _CJK_FAMILY else script


def _non_ascii(text: str) -> int:
    """Characters beyond ASCII, U+FFFD aside: what valid multi-byte UTF-8 decoded to."""
    return len(text) - len(text.encode("ascii", errors="ignore")) - text.count("\ufffd")


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


# The charset parameter of an HTTP Content-Type header.
_CONTENT_TYPE_CHARSET = re.compile(
    r";\s*charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:()+-]+)", re.IGNORECASE
)


def declared_page_encoding(data: bytes, content_type: str = "") -> str:
    """The encoding label a fetched page is declared in: its HTTP Content-Type's charset,
    which the HTML standard ranks above what the page says of itself, else its head's."""
    found = _CONTENT_TYPE_CHARSET.search(content_type)
    if found and codec_for_label(found.group(1)) is not None:
        return found.group(1)
    return declared_html_encoding(data)


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


# A byte surrogateescape could not decode.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _lenient(payload: bytes, codec: str) -> tuple[str, int, int]:
    """Decode with replacement; return (text, bad byte count, U+FFFD substituted).

    "replace" emits one U+FFFD per bad *sequence*, so bad bytes are counted separately via
    surrogateescape (one lone surrogate per byte). Subtracting the U+FFFD already present
    in the escaped text keeps genuine U+FFFD in the input from being counted.
    """
    try:
        return payload.decode(codec), 0, 0
    except UnicodeDecodeError:
        pass
    escaped = payload.decode(codec, errors="surrogateescape")
    # A regex scan: a Python loop over the characters took seconds on a 5 MB file.
    bad = sum(1 for _ in _ESCAPED_BYTE.finditer(escaped))
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


def _reads_as_arabic(text: str) -> bool:
    """Whether most of the text's non-ASCII characters are in the Arabic block."""
    non_ascii = _NON_ASCII.findall(text)
    if not non_ascii:
        return False
    arabic = sum(1 for ch in non_ascii if "\u0600" <= ch <= "\u06ff")
    return arabic >= len(non_ascii) * _MIN_CP1256_ARABIC_SHARE


_NON_ASCII = re.compile(r"[^\x00-\x7f\s]")


def _control_chars(text: str) -> int:
    # A regex scan: a Python loop over the characters took 9 s on a 20 MB file.
    return sum(1 for _ in _CONTROL_CHAR.finditer(text))


def _finish(text: str, encoding: str, replaced: int) -> Decoded:
    if not text.strip().strip(_INVISIBLE).strip():
        raise DecodeError("empty", f"no text after decoding as {encoding}")
    if _control_chars(text) > len(text) * _MAX_CONTROL_SHARE:
        raise DecodeError("binary", f"too many control characters after decoding as {encoding}")
    return Decoded(text=text, encoding=encoding, replaced=replaced)
