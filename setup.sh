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
  libprotobuf-c-dev protobuf-c-compiler # ONNX files (onnx/: protoc-c generates the reader at build time)
  libonnx-dev libonnx-testdata          # ... from Debian's onnx.proto; ONNX's node test suite (tests/onnx)
  libopenmpi-dev openmpi-bin            # distributed training (mpirun -np N lathe train; tests/mpi.sh)
  libdnnl-dev                           # oneDNN: inference products on packed weights (optional: runtime/gemm_pack.c, gemm_dnnl.c)
)

# ONNX Runtime (the peer of lathe export and the ORT column of bench/run): the npm package
# onnxruntime-node ships libonnxruntime.so for Linux x64; --ignore-scripts because its install
# script downloads GPU files. Installed into .deps/ (git-ignored) and linked at a fixed path,
# .deps/onnxruntime/libonnxruntime.so, where lathe_ort (tools/ort/ort_run.c) looks first.
# A failure here only warns: the tests that need ONNX Runtime then skip and say so.
install_ort() {
  local dir
  dir="$(cd "$(dirname "$0")" && pwd)/.deps"
  [ -e "$dir/onnxruntime/libonnxruntime.so" ] && return 0
  # npm comes with NodeSource's nodejs where that is installed; Debian's npm package otherwise
  if ! command -v npm >/dev/null; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends npm >/dev/null ||
      { echo "setup: warning: npm could not be installed; the ONNX Runtime tests will skip"; return 0; }
  fi
  mkdir -p "$dir/npm" "$dir/onnxruntime"
  if ! (cd "$dir/npm" && npm install --ignore-scripts --no-audit --no-fund --silent onnxruntime-node@1.31.1 >/dev/null); then
    echo "setup: warning: npm install onnxruntime-node failed; the ONNX Runtime tests will skip"
    return 0
  fi
  local lib
  lib=$(find "$dir/npm/node_modules/onnxruntime-node/bin" -path '*linux/x64/libonnxruntime.so*' | head -1)
  [ -n "$lib" ] && ln -sf "$lib" "$dir/onnxruntime/libonnxruntime.so" && echo "setup: ONNX Runtime at $lib"
}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  install_ort
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
install_ort
