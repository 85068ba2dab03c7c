"""`status` while another process ingests: the run's progress, read from the database."""

from __future__ import annotations

import re
import signal
import time

import pytest

from datasync_sim import SimServer, profile_config
from ingest.commands.cli import main
from tests.fix_faults import wait_for_rows_of_running
from tests.fix_ingest import ingest_args, run_ingest, spawn_ingest
from tests.fix_sim import hold_after


def status_until_figures(sim_url: str, database_url: str, capsys: pytest.CaptureFixture, at_least: int,
                         throttled: int = 0, timeout_s: float = 30.0) -> list[str]:
    """`status`, asked again until the run has recorded live figures of at least `at_least` events stored
    and `throttled` 429s (the run records them every progress interval, after its writer's commits)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        capsys.readouterr()
        assert main(ingest_args(sim_url, database_url, "status")) == 0
        lines = capsys.readouterr().out.splitlines()
        recorded = re.match(r"  as the run saw it [\d.]+ s ago: ([\d,]+) .* 429s (\d+)", lines[-1])
        if recorded and int(recorded.group(1).replace(",", "")) >= at_least and int(recorded.group(2)) >= throttled:
            return lines
        time.sleep(0.1)
    raise AssertionError(f"no recorded progress of {at_least} events and {throttled} 429s after {timeout_s} s:"
                         f" {lines[-1]}")


@pytest.mark.slow
def test_status_shows_the_progress_of_a_run_in_another_process(database_url: str,
                                                               capsys: pytest.CaptureFixture) -> None:
    cfg = profile_config("fast", events=20_000, seed=31)
    with SimServer(cfg) as server:
        release = hold_after(server, 2_000)
        child = spawn_ingest(server.url, database_url, "--page-size", "500", "--concurrency", "2",
                             "--progress-interval", "0.2")
        try:
            wait_for_rows_of_running(database_url, 1_000, child)
            lines = status_until_figures(server.url, database_url, capsys, 1_000)
        finally:
            child.send_signal(signal.SIGTERM)
            release.set()
            child.communicate(timeout=15)
        capsys.readouterr()
        assert main(ingest_args(server.url, database_url, "status")) == 0
        after = capsys.readouterr().out.splitlines()

    stored = int(re.fullmatch(r"events stored: ([\d,]+)", lines[0]).group(1).replace(",", ""))
    assert re.fullmatch(r"lock: held by datasync-ingest lock pid=\d+ .*", lines[-3]), lines[-3]
    progress = re.fullmatch(r"run in progress: #1 \((auto|[a-z+#\d]+)\), [\d,]+ s so far:"
                            r" ([\d,]+) events stored by it, [\d,]+ events/s", lines[-2])
    assert progress, lines[-2]
    # the first run stored every row; status read its count a moment after the table's
    assert int(progress.group(2).replace(",", "")) >= stored >= 1_000
    # what the live bar shows: stored of meta.total, rate, ETA, and the 429s of each budget of the run
    figures = re.fullmatch(r"  as the run saw it [\d.]+ s ago: ([\d,]+) of 20,000 events \([\d.]+%\),"
                           r" [\d,]+ events/s, ETA [\d,]+ s, 429s (\d+) \((.*)\)", lines[-1])
    assert figures, lines[-1]
    assert 1_000 <= int(figures.group(1).replace(",", "")) <= stored
    per_budget = [part.rsplit(" ", 1) for part in figures.group(3).split(", ")]
    assert [name for name, _ in per_budget] == ["feed", "header", "query"]  # the budgets of one key
    assert sum(int(n) for _, n in per_budget) == int(figures.group(2))
    assert after[-1] == "lock: free (no run in progress)"  # stopped: nothing in progress


@pytest.mark.slow
def test_status_shows_the_429s_the_running_process_counted(database_url: str, capsys: pytest.CaptureFixture) -> None:
    # The feed answers 429 from its third request within a second (a burst of 2, then one a second): the
    # planning probe and the first requests of two chains are more than that, whatever the machine's speed.
    cfg = profile_config("fast", events=20_000, seed=31, feed_throttle="soft", feed_rpm=60.0, feed_burst=2)
    with SimServer(cfg) as server:
        release = hold_after(server, 2_000)
        child = spawn_ingest(server.url, database_url, "--strategy", "feed", "--page-size", "500",
                             "--concurrency", "2", "--progress-interval", "0.2")
        try:
            lines = status_until_figures(server.url, database_url, capsys, 1_000, throttled=1)
        finally:
            child.send_signal(signal.SIGTERM)
            release.set()
            out, _ = child.communicate(timeout=15)
    throttled = int(re.search(r" 429s (\d+)$", lines[-1]).group(1))
    # what status showed is what a live progress line of the running process showed
    assert throttled >= 1 and re.search(f", 429s {throttled},", out), (lines[-1], out)


def test_no_progress_line_when_no_run_holds_the_lock(database_url: str, capsys: pytest.CaptureFixture) -> None:
    with SimServer(profile_config("fast", events=1_000, seed=32)) as server:
        assert run_ingest(server.url, database_url) == 0
        capsys.readouterr()
        assert main(ingest_args(server.url, database_url, "status")) == 0
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("run in progress")]
