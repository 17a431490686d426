"""`newsdedup explain ID` as a user runs it, on hand-made entries under a private prefix:
the text for each case, the one-line failures, `--json`, `--entry`, and the HTML page as
headless Chromium shows it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import RedisTarget, cli_env, run_cli
from support.explain_cases import add_cases

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture
def cases_env(
    redis_target: RedisTarget, prefix: str
) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    client = redis.Redis.from_url(redis_target.url, decode_responses=True)
    added = add_cases(client, prefix)
    yield cli_env(redis_url=redis_target.url, prefix=prefix), added
    client.close()


def _explain(env: dict[str, str], *args: str) -> Any:
    result = run_cli(["explain", *args], env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def test_text_of_each_case(cases_env: tuple[dict[str, str], dict[str, str]]) -> None:
    env, added = cases_env
    near = _explain(env, "hospital-copy").stdout
    assert near.splitlines()[2:5] == [
        "decision: duplicate (near, matched by minhash) of hospital, similarity 0.62",
        "rule: near-jaccard: duplicate: estimated Jaccard at or above the threshold",
        "  settings: dedup.threshold = 0.5, dedup.facts_agreement = 0.6, dedup.facts_min_count = 2",
    ]
    assert "shared passages: 2, covering 93% of A and 87% of B (by words)" in near
    assert "\x1b" not in near  # not a terminal: brackets, no ANSI
    partial = _explain(env, "oil").stdout
    assert "decision: partial as oil" in partial
    assert "roundup  0.20  0.95  few - (1/1)  0h   partial_of" in partial
    assert "shared passages: 1, covering 100% of A and 31% of B (by words)" in partial
    update = _explain(env, "hospital").stdout  # the update, then the original
    assert update.startswith(f"hospital~2: docs entry {added['hospital~2']}")
    assert "decision: update as hospital~2 (input id hospital), version 2 of hospital" in update
    assert f"\n\nhospital: docs entry {added['hospital']}" in update
    conflict = _explain(env, "match-2").stdout
    assert "match-1  0.58  0.60  conflict 0.00 (3/3)  2h   facts-conflict" in conflict
    assert "candidate: match-1 (docs entry" in conflict
    only = _explain(env, "hospital", "--entry", added["hospital"]).stdout
    assert only.startswith("hospital: docs entry") and "hospital~2" not in only


def test_not_found_and_bad_entry_are_one_line(
    cases_env: tuple[dict[str, str], dict[str, str]],
) -> None:
    env, added = cases_env
    missing = run_cli(["explain", "nope"], env, timeout=120)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == ("newsdedup: error: no entry for 'nope' in docs, duplicates or dead\n")
    elsewhere = run_cli(["explain", "oil", "--entry", added["roundup"]], env, timeout=120)
    assert elsewhere.returncode == 1
    assert elsewhere.stderr == (
        f"newsdedup: error: no entry for 'oil' at entry {added['roundup']} in docs, "
        "duplicates or dead\n"
    )
    bad = run_cli(["explain", "oil", "--entry", "yesterday"], env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_a_dead_input_says_why(
    cases_env: tuple[dict[str, str], dict[str, str]], tmp_path: Path
) -> None:
    """Found by its id or its input ref in dead, when it is in neither docs nor duplicates."""
    env, added = cases_env
    for asked in ("scan-7", "archive/scan-7.txt"):
        text = _explain(env, asked).stdout
        assert text.splitlines() == [
            f"scan-7: dead entry {added['scan-7']}, source archive, failed "
            "2026-01-02T03:04:05.000Z",
            "  input: archive/scan-7.txt",
            "decision: dead (decode_binary): not published, not indexed",
            "error: binary data, not text (NUL bytes)",
        ]
    as_json = json.loads(_explain(env, "scan-7", "--json").stdout)
    assert as_json == {
        "query": "scan-7",
        "matches": [
            {
                "id": "scan-7",
                "stream": "dead",
                "stream_id": added["scan-7"],
                "decision": "dead",
                "reason": "decode_binary",
                "error": "binary data, not text (NUL bytes)",
                "input_ref": "archive/scan-7.txt",
                "source": "archive",
                "failed_at": "2026-01-02T03:04:05.000Z",
            }
        ],
    }
    page = tmp_path / "dead.html"
    no_page = run_cli(["explain", "scan-7", "--html", str(page)], env, timeout=120)
    assert no_page.returncode == 1 and "decision: dead (decode_binary)" in no_page.stdout
    assert no_page.stderr == (
        f"newsdedup: error: 'scan-7' is dead: it has no text to show, {page} not written\n"
    )
    assert not page.exists()


def test_json_is_one_object(cases_env: tuple[dict[str, str], dict[str, str]]) -> None:
    env, added = cases_env
    lines = _explain(env, "hospital", "--json").stdout.splitlines()
    assert len(lines) == 1
    value = json.loads(lines[0])
    assert value["query"] == "hospital"
    assert [(m["id"], m["decision"], m["rule"]) for m in value["matches"]] == [
        ("hospital~2", "update", "update"),
        ("hospital", "published", "new"),
    ]
    update = value["matches"][0]
    assert update["stream_id"] == added["hospital~2"]
    assert update["links"] == [
        {"relation": "update_of", "id": "hospital", "stream_id": added["hospital"],
         "title": update["b"]["title"]}
    ]  # fmt: skip
    assert set(update) >= {"meaning", "settings", "candidates", "a", "b", "passages"}
    for span in update["passages"]["spans"]:
        assert set(span) == {"n", "words", "a_words", "b_words", "a_chars", "b_chars"}


def _browser() -> Any:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian: apt-get install chromium "
            "chromium-driver; .ci/run installs them)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (dev extras)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


# What the page shows, read from the browser: computed styles and layout, not the source.
_SEEN = """
const text = side => document.querySelector(`[data-side="${side}"] .text`);
const marks = [...document.querySelectorAll('mark')];
return {
  title: document.title,
  scripts: document.scripts.length,
  images: document.images.length,
  direction: [getComputedStyle(text('A')).direction, getComputedStyle(text('B')).direction],
  lang: [text('A').lang, text('B').lang],
  marks: marks.map(m => ({
    passage: m.dataset.passage,
    side: m.closest('[data-side]').dataset.side,
    background: getComputedStyle(m).backgroundColor,
    visible: m.getBoundingClientRect().width > 0 && m.getBoundingClientRect().height > 0,
    text: m.textContent,
  })),
  columns: [...document.querySelectorAll('.column')].map(c => c.getBoundingClientRect().left),
  candidates: document.querySelectorAll('table.candidates tr').length - 1,
  shown: document.body.innerText,
};
"""


def test_html_page_in_headless_chromium(
    cases_env: tuple[dict[str, str], dict[str, str]], tmp_path: Path
) -> None:
    env, _ = cases_env
    pages = {}
    for doc_id in ("oil", "hostile-copy"):
        pages[doc_id] = tmp_path / f"{doc_id}.html"
        result = run_cli(["explain", doc_id, "--html", str(pages[doc_id])], env, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stderr == f"\nwrote {pages[doc_id]}\n"
    browser = _browser()
    try:
        seen = {}
        for doc_id, page in pages.items():
            browser.get(page.as_uri())
            seen[doc_id] = browser.execute_script(_SEEN)
    finally:
        browser.quit()
    oil = seen["oil"]
    assert oil["direction"] == ["rtl", "rtl"] and oil["lang"] == ["ar", "ar"]
    assert oil["candidates"] == 1
    assert [(m["passage"], m["side"]) for m in oil["marks"]] == [("m1-1", "A"), ("m1-1", "B")]
    assert all(m["visible"] for m in oil["marks"])
    assert {m["background"] for m in oil["marks"]} == {"rgb(255, 224, 102)"}
    assert oil["marks"][0]["text"] == oil["marks"][1]["text"].rstrip(".")
    assert oil["columns"][0] < oil["columns"][1]  # side by side
    hostile = seen["hostile-copy"]
    # A duplicate has no language field: lang only on the published document's column.
    assert hostile["direction"] == ["ltr", "ltr"] and hostile["lang"] == ["", "en"]
    # The article's script and image are text on the page: nothing ran, nothing loaded.
    assert hostile["title"] == "newsdedup explain hostile-copy"
    assert (hostile["scripts"], hostile["images"]) == (0, 0)
    assert '<script>document.title="pwned"</script>' in hostile["shown"]
    assert "onerror=" in hostile["marks"][0]["text"]


def test_chromium_is_found_where_ci_installs_it() -> None:
    """CI installs chromium with apt-get: a skip above must not hide a missing install."""
    if shutil.which("apt-get") is None:
        pytest.skip("not a Debian machine: .ci/run cannot install chromium here")
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "run .ci/run's chromium install"
