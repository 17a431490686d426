"""Bounded article extraction (workers/ingest/extraction.py): real child processes, real pages.

The hostile pages are the ones that hold trafilatura in C code, where no signal reaches:
a million sibling paragraphs (minutes and gigabytes unbounded) and one element with
40,000 attributes (under a megabyte, about 45 s of parsing here: superlinear in lxml).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from support.pages import ARTICLE_PAGE, ATTRIBUTES, PARAGRAPHS

from workers.ingest.extraction import ArticleExtractor, ExtractLimits
from workers.ingest.html import ArticleError, read_article


def _child_pid(extractor: ArticleExtractor) -> int:
    child = extractor._child
    assert child is not None
    return child.pid


def test_same_result_as_in_process(extractor: ArticleExtractor) -> None:
    url = "https://news.example.com/x"
    for page in (ARTICLE_PAGE, ARTICLE_PAGE.encode("utf-8"), ARTICLE_PAGE.encode("cp1256")):
        assert extractor.read(page, url) == read_article(page, url)
    article = extractor.read(ARTICLE_PAGE, url)
    assert article is not None and all(p in article.text for p in PARAGRAPHS)
    assert extractor.read("<html><body><script>x()</script></body></html>", "") is None


def test_one_child_serves_every_page(extractor: ArticleExtractor) -> None:
    extractor.read(ARTICLE_PAGE, "")
    pid = _child_pid(extractor)
    for _ in range(20):
        extractor.read(ARTICLE_PAGE, "")
    assert _child_pid(extractor) == pid


def test_a_normal_page_costs_little_more_than_in_process(extractor: ArticleExtractor) -> None:
    page = ARTICLE_PAGE.replace("</article>", "".join(f"<p>{p}</p>" for p in PARAGRAPHS * 10))
    extractor.read(page, "")  # the child's start is paid once per worker process
    rounds = 30
    started = time.perf_counter()
    for _ in range(rounds):
        read_article(page)
    in_process = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for _ in range(rounds):
        extractor.read(page, "")
    in_child = (time.perf_counter() - started) / rounds
    # A pipe round trip on top of the parse: well under a few milliseconds a page.
    assert in_child < in_process * 1.5 + 0.005, (in_child, in_process)


def test_slow_page_is_killed_at_the_timeout_and_the_next_page_goes_on(
    extractor: ArticleExtractor,
) -> None:
    extractor.read(ARTICLE_PAGE, "")
    first = _child_pid(extractor)
    started = time.monotonic()
    with pytest.raises(ArticleError) as info:
        extractor.read(ATTRIBUTES, "")
    elapsed = time.monotonic() - started
    assert info.value.reason == "extract_timeout" and "html.extract_timeout" in str(info.value)
    assert 2.0 <= elapsed < 4.0, elapsed
    assert not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie"
    started = time.monotonic()
    assert extractor.read(ARTICLE_PAGE, "") == read_article(ARTICLE_PAGE)
    assert time.monotonic() - started < 5.0  # a fresh child, started at once
    assert _child_pid(extractor) != first


def test_a_child_killed_between_pages_is_replaced(extractor: ArticleExtractor) -> None:
    extractor.read(ARTICLE_PAGE, "")
    pid = _child_pid(extractor)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert extractor.read(ARTICLE_PAGE, "") == read_article(ARTICLE_PAGE)
    assert _child_pid(extractor) != pid


def test_a_page_over_the_memory_cap_is_an_extract_error() -> None:
    # 150 MiB of address space is enough for the child, not for trafilatura on 60,000
    # paragraphs (about 200 MiB): a MemoryError, or the child dies; either way the page
    # has a reason, and the next one is read.
    tight = ArticleExtractor(ExtractLimits.defaults(memory_mb=150, timeout=30))
    try:
        page = "<html><body>" + "<p>word word word word word</p>" * 60_000 + "</body></html>"
        with pytest.raises(ArticleError) as info:
            tight.read(page, "")
        assert info.value.reason == "extract_error"
        assert tight.read(ARTICLE_PAGE, "") == read_article(ARTICLE_PAGE)
    finally:
        tight.close()


def test_close_stops_the_child(extractor: ArticleExtractor) -> None:
    extractor.read(ARTICLE_PAGE, "")
    pid = _child_pid(extractor)
    extractor.close()
    assert not psutil.pid_exists(pid)


def test_the_child_dies_with_its_parent_even_while_parsing() -> None:
    """A worker process killed outright (hard time limit, OOM killer) must not leave its
    extraction process behind, even one busy in C code that reads no input."""
    script = (
        "import threading, time\n"
        "from workers.ingest.extraction import ArticleExtractor, ExtractLimits\n"
        "e = ArticleExtractor(ExtractLimits.defaults(timeout=300))\n"
        "e.read('<p>hello there</p>', '')\n"
        "assert e._child is not None\n"
        "print(e._child.pid, flush=True)\n"
        "page = '<p ' + ' '.join(f'a{i}=1' for i in range(40_000)) + '>' + 'text ' * 200\n"
        "threading.Thread(target=e.read, args=(page, ''), daemon=True).start()\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        # Busy on the page: it uses the CPU and has stopped reading its input.
        deadline = time.monotonic() + 10
        while child.cpu_times().user < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert child.is_running() and child.cpu_times().user >= 0.5
        parent.kill()
        parent.wait()
        gone, alive = psutil.wait_procs([child], timeout=5)
        assert gone and not alive, "the extraction process outlived its parent"
    finally:
        parent.kill()
        parent.wait()
