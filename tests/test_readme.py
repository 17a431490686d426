"""The README's quickstart consumer, run verbatim: it reads every document of the `docs`
stream once through its consumer group, acknowledges each, and keeps waiting through idle
blocking reads (redis-py 8 times a read out after 5 s unless told otherwise)."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time

from conftest import ROOT, RedisTarget

GOLDEN = json.loads((ROOT / "tests" / "golden" / "stream_entries.json").read_text("utf-8"))


def readme_consumer() -> str:
    readme = (ROOT / "README.md").read_text("utf-8")
    step = readme.split("**6. Read the stream**", 1)[1]
    found = re.search(r"```python\n(.*?)```", step, re.S)
    assert found, "the README's consumer snippet is missing"
    return found.group(1)


def _lines(pipe: object, out: queue.Queue[str]) -> None:
    for line in pipe:  # type: ignore[attr-defined]
        out.put(line.rstrip("\n"))


def test_the_readme_consumer_reads_each_document_once_and_keeps_waiting(
    redis_target: RedisTarget, prefix: str
) -> None:
    stream = f"{prefix}docs"
    docs = [dict(pairs) for pairs in GOLDEN["docs"]]
    for entry in docs[:3]:
        redis_target.client.xadd(stream, entry)  # type: ignore[arg-type]
    env = {**os.environ, "REDIS_URL": redis_target.url, "NEWSDEDUP_PREFIX": prefix}
    consumer = subprocess.Popen(
        [sys.executable, "-c", readme_consumer()],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(consumer.stdout, lines), daemon=True).start()
    try:
        printed = [lines.get(timeout=30) for _ in range(3)]
        assert [line.split(" ")[1] for line in printed] == [d["id"] for d in docs[:3]]
        assert printed[0].split(" ")[2] == docs[0]["source"]
        # Idle for longer than redis-py's default read timeout, then one more document.
        time.sleep(7)
        assert consumer.poll() is None, consumer.stderr.read() if consumer.stderr else ""
        redis_target.client.xadd(stream, docs[3])  # type: ignore[arg-type]
        assert lines.get(timeout=30).split(" ")[1] == docs[3]["id"]
        # It prints a document, then acknowledges it: every one is acknowledged soon.
        deadline = time.monotonic() + 10
        while _pending(redis_target, stream) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _pending(redis_target, stream) == 0
    finally:
        consumer.kill()
        consumer.wait(timeout=10)
    assert lines.empty()  # and none printed twice


def _pending(redis_target: RedisTarget, stream: str) -> int:
    (group,) = redis_target.client.xinfo_groups(stream)
    assert group["name"] in ("my-app", b"my-app")
    return int(group["pending"])
