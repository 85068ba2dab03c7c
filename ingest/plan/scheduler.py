"""The scheduler: one plan, many families of budgets; every partition walked once, all finishing together.

A free chain takes the next partition in line, else steals a piece of a running one; a stalled or retired
family hands its partitions back. Every rule, with its reason: docs/scheduling.md ("The plan and its chains").
"""

from __future__ import annotations

import math
import queue
import threading
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import psycopg
from loguru import logger

from ingest.budgets.budget import Budget
from ingest.budgets.family import BUDGET_FAILURES, Family, families_of
from ingest.budgets.throttle import Throttle
from ingest.errors import (
    BuiltCursorsRefused,
    FatalApiError,
    HandedBack,
    IngestError,
    Stopped,
)
from ingest.plan.partitions import MIN_PIECE_PAGES, Partition, Plan
from ingest.plan.walker import ChainWalker
from ingest.signals import StopFlag
from ingest.stats import Stats
from ingest.store import checkpoint
from ingest.store.budget_memory import BudgetMemory
from ingest.store.reconnect import Link, Reconnector
from ingest.store.writer import Writer

PAGE_QUEUE_MAX = 6  # pages; bounds memory to ~6 × 2.7 MB of rows while the writer is behind
WAIT_SLICE_S = 0.25  # s; the scheduler wakes this often to log progress and see signals
# On a signal the run must be gone within Docker's 10 s grace: in-flight requests get this long, then the
# writer commits what it holds; requests still out are fetched again by the next run.
STOP_GRACE_S = 4.0  # s
# A family that cannot send for this many page-times (a lockout, spent windows) is stalled: it hands its
# partitions back while another can send. Never under HAND_BACK_MIN_S: the feed's spacing is no stall.
HAND_BACK_PAGE_TIMES = 2.0
HAND_BACK_MIN_S = 2.0  # s
# pages per request of a fan-out's piece: under one, so a denser stretch than the sample still fits a request
FANOUT_PIECE_PAGES = 0.8
END_GAME_PAGE_TIMES = 2.0  # page times; a pass ending sooner is the fan-out's, not `chains_to_spend`'s
FANOUT_SPARE_REQUESTS = 1  # requests of the open windows a fan-out keeps for a failure sent again


class ProgressView(Protocol):
    """What the scheduler asks of the progress display: a chance to log, and an end."""

    def maybe_log(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PassContext:
    """What one pass needs from the run: where to write, its stop flag, and the API's clock."""

    database: Reconnector  # the writer's connections come from it
    control: Link  # splits are committed on it
    pass_id: int
    stats: Stats
    stop: StopFlag
    progress: Callable[[list[Throttle], queue.Queue], ProgressView]  # drawn by the commands
    server_now_ms: Callable[[], int]


class Scheduler:
    """Walks every pending partition of `plan` on `budgets` and writes it; one pass."""

    def __init__(self, ctx: PassContext, plan: Plan, budgets: list[Budget]) -> None:
        self.ctx = ctx
        self.plan = plan
        self.budgets = budgets  # their learned states are saved, each under its own name
        self.families = families_of(budgets)
        self._stop = ctx.stop.event
        self._running: dict[Future, tuple[int, Family]] = {}
        # What is left to walk, first first: a partition, and whether a retired family left it (it waits for nobody)
        self._todo: deque[tuple[Partition, bool]] = deque((p, False) for p in plan.pending())
        self._error: BaseException | None = None
        self._memory = BudgetMemory(ctx.control)
        self._lock = threading.Lock()  # the chains ask `_hand_back` from their threads
        self._surplus: dict[Family, int] = {}  # chains of a family to give their partitions to others
        self._leaving: set[int] = set()  # partitions whose chains took a unit of surplus: they hand back

    def run(self) -> None:
        """Raises the first fatal error, Stopped on a signal; returns when every partition is done."""
        pages: queue.Queue = queue.Queue(maxsize=PAGE_QUEUE_MAX)
        writer = Writer(self.ctx.database, pages, self.ctx.stats)
        writer.start()
        walkers = {family: ChainWalker(family, self.plan, pages, writer.is_alive,
                                       server_now_ms=self.ctx.server_now_ms,
                                       hand_back=partial(self._hand_back, family))
                   for family in self.families}
        progress = self.ctx.progress([b.throttle for b in self.budgets], pages)
        # A thread for every chain `next_chain_for` may start (each family's cap, and one adopted): a chain
        # without one would hold its partition unwalked. Each holds a page in memory at most.
        pool = ThreadPoolExecutor(max_workers=sum(f.max_chains + 1 for f in self.families), thread_name_prefix="fetch")
        try:
            while True:
                self._assign(pool, walkers)
                if not self._running:
                    break
                self._count_surplus()
                done, _ = wait(self._running, timeout=WAIT_SLICE_S, return_when=FIRST_COMPLETED)
                progress.maybe_log()
                if writer.error is not None:
                    self._fail(writer.error)
                for future in done:
                    self._settle(future)
                self._save_budget_states()
                if self._stop.is_set():
                    wait(self._running, timeout=STOP_GRACE_S)
                    break
        except BaseException:
            self._stop.set()  # a database error of a split, a bug: the chains must not go on sending meanwhile
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            writer.finish(stopping=self._stop.is_set())
            progress.close()
            self._save_budget_states(final=True)
        if writer.error is not None:
            raise writer.error
        if self._error is not None:
            raise self._error if isinstance(self._error, IngestError) else FatalApiError(
                f"fetcher failed: {self._error!r}")
        if self._stop.is_set():
            raise Stopped(self.ctx.stop.signum)
        if self.plan.pending():
            raise FatalApiError("every family of budgets was retired before the pass was done; rerun to resume")
        progress.maybe_log()

    def _save_budget_states(self, *, final: bool = False) -> None:
        self._memory.keep({budget.state_key: budget.throttle.state() for budget in self.budgets}, final=final)

    def _assign(self, pool: ThreadPoolExecutor, walkers: dict[Family, ChainWalker]) -> None:
        """Give free chains work (a pending partition, else a piece split off a running one) to the family
        running the fewest chains first (`next_chain_for`)."""
        no_work: set[Family] = set()
        while not self._stop.is_set():
            orphaned = bool(self._todo) and self._todo[0][1]
            family = next_chain_for([(f, self._busy(f), self._wanted_chains(f)) for f in self.families
                                     if f not in no_work], orphan_waiting=orphaned)
            if family is None:
                return
            part = self._todo.popleft()[0] if self._todo else self._steal(family)
            if part is None:
                no_work.add(family)
                continue
            self._running[pool.submit(walkers[family].run, part)] = (part.partition_id, family)

    def _hand_back(self, family: Family, pid: int) -> bool:
        """True when the chain on `pid` should give its partition back (asked before its every request): its
        family is stalled or retired (`hand_back_due`), or the chain takes a unit of its family's surplus."""
        if hand_back_due(family, self.families):
            return True
        with self._lock:
            if pid not in self._leaving and self._surplus.get(family, 0) > 0:
                self._surplus[family] -= 1
                self._leaving.add(pid)
            return pid in self._leaving

    def _count_surplus(self) -> None:
        """A family running more chains than it wants hands as many back as the others lack (docs: "Surplus")."""
        wants = {f: (self._busy(f), self._wanted_chains(f)) for f in self.families}
        with self._lock:
            leaving = Counter(owner for pid, owner in self._running.values() if pid in self._leaving)
            for family, (busy, wanted) in wants.items():
                lacking = sum(max(0, w - b) for other, (b, w) in wants.items() if other is not family)
                given = sum(leaving.values()) + len(self._todo)  # ranges on their way to the lacking
                self._surplus[family] = max(0, min(busy - leaving[family] - wanted, lacking - given))

    def _busy(self, family: Family) -> int:
        return sum(1 for _, owner in self._running.values() if owner is family)

    def _wanted_chains(self, family: Family) -> int:
        """The chains that keep the family busy (`joint_chains` alone), or the fan-out when it pays."""
        if hand_back_due(family, self.families):
            return 0
        chains = family.chains()
        if chains == 0:
            return chains
        pages = self._pages_left()
        if not self._others_active(family):  # alone: every other family retired, or none
            chains = joint_chains(family)
        elif pages is not None and (left_s := self._pass_left_s(pages)) > END_GAME_PAGE_TIMES * family.latency_s:
            chains = max(chains, min(family.max_chains, family.chains_to_spend(left_s), math.ceil(pages)))
        fan = fan_out(pages, family.spare_tokens(), family.max_chains)
        return max(chains, fan[0]) if fan is not None else chains

    def _pages_left(self) -> float | None:
        """Pages still to fetch in the pass (None while the density is unknown)."""
        return self.plan.remaining_pages({p.partition_id for p in self.plan.pending()})

    def _pass_left_s(self, pages: float) -> float:
        """Seconds until the pass would end if every family sent at its rate (one whose rate is unknown: a
        request per page time on each of its chains)."""
        rate = sum(f.rate_per_s() or f.chains() / f.latency_s for f in self.families if f.retired is None)
        return pages / rate if rate > 0 else math.inf

    def _steal(self, thief: Family) -> Partition | None:
        """Split the widest running range for `thief`: in a fan-out all but the owner's piece, else the lower
        piece in proportion to the two chains' speeds."""
        owners = {pid: budget for pid, budget in self._running.values()}
        fan = fan_out(self._pages_left(), thief.spare_tokens(), thief.max_chains)
        if fan is not None:
            rounds = fan[1]
            # The owner keeps a piece; no split when its own requests (a page each) cover the rest anyway.
            piece = rounds * FANOUT_PIECE_PAGES
            proposal = self.plan.propose_cut(set(owners), piece, rounds - piece)
        else:
            # Read before proposing: the plan calls share_of under its lock, which remaining_pages takes too.
            pages_left = {pid: self.plan.remaining_pages({pid}) for pid in owners}
            proposal = self.plan.propose_split(set(owners),
                                               lambda pid: share_for(thief, owners[pid], pages_left[pid]))
        if proposal is None:
            return None
        new = self.ctx.control.run(lambda conn: commit_split(conn, self.ctx.pass_id, self.plan, proposal))
        logger.debug("split partition {} at {} for {}; new partition {}", proposal[0], proposal[1], thief.name,
                     new.partition_id)
        return new

    def _settle(self, future: Future) -> None:
        pid, family = self._running.pop(future)
        with self._lock:
            self._leaving.discard(pid)
        exc = future.exception()
        if exc is None:
            return  # the walker claimed its partition done with its last page
        if isinstance(exc, HandedBack):
            logger.debug("{} handed back on {}: it waits {:.1f} s", exc, family.name, family.send_in_s())
            self._todo.appendleft((self.plan.partitions[pid], False))  # its family resumes it when it can send
        elif isinstance(exc, BuiltCursorsRefused):
            self._cover_with_server_cursors(pid)
        elif isinstance(exc, BUDGET_FAILURES) and self._others_active(family):
            family.retire(str(exc))
            self._todo.appendleft((self.plan.partitions[pid], True))
        elif not isinstance(exc, Stopped):
            self._fail(exc)

    def _others_active(self, family: Family) -> bool:
        return any(other.retired is None for other in self.families if other is not family)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
            self._stop.set()

    def _cover_with_server_cursors(self, refused_id: int) -> None:
        extended, created = self.plan.cover_with_server_cursors(refused_id)
        logger.warning("partition {}: the API refuses built cursors; its range is fetched from the top instead",
                       refused_id)
        self.ctx.control.run(partial(checkpoint.persist_cover, pass_id=self.ctx.pass_id, refused_id=refused_id,
                                     extended=extended, created=created))
        if created is not None:
            self._todo.append((created, False))


def next_chain_for(families: list[tuple[Family, int, int]], *, orphan_waiting: bool = False) -> Family | None:
    """Which family starts the next chain, from (family, chains running, chains wanted); None: no one. The
    one running fewest, below its own cap; with none wanting and a retired family's partition first in line
    (`orphan_waiting`), the one not stalled that can send soonest (docs: "Which family starts the next chain")."""
    wanting = [(busy, i, family) for i, (family, busy, wanted) in enumerate(families) if busy < wanted]
    if wanting:
        return min(wanting, key=lambda entry: entry[:2])[2]
    ready = [f for f, busy, _ in families if f.chains() > 0 and not _stalled(f) and busy < f.max_chains]
    return min(ready, key=Family.send_in_s) if ready and orphan_waiting else None


def joint_chains(family: Family) -> int:
    """The chains the family's joint rate keeps busy: its rate × the page time, rounded up (its members'
    chains added up while no rate is known), not each member's rounded up (docs: "Chains a family keeps busy")."""
    rate = family.rate_per_s()
    chains = family.chains()
    if rate is None:
        return chains
    return max(1, min(chains, math.ceil(rate * family.latency_s - 1e-9)))


def fan_out(remaining_pages: float | None, spare: int, max_chains: int) -> tuple[int, int] | None:
    """(chains, requests each) that fetch `remaining_pages` side by side in the fewest rounds the open
    windows' `spare` requests pay for, every piece's partial page counted; None when one chain would do or
    the windows cannot pay."""
    if remaining_pages is None or remaining_pages <= 1 or (
            remaining_pages / FANOUT_PIECE_PAGES + FANOUT_SPARE_REQUESTS > spare):
        return None
    rounds = 1
    while True:
        piece = rounds * FANOUT_PIECE_PAGES
        chains = math.ceil(remaining_pages / piece - 1e-9)
        if chains <= 1:
            return None
        if chains <= max_chains and chains * rounds + FANOUT_SPARE_REQUESTS <= spare:
            return chains, rounds
        rounds += 1


def commit_split(conn: psycopg.Connection, pass_id: int, plan: Plan, proposal: tuple[int, int, Partition]) -> Partition:
    """Commit a proposed split, then apply it: no walker sees a raised bound the database does not hold."""
    narrowed_id, middle, new = proposal
    checkpoint.persist_split(conn, pass_id, narrowed_id, middle, new)
    plan.apply_split(narrowed_id, middle, new)
    return new


def hand_back_due(family: Family, families: list[Family]) -> bool:
    """True once `family` is retired, or while it is stalled and another family is not (any thread may ask)."""
    return family.retired is not None or _stalled(family) and any(
        not _stalled(other) for other in families if other is not family)


def _stalled(family: Family) -> bool:
    return family.send_in_s() > max(HAND_BACK_MIN_S, HAND_BACK_PAGE_TIMES * family.latency_s)


def share_for(thief: Family, owner: Family, pages_left: float | None) -> float:
    """The part of a range of `pages_left` pages the thief takes so that both pieces end together: in
    proportion to the two chains' speeds, less what the owner walks while the thief waits to send. 0: the
    thief would end after the owner alone; no split."""
    mine, theirs = _chain_rate(thief), _chain_rate(owner)
    share = mine / (mine + theirs)
    wait_s = thief.send_in_s()
    if pages_left is None or wait_s <= 0:
        return share  # a slow thief ready to send still takes the smallest piece worth a split
    share *= 1 - wait_s * theirs / max(pages_left, 1e-9)
    if share * pages_left >= MIN_PIECE_PAGES:
        return share
    # Under a page: the smallest piece still pays when the thief ends it before the owner alone would end
    # the range (a partition's last two pages, one chain on them: the run's end waits a page time more).
    smallest = MIN_PIECE_PAGES / max(pages_left, 1e-9)
    return smallest if smallest < 1 and wait_s + MIN_PIECE_PAGES / mine < pages_left / theirs else 0.0


def _chain_rate(family: Family) -> float:
    """Requests per second one chain of the family sends: one per answer, or its share of the family's rate."""
    per_chain = 1.0 / max(family.latency_s, 1e-3)
    rate = family.rate_per_s()
    if rate is not None:
        per_chain = min(per_chain, rate / max(1, family.chains()))
    return per_chain
