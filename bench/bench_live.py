"""Benchmark 3: end to end against the `live` profile, as a ratio to the simulator's theoretical minimum.

    .venv/bin/python bench/bench_live.py [--events 300000] [--strategy auto|feed|documented]
        [--keys 1] [--query-shared] [--no-feed] [--no-chaos] [--kills 0] [--penalize]
        [--feed-model token|fixed|sliding] [--data-seed 1]

The simulator runs as a child process with the live API's limits (events 10 per 60 s with the key in a
header, 5 per 60 s more with `?api_key=`, the feed's soft 40/min with bursts of 15, ~0.7 ms per event
of server latency, light chaos); the ingester runs as `python ingest.py` into a fresh database. Prints
the wall time and its ratio to the minimum for the budgets in play (/__sim/bounds: all budgets of every
key; without the feed, the two documented pools), the ratio to the feed-only minimum beside it, 429s,
early arrivals (requests sent inside a 429 lockout) and whether the id set is exact.

`--feed-model` picks the simulator's reading of the feed's bucket (a continuous token bucket, the default;
a fixed window of 40 per 60 s opened by the first request; 40 in any 60 s); the minimum follows it.
`--data-seed` picks the simulator's dataset (and its chaos draws).

`--kills N` SIGKILLs the ingester N times, each run at a random moment 3-15 s into it (seeded), and reruns
it; with `--penalize` an early retry restarts a full lockout window (the reported live behaviour).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import bench_database, stored_truth  # noqa: E402
from ingest.commands.demo import simulator  # noqa: E402

KILL_AFTER_S = (3.0, 15.0)  # s into each run: where a kill moment is drawn
# The bound assumes no chaos; --no-chaos measures pacing alone, against the same bound.
NO_CHAOS = ("--p-5xx", "0", "--p-truncate", "0", "--p-reset", "0", "--p-slow", "0", "--p-no-pagination", "0",
            "--p-missing-fields", "0", "--p-ts-variant", "0", "--p-damaged-id", "0", "--p-replay", "0")


def minimum_seconds(bounds: dict, strategy: str, keys: int, feed: bool) -> float:
    """The simulator's minimum for the budgets this run may use."""
    if strategy == "feed":
        return bounds["theoretical_min_seconds"]["feed"]
    per_key = bounds["all_budgets"]["per_key"]
    if strategy == "documented" or not feed:
        per_window = keys * (per_key["events_header_per_window"] + (per_key["events_query_per_window"] or 0))
        pages = bounds["pages"]
        return ((pages - 1) // per_window) * per_key["window_s"] + bounds["page_latency_seconds"]
    return bounds["all_budgets"]["min_seconds_by_keys"][str(keys)]


def one_chain_seconds(bounds: dict, keys: int, failed: int = 0) -> float:
    """The pools' minimum for one cursor chain (the feed refused): its pages go one after another, each a
    page time, a window's requests at most per window. `failed` requests spend a token each but no page
    time; at best they fall in the last window, which still needs one page."""
    per_key = bounds["all_budgets"]["per_key"]
    per_window = keys * (per_key["events_header_per_window"] + (per_key["events_query_per_window"] or 0))
    pages, latency, window_s = bounds["pages"], bounds["page_latency_seconds"], per_key["window_s"]
    if not pages:
        return latency
    windows = -(-(pages + failed) // per_window)
    in_last = pages + failed - (windows - 1) * per_window
    return (windows - 1) * window_s + max(1, in_last - failed) * latency


def run(args: argparse.Namespace) -> dict:
    knobs = [] if not args.no_chaos else list(NO_CHAOS)
    if args.query_shared:
        knobs.append("--query-key-shares-bucket")
    if args.no_feed:
        knobs.append("--no-stream-access-enabled")
    if args.penalize:
        knobs.append("--penalize-early-retries")
    knobs += ["--feed-model", args.feed_model, *(arg for switch in args.sim for arg in switch.split("=", 1))]
    rng = random.Random(args.seed)
    with simulator("live", args.events, seed=args.data_seed, knobs=tuple(knobs), keys=args.keys) as (url, key), \
            bench_database(args.database_url) as db:
        command = [sys.executable, str(ROOT / "ingest.py"), "--api-base-url", url, "--api-key", key,
                   "--database-url", db, "--strategy", args.strategy, "--env-file", os.devnull]
        started = time.monotonic()
        kills, starts = 0, []
        while kills < args.kills:
            starts.append(round(time.monotonic() - started, 1))
            child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                # Within a 200k run's ~30 s: moments drawn over 5-40 s fell after its end, and a case
                # named for two kills ran with one or none.
                child.wait(rng.uniform(KILL_AFTER_S[0], KILL_AFTER_S[1]))
                break  # finished before its kill
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
                child.wait()
                kills += 1
        starts.append(round(time.monotonic() - started, 1))
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                              env={**os.environ, "LOG_LEVEL": "DEBUG"} if args.log else None)
        if args.log:
            Path(args.log).write_text(proc.stderr)
        took = time.monotonic() - started
        bounds = requests.get(url + "/__sim/bounds", timeout=10).json()
        stats = requests.get(url + "/__sim/stats", timeout=10).json()
        expected = requests.get(url + "/__sim/expected", timeout=120).json()
        got = stored_truth(db)
    failures, cuts = bounds["with_failures"], bounds["with_cut_bodies"]
    every_budget = args.strategy == "auto" and not args.no_feed
    return {"exit": proc.returncode, "seconds": took, "kills": kills, "starts": starts,
            "failed": failures["failed_requests"], "cut_pages": cuts["cut_pages"],
            "minimum_with_failures": failures["min_seconds_by_keys"][str(args.keys)] if every_budget else None,
            "minimum_with_cuts": cuts["min_seconds_by_keys"][str(args.keys)] if every_budget else None,
            "minimum": minimum_seconds(bounds, args.strategy, args.keys, not args.no_feed),
            "feed_minimum": bounds["theoretical_min_seconds"]["feed"],
            "one_chain": (one_chain_seconds(bounds, args.keys),
                          one_chain_seconds(bounds, args.keys, failures["failed_requests"])) if args.no_feed else None,
            "exact": expected["sha256"] == got["sha256"], "stored": got["count"], "expected": expected["count"],
            "stats": stats, "tail": proc.stderr.strip().splitlines()[-3:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--strategy", choices=("auto", "feed", "documented"), default="auto")
    parser.add_argument("--keys", type=int, default=1, help="API keys, each with its own budgets")
    parser.add_argument("--query-shared", action="store_true", help="the ?api_key= pool shares the header pool")
    parser.add_argument("--no-feed", action="store_true", help="stream-access refuses: the documented pools only")
    parser.add_argument("--no-chaos", action="store_true", help="switch the live profile's light chaos off")
    parser.add_argument("--kills", type=int, default=0, help="SIGKILL the ingester this many times, then rerun")
    parser.add_argument("--penalize", action="store_true", help="an early retry restarts a full lockout")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill moments")
    parser.add_argument("--feed-model", choices=("token", "fixed", "sliding"), default="token",
                        help="the simulator's model of the feed's bucket")
    parser.add_argument("--data-seed", type=int, default=1, help="seed of the simulator's dataset")
    parser.add_argument("--sim", action="append", default=[], metavar="SWITCH=VALUE",
                        help="another simulator switch, e.g. --sim=--window-s=20 (repeatable; the minimum follows it)")
    parser.add_argument("--log", help="write the last run's log (DEBUG) to this file")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()
    r = run(args)
    s = r["stats"]
    by_endpoint = {name: codes.get("429", 0) for name, codes in s["requests"].items() if codes.get("429")}
    line = re.sub(r"^.*\| ", "", r["tail"][-1]) if r["tail"] else ""
    kills = f", {r['kills']} kills" if args.kills else ""
    print(f"live, {args.events:,} events, strategy {args.strategy}, {args.keys} key(s), feed model {args.feed_model},"
          f" data seed {args.data_seed}"
          f"{', query pool shared' if args.query_shared else ''}{', no feed' if args.no_feed else ''}"
          f"{', no chaos' if args.no_chaos else ''}{kills}"
          f"{', early retries penalized' if args.penalize else ''}")
    print(f"  wall {r['seconds']:.1f} s; minimum for these budgets {r['minimum']:.1f} s:"
          f" ratio {r['seconds'] / r['minimum']:.3f}; feed-only minimum {r['feed_minimum']:.1f} s:"
          f" ratio {r['seconds'] / r['feed_minimum']:.3f}")
    if r["minimum_with_failures"] is not None:
        print(f"  with the {r['failed']} requests the simulator failed counted (5xx, resets, slow answers):"
              f" minimum {r['minimum_with_failures']:.1f} s: ratio {r['seconds'] / r['minimum_with_failures']:.3f}")
        print(f"  and what bodies cut mid-JSON left unsent ({r['cut_pages']:.1f} pages), which that minimum does not"
              f" count: {r['minimum_with_cuts']:.1f} s: ratio {r['seconds'] / r['minimum_with_cuts']:.3f}")
    if r["one_chain"] is not None:
        plain, failed = r["one_chain"]
        print(f"  one-chain minimum {plain:.1f} s: ratio {r['seconds'] / plain:.3f}; with the {r['failed']} requests"
              f" the simulator failed counted: {failed:.1f} s: ratio {r['seconds'] / failed:.3f}")
    print(f"  exit {r['exit']}; stored {r['stored']:,} of {r['expected']:,}, exact id set: {r['exact']};"
          f" 429s {s['rate_limited']} {by_endpoint}; early arrivals {s['early_retries']} {s['early_by_endpoint']};"
          f" requests {sum(sum(c.values()) for c in s['requests'].values()):,}")
    if args.kills:
        print(f"  runs started at {r['starts']} s; events served {s['events_served']:,} for {r['expected']:,}"
              f" ({s['events_served'] - r['expected']:,} more: pages lost in flight, partial pages, probes)")
    if s["early_list"]:
        print("  early arrivals (endpoint, s since the simulator started, s before the lockout's end):",
              s["early_list"])
    print(f"  last line: {line}")


if __name__ == "__main__":
    main()
