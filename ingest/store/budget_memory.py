"""What the budgets learned, kept for the next run: a new 429 deadline at once, measured rates every few seconds.

A rerun started inside a lockout or a spent window would be refused (and, inside a lockout, punished), and a
rate measured once need not be found again. States are `{name: (rate per s, not-before as epoch s)}`, as
`Throttle.state()` gives them.
"""

from __future__ import annotations

import time
from functools import partial

import psycopg
from loguru import logger

from ingest.store import checkpoint
from ingest.store.reconnect import Link

SAVE_EVERY_S = 5.0  # s; learned rates are saved this often (a new deadline at once)
DEADLINE_JITTER_S = 0.2  # s; a not-before is recomputed from the wall clock at every look

State = tuple[float | None, float | None]


class BudgetMemory:
    """Saves the budgets' states on the control connection when they are worth saving."""

    def __init__(self, control: Link) -> None:
        self._control = control
        self._saved: dict[str, State] = {}
        self._saved_at = float("-inf")

    def keep(self, states: dict[str, State], *, final: bool = False) -> None:
        """Save `states` if a deadline appeared or moved, SAVE_EVERY_S passed, or `final`; unchanged, never."""
        deadline_moved = any(_moved(self._saved.get(name, (None, None))[1], state[1]) for name, state in states.items())
        due = time.monotonic() - self._saved_at >= SAVE_EVERY_S
        if states == self._saved or not (final or deadline_moved or due):
            return
        try:
            self._control.run(partial(checkpoint.save_budget_states, states=states))
        except psycopg.Error as exc:  # a lost lesson is no reason to stop the run; the writer notices a dead DB
            logger.warning("could not save the budgets' state: {}", str(exc).strip())
            return
        self._saved, self._saved_at = states, time.monotonic()


def _moved(saved: float | None, now: float | None) -> bool:
    """A new not-before worth saving at once: one appeared or moved (not the jitter of wall vs monotonic)."""
    return now is not None and (saved is None or abs(now - saved) > DEADLINE_JITTER_S)
