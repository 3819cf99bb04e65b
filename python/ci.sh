#!/usr/bin/env bash
# The Python package's CI: build the wheel with `pip install ./python` into a fresh
# virtual environment (Cargo.lock respected: `locked = true` in pyproject.toml), then run
# the tests against the embedded server on 127.0.0.1, bounded in time.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
"$PYTHON" -m venv "$venv"
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet . pytest pytest-timeout
# Run from a directory without the source tree, so the installed wheel is what is tested.
cd tests
timeout 600 "$venv/bin/python" -m pytest -q -p no:cacheprovider --timeout 60 .
