"""Per-request chaos decisions, deterministic from (seed, request number).

`plan(n)` draws every knob for request number n in a fixed order, so a given seed and request
sequence always misbehave the same way, whatever knobs are on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .config import SimConfig
from .timefmt import VARIANTS

STATUSES_5XX = (500, 502, 503, 504)
NO_PAGINATION_FORMS = ("missing", "null", "empty")
EVENT_FIELDS = ("sessionId", "userId", "type", "name", "properties", "timestamp", "session")
AFFECTED_SHARE = 0.02  # share of a page's events hit by missing fields / timestamp variants


@dataclass(frozen=True)
class Plan:
    status_5xx: int | None = None
    reset: bool = False
    slow: bool = False
    truncate_at: float | None = None  # keep this fraction of the body
    no_pagination: str | None = None
    missing_fields: bool = False
    ts_variant: bool = False
    replay: int = 0  # events of the previous page repeated at the start
    rng_seed: int = 0  # for choosing the affected events


class Chaos:
    """Draws a `Plan` for each request from the config's probabilities."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg

    def plan(self, n: int, data: bool) -> Plan:
        """The plan of request number `n`; `data` is False for endpoints without events."""
        c = self.cfg
        rng = random.Random(c.seed * 2_654_435_761 + n)
        r = rng.random
        reset = r() < c.p_reset
        status = STATUSES_5XX[int(r() * 4)] if r() < c.p_5xx else None
        slow = r() < c.p_slow
        truncate = 0.1 + 0.8 * r() if r() < c.p_truncate else None
        no_pag = NO_PAGINATION_FORMS[int(r() * 3)] if r() < c.p_no_pagination else None
        missing = r() < c.p_missing_fields
        variant = r() < c.p_ts_variant
        replay = 1 + int(r() * 3) if r() < c.p_replay else 0
        if not data:
            no_pag, missing, variant, replay = None, False, False, 0
        return Plan(status, reset, slow, truncate, no_pag, missing, variant, replay, rng.getrandbits(32))


def affected(count: int, plan: Plan, salt: int) -> list[int]:
    """Sorted distinct page indexes (of `count`) hit by a data chaos knob; at least one."""
    if count == 0:
        return []
    rng = random.Random(plan.rng_seed * 31 + salt)
    k = max(1, min(count, round(count * AFFECTED_SHARE)))
    return sorted(rng.sample(range(count), k))


def pick(seq: tuple, plan: Plan, index: int, salt: int):
    """A deterministic choice from `seq` for event `index` of the page."""
    return seq[random.Random(plan.rng_seed * 7919 + index * 131 + salt).randrange(len(seq))]


__all__ = ["Chaos", "Plan", "affected", "pick", "VARIANTS", "EVENT_FIELDS", "STATUSES_5XX"]
