"""How a signal reaches the run: a flag every thread can see, remembering the signal for the exit code."""

from __future__ import annotations

import threading


class StopFlag:
    """Set by a signal handler; remembers which signal, for the exit code."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum = 0

    def trigger(self, signum: int) -> None:
        self.signum = signum
        self.event.set()
