"""`/api/v1/submissions`: hand-ins of ingested ids, at most `MAX_SUBMISSIONS` per key."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson

from .digest import IdDigest, uuid_raw
from .timefmt import iso_ms

MAX_SUBMISSIONS = 5


class SubmissionError(Exception):
    """A refused submission: HTTP `status`, API `code`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Submission:
    number: int
    submission_id: str
    key: str
    event_count: int  # distinct non-empty lines
    valid_count: int  # distinct lines that are UUIDs
    sha256: str  # of the sorted distinct valid ids, as /__sim/expected
    repo: str | None
    submitted_at_ms: int
    time_to_submit_ms: int

    def public(self) -> dict:
        return {
            "submissionId": self.submission_id,
            "eventCount": self.event_count,
            "githubRepoUrl": self.repo,
            "submittedAt": iso_ms(self.submitted_at_ms),
            "timeToSubmit": time_to_submit(self.time_to_submit_ms),
            "submissionNumber": self.number,
        }


def time_to_submit(ms: int) -> dict:
    seconds = ms // 1000
    return {"ms": ms, "seconds": seconds, "minutes": round(ms / 60_000, 2),
            "formatted": f"{seconds // 60}m {seconds % 60}s"}


_LINE = re.compile(r"[^\n]+")
_LINE_BYTES = re.compile(rb"[^\n]+")


def _lines(text: str | bytes) -> Iterator[str]:
    # one line at a time: a list of 3M line strings would cost ~250 MB
    if isinstance(text, bytes):
        return (m.group().decode("utf-8", "replace") for m in _LINE_BYTES.finditer(text))
    return (m.group() for m in _LINE.finditer(text))


def parse_ids(body: bytes, content_type: str, query_repo: str | None) -> tuple[Iterable[str], str | None]:
    """The submitted id lines (lazily) and repo URL from a text/plain or JSON body."""
    if content_type.startswith("application/json"):
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise SubmissionError(400, "INVALID_REQUEST", "Body is not valid JSON") from None
        ids = obj.get("ids") if isinstance(obj, dict) else None
        if isinstance(ids, list) and all(isinstance(i, str) for i in ids):
            lines: Iterable[str] = ids
        elif isinstance(ids, str):
            lines = _lines(ids)
        else:
            raise SubmissionError(400, "INVALID_REQUEST", "Field 'ids' must be a string of ids joined by \\n")
        return lines, obj.get("githubRepoUrl") or query_repo
    return _lines(body), query_repo


class SubmissionStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, list[Submission]] = {}

    def submit(self, key: str, lines: Iterable[str], repo: str | None, first_use_ms: int) -> Submission:
        with self._lock:
            if len(self._by_key.get(key, [])) >= MAX_SUBMISSIONS:
                raise SubmissionError(403, "SUBMISSION_LIMIT_REACHED",
                                      f"Maximum of {MAX_SUBMISSIONS} submissions reached for this API key")
        digest = IdDigest()
        invalid: set[str] = set()
        for line in lines:
            line = line.strip()
            if not line:
                continue
            raw = uuid_raw(line)
            if raw is None:
                invalid.add(line)
            else:
                digest.add(raw)
        valid, sha = digest.finish()
        if valid + len(invalid) == 0:
            raise SubmissionError(400, "INVALID_REQUEST", "No event ids submitted")
        now = int(time.time() * 1000)
        with self._lock:
            mine = self._by_key.setdefault(key, [])
            if len(mine) >= MAX_SUBMISSIONS:
                raise SubmissionError(403, "SUBMISSION_LIMIT_REACHED",
                                      f"Maximum of {MAX_SUBMISSIONS} submissions reached for this API key")
            sub = Submission(len(mine) + 1, str(uuid.uuid4()), key, valid + len(invalid), valid, sha,
                             repo, now, max(0, now - first_use_ms))
            mine.append(sub)
            return sub

    def of_key(self, key: str) -> list[Submission]:
        with self._lock:
            return list(self._by_key.get(key, []))

    def all(self) -> list[Submission]:
        with self._lock:
            return [s for subs in self._by_key.values() for s in subs]


def answer(sub: Submission) -> dict:
    remaining = MAX_SUBMISSIONS - sub.number
    return {
        "success": True,
        "data": {**sub.public(), "remainingSubmissions": remaining},
        "message": f"Submission #{sub.number} received with {sub.event_count:,} event IDs. "
                   f"{remaining} submissions remaining.",
    }
