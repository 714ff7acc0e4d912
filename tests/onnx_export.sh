# onnx_export.sh -- lathe export against ONNX Runtime (issue 18): every
# example model exported (opset 17) with seeded weights whose batchnorm
# running statistics are made non-trivial, run by lathe_ort (ONNX Runtime
# through its C API, tools/ort/ort_run.c) on random inputs, equals lathe run
# within 1e-5 of the output's scale; so do a model made of every other op
# with an ONNX form (ops.nn below) and a model trained with normalised
# features (the weights carry the normalisation) at two batch sizes;
# errors: no weights, quantized weights, no -o, a write into a missing
# folder leave no file behind. Without ONNX support in the build or ONNX
# Runtime on the machine (./setup.sh installs the npm package
# onnxruntime-node) it says SKIPPED loudly.
. "$(dirname "$0")/lib/common.sh"
ORT="$(dirname "$LATHE")/lathe_ort"
PY=/usr/bin/python3

if "$LATHE" export 2>&1 | grep -q "without ONNX support"; then
  echo "SKIPPED: lathe export: this build has no ONNX support (protobuf-c, libonnx-dev: ./setup.sh)"
  exit 0
fi

# ---- errors (no ONNX Runtime needed) ----
"$LATHE" init examples/mlp.nn -o "$tmp/mlp.safetensors" --seed 1 >/dev/null 2>&1 || bad "init mlp"
"$LATHE" export examples/mlp.nn -o "$tmp/x.onnx" 2>"$tmp/err" && bad "export without weights succeeded"
grep -q "no weights" "$tmp/err" && ok || bad "no-weights message: $(cat "$tmp/err")"
"$LATHE" export examples/mlp.nn --weights "$tmp/mlp.safetensors" 2>"$tmp/err" && bad "export without -o succeeded"
grep -q "no output file" "$tmp/err" && ok || bad "no -o message: $(cat "$tmp/err")"
"$LATHE" export examples/mlp.nn --weights "$tmp/mlp.safetensors" -o "$tmp/missing/dir/m.onnx" 2>"$tmp/err" &&
  bad "export into a missing folder succeeded"
[ -s "$tmp/err" ] && [ ! -e "$tmp/missing" ] && ok || bad "missing folder: $(cat "$tmp/err")"
"$LATHE" quantize examples/mlp.nn --weights "$tmp/mlp.safetensors" --mode w8 -o "$tmp/q.safetensors" >/dev/null 2>&1
"$LATHE" export examples/mlp.nn --weights "$tmp/q.safetensors" -o "$tmp/q.onnx" 2>"$tmp/err" &&
  bad "export of quantized weights succeeded"
[ -s "$tmp/err" ] && [ ! -e "$tmp/q.onnx" ] && ok || bad "quantized weights: $(cat "$tmp/err")"

if ! "$ORT" --version >"$tmp/ortv" 2>&1; then
  echo "SKIPPED: the ONNX Runtime half: $(cat "$tmp/ortv")"
  finish
  exit $?
fi
echo "peer: $(cat "$tmp/ortv")"

# inputs NAME SEED SPEC...: SPEC = name:dtype:dims[:high] -> $tmp/NAME.SEED.<name>.npy, uniform
# integers below high (from 1 for a lengths input called len) or normal floats.
inputs() {
  local model=$1 seed=$2
  shift 2
  $PY - "$tmp/$model.$seed" "$seed" "$@" <<'PY'
import sys, numpy as np
prefix, seed = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(seed)
for spec in sys.argv[3:]:
    name, dt, dims, *hi = spec.split(":")
    shape = [int(d) for d in dims.split("x")]
    if dt == "f32":
        a = rng.standard_normal(shape).astype(np.float32)
    elif dt == "bool":  # an attention mask: the last row sees no key at all
        a = rng.random(shape) < 0.6
        a[-1] = False
    else:
        a = rng.integers(1 if name == "len" else 0, int(hi[0]), size=shape).astype(np.int32)
    np.save("%s.%s.npy" % (prefix, name), a)
PY
}

# Batchnorm's running statistics away from 0 and 1 (lathe init sets them so),
# written back as safetensors.
perturb() {
  $PY - "$1" <<'PY'
import json, struct, sys, numpy as np
path = sys.argv[1]
buf = open(path, "rb").read()
n = struct.unpack("<Q", buf[:8])[0]
hdr = json.loads(buf[8:8 + n])
data = bytearray(buf[8 + n:])
rng = np.random.default_rng(7)
for k, v in hdr.items():
    if k == "__metadata__" or v["dtype"] != "F32":
        continue
    a, b = v["data_offsets"]
    x = np.frombuffer(bytes(data[a:b]), dtype=np.float32)
    if k.endswith("running_var"):
        x = rng.uniform(0.5, 2.0, x.shape).astype(np.float32)
    elif k.endswith("running_mean"):
        x = rng.normal(0.0, 0.5, x.shape).astype(np.float32)
    data[a:b] = x.tobytes()
open(path, "wb").write(buf[:8 + n] + bytes(data))
PY
}

# same A B: max |a - b| within 1e-5 of max(1, max |a|)
same() {
  $PY - "$1" "$2" <<'PY'
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
if a.shape != b.shape:
    sys.exit("shapes %s and %s" % (a.shape, b.shape))
err = float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
scale = max(1.0, float(np.max(np.abs(a))) if a.size else 0.0)
print("max |diff| %.3g (scale %.3g)" % (err, scale))
sys.exit(0 if err <= 1e-5 * scale else 1)
PY
}

# check MODEL OUTPUT BATCH SEED WEIGHTS SPEC...: export at BATCH, run both, compare
check() {
  local model=$1 out=$2 batch=$3 seed=$4 w=$5
  shift 5
  local base
  base=$(basename "$model" .nn)
  inputs "$base" "$seed" "$@"
  local ins=() ort_ins=() spec
  for spec in "$@"; do
    local name=${spec%%:*}
    ins+=(--in "$name=$tmp/$base.$seed.$name.npy")
    ort_ins+=(--in "$name=$tmp/$base.$seed.$name.npy")
  done
  if ! "$LATHE" export "$model" --weights "$w" --bind batch="$batch" -o "$tmp/$base.onnx" 2>"$tmp/err"; then
    bad "$base: export: $(cat "$tmp/err")"
    return
  fi
  "$LATHE" run "$model" --weights "$w" "${ins[@]}" --out "$out=$tmp/$base.lathe.npy" >/dev/null 2>"$tmp/err" ||
    { bad "$base: lathe run: $(cat "$tmp/err")"; return; }
  "$ORT" "$tmp/$base.onnx" "${ort_ins[@]}" --out "$out=$tmp/$base.ort.npy" 2>"$tmp/err" ||
    { bad "$base: onnxruntime: $(cat "$tmp/err")"; return; }
  local r
  if r=$(same "$tmp/$base.lathe.npy" "$tmp/$base.ort.npy" 2>&1); then
    ok
    echo "$base (batch $batch): ONNX Runtime equals lathe run: $r"
  else
    bad "$base (batch $batch): ONNX Runtime differs from lathe run: $r"
  fi
}

for m in mlp cnn cnn_bn gpt lstm reverse seq_cnn; do
  "$LATHE" init "examples/$m.nn" -o "$tmp/$m.safetensors" --seed 3 >/dev/null 2>&1 || bad "init $m"
done
perturb "$tmp/cnn_bn.safetensors"
check examples/mlp.nn probs 3 1 "$tmp/mlp.safetensors" x:f32:3x64
check examples/cnn.nn probs 2 1 "$tmp/cnn.safetensors" x:f32:2x1x8x8
check examples/cnn_bn.nn probs 4 1 "$tmp/cnn_bn.safetensors" x:f32:4x1x8x8
check examples/gpt.nn logits 2 1 "$tmp/gpt.safetensors" tokens:i32:2x64:96
check examples/lstm.nn logits 2 1 "$tmp/lstm.safetensors" tokens:i32:2x32:96
check examples/reverse.nn logits 3 1 "$tmp/reverse.safetensors" src:i32:3x8:12 len:i32:3:9 dec:i32:3x8:12
check examples/seq_cnn.nn probs 2 1 "$tmp/seq_cnn.safetensors" x:f32:2x1x48

# Every other op with an ONNX form, in one model: rmsnorm, attention with rotary embeddings, grouped
# key/value heads and a bool mask (one query row sees no key), attention with an inner width (2 heads of
# 6) below the model's, rnn, gru, groupnorm, the elementwise
# maps, comparisons, where, cumsum, reductions, argmax, one_hot, gather, slice, concat, pools, upsample.
cat >"$tmp/ops.nn" <<'NN'
model ops
input x : f32[batch, 8, 16]
input ids : i32[batch, 8]
input keep : bool[batch, 8]
e = embedding(ids, 10, 16, name="emb") + x
a = attention(rmsnorm(e, name="rms"), 4, rope=true, kv_heads=2, mask=keep, name="att")
h = e + a + attention(e, 2, causal=true, head_dim=6, name="narrow")
r = rnn(h, 12, name="rnn")
g = gru(r, 12, name="gru")
c = transpose(g, [0, 2, 1])
c = groupnorm(c, 3, name="gn") |> leaky_relu(0.1)
c = maxpool1d(c, 2)
u = upsample(c, 2)
s = gelu(u, approx="tanh") + swish(u) * clamp(u, min=-0.5, max=0.5) + pow(abs(u) + 1, 1.5)
s = s + exp(neg(sqrt(abs(u)))) + log(abs(u) + 1)
t = where(less(s, 0.2), s, cumsum(s, 2))
t = where(not_equal(t, 0.0), t, 1.0)
m = mean(t, 2) + max(t, 2) - min(t, 2) + sum(t, 2)
z = concat([m, slice(m, 1, 0, 4)], 1)
o = log_softmax(dense(z, 5, name="out"))
output o
output am = argmax(o, 1)
output oh = one_hot(ids, 10) * gather(x, 2, argmax(x, 2, keepdims=true))
NN
"$LATHE" init "$tmp/ops.nn" -o "$tmp/ops.safetensors" --seed 2 >/dev/null 2>&1 || bad "init ops"
for o in o am oh; do
  check "$tmp/ops.nn" $o 2 4 "$tmp/ops.safetensors" x:f32:2x8x16 ids:i32:2x8:10 keep:bool:2x8
done

# A symbolic batch: exported without --bind, the file keeps 'batch' as a
# dim_param, and ONNX Runtime runs the one file at two batch sizes, each equal
# to lathe run at that size. dyn MODEL OUTPUT WEIGHTS SPEC... (B in a SPEC's
# dims is the batch).
dyn() {
  local model=$1 out=$2 w=$3 base b seed=11
  shift 3
  base=$(basename "$model" .nn)
  if ! "$LATHE" export "$model" --weights "$w" -o "$tmp/$base.dyn.onnx" 2>"$tmp/err"; then
    bad "$base: symbolic export: $(cat "$tmp/err")"
    return
  fi
  grep -q "'batch' symbolic" "$tmp/err" && ok || bad "$base: the batch did not stay symbolic: $(cat "$tmp/err")"
  for b in 1 5; do
    local specs=() ins=() spec
    for spec in "$@"; do specs+=("${spec//B/$b}"); done
    inputs "$base" "$seed" "${specs[@]}"
    for spec in "$@"; do ins+=(--in "${spec%%:*}=$tmp/$base.$seed.${spec%%:*}.npy"); done
    "$LATHE" run "$model" --weights "$w" "${ins[@]}" --out "$out=$tmp/$base.lathe.npy" >/dev/null 2>"$tmp/err" ||
      { bad "$base: lathe run at batch $b: $(cat "$tmp/err")"; continue; }
    "$ORT" "$tmp/$base.dyn.onnx" "${ins[@]}" --out "$out=$tmp/$base.ort.npy" 2>"$tmp/err" ||
      { bad "$base: onnxruntime at batch $b: $(cat "$tmp/err")"; continue; }
    local r
    if r=$(same "$tmp/$base.lathe.npy" "$tmp/$base.ort.npy" 2>&1); then
      ok
      echo "$base (symbolic batch, run at $b): ONNX Runtime equals lathe run: $r"
    else
      bad "$base (symbolic batch, run at $b): ONNX Runtime differs from lathe run: $r"
    fi
  done
}
# an output that is a multiple of the batch cannot be a dim_param: a clear error, no file
printf 'input x : f32[batch, 4]\noutput y = reshape(dense(x, 3, name="d"), [-1])\n' >"$tmp/flat.nn"
"$LATHE" init "$tmp/flat.nn" -o "$tmp/flat.safetensors" >/dev/null 2>&1 || bad "init flat"
"$LATHE" export "$tmp/flat.nn" --weights "$tmp/flat.safetensors" -o "$tmp/flat.onnx" 2>"$tmp/err" &&
  bad "symbolic export of a batch multiple succeeded"
grep -q "cannot keep 'batch' symbolic: dimension 0 of 'y'.*--bind batch=N" "$tmp/err" && [ ! -e "$tmp/flat.onnx" ] &&
  ok || bad "batch multiple: $(cat "$tmp/err")"
"$LATHE" export "$tmp/flat.nn" --weights "$tmp/flat.safetensors" --bind batch=2 -o "$tmp/flat.onnx" 2>"$tmp/err" &&
  ok || bad "flat with --bind: $(cat "$tmp/err")"
dyn examples/mlp.nn probs "$tmp/mlp.safetensors" x:f32:Bx64
dyn examples/cnn.nn probs "$tmp/cnn.safetensors" x:f32:Bx1x8x8
dyn examples/gpt.nn logits "$tmp/gpt.safetensors" tokens:i32:Bx64:96
dyn examples/lstm.nn logits "$tmp/lstm.safetensors" tokens:i32:Bx32:96
dyn examples/reverse.nn logits "$tmp/reverse.safetensors" src:i32:Bx8:12 len:i32:B:9 dec:i32:Bx8:12
dyn examples/seq_cnn.nn probs "$tmp/seq_cnn.safetensors" x:f32:Bx1x48
"$LATHE" init examples/bigru.nn -o "$tmp/bigru.safetensors" --seed 3 >/dev/null 2>&1 || bad "init bigru"
dyn examples/bigru.nn probs "$tmp/bigru.safetensors" x:f32:Bx24x6
dyn "$tmp/ops.nn" o "$tmp/ops.safetensors" x:f32:Bx8x16 ids:i32:Bx8:10 keep:bool:Bx8

# Trained weights that carry the features' normalisation, at two batch sizes.
small_task "$tmp"
if "$LATHE" train "$tmp/m.nn" --data "$tmp/d.csv" --normalize standard --quiet --out "$tmp/tr" >/dev/null 2>"$tmp/err"; then
  check "$tmp/m.nn" probs 5 2 "$tmp/tr/best.safetensors" x:f32:5x4
  check "$tmp/m.nn" probs 1 3 "$tmp/tr/best.safetensors" x:f32:1x4
else
  bad "train the small task: $(cat "$tmp/err")"
fi
finish
