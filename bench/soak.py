"""Soak test (not in CI): the full dataset on the `chaos` profile, SIGKILLed at random moments, rerun to the end.

    .venv/bin/python bench/soak.py [--events 3000000] [--kills 8] [--seed 1] [--database-url URL]

The simulator runs as a child with heavy chaos (5xx, cut bodies, resets, slow answers, missing
pagination, damaged fields and ids, replays); the ingester is started, killed with SIGKILL after a
random (seeded) time, restarted, … `--kills` times, then run to completion. Prints the exactness
figures: expected, stored, missing, extra (from the simulator's /__sim/expected and the table),
duplicates (impossible by key: counted anyway), quarantined, and the wall time. Exits 1 unless exact.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import bench_database, expected_truth, stored_truth  # noqa: E402
from ingest.commands.demo import simulator  # noqa: E402

KILL_AFTER_S = (2.0, 20.0)  # s; uniform range of a run's life before its SIGKILL


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.monotonic()
    with simulator("chaos", args.events, seed=args.seed) as (url, key), bench_database(args.database_url) as db:
        command = [sys.executable, str(ROOT / "ingest.py"), "--api-base-url", url, "--api-key", key,
                   "--database-url", db, "--env-file", os.devnull, "--request-timeout", "2",
                   "--max-attempts", "20", "--log-level", "WARNING"]
        kills = runs = 0
        while kills < args.kills:
            runs += 1
            child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                child.wait(rng.uniform(*KILL_AFTER_S))
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
                child.wait()
                kills += 1
                continue
            break  # finished before its kill
        final = subprocess.run(command, cwd=ROOT, check=False).returncode
        want, got = expected_truth(url), stored_truth(db)
        with psycopg.connect(db) as conn:
            rows, quarantined = conn.execute(
                "SELECT (SELECT count(*) FROM ingested_events), (SELECT count(*) FROM ingest_quarantine)").fetchone()
    identical = want["sha256"] == got["sha256"]
    missing = 0 if identical else max(0, want["count"] - got["count"])
    extra = 0 if identical else max(0, got["count"] - want["count"])
    print(f"soak: {args.events:,} events, chaos profile, {kills} SIGKILLs over {runs} runs, final exit {final},"
          f" {time.monotonic() - started:.0f} s")
    print(f"expected {want['count']:,}; stored {got['count']:,}; missing {missing:,}; extra {extra:,};"
          f" duplicates {rows - got['count']:,}; quarantined {quarantined:,}; identical id set: {identical}")
    return 0 if identical and final == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
