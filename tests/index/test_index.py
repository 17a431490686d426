"""The Redis dedup index: decisions, atomicity across processes, parameters, retention."""

from __future__ import annotations

import multiprocessing
import random
import unicodedata
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
from conftest import RedisTarget
from support.articles import article
from support.edit_copies import WORDLESS_EDITS, lightly_edit, mutual_copies
from support.settings import settings_for

from workers.document import Document
from workers.index import args as script_args
from workers.index.dedup import IndexMismatch
from workers.index.encoding import lsh_bucket_fields
from workers.index.keys import LEAD_BANDS, LEAD_PERM, LEAD_ROWS
from workers.index.scripts import Script
from workers.pipeline.process import clean_and_fingerprint
from workers.records import DocRecord
from workers.worker.runtime import Runtime, build_runtime

DAY = 86400.0


def doc(doc_id: str, text: str, url: str = "", published_at: str = "") -> Document:
    return Document(
        id=doc_id,
        source="test",
        text=text,
        input_ref=doc_id,
        title=doc_id,
        url=url,
        published_at=published_at,
    )


def submit(rt: Runtime, *docs: Document, now: float | None = None) -> list[tuple[str, str]]:
    items = [clean_and_fingerprint(d, rt.rules, rt.fingerprinter) for d in docs]
    outcomes = rt.index.run(rt.index.build_batch("", items, now=now))  # type: ignore[arg-type]
    return [(o.kind, o.duplicate_of) for o in outcomes]


@pytest.fixture
def runtime(redis_target: RedisTarget, prefix: str) -> Runtime:
    return build_runtime(settings_for(prefix), redis_target.url)


def test_exact_near_and_new_decisions(runtime: Runtime) -> None:
    original = article(1)
    assert submit(runtime, doc("a", original)) == [("published", "")]
    assert submit(runtime, doc("b", original)) == [("exact", "a")]
    # Matching normalisation: diacritics and letter variants do not make a new text.
    variant = original.replace("ة", "ه").replace("ي ", "ى ")
    assert submit(runtime, doc("c", variant)) == [("exact", "a")]
    assert submit(runtime, doc("d", lightly_edit(original, 7))) == [("near", "a")]
    assert submit(runtime, doc("e", article(2))) == [("published", "")]
    # The near-duplicate is indexed too, standing for its original.
    assert runtime.client.get(runtime.keys.index_count) == b"3"


def test_trimmed_copy_is_found_by_containment(runtime: Runtime) -> None:
    original = article(3, words=240)
    paragraphs = original.split("\n\n")
    trimmed = "\n\n".join(paragraphs[: len(paragraphs) // 2])
    submit(runtime, doc("long", original))
    kind, of = submit(runtime, doc("short", trimmed))[0]
    assert (kind, of) == ("near", "long")


def test_same_canonical_url_and_text_is_an_exact_duplicate(runtime: Runtime) -> None:
    text = article(4)
    submit(runtime, doc("a", text, url="https://www.example.com/news/1?utm_source=x"))
    refetched = Document(
        id="b",
        source="test",
        text=text.replace("\n\n", "\n\n\n"),  # what matching normalisation folds away
        input_ref="b",
        title="a",
        url="http://example.com/news/1/#top",
    )
    assert submit(runtime, refetched) == [("exact", "a")]


def _race_worker(args: tuple[str, str, list[tuple[str, str]]]) -> list[str]:
    url, prefix, docs = args
    rt = build_runtime(settings_for(prefix), url)
    kinds = []
    for doc_id, text in docs:
        item = clean_and_fingerprint(doc(doc_id, text), rt.rules, rt.fingerprinter)
        kinds.append(rt.index.run(rt.index.build_batch("", [item]))[0].kind)  # type: ignore[list-item]
    return kinds


def test_concurrent_processes_keep_exactly_one_per_story(
    redis_target: RedisTarget, prefix: str
) -> None:
    stories, processes = 10, 8
    checker = build_runtime(settings_for(prefix + "check:"), redis_target.url)
    docs = [
        (f"s{story}-c{c}", text)
        for story in range(stories)
        for c, text in enumerate(
            mutual_copies(checker, article(100 + story, 400), 8, edits=WORDLESS_EDITS)
        )
    ]
    random.Random(0).shuffle(docs)
    shares = [(redis_target.url, prefix, docs[i::processes]) for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        kinds = Counter(k for result in pool.map(_race_worker, shares) for k in result)
    assert kinds["published"] == stories, kinds
    assert kinds["published"] + kinds["near"] + kinds["exact"] == len(docs)


def test_index_refuses_other_fingerprint_parameters(redis_target: RedisTarget, prefix: str) -> None:
    submit(build_runtime(settings_for(prefix), redis_target.url), doc("a", article(6)))
    other = build_runtime(settings_for(prefix, num_perm=64), redis_target.url)
    with pytest.raises(IndexMismatch, match="num_perm: index has 128, config wants 64"):
        submit(other, doc("b", article(7)))
    shingles = build_runtime(settings_for(prefix, shingle_size=2), redis_target.url)
    with pytest.raises(IndexMismatch, match="shingle_size"):
        shingles.index.ensure_params()


def test_retention_window_stops_matching_and_frees_memory(
    redis_target: RedisTarget, prefix: str
) -> None:
    rt = build_runtime(settings_for(prefix, retention_days=1, sweep_limit=50), redis_target.url)
    start = 1_700_000_000.0
    original = article(8)
    assert submit(rt, doc("old", original), now=start) == [("published", "")]
    # Within the window: a duplicate.
    assert submit(rt, doc("again", original), now=start + 0.5 * DAY)[0] == ("exact", "old")
    # Two days later the old entry no longer matches: the copy is new again.
    assert submit(rt, doc("later", original), now=start + 2 * DAY) == [("published", "")]
    # A steady stream three windows long: the index holds about one window's documents.
    for day in range(3, 9):
        batch = [doc(f"d{day}-{i}", article(1000 * day + i)) for i in range(20)]
        submit(rt, *batch, now=start + day * DAY)
    indexed = int(rt.client.get(rt.keys.index_count) or 0)
    assert 20 <= indexed <= 40, indexed
    pages = [k for k in rt.client.scan_iter(match=f"{prefix}ix:r:*")]
    assert len(pages) <= 2  # freed pages are deleted, not left as zeros
    # Every LSH bucket entry left belongs to a live document: expired ones were removed.
    bands, _ = rt.fingerprinter.params.bands_rows
    entries = sum(
        len(rt.client.get(key) or b"") // 8 for key in rt.client.scan_iter(match=f"{prefix}ix:l:*")
    )
    assert entries == indexed * (bands + LEAD_BANDS)  # the signature's bands and the lead's


def test_an_earlier_versions_key_leaves_with_it(redis_target: RedisTarget, prefix: str) -> None:
    """A headline-only update keeps its earlier version findable by a key of its own in
    the content-key table; that key goes when the version leaves the window."""
    from dataclasses import replace

    rt = build_runtime(settings_for(prefix, retention_days=1, sweep_limit=50), redis_target.url)
    start = 1_700_000_000.0
    first = replace(doc("v1", article(11), url="https://news.example/v"), title="one")
    second = replace(first, id="v2", title="two")
    assert submit(rt, first, second, now=start) == [("published", ""), ("published", "")]

    def content_keys() -> int:
        return sum(int(rt.client.hlen(k)) for k in rt.client.scan_iter(match=f"{prefix}ix:x:*"))

    assert content_keys() == 2  # the text's key (v2), and v1's text-and-headline key
    assert submit(rt, first, now=start + 0.5 * DAY) == [("exact", "v1")]
    for day in range(3, 5):
        batch = [doc(f"d{day}-{i}", article(1000 * day + i)) for i in range(20)]
        submit(rt, *batch, now=start + day * DAY)
    assert content_keys() == int(rt.client.get(rt.keys.index_count) or 0)


def test_writes_nothing_outside_its_prefix(runtime: Runtime, redis_target: RedisTarget) -> None:
    before = set(redis_target.client.scan_iter(match="*", count=1000))
    submit(runtime, doc("a", article(9)), doc("b", article(9)))
    created = set(redis_target.client.scan_iter(match="*", count=1000)) - before
    assert created, "the index wrote nothing"
    outside = sorted(k for k in created if not k.decode().startswith(runtime.keys.prefix))
    assert outside == []


def test_rebuild_reindexes_published_docs_under_new_parameters(
    redis_target: RedisTarget, prefix: str
) -> None:
    from workers.pipeline.process import rebuild_index

    old = build_runtime(settings_for(prefix), redis_target.url)
    texts = [article(200 + i) for i in range(4)]
    submit(old, *(doc(f"a{i}", t) for i, t in enumerate(texts)))
    published = old.client.xlen(old.keys.docs)

    new = build_runtime(settings_for(prefix, shingle_size=2), redis_target.url)
    with pytest.raises(IndexMismatch):
        new.index.ensure_params()
    assert old.index.reset() > 0
    assert rebuild_index(new) == {"indexed": 4}
    assert new.client.xlen(new.keys.docs) == published  # nothing published again
    assert submit(new, doc("copy", lightly_edit(texts[2], 3))) == [("near", "a2")]
    stats = new.index.describe()
    assert stats["documents"] == 5  # the near copy is indexed too
    assert stats["parameters"]["shingle_size"] == "2"
    assert stats["memory_bytes"] > 0


def test_a_feed_entry_is_known_by_its_guid_after_a_rebuild(
    redis_target: RedisTarget, prefix: str
) -> None:
    """The docs stream keeps a feed entry's guid: rebuilt from it, the index still knows
    the entry, and its edited version is an update, not a near duplicate."""
    from dataclasses import replace

    from workers.pipeline.process import rebuild_index

    rt = build_runtime(settings_for(prefix), redis_target.url)
    text = article(400)
    entry = replace(doc("e1", text, url="https://news.example.com/a"), guid="entry-1")
    assert submit(rt, entry) == [("published", "")]
    assert rt.index.reset() > 0
    assert rebuild_index(rt) == {"indexed": 1}
    edited = replace(
        entry,
        text=text + "\n\nA new paragraph added to the story.",
        url="https://news.example.com/b",
    )
    outcome = rt.index.run(
        rt.index.build_batch("", [clean_and_fingerprint(edited, rt.rules, rt.fingerprinter)])  # type: ignore[list-item]
    )
    assert [(o.kind, o.relation, o.linked) for o in outcome] == [("published", "update_of", "e1")]


def test_script_cache_flush_is_recovered_without_running_twice(runtime: Runtime) -> None:
    assert submit(runtime, doc("a", article(300))) == [("published", "")]
    runtime.client.script_flush()  # what a Redis restart does to the script cache
    assert submit(runtime, doc("b", article(301)), doc("a2", article(300))) == [
        ("published", ""),
        ("exact", "a"),
    ]
    assert runtime.client.xlen(runtime.keys.docs) == 2


# --------------------------------------------------------------------------- what a duplicate is

CABLE = (
    "بعث خادم الحرمين الشريفين الملك سلمان بن عبدالعزيز آل سعود برقية تهنئة لفخامة الرئيس "
    "{name} رئيس جمهورية {country} بمناسبة ذكرى يوم الاستقلال لبلاده الموافق {day} من الشهر "
    "الجاري. وأعرب الملك في برقيته باسمه واسم شعب وحكومة المملكة العربية السعودية عن أصدق "
    "التهاني وأطيب التمنيات بموفور الصحة والسعادة لفخامته ولحكومة وشعب {country} الصديق "
    "المزيد من التقدم والازدهار. كما بعث صاحب السمو الملكي ولي العهد برقية تهنئة مماثلة "
    "أعرب فيها عن أطيب التهاني وأصدق التمنيات بدوام الصحة والسعادة ولشعب {country} الصديق "
    "اطراد التقدم والرقي."
)
CABLES = [
    {"name": "جون ماهاما", "country": "غانا", "day": "6"},
    {"name": "ماكي سال", "country": "السنغال", "day": "4"},
]


def test_same_template_with_other_facts_is_not_a_duplicate(runtime: Runtime) -> None:
    words = CABLE.format(name="", country="", day="").split()
    # Other documents use the template's words (in another order, so no shingles are
    # shared): the template wording becomes common, and only the names and figures
    # that differ stay rare.
    for n in range(12):
        shuffled = words[:]
        random.Random(n).shuffle(shuffled)
        assert submit(runtime, doc(f"noise{n}", " ".join(shuffled)))[0][0] == "published"
    first, second = (CABLE.format(**facts) for facts in CABLES)
    assert submit(runtime, doc("ghana", first)) == [("published", "")]
    # Shingle Jaccard alone would call this a copy (about 0.7); the facts conflict.
    assert submit(runtime, doc("senegal", second)) == [("published", "")]
    # A real copy of the first cable (a sentence trimmed) shares its facts.
    trimmed = first.rsplit(". كما", 1)[0]
    assert submit(runtime, doc("ghana-copy", trimmed)) == [("near", "ghana")]


def _sentences(seed: int, count: int) -> list[str]:
    return article(seed, words=12 * count).split("\n\n")


def test_old_candidates_match_only_when_nearly_identical(runtime: Runtime) -> None:
    sentences = _sentences(40, 20)
    reworded = sentences[:15] + _sentences(41, 5)  # Jaccard about 0.6: a lighter copy
    nearly_same = sentences[:19]  # Jaccard about 0.9
    day0, day4 = "2025-03-01T08:00:00Z", "2025-03-05T08:00:00Z"
    assert submit(runtime, doc("a", "\n\n".join(sentences), published_at=day0)) == [
        ("published", "")
    ]
    # Four days later a merely similar text is a new story; a near-identical one is a copy.
    assert submit(runtime, doc("b", "\n\n".join(reworded), published_at=day4)) == [
        ("published", "")
    ]
    assert submit(runtime, doc("c", "\n\n".join(nearly_same), published_at=day4)) == [("near", "a")]


def test_same_day_reworded_copy_is_a_duplicate(runtime: Runtime) -> None:
    sentences = _sentences(50, 20)
    reworded = sentences[:15] + _sentences(51, 5)
    when = "2025-03-01T08:00:00Z"
    submit(runtime, doc("a", "\n\n".join(sentences), published_at=when))
    assert submit(runtime, doc("b", "\n\n".join(reworded), published_at=when)) == [("near", "a")]


def test_copy_of_a_copy_names_the_original(runtime: Runtime) -> None:
    first, second = _sentences(60, 10), _sentences(61, 10)
    assert submit(runtime, doc("story", "\n\n".join(first))) == [("published", "")]
    # A longer version that adds ten sentences starts as the story does: a copy of it,
    # indexed standing for it. A later piece carrying only the added sentences is a part
    # of that version (it starts otherwise): published, its link names the story the
    # version stands for.
    assert submit(runtime, doc("longer", "\n\n".join(first + second))) == [("near", "story")]
    assert submit(runtime, doc("follow-up", "\n\n".join(second))) == [("published", "")]
    ((_, fields),) = runtime.client.xrevrange(runtime.keys.stream("docs"), count=1)
    assert DocRecord.from_fields(fields).partial_of == "story"


def test_fact_frequencies_keep_two_generations(redis_target: RedisTarget, prefix: str) -> None:
    rt = build_runtime(settings_for(prefix, facts_generation=3), redis_target.url)
    # One batch each: a generation ends at the first batch past facts_generation documents.
    for i in range(8):
        submit(rt, doc(f"g{i}", article(500 + i)))
    meta = rt.client.hgetall(rt.keys.index_meta)
    # Documents 1-3 counted in generation 0, 4-6 in 1, 7-8 in 2; generation 0 is gone.
    assert meta[b"df_generation"] == b"2"
    assert meta[b"df_docs"] == b"2" and meta[b"df_previous_docs"] == b"3"
    tables = {key.decode() for key in rt.client.scan_iter(match=f"{prefix}ix:df:*")}
    assert tables == {rt.keys.fact_counts, rt.keys.fact_counts_before}
    size = 1 << rt.fingerprinter.params.facts_bits
    # Allocated at full size at once, one byte past the counters (see `_count_facts`).
    assert rt.client.strlen(rt.keys.fact_counts) == size + 1
    # Not the 2x of a table grown by BITFIELD: libc malloc gives the size asked for, and
    # jemalloc (Redis's usual build) rounds 1 MiB + 1 byte up to its 1.25 MiB size class.
    assert rt.client.memory_usage(rt.keys.fact_counts) < size * 1.3
    counted = rt.client.get(rt.keys.fact_counts) or b""
    assert 0 < sum(counted) < sum(rt.client.get(rt.keys.fact_counts_before) or b"") + sum(counted)


@dataclass(frozen=True, slots=True)
class _TestArgs(script_args.ScriptArgs):
    """Arguments of the scripts these tests compose from the index's library."""

    prefix: str = script_args.text()
    settings: str = script_args.text()
    values: tuple[bytes, ...] = script_args.items(as_table=True)


def test_worker_lsh_buckets_equal_the_scripts_own(runtime: Runtime) -> None:
    # The worker sends each document's bucket fields; the script recomputes them from
    # stored signatures to free expired documents. A disagreement would leave entries behind.
    bands, rows = runtime.fingerprinter.params.bands_rows
    rng = np.random.default_rng(7)
    signatures = rng.integers(0, 1 << 16, size=(20, 128), dtype=np.uint64).astype(np.uint16)
    signatures[0] = 0
    signatures[1] = 0xFFFF
    # The lead signature's bands follow the signature's.
    leads = rng.integers(0, 1 << 16, size=(20, LEAD_PERM), dtype=np.uint64).astype(np.uint16)
    leads[0] = 1
    ours = np.concatenate(
        (
            lsh_bucket_fields(signatures, bands, rows),
            lsh_bucket_fields(leads, LEAD_BANDS, LEAD_ROWS, bands),
        ),
        axis=1,
    )
    script = Script(
        "test_band_field",
        _TestArgs,
        ("tables", "records"),
        "return record_fields(A.values[1], A.values[2])\n",
    )
    for signature, lead, field_row in zip(signatures, leads, ours, strict=True):
        values = (signature.astype(">u2").tobytes(), lead.astype(">u2").tobytes())
        reply = script(runtime.client, [], _TestArgs("p:", runtime.index._index_settings(), values))
        assert list(reply) == [int(f).to_bytes(4, "big") for f in field_row]


def test_growing_tables_split_without_losing_an_entry(runtime: Runtime) -> None:
    # Linear hashing in the script: insert fields one by one, growing the table after each,
    # and every field must still be found in the shard the address function names.
    prefix = runtime.keys.prefix
    grow = Script(
        "test_growing_tables",
        _TestArgs,
        ("tables",),
        "for i = 1, #A.values do\n"
        "  local field = A.values[i]\n"
        "  redis.call('HSET', lh_key('z', field), field, i)\n"
        "  lh_grow('z', tonumber(redis.call('HINCRBY', P .. 'ix:zn', 'n', 1)))\nend\n"
        "local found = 0\nfor i = 1, #A.values do\n"
        "  local field = A.values[i]\n"
        "  if redis.call('HGET', lh_key('z', field), field) then found = found + 1 end\n"
        "end\nreturn {found, tonumber(redis.call('HGET', K.index_meta, 'shards:z'))}\n",
    )
    rng = np.random.default_rng(11)
    total = 0
    for _ in range(6):  # six calls: the shard count is read back from the index's metadata
        fields = tuple(int(v).to_bytes(4, "big") for v in rng.integers(0, 1 << 32, 1000))
        total += len(fields)
        args = _TestArgs(prefix, runtime.index._index_settings(), fields)
        found, shards = grow(runtime.client, [], args)
        assert found == len(fields)
    assert shards == -(-total // 48)  # the mean load: 48 entries per shard
    sizes = [runtime.client.hlen(key) for key in runtime.client.scan_iter(match=f"{prefix}ix:z:*")]
    assert len(sizes) == shards and sum(sizes) == total
    assert max(sizes) <= 128  # every shard stays in Redis's compact listpack encoding
    for key in runtime.client.scan_iter(match=f"{prefix}ix:z:*"):
        # listpack since Redis 7, ziplist before: the compact encodings either way
        assert runtime.client.object("encoding", key) in (b"listpack", b"ziplist")


@pytest.mark.parametrize("field", ["tables", "ids"])
def test_index_laid_out_by_an_older_version_is_refused(
    redis_target: RedisTarget, prefix: str, field: str
) -> None:
    submit(build_runtime(settings_for(prefix), redis_target.url), doc("a", article(9)))
    # As an index from before growing tables, or before the id table: no such field.
    redis_target.client.hdel(f"{prefix}ix:meta", field)
    later = build_runtime(settings_for(prefix), redis_target.url)
    with pytest.raises(IndexMismatch, match=f"{field}: index has None.*index rebuild"):
        later.index.ensure_params()


def published_ids(rt: Runtime) -> list[tuple[str, str]]:
    """(id, input_id or "") of every docs entry, in order."""
    entries = rt.client.xrange(rt.keys.docs)
    return [
        (fields[b"id"].decode(), fields.get(b"input_id", b"").decode())
        for _, fields in entries  # type: ignore[union-attr]
    ]


def held_ids(rt: Runtime) -> int:
    return sum(rt.client.hlen(k) for k in rt.client.scan_iter(match=f"{rt.keys.prefix}ix:d:*"))


def test_an_id_is_held_while_its_document_is_in_the_window(
    redis_target: RedisTarget, prefix: str
) -> None:
    rt = build_runtime(settings_for(prefix, retention_days=1, sweep_limit=50), redis_target.url)
    start = 1_700_000_000.0
    submit(rt, doc("x", article(300)), doc("x", article(301)), now=start)
    submit(rt, doc("x~2", article(302)), doc("x", article(303)), now=start + 0.5 * DAY)
    assert published_ids(rt) == [("x", ""), ("x~2", "x"), ("x~2~2", "x~2"), ("x~3", "x")]
    assert held_ids(rt) == 4
    # A day and a half later the first three have left the window: their ids are free
    # again, and their entries are freed as they are swept.
    submit(rt, doc("x", article(304)), now=start + 1.2 * DAY)
    assert published_ids(rt)[-1] == ("x", "")
    assert held_ids(rt) == 3  # x again, x~2~2 and x~3 (still in the window)
    # A steady stream: the id table holds about one window's documents.
    for day in range(3, 6):
        submit(
            rt,
            *(doc(f"d{i}", article(400 + 10 * day + i)) for i in range(10)),
            now=start + day * DAY,
        )
    indexed = int(rt.client.get(rt.keys.index_count) or 0)
    assert held_ids(rt) == indexed <= 20  # the last two days


def test_near_duplicate_names_the_published_id(runtime: Runtime) -> None:
    text = article(310)
    submit(runtime, doc("s", article(311)), doc("s", text))
    assert published_ids(runtime) == [("s", ""), ("s~2", "s")]
    assert submit(runtime, doc("copy", lightly_edit(text, 1))) == [("near", "s~2")]
    assert submit(runtime, doc("s", text)) == [("exact", "s~2")]
    assert len(published_ids(runtime)) == 2


_CHINESE = (
    "国家统计局周二发布数据显示，十一月份全国规模以上工业增加值同比增长百分之五点四，"
    "增速比上月加快零点三个百分点。\n\n"
    "国家统计局新闻发言人付凌晖在新闻发布会上表示，十一月份国民经济延续恢复向好态势，"
    "生产需求稳中有升，就业物价总体稳定。\n\n"
    "数据显示，十一月份社会消费品零售总额四万三千七百亿元，同比增长百分之三点六。"
    "其中，除汽车以外的消费品零售额增长百分之三点九。\n\n"
    "一至十一月份，全国固定资产投资同比增长百分之三点三，其中制造业投资增长百分之九点三，"
    "基础设施投资增长百分之四点二。\n\n"
    "付凌晖指出，当前外部环境依然复杂严峻，国内需求仍显不足，经济回升向好的基础还需进一步巩固。"
)
# Another outlet's copy: figures in digits, a few words changed in most clauses.
_CHINESE_EDITED = (
    "国家统计局星期二公布的数据表明，11月份全国规模以上工业增加值同比增长5.4%，"
    "增速较上月加快0.3个百分点。\n\n"
    "国家统计局新闻发言人付凌晖在新闻发布会上说，十一月份国民经济延续恢复向好态势，"
    "生产需求稳中有升，就业物价总体稳定。\n\n"
    "数据显示，11月份社会消费品零售总额43700亿元，同比增长3.6%。"
    "其中，除汽车以外的消费品零售额增长3.9%。\n\n"
    "1至11月份，全国固定资产投资同比增长3.3%，其中制造业投资增长9.3%，"
    "基础设施投资增长4.2%。\n\n"
    "付凌晖指出，当前外部环境依然复杂严峻，国内需求仍显不足，经济回升向好的基础还需进一步巩固。"
)
_CHINESE_OTHER = (
    "中国气象局周三发布寒潮预警，受强冷空气影响，北方大部地区气温将下降八至十二摄氏度。\n\n"
    "气象专家提醒，内蒙古东部、东北地区将有大风和降雪天气，部分地区积雪深度可达十厘米，"
    "公众出行需注意交通安全。\n\n"
    "中央气象台预计，此次寒潮过程将持续到本周末，南方地区随后也将出现明显降温。"
)
_JAPANESE = (
    "政府は五日、来年度の予算案の概要を発表した。一般会計の総額は過去最大の規模となる見通しで、"
    "防衛費と社会保障費の増加が主な要因だという。\n\n"
    "財務省の担当者は記者会見で、歳出の見直しを進めながら財政の健全化を目指すと述べた。"
    "野党は、国債の発行額が増えることに懸念を示している。"
)


def test_edited_chinese_and_japanese_copies_are_near_duplicates(runtime: Runtime) -> None:
    # Without spaces a whitespace token is a whole clause: this copy, with its figures
    # written in digits and a word changed in most clauses, shared almost no clause
    # shingle with its original and was published as a new article.
    assert submit(runtime, doc("zh", _CHINESE)) == [("published", "")]
    assert submit(runtime, doc("zh-edited", _CHINESE_EDITED)) == [("near", "zh")]
    assert submit(runtime, doc("zh-other", _CHINESE_OTHER)) == [("published", "")]
    assert submit(runtime, doc("ja", _JAPANESE)) == [("published", "")]
    japanese_copy = _JAPANESE.replace("述べた", "語った").replace("五日", "5日")
    assert submit(runtime, doc("ja-copy", japanese_copy)) == [("near", "ja")]


_FRENCH = (
    "Le président de la République a annoncé mercredi une réforme des retraites, après "
    "plusieurs semaines de négociations difficiles avec les syndicats. Selon l'Élysée, le "
    "texte sera présenté au Conseil des ministres à la fin du mois de février.\n\n"
    "Les organisations syndicales ont réagi avec colère à cette décision prise, selon "
    "elles, sans véritable concertation préalable. « C'est une réforme brutale et "
    "injuste », a déclaré le secrétaire général de la CFDT, qui appelle à une journée de "
    "grève et de manifestations dans toute la France le jeudi suivant.\n\n"
    "Le gouvernement, lui, défend un projet « nécessaire » pour garantir l'équilibre "
    "financier du système, dont le déficit pourrait atteindre douze milliards d'euros "
    "d'ici à la fin de la décennie, d'après les prévisions du Conseil d'orientation."
)
_GREEK = (
    "Η κυβέρνηση ανακοίνωσε σήμερα νέα μέτρα στήριξης για τα νοικοκυριά και τις μικρές "
    "επιχειρήσεις, μετά από εβδομάδες διαβουλεύσεων με τους κοινωνικούς εταίρους. "
    "Σύμφωνα με τον υπουργό Οικονομικών, το πρόγραμμα θα κοστίσει περίπου δύο "
    "δισεκατομμύρια ευρώ και θα χρηματοδοτηθεί από το πλεόνασμα του προϋπολογισμού. "
    "Η αντιπολίτευση χαρακτήρισε τα μέτρα ανεπαρκή και ζήτησε μόνιμες μειώσεις φόρων."
)


def _without_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def test_a_copy_without_accents_is_a_duplicate(runtime: Runtime) -> None:
    # A feed that strips accents (or writes Greek in capitals without them) changed one
    # word in three of the French text and nearly every Greek word: shingles shared with
    # the original fell to J ~ 0.3 and ~ 0, and the copy was published as a new article.
    # Folded for matching, it is the original's text: an exact duplicate; with an edit
    # on top, a near one.
    assert submit(runtime, doc("fr", _FRENCH)) == [("published", "")]
    assert submit(runtime, doc("fr-ascii", _without_accents(_FRENCH))) == [("exact", "fr")]
    edited = _without_accents(_FRENCH).replace("douze milliards", "13 milliards")
    assert submit(runtime, doc("fr-edited", edited)) == [("near", "fr")]
    assert submit(runtime, doc("el", _GREEK)) == [("published", "")]
    assert submit(runtime, doc("el-caps", _without_accents(_GREEK).upper())) == [("exact", "el")]


def test_index_refuses_one_tokenised_otherwise(redis_target: RedisTarget, prefix: str) -> None:
    # An index written before characters of Chinese and Japanese were tokens of their own
    # holds no record of the tokens scheme: its CJK fingerprints differ, so it is refused.
    runtime = build_runtime(settings_for(prefix), redis_target.url)
    submit(runtime, doc("a", article(6)))
    runtime.client.hdel(runtime.keys.index_meta, "tokens")
    later = build_runtime(settings_for(prefix), redis_target.url)
    with pytest.raises(IndexMismatch, match="tokens: index has None, config wants nfkc-fold"):
        later.index.ensure_params()
