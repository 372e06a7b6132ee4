#!/usr/bin/env bash
# Lint (ruff), types (mypy) and the whole test suite (unit + end-to-end against the real engine).
# Prepares the machine first.
#
# With ENVBUILD_TEST_ENGINES=all (CI sets it) the engine tests run again against the other Debian
# release's docker.io, started beside the machine's own by scripts/extra-engine.sh: Docker 26 with
# the containerd image store on Debian 12; Docker 20.10 and Docker 26 (containerd store) on Debian 13.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# Build steps reach PyPI through this machine's TLS-inspecting proxy: trust the host's CA bundle.
export ENVBUILD_CA_CERT="${ENVBUILD_CA_CERT:-/etc/ssl/certs/ca-certificates.crt}"

extras=()
if [ "${ENVBUILD_TEST_ENGINES:-}" = all ]; then
  case "$(cut -d. -f1 /etc/debian_version 2>/dev/null)" in
    12) extras=("trixie docker26 --containerd-store") ;;
    13) extras=("bookworm docker20" "trixie docker26 --containerd-store") ;;
    *) echo "test.sh: no second engine known for Debian $(cat /etc/debian_version 2>/dev/null)" >&2 ;;
  esac
fi
# The extra engines are prepared (debootstrap, apt) while the first run's tests go on.
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
prepared=()
for extra in "${extras[@]}"; do
  name=$(echo "$extra" | cut -d' ' -f2)
  # shellcheck disable=SC2086
  $SUDO bash scripts/extra-engine.sh $extra >"/tmp/envbuild-engine-$name.log" 2>&1 &
  prepared+=("$name:$!")
done

status=0
# Lint and types first (pyproject.toml: [tool.ruff], [tool.mypy]); the tests run whatever they say.
echo "==> ruff check" >&2
.venv/bin/ruff check . || status=$?
echo "==> mypy" >&2
.venv/bin/mypy || status=$?
echo "==> tests against the machine's engine" >&2
.venv/bin/python -m pytest -q "$@" || status=$?
for entry in "${prepared[@]}"; do
  name=${entry%%:*}; pid=${entry##*:}
  if ! wait "$pid"; then
    cat "/tmp/envbuild-engine-$name.log" >&2
    echo "test.sh: engine $name did not start" >&2
    status=1; continue
  fi
  host=$(tail -n 1 "/tmp/envbuild-engine-$name.log")
  echo "==> engine tests against $name ($host)" >&2
  DOCKER_HOST="$host" .venv/bin/python -m pytest -q -m engine "$@" || status=$?
done
exit "$status"
