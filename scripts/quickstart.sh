#!/usr/bin/env bash
# The main job on a fresh Debian machine: prepare the engine, install envbuild, then build the
# CPU Jupyter example and bring it up. Prints how to open Jupyter and connect over SSH / VS Code.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# Build steps reach PyPI through whatever proxy this machine uses: trust the host's CA bundle
# (mounted as a secret while steps run, never stored in the image).
export ENVBUILD_CA_CERT="${ENVBUILD_CA_CERT:-/etc/ssl/certs/ca-certificates.crt}"
project="${1:-examples/jupyter}"
.venv/bin/envbuild up -p "$project" --detach
cat <<MSG

The environment is up. Next:
  .venv/bin/envbuild ls                       # endpoints: SSH target, Jupyter URL with its token
  ssh $(basename "$project").envbuild          # a shell inside (VS Code: Remote-SSH to the same host)
  .venv/bin/envbuild destroy -p $project       # stop and remove it (project files are kept)
MSG
