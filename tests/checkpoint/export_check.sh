#!/usr/bin/env bash
# Export check (needs python with torch, transformers and safetensors; not part of ctest):
# trains the tiny model a few steps at TP 2 with a checkpoint, merges it (autotp-merge),
# converts it to safetensors (autotp-convert), loads that with transformers'
# Phi3ForCausalLM and compares its logits with autotp's own for the same ids.
# usage: tests/checkpoint/export_check.sh BUILD_DIR OUT_DIR     (exit 0: max rel diff <= 1e-4)
set -euo pipefail
build=$(realpath "$1")
out=$2
here=$(dirname "$(realpath "$0")")
rm -rf "$out" && mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun --oversubscribe --mca btl_vader_single_copy_mechanism none -np 2 \
  "$build/app/autotp-train" --device cpu --tp_size 2 --dp_size 1 --num_steps 5 --seq_length 32 \
  --micro_batch_size 2 --gradient_accumulation_steps 1 --log_interval 1 \
  --save_dir "$out/ckpt" --out_dir "$out/run" >"$out/train.log" 2>&1 ||
  { tail -20 "$out/train.log"; exit 1; }
"$build/tools/autotp-merge" "$out/ckpt" "$out/model.h5"
"$build/tools/autotp-convert" "$out/model.h5" "$out/hf"
python3 "$here/export_check.py" "$build/tests/checkpoint_logits" "$out/model.h5" "$out/hf" "$out"
