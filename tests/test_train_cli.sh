#!/usr/bin/env bash
# autotp-train end to end under mpirun: the default run learns, and every bad input or failing
# rank ends the whole job with one clear message and a non-zero exit (never a hang).
# usage: test_train_cli.sh AUTOTP_TRAIN WORK_DIR
set -u
train=$1
work=$2
rm -rf "$work" && mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi="timeout 300 mpirun --oversubscribe --mca btl_vader_single_copy_mechanism none"
failures=0 passed=0

ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failures=$((failures + 1)); echo "FAILED: $1"; }

# expect_error NAME PATTERN -- command...: non-zero exit (not a timeout) and PATTERN in stderr.
expect_error() {
  local name=$1 pattern=$2
  shift 3
  "$@" >"$work/$name.out" 2>"$work/$name.err"
  local rc=$?
  if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
    bad "$name: exit code $rc"
  elif ! grep -qF -- "$pattern" "$work/$name.err"; then
    bad "$name: stderr lacks '$pattern':"
    head -5 "$work/$name.err"
  else
    ok "$name"
  fi
}

# 1. The default run: TP2 x DP2, the loss falls visibly, metrics and plot written.
if $mpi -np 4 "$train" --tp_size 2 --dp_size 2 --num_steps 40 --out_dir "$work/default" \
    >"$work/default.out" 2>&1; then
  lines=$(wc -l <"$work/default/metrics.jsonl")
  first=$(head -1 "$work/default/metrics.jsonl" | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
  last=$(tail -1 "$work/default/metrics.jsonl" | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
  if [ "$lines" -eq 40 ] && awk -v f="$first" -v l="$last" 'BEGIN{exit !(l < f - 1.0)}'; then
    ok "default run: loss $first -> $last over 40 steps"
  else
    bad "default run: $lines metric lines, loss $first -> $last"
  fi
  if command -v gnuplot >/dev/null; then
    [ -s "$work/default/loss.png" ] && ok "loss.png written" || bad "loss.png missing"
  fi
  grep -q "step    40/40 | loss" "$work/default.out" && ok "per-step log line" ||
    bad "no per-step log line"
else
  bad "default run exited non-zero"
  tail -20 "$work/default.out"
fi
tok="$work/default/kjv.tok"

# 1b. MFU on the CPU is against the backend matmul's rate, measured at start-up (not a nominal
#     per-core figure): every logged MFU is tflops / (that rate x 4 ranks), and below 100%.
peak=$(sed -n 's/^autotp: MFU against \([0-9.e+-]*\) TFLOP\/s per rank: the cpu backend.s matmul (512^3, measured on every rank at once)$/\1/p' "$work/default.out")
if [ -n "$peak" ] && awk -v p="$peak" '
    { t = $0; m = $0
      sub(/.*"tflops":/, "", t); sub(/,.*/, "", t); sub(/.*"mfu":/, "", m); sub(/,.*/, "", m)
      want = t / (p * 4); if (m >= 1 || m <= 0 || (m - want) / want > 1e-3 || (want - m) / want > 1e-3) bad = 1 }
    END { exit bad }' "$work/default/metrics.jsonl"; then
  ok "MFU against the measured matmul rate, $peak TFLOP/s per rank"
else
  bad "MFU: rate '$peak'; $(head -1 "$work/default/metrics.jsonl")"
fi

# 2. A world size that is not tp x dp: one message, from rank 0 only.
expect_error world_size "world size 3 is not tp_size 2 x dp_size 2" -- \
  $mpi -np 3 "$train" --tp_size 2 --dp_size 2 --out_dir "$work/ws"
[ "$(grep -c "error" "$work/world_size.err")" -eq 1 ] && ok "world size: one message" ||
  bad "world size: $(grep -c error "$work/world_size.err") error lines"

# 3. A missing and a truncated token file.
expect_error missing_tokens "$work/none.tok" -- \
  $mpi -np 2 "$train" --tp_size 2 --dp_size 1 --data "$work/none.tok" --out_dir "$work/mt"
head -c 1000 "$tok" >"$work/cut.tok"
expect_error truncated_tokens "cut.tok" -- \
  $mpi -np 2 "$train" --tp_size 2 --dp_size 1 --data "$work/cut.tok" --out_dir "$work/tt"

# 3b. A layout that does not fit (Phi-4 at seq 16384 x 64 needs TiBs per rank): one message
# naming what is missing, from the memory plan, before any weight is initialised or loaded.
expect_error no_memory "missing. Use more TP ranks" -- \
  $mpi -np 2 "$train" --model_name phi-4 --deepspeed_config "$(dirname "$0")/../configs/phi-4.json" \
  --tp_size 2 --dp_size 1 --seq_length 16384 --micro_batch_size 64 --device cpu \
  --out_dir "$work/nm"
[ "$(grep -c "error" "$work/no_memory.err")" -eq 1 ] && ok "no memory: one message" ||
  bad "no memory: $(grep -c error "$work/no_memory.err") error lines"

# 4. A sequence longer than the model's positions (the tiny model has 1024).
expect_error seq_too_long "1024" -- \
  $mpi -np 2 "$train" --tp_size 2 --dp_size 1 --seq_length 2048 --data "$tok" --out_dir "$work/sl"

# 5. A tokenizer whose vocabulary does not fit the model.
sed 's/"vocab_size": *[0-9]*/"vocab_size": 1000/' >"$work/small.json" <<'JSON'
{"model_type": "phi3", "vocab_size": 2048, "hidden_size": 128, "intermediate_size": 256,
 "num_hidden_layers": 1, "num_attention_heads": 8, "num_key_value_heads": 4,
 "max_position_embeddings": 256, "tie_word_embeddings": true, "pad_token_id": 0}
JSON
expect_error vocab_mismatch "the tokenizer has 2048 tokens but the model's vocab_size is 1000" -- \
  $mpi -np 1 "$train" --tp_size 1 --dp_size 1 --model_name "$work/small.json" --data "$tok" \
  --deepspeed_config "$(dirname "$0")/../configs/tiny.json" --out_dir "$work/vm"

# 6. One failing rank ends the whole job: rank 3 alone is given a token file that is not there.
expect_error failing_rank "error on rank 3" -- \
  $mpi -np 3 "$train" --tp_size 2 --dp_size 2 --data "$tok" --out_dir "$work/fr" : \
  -np 1 "$train" --tp_size 2 --dp_size 2 --data "$work/none.tok" --out_dir "$work/fr"

# 7. A diverging run stops at the step whose loss is not finite, naming the step and samples.
expect_error nan_loss "the run stops" -- \
  $mpi -np 2 "$train" --tp_size 1 --dp_size 2 --lr 1e30 --num_steps 20 --data "$tok" \
  --out_dir "$work/nan"
grep -qE "step [0-9]+: the (loss|gradient norm) is .*samples [0-9,]+" "$work/nan_loss.err" &&
  ok "nan: names the step and the samples" || bad "nan: message lacks step or samples"

# 8. A ds_config without an optimizer block (as the seed's): the values used are said, once.
sed '/"optimizer": {/,/^  },/d; /"scheduler": {/,/^  },/d' \
  "$(dirname "$0")/../configs/tiny.json" >"$work/no_optimizer.json"
if $mpi -np 4 "$train" --tp_size 2 --dp_size 2 --num_steps 2 --data "$tok" \
    --deepspeed_config "$work/no_optimizer.json" --out_dir "$work/noopt" >"$work/noopt.out" 2>&1; then
  note="autotp: note: $work/no_optimizer.json has no optimizer block, so autotp trains with AdamW with lr 0.0003, betas [0.9, 0.999], eps 1e-08, weight_decay 0.01"
  [ "$(grep -cF "$note" "$work/noopt.out")" -eq 1 ] && ok "no optimizer block: said once" ||
    bad "no optimizer block: $(grep -c "optimizer block" "$work/noopt.out") notes"
  [ "$(grep -c '^step .* | lr 3.000e-04 |' "$work/noopt.out")" -eq 2 ] &&
    ok "no optimizer block: trains at lr 3e-4" || bad "no optimizer block: lr not 3e-4"
  ! grep -q "optimizer block" "$work/default.out" && ok "an optimizer block: no note" ||
    bad "the default config has an optimizer block, but the note was printed"
else
  bad "no optimizer block: the run failed"
  tail -5 "$work/noopt.out"
fi

echo "$passed passed, $failures failed"
[ $failures -eq 0 ]
