"""Which API a store holds: recorded by the first run, checked by every run, `verify` and `submit`.

A store filled from one API must never be completed from, verified against or submitted to another
(the demo's simulator and the live API serve events of the same shape). The origin is the base URL,
a fingerprint of the key, and the dataset's identity as the API shows it: its newest event on the first
pass, `(timestamp, id)`. Keys expire after hours, so a new key on the same URL is accepted when the API
still serves that event where it was: the same dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from loguru import logger

from ingest.config import key_fingerprint
from ingest.errors import OriginMismatch
from ingest.store.database import one

DEMO_FINGERPRINT = "demo"  # the demo draws a fresh key per run; its dataset is fixed by its label


@dataclass(frozen=True)
class Origin:
    base_url: str  # API_BASE_URL, or the demo's label
    key_fingerprint: str


@dataclass(frozen=True)
class Anchor:
    """The dataset's identity: an event the API served, at its place in the API's order."""

    ts_ms: int
    event_id: str


# Whether the API still serves the anchor event (None: it could not be asked, e.g. built cursors refused).
AnchorProbe = Callable[[Anchor], bool | None]


def origin_for(base_url: str, api_key: str, demo_label: str | None) -> Origin:
    if demo_label is not None:
        return Origin(demo_label, DEMO_FINGERPRINT)
    return Origin(base_url.rstrip("/"), key_fingerprint(api_key))


def check_origin(conn: psycopg.Connection, ours: Origin, probe: AnchorProbe, *, record: bool,
                 reset: bool = False) -> None:
    """Refuse (OriginMismatch, exit 2) a store that holds another API's events.

    `record` (a run): a store without an origin, or without events, takes ours; with `reset`, a store of
    another origin is emptied and takes ours. Without `record` (verify, submit) nothing is written, and
    a store without events is refused to no one.
    """
    row = conn.execute(
        "SELECT base_url, key_fingerprint, anchor_ms, anchor_id::text FROM ingest_origin"
    ).fetchone()
    conn.commit()
    if row is None:
        _first_origin(conn, ours, record=record)
        return
    theirs = Origin(row[0], row[1])
    anchor = Anchor(row[2], row[3]) if row[2] is not None else None
    if theirs == ours:
        return
    if not _holds_events(conn):
        # A run that stored nothing (a URL that redirects, a wrong path) must not bind the store to its
        # origin: the store belongs to the API of the run that first stores an event.
        if record:
            logger.info("this store holds no events: it takes {} as its API instead of {}, recorded by a run"
                        " that stored none", ours.base_url, theirs.base_url)
            erase_store(conn)  # that run's plan and limits were the other API's
            _first_origin(conn, ours, record=True)
        return
    if theirs.base_url == ours.base_url and anchor is not None and probe(anchor):
        logger.info("a new API key for the same dataset (the API still serves its newest event of the first pass)")
        if record:
            with conn.transaction():
                conn.execute("UPDATE ingest_origin SET key_fingerprint = %s", (ours.key_fingerprint,))
        return
    if reset and record:
        logger.warning("--reset: erasing the events and checkpoints of {}", theirs.base_url)
        erase_store(conn)
        _first_origin(conn, ours, record=True)
        return
    raise OriginMismatch(_mismatch(theirs, ours, anchor))


def _mismatch(theirs: Origin, ours: Origin, anchor: Anchor | None) -> str:
    if theirs.base_url != ours.base_url:
        what = f"this store holds events from {theirs.base_url}, not {ours.base_url}"
    elif anchor is None:
        what = f"this store was filled with another API key for {theirs.base_url} and cannot prove the dataset"
    else:
        what = f"the API at {ours.base_url} does not serve this store's dataset with this key"
    return (f"{what}: use another DATA_DIR or DATABASE_URL for it, or rerun with --reset to erase this store"
            " and start over")


def _holds_events(conn: psycopg.Connection) -> bool:
    (any_event,) = one(conn.execute("SELECT EXISTS (SELECT 1 FROM ingested_events)"))
    conn.commit()
    return bool(any_event)


def _first_origin(conn: psycopg.Connection, ours: Origin, *, record: bool) -> None:
    (stored,) = one(conn.execute("SELECT count(*) FROM ingested_events"))
    conn.commit()
    if not record:
        if stored:
            raise OriginMismatch(
                f"this store ({stored:,} events) does not record which API it came from (an older version"
                " wrote it): run the ingestion once against its API to record it, or use --reset"
            )
        return
    if stored:
        logger.warning("this store ({:,} events) does not record its API; recording {} (a run then reconciles"
                       " it with the API's meta.total)", stored, ours.base_url)
    with conn.transaction():
        conn.execute("INSERT INTO ingest_origin (base_url, key_fingerprint) VALUES (%s, %s)",
                     (ours.base_url, ours.key_fingerprint))


def erase_store(conn: psycopg.Connection) -> None:
    """Empty every table of ingested data and checkpoints, and the other API's learned limits (the run log
    and submissions stay)."""
    with conn.transaction():
        conn.execute("TRUNCATE ingested_events, ingest_quarantine, ingest_partitions, ingest_passes, ingest_origin,"
                     " ingest_budgets")
        conn.execute("UPDATE ingest_state SET watermark_ms = NULL, oldest_ms = NULL, min_split_ms = 0,"
                     " completed_at = NULL")
