"""Near-duplicate decision research on the judged SaudiNewsNet dev pairs.

Which per-candidate decision, computable in the Redis Lua script from compact per-document
sketches, separates DUP from NOT pairs? Every document goes through the production cleaning
(`clean_document`) and `matching_tokens`. Sections:

(a) pairwise  each dev pair decided in isolation, from exact set computations and from the
              sketches production would store (MinHash 128 perms, high 16 bits kept; a
              bottom-k sketch of the document's rare "fact" tokens; an hour timestamp)
(b) cluster   a date-order backfill of the whole corpus: exact content hash, then
              datasketch MinHashLSH candidates among indexed originals verified by the
              method; near-duplicates link to the best original and are not indexed (as in
              production); clusters = union of links; P/R/PARTIAL on the dev pairs

"Fact" tokens are the document's tokens with digits reduced to their digit runs; a fact
token is rare when its streaming document frequency (a count-min sketch updated after every
document, no second pass) is at most max(floor, ratio * documents seen).

Run from the repository root: `.venv/bin/python bench/neardup_research.py [--limit N]`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import xxhash
from datasketch import MinHash, MinHashLSH

from workers.clean.boilerplate.rules import RuleSet, load_rules
from workers.document import DeadInput, Document
from workers.pipeline.process import clean_document

SHARED = Path(__file__).resolve().parents[2] / "shared"
NUM_PERM = 128
SEED = 1
MIN_SHINGLES = 5  # production: shorter documents take part in exact matching only
KINDS = ("w1", "w2", "w3", "w4", "w5", "c5")  # word n-grams, character 5-grams
_DIGITS = re.compile(r"\d+")
_PERMUTATIONS = MinHash(num_perm=NUM_PERM, seed=SEED).permutations


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True, slots=True)
class Pair:
    a: str
    b: str
    label: str  # DUP | NOT | PARTIAL


@dataclass(slots=True)
class Doc:
    id: str
    tokens: list[str]
    hour: float  # date_extracted in hours since the epoch


def load_pairs(path: Path, limit: int | None) -> list[Pair]:
    with path.open(encoding="utf-8") as fh:
        pairs = [Pair(r["a"], r["b"], r["label"]) for r in map(json.loads, fh)]
    return pairs[:limit] if limit else pairs


_RULES: RuleSet | None = None


def _clean(record: dict[str, str]) -> Doc:
    global _RULES
    if _RULES is None:
        _RULES = load_rules()
    doc = Document(
        id=record["id"],
        source=record.get("source") or "",
        text=record.get("text") or "",
        input_ref=record["id"],
        title=record.get("title") or "",
        url=record.get("url") or "",
    )
    cleaned = clean_document(doc, _RULES)
    tokens = [] if isinstance(cleaned, DeadInput) else cleaned.tokens
    stamp = datetime.strptime(record["date_extracted"], "%Y-%m-%d %H:%M:%S").timestamp()
    return Doc(record["id"], tokens, stamp / 3600)


def load_corpus(path: Path, workers: int, limit: int | None = None) -> dict[str, Doc]:
    """Cleaned, tokenised documents in id (= date) order; the first `limit` only if set."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        records = list(map(json.loads, fh))
    records.sort(key=lambda r: r["id"])
    records = records[:limit] if limit else records
    if workers > 1:
        with Pool(workers) as pool:
            docs = pool.map(_clean, records, chunksize=256)
    else:
        docs = [_clean(r) for r in records]
    return {d.id: d for d in docs}


# --------------------------------------------------------------------------- sketches


def shingles(tokens: Sequence[str], kind: str) -> set[str]:
    n = int(kind[1:])
    if kind[0] == "c":
        text = " ".join(tokens)
        return {text[i : i + n] for i in range(max(1, len(text) - n + 1))} if text else set()
    if len(tokens) < n:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def minhash_values(items: Iterable[str]) -> np.ndarray:
    """datasketch MinHash(num_perm=128, seed=1) over xxh32: the full 32-bit values."""
    mh = MinHash(
        num_perm=NUM_PERM,
        seed=SEED,
        hashfunc=xxhash.xxh32_intdigest,
        permutations=_PERMUTATIONS,
        scheme="affine32",
    )
    mh.update_batch([s.encode("utf-8") for s in items])
    return np.asarray(mh.hashvalues, dtype=np.uint64)


def minhash16(items: Iterable[str]) -> np.ndarray:
    """The high 16 bits of each value, as the index stores them."""
    return (minhash_values(items) >> 16).astype(np.uint16)


def fact_tokens(tokens: Iterable[str]) -> set[str]:
    """Tokens with digits reduced to digit runs: "1437ه", "ال1437" and "1437" all give #1437."""
    out: set[str] = set()
    for token in tokens:
        runs = _DIGITS.findall(token)
        if runs:
            out.update("#" + (r.lstrip("0") or "0") for r in runs)
        else:
            out.add(token)
    return out


def hash16(token: str) -> int:
    return xxhash.xxh32_intdigest(token.encode("utf-8")) >> 16


class DocFreq:
    """Streaming document frequency: count-min sketch, `depth` rows of 2^bits uint16.

    Production keeps it as one Redis string per row (BITFIELD u16 GET / INCRBY OVERFLOW
    SAT): depth * 2^bits * 2 bytes, 4 MiB for the defaults, whatever the stream length.
    """

    def __init__(self, bits: int = 20, depth: int = 2) -> None:
        self.bits, self.depth = bits, depth
        self.table = np.zeros((depth, 1 << bits), dtype=np.uint16)
        self.docs = 0

    def _index(self, keys: Sequence[str]) -> np.ndarray:
        hashes = np.fromiter(
            (xxhash.xxh64_intdigest(k.encode("utf-8")) for k in keys), np.uint64, len(keys)
        )
        mask = np.uint64((1 << self.bits) - 1)
        rows = [(hashes >> np.uint64(row * self.bits)) & mask for row in range(self.depth)]
        return np.stack(rows).astype(np.int64)

    def observe(self, keys: Sequence[str]) -> np.ndarray:
        """Counts of `keys` in the documents seen so far; then count this document."""
        if not keys:
            self.docs += 1
            return np.zeros(0, dtype=np.int64)
        index = self._index(keys)
        counts = np.min(
            np.stack([self.table[row, index[row]] for row in range(self.depth)]), axis=0
        ).astype(np.int64)
        counts = np.asarray(counts, dtype=np.int64)
        for row in range(self.depth):
            cells = np.unique(index[row])
            self.table[row, cells] = np.minimum(self.table[row, cells].astype(np.int64) + 1, 65535)
        self.docs += 1
        return counts


@dataclass(frozen=True, slots=True)
class FactParams:
    k: int = 16  # bottom-k size: k 16-bit hashes = 2k bytes per document
    floor: int = 10  # a token is rare when its document frequency <= max(floor, ratio * N)
    ratio: float = 0.001
    cms_bits: int = 20


@dataclass(slots=True)
class Facts:
    exact: frozenset[str]  # the rare fact tokens themselves (exact analysis only)
    sketch: tuple[int, ...]  # bottom-k of their 16-bit hashes, ascending
    count: int  # distinct 16-bit hashes among them


def stream_facts(docs: Sequence[Doc], params: FactParams) -> dict[str, Facts]:
    """Rare fact tokens of every document, decided with the frequencies seen before it."""
    df = DocFreq(params.cms_bits)
    out: dict[str, Facts] = {}
    for doc in docs:
        keys = sorted(fact_tokens(doc.tokens))
        limit = max(params.floor, params.ratio * df.docs)
        counts = df.observe(keys)
        rare = frozenset(k for k, c in zip(keys, counts, strict=True) if c <= limit)
        hashes = sorted({hash16(t) for t in rare})
        out[doc.id] = Facts(rare, tuple(hashes[: params.k]), len(hashes))
    return out


def derived_facts(
    docs: Iterable[Doc], facts: dict[str, Facts], kind: str, k: int
) -> dict[str, Facts]:
    """Alternative fact sets, for comparison: "numbers" (all digit runs, no frequencies) or
    "content" (word 3-shingles holding at least one rare fact token)."""
    out: dict[str, Facts] = {}
    for doc in docs:
        if kind == "numbers":
            items = frozenset(f for f in fact_tokens(doc.tokens) if f.startswith("#"))
        else:
            rare, toks = facts[doc.id].exact, doc.tokens
            hit = [bool(fact_tokens([t]) & rare) for t in toks]
            items = frozenset(
                " ".join(toks[i : i + 3]) for i in range(len(toks) - 2) if any(hit[i : i + 3])
            )
        hashes = sorted({hash16(t) for t in items})
        out[doc.id] = Facts(items, tuple(hashes[:k]), len(hashes))
    return out


def exact_containment(a: frozenset[str], b: frozenset[str]) -> float | None:
    if not a or not b:
        return None
    return len(a & b) / min(len(a), len(b))


def sketch_containment(a: Facts, b: Facts) -> float | None:
    """Share of the smaller fact set found in the larger, from two bottom-k sketches.

    Hashes up to tau = the smaller of the two sketches' largest hash are known completely
    for both sets (all of a set when its sketch is not full), so the estimate is exact
    when both sets fit in k and an unbiased sample of the smaller set otherwise.
    """
    if not a.count or not b.count:
        return None
    k_full = 65536

    def bound(f: Facts) -> int:
        return f.sketch[-1] if f.count > len(f.sketch) else k_full

    tau = min(bound(a), bound(b))
    small, large = (a, b) if a.count <= b.count else (b, a)
    sample = [h for h in small.sketch if h <= tau]
    if not sample:
        return None
    found = set(large.sketch)
    return sum(h in found for h in sample) / len(sample)


# --------------------------------------------------------------------------- features


@dataclass(slots=True)
class Features:
    j: dict[str, float]  # Jaccard per shingle kind
    c: dict[str, float]  # containment |A∩B| / min(|A|, |B|) per shingle kind
    facts: float | None  # rare-fact containment; None when either side has no rare fact
    facts_n: int  # rare facts on the side with fewer
    gap: float  # hours between the two documents


def containment_from_j(j: float, na: int, nb: int) -> float:
    """Production's containment estimate from Jaccard and both shingle counts."""
    small = min(na, nb)
    return min(1.0, j * (na + nb) / (1 + j) / small) if small else 0.0


def pair_features(
    a: Doc, b: Doc, fa: Facts, fb: Facts, kinds: Sequence[str]
) -> tuple[Features, Features]:
    """(exact, estimated) features of one pair."""
    ej: dict[str, float] = {}
    ec: dict[str, float] = {}
    mj: dict[str, float] = {}
    mc: dict[str, float] = {}
    for kind in kinds:
        sa, sb = shingles(a.tokens, kind), shingles(b.tokens, kind)
        inter = len(sa & sb)
        ej[kind] = inter / len(sa | sb) if sa or sb else 0.0
        ec[kind] = inter / min(len(sa), len(sb)) if sa and sb else 0.0
        if sa and sb:
            jest = float(np.mean(minhash16(sa) == minhash16(sb)))
            mj[kind], mc[kind] = jest, containment_from_j(jest, len(sa), len(sb))
        else:
            mj[kind] = mc[kind] = 0.0
    gap = abs(a.hour - b.hour)
    return (
        Features(
            ej, ec, exact_containment(fa.exact, fb.exact), min(len(fa.exact), len(fb.exact)), gap
        ),
        Features(mj, mc, sketch_containment(fa, fb), min(fa.count, fb.count), gap),
    )


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Rule:
    """One decision of the family studied here; a part is off when its parameter is None.

    Facts (when facts_min is set and both documents have rare facts) give F, the share of
    the smaller rare-fact set found in the other, and n, the size of that smaller set:
    - agree: n >= evidence and F >= facts_min;
    - conflict: F < facts_min and, with `veto` set, at least `veto` of the smaller set's
      rare facts are missing ((1 - F) * n >= veto); without it, n >= evidence.
    Decision: gap > max_gap hours: J >= stale_j and no conflict (never when stale_j is
    None); conflict: no; agree: J >= j or C >= c; otherwise J >= j_weak or C >= c_weak
    (j_weak / c_weak default to j / c).
    """

    name: str
    kind: str = "w3"
    j: float = 0.5
    c: float | None = None
    facts_min: float | None = None
    evidence: int = 1
    veto: int | None = None
    j_weak: float | None = None
    c_weak: float | None = None
    max_gap: float | None = None
    stale_j: float | None = None

    def decide(self, f: Features) -> bool:
        jac, con = f.j[self.kind], f.c[self.kind]
        agree = conflict = False
        if self.facts_min is not None and f.facts is not None:
            if f.facts >= self.facts_min:
                agree = f.facts_n >= self.evidence
            elif self.veto is None:
                conflict = f.facts_n >= self.evidence
            else:
                conflict = (1 - f.facts) * f.facts_n >= self.veto - 1e-9
        if self.max_gap is not None and f.gap > self.max_gap:
            return self.stale_j is not None and jac >= self.stale_j and not conflict
        if conflict:
            return False
        if agree:
            return jac >= self.j or (self.c is not None and con >= self.c)
        j_weak = self.j if self.j_weak is None else self.j_weak
        c_weak = self.c if self.c_weak is None else self.c_weak
        return jac >= j_weak or (c_weak is not None and con >= c_weak)

    def params(self) -> str:
        parts = [f"{self.kind} J>={self.j:g}"]
        if self.c is not None:
            parts.append(f"C>={self.c:g}")
        if self.facts_min is not None:
            parts.append(f"F>={self.facts_min:g}")
            if self.evidence > 1:
                parts.append(f"n>={self.evidence}")
            if self.veto is not None:
                parts.append(f"veto>={self.veto}")
        if self.j_weak is not None or self.c_weak is not None:
            parts.append(f"else J>={self.j_weak:g}")
            if self.c_weak is not None:
                parts.append(f"C>={self.c_weak:g}")
        if self.max_gap is not None:
            parts.append(f"gap<={self.max_gap:g}h")
            if self.stale_j is not None:
                parts.append(f"or J>={self.stale_j:g}")
        return " ".join(parts)


# The recommendation (see NEARDUP_RESEARCH.md): a lowered similarity bar when both documents
# carry enough rare facts and those agree, production's bar otherwise, within 48 hours
# (older candidates only when near-identical).
RECOMMENDED = Rule(
    "recommended",
    j=0.3,
    c=0.8,
    facts_min=0.6,
    evidence=2,
    j_weak=0.5,
    c_weak=0.8,
    max_gap=48.0,
    stale_j=0.7,
)


@dataclass(frozen=True, slots=True)
class Score:
    precision: float
    recall: float
    partial: float
    tp: int
    fp: int

    def cells(self) -> str:
        return f"{self.precision:6.3f} {self.recall:6.3f} {self.partial:6.2f} {self.fp:3d}"


def score(pairs: Sequence[Pair], joined: Sequence[bool]) -> Score:
    tp = sum(j for p, j in zip(pairs, joined, strict=True) if p.label == "DUP")
    fp = sum(j for p, j in zip(pairs, joined, strict=True) if p.label == "NOT")
    part = sum(j for p, j in zip(pairs, joined, strict=True) if p.label == "PARTIAL")
    n_dup = sum(p.label == "DUP" for p in pairs) or 1
    n_part = sum(p.label == "PARTIAL" for p in pairs) or 1
    return Score(tp / (tp + fp) if tp + fp else 1.0, tp / n_dup, part / n_part, tp, fp)


# --------------------------------------------------------------------------- backfill


@dataclass(slots=True)
class Indexed:
    id: str
    root: str  # the original it stands for (itself unless an indexed near-duplicate)
    sig: np.ndarray
    nsh: int
    facts: Facts
    hour: float


def backfill(
    docs: Sequence[Doc],
    facts: dict[str, Facts],
    sigs: dict[str, tuple[np.ndarray, np.ndarray, int]],
    rule: Rule,
    lsh_threshold: float,
    index_dups: bool = False,
    refresh: bool = False,
) -> tuple[dict[str, str], dict[str, int]]:
    """Date-order backfill; returns duplicate_of links and outcome counts.

    Production indexes originals only. With `index_dups` a near-duplicate is indexed too,
    standing for its original, so a later copy closer to it than to the original still
    joins the cluster (each link still names an original).
    """
    lsh = MinHashLSH(threshold=lsh_threshold, num_perm=NUM_PERM)
    exact: dict[bytes, str] = {}
    index: dict[str, Indexed] = {}
    links: dict[str, str] = {}
    counts = {"exact": 0, "near": 0, "published": 0, "verified": 0}

    def touch(original: str, hour: float) -> None:
        # The time gap is measured from the cluster's latest member: a story re-published
        # over several days keeps matching, a template with new facts does not.
        if refresh and original in index:
            index[original].hour = max(index[original].hour, hour)

    for doc in docs:
        chash = hashlib.blake2b(" ".join(doc.tokens).encode("utf-8"), digest_size=16).digest()
        if chash in exact:
            links[doc.id] = exact[chash]
            counts["exact"] += 1
            touch(exact[chash], doc.hour)
            continue
        entry = sigs.get(doc.id)
        best, best_score = None, -1.0
        if entry is not None:
            full, sig, nsh = entry
            query = MinHash(
                num_perm=NUM_PERM, hashvalues=full, permutations=_PERMUTATIONS, scheme="affine32"
            )
            for cand_id in lsh.query(query):
                cand = index[cand_id]
                counts["verified"] += 1
                jac = float(np.mean(sig == cand.sig))
                con = containment_from_j(jac, nsh, cand.nsh)
                mine = facts[doc.id]
                f = Features(
                    {rule.kind: jac},
                    {rule.kind: con},
                    sketch_containment(mine, cand.facts),
                    min(mine.count, cand.facts.count),
                    abs(doc.hour - cand.hour),
                )
                if rule.decide(f) and max(jac, con) > best_score:
                    best, best_score = cand.root, max(jac, con)
        if best is not None:
            links[doc.id] = best
            exact.setdefault(chash, best)
            counts["near"] += 1
            touch(best, doc.hour)
            if index_dups and entry is not None:
                index[doc.id] = Indexed(doc.id, best, entry[1], entry[2], facts[doc.id], doc.hour)
                lsh.insert(doc.id, query)
            continue
        exact[chash] = doc.id
        counts["published"] += 1
        if entry is not None:
            index[doc.id] = Indexed(doc.id, doc.id, entry[1], entry[2], facts[doc.id], doc.hour)
            lsh.insert(doc.id, query)
    return links, counts


def clusters_join(pairs: Sequence[Pair], links: dict[str, str]) -> list[bool]:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for child, original in links.items():
        parent[find(child)] = find(original)
    return [find(p.a) == find(p.b) for p in pairs]


# --------------------------------------------------------------------------- report


def sweep_rows(base: Rule, field_name: str, values: Iterable[float | None]) -> list[Rule]:
    return [replace(base, **{field_name: v}) for v in values]  # type: ignore[arg-type]


def cross_validate(
    pairs: Sequence[Pair], feats: Sequence[Features], grid: Sequence[Rule], folds: int = 5
) -> Score:
    """Pick the best rule of `grid` on 4/5 of the pairs, score it on the rest; pooled."""
    order = list(range(len(pairs)))
    random.Random(0).shuffle(order)
    joined = [False] * len(pairs)

    def objective(s: Score) -> tuple[float, float]:
        return (s.recall if s.precision >= 0.97 else 0.0, s.precision)

    for k in range(folds):
        test = set(order[k::folds])
        train = [i for i in order if i not in test]
        best = max(
            grid,
            key=lambda r: objective(
                score([pairs[i] for i in train], [r.decide(feats[i]) for i in train])
            ),
        )
        for i in test:
            joined[i] = best.decide(feats[i])
    return score(pairs, joined)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=Path, default=SHARED / "eval" / "neardup-dev.jsonl")
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus" / "saudinewsnet.jsonl.gz")
    parser.add_argument("--limit", type=int, default=None, help="first N dev pairs only")
    parser.add_argument(
        "--corpus-limit", type=int, default=None, help="backfill only the first N documents"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lsh-threshold", type=float, default=0.3)
    parser.add_argument("--no-cluster", action="store_true", help="skip section (b)")
    parser.add_argument("--fact-k", type=int, default=16)
    parser.add_argument("--fact-floor", type=int, default=10)
    parser.add_argument("--fact-ratio", type=float, default=0.001)
    parser.add_argument("--cms-bits", type=int, default=20, help="log2 counters per CMS row")
    args = parser.parse_args()

    t0 = time.perf_counter()
    pairs = load_pairs(args.pairs, args.limit)
    docs = list(load_corpus(args.corpus, args.workers, args.corpus_limit).values())
    by_id = {d.id: d for d in docs}
    pairs = [p for p in pairs if p.a in by_id and p.b in by_id]
    print(f"{len(pairs)} pairs, {len(docs)} documents cleaned in {time.perf_counter() - t0:.1f}s")

    t1 = time.perf_counter()
    fparams = FactParams(args.fact_k, args.fact_floor, args.fact_ratio, args.cms_bits)
    facts = stream_facts(docs, fparams)
    print(f"streaming fact frequencies in {time.perf_counter() - t1:.1f}s ({fparams})")

    t1 = time.perf_counter()
    exact_f, est_f = [], []
    for p in pairs:
        e, m = pair_features(by_id[p.a], by_id[p.b], facts[p.a], facts[p.b], KINDS)
        exact_f.append(e)
        est_f.append(m)
    print(f"pair features in {time.perf_counter() - t1:.1f}s\n")

    production = Rule("production", j=0.5, c=0.8)
    rec = RECOMMENDED
    rows: list[Rule] = []
    for kind in KINDS:
        rows += sweep_rows(Rule("jaccard", kind=kind), "j", (0.3, 0.4, 0.5, 0.6))
    rows += sweep_rows(production, "j", (0.3, 0.4, 0.5, 0.6))
    rows += sweep_rows(replace(production, name="prod+time", max_gap=48.0), "j", (0.3, 0.4, 0.5))
    facts_only = replace(rec, name="prod+facts", max_gap=None)
    rows += sweep_rows(facts_only, "j", (0.3, 0.4, 0.5))
    rows.append(replace(rec, name="rec, n>=1", evidence=1))
    rows.append(replace(rec, name="rec, no weak", evidence=1, j_weak=None, c_weak=None))
    rows += sweep_rows(rec, "j", (0.2, 0.25, 0.3, 0.35, 0.4, 0.5))
    rows += sweep_rows(rec, "c", (0.6, 0.7, 0.9, 1.01))
    rows += sweep_rows(rec, "facts_min", (0.4, 0.5, 0.7, 0.8, 0.9))
    rows += sweep_rows(rec, "evidence", (3, 4))
    rows += sweep_rows(rec, "j_weak", (0.4, 0.6))
    rows += sweep_rows(rec, "max_gap", (24.0, 36.0, 72.0, 120.0))
    rows += sweep_rows(rec, "stale_j", (0.5, 0.6, 0.8, 0.9, 1.01))
    rows.append(replace(rec, name="rec veto>=2", veto=2))
    for kind, j, j_weak in (
        ("w1", 0.5, 0.7),
        ("w2", 0.4, 0.6),
        ("w4", 0.25, 0.4),
        ("w5", 0.2, 0.35),
    ):
        rows.append(replace(rec, name=f"rec {kind}", kind=kind, j=j, j_weak=j_weak))
    rows.append(replace(rec, name="rec c5", kind="c5", j=0.5, j_weak=0.7))

    print("(a) pairwise decisions: exact sets | sketches (MinHash-128 hi16, bottom-k facts)")
    head = f"{'method':<14}{'params':<52}{'P':>7}{'R':>7}{'PART':>7}{'FP':>4}"
    print(f"{head}  |{'P':>7}{'R':>7}{'PART':>7}{'FP':>4}")
    for rule in rows:
        se = score(pairs, [rule.decide(f) for f in exact_f])
        sm = score(pairs, [rule.decide(f) for f in est_f])
        print(f"{rule.name:<14}{rule.params():<52}{se.cells()}  |{sm.cells()}")

    for kind in ("numbers", "content"):
        needed = [by_id[i] for i in {i for p in pairs for i in (p.a, p.b)}]
        alt = derived_facts(needed, facts, kind, fparams.k)
        alt_exact = [
            replace(
                f,
                facts=exact_containment(alt[p.a].exact, alt[p.b].exact),
                facts_n=min(len(alt[p.a].exact), len(alt[p.b].exact)),
            )
            for p, f in zip(pairs, exact_f, strict=True)
        ]
        alt_est = [
            replace(
                f,
                facts=sketch_containment(alt[p.a], alt[p.b]),
                facts_n=min(alt[p.a].count, alt[p.b].count),
            )
            for p, f in zip(pairs, est_f, strict=True)
        ]
        for fm in (0.5, 0.6, 0.7):
            rule = replace(rec, name=f"F={kind}", facts_min=fm)
            se = score(pairs, [rule.decide(f) for f in alt_exact])
            sm = score(pairs, [rule.decide(f) for f in alt_est])
            print(f"{rule.name:<14}{rule.params():<52}{se.cells()}  |{sm.cells()}")

    grid = [
        replace(rec, j=j, c=c, facts_min=fm, max_gap=g)
        for j in (0.25, 0.3, 0.35, 0.4, 0.5)
        for c in (0.6, 0.7, 0.8, 0.9)
        for fm in (0.4, 0.5, 0.6, 0.7, 0.8)
        for g in (24.0, 48.0, 72.0)
    ]
    base_grid = [Rule("g", j=j, c=c) for j in (0.3, 0.4, 0.5, 0.6, 0.7) for c in (0.7, 0.8, 0.9)]
    print("\n5-fold CV of 'pick thresholds on 4/5, score on 1/5' (sketch features):")
    for name, g in (("J/C only", base_grid), ("recommended", grid)):
        s = cross_validate(pairs, est_f, g)
        print(f"  {name:<12} P {s.precision:.3f} R {s.recall:.3f} PART {s.partial:.2f}")

    if args.no_cluster:
        return
    t1 = time.perf_counter()
    sigs: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    for doc in docs:
        sh = shingles(doc.tokens, "w3")
        if len(sh) >= MIN_SHINGLES:
            full = minhash_values(sh)
            sigs[doc.id] = (full, (full >> 16).astype(np.uint16), len(sh))
    print(f"\nMinHash of {len(sigs)} documents in {time.perf_counter() - t1:.1f}s")
    print(f"(b) cluster protocol: date-order backfill, LSH threshold {args.lsh_threshold}")
    print(f"{'method':<14}{'params':<52}{'P':>7}{'R':>7}{'PART':>7}{'FP':>4}  outcomes, time")
    runs = (
        ("production", production, False),
        ("prod idx-dups", production, True),
        ("rec orig-only", rec, False),
        ("recommended", rec, True),
        ("rec no time", replace(rec, max_gap=None), True),
        ("rec no stale", replace(rec, stale_j=None), True),
        ("prod+time", replace(production, max_gap=48.0), True),
    )
    for name, rule, with_dups in runs:
        t1 = time.perf_counter()
        links, counts = backfill(
            docs, facts, sigs, rule, args.lsh_threshold, index_dups=with_dups, refresh=with_dups
        )
        s = score(pairs, clusters_join(pairs, links))
        took = time.perf_counter() - t1
        out = " ".join(f"{k}={v}" for k, v in counts.items())
        print(f"{name:<14}{rule.params():<52}{s.cells()}  {out} {took:.0f}s")
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
