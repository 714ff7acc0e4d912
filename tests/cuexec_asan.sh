#!/bin/bash
# cuexec_asan.sh: tests/test_cuexec.c and the CPU executor (tests/cuexec/)
# built with AddressSanitizer and UndefinedBehaviorSanitizer and run: the
# fibers, guard pages and fault handling must hold under the sanitizers.
# $1 (the lathe binary) is not used. rt/rt_comm.c comes along: the executor
# answers NCCL's calls through the job's collectives (cx_driver.c, cx_coll).
set -u
cc=$(command -v gcc || command -v cc || true)
cxx=$(command -v g++ || command -v c++ || true)
if [ -z "$cc" ] || [ -z "$cxx" ]; then
  echo "SKIP cuexec_asan: no C and C++ compiler on PATH (gcc/g++)"
  exit 0
fi
inc=""
for d in /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/x86_64-linux-gnu /usr/include/openblas; do
  if [ -f "$d/cblas.h" ]; then inc=$d; break; fi
done
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
src=$PWD/tests
if ! "$cc" -std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -g -O1 \
     -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
     -I "$src" -I "$src/cuexec" -I "$PWD" -I "$PWD/rt" ${inc:+-isystem "$inc"} \
     -DCX_SHIM_DIR="\"$src/cuexec\"" -DCX_CXX="\"$cxx\"" \
     "$src/test_cuexec.c" "$src"/cuexec/*.c "$PWD/rt/rt_comm.c" -o "$dir/test_cuexec_asan" -lopenblas -ldl -lm; then
  echo "FAIL cuexec_asan: the sanitized build of test_cuexec failed"
  exit 1
fi
# the one warning ASan prints about swapcontext is expected (tests/cuexec/README.md)
ASAN_OPTIONS=detect_leaks=1 "$dir/test_cuexec_asan" > "$dir/out" 2>&1
rc=$?
grep -v "refused as expected" "$dir/out"
if [ $rc -ne 0 ]; then
  echo "FAIL cuexec_asan: exit status $rc"
  exit 1
fi
grep -q "AddressSanitizer\|runtime error" <(grep -v "doesn't fully support" "$dir/out") && {
  echo "FAIL cuexec_asan: sanitizer report above"
  exit 1
}
echo "cuexec_asan: ok"
