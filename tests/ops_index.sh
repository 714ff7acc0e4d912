#!/bin/bash
# ops_index.sh -- one_hot, cumsum, gather and stack end to end: a model file
# run by both backends (interp, llvm) against NumPy, the run-time error of an
# id or index out of range on each backend, and the frontend's errors.
. "$(dirname "$0")/lib/common.sh"
PY=/usr/bin/python3

cat >"$tmp/m.nn" <<'NN'
model ops
input x : f32[2, 4]
input ids : i32[2, 3]
input idx : i32[2, 4]
output oh = one_hot(ids, 5)
output cs = cumsum(x, axis=-1)
output g = gather(x, 1, idx)
output st = stack([x, x * 2], axis=1)
output st0 = stack([x, x], axis=-3)
NN
"$PY" - "$tmp" <<'PY' || bad "writing inputs"
import sys, numpy as np
d = sys.argv[1]
np.save(d + "/x.npy", np.array([[1, 2, 3, 4], [-1, .5, .25, 8]], np.float32))
np.save(d + "/ids.npy", np.array([[0, 4, 2], [1, 1, 3]], np.int32))
np.save(d + "/idx.npy", np.array([[3, 0, 0, 1], [2, 2, 3, 0]], np.int32))
np.save(d + "/ids_bad.npy", np.array([[0, 5, 2], [1, 1, 3]], np.int32))
np.save(d + "/idx_bad.npy", np.array([[3, 0, 0, 1], [2, -1, 3, 0]], np.int32))
PY

# the llvm backend at every optimisation level (-O0: nothing fused or folded)
for run in interp:-O2 llvm:-O0 llvm:-O2 llvm:-O3; do
  be=${run%%:*} opt=${run#*:}
  outs=""
  for o in oh cs g st st0; do outs="$outs --out $o=$tmp/$o.$be.npy"; done
  if "$LATHE" run "$tmp/m.nn" --backend $be $opt --in x="$tmp/x.npy" --in ids="$tmp/ids.npy" \
       --in idx="$tmp/idx.npy" $outs >/dev/null 2>"$tmp/err"; then ok; else bad "run --backend $be $opt: $(cat "$tmp/err")"; fi
  "$PY" - "$tmp" $be <<'PY' && ok || bad "$be $opt results differ from NumPy"
import sys, numpy as np
d, be = sys.argv[1], sys.argv[2]
x = np.load(d + "/x.npy"); ids = np.load(d + "/ids.npy"); idx = np.load(d + "/idx.npy")
want = {"oh": np.eye(5, dtype=np.float32)[ids], "cs": np.cumsum(x, axis=-1),
        "g": np.take_along_axis(x, idx, 1), "st": np.stack([x, x * 2], 1), "st0": np.stack([x, x], 0)}
for k, w in want.items():
    got = np.load(f"{d}/{k}.{be}.npy")
    assert got.shape == w.shape and np.allclose(got, w, atol=1e-6), (k, got, w)
PY
  "$LATHE" run "$tmp/m.nn" --backend $be $opt --in x="$tmp/x.npy" --in ids="$tmp/ids_bad.npy" \
    --in idx="$tmp/idx.npy" >/dev/null 2>"$tmp/err"
  rc=$?
  want="id 5 at position 1 is out of range for 5 classes"
  [ $be = llvm ] && want="a one_hot id or gather index is out of range"
  [ $rc -eq 1 ] && grep -q "$want" "$tmp/err" && ok || bad "$be one_hot id out of range: rc $rc, $(cat "$tmp/err")"
  "$LATHE" run "$tmp/m.nn" --backend $be $opt --in x="$tmp/x.npy" --in ids="$tmp/ids.npy" \
    --in idx="$tmp/idx_bad.npy" >/dev/null 2>"$tmp/err"
  rc=$?
  want="index -1 at position 5 is out of range for axis 1 of size 4"
  [ $be = llvm ] && want="a one_hot id or gather index is out of range"
  [ $rc -eq 1 ] && grep -q "$want" "$tmp/err" && ok || bad "$be gather index out of range: rc $rc, $(cat "$tmp/err")"
done

# training through cumsum, stack and a one_hot target at -O0 and -O3 (the
# metrics of an mse loss compare the prediction with one_hot(y), not with y)
small_task "$tmp"
cat >"$tmp/t.nn" <<'NN'
model t
input  x : f32[batch, 4]
target y : i32[batch]
h = dense(x, 8, name="fc1") |> relu
c = cumsum(h, axis=1)
s = reshape(stack([c, h], axis=1), [batch, 16])
logits = dense(s, 2, name="out")
output probs = softmax(logits)
loss = mse(probs, one_hot(y, 2))
train {
  optimizer = adam(lr=1e-2)
  epochs = 3
  batch = 32
}
NN
for o in -O0 -O3; do
  "$LATHE" train "$tmp/t.nn" --data "$tmp/d.csv" $o --quiet --json >"$tmp/train$o.json" 2>"$tmp/err" && ok ||
    bad "train $o: $(cat "$tmp/err")"
done
"$PY" - "$tmp" <<'PY' && ok || bad "training metrics: -O0 and -O3 differ or are not an mse of probabilities"
import sys, json
d = sys.argv[1]
a, b = (json.loads(open(f"{d}/train{o}.json").read().strip().splitlines()[-1]) for o in ("-O0", "-O3"))
assert 0 < a["val_mse"] < 1 and abs(a["val_mse"] - b["val_mse"]) < 1e-4, (a, b)
PY

# frontend errors: file:line:col and the message
check_err() { # SOURCE_LINE WANT
  printf 'model e\ninput x : f32[2, 4]\ninput ids : i32[2, 3]\ninput big : i32[3, 5]\noutput r = %s\n' "$1" >"$tmp/e.nn"
  "$LATHE" check "$tmp/e.nn" >/dev/null 2>"$tmp/err"
  rc=$?
  [ $rc -eq 1 ] && grep -qF "$2" "$tmp/err" && ok || bad "check '$1': rc $rc, want '$2', got: $(cat "$tmp/err")"
}
check_err 'one_hot(ids, 0)' "e.nn:5:25: error: argument 'n' of 'one_hot' must be at least 1, got 0"
check_err 'one_hot(x, 3)' "one_hot: ids must be integers, got f32[2, 4]"
check_err 'cumsum(x, 2)' "axis 2 is out of range for a tensor of rank 2"
check_err 'cumsum(ids, 1)' "'cumsum' expects a floating-point tensor, got i32[2, 3]"
check_err 'gather(x, 1, x)' "gather: index must be integers, got f32[2, 4]"
check_err 'gather(x, 1, big)' "gather: index [3, 5] must have the rank of input [2, 4] and no larger size off axis 1"
check_err 'gather(x, 0, reshape(ids, [6]))' "gather: index [6] must have the rank of input [2, 4] and no larger size off axis 0"
check_err 'stack([x, ids], axis=0)' "'stack' needs tensors of one shape: tensor 1 is [2, 3], tensor 0 is [2, 4]"
check_err 'stack([x, x], axis=3)' "axis 3 is out of range for a tensor of rank 3"
check_err 'stack([], axis=0)' "'stack' needs at least one tensor"
finish
