"""Benchmark 3: end to end against the `live` profile, as a ratio to the simulator's theoretical minimum.

    .venv/bin/python bench/bench_live.py [--events 300000] [--strategy feed|documented|both]

The simulator runs as a child process with the live API's limits (events 10 per 60 s, the feed's soft
40/min with bursts of 15, ~0.7 ms per event of server latency, light chaos); the ingester runs as
`python ingest.py` into a fresh database. Prints wall time, the simulator's bound for the strategy
(/__sim/bounds), their ratio (targets: ≤ 1.1 issue 4, ≤ 1.05 issue 7), 429s and early retries.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import bench_database  # noqa: E402
from ingest.demo import simulator  # noqa: E402

BOUND_KEY = {"feed": "feed", "documented": "events"}
# The bound assumes no chaos; --no-chaos measures pacing alone, against the same bound.
NO_CHAOS = ("--p-5xx", "0", "--p-truncate", "0", "--p-reset", "0", "--p-slow", "0", "--p-no-pagination", "0",
            "--p-missing-fields", "0", "--p-ts-variant", "0", "--p-damaged-id", "0", "--p-replay", "0")


def run_once(strategy: str, events: int, database_url: str | None, chaos: bool = True) -> dict:
    knobs = () if chaos else NO_CHAOS
    with simulator("live", events, knobs=knobs) as (url, key), bench_database(database_url) as db:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(ROOT / "ingest.py"), "--api-base-url", url, "--api-key", key,
             "--database-url", db, "--strategy", strategy, "--env-file", os.devnull],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )
        took = time.monotonic() - started
        bound = requests.get(url + "/__sim/bounds", timeout=10).json()["theoretical_min_seconds"][BOUND_KEY[strategy]]
        stats = requests.get(url + "/__sim/stats", timeout=10).json()
        expected = requests.get(url + "/__sim/expected", timeout=10).json()["count"]
    complete = re.search(r"ingestion complete: ([\d,]+) events in the table", proc.stderr)
    return {"strategy": strategy, "exit": proc.returncode, "seconds": took, "bound": bound,
            "stored": int(complete.group(1).replace(",", "")) if complete else None, "expected": expected,
            "rate_limited": stats["rate_limited"], "early": stats["early_retries"],
            "tail": proc.stderr.strip().splitlines()[-3:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--strategy", choices=("feed", "documented", "both"), default="both")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--no-chaos", action="store_true", help="switch the live profile's light chaos off")
    args = parser.parse_args()
    strategies = ("feed", "documented") if args.strategy == "both" else (args.strategy,)
    for strategy in strategies:
        r = run_once(strategy, args.events, args.database_url, chaos=not args.no_chaos)
        label = f"{strategy}{' (no chaos)' if args.no_chaos else ''}"
        print(f"{label}: {r['seconds']:.1f} s for {r['stored']} of {r['expected']} events (exit {r['exit']});"
              f" theoretical minimum {r['bound']:.1f} s; ratio {r['seconds'] / r['bound']:.3f};"
              f" 429s {r['rate_limited']}, early arrivals {r['early']}")
        if r["exit"] != 0:
            print("\n".join(r["tail"]))


if __name__ == "__main__":
    main()
