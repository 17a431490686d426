"""Retention: does Redis memory stay flat when a steady stream runs past the window?

Streams real articles through the project's index on a simulated clock (a fixed number
of documents per simulated day, each batch submitted with `now=` that day) with a short
retention window, and records the index's memory after 1x, 2x and 3x the window. With
retention working, memory after 3x is within a few percent of memory after 1x; without it,
memory triples. Run alone: `python bench/retention.py`; `bench/dedup_bench.py` includes it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _redis import RedisServer  # noqa: E402

from workers.config import load_settings  # noqa: E402
from workers.document import Document  # noqa: E402
from workers.index.dedup import Accepted  # noqa: E402
from workers.pipeline.process import Cleaned, clean_document  # noqa: E402
from workers.worker.runtime import build_runtime  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "saudinewsnet.jsonl.gz"
DAY = 86400.0


@dataclass(frozen=True)
class RetentionResult:
    window_days: int
    docs_per_day: int
    memory_after: dict[int, int]  # windows streamed -> index memory (bytes)
    indexed_after: dict[int, int]

    @property
    def ratio_3x_to_1x(self) -> float:
        return self.memory_after[3] / self.memory_after[1]


def load_documents(count: int) -> list[Document]:
    docs: list[Document] = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            docs.append(
                Document(
                    id=record["id"],
                    source=record["source"],
                    text=record["text"],
                    input_ref=record["id"],
                    title=record["title"],
                    url=record["url"],
                )
            )
            if len(docs) == count:
                break
    return docs


def index_memory(client: object, pattern: str) -> int:
    total = 0
    for key in client.scan_iter(match=pattern, count=1000):  # type: ignore[attr-defined]
        total += int(client.memory_usage(key, samples=0) or 0)  # type: ignore[attr-defined]
    return total


def measure_retention(window_days: int = 5, docs_per_day: int = 1000) -> RetentionResult:
    total_days = 3 * window_days
    docs = load_documents(total_days * docs_per_day)
    base = load_settings()
    dedup = base.dedup.model_copy(update={"retention_days": window_days})
    settings = base.model_copy(update={"prefix": "retention:", "dedup": dedup})
    memory: dict[int, int] = {}
    indexed: dict[int, int] = {}
    with RedisServer() as server:
        runtime = build_runtime(settings, server.url)
        cleaned = [
            c for c in (clean_document(d, runtime.rules) for d in docs) if isinstance(c, Cleaned)
        ]
        start = 1_700_000_000.0
        for day in range(total_days):
            todays = cleaned[day * docs_per_day : (day + 1) * docs_per_day]
            # Batches of 50 spread over the day: each gets its own time on the clock.
            for i in range(0, len(todays), 50):
                batch = todays[i : i + 50]
                prints = runtime.fingerprinter.fingerprint_many([c.tokens for c in batch])
                items = [Accepted(c.doc, fp, 0) for c, fp in zip(batch, prints, strict=True)]
                runtime.index.run(
                    runtime.index.build_batch("", items, now=start + (day + i / docs_per_day) * DAY)
                )
            if (day + 1) % window_days == 0:
                windows = (day + 1) // window_days
                memory[windows] = index_memory(runtime.client, runtime.keys.index_pattern)
                indexed[windows] = int(runtime.client.get(runtime.keys.index_count) or 0)
    return RetentionResult(window_days, docs_per_day, memory, indexed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-days", type=int, default=5)
    parser.add_argument("--docs-per-day", type=int, default=1000)
    args = parser.parse_args()
    if not CORPUS.exists():
        sys.exit(f"retention bench: needs {CORPUS} (the ../shared corpus), which is absent")
    result = measure_retention(args.window_days, args.docs_per_day)
    print(f"window {result.window_days} days x {result.docs_per_day} docs/day (simulated clock)")
    for windows in sorted(result.memory_after):
        print(
            f"  after {windows}x window: index {result.memory_after[windows]:>10,} bytes, "
            f"{result.indexed_after[windows]:>6} docs indexed"
        )
    print(f"  memory 3x / 1x = {result.ratio_3x_to_1x:.3f} (target: within 10%, <= 1.10)")


if __name__ == "__main__":
    main()
