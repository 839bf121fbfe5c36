#!/usr/bin/env bash
# mpirun for the README's commands, the same for root and for other users: Open MPI refuses to
# start as root (the usual user in a container) unless told, so there this adds
# --allow-run-as-root. Every argument is mpirun's own:
#   bash tools/mpirun.sh --oversubscribe -np 4 build/app/autotp-train --tp_size 2 --dp_size 2
set -euo pipefail
extra=()
if [ "$(id -u)" -eq 0 ] && mpirun --version 2>&1 | grep -q "Open MPI"; then
  extra+=(--allow-run-as-root)
fi
exec mpirun ${extra[@]+"${extra[@]}"} "$@"
