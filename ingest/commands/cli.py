"""The command line: a thin layer mapping IngestError to a one-line message and an exit code."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from ingest.config import ENV_SETTINGS, Settings, database_only, environment_with_dotenv, load_settings
from ingest.errors import ConfigError, IngestError

if TYPE_CHECKING:
    from ingest.commands.run import Outcome

EXIT_OK = 0
EXIT_INCOMPLETE = 1
COMMANDS = ("run", "status", "verify", "submit", "export")
# Options that mean something to some commands only: elsewhere they are refused, not silently ignored.
ONLY_FOR = {
    "--demo": ("run", "status", "verify", "export"),
    "--reset": ("run",),
    "--repo": ("submit",), "--yes": ("submit",), "--file": ("submit",),
    "--force": ("submit", "export"),
    "--out": ("export",),
}
DEMO_DEFAULTS = (3_000_000, "fast")  # events, profile
DEMO_DATA_SUBDIR = "demo"  # under DATA_DIR: the demo's embedded store, apart from the live one
DEMO_SEED = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingest.py",
        description="Pull every DataSync event into PostgreSQL: exactly once, resumable.",
    )
    parser.add_argument("command", nargs="?", default="run", choices=COMMANDS,
                        help="run (default): ingest; status: where it stands; verify: compare with the API;"
                             " submit: hand the ids in; export: write the ids to a file")
    for name in ENV_SETTINGS:
        parser.add_argument("--" + name.lower().replace("_", "-"), dest=name, metavar=name.split("_")[-1],
                            help=f"overrides ${name}")
    parser.add_argument("--env-file", default=".env", help="a .env file to read (default: ./.env)")
    parser.add_argument("--reset", action="store_true",
                        help="run: erase a store that holds another API's events and start over")
    demo = parser.add_argument_group("demo (run, status, verify, export)")
    demo.add_argument("--demo", action="store_true",
                      help="start the bundled simulator on a free port and ingest from it (verify, export:"
                           " check against it)")
    demo.add_argument("--demo-events", type=int,
                      help="simulated events (default 3,000,000; verify, export: as the last demo run)")
    demo.add_argument("--demo-profile", help="simulator profile: fast (default), live, chaos, tight")
    submit = parser.add_argument_group("submit, export")
    submit.add_argument("--repo", help="the repository URL to submit with the ids")
    submit.add_argument("--file", type=Path, help="submit the ids of this file (written by export)")
    submit.add_argument("--out", type=Path, help="export: the file to write (default event_ids.txt)")
    submit.add_argument("--force", action="store_true", help="submit or export even when verify fails")
    submit.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def _refuse_meaningless(args: argparse.Namespace) -> None:
    """One line naming an option the command would ignore (submit --demo, status --repo, ...)."""
    for option, commands in ONLY_FOR.items():
        if getattr(args, option[2:]) not in (None, False) and args.command not in commands:
            raise ConfigError(f"{option} applies to {_listed(commands)} only, not to {args.command}")
    for option in ("--demo-events", "--demo-profile"):
        if getattr(args, option[2:].replace("-", "_")) is not None and not args.demo:
            raise ConfigError(f"{option} applies to --demo only")
    for name in ("API_BASE_URL", "API_KEY"):
        if args.demo and getattr(args, name) is not None:
            raise ConfigError(f"--{name.lower().replace('_', '-')} and --demo exclude each other:"
                              " the demo uses its own simulator")


def _listed(words: tuple[str, ...]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {name: getattr(args, name) for name in ENV_SETTINGS}
    try:
        _refuse_meaningless(args)
        env = environment_with_dotenv(Path(args.env_file))
        _early_logging(overrides.get("LOG_LEVEL") or env.get("LOG_LEVEL"))
        if args.command == "status":
            return _status(env, overrides, demo=args.demo)
        if args.demo:
            return _demo(args, env, overrides)
        settings = load_settings(env, overrides)
        return _dispatch(args, dataclasses.replace(settings, reset=args.reset))
    except IngestError as exc:
        print(f"error: {exc}", file=sys.stderr)  # once: not also through the logger
        return exc.exit_code


def _early_logging(level: str | None) -> None:
    """Our log format from the first line on; the validated level takes over once settings are built."""
    from ingest.commands.logs import configure_logging
    from ingest.config import LOG_LEVELS

    wanted = (level or "INFO").strip().upper()
    configure_logging(wanted if wanted in LOG_LEVELS else "INFO")


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.commands.logs import configure_logging

    configure_logging(settings.log_level)
    if args.command == "verify":
        return _verify(settings)
    if args.command == "submit":
        from ingest.commands.submit import submit_command

        return submit_command(settings, args.repo, force=args.force, assume_yes=args.yes, id_file=args.file)
    if args.command == "export":
        from ingest.commands.export import DEFAULT_OUT, export_command

        return export_command(settings, args.out or DEFAULT_OUT, force=args.force)
    return _run(settings)


def _run(settings: Settings) -> int:
    from ingest.commands.run import run_ingestion
    from ingest.signals import StopFlag

    stop = StopFlag()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _frame: stop.trigger(s))
    outcome = run_ingestion(settings, stop)
    s, v = outcome.stats, outcome.verification
    figures = (f"{v.stored:,} events in the table ({s.stored:,} new this run, {s.duplicates:,} duplicates skipped,"
               f" {s.quarantined:,} quarantined, {s.with_nulls:,} with NULL fields) in {s.elapsed():.1f} s"
               f" ({s.rate():,.0f} events/s; requests by budget: {_by_budget(outcome)};"
               f" passes: {', '.join(outcome.passes)})")
    if not v.complete:
        logger.error("ingestion INCOMPLETE: {}; {} (rerun to retry; `verify` explains)", v.problem, figures)
        return EXIT_INCOMPLETE
    if v.surplus:
        logger.warning("{:,} events more than the API's meta.total of {:,} (kept: ids are unique)",
                       v.surplus, v.api_total)
    logger.info("ingestion complete: {}", figures)
    return EXIT_OK


def _by_budget(outcome: Outcome) -> str:
    """`feed 57 (3 429s), header 10, query 5`: what each budget answered, and its 429s."""
    parts = []
    for budget in outcome.budgets:
        throttle = budget.throttle
        notes = [f"{throttle.throttled} 429s"] if throttle.throttled else []
        notes += ["retired"] if budget.retired else []
        parts.append(f"{budget.name} {throttle.answered}" + (f" ({', '.join(notes)})" if notes else ""))
    return ", ".join(parts) or "none"


def _demo(args: argparse.Namespace, env: dict, overrides: dict) -> int:
    """run: ingest from a new simulator, record its size, verify; verify/export: check against one of
    the size the last demo run recorded."""
    from ingest.commands.demo import record_demo, recorded_demo, simulator

    database_url = _demo_database_url(env, overrides)
    last = recorded_demo(database_url) if args.command != "run" else None
    known_events, known_profile = last or DEMO_DEFAULTS
    events = args.demo_events if args.demo_events is not None else known_events
    profile = args.demo_profile if args.demo_profile is not None else known_profile
    logger.info("demo: starting the simulator ({} profile, {:,} events)", profile, events)
    with simulator(profile, events, seed=DEMO_SEED) as (sim_url, key):
        settings = load_settings(env, {**overrides, "API_BASE_URL": sim_url, "API_KEY": key,
                                       "DATABASE_URL": database_url})
        # The demo's dataset is the store's origin: the simulator's URL and key change with every start.
        label = f"demo simulator ({events:,} events, seed {DEMO_SEED})"
        settings = dataclasses.replace(settings, demo_label=label, reset=args.reset)
        code = _dispatch(args, settings)
        if args.command != "run" or code != EXIT_OK:
            return code
        record_demo(database_url, demo_events=events, demo_profile=profile)
        return _verify(settings)


def _demo_database_url(env: dict, overrides: dict) -> str:
    """DATABASE_URL if set, else the demo's own embedded store: never the one a live run uses."""
    from ingest.store.database import store_url

    url, data_dir = database_only(env, overrides)
    return store_url(url, data_dir / DEMO_DATA_SUBDIR)


def _status(env: dict, overrides: dict, *, demo: bool) -> int:
    from ingest.commands.status import running_lines, status_lines
    from ingest.store.checkpoint import create_schema
    from ingest.store.database import connect, store_url

    url, data_dir = database_only(env, overrides)
    database_url = _demo_database_url(env, overrides) if demo else store_url(url, data_dir)
    with connect(database_url, autocommit=True, role="status") as conn:
        create_schema(conn)
        print("\n".join(status_lines(conn) + running_lines(conn)))
    return EXIT_OK


def _verify(settings: Settings) -> int:
    from ingest.commands.verify import verify_against_api
    from ingest.store.checkpoint import create_schema
    from ingest.store.database import connect, store_url

    url = store_url(settings.database_url, settings.data_dir)
    with connect(url, autocommit=True, role="verify") as conn:
        create_schema(conn)
        result = verify_against_api(conn, settings)
    for day, count in result.per_day:
        print(f"  {day}: {count:,}")
    print(f"API total: {f'{result.api_total:,}' if result.api_total is not None else 'unknown'};"
          f" stored: {result.stored:,}; quarantined (distinct, not stored): {result.quarantined:,};"
          f" time range covered: {'yes' if result.coverage_gap is None else 'no'}")
    if result.surplus:
        print(f"warning: {result.surplus:,} events more than the API's meta.total")
    if result.complete:
        print("verify: complete")
        return EXIT_OK
    print(f"verify: INCOMPLETE: {result.problem}")
    return EXIT_INCOMPLETE
