#!/usr/bin/env bash
# Build .venv-peers: anomalib 2.x for the side-by-side benchmark, never a runtime dependency of EdgeInspect.
#
# torch, timm, onnxruntime and the editable edgeinspect install are *shared* with .venv through a .pth
# file (nothing is copied). pip adds only the packages of the benchmarks lock (requirements/benchmarks.txt:
# anomalib and what it needs, hashed) that .venv lacks, without resolving anything, so it can never replace
# torch (which would shadow .venv's copy). .venv itself is only read, never written.
#
# Usage: bash benchmarks/peers/setup_peers.sh   (from anywhere; needs a package registry, no other network)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MAIN_VENV="$ROOT/.venv"
PEERS_VENV="$ROOT/.venv-peers"

if [ ! -x "$MAIN_VENV/bin/python" ]; then
    echo "error: $MAIN_VENV is missing; build it first (scripts/setup.sh)" >&2
    exit 1
fi
MAIN_SITE="$("$MAIN_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
MAIN_PY="$("$MAIN_VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

python3 -m venv "$PEERS_VENV"
PEERS_PY="$("$PEERS_VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$MAIN_PY" != "$PEERS_PY" ]; then
    echo "error: python3 is $PEERS_PY but .venv is $MAIN_PY; their site-packages cannot be shared" >&2
    exit 1
fi
PEERS_SITE="$("$PEERS_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# Appended after .venv-peers' own site-packages: anything pip adds here wins, the rest comes from .venv.
# addsitedir (not a bare path line) so .venv's own .pth files run too: the editable edgeinspect finder.
echo "import site; site.addsitedir('$MAIN_SITE')" > "$PEERS_SITE/zz_edgeinspect_main_venv.pth"

# What the benchmarks lock (requirements/benchmarks.txt, exported from uv.lock with hashes) adds to what .venv
# already has: the same resolution, so every shared package is at the version .venv holds.
ADDED="$PEERS_VENV/added.txt"
"$MAIN_VENV/bin/python" - "$ROOT/requirements/benchmarks.txt" "$ADDED" <<'PY'
import re, sys
from importlib import metadata
from packaging.utils import canonicalize_name
installed = {canonicalize_name(d.metadata["Name"]) for d in metadata.distributions()}
entries = re.split(r"\n(?=[A-Za-z0-9])", open(sys.argv[1]).read().strip())
added = [e for e in entries if canonicalize_name(e.split("==")[0]) not in installed]
open(sys.argv[2], "w").write("\n".join(added) + "\n")
print(f"{len(added)} packages on top of .venv (of {len(entries)} in the benchmarks lock)")
PY
"$PEERS_VENV/bin/python" -m pip install --disable-pip-version-check -q --require-hashes --no-deps -r "$ADDED"

# The shared packages must still come from .venv, and anomalib must import.
"$PEERS_VENV/bin/python" - <<PY
import torch, timm, onnxruntime, anomalib, vision
assert torch.__file__.startswith("$MAIN_SITE"), f"torch shadowed: {torch.__file__}"
print("anomalib", anomalib.__version__, "| torch", torch.__version__, "| timm", timm.__version__,
      "| onnxruntime", onnxruntime.__version__)
PY
