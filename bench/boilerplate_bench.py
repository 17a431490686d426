"""Boilerplate stripping bench: the project against line-filter baselines, on labelled lines.

For each outlet of ../shared/eval/footer-dev.jsonl, the outlet's whole archive from
../shared/corpus is replayed in publication order through the project's clean -> dedup
chain on a private Redis (so the learner sees the outlet's repeated lines and counts only
documents the index keeps), then the labelled documents are scored.

"project" scores each labelled document after its outlet's whole replay (the eval set's
protocol); "project in stream" scores it when it came by, having learned only from the
documents before it. Per document:

- removal precision: labelled-boilerplate lines among the lines removed;
- removal recall: labelled-boilerplate lines removed;
- content lost: characters of content lines removed / characters of content lines.

A document the project sends to `dead` as all_boilerplate counts as all its lines
removed. Systems, on the same documents in the same run:

- project: rules (config/boilerplate.toml) + learned lines (workers/clean/boilerplate/learner.py);
- rules only: the same rules, learning off;
- C4 line filter: keep only lines that end in terminal punctuation (. ! ? " ') and have
  at least 5 words (Raffel et al. 2020), the common plain-text heuristic;
- CCNet line dedup: remove every line whose normalised form occurred in an earlier
  document of the same outlet (Wenzek et al. 2020), at any position.

Also: the seeds (every listed boilerplate line removed, no other line lost), and how soon
learning starts paying: per outlet, the first document a learned line was trimmed from.

`--labels FILE` scores another labels file of the same shape instead of footer-dev, e.g.
bench/footer-proxy.jsonl (hand labels for the outlets footer-dev does not cover: the
held-out proxy). Its rows may omit `lines`: the text is then read from the corpus (never
stored in this repository) and its line count must equal the number of labels.

    .venv/bin/python bench/boilerplate_bench.py [--shared ../shared] [--labels FILE]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._redis import RedisServer  # noqa: E402
from workers.clean.boilerplate.learner import LineLearner  # noqa: E402
from workers.clean.boilerplate.lines import line_hash  # noqa: E402
from workers.clean.normalise import normalise_for_publishing, split_lines  # noqa: E402
from workers.config import load_settings  # noqa: E402
from workers.document import Document  # noqa: E402
from workers.ingest.load import load_task  # noqa: E402
from workers.ingest.plan import plan_backfill  # noqa: E402
from workers.pipeline.process import SUBMIT_CHUNK, clean_chunk  # noqa: E402
from workers.worker.runtime import Runtime, build_runtime  # noqa: E402

DEFAULT_SHARED = ROOT.parent / "shared"
FOOTER_DEV = "eval/footer-dev.jsonl"
CORPORA = (
    "corpus/ant_multisource_v2.1.jsonl.gz",
    "corpus/saudinewsnet.jsonl.gz",
    "corpus/ant_jawharafm_v1.1.jsonl.gz",
)
FOOTER_SILVER = "eval/footer-silver.jsonl.gz"
SEED_GOLDEN = ROOT / "tests" / "golden" / "seed_boilerplate.json"
SYSTEMS = ("project", "project in stream", "rules only", "C4 line filter", "CCNet line dedup")
console = Console(stderr=True)

# A labelled document's verdict per line: True = removed.
Verdict = list[bool]


@dataclass
class Score:
    removed_boiler: int = 0
    removed_content: int = 0
    boiler: int = 0
    content_chars: int = 0
    content_chars_lost: int = 0

    def add(self, labels: Sequence[int], lines: Sequence[str], removed: Verdict) -> None:
        for label, line, gone in zip(labels, lines, removed, strict=True):
            if not line.strip():
                continue  # empty lines are neither
            if label:
                self.boiler += 1
                self.removed_boiler += gone
            else:
                self.content_chars += len(line.strip())
                if gone:
                    self.removed_content += 1
                    self.content_chars_lost += len(line.strip())

    @property
    def precision(self) -> float:
        removed = self.removed_boiler + self.removed_content
        return self.removed_boiler / removed if removed else 1.0

    @property
    def recall(self) -> float:
        return self.removed_boiler / self.boiler if self.boiler else 1.0

    @property
    def lost(self) -> float:
        return self.content_chars_lost / self.content_chars if self.content_chars else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "content_lost": self.lost,
            "boilerplate_lines": self.boiler,
            "removed_boilerplate": self.removed_boiler,
            "removed_content_lines": self.removed_content,
        }


# --------------------------------------------------------------------------- data


def _timestamp(stamp: str) -> float | None:
    """Seconds since the epoch of a corpus time stamp: RFC 2822 (ANT multisource), ISO
    8601 or dd/mm/yyyy (Jawhara FM has both), else None."""
    try:
        return parsedate_to_datetime(stamp).timestamp()
    except (TypeError, ValueError, IndexError):
        pass
    for parse in (datetime.fromisoformat, lambda s: datetime.strptime(s, "%d/%m/%Y")):
        try:
            when = parse(stamp)
        except ValueError:
            continue
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    return None


def _order_key(record: dict[str, Any]) -> tuple[float, str]:
    stamp = record.get("time")
    when = _timestamp(str(stamp)) if stamp else None
    # SaudiNewsNet has no time: its ids are date + sequence.
    return (when if when is not None else 0.0), str(record["id"])


def load_outlets(shared: Path, outlets: set[str]) -> dict[str, list[Document]]:
    records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name in CORPORA:
        with gzip.open(shared / name, "rt", encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                if record.get("source") in outlets:
                    records[record["source"]].append(record)
    docs: dict[str, list[Document]] = {}
    for outlet, rows in records.items():
        rows.sort(key=_order_key)
        docs[outlet] = [
            Document(
                id=str(r["id"]),
                source=outlet,
                text=str(r.get("text") or ""),
                input_ref=str(r["id"]),
                title=str(r.get("title") or ""),
                url=str(r.get("url") or ""),
                author=str(r.get("author") or ""),
            )
            for r in rows
        ]
    return docs


def attach_lines(rows: list[dict[str, Any]], archives: dict[str, list[Document]]) -> None:
    """Give each labelled row without `lines` its text's lines from the corpus; the
    number of lines must equal the number of labels (the labels were made on them)."""
    by_id = {(doc.source, doc.id): doc for docs in archives.values() for doc in docs}
    for row in rows:
        doc = by_id.get((row["source"], row["id"]))
        if doc is None:
            raise SystemExit(f"{row['source']} {row['id']}: not in the corpus")
        lines = doc.text.split("\n")
        if "lines" in row:
            if row["lines"] != lines:
                raise SystemExit(f"{row['id']}: the labelled lines differ from the corpus text")
        elif len(lines) != len(row["labels"]):
            raise SystemExit(
                f"{row['id']}: {len(row['labels'])} labels for {len(lines)} lines in the corpus"
            )
        row["lines"] = lines


# --------------------------------------------------------------------------- verdicts


def verdict_from_text(raw_lines: Sequence[str], kept_text: str | None) -> Verdict:
    """Which raw lines are gone from `kept_text` (None: the whole document is gone).
    Stripping only deletes lines, so a greedy in-order walk aligns the two."""
    if kept_text is None:
        return [True] * len(raw_lines)
    kept = [line for line in split_lines(kept_text) if line]
    verdict: Verdict = []
    j = 0
    for raw in raw_lines:
        line = normalise_for_publishing(raw)
        if not line:
            verdict.append(False)
        elif j < len(kept) and kept[j] == line:
            verdict.append(False)
            j += 1
        else:
            verdict.append(True)
    if j != len(kept):
        raise AssertionError("published lines do not align with the input's lines")
    return verdict


_TERMINAL = re.compile(r"""[.!?"'”’]$""")


def c4_verdict(raw_lines: Sequence[str]) -> Verdict:
    return [
        bool(line.strip()) and not (_TERMINAL.search(line.strip()) and len(line.split()) >= 5)
        for line in raw_lines
    ]


# --------------------------------------------------------------------------- systems


@dataclass
class OutletRun:
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # when each came by
    final: dict[str, Verdict] = field(default_factory=dict)  # after the whole replay
    first_learned: int | None = None  # 1-based position in the outlet's stream
    learned_lines: int = 0
    seconds: float = 0.0


def run_project(outlet: str, docs: list[Document], labelled: set[str], learn: bool) -> OutletRun:
    """Replay `docs` through clean -> learn -> dedup on a private Redis, as the workers
    do chunk by chunk, and keep the published text of each labelled document."""
    settings = load_settings()
    settings = settings.model_copy(
        update={
            "prefix": "bench:bp:",
            "boilerplate": settings.boilerplate.model_copy(update={"learn": learn}),
        }
    )
    result = OutletRun()
    order = {doc.id: n for n, doc in enumerate(docs)}  # ids are input refs here

    def raw(doc_id: str) -> list[str]:
        return docs[order[doc_id]].text.split("\n")

    with RedisServer() as server:
        rt: Runtime = build_runtime(settings, server.url)
        learner: LineLearner | None = rt.learner if learn else None
        started = time.perf_counter()
        for start in range(0, len(docs), SUBMIT_CHUNK):
            chunk = docs[start : start + SUBMIT_CHUNK]
            ready = clean_chunk(chunk, rt.rules, rt.fingerprinter, learner)
            for accepted in ready.accepted:
                doc = accepted.doc
                if result.first_learned is None and any(s.rule == "learned" for s in doc.stripped):
                    result.first_learned = order[doc.id] + 1
                if doc.id in labelled:
                    result.verdicts[doc.id] = verdict_from_text(raw(doc.id), doc.text)
            for dead, _ in ready.dead:
                # all_boilerplate: every line removed; empty_text: no line to score.
                if dead.id in labelled and dead.reason in ("all_boilerplate", "empty_text"):
                    result.verdicts[dead.id] = verdict_from_text(raw(dead.id), None)
            batch = rt.index.build_batch(f"bench-{outlet}", ready.accepted, ready.dead)
            outcomes = rt.index.run(batch)
            if learner is not None and ready.learning is not None:
                learner.record(
                    ready.learning, (o.input_ref for o in outcomes if o.kind == "published")
                )
        result.seconds = time.perf_counter() - started
        # The eval set's protocol: replay the whole outlet, then score its documents.
        chosen = [doc for doc in docs if doc.id in labelled]
        ready = clean_chunk(chosen, rt.rules, rt.fingerprinter, learner)
        if learner is not None and ready.learning is not None:
            learner.discard(ready.learning)  # scored, not counted again
        for accepted in ready.accepted:
            result.final[accepted.doc.id] = verdict_from_text(
                raw(accepted.doc.id), accepted.doc.text
            )
        for dead, _ in ready.dead:
            result.final[dead.id] = verdict_from_text(raw(dead.id), None)
        if learner is not None:
            result.learned_lines = len(learner.learned_lines(outlet)[1])
    return result


def run_ccnet(docs: list[Document], labelled: set[str]) -> dict[str, Verdict]:
    seen: set[str] = set()
    verdicts: dict[str, Verdict] = {}
    for doc in docs:
        raw = doc.text.split("\n")
        hashes = [line_hash(line) for line in raw]
        if doc.id in labelled:
            verdicts[doc.id] = [h is not None and h in seen for h in hashes]
        seen.update(h for h in hashes if h is not None)
    return verdicts


# --------------------------------------------------------------------------- silver


def silver_check(shared: Path, exclude: set[str]) -> dict[str, Any]:
    """Project only, after each outlet's replay, on the silver labels of outlets the dev
    set does not cover: what the held-out outlets will look like."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with gzip.open(shared / FOOTER_SILVER, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["source"] not in exclude:
                rows[row["source"]].append(row)
    archives = load_outlets(shared, set(rows))
    report: dict[str, Any] = {}
    for outlet in sorted(rows):
        labelled = {r["id"] for r in rows[outlet]}
        with console.status(f"silver {outlet}: {len(archives[outlet]):,} documents"):
            run = run_project(outlet, archives[outlet], labelled, learn=True)
        score = Score()
        other: list[str] = []
        scored = 0
        for row in rows[outlet]:
            verdict = run.final.get(row["id"])
            if verdict is None or len(verdict) != len(row["lines"]):
                continue  # a duplicate in the replay, or lines split otherwise
            scored += 1
            score.add(row["labels"], row["lines"], verdict)
            other += [
                line.strip()[:60]
                for line, label, gone in zip(row["lines"], row["labels"], verdict, strict=True)
                if gone and not label and line.strip()
            ]
        report[outlet] = {"documents": scored, **score.summary(), "other_removed": other}
    return report


# --------------------------------------------------------------------------- seeds


def seeds_check() -> dict[str, Any]:
    """Backfill-load seeds/ as the CLI does and strip them with the project's rules."""
    golden: dict[str, list[str]] = json.loads(SEED_GOLDEN.read_text(encoding="utf-8"))["seeds"]
    settings = load_settings()
    plan = plan_backfill([ROOT / "seeds"], batch_size=100)
    missed: list[str] = []
    lost: list[str] = []
    removed_total = 0
    with RedisServer() as server:
        rt = build_runtime(settings.model_copy(update={"prefix": "bench:seeds:"}), server.url)
        for spec in plan.tasks:
            inputs = list(load_task(spec, default_source=None, read_html=rt.extractor.read))
            ready = clean_chunk(inputs, rt.rules, rt.fingerprinter, rt.learner)
            for accepted in ready.accepted:
                name = Path(accepted.doc.input_ref).name
                expected = set(golden.get(name, []))
                stripped = {s.text for s in accepted.doc.stripped}
                removed_total += len(stripped)
                missed += [f"{name}: {line}" for line in sorted(expected - stripped)]
                lost += [f"{name}: {line}" for line in sorted(stripped - expected)]
    return {
        "listed": sum(len(v) for v in golden.values()),
        "removed": removed_total,
        "missed": missed,
        "content_lost": lost,
    }


# --------------------------------------------------------------------------- main


def pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def render(
    scores: dict[str, dict[str, Score]], outlets: Iterable[str], name: str, extra: Iterable[str]
) -> Table:
    table = Table(
        title=f"Boilerplate line removal on {name}: precision / recall / content chars lost"
    )
    table.add_column("outlet")
    for system in SYSTEMS:
        table.add_column(system, justify="right")
    for outlet in [*outlets, "all", *extra]:
        cells = []
        for system in SYSTEMS:
            s = scores[system][outlet]
            cells.append(f"{s.precision:.3f} / {s.recall:.3f} / {pct(s.lost)}")
        label = f"{outlet} ({scores['project'][outlet].boiler} boilerplate lines)"
        table.add_row(label, *cells, style="bold" if outlet == "all" else None)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument(
        "--labels",
        type=Path,
        help="labels file to score (default: ../shared/eval/footer-dev.jsonl); rows without "
        "`lines` get them from the corpus, e.g. bench/footer-proxy.jsonl",
    )
    parser.add_argument("--outlets", help="comma-separated: score only these outlets")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument(
        "--silver",
        action="store_true",
        help="also score footer-silver.jsonl.gz on the outlets the labels do not cover "
        "(automatic labels: a recall check, and content lines removed to read by hand)",
    )
    args = parser.parse_args(argv)
    shared = args.shared.resolve()
    labels_path = args.labels.resolve() if args.labels else shared / FOOTER_DEV
    needed = [labels_path, *(shared / c for c in CORPORA)]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        print(f"boilerplate_bench: error: missing {', '.join(missing)}", file=sys.stderr)
        return 2

    rows = [json.loads(line) for line in labels_path.open(encoding="utf-8") if line.strip()]
    if args.outlets:
        wanted = {name.strip() for name in args.outlets.split(",")}
        rows = [r for r in rows if r["source"] in wanted]
    outlets = sorted({r["source"] for r in rows})
    by_outlet: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_outlet[row["source"]].append(row)
    with console.status("loading the outlets' archives"):
        archives = load_outlets(shared, set(outlets))
    attach_lines(rows, archives)
    # Rows may say how they were sampled (footer-proxy: "random" or "enriched").
    samples = sorted({str(r["sample"]) for r in rows if "sample" in r})
    extra = [f"all, {sample} sample" for sample in samples] if len(samples) > 1 else []

    scores: dict[str, dict[str, Score]] = {s: defaultdict(Score) for s in SYSTEMS}
    raw: dict[str, Any] = {"labels": str(labels_path), "outlets": {}}
    for outlet in outlets:
        docs = archives[outlet]
        labelled = {r["id"] for r in by_outlet[outlet]}
        with console.status(f"{outlet}: {len(docs):,} documents"):
            project = run_project(outlet, docs, labelled, learn=True)
            rules_only = run_project(outlet, docs, labelled, learn=False)
            ccnet = run_ccnet(docs, labelled)
        console.log(
            f"{outlet}: {len(docs):,} docs in {project.seconds:.1f} s, "
            f"{project.learned_lines} lines learned, first learned trim at doc "
            f"{project.first_learned}"
        )
        for row in by_outlet[outlet]:
            if row["id"] not in project.verdicts or row["id"] not in rules_only.verdicts:
                raise SystemExit(f"{row['id']} was not published (duplicate?): cannot score it")
            verdicts: dict[str, Verdict] = {
                "project": project.final[row["id"]],
                "project in stream": project.verdicts[row["id"]],
                "rules only": rules_only.verdicts[row["id"]],
                "C4 line filter": c4_verdict(row["lines"]),
                "CCNet line dedup": ccnet[row["id"]],
            }
            groups = [outlet, "all"]
            if extra:
                groups.append(f"all, {row['sample']} sample")
            for system, v in verdicts.items():
                for group in groups:
                    scores[system][group].add(row["labels"], row["lines"], v)
                if system == "project":
                    for line, label, gone in zip(row["lines"], row["labels"], v, strict=True):
                        if line.strip() and bool(label) != gone:
                            kind = "missed" if label else "LOST"
                            raw.setdefault("errors", []).append(f"{kind} {row['id']}: {line[:90]}")
        raw["outlets"][outlet] = {
            "documents": len(docs),
            "seconds": project.seconds,
            "learned_lines": project.learned_lines,
            "first_learned_trim_at_doc": project.first_learned,
        }

    if args.silver:
        raw["silver"] = silver_check(shared, set(outlets))

    seeds = seeds_check()
    raw["scores"] = {s: {o: v.summary() for o, v in scores[s].items()} for s in SYSTEMS}
    raw["seeds"] = seeds
    out = Console(width=None if sys.stdout.isatty() else 200)
    out.print(render(scores, outlets, labels_path.name, extra))
    out.print(
        f"Seeds: {seeds['removed']} lines removed of {seeds['listed']} listed; "
        f"missed {len(seeds['missed'])}, content lines lost {len(seeds['content_lost'])}"
    )
    for outlet, info in raw["outlets"].items():
        out.print(
            f"{outlet}: {info['documents']:,} docs replayed, {info['learned_lines']} lines "
            f"learned, first learned trim at document {info['first_learned_trim_at_doc']}"
        )
    for error in raw.get("errors", []):
        out.print(f"  project {error}", markup=False)
    for outlet, info in raw.get("silver", {}).items():
        out.print(
            f"silver {outlet}: {info['documents']} docs, labelled lines removed "
            f"{info['removed_boilerplate']}/{info['boilerplate_lines']}, other lines removed "
            f"{info['removed_content_lines']} ({pct(info['content_lost'])} of their chars): "
            f"{info['other_removed'][:3]}",
            markup=False,
        )
    if args.json:
        args.json.write_text(json.dumps(raw, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
