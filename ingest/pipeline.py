"""One ingestion run: lock, plan or resume, fetch in parallel, write, finish the pass."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import psycopg
from loguru import logger

from ingest import checkpoint
from ingest.client import ApiClient
from ingest.concurrency import AdaptiveConcurrency
from ingest.config import Settings
from ingest.database import connect, embedded_database_url
from ingest.errors import (
    AuthenticationFailed,
    BuiltCursorsRefused,
    DatabaseError,
    FatalApiError,
    IngestError,
    RetriesExhausted,
    Stopped,
    StreamAccessDenied,
)
from ingest.fetch import PartitionFetcher, Requester, Source
from ingest.limiter import RateLimiter
from ingest.lock import acquire_run_lock
from ingest.origin import check_origin, origin_for
from ingest.pacer import Pacer
from ingest.partitions import Partition, Plan, even_partitions, min_split_ms
from ingest.progress import Progress
from ingest.report import Verification, verify
from ingest.sources import DocumentedSource, FeedSource, StreamTokens
from ingest.stats import Stats
from ingest.total import anchor_served, api_requests, api_total_via
from ingest.writer import SENTINEL, Writer

PAGE_QUEUE_MAX = 6  # pages; bounds memory to ~6 × 2.7 MB of rows while the writer is behind
WAIT_SLICE_S = 0.25  # s; the coordinator wakes this often to log progress and see signals
# The planning probe only measures how dense events are; a small page keeps its latency off the run
# (server time grows with page size: ~0.35 s for 500 events on the live API instead of ~3.5 s).
PLAN_PROBE_EVENTS = 500
# Late events within this much of the newest event are re-read by every incremental pass: about one
# page at the API's ~100,000 events a day, so a rerun with nothing new costs a request or two.
LOOKBACK_MS = 3_600_000  # ms
# On a signal the run must be gone within Docker's 10 s grace: in-flight requests get this long, then the
# writer commits what it holds within WRITER_STOP_JOIN_S; requests still out are abandoned (a rerun
# fetches their pages again).
STOP_GRACE_S = 4.0  # s
WRITER_STOP_JOIN_S = 3.0  # s
WRITER_JOIN_S = 60.0  # s; the writer's last commit after the fetchers are done


@dataclass(frozen=True)
class Outcome:
    stats: Stats
    verification: Verification  # what the store proves after the run: `complete` only when it is
    strategy: str
    passes: tuple[str, ...]  # kinds of the passes this run walked, in order


class StopFlag:
    """Set by a signal handler; remembers which signal, for the exit code."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum = 0

    def trigger(self, signum: int) -> None:
        self.signum = signum
        self.event.set()


def run_ingestion(settings: Settings, stop: StopFlag) -> Outcome:
    """Run to completion, to a stop signal (raises Stopped), or to a fatal error (raises it)."""
    url = settings.database_url or embedded_database_url(settings.data_dir)
    lock_conn = connect(url, autocommit=True, role="lock")
    try:
        acquire_run_lock(lock_conn)
        with connect(url, role="control") as conn:
            checkpoint.create_schema(conn)
            return _run_locked(settings, url, conn, stop)
    except psycopg.Error as exc:
        raise DatabaseError(f"database error: {str(exc).strip()}") from exc
    finally:
        lock_conn.close()


def _run_locked(settings: Settings, url: str, conn: psycopg.Connection, stop: StopFlag) -> Outcome:
    stats = Stats()
    with api_requests(settings, stats, stop.event) as (client, requester):
        return _run_with_api(settings, url, conn, stop, stats, client, requester)


def _run_with_api(settings: Settings, url: str, conn: psycopg.Connection, stop: StopFlag, stats: Stats,
                  client: ApiClient, requester: Requester) -> Outcome:
    limiter = requester.limiter
    run_id = checkpoint.start_run(conn, settings.strategy)
    outcome, strategy = "failed", settings.strategy
    try:
        ours = origin_for(settings.base_url, settings.api_key, settings.demo_label)
        check_origin(conn, ours, lambda anchor: anchor_served(client, requester, anchor), record=True,
                     reset=settings.reset)
        source = _choose_source(settings, client, requester)
        strategy = source.name
        if source.windowed:
            requester.gate = AdaptiveConcurrency(settings.concurrency)
            requester.pacer = Pacer()
        fallback = None
        if settings.strategy == "auto" and source.windowed:
            fallback = DocumentedSource(client, settings.page_size)
        walked: list[str] = []
        wanted: str | None = None
        while True:
            pass_id, kind, plan = _resume_or_plan(conn, source, requester, settings, wanted)
            (already,) = conn.execute("SELECT count(*) FROM ingested_events").fetchone()
            conn.commit()
            strategy = _execute(settings, url, conn, pass_id, plan, source, client, requester, limiter, stats,
                                stop, already, fallback)
            walked.append(kind)
            total = stats.total_hint if stats.total_hint is not None else api_total_via(client, requester)
            checkpoint.close_pass(conn, pass_id, total, client.server_clock.now_ms())
            result = verify(conn, total, per_day=False)
            wanted = _next_pass(walked, result)
            if wanted is None:
                break
            logger.warning("{} pass done but {}: starting a {} pass", kind, result.problem, wanted)
        outcome = "complete" if result.complete else "incomplete"
        return Outcome(stats, result, strategy, tuple(walked))
    except Stopped:
        outcome = "stopped"
        raise Stopped(stop.signum) from None
    finally:
        try:
            checkpoint.end_run(conn, run_id, outcome, strategy, stats.stored, stats.duplicates, stats.quarantined)
        except psycopg.Error:
            logger.warning("could not record the end of run {} (database unavailable)", run_id)


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


def _choose_source(settings: Settings, client: ApiClient, requester: Requester) -> Source:
    documented = DocumentedSource(client, settings.page_size)
    if settings.strategy == "documented":
        return documented
    try:
        grant = requester.call(client.stream_access, "stream-access")
    except (AuthenticationFailed, RetriesExhausted):
        raise  # the documented endpoint would fail the same way
    except (StreamAccessDenied, FatalApiError) as exc:
        if settings.strategy == "feed":
            raise FatalApiError(f"strategy feed: stream-access refused: {exc}") from exc
        logger.warning("stream-access refused ({}); falling back to the documented /api/v1/events", exc)
        return documented
    logger.info("using the fast feed at {} (token valid {:.0f} s)", grant.endpoint, grant.expires_in_s)
    return FeedSource(client, StreamTokens(client, grant), settings.page_size)


def _resume_or_plan(conn: psycopg.Connection, source: Source, requester: Requester, settings: Settings,
                    wanted: str | None) -> tuple[int, str, Plan]:
    """The open pass, or a new one: `wanted`, else incremental after a complete pass, else full."""
    state = checkpoint.load_state(conn)
    if state.pass_id is not None and state.kind is not None:
        pending = [p for p in state.partitions if not p.done]
        logger.info("resuming a {} pass: {} of {} partitions unfinished", state.kind, len(pending),
                    len(state.partitions))
        return state.pass_id, state.kind, Plan(state.partitions, state.oldest_ms, state.min_split_ms)
    kind = wanted or (checkpoint.INCREMENTAL if state.watermark_ms is not None else checkpoint.FULL)
    if kind == checkpoint.INCREMENTAL and state.watermark_ms is not None:
        floor = state.watermark_ms - LOOKBACK_MS
        logger.info("previous pass complete; fetching events at or after {} ms (watermark minus {} s)",
                    floor, LOOKBACK_MS // 1000)
        parts, oldest, min_split = [Partition(1, floor, None)], floor, 0
    else:
        kind = checkpoint.FULL
        parts, oldest, min_split = _plan_full_pass(source, requester, settings)
    pass_id, parts = checkpoint.start_pass(conn, kind, parts, oldest, min_split)
    logger.info("planned a {} pass of {} partition(s)", kind, len(parts))
    return pass_id, kind, Plan(parts, oldest, min_split)


def _plan_full_pass(
    source: Source, requester: Requester, settings: Settings
) -> tuple[list[Partition], int | None, int]:
    """Split the time range evenly into one partition per fetcher (a single chain for concurrency 1).

    Feed partitions are cut by since/until after a small probe request. The documented endpoint gets
    no probe (under its 10-per-window budget one request more can cost a whole window): its single
    chain is split later, with built cursors, as public clients did (falling back to covering from the
    top when the API refuses those).
    """
    if settings.concurrency == 1 or not source.windowed:
        # One chain from the top; once its first page shows how dense events are, idle workers split
        # it (only while the API announces no budget: each split costs a partial page of requests).
        return [Partition(1, None, None)], None, 0
    from ingest.transform import parse_timestamps

    probe = requester.call(lambda: source.page(None, None, None, PLAN_PROBE_EVENTS), "planning probe")
    stamps = [ts for ts in parse_timestamps(probe.events) if ts is not None]
    if not probe.has_more or len(stamps) < 2 or not probe.total:
        return [Partition(1, None, None)], None, 0
    newest, last = max(stamps), min(stamps)
    per_event_ms = max(1, newest - last) / (len(stamps) - 1)
    oldest = int(newest - probe.total * per_event_ms)
    requester.stats.total_hint = probe.total
    min_split = min_split_ms(newest, oldest, probe.total, settings.page_size)
    return even_partitions(newest, oldest, settings.concurrency), oldest, min_split


def _execute(settings: Settings, url: str, conn: psycopg.Connection, pass_id: int, plan: Plan, source: Source,
             client: ApiClient, requester: Requester, limiter: RateLimiter, stats: Stats, stop: StopFlag,
             already: int, fallback: Source | None) -> str:
    """Fetch every pending partition and write it; returns the strategy the run ended on."""
    pages: queue.Queue = queue.Queue(maxsize=PAGE_QUEUE_MAX)
    writer = Writer(url, pages, stats)
    writer.start()
    now_ms = client.server_clock.now_ms
    fetcher = PartitionFetcher(source, requester, plan, pages, writer.is_alive, server_now_ms=now_ms)
    progress = Progress(stats, limiter, pages, settings.progress_interval_s, already)
    workers = settings.concurrency
    error: BaseException | None = None
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch")
    running: dict[Future, int] = {}
    todo = deque(plan.pending())
    try:
        while True:
            while todo and len(running) < workers and not stop.event.is_set():
                part = todo.popleft()
                running[pool.submit(fetcher.run, part)] = part.partition_id
            if not running:
                break
            done, _ = wait(running, timeout=WAIT_SLICE_S, return_when=FIRST_COMPLETED)
            progress.maybe_log()
            if writer.error is not None and error is None:
                error = writer.error
                stop.event.set()
            for future in done:
                pid = running.pop(future)
                exc = future.exception()
                if exc is None:
                    plan.finish(pid)
                elif isinstance(exc, BuiltCursorsRefused):
                    _cover_with_server_cursors(conn, pass_id, plan, pid, todo)
                elif isinstance(exc, StreamAccessDenied) and fallback is not None:
                    if fetcher.source is not fallback:
                        logger.warning("stream-access refused mid-run ({}); continuing on the documented"
                                       " /api/v1/events from each partition's last position", exc)
                        fetcher = PartitionFetcher(fallback, requester, plan, pages, writer.is_alive,
                                                   trust_stored_cursors=False, server_now_ms=now_ms)
                        requester.gate = requester.pacer = None
                    todo.append(plan.partitions[pid])
                elif not isinstance(exc, Stopped) and error is None:
                    error = exc
                    stop.event.set()
            if stop.event.is_set():
                wait(running, timeout=STOP_GRACE_S)
                break
            if not todo and len(running) < workers and _split_is_free(plan, running, limiter, requester):
                _split_for_idle_worker(conn, pass_id, plan, running, todo)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        _finish_writer(writer, pages, WRITER_STOP_JOIN_S if stop.event.is_set() else WRITER_JOIN_S)
    if writer.error is not None:
        raise writer.error
    if error is not None:
        raise error if isinstance(error, IngestError) else FatalApiError(f"fetcher failed: {error!r}")
    if stop.event.is_set():
        raise Stopped(stop.signum)
    progress.maybe_log()
    return fetcher.source.name


def _split_is_free(plan: Plan, running: dict[Future, int], limiter: RateLimiter, requester: Requester) -> bool:
    """Whether splitting for an idle worker saves time without spending budget the run needs later.

    A split costs an extra partial page. Free when the API rations nothing; under announced windows
    only when the current window has tokens left for all remaining pages plus that extra one (the last
    window: its pages then go out in parallel instead of one after another). Never while the feed's
    429s pace us.
    """
    if requester.pacer is not None and requester.pacer.spacing_s > 0:
        return False
    if not limiter.engaged:
        return True
    remaining = plan.remaining_pages(set(running.values()))
    return remaining is not None and remaining + 1 <= limiter.spare_tokens()


def _split_for_idle_worker(conn: psycopg.Connection, pass_id: int, plan: Plan, running: dict[Future, int],
                           todo: deque) -> None:
    proposal = plan.propose_split(set(running.values()))
    if proposal is None:
        return
    narrowed_id, middle, new = proposal
    checkpoint.persist_split(conn, pass_id, narrowed_id, middle, new)
    plan.apply_split(narrowed_id, middle, new)
    todo.append(new)
    logger.debug("split partition {} at {}; new partition {}", narrowed_id, middle, new.partition_id)


def _cover_with_server_cursors(conn: psycopg.Connection, pass_id: int, plan: Plan, refused_id: int,
                               todo: deque) -> None:
    extended, created = plan.cover_with_server_cursors(refused_id)
    logger.warning("partition {}: the API refuses built cursors; its range is fetched from the top instead",
                   refused_id)
    checkpoint.persist_cover(conn, pass_id, refused_id, extended, created)
    if created is not None:
        todo.append(created)


def _finish_writer(writer: Writer, pages: queue.Queue, within_s: float) -> None:
    """Hand the writer its sentinel and wait for its last commit, `within_s` seconds at most."""
    deadline = time.monotonic() + within_s
    while writer.is_alive() and time.monotonic() < deadline:
        try:
            pages.put(SENTINEL, timeout=WAIT_SLICE_S)
            break
        except queue.Full:
            continue
    writer.join(max(0.0, deadline - time.monotonic()))
    if writer.is_alive():
        writer.error = writer.error or DatabaseError("the writer did not finish its last commit in time")
