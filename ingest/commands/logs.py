"""Logging setup: one loguru sink on stderr at the configured level.

On a terminal the lines go through tqdm.write, which clears a live progress bar, prints the line and
draws the bar again below it; elsewhere they are written to stderr as they are.
"""

from __future__ import annotations

import sys

from loguru import logger

FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | {message}"


def configure_logging(level: str) -> None:
    from ingest.commands.progress import is_terminal

    logger.remove()
    sink = _above_progress_bars if is_terminal(sys.stderr) else sys.stderr
    logger.add(sink, level=level, format=FORMAT, backtrace=False, diagnose=False)


def _above_progress_bars(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr, end="")
