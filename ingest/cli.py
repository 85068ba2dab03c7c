"""The command line: a thin layer mapping IngestError to a one-line message and an exit code."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from loguru import logger

from ingest.config import ENV_SETTINGS, environment_with_dotenv, load_settings
from ingest.errors import IngestError
from ingest.logs import configure_logging
from ingest.pipeline import StopFlag, run_ingestion

EXIT_OK = 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingest.py",
        description="Pull every DataSync event into PostgreSQL: exactly once, resumable.",
    )
    for name in ENV_SETTINGS:
        parser.add_argument("--" + name.lower().replace("_", "-"), dest=name, metavar=name,
                            help=f"overrides ${name}")
    parser.add_argument("--env-file", default=".env", help="a .env file to read (default: ./.env)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {name: getattr(args, name) for name in ENV_SETTINGS}
    try:
        settings = load_settings(environment_with_dotenv(Path(args.env_file)), overrides)
    except IngestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    configure_logging(settings.log_level)
    stop = StopFlag()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _frame: stop.trigger(s))
    try:
        outcome = run_ingestion(settings, stop)
    except IngestError as exc:
        logger.error("{}", exc)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    s = outcome.stats
    logger.info(
        "ingestion complete: {:,} events in the table ({:,} new this run, {:,} duplicates skipped,"
        " {:,} quarantined, {:,} with NULL fields) in {:.1f} s ({:,.0f} events/s, strategy {})",
        outcome.in_table, s.stored, s.duplicates, s.quarantined, s.with_nulls, s.elapsed(), s.rate(),
        outcome.strategy,
    )
    return EXIT_OK
