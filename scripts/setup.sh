#!/usr/bin/env bash
# Set up EdgeInspect on a fresh Debian/Ubuntu box: system packages, a virtual environment, Python packages.
#   scripts/setup.sh                  role all: runtime + training on one box (what `run` needs, incl. the
#                                     first-run model build; the quickstart)
#   scripts/setup.sh --role station   a station: inspect, alert, serve the API/panel, build captured products
#                                     (edge, opcua, genicam, int8 extras; no torch: its default model comes by
#                                     rollout or is built elsewhere)
#   scripts/setup.sh --role plant     the plant side: train, compress, verify, release (edge + train extras)
#   scripts/setup.sh --dev            + test tools and Debian's Chromium for the browser tests
#   scripts/setup.sh --venv DIR       put the virtual environment in DIR (default .venv; the images use /opt/venv)
#   scripts/setup.sh --role R --print-extras   only print the extras role R installs (docs, tests), then exit
# Packages come from the role's lock file (requirements/, refreshed by scripts/lock.sh), pinned with hashes.
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu takes torch from there instead (CPU-only wheels at the
# locked version, as the plant image does). Idempotent: re-running skips what is already there.
# docker/Dockerfile* run this script with the matching role, so the images and a bare-metal install get the
# same packages (docs/DEPLOYMENT.md).
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
ROLE=all
VENV=.venv
PRINT_EXTRAS=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --dev) DEV=1 ;;
    --role | --venv)
      if [ "$#" -lt 2 ]; then echo "setup.sh: $1 needs a value" >&2; exit 2; fi
      if [ "$1" = --role ]; then ROLE="$2"; else VENV="$2"; fi
      shift ;;
    --role=*) ROLE="${1#--role=}" ;;
    --venv=*) VENV="${1#--venv=}" ;;
    --print-extras) PRINT_EXTRAS=1 ;;
    *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

# The one table of which extras each role installs (pyproject.toml defines the extras).
case "$ROLE" in
  station) extras="edge,opcua,genicam,int8" ;;
  plant) extras="edge,train" ;;
  all) extras="edge,opcua,genicam,int8,train" ;;
  *) echo "setup.sh: --role must be station, plant or all (got '$ROLE')" >&2; exit 2 ;;
esac
if [ "$DEV" -eq 1 ]; then extras="$extras,dev"; fi
if [ "$PRINT_EXTRAS" -eq 1 ]; then echo "$extras"; exit 0; fi
if [ -z "$VENV" ]; then echo "setup.sh: --venv needs a directory" >&2; exit 2; fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# --- system packages (Debian): the MQTT broker, and Chromium for the panel's browser tests -------------
apt_needed=()
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || apt_needed+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || apt_needed+=(mosquitto-clients)
if [ "$DEV" -eq 1 ] && [ ! -x /usr/bin/chromium ]; then apt_needed+=(chromium); fi
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then apt_needed+=(python3-venv); fi
# GenICam cameras (station and all roles): Aravis's typelib and its GigE Vision simulator (aravis-tools, used
# by the tests and benchmarks/camera), plus what the locked PyGObject sdist needs to build (genicam extra).
if [ "$ROLE" != plant ]; then
  for pkg in gir1.2-aravis-0.8 aravis-tools libgirepository1.0-dev libcairo2-dev pkg-config gcc; do
    dpkg -s "$pkg" >/dev/null 2>&1 || apt_needed+=("$pkg")
  done
  if ! python3 -c "import sysconfig, os, sys; sys.exit(not os.path.exists(sysconfig.get_paths()['include'] + '/Python.h'))"; then
    apt_needed+=(python3-dev)
  fi
fi
if [ "${#apt_needed[@]}" -gt 0 ]; then
  echo ">> installing Debian packages: ${apt_needed[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_needed[@]}" >/dev/null
fi
# Debian starts no broker for us here (no systemd in containers); `edgeinspect run` and the tests start
# their own Mosquitto on loopback when none listens.

# --- Python ---------------------------------------------------------------------------------------------
PYTHON="${PYTHON:-python3}"
"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"EdgeInspect needs Python >= 3.10, found {sys.version.split()[0]}")
PY
if [ ! -x "$VENV/bin/python" ]; then
  echo ">> creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# Exactly what was tested: the role's lock file (requirements/<role>[-dev].txt, exported from uv.lock by
# scripts/lock.sh), every package pinned with its sha256, installed without resolving anything anew.
lock="requirements/$ROLE.txt"
if [ "$DEV" -eq 1 ]; then lock="requirements/$ROLE-dev.txt"; fi
stamp="$VENV/.edgeinspect-installed"
want="$(cat pyproject.toml requirements/build.txt "$lock" | sha256sum | cut -d' ' -f1) $lock"
if [ -n "${TORCH_INDEX_URL:-}" ]; then want="$want $TORCH_INDEX_URL"; fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo ">> installing Python packages from $lock into $VENV (role $ROLE)"
  pip_install=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
  "${pip_install[@]}" --require-hashes -r requirements/build.txt
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    # CPU-only torch from TORCH_INDEX_URL at the locked version: the lock's CUDA build and its nvidia-*
    # libraries are left out. That index publishes no hashes PyPI's lock could hold, so only these two are
    # pinned by version alone.
    filtered="$(mktemp)"
    awk '/^[A-Za-z0-9]/ { skip = ($1 ~ /^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z-]+)==/) } !skip' \
      "$lock" > "$filtered"
    "${pip_install[@]}" --require-hashes --no-deps -r "$filtered"
    rm -f "$filtered"
    torch_pins=($(grep -oE '^(torch|torchvision)==[0-9.]+' "$lock" | sed 's/$/+cpu/'))
    if [ "${#torch_pins[@]}" -gt 0 ]; then
      "${pip_install[@]}" --no-deps --index-url "$TORCH_INDEX_URL" "${torch_pins[@]}"
    fi
  else
    "${pip_install[@]}" --require-hashes --no-deps -r "$lock"
  fi
  "${pip_install[@]}" --no-deps --no-build-isolation -e .
  if ! conflicts="$("$VENV/bin/python" -m pip check --disable-pip-version-check)"; then
    echo "$conflicts" >&2
    echo "setup.sh: the installed packages do not fit together (see above); was $VENV made by hand?" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
else
  echo ">> Python packages up to date ($lock)"
fi
echo ">> setup done (role $ROLE, $VENV)"
