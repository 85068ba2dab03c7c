"""The CLI's contract: meaningless combinations refused in one line, every error printed once, and the
demo's verify/export checked against a simulator of the size the demo run recorded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.commands.cli import main

NO_ENV = ["--env-file", os.devnull]


@pytest.mark.parametrize(("argv", "message"), [
    (["submit", "--demo", "--repo", "https://x/y"],
     "--demo applies to run, status, verify and export only, not to submit"),
    (["status", "--reset"], "--reset applies to run only, not to status"),
    (["verify", "--repo", "https://x/y"], "--repo applies to submit only, not to verify"),
    (["run", "--yes"], "--yes applies to submit only, not to run"),
    (["export", "--file", "ids.txt"], "--file applies to submit only, not to export"),
    (["submit", "--out", "ids.txt"], "--out applies to export only, not to submit"),
    (["verify", "--force"], "--force applies to submit and export only, not to verify"),
    (["--demo-events", "10"], "--demo-events applies to --demo only"),
    (["export", "--demo-profile", "live"], "--demo-profile applies to --demo only"),
    (["--demo", "--api-key", "ds_0"], "--api-key and --demo exclude each other: the demo uses its own simulator"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else "")
def test_meaningless_combinations_are_refused_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    assert main([*argv, *NO_ENV]) == 2
    assert capsys.readouterr() == ("", f"error: {message}\n")


def test_an_error_is_printed_once_not_also_logged(capsys: pytest.CaptureFixture) -> None:
    assert main(["verify", *NO_ENV, "--api-base-url", "http://127.0.0.1:9"]) == 2
    assert capsys.readouterr() == ("", "error: API_KEY is not set (environment, .env or --api-key)\n")


@pytest.mark.slow
def test_demo_verify_and_export_check_against_the_size_the_demo_run_recorded(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = ["--database-url", database_url, *NO_ENV, "--log-level", "WARNING"]
    assert main(["--demo", "--demo-events", "3000", *db]) == 0
    capsys.readouterr()

    assert main(["verify", "--demo", *db]) == 0  # 3,000 events, not the default 3,000,000
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "API total: 3,000; stored: 3,000; quarantined (distinct, not stored): 0; time range covered: yes",
        "verify: complete"]
    out = tmp_path / "ids.txt"
    assert main(["export", "--demo", "--out", str(out), *db]) == 0
    assert len(out.read_text().splitlines()) == 3000

    capsys.readouterr()
    # An explicit size wins, and a simulator of another size serves another dataset: refused.
    assert main(["verify", "--demo", "--demo-events", "4000", *db]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        "error: this store holds events from demo simulator (3,000 events, seed 1),"
        " not demo simulator (4,000 events, seed 1)")
