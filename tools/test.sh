#!/usr/bin/env bash
# Runs the test suite in a virtualenv of its own, installing what it needs first.
#   bash tools/test.sh [pytest arguments]        PYTEST_WORKERS=N: N parallel workers (0: serial)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[test]"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# One pytest worker per core, at most 4 (each holds a TensorFlow of its own): most tests wait
# on single-threaded subprocesses, so a serial run leaves a core idle. PYTEST_WORKERS=0: serial.
CORES="$(nproc 2>/dev/null || echo 2)"
WORKERS="${PYTEST_WORKERS:-$(( CORES < 4 ? CORES : 4 ))}"
# --no-loadscope-reorder keeps tests/conftest.py's order, the longest files first; xdist would
# otherwise start the files with the most tests, leaving the longest to run alone at the end.
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -n "$WORKERS" --dist loadfile \
  --no-loadscope-reorder --durations=15 "${@:-tests}"
