"""What `submit` and `export` share: the verify-based refusal, and the stored ids as lines of text.

Both hand the ids over (to the API, to a file), so both refuse when `verify` would fail unless forced,
and both read the ids the same way: in ascending order, through a server-side cursor, in chunks, inside
the snapshot that counted them. The same database therefore always gives byte-identical bodies.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg

from ingest.commands.verify import Verification, verify_against_api
from ingest.config import Settings
from ingest.errors import DatabaseError, IngestError
from ingest.store.database import one
from ingest.store.lock import describe_holder

CHUNK_IDS = 10_000  # ids per cursor fetch and per body chunk: ~370 KB, whatever the total
ID_LINE_BYTES = 37  # the text form of a uuid is always 36 characters, plus "\n"
_DOING = {"submit": ("submitting", "sent"), "export": ("exporting", "written")}


def ready_to_hand_in(conn: psycopg.Connection, settings: Settings, *, force: bool, verb: str) -> Verification:
    """Print the verify figures; raise unless the stored ids are the full set to hand in (or `force`).

    `verb` names the command in the messages ("submit", "export"). A store of another API is refused
    (OriginMismatch) and nothing stored is refused, both even with `force`.
    """
    result = verify_against_api(conn, settings, per_day=False)
    print(f"verify: API total {or_unknown(result.api_total)}; stored {result.stored:,};"
          f" quarantined {result.quarantined:,}")
    if result.stored == 0:
        raise IngestError(f"nothing to {verb}: no events are stored")
    doing, done = _DOING[verb]
    problem = _why_not_ready(result, conn)
    if problem and not force:
        raise IngestError(f"{verb} refused, nothing {done}: {problem} (rerun the ingestion, or pass --force)")
    if problem:
        print(f"{verb}: --force: {doing} although {problem}")
    return result


def _why_not_ready(result: Verification, conn: psycopg.Connection) -> str | None:
    """Why the stored ids are not the full set to hand in, or None when they are."""
    if result.problem is not None:
        return f"verify fails: {result.problem}"
    holder = describe_holder(conn)
    if holder:
        return f"a run is ingesting now ({holder})"
    return None


def count_in_snapshot(conn: psycopg.Connection) -> int:
    """Start a read-only snapshot and count the ids in it; read them with IdLines in the same transaction."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    (count,) = one(conn.execute("SELECT count(*) FROM ingested_events"))
    return count


class IdLines:
    """The stored ids, one per line in ascending order, read through a server-side cursor in chunks.

    Sized (`len`) so requests sends a Content-Length and streams the chunks as they are read: never
    all ids in memory at once. Must be read inside the snapshot transaction that counted the rows.
    """

    def __init__(self, conn: psycopg.Connection, count: int) -> None:
        self._conn = conn
        self.count = count
        self.started = False  # set once the first byte is asked for (submit: the request reached the server)
        self._cursor: psycopg.ServerCursor | None = None

    def __len__(self) -> int:
        return self.count * ID_LINE_BYTES

    def __iter__(self) -> Iterator[bytes]:
        self.started = True
        sent = 0
        self._cursor = cursor = self._conn.cursor(name="stored_ids")
        cursor.execute("SELECT id::text FROM ingested_events ORDER BY id")
        while rows := cursor.fetchmany(CHUNK_IDS):
            sent += len(rows)
            if sent > self.count:
                raise DatabaseError("more ids than counted in the same snapshot; nothing more read")
            yield "".join(row[0] + "\n" for row in rows).encode("ascii")
        self.close()
        if sent != self.count:
            raise DatabaseError(f"read {sent:,} ids but counted {self.count:,} in the same snapshot")

    def close(self) -> None:
        """Close the cursor now, not when the consumer drops the suspended generator (idempotent)."""
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None


def or_unknown(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else "unknown"
