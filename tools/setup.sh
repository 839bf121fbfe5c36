#!/usr/bin/env bash
# Installs autotp's build dependencies from Debian's packages (only those missing) and builds
# everything into build/. Safe to re-run. CUDA is built when nvcc is in /usr/local/cuda.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(cmake ninja-build g++ libopenmpi-dev openmpi-bin libhdf5-dev libboost-program-options-dev
      libboost-regex-dev libgtest-dev nlohmann-json3-dev libopenblas-dev gnuplot-nox
      slurmctld slurmd slurm-client munge)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release ${AUTOTP_CMAKE_ARGS:-}
cmake --build build -j"$(nproc)"
