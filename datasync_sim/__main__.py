"""CLI: `python -m datasync_sim [--profile live] [--port 8080] [--events N] [--<knob> VALUE …]`.

Every SimConfig field is a flag (underscores as dashes; booleans as --x / --no-x). Prints one line
`datasync_sim listening on http://HOST:PORT (profile P, N events)` once listening (with
`, K held back until POST /__sim/release-late` when late or new events wait); exits 0 on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading

from .config import PROFILES, SimConfig, profile_config
from .server import SimServer

_SPECIAL = {"profile", "events", "seed", "api_key"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m datasync_sim", description="DataSync API simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    p.add_argument("--profile", choices=sorted(PROFILES), default="live")
    p.add_argument("--events", type=int, default=None, help="dataset size (default 3,000,000)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--api-key", default=None,
                   help="the only valid key, or several comma-separated (default: any ds_<32 hex>)")
    knobs = p.add_argument_group("knobs (override the profile)")
    for f in dataclasses.fields(SimConfig):
        if f.name in _SPECIAL:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            knobs.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            knobs.add_argument(flag, type=kind, default=None, metavar=kind.__name__.upper())
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(SimConfig)
                 if f.name != "profile" and getattr(args, f.name, None) is not None}
    return profile_config(args.profile, **overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        sim = SimServer(cfg, host=args.host, port=args.port)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sim.start()
    held = cfg.late_events + cfg.new_events
    more = f", {held} held back until POST /__sim/release-late" if held else ""
    print(f"datasync_sim listening on {sim.url} (profile {cfg.profile}, {cfg.events} events{more})", flush=True)
    while not stop.wait(0.5):
        pass
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
