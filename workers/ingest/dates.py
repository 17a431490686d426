"""Normalise the many date spellings found in news inputs to ISO 8601.

Pure and total: anything it cannot read becomes "" so a bad date never costs a document.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
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
    and RFC 2822 ("Sun, 18 Feb 2018 21:35:43 +0400"). Naive inputs stay naive: inventing
    a timezone would be a guess; epoch values are UTC by definition.
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
    if not math.isfinite(value) or value < 0:
        return ""
    if value > _EPOCH_MS_THRESHOLD:
        value = value / 1000
    try:
        return datetime.fromtimestamp(value, tz=UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return ""


def _from_string(text: str) -> str:
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
    return ""


def _try_format(text: str, fmt: str) -> str:
    try:
        return datetime.strptime(text, fmt).isoformat()
    except ValueError:
        return ""
