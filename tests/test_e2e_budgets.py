"""Every budget combination over real HTTP: feed + both pools, a shared pool, no feed, two keys, failures.

The simulator runs the live profile's shape at a quicker pace (2 s windows, a feed of 600 requests/min
with bursts of 3, 5 ms per page), so each run spends every budget many times in a few seconds.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import psycopg
import pytest

from datasync_sim import SimServer, profile_config
from ingest.commands.cli import main
from tests.fix_faults import record, wait_for_rows
from tests.fix_ingest import API_KEY, ROOT, ingest_args, run_ingest, sim_stats, spawn_ingest
from tests.fix_sim import hold_after

pytestmark = pytest.mark.slow

EVENTS = 40_000
# Only requests already in flight when a feed's first 429 came can arrive inside its lockout: the other
# chains of the feed (CONCURRENCY 8 until a 429 shows its rate), none sent after it.
IN_FLIGHT_AT_FIRST_429 = 8 - 1
SECOND_KEY = "ds_" + "fedcba9876543210" * 2
QUICK_LIVE = dict(window_s=2.0, events_limit=10, query_key_limit=5, feed_throttle="soft", feed_rpm=600.0,
                  feed_burst=3, latency_base_ms=5.0, penalize_early_retries=True)


def sim(**knobs) -> SimServer:
    return SimServer(profile_config("fast", events=EVENTS, seed=41, **{**QUICK_LIVE, **knobs}))


def served(stats: dict, endpoint: str, status: str = "200") -> int:
    return stats["requests"].get(endpoint, {}).get(status, 0)


def test_the_feed_and_both_pools_are_spent_together(database_url: str) -> None:
    with sim() as server:
        assert run_ingest(server.url, database_url, "--page-size", "500") == 0
        stats = sim_stats(server.url)
        result = record("feed + header pool + query pool", server, database_url, "exit 0")
    assert result == {"expected": EVENTS, "stored": EVENTS, "missing": 0, "extra": 0}
    assert (served(stats, "feed") > 0, served(stats, "events") > 0, served(stats, "events_query") > 0) == (
        True, True, True)
    assert stats["early_retries"] <= IN_FLIGHT_AT_FIRST_429


def test_a_server_rounding_reset_and_retry_after_down_is_never_entered_early(database_url: str) -> None:
    """The contract gives Reset and Retry-After in whole seconds without saying which way they round: waited
    exactly, a rounded-down Retry-After ends up to a second inside the lockout (an early retry, penalised)."""
    # A refill every 0.5 s: a rounded-down Retry-After says 0
    config = profile_config("fast", events=10_000, seed=41, **{**QUICK_LIVE, "feed_rpm": 120.0,
                                                              "round_reset_down": True})
    with SimServer(config) as server:
        assert run_ingest(server.url, database_url, "--page-size", "500", "--strategy", "feed") == 0
        stats = sim_stats(server.url)
        result = record("Reset and Retry-After rounded down", server, database_url, "exit 0")
    assert result == {"expected": 10_000, "stored": 10_000, "missing": 0, "extra": 0}
    assert served(stats, "feed", "429") > 0  # the feed's pauses were put to the test
    # Only the opening's requests in flight when the first 429 came may land inside a lockout: none sent after
    arrivals = [at for _, at, _ in stats["early_list"]]
    assert len(arrivals) <= IN_FLIGHT_AT_FIRST_429 and max(arrivals, default=0) - min(arrivals, default=0) < 1.0, \
        stats["early_list"]


def test_a_shared_query_pool_is_retired_after_the_answer_that_proves_it(database_url: str) -> None:
    with sim(query_key_shares_bucket=True) as server:
        assert run_ingest(server.url, database_url, "--page-size", "500") == 0
        stats = sim_stats(server.url)
        result = record("query pool shared with the header pool", server, database_url, "exit 0")
    assert result == {"expected": EVENTS, "stored": EVENTS, "missing": 0, "extra": 0}
    query_sent = served(stats, "events_query") + served(stats, "events_query", "429")
    assert query_sent <= 3
    # Each query request on probation can cost the shared window at most one refusal, in either pool (when
    # it and the header's last token race to the server); none lands inside a lockout.
    assert served(stats, "events", "429") + served(stats, "events_query", "429") <= query_sent
    assert stats["early_by_endpoint"].get("events", 0) == 0


def test_without_the_feed_the_two_documented_pools_carry_the_run(database_url: str) -> None:
    with sim(stream_access_enabled=False) as server:
        assert run_ingest(server.url, database_url, "--page-size", "1000") == 0
        stats = sim_stats(server.url)
        result = record("feed refused: header + query pools", server, database_url, "exit 0")
    assert result == {"expected": EVENTS, "stored": EVENTS, "missing": 0, "extra": 0}
    assert (served(stats, "feed"), served(stats, "events") > 0, served(stats, "events_query") > 0) == (0, True, True)
    assert stats["early_retries"] == 0


def test_two_keys_add_their_budgets_to_the_same_plan(database_url: str, capsys: pytest.CaptureFixture) -> None:
    with sim(api_key=f"{API_KEY},{SECOND_KEY}", keys=2) as server:
        capsys.readouterr()
        assert main(ingest_args(server.url, database_url, "--page-size", "500", log_level="INFO",
                                key=f"{API_KEY},{SECOND_KEY}")) == 0
        last = capsys.readouterr().err.splitlines()[-1]
        stats = sim_stats(server.url)
        result = record("two keys, six budgets", server, database_url, "exit 0")
    assert result == {"expected": EVENTS, "stored": EVENTS, "missing": 0, "extra": 0}
    assert stats["tokens_issued"] == 2  # a feed token per key
    # every budget of the second key answered pages: `requests by budget: feed N, …, feed#2 N, header#2 N, …`
    answered = dict(re.findall(r"(\w+#2) (\d+)", last.split("requests by budget: ", 1)[1]))
    assert sorted(answered) == ["feed#2", "header#2", "query#2"], last
    assert min(int(n) for n in answered.values()) > 0, last
    assert stats["early_retries"] <= 2 * IN_FLIGHT_AT_FIRST_429


def test_a_key_revoked_mid_run_retires_its_budgets_and_the_other_key_finishes(database_url: str) -> None:
    keys = f"{API_KEY},{SECOND_KEY}"
    with sim(api_key=keys, keys=2, latency_ms_per_event=0.05) as server:
        args = ingest_args(server.url, database_url, "--page-size", "500", log_level="INFO", key=keys)
        release = hold_after(server, 6_000)  # the second key is revoked before the run can end
        child = subprocess.Popen([sys.executable, str(ROOT / "ingest.py"), *args], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for_rows(database_url, 4_000)
        server.revoke_key(SECOND_KEY)  # refused from now on (401)
        release.set()
        out, _ = child.communicate(timeout=120)
        result = record("second key revoked mid-run", server, database_url, f"exit {child.returncode}")
    assert child.returncode == 0, out
    assert "budget header#2 retired" in out or "budget feed#2 retired" in out or "budget query#2 retired" in out
    assert result == {"expected": EVENTS, "stored": EVENTS, "missing": 0, "extra": 0}


def spent_windows(database_url: str) -> set[str]:
    """The budgets whose saved not-before lies ahead: windows (or lockouts) a run left spent."""
    with psycopg.connect(database_url) as conn:
        try:
            rows = conn.execute("SELECT name FROM ingest_budgets WHERE not_before > now()").fetchall()
        except psycopg.errors.UndefinedTable:
            return set()
    return {name.split("@")[0] for (name,) in rows}  # the budgets' kinds (rows are per key)


def test_a_rerun_after_a_kill_waits_out_the_windows_the_killed_run_spent(database_url: str) -> None:
    # 9 pages; the first window of the two pools holds 3 + 2: the killed run cannot end before the second,
    # and the rerun's 4 pages need both pools' next windows
    config = profile_config("fast", events=9_000, seed=41, **{**QUICK_LIVE, "window_s": 8.0, "events_limit": 3,
                                                             "query_key_limit": 2, "stream_access_enabled": False})
    with SimServer(config) as server:
        child = spawn_ingest(server.url, database_url, "--page-size", "1000")
        deadline = time.monotonic() + 30
        while spent_windows(database_url) != {"header", "query"} and time.monotonic() < deadline:
            time.sleep(0.05)
        child.kill()
        out, _ = child.communicate(timeout=30)
        assert spent_windows(database_url) == {"header", "query"}, out
        query_before = served(sim_stats(server.url), "events_query")
        rerun = spawn_ingest(server.url, database_url, "--page-size", "1000")
        log, _ = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, log
        stats = sim_stats(server.url)
        result = record("rerun into the windows a killed run spent", server, database_url, "exit 0")
    assert result == {"expected": 9_000, "stored": 9_000, "missing": 0, "extra": 0}
    # the rerun's first request (the identity probe on the header pool) included: none went into a spent window
    assert (served(stats, "events", "429"), served(stats, "events_query", "429"), stats["early_retries"]) == (0, 0, 0)
    # both pools carried the rerun once their windows reopened: the query pool was not retired (that its
    # probe ignores the killed run's requests in a window both runs share: test_e2e_restart)
    assert served(stats, "events_query") > query_before and "budget query retired" not in log, log


def test_a_run_under_another_key_takes_up_none_of_the_last_keys_deadlines(database_url: str) -> None:
    with sim(stream_access_enabled=False) as server:
        assert run_ingest(server.url, database_url) == 0
        with psycopg.connect(database_url) as conn:  # as a run that spent its key's windows would leave them
            spent = conn.execute("UPDATE ingest_budgets SET not_before = now() + interval '30 seconds'").rowcount
        assert spent == 2  # the header and query pools of the first key
        rerun = spawn_ingest(server.url, database_url, "--api-key", SECOND_KEY)
        out, _ = rerun.communicate(timeout=120)
        result = record("rerun under another key", server, database_url, f"exit {rerun.returncode}")
    assert rerun.returncode == 0, out
    assert result == {"expected": EVENTS, "stored": EVENTS, "missing": 0, "extra": 0}
    # the new key's buckets are fresh: waiting out the old key's windows would only lose time
    assert "a deadline the last run left" not in out


def test_a_feed_drawing_on_the_header_pools_bucket_is_found_from_their_429s_and_enters_no_lockout(
        database_url: str, capfd: pytest.CaptureFixture) -> None:
    """One of the three reports of the feed's throttling: it spends `/api/v1/events`' bucket. Unseen, each
    budget's 429 opened a lockout the other sent into, and with early retries penalised each extended it
    for the other (300k: 3.3 x the minimum, 29 early arrivals; this short run does not cascade, so its
    measure is that the 429s were read, and that the coupled budgets send into no lockout)."""
    config = profile_config("fast", events=10_000, seed=41, **{**QUICK_LIVE, "window_s": 12.0,
                                                              "feed_throttle": "shared"})
    with SimServer(config) as server:
        assert run_ingest(server.url, database_url, "--page-size", "500") == 0
        stats = sim_stats(server.url)
        result = record("feed on the header pool's bucket", server, database_url, "exit 0")
    assert result == {"expected": 10_000, "stored": 10_000, "missing": 0, "extra": 0}
    # Only requests already in flight when the first 429 came may land inside a lockout: none sent after
    arrivals = [at for _, at, _ in stats["early_list"]]
    assert len(arrivals) <= IN_FLIGHT_AT_FIRST_429 and max(arrivals, default=0) - min(arrivals, default=0) < 1.0, \
        stats["early_list"]
    assert "the feed draws on the header pool's bucket" in capfd.readouterr().err
