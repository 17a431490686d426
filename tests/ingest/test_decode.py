from __future__ import annotations

import codecs
import random

import pytest
from conftest import ROOT

from workers.ingest.decode import (
    DecodeError,
    codec_for_label,
    declared_html_encoding,
    decode_bytes,
)

pytestmark = pytest.mark.unit

SEED = (ROOT / "seeds" / "000_b1ab6303fef3538a.txt").read_text(encoding="utf-8")
ARABIC = (
    "أعلنت وزارة الداخلية اليوم عن نجاح العملية الأمنية في مدينة حلب.\n"
    "وقال المتحدث إن التحقيق مستمر."
)


def test_plain_utf8() -> None:
    result = decode_bytes(SEED.encode("utf-8"))
    assert result.text == SEED
    assert result.encoding == "utf-8"
    assert result.replaced == 0


def test_utf8_bom_is_removed() -> None:
    result = decode_bytes(codecs.BOM_UTF8 + ARABIC.encode("utf-8"))
    assert result.text == ARABIC
    assert result.encoding == "utf-8-sig"


def test_cp1256_arabic() -> None:
    result = decode_bytes(SEED.encode("cp1256", errors="replace"))
    assert result.encoding == "windows-1256"
    assert "داعش الإسكندرية" in result.text
    assert result.replaced == 0


def test_short_cp1256_arabic() -> None:
    result = decode_bytes(ARABIC.encode("cp1256"))
    assert (result.text, result.encoding) == (ARABIC, "windows-1256")


@pytest.mark.parametrize(
    ("payload", "encoding"),
    [
        (codecs.BOM_UTF16_LE + ARABIC.encode("utf-16-le"), "utf-16-le"),
        (codecs.BOM_UTF16_BE + ARABIC.encode("utf-16-be"), "utf-16-be"),
        (codecs.BOM_UTF32_LE + ARABIC.encode("utf-32-le"), "utf-32-le"),
    ],
)
def test_utf16_and_32_with_bom(payload: bytes, encoding: str) -> None:
    result = decode_bytes(payload)
    assert (result.text, result.encoding) == (ARABIC, encoding)


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("text", [ARABIC, "Plain English news text.\nSecond line.", "خبرعاجل"])
def test_utf16_without_bom(codec: str, text: str) -> None:
    # "خبرعاجل" has no space, so its UTF-16 has no NUL byte at all.
    result = decode_bytes(text.encode(codec))
    assert (result.text, result.encoding) == (text, codec)


def test_few_invalid_utf8_bytes_are_replaced_and_counted() -> None:
    data = bytearray(SEED.encode("utf-8"))
    data[100:100] = b"\xff"
    data[2000:2000] = b"\xc0\xc1"  # two bad bytes in one place
    result = decode_bytes(bytes(data))
    assert result.encoding == "utf-8"
    assert result.replaced == result.text.count("\ufffd") >= 2
    assert "المزيد من الأخبار" in result.text


def test_literal_replacement_character_is_not_counted() -> None:
    result = decode_bytes(
        "نص \ufffd سليم".encode() + b"\xff" + " نص عربي طويل بما يكفي".encode() * 20
    )
    assert result.replaced == 1
    assert result.text.count("\ufffd") == 2


def test_mostly_invalid_is_undecodable() -> None:
    data = bytes(range(0x80, 0x100)) * 4  # no NUL/control bytes, not UTF-8, not Arabic
    with pytest.raises(DecodeError) as info:
        decode_bytes(data)
    assert info.value.reason == "undecodable"


def test_random_binary() -> None:
    data = random.Random(0).randbytes(4096)
    with pytest.raises(DecodeError) as info:
        decode_bytes(data)
    assert info.value.reason == "binary"


def test_control_heavy_bytes_without_nul_are_binary() -> None:
    data = b"abc\x01\x02\x03\x04def\x05\x06\x07ghi" * 10
    with pytest.raises(DecodeError) as info:
        decode_bytes(data)
    assert info.value.reason == "binary"


def test_nul_in_utf8_text_is_binary() -> None:
    with pytest.raises(DecodeError) as info:
        decode_bytes(ARABIC.encode("utf-8") + b"\x00" + ARABIC.encode("utf-8"))
    assert info.value.reason == "binary"


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n", codecs.BOM_UTF8, "\u00a0\u200b\n".encode()])
def test_empty(data: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_bytes(data)
    assert info.value.reason == "empty"


def test_never_crashes_on_arbitrary_bytes() -> None:
    rng = random.Random(1)
    for size in (1, 2, 3, 7, 64, 513):
        for _ in range(200):
            data = rng.randbytes(size)
            try:
                result = decode_bytes(data)
            except DecodeError as exc:
                assert exc.reason in {"binary", "undecodable", "empty"}
            else:
                assert result.text.strip()


# ------------------------------------------------------------ declared encodings (HTML)

CHINESE = "国家统计局周二发布数据显示，十一月份全国规模以上工业增加值同比增长。"
JAPANESE = "政府は五日、来年度の予算案の概要を発表した。"
RUSSIAN = "Правительство утвердило проект бюджета на следующий год."


@pytest.mark.parametrize(
    ("head", "text", "codec", "expected"),
    [
        ('<meta charset="gb2312">', CHINESE, "gbk", "gb18030"),
        ("<META CHARSET=GBK>", CHINESE, "gbk", "gb18030"),
        (
            '<meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS" />',
            JAPANESE,
            "cp932",
            "cp932",
        ),
        ("<?xml version='1.0' encoding='windows-1251'?>", RUSSIAN, "cp1251", "cp1251"),
        ('<meta charset="big5">', "政府公布明年度預算案。", "big5", "big5hkscs"),
        ('<meta charset="euc-kr">', "정부는 내년도 예산안을 발표했다.", "euc-kr", "cp949"),
    ],
)
def test_an_html_page_is_read_in_the_encoding_it_declares(
    head: str, text: str, codec: str, expected: str
) -> None:
    page = f"<html><head>{head}<title>t</title></head><body><p>{text}</p></body></html>"
    data = page.encode(codec)
    declared = declared_html_encoding(data)
    with pytest.raises(DecodeError, match="not valid UTF-8"):
        decode_bytes(data)  # without the declaration nothing can read it
    result = decode_bytes(data, declared)
    assert (result.text, result.encoding, result.replaced) == (page, expected, 0)


def test_declared_latin1_reads_as_windows_1252() -> None:
    # Pages labelled ISO-8859-1 use windows-1252's curly quotes and euro sign.
    page = '<meta charset="iso-8859-1"><p>“Le café coûte 3 €”</p>'
    data = page.encode("cp1252")
    assert decode_bytes(data, declared_html_encoding(data)).text == page


def test_valid_utf8_wins_over_a_wrong_declaration() -> None:
    page = f'<meta charset="iso-8859-1"><p>{ARABIC} {CHINESE}</p>'
    data = page.encode("utf-8")
    assert declared_html_encoding(data) == "iso-8859-1"
    assert decode_bytes(data, "iso-8859-1") == decode_bytes(data)
    assert decode_bytes(data, "iso-8859-1").encoding == "utf-8"


@pytest.mark.parametrize("label", ["", "no-such-charset", "base64", "x-user-defined", "utf-16"])
def test_unknown_or_impossible_labels_change_nothing(label: str) -> None:
    # Unknown labels and codecs that are not text encodings are ignored; a UTF-16 label in
    # a page the prescan could read is wrong by construction and reads as UTF-8.
    legacy = ARABIC.encode("cp1256")
    assert decode_bytes(legacy, label) == decode_bytes(legacy)
    assert codec_for_label(label) in (None, "utf-8")


def test_a_declaration_that_does_not_fit_the_bytes_falls_back_to_guessing() -> None:
    # Labelled Shift_JIS, written in cp1256: most bytes are invalid Shift_JIS, so the
    # label is not believed and the Arabic code page is recognised as without it.
    data = ARABIC.encode("cp1256")
    result = decode_bytes(data, "shift_jis")
    assert (result.text, result.encoding) == (ARABIC, "windows-1256")


def test_only_the_head_is_searched_for_a_declaration() -> None:
    late = b"<html><head><title>t</title></head><body>" + b"x" * 5000 + b'<meta charset="gbk">'
    assert declared_html_encoding(late) == ""
    assert declared_html_encoding(b"<p>no declaration</p>") == ""
