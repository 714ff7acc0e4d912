#!/usr/bin/env bash
# emit_cross.sh -- `lathe emit --gemm generated` and `--target`: the digits
# MLP (examples/mlp.nn, trained one epoch so its weights carry the input
# normalisation) emitted with its matrix products as generated code, for
# this machine and cross-compiled for aarch64-linux-gnu.
#   - x86: tests/aot/digits_main.c linked with liblathe_rt_noblas.a gives the
#     bits of `lathe run --gemm generated`, and needs no BLAS, no liblathe,
#     no LLVM (ldd, nm -u);
#   - aarch64: the object is an AArch64 ELF that calls no BLAS; liblathe_rt's
#     sources and the driver built with Debian's aarch64-linux-gnu-gcc
#     (-DLATHE_RT_NOBLAS) link with it, and under qemu-aarch64 the
#     probabilities equal the x86 ones within 1e-5 (generic CPU, and
#     --cpu neoverse-n1);
#   - --target/--cpu/--gemm mistakes are clear errors.
# The cross part needs gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and
# qemu-user (setup.sh installs them); without them it says so and is skipped.
. "$(dirname "$0")/lib/common.sh"
build=$(cd "$(dirname "$LATHE")" && pwd)
DIGITS=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
B=8
export LATHE_THREADS=1 # the same pool size for lathe run and the emitted code
san=""
nm "$build/liblathe_rt_noblas.a" 2>/dev/null | grep -q __asan_init && san="-fsanitize=address,undefined"

"$LATHE" train examples/mlp.nn --data "$DIGITS" --epochs 1 --out "$tmp/tr" --quiet >"$tmp/train.out" 2>&1 \
  && ok || bad "train: $(tail -3 "$tmp/train.out")"
W=$tmp/tr/best.safetensors

# CLI mistakes: exit 1 and a message naming the problem
cli_err() { # cli_err WHAT PATTERN ARGS...
  local what=$1 pat=$2
  shift 2
  "$LATHE" emit examples/mlp.nn --weights "$W" -o "$tmp/err" --bind batch=$B "$@" >"$tmp/cli.out" 2>&1
  local rc=$?
  [ $rc -eq 1 ] && grep -q "$pat" "$tmp/cli.out" && ok || bad "$what: rc $rc: $(cat "$tmp/cli.out")"
}
cli_err "unknown triple" "no such target" --target nonesuch-linux-gnu
cli_err "32-bit triple" "not a 64-bit little-endian target" --target i686-linux-gnu
cli_err "big-endian triple" "not a 64-bit little-endian target" --target aarch64_be-linux-gnu
cli_err "unknown cpu" "knows no such CPU" --target aarch64-linux-gnu --cpu nonesuch
cli_err "unknown gemm" "expected blas or generated" --gemm fast
grep -q "is not a recognized processor" "$tmp/cli.out" && bad "LLVM's warning leaked: $(cat "$tmp/cli.out")" || ok

# npy_data FILE: the data bytes of an .npy file (after its header)
npy_data() {
  local len
  len=$(od -An -tu2 -j8 -N2 "$1" | tr -d ' ')
  tail -c +$((10 + len + 1)) "$1"
}

# ---- this machine, no BLAS ----
"$LATHE" emit examples/mlp.nn --weights "$W" -o "$tmp/g" --bind batch=$B --gemm generated 2>"$tmp/emit.err" \
  && ok || bad "emit --gemm generated: $(cat "$tmp/emit.err")"
grep -q -- '-llathe_rt_noblas -lm -lpthread' "$tmp/g/mlp.h" && ok || bad "mlp.h: no noblas link line"
nm -u "$tmp/g/mlp.o" | grep -qE 'sgemm|cblas' && bad "the object calls BLAS: $(nm -u "$tmp/g/mlp.o")" || ok
gcc -std=c11 -O2 -Wall -Wextra -Werror $san -DBATCH=$B -I "$tmp/g" tests/aot/digits_main.c "$tmp/g/libmlp.a" \
    "$build/liblathe_rt_noblas.a" -lm -lpthread -o "$tmp/dm" 2>"$tmp/dm.cc" && ok || bad "gcc: $(head -5 "$tmp/dm.cc")"
"$tmp/dm" gen $B "$tmp/x.npy" && ok || bad "gen"
"$tmp/dm" run "$tmp/x.npy" "$tmp/p.raw" 2>"$tmp/dm.err" && ok || bad "digits_main: $(cat "$tmp/dm.err")"
"$LATHE" run examples/mlp.nn --weights "$W" --in x="$tmp/x.npy" --out probs="$tmp/P.npy" --gemm generated \
  2>"$tmp/run.err" && ok || bad "lathe run: $(cat "$tmp/run.err")"
npy_data "$tmp/P.npy" >"$tmp/P.raw"
[ -s "$tmp/P.raw" ] && cmp -s "$tmp/P.raw" "$tmp/p.raw" && ok || bad "emitted --gemm generated differs from lathe run's"
ldd "$tmp/dm" >"$tmp/ldd" 2>&1
grep -qiE 'liblathe|LLVM|blas' "$tmp/ldd" && bad "digits_main loads: $(cat "$tmp/ldd")" || ok
nm -u "$tmp/dm" | awk '{print $NF}' >"$tmp/undef"
grep -qE '^(LLVM|lathe_|json_|cblas|openblas|sgemm)' "$tmp/undef" && bad "digits_main needs: $(grep -E '^(LLVM|lathe_|json_|cblas|openblas|sgemm)' "$tmp/undef")" || ok

# ---- aarch64 ----
CC=aarch64-linux-gnu-gcc SYSROOT=/usr/aarch64-linux-gnu
missing=""
command -v $CC >/dev/null || missing="$missing $CC (gcc-aarch64-linux-gnu)"
command -v qemu-aarch64 >/dev/null || missing="$missing qemu-aarch64 (qemu-user)"
[ -e $SYSROOT/lib/ld-linux-aarch64.so.1 ] || missing="$missing $SYSROOT (libc6-dev-arm64-cross)"
if [ -n "$missing" ]; then
  echo "SKIPPED: the aarch64 half: missing$missing; ./setup.sh installs them" >&2
  echo "$pass passed, $fail failed, 1 skipped"
  [ "$fail" -eq 0 ]; exit
fi

# liblathe_rt for aarch64, without OpenBLAS: the sources as they are, but
# the x86-64-only ones (intrinsics; their kernels are not in this model)
X86_ONLY="rt/rt_quant.c rt/rt_qgemm.c rt/rt_qbf16.c rt/rt_qwo.c rt/rt_amx.c" # the quantized kernels (cpuid, x86 intrinsics)
mkdir -p "$tmp/rt64"
for f in rt/*.c; do
  case " $X86_ONLY " in *" $f "*) echo "left out of the aarch64 liblathe_rt: $f (x86-64 only)"; continue ;; esac
  $CC -std=c11 -O2 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -DLATHE_RT_NOBLAS -I . -c "$f" \
      -o "$tmp/rt64/$(basename "$f" .c).o" 2>>"$tmp/rt64.cc" || bad "$CC $f: $(head -5 "$tmp/rt64.cc")"
done
aarch64-linux-gnu-ar rcs "$tmp/liblathe_rt_noblas_a64.a" "$tmp"/rt64/*.o && ok || bad "ar"

# cross CPU: emit, check the object, link, run under qemu, compare with x86
cross() {
  local name=$1
  shift
  "$LATHE" emit examples/mlp.nn --weights "$W" -o "$tmp/$name" --bind batch=$B --gemm generated \
    --target aarch64-linux-gnu "$@" 2>"$tmp/$name.err" && ok || bad "emit $name: $(cat "$tmp/$name.err")"
  readelf -h "$tmp/$name/mlp.o" | grep -q 'Machine:.*AArch64' && ok || bad "$name: mlp.o is not AArch64"
  grep -q "aarch64-unknown-linux-gnu" "$tmp/$name/mlp.h" && ok || bad "$name: mlp.h does not name the target"
  nm -u "$tmp/$name/mlp.o" | grep -qE 'sgemm|cblas' && bad "$name calls BLAS: $(nm -u "$tmp/$name/mlp.o")" || ok
  $CC -std=c11 -O2 -Wall -Wextra -Werror -DBATCH=$B -I "$tmp/$name" tests/aot/digits_main.c "$tmp/$name/libmlp.a" \
      "$tmp/liblathe_rt_noblas_a64.a" -lm -lpthread -o "$tmp/dm_$name" 2>"$tmp/$name.cc" \
    && ok || bad "$CC $name: $(head -5 "$tmp/$name.cc")"
  qemu-aarch64 -L $SYSROOT "$tmp/dm_$name" run "$tmp/x.npy" "$tmp/$name.raw" 2>"$tmp/$name.run" \
    && ok || bad "qemu-aarch64 $name: $(cat "$tmp/$name.run")"
  python3 - "$tmp/p.raw" "$tmp/$name.raw" <<'PY' >"$tmp/$name.cmp" 2>&1 && ok || bad "$name vs x86: $(cat "$tmp/$name.cmp")"
import struct, sys
a, b = (open(f, "rb").read() for f in sys.argv[1:3])
if len(a) != len(b) or not a:
    sys.exit(f"{len(a)} and {len(b)} bytes")
x, y = (struct.unpack(f"<{len(a) // 4}f", s) for s in (a, b))
d = max(abs(u - v) for u, v in zip(x, y))
print(f"max |aarch64 - x86| = {d:.3g}")
sys.exit(0 if d <= 1e-5 else 1)
PY
  echo "$name: $(cat "$tmp/$name.cmp")"
}
cross a64
cross a64_n1 --cpu neoverse-n1
finish
