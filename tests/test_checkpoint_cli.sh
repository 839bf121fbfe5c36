#!/usr/bin/env bash
# Checkpoints end to end under mpirun, one case per ctest test:
#   stop_signal      SIGUSR1 to one rank: exit 75, a complete checkpoint, and --resume ends with
#                    the uninterrupted run's final loss, bit for bit
#   rotation         --save_interval/--keep_last/latest, --resume with nothing to resume, and
#                    after a crash mid-save
#   reshard_merge    TP2xDP2 -> 1x3 -> 4x1 -> 2x2 gives byte-identical files; tp 8 refused;
#                    --load at another topology; autotp-merge + autotp-convert
#   bad_manifest, missing_file, checksum, wrong_model, disk_full
#                    each a clear error naming the file or field, the last good checkpoint intact
# usage: test_checkpoint_cli.sh CASE WORK_DIR AUTOTP_TRAIN AUTOTP_RESHARD AUTOTP_MERGE AUTOTP_CONVERT
set -u
case_name=$1 work=$2 train=$3 reshard=$4 merge=$5 convert=$6
rm -rf "$work" && mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi="mpirun --oversubscribe --mca btl_vader_single_copy_mechanism none"
common=(--seq_length 32 --micro_batch_size 2 --gradient_accumulation_steps 1 --log_interval 1)
failures=0 passed=0

ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failures=$((failures + 1)); echo "FAILED: $1"; }
finish() {
  echo "$passed passed, $failures failed"
  [ $failures -eq 0 ] && exit 0 || exit 1
}
last_loss() { tail -1 "$1/metrics.jsonl" | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/'; }
# run NAME NP args...: autotp-train under mpirun, output in $work/NAME.out; returns its exit code.
run() {
  local name=$1 np=$2
  shift 2
  timeout 300 $mpi -np "$np" "$train" "${common[@]}" "$@" >"$work/$name.out" 2>&1
}
# expect_error NAME PATTERN NP args...: non-zero exit (not a timeout), PATTERN in the output.
expect_error() {
  local name=$1 pattern=$2
  shift 2
  run "$name" "$@"
  local rc=$?
  if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
    bad "$name: exit code $rc"
  elif ! grep -qF -- "$pattern" "$work/$name.out"; then
    bad "$name: output lacks '$pattern':"
    grep -i error "$work/$name.out" | head -5
  else
    ok "$name: $(grep -m1 'error' "$work/$name.out" | cut -c1-240)"
  fi
}
expect_ok() {
  local name=$1
  shift
  if run "$name" "$@"; then ok "$name"; else
    bad "$name: exit code $?"
    tail -5 "$work/$name.out"
  fi
}

# Checkpoints at steps 2 and 4 of a TP2 x DP1 run (the bad-input cases start from these).
setup_two_checkpoints() {
  expect_ok setup 2 --tp_size 2 --dp_size 1 --num_steps 4 --save_interval 2 \
    --save_dir "$work/ck" --out_dir "$work/run"
  cp -a "$work/ck/2" "$work/good2"
}
# The error left checkpoint 2 as it was, and it still loads.
last_good_intact() {
  if diff -r "$work/ck/2" "$work/good2" >/dev/null; then ok "checkpoint 2 untouched"; else
    bad "checkpoint 2 changed"
  fi
  expect_ok load_good 2 --tp_size 2 --dp_size 1 --num_steps 3 --load "$work/ck/2" \
    --data "$work/run/kjv.tok" --out_dir "$work/run2"
  grep -q "resumed from $work/ck/2 at step 2" "$work/load_good.out" && ok "resumed from step 2" ||
    bad "no resume line"
}
resume_args=(2 --tp_size 2 --dp_size 1 --num_steps 6 --save_dir "$work/ck" --resume)

case $case_name in
stop_signal)
  expect_ok whole 4 --tp_size 2 --dp_size 2 --num_steps 40 --out_dir "$work/whole"
  args=(--tp_size 2 --dp_size 2 --num_steps 40 --save_dir "$work/ck" --save_interval 100 \
    --keep_last 2 --resume --data "$work/whole/kjv.tok" --out_dir "$work/part")
  $mpi -np 4 "$train" "${common[@]}" "${args[@]}" >"$work/stopped.out" 2>&1 &
  mpid=$!
  for _ in $(seq 600); do  # until step 3 is logged
    [ "$(cat "$work/part/metrics.jsonl" 2>/dev/null | wc -l)" -ge 3 ] && break
    sleep 0.1
  done
  rank=$(pgrep -P "$mpid" | head -1)
  if [ -n "$rank" ]; then kill -USR1 "$rank"; fi
  wait "$mpid"
  rc=$?
  [ $rc -eq 75 ] && ok "stopped run exits 75" || bad "stopped run exits $rc (rank pid '$rank')"
  step=$(cat "$work/ck/latest" 2>/dev/null)
  if [ -n "$step" ] && [ "$step" -lt 40 ] && [ -f "$work/ck/$step/manifest.json" ]; then
    ok "checkpoint at step $step"
  else
    bad "no complete checkpoint (latest '$step')"
  fi
  grep -q "stop signal received after step $step" "$work/stopped.out" && ok "stop line" ||
    bad "no stop line"
  expect_ok resumed 4 "${args[@]}"
  a=$(last_loss "$work/whole") b=$(last_loss "$work/part")
  [ "$a" = "$b" ] && [ -n "$a" ] && ok "final loss $b = uninterrupted $a" ||
    bad "final loss $b vs uninterrupted $a"
  [ "$(wc -l <"$work/part/metrics.jsonl")" -eq 40 ] && ok "metrics.jsonl has 40 steps" ||
    bad "metrics.jsonl has $(wc -l <"$work/part/metrics.jsonl") lines"
  ;;
rotation)
  args=(2 --tp_size 2 --dp_size 1 --num_steps 6 --save_interval 2 --keep_last 2 \
    --save_dir "$work/ck" --resume --out_dir "$work/run")
  expect_ok first "${args[@]}"
  grep -q "no checkpoint in $work/ck yet; starting from step 0" "$work/first.out" &&
    ok "--resume without a checkpoint is a note" || bad "no note for an empty save dir"
  kept=$(cd "$work/ck" && ls -d [0-9]* | sort -n | tr '\n' ' ')
  [ "$kept" = "4 6 " ] && ok "kept checkpoints 4 and 6" || bad "kept '$kept'"
  [ "$(cat "$work/ck/latest")" = 6 ] && ok "latest = 6" || bad "latest = $(cat "$work/ck/latest")"
  ls -a "$work/ck" | grep -q '^\.tmp' && bad "a temporary directory is left" || ok "no .tmp left"
  expect_ok again "${args[@]}"
  grep -q "resumed from $work/ck/6 at step 6" "$work/again.out" && ! grep -q "^step" "$work/again.out" &&
    ok "a finished run resumes to nothing" || bad "second run trained again"
  # A crash during a save leaves .tmp-<step>; one between the rename and `latest` leaves no
  # latest: resuming ignores the first and falls back to the newest complete checkpoint.
  mkdir -p "$work/ck/.tmp-8" && echo junk >"$work/ck/.tmp-8/manifest.json"
  rm "$work/ck/latest"
  expect_ok after_crash 2 --tp_size 2 --dp_size 1 --num_steps 8 --save_interval 2 --keep_last 2 \
    --save_dir "$work/ck" --resume --out_dir "$work/run"
  grep -q "resumed from $work/ck/6 at step 6" "$work/after_crash.out" &&
    [ "$(cat "$work/ck/latest")" = 8 ] && [ -f "$work/ck/8/manifest.json" ] && [ ! -e "$work/ck/.tmp-8" ] &&
    ok "after a simulated crash: resumed from 6, saved 8" || bad "crash recovery"
  ;;
reshard_merge)
  expect_ok base 4 --tp_size 2 --dp_size 2 --num_steps 3 --save_dir "$work/ck" --out_dir "$work/run"
  src=$work/ck
  for t in "1 3" "4 1" "2 2"; do
    set -- $t
    dst=$work/r$1x$2
    "$reshard" "$src" "$dst" --tp_size "$1" --dp_size "$2" >"$work/reshard.out" 2>&1 &&
      ok "reshard to TP $1 x DP $2" || bad "reshard to $1 x $2: $(cat "$work/reshard.out")"
    src=$dst
  done
  same=1
  for f in "$work"/ck/3/*; do cmp -s "$f" "$work/r2x2/3/$(basename "$f")" || same=0; done
  [ "$(ls "$work/ck/3" | wc -l)" -eq 7 ] && [ $same -eq 1 ] &&
    ok "2x2 -> 1x3 -> 4x1 -> 2x2: all 7 files byte-identical" || bad "round trip differs"
  "$reshard" "$work/ck" "$work/r8" --tp_size 8 --dp_size 1 >"$work/r8.out" 2>&1
  rc=$?
  [ $rc -eq 1 ] && grep -q "autotp-reshard: error: cannot cut the checkpoint .* for tp_size 8" "$work/r8.out" &&
    ok "tp 8 refused: $(cut -c1-200 "$work/r8.out")" || bad "tp 8: rc $rc $(cat "$work/r8.out")"
  expect_ok elastic 3 --tp_size 1 --dp_size 3 --num_steps 5 --load "$work/ck/3" \
    --data "$work/run/kjv.tok" --out_dir "$work/elastic"
  grep -q "saved at TP 2 x DP 2, ZeRO-2; resharded on load" "$work/elastic.out" &&
    ok "elastic resume at TP 1 x DP 3" || bad "no reshard-on-load line"
  "$merge" "$work/ck" "$work/model.h5" >"$work/merge.out" 2>&1 &&
    "$convert" "$work/model.h5" "$work/hf" >"$work/convert.out" 2>&1 &&
    [ -s "$work/hf/model.safetensors" ] && [ -s "$work/hf/config.json" ] &&
    ok "merge + convert to safetensors" || bad "merge/convert: $(cat "$work/merge.out" "$work/convert.out")"
  ;;
bad_manifest)
  setup_two_checkpoints
  sed -i 's/"dp": 1,/"dp": 2,/' "$work/ck/4/manifest.json"
  expect_error bad_manifest "$work/ck/4/manifest.json: topology TP 2 x DP 2 needs the files" "${resume_args[@]}"
  last_good_intact
  ;;
missing_file)
  setup_two_checkpoints
  rm "$work/ck/4/optim_tp1_dp0.h5"
  expect_error missing_file "$work/ck/4/optim_tp1_dp0.h5 is missing" "${resume_args[@]}"
  last_good_intact
  ;;
checksum)
  setup_two_checkpoints
  size=$(stat -c %s "$work/ck/4/weights_tp1.h5")
  printf '\x55' | dd of="$work/ck/4/weights_tp1.h5" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
  expect_error checksum "$work/ck/4/weights_tp1.h5: checksum mismatch" "${resume_args[@]}"
  last_good_intact
  ;;
wrong_model)
  setup_two_checkpoints
  cat >"$work/other.json" <<'JSON'
{"model_type": "phi3", "vocab_size": 2048, "hidden_size": 128, "intermediate_size": 384,
 "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4,
 "max_position_embeddings": 1024, "tie_word_embeddings": true, "pad_token_id": 0}
JSON
  expect_error wrong_model "holds another model (hidden 128, layers 4" "${resume_args[@]}" \
    --model_name "$work/other.json"
  last_good_intact
  ;;
disk_full)
  setup_two_checkpoints
  mkdir -p "$work/small"
  bytes=$(du -sb "$work/ck/2" | cut -f1)
  if ! mount -t tmpfs -o size=$((bytes * 3 / 2)) tmpfs "$work/small" 2>"$work/mount.err"; then
    echo "SKIPPED: cannot mount a tmpfs here ($(cat "$work/mount.err")): the full-disk case needs root"
    exit 77
  fi
  trap 'umount "$work/small"' EXIT
  cp -a "$work/ck/2" "$work/small/2" && echo 2 >"$work/small/latest"
  expect_error disk_full "checkpoint of step 4 not written" 2 --tp_size 2 --dp_size 1 \
    --num_steps 4 --save_interval 2 --save_dir "$work/small" --resume --data "$work/run/kjv.tok" \
    --out_dir "$work/full"
  grep -qE "No space left on device|is the disk full" "$work/disk_full.out" &&
    ok "the error says the disk is full" || bad "no disk-full reason"
  [ "$(cat "$work/small/latest")" = 2 ] && diff -r "$work/small/2" "$work/good2" >/dev/null &&
    ok "latest still 2, checkpoint 2 intact" || bad "checkpoint 2 or latest changed"
  ls -a "$work/small" | grep -qE '^(\.tmp|4$)' && bad "a partial checkpoint is left" ||
    ok "no partial checkpoint left"
  ;;
*)
  echo "unknown case $case_name"
  exit 2
  ;;
esac
finish
