#!/usr/bin/env bash
# Quickstart: set up, then run the whole line on built-in defaults (simulated camera, auto-built model,
# local Mosquitto, API + panel at http://127.0.0.1:8000/). Extra arguments go to `edgeinspect run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/edgeinspect run --config configs/default.yaml "$@"
