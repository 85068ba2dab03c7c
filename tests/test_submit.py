"""`submit` end to end: the simulator over HTTP, a real PostgreSQL, the CLI in this process."""

from __future__ import annotations

import io
import os

import psycopg
import pytest
import requests

from ingest.commands.cli import main
from ingest.commands.submit import IdLines, _post_once
from ingest.errors import FatalApiError, RateLimited, RetryableApiError
from tests.fix_ingest import API_KEY, REPO_URL, STORED_EVENTS, ingest_args, sim_stats, stored_truth


def submit(sim_url: str, database_url: str, *flags: str) -> int:
    return main(ingest_args(sim_url, database_url, "submit", *flags))


def api_submissions(sim_url: str) -> dict:
    return requests.get(sim_url + "/api/v1/submissions", headers={"X-API-Key": API_KEY}, timeout=10).json()


def sim_submissions(sim_url: str) -> list[dict]:
    return requests.get(sim_url + "/__sim/submissions", timeout=10).json()


def posts_seen(sim_url: str) -> dict:
    """Submission requests the simulator answered, by status."""
    return sim_stats(sim_url)["requests"].get("submissions", {})


def recorded(database_url: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT event_count, ids_sent, submission_number, remaining, repo, answer->'data'->>'submissionId'"
            " = submission_id FROM ingest_submissions ORDER BY submission_number"
        ).fetchall()


def delete_events(database_url: str, n: int) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM ingested_events WHERE id IN (SELECT id FROM ingested_events LIMIT %s)", (n,))


def test_submit_hands_in_exactly_the_stored_ids_and_records_the_answer(
    ingested: str, database_url: str, capsys: pytest.CaptureFixture
) -> None:
    capsys.readouterr()
    assert submit(ingested, database_url, "--repo", REPO_URL, "--yes") == 0
    out = capsys.readouterr().out.splitlines()
    listing = api_submissions(ingested)
    (handed_in,) = sim_submissions(ingested)
    truth = stored_truth(database_url)

    assert out[0] == f"verify: API total {STORED_EVENTS:,}; stored {STORED_EVENTS:,}; quarantined 0"
    assert out[1] == (f"submission #1 accepted: {STORED_EVENTS:,} ids counted by the API ({STORED_EVENTS:,} sent);"
                      " 4 submissions remaining")
    assert out[2].startswith(f"submission id {listing['data'][0]['submissionId']}, submitted at ")
    assert len(out) == 3
    assert [(s["submissionNumber"], s["eventCount"], s["githubRepoUrl"]) for s in listing["data"]] == [
        (1, STORED_EVENTS, REPO_URL)]
    assert listing["meta"] == {"total": 1, "remainingSubmissions": 4}
    # The simulator's digest of what it received is the digest of exactly the stored ids.
    assert (handed_in["eventCount"], handed_in["validCount"], handed_in["sha256"], handed_in["matchesExpected"]) == (
        truth["count"], truth["count"], truth["sha256"], True)
    assert recorded(database_url) == [(STORED_EVENTS, STORED_EVENTS, 1, 4, REPO_URL, True)]


def test_sixth_submission_is_refused_by_the_api_with_a_clear_error(
    ingested: str, database_url: str, capsys: pytest.CaptureFixture
) -> None:
    codes = [submit(ingested, database_url, "--repo", REPO_URL, "--yes") for _ in range(6)]
    err = capsys.readouterr().err

    assert codes == [0, 0, 0, 0, 0, 1]
    assert err.splitlines()[-1] == (
        "error: the API refused the submission: this key has used all 5 submissions it allows")
    assert posts_seen(ingested) == {"200": 5 + 1, "403": 1}  # 5 POSTs + the GET explaining the refusal; 1 refused
    assert api_submissions(ingested)["meta"] == {"total": 5, "remainingSubmissions": 0}
    assert [row[2:4] for row in recorded(database_url)] == [(1, 4), (2, 3), (3, 2), (4, 1), (5, 0)]


def test_incomplete_database_is_refused_and_nothing_is_sent(
    ingested: str, database_url: str, capsys: pytest.CaptureFixture
) -> None:
    delete_events(database_url, 10)
    capsys.readouterr()
    code = submit(ingested, database_url, "--repo", REPO_URL, "--yes")
    captured = capsys.readouterr()

    assert code == 1
    assert captured.out.splitlines() == [
        f"verify: API total {STORED_EVENTS:,}; stored {STORED_EVENTS - 10:,}; quarantined 0"]
    assert captured.err.splitlines()[-1] == (
        "error: submit refused, nothing sent: verify fails: 10 events missing: 4,990 accounted for"
        f" (4,990 stored + 0 quarantined) of {STORED_EVENTS:,} (rerun the ingestion, or pass --force)")
    assert posts_seen(ingested) == {}
    assert sim_submissions(ingested) == []
    assert recorded(database_url) == []


def test_force_submits_an_incomplete_database(ingested: str, database_url: str, capsys: pytest.CaptureFixture) -> None:
    delete_events(database_url, 10)
    capsys.readouterr()
    code = submit(ingested, database_url, "--repo", REPO_URL, "--yes", "--force")
    out = capsys.readouterr().out.splitlines()

    assert code == 0
    assert out[1] == ("submit: --force: submitting although verify fails: 10 events missing: 4,990 accounted for"
                      f" (4,990 stored + 0 quarantined) of {STORED_EVENTS:,}")
    assert [(s["eventCount"], s["sha256"]) for s in sim_submissions(ingested)] == [
        (STORED_EVENTS - 10, stored_truth(database_url)["sha256"])]


@pytest.mark.parametrize("reply", ["n\n", "\n", "", "whatever\n"], ids=["no", "enter", "eof", "other"])
def test_declined_confirmation_sends_nothing(
    ingested: str, database_url: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, reply: str
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(reply))
    capsys.readouterr()
    code = submit(ingested, database_url, "--repo", REPO_URL)
    out = capsys.readouterr().out

    assert code == 1
    assert (f"The API allows only 5 submissions per key. Submit {STORED_EVENTS:,} ids to {ingested}"
            f" for {REPO_URL}? [y/N] " in out)
    assert out.rstrip().endswith("submit: not confirmed, nothing sent")
    assert posts_seen(ingested) == {}
    assert recorded(database_url) == []


def test_confirmed_with_y_submits(
    ingested: str, database_url: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert submit(ingested, database_url, "--repo", REPO_URL) == 0
    assert [s["eventCount"] for s in sim_submissions(ingested)] == [STORED_EVENTS]


@pytest.mark.parametrize(("flags", "message"), [
    ((), "error: submit needs --repo URL: the repository URL to send with the ids"),
    (("--repo", "  "), "error: submit needs --repo URL: the repository URL to send with the ids"),
    (("--repo", "github.com/x/y"), "error: --repo must be an http(s) URL, got 'github.com/x/y'"),
])
def test_missing_or_bad_repo_is_a_config_error(capsys: pytest.CaptureFixture, flags: tuple, message: str) -> None:
    # Nothing listens on port 9 and no database is named: the check comes before any connection.
    code = main(["submit", "--api-base-url", "http://127.0.0.1:9", "--api-key", API_KEY, "--env-file", os.devnull,
                 "--log-level", "WARNING", *flags])
    assert (code, capsys.readouterr().err.splitlines()[-1]) == (2, message)


class _Refusing:
    """A client whose request fails with `error`, after reading the body when `reads_body`."""

    def __init__(self, error: Exception, reads_body: bool) -> None:
        self.error = error
        self.reads_body = reads_body

    def request(self, method: str, path: str, **kwargs):
        if self.reads_body:
            kwargs["data"].started = True  # as when the first chunk is asked for
        raise self.error


@pytest.mark.parametrize(("error", "reads_body", "raised"), [
    (RetryableApiError("connection failed: ConnectionError"), False, RetryableApiError),  # refused: resend
    (RetryableApiError("timed out: ConnectTimeout"), False, RetryableApiError),
    (RateLimited("HTTP 429", 429, 1.0), True, RateLimited),  # an explicit refusal: resend after Retry-After
    (RetryableApiError("connection failed: ConnectionError"), True, FatalApiError),  # may be recorded
    (RetryableApiError("timed out: ReadTimeout"), True, FatalApiError),
    (RetryableApiError("HTTP 502", 502), True, FatalApiError),
])
def test_only_a_submission_that_cannot_have_been_recorded_is_retryable(
    error: Exception, reads_body: bool, raised: type
) -> None:
    with pytest.raises(raised) as caught:
        _post_once(_Refusing(error, reads_body), IdLines(None, 1), REPO_URL)  # type: ignore[arg-type]
    assert type(caught.value) is raised
    if raised is FatalApiError:
        assert "it may have been recorded: check GET /api/v1/submissions before submitting again" in str(caught.value)
