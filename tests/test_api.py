"""The Python API (workers.api): the workers' pipeline in-process, on the embedded server
or a Redis URL, with each input's outcome read back from the streams.

Redis URL tests use the test session's Redis (REDIS_URL when set, e.g.
redis://127.0.0.1:6379/13), under a private key prefix deleted afterwards. Embedded tests
run with no REDIS_URL and a temporary data dir.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, RedisTarget, cli_env, run_cli

import workers.api
from workers.api import InputOutcome, open_index, text_id
from workers.config import ConfigError, load_settings, override_settings
from workers.document import Document
from workers.index.keys import JOB_TTL_SECONDS
from workers.ops.embedded import RECORD_FILE
from workers.records import DeadRecord, DocRecord, DuplicateRecord
from workers.worker.runtime import Runtime

# Long enough for MinHash (a few hundred words each), as outlets print them.
EN_REPORT = """\
The government approved on Sunday a plan to expand the country's desalination capacity by \
forty percent over the next six years, in the largest investment in water infrastructure \
since the network was built in the nineteen seventies. The Minister of Water and Energy, \
Khalid al-Harbi, told a news conference in the capital that the plan would cost 18 billion \
riyals and would be financed jointly by the state budget and by private operators under \
long-term purchase agreements.

Under the plan, three new plants will be built on the Red Sea coast, near Yanbu, Rabigh and \
Jazan, and two existing plants on the Gulf coast will be upgraded to reverse osmosis \
technology, which uses about a third of the energy needed by the older thermal plants. The \
ministry expects the first of the new plants to start production in the second half of \
2027, with the remaining ones following at intervals of about a year.

Al-Harbi said demand for drinking water had grown by nearly five percent a year over the \
past decade, driven by population growth, new industrial cities and a rise in tourism, \
while groundwater reserves in several regions had fallen to levels that experts described \
as critical. He added that the new capacity would allow the ministry to stop pumping from \
the most depleted aquifers by the end of the decade.

Economists welcomed the announcement but warned that the financing model would need \
careful oversight. "Purchase agreements of this length can lock the state into high \
prices for a generation if the terms are not negotiated well," said Noura al-Qahtani, a \
professor of economics at King Saud University. Environmental groups, for their part, \
called on the ministry to publish detailed studies of the effect of brine discharge on \
coral reefs along the Red Sea coast before construction begins.

The ministry said tenders for the first two plants would be issued before the end of the \
year, and that international and local companies would be invited to bid."""

# The same report as another outlet ran it: a new lead sentence, a few words changed, the
# last paragraph dropped and a line of its own at the end.
EN_REPRINT = (
    "RIYADH (Gulf Wire) - Officials unveiled a major water programme this week.\n\n"
    + EN_REPORT.replace("on Sunday", "on Sunday evening")
    .replace("told a news conference", "told reporters")
    .replace("nearly five percent", "almost five percent")
    .rsplit("\n\n", 1)[0]
    + "\n\nFollow Gulf Wire for more news from the region."
)

AR_REPORT = """\
أعلنت وزارة الصحة يوم الأربعاء عن إطلاق حملة وطنية للتطعيم ضد الإنفلونزا الموسمية تستهدف \
أكثر من ثمانية ملايين شخص في جميع مناطق المملكة، وذلك قبل بداية فصل الشتاء الذي يشهد عادة \
ارتفاعا في أعداد الإصابات بأمراض الجهاز التنفسي. وقال المتحدث الرسمي باسم الوزارة الدكتور \
محمد العبدالعالي في مؤتمر صحفي عقد في الرياض إن الحملة ستستمر ثلاثة أشهر، وإن اللقاح سيكون \
متاحا مجانا في أكثر من ألفين ومئتي مركز صحي في المدن والقرى.

وأوضح العبدالعالي أن الحملة تعطي الأولوية لكبار السن والحوامل والأطفال دون الخامسة والمصابين \
بالأمراض المزمنة مثل السكري وأمراض القلب والربو، إضافة إلى العاملين في القطاع الصحي الذين \
يتعاملون يوميا مع المرضى. وأشار إلى أن الوزارة وفرت أربعة ملايين جرعة في المرحلة الأولى، وأن \
دفعات إضافية ستصل تباعا خلال الأسابيع المقبلة بحسب الطلب في كل منطقة.

وبين المتحدث أن الدراسات التي أجرتها الوزارة خلال المواسم الثلاثة الماضية أظهرت أن التطعيم \
خفض حالات التنويم في المستشفيات بسبب مضاعفات الإنفلونزا بنسبة تقارب الأربعين في المئة بين \
الفئات الأكثر عرضة للخطر، داعيا المواطنين والمقيمين إلى عدم التردد في أخذ اللقاح وعدم الالتفات \
إلى الشائعات المتداولة في وسائل التواصل الاجتماعي حول آثاره الجانبية.

ويمكن للراغبين في الحصول على اللقاح حجز موعد عبر تطبيق الوزارة أو التوجه مباشرة إلى أقرب مركز \
صحي دون موعد مسبق، كما ستنتشر فرق متنقلة في المجمعات التجارية ومقار العمل الكبرى والجامعات \
لتسهيل الوصول إلى أكبر عدد ممكن من السكان. وأكدت الوزارة أن اللقاح آمن ومعتمد من الهيئة العامة \
للغذاء والدواء، وأن الآثار الجانبية المعتادة خفيفة وتزول خلال يوم أو يومين في أغلب الحالات."""

# Reworded by another outlet: a few words changed, one sentence left out, one added.
AR_REPRINT = (
    AR_REPORT.replace("يوم الأربعاء", "أمس الأربعاء")
    .replace("في مؤتمر صحفي عقد في الرياض", "في تصريح صحفي")
    .replace("وأشار إلى أن الوزارة وفرت أربعة ملايين جرعة في المرحلة الأولى، وأن ", "وأضاف أن ")
    + "\n\nومن المتوقع أن تعلن الوزارة أعداد المطعمين أسبوعيا."
)

EN_OTHER = """\
The national football team will play two friendly matches next month against Morocco and \
Japan as part of its preparations for the Asian Cup, the football federation said in a \
statement on Monday. The first match will be played in Casablanca on the ninth of the \
month, and the second in Jeddah five days later. Head coach Roberto Lopez is expected to \
name a squad of twenty-six players at the end of this week, with several young players \
from the domestic league likely to receive their first call-up. The federation said \
tickets for the Jeddah match would go on sale through its website on Thursday, with \
prices starting at twenty riyals, and that part of the proceeds would go to youth \
football programmes in the southern regions."""


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No settings from the caller's environment: the tests say what they use."""
    for name in list(os.environ):
        if name.startswith("NEWSDEDUP_") or name in ("REDIS_URL", "BROKER_URL"):
            monkeypatch.delenv(name)


@pytest.fixture
def on_redis_url(
    redis_target: RedisTarget, prefix: str, environment: None
) -> Iterator[workers.api.Index]:
    with open_index(redis_url=redis_target.url, overrides={"prefix": prefix}) as index:
        yield index


def _by_status(outcomes: list[InputOutcome]) -> list[str]:
    return [outcome.status for outcome in outcomes]


def test_near_duplicates_in_english_and_arabic_name_their_originals(
    on_redis_url: workers.api.Index,
) -> None:
    index = on_redis_url
    first = index.submit(
        [
            {"id": "en-1", "title": "Desalination plan", "text": EN_REPORT, "source": "spa"},
            {"id": "ar-1", "text": AR_REPORT, "source": "sabq", "published": "2024-10-02"},
            EN_OTHER,
        ]
    )
    assert _by_status(first) == ["published"] * 3
    assert [o.id for o in first] == ["en-1", "ar-1", text_id(EN_OTHER)]
    assert first[1].record.published_at == "2024-10-02T00:00:00"  # type: ignore[union-attr]

    copies = index.submit(
        [
            {"id": "en-2", "text": EN_REPRINT, "source": "gulfwire"},
            Document(id="ar-2", source="okaz", text=AR_REPRINT, input_ref=""),
            AR_REPORT,  # the same text again, under no id
        ]
    )
    assert _by_status(copies) == ["duplicate"] * 3
    en, ar, again = copies
    assert (en.id, en.duplicate_of, en.kind, en.match) == ("en-2", "en-1", "near", "minhash")
    assert (ar.id, ar.duplicate_of, ar.kind, ar.match) == ("ar-2", "ar-1", "near", "minhash")
    for near in (en, ar):
        assert near.similarity is not None and 0.5 <= near.similarity < 1
        assert near.containment is not None and near.containment >= near.similarity
    assert (again.id, again.duplicate_of, again.kind, again.match) == (
        text_id(AR_REPORT),
        "ar-1",
        "exact",
        "content",
    )
    assert again.similarity == 1.0
    assert again.input_ref.startswith("python:") and again.input_ref != first[1].input_ref


def test_dead_inputs_say_why(on_redis_url: workers.api.Index) -> None:
    outcomes = on_redis_url.submit(["", {"id": "t", "title": "Only a title"}, "🙂🙂 !!", "ok"])
    assert _by_status(outcomes) == ["dead", "dead", "dead", "published"]
    assert [o.reason for o in outcomes[:3]] == ["empty_text", "missing_text", "no_words"]
    assert outcomes[0].id == text_id("") and outcomes[1].id == "t"
    assert (
        outcomes[1].error
        == "record has no text, content, body, articleBody, content_text or content_html"
    )
    with pytest.raises(TypeError, match="wrap a single one in a list"):
        on_redis_url.submit("one text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not int"):
        on_redis_url.submit([1])  # type: ignore[list-item]
    same_ref = [Document(id=f"d{n}", source="s", text="x", input_ref="a.txt") for n in (1, 2)]
    with pytest.raises(ValueError, match=r"two inputs have the input_ref 'a\.txt'"):
        on_redis_url.submit(same_ref)
    assert on_redis_url.submit([]) == []


def test_outcomes_are_the_stream_entries_consumers_read(
    on_redis_url: workers.api.Index, redis_target: RedisTarget, prefix: str
) -> None:
    outcomes = on_redis_url.submit([EN_REPORT, EN_REPRINT, "", {"id": "x", "text": EN_OTHER}])
    records = {"docs": DocRecord, "duplicates": DuplicateRecord, "dead": DeadRecord}
    for outcome in outcomes:
        raw = redis_target.client.xrange(f"{prefix}{outcome.stream}")
        fields = {
            entry_id.decode(): {k.decode(): v.decode() for k, v in entry.items()}
            for entry_id, entry in raw
        }[outcome.entry_id]
        record = records[outcome.stream]
        # Every field of the schema, in wire order, but optional ones that do not apply
        # (`input_id` only on a renamed document, the links of partials and updates).
        names = [name for name, _, _ in record.schema()]
        assert list(fields) == [name for name in names if name in fields]
        assert set(names) - set(fields) <= record.optional
        assert record.from_fields(fields) == outcome.record
    published = [o for o in outcomes if o.status == "published"]
    assert [(e, r.id) for e, r in on_redis_url.records("docs")] == [
        (o.entry_id, o.id) for o in published
    ]
    assert [o.id for o in published] == [text_id(EN_REPORT), "x"]
    doc = published[0].record
    assert isinstance(doc, DocRecord) and doc.text.startswith("The government approved")


def test_running_a_cell_again_reports_the_first_runs_documents(
    on_redis_url: workers.api.Index,
) -> None:
    texts = [EN_REPORT, AR_REPORT, EN_OTHER]
    first = on_redis_url.submit(texts)
    again = on_redis_url.submit(texts)
    assert _by_status(first) == ["published"] * 3
    assert _by_status(again) == ["duplicate"] * 3
    assert [o.duplicate_of for o in again] == [o.id for o in first] == [o.id for o in again]
    assert {o.kind for o in again} == {"exact"}
    assert len(list(on_redis_url.records("docs"))) == 3


def test_a_taken_id_is_published_with_a_suffix(on_redis_url: workers.api.Index) -> None:
    outcomes = on_redis_url.submit([{"id": "a", "text": EN_REPORT}, {"id": "a", "text": AR_REPORT}])
    assert [(o.status, o.id) for o in outcomes] == [("published", "a"), ("published", "a~2")]
    renamed = outcomes[1].record
    assert isinstance(renamed, DocRecord) and renamed.input_id == "a"


def test_a_chunk_sent_again_is_decided_once_and_still_reported(
    on_redis_url: workers.api.Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As when a connection breaks after Redis ran a chunk and before its reply came back:
    the chunk is sent again, and the job's guard answers `already` for every input."""
    real: Callable[..., Any] = workers.api.process_with_runtime

    def sent_twice(runtime: Runtime, *args: Any, job_id: str, **kwargs: Any) -> Any:
        real(runtime, *args, job_id=job_id, **kwargs)
        again = real(runtime, *args, job_id=job_id, **kwargs)
        assert {o.kind for o in again.outcomes} == {"already"}
        # Were this process to die now, the call's keys would expire like a backfill's.
        for key in (runtime.keys.job(job_id), runtime.keys.job_done(job_id)):
            assert 0 < runtime.client.ttl(key) <= JOB_TTL_SECONDS
        return again

    monkeypatch.setattr(workers.api, "process_with_runtime", sent_twice)
    outcomes = on_redis_url.submit([EN_REPORT, EN_REPRINT, ""])
    assert _by_status(outcomes) == ["published", "duplicate", "dead"]
    assert outcomes[1].duplicate_of == outcomes[0].id
    assert [len(list(on_redis_url.records(s))) for s in ("docs", "duplicates", "dead")] == [1] * 3
    # The call's job keys are gone with it.
    keys = on_redis_url.client.keys(f"{on_redis_url.keys.prefix}job:*")
    assert keys == []


def test_the_embedded_server_of_a_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: None
) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nobody there: data_dir wins
    with open_index(data_dir) as index:
        assert index.embedded and index.redis_url.startswith("unix://")
        published = index.submit([EN_REPORT])[0]
        assert (data_dir / RECORD_FILE).exists()
    assert not (data_dir / RECORD_FILE).exists(), "the server still runs after close"
    index.close()  # twice: harmless

    monkeypatch.delenv("REDIS_URL")
    monkeypatch.setenv("NEWSDEDUP_DATA_DIR", str(data_dir))
    with open_index() as again:  # the data is still there
        assert [r.id for _, r in again.records("docs")] == [published.id]
        assert again.submit([EN_REPORT])[0].duplicate_of == published.id


def test_the_api_decides_and_publishes_as_a_worker_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: None
) -> None:
    """The same records through `newsdedup backfill` (a Celery worker) and through
    `submit`, each on an embedded server of its own: the same outcomes, the same entries
    (but for when and from where: ingested_at, failed_at, input_ref)."""
    records: list[dict[str, Any]] = [
        {"id": "en-1", "title": "Desalination", "text": EN_REPORT, "source": "spa"},
        {"id": "ar-1", "text": AR_REPORT, "source": "sabq", "published": "2024-10-02"},
        {"id": "en-2", "text": EN_REPRINT, "source": "gulfwire", "url": "https://gw.example/1"},
        {"id": "ar-2", "text": AR_REPRINT, "source": "okaz"},
        {"id": "en-3", "text": EN_OTHER, "source": "spa"},
        {"id": "ar-3", "title": "again", "text": AR_REPORT, "source": "okaz"},
        {"id": "dead-1", "title": "no text", "source": "spa"},
        {"id": "dead-2", "text": "🙂🙂🙂", "source": "spa"},
    ]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    (inputs / "news.jsonl").write_text(lines, "utf-8")
    by_worker = run_cli(["backfill", str(inputs)], cli_env(data_dir=tmp_path / "worker"))
    assert by_worker.returncode == 0, by_worker.stderr
    assert "3 published" in by_worker.stdout, by_worker.stdout

    with open_index(tmp_path / "api") as index:
        outcomes = index.submit(records)
    assert _by_status(outcomes) == (
        ["published"] * 2 + ["duplicate"] * 2 + ["published", "duplicate"] + ["dead"] * 2
    )
    assert [o.reason for o in outcomes[-2:]] == ["missing_text", "no_words"]

    def entries(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
        varying = {"ingested_at", "failed_at", "input_ref"}
        with open_index(data_dir) as opened:
            return {
                stream: [
                    {k: v for k, v in record.to_json().items() if k not in varying}
                    for _, record in opened.records(stream)
                ]
                for stream in ("docs", "duplicates", "dead")
            }

    by_api = entries(tmp_path / "api")
    assert [len(by_api[stream]) for stream in ("docs", "duplicates", "dead")] == [3, 3, 2]
    assert by_api == entries(tmp_path / "worker")


def _python_blocks(markdown: str) -> list[tuple[str, str | None]]:
    """Each ```python block, with the ```text block right after it (its output) if any."""
    pattern = re.compile(r"```python\n(.*?)```\n(?:\n```text\n(.*?)```)?", re.DOTALL)
    return [(m.group(1), m.group(2)) for m in pattern.finditer(markdown)]


def test_the_documented_examples_run_and_print_what_the_docs_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: None
) -> None:
    """Every ```python block of docs/python-api.md, verbatim and in order, in a fresh
    working directory with the embedded server; a block followed by a ```text block must
    print exactly that."""
    blocks = _python_blocks((ROOT / "docs" / "python-api.md").read_text("utf-8"))
    assert len(blocks) >= 3 and "open_index()" in blocks[0][0] and blocks[0][1]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    for number, (code, expected) in enumerate(blocks):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"docs/python-api.md block {number}", "exec"), namespace)
        if expected is not None:
            assert out.getvalue() == expected, f"block {number}"
    assert not (tmp_path / ".newsdedup" / RECORD_FILE).exists(), "left the server running"


@pytest.mark.unit
def test_overrides_win_over_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: None
) -> None:
    config = tmp_path / "newsdedup.toml"
    config.write_text('prefix = "file:"\n[dedup]\nthreshold = 0.6\nseed = 7\n', "utf-8")
    monkeypatch.setenv("NEWSDEDUP_PREFIX", "env:")
    monkeypatch.setenv("NEWSDEDUP_DEDUP__SEED", "9")
    loaded = load_settings(config)
    assert (loaded.prefix, loaded.dedup.threshold, loaded.dedup.seed) == ("env:", 0.6, 9)
    chosen = override_settings(loaded, {"prefix": "mine:", "dedup": {"seed": 11}})
    assert (chosen.prefix, chosen.dedup.threshold, chosen.dedup.seed) == ("mine:", 0.6, 11)
    assert chosen.dedup.num_perm == loaded.dedup.num_perm
    with pytest.raises(
        ConfigError, match=r"^unknown setting dedup\.treshold \(did you mean dedup\.threshold\?\)$"
    ):
        override_settings(loaded, {"dedup": {"treshold": 0.6}})
    with pytest.raises(ConfigError, match=r"^invalid setting dedup\.threshold: "):
        override_settings(loaded, {"dedup": {"threshold": 2}})
    with pytest.raises(ConfigError, match="is a section"):
        override_settings(loaded, {"dedup": 0.5})


@pytest.mark.unit
def test_text_ids_are_the_documented_digest() -> None:
    import hashlib

    digest = hashlib.blake2b("خبر عاجل".encode(), digest_size=10).hexdigest()
    assert text_id("خبر عاجل") == "text:" + digest
    assert text_id("a") != text_id("a ") and text_id("\ud800") == text_id("\ufffd")


def test_importing_the_package_stays_cheap() -> None:
    heavy = ("workers.api", "numpy", "celery", "redis", "pydantic")
    code = f"import sys, workers; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


def test_updates_and_partials_say_what_they_relate_to(on_redis_url: workers.api.Index) -> None:
    url = "https://news.example/reports/7"
    (first,) = on_redis_url.submit([{"id": "r7", "url": url, "text": EN_REPORT}])
    changed = EN_REPORT + "\n\nThe ministry corrected the figures on Tuesday evening."
    (update,) = on_redis_url.submit([{"id": "r7", "url": url, "text": changed}])
    assert (first.status, first.rule, first.update_of) == ("published", "new", None)
    assert (update.status, update.rule) == ("published", "update")
    assert (update.update_of, update.version, update.id) == ("r7", 2, "r7~2")
    assert update.decision is not None
    assert update.decision.candidates[0].verdict == "earlier-version"
    assert update.as_dict()["update_of"] == "r7"
    (again,) = on_redis_url.submit([{"id": "r7", "url": url, "text": changed}])
    assert (again.status, again.rule, again.duplicate_of) == ("duplicate", "exact-url", "r7~2")


def test_an_index_never_closed_is_closed_quietly_at_exit(tmp_path: Path) -> None:
    """A script that opens an index on the embedded server and exits without close():
    the index is closed (and the server it started stopped) before the interpreter tears
    its modules down, without a traceback, and the submitted document is kept."""
    script = (
        "from workers.api import open_index\n"
        f"ix = open_index({str(tmp_path / 'data')!r})\n"
        "text = 'A short article about the railway network and its stations.'\n"
        "print(ix.submit([text])[0].status)\n"
    )
    env = cli_env()
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "published"
    assert done.stderr == "", done.stderr
    with open_index(tmp_path / "data") as again:
        assert again.client.xlen(again.keys.docs) == 1


def test_an_index_left_open_on_a_full_disk_says_why_in_one_line_at_exit(tmp_path: Path) -> None:
    """The same script, its last write acknowledged with the disk under the embedded server
    full (Redis keeps it in memory until it can write it): the server is not stopped at
    exit, which would lose that write; the script's stderr says why in one line, no
    traceback, and once there is room the server saves the write and stops by itself."""
    from support import faults

    with faults.small_file_system(tmp_path / "disk", "16m") as disk:
        data_dir, filler = disk / "data", disk / "filler"
        script = (
            "from support.faults import fill\n"
            "from workers.api import open_index\n"
            f"ix = open_index({str(data_dir)!r})\n"
            "print(ix.submit(['A short article about the railway and its stations.'])[0].status)\n"
            f"fill(__import__('pathlib').Path({str(filler)!r}))\n"
            "ix.client.set('kept', 'x' * 100_000)\n"
        )
        env = {**cli_env(), "PYTHONPATH": str(ROOT / "tests") + os.pathsep + str(ROOT)}
        try:
            done = subprocess.run(
                [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True,
                text=True, timeout=120,
            )  # fmt: skip
            assert done.stdout.strip() == "published", done.stderr
            assert done.stderr.startswith(
                "newsdedup: error: the embedded Redis cannot write its AOF"
            ), done.stderr
            assert done.stderr.count("\n") == 1, done.stderr
            assert faults.servers_on(data_dir), "stopped while holding a write it could not save"
        finally:
            filler.unlink(missing_ok=True)
        left = faults.servers_left(data_dir, within=30)
        assert not left, "the server did not stop once it could write"
        with open_index(data_dir) as again:
            assert again.client.xlen(again.keys.docs) == 1
            assert again.client.strlen("kept") == 100_000
