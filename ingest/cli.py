"""The command line: a thin layer mapping IngestError to a one-line message and an exit code."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path

from loguru import logger

from ingest.config import ENV_SETTINGS, Settings, database_only, environment_with_dotenv, load_settings
from ingest.errors import IngestError

EXIT_OK = 0
EXIT_INCOMPLETE = 1
COMMANDS = ("run", "status", "verify", "submit")
DEMO_DATA_SUBDIR = "demo"  # under DATA_DIR: the demo's embedded store, apart from the live one
DEMO_SEED = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingest.py",
        description="Pull every DataSync event into PostgreSQL: exactly once, resumable.",
    )
    parser.add_argument("command", nargs="?", default="run", choices=COMMANDS,
                        help="run (default): ingest; status: where it stands; verify: compare with the API;"
                             " submit: hand the ids in")
    for name in ENV_SETTINGS:
        parser.add_argument("--" + name.lower().replace("_", "-"), dest=name, metavar=name.split("_")[-1],
                            help=f"overrides ${name}")
    parser.add_argument("--env-file", default=".env", help="a .env file to read (default: ./.env)")
    demo = parser.add_argument_group("demo (run only)")
    demo.add_argument("--demo", action="store_true",
                      help="start the bundled simulator on a free port and ingest from it")
    demo.add_argument("--demo-events", type=int, default=3_000_000, help="simulated events (default 3,000,000)")
    demo.add_argument("--demo-profile", default="fast", help="simulator profile: fast, live, chaos, tight")
    parser.add_argument("--reset", action="store_true",
                        help="run: erase a store that holds another API's events and start over")
    submit = parser.add_argument_group("submit")
    submit.add_argument("--repo", help="the repository URL to submit with the ids")
    submit.add_argument("--force", action="store_true", help="submit even when verify fails")
    submit.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {name: getattr(args, name) for name in ENV_SETTINGS}
    try:
        env = environment_with_dotenv(Path(args.env_file))
        _early_logging(overrides.get("LOG_LEVEL") or env.get("LOG_LEVEL"))
        if args.command == "status":
            return _status(env, overrides)
        if args.demo:
            return _demo(args, env, overrides)
        settings = load_settings(env, overrides)
        return _dispatch(args, dataclasses.replace(settings, reset=args.reset))
    except IngestError as exc:
        logger.error("{}", exc)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _early_logging(level: str | None) -> None:
    """Our log format from the first line on; the validated level takes over once settings are built."""
    from ingest.config import LOG_LEVELS
    from ingest.logs import configure_logging

    wanted = (level or "INFO").strip().upper()
    configure_logging(wanted if wanted in LOG_LEVELS else "INFO")


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.logs import configure_logging

    configure_logging(settings.log_level)
    if args.command == "verify":
        return _verify(settings)
    if args.command == "submit":
        from ingest.submit import submit_command

        return submit_command(settings, args.repo, force=args.force, assume_yes=args.yes)
    return _run(settings)


def _run(settings: Settings) -> int:
    from ingest.pipeline import StopFlag, run_ingestion

    stop = StopFlag()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _frame: stop.trigger(s))
    outcome = run_ingestion(settings, stop)
    s, v = outcome.stats, outcome.verification
    figures = (f"{v.stored:,} events in the table ({s.stored:,} new this run, {s.duplicates:,} duplicates skipped,"
               f" {s.quarantined:,} quarantined, {s.with_nulls:,} with NULL fields) in {s.elapsed():.1f} s"
               f" ({s.rate():,.0f} events/s, strategy {outcome.strategy}, passes: {', '.join(outcome.passes)})")
    if not v.complete:
        logger.error("ingestion INCOMPLETE: {}; {} (rerun to retry; `verify` explains)", v.problem, figures)
        return EXIT_INCOMPLETE
    if v.surplus:
        logger.warning("{:,} events more than the API's meta.total of {:,} (kept: ids are unique)",
                       v.surplus, v.api_total)
    logger.info("ingestion complete: {}", figures)
    return EXIT_OK


def _demo(args: argparse.Namespace, env: dict, overrides: dict) -> int:
    from ingest.demo import simulator

    logger.info("demo: starting the simulator ({} profile, {:,} events)", args.demo_profile, args.demo_events)
    with simulator(args.demo_profile, args.demo_events, seed=DEMO_SEED) as (url, key):
        settings = load_settings(env, {**overrides, "API_BASE_URL": url, "API_KEY": key})
        # The demo never shares the live store: its own directory, and its dataset recorded as the origin.
        settings = dataclasses.replace(settings, data_dir=settings.data_dir / DEMO_DATA_SUBDIR, reset=args.reset,
                                       demo_label=f"demo simulator ({args.demo_events:,} events, seed {DEMO_SEED})")
        code = _dispatch(argparse.Namespace(**{**vars(args), "command": "run"}), settings)
        return code if code != EXIT_OK else _verify(settings)


def _status(env: dict, overrides: dict) -> int:
    from ingest.checkpoint import create_schema
    from ingest.database import connect, embedded_database_url
    from ingest.report import status_lines

    url, data_dir = database_only(env, overrides)
    with connect(url or embedded_database_url(data_dir), autocommit=True, role="status") as conn:
        create_schema(conn)
        print("\n".join(status_lines(conn)))
    return EXIT_OK


def _verify(settings: Settings) -> int:
    from ingest.checkpoint import create_schema
    from ingest.database import connect, embedded_database_url
    from ingest.total import verify_against_api

    url = settings.database_url or embedded_database_url(settings.data_dir)
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
