"""How fast does the simulator hand out the dataset? One sequential client, keep-alive, fast profile.

    .venv/bin/python bench/bench_sim.py                 # 3M events, in-process server
    .venv/bin/python bench/bench_sim.py --events 300000 --limit 5000
    .venv/bin/python bench/bench_sim.py --url http://127.0.0.1:8080   # a server already running

The client parses every page with orjson (as an ingester would) unless --raw, which only finds
`nextCursor` in the bytes. The server runs in a child process so client and server each get a core.
Prints events/s, pages/s and MB/s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pathlib
import re
import sys
import time

import orjson
import requests

KEY = "ds_" + "0" * 32
ROOT = str(pathlib.Path(__file__).resolve().parent.parent)
_CURSOR = re.compile(rb'"nextCursor":(null|"([^"]*)")')


def _serve(events: int, seed: int, ready) -> None:  # runs in the child process
    sys.path.insert(0, ROOT)
    from datasync_sim import SimServer, profile_config

    sim = SimServer(profile_config("fast", events=events, seed=seed)).start()
    ready.send(sim.url)
    ready.recv()  # parent says stop
    sim.stop()


def run(url: str, limit: int, raw: bool) -> tuple[int, int, int, float]:
    """Read the whole dataset; returns (events, pages, bytes, seconds)."""
    s = requests.Session()
    s.headers["X-API-Key"] = KEY
    cursor = None
    events = pages = nbytes = 0
    t0 = time.perf_counter()
    while True:
        params = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        r = s.get(url + "/api/v1/events", params=params, timeout=60)
        r.raise_for_status()
        body = r.content
        nbytes += len(body)
        pages += 1
        if raw:
            m = _CURSOR.search(body, max(0, len(body) - 600))
            events += body.count(b'"session":{')
            cursor = m.group(2).decode() if m and m.group(2) else None
        else:
            page = orjson.loads(body)
            events += len(page["data"])
            cursor = page["pagination"]["nextCursor"]
        if not cursor:
            break
    return events, pages, nbytes, time.perf_counter() - t0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=3_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--limit", type=int, default=5000)
    p.add_argument("--raw", action="store_true", help="do not parse pages (measures the server alone)")
    p.add_argument("--url", help="bench a running server instead of starting one")
    args = p.parse_args(argv)
    child = None
    url = args.url
    if url is None:
        parent_end, child_end = multiprocessing.Pipe()
        child = multiprocessing.Process(target=_serve, args=(args.events, args.seed, child_end), daemon=True)
        child.start()
        url = parent_end.recv()
    try:
        server_cpu0 = _cpu_seconds(child.pid) if child is not None else None
        client_cpu0 = time.process_time()
        events, pages, nbytes, secs = run(url, args.limit, args.raw)
        client_cpu = time.process_time() - client_cpu0
        server_cpu = _cpu_seconds(child.pid) - server_cpu0 if child is not None else None
        rss = _peak_rss_mb(child.pid) if child is not None else None
    finally:
        if child is not None:
            parent_end.send("stop")
            child.join(timeout=10)
    mode = "raw bytes" if args.raw else "orjson-parsed"
    print(f"bench_sim: {events:,} events in {pages:,} pages of {args.limit} ({mode}) in {secs:.2f} s")
    print(f"  {events / secs:,.0f} events/s   {pages / secs:,.1f} pages/s   {nbytes / secs / 1e6:,.1f} MB/s"
          f"   {nbytes / max(events, 1):.0f} bytes/event")
    print(f"  client CPU {client_cpu:.1f} s ({events / client_cpu:,.0f} events per client CPU second)")
    if server_cpu is not None:
        # on a busy machine wall time includes waiting for a core; CPU time does not
        print(f"  server CPU {server_cpu:.1f} s ({events / server_cpu:,.0f} events per server CPU second);"
              f" with a core each: {events / max(server_cpu, client_cpu):,.0f} events/s (pipelined),"
              f" {events / (server_cpu + client_cpu):,.0f} events/s (no overlap)")
        print(f"  server peak RSS {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
