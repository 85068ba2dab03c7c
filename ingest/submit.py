"""`submit`: stream every stored id to `POST /api/v1/submissions` once, and record the answer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from urllib.parse import urlsplit

import orjson
import psycopg
from loguru import logger
from psycopg.types.json import Jsonb

from ingest.checkpoint import create_schema
from ingest.client import ApiClient, int_or_none
from ingest.config import Settings
from ingest.database import connect, embedded_database_url
from ingest.errors import ConfigError, DatabaseError, FatalApiError, IngestError, RateLimited, RetryableApiError
from ingest.fetch import Requester
from ingest.lock import describe_holder
from ingest.report import Verification
from ingest.total import api_requests, verify_against_api

SUBMISSIONS_PATH = "/api/v1/submissions"
MAX_SUBMISSIONS = 5  # per API key (contract §7); why we confirm before sending
CHUNK_IDS = 10_000  # ids per cursor fetch and per body chunk: ~370 KB, whatever the total
ID_LINE_BYTES = 37  # the text form of a uuid is always 36 characters, plus "\n"
EXIT_OK = 0
EXIT_NOT_SENT = 1


def submit_command(settings: Settings, repo: str | None, *, force: bool, assume_yes: bool) -> int:
    """Check, confirm, stream the ids, print and record the answer; the exit code.

    Refuses (exit 1, nothing sent) when `verify` would fail or a run holds the lock, unless `force`;
    asks on stdin unless `assume_yes` (no answer or EOF: exit 1, nothing sent).
    """
    repo = _checked_repo(repo)
    url = settings.database_url or embedded_database_url(settings.data_dir)
    with connect(url, autocommit=True, role="submit") as conn:
        create_schema(conn)
        # Only ids of the API we submit to: a store of another origin is refused, --force or not.
        result = verify_against_api(conn, settings, per_day=False)
        print(f"verify: API total {_or_unknown(result.api_total)}; stored {result.stored:,};"
              f" quarantined {result.quarantined:,}")
        problem = _why_not_ready(result, conn)
        if result.stored == 0:
            raise IngestError("nothing to submit: no events are stored")
        if problem and not force:
            raise IngestError(f"submit refused, nothing sent: {problem} (rerun the ingestion, or pass --force)")
        if problem:
            print(f"submit: --force: submitting although {problem}")
        if not assume_yes and not _confirmed(result.stored, settings.base_url, repo):
            print("submit: not confirmed, nothing sent")
            return EXIT_NOT_SENT
        answer, sent = _send(settings, conn, repo)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict) or not data.get("submissionId"):
            raise FatalApiError(f"the API accepted the submission with an unexpected answer: {answer!r:.300}")
        _record(conn, data, answer, sent, repo)
    print(f"submission #{data.get('submissionNumber')} accepted: {_or_unknown(data.get('eventCount'))} ids"
          f" counted by the API ({sent:,} sent); {data.get('remainingSubmissions')} submissions remaining")
    print(f"submission id {data['submissionId']}, submitted at {data.get('submittedAt')}")
    if data.get("eventCount") != sent:
        print(f"warning: the API counted {data.get('eventCount')} ids but {sent:,} were sent")
    return EXIT_OK


def _checked_repo(repo: str | None) -> str:
    if not repo or not repo.strip():
        raise ConfigError("submit needs --repo URL: the repository URL to send with the ids")
    repo = repo.strip()
    parts = urlsplit(repo)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--repo must be an http(s) URL, got {repo!r}")
    return repo


def _why_not_ready(result: Verification, conn: psycopg.Connection) -> str | None:
    """Why the stored ids are not the full set to hand in, or None when they are."""
    if result.problem is not None:
        return f"verify fails: {result.problem}"
    holder = describe_holder(conn)
    if holder:
        return f"a run is ingesting now ({holder})"
    return None


def _confirmed(count: int, api_url: str, repo: str) -> bool:
    prompt = (f"The API allows only {MAX_SUBMISSIONS} submissions per key."
              f" Submit {count:,} ids to {api_url} for {repo}? [y/N] ")
    try:
        reply = input(prompt)
    except EOFError:
        print()
        return False
    return reply.strip().lower() in ("y", "yes")


class IdLines:
    """The stored ids as a text/plain body, one per line, read through a server-side cursor in chunks.

    Sized (`len`) so requests sends a Content-Length and streams the chunks as they are read: never
    all ids in memory at once. Must be read inside the snapshot transaction that counted the rows.
    """

    def __init__(self, conn: psycopg.Connection, count: int) -> None:
        self._conn = conn
        self.count = count
        self.started = False  # set once the first byte is asked for: the request reached the server
        self._cursor: psycopg.ServerCursor | None = None

    def __len__(self) -> int:
        return self.count * ID_LINE_BYTES

    def __iter__(self) -> Iterator[bytes]:
        self.started = True
        sent = 0
        self._cursor = cursor = self._conn.cursor(name="submit_ids")
        cursor.execute("SELECT id::text FROM ingested_events")
        while rows := cursor.fetchmany(CHUNK_IDS):
            sent += len(rows)
            if sent > self.count:
                raise DatabaseError("more ids than counted in the same snapshot; nothing more sent")
            yield "".join(row[0] + "\n" for row in rows).encode("ascii")
        self.close()
        if sent != self.count:
            raise DatabaseError(f"read {sent:,} ids but counted {self.count:,} in the same snapshot")

    def close(self) -> None:
        """Close the cursor now, not when requests drops the suspended generator (idempotent)."""
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None


def _send(settings: Settings, conn: psycopg.Connection, repo: str) -> tuple[object, int]:
    """POST the ids once; the parsed answer and how many ids were sent."""
    with api_requests(settings) as (client, requester):
        return _send_with(client, requester, conn, repo)


def _send_with(client: ApiClient, requester: Requester, conn: psycopg.Connection, repo: str) -> tuple[object, int]:
    body: IdLines | None = None

    def post() -> object:
        nonlocal body
        body = IdLines(conn, count)
        try:
            return _post_once(client, body, repo)
        finally:
            body.close()

    try:
        # One snapshot for the count (Content-Length) and the cursor, so they cannot disagree.
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            (count,) = conn.execute("SELECT count(*) FROM ingested_events").fetchone()
            logger.info("submitting {:,} ids to {}{}", count, client.base_url, SUBMISSIONS_PATH)
            answer = requester.call(post, "submission")
    except psycopg.Error as exc:
        after = " after the body had started: check GET /api/v1/submissions" if body and body.started else ""
        raise DatabaseError(f"reading the ids failed{after}: {str(exc).strip()}") from exc
    return answer, count


def _post_once(client: ApiClient, body: IdLines, repo: str) -> object:
    # A submission is not idempotent and each one spends one of the key's 5: the only failures
    # retried (by the Requester) are those where the server cannot have recorded anything, i.e. the
    # body was never asked for (connection refused or not established) or an explicit 429 refusal.
    # Anything else after the first byte (reset, timeout, 5xx) may have been recorded, so stop.
    try:
        response = client.request(
            "POST", SUBMISSIONS_PATH, params={"github_repo": repo}, headers={"Content-Type": "text/plain"},
            data=body,  # type: ignore[arg-type]  # a sized iterable: requests streams it
        )
    except RateLimited:
        raise
    except RetryableApiError as exc:
        if not body.started:
            raise
        raise FatalApiError(
            f"the submission failed after it was sent ({exc}); it may have been recorded:"
            f" check GET {SUBMISSIONS_PATH} before submitting again"
        ) from exc
    except FatalApiError as exc:
        raise _explained(client, exc) from exc
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise FatalApiError(f"the API answered the submission with invalid JSON: {response.content!r:.200}") from exc


def _explained(client: ApiClient, refusal: FatalApiError) -> FatalApiError:
    """A refusal named by its cause when the key has no submissions left (the API answers 403)."""
    try:
        listing = orjson.loads(client.request("GET", SUBMISSIONS_PATH).content)
        remaining = listing["meta"]["remainingSubmissions"]
    except (IngestError, orjson.JSONDecodeError, KeyError, TypeError):
        return refusal
    if remaining == 0:
        return FatalApiError(
            f"the API refused the submission: this key has used all {MAX_SUBMISSIONS} submissions it allows"
        )
    return refusal


def _record(conn: psycopg.Connection, data: dict, answer: object, sent: int, repo: str) -> None:
    conn.execute(
        "INSERT INTO ingest_submissions (submission_id, event_count, ids_sent, submission_number, remaining,"
        " repo, submitted_at, answer) VALUES (%s, %s, %s, %s, %s, %s, coalesce(%s, now()), %s)"
        " ON CONFLICT (submission_id) DO NOTHING",
        (str(data["submissionId"]), int_or_none(data.get("eventCount")) or 0, sent,
         int_or_none(data.get("submissionNumber")), int_or_none(data.get("remainingSubmissions")), repo,
         _when(data.get("submittedAt")), Jsonb(answer)),
    )


def _when(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def _or_unknown(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else "unknown"
