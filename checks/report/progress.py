"""The progress line of a long run, on a terminal's stderr: targets done, failures, time.

``mailstack check`` shows it only when stderr is a terminal and the report is not JSON
(a JSON consumer reads stdout; nothing is added to a log or a pipe). The line is
redrawn in place a few times a second by a daemon thread — the run itself happens on
the DNS event loop, which calls ``done`` as each target finishes — and erased at the
end, so the report that follows starts on a clean line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TextIO

from mailstack.checks.engine.finding import Finding, exit_code

INTERVAL = 0.25


class Progress:
    """``[ 12/300 targets] 2 failing, 4.1 s`` on ``stream`` while the run works."""

    def __init__(self, total: int, stream: TextIO, *, strict: bool = False) -> None:
        self.total = total
        self.stream = stream
        self.strict = strict
        self.finished = 0
        self.failing = 0
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._drawn = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def done(self, index: int, findings: Sequence[Finding]) -> None:
        """One target finished (called from the engine's thread); redrawn at once when
        the last redraw is a tick old, or it was the last target."""
        with self._lock:
            self.finished += 1
            self.failing += exit_code(findings, strict=self.strict)
            due = self.finished == self.total or time.monotonic() - self._drawn >= INTERVAL
        if due:
            self._draw()

    def line(self) -> str:
        with self._lock:
            finished, failing = self.finished, self.failing
        width = len(str(self.total))
        return f"[{finished:>{width}}/{self.total} targets] {failing} failing, {time.monotonic() - self._start:.1f} s"

    def _draw(self) -> None:
        line = self.line()
        with self._lock:
            self._drawn = time.monotonic()
            self.stream.write("\r\033[K" + line)
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(INTERVAL):
            self._draw()

    def __enter__(self) -> Progress:
        self._draw()
        self._thread = threading.Thread(target=self._tick, name="mailstack-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self.stream.write("\r\033[K")
            self.stream.flush()
