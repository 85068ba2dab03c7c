"""Progress while a run goes: a live bar when standard error is a terminal, else a periodic log line.

The bar (tqdm) shows events stored of meta.total, rate, ETA, 429s, retries and the limiter's wait; log
lines printed meanwhile go above it (see ingest/commands/logs.py). In containers, cron and pipes nothing is
redrawn: every `interval_s` one line with the same figures, as before.
"""

from __future__ import annotations

import io
import os
import queue
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from loguru import logger
from tqdm import tqdm

from ingest.budgets.throttle import Throttle
from ingest.stats import Stats

BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
BAR_FORMAT_NO_TOTAL = "{desc} {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"  # until meta.total is known
BAR_REFRESH_S = 0.2  # s; the coordinator calls maybe_log ~4 times a second, redraw at most this often
# A terminal that reports no size (a pseudo-terminal nobody sized: `script`, some `docker run -t`)
# would get an empty bar from tqdm: draw it this wide instead.
UNSIZED_COLUMNS = 132  # the classic wide terminal: room for the per-budget 429s
UNSIZED_LINES = 24  # tqdm hides bars below the screen's last line: with 0 lines, every bar


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _columns(stream: TextIO) -> int:
    """The terminal's width, or 0 when it reports none."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, io.UnsupportedOperation):
        return 0


@dataclass(frozen=True)
class Figures:
    """How far the run is, as the bar and the progress line show it (and `status` from another process)."""

    in_table: int  # events in the table: stored before the run and by it
    total: int | None  # meta.total, once the API reported it
    rate: float  # events stored per second by this run
    eta_s: float | None  # seconds left at that rate; None while the total or the rate is unknown
    throttled: tuple[tuple[str, int], ...]  # 429s per budget, in the run's order


class Progress:
    """Shows how far the run is. `maybe_log()` is called often from the coordinating thread.

    `stream` defaults to standard error at construction; a live bar is drawn only when it is a terminal.
    The bar is closed by `close()` (also as a context manager), else when the object is dropped.
    `record`, when given, receives the figures every `interval_s` (the run persists them for `status`).
    """

    def __init__(self, stats: Stats, throttles: Sequence[Throttle], pages: queue.Queue, interval_s: float,
                 already_stored: int, clock=time.monotonic, stream: TextIO | None = None,
                 record: Callable[[Figures], None] | None = None) -> None:
        self._record = record
        self._stats = stats
        self._throttles = throttles
        self._pages = pages
        self._interval = interval_s
        self._already = already_stored
        self._clock = clock
        self._next = clock() + interval_s
        stream = sys.stderr if stream is None else stream
        self._bar: tqdm | None = None
        if is_terminal(stream):
            sized = _columns(stream) > 0
            self._bar = tqdm(desc="events", total=stats.total_hint, initial=already_stored, file=stream,
                             unit=" events", unit_scale=True, mininterval=BAR_REFRESH_S,
                             dynamic_ncols=sized, ncols=None if sized else UNSIZED_COLUMNS,
                             nrows=None if sized else UNSIZED_LINES,
                             bar_format=BAR_FORMAT if stats.total_hint else BAR_FORMAT_NO_TOTAL)
            self._closer = weakref.finalize(self, self._bar.close)

    def maybe_log(self) -> None:
        now = self._clock()
        due = now >= self._next
        if due:
            self._next = now + self._interval
            if self._record is not None:
                self._record(self.figures())
        if self._bar is not None:
            self._redraw()
        elif due:
            logger.info(self.line())

    def close(self) -> None:
        """Draw the bar's final state and leave it on screen (idempotent; nothing without a bar)."""
        if self._bar is not None and not self._bar.disable:
            self._redraw()
            self._closer()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _redraw(self) -> None:
        bar, s = self._bar, self._stats
        assert bar is not None
        if s.total_hint and bar.total != s.total_hint:
            bar.total = s.total_hint
            bar.bar_format = BAR_FORMAT
        bar.set_postfix_str(f"{self._throttled()}, retries {s.retries}, limiter wait {self._waited():.0f} s",
                            refresh=False)
        bar.update(self._already + s.stored - bar.n)  # redraws when BAR_REFRESH_S has passed

    def figures(self) -> Figures:
        s = self._stats
        in_table = self._already + s.stored
        rate = s.rate()
        total = s.total_hint
        eta_s = max(0, total - in_table) / rate if total and rate > 0 else None
        return Figures(in_table, total or None, rate, eta_s, tuple((t.name, t.throttled) for t in self._throttles))

    def line(self) -> str:
        s, f = self._stats, self.figures()
        eta = f"{f.eta_s:.0f} s" if f.eta_s is not None else "?"
        share = f"{100 * f.in_table / f.total:.1f}% of {f.total:,}" if f.total else "total unknown"
        return (
            f"progress: {f.in_table:,} events stored ({share}), {f.rate:,.0f} events/s, ETA {eta},"
            f" {self._throttled()}, retries {s.retries}, limiter wait {self._waited():.1f} s,"
            f" queue {self._pages.qsize()}"
        )

    def _waited(self) -> float:
        return sum(t.waited_seconds for t in self._throttles)

    def _throttled(self) -> str:
        return throttled_text(self._stats.throttled, tuple((t.name, t.throttled) for t in self._throttles))


def throttled_text(total: int, per_budget: Sequence[tuple[str, int]]) -> str:
    """429s in all, and per budget where there are several: `429s 3 (feed 1, header 2, query 0)`."""
    text = f"429s {total}"
    if len(per_budget) < 2:
        return text
    return text + " (" + ", ".join(f"{name} {count}" for name, count in per_budget) + ")"
