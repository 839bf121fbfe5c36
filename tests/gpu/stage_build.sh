#!/usr/bin/env bash
# Copies what the GPU machine runs out of a finished build into DEST (same layout), small enough
# to travel with the working tree: the trainer, the tools the checks and the benchmark call, and
# the GPU tests. Put DEST in a folder .git/info/exclude ignores and name it in the device call's
# carry; then, there: bash tests/gpu/run_gpu_checks.sh DEST "$OUT".
#
#   bash tests/gpu/stage_build.sh BUILD_DIR DEST      (e.g. build .gpu/build)
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: bash tests/gpu/stage_build.sh BUILD_DIR DEST" >&2
  exit 2
fi
build=$1 dest=$2
[ -x "$build/tests/test_cuda_backend" ] || {
  echo "stage_build: $build has no CUDA tests: build with nvcc present (AUTOTP_CUDA on)" >&2
  exit 1
}
files=(app/autotp-train tools/autotp-bench tools/autotp-reshard tools/autotp-merge
  tools/autotp-convert tests/test_cuda_backend tests/test_cuda_model_hf tests/test_device_comm
  tests/checkpoint_logits tests/gemm_sweep tests/wgmma_probe)
rm -rf "$dest"
for f in "${files[@]}"; do
  [ -e "$build/$f" ] || continue
  mkdir -p "$dest/$(dirname "$f")"
  cp "$build/$f" "$dest/$f"
done
du -sh "$dest"
