"""A one-line progress bar for the terminal (benchmarks, fit)."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """A one-line progress bar on stderr; silent when stderr is not a terminal."""

    def __init__(self, total: int, enabled=None):
        self.total, self.done, self.label = total, 0, ""
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = self._drawn = time.perf_counter()

    def advance(self, label: str = "") -> None:
        self.done += 1
        self.label = label or self.label
        now = time.perf_counter()
        if self.enabled and (self.done >= self.total or now - self._drawn > 0.1):
            self._drawn = now
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            elapsed = now - self.start
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] "
                             f"{self.done}/{self.total} {elapsed:5.1f}s {self.label:<28}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
