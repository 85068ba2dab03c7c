"""The pinned requirements install from wheels on every Python the README promises (3.11-3.14).

A pin without a wheel for some Python and without an sdist makes `pip install -r requirements.txt` fail
there (pgserver 0.1.4 had wheels only up to CPython 3.12). These tests ask the package registry, as
`pip download --only-binary=:all: --python-version X` does, for this machine's platform.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13", "3.14")


def pip_download(tmp_path: Path, *requirements: str, python: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
         "--python-version", python, "--dest", str(tmp_path), *requirements],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )


def test_the_readme_promises_the_pythons_checked_here() -> None:
    readme = (ROOT / "README.md").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f"Python {SUPPORTED_PYTHONS[0]}" in readme and f"{SUPPORTED_PYTHONS[-1]}" in readme
    assert f'requires-python = ">={SUPPORTED_PYTHONS[0]}"' in pyproject


@pytest.mark.registry
@pytest.mark.parametrize("python", SUPPORTED_PYTHONS)
def test_every_pin_resolves_to_wheels(tmp_path: Path, python: str) -> None:
    # requirements-dev.txt includes requirements.txt: the runtime pins and the test tools at once
    assert (ROOT / "requirements-dev.txt").read_text().startswith("-r requirements.txt\n")
    proc = pip_download(tmp_path, "-r", "requirements-dev.txt", python=python)
    assert proc.returncode == 0, proc.stderr
    downloaded = sorted(p.name for p in tmp_path.iterdir())
    assert downloaded and [name for name in downloaded if not name.endswith(".whl")] == []


@pytest.mark.registry
def test_a_pin_without_a_wheel_for_that_python_is_caught(tmp_path: Path) -> None:
    # The former embedded server: wheels for CPython <= 3.12 only, no sdist. Guards the test above
    # against a pip that would not honour --python-version.
    proc = pip_download(tmp_path, "--no-deps", "pgserver==0.1.4", python="3.13")
    assert proc.returncode != 0
    assert "No matching distribution found for pgserver==0.1.4" in proc.stderr
