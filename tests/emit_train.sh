#!/usr/bin/env bash
# emit_train.sh -- `lathe emit --entry train_step` end to end on the digits
# MLP (examples/mlp.nn): a C program (tests/aot/train_main.c) linking only
# libmlp.a, liblathe_rt and OpenBLAS trains from the same starting weights
# over the same rows in the same order as `lathe train --in-order` and ends
# at the same weights and optimizer state (max abs diff <= 1e-5, printed);
# `lathe eval` reads the state it saved, and `lathe train --resume` goes on
# from it to what an uninterrupted lathe train gives; MODEL_state_load takes
# a lathe train checkpoint and continues it; failing steps leave the state
# unchanged; a model with dropout, sgd with momentum, a step schedule,
# gradient noise and clipping trains to the same bits too; hostile state
# files (wrong shape or dtype, missing tensor,
# NaN, unknown tensor, truncated, bad header) are refused with a message
# and change nothing; the --weights-file form trains to the same bits.
. "$(dirname "$0")/lib/common.sh"
build=$(cd "$(dirname "$LATHE")" && pwd)
src=$(pwd)
DIGITS=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
M=examples/mlp.nn
export LATHE_THREADS=1 # the same pool size for lathe train and the emitted code
export LATHE_DNNL=0    # OpenBLAS alone in the JIT too, as in liblathe_rt (docs/compiling.md: oneDNN)
san=""
nm "$build/liblathe_rt.a" 2>/dev/null | grep -q __asan_init && san="-fsanitize=address,undefined"
ST="python3 $src/tests/aot/st_tool.py"

zcat "$DIGITS" >"$tmp/d.csv"
n=$(wc -l <"$tmp/d.csv")
# mlp.nn's split [0.6, 0.2, 0.2] in file order (--in-order): val and test are
# round(n * 0.2) rows each, train the rest, first
part=$(((n * 2 + 5) / 10))
ntrain=$((n - 2 * part))
DATA=(--data "$tmp/d.csv" --in-order --normalize none)

"$LATHE" init $M -o "$tmp/w0.safetensors" --seed 1 >/dev/null 2>&1 && ok || bad "init"
"$LATHE" emit $M --weights "$tmp/w0.safetensors" -o "$tmp/e" --bind batch=64 --entry train_step 2>"$tmp/emit.err" \
  && ok || bad "emit: $(cat "$tmp/emit.err")"
grep -q 'float mlp_train_step(mlp_state \*st, const float \*x, const int32_t \*y);' "$tmp/e/mlp.h" && ok \
  || bad "mlp.h: no mlp_train_step"
grep -q 'float opt_exp_avg_fc1_weight\[16384\];' "$tmp/e/mlp.h" && ok || bad "mlp.h: no optimizer state member"
for f in mlp_state_init mlp_state_save mlp_state_load; do grep -q "int $f(" "$tmp/e/mlp.h" && ok || bad "mlp.h: no $f"; done

# build NAME DIR [CFLAGS]: the driver against DIR/libmlp.a and liblathe_rt
build() {
  gcc -std=c11 -O2 -Wall -Wextra -Werror $san ${3:-} -I "$2" tests/aot/train_main.c "$2/libmlp.a" \
      "$build/liblathe_rt.a" -lopenblas -lm -lpthread -o "$tmp/$1" 2>"$tmp/$1.cc" \
    && ok || bad "gcc $1: $(head -5 "$tmp/$1.cc")"
}
build tm "$tmp/e"
ldd "$tmp/tm" 2>&1 | grep -qiE 'liblathe|LLVM|json' && bad "train_main loads: $(ldd "$tmp/tm")" || ok
nm -u "$tmp/tm" | awk '{print $NF}' | grep -E '^(LLVM|lathe_|json_)' >"$tmp/undef"
[ -s "$tmp/undef" ] && bad "train_main needs: $(cat "$tmp/undef")" || ok

# two epochs in C, two epochs of lathe train from the same weights, in order
"$tmp/tm" train "$tmp/d.csv" $ntrain 2 "$tmp/c2.safetensors" >"$tmp/c2.out" 2>&1 && ok || bad "C training: $(tail -3 "$tmp/c2.out")"
grep -q "^step $((ntrain / 64 * 2)) loss" "$tmp/c2.out" && ok || bad "C training: not $((ntrain / 64 * 2)) steps"
"$LATHE" train $M "${DATA[@]}" --weights "$tmp/w0.safetensors" --epochs 2 --out "$tmp/t2" --quiet >/dev/null 2>"$tmp/t2.err" \
  && ok || bad "lathe train: $(tail -3 "$tmp/t2.err")"
$ST cmp "$tmp/c2.safetensors" "$tmp/t2/last.safetensors" >"$tmp/cmp" 2>&1 || bad "cmp: $(cat "$tmp/cmp")"
echo "emitted train step vs lathe train --in-order, 2 epochs: $(cat "$tmp/cmp")"
awk '/max abs diff/ { exit !($4 <= 1e-5) }' "$tmp/cmp" && ok || bad "weights differ: $(cat "$tmp/cmp")"

# lathe eval reads the C-saved state, and finds what it finds for lathe train's
"$LATHE" eval $M --weights "$tmp/c2.safetensors" "${DATA[@]}" >"$tmp/ev.c" 2>&1 && ok || bad "eval: $(cat "$tmp/ev.c")"
"$LATHE" eval $M --weights "$tmp/t2/last.safetensors" "${DATA[@]}" >"$tmp/ev.t" 2>&1
grep -q '^accuracy: ' "$tmp/ev.c" && cmp -s "$tmp/ev.c" "$tmp/ev.t" && ok || bad "eval: $(cat "$tmp/ev.c") vs $(cat "$tmp/ev.t")"

# lathe train --resume from the C state: its third epoch ends where an uninterrupted run does
"$LATHE" train $M "${DATA[@]}" --weights "$tmp/w0.safetensors" --epochs 3 --out "$tmp/t3" --quiet >/dev/null 2>&1
mkdir -p "$tmp/r"
cp "$tmp/c2.safetensors" "$tmp/r/last.safetensors"
cp "$tmp/c2.safetensors" "$tmp/r/best.safetensors"
"$LATHE" train $M "${DATA[@]}" --epochs 3 --out "$tmp/r" --resume --quiet >/dev/null 2>"$tmp/r.err" \
  && ok || bad "resume: $(tail -3 "$tmp/r.err")"
$ST cmp "$tmp/r/last.safetensors" "$tmp/t3/last.safetensors" >"$tmp/cmp3" 2>&1
awk '/max abs diff/ { exit !($4 <= 1e-5) }' "$tmp/cmp3" && ok || bad "resumed from the C state: $(cat "$tmp/cmp3")"

# MODEL_state_load of lathe train's 2-epoch checkpoint, one more epoch in C
"$tmp/tm" train "$tmp/d.csv" $ntrain 1 "$tmp/c3.safetensors" "$tmp/t2/last.safetensors" >/dev/null 2>"$tmp/c3.err" \
  && ok || bad "C from a checkpoint: $(cat "$tmp/c3.err")"
$ST cmp "$tmp/c3.safetensors" "$tmp/t3/last.safetensors" >"$tmp/cmp4" 2>&1
awk '/max abs diff/ { exit !($4 <= 1e-5) }' "$tmp/cmp4" && ok || bad "C continuing lathe's checkpoint: $(cat "$tmp/cmp4")"

# every per-step scalar: dropout (the random stream's counter), sgd with momentum, a step
# schedule (steps_per_epoch), gradient noise, clipping -- still the same bits
mkdir -p "$tmp/x2"
cat >"$tmp/x2/mlp.nn" <<'NN'
model mlp
input  x : f32[batch, 64]
target y : i32[batch]
h = dropout(relu(dense(x, 64, name="fc1")), 0.25)
logits = dense(h, 10, name="out")
output probs = softmax(logits)
loss = cross_entropy(logits, y)
train {
  optimizer = sgd(lr=0.02, momentum=0.9)
  schedule = step(every=1, gamma=0.5)
  grad_noise = 0.01
  clip_norm = 1.0
  epochs = 2
  batch = 64
  split = [0.6, 0.2, 0.2]
  seed = 3
}
NN
X2=$tmp/x2/mlp.nn
"$LATHE" init "$X2" -o "$tmp/x2/w0.safetensors" >/dev/null 2>&1
"$LATHE" emit "$X2" --weights "$tmp/x2/w0.safetensors" -o "$tmp/x2/e" --bind batch=64 --entry train_step 2>"$tmp/x2.err" \
  && ok || bad "emit (dropout, sgd): $(cat "$tmp/x2.err")"
build tmx "$tmp/x2/e"
"$tmp/tmx" train "$tmp/d.csv" $ntrain 2 "$tmp/x2/c.safetensors" >/dev/null 2>"$tmp/x2.err" \
  && ok || bad "C training (dropout, sgd): $(cat "$tmp/x2.err")"
"$LATHE" train "$X2" "${DATA[@]}" --weights "$tmp/x2/w0.safetensors" --out "$tmp/x2/t" --quiet >/dev/null 2>&1
$ST cmp "$tmp/x2/c.safetensors" "$tmp/x2/t/last.safetensors" >"$tmp/cmpx" 2>&1
echo "dropout, sgd(momentum), step schedule, grad_noise, clip_norm, 2 epochs: $(cat "$tmp/cmpx")"
awk '/max abs diff/ { exit !($4 <= 1e-5) }' "$tmp/cmpx" && ok || bad "dropout model: $(cat "$tmp/cmpx")"

# failing steps change nothing
"$tmp/tm" bad "$tmp/d.csv" 2>"$tmp/bad.err" && ok || bad "failing steps: $(cat "$tmp/bad.err")"

# state files: good ones load, hostile ones are refused (exit 3: refused, state unchanged)
"$tmp/tm" load "$tmp/t2/last.safetensors" | grep -q "^step $((ntrain / 64 * 2))$" && ok || bad "load: the step"
"$tmp/tm" load "$tmp/w0.safetensors" | grep -q "^step 0$" && ok || bad "load: plain weights"
refuse() { # refuse KIND PATTERN
  $ST craft "$1" "$tmp/c2.safetensors" "$tmp/h_$1.safetensors"
  "$tmp/tm" load "$tmp/h_$1.safetensors" 2>"$tmp/h.err" >/dev/null
  local rc=$?
  [ $rc -eq 3 ] && grep -q "$2" "$tmp/h.err" && grep -q "h_$1.safetensors" "$tmp/h.err" && ok \
    || bad "$1: rc $rc: $(cat "$tmp/h.err")"
}
refuse wrongshape "tensor 'fc1.weight': expected f32\[64, 256\], got f32\[256, 64\]"
refuse wrongdtype "tensor 'fc1.bias': expected f32\[256\], got i32\[256\]"
refuse missing "missing tensor 'out.bias'"
refuse nan "tensor 'fc2.bias': element 0 is nan"
refuse unexpected "unexpected tensor 'extra.weight'"
refuse truncated "out of range\|truncated"
refuse badheader "header: expected"
refuse badstep "'__meta.step'"
"$tmp/tm" load "$tmp/nope.safetensors" 2>"$tmp/h.err"; [ $? -eq 3 ] && grep -q "cannot open" "$tmp/h.err" && ok \
  || bad "a missing file: $(cat "$tmp/h.err")"

# --weights-file: the same training from the weights file
"$LATHE" emit $M --weights "$tmp/w0.safetensors" -o "$tmp/f" --bind batch=64 --entry train_step --weights-file \
  2>"$tmp/emitf.err" && ok || bad "emit --weights-file: $(cat "$tmp/emitf.err")"
build tmf "$tmp/f" -DWEIGHTS_FILE
WEIGHTS="$tmp/f/mlp.weights" "$tmp/tmf" train "$tmp/d.csv" $ntrain 2 "$tmp/f2.safetensors" >/dev/null 2>"$tmp/f2.err" \
  && ok || bad "weights-file training: $(cat "$tmp/f2.err")"
cmp -s "$tmp/f2.safetensors" "$tmp/c2.safetensors" && ok || bad "weights-file training gave other bits"

# --gemm generated: the products in the object, no BLAS in it or in the header's link line; trained
# by liblathe_rt_noblas alone, within 1e-4 of OpenBLAS's weights (another summation order)
"$LATHE" emit $M --weights "$tmp/w0.safetensors" -o "$tmp/g" --bind batch=64 --entry train_step --gemm generated \
  2>"$tmp/emitg.err" && ok || bad "emit --gemm generated: $(cat "$tmp/emitg.err")"
grep -q -- '-llathe_rt_noblas' "$tmp/g/mlp.h" && ! grep -q -- '-lopenblas' "$tmp/g/mlp.h" && ok \
  || bad "--gemm generated header: $(grep Link "$tmp/g/mlp.h")"
nm -u "$tmp/g/mlp.o" | grep -q 'cblas_' && bad "--gemm generated object calls BLAS" || ok
gcc -std=c11 -O2 -Wall -Wextra -Werror $san -I "$tmp/g" tests/aot/train_main.c "$tmp/g/libmlp.a" \
    "$build/liblathe_rt_noblas.a" -lm -lpthread -o "$tmp/tmg" 2>"$tmp/tmg.cc" && ok || bad "gcc tmg: $(head -5 "$tmp/tmg.cc")"
"$tmp/tmg" train "$tmp/d.csv" $ntrain 2 "$tmp/g2.safetensors" >/dev/null 2>"$tmp/g2.err" \
  && ok || bad "--gemm generated training: $(cat "$tmp/g2.err")"
$ST cmp "$tmp/g2.safetensors" "$tmp/c2.safetensors" >"$tmp/cmpg" 2>&1
awk '/max abs diff/ { exit !($4 <= 1e-4) }' "$tmp/cmpg" && ok || bad "--gemm generated weights: $(cat "$tmp/cmpg")"

# CLI errors
"$LATHE" emit $M --weights "$tmp/w0.safetensors" -o "$tmp/x" --bind batch=64 --entry backward >"$tmp/cli" 2>&1
[ $? -eq 1 ] && grep -q "expected forward or train_step" "$tmp/cli" && ok || bad "--entry backward: $(cat "$tmp/cli")"
printf 'model noloss\ninput x : f32[batch, 4]\noutput y = dense(x, 2, name="fc")\n' >"$tmp/noloss.nn"
"$LATHE" init "$tmp/noloss.nn" -o "$tmp/nl.safetensors" >/dev/null 2>&1
"$LATHE" emit "$tmp/noloss.nn" --weights "$tmp/nl.safetensors" -o "$tmp/x" --bind batch=2 --entry train_step >"$tmp/cli" 2>&1
[ $? -eq 1 ] && grep -q "no loss to train" "$tmp/cli" && ok || bad "no loss: $(cat "$tmp/cli")"
"$LATHE" emit $M --weights "$tmp/nl.safetensors" -o "$tmp/x" --bind batch=64 --entry train_step >"$tmp/cli" 2>&1
[ $? -eq 1 ] && grep -q "no such parameter" "$tmp/cli" && ok || bad "other weights: $(cat "$tmp/cli")"
finish
