#!/usr/bin/env bash
# The README's first command, extracted from README.md and run as it is written, from the
# source root, without the Open MPI root overrides that CI exports (a new user has none): it
# must set up, train the default job and leave the loss falling, for root as for anyone. As
# root, the launcher is also run as an unprivileged user (nobody), for the other branch.
# usage: test_readme_first_command.sh SOURCE_DIR BINARY_DIR   (exit 77 = skipped)
set -u
src=$1 bin=$2
cd "$src" || exit 1
if [ "$(cd "$bin" && pwd -P)" != "$(pwd -P)/build" ]; then
  echo "skipped: the README's command builds into $src/build, but this build is $bin"
  exit 77
fi
# The first command line of the first bash block (comments skipped).
cmd=$(awk '/^```bash$/{inblock=1; next} inblock && /^```/{exit} inblock && !/^#/ && NF {print; exit}' README.md)
echo "README's first command: $cmd"
case "$cmd" in
  "bash tools/setup.sh && "*autotp-train*) ;;
  *) echo "FAILED: not the set-up-and-train command"; exit 1 ;;
esac
log=$(mktemp)
rm -rf autotp_run
env -u OMPI_ALLOW_RUN_AS_ROOT -u OMPI_ALLOW_RUN_AS_ROOT_CONFIRM timeout 500 bash -c "$cmd" >"$log" 2>&1
rc=$?
failures=0
if [ $rc -ne 0 ]; then
  echo "FAILED: exit code $rc as $(id -un):"
  tail -20 "$log"
  failures=1
else
  first=$(head -1 autotp_run/metrics.jsonl | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
  last=$(tail -1 autotp_run/metrics.jsonl | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
  if grep -q "^step   100/100 | loss" "$log" && awk -v f="$first" -v l="$last" 'BEGIN{exit !(l < f - 1.5)}'; then
    echo "ok: as $(id -un): 100 steps, loss $first -> $last"
  else
    echo "FAILED: loss $first -> $last"
    tail -5 "$log"
    failures=1
  fi
fi
# The launcher as a user that is not root (the flag must then not be added, nor be needed).
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
  out=$(mktemp -d)
  chmod 777 "$out"
  if env -u OMPI_ALLOW_RUN_AS_ROOT -u OMPI_ALLOW_RUN_AS_ROOT_CONFIRM HOME="$out" \
      setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups \
      timeout 300 bash tools/mpirun.sh --oversubscribe -np 2 build/app/autotp-train --tp_size 2 \
      --dp_size 1 --num_steps 3 --out_dir "$out/run" >"$log" 2>&1 &&
      grep -q "^step     3/3 | loss" "$log"; then
    echo "ok: as nobody: tools/mpirun.sh trains"
  else
    echo "FAILED: as nobody:"
    tail -10 "$log"
    failures=1
  fi
  rm -rf "$out"
fi
rm -f "$log"
exit $failures
