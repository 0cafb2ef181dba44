#!/usr/bin/env bash
# Set up EdgeInspect on a fresh Debian/Ubuntu box: system packages, .venv, Python packages.
#   scripts/setup.sh            runtime + training (what `run` needs, incl. the first-run model build)
#   scripts/setup.sh --dev      + test tools and Debian's Chromium for the browser tests
# Idempotent: re-running skips what is already there. Kept in step with docker/Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# --- system packages (Debian): the MQTT broker, and Chromium for the panel's browser tests -------------
apt_needed=()
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || apt_needed+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || apt_needed+=(mosquitto-clients)
if [ "$DEV" -eq 1 ] && [ ! -x /usr/bin/chromium ]; then apt_needed+=(chromium); fi
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then apt_needed+=(python3-venv); fi
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
if [ ! -x .venv/bin/python ]; then
  echo ">> creating .venv"
  "$PYTHON" -m venv .venv
fi

extras="edge,opcua,train"
if [ "$DEV" -eq 1 ]; then extras="edge,opcua,train,dev"; fi
stamp=".venv/.edgeinspect-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo ">> installing Python packages [$extras] (torch comes from this machine's wheel cache)"
  .venv/bin/python -m pip install -q --upgrade pip wheel
  .venv/bin/python -m pip install -q -e ".[$extras]"
  echo "$want" > "$stamp"
else
  echo ">> Python packages up to date"
fi
echo ">> setup done"
