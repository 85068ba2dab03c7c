"""`status` and `verify` end to end: the simulator over HTTP, a real PostgreSQL, the CLI in this process."""

from __future__ import annotations

import re
import signal

import psycopg
import pytest

from datasync_sim import SimServer, profile_config
from ingest.commands.cli import main
from ingest.commands.verify import verify, verify_tally
from ingest.store.lock import LOCK_KEY
from tests.fix_faults import wait_for_rows_of_running
from tests.fix_ingest import ingest_args, run_ingest, spawn_ingest
from tests.fix_sim import hold_after

EVENTS = 5_000
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+"  # a timestamp as status prints it


def command(sim_url: str, database_url: str, name: str, capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    """Run one CLI command; its exit code and its stdout lines."""
    capsys.readouterr()
    code = main(ingest_args(sim_url, database_url, name))
    return code, capsys.readouterr().out.splitlines()


def assert_lines_match(lines: list[str], patterns: list[str]) -> None:
    assert len(lines) == len(patterns), lines
    for line, pattern in zip(lines, patterns, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_status_after_a_full_run_shows_events_last_run_and_a_free_lock(
    database_url: str, capsys: pytest.CaptureFixture
) -> None:
    with SimServer(profile_config("fast", events=EVENTS, seed=21)) as server:
        assert run_ingest(server.url, database_url, "--strategy", "feed", "--page-size", "1000") == 0
        code, lines = command(server.url, database_url, "status", capsys)
    assert code == 0
    assert_lines_match(lines, [
        "events stored: 5,000",
        "quarantined: 0",
        rf"last complete pass: {WHEN} \(newest event \d+ ms\)",
        "current pass: none in progress",
        rf"last run: #1 complete \(feed\), started {WHEN}, ended {WHEN}, 5,000 events stored",
        r"lock: free \(no run in progress\)",
    ])


def test_status_of_a_stopped_run_shows_its_partitions_and_the_lock_of_a_live_run(
    database_url: str, capsys: pytest.CaptureFixture
) -> None:
    cfg = profile_config("fast", events=20_000, seed=22)
    with SimServer(cfg) as server:
        release = hold_after(server, 2_000)  # the run is stopped midway however fast the machine is
        child = spawn_ingest(server.url, database_url, "--page-size", "500", "--concurrency", "2")
        wait_for_rows_of_running(database_url, 1_000, child)
        child.send_signal(signal.SIGTERM)
        release.set()
        child.communicate(timeout=15)
        code, lines = command(server.url, database_url, "status", capsys)
        with psycopg.connect(database_url, autocommit=True, application_name="another ingester") as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            _, held = command(server.url, database_url, "status", capsys)
    with psycopg.connect(database_url) as conn:
        (stored,) = conn.execute("SELECT count(*) FROM ingested_events").fetchone()
        partitions = conn.execute("SELECT count(*), count(*) FILTER (WHERE done) FROM ingest_partitions").fetchone()

    assert (code, child.returncode) == (0, 128 + signal.SIGTERM)
    assert 0 < stored < 20_000
    total, done = partitions
    assert_lines_match(lines, [
        f"events stored: {stored:,}",
        "quarantined: 0",
        "last complete pass: none yet",
        f"current pass: {done} of {total} partitions done",
        *[r"  partition \d+: \[(-inf|\d+), (\+inf|\d+)\) (done|at \d+ ms|not started), [\d,]+ events"] * total,
        rf"last run: #1 stopped \(([a-z+#\d]+)\), started {WHEN}, ended {WHEN}, {stored:,} events stored",
        r"lock: free \(no run in progress\)",
    ])
    assert re.fullmatch(rf"lock: held by another ingester \(backend pid \d+, since {WHEN}\)", held[-1]), held[-1]


def test_verify_passes_when_complete_and_fails_after_rows_are_deleted(
    database_url: str, capsys: pytest.CaptureFixture
) -> None:
    with SimServer(profile_config("fast", events=EVENTS, seed=23)) as server:
        assert run_ingest(server.url, database_url, "--page-size", "1000") == 0
        complete = command(server.url, database_url, "verify", capsys)
        with psycopg.connect(database_url) as conn:
            conn.execute("DELETE FROM ingested_events WHERE id IN (SELECT id FROM ingested_events LIMIT 7)")
        incomplete = command(server.url, database_url, "verify", capsys)

    missing = "verify: INCOMPLETE: 7 events missing: 4,993 accounted for (4,993 stored + 0 quarantined) of 5,000"
    for (_, lines), stored, verdict in ((complete, EVENTS, "verify: complete"), (incomplete, EVENTS - 7, missing)):
        per_day = [re.fullmatch(r"  (\d{4}-\d\d-\d\d): ([\d,]+)", line) for line in lines[:-2]]
        assert all(per_day), lines
        assert sum(int(m.group(2).replace(",", "")) for m in per_day) == stored
        assert lines[-2:] == [
            f"API total: {EVENTS:,}; stored: {stored:,}; quarantined (distinct, not stored): 0;"
            " time range covered: yes",
            verdict]
    assert (complete[0], incomplete[0]) == (0, 1)


def test_the_end_of_a_pass_counts_the_table_only_when_its_tally_falls_short(database_url: str) -> None:
    with SimServer(profile_config("fast", events=EVENTS, seed=23)) as server:
        assert run_ingest(server.url, database_url, "--page-size", "1000") == 0
    with psycopg.connect(database_url) as conn:
        short = verify_tally(conn, EVENTS, stored=EVENTS - 1000)  # e.g. a commit whose answer was lost, redone
        conn.execute("DELETE FROM ingested_events WHERE id IN (SELECT id FROM ingested_events LIMIT 7)")
        spared = verify_tally(conn, EVENTS, stored=EVENTS)
        counted = verify(conn, EVENTS)
    assert (short.stored, short.complete) == (EVENTS, True)  # counted: every row is there
    # Not counted: rows deleted by hand during a run are `verify`'s to find, not the run's.
    assert (spared.stored, spared.complete, counted.stored, counted.complete) == (EVENTS, True, EVENTS - 7, False)


def test_verify_fails_when_the_api_has_new_events_and_passes_after_the_rerun(
    database_url: str, capsys: pytest.CaptureFixture
) -> None:
    with SimServer(profile_config("fast", events=EVENTS, seed=24)) as server:
        assert run_ingest(server.url, database_url, "--page-size", "1000") == 0
        server.add_events(250)
        behind = command(server.url, database_url, "verify", capsys)
        assert run_ingest(server.url, database_url, "--page-size", "1000") == 0
        caught_up = command(server.url, database_url, "verify", capsys)
    assert (behind[0], behind[1][-2:]) == (1, [
        f"API total: {EVENTS + 250:,}; stored: {EVENTS:,}; quarantined (distinct, not stored): 0;"
        " time range covered: yes",
        "verify: INCOMPLETE: 250 events missing: 5,000 accounted for (5,000 stored + 0 quarantined) of 5,250"])
    assert (caught_up[0], caught_up[1][-1]) == (0, "verify: complete")
