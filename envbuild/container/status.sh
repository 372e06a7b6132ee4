#!/bin/sh
# What `envbuild up` and `envbuild ls` read: "init_<i> <exit status>" for each runtime.init
# ("running" until it ends); with --services, "<program> <supervisor state>" for each service.
for script in @ETC@/init_*.sh; do
  [ -e "$script" ] || continue
  name=$(basename "$script" .sh)
  rc=$(cat "@INIT_DONE_DIR@/$name" 2>/dev/null || true)
  echo "$name ${rc:-running}"
done
if [ "${1:-}" = --services ]; then
  supervisorctl -c @SUPERVISORD_CONFIG@ status 2>/dev/null | awk 'NF >= 2 {print $1, $2}'
fi
exit 0
