"""Normalise the many date spellings found in news inputs to ISO 8601.

Pure and total: anything it cannot read becomes "" so a bad date never costs a document.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from email.utils import parsedate_to_datetime

# Epoch values above this are taken as milliseconds (1e11 s is the year 5138, 1e11 ms 1973).
_EPOCH_MS_THRESHOLD = 100_000_000_000
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
# A few spellings fromisoformat() and RFC 2822 both refuse but feeds and dumps do use.
_EXTRA_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d")


def parse_date(value: object) -> str:
    """Return `value` as `datetime.isoformat()`, or "" when it is not a readable date.

    Accepts datetimes, dates, epoch seconds (int, float or digit string; milliseconds
    when implausibly large), ISO 8601 including "YYYY-MM-DD HH:MM:SS" and a trailing "Z",
    RFC 2822 ("Sun, 18 Feb 2018 21:35:43 +0400"), and a day, month name and year in
    English or Arabic ("1 August 2015", "August 1, 2015", "السبت 1 أغسطس 2015م",
    "1 آب 2015 10:30"); Arabic-Indic and Persian digits as ASCII ones. Numeric day/month
    orders ("01/08/2015") are not read: which comes first would be a guess. Naive inputs
    stay naive: inventing a timezone would be a guess; epoch values are UTC by definition.
    """
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day).isoformat()
    if isinstance(value, bool):  # bool is an int, but True is never a date
        return ""
    if isinstance(value, int | float):
        return _from_epoch(value)
    if isinstance(value, str):
        return _from_string(value.strip())
    return ""


def _from_epoch(value: float) -> str:
    try:
        # An int too large for a float (10**400) overflows already in isfinite.
        if not math.isfinite(value) or value < 0:
            return ""
        if value > _EPOCH_MS_THRESHOLD:
            value = value / 1000
        return datetime.fromtimestamp(value, tz=UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return ""


# Arabic-Indic and Persian digits, which Arabic sites print dates in, read as ASCII ones;
# the Arabic comma as a comma.
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹،", "01234567890123456789,")

# Gregorian month names: English, and the Arabic names of each region (Egypt and the
# Gulf; the Levant and Iraq; the Maghreb; Tunisia and Algeria), written as `_month_spelling`
# writes them (alef without hamza or madda). A Hijri month is not here: its date stays
# unread rather than misread.
_MONTH_NAMES = (
    ("january", "jan", "يناير", "كانون الثاني", "جانفي"),
    ("february", "feb", "فبراير", "شباط", "فيفري"),
    ("march", "mar", "مارس", "اذار"),
    ("april", "apr", "ابريل", "نيسان", "افريل"),
    ("may", "مايو", "ايار", "ماي"),
    ("june", "jun", "يونيو", "يونيه", "حزيران", "جوان"),
    ("july", "jul", "يوليو", "يوليه", "تموز", "يوليوز", "جويليه", "جويلية"),
    ("august", "aug", "اغسطس", "اب", "غشت", "اوت"),
    ("september", "sep", "sept", "سبتمبر", "ايلول", "شتنبر"),
    ("october", "oct", "اكتوبر", "تشرين الاول"),
    ("november", "nov", "نوفمبر", "تشرين الثاني", "نونبر"),
    ("december", "dec", "ديسمبر", "كانون الاول", "دجنبر"),
)
_MONTHS = {name: number for number, names in enumerate(_MONTH_NAMES, 1) for name in names}
_MONTH = "|".join(sorted(map(re.escape, _MONTHS), key=len, reverse=True))
_TIME = (
    r"(?:\s*[,|-]?\s*(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?"
    r"(?:\s*(?P<zone>[+-]\d{2}:?\d{2}|gmt|utc|z))?)?"
)
# "1 August 2015", "السبت 1 أغسطس 2015م 10:30", "August 1, 2015": an optional weekday
# (or any words) before, an optional time after, nothing else.
_DAY_MONTH_YEAR = re.compile(
    rf"(?:[^\d,]+,?\s+)?(?P<day>\d{{1,2}})\s+(?P<month>{_MONTH})\.?,?\s+(?P<year>\d{{4}})م?" + _TIME
)
_MONTH_DAY_YEAR = re.compile(
    rf"(?:[^\d,]+,\s+)?(?P<month>{_MONTH})\.?\s+(?P<day>\d{{1,2}}),?\s+(?P<year>\d{{4}})" + _TIME
)


def _month_spelling(text: str) -> str:
    """Lower case, alef without hamza or madda, no tatweel: how `_MONTHS` is written."""
    return text.lower().translate(str.maketrans("أإآ", "ااا", "ـ"))


def _from_month_name(text: str) -> str:
    plain = " ".join(_month_spelling(text).split())
    for pattern in (_DAY_MONTH_YEAR, _MONTH_DAY_YEAR):
        found = pattern.fullmatch(plain)
        if found is None:
            continue
        parts = found.groupdict()
        try:
            return datetime(
                int(parts["year"]),
                _MONTHS[parts["month"]],
                int(parts["day"]),
                int(parts["hour"] or 0),
                int(parts["minute"] or 0),
                int(parts["second"] or 0),
                tzinfo=_zone(parts["zone"]),
            ).isoformat()
        except ValueError:
            return ""
    return ""


def _zone(spelled: str | None) -> tzinfo | None:
    """ "+0300", "+03:00", "GMT", "UTC" or "Z" as a fixed offset; None (naive) for none."""
    if spelled is None:
        return None
    if spelled in ("gmt", "utc", "z"):
        return UTC
    digits = spelled[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return timezone(-offset if spelled[0] == "-" else offset)


def _from_string(text: str) -> str:
    text = text.translate(_DIGITS)
    if not text:
        return ""
    if _NUMBER.fullmatch(text):
        # "20180218" is a compact ISO date, not 1970-08-22 in epoch seconds.
        if len(text) == 8 and text.isdigit():
            return _try_format(text, "%Y%m%d")
        return _from_epoch(float(text))
    try:  # 3.11's fromisoformat reads most ISO 8601, a trailing "Z" and a space separator
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(text).isoformat()
    except (TypeError, ValueError, IndexError):
        pass
    for fmt in _EXTRA_FORMATS:
        if parsed := _try_format(text, fmt):
            return parsed
    return _from_month_name(text)


def _try_format(text: str, fmt: str) -> str:
    try:
        return datetime.strptime(text, fmt).isoformat()
    except ValueError:
        return ""
