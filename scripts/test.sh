#!/usr/bin/env bash
# Run the whole test suite (unit + end-to-end against the real engine). Prepares the machine first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# Build steps reach PyPI through this machine's TLS-inspecting proxy: trust the host's CA bundle.
export ENVBUILD_CA_CERT="${ENVBUILD_CA_CERT:-/etc/ssl/certs/ca-certificates.crt}"
exec .venv/bin/python -m pytest -q "$@"
