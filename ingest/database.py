"""Which PostgreSQL to use: DATABASE_URL, or an embedded server under the data directory."""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

import psycopg
from loguru import logger

from ingest.errors import DatabaseError

APPLICATION_NAME = "datasync-ingest"
CONNECT_TIMEOUT_S = 10  # s; a database that does not answer by then is down for our purposes


def embedded_database_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL whose files live in data_dir/pg; its URL."""
    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR on servers and in containers: noise for our users.
            warnings.simplefilter("ignore")
            import pgserver

            server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:  # pgserver raises plain exceptions of several kinds
        raise DatabaseError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc
    url = server.get_uri()
    logger.info("embedded PostgreSQL at {} (data in {})", url, pgdata)
    return url


def connect(url: str, *, autocommit: bool = False, role: str = "main") -> psycopg.Connection:
    """A connection named after this process (so lock holders can be identified)."""
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=f"{APPLICATION_NAME} {role} pid={os.getpid()} host={socket.gethostname()}",
        )
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to the database: {str(exc).strip()}") from exc
