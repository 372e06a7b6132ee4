#!/bin/sh
# sshd's ForceCommand: every session starts in the project directory, as under envd's sshd.
if [ -n "${ENVD_WORKDIR:-}" ] && [ -d "$ENVD_WORKDIR" ]; then
  cd "$ENVD_WORKDIR" || true
fi
if [ -n "${SSH_ORIGINAL_COMMAND:-}" ]; then
  exec "$SHELL" -c "$SSH_ORIGINAL_COMMAND"
fi
exec "$SHELL" -l
