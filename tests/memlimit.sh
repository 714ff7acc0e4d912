#!/usr/bin/env bash
# memlimit.sh -- no command hangs or crashes under an address-space limit
# (ulimit -v) from 100 MB to 2 GB: each ends with success or exit 1 and an
# "out of memory" error. Below about 210 MB the dynamic loader itself cannot
# map LLVM's libraries and says so (exit 127, before lathe runs); that is
# accepted too, as the loader's own clear error. Before the fix OpenBLAS's
# worker thread (and the first sgemm) retried a failing 128 MiB buffer
# allocation for ever between about 210 and 500 MB. $1 is the lathe binary.
. "$(dirname "$0")/lib/common.sh"
# A sanitizer build reserves terabytes of shadow memory: it cannot run under ulimit -v at all.
if ldd "$LATHE" 2>/dev/null | grep -q -E 'libasan|libtsan'; then
  echo "SKIPPED (loudly): $LATHE is a sanitizer build, which cannot run under ulimit -v" >&2
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi

npy_zeros "$tmp/x.npy"
small_task "$tmp"
"$LATHE" init examples/mlp.nn -o "$tmp/w.safetensors" >/dev/null 2>&1 || bad "init without a limit"

# One command under a limit of $1 MB: exit 0, or 1 with "out of memory", or the loader's 127.
try() {
  local mb=$1 name=$2; shift 2
  (ulimit -v $((mb * 1024)) && exec timeout 20 "$@") >"$tmp/out" 2>"$tmp/err"
  local st=$?
  if [ "$st" -eq 0 ]; then ok
  elif [ "$st" -eq 1 ] && grep -q "out of memory" "$tmp/err"; then ok
  elif [ "$st" -eq 127 ] && grep -q "error while loading shared libraries" "$tmp/err"; then ok
  elif [ "$st" -eq 124 ]; then bad "$name under ulimit -v ${mb} MB hangs (killed after 20 s)"
  else bad "$name under ulimit -v ${mb} MB: exit $st: $(tail -2 "$tmp/err")"; fi
  [ "$st" -eq 0 ] && echo "$mb $name" >>"$tmp/passed"
}

for mb in 100 150 200 220 250 300 350 400 450 500 600 700 1000 2000; do
  try "$mb" check "$LATHE" check examples/mlp.nn
  try "$mb" init "$LATHE" init examples/mlp.nn -o "$tmp/w$mb.safetensors"
  try "$mb" run "$LATHE" run examples/mlp.nn --weights "$tmp/w.safetensors" --in x="$tmp/x.npy" --out probs="$tmp/p.npy"
  try "$mb" train "$LATHE" train "$tmp/m.nn" --data "$tmp/d.csv" --out "$tmp/t" --quiet
done
# With room to spare every command succeeds: the limit itself is no obstacle.
for c in check init run train; do
  grep -q "^2000 $c\$" "$tmp/passed" 2>/dev/null && ok || bad "$c fails under ulimit -v 2000 MB"
done
# The error names the cause and the way out.
(ulimit -v $((300 * 1024)) && exec timeout 20 "$LATHE" run examples/mlp.nn --weights "$tmp/w.safetensors" \
  --in x="$tmp/x.npy") >/dev/null 2>"$tmp/err"
grep -q "lathe: error: out of memory: OpenBLAS's buffers" "$tmp/err" && ok || bad "no OpenBLAS message: $(cat "$tmp/err")"
finish
