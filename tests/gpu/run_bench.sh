#!/usr/bin/env bash
# Issue #5's benchmark on the GPU machine: autotp-bench and the transformers reference (eager and
# torch.compile) in one run, Phi-4-mini shape, writing OUT_DIR/bench.md (a side-by-side table,
# rewritten after every run so that a cut-off session keeps what it measured) and each run's log
# and JSON. Builds nothing.
#
#   tests/gpu/run_bench.sh BUILD_DIR OUT_DIR
#
# Cases, most important first:
#   1. 8 layers, seq 2048 x micro 4 (8192 tokens per step): autotp (with --profile), eager,
#      compile -- the anchors.md runs.
#   2. 8 layers, seq 512 x micro 16: the same three.
#   3. 32 layers (the full Phi-4-mini), seq 2048, micro 1, 2, 4, 8 tried in turn until one does
#      not fit: autotp and eager (compile too when COMPILE_32=1: its warmup takes minutes).
# About 7-8 minutes on an H100, most of it torch.compile's warmup. Environment: PYTHON (python3),
# MPIRUN (mpirun), STEPS (10), WARMUP (3), RUN_TIMEOUT (240 s per run), COMPILE_32 (0),
# CASES (default "1 2 3"; "tiny" = a smoke test of this script on the CPU), GEMM_SIZE (8192).
set -uo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR OUT_DIR" >&2
  exit 2
fi
BUILD=$(cd "$1" && pwd) || exit 2
mkdir -p "$2" && OUT=$(cd "$2" && pwd) || exit 2
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=$BUILD/tools/autotp-bench
PYTHON=${PYTHON:-python3}
MPIRUN=${MPIRUN:-mpirun}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
RUN_TIMEOUT=${RUN_TIMEOUT:-240}
GEMM_SIZE=${GEMM_SIZE:-8192}
CASES=${CASES:-1 2 3}
[ -x "$BENCH" ] || { echo "$BENCH not found: build the autotp-bench target first" >&2; exit 2; }

table() { "$PYTHON" "$HERE/bench_table.py" "$OUT" || echo "bench_table.py failed" >&2; }

# run NAME IMPL ARGS...: one benchmark run; NAME__IMPL.json on success, NAME__IMPL.failed with the
# reason otherwise. Returns 0, 3 (out of memory) or 1.
run() {
  local name=$1 impl=$2
  shift 2
  local log=$OUT/${name}__${impl}.log json=$OUT/${name}__${impl}.json
  local start=$SECONDS rc
  rm -f "$json" "$OUT/${name}__${impl}.failed"
  echo "== $name $impl: $*" | tee "$log"
  if [ "$impl" = autotp ]; then
    # --bind-to none: the model's initialisation threads need every core, not the rank's one.
    timeout "$RUN_TIMEOUT" "$MPIRUN" --allow-run-as-root --bind-to none -np 1 "$BENCH" \
      --steps "$STEPS" --warmup "$WARMUP" --json "$json" "$@" >>"$log" 2>&1
  else
    timeout "$RUN_TIMEOUT" "$PYTHON" "$HERE/hf_reference_bench.py" \
      --mode "${impl#torch-}" --steps "$STEPS" --warmup "$WARMUP" --json "$json" "$@" \
      >>"$log" 2>&1
  fi
  rc=$?
  grep -E "^(result|floor|profile|  )" "$log"
  echo "   ($((SECONDS - start)) s, exit $rc)"
  if [ $rc -eq 0 ] && [ -f "$json" ]; then
    return 0
  fi
  local why="failed (exit $rc, see ${name}__${impl}.log)"
  [ $rc -eq 124 ] && why="timed out after ${RUN_TIMEOUT} s"
  if grep -qiE "out of (GPU )?memory|OutOfMemory|cudaErrorMemoryAllocation" "$log"; then
    why="out of memory"
    rc=3
  fi
  echo "$why" >"$OUT/${name}__${impl}.failed"
  return $rc
}

# ladder NAME IMPL ARGS...: micro-batch 1, 2, 4, 8 until one fails; keeps the largest that ran.
ladder() {
  local name=$1 impl=$2 best="" mb
  shift 2
  for mb in 1 2 4 8; do
    if run "$name-try$mb" "$impl" --micro_batch_size "$mb" "$@"; then
      best=$mb
    else
      break
    fi
  done
  if [ -n "$best" ]; then
    cp "$OUT/$name-try${best}__${impl}.json" "$OUT/${name}__${impl}.json"
    rm -f "$OUT/${name}__${impl}.failed"
  else
    echo "no micro-batch ran; micro 1: $(cat "$OUT/$name-try1__${impl}.failed")" \
      >"$OUT/${name}__${impl}.failed"
  fi
  # The tries' logs stay; their JSON would show up as cases of their own in the table.
  rm -f "$OUT/$name"-try*__"${impl}".json "$OUT/$name"-try*__"${impl}".failed
}

echo "autotp run_bench: $(date -u +%FT%TZ) on $(hostname); build $BUILD; out $OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null
ldd "$BENCH" | grep -E "not found" && echo "warning: autotp-bench has unresolved libraries" >&2

"$PYTHON" "$HERE/hf_reference_bench.py" --mode gemm --gemm_size "$GEMM_SIZE" \
  --json "$OUT/gemm.json" >"$OUT/gemm.log" 2>&1
cat "$OUT/gemm.log"
table

for c in $CASES; do
  case $c in
    1)
      shape=(--model phi-4-mini --layers 8 --seq_length 2048 --micro_batch_size 4)
      run 1-8layers-seq2048 autotp "${shape[@]}" --profile; table
      run 1-8layers-seq2048 torch-eager "${shape[@]}"; table
      run 1-8layers-seq2048 torch-compile "${shape[@]}"; table
      ;;
    2)
      shape=(--model phi-4-mini --layers 8 --seq_length 512 --micro_batch_size 16)
      run 2-8layers-seq512 autotp "${shape[@]}" --profile; table
      run 2-8layers-seq512 torch-eager "${shape[@]}"; table
      run 2-8layers-seq512 torch-compile "${shape[@]}"; table
      ;;
    3)
      # Fewer steps: each rung of the ladder is a full run.
      shape=(--model phi-4-mini --seq_length 2048)
      STEPS=5 WARMUP=2 ladder 3-32layers-seq2048 autotp "${shape[@]}"; table
      STEPS=5 WARMUP=2 ladder 3-32layers-seq2048 torch-eager "${shape[@]}"; table
      if [ "${COMPILE_32:-0}" = 1 ]; then
        STEPS=5 WARMUP=2 ladder 3-32layers-seq2048 torch-compile "${shape[@]}"; table
      fi
      ;;
    tiny)
      # A smoke test of this script on any machine (CPU included): the tiny preset.
      shape=(--model tiny --seq_length 128 --device "${DEVICE:-cpu}")
      run 0-tiny autotp "${shape[@]}" --micro_batch_size 4 --profile; table
      run 0-tiny torch-eager "${shape[@]}" --micro_batch_size 4; table
      STEPS=2 WARMUP=1 ladder 0-tiny-ladder autotp "${shape[@]}"; table
      ;;
    *) echo "unknown case '$c' in CASES" >&2 ;;
  esac
done
echo "wrote $OUT/bench.md"
cat "$OUT/bench.md"
