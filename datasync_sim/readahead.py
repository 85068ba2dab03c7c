"""Read-ahead: after a page is served, generate the blocks of the page a sequential reader asks next.

The generation runs in one background thread while the client is busy parsing, so on two cores
server and client work at the same time. Hints are dropped when the thread is behind: the request
itself generates whatever is missing, so a dropped hint only costs speed.
"""

from __future__ import annotations

import queue
import threading

from .dataset import View

QUEUE_MAX = 8  # pending hints; more parallel readers than this just lose their read-ahead
_STOP = None


class ReadAhead:
    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[View, int, int] | None] = queue.Queue(maxsize=QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def hint(self, view: View, start: int, stop: int) -> None:
        """Positions [start, stop) of `view` will probably be read soon."""
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="datasync-sim-readahead", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((view, start, stop))
        except queue.Full:
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            try:
                self._queue.put(_STOP, timeout=1)
            except queue.Full:
                pass
            thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            view, start, stop = item
            view.records(start, stop)
