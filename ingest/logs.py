"""Logging setup: one loguru sink on stderr at the configured level."""

from __future__ import annotations

import sys

from loguru import logger

FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | {message}"


def configure_logging(level: str) -> None:
    logger.remove()
    logger.add(sys.stderr, level=level, format=FORMAT, backtrace=False, diagnose=False)
