#!/usr/bin/env bash
# Prepare a fresh Debian machine for envbuild: the Docker engine (Debian's docker.io),
# a local Debian base image (no registry is needed) and, optionally, a loopback registry and the
# OpenSSH server the remote-engine tests start on their own port.
# Idempotent: every step is skipped when its result is already there.
#
#   sudo scripts/setup-engine.sh            # engine + base image local/debian:bookworm
#   sudo scripts/setup-engine.sh --registry # also the reference registry on 127.0.0.1:5000
#   sudo scripts/setup-engine.sh --sshd     # also openssh-server (installed, not started)
set -euo pipefail

BASE_IMAGE="${ENVBUILD_BASE_IMAGE:-local/debian:bookworm}"
SUITE="${ENVBUILD_BASE_SUITE:-bookworm}"
WITH_REGISTRY=0
WITH_SSHD=0
for arg in "$@"; do
  case "$arg" in
    --registry) WITH_REGISTRY=1 ;;
    --sshd) WITH_SSHD=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "setup-engine.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

log() { printf '==> %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
command -v ssh >/dev/null 2>&1 || need_pkgs+=(openssh-client)
command -v git >/dev/null 2>&1 || need_pkgs+=(git)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
# dpkg-deb and dpkg-scanpackages: the credential tests serve a small apt repository of their own
command -v dpkg-scanpackages >/dev/null 2>&1 || need_pkgs+=(dpkg-dev)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v setpriv >/dev/null 2>&1 || need_pkgs+=(util-linux)
if [ "$WITH_REGISTRY" = 1 ] && ! command -v docker-registry >/dev/null 2>&1; then
  need_pkgs+=(docker-registry)
fi
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need_pkgs[@]}" iptables ca-certificates >/dev/null
fi
if [ "$WITH_SSHD" = 1 ] && [ ! -x /usr/sbin/sshd ]; then
  # Only the tests' own sshd is wanted (their port, their key, 127.0.0.1): the package's service,
  # which would listen on port 22 of every address, is neither started nor enabled.
  log "installing openssh-server (its system service stays off)"
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    added_policy=1
  fi
  [ "${#need_pkgs[@]}" -gt 0 ] || $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
  if [ "$added_policy" = 1 ]; then $SUDO rm -f "$policy"; fi
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
  fi
fi

engine_up() { $SUDO docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
if ! engine_up; then
  log "starting dockerd"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl start docker || true
  fi
  if ! engine_up; then
    if ! pgrep -x containerd >/dev/null; then
      $SUDO setsid -f sh -c 'exec containerd >>/var/log/containerd.log 2>&1 </dev/null'
      sleep 1
    fi
    $SUDO setsid -f sh -c 'exec dockerd --containerd=/run/containerd/containerd.sock >>/var/log/dockerd.log 2>&1 </dev/null'
  fi
  for _ in $(seq 1 60); do engine_up && break; sleep 0.5; done
  engine_up || { echo "setup-engine.sh: dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi
log "engine $($SUDO docker version --format '{{.Server.Version}}')"

if ! $SUDO docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  mirror="${ENVBUILD_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}"
  root="$(mktemp -d /tmp/envbuild-rootfs.XXXXXX)"
  log "debootstrap --variant=minbase $SUITE from $mirror"
  $SUDO debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >/tmp/envbuild-debootstrap.log 2>&1 \
    || { tail -20 /tmp/envbuild-debootstrap.log >&2; exit 1; }
  # The image's apt sources point at the same mirror the host uses.
  printf 'deb %s %s main\ndeb %s %s-updates main\n' "$mirror" "$SUITE" "$mirror" "$SUITE" \
    | $SUDO tee "$root/etc/apt/sources.list" >/dev/null
  $SUDO rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
  log "docker import $BASE_IMAGE"
  $SUDO tar -C "$root" -c . | $SUDO docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  $SUDO rm -rf "$root"
fi
log "base image $BASE_IMAGE ready"

if [ "$WITH_REGISTRY" = 1 ]; then
  if ! curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1; then
    log "starting the registry on 127.0.0.1:5000"
    cfg=/etc/envbuild-registry.yml
    $SUDO mkdir -p /var/lib/envbuild-registry
    $SUDO tee "$cfg" >/dev/null <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/envbuild-registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YML
    $SUDO setsid -f sh -c "exec docker-registry serve $cfg >>/var/log/envbuild-registry.log 2>&1 </dev/null"
    for _ in $(seq 1 40); do curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1 && break; sleep 0.25; done
    curl -fsS http://127.0.0.1:5000/v2/ >/dev/null || { echo "setup-engine.sh: registry did not start" >&2; exit 1; }
  fi
  log "registry 127.0.0.1:5000 ready"
fi
