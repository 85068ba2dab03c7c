"""The progress of a run going on in another process, read from the database (for `status`).

What the database holds: the run's row in ingest_runs (started_at, strategy) and the ingested_at of
every row its writer committed. From those: events stored by the run so far and its rate. meta.total,
and so the ETA, and the 429s live only in the running process until the run ends.
"""

from __future__ import annotations

import psycopg

from ingest.store.database import one
from ingest.store.lock import describe_holder


def running_lines(conn: psycopg.Connection) -> list[str]:
    """One line on the run holding the lock now ("run in progress: ..."), or none when no run is."""
    if describe_holder(conn) is None:
        return []  # a row still 'running' without the lock is a run that was killed, not one in progress
    row = conn.execute(
        "SELECT run_id, strategy, started_at, extract(epoch FROM clock_timestamp() - started_at)"
        " FROM ingest_runs WHERE outcome = 'running' ORDER BY run_id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return []
    run_id, strategy, started_at, elapsed_s = row
    (by_run,) = one(conn.execute("SELECT count(*) FROM ingested_events WHERE ingested_at >= %s", (started_at,)))
    rate = by_run / max(float(elapsed_s), 1e-9)
    return [f"run in progress: #{run_id} ({strategy}), {float(elapsed_s):,.0f} s so far:"
            f" {by_run:,} events stored by it, {rate:,.0f} events/s"]
