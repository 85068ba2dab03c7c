"""Progress: a live bar on a terminal (shown by running the ingester under a pseudo-terminal), the
periodic log line everywhere else (pipes, containers, cron)."""

from __future__ import annotations

import io
import os
import pty
import queue
import re
import subprocess
import sys

import pytest

from ingest.budgets.throttle import Throttle
from ingest.commands.progress import Progress
from ingest.stats import Stats
from tests.fix_clock import FakeClock
from tests.fix_ingest import ROOT

BAR_DONE = re.compile(r"events 100%\|█+\| 3\.00k/3\.00k \[[0-9:]+<00:00, [0-9.]+k? events/s,"
                      r" 429s 0 \(feed 0, header 0, query 0\), retries 0, limiter wait 0 s\]")
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| [A-Z]+ +\| ")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_that_learns_the_total_and_ends_at_the_stored_count() -> None:
    stats, screen = Stats(), Terminal()
    progress = Progress(stats, [Throttle("feed")], queue.Queue(), 5.0, 200, stream=screen)
    stats.stored = 300
    progress.maybe_log()
    stats.total_hint, stats.stored, stats.throttled = 1000, 800, 3
    progress.close()
    progress.close()  # idempotent

    draws = screen.getvalue().split("\r")
    assert draws[1].startswith("events 200 [")  # total unknown yet: a counter
    assert re.fullmatch(r"events 100%\|[█#]+\| 1\.00k/1\.00k \[.*, 429s 3, retries 0, limiter wait 0 s\]\n", draws[-1])


def test_elsewhere_a_line_every_interval_and_no_bar(capsys: pytest.CaptureFixture) -> None:
    from ingest.commands.logs import configure_logging

    configure_logging("INFO")  # stderr is pytest's capture here, not a terminal
    clock, stats = FakeClock(start=100.0), Stats(total_hint=1000)
    progress = Progress(stats, [Throttle("feed")], queue.Queue(), 5.0, 0, clock=clock)
    stats.stored = 250
    progress.maybe_log()  # before the interval: nothing
    clock.now += 5.0
    progress.maybe_log()
    progress.close()  # nothing to close
    err = capsys.readouterr().err

    assert "\r" not in err
    (line,) = err.splitlines()
    assert re.fullmatch(LOG_LINE.pattern + r"progress: 250 events stored \(25\.0% of 1,000\), [\d,]+ events/s,"
                        r" ETA \d+ s, 429s 0, retries 0, limiter wait 0\.0 s, queue 0", line)


def demo_command(database_url: str) -> list[str]:
    return [sys.executable, str(ROOT / "ingest.py"), "--demo", "--demo-events", "3000", "--database-url",
            database_url, "--env-file", os.devnull]


def run_under_a_pseudo_terminal(command: list[str]) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; exit code and screen text.

    The terminal is left unsized (0 columns), as `script` and some `docker run -t` leave it.
    """
    main, child_end = pty.openpty()
    child = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=child_end, stderr=child_end)
    os.close(child_end)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    return child.wait(timeout=120), b"".join(chunks).decode()


@pytest.mark.slow
def test_the_ingester_draws_a_live_bar_on_a_terminal(database_url: str) -> None:
    code, screen = run_under_a_pseudo_terminal(demo_command(database_url))
    assert code == 0, screen
    lines = screen.replace("\r\n", "\n").split("\n")
    bar_line = next(line for line in lines if "events" in line and "%|" in line)
    draws = bar_line.split("\r")
    assert BAR_DONE.fullmatch(draws[-1]), draws[-1]  # closed at its final state, then a new line
    # every log line starts on a line of its own, never after a bar on the same line
    logged = [line for line in lines if " | INFO " in line]
    assert logged and all(LOG_LINE.match(line) for line in logged), logged
    assert lines.index(bar_line) < next(i for i, line in enumerate(lines) if "ingestion complete" in line)


@pytest.mark.slow
def test_no_bar_when_the_output_is_a_pipe(database_url: str) -> None:
    proc = subprocess.run(demo_command(database_url), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "%|" not in proc.stderr
    assert all(LOG_LINE.match(line) for line in proc.stderr.splitlines()), proc.stderr
    assert "ingestion complete: 3,000 events in the table" in proc.stderr
