"""Article extraction bounded in size and time, so that one page cannot hold its batch.

trafilatura and lxml work in C: a page of a million sibling paragraphs keeps them busy for
minutes and gigabytes, and nothing in the process can interrupt them (Celery's soft time
limit is a Python signal handler, which runs only between bytecodes). So a page is:

1. refused before parsing when it is over `html.max_bytes` or has more than
   `html.max_elements` elements (`check_page_size`: a byte count, no tree built);
2. parsed in a child process, kept for the life of the worker process and reused for
   every page (it starts in a fraction of a second; a page then costs a pipe round trip
   on top of the parse), which is killed and replaced when a page takes longer than
   `html.extract_timeout`, and whose address space is capped at `html.extract_memory_mb`.

Either way the page ends as ArticleError with its reason (`html_too_large`,
`html_too_complex`, `extract_timeout`, `extract_error`), which the loaders turn into a
dead input, and the rest of the batch goes on at once.

The child speaks a small binary protocol on its stdin/stdout (JSON replies, never
pickle: it parses hostile input). It dies with its parent: it exits on end of input, and
on Linux the kernel kills it when the parent dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from workers.ingest.html import ArticleError, ArticleText, check_page_size, read_article

if TYPE_CHECKING:
    from workers.config import Settings

_REQUEST = struct.Struct("!cII")  # kind (b"s" text, b"b" bytes), URL length, page length
_REPLY = struct.Struct("!I")  # length of the JSON reply that follows
_READY = b"R"
# Starting the child imports lxml and trafilatura; on a loaded machine that can take a
# few seconds. Not counted in a page's timeout.
_START_TIMEOUT = 60.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding `workers`


@dataclass(frozen=True, slots=True)
class ExtractLimits:
    """The [html] settings."""

    max_bytes: int
    max_elements: int
    timeout: float  # seconds per page
    memory_mb: int  # address space of the extraction process; 0 = no cap

    @classmethod
    def from_settings(cls, settings: Settings) -> ExtractLimits:
        html = settings.html
        return cls(html.max_bytes, html.max_elements, html.extract_timeout, html.extract_memory_mb)

    @classmethod
    def defaults(cls, **changes: Any) -> ExtractLimits:
        """The settings model's defaults, with `changes`. Imported here: the extraction
        child runs this module and has no use for the settings (pydantic is slow to load)."""
        from workers.config import DEFAULTS

        return replace(cls.from_settings(DEFAULTS), **changes)


class ArticleExtractor:
    """`read_article` behind the limits above; an ArticleReader. Thread-safe (one page at
    a time); fork-safe (a forked process starts a child of its own). close() it, or let
    the child go when this process exits."""

    def __init__(self, limits: ExtractLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._owner = 0  # pid of the process that started the child

    def read(self, html: str | bytes, url: str = "") -> ArticleText | None:
        """The page's main text and metadata, None when it has none; ArticleError when it
        cannot be read in time or is refused for its size."""
        limits = self.limits
        if isinstance(html, str):
            kind, page = b"s", html.encode("utf-8", "surrogatepass")
        else:
            kind, page = b"b", html
        check_page_size(page, max_bytes=limits.max_bytes, max_elements=limits.max_elements)
        encoded_url = url.encode("utf-8", "surrogatepass")
        request = _REQUEST.pack(kind, len(encoded_url), len(page)) + encoded_url + page
        with self._lock:
            reply = self._exchange(request)
        if "error" in reply:
            raise ArticleError(str(reply["error"]))
        article = reply.get("article")
        return None if article is None else ArticleText(**article)

    def close(self) -> None:
        with self._lock:
            self._stop()

    # ------------------------------------------------------------------ the child

    def _exchange(self, request: bytes) -> dict[str, Any]:
        done = False
        try:
            child = self._send(request)
            reply = self._reply(child)
            done = True
            return reply
        finally:
            if not done:
                # Timed out, died, or interrupted (a soft time limit, ^C) while the page
                # was being parsed: its reply would come later and be taken for the next
                # page's. Kill it; the next page starts a new one.
                self._stop()

    def _send(self, request: bytes) -> subprocess.Popen[bytes]:
        for attempt in (1, 2):
            child = self._running_child()
            assert child.stdin is not None
            try:
                child.stdin.write(request)
                child.stdin.flush()
                return child
            except OSError:  # BrokenPipeError mostly
                # It died between pages (killed from outside, or with the thread that
                # started it): once more with a fresh one.
                self._stop()
                if attempt == 2:
                    raise ArticleError("the extraction process died") from None
        raise AssertionError("unreachable")

    def _reply(self, child: subprocess.Popen[bytes]) -> dict[str, Any]:
        assert child.stdout is not None
        timeout = self.limits.timeout
        head = _read_exactly(child.stdout, _REPLY.size, time.monotonic() + timeout)
        if head is None:
            raise self._failure(child, timeout)
        (size,) = _REPLY.unpack(head)
        # Once the reply has begun, the child is done parsing: finishing it is quick.
        body = _read_exactly(child.stdout, size, time.monotonic() + _START_TIMEOUT)
        if body is None:
            raise self._failure(child, timeout)
        reply: dict[str, Any] = json.loads(body)
        return reply

    def _failure(self, child: subprocess.Popen[bytes], timeout: float) -> ArticleError:
        code = child.poll()
        if code is None:
            return ArticleError(
                f"extraction took longer than {timeout:g} s (html.extract_timeout)",
                "extract_timeout",
            )
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        return ArticleError(f"the extraction process died ({how})")

    def _running_child(self) -> subprocess.Popen[bytes]:
        if self._child is not None and self._owner != os.getpid():
            # Inherited through fork: that child belongs to the parent; leave it alone.
            self._child = None
        if self._child is not None and self._child.poll() is None:
            return self._child
        self._stop()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            part for part in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if part
        )
        child = subprocess.Popen(
            [sys.executable, "-m", "workers.ingest.extraction", str(self.limits.memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        self._child, self._owner = child, os.getpid()
        assert child.stdout is not None
        if _read_exactly(child.stdout, 1, time.monotonic() + _START_TIMEOUT) != _READY:
            self._stop()
            raise ArticleError("the extraction process did not start")
        return child

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if child.poll() is None:
            child.kill()
        child.wait()
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _read_exactly(stream: IO[bytes], size: int, deadline: float) -> bytes | None:
    """`size` bytes from a pipe, or None at end of file or when `deadline` passes."""
    fd = stream.fileno()
    parts: list[bytes] = []
    needed = size
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while needed:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                return None
            part = os.read(fd, min(needed, 1 << 20))
            if not part:
                return None
            parts.append(part)
            needed -= len(part)
    return b"".join(parts)


# ---------------------------------------------------------------------------- child side


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(0)


def _cap_memory(megabytes: int) -> None:
    if megabytes <= 0:
        return
    import resource

    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _serve(inp: IO[bytes], out: IO[bytes]) -> None:
    out.write(_READY)
    out.flush()
    while True:
        head = inp.read(_REQUEST.size)
        if len(head) < _REQUEST.size:
            return  # the parent closed the pipe: it is done, or gone
        kind, url_size, page_size = _REQUEST.unpack(head)
        url = inp.read(url_size).decode("utf-8", "surrogatepass")
        raw = inp.read(page_size)
        page: str | bytes = raw.decode("utf-8", "surrogatepass") if kind == b"s" else raw
        reply: dict[str, Any]
        try:
            article = read_article(page, url)
            reply = {"article": None if article is None else asdict(article)}
        except ArticleError as exc:
            reply = {"error": str(exc)}
        except MemoryError:
            reply = {"error": "MemoryError: the page needs more than html.extract_memory_mb"}
        del page, raw
        body = json.dumps(reply).encode("ascii")  # \u escapes carry lone surrogates too
        out.write(_REPLY.pack(len(body)) + body)
        out.flush()


def main() -> None:
    _die_with_parent()
    # ^C in a terminal reaches the whole process group: the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _cap_memory(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    _serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
