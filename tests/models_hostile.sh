#!/bin/bash
# models_hostile.sh -- models and flags that used to give a silent wrong answer
# or an internal error (issue 12, items 4 and 5): each must end in a correct
# result or a clear error.
#   - the first model of docs/language.md (a one-line train block) parses;
#   - --lr 0, --epochs 0, --batch 0, --restarts 0 are refused, not ignored;
#   - an output that reads a target not given is an error naming the target;
#   - a composite loss trains (its penalty really acts) with its term's metrics;
#   - mse and bce on a rank-1 prediction [batch] train and evaluate;
#   - bce metrics (accuracy, precision, recall, f1, roc_auc, loss) equal
#     scikit-learn's on the same predictions;
#   - f16 parameters are written as F16, f16/i8 outputs as f16/i8 .npy.
# usage (from the repository root): bash tests/models_hostile.sh build/lathe
set -u
lathe=${1:?usage: models_hostile.sh LATHE_BINARY}
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*" >&2; fail=$((fail + 1)); }

# expect_err WANT CMD...: exit status 1 and WANT as the first stderr line.
expect_err() {
  local want=$1
  shift
  timeout 60 "$@" >"$tmp/out" 2>"$tmp/err" # 124: it ran on (--restarts 99999999999 once became 1215752191)
  local rc=$?
  [ "$rc" -eq 1 ] || { bad "$* : exit $rc, want 1"; return; }
  local got
  got=$(sed -n 1p "$tmp/err")
  [ "$got" = "$want" ] || bad "$* :"$'\n'"  got:  $got"$'\n'"  want: $want"
}

# metric FILE NAME: the value of a "NAME: VALUE" line.
metric() { sed -n "s/^$2: //p" "$1" | head -1; }

if ! $PY -c 'import numpy, sklearn' 2>/dev/null; then
  echo "SKIPPED (loudly): needs $PY with numpy and sklearn (apt-get install python3-sklearn)" >&2
  exit 0
fi

# ---- the first model in docs/language.md parses as written ----
sed -n '/^## A first model/,/^## /p' docs/language.md | sed -n '/^```$/,/^```$/p' | sed '1d;$d' >"$tmp/first.nn"
grep -q '^train { optimizer = adam' "$tmp/first.nn" || bad "docs/language.md: no one-line train block found"
"$lathe" check "$tmp/first.nn" >"$tmp/out" 2>"$tmp/err" || bad "first model of docs/language.md: $(head -1 "$tmp/err")"

# Data: y = x @ w + noise (regression) and (x0 + x1 > 0) (binary), 4 features.
$PY - "$tmp" <<'EOF'
import sys, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
X = rng.normal(size=(300, 4)).astype(np.float32)
y = X @ np.array([1, -2, 0.5, 1]) + 0.1 * rng.normal(size=300)
np.savetxt(d + "/reg.csv", np.c_[X, y], delimiter=",", fmt="%.6f")
yb = (X[:, 0] + X[:, 1] + 0.5 * rng.normal(size=300) > 0).astype(np.float32)
np.savetxt(d + "/bin.csv", np.c_[X, yb], delimiter=",", fmt="%.6f")
np.save(d + "/x.npy", X)
np.save(d + "/yb.npy", yb)
np.save(d + "/x16.npy", X[:5].astype(np.float16))
np.save(d + "/k8.npy", np.array([[1, 2, 3, 4], [-5, 6, 7, 8]], np.int8))
EOF

# ---- flags mean what they say ----
cat >"$tmp/reg1.nn" <<'EOF'
input x : f32[batch, 4]
target y : f32[batch]
p = dense(x, 1, name="fc") |> reshape([batch])
output pred = p
output resid = p - y
loss = mse(p, y)
train {
  optimizer = adam(lr=0.05)
  epochs = 20, batch = 16
}
EOF
T=("$lathe" train "$tmp/reg1.nn" --data "$tmp/reg.csv" --quiet)
expect_err "lathe train: error: --lr must be a positive number, got 0" "${T[@]}" --lr 0
expect_err "lathe train: error: --lr must be a positive number, got -0.1" "${T[@]}" --lr -0.1
expect_err "lathe train: error: --epochs must be at least 1, got 0" "${T[@]}" --epochs 0
expect_err "lathe train: error: --batch must be at least 1, got 0" "${T[@]}" --batch 0
expect_err "lathe train: error: --restarts must be at least 1, got 0" "${T[@]}" --restarts 0
expect_err "lathe train: error: --restarts must be at most 1000000, got 99999999999" "${T[@]}" --restarts 99999999999
expect_err "lathe train: error: --epochs must be at most 1000000000, got 4294967297" "${T[@]}" --epochs 4294967297
expect_err "lathe train: error: --batch must be at most 1099511627776, got 18446744073709551615" "${T[@]}" \
  --batch 18446744073709551615
expect_err "lathe eval: error: --batch must be at least 1, got 0" \
  "$lathe" eval "$tmp/reg1.nn" --data "$tmp/reg.csv" --weights none.safetensors --batch 0
# and a non-zero flag is applied: 1 epoch of 240/16 = 15 steps
"${T[@]}" --epochs 1 >"$tmp/out" 2>"$tmp/err" || bad "train --epochs 1: $(head -1 "$tmp/err")"
grep -q "^trained 15 steps (1 epochs)" "$tmp/err" || bad "--epochs 1 not applied: $(grep trained "$tmp/err")"

# ---- mse on a rank-1 prediction: finite metrics, and they fit ----
"${T[@]}" --normalize none --out "$tmp/r1" >"$tmp/out" 2>"$tmp/err" || bad "rank-1 mse: $(head -1 "$tmp/err")"
r2=$(metric "$tmp/out" "test r2")
$PY -c "import sys; sys.exit(0 if float('$r2') > 0.95 else 1)" 2>/dev/null || bad "rank-1 mse: test r2 '$r2', want > 0.95"

# ---- an output that reads a target not given ----
R=("$lathe" run "$tmp/reg1.nn" --weights "$tmp/r1/best.safetensors" --in x="$tmp/x.npy")
expect_err "lathe: error: output 'resid' reads target 'y', which was not given (use --in y=FILE.npy)" "${R[@]}"
expect_err "lathe: error: output 'resid' reads target 'y', which was not given (use --in y=FILE.npy)" \
  "${R[@]}" --out pred="$tmp/p.npy" --out resid="$tmp/e.npy" --backend interp
[ ! -e "$tmp/p.npy" ] || bad "run wrote pred.npy before refusing resid"
"${R[@]}" --out pred="$tmp/p.npy" >"$tmp/out" 2>"$tmp/err" || bad "run without the target: $(head -1 "$tmp/err")"

# ---- a composite loss trains, and its penalty acts ----
for w in 0.01 100; do
  sed "s/^loss = .*/loss = mse(p, y) + $w * mean(p * p)/" "$tmp/reg1.nn" >"$tmp/comp_$w.nn"
  "$lathe" train "$tmp/comp_$w.nn" --data "$tmp/reg.csv" --quiet --normalize none >"$tmp/comp_$w.out" 2>"$tmp/err" ||
    bad "composite loss (weight $w): $(head -1 "$tmp/err")"
done
for k in "test loss" "test mse" "test mae" "test r2"; do
  [ -n "$(metric "$tmp/comp_0.01.out" "$k")" ] || bad "composite loss: no '$k' line"
done
$PY - "$(metric "$tmp/comp_0.01.out" "test r2")" "$(metric "$tmp/comp_100.out" "test r2")" <<'EOF' || bad "composite loss: the penalty does not act"
import sys
small, big = map(float, sys.argv[1:])
sys.exit(0 if small > 0.9 and big < small - 0.3 else 1)   # weight 100 shrinks predictions towards 0
EOF
sed "s/^loss = .*/loss = mse(p, y) + mse(p, 2 * y)/" "$tmp/reg1.nn" >"$tmp/two.nn"
"$lathe" train "$tmp/two.nn" --data "$tmp/reg.csv" --quiet >"$tmp/two.out" 2>"$tmp/err" ||
  bad "two loss terms: $(head -1 "$tmp/err")"
[ -n "$(metric "$tmp/two.out" "test mse")" ] || bad "two loss terms: no 'test mse' line"
sed "s/^loss = .*/loss = mean((p - y) * (p - y))/" "$tmp/reg1.nn" >"$tmp/none.nn"
expect_err "lathe: error: the loss must be, or contain, a cross_entropy, nll, mse, bce, l1_loss or huber term to train and evaluate" \
  "$lathe" train "$tmp/none.nn" --data "$tmp/reg.csv" --quiet

# ---- bce on a rank-1 prediction: metrics equal scikit-learn's ----
cat >"$tmp/bin1.nn" <<'EOF'
input x : f32[batch, 4]
target y : f32[batch]
z = dense(x, 1, name="fc") |> reshape([batch])
output prob = sigmoid(z)
loss = bce(z, y)
train {
  optimizer = sgd(lr=0.05, momentum=0.9, nesterov=true)
  epochs = 3, batch = 16
}
EOF
"$lathe" train "$tmp/bin1.nn" --data "$tmp/bin.csv" --quiet --normalize none --out "$tmp/b1" --metric f1 \
  >"$tmp/out" 2>"$tmp/err" || bad "rank-1 bce: $(head -1 "$tmp/err")"
for k in accuracy precision recall f1 roc_auc; do
  [ -n "$(metric "$tmp/out" "test $k")" ] || bad "bce: no 'test $k' line"
done
"$lathe" eval "$tmp/bin1.nn" --data "$tmp/bin.csv" --normalize none --weights "$tmp/b1/best.safetensors" --split all \
  >"$tmp/eval" 2>"$tmp/err" || bad "bce eval: $(head -1 "$tmp/err")"
"$lathe" run "$tmp/bin1.nn" --weights "$tmp/b1/best.safetensors" --in x="$tmp/x.npy" --out prob="$tmp/prob.npy" \
  2>"$tmp/err" || bad "bce run: $(head -1 "$tmp/err")"
$PY - "$tmp" <<'EOF' || bad "bce metrics differ from scikit-learn's"
import sys, numpy as np
from sklearn.metrics import accuracy_score, precision_score, recall_score, f1_score, roc_auc_score, log_loss
d = sys.argv[1]
y, p = np.load(d + "/yb.npy"), np.load(d + "/prob.npy").astype(np.float64)
got = dict(l.split(": ") for l in open(d + "/eval").read().split("\n") if ": " in l)
want = {"accuracy": accuracy_score(y, p > 0.5), "precision": precision_score(y, p > 0.5),
        "recall": recall_score(y, p > 0.5), "f1": f1_score(y, p > 0.5), "roc_auc": roc_auc_score(y, p),
        "loss": log_loss(y, p)}
ok = True
for k, v in want.items():
    if abs(float(got[k]) - v) > 6e-5:   # printed with 4 decimals
        print("%s: lathe %s, sklearn %.6f" % (k, got[k], v), file=sys.stderr)
        ok = False
sys.exit(0 if ok else 1)
EOF

# ---- declared dtypes in files ----
cat >"$tmp/h.nn" <<'EOF'
input x : f16[batch, 4]
input k : i8[2, 4]
output y = dense(x, 3, name="fc")
output kk = k * 100
EOF
"$lathe" init "$tmp/h.nn" -o "$tmp/h.safetensors" --bind batch=5 >/dev/null 2>"$tmp/err" || bad "init f16: $(head -1 "$tmp/err")"
"$lathe" run "$tmp/h.nn" --weights "$tmp/h.safetensors" --in x="$tmp/x16.npy" --in k="$tmp/k8.npy" --backend interp \
  --out y="$tmp/y.npy" --out kk="$tmp/kk.npy" 2>"$tmp/err" || bad "run f16/i8: $(head -1 "$tmp/err")"
$PY - "$tmp" <<'EOF' || bad "declared dtypes not kept in files"
import sys, json, struct, numpy as np
d = sys.argv[1]
b = open(d + "/h.safetensors", "rb").read()
hdr = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
ok = hdr["fc.weight"]["dtype"] == "F16" and hdr["fc.bias"]["dtype"] == "F16"
y, kk = np.load(d + "/y.npy"), np.load(d + "/kk.npy")
ok = ok and y.dtype == np.float16 and y.shape == (5, 3) and kk.dtype == np.int8
ok = ok and kk.tolist() == (np.array([[1, 2, 3, 4], [-5, 6, 7, 8]], np.int8) * np.int8(100)).tolist()  # wraps
if not ok: print(hdr, y.dtype, kk.dtype, kk.tolist(), file=sys.stderr)
sys.exit(0 if ok else 1)
EOF

# training an f16 model is refused where its f16 parameter is declared, not
# an internal autodiff error
sed 's/f32\[/f16[/g' "$tmp/reg1.nn" >"$tmp/reg16.nn"
expect_err "$tmp/reg16.nn:3:5: error: cannot train parameter 'fc.weight': it is f16 (the layer reads f16 data); training needs f32 parameters: declare the model's inputs f32" \
  "$lathe" train "$tmp/reg16.nn" --data "$tmp/reg.csv" --quiet --backend interp

[ "$fail" -eq 0 ] && echo "models_hostile: all passed"
[ "$fail" -eq 0 ]
