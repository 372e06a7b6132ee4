#!/usr/bin/env bash
# Start another Debian release's docker.io beside the machine's own engine, so the tests can run
# against both (Debian 12 ships Docker 20.10, Debian 13 ships 26.1.5). The engine runs from a
# debootstrapped root in its own mount namespace, with its own socket, data root, bridge and NAT
# rules, and leaves the machine's engine alone. It shares the host's network namespace, so the
# loopback registry is reachable from it.
#
#   sudo scripts/extra-engine.sh trixie docker26 --containerd-store   # prints its DOCKER_HOST
#   sudo scripts/extra-engine.sh bookworm docker20
#   sudo scripts/extra-engine.sh trixie d26plain --root docker26       # a second engine from docker26's root
#   sudo scripts/extra-engine.sh --stop docker26
#
# Each engine has its own socket, data root, configuration, bridge and subnet; --root NAME runs it from
# the Debian root another engine was installed in (a graph-driver Docker 26 beside the containerd-store
# one, without a second debootstrap). Bridge names are "eb-NAME": NAME has at most 12 characters.
# Idempotent: an engine that already answers on its socket is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINES=/run/envbuild-engines
ROOTS="${ENVBUILD_ENGINE_ROOTS:-/srv/envbuild-engines}"
BASE_IMAGE="${ENVBUILD_BASE_IMAGE:-local/debian:bookworm}"
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'extra-engine.sh: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (it starts dockerd and changes iptables)"

# Each engine gets its own bridge and subnet; names are fixed so rules can be removed exactly.
subnet_of() {
  case "$1" in
    docker26) echo 172.31.250 ;;
    docker20) echo 172.31.251 ;;
    *) echo 172.31.252 ;;
  esac
}

# The Debian root an engine runs from: its own, or the one --root named (found through its socket link).
root_of() {
  local link; link=$(readlink "$ENGINES/$1.sock" 2>/dev/null || true)
  if [ -n "$link" ]; then dirname "$(dirname "$link")"; else echo "$ROOTS/$1"; fi
}

stop_engine() {
  local name=$1 bridge="eb-$1" pidfile; pidfile="$(root_of "$1")/run/$1.pid"
  if [ -f "$pidfile" ]; then
    local pid; pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  for table in nat filter; do
    iptables -t "$table" -S 2>/dev/null | { grep -- "--comment envbuild-$name" || true; } | sed 's/^-A /-D /' \
      | while read -r rule; do eval "iptables -t $table $rule"; done
  done
  ip link del "$bridge" 2>/dev/null || true
  rm -f "$ENGINES/$name.sock"
}

if [ "${1:-}" = "--stop" ]; then
  [ -n "${2:-}" ] || die "usage: extra-engine.sh --stop NAME"
  stop_engine "$2"
  exit 0
fi

SUITE="${1:-}"; NAME="${2:-}"
[ -n "$SUITE" ] && [ -n "$NAME" ] || die "usage: extra-engine.sh SUITE NAME [--containerd-store] [--root NAME] | --stop NAME"
[[ "$NAME" =~ ^[a-z0-9][a-z0-9-]{0,11}$ ]] || die "engine name $NAME: lowercase letters, digits and '-', at most 12"
shift 2
CONTAINERD_STORE=0
ROOT_NAME="$NAME"
while [ $# -gt 0 ]; do
  case "$1" in
    --containerd-store) CONTAINERD_STORE=1 ;;
    --root) [ -n "${2:-}" ] || die "--root needs the name of an engine"; ROOT_NAME=$2; shift ;;
    *) die "unknown option $1" ;;
  esac
  shift
done

SOCK="$ENGINES/$NAME.sock"
HOST="unix://$SOCK"
answers() { docker -H "$HOST" version --format '{{.Server.Version}}' >/dev/null 2>&1; }
if answers; then
  log "engine $NAME already running ($(docker -H "$HOST" version --format '{{.Server.Version}}'))"
  echo "$HOST"
  exit 0
fi

R="$ROOTS/$ROOT_NAME"
if [ ! -e "$R/.envbuild-ready" ]; then
  command -v debootstrap >/dev/null || { apt-get update -qq; apt-get install -y -qq debootstrap >/dev/null; }
  mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  mirror="${ENVBUILD_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}"
  rm -rf "$R"; mkdir -p "$R"
  log "debootstrap --variant=minbase $SUITE into $R"
  debootstrap --variant=minbase "$SUITE" "$R" "$mirror" >"$ROOTS/$ROOT_NAME-debootstrap.log" 2>&1 \
    || { tail -20 "$ROOTS/$ROOT_NAME-debootstrap.log" >&2; die "debootstrap failed"; }
  printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"; chmod +x "$R/usr/sbin/policy-rc.d"
  log "installing docker.io in $R"
  unshare -m --propagation private sh -c "mount -t proc proc '$R/proc' && mount --rbind /dev '$R/dev' && chroot '$R' sh -c \
    'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
     docker.io ca-certificates iproute2 >/dev/null'" || die "installing docker.io in $R failed"
  touch "$R/.envbuild-ready"
fi

# The engine's configuration, one file per engine: the containerd image store is a daemon feature flag.
mkdir -p "$R/etc/docker"
if [ "$CONTAINERD_STORE" = 1 ]; then
  echo '{"features": {"containerd-snapshotter": true}}' >"$R/etc/docker/$NAME.json"
else
  echo '{}' >"$R/etc/docker/$NAME.json"
fi

stop_engine "$NAME"
net="$(subnet_of "$NAME")"; bridge="eb-$NAME"; tag=(-m comment --comment "envbuild-$NAME")
ip link add "$bridge" type bridge
ip addr add "$net.1/24" dev "$bridge"
ip link set "$bridge" up
sysctl -qw net.ipv4.ip_forward=1
iptables -t nat -A POSTROUTING -s "$net.0/24" ! -o "$bridge" "${tag[@]}" -j MASQUERADE
iptables -I FORWARD 1 -i "$bridge" "${tag[@]}" -j ACCEPT
iptables -I FORWARD 1 -o "$bridge" -m conntrack --ctstate RELATED,ESTABLISHED "${tag[@]}" -j ACCEPT

# Every host directory a client bind-mounts must exist inside the engine's root: the checkout's
# parent (projects, worktrees), temporary directories, home directories and any extra ones named.
BINDS="$(dirname "$PWD") /tmp /var/tmp /home ${HOME:-/root} ${ENVBUILD_ENGINE_BINDS:-}"
for d in $BINDS; do mkdir -p "$R$d"; done
mkdir -p "$R/.oldroot" "$ENGINES"
log "starting dockerd ($SUITE) as $NAME"
R="$R" NAME="$NAME" BINDS="$BINDS" BRIDGE="$bridge" setsid -f unshare --mount --propagation private --fork sh -c '
  mount --bind "$R" "$R"; mount -t proc proc "$R/proc"
  mount --rbind /sys "$R/sys"; mount --rbind /dev "$R/dev"
  for d in $BINDS; do mount --rbind "$d" "$R$d"; done
  cd "$R" && pivot_root . .oldroot && cd / && umount -l /.oldroot
  exec /usr/sbin/dockerd -H "unix:///run/$NAME.sock" --config-file "/etc/docker/$NAME.json" \
    --data-root "/var/lib/$NAME" --exec-root "/run/$NAME-exec" --pidfile "/run/$NAME.pid" \
    --bridge "$BRIDGE" --iptables=false --ip-masq=false --ip6tables=false' \
  >>"$R/var/log/$NAME.log" 2>&1 </dev/null
ln -sfn "$R/run/$NAME.sock" "$SOCK"
for _ in $(seq 1 120); do answers && break; sleep 0.5; done
answers || { tail -20 "$R/var/log/$NAME.log" >&2; die "dockerd $NAME did not start; see $R/var/log/$NAME.log"; }
log "engine $NAME $(docker -H "$HOST" version --format '{{.Server.Version}}') on $HOST" \
    "($(docker -H "$HOST" info --format '{{.Driver}}'))"

if ! docker -H "$HOST" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "loading $BASE_IMAGE into $NAME"
  docker save "$BASE_IMAGE" | docker -H "$HOST" load >/dev/null
fi
echo "$HOST"
