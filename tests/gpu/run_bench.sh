#!/usr/bin/env bash
# Issue #5's benchmark on the GPU machine: autotp-bench and the transformers reference (eager and
# torch.compile) in one run, Phi-4-mini shape, writing OUT_DIR/bench.md (a side-by-side table,
# rewritten after every run so that a cut-off session keeps what it measured) and each run's log
# and JSON. Builds nothing.
#
#   tests/gpu/run_bench.sh BUILD_DIR OUT_DIR
#
# Cases:
#   1. 8 layers, seq 2048 x micro 4 (8192 tokens per step): the anchors.md runs (autotp with
#      --profile).
#   2. 8 layers, seq 512 x micro 16.
#   3. 32 layers (the full Phi-4-mini), seq 2048, micro 1, 2, 4, 8 tried in turn until one does
#      not fit (LADDER overrides the list).
#   3c. The same with activation checkpointing (LADDER_CKPT, default "4 6 8"; the plan of
#      autotp-plan --activation_checkpointing says which fit the card).
#   4. Memory per rank over DP (issue #19): 8 layers, seq 2048 x micro 1, ZeRO-2, DP 1, 2, 4 and
#      8 (DPS overrides; "4@1,2" in RUNS runs DP 1 and 2 only) as ranks sharing the GPU through
#      the MPI-staged communicator, MEM_STEPS (5) timed after MEM_WARMUP (2), MEM_SEQ (2048)
#      tokens.
#   5. A reduced Phi-4 (its widths, 4 layers) at TP 2 x DP 4 = 8 ranks on the one GPU, ZeRO-2,
#      seq SEQ5 (2048) x micro 1 (8 x 10.19 GiB at 2048, an H200's; 8 x 9.03 GiB at 512).
# RUNS lists case:impl pairs in the order they run, most important first, so that a run cut
# short by the device's time keeps what matters (bench.md is rewritten after each). Default:
#   "1:autotp 1:torch-compile 2:autotp 1:torch-eager 2:torch-compile 3:autotp 2:torch-eager
#    3:torch-eager" (torch-compile on case 3 takes minutes of warmup: add 3:torch-compile).
# impl: autotp; autotp-fp32c (AUTOTP_CUDA_GEMM_OUTPUTS=fp32c: the GEMMs write C in fp32 where
# a narrow bf16 C is allowed, the A/B of cuBLAS's bf16 C); autotp-fp32out
# (AUTOTP_CUDA_GEMM_OUTPUTS=fp32: no bf16 outputs at all, the A/B of Use::Gemm and
# Use::Narrow); autotp-tuned (AUTOTP_GEMM_TUNE=1: GEMM algorithms chosen by timing, with the
# choices kept in OUT_DIR/gemm_tuning.txt, so a later autotp-tuned run reuses them: copied into
# share/gemm_tuning, the file is the table every run on that GPU uses); autotp-untuned
# (AUTOTP_GEMM_TUNE=0: cublasGemmEx's default algorithm for every shape); torch-eager;
# torch-compile. (AUTOTP_ATTN_DS_BYTES=0, by hand, makes the attention
# backward recompute dS instead of storing it.)
# "tiny" in RUNS is a smoke test of this script on the CPU (the tiny preset, autotp and eager).
# Environment: PYTHON (python3), MPIRUN (mpirun), STEPS (10), WARMUP (3), RUN_TIMEOUT (240 s
# per run), GEMM_SIZE (8192), LADDER ("1 2 4 8"), LADDER_CKPT ("4 6 8"), DPS ("1 2 4 8"),
# DEVICE (tiny: cpu), NP (ranks
# of an autotp run, 1; cases 4 and 5 set their own), BENCH_ARGS (added to every autotp run, e.g.
# the activation checkpointing switch).
set -uo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR OUT_DIR" >&2
  exit 2
fi
BUILD=$(cd "$1" && pwd) || exit 2
mkdir -p "$2" && OUT=$(cd "$2" && pwd) || exit 2
HERE=$(cd "$(dirname "$0")" && pwd)
# The GEMM tables (share/gemm_tuning) of this checkout, wherever the build was made.
export AUTOTP_SHARE_DIR=${AUTOTP_SHARE_DIR:-$(cd "$HERE/../.." && pwd)/share}
BENCH=$BUILD/tools/autotp-bench
PYTHON=${PYTHON:-python3}
MPIRUN=${MPIRUN:-mpirun}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
RUN_TIMEOUT=${RUN_TIMEOUT:-240}
GEMM_SIZE=${GEMM_SIZE:-8192}
RUNS=${RUNS:-1:autotp 1:torch-compile 2:autotp 1:torch-eager 2:torch-compile 3:autotp 2:torch-eager 3:torch-eager}
LADDER=${LADDER:-1 2 4 8}
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
  if [ "${impl%%-*}" = autotp ]; then
    # autotp-fp32out: Use::Gemm outputs written in fp32 and converted by the GEMMs (what
    # they save). --bind-to none: the model's initialisation threads need every core.
    local env=()
    [ "$impl" = autotp-fp32out ] && env=(-x AUTOTP_CUDA_GEMM_OUTPUTS=fp32)
    [ "$impl" = autotp-fp32c ] && env=(-x AUTOTP_CUDA_GEMM_OUTPUTS=fp32c)
    [ "$impl" = autotp-tuned ] &&
      env=(-x AUTOTP_GEMM_TUNE=1 -x "AUTOTP_GEMM_TUNE_FILE=$OUT/gemm_tuning.txt")
    [ "$impl" = autotp-untuned ] && env=(-x AUTOTP_GEMM_TUNE=0)
    timeout "$RUN_TIMEOUT" "$MPIRUN" --allow-run-as-root --oversubscribe --bind-to none \
      "${env[@]}" -np "${NP:-1}" "$BENCH" --steps "$STEPS" --warmup "$WARMUP" --json "$json" \
      ${BENCH_ARGS:-} "$@" >>"$log" 2>&1
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

# ladder NAME IMPL ARGS...: micro-batches of LADDER until one fails; keeps the largest that ran.
ladder() {
  local name=$1 impl=$2 best="" mb
  shift 2
  for mb in $LADDER; do
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
    local first=${LADDER%% *}
    echo "no micro-batch ran; micro $first: $(cat "$OUT/$name-try${first}__${impl}.failed")" \
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

for r in $RUNS; do
  c=${r%%:*} impl=${r#*:}
  dps=${DPS:-1 2 4 8}
  if [[ $c == 4@* ]]; then
    dps=${c#4@}
    dps=${dps//,/ }
    c=4
  fi
  case $c in
    1)
      shape=(--model phi-4-mini --layers 8 --seq_length 2048 --micro_batch_size 4)
      [ "${impl%%-*}" = autotp ] && shape+=(--profile)
      run 1-8layers-seq2048 "$impl" "${shape[@]}"
      ;;
    2)
      shape=(--model phi-4-mini --layers 8 --seq_length 512 --micro_batch_size 16)
      [ "${impl%%-*}" = autotp ] && shape+=(--profile)
      run 2-8layers-seq512 "$impl" "${shape[@]}"
      ;;
    3)
      # Fewer steps: each rung of the ladder is a full run.
      STEPS=5 WARMUP=2 ladder 3-32layers-seq2048 "$impl" --model phi-4-mini --seq_length 2048
      ;;
    3c)
      STEPS=5 WARMUP=2 LADDER=${LADDER_CKPT:-4 6 8} ladder 3c-32layers-seq2048-ckpt "$impl" \
        --model phi-4-mini --seq_length 2048 --activation_checkpointing true
      ;;
    4)
      for dp in $dps; do
        NP=$dp STEPS=${MEM_STEPS:-5} WARMUP=${MEM_WARMUP:-2} run "4-mem-8layers-dp$dp" "$impl" \
          --model phi-4-mini --layers 8 \
          --seq_length "${MEM_SEQ:-2048}" --micro_batch_size 1 --zero_stage 2 --dp_size "$dp" \
          --comm mpi
        table
      done
      ;;
    5)
      NP=8 STEPS=3 WARMUP=1 run 5-phi4-4layers-tp2dp4 "$impl" --model phi-4 --layers 4 \
        --tp_size 2 --dp_size 4 --seq_length "${SEQ5:-2048}" --micro_batch_size 1 --zero_stage 2 \
        --comm mpi
      ;;
    tiny)
      # A smoke test of this script on any machine (CPU included): the tiny preset.
      shape=(--model tiny --seq_length 128 --device "${DEVICE:-cpu}")
      run 0-tiny autotp "${shape[@]}" --micro_batch_size 4 --profile; table
      run 0-tiny torch-eager "${shape[@]}" --micro_batch_size 4; table
      STEPS=2 WARMUP=1 ladder 0-tiny-ladder autotp "${shape[@]}"
      ;;
    *) echo "unknown run '$r' in RUNS (case:impl, case 1 to 5 or 3c)" >&2 ;;
  esac
  table
done
echo "wrote $OUT/bench.md"
cat "$OUT/bench.md"
