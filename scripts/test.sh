#!/usr/bin/env bash
# Set up (with test tools and Chromium), lint, and run the whole test suite against real parts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
echo ">> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo ">> mypy"
.venv/bin/mypy  # strict on app/ and device/, plus the runtime contract check (pyproject.toml [tool.mypy])
echo ">> pytest"
.venv/bin/python -m pytest -q -ra "$@"
