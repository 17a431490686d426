"""Saved HTML pages in the legacy encodings of other languages (GBK, Shift_JIS, Big5,
EUC-KR, windows-1251), each declaring its encoding in its head, and text archives and
pages in legacy encodings that declare nothing, through the CLI on the embedded default:
every one is published with its text, none is dead as undecodable or misread."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import cli_env, run_cli
from support.edit_copies import misdecoded

PAGES = {
    "xinhua.html": (
        '<meta charset="gb2312">',
        "gbk",
        "国家统计局周二发布数据显示，十一月份全国规模以上工业增加值同比增长百分之五点四，"
        "增速比上月加快零点三个百分点。国家统计局新闻发言人在新闻发布会上表示，"
        "十一月份国民经济延续恢复向好态势，生产需求稳中有升，就业物价总体稳定。",
    ),
    "asahi.html": (
        '<meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">',
        "cp932",
        "政府は五日、来年度の予算案の概要を発表した。一般会計の総額は過去最大の規模となる"
        "見通しで、防衛費と社会保障費の増加が主な要因だという。財務省の担当者は記者会見で、"
        "歳出の見直しを進めながら財政の健全化を目指すと述べた。",
    ),
    "cna.html": (
        '<meta charset="big5">',
        "big5",
        "行政院今天通過明年度中央政府總預算案，歲出規模創下歷年新高，其中國防與社會福利"
        "支出增加最多。主計總處官員在記者會上表示，政府將持續檢討各項支出，維持財政健全。",
    ),
    "yonhap.html": (
        '<meta charset="euc-kr">',
        "euc-kr",
        "정부는 내년도 예산안을 발표했다. 전체 지출 규모는 역대 최대 수준으로, 국방비와 "
        "복지 예산이 크게 늘었다. 기획재정부 관계자는 기자회견에서 재정 건전성을 유지하기 "
        "위해 지출 구조조정을 계속하겠다고 밝혔다.",
    ),
    "ria.html": (
        "<?xml version='1.0' encoding='windows-1251'?>",
        "cp1251",
        "Правительство утвердило проект федерального бюджета на следующий год. Расходы на "
        "оборону и социальные программы вырастут, сообщил министр финансов на пресс-"
        "конференции, добавив, что дефицит останется в пределах прогноза.",
    ),
}


def test_pages_in_declared_legacy_encodings_are_published(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    for name, (declaration, codec, text) in PAGES.items():
        page = (
            f"<html><head>{declaration}<title>{name}</title></head>"
            f"<body><article><h1>{name}</h1><p>{text}</p></article></body></html>"
        )
        (root / name).write_bytes(page.encode(codec))
    texts = backfill_texts(root, tmp_path / "data")
    assert texts == {name: text for name, (_, _, text) in PAGES.items()}


def backfill_texts(root: Path, data_dir: Path) -> dict[str, str]:
    """Backfill `root` on the embedded default; every file is published: its text, by name."""
    env = cli_env(data_dir=data_dir)
    done = run_cli(["backfill", str(root)], env)
    assert done.returncode == 0, done.stderr
    inputs = len(list(root.iterdir()))
    assert f"{inputs} published" in done.stdout.splitlines()[-1], done.stdout
    docs = run_cli(["tail", "--stream", "docs", "--from-start", "--json"], env)
    return {r["input_ref"]: r["text"] for r in map(json.loads, docs.stdout.splitlines())}


# Text files and a page that say nothing of their encoding, as old archives hold them.
UNDECLARED = {
    "lemonde.txt": (
        "latin-1",
        "Le gouvernement a annoncé mercredi une réforme des retraites. Les syndicats ont "
        "réagi avec colère à cette décision prise sans concertation préalable.",
    ),
    "kommersant.txt": (
        "koi8_r",
        "Правительство России объявило в среду о новых мерах поддержки экономики. По "
        "словам министра финансов, программа будет стоить около триллиона рублей.",
    ),
    "kathimerini.txt": (
        "iso8859_7",
        "Η κυβέρνηση ανακοίνωσε σήμερα νέα μέτρα για την οικονομία. Άλλα μέτρα θα "
        "ακολουθήσουν τον Ιανουάριο, σύμφωνα με τον υπουργό Οικονομικών.",
    ),
    "hurriyet.txt": (
        "cp1254",
        "Hükümet çarşamba günü ekonomiyi desteklemek için yeni önlemler açıkladı. Maliye "
        "bakanına göre program yaklaşık bir trilyon liraya mal olacak.",
    ),
    "nikkei.txt": (
        "euc_jp",
        "政府は水曜日、経済を支援するための新たな措置を発表した。財務大臣によると、この計画の"
        "費用は約一兆円で、来年末まで続く見通しだ。",
    ),
    "alriyadh.txt": (
        "cp1256",
        "أعلنت الحكومة يوم الأربعاء عن إجراءات جديدة لدعم الاقتصاد. وقال وزير المالية إن "
        "البرنامج سيكلف نحو تريليون ريال ويستمر حتى نهاية العام المقبل.",
    ),
    "people.html": (
        "gbk",
        "政府周三宣布了支持经济的新措施。据财政部长称，该计划将耗资约一万亿元，并将持续到明年年底。",
    ),
}


def test_undeclared_legacy_encodings_are_recognised(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    for name, (codec, text) in UNDECLARED.items():
        if name.endswith(".html"):
            body = f"<html><head><title>{name}</title></head><body><article><p>{text}</p>"
            (root / name).write_bytes((body + "</article></body></html>").encode(codec))
        else:
            (root / name).write_bytes(f"{name}\n{text}\n".encode(codec))
    texts = backfill_texts(root, tmp_path / "data")
    assert texts == {name: text for name, (_, text) in UNDECLARED.items()}


def test_records_an_exporter_misdecoded_are_published_as_written(tmp_path: Path) -> None:
    # UTF-8 that an exporter read as windows-1252 ("Ø§Ù„Ø­ÙƒÙˆÙ…Ø©"), as scraped archives
    # often hold it: published as the article was written, and an exact duplicate of the
    # article's clean copy.
    text = UNDECLARED["alriyadh.txt"][1]
    mojibake = misdecoded(text)
    root = tmp_path / "in"
    root.mkdir()
    records = [{"id": "garbled", "text": mojibake}, {"id": "clean", "text": text}]
    (root / "export.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    env = cli_env(data_dir=tmp_path / "data")
    done = run_cli(["backfill", str(root)], env)
    assert done.returncode == 0, done.stderr
    assert "1 published, 1 exact duplicate" in done.stdout.splitlines()[-1], done.stdout
    docs = run_cli(["tail", "--stream", "docs", "--from-start", "--json"], env)
    assert [json.loads(line)["text"] for line in docs.stdout.splitlines()] == [text]
