"""`submit`: stream every stored id (or a file written by `export`) to `POST /api/v1/submissions` once,
and record the answer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import psycopg
from loguru import logger
from psycopg.types.json import Jsonb

from ingest.api.client import ApiClient, int_or_none
from ingest.budgets.sender import RetryLoop
from ingest.commands.api_probe import api_requests, api_total_via
from ingest.commands.hand_over import CHUNK_IDS, ID_LINE_BYTES, IdLines, count_in_snapshot, or_unknown, ready_to_hand_in
from ingest.config import Settings
from ingest.errors import ConfigError, DatabaseError, FatalApiError, IngestError, RateLimited, RetryableApiError
from ingest.store.checkpoint import create_schema
from ingest.store.database import connect, store_url

SUBMISSIONS_PATH = "/api/v1/submissions"
MAX_SUBMISSIONS = 5  # per API key (contract §7); why we confirm before sending
EXIT_OK = 0
EXIT_NOT_SENT = 1
_ID_LINE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n")  # as export writes


def submit_command(settings: Settings, repo: str | None, *, force: bool, assume_yes: bool,
                   id_file: Path | None = None) -> int:
    """Check, confirm, stream the ids, print and record the answer; the exit code.

    The ids are the stored ones, or those of `id_file` (a file written by `export`). Refuses (exit 1,
    nothing sent) when `verify` would fail, a run holds the lock, or the file holds fewer ids than the
    API's meta.total, unless `force`; a file that is not one sorted, distinct id per line is always
    refused. Asks on stdin unless `assume_yes` (no answer or EOF: exit 1, nothing sent).
    """
    repo = _checked_repo(repo)
    ids_in_file = _checked_id_file(id_file) if id_file is not None else 0  # before any request
    url = store_url(settings.database_url, settings.data_dir)
    with connect(url, autocommit=True, role="submit") as conn:
        create_schema(conn)
        if id_file is None:
            # Only ids of the API we submit to: a store of another origin is refused, --force or not.
            count = ready_to_hand_in(conn, settings, force=force, verb="submit").stored
        else:
            count = ids_in_file
            with api_requests(settings) as (client, requester):
                total = api_total_via(client, requester)
            _file_ready(id_file, count, total, force=force)
        if not assume_yes and not _confirmed(count, settings.base_url, repo):
            print("submit: not confirmed, nothing sent")
            return EXIT_NOT_SENT
        answer, sent = _send(settings, conn, repo, (id_file, count) if id_file is not None else None)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict) or not data.get("submissionId"):
            raise FatalApiError(f"the API accepted the submission with an unexpected answer: {answer!r:.300}")
        _record(conn, data, answer, sent, repo)
    print(f"submission #{data.get('submissionNumber')} accepted: {or_unknown(data.get('eventCount'))} ids"
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


def _checked_id_file(path: Path) -> int:
    """The number of ids in a file written by `export`: one lowercase uuid per line, strictly ascending.

    Ascending order is what lets one pass, in flat memory, prove there are no duplicates.
    """
    count = 0
    previous = b""
    try:
        with path.open("rb") as lines:
            for count, line in enumerate(lines, start=1):  # noqa: B007 (read after the loop)
                if not _ID_LINE.fullmatch(line):
                    raise ConfigError(f"{path}, line {count}: not an event id as export writes it: {line[:60]!r}")
                if line <= previous:
                    raise ConfigError(f"{path}, line {count}: ids are not in ascending order or repeat"
                                      " (write the file with python ingest.py export)")
                previous = line
    except OSError as exc:
        raise ConfigError(f"--file {path}: {exc.strerror or exc}") from exc
    if count == 0:
        raise ConfigError(f"--file {path}: the file holds no ids")
    return count


def _file_ready(path: Path, count: int, api_total: int | None, *, force: bool) -> None:
    """Print the file's figures; raise when it holds fewer ids than the API reports, unless `force`."""
    print(f"file: {path} holds {count:,} distinct ids; API total {or_unknown(api_total)}")
    if api_total is not None and count >= api_total:
        return
    problem = ("the API did not report meta.total, so completeness is unknown" if api_total is None
               else f"the file holds {count:,} of the {api_total:,} events the API reports"
                    " (damaged events that verify counts as quarantined are not in it)")
    if not force:
        raise IngestError(f"submit refused, nothing sent: {problem} (pass --force to send it as it is)")
    print(f"submit: --force: submitting although {problem}")


def _confirmed(count: int, api_url: str, repo: str) -> bool:
    prompt = (f"The API allows only {MAX_SUBMISSIONS} submissions per key."
              f" Submit {count:,} ids to {api_url} for {repo}? [y/N] ")
    try:
        reply = input(prompt)
    except EOFError:
        print()
        return False
    return reply.strip().lower() in ("y", "yes")


class IdFile:
    """The ids of a file written by `export` as a text/plain body: the same protocol as IdLines."""

    def __init__(self, path: Path, count: int) -> None:
        self._path = path
        self.count = count
        self.started = False  # set once the first byte is asked for: the request reached the server

    def __len__(self) -> int:
        return self.count * ID_LINE_BYTES

    def __iter__(self) -> Iterator[bytes]:
        self.started = True
        size = 0
        with self._path.open("rb") as ids:
            while chunk := ids.read(CHUNK_IDS * ID_LINE_BYTES):
                size += len(chunk)
                yield chunk
        if size != len(self):
            raise FatalApiError(f"{self._path} changed while it was being sent: check GET {SUBMISSIONS_PATH}")

    def close(self) -> None:
        """Nothing held between chunks (the file is closed by the generator)."""


def _send(settings: Settings, conn: psycopg.Connection, repo: str,
          id_file: tuple[Path, int] | None) -> tuple[object, int]:
    """POST the ids once (the stored ones, or the checked file's: path and count); the parsed answer and
    how many ids were sent."""
    with api_requests(settings) as (client, requester):
        return _send_with(client, requester, conn, repo, id_file)


def _send_with(client: ApiClient, requester: RetryLoop, conn: psycopg.Connection, repo: str,
               id_file: tuple[Path, int] | None) -> tuple[object, int]:
    body: IdLines | IdFile | None = None

    def post() -> object:
        nonlocal body
        body = IdLines(conn, count) if id_file is None else IdFile(id_file[0], count)
        try:
            return _post_once(client, body, repo)
        finally:
            body.close()

    try:
        # One snapshot for the count (Content-Length) and the cursor, so they cannot disagree.
        with conn.transaction():
            count = count_in_snapshot(conn) if id_file is None else id_file[1]
            source = "" if id_file is None else f" from {id_file[0]}"
            logger.info("submitting {:,} ids{} to {}{}", count, source, client.base_url, SUBMISSIONS_PATH)
            answer = requester.call(post, "submission")
    except psycopg.Error as exc:
        after = " after the body had started: check GET /api/v1/submissions" if body and body.started else ""
        raise DatabaseError(f"reading the ids failed{after}: {str(exc).strip()}") from exc
    return answer, count


def _post_once(client: ApiClient, body: IdLines | IdFile, repo: str) -> object:
    # A submission is not idempotent and each one spends one of the key's 5: the only failures
    # retried (by the RetryLoop) are those where the server cannot have recorded anything, i.e. the
    # body was never asked for (connection refused or not established) or an explicit 429 refusal.
    # Anything else after the first byte (reset, timeout, 5xx) may have been recorded, so stop.
    try:
        response = client.request(
            "POST", SUBMISSIONS_PATH, params={"github_repo": repo}, headers={"Content-Type": "text/plain"},
            data=body,  # a sized iterable: requests streams it with a Content-Length
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
