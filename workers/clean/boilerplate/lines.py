"""Line identities: how a line is folded and hashed so that copies of one furniture line
agree, for the learner to count them and for rules to pin them.

A line's key drops what varies between copies of the same furniture line (links, e-mail
addresses, handles, numbers); its hash is what the learner counts and the rules file
pins. A short byline-shaped line is also split into parts, each with a hash of its own
(`byline_parts`).
"""

from __future__ import annotations

import hashlib
import re

from workers.clean.matching import normalise_for_matching

# Lines longer than this are content without asking the rules: no furniture line is
# that long, and patterns like `\S+\s+...` backtrack quadratically on one huge token
# (a 40,000-character line took 18 s), which would let one bad input stall a worker.
MAX_RULE_LINE_CHARS = 1000

# A byline is short: "منيف الشهراني – الرياض", "عين اليوم - متابعات", "Name | Outlet".
BYLINE_MAX_WORDS = 6
BYLINE_PART_LABEL = "byline part: "

# Parts of a line that differ between otherwise identical furniture lines: the author's
# e-mail or handle, a link, a number ("أرسل رسالة تبدأ بالرمز (34)").
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
# ASCII on purpose: extracted text glues an address to the Arabic word after it
# ("name@yahoo.comللتواصل"), and `\w` would swallow that word too.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_HANDLE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{2,30}")
_DIGIT_RUN = re.compile(r"\d+")
_HAS_DIGIT = re.compile(r"\d")
# A run of words starting with a digit ("10 35", "2017م"), once digits are folded.
_NUMBER_RUN = re.compile(r"(?<!\S)\d\S*(?:\s+\d\S*)*")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Date and time words, as `normalise_for_matching` folds them: a marker followed by a date
# or a time ("آخر تحديث: الخميس 10 مارس 2017 - 11:02 صباحا") is one furniture line
# whatever the day. Folded only next to a number (see `_fold_dates`), because "صفر"
# (a month, and zero), "اب" (August in the Levant, and father), "may" and "sat" are words.
_MONTHS = _words(
    """
    يناير فبراير مارس ابريل مايو يونيو يوليو اغسطس سبتمبر اكتوبر نوفمبر ديسمبر
    كانون شباط اذار نيسان ايار حزيران تموز اب ايلول تشرين
    محرم صفر ربيع جمادي رجب شعبان رمضان شوال ذو ذي
    january february march april may june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec
    janvier fevrier avril mai juin juillet aout septembre octobre novembre decembre
    """
)
_WEEKDAYS = _words(
    """
    الاحد الاثنين الثلاثاء الاربعاء الخميس الجمعه السبت
    sunday monday tuesday wednesday thursday friday saturday sun mon tue wed thu fri sat
    dimanche lundi mardi mercredi jeudi vendredi samedi
    """
)
# Words of a date or time that follow the number: AM/PM, Hijri/Gregorian marks, GMT.
_TIME_MARKS = _words("صباحا مساء ص م ه am pm gmt utc ت بتوقيت")
# The second word of a two-word month ("كانون الثاني", "ذو القعده", "ربيع الاول").
_MONTH_TAILS = _words("الاول الثاني الاخر الاخره الاولي القعده الحجه")
# The same placeholder as a lone number's, so a line with one number keeps its key.
DATE_WORD = "0"
_DATE_WORDS = _MONTHS | _WEEKDAYS | _TIME_MARKS | _MONTH_TAILS


def _fold_dates(words: list[str]) -> list[str]:
    """Each run of numbers and date words that holds a number becomes one DATE_WORD:
    "الخميس 10 مارس 2017" and "السبت 2 ابريل 2018" fold alike, so do "10 35 صباحا" and
    "11 02 مساء". A weekday, month or time mark with no number in its run stays a word."""
    folded: list[str] = []
    run: list[str] = []
    numbered = False
    for word in [*words, ""]:  # "" closes the last run
        if word and (word[0].isdigit() or word in _DATE_WORDS):
            run.append(word)
            numbered = numbered or word[0].isdigit()
            continue
        if run:
            folded.extend([DATE_WORD] if numbered else run)
            run, numbered = [], False
        if word:
            folded.append(word)
    return folded


def line_key(line: str, folded: str | None = None) -> str:
    """A line folded so that copies of one furniture line agree: links, e-mail addresses
    and handles removed, matching normalisation, every digit run written "0", and every
    date or time (numbers with the month, weekday and AM/PM words around them) written
    DATE_WORD (`_fold_dates`). Empty when
    nothing is left (a bare address or separator: the rules handle those), and for a
    line over MAX_RULE_LINE_CHARS, which is never learned or pinned (see there).
    `folded`: the line's `normalise_for_matching`, when the caller has it."""
    if len(line) > MAX_RULE_LINE_CHARS:
        return ""
    if folded is None or _may_hold_address(line):
        line = _HANDLE.sub(" ", _EMAIL.sub(" ", _URL.sub(" ", line)))
        folded = normalise_for_matching(line)
    if not _HAS_DIGIT.search(folded):
        return folded  # most lines: no number, so no date either
    numbered = _DIGIT_RUN.sub("0", folded)
    words = numbered.split()
    if _DATE_WORDS.isdisjoint(words):
        # Most lines with a number name no date: only runs of numbers to join.
        return _NUMBER_RUN.sub(DATE_WORD, numbered)
    return " ".join(_fold_dates(words))


def _may_hold_address(line: str) -> bool:
    # Each of _URL, _EMAIL and _HANDLE needs one of these to match; most lines have none,
    # and then their matching normalisation is the key's, digits aside.
    return "@" in line or "://" in line or "www." in line.lower()


def line_hash(line: str, folded: str | None = None) -> str | None:
    """The identity the learner counts a line under (16 hex digits), or None."""
    key = line_key(line, folded)
    return hash_key(key) if key else None


def hash_key(key: str) -> str:
    """16 hex digits of a folded key (a line's, a byline part's, a link's)."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()


def comparable(text: str) -> str:
    """Matching normalisation with spaces dropped: NFKC, casefold, no punctuation, and the
    Arabic spelling variants outlets use when they reprint their own headline."""
    return normalise_for_matching(text).replace(" ", "")


# "Name – Outlet", "Outlet - City": a separator with a space on at least one side, so
# hyphenated words ("Al-Madina") do not split. Arabic typesetting also uses a tatweel
# after a space as the dash ("الرياضي ـ جدة"); after a letter it only stretches the word
# ("الـ 11").
TATWEEL = "\u0640"
BYLINE_SEPARATOR = re.compile(r"\s+[-–—|/ـ]\s*|\s*[-–—|/]\s+")


def byline_parts(line: str, folded: str | None = None) -> list[tuple[str, str]]:
    """(hash, text) of the parts of a short line made of separated parts, a byline's shape.
    Bylines vary by reporter and city, but their parts recur ("عين اليوم", "الرياض", a
    reporter's name), so the learner counts the parts too and a short edge line with a
    learned part is trimmed as a byline. Part hashes never equal line hashes. `folded`:
    the line's `normalise_for_matching`, when the caller has it."""
    stripped = line.strip()
    words = normalise_for_matching(stripped) if folded is None else folded
    if not 2 <= len(words.split()) <= BYLINE_MAX_WORDS:
        return []
    parts = [part for part in BYLINE_SEPARATOR.split(stripped) if part.strip()]
    if len(parts) < 2:
        return []
    found: list[tuple[str, str]] = []
    for part in parts:
        key = line_key(part)
        # A part without letters ("1 - ..." in a numbered list, a year) names no one.
        if key and any(ch.isalpha() for ch in key):
            found.append((hash_key(BYLINE_PART_LABEL + key), BYLINE_PART_LABEL + part.strip()))
    return found
