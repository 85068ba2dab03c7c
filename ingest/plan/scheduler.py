"""The scheduler: one plan, many families of budgets — every partition walked once, all finishing together.

Each family (the feed; a key's two documented pools) runs as many chains as it can keep busy. A free
chain takes the next pending partition; when none is left it steals: the widest running range is split,
in proportion to the two families' speeds, and the chain takes the lower piece. Splits are committed
before anyone acts on them. A family that fails (stream-access refused, its retries spent) is retired
and its partition handed, from its last position, to the others.
"""

from __future__ import annotations

import math
import queue
import time
from collections import deque
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
from ingest.plan.partitions import MIN_SPLIT_PAGES, Partition, Plan
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
# writer commits what it holds (Writer.finish); requests still out are abandoned (a rerun fetches their
# pages again).
STOP_GRACE_S = 4.0  # s
# A family that cannot send for this many of its page-times (a 429 lockout, spent windows) hands its
# partitions back when another family can send: the range waits for nobody, and no split (no partial page)
# is needed to move it. Never for less than HAND_BACK_MIN_S, so the feed's spacing between turns is no reason.
HAND_BACK_PAGE_TIMES = 2.0
HAND_BACK_MIN_S = 2.0  # s
# The fan-out of the windows that cover what is left: the range is cut into pieces of at most this many
# pages per request a chain sends (at the density one page showed), fetched all at once. Under a page so
# that a denser stretch than the sample still fits one request: a piece one event over costs a second
# request, after the first.
FANOUT_PIECE_PAGES = 0.8
# Requests of the open windows a fan-out leaves unplanned: a failed request (5xx, reset) is sent again, and
# one that spills into the next window waits for it.
FANOUT_SPARE_REQUESTS = 1


class ProgressView(Protocol):
    """What the scheduler asks of the progress display: a chance to log, and an end."""

    def maybe_log(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PassContext:
    """What one pass needs from the run: where to write, its stop flag, and the API's clock."""

    database: Reconnector  # the writer's connections come from it
    control: Link  # the control connection: splits are committed on it
    pass_id: int
    stats: Stats
    stop: StopFlag
    # Shows how far the run is, given the budgets' throttles and the page queue (the commands draw it).
    progress: Callable[[list[Throttle], queue.Queue], ProgressView]
    server_now_ms: Callable[[], int]
    # Chains of all budgets at once (CONCURRENCY per key): each holds a page in memory and parses on the
    # same cores as the writer, so where no limit is announced (every budget unlimited) this is the cap.
    max_chains: int


class Scheduler:
    """Walks every pending partition of `plan` on `budgets` and writes it; one pass."""

    def __init__(self, ctx: PassContext, plan: Plan, budgets: list[Budget],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.plan = plan
        self.budgets = budgets  # their learned states are saved, each under its own name
        self.families = families_of(budgets)
        self._clock = clock  # the throttles' clock: a not-before is compared with their waits
        self._stop = ctx.stop.event
        self._running: dict[Future, tuple[int, Family]] = {}
        # What is left to walk, first first: a partition and when the family that gave it up can send
        # again (None: nobody gave it up; inf: it is retired), for `_orphan_waits_last`.
        self._todo: deque[tuple[Partition, float | None]] = deque((p, None) for p in plan.pending())
        self._error: BaseException | None = None
        self._memory = BudgetMemory(ctx.control)

    def run(self) -> None:
        """Raises the first fatal error, Stopped on a signal; returns when every partition is done."""
        pages: queue.Queue = queue.Queue(maxsize=PAGE_QUEUE_MAX)
        writer = Writer(self.ctx.database, pages, self.ctx.stats)
        writer.start()
        walkers = {family: ChainWalker(family, self.plan, pages, writer.is_alive,
                                       server_now_ms=self.ctx.server_now_ms,
                                       hand_back=partial(hand_back_due, family, self.families))
                   for family in self.families}
        progress = self.ctx.progress([b.throttle for b in self.budgets], pages)
        # A thread for every chain `next_chain_for` may start: the cap, and one more per family at the cap. A
        # chain submitted without a free thread would hold its partition (a split made for it) unwalked.
        pool = ThreadPoolExecutor(max_workers=self.ctx.max_chains + len(self.families), thread_name_prefix="fetch")
        try:
            while True:
                self._assign(pool, walkers)
                if not self._running:
                    break
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
        """Give free chains work — a pending partition, else a piece split off a running one — to the family
        running the fewest chains first (see `next_chain_for`); a partition another family gave up goes to
        one that can send now even when every family runs the chains it wants."""
        no_work: set[Family] = set()
        while not self._stop.is_set():
            family = next_chain_for([(f, self._busy(f), self._wanted_chains(f)) for f in self.families
                                     if f not in no_work], len(self._running) >= self.ctx.max_chains,
                                    orphan_waiting=self._orphan_waits_last())
            if family is None:
                return
            part = self._todo.popleft()[0] if self._todo else self._steal(family)
            if part is None:
                no_work.add(family)
                continue
            self._running[pool.submit(walkers[family].run, part)] = (part.partition_id, family)

    def _orphan_waits_last(self) -> bool:
        """True when the next partition is one a family gave up and leaving it for that family would make it
        the last range walked (see `waiting_ends_last`)."""
        back_at = self._todo[0][1] if self._todo else None
        if back_at is None:
            return False
        pages_left = self.plan.remaining_pages({p.partition_id for p in self.plan.pending()})
        return waiting_ends_last(back_at - self._clock(), pages_left, self.families)

    def _busy(self, family: Family) -> int:
        return sum(1 for _, owner in self._running.values() if owner is family)

    def _wanted_chains(self, family: Family) -> int:
        """The chains that keep the family busy (one, when it runs alone and its joint rate leaves a chain
        idle between requests), or the last windows' fan-out when their spare requests pay for it."""
        if hand_back_due(family, self.families):
            return 0
        chains = family.chains()
        if chains == 0:
            return chains
        if not self._others_active(family):  # alone: every other family retired, or none
            chains = joint_chains(family)
        fan = self._fan_out(family)
        return max(chains, fan[0]) if fan is not None else chains

    def _fan_out(self, family: Family) -> tuple[int, int] | None:
        """(chains, requests each) that fetch what is left at once on the family's open windows (see
        `fan_out`); None when they cannot pay for it."""
        remaining = self.plan.remaining_pages({p.partition_id for p in self.plan.pending()})
        return fan_out(remaining, family.spare_tokens(), family.max_chains)

    def _steal(self, thief: Family) -> Partition | None:
        """Split the widest running range for `thief`: in a fan-out, all but the owner's piece; else the
        lower piece in proportion to the thief's speed."""
        owners = {pid: budget for pid, budget in self._running.values()}
        fan = self._fan_out(thief)
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
        exc = future.exception()
        if exc is None:
            return  # the walker claimed its partition done with its last page
        if isinstance(exc, HandedBack):
            logger.debug("{} handed back on {}: it waits {:.1f} s", exc, family.name, family.send_in_s())
            self._give_back(pid, family)
        elif isinstance(exc, BuiltCursorsRefused):
            self._cover_with_server_cursors(pid)
        elif isinstance(exc, BUDGET_FAILURES) and self._others_active(family):
            family.retire(str(exc))
            self._give_back(pid, family)
        elif not isinstance(exc, Stopped):
            self._fail(exc)

    def _give_back(self, pid: int, family: Family) -> None:
        """The partition goes first in line, from its position, with when `family` can send again."""
        self._todo.appendleft((self.plan.partitions[pid], self._clock() + family.send_in_s()))

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
            self._todo.append((created, None))


def next_chain_for(families: list[tuple[Family, int, int]], cap_reached: bool, *,
                   orphan_waiting: bool = False) -> Family | None:
    """Which family starts the next chain, from (family, chains running, chains wanted); None: no one.

    The one running the fewest goes first, so every family runs one before any runs two: the first
    family in the list must not take every slot while the others wait for its partitions to end. At the
    cap only a family running none may start one (a few chains over the cap, at most one per family): a
    family whose chains wait in its own throttle (the feed's spacing) must not keep a pool's window idle.
    When no family wants one and the next partition is one another family gave up (`orphan_waiting`), the
    one that can send soonest adopts it, unless each faces a long wait, and below the cap only (the
    threads above it are kept for families running none). Left waiting, the range would stand still while
    others send; one chain more costs a paced family no request, only its turn.
    """
    wanting = [(busy, i, family) for i, (family, busy, wanted) in enumerate(families)
               if busy < wanted and not (cap_reached and busy > 0)]
    if wanting:
        return min(wanting, key=lambda entry: entry[:2])[2]
    ready = [f for f, _, _ in families if f.chains() > 0 and not _stalled(f)]
    return min(ready, key=Family.send_in_s) if ready and orphan_waiting and not cap_reached else None


def joint_chains(family: Family) -> int:
    """The chains the family's joint rate keeps busy: its rate × the page time, rounded up (its members' own
    chains added up when no rate is known yet).

    Each member rounds up on its own (`Family.chains`): the two pools of a key (10 and 5 per 60 s at 3.5 s a
    page) make two chains, where one chain already sends their 15 requests of a window in 52.5 s. The
    second chain sends nothing sooner and its partition ends in a partial page, a 61st request of 60 that
    opens a window more.
    """
    rate = family.rate_per_s()
    chains = family.chains()
    if rate is None:
        return chains
    return max(1, min(chains, math.ceil(rate * family.latency_s - 1e-9)))


def fan_out(remaining_pages: float | None, spare: int, max_chains: int) -> tuple[int, int] | None:
    """(chains, requests each) that fetch `remaining_pages` in the fewest rounds the open windows' `spare`
    requests pay for; None when one chain would do, or when the windows cannot pay for it.

    A window's requests go at any pace: when it still holds one for every piece (and FANOUT_SPARE_REQUESTS
    more), the pages left are fetched side by side in a page-time or a few, not one after another. Each
    chain's piece is FANOUT_PIECE_PAGES per request it sends; every request is counted, the partial one
    that ends each piece too.
    """
    # Every round asks chains x rounds >= remaining / FANOUT_PIECE_PAGES requests: no round fits below that.
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
    """True once `family` is retired, or while it faces a long wait and another family could send now (any
    thread may ask)."""
    return family.retired is not None or _stalled(family) and any(
        not _stalled(other) for other in families if other is not family)


def _stalled(family: Family) -> bool:
    return family.send_in_s() > max(HAND_BACK_MIN_S, HAND_BACK_PAGE_TIMES * family.latency_s)


def share_for(thief: Family, owner: Family, pages_left: float | None) -> float:
    """The part of a range of `pages_left` pages the thief should take so that both pieces end together:
    in proportion to the two chains' speeds, less what the owner walks while the thief waits to send
    (a window that opens in a few seconds). 0: the thief would end after the owner alone; no split.
    """
    mine, theirs = _chain_rate(thief), _chain_rate(owner)
    share = mine / (mine + theirs)
    wait_s = thief.send_in_s()
    if pages_left is None or wait_s <= 0:
        return share  # a slow thief ready to send still takes the smallest piece worth a split (propose_split)
    share *= 1 - wait_s * theirs / max(pages_left, 1e-9)
    return share if share * pages_left >= MIN_SPLIT_PAGES else 0.0


def _chain_rate(family: Family) -> float:
    """Requests per second one chain of the family sends: one per answer, or its share of the family's rate."""
    per_chain = 1.0 / max(family.latency_s, 1e-3)
    rate = family.rate_per_s()
    if rate is not None:
        per_chain = min(per_chain, rate / max(1, family.chains()))
    return per_chain


def waiting_ends_last(back_in_s: float, pages_left: float | None, families: list[Family]) -> bool:
    """True when the family that gave a partition up comes back (in `back_in_s`; inf: retired) later than
    the families sending now need for `pages_left`.

    Mid-run a partition given up waits: the family that gave it up resumes it when it can send again, with
    no split (every split costs a partial page). Near the end it would be walked after everyone else is
    done, so a family that can send now takes it. Unknown density or no family sending: take it.
    """
    rate = sum(_family_rate(f) for f in families if not _stalled(f))
    return pages_left is None or rate <= 0 or back_in_s > pages_left / rate


def _family_rate(family: Family) -> float:
    """Requests per second the family sends: its rate where known, else what its chains can send."""
    return family.rate_per_s() or family.chains() * _chain_rate(family)
