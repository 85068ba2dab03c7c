"""Benchmark 5: growth. The `fast` run at several sizes: time should grow linearly, peak memory stay flat.

    .venv/bin/python bench/bench_growth.py [--sizes 300000,1000000,3000000] [--repeat 3]
                                           [--database-url URL] [--strategy auto]

Each run is `python ingest.py` against a fresh simulator (`--profile fast`, as in benchmark 2) into a
fresh database on one PostgreSQL server; the ingester's wall time, and its own peak RSS measured by a
fork launcher (bench/common.py: the simulator and PostgreSQL are not counted). Repetitions go round
the sizes (300k, 1M, 3M, 300k, …) so that a noisy minute does not fall on one size only.
Prints per size the medians of wall time, seconds per million events and peak RSS, then a least-squares
line time = fixed + per-M × millions with each size's deviation from it (linear: every deviation
within 15%), and the peak RSS of the largest size against the smallest (flat: within 15%).
Exits 1 if any ingester run failed or stored a set of ids other than the expected one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import exact, expected_truth, fresh_database, median, postgres_server, run_ingester, stored_truth  # noqa: E402
from ingest.commands.demo import simulator  # noqa: E402

LINEAR_TOLERANCE = 0.15  # max |measured - fitted| / fitted time at any size
FLAT_TOLERANCE = 0.15  # max peak RSS growth from the smallest size to the largest, as a fraction


def sizes_arg(text: str) -> list[int]:
    sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    if len(sizes) < 2 or sizes[0] <= 0:
        raise argparse.ArgumentTypeError("give at least two positive sizes, comma-separated")
    return sizes


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of ys over xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=sizes_arg, default=[300_000, 1_000_000, 3_000_000],
                        help="event counts, comma-separated (default 300000,1000000,3000000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--strategy", default="auto", help="the ingester's --strategy (default auto)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                        help="a server to create fresh databases on (default: an embedded one)")
    args = parser.parse_args()

    walls: dict[int, list[float]] = {n: [] for n in args.sizes}
    rss: dict[int, list[float]] = {n: [] for n in args.sizes}
    failed = False
    with postgres_server(args.database_url) as server:
        for i in range(args.repeat):
            for n in args.sizes:
                with simulator("fast", n) as (url, key), fresh_database(server) as db:
                    run = run_ingester(url, key, db, "--strategy", args.strategy)
                    want = expected_truth(url)
                    ok = run.exit_code == 0 and exact(want, stored_truth(db))
                failed |= not ok
                walls[n].append(run.wall_s)
                rss[n].append(run.peak_rss_mb)
                print(f"run {i + 1}, {n:,} events: {run.wall_s:.1f} s, {run.wall_s / (n / 1e6):.1f} s per M events,"
                      f" peak RSS {run.peak_rss_mb:.0f} MB, {'exact' if ok else 'FAILED'} (exit {run.exit_code})")
                if not ok:
                    print("\n".join("  | " + line for line in run.tail()))

    millions = [n / 1e6 for n in args.sizes]
    times = [median(walls[n]) for n in args.sizes]
    fixed, per_m = fit_line(millions, times)
    print(f"median of {args.repeat}:")
    worst = 0.0
    for n, m, t in zip(args.sizes, millions, times, strict=True):
        fitted = fixed + per_m * m
        worst = max(worst, abs(t - fitted) / fitted)
        print(f"  {n:>10,} events: {t:7.1f} s, {t / m:5.1f} s per M events, peak RSS {median(rss[n]):4.0f} MB;"
              f" fitted {fitted:.1f} s ({(t - fitted) / fitted:+.0%})")
    small, large = median(rss[args.sizes[0]]), median(rss[args.sizes[-1]])
    if len(args.sizes) < 3:
        verdict = "two sizes always fit a line: give three or more to judge linearity"
    else:
        verdict = f"{'linear' if worst <= LINEAR_TOLERANCE else 'NOT linear'}: tolerance {LINEAR_TOLERANCE:.0%}"
    print(f"time = {fixed:.1f} s + {per_m:.1f} s per M events; worst deviation from the line {worst:.0%} ({verdict})")
    print(f"peak RSS {small:.0f} MB at {args.sizes[0]:,} -> {large:.0f} MB at {args.sizes[-1]:,}"
          f" ({large / small - 1:+.0%}; {'flat' if large <= small * (1 + FLAT_TOLERANCE) else 'NOT flat'}:"
          f" tolerance {FLAT_TOLERANCE:.0%})")
    if failed:
        print("FAILED: an ingester run exited non-zero or its ids differ from /__sim/expected")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
