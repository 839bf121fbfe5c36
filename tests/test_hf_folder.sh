#!/usr/bin/env bash
# A Hugging Face folder as --model_name: autotp-train, autotp-bench and autotp-plan take its
# weights (a single model.safetensors, a sharded one, the Phi-4-multimodal LoRA merge), bit for
# bit what the same folder converted by autotp-convert gives; the conversion is cached in
# --out_dir and re-made when the folder changes; the start-up line says where the weights came
# from; a folder that cannot serve is one clear error naming the file or tensor.
# usage: test_hf_folder.sh AUTOTP_TRAIN AUTOTP_CONVERT AUTOTP_BENCH AUTOTP_PLAN FIXTURES SHARE WORK
set -u
train=$1 convert=$2 bench=$3 plan=$4 fix=$5 share=$6 work=$7
rm -rf "$work" && mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi="timeout 300 mpirun --oversubscribe --mca btl_vader_single_copy_mechanism none"
failures=0 passed=0
ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failures=$((failures + 1)); echo "FAILED: $1"; }

# The fixtures have a vocabulary of 64: a GPT-2 style tokenizer of 63 single characters (the
# other bytes of the corpus are dropped) and the document separator, on a slice of the corpus.
mkdir -p "$work/tok"
chars=(a b c d e f g h i j k l m n o p q r s t u v w x y z A B C D E F G H I J K L M N O P Q R S T U
       V W X Y Z "Ġ" . , : ";" "'" "!" "?" "(" ")" "Ċ")
{
  printf '{'
  for i in "${!chars[@]}"; do printf '%s"%s": %d' "$([ "$i" -gt 0 ] && echo ,)" "${chars[$i]}" "$i"; done
  printf '}\n'
} >"$work/tok/vocab.json"
echo "#version: 0.2" >"$work/tok/merges.txt"
echo '{"<|endoftext|>": 63}' >"$work/tok/added_tokens.json"
head -c 60000 "$share/corpus/kjv.txt" >"$work/corpus.txt"
# The fixtures' shapes: 4 query / 2 KV heads of 8, intermediate 48.
cat >"$work/ds.json" <<'JSON'
{"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1, "seed": 7,
 "optimizer": {"type": "AdamW", "params": {"lr": 0.01, "weight_decay": 0.0}},
 "tensor_parallel": {"autotp_size": 2, "partition_config": {
   "use_default_specs": false, "strict_mode": true, "vocab_parallel": true, "layer_specs": [
   {"patterns": [".*\\.self_attn\\.qkv_proj\\.weight$"], "partition_type": "column",
    "shape": [[32, 16, 16], -1], "partition_dim": 0},
   {"patterns": [".*\\.self_attn\\.o_proj\\.weight$"], "partition_type": "row"},
   {"patterns": [".*\\.mlp\\.gate_up_proj\\.weight$"], "partition_type": "column",
    "shape": [2, -1], "partition_dim": 0},
   {"patterns": [".*\\.mlp\\.down_proj\\.weight$"], "partition_type": "row"}]}},
 "data_parallel_size": 1}
JSON

# run NAME MODEL OUT_DIR [flags]: 2 steps at TP 2; stdout+stderr in $work/NAME.log.
run() {
  local name=$1 model=$2 out=$3
  shift 3
  $mpi -np 2 "$train" --model_name "$model" --deepspeed_config "$work/ds.json" --seq_length 32 \
    --num_steps 2 --data "$work/corpus.txt" --tokenizer "$work/tok" --out_dir "$out" "$@" \
    >"$work/$name.log" 2>&1
}
losses() { sed 's/.*"loss":\([0-9.e+-]*\).*/\1/' "$1/metrics.jsonl" | tr '\n' ' '; }

# same_as_convert NAME FOLDER [--merge_lora X]: the folder trains exactly as its autotp-convert
# .h5 (both steps' losses, every digit), and differs from a random start.
same_as_convert() {
  local name=$1 folder=$2
  shift 2
  "$convert" "$folder" "$work/$name.h5" "$@" >/dev/null || bad "$name: autotp-convert failed"
  run "$name-h5" "$work/$name.h5" "$work/$name-h5" || bad "$name: the .h5 run failed"
  if run "$name" "$folder" "$work/$name" "$@"; then
    local a b
    a=$(losses "$work/$name-h5") b=$(losses "$work/$name")
    [ -n "$a" ] && [ "$a" = "$b" ] && ok "$name: losses $b = the converted .h5's" ||
      bad "$name: losses '$b' vs the converted .h5's '$a'"
  else
    bad "$name: the folder run failed"
    tail -5 "$work/$name.log"
  fi
}

# 1. One model.safetensors (BF16, untied lm_head), sharded (F16, tied, index.json), and the
#    Phi-4-multimodal text model with its LoRA adapters dropped or one merged.
same_as_convert phi4 "$fix/phi4_tiny"
same_as_convert mini "$fix/mini_tiny"
same_as_convert mm "$fix/mm_tiny"
same_as_convert mm_vision "$fix/mm_tiny" --merge_lora vision
[ "$(losses "$work/mm")" != "$(losses "$work/mm_vision")" ] &&
  ok "mm: the merged adapter changes the losses" || bad "mm: --merge_lora vision changed nothing"
run random "$fix/phi4_tiny/config.json" "$work/random" || bad "random init run failed"
[ "$(losses "$work/random")" != "$(losses "$work/phi4")" ] &&
  ok "random init from config.json differs from the folder's weights" ||
  bad "random init gives the folder's losses: the weights were not loaded"

# 2. The start-up line says where the weights came from.
expect_line() {  # NAME TEXT
  grep -qF -- "$2" "$work/$1.log" && ok "$1: '$2'" || {
    bad "$1: no line '$2' in:"
    grep "autotp:" "$work/$1.log" | head -8
  }
}
expect_line phi4 "autotp: weights: $fix/phi4_tiny (model.safetensors), converted now to $work/phi4/phi4_tiny."
expect_line mini "autotp: weights: $fix/mini_tiny (2 shards listed by model.safetensors.index.json), converted now"
expect_line mm "(model.safetensors; LoRA adapters dropped (--merge_lora vision or speech merges one))"
expect_line mm "autotp: note: dropped 16 LoRA tensors of adapter 'vision'"
expect_line mm_vision "(model.safetensors; LoRA adapter 'vision' merged), converted now to $work/mm_vision/mm_tiny.vision."
expect_line phi4-h5 "autotp: weights: $work/phi4.h5 (autotp model file)"
expect_line random "autotp: weights: random init from $fix/phi4_tiny/config.json, seed 7"

# 3. The conversion is kept: a second run reads it; a changed folder is converted again and
#    the outdated conversion removed.
cp -r "$fix/phi4_tiny" "$work/src"
run cache1 "$work/src" "$work/cache" && run cache2 "$work/src" "$work/cache" ||
  bad "cache runs failed"
expect_line cache1 "converted now to $work/cache/src."
expect_line cache2 "read through its conversion $work/cache/src."
[ "$(losses "$work/cache")" = "$(losses "$work/phi4")" ] &&
  ok "cache: the second run trains as the first" || bad "cache: losses $(losses "$work/cache")"
touch -d "2001-01-01" "$work/src/model.safetensors"
run cache3 "$work/src" "$work/cache" || bad "cache3 failed"
expect_line cache3 "converted now to $work/cache/src."
expect_line cache3 "autotp: note: removed the outdated conversion $work/cache/src."
n=$(ls "$work/cache" | grep -c '^src\..*\.h5$')
[ "$n" -eq 1 ] && ok "cache: one conversion left" || bad "cache: $n conversions in $work/cache"

# 4. autotp-bench loads the folder's weights too (the same loss as from the .h5, a random one
#    otherwise), and autotp-plan says where autotp-train would take them from.
bench_loss() {  # MODEL NAME
  $mpi -np 1 "$bench" --model "$1" --cache_dir "$work/bench" --steps 1 --warmup 0 \
    --seq_length 32 --json "$work/$2.json" >"$work/$2.log" 2>&1 &&
    sed -n 's/^  "loss": \([^,]*\),$/\1/p' "$work/$2.json"
}
bf=$(bench_loss "$fix/phi4_tiny" bench_folder) bh=$(bench_loss "$work/phi4.h5" bench_h5)
br=$(bench_loss "$fix/phi4_tiny/config.json" bench_random)
[ -n "$bf" ] && [ "$bf" = "$bh" ] && [ "$bf" != "$br" ] &&
  ok "bench: folder loss $bf = .h5's, random $br" || bad "bench: folder '$bf' .h5 '$bh' random '$br'"
expect_line bench_folder "autotp-bench: weights: $fix/phi4_tiny (model.safetensors), converted now"
expect_line bench_random "autotp-bench: weights: random init from $fix/phi4_tiny/config.json, seed 1234"
"$plan" --deepspeed_config "$work/ds.json" --model_name "$fix/mini_tiny" >"$work/plan.log" 2>&1 ||
  bad "plan failed"
expect_line plan "model  $fix/mini_tiny (Hugging Face folder: config.json + 2 shards listed by model.safetensors.index.json)"
expect_line plan "weights autotp-train loads them from $fix/mini_tiny (converted once into its --out_dir)"

# 5. A folder that cannot serve: one message naming the folder, file or tensor, exit 1.
expect_error() {  # NAME PATTERN MODEL [flags]
  local name=$1 pattern=$2 model=$3
  shift 3
  run "$name" "$model" "$work/$name" "$@"
  local rc=$?
  if [ $rc -ne 1 ]; then
    bad "$name: exit code $rc"
  elif ! grep -qF -- "$pattern" "$work/$name.log"; then
    bad "$name: no '$pattern' in:"
    head -5 "$work/$name.log"
  elif [ "$(grep -c "error" "$work/$name.log")" -ne 1 ]; then
    bad "$name: $(grep -c error "$work/$name.log") error lines"
  else
    ok "$name"
  fi
}
mkdir -p "$work/empty"
expect_error empty_folder "autotp-train: error: $work/empty: no config.json and no model.safetensors in this folder" "$work/empty"
cp -r "$fix/phi4_tiny" "$work/cut" && head -c 3000 "$fix/phi4_tiny/model.safetensors" >"$work/cut/model.safetensors"
expect_error bad_safetensors "$work/cut/model.safetensors: " "$work/cut"
cp -r "$fix/phi4_tiny" "$work/three" && sed -i 's/"num_hidden_layers": 2/"num_hidden_layers": 3/' "$work/three/config.json"
expect_error missing_tensor "missing tensor model.layers.2." "$work/three"
ls "$work/missing_tensor" 2>/dev/null | grep -q '\.h5' && bad "missing_tensor: a conversion was left" ||
  ok "missing_tensor: no conversion left behind"
expect_error merge_needs_folder "--merge_lora vision: $work/phi4.h5 is not a Hugging Face folder" "$work/phi4.h5" --merge_lora vision
expect_error merge_needs_lora "no 'vision_lora' object" "$fix/phi4_tiny" --merge_lora vision

echo "$passed passed, $failures failed"
[ $failures -eq 0 ]
