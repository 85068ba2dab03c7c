"""`ingestion complete` and `verify: complete` are never printed over a wrong table.

Real HTTP against the simulator, a real PostgreSQL, the CLI in this process.
"""

from __future__ import annotations

import psycopg
import pytest

from datasync_sim import SimServer, profile_config
from ingest.commands.cli import main
from ingest.config import key_fingerprint
from tests.fix_faults import record, stored_ids
from tests.fix_ingest import API_KEY, run_ingest, sim_stats

EVENTS = 6_000
OTHER_KEY = "ds_" + "fedcba9876543210" * 2
REPO = "https://example.org/r"


def sim(seed: int = 31, events: int = EVENTS, port: int = 0, **knobs) -> SimServer:
    return SimServer(profile_config("fast", events=events, seed=seed, **knobs), port=port)


def requests_served(sim_url: str) -> int:
    return sum(sum(codes.values()) for codes in sim_stats(sim_url)["requests"].values())


def rows(database_url: str, sql: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql).fetchall()


def test_events_lost_in_the_middle_after_a_complete_pass_are_repaired_by_one_full_pass(
    database_url: str, capsys: pytest.CaptureFixture
) -> None:
    with sim() as server:
        assert run_ingest(server.url, database_url, "--page-size", "500", "--log-level", "INFO") == 0
        # A gap far below the watermark: an incremental pass cannot see it, only the count can.
        with psycopg.connect(database_url) as conn:
            conn.execute("DELETE FROM ingested_events WHERE id IN"
                         " (SELECT id FROM ingested_events ORDER BY \"timestamp\" LIMIT 100 OFFSET 3000)")
        capsys.readouterr()
        assert run_ingest(server.url, database_url, "--page-size", "500", "--log-level", "INFO") == 0
        log = capsys.readouterr().err
        result = record("gap in the middle after a complete pass", server, database_url, "exit 0, repaired")
    kinds = rows(database_url, "SELECT kind FROM ingest_passes ORDER BY pass_id")
    assert result == {"expected": EVENTS, "stored": EVENTS, "missing": 0, "extra": 0}
    assert kinds == [("full",), ("incremental",), ("full",)]
    assert "passes: incremental, full)" in log.splitlines()[-1] and "ingestion complete" in log.splitlines()[-1]


def test_a_rerun_with_nothing_new_costs_one_request_on_the_documented_endpoint(database_url: str) -> None:
    with sim() as server:
        assert run_ingest(server.url, database_url, "--strategy", "documented") == 0
        before = requests_served(server.url)
        assert run_ingest(server.url, database_url, "--strategy", "documented") == 0
        after = requests_served(server.url)
    assert after - before == 1


def test_new_events_at_the_top_are_fetched_by_an_incremental_pass(database_url: str) -> None:
    with sim() as server:
        assert run_ingest(server.url, database_url) == 0
        server.add_events(700)
        assert run_ingest(server.url, database_url) == 0
        result = record("new events at the top, rerun", server, database_url, "exit 0, incremental")
    assert result == {"expected": EVENTS + 700, "stored": EVENTS + 700, "missing": 0, "extra": 0}
    assert rows(database_url, "SELECT kind FROM ingest_passes ORDER BY pass_id") == [("full",), ("incremental",)]


def test_a_run_that_cannot_reach_the_total_says_incomplete_and_exits_1(
    database_url: str, capsys: pytest.CaptureFixture
) -> None:
    with sim() as server:
        assert run_ingest(server.url, database_url) == 0
        with psycopg.connect(database_url) as conn:
            # Something below the ingester loses five events whatever it sends: no pass can reconcile.
            lost = [row[0] for row in conn.execute("SELECT id FROM ingested_events ORDER BY id LIMIT 5")]
            conn.execute("DELETE FROM ingested_events WHERE id = ANY(%s)", (lost,))
            conn.execute(f"""CREATE FUNCTION drop_lost() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN IF NEW.id = ANY(ARRAY{[str(i) for i in lost]}::uuid[]) THEN RETURN NULL; END IF;
                RETURN NEW; END $$""")
            conn.execute("CREATE TRIGGER drop_lost BEFORE INSERT ON ingested_events"
                         " FOR EACH ROW EXECUTE FUNCTION drop_lost()")
        capsys.readouterr()
        code = run_ingest(server.url, database_url, "--log-level", "INFO")
        last = capsys.readouterr().err.splitlines()[-1]
        result = record("5 events lost below the ingester", server, database_url, f"exit {code}, INCOMPLETE")
    assert result == {"expected": EVENTS, "stored": EVENTS - 5, "missing": 5, "extra": 0}
    assert code == 1
    assert "ingestion INCOMPLETE: 5 events missing: 5,995 accounted for (5,995 stored + 0 quarantined)" in last
    assert rows(database_url, "SELECT kind FROM ingest_passes ORDER BY pass_id") == [
        ("full",), ("incremental",), ("full",)]


def test_a_store_of_another_api_is_refused_by_run_verify_and_submit(
    database_url: str, capsys: pytest.CaptureFixture
) -> None:
    with sim(seed=31) as first, sim(seed=32) as second:
        assert run_ingest(first.url, database_url) == 0
        capsys.readouterr()
        codes = [run_ingest(second.url, database_url), run_ingest(second.url, database_url, "verify"),
                 run_ingest(second.url, database_url, "submit", "--repo", "https://example.org/r", "--yes")]
        errors = capsys.readouterr().err.splitlines()
        served = sim_stats(second.url)["requests"]
        result = record("another API on the same store", first, database_url, f"exits {codes}, refused")
    assert result == {"expected": EVENTS, "stored": EVENTS, "missing": 0, "extra": 0}
    assert codes == [2, 2, 2]
    refusal = (f"error: this store holds events from {first.url}, not {second.url}: use another DATA_DIR or"
               " DATABASE_URL for it, or rerun with --reset to erase this store and start over")
    assert [line for line in errors if line.startswith("error:")] == [refusal] * 3
    assert "submissions" not in served


def test_reset_erases_a_store_of_another_api_and_ingests_the_new_one(
    database_url: str, capsys: pytest.CaptureFixture
) -> None:
    with sim(seed=31) as first, sim(seed=32, events=4_000) as second:
        assert run_ingest(first.url, database_url) == 0
        with psycopg.connect(database_url) as conn:  # the first API's limits, as a run it spent would leave them
            conn.execute("UPDATE ingest_budgets SET not_before = now() + interval '20 seconds'")
        capsys.readouterr()
        assert run_ingest(second.url, database_url, "--reset", "--log-level", "INFO") == 0
        log = capsys.readouterr().err
        result = record("another API with --reset", second, database_url, "exit 0, store replaced")
    assert result == {"expected": 4_000, "stored": 4_000, "missing": 0, "extra": 0}
    assert rows(database_url, "SELECT base_url FROM ingest_origin") == [(second.url,)]
    assert "a deadline the last run left" not in log  # the other API's limits went with its store


def test_a_new_key_for_the_same_dataset_is_accepted(database_url: str) -> None:
    with sim() as server:
        assert run_ingest(server.url, database_url) == 0
        assert run_ingest(server.url, database_url, "verify", key=OTHER_KEY) == 0
        assert run_ingest(server.url, database_url, key=OTHER_KEY) == 0
    # The store now names the new key: the next run under it is recognised at once, with no probe.
    assert rows(database_url, "SELECT key_fingerprint FROM ingest_origin") == [(key_fingerprint(OTHER_KEY),)]
    assert key_fingerprint(OTHER_KEY) != key_fingerprint(API_KEY)


def test_a_new_key_at_the_same_url_is_refused_when_the_api_no_longer_serves_the_stores_dataset(
    database_url: str, capsys: pytest.CaptureFixture
) -> None:
    with sim(seed=31) as first:
        assert run_ingest(first.url, database_url) == 0
        url, port = first.url, first.port
    before = stored_ids(database_url)
    # The same URL now serves another dataset: the store's identity event (its newest of the first pass)
    # is not served there, so a new key cannot prove it is the same API.
    with sim(seed=32, port=port) as same_url:
        capsys.readouterr()
        codes = [run_ingest(same_url.url, database_url, key=OTHER_KEY),
                 run_ingest(same_url.url, database_url, "verify", key=OTHER_KEY),
                 run_ingest(same_url.url, database_url, "submit", "--repo", REPO, "--yes", "--force", key=OTHER_KEY)]
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        served = sim_stats(same_url.url)
    assert same_url.url == url
    assert codes == [2, 2, 2]
    assert errors == [f"error: the API at {url} does not serve this store's dataset with this key: use another"
                      " DATA_DIR or DATABASE_URL for it, or rerun with --reset to erase this store and start over"] * 3
    assert rows(database_url, "SELECT key_fingerprint FROM ingest_origin") == [(key_fingerprint(API_KEY),)]
    assert stored_ids(database_url) == before
    assert "submissions" not in served["requests"]


def test_submit_force_does_not_submit_a_store_of_another_api(
    database_url: str, capsys: pytest.CaptureFixture
) -> None:
    with sim(seed=31) as first, sim(seed=32) as second:
        assert run_ingest(first.url, database_url) == 0
        capsys.readouterr()
        code = run_ingest(second.url, database_url, "submit", "--repo", REPO, "--yes", "--force")
        err = capsys.readouterr().err.splitlines()
        served = sim_stats(second.url)["requests"]
    assert code == 2
    assert err[-1].startswith(f"error: this store holds events from {first.url}, not {second.url}: ")
    assert "submissions" not in served


def test_verify_counts_events_beyond_the_api_total_as_a_warning_not_a_failure(
    database_url: str, capsys: pytest.CaptureFixture
) -> None:
    with sim() as server:
        assert run_ingest(server.url, database_url) == 0
        with psycopg.connect(database_url) as conn:  # an id the API no longer counts, as a public run saw
            conn.execute("INSERT INTO ingested_events (id, event_type, \"timestamp\", data)"
                         " SELECT gen_random_uuid(), event_type, \"timestamp\", data FROM ingested_events"
                         " LIMIT 1")
        capsys.readouterr()
        code = run_ingest(server.url, database_url, "verify")
        out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[-3:] == [f"API total: {EVENTS:,}; stored: {EVENTS + 1:,}; quarantined (distinct, not stored): 0;"
                        " time range covered: yes", "warning: 1 events more than the API's meta.total",
                        "verify: complete"]


def test_verify_without_a_complete_full_pass_fails_and_a_run_plans_one(
    database_url: str, capsys: pytest.CaptureFixture
) -> None:
    with sim() as server:
        assert run_ingest(server.url, database_url) == 0
        with psycopg.connect(database_url) as conn:  # every event stored, no pass recorded (an older version's)
            conn.execute("DELETE FROM ingest_partitions")
            conn.execute("DELETE FROM ingest_passes")
        capsys.readouterr()
        before = run_ingest(server.url, database_url, "verify")
        out = capsys.readouterr().out.splitlines()
        assert run_ingest(server.url, database_url) == 0
        after = run_ingest(server.url, database_url, "verify")
    assert before == 1
    assert out[-1] == "verify: INCOMPLETE: no complete full pass is recorded: run the ingestion"
    assert rows(database_url, "SELECT kind FROM ingest_passes WHERE completed_at IS NOT NULL ORDER BY pass_id")[-1] == (
        "full",)
    assert after == 0


def test_demo_then_live_on_the_same_database_is_refused(database_url: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["--demo", "--demo-events", "2000", "--database-url", database_url, "--env-file", "/dev/null",
                 "--log-level", "WARNING"]) == 0
    with sim(seed=1, events=2_000) as same_dataset, sim() as live:
        capsys.readouterr()
        assert run_ingest(live.url, database_url) == 2
        err = capsys.readouterr().err
        result = record("demo, then live on the same database", same_dataset, database_url, "exit 2, refused")
    assert result == {"expected": 2_000, "stored": 2_000, "missing": 0, "extra": 0}
    assert "this store holds events from demo simulator (2,000 events, seed 1)" in err


def test_a_quarantined_copy_of_a_stored_event_does_not_stand_in_for_a_missing_one(
    database_url: str, capsys: pytest.CaptureFixture
) -> None:
    with sim() as server:
        assert run_ingest(server.url, database_url) == 0
        with psycopg.connect(database_url) as conn:
            # Two events: one stored with a damaged copy in quarantine, one missing with its copy there.
            kept, lost = conn.execute("SELECT id FROM ingested_events ORDER BY id LIMIT 2").fetchall()
            conn.execute("DELETE FROM ingested_events WHERE id = %s", lost)
            for n, (event_id,) in enumerate((kept, lost)):
                conn.execute("INSERT INTO ingest_quarantine (payload, reason, source, event_id)"
                             " VALUES (%s, 'test', 'test', %s)", (f"copy {n}".encode(), event_id))
        capsys.readouterr()
        code = run_ingest(server.url, database_url, "verify")
        out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[-2:] == [f"API total: {EVENTS:,}; stored: {EVENTS - 1:,}; quarantined (distinct, not stored): 1;"
                        " time range covered: yes", "verify: complete"]


def test_verify_fails_when_the_partitions_leave_a_gap(database_url: str, capsys: pytest.CaptureFixture) -> None:
    with sim() as server:
        # 6 pages of 1,000 for 4 chains: partitions of 2 pages, one of them bounded on both sides (of 5,000 the
        # 6,000 events would be cut in two open-ended ones: whole pages each)
        assert run_ingest(server.url, database_url, "--strategy", "feed", "--concurrency", "4",
                          "--page-size", "1000") == 0
        with psycopg.connect(database_url) as conn:
            (lo, hi) = conn.execute("DELETE FROM ingest_partitions WHERE lo_ms IS NOT NULL AND hi_ms IS NOT NULL"
                                    " AND partition_id = (SELECT min(partition_id) FROM ingest_partitions"
                                    " WHERE lo_ms IS NOT NULL AND hi_ms IS NOT NULL) RETURNING lo_ms, hi_ms").fetchone()
        capsys.readouterr()
        code = run_ingest(server.url, database_url, "verify")
        out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[-1] == f"verify: INCOMPLETE: the last full pass left [{lo}, {hi}) ms uncovered: run the ingestion"


# Late events at the top sit within the incremental pass's lookback below the watermark: it alone fetches
# them. Those in the middle are far below: only a reconciling full pass can (500-event pages, so that the
# incremental pass's first page does not reach down to them by chance).
@pytest.mark.parametrize(("where", "passes"), [("top", ["full", "incremental"]),
                                               ("middle", ["full", "incremental", "full"])])
@pytest.mark.parametrize("strategy", ["feed", "documented"])
def test_late_events_released_after_a_complete_pass_are_all_fetched_by_the_rerun(
    database_url: str, where: str, passes: list[str], strategy: str
) -> None:
    with sim(late_events=200, late_where=where, new_events=50) as server:
        assert run_ingest(server.url, database_url, "--strategy", strategy, "--page-size", "500") == 0
        assert server.release_late()["released"] == 250
        assert run_ingest(server.url, database_url, "--strategy", strategy, "--page-size", "500") == 0
        result = record(f"late events ({where}), {strategy}", server, database_url, "exit 0")
    assert result == {"expected": EVENTS + 250, "stored": EVENTS + 250, "missing": 0, "extra": 0}
    assert [kind for (kind,) in rows(database_url, "SELECT kind FROM ingest_passes ORDER BY pass_id")] == passes


@pytest.mark.parametrize("strategy", ["feed", "documented"])
def test_odd_timestamps_lose_nothing(database_url: str, strategy: str) -> None:
    with sim(events=10_000, odd_timestamps=0.2) as server:
        # Small pages and 8 fetchers: many partition bounds, each a place a low-parsing timestamp could cut.
        assert run_ingest(server.url, database_url, "--strategy", strategy, "--page-size", "1000") == 0
        result = record(f"odd timestamps (20%), {strategy}", server, database_url, "exit 0")
    assert result == {"expected": 10_000, "stored": 10_000, "missing": 0, "extra": 0}


@pytest.mark.parametrize("strategy", ["feed", "documented"])
def test_poison_pages_are_parsed_and_their_events_kept(database_url: str, strategy: str) -> None:
    with sim(events=10_000, poison_rate=0.3) as server:
        assert run_ingest(server.url, database_url, "--strategy", strategy, "--page-size", "500") == 0
        poisoned = sim_stats(server.url)["chaos"].get("poison", 0)
        result = record(f"poison pages (30%), {strategy}", server, database_url, f"exit 0, {poisoned} poisoned")
    assert poisoned >= 3
    assert result == {"expected": 10_000, "stored": 10_000, "missing": 0, "extra": 0}
