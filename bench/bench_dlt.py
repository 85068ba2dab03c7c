"""Benchmark 4: against dlt, the best-known Python library for REST → PostgreSQL.

    .venv/bin/python bench/bench_dlt.py [--events 1000000] [--repeat 3] [--write-disposition append|merge]
                                        [--database-url URL]

Both sides read the documented endpoint /api/v1/events of the simulator (`--profile fast`, same seed,
so the same events; a fresh simulator process for each run so neither side inherits the other's warm
caches), 5000 events per page, into a fresh database on one PostgreSQL server:
  dlt  = bench/dlt_pipeline.py in its own virtualenv bench/.venv-dlt (bench/requirements-dlt.txt;
         created here when missing), telemetry off: the `rest_api` source with a cursor paginator
         (JSONResponseCursorPaginator on pagination.nextCursor → ?cursor=) and APIKeyAuth (X-API-Key
         header), records under `data`, primary key `id`. write_disposition `append` by default: it is
         dlt's fastest path (one load into the final table, no staging dataset and no MERGE), so the
         ratio is measured against dlt at its best; on this dataset it stores the same rows as `merge`
         since the documented endpoint serves each id once. `--write-disposition merge` gives dlt the
         same dedup-by-id guarantee as ours, at a higher cost.
  ours = `python ingest.py --strategy documented --page-size 5000`.
Wall time of each from spawn to exit (interpreter start-up and imports included on both sides), with
its CPU seconds and peak RSS. dlt's ids are checked like ours: count distinct id and the sha256 of the
sorted ids in its table against /__sim/expected. Prints the medians and the ratio dlt ÷ ours
(target ≥ 5). Exits 1 if either side failed or stored a set of ids other than the expected one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench.common import (  # noqa: E402
    MeasuredRun,
    exact,
    expected_truth,
    fresh_database,
    median,
    postgres_server,
    run_ingester,
    run_measured,
    stored_truth,
)
from ingest.commands.demo import simulator  # noqa: E402

RATIO_TARGET = 5.0  # dlt's wall time ÷ ours
PAGE_SIZE = "5000"  # events per request on both sides: the API's maximum
DLT_VENV = BENCH / ".venv-dlt"
DLT_TABLE = "datasync.events"  # dlt_pipeline.DATASET + its resource name


def ensure_dlt_venv(venv: Path) -> Path:
    """The virtualenv's python, creating the virtualenv from requirements-dlt.txt when it is missing."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} from {BENCH / 'requirements-dlt.txt'} …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        (venv / ".gitignore").write_text("*\n")  # keeps the virtualenv out of git status
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(BENCH / "requirements-dlt.txt")],
                       check=True)
    return python


def run_dlt(python: Path, server: str, events: int, write_disposition: str) -> tuple[MeasuredRun, dict, dict, int]:
    """One dlt run on a fresh simulator and database: (run, expected, stored distinct ids, rows in table)."""
    with simulator("fast", events) as (url, key), fresh_database(server) as db, \
            tempfile.TemporaryDirectory(prefix="bench-dlt-cwd-") as cwd:
        env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"}
        # cwd: an empty directory, so that no .dlt/config.toml or secrets.toml from elsewhere applies
        run = run_measured([str(python), str(BENCH / "dlt_pipeline.py"), "--api-base-url", url, "--api-key", key,
                            "--database-url", db, "--write-disposition", write_disposition], cwd=Path(cwd), env=env)
        want = expected_truth(url)
        got, rows = {"count": None, "sha256": None}, 0
        if run.exit_code == 0:
            got = stored_truth(db, DLT_TABLE)
            with psycopg.connect(db) as conn:
                rows = conn.execute(f"SELECT count(*) FROM {DLT_TABLE}").fetchone()[0]
    return run, want, got, rows


def run_ours(server: str, events: int) -> tuple[MeasuredRun, dict, dict]:
    with simulator("fast", events) as (url, key), fresh_database(server) as db:
        run = run_ingester(url, key, db, "--strategy", "documented", "--page-size", PAGE_SIZE)
        want = expected_truth(url)
        got = stored_truth(db) if run.exit_code == 0 else {"count": None, "sha256": None}
    return run, want, got


def describe(run: MeasuredRun, events: int) -> str:
    return (f"{run.wall_s:.1f} s ({events / run.wall_s:,.0f} events/s), CPU {run.cpu_s:.1f} s,"
            f" peak RSS {run.peak_rss_mb:.0f} MB, exit {run.exit_code}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write-disposition", choices=("append", "merge"), default="append")
    parser.add_argument("--dlt-venv", type=Path, default=DLT_VENV, help="dlt's virtualenv (default bench/.venv-dlt)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                        help="a server to create fresh databases on (default: an embedded one)")
    args = parser.parse_args()
    python = ensure_dlt_venv(args.dlt_venv)

    dlt_walls, our_walls = [], []
    failed = False
    with postgres_server(args.database_url) as server:
        for i in range(args.repeat):
            run, want, got, rows = run_dlt(python, server, args.events, args.write_disposition)
            ok = run.exit_code == 0 and exact(want, got)
            failed |= not ok
            dlt_walls.append(run.wall_s)
            print(f"run {i + 1} dlt ({args.write_disposition}): {describe(run, args.events)};"
                  f" {got['count']} distinct ids of {want['count']} expected in {rows} rows"
                  f" ({'exact' if ok else 'NOT EXACT'})")
            if run.exit_code == 0:
                print(f"  stages: {run.tail(1)[0]}")
            else:
                print("\n".join("  | " + line for line in run.tail(15)))

            run, want, got = run_ours(server, args.events)
            ok = run.exit_code == 0 and exact(want, got)
            failed |= not ok
            our_walls.append(run.wall_s)
            print(f"run {i + 1} ours (documented): {describe(run, args.events)};"
                  f" {got['count']} ids of {want['count']} expected ({'exact' if ok else 'NOT EXACT'})")
            if not ok:
                print("\n".join("  | " + line for line in run.tail()))

    ratio = median(dlt_walls) / median(our_walls)
    print(f"median of {args.repeat}, {args.events:,} events: dlt {median(dlt_walls):.1f} s,"
          f" ours {median(our_walls):.1f} s; ours is {ratio:.1f}x faster (target >= {RATIO_TARGET:.0f}x)")
    if failed:
        print("FAILED: a run exited non-zero or its ids differ from /__sim/expected")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
