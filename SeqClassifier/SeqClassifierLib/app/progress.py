"""A minimal progress bar on stderr (no dependency), and a JSON-lines variant.

The bar draws only when stderr is a terminal (or when forced), so logs and
pipes stay clean.  :class:`JsonProgress` writes machine-readable events for
the Slicer module's background runner.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Optional

from SeqClassifierLib.app.output import event_line


class ProgressBar:
    """``bar = ProgressBar("reading headers"); bar(done, total); bar.close()``."""

    def __init__(self, label: str, stream: Optional[IO[str]] = None, enabled: Optional[bool] = None,
                 min_interval: float = 0.1):
        self.label = label
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.enabled = isatty if enabled is None else enabled
        self.min_interval = min_interval
        self._last = 0.0
        self._start = time.perf_counter()
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if done < total and now - self._last < self.min_interval:
            return
        self._last = now
        width = 30
        frac = done / total if total else 1.0
        filled = int(round(width * frac))
        elapsed = now - self._start
        rate = done / elapsed if elapsed > 0 else 0.0
        self.stream.write(
            f"\r{self.label}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
            f"({rate:.0f}/s)"
        )
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


class JsonProgress:
    """Progress as ``{"type": "progress", "stage": ..., "done": n, "total": m}`` lines."""

    def __init__(self, stage: str, stream: Optional[IO[str]] = None):
        self.stage = stage
        self.stream = stream or sys.stdout

    def __call__(self, done: int, total: int) -> None:
        self.stream.write(event_line({"type": "progress", "stage": self.stage, "done": done, "total": total}))
        self.stream.flush()

    def close(self) -> None:
        pass
