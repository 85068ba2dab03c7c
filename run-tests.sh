#!/usr/bin/env bash
# The one test command: creates or reuses .venv, installs the pinned requirements, lints (ruff), checks
# types (mypy over ingest/, settings in pyproject.toml), runs pytest in 4 worker processes.
# Extra arguments go to pytest, e.g. ./run-tests.sh -k limiter
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements-installed
if [ ! -f "$stamp" ] || ! cmp -s <(cat requirements.txt requirements-dev.txt) "$stamp"; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  cat requirements.txt requirements-dev.txt > "$stamp"
fi
.venv/bin/ruff check .
.venv/bin/mypy
# PYTEST_WORKERS=0 runs the tests in this process (for a debugger); see requirements-dev.txt for why 4.
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-4}" "$@"
