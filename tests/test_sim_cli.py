"""`python -m datasync_sim`: one line when listening, knobs as flags, clean exit on SIGTERM/SIGINT."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from datasync_sim.__main__ import build_parser, config_from_args
from tests.fix_sim import KEY

ROOT = Path(__file__).resolve().parent.parent


def _start(*args: str) -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen([sys.executable, "-m", "datasync_sim", "--port", "0", *args], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    return child, line


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_prints_one_line_serves_and_exits_0_on_signal(sig):
    child, line = _start("--profile", "live", "--events", "5000", "--seed", "3", "--api-key", KEY)
    try:
        m = re.fullmatch(r"datasync_sim listening on (http://127\.0\.0\.1:\d+) \(profile live, 5000 events\)\n", line)
        assert m, line
        r = requests.get(m.group(1) + "/api/v1/events", params={"limit": 1}, headers={"X-API-Key": KEY}, timeout=5)
        assert (r.status_code, r.json()["meta"]["total"], r.headers["X-RateLimit-Limit"]) == (200, 5000, "10")
        child.send_signal(sig)
        assert child.wait(timeout=5) == 0
        assert child.stdout.read() == ""
    finally:
        child.kill()
        child.wait()


def test_every_knob_is_a_flag_that_overrides_the_profile():
    args = build_parser().parse_args(["--profile", "tight", "--events", "10", "--window-s", "7",
                                      "--no-penalize-early-retries", "--feed-throttle", "shared",
                                      "--p-5xx", "0.5", "--api-key", KEY])
    cfg = config_from_args(args)
    assert (cfg.profile, cfg.events, cfg.window_s, cfg.penalize_early_retries, cfg.feed_throttle, cfg.p_5xx,
            cfg.api_key, cfg.events_limit) == ("tight", 10, 7.0, False, "shared", 0.5, KEY, 3)


def test_bad_knob_value_is_a_one_line_error():
    child = subprocess.run([sys.executable, "-m", "datasync_sim", "--port", "0", "--p-reset", "2"], cwd=ROOT,
                           capture_output=True, text=True, timeout=10)
    assert (child.returncode, child.stdout, child.stderr) == (2, "", "error: p_reset must be within [0, 1], got 2.0\n")


def test_held_back_events_are_announced_and_released_over_http():
    child, line = _start("--profile", "fast", "--events", "5000", "--late-events", "5", "--late-where", "both",
                         "--new-events", "7")
    try:
        m = re.fullmatch(r"datasync_sim listening on (http://127\.0\.0\.1:\d+) \(profile fast, 5000 events, "
                         r"12 held back until POST /__sim/release-late\)\n", line)
        assert m, line
        released = requests.post(m.group(1) + "/__sim/release-late", timeout=5).json()
        r = requests.get(m.group(1) + "/api/v1/events", params={"limit": 1}, headers={"X-API-Key": KEY}, timeout=5)
        assert released == {"released": 12, "late": 5, "new": 7, "total": 5012}
        assert r.json()["meta"]["total"] == 5012
    finally:
        child.kill()
        child.wait()
