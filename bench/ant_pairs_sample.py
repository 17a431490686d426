"""Candidate pairs of ANT multisource articles for the ANT dev proxy (bench/ant-pairs-proxy.jsonl).

The proxy is built like ../shared/eval/neardup-dev.jsonl: pairs sampled across the whole
similarity range, then labelled DUP / PARTIAL / NOT by reading both texts. This script
does the sampling (reproducible with `--seed`) and prints pairs for reading; the labels
are written by hand into the proxy file.

    .venv/bin/python bench/ant_pairs_sample.py --out /tmp/ant-candidates.jsonl
    .venv/bin/python bench/ant_pairs_sample.py --show /tmp/ant-candidates.jsonl --from 0 --to 20

Candidates are found independently of the engine: exact word 3-shingles of the raw text
(Arabic letters normalised, diacritics and tatweel dropped), a fixed 1-in-`--mod` sample of
those shingles (by hash, the same for every document), an inverted index over the sampled
shingles that occur in at most `--max-df` documents, and every pair sharing at least two
of them. Each candidate gets its exact Jaccard J and containment C (shared / smaller set).
The pairs are then drawn per stratum: a J band (or, for J < 0.3, a high-C band: an item
inside a round-up, a teaser in a box), crossed with same outlet / other outlet and the
time between the two articles (same day or not); a quota per band (BANDS), seeded.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from itertools import combinations
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ANT_MULTISOURCE = "corpus/ant_multisource_v2.1.jsonl.gz"

_DIACRITICS = re.compile("[\u064b-\u0652\u0640\u0670]")
_WORD = re.compile(r"\w+")
_FOLD = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ى": "ي", "ة": "ه"})

# J bands over the whole range; the C bands catch pairs whose J is low because one text
# is much longer (round-ups, trimmed copies, teasers). Fewer pairs where J is very low
# (nearly all different articles) and where it is very high (nearly all copies).
BANDS: tuple[tuple[str, float, float, float, int], ...] = (
    # (name, J low, J high, C low, pairs per outlet/day cell)
    ("J0.9+", 0.9, 1.01, 0.0, 4),
    ("J0.7-0.9", 0.7, 0.9, 0.0, 6),
    ("J0.5-0.7", 0.5, 0.7, 0.0, 7),
    ("J0.3-0.5", 0.3, 0.5, 0.0, 7),
    ("J<0.3,C0.8+", 0.0, 0.3, 0.8, 6),
    ("J<0.3,C0.5-0.8", 0.0, 0.3, 0.5, 5),
    ("J0.15-0.3,C<0.5", 0.15, 0.3, 0.0, 5),
    ("J0.05-0.15,C<0.5", 0.05, 0.15, 0.0, 3),
)


@dataclass(frozen=True, slots=True)
class Article:
    id: str
    source: str
    day: str  # UTC date, yyyy-mm-dd
    epoch: float
    shingles: frozenset[str]


def normalise(text: str) -> list[str]:
    return [w.translate(_FOLD) for w in _WORD.findall(_DIACRITICS.sub("", text.lower()))]


def word_shingles(words: Sequence[str], k: int = 3) -> frozenset[str]:
    return frozenset(" ".join(words[i : i + k]) for i in range(len(words) - k + 1))


def epoch_of(stamp: str) -> float:
    try:
        return parsedate_to_datetime(stamp).timestamp()
    except (TypeError, ValueError, IndexError):
        return 0.0


def load(path: Path) -> dict[str, dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return {str(r["id"]): r for r in map(json.loads, handle)}


def articles(records: Iterable[dict[str, Any]]) -> list[Article]:
    out: list[Article] = []
    for rec in records:
        words = normalise(str(rec.get("text") or ""))
        if len(words) < 20:
            continue
        when = epoch_of(str(rec.get("time") or ""))
        day = parsedate_to_datetime(str(rec["time"])).strftime("%Y-%m-%d") if when else ""
        out.append(Article(str(rec["id"]), str(rec["source"]), day, when, word_shingles(words)))
    return out


def _sampled(shingle: str, mod: int) -> bool:
    digest = hashlib.blake2b(shingle.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % mod == 0


def candidates(docs: Sequence[Article], mod: int, max_df: int) -> list[dict[str, Any]]:
    postings: dict[str, list[int]] = defaultdict(list)
    for i, doc in enumerate(docs):
        for s in doc.shingles:
            if _sampled(s, mod):
                postings[s].append(i)
    shared: dict[tuple[int, int], int] = defaultdict(int)
    for ids in postings.values():
        if 2 <= len(ids) <= max_df:
            for pair in combinations(ids, 2):
                shared[pair] += 1
    out: list[dict[str, Any]] = []
    for (i, j), n in shared.items():
        if n < 2:
            continue
        a, b = sorted((docs[i], docs[j]), key=lambda d: (d.epoch, d.id))
        common = len(a.shingles & b.shingles)
        out.append(
            {
                "a": a.id,
                "b": b.id,
                "J": round(common / len(a.shingles | b.shingles), 3),
                "C": round(common / min(len(a.shingles), len(b.shingles)), 3),
                "same_outlet": a.source == b.source,
                "same_day": a.day == b.day,
                "hours": round(abs(b.epoch - a.epoch) / 3600, 1),
            }
        )
    out.sort(key=lambda c: (c["a"], c["b"]))
    return out


def band_of(cand: dict[str, Any]) -> str | None:
    for name, lo, hi, c_lo, _ in BANDS:
        if lo <= cand["J"] < hi and cand["C"] >= c_lo:
            if name.endswith("C<0.5") and cand["C"] >= 0.5:
                continue
            return name
    return None


def stratified(cands: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    strata: dict[tuple[str, bool, bool], list[dict[str, Any]]] = defaultdict(list)
    for cand in cands:
        band = band_of(cand)
        if band is not None:
            strata[(band, cand["same_outlet"], cand["same_day"])].append(cand)
    quota = {band[0]: band[4] for band in BANDS}
    rng = random.Random(seed)
    picked: list[dict[str, Any]] = []
    used: set[str] = set()  # one article in at most one pair: no cluster dominates
    for key in sorted(strata):
        pool = strata[key][:]
        rng.shuffle(pool)
        n = 0
        for cand in pool:
            if n == quota[key[0]]:
                break
            if cand["a"] in used or cand["b"] in used:
                continue
            used.update((cand["a"], cand["b"]))
            band, same_outlet, same_day = key
            outlet = "same outlet" if same_outlet else "other outlet"
            picked.append(
                {**cand, "sample": f"{band}, {outlet}, {'same day' if same_day else 'days apart'}"}
            )
            n += 1
    return picked


def show(
    records: dict[str, dict[str, Any]],
    pairs: list[tuple[int, dict[str, Any]]],
    width: int,
    compact: bool,
) -> None:
    """Both texts of each pair by paragraph: "=" the other text has it (at least 80% of its
    shingles), "~" in part, "+" not; `compact` shows runs of "=" paragraphs as a count."""
    for n, pair in pairs:
        ra, rb = records[pair["a"]], records[pair["b"]]
        print(
            f"=== #{n} {pair['a']} | {pair['b']}  J {pair['J']} C {pair['C']}  "
            f"{pair.get('sample', '')}"
        )
        for tag, rec, other in (("A", ra, rb), ("B", rb, ra)):
            other_sh = word_shingles(normalise(str(other.get("text") or "")))
            print(f"  {tag} {rec['source']} {rec['time']}  «{rec['title']}»")
            same = 0  # a run of paragraphs the other text has too, shown as a count
            for para in [*str(rec.get("text") or "").split("\n"), ""]:
                para = para.strip()
                sh = word_shingles(normalise(para))
                share = len(sh & other_sh) / len(sh) if sh else 0.0
                if para and share >= 0.8 and compact:
                    same += 1
                    continue
                if same:
                    print(f"    = ({same} paragraphs in both)")
                    same = 0
                if not para:
                    continue
                mark = "=" if share >= 0.8 else ("~" if share >= 0.3 else "+")
                text = para if len(para) <= width else para[:width] + "…"
                print(f"    {mark} {text}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--mod", type=int, default=8, help="keep 1 shingle in MOD (by hash)")
    parser.add_argument("--max-df", type=int, default=40, help="skip sampled shingles in more docs")
    parser.add_argument("--out", type=Path, help="write the sampled candidates here (JSONL)")
    parser.add_argument("--show", type=Path, help="print the pairs of this JSONL for reading")
    parser.add_argument("--from", dest="start", type=int, default=0)
    parser.add_argument("--to", dest="stop", type=int, default=None)
    parser.add_argument("--compact", action="store_true", help="shared paragraphs as a count")
    parser.add_argument("--width", type=int, default=400, help="characters per paragraph shown")
    args = parser.parse_args(argv)
    records = load(args.shared / ANT_MULTISOURCE)
    if args.show:
        rows = [json.loads(line) for line in args.show.open(encoding="utf-8")]
        numbered = list(enumerate(rows))[args.start : args.stop]
        show(records, numbered, args.width, args.compact)
        return 0
    docs = articles(records.values())
    docs.sort(key=lambda d: (d.epoch, d.id))
    cands = candidates(docs, args.mod, args.max_df)
    print(f"{len(docs):,} articles, {len(cands):,} candidate pairs", file=sys.stderr)
    picked = stratified(cands, args.seed)
    counts: dict[str, int] = defaultdict(int)
    for cand in picked:
        counts[cand["sample"]] += 1
    for name, n in sorted(counts.items()):
        print(f"  {n:3d} {name}", file=sys.stderr)
    print(f"{len(picked)} pairs", file=sys.stderr)
    if args.out:
        with args.out.open("w", encoding="utf-8") as handle:
            for cand in picked:
                handle.write(json.dumps(cand, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
