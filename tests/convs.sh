#!/bin/bash
# convs.sh -- conv1d and conv2d's dilation and groups, the 1-d pools, global
# pooling and nearest upsampling end to end (issue 17 item 2; the ops and
# their geometry: ir/conv.h):
#   1. examples/seq_cnn.nn (a 1-d CNN on examples/seq_cnn_data.py's motif
#      task) trains with lathe train to at least 95% test accuracy;
#   2. a model of conv1d/conv2d with stride, padding, dilation and groups,
#      maxpool1d/avgpool1d, global_avgpool/global_maxpool and upsample:
#      PyTorch's parameter layout; lathe run on the interpreter and on the
#      llvm backend at -O0, -O2 and -O3 equals F.conv1d/F.conv2d/F.max_pool1d/
#      F.interpolate/... computed by PyTorch from the same weights;
#   3. training through them at -O0 and -O3 gives the same metrics;
#   4. mistakes are errors at file:line:col.
# Each op and its gradients against PyTorch in float64: the fixtures of
# tests/fixtures/gen_ops.py; LLVM against the interpreter: test_llvm,
# test_llvm_grad; finite differences: test_grad.
. "$(dirname "$0")/lib/common.sh"
PY=/usr/bin/python3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
metric() { sed -n "s/^$1: //p" "$2" | tail -1; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }

# 1. the example
"$PY" "$ROOT/examples/seq_cnn_data.py" "$tmp" && ok || bad "seq_cnn_data.py"
"$LATHE" train "$ROOT/examples/seq_cnn.nn" --data x="$tmp/x.npy" --data y="$tmp/y.npy" --quiet >"$tmp/seq.out" \
  2>"$tmp/seq.err" && ok || bad "train seq_cnn: $(tail -3 "$tmp/seq.err")"
acc=$(metric "test accuracy" "$tmp/seq.out")
echo "seq_cnn test accuracy: ${acc:-none}"
ge "${acc:-0}" 0.95 && ok || bad "seq_cnn test accuracy ${acc:-none} < 0.95"

# 2. the layers against PyTorch, every backend and level
cat >"$tmp/m.nn" <<'NN'
model convs
input s : f32[3, 4, 19]
input x : f32[2, 6, 9, 8]
output a = conv1d(s, 6, kernel=3, stride=2, padding=2, dilation=2, groups=2, name="a")
output b = conv1d(s, 5, kernel=4, padding="same", bias=false, name="b")
output c = conv2d(x, 6, kernel=3, padding="same", dilation=2, groups=6, name="c")
output d = conv2d(x, 4, kernel=2, stride=2, padding=1, groups=2, name="d")
output e = maxpool1d(s, 3, 2)
output f = avgpool1d(s, 2)
output g = upsample(s, 3)
output h = upsample(x, 2)
output i = global_avgpool(x)
output j = global_maxpool(s)
NN
"$PY" - "$tmp" <<'PY' || bad "writing inputs"
import sys, numpy as np
d = sys.argv[1]
r = np.random.default_rng(0)
np.save(d + "/s.npy", r.standard_normal((3, 4, 19)).astype(np.float32))
np.save(d + "/x.npy", r.standard_normal((2, 6, 9, 8)).astype(np.float32))
PY
"$LATHE" init "$tmp/m.nn" -o "$tmp/w.safetensors" --seed 3 >/dev/null 2>&1 && ok || bad "init"
for run in interp:-O2 llvm:-O0 llvm:-O2 llvm:-O3; do
  be=${run%%:*} opt=${run#*:}
  outs=""
  for o in a b c d e f g h i j; do outs="$outs --out $o=$tmp/$o.$be$opt.npy"; done
  "$LATHE" run "$tmp/m.nn" --weights "$tmp/w.safetensors" --backend $be $opt --in s="$tmp/s.npy" \
    --in x="$tmp/x.npy" $outs >/dev/null 2>"$tmp/err" && ok || bad "run --backend $be $opt: $(cat "$tmp/err")"
done
"$PY" - "$tmp" <<'PY' && ok || bad "the layers differ from PyTorch's"
import sys, json, struct, warnings
warnings.filterwarnings("ignore")
import numpy as np, torch, torch.nn.functional as F
d = sys.argv[1]
raw = open(d + "/w.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
W = {k: torch.tensor(np.frombuffer(raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], np.float32)
                     .reshape(v["shape"]).astype(np.float64)) for k, v in hdr.items() if not k.startswith("__")}
shapes = {k: list(v.shape) for k, v in W.items()}
want = {"a.weight": [6, 2, 3], "a.bias": [6], "b.weight": [5, 4, 4], "c.weight": [6, 1, 3, 3], "c.bias": [6],
        "d.weight": [4, 3, 2, 2], "d.bias": [4]}
assert shapes == want, shapes
s = torch.tensor(np.load(d + "/s.npy").astype(np.float64))
x = torch.tensor(np.load(d + "/x.npy").astype(np.float64))
ref = {"a": F.conv1d(s, W["a.weight"], W["a.bias"], stride=2, padding=2, dilation=2, groups=2),
       "b": F.conv1d(s, W["b.weight"], None, padding="same"),
       "c": F.conv2d(x, W["c.weight"], W["c.bias"], padding="same", dilation=2, groups=6),
       "d": F.conv2d(x, W["d.weight"], W["d.bias"], stride=2, padding=1, groups=2),
       "e": F.max_pool1d(s, 3, 2), "f": F.avg_pool1d(s, 2), "g": F.interpolate(s, scale_factor=3, mode="nearest"),
       "h": F.interpolate(x, scale_factor=2, mode="nearest"), "i": x.mean((2, 3)), "j": s.amax(2)}
for o, r in ref.items():
    r = r.numpy()
    for run in ("interp-O2", "llvm-O0", "llvm-O2", "llvm-O3"):
        got = np.load(f"{d}/{o}.{run}.npy")
        assert got.shape == r.shape and np.allclose(got, r, rtol=1e-5, atol=1e-5), (o, run, got.shape, r.shape,
                                                                                      np.abs(got - r).max())
PY

# 3. training through dilation and groups at -O0 and -O3: the same metrics
"$PY" - "$tmp" <<'PY' || bad "writing training data"
import sys, numpy as np
d = sys.argv[1]
r = np.random.default_rng(1)
x = r.standard_normal((256, 4, 16)).astype(np.float32)
np.save(d + "/tx.npy", x)
np.save(d + "/ty.npy", (x[:, 0, 3:6].sum(1) > x[:, 2, 9:12].sum(1)).astype(np.int32))
PY
cat >"$tmp/t.nn" <<'NN'
model t
input  x : f32[batch, 4, 16]
target y : i32[batch]
h = conv1d(x, 8, kernel=3, padding="same", dilation=2, groups=2, name="c1") |> relu
h = conv1d(h, 8, kernel=3, stride=2, groups=8, name="dw") |> relu
h = reshape(h, [batch, 8, 1, 7])
h = conv2d(h, 8, kernel=1, groups=4, name="c2")
h = reshape(h, [batch, 8, 7]) |> upsample(2) |> maxpool1d(3, 2)
h = concat([avgpool1d(h, 2), reshape(global_avgpool(h), [batch, 8, 1])], 2)
logits = dense(flatten(h), 2, name="out")
loss = cross_entropy(logits, y)
train {
  optimizer = adam(lr=1e-2)
  epochs = 2
  batch = 32
}
NN
for o in -O0 -O3; do
  "$LATHE" train "$tmp/t.nn" --data x="$tmp/tx.npy" --data y="$tmp/ty.npy" $o --quiet \
    --json >"$tmp/train$o.json" 2>"$tmp/err" && ok || bad "train $o: $(cat "$tmp/err")"
done
"$PY" - "$tmp" <<'PY' && ok || bad "training: -O0 and -O3 differ"
import sys, json
d = sys.argv[1]
a, b = (json.loads(open(f"{d}/train{o}.json").read().strip().splitlines()[-1]) for o in ("-O0", "-O3"))
assert abs(a["val_loss"] - b["val_loss"]) < 1e-4 and a["val_accuracy"] == b["val_accuracy"], (a, b)
PY

# 4. frontend errors: file:line:col and the message
check_err() { # SOURCE_LINE WANT
  printf 'model e\ninput s : f32[2, 4, 8]\ninput x : f32[2, 4, 8, 8]\noutput r = %s\n' "$1" >"$tmp/e.nn"
  "$LATHE" check "$tmp/e.nn" >/dev/null 2>"$tmp/err"
  rc=$?
  [ $rc -eq 1 ] && grep -qF "$2" "$tmp/err" && ok || bad "check '$1': rc $rc, want '$2', got: $(cat "$tmp/err")"
}
check_err 'conv1d(s, 6, groups=3)' "e.nn:4:32: error: groups=3 must divide the input channels (4) and the output channels (6)"
check_err 'conv1d(x, 6)' "e.nn:4:19: error: 'conv1d' expects a 3-d tensor [N, C, L], got f32[2, 4, 8, 8]"
check_err 'conv2d(s, 6)' "'conv2d' expects a 4-d tensor [N, C, H, W], got f32[2, 4, 8]"
check_err 'conv1d(s, 6, dilation=0)' "argument 'dilation' of 'conv1d' must be at least 1, got 0"
check_err 'conv1d(s, 6, kernel=3, dilation=4)' "conv2d: kernel 3 (dilated) does not fit input length 8 padded by 0+0"
check_err 'conv1d(s, 6, stride=2, padding="same")' "padding=\"same\" needs stride 1, got stride 2"
check_err 'maxpool1d(x, 2)' "'maxpool1d' expects a 3-d tensor [N, C, L], got f32[2, 4, 8, 8]"
check_err 'avgpool1d(s, 9)' "avgpool2d: kernel 9 does not fit input length 8"
check_err 'upsample(s, 0)' "argument 'scale' of 'upsample' must be at least 1, got 0"
check_err 'global_avgpool(reshape(s, [8, 8]))' "'global_avgpool' expects a tensor [N, C, ...] of rank >= 3, got f32[8, 8]"
finish
