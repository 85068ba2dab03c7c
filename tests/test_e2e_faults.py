"""Kills, signals, locks, rate-limit storms and expired cursors: every run still ends exact."""

from __future__ import annotations

import dataclasses
import signal
import time

import psycopg
import pytest
import requests

from datasync_sim import SimServer, profile_config
from ingest.api.cursors import cursor_expiry_ms
from ingest.store.lock import LOCK_KEY
from tests.fix_faults import record, slow_sim, stored_rows, wait_for_rows
from tests.fix_ingest import API_KEY, exactness, run_ingest, sim_stats, spawn_ingest
from tests.fix_sim import Gate, hold_after

pytestmark = pytest.mark.slow


def wait_until_the_stored_cursors_expire(sim_url: str, database_url: str, timeout_s: float = 60.0) -> int:
    """Ask the API with the checkpoint's cursor that expires last until it answers CURSOR_EXPIRED.

    The server's verdict, not a sleep measured against the TTL: from then on every stored cursor is
    expired on the server's clock. Returns how many unfinished partitions hold a cursor.
    """
    with psycopg.connect(database_url) as conn:
        stored = [c for (c,) in conn.execute(
            "SELECT cursor FROM ingest_partitions WHERE NOT done AND cursor IS NOT NULL")]
    assert stored, "the run was stopped before any partition checkpointed a cursor"
    last = max(stored, key=lambda cursor: cursor_expiry_ms(cursor) or 0)
    deadline = time.monotonic() + timeout_s  # a guard against a hang, not a race: the wait ends on the answer
    with requests.Session() as session:
        session.headers["X-API-Key"] = API_KEY
        while True:
            r = session.get(sim_url + "/api/v1/events", params={"cursor": last, "limit": 1}, timeout=10)
            if r.status_code == 400 and r.json()["code"] == "CURSOR_EXPIRED":
                return len(stored)
            assert r.status_code == 200, r.text
            assert time.monotonic() < deadline, f"the stored cursors did not expire within {timeout_s} s"
            time.sleep(0.05)


def wait_for_a_checkpoint_in_pg_sleep(conn: psycopg.Connection, timeout_s: float = 60.0) -> None:
    """Until a session of this database sleeps in the slow checkpoint trigger (polled; no fixed sleep)."""
    deadline = time.monotonic() + timeout_s  # a guard against a hang: the wait ends on what the server shows
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                       " AND wait_event = 'PgSleep'").fetchone() == (0,):
        assert time.monotonic() < deadline, f"no checkpoint reached the slow trigger within {timeout_s} s"
        time.sleep(0.02)


KILLS = 3
EVENTS_PER_KILLED_RUN = 10_000  # served to each killed run before the gate holds it


@pytest.mark.parametrize("strategy", ["feed", "documented"])
def test_resumes_after_repeated_sigkill_without_loss_or_duplicates(database_url: str, strategy: str) -> None:
    # Each run is held at the gate after 10,000 more events, so it is mid-run (it cannot end) when it is
    # killed, whatever the machine's speed; it is killed once its pages are stored (partitions split for
    # idle fetchers all along on the unthrottled simulator).
    with slow_sim(events=60_000) as server:
        gate = Gate(server)
        stored_at_kill = []
        for _ in range(KILLS):
            before = stored_rows(database_url)
            gate.hold_after(EVENTS_PER_KILLED_RUN)
            child = spawn_ingest(server.url, database_url, "--strategy", strategy, "--page-size", "1000")
            gate.wait_held()
            stored_at_kill.append(wait_for_rows(database_url, before + EVENTS_PER_KILLED_RUN // 2))
            child.kill()
            child.wait(10)
            gate.release()
        served_before_final = sim_stats(server.url)["events_served"]
        final = spawn_ingest(server.url, database_url, "--strategy", strategy, "--page-size", "1000")
        out, _ = final.communicate(timeout=180)
        served_final = sim_stats(server.url)["events_served"] - served_before_final
        result = record(f"{KILLS} SIGKILLs mid-run, splits on, {strategy}", server, database_url,
                        f"exit {final.returncode}")
    assert final.returncode == 0, out
    assert "ingestion complete" in out
    assert result == {"expected": 60_000, "stored": 60_000, "missing": 0, "extra": 0}
    assert stored_at_kill[-1] < 60_000  # the last kill left the most work, and still some
    # Resumed from the checkpoints, not started over: the last run fetched what was missing plus at most a
    # page of overlap per partition (a restart from scratch would fetch all 60,000 again).
    assert served_final < 60_000 - stored_at_kill[-1] + 20 * 1_000, (served_final, stored_at_kill)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_within_10_s_with_a_checkpoint_and_the_rerun_completes(database_url: str, signum) -> None:
    with slow_sim() as server:
        release = hold_after(server, 8_000)  # the run is surely mid-way when the signal comes
        child = spawn_ingest(server.url, database_url, "--page-size", "1000")
        wait_for_rows(database_url, 5_000)
        sent = time.monotonic()
        child.send_signal(signum)
        release.set()
        out, _ = child.communicate(timeout=15)
        took = time.monotonic() - sent
        with psycopg.connect(database_url) as conn:
            (stored,) = conn.execute("SELECT count(*) FROM ingested_events").fetchone()
            (checkpointed,) = conn.execute(
                "SELECT coalesce(sum(events), 0) FROM ingest_partitions WHERE pos_ms IS NOT NULL").fetchone()
            outcome = conn.execute("SELECT outcome FROM ingest_runs ORDER BY run_id DESC LIMIT 1").fetchone()
        assert (child.returncode, outcome) == (128 + signum, ("stopped",)), out
        assert took < 10
        # No row without its checkpoint; rows received also count the overlap at bounds the upsert absorbed.
        assert 0 < stored <= checkpointed and stored < 60_000
        assert run_ingest(server.url, database_url, "--page-size", "1000") == 0
        result = exactness(server.url, database_url)
    assert result == {"expected": 60_000, "stored": 60_000, "identical": True}


def test_second_run_exits_3_while_the_first_holds_the_lock(database_url: str) -> None:
    with slow_sim() as server:
        release = hold_after(server, 3_000)  # the first run still holds the lock when the second starts
        first = spawn_ingest(server.url, database_url, "--page-size", "1000")
        wait_for_rows(database_url, 1_000)
        second = spawn_ingest(server.url, database_url, "--page-size", "1000")
        out2, _ = second.communicate(timeout=30)
        release.set()
        out1, _ = first.communicate(timeout=120)
        result = exactness(server.url, database_url)
    assert second.returncode == 3, out2
    assert "another run holds the ingestion lock" in out2 and "pid=" in out2
    assert first.returncode == 0, out1
    assert result["identical"]


def test_a_run_that_died_holding_the_lock_does_not_block_the_next(database_url: str) -> None:
    with slow_sim(events=20_000) as server:
        release = hold_after(server, 3_000)  # the run holds the lock, mid-way, when it is killed
        child = spawn_ingest(server.url, database_url, "--page-size", "1000")
        wait_for_rows(database_url, 1_000)
        child.kill()
        child.wait(10)
        release.set()
        with psycopg.connect(database_url) as conn:
            outcome = conn.execute("SELECT outcome FROM ingest_runs ORDER BY run_id DESC LIMIT 1").fetchone()
        assert outcome == ("running",)  # it died: nothing recorded its end, nothing released the lock but its death
        assert run_ingest(server.url, database_url) == 0
        assert exactness(server.url, database_url)["identical"]


def test_lock_held_elsewhere_gives_exit_3_and_touches_nothing(database_url: str) -> None:
    with slow_sim(events=5_000) as server, psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        assert run_ingest(server.url, database_url) == 3
        assert sim_stats(server.url)["requests"] == {}


@pytest.mark.parametrize("strategy", ["documented", "feed"])
def test_tight_limits_no_request_before_retry_after(database_url: str, strategy: str) -> None:
    # The feed refills 2 a second: four chains starting together meet a 429 even on a loaded machine (at
    # its own 10 a second, chains that a busy machine started apart met none).
    cfg = profile_config("tight", events=8_000, seed=9, feed_rpm=120.0)
    with SimServer(cfg) as server:
        code = run_ingest(server.url, database_url, "--strategy", strategy, "--page-size", "1000",
                          "--concurrency", "4")
        stats = sim_stats(server.url)
        result = exactness(server.url, database_url)
    assert code == 0
    assert result == {"expected": 8_000, "stored": 8_000, "identical": True}
    if strategy == "documented":
        # Paced from the headers: the documented endpoint never answers 429 to us, nothing arrives early.
        assert (stats["rate_limited"], stats["early_retries"]) == (0, 0)
    else:
        # The feed sends no limit headers: its first 429s are how we learn its rate. Requests already in
        # flight when a 429 comes back arrive "early"; none is sent after it before Retry-After, so at most
        # the other fetchers' in-flight requests (concurrency 4 - 1) arrive early.
        assert stats["rate_limited"] >= 1
        assert stats["early_retries"] <= 3


def test_expired_cursors_are_rebuilt_from_the_checkpoint_not_restarted(database_url: str) -> None:
    cfg = dataclasses.replace(profile_config("fast", events=40_000, seed=4, latency_ms_per_event=0.1),
                              cursor_ttl_s=1.0)
    with SimServer(cfg) as server:
        release = hold_after(server, 14_000)  # partitions are surely left unfinished
        child = spawn_ingest(server.url, database_url, "--strategy", "documented", "--page-size", "1000")
        wait_for_rows(database_url, 10_000)
        child.send_signal(signal.SIGTERM)
        release.set()
        child.communicate(timeout=15)
        with psycopg.connect(database_url) as conn:
            (stored_before,) = conn.execute("SELECT count(*) FROM ingested_events").fetchone()
            (unfinished,) = conn.execute("SELECT count(*) FROM ingest_partitions WHERE NOT done").fetchone()
        wait_until_the_stored_cursors_expire(server.url, database_url)
        # The rerun's own cursors live long: every expiry it meets is one of a checkpoint, however slow the machine.
        server.app.cfg = dataclasses.replace(server.app.cfg, cursor_ttl_s=3600.0)
        before = sim_stats(server.url)
        served_before, expired_before = before["events_served"], before["requests"]["events"].get("400", 0)
        assert run_ingest(server.url, database_url, "--strategy", "documented", "--page-size", "1000") == 0
        stats = sim_stats(server.url)
        result = exactness(server.url, database_url)
    assert result == {"expected": 40_000, "stored": 40_000, "identical": True}
    assert stats["requests"]["events"].get("400", 0) > expired_before  # the rerun met CURSOR_EXPIRED
    # The rerun fetched what was missing plus at most about a page of overlap per partition still open
    # (its first page repeats up to a page, its last one is cut at the bound), never the dataset again.
    assert stats["events_served"] - served_before <= 40_000 - stored_before + 2 * 1_000 * unfinished


def test_bad_key_is_fatal_at_once_with_exit_1_and_no_damage(database_url: str) -> None:
    with SimServer(profile_config("fast", events=1_000, api_key="ds_" + "f" * 32)) as server:
        child = spawn_ingest(server.url, database_url)
        out, _ = child.communicate(timeout=30)
        statuses = sim_stats(server.url)["requests"]
    assert child.returncode == 1, out
    assert "API_KEY" in out and "0123456789abcdef" not in out
    assert sum(n for by_status in statuses.values() for n in by_status.values()) <= 2  # no retries of a 401
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM ingested_events").fetchone() == (0,)


@pytest.mark.parametrize("strategy", ["feed", "documented"])
def test_refused_rebuilt_cursors_restart_the_partition_from_its_upper_bound(database_url: str, strategy: str) -> None:
    cfg = dataclasses.replace(profile_config("fast", events=40_000, seed=6, latency_ms_per_event=0.1),
                              cursor_ttl_s=1.0, reject_forged_cursors=True)
    with SimServer(cfg) as server:
        release = hold_after(server, 12_000)  # partitions are surely left unfinished
        child = spawn_ingest(server.url, database_url, "--strategy", strategy, "--page-size", "1000")
        wait_for_rows(database_url, 8_000)
        child.send_signal(signal.SIGTERM)
        release.set()
        first, _ = child.communicate(timeout=15)
        assert child.returncode == 143, first
        wait_until_the_stored_cursors_expire(server.url, database_url)  # rebuilt ones are refused
        server.app.cfg = dataclasses.replace(server.app.cfg, cursor_ttl_s=3600.0)  # none expires in the rerun
        child = spawn_ingest(server.url, database_url, "--strategy", strategy, "--page-size", "1000")
        out, _ = child.communicate(timeout=120)
        result = exactness(server.url, database_url)
    assert child.returncode == 0, out
    assert "restarting from its upper bound" in out
    assert result == {"expected": 40_000, "stored": 40_000, "identical": True}


def test_stream_tokens_expiring_mid_run_are_renewed(database_url: str) -> None:
    # 0.5 ms per event and 4 fetchers: the run lasts ~5 s, several lifetimes of a 1 s token.
    cfg = dataclasses.replace(profile_config("fast", events=40_000, seed=8, latency_ms_per_event=0.5),
                              token_ttl_s=1.0)
    with SimServer(cfg) as server:
        code = run_ingest(server.url, database_url, "--strategy", "feed", "--page-size", "1000",
                          "--concurrency", "4")
        stats = sim_stats(server.url)
        result = exactness(server.url, database_url)
    assert code == 0
    assert stats["tokens_issued"] >= 3  # the run outlived several token lifetimes
    assert result == {"expected": 40_000, "stored": 40_000, "identical": True}


def test_stream_access_refused_mid_run_falls_back_to_the_documented_endpoint(database_url: str) -> None:
    # 0.5 ms per event and 4 fetchers: the run lasts ~5 s and needs a new token every ~0.75 s.
    cfg = dataclasses.replace(profile_config("fast", events=40_000, seed=8, latency_ms_per_event=0.5),
                              token_ttl_s=1.0)
    with SimServer(cfg) as server:
        release = hold_after(server, 8_000)  # the feed is refused before the run can end
        child = spawn_ingest(server.url, database_url, "--page-size", "1000", "--concurrency", "4")
        wait_for_rows(database_url, 5_000)
        server.app.cfg = dataclasses.replace(server.app.cfg, stream_access_enabled=False)
        release.set()
        out, _ = child.communicate(timeout=120)
        stats = sim_stats(server.url)
        result = exactness(server.url, database_url)
    assert child.returncode == 0, out
    assert "budget feed retired" in out
    assert result == {"expected": 40_000, "stored": 40_000, "identical": True}
    # The others went on in the same run (the documented pools served pages), and took the feed's partitions
    # up from their positions: fewer events were served twice than the feed had served (partitions restarted
    # from their lower bound would serve all of those again, and the partial pages at the bounds on top).
    assert stats["requests"]["events"]["200"] + stats["requests"].get("events_query", {}).get("200", 0) >= 1
    fed = stats["requests"]["feed"]["200"] * 1_000
    assert stats["events_served"] - 40_000 < fed, (stats["events_served"], fed)


def test_sigterm_ends_the_run_within_10_s_with_slow_answers_and_a_slow_writer(database_url: str) -> None:
    # Once the run is under way, a third of the answers stall for 20 s (past REQUEST_TIMEOUT) and every
    # checkpoint takes 0.5 s in the database, so fetchers are blocked both on the network and on a full
    # page queue when stopped. (Stalls from the start would hold the planning probe for a whole request
    # timeout first: ~15 s of nothing this test is about.)
    cfg = dataclasses.replace(profile_config("fast", events=100_000, seed=12, latency_ms_per_event=0.05),
                              slow_seconds=20.0)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION slow_checkpoint() RETURNS trigger LANGUAGE plpgsql AS"
                     " $$ BEGIN PERFORM pg_sleep(0.5); RETURN NEW; END $$")
    with SimServer(cfg) as server:
        child = spawn_ingest(server.url, database_url, "--page-size", "1000", "--concurrency", "8")
        wait_for_rows(database_url, 2_000)
        server.app.chaos.cfg = dataclasses.replace(server.app.chaos.cfg, p_slow=0.3)
        deadline = time.monotonic() + 30  # a stall lasts 20 s: the first is still out when the signal comes
        while sim_stats(server.url)["chaos"].get("slow", 0) == 0:
            assert time.monotonic() < deadline, "no answer stalled"
            time.sleep(0.05)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("CREATE TRIGGER slow BEFORE UPDATE ON ingest_partitions"
                         " FOR EACH ROW EXECUTE FUNCTION slow_checkpoint()")
            wait_for_a_checkpoint_in_pg_sleep(conn)  # the writer is slow now, not merely about to be
        sent = time.monotonic()
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=30)
        took = time.monotonic() - sent
        stalled = sim_stats(server.url)["chaos"].get("slow", 0)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DROP TRIGGER slow ON ingest_partitions")
        server.app.chaos.cfg = dataclasses.replace(server.app.chaos.cfg, p_slow=0.0)
        assert run_ingest(server.url, database_url, "--page-size", "1000") == 0
        result = exactness(server.url, database_url)
    assert child.returncode == 143, out
    assert took < 10, f"stopped after {took:.1f} s"
    assert "Traceback" not in out
    assert stalled >= 1  # some answers were stalling when the signal came
    assert result == {"expected": 100_000, "stored": 100_000, "identical": True}
