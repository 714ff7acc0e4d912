#!/bin/bash
# attention_opts.sh -- attention's options end to end (mask=, context=,
# rope=, kv_heads=, head_dim= with an inner width other than the model's:
# the op mha): a model file run by the interpreter and by
# the llvm backend at -O0, -O2 and -O3 with the same results, the
# parameter layout lathe init writes, training through them at -O0 and -O3
# with the same metrics, and the frontend's errors.
. "$(dirname "$0")/lib/common.sh"
PY=/usr/bin/python3

cat >"$tmp/m.nn" <<'NN'
model opts
input x : f32[3, 5, 8]
input e : f32[3, 7, 6]
input len : i32[3]
input keep : bool[3, 7]
input full : bool[3, 5, 5]
output a = attention(x, 4, causal=true, context=e, mask=len, rope=true, kv_heads=2, name="cross")
output b = attention(x, 4, mask=full, kv_heads=1, name="mqa")
output c = attention(x, 2, context=e, mask=keep, name="keys")
output r = attention(x, 2, rope=true, name="rot")
output w = attention(x, 3, causal=true, head_dim=2, name="narrow")
output v = attention(x, 2, context=e, rope=true, kv_heads=1, head_dim=6, name="wide")
NN
"$PY" - "$tmp" <<'PY' || bad "writing inputs"
import sys, numpy as np
d = sys.argv[1]
r = np.random.default_rng(0)
np.save(d + "/x.npy", r.standard_normal((3, 5, 8)).astype(np.float32))
np.save(d + "/e.npy", r.standard_normal((3, 7, 6)).astype(np.float32))
np.save(d + "/len.npy", np.array([7, 2, 5], np.int32))
keep = r.random((3, 7)) < 0.5
keep[:, 0] = True
np.save(d + "/keep.npy", keep)
full = r.random((3, 5, 5)) < 0.5
full[:, :, 0] = True
np.save(d + "/full.npy", full)
PY
"$LATHE" init "$tmp/m.nn" -o "$tmp/w.safetensors" --seed 3 >/dev/null 2>&1 && ok || bad "init"
"$PY" - "$tmp/w.safetensors" <<'PY' && ok || bad "parameter layout"
import sys, json, struct
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = {k: v["shape"] for k, v in json.loads(raw[8:8 + n]).items() if not k.startswith("__")}
want = {"cross.q.weight": [8, 8], "cross.q.bias": [8], "cross.kv.weight": [6, 8], "cross.kv.bias": [8],
        "cross.proj.weight": [8, 8], "cross.proj.bias": [8], "mqa.qkv.weight": [8, 12], "mqa.qkv.bias": [12],
        "keys.kv.weight": [6, 16], "rot.qkv.weight": [8, 24], "narrow.qkv.weight": [8, 18],
        "narrow.qkv.bias": [18], "narrow.proj.weight": [6, 8], "wide.q.weight": [8, 12], "wide.kv.weight": [6, 12],
        "wide.proj.weight": [12, 8], "wide.proj.bias": [8]}
assert all(h.get(k) == v for k, v in want.items()), h
PY
for run in interp:-O2 llvm:-O0 llvm:-O2 llvm:-O3; do
  be=${run%%:*} opt=${run#*:}
  outs=""
  for o in a b c r w v; do outs="$outs --out $o=$tmp/$o.$be$opt.npy"; done
  "$LATHE" run "$tmp/m.nn" --weights "$tmp/w.safetensors" --backend $be $opt --in x="$tmp/x.npy" --in e="$tmp/e.npy" \
    --in len="$tmp/len.npy" --in keep="$tmp/keep.npy" --in full="$tmp/full.npy" $outs >/dev/null 2>"$tmp/err" && ok ||
    bad "run --backend $be $opt: $(cat "$tmp/err")"
done
"$PY" - "$tmp" <<'PY' && ok || bad "the backends and levels differ"
import sys, numpy as np
d = sys.argv[1]
for o in "abcrwv":
    ref = np.load(f"{d}/{o}.interp-O2.npy")
    assert np.isfinite(ref).all() and np.abs(ref).max() > 0, o
    for run in ("llvm-O0", "llvm-O2", "llvm-O3"):
        got = np.load(f"{d}/{o}.{run}.npy")
        assert np.allclose(got, ref, rtol=1e-4, atol=1e-5), (o, run, np.abs(got - ref).max())
PY

# training through every option at -O0 and -O3: the same metrics
"$PY" - "$tmp" <<'PY' || bad "writing training data"
import sys, numpy as np
d = sys.argv[1]
r = np.random.default_rng(1)
x = r.standard_normal((256, 6, 8)).astype(np.float32)
np.save(d + "/tx.npy", x)
np.save(d + "/tlen.npy", r.integers(1, 7, 256).astype(np.int32))
np.save(d + "/ty.npy", (x[:, 0, 0] > 0).astype(np.int32))
PY
cat >"$tmp/t.nn" <<'NN'
model t
input  x : f32[batch, 6, 8]
input  len : i32[batch]
target y : i32[batch]
h = x + attention(x, 4, causal=true, mask=len, rope=true, kv_heads=2, name="self")
h = h + attention(h, 2, context=x, mask=len, name="cross")
h = h + attention(h, 3, causal=true, head_dim=2, name="narrow")
logits = dense(flatten(h), 2, name="out")
loss = cross_entropy(logits, y)
train {
  optimizer = adam(lr=1e-2)
  epochs = 2
  batch = 32
}
NN
for o in -O0 -O3; do
  "$LATHE" train "$tmp/t.nn" --data x="$tmp/tx.npy" --data len="$tmp/tlen.npy" --data y="$tmp/ty.npy" $o --quiet \
    --json >"$tmp/train$o.json" 2>"$tmp/err" && ok || bad "train $o: $(cat "$tmp/err")"
done
"$PY" - "$tmp" <<'PY' && ok || bad "training: -O0 and -O3 differ"
import sys, json
d = sys.argv[1]
a, b = (json.loads(open(f"{d}/train{o}.json").read().strip().splitlines()[-1]) for o in ("-O0", "-O3"))
assert abs(a["val_loss"] - b["val_loss"]) < 1e-4 and a["val_accuracy"] == b["val_accuracy"], (a, b)
PY

# frontend errors: file:line:col and the message
check_err() { # SOURCE_LINE WANT
  printf 'model e\ninput x : f32[2, 4, 8]\ninput e : f32[3, 5, 6]\ninput n : i32[2]\ninput f : f32[2]\noutput r = %s\n' \
    "$1" >"$tmp/e.nn"
  "$LATHE" check "$tmp/e.nn" >/dev/null 2>"$tmp/err"
  rc=$?
  [ $rc -eq 1 ] && grep -qF "$2" "$tmp/err" && ok || bad "check '$1': rc $rc, want '$2', got: $(cat "$tmp/err")"
}
check_err 'attention(x, 4, kv_heads=3)' "e.nn:6:37: error: attention kv_heads=3 does not divide heads=4"
check_err 'attention(x, 4, kv_heads=0)' "argument 'kv_heads' of 'attention' must be at least 1, got 0"
check_err 'attention(x, 8, rope=true)' "rope=true needs an even head width, got 1 (width 8 / heads 8)"
check_err 'attention(x, 2, mask=f)' \
  "attention mask must be lengths i32[2] or a bool mask [2, 4] or [2, 4, 4] (true attends), got f32[2]"
check_err 'attention(x, 2, context=e)' "attention context batch 3 differs from the queries' batch 2"
check_err 'attention(x, 2, context=n)' "'attention' expects a 3-d context [batch, Tk, dc], got i32[2]"
check_err 'attention(x, 3)' "attention width 8 is not divisible by heads=3 (or give head_dim=)"
check_err 'attention(x, 2, head_dim=0)' "argument 'head_dim' of 'attention' must be at least 1, got 0"
check_err 'attention(x, 2, rope=true, head_dim=3)' "rope=true needs an even head width, got head_dim=3"
finish
