"""Dedup-engine benchmark: newsdedup's Redis index against datasketch's MinHashLSH on Redis.

Both systems see the same cleaned, tokenised SaudiNewsNet articles, on private Redis
servers started here (bench/_redis.py). Sections, each one or more table rows:

1. throughput  MinHash + index only (cleaning and tokenising are done before the clock)
2. memory      used_memory growth per indexed document on a fresh server
3. race        near-copies of 50 stories submitted by P processes released together
4. devpairs    precision / recall on ../shared/eval/neardup-dev.jsonl after a full backfill

Run from the repository root: `.venv/bin/python bench/dedup_bench.py [--quick]`.
See bench/README.md for what every row means.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import os
import platform
import random
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import datasketch
from _redis import COMMON_ARGS, RedisServer
from datasketch import MinHash, MinHashLSH
from rich.console import Console
from rich.table import Table

from workers.clean.fingerprint import Fingerprint
from workers.clean.matching import matching_tokens
from workers.config import Settings, load_settings
from workers.document import DeadInput, Document
from workers.index.dedup import Accepted, Outcome, ScriptBatch
from workers.ingest.dates import parse_date
from workers.pipeline.process import SUBMIT_CHUNK, clean_document, learn_common_facts, overlapped
from workers.worker.runtime import Runtime, build_runtime

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SHARED = ROOT.parent / "shared"
CORPUS_NAME = "corpus/saudinewsnet.jsonl.gz"
DEVPAIRS_NAME = "eval/neardup-dev.jsonl"

NUM_PERM = 128
SHINGLE = 3  # word n-grams, as the project's default shingle_size
RACE_STORIES = 50
RACE_COPIES = 8
RACE_MIN_WORDS = 80
RACE_MAX_CROSS = 0.2  # max exact shingle containment between two different stories
RACE_MIN_PAIR_JACCARD = 0.7  # min exact shingle Jaccard between two copies of one story
RACE_POOL = 3000  # records searched for race stories when the corpus is not loaded whole

FULL = {"docs": 5000, "reps": 3, "race_reps": 10, "procs": "4,8,16"}
QUICK = {"docs": 1000, "reps": 3, "race_reps": 3, "procs": "4,8"}

console = Console(stderr=True)  # progress on stderr, so stdout carries only the table


# --------------------------------------------------------------------------- data


@dataclass(slots=True)
class Corpus:
    """Cleaned documents in id (= date) order, with their matching tokens.

    Records that clean to a DeadInput (empty text) are left out for both systems.
    """

    raw: list[Document]  # as loaded, uncleaned (race copies are edited from these)
    docs: list[Document]  # cleaned
    tokens: list[list[str]]
    bytes_in: list[int]
    dead: int

    def head(self, n: int) -> Corpus:
        return Corpus(self.raw, self.docs[:n], self.tokens[:n], self.bytes_in[:n], self.dead)


@dataclass(frozen=True, slots=True)
class CorpusSpec:
    """A corpus the dev-pairs scoring can backfill: its files under ../shared, loaded
    together (ids unique across them), and the pairs scored by default."""

    files: tuple[str, ...]  # relative to the shared folder
    pairs: str  # relative to the shared folder, or to the repository with in_repo
    pairs_in_repo: bool = False

    def pairs_path(self, shared: Path) -> Path:
        return (ROOT if self.pairs_in_repo else shared) / self.pairs


# "ant" is the ANT corpus, both releases: Jawhara FM (2015-2017) comes before the 2018
# multisource outlets in date order; the proxy pairs are multisource articles.
CORPORA: dict[str, CorpusSpec] = {
    "saudinewsnet": CorpusSpec((CORPUS_NAME,), DEVPAIRS_NAME),
    "ant": CorpusSpec(
        ("corpus/ant_jawharafm_v1.1.jsonl.gz", "corpus/ant_multisource_v2.1.jsonl.gz"),
        "bench/ant-pairs-proxy.jsonl",
        pairs_in_repo=True,
    ),
}


def record_date(rec: dict[str, Any]) -> tuple[str, float | None]:
    """A record's publication date as ISO 8601 (Document.published_at) and epoch seconds.

    SaudiNewsNet has `date_extracted` (naive "YYYY-MM-DD HH:MM:SS"); ANT has `time`: RFC 2822
    (multisource), ISO 8601 or dd/mm/yyyy (Jawhara FM). ("", None) when there is none.
    """
    stamp = str(rec.get("time") or rec.get("date_extracted") or "").strip()
    iso = parse_date(stamp)
    if not iso and stamp:
        try:
            iso = datetime.strptime(stamp, "%d/%m/%Y").isoformat()
        except ValueError:
            iso = ""
    if not iso:
        return "", None
    moment = datetime.fromisoformat(iso)
    return iso, (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def load_documents(paths: Path | Sequence[Path], limit: int | None) -> list[Document]:
    """Records of one or more corpus files as Documents, in date order.

    SaudiNewsNet ids are date + sequence, so id order is its date order (its
    `date_extracted` is the crawl time). ANT ids are not ("AL-culture-1-20180218"): its
    records are ordered by their `time`, then id. Ids must be unique across the files.
    `limit` keeps the first records read (SaudiNewsNet's quick runs)."""
    files = [paths] if isinstance(paths, Path) else list(paths)
    docs: list[Document] = []
    order: dict[str, tuple[float, str]] = {}
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                if limit is not None and len(docs) >= limit:
                    break
                rec = json.loads(line)
                doc_id = str(rec["id"])
                if doc_id in order:
                    raise ValueError(f"{path}: id {doc_id} is also in an earlier record")
                published, epoch = record_date(rec)
                timed = "time" in rec and epoch is not None
                order[doc_id] = (epoch if timed and epoch is not None else 0.0, doc_id)
                docs.append(
                    Document(
                        id=doc_id,
                        source=str(rec.get("source") or "unknown"),
                        text=str(rec.get("text") or ""),
                        input_ref=doc_id,  # unique per record: Outcome.input_ref maps back to id
                        title=str(rec.get("title") or ""),
                        url=str(rec.get("url") or ""),
                        published_at=published,
                    )
                )
    docs.sort(key=lambda d: order[d.id])
    return docs


def clean_corpus(raw: list[Document], rt: Runtime) -> Corpus:
    docs: list[Document] = []
    tokens: list[list[str]] = []
    bytes_in: list[int] = []
    dead = 0
    for doc in raw:
        cleaned = clean_document(doc, rt.rules)
        if isinstance(cleaned, DeadInput):
            dead += 1
            continue
        docs.append(cleaned.doc)
        tokens.append(cleaned.tokens)
        bytes_in.append(len(doc.text.encode("utf-8")))
    return Corpus(raw, docs, tokens, bytes_in, dead)


def shingles(tokens: Sequence[str]) -> list[bytes]:
    """Distinct word 3-shingles for the baseline (a shorter text is one shingle)."""
    if len(tokens) < SHINGLE:
        return [" ".join(tokens).encode("utf-8")] if tokens else []
    return list(
        {
            " ".join(tokens[i : i + SHINGLE]).encode("utf-8")
            for i in range(len(tokens) - SHINGLE + 1)
        }
    )


# --------------------------------------------------------------------------- the two systems


def project_settings(prefix: str) -> Settings:
    return load_settings().model_copy(update={"prefix": prefix})


def fingerprint_all(rt: Runtime, token_lists: list[list[str]]) -> list[Fingerprint]:
    many: Callable[[list[list[str]]], list[Fingerprint]] | None = getattr(
        rt.fingerprinter, "fingerprint_many", None
    )
    if many is not None:
        return many(token_lists)
    return [rt.fingerprinter.fingerprint(t) for t in token_lists]


def baseline_lsh(server: RedisServer, basename: str, threshold: float) -> MinHashLSH:
    return MinHashLSH(
        threshold=threshold,
        num_perm=NUM_PERM,
        storage_config={
            "type": "redis",
            "basename": basename.encode(),
            "redis": {"unix_socket_path": server.socket_path},
        },
    )


def baseline_minhash(tokens: Sequence[str]) -> MinHash:
    # As people use it: a fresh MinHash (default SHA-1 hash, seed 1) per document.
    m = MinHash(num_perm=NUM_PERM)
    m.update_batch(shingles(tokens))
    return m


@dataclass(slots=True)
class IndexRun:
    """One system indexing one corpus on one fresh server."""

    docs: int
    seconds: float  # MinHash + index, the timed part
    fingerprint_seconds: float  # of which MinHash (project: fingerprint(); baseline: MinHash)
    kept: int  # published (project) / inserted (baseline)
    indexed: int  # documents in the index: the project indexes near-duplicates too
    kinds: dict[str, int]
    used_memory_delta: int  # INFO used_memory after - before, only the control client attached
    stream_bytes: int  # MEMORY USAGE of the project's docs + duplicates streams (subtracted)
    links: list[tuple[str, str]] = field(default_factory=list)  # (doc id, original id)
    # doc id -> (kind, stream entry id) of each input the project wrote to docs/duplicates
    entries: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.seconds if self.seconds else 0.0

    @property
    def bytes_per_doc(self) -> float:
        return (self.used_memory_delta - self.stream_bytes) / self.indexed if self.indexed else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "docs": self.docs,
            "seconds": round(self.seconds, 4),
            "fingerprint_seconds": round(self.fingerprint_seconds, 4),
            "docs_per_s": round(self.docs_per_s, 1),
            "kept": self.kept,
            "indexed": self.indexed,
            "kinds": self.kinds,
            "used_memory_delta": self.used_memory_delta,
            "stream_bytes": self.stream_bytes,
            "bytes_per_doc": round(self.bytes_per_doc, 1),
        }


def _progress(label: str, done: int, total: int, start: float) -> None:
    # Long backfills only; one line per 5,000 docs costs nothing measurable.
    if label and done % 5000 < SUBMIT_CHUNK and done:
        rate = done / (time.perf_counter() - start)
        console.log(f"{label}: {done:,}/{total:,} docs, {rate:,.0f} docs/s so far")


def run_project(server: RedisServer, corpus: Corpus, prefix: str, label: str = "") -> IndexRun:
    rt = build_runtime(project_settings(prefix), server.url)
    rt.fingerprinter.fingerprint(corpus.tokens[0])  # untimed warm-up: permutation tables
    rt.index.ensure_params()  # one-time index metadata, not per-document work
    before = server.used_memory()
    # (Re)connect after used_memory()'s CLIENT KILL, outside the clock: redis-py would
    # otherwise find the dead socket on the first submit and back off before retrying.
    rt.client.ping()
    outcomes: list[Outcome] = []
    fp_seconds = 0.0

    def cleaned_batch(lo: int) -> ScriptBatch:
        # What pipeline.process_inputs does after cleaning (cleaning is outside the clock).
        nonlocal fp_seconds
        hi = min(lo + SUBMIT_CHUNK, len(corpus.docs))
        t0 = time.perf_counter()
        fps = fingerprint_all(rt, corpus.tokens[lo:hi])
        fp_seconds += time.perf_counter() - t0
        batch = [
            Accepted(doc, fp, nbytes)
            for doc, fp, nbytes in zip(corpus.docs[lo:hi], fps, corpus.bytes_in[lo:hi], strict=True)
        ]
        return rt.index.build_batch(job_id="", accepted=batch)

    start = time.perf_counter()
    # As pipeline.process_inputs: the next chunk is fingerprinted while Redis runs this one.
    chunks = (cleaned_batch(lo) for lo in range(0, len(corpus.docs), SUBMIT_CHUNK))
    for submitted in overlapped(chunks, rt.index.run):
        learn_common_facts(rt.fingerprinter, submitted)
        outcomes.extend(submitted)
        _progress(label, len(outcomes), len(corpus.docs), start)
    seconds = time.perf_counter() - start
    after = server.used_memory()
    streams = server.key_memory(rt.keys.docs) + server.key_memory(rt.keys.duplicates)
    kinds: dict[str, int] = {}
    links: list[tuple[str, str]] = []
    entries: dict[str, tuple[str, str]] = {}
    for outcome in outcomes:
        kinds[outcome.kind] = kinds.get(outcome.kind, 0) + 1
        if outcome.entry_id:
            entries[outcome.input_ref] = (outcome.kind, outcome.entry_id)
        if outcome.duplicate_of:
            links.append((outcome.input_ref, outcome.duplicate_of))  # input_ref == doc id here
        elif outcome.relation == "update_of":
            # An update is the same article (the eval README's DUP: "updated version"): the
            # consumer replaces its copy. Partials are published apart, not joined.
            links.append((outcome.input_ref, outcome.linked))
    indexed = int(rt.client.get(rt.keys.index_count) or 0)
    rt.client.close()
    return IndexRun(
        len(corpus.docs),
        seconds,
        fp_seconds,
        kinds.get("published", 0),
        indexed,
        kinds,
        after - before,
        streams,
        links,
        entries,
    )


def run_baseline(
    server: RedisServer, corpus: Corpus, basename: str, threshold: float, label: str = ""
) -> IndexRun:
    lsh = baseline_lsh(server, basename, threshold)
    before = server.used_memory()
    # Opens the b+1 connections (one redis.Redis per band table) outside the clock.
    lsh.query(baseline_minhash(["warm", "up", "only", "x"]))
    inserted = 0
    links: list[tuple[str, str]] = []
    fp_seconds = 0.0
    start = time.perf_counter()
    for n, (doc, tokens) in enumerate(zip(corpus.docs, corpus.tokens, strict=True), 1):
        if n % SUBMIT_CHUNK == 0:
            _progress(label, n, len(corpus.docs), start)
        t0 = time.perf_counter()
        m = baseline_minhash(tokens)
        fp_seconds += time.perf_counter() - t0
        candidates = lsh.query(m)
        if candidates:
            # "First" candidate = earliest indexed (ids sort by date); query order is a set's.
            links.append((doc.id, min(str(c) for c in candidates)))
        else:
            lsh.insert(doc.id, m)
            inserted += 1
    seconds = time.perf_counter() - start
    after = server.used_memory()
    kinds = {"inserted": inserted, "candidate_found": len(corpus.docs) - inserted}
    return IndexRun(
        len(corpus.docs), seconds, fp_seconds, inserted, inserted, kinds, after - before, 0, links
    )


# --------------------------------------------------------------------------- table


Cell = float | int | str | None


@dataclass(frozen=True, slots=True)
class Row:
    metric: str
    project: Cell
    baseline: Cell
    note: str = ""
    ratio: bool = True  # show project/baseline when both are numbers


@dataclass(slots=True)
class Bench:
    args: argparse.Namespace
    shared: Path
    settings: Settings
    corpus: Corpus
    raw: dict[str, Any] = field(default_factory=dict)  # everything measured, for --json
    footnotes: list[str] = field(default_factory=list)


def fmt(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


def ratio(row: Row) -> str:
    p, b = row.project, row.baseline
    if not row.ratio or not isinstance(p, int | float) or not isinstance(b, int | float) or not b:
        return ""
    return f"{p / b:.2f}x"


def render(rows: list[Row], footnotes: list[str]) -> Table:
    table = Table(title="newsdedup dedup engine vs datasketch MinHashLSH (Redis storage)")
    table.add_column("metric", no_wrap=True)
    table.add_column("project", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("project/baseline", justify="right")
    table.add_column("note")
    for row in rows:
        table.add_row(row.metric, fmt(row.project), fmt(row.baseline), ratio(row), row.note)
    table.caption = "\n".join(f"[{i}] {note}" for i, note in enumerate(footnotes, 1))
    table.caption_justify = "left"
    return table


# --------------------------------------------------------------------------- 1 + 2


def measure_throughput_memory(bench: Bench) -> list[Row]:
    corpus = bench.corpus.head(bench.args.docs)
    threshold = bench.settings.dedup.threshold
    runs: dict[str, list[IndexRun]] = {"project": [], "baseline": []}
    for rep in range(bench.args.reps):
        # Alternate who goes first, so slow drift of the machine hits both alike.
        order = ("project", "baseline") if rep % 2 == 0 else ("baseline", "project")
        for system in order:
            with RedisServer() as server:  # fresh server: memory starts from empty
                if system == "project":
                    run = run_project(server, corpus, f"bench:tp{rep}:")
                else:
                    run = run_baseline(server, corpus, f"bench_tp{rep}", threshold)
            runs[system].append(run)
            console.log(
                f"throughput rep {rep + 1}/{bench.args.reps} {system}: "
                f"{run.docs_per_s:,.0f} docs/s, {run.bytes_per_doc:,.0f} B/doc, kept {run.kept}"
            )
    bench.raw["throughput"] = {k: [r.summary() for r in v] for k, v in runs.items()}

    def med(system: str, get: Callable[[IndexRun], float]) -> float:
        return statistics.median(get(r) for r in runs[system])

    p_fp = med("project", lambda r: r.fingerprint_seconds / r.seconds)
    b_fp = med("baseline", lambda r: r.fingerprint_seconds / r.seconds)
    last_p, last_b = runs["project"][-1], runs["baseline"][-1]
    bench.footnotes.append(
        f"Throughput: {len(corpus.docs):,} cleaned docs, median of {bench.args.reps} reps, one "
        f"process; project: chunks of {SUBMIT_CHUNK} docs, one pipeline of scripts each, the next "
        "chunk fingerprinted while Redis runs the last (as the workers do); baseline: one "
        "query+insert per doc. MinHash "
        f"share of the timed part: project {p_fp:.0%}, baseline {b_fp:.0%}. Outcomes: project "
        f"{last_p.kinds}, baseline {last_b.kinds}."
    )
    bench.footnotes.append(
        "Memory: fresh server per system and rep, INFO used_memory after - before with only an "
        "idle control connection attached, / documents indexed (project: 'published', baseline: "
        "inserted). Project figure EXCLUDES its output streams: MEMORY USAGE ... SAMPLES 0 of "
        f"the docs + duplicates streams (median {med('project', lambda r: r.stream_bytes):,.0f} "
        "B) is subtracted; everything else it keeps (index, stats hashes) stays in."
    )
    return [
        Row(
            "dedup throughput (docs/s)",
            med("project", lambda r: r.docs_per_s),
            med("baseline", lambda r: r.docs_per_s),
            "higher is better",
        ),
        Row(
            "Redis memory per indexed doc (B)",
            med("project", lambda r: r.bytes_per_doc),
            med("baseline", lambda r: r.bytes_per_doc),
            f"lower is better; {last_p.indexed:,} vs {last_b.indexed:,} docs indexed",
        ),
    ]


# --------------------------------------------------------------------------- 3: race


@dataclass(frozen=True, slots=True)
class RaceDoc:
    key: str
    item: Accepted  # project: cleaned + fingerprinted
    minhash: MinHash  # baseline: same cleaned tokens


def _shingle_set(tokens: Sequence[str]) -> set[bytes]:
    return set(shingles(tokens))


def _jaccard(a: set[bytes], b: set[bytes]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def race_documents(bench: Bench, rt: Runtime) -> tuple[list[RaceDoc], list[float]]:
    """RACE_STORIES stories x RACE_COPIES copies, and each story's lowest copy-pair Jaccard.

    Two conditions make "exactly 50 kept" the one right answer, whatever the order:
    - stories are not copies of each other (the corpus is full of reprinted wire copy):
      exact shingle containment between any two stories < RACE_MAX_CROSS;
    - a story's 8 copies are all clear near-duplicates of each other: exact word-3-shingle
      Jaccard >= RACE_MIN_PAIR_JACCARD for every pair, a margin over the 0.5 threshold
      that MinHash noise cannot cross. The lowest of a story's 28 copy pairs is typically
      ~0.6 (two copies that dropped different words and added different sentences); so
      close to 0.5, the order of arrival decides and even a serial run keeps 51-53: that
      is not a race. About one candidate in twenty passes.
    Both checks use exact shingle sets, so neither system's own estimate picks the data.
    """
    sys.path.insert(0, str(ROOT / "tests"))
    from support.edit_copies import lightly_edit  # tests/ is on the path, not a package

    corpus = bench.corpus
    raw_by_id = {d.id: d for d in corpus.raw}
    out: list[RaceDoc] = []
    story_sets: list[set[bytes]] = []
    min_pairs: list[float] = []
    step = max(1, len(corpus.docs) // (4 * RACE_STORIES))  # spread over outlets and days
    for i in dict.fromkeys([*range(0, len(corpus.docs), step), *range(len(corpus.docs))]):
        if len(corpus.docs[i].text.split()) < RACE_MIN_WORDS:
            continue
        mine = _shingle_set(corpus.tokens[i])
        if any(len(mine & o) / min(len(mine), len(o)) >= RACE_MAX_CROSS for o in story_sets):
            continue
        s = len(story_sets)
        original = raw_by_id[corpus.docs[i].id]
        # Clean and compare first, fingerprint only stories that pass: most candidates
        # fail on a copy pair, and stopping at the first such pair keeps selection cheap.
        cleaned: list[Document] = []
        texts: list[str] = []  # each copy before cleaning, for bytes_in
        sets: list[set[bytes]] = []
        lowest = 1.0
        for c in range(RACE_COPIES):
            text = original.text if c == 0 else lightly_edit(original.text, i * 100 + c)
            key = f"race-{s:02d}-{c}"
            copy = Document(
                id=key, source=original.source, text=text, input_ref=key, title=original.title
            )
            result = clean_document(copy, rt.rules)
            if isinstance(result, DeadInput):
                break
            doc = result.doc
            shingle_set = _shingle_set(result.tokens)
            lowest = min([lowest, *(_jaccard(shingle_set, other) for other in sets)])
            if lowest < RACE_MIN_PAIR_JACCARD:
                break
            cleaned.append(doc)
            texts.append(text)
            sets.append(shingle_set)
        if len(cleaned) < RACE_COPIES:
            continue
        tokens = [matching_tokens(d.text) for d in cleaned]
        copies = [
            RaceDoc(d.id, Accepted(d, fp, len(t.encode("utf-8"))), baseline_minhash(tk))
            for d, fp, tk, t in zip(
                cleaned, fingerprint_all(rt, tokens), tokens, texts, strict=True
            )
        ]
        out.extend(copies)
        story_sets.append(mine)
        min_pairs.append(lowest)
        if len(story_sets) == RACE_STORIES:
            return out, min_pairs
    raise RuntimeError(f"found only {len(story_sets)} usable race stories")


def _race_child(
    system: str,
    url: str,
    socket_path: str,
    namespace: str,
    threshold: float,
    docs: list[RaceDoc],
    barrier: Barrier,
    results: Any,
) -> None:
    """One racing process: connect and warm up, wait for all, then submit one by one."""
    try:
        kept = 0
        if system == "project":
            rt = build_runtime(project_settings(namespace), url)
            rt.index.ensure_params()
            rt.client.ping()
            barrier.wait(timeout=120)
            for d in docs:
                outcome = rt.index.run(rt.index.build_batch(job_id="", accepted=[d.item]))[0]
                kept += outcome.kind == "published"
        else:
            lsh = MinHashLSH(
                threshold=threshold,
                num_perm=NUM_PERM,
                storage_config={
                    "type": "redis",
                    "basename": namespace.encode(),
                    "redis": {"unix_socket_path": socket_path},
                },
            )
            if docs:
                lsh.query(docs[0].minhash)  # read-only: opens the connections before the gate
            barrier.wait(timeout=120)
            for d in docs:
                if not lsh.query(d.minhash):
                    lsh.insert(d.key, d.minhash)
                    kept += 1
        results.put((kept, ""))
    except BaseException as exc:  # report, never hang the parent
        results.put((0, f"{type(exc).__name__}: {exc}"))


def race_once(
    ctx: Any,
    system: str,
    server: RedisServer,
    namespace: str,
    threshold: float,
    docs: list[RaceDoc],
    procs: int,
    seed: int,
) -> int:
    shuffled = list(docs)
    random.Random(seed).shuffle(shuffled)
    chunks = [shuffled[i::procs] for i in range(procs)]
    barrier = ctx.Barrier(procs)
    results = ctx.Queue()
    workers = [
        ctx.Process(
            target=_race_child,
            args=(
                system,
                server.url,
                server.socket_path,
                namespace,
                threshold,
                chunk,
                barrier,
                results,
            ),
            daemon=True,
        )
        for chunk in chunks
    ]
    for w in workers:
        w.start()
    try:
        replies = [results.get(timeout=300) for _ in workers]
    finally:
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.terminate()
    errors = [err for _, err in replies if err]
    if errors:
        raise RuntimeError(f"race worker failed ({system}, P={procs}): {errors[0]}")
    return sum(kept for kept, _ in replies)


def measure_race(bench: Bench) -> list[Row]:
    # fork: workers inherit the prepared documents instead of re-importing everything.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    threshold = bench.settings.dedup.threshold
    rows: list[Row] = []
    with RedisServer() as pserver, RedisServer() as bserver:
        rt = build_runtime(project_settings("bench:race:prep:"), pserver.url)
        docs, min_pairs = race_documents(bench, rt)
        rt.client.close()
        raw: dict[str, Any] = {
            "start_method": method,
            "stories": RACE_STORIES,
            "copies": RACE_COPIES,
            "min_pair_jaccard": [round(j, 3) for j in min_pairs],
        }
        servers = {"project": pserver, "baseline": bserver}
        # P=1 first: the same documents and shuffles with no concurrency. Any excess there
        # is the matcher's (order-dependent) verdict, not a race, and bounds the rows below.
        for procs in [1, *bench.args.procs]:
            kept: dict[str, list[int]] = {"project": [], "baseline": []}
            for rep in range(bench.args.race_reps):
                for system, server in servers.items():
                    ns = f"bench:race:{system}:p{procs}:r{rep}:"
                    kept[system].append(
                        race_once(ctx, system, server, ns, threshold, docs, procs, seed=rep)
                    )
                console.log(
                    f"race P={procs} rep {rep + 1}/{bench.args.race_reps}: "
                    f"project kept {kept['project'][-1]}, baseline kept {kept['baseline'][-1]}"
                )
            raw[f"P{procs}"] = kept
            p, b = kept["project"], kept["baseline"]
            label = "race P=1 (serial control)" if procs == 1 else f"race P={procs}"
            rows.append(
                Row(
                    f"{label}: kept min/median/max",
                    f"{min(p)}/{statistics.median(p):g}/{max(p)}",
                    f"{min(b)}/{statistics.median(b):g}/{max(b)}",
                    f"of {len(docs)} docs; target {RACE_STORIES}/{RACE_STORIES}/{RACE_STORIES}",
                )
            )
            rows.append(
                Row(
                    f"{label}: reps keeping exactly {RACE_STORIES}",
                    f"{p.count(RACE_STORIES)}/{len(p)}",
                    f"{b.count(RACE_STORIES)}/{len(b)}",
                    "target: all",
                )
            )
    bench.raw["race"] = raw
    bench.footnotes.append(
        f"Race: {RACE_STORIES} real articles (>= {RACE_MIN_WORDS} words; exact shingle "
        f"containment between stories < {RACE_MAX_CROSS}) x {RACE_COPIES} copies (copy 0 "
        "unedited, others tests/support/edit_copies.lightly_edit; only stories whose copies "
        f"all have pairwise exact shingle Jaccard >= {RACE_MIN_PAIR_JACCARD}), shuffled (rep r "
        f"uses the same shuffle for every P and both systems), split over P processes ({method}) "
        "released by one barrier, one document per submit() / query+insert; fresh prefix or "
        "basename per rep. The P=1 rows are the serial control."
    )
    return rows


# --------------------------------------------------------------------------- 4: dev pairs


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:  # path compression
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def score_pairs(links: Iterable[tuple[str, str]], pairs: list[dict[str, str]]) -> dict[str, Any]:
    uf = UnionFind()
    for a, b in links:
        uf.union(a, b)
    joined: dict[str, int] = {}
    total: dict[str, int] = {}
    for pair in pairs:
        label = pair["label"]
        total[label] = total.get(label, 0) + 1
        if uf.find(pair["a"]) == uf.find(pair["b"]):
            joined[label] = joined.get(label, 0) + 1
    dup, not_, part = (joined.get(k, 0) for k in ("DUP", "NOT", "PARTIAL"))
    return {
        "joined": joined,
        "total": total,
        "precision": dup / (dup + not_) if dup + not_ else 0.0,
        "recall": dup / total["DUP"] if total.get("DUP") else 0.0,
        "partial_joined": part / total["PARTIAL"] if total.get("PARTIAL") else 0.0,
    }


def measure_devpairs(bench: Bench) -> list[Row]:
    pairs = [json.loads(line) for line in (bench.shared / DEVPAIRS_NAME).open(encoding="utf-8")]
    corpus = bench.corpus
    threshold = bench.settings.dedup.threshold
    runs: dict[str, IndexRun] = {}
    for system in ("project", "baseline"):
        with RedisServer() as server:
            if system == "project":
                runs[system] = run_project(server, corpus, "bench:dev:", "dev backfill project")
            else:
                runs[system] = run_baseline(
                    server, corpus, "bench_dev", threshold, "dev backfill baseline"
                )
        console.log(f"dev backfill {system}: {runs[system].docs_per_s:,.0f} docs/s")
    scores = {system: score_pairs(run.links, pairs) for system, run in runs.items()}
    bench.raw["devpairs"] = {
        system: {"backfill": runs[system].summary(), **scores[system]} for system in runs
    }
    p, b = scores["project"], scores["baseline"]
    n = len(corpus.docs)

    def share(s: dict[str, Any], label: str) -> str:
        return f"{s['joined'].get(label, 0)}/{s['total'].get(label, 0)}"

    bench.footnotes.append(
        f"Dev pairs: {DEVPAIRS_NAME} after a backfill of {n:,} cleaned docs ({corpus.dead} "
        "empty ones skipped) in id order; clusters = union-find over duplicate_of and "
        "update_of (project) / "
        "doc -> earliest LSH candidate (baseline). Joined DUP "
        f"{share(p, 'DUP')} vs {share(b, 'DUP')}, NOT {share(p, 'NOT')} vs {share(b, 'NOT')}."
    )
    return [
        Row("dev pairs: precision (DUP vs NOT)", p["precision"], b["precision"]),
        Row("dev pairs: recall (DUP)", p["recall"], b["recall"]),
        Row(
            "dev pairs: PARTIAL pairs joined (share)",
            p["partial_joined"],
            b["partial_joined"],
            "reported apart, neither right nor wrong",
        ),
        Row(
            f"full backfill ({n:,} docs): docs/s",
            runs["project"].docs_per_s,
            runs["baseline"].docs_per_s,
        ),
        Row(
            f"full backfill ({n:,} docs): memory/doc (B)",
            runs["project"].bytes_per_doc,
            runs["baseline"].bytes_per_doc,
            "same accounting as above",
        ),
    ]


# ---------------------------------------------------------------------------------------------
def measure_retention_rows(bench: Bench) -> list[Row]:
    """Project only (datasketch's Redis storage has no expiry): memory after 3x / 1x a
    retention window of a steady stream on a simulated clock (bench/retention.py)."""
    from retention import measure_retention

    result = measure_retention(window_days=5, docs_per_day=1000)
    bench.raw["retention"] = {
        "window_days": result.window_days,
        "docs_per_day": result.docs_per_day,
        "memory_after": result.memory_after,
        "indexed_after": result.indexed_after,
    }
    bench.footnotes.append(
        "retention: 5-day window, 1,000 SaudiNewsNet docs per simulated day, index memory "
        "(MEMORY USAGE of its keys) after 1x, 2x and 3x the window; the baseline cannot "
        "expire entries (datasketch issues #54, #149, #219), so it grows 3x."
    )
    return [
        Row(
            "retention: index memory 3x / 1x window",
            round(result.ratio_3x_to_1x, 3),
            None,
            "target <= 1.10",
            ratio=False,
        ),
        Row(
            "retention: docs indexed after 1x / 3x",
            f"{result.indexed_after[1]} / {result.indexed_after[3]}",
            None,
            ratio=False,
        ),
    ]


def sections(args: argparse.Namespace) -> list[Callable[[Bench], list[Row]]]:
    named: dict[str, Callable[[Bench], list[Row]]] = {
        "throughput": measure_throughput_memory,
        "race": measure_race,
        "retention": measure_retention_rows,
        "devpairs": measure_devpairs,
    }
    if args.skip_devpairs:
        named.pop("devpairs")
    if args.only:
        return [named[name] for name in args.only]
    return list(named.values())


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--docs", type=int, help=f"docs for throughput/memory ({FULL['docs']})")
    parser.add_argument("--reps", type=int, help=f"throughput repetitions ({FULL['reps']})")
    parser.add_argument("--race-reps", type=int, help=f"race reps per P ({FULL['race_reps']})")
    parser.add_argument("--procs", help=f"race process counts ({FULL['procs']})")
    parser.add_argument("--skip-devpairs", action="store_true", help="skip the full backfill")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1,000 docs, 3 race reps, P=4,8, no dev pairs (flags above still win)",
    )
    parser.add_argument(
        "--only",
        help="comma-separated sections to run: throughput, race, retention, devpairs",
    )
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="shared data folder")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick:
        args.skip_devpairs = True
    if args.only:
        args.only = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = set(args.only) - {"throughput", "race", "retention", "devpairs"}
        if unknown:
            parser.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}")
        args.skip_devpairs = "devpairs" not in args.only
    try:
        args.procs = [int(p) for p in str(args.procs).split(",") if p.strip()]
    except ValueError:
        parser.error(f"--procs wants comma-separated integers, got {args.procs!r}")
    if args.reps < 1 or args.race_reps < 1 or args.docs < SUBMIT_CHUNK or not args.procs:
        parser.error(f"--reps/--race-reps >= 1, --docs >= {SUBMIT_CHUNK}, --procs not empty")
    if any(p < 1 for p in args.procs):
        parser.error("--procs must be positive")
    return args


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the `with RedisServer()` blocks


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    shared = args.shared.resolve()
    if not shared.is_dir():
        print(f"dedup_bench: error: shared data folder {shared} not found", file=sys.stderr)
        return 2
    wanted = [shared / CORPUS_NAME] + ([] if args.skip_devpairs else [shared / DEVPAIRS_NAME])
    missing = [str(p) for p in wanted if not p.exists()]
    if missing:
        print(f"dedup_bench: error: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)

    settings = load_settings()
    # Some records clean to nothing: read a margin more than the documents wanted.
    limit = None if not args.skip_devpairs else int(max(args.docs, RACE_POOL) * 1.1)
    started = time.perf_counter()
    try:
        with console.status("loading and cleaning the corpus (untimed)"):
            raw_docs = load_documents(shared / CORPUS_NAME, limit)
            with RedisServer() as scratch:  # build_runtime wants a server; only rules are used
                rt = build_runtime(project_settings("bench:clean:"), scratch.url)
                corpus = clean_corpus(raw_docs, rt)
                redis_version = scratch.version()
                ping_before = scratch.ping_us()
                bands, rows = rt.fingerprinter.params.bands_rows
        if len(corpus.docs) < args.docs:
            print(f"dedup_bench: error: only {len(corpus.docs)} usable docs", file=sys.stderr)
            return 2
        console.log(f"{len(raw_docs):,} records, {len(corpus.docs):,} cleaned, {corpus.dead} empty")
        probe = MinHashLSH(threshold=settings.dedup.threshold, num_perm=NUM_PERM)
        bench = Bench(args, shared, settings, corpus)
        d = settings.dedup
        bench.raw["config"] = {
            "docs": args.docs,
            "reps": args.reps,
            "race_reps": args.race_reps,
            "procs": args.procs,
            "devpairs": not args.skip_devpairs,
            "chunk": SUBMIT_CHUNK,
            "project": {
                "threshold": d.threshold,
                "lsh_threshold": d.lsh_threshold,
                "containment_threshold": d.containment_threshold,
                "num_perm": d.num_perm,
                "bands": bands,
                "rows": rows,
            },
            "baseline": {
                "threshold": d.threshold,
                "num_perm": NUM_PERM,
                "bands": probe.b,
                "rows": probe.r,
                "datasketch": datasketch.__version__,
            },
        }
        bench.raw["environment"] = {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "redis": redis_version,
            "redis_args": list(COMMON_ARGS),
        }
        bench.footnotes.append(
            f"Baseline: datasketch {datasketch.__version__} MinHashLSH(threshold="
            f"{d.threshold}, num_perm={NUM_PERM}) -> b={probe.b} bands x r={probe.r} rows, Redis "
            f"storage, word {SHINGLE}-shingles, query then insert if no candidate. Project: "
            f"verify threshold {d.threshold} (containment {d.containment_threshold}), LSH "
            f"banding for {d.lsh_threshold} -> {bands} bands x {rows} rows. Corpus documents keep "
            "their URL, so the project's canonical-URL exact path takes part (race copies have "
            "no URL)."
        )
        rows_out: list[Row] = []
        for section in sections(args):
            rows_out.extend(section(bench))
    except KeyboardInterrupt:
        print("dedup_bench: interrupted; servers stopped", file=sys.stderr)
        return 130

    with RedisServer() as probe_server:
        ping_after = probe_server.ping_us()
    bench.raw["environment"]["ping_us"] = {"start": ping_before, "end": ping_after}
    bench.footnotes.append(
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, Redis "
        f"{redis_version}, every server with {' '.join(COMMON_ARGS) or 'default settings'}, "
        "Unix socket. PING round "
        f"trip {ping_before:,.0f} us at start, {ping_after:,.0f} us at end: the baseline makes "
        "b round trips per query and 2b+3 per insert (78 for a new document at b=25), so its "
        "rate follows this; the project's one pipeline "
        "per batch does not. Runs are noisy: compare medians and the ratio column, not absolute "
        f"figures across machines or runs. Wall time {time.perf_counter() - started:,.0f} s."
    )
    Console(width=max(120, Console().width)).print(render(rows_out, bench.footnotes))
    if args.json:
        bench.raw["rows"] = [
            {"metric": r.metric, "project": r.project, "baseline": r.baseline, "note": r.note}
            for r in rows_out
        ]
        args.json.write_text(json.dumps(bench.raw, indent=2, ensure_ascii=False) + "\n")
        console.log(f"raw numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
