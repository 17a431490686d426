"""Dev pairs, project only: precision/recall after the dev backfill, and every miss.

`dedup_bench.py --only devpairs` scores the project against the datasketch baseline; this
script runs the project's half alone (about 1.5 minutes) and lists what it got wrong, so
a change to the decision or the LSH layout can be judged quickly. Settings come from the
environment as usual, e.g. `NEWSDEDUP_DEDUP__LSH_THRESHOLD=0.25`.

    .venv/bin/python bench/devpairs.py [--shared ../shared]

For each missed DUP pair: exact word-3-shingle Jaccard and containment of the cleaned
texts, shingle counts, and what each side was linked to (None: published as new). For
each NOT pair joined: the links that joined them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from _redis import RedisServer
from dedup_bench import (
    CORPUS_NAME,
    DEVPAIRS_NAME,
    UnionFind,
    clean_corpus,
    load_documents,
    project_settings,
    run_project,
    score_pairs,
)

from workers.worker.runtime import build_runtime, fingerprint_params


def shingle_set(tokens: Sequence[str]) -> set[str]:
    return {" ".join(tokens[k : k + 3]) for k in range(len(tokens) - 2)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = Path(__file__).resolve().parent.parent
    parser.add_argument("--shared", type=Path, default=repo.parent / "shared")
    args = parser.parse_args(argv)
    corpus_path, pairs_path = args.shared / CORPUS_NAME, args.shared / DEVPAIRS_NAME
    missing = [str(p) for p in (corpus_path, pairs_path) if not p.exists()]
    if missing:
        print(f"devpairs: error: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    raw = load_documents(corpus_path, None)
    with RedisServer() as scratch:
        corpus = clean_corpus(raw, build_runtime(project_settings("devpairs:clean:"), scratch.url))
    with RedisServer() as server:
        run = run_project(server, corpus, "devpairs:")
    pairs = [json.loads(line) for line in pairs_path.open(encoding="utf-8")]
    score = score_pairs(run.links, pairs)
    bands, rows = fingerprint_params(project_settings("devpairs:")).bands_rows
    print(
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
    for pair in pairs:
        a, b, label = pair["a"], pair["b"], pair["label"]
        same = clusters.find(a) == clusters.find(b)
        if label == "DUP" and not same:
            if a not in position or b not in position:
                print(f"missed DUP {a} {b}: a document is not in the cleaned corpus")
                continue
            sa = shingle_set(corpus.tokens[position[a]])
            sb = shingle_set(corpus.tokens[position[b]])
            common = len(sa & sb)
            print(
                f"missed DUP {a} {b}: J {common / max(len(sa | sb), 1):.2f} "
                f"C {common / max(min(len(sa), len(sb)), 1):.2f} shingles {len(sa)}/{len(sb)} "
                f"links {linked.get(a)} / {linked.get(b)}"
            )
        elif label == "NOT" and same:
            print(f"joined NOT {a} {b}: links {linked.get(a)} / {linked.get(b)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
