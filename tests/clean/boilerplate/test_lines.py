"""Line keys and byline parts: what the learner counts a line under."""

from __future__ import annotations

import pytest

from workers.clean.boilerplate.lines import byline_parts, line_hash, line_key

pytestmark = pytest.mark.unit


def test_line_keys_fold_addresses_and_numbers() -> None:
    glued = "a.b@yahoo.comللتواصل مع الكاتب ارسل رسالة SMS تبدأ بالرمز (3)"
    plain = "للتواصل مع الكاتب أرسل رسالة sms تبدأ بالرمز (٨٤)"
    assert line_key(glued) == line_key(plain) == "للتواصل مع الكاتب ارسل رساله sms تبدا بالرمز 0"
    assert line_hash("news@example.com") is None
    assert line_hash("-----") is None


def test_a_number_is_no_byline_part() -> None:
    # Numbered list items ("1 - <name> <points>") share their "0" part with every list:
    # learning it would trim list items at the edges as bylines.
    assert [text for _, text in byline_parts("1 - الأميركية سيرينا ويليامس 12371 نقطة")] == [
        "byline part: الأميركية سيرينا ويليامس 12371 نقطة"
    ]
