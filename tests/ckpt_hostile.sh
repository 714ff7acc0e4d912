#!/usr/bin/env bash
# ckpt_hostile.sh -- hostile weights files and checkpoints: `lathe eval`,
# `lathe train --resume` and `lathe train --weights` end in the right result
# or a clear error naming the file and tensor, never a silent wrong answer or
# a hang. Also: a finished run resumes to its test metrics, log.jsonl is cut
# back to the checkpoint's step, --restarts writes last.safetensors. $1 is the
# lathe binary. Files are crafted with python3 (standard library only).
set -u
LATHE=$(realpath "${1:?usage: ckpt_hostile.sh LATHE}")
pass=0 fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1

cat >tiny.nn <<'NN'
model tiny
input  x : f32[batch, 2]
target y : f32[batch, 1]
h = dense(x, 3, name="fc1") |> relu
pred = dense(h, 1, name="out")
output p = pred
loss = mse(pred, y)
train {
  optimizer = adam(lr=1e-2)
  epochs = 3
  batch = 8
  split = [0.6, 0.2, 0.2]
  seed = 0
}
NN
python3 - <<'PY'
import random
random.seed(1)
with open("d.csv", "w") as f:
    f.write("a,b,y\n")
    for i in range(80):
        a, b = random.uniform(-1, 1), random.uniform(-1, 1)
        f.write(f"{a:.4f},{b:.4f},{a * 0.5 - b:.4f}\n")
PY
# st.py IN OUT EDIT: rewrite a safetensors file; EDIT is python run with
# h (the header, a dict in file order), data (bytearray) and helpers; it may
# set raw (the header text) to write a header json.dumps cannot express.
cat >st.py <<'PY'
import json, struct, sys
src, dst, edit = sys.argv[1:4]
b = open(src, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
data = bytearray(b[8 + n:])
raw = None
def put(name, dtype, shape, payload):
    h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
    data.extend(payload)
def setf32(name, i, v):
    o = h[name]["data_offsets"][0] + 4 * i
    data[o:o + 4] = struct.pack("<f", v)
def seti64(name, v):
    o = h[name]["data_offsets"][0]
    data[o:o + 8] = struct.pack("<q", v)
exec(edit)
text = (raw if raw is not None else json.dumps(h)).encode()
text += b" " * (-len(text) % 8)
open(dst, "wb").write(struct.pack("<Q", len(text)) + text + bytes(data))
PY
st() { python3 st.py "$@"; }
# expect NAME EXIT-STATUS PATTERN CMD...: the command exits with the status and its stderr holds the pattern
expect() {
  local name=$1 want=$2 pat=$3
  shift 3
  "$@" >"$name.out" 2>"$name.err"
  local st=$?
  if [ "$st" -ne "$want" ]; then bad "$name: exit $st, want $want: $(head -c 300 "$name.err")"
  elif [ -n "$pat" ] && ! grep -qF -- "$pat" "$name.err"; then bad "$name: stderr lacks '$pat': $(head -c 300 "$name.err")"
  else ok; fi
}
# (a timeout: a crafted epoch looped for ever once)
T() { timeout 30 "$LATHE" train tiny.nn --data d.csv --quiet "$@"; }
E() { timeout 30 "$LATHE" eval tiny.nn --data d.csv "$@"; }

T --out run >run.out 2>&1 || bad "train: $(cat run.out)"
W=run/best.safetensors

# ---- weights files (item 8 and 10) ----
st $W dup.st 'raw = json.dumps(h)[:-1] + ", \"fc1.bias\": " + json.dumps(h["fc1.bias"]) + "}"'
expect dup 1 "'dup.st': tensor 'fc1.bias' appears twice in the header" E --weights dup.st
st $W dupfield.st 'raw = json.dumps(h).replace("\"dtype\": \"F32\", \"shape\": [3]", "\"dtype\": \"F32\", \"dtype\": \"F16\", \"shape\": [3]", 1)'
expect dupfield 1 "'dupfield.st': tensor 'fc1.bias': its entry names a field twice" E --weights dupfield.st
st $W nul.st 'raw = json.dumps(h).replace("\"fc1.bias\"", "\"fc1.bias\\u0000evil\"")'
expect nul 1 "'nul.st': tensor name 'fc1.bias\\u0000...' contains a NUL character" E --weights nul.st
st $W overlap.st 'h["out.bias"]["data_offsets"] = [h["fc1.bias"]["data_offsets"][0], h["fc1.bias"]["data_offsets"][0] + 4]'
expect overlap 1 "'overlap.st': tensors 'out.bias' and 'fc1.bias' overlap (data_offsets [" E --weights overlap.st
st $W nan.st 'setf32("fc1.weight", 4, float("nan"))'
expect nan 1 "'nan.st': tensor 'fc1.weight': element 4 is NaN; weights must be finite numbers" E --weights nan.st
st $W inf.st 'setf32("out.bias", 0, float("-inf"))'
expect inf 1 "'inf.st': tensor 'out.bias': element 0 is -inf" E --weights inf.st
st $W f64.st 'put("out.bias", "F64", [1], struct.pack("<d", 1e300))'
expect f64 1 "'f64.st': tensor 'out.bias': f64 value 1e+300 at element 0 is out of the f32 range" E --weights f64.st
st $W f64ok.st 'put("out.bias", "F64", [1], struct.pack("<d", 0.25))'
expect f64ok 0 "" E --weights f64ok.st

# ---- --resume (item 3) ----
mk() { rm -rf "$1" && cp -r run "$1"; }
mk tr && st run/last.safetensors tr/last.safetensors 'h["fc1.weight"]["shape"] = [3, 2]'
expect transposed 1 "'tr/last.safetensors': tensor 'fc1.weight': expected f32[2, 3], got f32[3, 2]" T --out tr --resume --epochs 5
mk trs && st run/last.safetensors trs/last.safetensors 'h["opt.exp_avg.fc1.weight"]["shape"] = [3, 2]'
expect transposed_state 1 "tensor 'opt.exp_avg.fc1.weight': expected f32[2, 3], got f32[3, 2]" T --out trs --resume --epochs 5
mk dt && st run/last.safetensors dt/last.safetensors 'put("out.bias", "BF16", [1], b"\x80\x3f")'
expect dtype 1 "tensor 'out.bias': expected f32[1], got bf16[1]" T --out dt --resume --epochs 5
mk ep && st run/last.safetensors ep/last.safetensors 'seti64("__meta.epoch", 2**63 - 1)'
expect epoch 1 "tensor '__meta.epoch': 9223372036854775807 is out of range" T --out ep --resume --epochs 5
mk neg && st run/last.safetensors neg/last.safetensors 'seti64("__meta.step", -1)'
expect step 1 "tensor '__meta.step': -1 is out of range" T --out neg --resume --epochs 5
mk bad && st run/last.safetensors bad/last.safetensors 'seti64("__meta.bad_epochs", 7)'
expect position 1 "'bad/last.safetensors': the checkpoint's position does not add up: step 18, epoch 3, 7 epochs" T --out bad --resume --epochs 5
mk hist && st run/last.safetensors hist/last.safetensors 'seti64("__meta.epoch", 2)'
expect history 1 "tensor '__meta.history' has 3 epochs of history, but the checkpoint is at epoch 2" T --out hist --resume --epochs 5
mk unk && st run/last.safetensors unk/last.safetensors 'put("fc9.weight", "F32", [1], struct.pack("<f", 1))'
expect unknown 1 "'unk/last.safetensors': unexpected tensor 'fc9.weight': model 'tiny' has no such parameter" T --out unk --resume --epochs 5
mk meta && st run/last.safetensors meta/last.safetensors 'put("__norm.x.mean", "F32", [2], struct.pack("<2f", 0, 0))'
expect extra_meta 0 "trained" T --out meta --resume --epochs 4
mk nanw && st run/last.safetensors nanw/last.safetensors 'setf32("opt.exp_avg_sq.out.bias", 0, float("inf"))'
expect nan_state 1 "tensor 'opt.exp_avg_sq.out.bias': element 0 is +inf" T --out nanw --resume --epochs 5

# A finished run (or one killed in its final evaluation) resumes straight to its test metrics.
mk fin
expect finished 0 "trained 18 steps (3 epochs)" T --out fin --resume
grep '^test ' run.out >want.txt
grep '^test ' finished.out >got.txt
[ -s want.txt ] && cmp -s want.txt got.txt && ok || bad "resumed finished run: $(cat got.txt) != $(cat want.txt)"

# log.jsonl is cut back to the checkpoint's step: a kill in epoch 2 (its first
# steps and a half-written line logged) then --resume logs each step once.
T --out one --epochs 1 >/dev/null 2>&1 || bad "train one"
T --out two --epochs 2 >/dev/null 2>&1 || bad "train two"
{ grep '"epoch":2' two/log.jsonl | head -3; printf '{"split":"train","epoch":2,"st'; } >>one/log.jsonl
T --out one --epochs 2 --resume >/dev/null 2>&1 || bad "resume one"
steps() { python3 -c 'import json,sys; print([(e["split"], e["step"]) for e in map(json.loads, open(sys.argv[1]))])' "$1"; }
[ "$(steps one/log.jsonl 2>&1)" = "$(steps two/log.jsonl)" ] && ok || bad "log after resume: $(steps one/log.jsonl 2>&1)"
cmp -s one/last.safetensors two/last.safetensors && ok || bad "resumed run differs from the straight one"

# --restarts writes DIR/last.safetensors: the chosen run's last checkpoint.
T --out rs --restarts 2 --epochs 2 >/dev/null 2>&1 || bad "restarts"
k=$(cmp -s rs/last.safetensors rs/restart0/last.safetensors && echo 0 || (cmp -s rs/last.safetensors rs/restart1/last.safetensors && echo 1))
[ -n "$k" ] && ok || bad "--restarts: DIR/last.safetensors missing or not a restart's last checkpoint"

# ---- train --weights (item 3) ----
# lr 1e-30 leaves the weights as they were: the test metrics are eval's of W.
E --weights $W --split test >ev.out 2>&1 || bad "eval W"
sed 's/^/test /' ev.out >want.txt
expect fromw 0 "trained" T --weights $W --epochs 1 --lr 1e-30
grep '^test ' fromw.out >got.txt
cmp -s want.txt got.txt && ok || bad "--weights: test metrics $(cat got.txt) != eval's $(cat want.txt)"
expect fromckpt 0 "trained" T --weights run/last.safetensors --epochs 1
st $W wtr.st 'h["fc1.weight"]["shape"] = [3, 2]'
expect weights_transposed 1 "'wtr.st': tensor 'fc1.weight': expected f32[2, 3], got f32[3, 2]" T --weights wtr.st
st $W wmiss.st 'del h["out.bias"]'
expect weights_missing 1 "'wmiss.st': missing tensor 'out.bias' (the model expects f32[1])" T --weights wmiss.st
expect weights_nan 1 "'nan.st': tensor 'fc1.weight': element 4 is NaN" T --weights nan.st
# f16 and bf16 weights (imported models) are converted; an i32 tensor is refused
st $W wbf16.st 'put("out.bias", "BF16", [1], b"\x80\x3f")'
expect weights_bf16 0 "trained" T --weights wbf16.st --epochs 1
st $W wi32.st 'put("out.bias", "I32", [1], b"\1\0\0\0")'
expect weights_i32 1 "'wi32.st': tensor 'out.bias': expected f32[1], got i32[1]" T --weights wi32.st
# another optimizer's state in W is ignored; an unknown weight is not
st $W wopt.st 'put("opt.momentum_buffer.fc1.weight", "F32", [1], struct.pack("<f", 1))'
expect weights_other_opt 0 "trained" T --weights wopt.st --epochs 1
st $W wunk.st 'put("fc9.weight", "F32", [1], struct.pack("<f", 1))'
expect weights_unknown 1 "'wunk.st': unexpected tensor 'fc9.weight': model 'tiny' has no such parameter" T --weights wunk.st
expect weights_resume 1 "--resume and --weights cannot be combined" T --out run --resume --weights $W
expect weights_nofile 1 "no-such.st" T --weights no-such.st

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
