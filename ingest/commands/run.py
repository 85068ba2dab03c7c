"""One ingestion run: lock, origin, then passes over the API on every budget until the store is proven complete."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import psycopg
from loguru import logger

from ingest.api.client import ApiClient, Envelope
from ingest.budgets.budget import FEED, HEADER, Budget, open_budgets
from ingest.budgets.throttle import Throttle
from ingest.commands.api_probe import anchor_served, api_clients, api_total_via, one_off_loop
from ingest.commands.progress import Figures, Progress
from ingest.commands.verify import Verification, verify_tally
from ingest.config import Settings
from ingest.errors import DatabaseError, IngestError, RetryableApiError, Stopped
from ingest.plan.partitions import Partition, Plan, min_split_ms, page_partitions
from ingest.plan.scheduler import PassContext, Scheduler
from ingest.signals import StopFlag
from ingest.stats import Stats
from ingest.store import checkpoint
from ingest.store.database import store_url
from ingest.store.lock import RunLock
from ingest.store.origin import check_origin, origin_for
from ingest.store.reconnect import Link, Reconnector

# The planning probe only measures how dense events are; a small page keeps its latency off the run
# (server time grows with page size: ~0.35 s for 500 events on the live API instead of ~3.5 s).
PLAN_PROBE_EVENTS = 500
# Late events within this much of the newest event are re-read by every incremental pass: about one
# page at the API's ~100,000 events a day, so a rerun with nothing new costs a request or two.
LOOKBACK_MS = 3_600_000  # ms
# A budget an earlier run saved less than this long ago may still have that run's requests counted in
# its current window (the contract's windows are 60 s; states are saved every few seconds).
RECENT_WINDOW_S = 120.0  # s


@dataclass(frozen=True)
class Outcome:
    stats: Stats
    verification: Verification  # what the store proves after the run: `complete` only when it is
    strategy: str  # the budgets the run drew on, e.g. "feed+header+query"
    passes: tuple[str, ...]  # kinds of the passes this run walked, in order
    budgets: tuple[Budget, ...]


def run_ingestion(settings: Settings, stop: StopFlag) -> Outcome:
    """Run to completion, to a stop signal (raises Stopped), or to a fatal error (raises it)."""
    # Every connection of the run waits out a database blip (DB_RECONNECT_TIMEOUT), the first one too:
    # in a Compose stack the database may come up after the ingester.
    database = Reconnector(store_url(settings.database_url, settings.data_dir), settings.db_reconnect_timeout_s,
                           stop=stop)
    lock = RunLock(database, on_failure=stop.event.set)
    control = Link(database, "control")
    try:
        lock.start()
        control.run(checkpoint.create_schema)
        outcome = _run_locked(settings, database, control, stop)
        if lock.error is not None:  # lost after the last pass: the run must not claim what it no longer owns
            raise lock.error
        return outcome
    except psycopg.Error as exc:
        raise DatabaseError(f"database error: {str(exc).strip()}") from exc
    except Stopped:
        if lock.error is not None:  # the lock was lost for good: that, not a signal, stopped the run
            raise lock.error from None
        raise
    finally:
        control.close()
        lock.close()


def _run_locked(settings: Settings, database: Reconnector, control: Link, stop: StopFlag) -> Outcome:
    stats = Stats()
    with api_clients(settings) as clients:
        return _run_with_api(settings, database, control, stop, stats, clients)


def _run_with_api(settings: Settings, database: Reconnector, control: Link, stop: StopFlag, stats: Stats,
                  clients: list[ApiClient]) -> Outcome:
    run_id = control.run(partial(checkpoint.start_run, strategy=settings.strategy))
    outcome, strategy = "failed", settings.strategy
    try:
        first = clients[0]
        budgets = open_budgets(settings, clients, stats, stop.event,
                               control.run(partial(checkpoint.budgets_used_within, seconds=RECENT_WINDOW_S)))
        # The identity probe (asked only under a new key) draws on the header pool through its throttle.
        header = next((b for b in budgets if b.kind == HEADER), None)
        identity = header.retry if header is not None else one_off_loop(settings, "identity", stats, stop.event)
        ours = origin_for(settings.base_url, settings.api_keys[0], settings.demo_label)
        control.run(lambda conn: check_origin(conn, ours, lambda anchor: anchor_served(first, identity, anchor),
                                              record=True, reset=settings.reset))
        # What the last run left (its deadlines, spent windows, measured rates), before the pass's first
        # request; after the origin check, which erases another API's with its store (--reset).
        _take_up(budgets, control.run(checkpoint.load_budget_states))
        strategy = "+".join(b.name for b in budgets)
        walked: list[str] = []
        wanted: str | None = None
        while True:
            pass_id, kind, plan = _resume_or_plan(control, budgets, settings, wanted)
            already, inserted_before = control.run(checkpoint.stored_events), stats.stored
            progress = partial(_progress, stats, settings.progress_interval_s, already,
                               partial(_record_progress, control, run_id))
            ctx = PassContext(database, control, pass_id, stats, stop, progress, first.server_clock.now_ms)
            Scheduler(ctx, plan, budgets).run()
            walked.append(kind)
            walked_at = time.monotonic()
            total = stats.total_hint if stats.total_hint is not None else api_total_via(first, identity)
            control.run(partial(checkpoint.close_pass, pass_id=pass_id, api_total=total,
                                server_now_ms=first.server_clock.now_ms()))
            result = control.run(partial(verify_tally, api_total=total,
                                         stored=already + stats.stored - inserted_before))
            logger.debug("{} pass walked; closed and verified in {:.2f} s", kind, time.monotonic() - walked_at)
            wanted = _next_pass(walked, result)
            if wanted is None:
                break
            logger.warning("{} pass done but {}: starting a {} pass", kind, result.problem, wanted)
        outcome = "complete" if result.complete else "incomplete"
        return Outcome(stats, result, strategy, tuple(walked), tuple(budgets))
    except Stopped:
        outcome = "stopped"
        raise Stopped(stop.signum) from None
    finally:
        try:
            control.run(lambda conn: checkpoint.end_run(conn, run_id, outcome, strategy, stats.stored,
                                                         stats.duplicates, stats.quarantined))
        except (psycopg.Error, IngestError):
            logger.warning("could not record the end of run {} (database unavailable)", run_id)


def _take_up(budgets: list[Budget], learned: dict[str, tuple[float | None, float | None]]) -> None:
    """Give each budget what the last run learned of it, and say so: a run that waits must say why."""
    now = time.time()
    for budget in budgets:
        rate, not_before = learned.get(budget.state_key, (None, None))
        budget.throttle.restore(rate, not_before, wall=lambda: now)
        if rate is not None and budget.throttle.pacer is not None:
            logger.info("budget {}: paced at the last run's measured {:.3f} requests/s", budget.name, rate)
        if not_before is not None and not_before > now:
            logger.info("budget {}: no request for {:.1f} s, a deadline the last run left (a 429's lockout or a"
                        " window it spent)", budget.name, not_before - now)


def _next_pass(walked: list[str], result: Verification) -> str | None:
    """The pass that can still reconcile the store with the API, or None (complete, or nothing cheap left).

    Late events near the top are re-read by an incremental pass (its lookback window); anything else
    (late events in the middle of the range, a gap) needs a full pass. At most one of each per run after
    the first, so a rerun never costs more than one extra full pass.
    """
    if result.complete:
        return None
    if walked[-1] == checkpoint.FULL and checkpoint.INCREMENTAL not in walked:
        return checkpoint.INCREMENTAL  # events that arrived at the top while the full pass walked down
    if checkpoint.FULL not in walked:
        return checkpoint.FULL
    return None


def _resume_or_plan(control: Link, budgets: list[Budget], settings: Settings,
                    wanted: str | None) -> tuple[int, str, Plan]:
    """The open pass, or a new one: `wanted`, else incremental after a complete pass, else full."""
    state = control.run(checkpoint.load_state)
    if state.pass_id is not None and state.kind is not None:
        pending = [p for p in state.partitions if not p.done]
        logger.info("resuming a {} pass: {} of {} partitions unfinished", state.kind, len(pending),
                    len(state.partitions))
        return state.pass_id, state.kind, Plan(state.partitions, state.oldest_ms, state.min_split_ms)
    kind = wanted or (checkpoint.INCREMENTAL if state.watermark_ms is not None else checkpoint.FULL)
    oldest: int | None
    if kind == checkpoint.INCREMENTAL and state.watermark_ms is not None:
        floor = state.watermark_ms - LOOKBACK_MS
        logger.info("previous pass complete; fetching events at or after {} ms (watermark minus {} s)",
                    floor, LOOKBACK_MS // 1000)
        parts, oldest, min_split = [Partition(1, floor, None)], floor, 0
    else:
        kind = checkpoint.FULL
        feed = next((b for b in budgets if b.kind == FEED), None)
        parts, oldest, min_split = _plan_full_pass(feed, settings)
    pass_id, parts = control.run(lambda conn: checkpoint.start_pass(conn, kind, parts, oldest, min_split))
    logger.info("planned a {} pass of {} partition(s)", kind, len(parts))
    return pass_id, kind, Plan(parts, oldest, min_split)


def _whole(page: Envelope) -> Envelope:
    """The planning probe reads meta.total and the page's span: a body cut off before them is asked again."""
    if page.truncated:
        raise RetryableApiError("the planning probe's body was cut off mid-JSON")
    return page


def _plan_full_pass(feed: Budget | None, settings: Settings) -> tuple[list[Partition], int | None, int]:
    """Split the time range into one partition per feed chain (a single chain for concurrency 1), each
    holding a whole number of pages by the probe's density (`page_partitions`).

    Feed partitions are cut by since/until after a small probe request. Without the feed there is no
    probe (under the documented endpoint's 10-per-window budget one request more can cost a whole
    window): one chain starts from the top and the other budgets split it once its first page shows how
    dense events are, with built cursors, as public clients did (falling back to covering from the top
    when the API refuses those).
    """
    if settings.concurrency == 1 or feed is None:
        return [Partition(1, None, None)], None, 0
    from ingest.store.rows import parse_timestamps

    probe = feed.retry.call(lambda: _whole(feed.source.page(None, None, None, PLAN_PROBE_EVENTS)), "planning probe")
    stamps = [ts for ts in parse_timestamps(probe.events) if ts is not None]
    if not probe.has_more or len(stamps) < 2 or not probe.total:
        return [Partition(1, None, None)], None, 0
    newest, last = max(stamps), min(stamps)
    per_event_ms = max(1, newest - last) / (len(stamps) - 1)
    oldest = int(newest - probe.total * per_event_ms)
    feed.retry.stats.total_hint = probe.total
    min_split = min_split_ms(newest, oldest, probe.total, settings.page_size)
    parts = page_partitions(newest, per_event_ms, probe.total, settings.page_size, feed.throttle.chains())
    return parts, oldest, min_split


def _progress(stats: Stats, interval_s: float, already_stored: int, record: Callable[[Figures], None],
              throttles: list[Throttle], pages: queue.Queue) -> Progress:
    return Progress(stats, throttles, pages, interval_s, already_stored, record=record)


def _record_progress(control: Link, run_id: int, figures: Figures) -> None:
    """Persist the live figures with the run's row, for `status` in another process."""
    try:
        control.run(partial(checkpoint.record_progress, run_id=run_id, in_table=figures.in_table,
                            api_total=figures.total, rate=figures.rate, eta_s=figures.eta_s,
                            throttled=list(figures.throttled)))
    except (psycopg.Error, DatabaseError) as exc:  # a figure for `status` is no reason to stop the run
        logger.warning("could not record the run's progress: {}", exc)
