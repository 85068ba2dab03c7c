"""The 120 s restart rule, end to end: a run that starts within 120 s of another's use of a budget treats
that budget as one whose current window (or bucket) may still count the other run's requests.

- The feed starts slow: one request in flight, one more per success, until a 429 hands the pace to the
  pacer (requests sent together into a bucket the killed run emptied would all land in one lockout).
- The `?api_key=` pool's probe judges only falls of X-RateLimit-Remaining in its first window, never the
  level (the killed run's requests count in it: judged by the level, the pool would look shared).

Each first run is held at the simulator's gate mid-way, the budget it used recorded, then killed.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from datasync_sim import SimServer, profile_config
from tests.fix_faults import wait_for_rows
from tests.fix_ingest import exactness, sim_stats, spawn_ingest
from tests.fix_sim import Gate, InFlight

pytestmark = pytest.mark.slow


def saved_budgets(database_url: str) -> set[str]:
    """The kinds of budget (feed, header, query) whose state a run saved."""
    with psycopg.connect(database_url) as conn:
        try:
            names = [name for (name,) in conn.execute("SELECT name FROM ingest_budgets")]
        except psycopg.errors.UndefinedTable:
            return set()
    return {name.split("@")[0] for name in names}


def kill_mid_run(server: SimServer, gate: Gate, database_url: str, used: str, *args: str) -> None:
    """Start a run, hold it at the gate after 2,000 events, wait until it saved `used`'s state, kill it."""
    gate.hold_after(2_000)
    child = spawn_ingest(server.url, database_url, *args)
    gate.wait_held()
    wait_for_rows(database_url, 1_000)
    deadline = time.monotonic() + 30  # a guard against a hang: the wait ends on what the store shows
    while used not in saved_budgets(database_url):
        assert time.monotonic() < deadline, f"the run saved no state of its {used} budget within 30 s"
        time.sleep(0.05)
    child.kill()
    child.wait(10)
    gate.release()


def test_a_feed_used_moments_ago_starts_with_one_request_in_flight_and_one_more_per_answer(
    database_url: str,
) -> None:
    # 300 ms per answer: requests sent together (8 chains resuming 8 partitions) overlap on any machine.
    cfg = profile_config("fast", events=20_000, seed=3, latency_base_ms=300.0)
    with SimServer(cfg) as server:
        gate, feed = Gate(server), InFlight(server)
        kill_mid_run(server, gate, database_url, "feed", "--strategy", "feed", "--page-size", "500")
        feed.arm()
        rerun = spawn_ingest(server.url, database_url, "--strategy", "feed", "--page-size", "500")
        out, _ = rerun.communicate(timeout=180)
        result = exactness(server.url, database_url)
    assert rerun.returncode == 0, out
    assert result == {"expected": 20_000, "stored": 20_000, "identical": True}
    arrivals = feed.arrivals
    assert arrivals and arrivals[0] == (0, 0)
    # No request sent before the answers that let it in: in flight at its arrival < 1 + answers so far.
    assert [(n, in_flight, answered) for n, (in_flight, answered) in enumerate(arrivals)
            if in_flight >= 1 + answered] == []
    assert max(in_flight for in_flight, _ in arrivals) >= 2  # and it did grow: a slow start, not a single chain


def test_a_query_pool_used_moments_ago_is_not_judged_shared_by_the_rerun(database_url: str) -> None:
    # Separate pools with 30 s windows: the rerun starts inside the window the killed run spent part of.
    cfg = profile_config("fast", events=6_000, seed=41, window_s=30.0, events_limit=10, query_key_limit=5,
                         stream_access_enabled=False, latency_base_ms=5.0)
    with SimServer(cfg) as server:
        gate = Gate(server)
        kill_mid_run(server, gate, database_url, "query", "--page-size", "500")
        # A query request the gate held is served once released, after the kill: it counts in the window too.
        deadline = time.monotonic() + 10
        while (before := sim_stats(server.url)["requests"].get("events_query", {}).get("200", 0)) == 0:
            assert time.monotonic() < deadline, "the killed run sent nothing on the query pool: nothing to misjudge"
            time.sleep(0.05)
        rerun = spawn_ingest(server.url, database_url, "--page-size", "500")
        out, _ = rerun.communicate(timeout=180)
        after = sim_stats(server.url)["requests"].get("events_query", {}).get("200", 0)
        result = exactness(server.url, database_url)
    assert rerun.returncode == 0, out
    assert result == {"expected": 6_000, "stored": 6_000, "identical": True}
    assert "pool is shared" not in out and "budget query retired" not in out
    assert after > before  # the pool carried part of the rerun
