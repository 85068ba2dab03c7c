"""Benchmark 2: end to end against the `fast` profile, next to the raw-COPY bound of benchmark 1.

    .venv/bin/python bench/bench_fast.py [--events 3000000] [--repeat 3] [--bound-rows 1000000]
                                         [--database-url URL] [--strategy auto]

ours  = `python ingest.py` as a child process against the simulator (`python -m datasync_sim
        --profile fast`, another child), into a fresh database. Wall time from spawn to exit; the
        ingester's own CPU seconds and peak RSS from os.wait4 on its pid (the simulator and PostgreSQL
        are not counted). Exactness: count and sha256 of the stored ids against /__sim/expected.
bound = benchmark 1's raw COPY (bench_writer.run_bound) of min(events, --bound-rows) preformatted
        realistic rows into an empty table on the same server, in this same run. The bound is capped
        at 1,000,000 rows by default because its rows are prepared in memory (~490 bytes of COPY text
        each; the preparation peaked at ~1 GB of RSS per million rows, measured at 200,000);
        A COPY into a table keyed by a btree slows as the index grows, so a 1,000,000-row bound is if
        anything a little faster per row than a 3,000,000-row one: the ratio below errs on the low side.
Runs alternate (bound, ours, bound, ours, …) on fresh databases and fresh simulators; with --repeat
the medians are printed. Targets: events/s ≥ 0.5 × bound rows/s; peak RSS ≤ 250 MB.
Exits 1 if any ingester run failed or stored a set of ids other than the expected one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_writer import build_pages, run_bound  # noqa: E402
from bench.common import (  # noqa: E402
    exact,
    expected_truth,
    fresh_database,
    median,
    postgres_server,
    run_ingester,
    stored_truth,
)
from ingest.commands.demo import simulator  # noqa: E402

RATIO_TARGET = 0.5  # end-to-end events/s ÷ raw COPY rows/s (simulator, ingester and PostgreSQL share 2 cores)
RSS_TARGET_MB = 250.0
BOUND_ROWS_MAX = 1_000_000  # rows; the bound's rows are built in memory, ~1 GB of RSS per million


def run_ours(server: str, events: int, strategy: str) -> dict:
    """One ingester run on a fresh simulator and database; its figures and whether it was exact."""
    with simulator("fast", events) as (url, key), fresh_database(server) as db:
        run = run_ingester(url, key, db, "--strategy", strategy)
        want = expected_truth(url)
        got = stored_truth(db) if run.exit_code == 0 else {"count": None, "sha256": None}
    return {"run": run, "expected": want["count"], "stored": got["count"], "exact": exact(want, got)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bound-rows", type=int, default=BOUND_ROWS_MAX,
                        help="rows for the raw-COPY bound: min(events, this) (default 1,000,000)")
    parser.add_argument("--strategy", default="auto", help="the ingester's --strategy (default auto)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                        help="a server to create fresh databases on (default: an embedded one)")
    args = parser.parse_args()

    bound_rows_wanted = min(args.events, args.bound_rows)
    pages = build_pages(bound_rows_wanted)
    bound_rows = sum(len(p.lines) for p in pages)
    same = "the same N" if bound_rows == args.events else f"capped below the {args.events:,} events"
    print(f"bound: {bound_rows:,} preformatted rows ({same})")

    bounds, rates, cpu, rss, walls = [], [], [], [], []
    failed = False
    with postgres_server(args.database_url) as server:
        for i in range(args.repeat):
            with fresh_database(server) as db:
                bounds.append(bound_rows / run_bound(db, pages))
            r = run_ours(server, args.events, args.strategy)
            run = r["run"]
            ok = run.exit_code == 0 and r["exact"]
            failed |= not ok
            walls.append(run.wall_s)
            rates.append(args.events / run.wall_s)
            cpu.append(run.cpu_s / (args.events / 1e6))
            rss.append(run.peak_rss_mb)
            print(f"run {i + 1}: wall {run.wall_s:.1f} s, {rates[-1]:,.0f} events/s,"
                  f" {cpu[-1]:.1f} CPU s per M events, peak RSS {run.peak_rss_mb:.0f} MB;"
                  f" bound {bounds[-1]:,.0f} rows/s; stored {r['stored']} of {r['expected']}"
                  f" ({'exact' if r['exact'] else 'NOT EXACT'}), exit {run.exit_code}")
            if not ok:
                print("\n".join("  | " + line for line in run.tail()))

    ratio = median(rates) / median(bounds)
    print(f"median of {args.repeat}: wall {median(walls):.1f} s for {args.events:,} events,"
          f" {median(rates):,.0f} events/s, {median(cpu):.1f} CPU s per M events (ingester alone),"
          f" peak RSS {median(rss):.0f} MB (max {max(rss):.0f}; target <= {RSS_TARGET_MB:.0f})")
    print(f"bound {median(bounds):,.0f} rows/s; ratio events/s / bound {ratio:.2f} (target >= {RATIO_TARGET})")
    if failed:
        print("FAILED: an ingester run exited non-zero or its ids differ from /__sim/expected")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
