#!/usr/bin/env bash
# Installs every Debian 12 package Lathe needs to build, test and benchmark.
# Idempotent: does nothing when everything is already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config      # the build
  clang libclang-rt-14-dev              # the parser fuzz target (libFuzzer) and sanitizer runtimes
  llvm-19-dev                           # the CPU backend (LLVM C API, ORC LLJIT): the default
  llvm-14-dev                           # ... and the older LLVM it keeps building with (-DLATHE_LLVM_VERSION=14)
  libopenblas-dev                       # fp32 GEMM on the CPU
  libjson-c-dev zlib1g-dev              # safetensors headers; gzip'd data sets
  python3 python3-numpy python3-torch python3-sklearn  # test references and the digits data set
  fortunes                              # real text for the char-level examples (examples/train_gpt.sh)
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user  # lathe emit --target aarch64: cross-link and run (tests/emit_cross.sh)
  libopenmpi-dev openmpi-bin            # distributed training (mpirun -np N lathe train; tests/mpi.sh)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
