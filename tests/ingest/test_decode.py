from __future__ import annotations

import codecs
import json
import random

import pytest
from conftest import ROOT

from workers.ingest.decode import (
    DecodeError,
    codec_for_label,
    declared_html_encoding,
    declared_page_encoding,
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


# ------------------------------------------------------ undeclared legacy encodings

# Two or three sentences of news in each language, as a .txt archive or a page without
# a declaration holds them.
LEGACY_TEXTS = {
    "french": "Le gouvernement a annoncé mercredi une réforme des retraites. Les syndicats "
    "ont réagi avec colère à cette décision prise sans concertation préalable. « C'est "
    "inacceptable », a déclaré leur secrétaire général.",
    "german": "Die Bundesregierung hat am Mittwoch neue Maßnahmen zur Stärkung der Wirtschaft "
    "beschlossen. Nach Angaben des Finanzministers kosten sie rund zwölf Milliarden Euro "
    "und gelten bis Ende des nächsten Jahres.",
    "polish": "Rząd ogłosił w środę nowe środki wsparcia gospodarki. Według ministra "
    "finansów program będzie kosztował około dwóch miliardów złotych i potrwa do końca "
    "przyszłego roku, a samorządy w Łodzi i Wrocławiu dostaną dodatkowe pieniądze.",
    "russian": "Правительство России объявило в среду о новых мерах поддержки экономики. По "
    "словам министра финансов, программа будет стоить около триллиона рублей и продлится "
    "до конца следующего года.",
    "greek": "Η κυβέρνηση ανακοίνωσε σήμερα νέα μέτρα για την οικονομία. Σύμφωνα με τον "
    "υπουργό Οικονομικών, το πρόγραμμα θα κοστίσει περίπου δύο δισεκατομμύρια ευρώ. Άλλα "
    "μέτρα θα ακολουθήσουν τον Ιανουάριο.",
    "turkish": "Hükümet çarşamba günü ekonomiyi desteklemek için yeni önlemler açıkladı. "
    "Maliye bakanına göre program yaklaşık bir trilyon liraya mal olacak ve gelecek yılın "
    "sonuna kadar sürecek.",
    "hebrew": "הממשלה הודיעה ביום רביעי על צעדים חדשים לתמיכה בכלכלה. לדברי שר האוצר, "
    "התוכנית תעלה כטריליון שקלים ותימשך עד סוף השנה הבאה.",
    "arabic": ARABIC,
    "japanese": "政府は水曜日、経済を支援するための新たな措置を発表した。財務大臣によると、"
    "この計画の費用は約一兆円で、来年末まで続く見通しだ。野党は「効果が不透明だ」と批判している。",
    "chinese": "政府周三宣布了支持经济的新措施。据财政部长称，该计划将耗资约一万亿元，"
    "并将持续到明年年底。",
    "traditional_chinese": "政府週三宣布了支持經濟的新措施。據財政部長稱，該計劃將耗資約一萬億元，"
    "並將持續到明年年底。",
    "korean": "정부는 수요일 경제를 지원하기 위한 새로운 조치를 발표했다. 재무장관에 따르면 이 "
    "계획의 비용은 약 1조 원이며 내년 말까지 계속될 전망이다.",
    "thai": "รัฐบาลประกาศมาตรการใหม่เพื่อสนับสนุนเศรษฐกิจเมื่อวันพุธ "
    "รัฐมนตรีกระทรวงการคลังกล่าวว่าโครงการนี้จะมีค่าใช้จ่ายประมาณหนึ่งล้านล้านบาท",
}


@pytest.mark.parametrize(
    ("language", "codec"),
    [
        ("french", "latin-1"),
        ("french", "cp1252"),
        ("german", "cp1252"),
        ("polish", "cp1250"),
        ("polish", "iso8859_2"),
        ("russian", "cp1251"),
        ("russian", "koi8_r"),
        ("greek", "iso8859_7"),
        ("greek", "cp1253"),
        ("turkish", "cp1254"),
        ("hebrew", "cp1255"),
        ("arabic", "cp1256"),
        ("arabic", "iso8859_6"),
        ("japanese", "cp932"),
        ("japanese", "euc_jp"),
        ("japanese", "iso2022_jp"),
        ("chinese", "gbk"),
        ("traditional_chinese", "big5"),
        ("korean", "euc_kr"),
        ("thai", "tis-620"),
    ],
)
def test_an_undeclared_legacy_encoding_is_recognised(language: str, codec: str) -> None:
    text = LEGACY_TEXTS[language]
    assert decode_bytes(text.encode(codec)).text == text


def test_russian_in_koi8_is_not_misread_as_arabic() -> None:
    # KOI8-R puts Russian's small letters where windows-1256 has Arabic letters: it was
    # published as Arabic-looking nonsense.
    result = decode_bytes(LEGACY_TEXTS["russian"].encode("koi8_r"))
    assert result.encoding == "koi8-r"


@pytest.mark.parametrize(
    "text",
    ["Les élèves", "Zürich", "Señor Pérez", "Ελλάδα: Άρθρο για την οικονομία"],
)
def test_a_short_legacy_text_reads_in_the_likelier_code_page(text: str) -> None:
    # The detector ranks "élčves" (windows-1250) or Big5 ideographs as high as "élèves";
    # words that mix scripts or carry a glued symbol ("¶ρθρο") are misreadings.
    codec = "iso8859_7" if "Ελλάδα" in text else "latin-1"
    assert decode_bytes(text.encode(codec)).text == text


def test_one_latin1_letter_in_english_text_is_kept() -> None:
    # Not UTF-8 with a corrupt byte (no valid UTF-8 letter anywhere): windows-1252.
    text = "The minister met the press at the Café de Flore. " + "Plain English news. " * 60
    assert decode_bytes(text.encode("latin-1")).text == text


def test_a_long_legacy_file_is_judged_on_a_sample_without_splitting_a_character() -> None:
    # Over 64 KiB without a newline: the sample is cut after a space.
    text = (LEGACY_TEXTS["japanese"] + " ") * 500
    data = text.encode("cp932")
    assert len(data) > 64 * 1024
    result = decode_bytes(data)
    assert (result.text, result.encoding, result.replaced) == (text, "cp932", 0)


def test_arabic_windows_1256_of_the_corpus_stays_windows_1256() -> None:
    # Short texts are where a detector errs: the first words of each seed, in cp1256.
    for length in (40, 80, 400):
        data = SEED[:length].encode("cp1256", errors="ignore")
        result = decode_bytes(data)
        assert (result.text, result.encoding) == (data.decode("cp1256"), "windows-1256")


@pytest.mark.parametrize(
    ("content_type", "page", "expected"),
    [
        ("text/html; charset=ISO-8859-7", b'<meta charset="utf-8"><p>x</p>', "ISO-8859-7"),
        ('text/html;charset="koi8-r"', b"<p>x</p>", "koi8-r"),
        ("text/html", b'<meta charset="gbk"><p>x</p>', "gbk"),
        ("text/html; charset=no-such", b'<meta charset="big5"><p>x</p>', "big5"),
        ("", b"<p>x</p>", ""),
    ],
)
def test_a_fetched_page_is_declared_by_its_http_charset_first(
    content_type: str, page: bytes, expected: str
) -> None:
    assert declared_page_encoding(page, content_type) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Путин встретился с Макроном в Москве",
        "Курс рубля упал до минимума",
        "Сборная России выиграла матч",
    ],
)
def test_a_short_koi8r_record_is_not_read_as_arabic(text: str) -> None:
    # A .jsonl line is decoded alone: short KOI8-R lines were published as Arabic letters
    # with "×" and "ë" inside the words, a reading no Arabic text has.
    line = json.dumps({"id": "1", "text": text}, ensure_ascii=False).encode("koi8_r")
    result = decode_bytes(line)
    assert json.loads(result.text)["text"] == text


@pytest.mark.parametrize(
    "text",
    [
        "شارك في الحملة عبر وسم #بوحدتنا_نسمو على تويتر",
        "أطلقت الشركة بالتعاون مع وNexus منصة جديدة لتطبيقات zLabs في الرياض، "
        "وقال المدير التنفيذي إن المنصة ستخدم أكثر من مليون مستخدم خلال العام المقبل",
    ],
)
def test_arabic_with_hashtags_and_latin_names_stays_windows_1256(text: str) -> None:
    result = decode_bytes(text.encode("cp1256"))
    assert (result.text, result.encoding) == (text, "windows-1256")


@pytest.mark.parametrize("declared", ["iso-8859-1", "windows-1252", "iso-8859-2"])
def test_a_single_byte_label_that_misreads_the_text_is_overruled(declared: str) -> None:
    """A page declaring a Latin code page over windows-1256 Arabic: every byte decodes in
    the declared one, into "ÚäæÇä ÇáÎÈÑ"; the reading says the label is wrong."""
    page = (
        f"<html><head><meta charset='{declared}'><title>عنوان الخبر</title></head><body>"
        "<p>أعلنت وزارة الصحة اليوم عن افتتاح مستشفى جديد في مدينة الرياض بسعة خمسمئة سرير</p>"
        "</body></html>"
    )
    decoded = decode_bytes(page.encode("cp1256"), declared)
    assert decoded.encoding == "windows-1256"
    assert "وزارة الصحة" in decoded.text


@pytest.mark.parametrize(
    ("text", "codec", "declared"),
    [
        (
            "Les élèves de l'école à Zürich ont réussi leurs examens, déclare le ministère.",
            "latin-1",
            "iso-8859-1",
        ),
        (
            "東京都は本日、新しい病院の開設を発表しました。病院は五百床を備えています。",
            "shift_jis",
            "shift_jis",
        ),
        (
            "Правительство объявило сегодня о строительстве новой больницы в городе.",
            "cp1251",
            "windows-1251",
        ),
        (
            "أعلنت وزارة الصحة اليوم عن افتتاح مستشفى جديد في مدينة الرياض بسعة خمسمئة سرير",
            "cp1256",
            "windows-1256",
        ),
    ],
)
def test_a_label_that_reads_right_is_kept(text: str, codec: str, declared: str) -> None:
    decoded = decode_bytes(f"<p>{text}</p>".encode(codec), declared)
    assert decoded.text == f"<p>{text}</p>"
