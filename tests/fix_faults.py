"""The fault suite's summary: for each scenario, expected / stored / missing / extra ids, printed at the end.

Expected ids are what the simulator serves (walked over HTTP, valid UUIDs only), not its own count, so a
scenario's figures hold whatever the simulator's internals do.
"""

from __future__ import annotations

import dataclasses
import time

import psycopg
import requests

from datasync_sim import SimServer, profile_config
from ingest.store.rows import usable_uuid
from tests.fix_ingest import API_KEY

SUMMARY: list[dict] = []  # one row per recorded scenario, printed by conftest's terminal summary
WALK_ATTEMPTS = 5  # per page: the walk itself tolerates the simulator's chaos


def served_ids(sim_url: str) -> set[str]:
    """Every valid id the API lists now, walking /api/v1/events to its end."""
    ids: set[str] = set()
    cursor = None
    with requests.Session() as session:
        session.headers["X-API-Key"] = API_KEY
        while True:
            params = {"limit": 5000, **({"cursor": cursor} if cursor else {})}
            body = _page(session, sim_url, params)
            ids.update(i for i in (usable_uuid(e.get("id")) for e in body["data"] if isinstance(e, dict)) if i)
            if not body["pagination"]["hasMore"]:
                return ids
            cursor = body["pagination"]["nextCursor"]


def _page(session: requests.Session, sim_url: str, params: dict) -> dict:
    for _ in range(WALK_ATTEMPTS):
        response = session.get(sim_url + "/api/v1/events", params=params, timeout=30)
        try:
            body = response.json() if response.status_code == 200 else None
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("pagination"), dict):
            return body
    raise AssertionError(f"the simulator did not answer a page in {WALK_ATTEMPTS} attempts")


def stored_ids(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        return {row[0] for row in conn.execute("SELECT id::text FROM ingested_events")}


def record(scenario: str, server: SimServer, database_url: str, outcome: str) -> dict:
    """Compare the table with the API's ids; keep the row for the summary; return the figures.

    The simulator's latency and rate limits are switched off first: walking it is not part of the scenario.
    """
    server.app.cfg = dataclasses.replace(server.app.cfg, latency_ms_per_event=0.0, latency_base_ms=0.0,
                                         events_limit=0, query_key_limit=0)
    want, got = served_ids(server.url), stored_ids(database_url)
    row = {"expected": len(want), "stored": len(got), "missing": len(want - got), "extra": len(got - want)}
    SUMMARY.append({"scenario": scenario, **row, "outcome": outcome})
    return row


def summary_lines() -> list[str]:
    head = f"{'scenario':<44} {'expected':>9} {'stored':>9} {'missing':>8} {'extra':>6}  outcome"
    rows = [f"{r['scenario']:<44} {r['expected']:>9,} {r['stored']:>9,} {r['missing']:>8,} {r['extra']:>6,}"
            f"  {r['outcome']}" for r in SUMMARY]
    return [head, *rows]


def stored_rows(database_url: str) -> int:
    """Rows in ingested_events now; 0 before the first run created the table."""
    try:
        with psycopg.connect(database_url) as conn:
            return conn.execute("SELECT count(*) FROM ingested_events").fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return 0


def wait_for_rows(database_url: str, at_least: int, timeout_s: float = 30.0) -> int:
    """Until ingested_events holds `at_least` rows (polled); the count. The timeout guards against a hang."""
    deadline = time.monotonic() + timeout_s
    while (n := stored_rows(database_url)) < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} rows after {timeout_s} s"
        time.sleep(0.05)
    return n


def slow_sim(events: int = 60_000, **knobs) -> SimServer:
    """A `fast` simulator at 0.1 ms per event: a 1000-event page takes 0.1 s, so a run lasts a few seconds
    and can be hit (signals, kills, locks) even on a loaded machine; hold its requests to be sure."""
    cfg = profile_config("fast", events=events, seed=3, latency_ms_per_event=0.1, **knobs)
    return SimServer(cfg)


def wait_for_rows_of_running(database_url: str, at_least: int, child, timeout_s: float = 30.0) -> None:
    """Wait until the run in `child` stored `at_least` events; fail if it ends first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert child.poll() is None, "the run ended before it could be stopped: make the simulator slower"
        try:
            with psycopg.connect(database_url) as conn:
                (n,) = conn.execute("SELECT count(*) FROM ingested_events").fetchone()
            if n >= at_least:
                return
        except psycopg.errors.UndefinedTable:
            pass
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} rows after {timeout_s} s")
