"""Benchmark 1: our writer vs the PostgreSQL bound, on the same N preformatted rows.

    .venv/bin/python bench/bench_writer.py [--rows 1000000] [--repeat 3] [--database-url URL]

ours  = the production path: Pages through the Writer thread (COPY → temp staging → INSERT … ON
        CONFLICT DO NOTHING + checkpoint UPDATE, one transaction per batch).
bound = one COPY of the same text rows straight into an empty table with ingested_events' key and
        payload columns (id uuid primary key, jsonb data), one transaction.
Runs alternate (bound, ours, bound, ours, …) on fresh databases; prints rows/s of each, the medians and
their ratio (target ≥ 0.7).
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_database, median, realistic_events  # noqa: E402
from ingest.plan.partitions import Partition  # noqa: E402
from ingest.stats import Stats  # noqa: E402
from ingest.store import checkpoint  # noqa: E402
from ingest.store.page_commit import PageCommit  # noqa: E402
from ingest.store.reconnect import Reconnector  # noqa: E402
from ingest.store.rows import parse_timestamps, transform_events  # noqa: E402
from ingest.store.writer import SENTINEL, Writer  # noqa: E402

BOUND_DDL = (
    "CREATE TABLE bound (id uuid PRIMARY KEY, event_type text, ts_ms bigint, session_id uuid,"
    " user_id uuid, data jsonb NOT NULL, ingested_at timestamptz NOT NULL DEFAULT now())"
)


def build_pages(rows: int) -> list[PageCommit]:
    pages = []
    for events in realistic_events(rows):
        out = transform_events(events, parse_timestamps(events))
        pages.append(PageCommit(1, "c", 0, "x", False, tuple(out.lines)))
    return pages


def run_bound(url: str, pages: list[PageCommit]) -> float:
    with psycopg.connect(url) as conn:
        conn.execute(BOUND_DDL)
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
            "COPY bound (id, event_type, ts_ms, session_id, user_id, data) FROM STDIN"
        ) as copy:
            for page in pages:
                copy.write(b"".join(page.lines))
        conn.commit()
        return time.perf_counter() - started


def run_ours(url: str, pages: list[PageCommit]) -> float:
    with psycopg.connect(url) as conn:
        checkpoint.create_schema(conn)
        checkpoint.start_pass(conn, checkpoint.FULL, [Partition(1, None, None)], None)
    work: queue.Queue = queue.Queue(maxsize=16)
    stats = Stats()
    writer = Writer(Reconnector(url, 0), work, stats)
    started = time.perf_counter()
    writer.start()
    for page in pages:
        work.put(page)
    work.put(SENTINEL)
    writer.join()
    if writer.error:
        raise writer.error
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()
    pages = build_pages(args.rows)
    rows = sum(len(p.lines) for p in pages)
    print(f"{rows:,} rows prepared ({sum(len(line) for p in pages for line in p.lines) / rows:.0f} bytes/row)")
    bound, ours = [], []
    for i in range(args.repeat):
        with bench_database(args.database_url) as url:
            bound.append(rows / run_bound(url, pages))
        with bench_database(args.database_url) as url:
            ours.append(rows / run_ours(url, pages))
        print(f"run {i + 1}: bound {bound[-1]:,.0f} rows/s, ours {ours[-1]:,.0f} rows/s")
    print(f"median: bound {median(bound):,.0f} rows/s, ours {median(ours):,.0f} rows/s,"
          f" ratio {median(ours) / median(bound):.2f} (target >= 0.70)")


if __name__ == "__main__":
    main()
