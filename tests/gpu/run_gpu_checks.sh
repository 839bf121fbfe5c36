#!/usr/bin/env bash
# Every GPU acceptance check of autotp in one go, on a machine with (at least) one GPU. Builds
# nothing: BUILD_DIR is a finished CUDA build (copied from the build machine). Never stops at a
# failure; writes OUT_DIR/logs/*.log and OUT_DIR/report.md (PASS/FAIL per check with its
# numbers) and exits non-zero when any check failed.
#
# usage (from the repository root): bash tests/gpu/run_gpu_checks.sh BUILD_DIR OUT_DIR
#   AUTOTP_GPU_CHECKS_DRY=1   only the CPU parts (the CPU runs and their comparison): for a
#                             machine without a GPU
#   AUTOTP_GPU_CHECK_STEPS=N  training steps per run (default 200)
#   AUTOTP_KERNEL_MEMCHECK_FILTER  gtest filter of the kernel test under compute-sanitizer
#   AUTOTP_GPU_CHECKS_BUDGET_S=S   the whole script's time (default 480): the benchmark, last,
#                             gets what is left (skipped below 2 minutes; cut off at the end)
#   AUTOTP_GPU_CHECKS_HARD_S=S     no check runs past this (default 560, under a 10-minute
#                             session limit); a check cut off by it fails as timed out
#   AUTOTP_GPU_CHECKS_QUICK=1 for a short lease: skips the checkpoint checks on the GPU, the
#                             memcheck of the training run and of the transformers fixtures,
#                             and the export check (the kernel test still runs under memcheck),
#                             leaving more of the budget to the benchmark
#   AUTOTP_GPU_CHECKS_ONLY="comm buckets bench"  only these groups of checks (default: all):
#                             kernels comm model_hf train buckets plan checkpoints memcheck
#                             export bench; nvidia-smi and ldd always run
#
# The checks: nvidia-smi and ldd; the CUDA kernel test; the device communicators (MPI staged
# through host memory at 4 ranks on the GPU, NCCL at 1); the model on the CUDA backend against
# transformers; 200 steps of the default tiny config on the CPU (TP2xDP2, TP1xDP1) and on CUDA
# (TP2xDP2 over the staged MPI communicator, TP1xDP1 over NCCL), their loss curves compared
# pairwise; bucketed gradients (ZeRO-2 at TP1xDP4) on CUDA over the staged MPI communicator
# against the CPU; autotp-bench's measured peak against the memory plan plus the backend's
# scratch, to the byte, at three layouts; compute-sanitizer memcheck on a 3-step run and on the
# small kernel tests; and, when present, tests/checkpoint/export_check.sh and
# tests/gpu/run_bench.sh.
set -u
if [ $# -ne 2 ]; then
  echo "usage: bash tests/gpu/run_gpu_checks.sh BUILD_DIR OUT_DIR" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$1" 2>/dev/null && pwd) || {
  echo "run_gpu_checks: build directory $1 not found" >&2
  exit 2
}
mkdir -p "$2" && out=$(cd "$2" && pwd)
logs=$out/logs
runs=$out/runs
rm -rf "$logs" "$runs" && mkdir -p "$logs" "$runs"
dry=${AUTOTP_GPU_CHECKS_DRY:-0}
steps=${AUTOTP_GPU_CHECK_STEPS:-200}
budget=${AUTOTP_GPU_CHECKS_BUDGET_S:-480}  # seconds for the whole script, the benchmark last
hard=${AUTOTP_GPU_CHECKS_HARD_S:-560}      # no check runs past this (a hung one times out)
quick=${AUTOTP_GPU_CHECKS_QUICK:-0}
only=${AUTOTP_GPU_CHECKS_ONLY:-}
want() { [ -z "$only" ] || [[ " $only " == *" $1 "* ]]; }  # want GROUP: this group runs

# The binaries carry the build machine's source path: point them at this tree instead.
export AUTOTP_SHARE_DIR=$root/share AUTOTP_CONFIGS_DIR=$root/configs
export AUTOTP_TEST_SOURCE_DIR=$root
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export GTEST_COLOR=no  # mpirun gives ranks a pty: plain text for the summaries
[ "$dry" = 1 ] || export AUTOTP_REQUIRE_GPU=1  # a GPU test that finds no GPU fails, not skips
mpirun=(mpirun --oversubscribe --allow-run-as-root --mca btl_vader_single_copy_mechanism none)
train=$build/app/autotp-train
sanitizer=${COMPUTE_SANITIZER:-/usr/local/cuda/bin/compute-sanitizer}
cd "$root" || exit 2

results=()  # "| check | PASS/FAIL/SKIP | seconds | details |" rows of the report
failed=0

record() {  # record NAME STATUS SECONDS DETAILS
  results+=("| $1 | $2 | $3 | $4 |")
  [ "$2" = FAIL ] && failed=$((failed + 1))
  echo "[$2] $1 (${3}s) $4"
  write_report
}

# The report, rewritten after every check, so that a run cut off keeps what it found.
# write_report [final]
write_report() {
  {
    echo "# autotp GPU checks"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), host $(hostname)"
    echo "- commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- GPU: $gpu_name"
    echo "- build: $build; steps per training run: $steps"
    [ "$dry" = 1 ] && echo "- DRY RUN (AUTOTP_GPU_CHECKS_DRY=1): the GPU checks were skipped"
    [ "$quick" = 1 ] && echo "- QUICK (AUTOTP_GPU_CHECKS_QUICK=1): no GPU checkpoint checks, memcheck of the kernels only, no export check"
    echo "- curve thresholds: bf16 (CUDA) vs fp32 (CPU) on the same batches: max relative loss"
    echo "  difference <= 2e-2 over all steps and final loss within 1e-2 relative; fp32 vs fp32"
    echo "  (TP2xDP2 vs TP1xDP1): 1e-3 and 1e-3"
    echo
    echo "| check | result | seconds | details |"
    echo "|---|---|---|---|"
    printf '%s\n' "${results[@]}"
    echo
    if [ "${1:-}" != final ]; then
      echo "**still running** (or cut off after the last row)"
    elif [ $failed -eq 0 ]; then
      echo "**all checks passed** (logs in logs/)"
    else
      echo "**$failed check(s) FAILED** (logs in logs/)"
    fi
  } >"$out/report.md"
}

skip() { record "$1" SKIP 0 "$2"; }

# run NAME LIMIT_S CMD...: runs CMD with a time limit into logs/NAME.log; sets rc and secs.
run() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  # Never past the hard limit: the report must be written before the caller's own time runs out.
  [ $((hard - SECONDS)) -lt "$limit" ] && limit=$((hard - SECONDS))
  echo "\$ $*" >"$logs/$name.log"
  if [ "$limit" -lt 5 ]; then
    rc=124
  else
    timeout -k 10 "$limit" "$@" >>"$logs/$name.log" 2>&1
    rc=$?
  fi
  secs=$((SECONDS - t0))
  [ $rc -eq 124 ] && echo "run_gpu_checks: timed out after ${limit}s" >>"$logs/$name.log"
}

# check NAME LIMIT_S CMD...: PASS when CMD exits 0; $details (set before) goes in the report.
details=""
check() {
  local name=$1
  run "$@"
  local status=PASS
  [ $rc -eq 0 ] || status=FAIL
  local d="${details:-}"
  [ $rc -eq 0 ] || d="exit $rc${d:+; $d}; see logs/$name.log"
  record "$name" $status $secs "$d"
  details=""
}

# The gtest summary of a log: "N tests passed" or the failed tests' names.
gtest_summary() {
  local log=$logs/$1.log
  local passed failed_tests
  passed=$(grep -oE '\[  PASSED  \] [0-9]+ test' "$log" | tail -1 | grep -oE '[0-9]+')
  failed_tests=$(grep -E '^\[  FAILED  \] [A-Za-z]' "$log" | sed 's/\[  FAILED  \] //' |
    sed 's/ (.*//' | sort -u | tr '\n' ' ')
  local skipped
  skipped=$(grep -oE '\[  SKIPPED \] [0-9]+ test' "$log" | tail -1 | grep -oE '[0-9]+')
  echo "${passed:-0} tests passed${skipped:+, $skipped skipped}${failed_tests:+; failed: $failed_tests}"
}

# gtest_check NAME LIMIT_S CMD...: a GoogleTest binary; PASS when it exits 0 and skipped nothing
# (on the GPU machine a skip means a GPU test did not run).
gtest_check() {
  local name=$1
  run "$@"
  local summary status=PASS
  summary=$(gtest_summary "$name")
  [ $rc -eq 0 ] || status=FAIL
  [ "$dry" != 1 ] && grep -q '\[  SKIPPED \]' "$logs/$name.log" && status=FAIL
  [ $rc -eq 0 ] || summary="exit $rc; $summary"
  record "$name" $status $secs "$summary"
}

need_file() {  # need_file NAME PATH: records FAIL when PATH is missing
  [ -e "$2" ] && return 0
  record "$1" FAIL 0 "$2 is missing (was the CUDA build copied whole?)"
  return 1
}

# ---- the machine ------------------------------------------------------------------------------
{
  date -u
  uname -a
  git -C "$root" rev-parse HEAD 2>/dev/null || true
} >"$logs/machine.log" 2>&1
gpu_name="none"
if [ "$dry" != 1 ]; then
  run nvidia-smi 30 nvidia-smi
  if [ $rc -eq 0 ]; then
    gpu_name=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader |
      head -1)
    record nvidia-smi PASS $secs "$gpu_name"
  else
    record nvidia-smi FAIL $secs "exit $rc; see logs/nvidia-smi.log"
  fi
fi

binaries=("$train" "$build/tests/test_cuda_backend" "$build/tests/test_cuda_model_hf"
  "$build/tests/test_device_comm")
: >"$logs/ldd.log"
missing_libs=0
for b in "${binaries[@]}"; do
  [ -e "$b" ] || continue
  {
    echo "== $b"
    ldd "$b"
  } >>"$logs/ldd.log" 2>&1
done
missing_libs=$(grep -c "not found" "$logs/ldd.log")
if [ "$missing_libs" -eq 0 ]; then
  record ldd PASS 0 "every library resolves ($(grep -cE '^\s*lib(cudart|cublas|nccl|mpi)' \
"$logs/ldd.log") CUDA/NCCL/MPI entries; logs/ldd.log)"
else
  record ldd FAIL 0 "$(grep "not found" "$logs/ldd.log" | awk '{print $1}' | sort -u |
    tr '\n' ' ')not found"
fi

# ---- GPU tests -------------------------------------------------------------------------------
if [ "$dry" = 1 ]; then
  for c in cuda_kernels device_comm_staged_np4 device_comm_nccl_np1 cuda_model_hf; do
    skip $c "AUTOTP_GPU_CHECKS_DRY=1"
  done
else
  if want kernels && need_file cuda_kernels "$build/tests/test_cuda_backend"; then
    gtest_check cuda_kernels 180 "$build/tests/test_cuda_backend"
  fi
  if want comm && need_file device_comm_staged_np4 "$build/tests/test_device_comm"; then
    # 4 ranks on one GPU: the staged MPI communicator (NCCL refuses a shared GPU).
    gtest_check device_comm_staged_np4 120 "${mpirun[@]}" -np 4 "$build/tests/test_device_comm" \
      --gtest_filter='DeviceComm.Staged*'
    gtest_check device_comm_nccl_np1 120 "${mpirun[@]}" -np 1 "$build/tests/test_device_comm"
  fi
  if want model_hf && need_file cuda_model_hf "$build/tests/test_cuda_model_hf"; then
    gtest_check cuda_model_hf 120 "$build/tests/test_cuda_model_hf"
    # The numbers: loss, logits and worst gradient error per fixture.
    results[-1]="${results[-1]% |}$(grep '^hf-fixture' "$logs/cuda_model_hf.log" |
      sed 's/^hf-fixture / /; s/ on [^:]*:/:/' | tr '\n' ';') |"
  fi
fi

# ---- 200 steps of the default tiny config ----------------------------------------------------
# train NAME NP ARGS...: one run into runs/NAME; its summary from the last metrics line.
tok=""
train_run() {
  local name=$1 np=$2
  shift 2
  if [ ! -x "$train" ]; then
    record "train_$name" FAIL 0 "$train is missing"
    return
  fi
  local data=()
  [ -n "$tok" ] && [ -s "$tok" ] && data=(--data "$tok")
  run "train_$name" 240 "${mpirun[@]}" -np "$np" "$train" --num_steps "$steps" \
    --out_dir "$runs/$name" "${data[@]}" "$@"
  local m=$runs/$name/metrics.jsonl status=PASS d
  local n=0
  [ -s "$m" ] && n=$(wc -l <"$m")
  if [ $rc -ne 0 ] || [ "$n" -ne "$steps" ]; then
    status=FAIL
    d="exit $rc, $n of $steps steps logged; see logs/train_$name.log"
  else
    d=$(python3 - "$m" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
tail = sorted(r["tokens_per_s"] for r in recs[len(recs) // 2:])
print(f"loss {recs[0]['loss']:.4f} -> {recs[-1]['loss']:.4f}, median {tail[len(tail) // 2]:.0f} "
      f"tok/s (2nd half), peak mem {recs[-1]['peak_mem_gib']:.2f} GiB")
PY
    )
    d="$d; $(grep -m1 '^autotp: .*model' "$logs/train_$name.log" | sed 's/^autotp: //')"
  fi
  record "train_$name" $status $secs "$d"
  # Later runs reuse the first run's token file (tokenizing the corpus once).
  [ -z "$tok" ] && [ -s "$runs/$name/kjv.tok" ] && tok=$runs/$name/kjv.tok
}

# TP1xDP1 takes 2 micro-batches per step, so that every run sees the same global batch (16
# samples) and all four curves are the same curve.
if want train; then
  train_run cpu_tp2dp2 4 --device cpu --tp_size 2 --dp_size 2
  train_run cpu_tp1dp1 1 --device cpu --tp_size 1 --dp_size 1 --gradient_accumulation_steps 2
  if [ "$dry" = 1 ]; then
    skip train_cuda_mpi_tp2dp2 "AUTOTP_GPU_CHECKS_DRY=1"
    skip train_cuda_nccl_tp1dp1 "AUTOTP_GPU_CHECKS_DRY=1"
  else
    train_run cuda_mpi_tp2dp2 4 --device cuda --comm mpi --tp_size 2 --dp_size 2
    train_run cuda_nccl_tp1dp1 1 --device cuda --comm nccl --tp_size 1 --dp_size 1 \
      --gradient_accumulation_steps 2
  fi
fi
# Bucketed gradients: ZeRO-2 over DP 4 (the tiny model's buckets + shard are smaller than its
# whole buffer from DP 4 on), every rank on the one GPU through the staged communicator.
if want buckets; then
  train_run cpu_tp1dp4 4 --device cpu --tp_size 1 --dp_size 4
  if [ "$dry" = 1 ]; then
    skip train_cuda_mpi_tp1dp4 "AUTOTP_GPU_CHECKS_DRY=1"
  else
    train_run cuda_mpi_tp1dp4 4 --device cuda --comm mpi --tp_size 1 --dp_size 4
  fi
fi

# The memory plan against the CUDA backend's allocations: autotp-bench's measured peak of
# every rank must be its plan (train/memory_plan.hpp) plus the backend's scratch slots, to the
# byte ("unplanned_bytes" 0), at one rank (NCCL), TP 2 x DP 2 with ZeRO-2 (narrow weights)
# and TP 1 x DP 4 with ZeRO-2 and checkpointing, ranks sharing the GPU.
plan_check() {  # plan_check NAME NP ARGS...
  local name=$1 np=$2
  shift 2
  local json=$runs/$name.json
  run "plan_$name" 300 "${mpirun[@]}" -np "$np" "$build/tools/autotp-bench" --model phi-4-mini \
    --layers 2 --seq_length 1024 --micro_batch_size 2 --steps 2 --warmup 1 --json "$json" "$@"
  local d status=FAIL
  if [ $rc -eq 0 ] && [ -f "$json" ]; then
    d=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); u=r["unplanned_bytes"]
s=sum(r["scratch_bytes"].values()); p=r["planned_mem"]
print(("OK " if u == 0 else "BAD ") + "peak %d B = plan %d (rank 0 of the largest) + scratch %d "
      "(rank 0) %+d; unplanned %d B%s" % (r["peak_mem_bytes"], p["total"], s,
      r["peak_mem_bytes"] - p["total"] - s, u, " (bucketed)" if p["grad_buckets"] else ""))' \
      "$json" 2>&1)
    [ "${d%% *}" = OK ] && status=PASS
    d=${d#* }
  else
    d="exit $rc; see logs/plan_$name.log"
  fi
  record "plan_$name" $status $secs "$d"
}
if want plan && [ "$dry" != 1 ]; then
  plan_check tp1dp1 1 --comm nccl
  plan_check tp2dp2_zero2 4 --comm mpi --tp_size 2 --dp_size 2 --zero_stage 2
  plan_check tp1dp4_zero2_ckpt 4 --comm mpi --dp_size 4 --zero_stage 2 \
    --activation_checkpointing true
fi

# compare NAME RUN_A RUN_B [compare_curves.py options]
compare() {
  local name=$1 a=$runs/$2/metrics.jsonl b=$runs/$3/metrics.jsonl
  shift 3
  local line
  line=$(python3 "$root/tests/gpu/compare_curves.py" "$name" "$a" "$b" "$@" 2>&1)
  local rc=$?
  echo "$line" >"$logs/$name.log"
  local status=PASS
  [ $rc -eq 0 ] || status=FAIL
  record "$name" $status 0 "${line#* "$name": }"
}

# fp32 against fp32 (the same arithmetic split differently): far tighter than bf16.
if want train; then
  compare curves_cpu_tp2dp2_vs_cpu_tp1dp1 cpu_tp2dp2 cpu_tp1dp1 --max-rel 1e-3 --final-rel 1e-3
  if [ "$dry" != 1 ]; then
    compare curves_cuda_mpi_tp2dp2_vs_cpu_tp2dp2 cuda_mpi_tp2dp2 cpu_tp2dp2
    compare curves_cuda_nccl_tp1dp1_vs_cpu_tp1dp1 cuda_nccl_tp1dp1 cpu_tp1dp1
  fi
fi
if want buckets && [ "$dry" != 1 ]; then
  compare curves_cuda_mpi_tp1dp4_vs_cpu_tp1dp4 cuda_mpi_tp1dp4 cpu_tp1dp4
fi

# ---- checkpoints on the GPU --------------------------------------------------------------------
# Bit-exact resume on the CUDA backend (its kernels use no atomics: a run repeats bit for bit):
# half the steps (100 of 200), save, resume to the end must equal the uninterrupted run
# exactly. Then the half-way checkpoint resharded from TP1xDP1 to TP2xDP2 resumes on the
# MPI-staged comm and must follow the same curve within bf16 tolerance.
if [ "$quick" = 1 ] || ! want checkpoints; then
  skip resume_cuda "AUTOTP_GPU_CHECKS_QUICK=1 or not in AUTOTP_GPU_CHECKS_ONLY"
elif [ "$dry" != 1 ] && [ -x "$train" ] && [ -x "$build/tools/autotp-reshard" ]; then
  details=""
  data=()
  [ -n "$tok" ] && data=(--data "$tok")
  one=(--device cuda --comm nccl --tp_size 1 --dp_size 1 --gradient_accumulation_steps 2)
  half=$((steps / 2))
  check resume_cuda_first_half 240 "${mpirun[@]}" -np 1 "$train" "${one[@]}" --num_steps $half \
    --save_dir "$runs/ck" --out_dir "$runs/cuda_resumed" "${data[@]}"
  check resume_cuda_second_half 240 "${mpirun[@]}" -np 1 "$train" "${one[@]}" --num_steps "$steps" \
    --save_dir "$runs/ck" --resume --out_dir "$runs/cuda_resumed" "${data[@]}"
  compare resume_cuda_bitexact cuda_resumed cuda_nccl_tp1dp1 --max-rel 0 --final-rel 0
  check reshard_1x1_to_2x2 120 "$build/tools/autotp-reshard" "$runs/ck/$half" "$runs/ck22" \
    --tp_size 2 --dp_size 2
  # The resumed run appends to the metrics of the steps it did not run (the first half).
  mkdir -p "$runs/cuda_resharded"
  head -n $half "$runs/cuda_resumed/metrics.jsonl" >"$runs/cuda_resharded/metrics.jsonl"
  check resume_resharded_2x2 240 "${mpirun[@]}" -np 4 "$train" --device cuda --comm mpi \
    --tp_size 2 --dp_size 2 --num_steps "$steps" --save_dir "$runs/ck22" --resume \
    --out_dir "$runs/cuda_resharded" "${data[@]}"
  compare resume_resharded_vs_uninterrupted cuda_resharded cuda_nccl_tp1dp1
fi

# ---- compute-sanitizer -----------------------------------------------------------------------
# memcheck NAME CMD...: PASS when CMD exits 0 and the sanitizer reports no error. One rank
# under mpirun, the sanitizer wrapping the rank.
memcheck() {
  local name=$1
  shift
  run "$name" 240 "${mpirun[@]}" -np 1 "$sanitizer" --tool memcheck --error-exitcode 99 "$@"
  local status=PASS summary
  summary=$(grep -E "ERROR SUMMARY" "$logs/$name.log" | tail -1 | sed 's/^=* *//')
  [ $rc -eq 0 ] && grep -q "ERROR SUMMARY: 0 errors" "$logs/$name.log" || status=FAIL
  record "$name" $status $secs "${summary:-no sanitizer summary}; exit $rc"
}

# The kernel test without its two size sweeps (attention up to T 300, GEMMs up to 512): the
# model and training runs above cover those kernels at small sizes under the sanitizer.
kernel_filter='-CudaVsCpu.AttentionForwardBackward:CudaVsCpu.MatmulAllTransposesAccumulateAndParamShadow'
if [ "$dry" = 1 ] || ! want memcheck; then
  skip memcheck "AUTOTP_GPU_CHECKS_DRY=1 or not in AUTOTP_GPU_CHECKS_ONLY"
elif [ ! -x "$sanitizer" ]; then
  record memcheck FAIL 0 "$sanitizer not found (set COMPUTE_SANITIZER)"
else
  data=()
  [ -n "$tok" ] && data=(--data "$tok")
  [ -x "$train" ] && [ "$quick" != 1 ] && memcheck memcheck_train_3steps "$train" \
    --device cuda --comm mpi --tp_size 1 --dp_size 1 --num_steps 3 --out_dir "$runs/memcheck" \
    "${data[@]}"
  [ -x "$build/tests/test_cuda_model_hf" ] && [ "$quick" != 1 ] &&
    memcheck memcheck_model_hf "$build/tests/test_cuda_model_hf"
  [ -x "$build/tests/test_cuda_backend" ] &&
    memcheck memcheck_kernels "$build/tests/test_cuda_backend" \
      --gtest_filter="${AUTOTP_KERNEL_MEMCHECK_FILTER:-$kernel_filter}"
fi

# ---- other helpers' checks, when present -----------------------------------------------------
if [ -f tests/checkpoint/export_check.sh ] && [ "$quick" != 1 ] && want export; then
  details="results in export/"
  check export_check 300 bash tests/checkpoint/export_check.sh "$build" "$out/export"
fi
# The benchmark (about 7-8 minutes by itself) gets what is left of the budget; it rewrites its
# bench.md after every case, so a cut-off benchmark keeps what it measured.
if [ "$dry" != 1 ] && want bench && [ -x "$build/tools/autotp-bench" ] &&
  [ -f tests/gpu/run_bench.sh ]; then
  left=$((budget - SECONDS))
  if [ $left -lt 120 ]; then
    skip bench "${left}s of the ${budget}s budget left; run it alone: bash tests/gpu/run_bench.sh $1 OUT"
  else
    # In a session of its own: when the budget cuts it, its runs (each under its own timeout,
    # in process groups of their own) end with it instead of holding the GPU afterwards.
    # shellcheck disable=SC2016  # $$, $1.. belong to the inner shell
    RUN_TIMEOUT=$((left < 240 ? left : 240)) run bench $left setsid --wait bash -c \
      'echo $$ >"$1/bench.sid"; exec bash tests/gpu/run_bench.sh "$2" "$3"' _ "$logs" "$build" \
      "$out/bench"
    [ -s "$logs/bench.sid" ] && pkill -KILL -s "$(cat "$logs/bench.sid")" 2>/dev/null
    if [ $rc -eq 0 ]; then
      record bench PASS $secs "results in bench/"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
      record bench CUT $secs "stopped at the ${budget}s budget; what it measured is in bench/"
    else
      record bench FAIL $secs "exit $rc; see logs/bench.log and bench/"
    fi
  fi
fi

write_report final
echo "run_gpu_checks: wrote $out/report.md ($failed failed)"
[ $failed -eq 0 ]
