"""`export`: every stored id to a file, one per line in ascending order, streamed in flat memory.

The file is the body `submit` would send, byte for byte, and `submit --file` sends it. It is written
beside its final name and renamed into place when complete, so a failed export never leaves a partial
file that could be submitted.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import psycopg

from ingest.commands.hand_over import IdLines, count_in_snapshot, ready_to_hand_in
from ingest.config import Settings
from ingest.errors import ConfigError, DatabaseError, IngestError
from ingest.store.checkpoint import create_schema
from ingest.store.database import connect, store_url

DEFAULT_OUT = Path("event_ids.txt")
EXIT_OK = 0


def export_command(settings: Settings, out: Path, *, force: bool) -> int:
    """Check like `submit`, then write the ids to `out`; the exit code.

    Refuses (exit 1, nothing written) when `verify` would fail or a run holds the lock, unless `force`.
    """
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; name the file to write")
    url = store_url(settings.database_url, settings.data_dir)
    started = time.monotonic()
    with connect(url, autocommit=True, role="export") as conn:
        create_schema(conn)
        ready_to_hand_in(conn, settings, force=force, verb="export")
        try:
            with conn.transaction():
                count = count_in_snapshot(conn)
                written = _write_atomically(out, IdLines(conn, count))
        except psycopg.Error as exc:
            raise DatabaseError(f"reading the ids failed, {out} left as it was: {str(exc).strip()}") from exc
        except OSError as exc:
            raise IngestError(f"writing {out} failed, {out} left as it was: {exc.strerror or exc}") from exc
    print(f"export: {count:,} ids written to {out} ({written:,} bytes) in {time.monotonic() - started:.1f} s")
    return EXIT_OK


def _write_atomically(out: Path, body: IdLines) -> int:
    """Write every chunk of `body` to a temporary file beside `out`, then rename it to `out`; the bytes."""
    directory = out.parent if str(out.parent) else Path(".")
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=directory)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write in {directory}: {exc.strerror or exc}") from exc
    written = 0
    try:
        with os.fdopen(fd, "wb") as file:
            for chunk in body:
                file.write(chunk)
                written += len(chunk)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as for any new file (mkstemp makes it 0600)
        os.replace(temporary, out)
    except BaseException:
        body.close()
        Path(temporary).unlink(missing_ok=True)
        raise
    return written
