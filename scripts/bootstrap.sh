#!/usr/bin/env bash
# Get a fresh Debian machine ready for envbuild: the engine, the local base image, the loopback
# registry, the OpenSSH server the remote-engine tests run (scripts/setup-engine.sh) and a virtual
# environment at .venv with envbuild installed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-engine.sh --registry --sshd

PY="${PYTHON:-python3}"
if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c "import ensurepip" >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c "import envbuild, frontend, llb" 
echo "==> envbuild installed in .venv ($(.venv/bin/envbuild version))" >&2
