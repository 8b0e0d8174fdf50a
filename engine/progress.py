"""Progress of a long stage: items done of total, rate and ETA.

On a terminal it is a bar redrawn in place on stderr; when stderr is not a terminal (a log file, or a
driver read through ``ray job logs --follow``) it is one plain line through ``log`` every few seconds, plus
a last line when the work is done, so logs stay short and greppable::

    with Progress(len(shards), "[round 001] sample: shards", log) as progress:
        for shard in shards:
            ...
            progress.update()

``update`` may be called from several threads (one per actor handle).
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable, TextIO

BAR_WIDTH = 28


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class Progress:
    """Counts finished items of ``total`` and reports done/total, rate and ETA.

    ``every``: seconds between plain log lines (log mode); ``stream``: where the bar goes and whose
    ``isatty()`` picks the mode (default ``sys.stderr``); ``clock``: seconds, for tests.
    """

    def __init__(self, total: int, label: str, log: Callable[[str], None] = print, *, every: float = 5.0,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        if total < 0:
            raise ValueError(f"Progress {label!r}: total must be >= 0, got {total}")
        self.total, self.label, self.log, self.every, self.clock = total, label, log, every, clock
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.start = self.clock()
        self._last_report = self.start
        self._lock = threading.Lock()
        self._finished = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def rate(self) -> float:
        """Items per second since the start (0 before the first item)."""
        elapsed = self.clock() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the current rate; None until an item has finished."""
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else None

    def line(self) -> str:
        """``label: 3/8 (38%) 0.52/s elapsed 6s ETA 10s``."""
        percent = f" ({self.done / self.total:.0%})" if self.total else ""
        eta = self.eta()
        tail = f" ETA {_duration(eta)}" if eta is not None and self.done < self.total else ""
        return (f"{self.label}: {self.done}/{self.total}{percent} {self.rate:.2f}/s "
                f"elapsed {_duration(self.clock() - self.start)}{tail}")

    def _bar(self) -> str:
        filled = int(BAR_WIDTH * self.done / self.total) if self.total else BAR_WIDTH
        return f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.line()}\x1b[K"

    def update(self, n: int = 1) -> None:
        """Marks ``n`` more items done and reports if it is time to."""
        with self._lock:
            self.done = min(self.total, self.done + n)
            now = self.clock()
            if self.interactive:
                self.stream.write(self._bar())
                self.stream.flush()
            elif now - self._last_report >= self.every and self.done < self.total:
                self._last_report = now
                self.log(self.line())

    def close(self) -> None:
        """Reports the final state once (a newline after the bar, or one last log line)."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            if self.interactive:
                self.stream.write(self._bar() + "\n")
                self.stream.flush()
            else:
                self.log(self.line())
