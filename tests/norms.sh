#!/bin/bash
# norms.sh -- batchnorm, groupnorm and rmsnorm through the CLI:
#   1. examples/cnn_bn.nn (the digits CNN with batchnorm) trains to at least
#      97% test accuracy; eval on its weights gives the same accuracy with the
#      batchnorms folded away (-O2, the default: no batchnorm node left) and
#      unfolded (LATHE_OPT_LEVEL=0: the batchnorm kernel on the running
#      statistics); the checkpoint holds the running statistics.
#   2. groupnorm and rmsnorm models train (gradients through both backends'
#      kernels) and run on both backends with equal outputs.
#   3. mistakes in the model are errors at file:line:col naming the argument.
# The PyTorch comparisons are tests/test_batchnorm.c (training) and the
# fixtures of tests/fixtures/gen_ops.py (every op and its gradient).
. "$(dirname "$0")/lib/common.sh"
DIGITS=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
metric() { sed -n "s/^$1: //p" "$2" | tail -1; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }

# 1. the batchnorm CNN
if [ -r "$DIGITS" ]; then
  "$LATHE" train examples/cnn_bn.nn --data "$DIGITS" --out "$tmp/bn" --quiet >"$tmp/bn.out" 2>"$tmp/bn.err" \
    && ok || bad "train cnn_bn: $(tail -3 "$tmp/bn.err")"
  acc=$(metric "test accuracy" "$tmp/bn.out")
  echo "cnn_bn test accuracy: ${acc:-none}"
  ge "${acc:-0}" 0.97 && ok || bad "cnn_bn test accuracy ${acc:-none} < 0.97"
  W="$tmp/bn/best.safetensors"
  grep -a -q 'bn1.running_mean' "$W" && grep -a -q 'bn3.running_var' "$W" && ok || bad "running statistics not saved"
  "$LATHE" eval examples/cnn_bn.nn --weights "$W" --data "$DIGITS" >"$tmp/e2.out" 2>&1 || bad "eval: $(tail -3 "$tmp/e2.out")"
  LATHE_OPT_LEVEL=0 "$LATHE" eval examples/cnn_bn.nn --weights "$W" --data "$DIGITS" >"$tmp/e0.out" 2>&1 \
    || bad "eval -O0: $(tail -3 "$tmp/e0.out")"
  [ "$(metric accuracy "$tmp/e2.out")" = "$acc" ] && [ "$(metric accuracy "$tmp/e0.out")" = "$acc" ] && ok \
    || bad "eval accuracy folded $(metric accuracy "$tmp/e2.out"), unfolded $(metric accuracy "$tmp/e0.out"), trained $acc"
  "$LATHE" check examples/cnn_bn.nn --bind batch=4 >"$tmp/c2.out" 2>&1 && ! grep -q ' batchnorm ' "$tmp/c2.out" \
    && ok || bad "the folded inference graph still has a batchnorm node"
  LATHE_OPT_LEVEL=0 "$LATHE" check examples/cnn_bn.nn --bind batch=4 >"$tmp/c0.out" 2>&1 \
    && [ "$(grep -c ' batchnorm ' "$tmp/c0.out")" = 3 ] && ok || bad "-O0 should keep the 3 batchnorm nodes"
else
  echo "SKIPPED: $DIGITS not found (python3-sklearn's digits)"
fi

# 2. groupnorm and rmsnorm train and run on both backends
awk 'BEGIN { srand(5); for (i = 0; i < 240; i++) { s = 0; for (j = 0; j < 12; j++) { v = rand() - 0.5; s += v * (j % 3 - 1);
             printf "%f,", v } printf "%d\n", (s > 0 ? 1 : 0) } }' >"$tmp/d.csv"
cat >"$tmp/gn.nn" <<'NN'
model gn
input  x : f32[batch, 12]
target y : i32[batch]
h = reshape(x, [batch, 4, 3])
h = groupnorm(h, 2, name="gn") |> relu
h = rmsnorm(flatten(h), eps=1e-5, name="rms")
logits = dense(h, 2, name="out")
output probs = softmax(logits)
loss = cross_entropy(logits, y)
train {
  optimizer = adam(lr=1e-2)
  epochs = 3
  batch = 16
}
NN
"$LATHE" train "$tmp/gn.nn" --data "$tmp/d.csv" --out "$tmp/gn" --quiet >"$tmp/gn.out" 2>&1 && ok \
  || bad "train groupnorm/rmsnorm: $(tail -3 "$tmp/gn.out")"
# x = f32[4, 64] of seeded values as .npy (version 1.0, header padded to 128 bytes)
perl -e 'srand(7); my $h = "{\x27descr\x27: \x27<f4\x27, \x27fortran_order\x27: False, \x27shape\x27: (4, 64), }";
  print "\x93NUMPY\x01\x00\x76\x00", $h, " " x (117 - length $h), "\n", pack("f<*", map { rand() * 4 - 1 } 1 .. 256)' \
  >"$tmp/x.npy"
cat >"$tmp/gn64.nn" <<'NN'
model gn64
input  x : f32[batch, 64]
h = reshape(x, [batch, 8, 8])
h = groupnorm(h, 4, name="gn")
output y = rmsnorm(h, name="rms")
NN
"$LATHE" init "$tmp/gn64.nn" -o "$tmp/g64.safetensors" >/dev/null 2>&1 || bad "init gn64"
for be in interp llvm; do
  "$LATHE" run "$tmp/gn64.nn" --weights "$tmp/g64.safetensors" --in x="$tmp/x.npy" --out y="$tmp/y_$be.npy" \
    --backend $be >/dev/null 2>"$tmp/run.err" && ok || bad "run on $be: $(cat "$tmp/run.err")"
done
cmp -s "$tmp/y_interp.npy" "$tmp/y_llvm.npy" && ok || bad "groupnorm/rmsnorm outputs differ between the backends"

# 3. errors name the place and the argument
err_case() { # model body, expected message
  printf 'model e\ninput x : f32[batch, 6, 4]\n%s\n' "$1" >"$tmp/e.nn"
  "$LATHE" check "$tmp/e.nn" --bind batch=2 >/dev/null 2>"$tmp/e.err"
  [ $? -eq 1 ] && grep -q "e.nn:3:[0-9]*: error: .*$2" "$tmp/e.err" && ok || bad "want '$2', got: $(cat "$tmp/e.err")"
}
err_case 'output y = groupnorm(x, 4)' "'groups' of 'groupnorm' must divide the 6 channels, got 4"
err_case 'output y = batchnorm(x, momentum=1.5)' "'momentum' of 'batchnorm' must be in \[0, 1\], got 1.5"
err_case 'output y = batchnorm(x, eps=0)' "'eps' of 'batchnorm' must be positive, got 0"
err_case 'output y = rmsnorm(x, eps=-1)' "'eps' of 'rmsnorm' must be positive, got -1"
err_case 'output y = batchnorm(sum(x))' "'batchnorm' expects a tensor \[N, C\] or \[N, C, ...\], got f32\[\]"
finish
