"""A family: the budgets whose requests advance the same cursors (a key's two pools; the feed alone), drawn on
by one set of chains that take each request from the member that can send soonest (docs/scheduling.md)."""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from ingest.budgets.budget import Budget
from ingest.errors import (
    AuthenticationFailed,
    BudgetRetired,
    HandedBack,
    RetriesExhausted,
    StreamAccessDenied,
)
from ingest.stats import Stats

T = TypeVar("T")

SWITCH_S = 1.0  # s; a chain leaves a member's turn for one this much sooner, not for one a moment apart
# Failures that end one budget, not its family's chain, while another member can carry on.
BUDGET_FAILURES = (BudgetRetired, StreamAccessDenied, AuthenticationFailed, RetriesExhausted)


class Family:
    """Budgets advancing the same cursors; what the scheduler plans with, and what a chain sends through."""

    def __init__(self, name: str, members: list[Budget]) -> None:
        if not members:
            raise ValueError("a family needs a member")
        self.name = name
        self.members = members
        first = members[0]
        self.page_size, self.kind, self.windowed = first.source.page_size, first.source.kind, first.source.windowed
        self.max_chains = first.throttle.max_chains
        self._picks = itertools.count(1)
        self._picked = dict.fromkeys(range(len(members)), 0)  # member index -> when last picked (0: never)

    @property
    def stats(self) -> Stats:
        return self.members[0].retry.stats

    @property
    def stop(self) -> threading.Event:
        return self.members[0].retry.stop

    @property
    def retired(self) -> str | None:
        """Why the family takes no more work: every member is retired (None while one is not)."""
        if any(m.retired is None for m in self.members):
            return None
        return self.members[-1].retired

    def retire(self, why: str) -> None:
        for member in self.members:
            member.retire(why)

    def send_in_s(self) -> float:
        """Seconds until one of the members can send (inf: none ever will)."""
        return min(m.send_in_s() for m in self.members)

    @property
    def latency_s(self) -> float:
        """The page time: the members answer from the same endpoint and share one model."""
        return self._active()[0].throttle.latency_s if self._active() else self.members[0].throttle.latency_s

    def rate_per_s(self) -> float | None:
        """Requests per second the members allow together, as far as known (None: no member's rate known)."""
        rates = [r for r in (m.throttle.rate_per_s() for m in self._active()) if r is not None]
        return sum(rates) if rates else None

    def chains(self) -> int:
        """Chains that keep the family busy: its members' chains together (docs: "Chains a family keeps busy")."""
        active = self._active()
        if len(active) <= 1:
            return active[0].chains() if active else 0
        return max(1, min(self.max_chains, sum(m.chains() for m in active)))

    def spare_tokens(self) -> int:
        """Requests left in the members' current windows (a member on probation carries one at a time)."""
        return sum(_spare(m) for m in self._active())

    def chains_to_spend(self, pass_left_s: float) -> int:
        """Chains that send each member's spare requests before its window ends or the pass does, whichever
        comes first: requests a window still holds when the pass ends are lost."""
        return sum(math.ceil(_spare(m) * self.latency_s / max(min(left, pass_left_s), self.latency_s) - 1e-9)
                   for m in self._active() if (left := m.throttle.limiter.window_left_s()))

    def call(self, send: Callable[[Budget], T], what: str, *, hand_back: Callable[[], bool] = lambda: False) -> T:
        """`send(member)` through the member that can send soonest, retried as its retry loop says; it moves
        to a member SWITCH_S sooner, retires one that fails for good while another can go on. HandedBack when
        `hand_back` turns true; the last member's failure propagates."""
        while True:
            if self.retired is not None:
                raise BudgetRetired(f"{self.name}: {self.retired}")
            member = self._pick()
            try:
                return member.retry.call(partial(send, member), what,
                                         hand_back=partial(self._give_up, member, hand_back))
            except HandedBack:
                if hand_back():
                    raise
            except BUDGET_FAILURES as exc:
                if not any(m.retired is None for m in self.members if m is not member):
                    raise
                member.retire(str(exc))

    def _active(self) -> list[Budget]:
        return [m for m in self.members if m.retired is None]

    def _pick(self) -> Budget:
        """The member that can send soonest; on a tie the one picked least lately (the query pool's verdict
        needs the header's answer between two of its own)."""
        _, _, index = min((m.send_in_s(), self._picked[i], i) for i, m in enumerate(self.members))
        self._picked[index] = next(self._picks)
        return self.members[index]

    def _give_up(self, member: Budget, hand_back: Callable[[], bool]) -> bool:
        return hand_back() or self._sooner_elsewhere(member)

    def _sooner_elsewhere(self, member: Budget) -> bool:
        """True when another member can send SWITCH_S before `member` (whose own turn this chain holds)."""
        mine = member.throttle.wait_s() if member.retired is None else math.inf
        return any(other.send_in_s() + SWITCH_S < mine for other in self.members if other is not member)


def _spare(member: Budget) -> int:
    tokens = member.throttle.limiter.spare_tokens()
    return min(tokens, 1) if member.on_probation else tokens


def families_of(budgets: list[Budget]) -> list[Family]:
    """The budgets grouped by `Budget.family`, in the order their first member comes."""
    groups: dict[str, list[Budget]] = {}
    for budget in budgets:
        groups.setdefault(budget.family or budget.name, []).append(budget)
    return [Family(name, members) for name, members in groups.items()]
