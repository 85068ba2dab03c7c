"""`export` end to end (the simulator over HTTP, a real PostgreSQL, the CLI in this process), and
`submit --file` sending what export wrote."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import psycopg
import pytest
import requests

from ingest.commands.cli import main
from tests.fix_ingest import REPO_URL, STORED_EVENTS, expected, ingest_args, stored_truth


def export(sim_url: str, database_url: str, *flags: str) -> int:
    return main(ingest_args(sim_url, database_url, "export", *flags))


def stored_ids(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return sorted(row[0] for row in conn.execute("SELECT id::text FROM ingested_events"))


def test_export_writes_every_stored_id_once_in_ascending_order(
    ingested: str, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "ids.txt"
    capsys.readouterr()
    assert export(ingested, database_url, "--out", str(out)) == 0
    lines = capsys.readouterr().out.splitlines()

    text = out.read_text()
    assert text.splitlines() == stored_ids(database_url)
    assert text.endswith("\n") and len(text) == STORED_EVENTS * 37
    # exactly the simulator's ids: its digest is over the sorted ids joined by newlines
    assert hashlib.sha256(text.rstrip("\n").encode()).hexdigest() == expected(ingested)["sha256"]
    assert lines[0] == f"verify: API total {STORED_EVENTS:,}; stored {STORED_EVENTS:,}; quarantined 0"
    assert lines[1].startswith(f"export: {STORED_EVENTS:,} ids written to {out} ({STORED_EVENTS * 37:,} bytes) in ")
    assert [p.name for p in tmp_path.iterdir()] == ["ids.txt"]  # no temporary file left behind


def test_export_refuses_an_incomplete_database_and_keeps_the_old_file(
    ingested: str, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM ingested_events WHERE id IN (SELECT id FROM ingested_events LIMIT 10)")
    out = tmp_path / "ids.txt"
    out.write_text("an earlier export\n")
    capsys.readouterr()

    assert export(ingested, database_url, "--out", str(out)) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: export refused, nothing written: verify fails: 10 events missing: 4,990 accounted for"
        f" (4,990 stored + 0 quarantined) of {STORED_EVENTS:,} (rerun the ingestion, or pass --force)"]
    assert out.read_text() == "an earlier export\n"

    assert export(ingested, database_url, "--out", str(out), "--force") == 0
    assert out.read_text().splitlines() == stored_ids(database_url)
    assert ("export: --force: exporting although verify fails: 10 events missing: 4,990 accounted for"
            f" (4,990 stored + 0 quarantined) of {STORED_EVENTS:,}") in capsys.readouterr().out


def test_export_across_several_id_chunks_writes_them_in_order_end_to_end(
    ingested: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ingest.commands.hand_over.CHUNK_IDS", 700)  # 5,000 ids: 8 chunks, the last one short
    out = tmp_path / "ids.txt"
    assert export(ingested, database_url, "--out", str(out)) == 0
    text = out.read_text()
    assert text.splitlines() == stored_ids(database_url)
    assert hashlib.sha256(text.rstrip("\n").encode()).hexdigest() == expected(ingested)["sha256"]


class FullDisk:
    """A file whose disk fills up once `room` bytes are written: the next write fails with ENOSPC."""

    def __init__(self, file, room: int) -> None:
        self._file, self.room, self.written = file, room, 0

    def write(self, chunk: bytes) -> int:
        if self.written + len(chunk) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.written += self._file.write(chunk)
        return len(chunk)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def test_a_failed_export_leaves_no_partial_file_and_the_earlier_export_as_it_was(
    ingested: str, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ingest.commands.hand_over.CHUNK_IDS", 1_000)
    out = tmp_path / "ids.txt"
    out.write_text("an earlier export\n")
    disks: list[FullDisk] = []
    real_fdopen = os.fdopen

    def fdopen(fd: int, mode: str) -> FullDisk:
        disks.append(FullDisk(real_fdopen(fd, mode), room=2 * 1_000 * 37))  # two chunks fit, the third fails
        return disks[-1]

    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(os, "fdopen", fdopen)
        code = export(ingested, database_url, "--out", str(out))
    assert code == 1
    assert capsys.readouterr().err == f"error: writing {out} failed, {out} left as it was: No space left on device\n"
    assert [disk.written for disk in disks] == [2 * 1_000 * 37]  # it failed mid-file, not before the first byte
    assert out.read_text() == "an earlier export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ids.txt"]  # no partial file beside it


def test_export_into_a_directory_is_a_config_error(database_url: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    # Nothing listens on port 9: the check comes before any request.
    assert main(ingest_args("http://127.0.0.1:9", database_url, "export", "--out", str(tmp_path))) == 2
    assert capsys.readouterr().err == f"error: --out {tmp_path} is a directory; name the file to write\n"


def test_submit_sends_the_file_export_wrote(
    ingested: str, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "ids.txt"
    assert export(ingested, database_url, "--out", str(out)) == 0
    with psycopg.connect(database_url) as conn:  # the database no longer matters: the file is sent
        conn.execute("DELETE FROM ingested_events")
    capsys.readouterr()

    code = main(ingest_args(ingested, database_url, "submit", "--file", str(out), "--repo", REPO_URL, "--yes"))
    lines = capsys.readouterr().out.splitlines()

    assert code == 0
    assert lines[0] == f"file: {out} holds {STORED_EVENTS:,} distinct ids; API total {STORED_EVENTS:,}"
    assert lines[1] == (f"submission #1 accepted: {STORED_EVENTS:,} ids counted by the API ({STORED_EVENTS:,} sent);"
                        " 4 submissions remaining")
    (handed_in,) = requests.get(ingested + "/__sim/submissions", timeout=10).json()
    assert (handed_in["eventCount"], handed_in["matchesExpected"]) == (STORED_EVENTS, True)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


A, B, C = ("00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b",
           "00000000-0000-4000-8000-00000000000c")


@pytest.mark.parametrize(("lines", "error"), [
    ([A, C, B], "line 3: ids are not in ascending order or repeat (write the file with python ingest.py export)"),
    ([A, B, B], "line 3: ids are not in ascending order or repeat (write the file with python ingest.py export)"),
    ([A, B.upper()], f"line 2: not an event id as export writes it: {(B.upper() + chr(10)).encode()!r}"),
    ([A, "x"], "line 2: not an event id as export writes it: b'x\\n'"),
], ids=["unsorted", "repeated", "upper case", "not an id"])
def test_submit_refuses_a_file_export_did_not_write_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture, lines: list[str], error: str
) -> None:
    path = write_lines(tmp_path / "ids.txt", lines)
    # Nothing listens on port 9 and no database is named: the file is checked before any connection.
    code = main(["submit", "--api-base-url", "http://127.0.0.1:9", "--api-key", "ds_" + "0" * 32, "--env-file",
                 "/dev/null", "--file", str(path), "--repo", REPO_URL, "--yes"])
    assert (code, capsys.readouterr().err) == (2, f"error: {path}, {error}\n")


def test_submit_refuses_a_file_with_fewer_ids_than_the_api_reports_unless_forced(
    ingested: str, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = write_lines(tmp_path / "ids.txt", stored_ids(database_url)[:-1])
    args = ingest_args(ingested, database_url, "submit", "--file", str(path), "--repo", REPO_URL, "--yes")
    capsys.readouterr()
    assert main(args) == 1
    assert capsys.readouterr().err == (
        f"error: submit refused, nothing sent: the file holds {STORED_EVENTS - 1:,} of the {STORED_EVENTS:,}"
        " events the API reports (damaged events that verify counts as quarantined are not in it)"
        " (pass --force to send it as it is)\n")
    assert main([*args, "--force"]) == 0
    assert stored_truth(database_url)["count"] == STORED_EVENTS  # the database was not touched
