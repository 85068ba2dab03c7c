"""What can go wrong, named by what the caller should do about it."""

from __future__ import annotations


class IngestError(Exception):
    """Base of every error the ingester raises on purpose; the CLI maps it to an exit code."""

    exit_code = 1


class ConfigError(IngestError):
    """A setting is missing or invalid: fix the named variable and run again."""

    exit_code = 2


class OriginMismatch(ConfigError):
    """The store holds another API's events: use another store for this API, or reset it explicitly."""


class LockHeld(IngestError):
    """Another run holds the ingestion lock: this run must not start."""

    exit_code = 3


class RetryableApiError(IngestError):
    """A transient API failure (429, 5xx, timeout, reset, damaged body): wait and send again."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class AnswerTimedOut(RetryableApiError):
    """No answer came within the read timeout: send again, and wait longer next time if it happens again."""


class RateLimited(RetryableApiError):
    """The API answered 429: every fetcher waits until Retry-After has fully passed."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None,
                 limit: int | None = None) -> None:
        super().__init__(message, status, retry_after)
        self.limit = limit  # the refusing bucket's size, where the body names it (`rateLimit.limit`)


class FatalApiError(IngestError):
    """The API refused us for good (bad key, forbidden, retries exhausted): stop the run."""


class AuthenticationFailed(FatalApiError):
    """The API rejected the key (401): nothing will work until API_KEY is fixed."""


class RetriesExhausted(FatalApiError):
    """A request failed every attempt it had: the API is down or unreachable; rerun later to resume."""


class CursorExpired(IngestError):
    """The cursor is past its lifetime: rebuild it from the last committed position."""


class CursorRejected(IngestError):
    """The API does not accept this cursor at all: restart the partition from a bound it accepts."""


class BuiltCursorsRefused(IngestError):
    """The API refuses cursors we build, so a bounded partition cannot start: cover it from the top."""


class StreamTokenInvalid(IngestError):
    """The feed token expired or was revoked: get a new one and send again."""


class BudgetRetired(IngestError):
    """This budget may not be spent any more (its pool proved shared): its partition goes to another budget."""


class HandedBack(IngestError):
    """A chain gave its partition back between pages: its budget cannot send for a while and another can."""


class StreamAccessDenied(IngestError):
    """stream-access will not grant a token: use the documented endpoint instead."""


class RepeatedCursor(FatalApiError):
    """The server returned a cursor it already returned: following it would loop forever."""


class DatabaseError(IngestError):
    """PostgreSQL failed or went away: the run stops; the checkpoint lets a rerun resume."""


class Stopped(IngestError):
    """A signal asked the run to stop; checkpoints are saved."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.exit_code = 128 + signum
