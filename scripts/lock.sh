#!/usr/bin/env bash
# Refresh the dependency lock, the one source of what every install gets (scripts/setup.sh, the Dockerfiles, CI):
#   uv.lock                      the resolution of pyproject.toml for every extra, every platform, Python >= 3.10
#   requirements/<role>.txt      exported from uv.lock with sha256 hashes, one file per install role:
#                                station, plant, all, each also with -dev; benchmarks (peers + real data sets)
#   requirements/build.txt       pip, setuptools and wheel, hashed, for the install itself
# Usage:
#   bash scripts/lock.sh             after editing pyproject.toml: keep every pin that still fits, add what is new
#   bash scripts/lock.sh --upgrade   move everything to the newest release pyproject.toml allows (then run the tests
#                                    and record what moved in CHANGELOG.md)
#   bash scripts/lock.sh --check     change nothing; fail when pyproject.toml, uv.lock and requirements/ disagree
#                                    (offline; tests/unit/test_lock.py runs it)
set -euo pipefail
cd "$(dirname "$0")/.."

UV="${UV:-}"
if [ -z "$UV" ]; then
  if [ -x .venv/bin/uv ]; then UV=.venv/bin/uv; else UV="$(command -v uv || true)"; fi
fi
if [ -z "$UV" ]; then echo "lock.sh: needs uv (bash scripts/setup.sh --dev installs it into .venv)" >&2; exit 2; fi

upgrade=()
CHECK=0
case "${1:-}" in
  "") ;;
  --upgrade) upgrade=(--upgrade) ;;
  --check) CHECK=1 ;;
  *) echo "lock.sh: unknown option $1" >&2; exit 2 ;;
esac

out=requirements
if [ "$CHECK" -eq 1 ]; then
  if ! "$UV" lock --check --offline --quiet; then
    echo "lock.sh: uv.lock does not match pyproject.toml: run bash scripts/lock.sh" >&2
    exit 1
  fi
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
else
  "$UV" lock "${upgrade[@]}"
fi
stale=()
export_role() {  # NAME EXTRA...: requirements/NAME.txt holds the EXTRAs' packages (and the core's)
  local name="$1"; shift
  local args=()
  for extra in "$@"; do args+=(--extra "$extra"); done
  "$UV" export --frozen --offline --no-emit-project --no-header --quiet "${args[@]}" -o "$out/$name.txt"
  if [ "$CHECK" -eq 1 ] && ! cmp -s "$out/$name.txt" "requirements/$name.txt"; then stale+=("$name"); fi
}
export_role station edge opcua genicam int8
export_role plant edge train
export_role all edge opcua genicam int8 train
export_role station-dev edge opcua genicam int8 dev
export_role plant-dev edge train dev
export_role all-dev edge opcua genicam int8 train dev
export_role benchmarks edge opcua genicam int8 train dev peers realdata
if [ "$CHECK" -eq 1 ]; then
  if [ "${#stale[@]}" -gt 0 ]; then
    echo "lock.sh: requirements/ differs from uv.lock for: ${stale[*]}: run bash scripts/lock.sh" >&2
    exit 1
  fi
  echo ">> lock consistent: pyproject.toml, uv.lock and requirements/*.txt agree"
  exit 0
fi
"$UV" pip compile --quiet --no-header --generate-hashes "${upgrade[@]}" requirements/build.in \
  -o requirements/build.txt
echo ">> lock refreshed: uv.lock and requirements/*.txt"
