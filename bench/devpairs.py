"""Dev pairs, project only: precision/recall after the dev backfill, and every miss.

`dedup_bench.py --only devpairs` scores the project against the datasketch baseline; this
script runs the project's half alone (about 1.5 minutes) and lists what it got wrong, so
a change to the decision or the LSH layout can be judged quickly. Settings come from the
environment as usual, e.g. `NEWSDEDUP_DEDUP__LSH_THRESHOLD=0.25`.

    .venv/bin/python bench/devpairs.py [--shared ../shared]       # SaudiNewsNet, neardup-dev
    .venv/bin/python bench/devpairs.py --corpus ant               # ANT, bench/ant-pairs-proxy
    .venv/bin/python bench/devpairs.py --corpus ant --pairs FILE  # another pair set

`--corpus` picks what is backfilled, every file of it in date order (`CORPORA` in
dedup_bench.py: saudinewsnet; ant = ANT Jawhara FM 2015-2017 then the 2018 multisource
outlets), and the pairs scored by default.

For each missed DUP pair: exact word-3-shingle Jaccard and containment of the cleaned
texts, the index's view of them (MinHash estimates of J and C, LSH bands shared), shingle
counts, the hours between the two publication dates, and what each side was linked to
(None: published as new), then the rule that kept them apart as far as those tell
(`why_apart`), then what the index itself said when it decided the later document
(`engine: ...`, from its `reason`): the rule, and its verdict on the earlier document's
original with the estimates, the rare facts' agreement (share, rare facts on each side)
and the hours apart, when that original was among the candidates the reason reports.
For each NOT and PARTIAL pair joined: the same figures, the links that joined them and
the engine's view.
A reference line scores
plain word-3 Jaccard >= 0.3 of each pair on its own (no clustering), on the cleaned tokens
and on the raw text's words.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import redis
from _redis import RedisServer
from dedup_bench import (
    CORPORA,
    ROOT,
    UnionFind,
    clean_corpus,
    load_documents,
    project_settings,
    run_project,
    score_pairs,
)

from workers.clean.fingerprint import Fingerprint
from workers.config import Settings
from workers.index.keys import Keys
from workers.ops.streams import entry_by_id
from workers.records import Decision, DecisionCandidate, DocRecord, DuplicateRecord, read_entry
from workers.worker.runtime import build_runtime, fingerprint_params

BASELINE_J = 0.3  # the plain shingle-Jaccard reference
_WORD = re.compile(r"\w+")


def shingle_set(tokens: Sequence[str]) -> set[str]:
    return {" ".join(tokens[k : k + 3]) for k in range(len(tokens) - 2)}


def jaccard_containment(a: set[str], b: set[str]) -> tuple[float, float]:
    common = len(a & b)
    return common / max(len(a | b), 1), common / max(min(len(a), len(b)), 1)


def epoch(iso: str) -> float | None:
    if not iso:
        return None
    moment = datetime.fromisoformat(iso)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True, slots=True)
class Estimate:
    """What the index sees of a pair: its MinHash estimates and shared LSH bands."""

    j: float
    c: float
    bands: int  # bands whose rows are all equal: the pair is an LSH candidate when > 0

    @classmethod
    def of(cls, fa: Fingerprint, fb: Fingerprint, bands: int, rows: int) -> Estimate:
        sa, sb = (np.frombuffer(f.signature, dtype=">u2") for f in (fa, fb))
        if not len(sa) or not len(sb):
            return cls(0.0, 0.0, 0)
        equal = sa == sb
        j = float(equal.mean())
        smaller = min(fa.shingles, fb.shingles)
        c = min(1.0, j * (fa.shingles + fb.shingles) / (1 + j) / smaller) if smaller else 0.0
        shared = int(equal[: bands * rows].reshape(bands, rows).all(axis=1).sum())
        return cls(j, c, shared)


def why_apart(est: Estimate, gap: float | None, settings: Settings, other_link: bool) -> str:
    """The decision rule's reason for keeping a pair apart, as far as it can be told from
    the MinHash estimates, the LSH bands and the time gap (the rare facts and the story's
    latest copy, which the time gap is measured from, are not visible here)."""
    d = settings.dedup
    if est.bands == 0:
        return f"LSH recall: no band shared (J est {est.j:.2f})"
    if gap is not None and d.max_gap_hours and gap > d.max_gap_hours and est.j < d.stale_threshold:
        return f"time gap ({gap:.0f} h > {d.max_gap_hours:g}, J est < {d.stale_threshold})"
    qualifies = est.j >= d.threshold or est.c >= d.containment_threshold
    if qualifies and other_link:
        return "qualifies, but the later one joined another document's cluster"
    if qualifies:
        return "qualifies on J/C estimates: the rare facts conflict"
    if est.j >= d.facts_threshold:
        return (
            f"J est {d.facts_threshold}-{d.threshold}, C est < {d.containment_threshold}: "
            "the rare facts did not agree"
        )
    return f"below: J est < {d.facts_threshold}, C est < {d.containment_threshold}"


def engine_reasons(
    url: str, prefix: str, entries: dict[str, tuple[str, str]], ids: set[str]
) -> dict[str, Decision]:
    """The index's own `reason` for each of `ids` it wrote to docs or duplicates."""
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    found: dict[str, Decision] = {}
    try:
        for doc_id in sorted(ids & entries.keys()):
            kind, entry_id = entries[doc_id]
            stream = "docs" if kind == "published" else "duplicates"
            entry = entry_by_id(client, keys.stream(stream), entry_id)
            record = read_entry(stream, entry[1]) if entry else None
            if isinstance(record, DocRecord | DuplicateRecord) and record.reason:
                found[doc_id] = record.reason
    finally:
        client.close()
    return found


def engine_view(decision: Decision | None, other: str) -> str:
    """What the index said when it decided the later document of a pair: its rule, and
    its verdict on `other` (the earlier document's published original) when `other` was
    among the candidates it reports (the most similar few, by J)."""
    if decision is None:
        return "engine: no reason recorded"
    said = f"engine: rule {decision.rule or '?'}"
    weighed: DecisionCandidate | None = next(
        (c for c in decision.candidates if c.id == other), None
    )
    if weighed is None:
        return f"{said}; {other} not among its {len(decision.candidates)} reported candidates"
    return (
        f"{said}; on {other}: {weighed.verdict} (J {weighed.similarity:.2f} "
        f"C {weighed.containment:.2f}, facts {weighed.facts} {weighed.facts_share:.2f} of "
        f"{weighed.rare_facts[0]}/{weighed.rare_facts[1]} rare, {weighed.gap_hours} h)"
    )


def baseline_line(name: str, joined: dict[str, bool], pairs: list[dict[str, Any]]) -> str:
    tp = sum(1 for p in pairs if p["label"] == "DUP" and joined[p["a"] + p["b"]])
    fp = sum(1 for p in pairs if p["label"] == "NOT" and joined[p["a"] + p["b"]])
    part = [p for p in pairs if p["label"] == "PARTIAL"]
    part_joined = sum(1 for p in part if joined[p["a"] + p["b"]])
    dups = sum(1 for p in pairs if p["label"] == "DUP")
    return (
        f"reference, word-3 Jaccard >= {BASELINE_J} per pair ({name}): "
        f"P {tp / max(tp + fp, 1):.3f}  R {tp / max(dups, 1):.3f}  "
        f"PARTIAL joined {part_joined}/{len(part)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="saudinewsnet")
    parser.add_argument("--pairs", type=Path, help="pairs to score (default: the corpus's)")
    args = parser.parse_args(argv)
    spec = CORPORA[args.corpus]
    corpus_paths = [args.shared / name for name in spec.files]
    pairs_path = args.pairs or spec.pairs_path(args.shared)
    missing = [str(p) for p in (*corpus_paths, pairs_path) if not p.exists()]
    if missing:
        print(f"devpairs: error: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        raw = load_documents(corpus_paths, None)
    except ValueError as exc:
        print(f"devpairs: error: {exc}", file=sys.stderr)
        return 2
    with RedisServer() as scratch:
        scratch_rt = build_runtime(project_settings("devpairs:clean:"), scratch.url)
        corpus = clean_corpus(raw, scratch_rt)
        fingerprinter = scratch_rt.fingerprinter
    pairs = [json.loads(line) for line in pairs_path.open(encoding="utf-8")]
    with RedisServer() as server:
        run = run_project(server, corpus, "devpairs:")
        reasons = engine_reasons(
            server.url, "devpairs:", run.entries, {x for p in pairs for x in (p["a"], p["b"])}
        )
    settings = project_settings("devpairs:")
    score = score_pairs(run.links, pairs)
    bands, rows = fingerprint_params(settings).bands_rows
    print(
        f"{args.corpus}: {pairs_path.name}, {len(pairs)} pairs "
        f"({', '.join(f'{k} {v}' for k, v in sorted(score['total'].items()))})\n"
        f"P {score['precision']:.3f}  R {score['recall']:.3f}  PARTIAL joined "
        f"{score['partial_joined']:.2f}  joined {score['joined']}  of {score['total']}\n"
        f"LSH {bands} x {rows}; {run.bytes_per_doc:,.0f} B Redis per indexed doc; "
        f"{run.docs_per_s:,.0f} docs/s ({len(corpus.docs):,} docs)"
    )
    clusters = UnionFind()
    for a, b in run.links:
        clusters.union(a, b)
    linked = dict(run.links)
    position = {doc.id: i for i, doc in enumerate(corpus.docs)}
    raw_text = {doc.id: doc.text for doc in raw}
    cleaned_joined: dict[str, bool] = {}
    raw_joined: dict[str, bool] = {}
    for pair in pairs:
        a, b, label = pair["a"], pair["b"], pair["label"]
        key = a + b
        raw_j, _ = jaccard_containment(
            *(shingle_set(_WORD.findall(raw_text.get(x, ""))) for x in (a, b))
        )
        raw_joined[key] = raw_j >= BASELINE_J
        if a not in position or b not in position:
            cleaned_joined[key] = False
            if label in ("DUP", "NOT"):
                print(f"{label} {a} {b}: a document is not in the cleaned corpus")
            continue
        sa, sb = (shingle_set(corpus.tokens[position[x]]) for x in (a, b))
        j, c = jaccard_containment(sa, sb)
        cleaned_joined[key] = j >= BASELINE_J
        same = clusters.find(a) == clusters.find(b)
        if not ((label == "DUP" and not same) or (label in ("NOT", "PARTIAL") and same)):
            continue
        ea, eb = (epoch(corpus.docs[position[x]].published_at) for x in (a, b))
        gap = abs(eb - ea) / 3600 if ea is not None and eb is not None else None
        est = Estimate.of(
            *(fingerprinter.fingerprint(corpus.tokens[position[x]]) for x in (a, b)), bands, rows
        )
        figures = (
            f"J {j:.2f} C {c:.2f} (est {est.j:.2f} {est.c:.2f}, {est.bands} bands) shingles "
            f"{len(sa)}/{len(sb)} gap {'?' if gap is None else f'{gap:.0f}'} h "
            f"links {linked.get(a)} / {linked.get(b)}"
        )
        later, earlier = (b, a) if position[b] > position[a] else (a, b)
        said = engine_view(reasons.get(later), linked.get(earlier) or earlier)
        if label == "DUP":
            reason = why_apart(est, gap, settings, linked.get(later) is not None)
            print(f"missed DUP {a} {b}: {figures}; {reason}; {said}")
        else:
            print(f"joined {label} {a} {b}: {figures}; {said}")
    print(baseline_line("cleaned tokens", cleaned_joined, pairs))
    print(baseline_line("raw text words", raw_joined, pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
