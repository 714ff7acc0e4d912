#!/usr/bin/env bash
# composite_loss.sh -- a loss of two terms (issue 17 item 6) trained against
# PyTorch step for step: cross_entropy with label smoothing, class weights
# and an ignore_index, plus 0.1 * mse of the probabilities against one-hot
# targets, through split, stack and concat. `lathe train --in-order` with
# SGD from `lathe init`'s weights on every backend and -O level must end
# within 1e-4 of PyTorch (float64, F.cross_entropy(weight=, ignore_index=,
# label_smoothing=) + 0.1 * F.mse_loss) after the same 6 steps; the metrics
# come from the cross_entropy term and leave the ignored rows out. Without
# torch the comparison prints SKIPPED. $1 is the lathe binary.
. "$(dirname "$0")/lib/common.sh"
PY=/usr/bin/python3
metric() { sed -n "s/^$2: //p" "$1" | head -1; }

# 80 rows: 6 features, a class 0..2 or -100 (ignored) every 7th row; --in-order with split [0.6, 0.2, 0.2]
# trains on the first 48 rows (3 batches of 16) in file order
awk 'BEGIN { srand(11); for (i = 0; i < 80; i++) { s = 0; for (j = 0; j < 6; j++) { v[j] = rand() * 2 - 1; s += v[j] * (j + 1) }
             c = s > 1 ? 2 : s > -1 ? 1 : 0; if (i % 7 == 3) c = -100
             printf "%f,%f,%f,%f,%f,%f,%d\n", v[0], v[1], v[2], v[3], v[4], v[5], c } }' >"$tmp/d.csv"
cat >"$tmp/m.nn" <<'NN'
model comp
input  x : f32[batch, 6]
target y : i32[batch]
h = dense(x, 8, name="fc1") |> tanh
a, b = split(h, [3, 5], axis=1)
s = stack([a, a * 2], axis=1)
f = concat([flatten(s), b], axis=1)
logits = dense(f, 3, name="out")
output probs = softmax(logits)
loss = cross_entropy(logits, y, label_smoothing=0.1, weight=[1.0, 2.0, 0.5], ignore_index=-100) + 0.1 * mse(probs, one_hot(where(less(y, 0), 0, y), 3))
train {
  optimizer = sgd(lr=0.5)
  epochs = 2
  batch = 16
  split = [0.6, 0.2, 0.2]
}
NN
"$LATHE" init "$tmp/m.nn" -o "$tmp/w0.safetensors" --seed 4 >/dev/null 2>"$tmp/err" && ok || bad "init: $(cat "$tmp/err")"
runs="interp:-O2 llvm:-O0 llvm:-O3"
for run in $runs; do
  be=${run%%:*} opt=${run#*:}
  if "$LATHE" train "$tmp/m.nn" --data "$tmp/d.csv" --in-order --normalize none --weights "$tmp/w0.safetensors" \
       --backend $be $opt --out "$tmp/o.$be$opt" >"$tmp/t.$be$opt" 2>"$tmp/err"; then ok
  else bad "train --backend $be $opt: $(tail -3 "$tmp/err")"; fi
done
# the metrics: the cross_entropy term's (accuracy over the counted test rows only)
acc=$(metric "$tmp/t.llvm-O3" "test accuracy")
[ -n "$acc" ] && ok || bad "no test accuracy line: $(cat "$tmp/t.llvm-O3")"

if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "SKIPPED: PyTorch comparison (no torch for $PY)"
else
  "$PY" - "$tmp" $runs <<'PY' && ok || bad "lathe's trained weights differ from PyTorch's"
import sys, json, struct
import numpy as np, torch, torch.nn.functional as F
d, runs = sys.argv[1], sys.argv[2:]
torch.set_default_dtype(torch.float64)

def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    return {k: torch.tensor(np.frombuffer(raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], np.float32)
                            .reshape(v["shape"]).astype(np.float64))
            for k, v in hdr.items() if k != "__metadata__" and v["dtype"] == "F32"}

rows = np.loadtxt(d + "/d.csv", delimiter=",")
X, Y = torch.tensor(rows[:48, :6]), torch.tensor(rows[:48, 6].astype(np.int64))
W = {k: v.clone().requires_grad_() for k, v in load(d + "/w0.safetensors").items()
     if k in ("fc1.weight", "fc1.bias", "out.weight", "out.bias")}
cw = torch.tensor([1.0, 2.0, 0.5])
for epoch in range(2):
    for b in range(3):
        x, y = X[b * 16:(b + 1) * 16], Y[b * 16:(b + 1) * 16]
        h = torch.tanh(x @ W["fc1.weight"] + W["fc1.bias"])
        a, bb = torch.split(h, [3, 5], dim=1)
        f = torch.cat([torch.stack([a, a * 2], dim=1).flatten(1), bb], dim=1)
        logits = f @ W["out.weight"] + W["out.bias"]
        t = F.one_hot(torch.where(y < 0, 0, y), 3).double()
        loss = F.cross_entropy(logits, y, weight=cw, ignore_index=-100, label_smoothing=0.1) \
            + 0.1 * F.mse_loss(torch.softmax(logits, 1), t)
        for p in W.values():
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in W.values():
                p -= 0.5 * p.grad
ok = True
for run in runs:
    be, opt = run.split(":")
    got = load(f"{d}/o.{be}{opt}/last.safetensors")
    err = max(float((got[k] - W[k].detach()).abs().max() / max(1.0, float(W[k].abs().max()))) for k in W)
    print(f"composite loss, {be} {opt}: max error vs PyTorch after 6 steps {err:.3g}")
    ok &= err <= 1e-4
sys.exit(0 if ok else 1)
PY
fi

# cross_entropy alone with ignore_index: the data check accepts the ignored label, training runs
sed 's/^loss = .*/loss = cross_entropy(logits, y, ignore_index=-100)/' "$tmp/m.nn" >"$tmp/ce.nn"
"$LATHE" train "$tmp/ce.nn" --data "$tmp/d.csv" --quiet >"$tmp/ce.out" 2>"$tmp/err" && ok \
  || bad "cross_entropy with ignore_index: $(tail -3 "$tmp/err")"
# ... and without it PyTorch's default -100 applies: the same training and metrics
sed 's/^loss = .*/loss = cross_entropy(logits, y)/' "$tmp/m.nn" >"$tmp/ce0.nn"
"$LATHE" train "$tmp/ce.nn" --data "$tmp/d.csv" --in-order >"$tmp/ce1.out" 2>"$tmp/err" \
  && "$LATHE" train "$tmp/ce0.nn" --data "$tmp/d.csv" --in-order >"$tmp/ce0.out" 2>>"$tmp/err" \
  && [ -n "$(metric "$tmp/ce1.out" "test loss")" ] && [ "$(metric "$tmp/ce1.out" "test loss")" = "$(metric "$tmp/ce0.out" "test loss")" ] \
  && [ "$(metric "$tmp/ce1.out" "val f1")" = "$(metric "$tmp/ce0.out" "val f1")" ] && ok \
  || bad "label -100 without ignore_index (the default): $(tail -3 "$tmp/err"; diff "$tmp/ce1.out" "$tmp/ce0.out")"
# ... while any other label outside the classes is refused
sed 's/,-100$/,-5/' "$tmp/d.csv" >"$tmp/d5.csv"
"$LATHE" train "$tmp/ce0.nn" --data "$tmp/d5.csv" --quiet >/dev/null 2>"$tmp/err" && bad "label -5 accepted" \
  || { grep -q "label" "$tmp/err" && ok || bad "label -5: $(cat "$tmp/err")"; }
# frontend errors at the argument
printf 'input x : f32[2, 3]\ntarget y : i32[2]\nloss = cross_entropy(x, y, weight=[1, 2])\n' >"$tmp/bad.nn"
"$LATHE" check "$tmp/bad.nn" >/dev/null 2>"$tmp/err"; grep -q "bad.nn:3:35: error: weight must give one number per class: 3 classes, got 2 numbers" "$tmp/err" && ok \
  || bad "weight length: $(cat "$tmp/err")"
printf 'input x : f32[2, 8]\na, b = split(x, [3, 4], axis=1)\noutput a\n' >"$tmp/bad.nn"
"$LATHE" check "$tmp/bad.nn" >/dev/null 2>"$tmp/err"; grep -q "bad.nn:2:17: error: split sizes must add up to the size of axis 1 (8)" "$tmp/err" && ok \
  || bad "split sizes: $(cat "$tmp/err")"
printf 'input x : f32[2, 8]\na, b = split(x, 3, axis=1)\noutput a\n' >"$tmp/bad.nn"
"$LATHE" check "$tmp/bad.nn" >/dev/null 2>"$tmp/err"; grep -q "bad.nn:2:8: error: 2 names are bound to 3 tensors" "$tmp/err" && ok \
  || bad "split count: $(cat "$tmp/err")"
finish
