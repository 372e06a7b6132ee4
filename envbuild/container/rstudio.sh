#!/bin/sh
# config.rstudio_server(): the image's RStudio Server, in the foreground (supervisor keeps it running).
if [ ! -x @RSERVER@ ]; then
  echo "envbuild: config.rstudio_server(): @RSERVER@ is not in the image; install RStudio Server in it (envd does not install it either)" >&2
  exit 1
fi
exec @RSERVER@ --server-daemonize=0 --www-port=@PORT@
