#!/usr/bin/env bash
# emit.sh -- `lathe emit` end to end on the digits MLP (examples/mlp.nn,
# trained one epoch so its weights carry the input normalisation): a C
# program (tests/aot/digits_main.c) built with gcc against libmlp.a,
# liblathe_rt and OpenBLAS only gives the same bits as `lathe run` (llvm
# backend) on the same input, through mlp_forward and mlp_forward_ws; the
# binary needs no liblathe and no LLVM; the --weights-file loader takes the
# right file and refuses another model's, a corrupt and a truncated one;
# the CLI's errors are clear.
. "$(dirname "$0")/lib/common.sh"
build=$(cd "$(dirname "$LATHE")" && pwd)
DIGITS=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
B=8
export LATHE_THREADS=1 # the same pool size for lathe run and the emitted code
export LATHE_DNNL=0    # OpenBLAS alone in the JIT too, as in liblathe_rt (docs/compiling.md: oneDNN)
# a sanitizer build's liblathe_rt needs its runtime in the program too (CI's ASan run)
san=""
nm "$build/liblathe_rt.a" 2>/dev/null | grep -q __asan_init && san="-fsanitize=address,undefined"

"$LATHE" train examples/mlp.nn --data "$DIGITS" --epochs 1 --out "$tmp/tr" --quiet >"$tmp/train.out" 2>&1 \
  && ok || bad "train: $(tail -3 "$tmp/train.out")"
W=$tmp/tr/best.safetensors

# build NAME DIR [CFLAGS]: the driver against DIR/libmlp.a and liblathe_rt
build() {
  gcc -std=c11 -O2 -Wall -Wextra -Werror $san -DBATCH=$B ${3:-} -I "$2" tests/aot/digits_main.c "$2/libmlp.a" \
      "$build/liblathe_rt.a" -lopenblas -lm -lpthread -o "$tmp/$1" 2>"$tmp/$1.cc" \
    && ok || bad "gcc $1: $(head -5 "$tmp/$1.cc")"
}

# npy_data FILE: the data bytes of an .npy file (after its header)
npy_data() {
  local len
  len=$(od -An -tu2 -j8 -N2 "$1" | tr -d ' ')
  tail -c +$((10 + len + 1)) "$1"
}

"$LATHE" emit examples/mlp.nn --weights "$W" -o "$tmp/e" --bind batch=$B 2>"$tmp/emit.err" \
  && ok || bad "emit: $(cat "$tmp/emit.err")"
for f in mlp.o libmlp.a mlp.h; do [ -s "$tmp/e/$f" ] && ok || bad "emit wrote no $f"; done
grep -q 'int mlp_forward(const float \*x, float \*probs);' "$tmp/e/mlp.h" && ok || bad "mlp.h: no mlp_forward"
grep -q 'f32\[8, 64\].*normalised inside' "$tmp/e/mlp.h" && ok || bad "mlp.h: x's shape or normalisation"
grep -q 'define MLP_WORKSPACE_BYTES' "$tmp/e/mlp.h" && ok || bad "mlp.h: no MLP_WORKSPACE_BYTES"

build dm "$tmp/e"
"$tmp/dm" gen $B "$tmp/x.npy" && ok || bad "gen"
"$tmp/dm" run "$tmp/x.npy" "$tmp/p.raw" 2>"$tmp/dm.err" && ok || bad "digits_main run: $(cat "$tmp/dm.err")"
"$LATHE" run examples/mlp.nn --weights "$W" --in x="$tmp/x.npy" --out probs="$tmp/P.npy" 2>"$tmp/run.err" \
  && ok || bad "lathe run: $(cat "$tmp/run.err")"
npy_data "$tmp/P.npy" >"$tmp/P.raw"
[ -s "$tmp/P.raw" ] && cmp -s "$tmp/P.raw" "$tmp/p.raw" && ok || bad "emitted mlp_forward differs from lathe run"

# what the binary needs: libc, libm, pthread, OpenBLAS; no liblathe, no LLVM
ldd "$tmp/dm" >"$tmp/ldd" 2>&1
grep -qiE 'liblathe|LLVM' "$tmp/ldd" && bad "digits_main loads: $(cat "$tmp/ldd")" || ok

nm -u "$tmp/dm" | awk '{print $NF}' >"$tmp/undef"
grep -qE '^(LLVM|lathe_|json_)' "$tmp/undef" && bad "digits_main needs: $(grep -E '^(LLVM|lathe_|json_)' "$tmp/undef")" || ok

# --weights-file: the weights left out of the object, loaded and checked
"$LATHE" emit examples/mlp.nn --weights "$W" -o "$tmp/f" --bind batch=$B --weights-file 2>"$tmp/emitf.err" \
  && ok || bad "emit --weights-file: $(cat "$tmp/emitf.err")"
[ -s "$tmp/f/mlp.weights" ] && ok || bad "no mlp.weights"
[ "$(stat -c %s "$tmp/f/mlp.o")" -lt "$(stat -c %s "$tmp/e/mlp.o")" ] && ok || bad "weights still in the object"
build dmf "$tmp/f" -DWEIGHTS_FILE
"$tmp/dmf" run "$tmp/x.npy" "$tmp/q.raw" 2>/dev/null; [ $? -eq 4 ] && ok || bad "forward ran without weights"
"$tmp/dmf" load "$tmp/f/mlp.weights" "$tmp/x.npy" "$tmp/q.raw" 2>"$tmp/load.err" && ok || bad "load: $(cat "$tmp/load.err")"
cmp -s "$tmp/P.raw" "$tmp/q.raw" && ok || bad "weights-file forward differs from lathe run"
# refuse: another model's file (other names, shapes), a flipped byte, a short file, no file
small_task "$tmp"
sed 's/^model small/model mlp/; s/"fc1") |> relu/"fc1") |> relu\nh = dense(h, 16, name="fc2") |> relu/' "$tmp/m.nn" >"$tmp/other.nn"
"$LATHE" init "$tmp/other.nn" -o "$tmp/other.st" 2>/dev/null
"$LATHE" emit "$tmp/other.nn" --weights "$tmp/other.st" -o "$tmp/o" --bind batch=2 --weights-file 2>/dev/null
refuse() { # refuse WHAT FILE PATTERN
  "$tmp/dmf" load "$2" 2>"$tmp/refuse.err"
  local rc=$?
  [ $rc -eq 3 ] && grep -q "$3" "$tmp/refuse.err" && ok || bad "$1: rc $rc: $(cat "$tmp/refuse.err")"
}
refuse "another model's weights" "$tmp/o/mlp.weights" "another shape\|another number of tensors"
cp "$tmp/f/mlp.weights" "$tmp/bad.weights"
size=$(stat -c %s "$tmp/bad.weights")
printf '\x55' | dd of="$tmp/bad.weights" bs=1 seek=$((size - 100)) conv=notrunc status=none
refuse "a corrupt file" "$tmp/bad.weights" "corrupt"
head -c $((size - 4)) "$tmp/f/mlp.weights" >"$tmp/short.weights"
refuse "a truncated file" "$tmp/short.weights" "truncated"
refuse "a missing file" "$tmp/nope.weights" "cannot open"
refuse "not a weights file" "$W" "not a Lathe weights file"

# CLI errors: exit 1 and a message naming the problem
cli_err() { # cli_err WHAT PATTERN ARGS...
  local what=$1 pat=$2
  shift 2
  "$LATHE" emit "$@" >"$tmp/cli.out" 2>&1
  local rc=$?
  [ $rc -eq 1 ] && grep -q "$pat" "$tmp/cli.out" && ok || bad "$what: rc $rc: $(cat "$tmp/cli.out")"
}
cli_err "no weights" "no weights" examples/mlp.nn -o "$tmp/x1" --bind batch=2
cli_err "unbound dim" "'batch' is not bound" examples/mlp.nn --weights "$W" -o "$tmp/x2"
touch "$tmp/afile"
cli_err "output dir is a file" "not a directory" examples/mlp.nn --weights "$W" -o "$tmp/afile" --bind batch=2
cli_err "no output dir" "give -o DIR" examples/mlp.nn --weights "$W" --bind batch=2
cli_err "missing weights file" "nope.safetensors" examples/mlp.nn --weights "$tmp/nope.safetensors" -o "$tmp/x3" --bind batch=2
finish
