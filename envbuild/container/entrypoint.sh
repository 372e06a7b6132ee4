#!/bin/sh
set -eu
if [ "$#" -gt 0 ]; then
  exec "$@"
fi
if [ "$(id -u)" != 0 ]; then
  echo "envbuild-entrypoint: must start as root (docker run --user root); services drop to envd" >&2
  exit 1
fi
umask 022
mkdir -p /etc/envbuild /var/log/envbuild /run/sshd /var/log/horust
for conf in /etc/envbuild/services/*.conf; do  # envd's log names, for its users' habits
  name=$(basename "$conf" .conf)
  ln -sfn "../envbuild/$name.log" "/var/log/horust/${name}_stdout.log"
  ln -sfn "../envbuild/$name.log" "/var/log/horust/${name}_stderr.log"
done
rm -rf /run/envbuild-init
install -d -m 0755 -o @UID@ -g @GID@ /run/envbuild-init
for t in ed25519 ecdsa; do
  [ -s /etc/ssh/ssh_host_${t}_key ] || ssh-keygen -q -t $t -N '' -f /etc/ssh/ssh_host_${t}_key
done
printf '%s\n' "${ENVBUILD_AUTHORIZED_KEYS:-}" > /etc/envbuild/authorized_keys
chown 0:0 /etc/envbuild/authorized_keys
chmod 0644 /etc/envbuild/authorized_keys
rm -f /etc/envbuild/jupyter_token
if [ -n "${ENVBUILD_JUPYTER_TOKEN:-}" ]; then
  (umask 027; printf '%s' "$ENVBUILD_JUPYTER_TOKEN" > /etc/envbuild/jupyter_token)
  chown 0:@GID@ /etc/envbuild/jupyter_token
  chmod 0640 /etc/envbuild/jupyter_token
fi
unset ENVBUILD_AUTHORIZED_KEYS ENVBUILD_JUPYTER_TOKEN
rm -f /run/envbuild-supervisor.sock
if [ -x /usr/bin/python3 ]; then
  /usr/bin/python3 -I -S -c '@KICK_SUPERVISOR@' </dev/null >/dev/null 2>&1 &
fi
exec /usr/bin/supervisord -n -c /etc/envbuild/supervisord.conf
