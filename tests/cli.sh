#!/usr/bin/env bash
# cli.sh -- the `lathe` command end to end: help texts, check/dot/init/run on
# the examples, a forward pass compared with NumPy computing the same model
# from the same safetensors file, and flag errors. $1 is the lathe binary.
set -u
LATHE=${1:?usage: cli.sh LATHE}
PY=/usr/bin/python3
pass=0 fail=0
ok()   { pass=$((pass + 1)); }
bad()  { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect_status() { # want cmd...
  local want=$1; shift
  "$@" >/tmp/lathe_cli_out.$$ 2>/tmp/lathe_cli_err.$$
  local got=$?
  if [ "$got" -eq "$want" ]; then ok; else bad "$* -> exit $got, want $want: $(head -3 /tmp/lathe_cli_err.$$)"; fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" /tmp/lathe_cli_out.$$ /tmp/lathe_cli_err.$$' EXIT

# --version names the LLVM the binary was built with, the one it loads.
v=$("$LATHE" --version)
major=$(printf '%s\n' "$v" | sed -n 's/^lathe [0-9.]* (LLVM \([0-9]*\)\.[0-9.]*)$/\1/p')
if [ -z "$major" ]; then bad "--version: '$v' does not name the LLVM version"
elif ldd "$LATHE" | grep -Eq "libLLVM(-$major\.so|\.so\.$major[.])"; then ok
else bad "--version says LLVM $major, the binary loads $(ldd "$LATHE" | grep -o 'libLLVM[^ ]*')"; fi

# --version names the quantized products' kernels and AMX's state: the tile
# emulator when asked (LATHE_AMX_EMULATE=1), nothing AMX with -amx.
printf '%s\n' "$v" | grep -Eq '^cpu kernels: int8 [a-z0-9-]+, int8-dynamic [a-z0-9-]+, bf16 [a-z0-9 -]+; amx: .+' && ok \
  || bad "--version lacks the cpu kernels line: '$v'"
v=$(LATHE_AMX_EMULATE=1 "$LATHE" --version | grep '^cpu kernels')
[ "$v" = "cpu kernels: int8 amx-int8, int8-dynamic amx-int8, bf16 amx-bf16; amx: emulated (LATHE_AMX_EMULATE=1: the tile emulator, for tests)" ] \
  && ok || bad "--version with LATHE_AMX_EMULATE=1: '$v'"
v=$(LATHE_AMX_EMULATE=1 LATHE_CPU_FEATURES=-amx "$LATHE" --version | grep '^cpu kernels')
case "$v" in *amx-*) bad "--version with -amx: '$v'" ;; *"amx: off (LATHE_CPU_FEATURES)") ok ;; *) bad "--version with -amx: '$v'" ;; esac

# Help: every command documents its flags.
expect_status 0 "$LATHE" --help
for c in check dot run init; do
  expect_status 0 "$LATHE" "$c" --help
  grep -q "usage: lathe $c" /tmp/lathe_cli_out.$$ && ok || bad "lathe $c --help lacks usage"
done
expect_status 1 "$LATHE"
expect_status 1 "$LATHE" frobnicate
grep -q "unknown command 'frobnicate'" /tmp/lathe_cli_err.$$ && ok || bad "unknown command message"
expect_status 1 "$LATHE" check
expect_status 1 "$LATHE" check examples/mlp.nn --bogus
grep -q "unknown flag '--bogus'" /tmp/lathe_cli_err.$$ && ok || bad "unknown flag message"
expect_status 1 "$LATHE" check examples/mlp.nn --bind batch=zero
expect_status 1 "$LATHE" check examples/mlp.nn --bind nosuch=3
expect_status 1 "$LATHE" check no/such/model.nn
grep -q "no/such/model.nn" /tmp/lathe_cli_err.$$ && ok || bad "missing file not named"

# Every example checks; the summary shows parameters, FLOPs and memory.
for m in examples/*.nn; do
  expect_status 0 "$LATHE" check "$m" --bind batch=4
  grep -qi "param" /tmp/lathe_cli_out.$$ && grep -qi "flop" /tmp/lathe_cli_out.$$ && ok || bad "check $m summary"
  expect_status 0 "$LATHE" dot "$m"
  grep -q "^digraph" /tmp/lathe_cli_out.$$ && ok || bad "dot $m"
done
expect_status 0 "$LATHE" check examples/mlp.nn --ir

# init writes weights; run needs them.
expect_status 0 "$LATHE" init examples/mlp.nn -o "$tmp/w.safetensors" --seed 3
expect_status 1 "$LATHE" init examples/mlp.nn
if [ ! -x "$PY" ] || ! "$PY" -c "import numpy" 2>/dev/null; then
  echo "SKIPPED (loudly): the NumPy comparison needs $PY with numpy (apt-get install python3-numpy)" >&2
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]; exit
fi

"$PY" - "$tmp" <<'PY'
import sys, numpy as np
rng = np.random.default_rng(0)
np.save(sys.argv[1] + "/x.npy", rng.standard_normal((5, 64)).astype(np.float32))
np.save(sys.argv[1] + "/y.npy", np.array([0, 1, 2, 3, 4], dtype=np.int64))
np.save(sys.argv[1] + "/bad.npy", rng.standard_normal((5, 63)).astype(np.float32))
PY
expect_status 1 "$LATHE" run examples/mlp.nn --in x="$tmp/x.npy"
grep -q "give --weights" /tmp/lathe_cli_err.$$ && ok || bad "run without weights message"
expect_status 1 "$LATHE" run examples/mlp.nn --weights "$tmp/w.safetensors" --in x="$tmp/bad.npy"
grep -q "input 'x': dimension 1 must be 64, got 63" /tmp/lathe_cli_err.$$ && ok || bad "bad input shape message"
expect_status 0 "$LATHE" run examples/mlp.nn --weights "$tmp/w.safetensors" --in x="$tmp/x.npy" \
  --in y="$tmp/y.npy" --out probs="$tmp/probs.npy" --out loss="$tmp/loss.npy"
expect_status 0 "$LATHE" run examples/mlp.nn --weights "$tmp/w.safetensors" --in x="$tmp/x.npy" \
  --in y="$tmp/y.npy" --out probs="$tmp/probs_interp.npy" --backend interp
expect_status 1 "$LATHE" run examples/mlp.nn --weights "$tmp/w.safetensors" --in x="$tmp/x.npy" --backend llvm --f64
expect_status 0 "$LATHE" run examples/mlp.nn --weights "$tmp/w.safetensors" --in x="$tmp/x.npy" --f64 \
  --out probs="$tmp/probs64.npy"
expect_status 0 "$LATHE" run examples/mlp.nn --weights "$tmp/w.safetensors" --in x="$tmp/x.npy"
grep -q "probs: f32\[5, 10\]" /tmp/lathe_cli_out.$$ && ok || bad "printed output header"

# NumPy computes the same forward pass from the same weight file.
"$PY" - "$tmp" <<'PY' && ok || bad "lathe run differs from NumPy"
import sys, json, struct, numpy as np
d = sys.argv[1]
raw = open(d + "/w.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
W = {k: np.frombuffer(raw[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]], np.float32).reshape(v["shape"])
     for k, v in hdr.items() if k != "__metadata__"}
x = np.load(d + "/x.npy").astype(np.float64)
h = np.maximum(x @ W["fc1.weight"] + W["fc1.bias"], 0)
h = np.maximum(h @ W["fc2.weight"] + W["fc2.bias"], 0)
z = h @ W["out.weight"] + W["out.bias"]
p = np.exp(z - z.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
y = np.load(d + "/y.npy")
logp = np.log(p)
loss = -logp[np.arange(5), y].mean()
got = np.load(d + "/probs.npy"); gi = np.load(d + "/probs_interp.npy"); got64 = np.load(d + "/probs64.npy"); gl = np.load(d + "/loss.npy")
e = np.abs(got - p).max() / np.abs(p).max()
print(f"max relative error vs NumPy: f32 {e:.2e}, f64 {np.abs(got64 - p).max():.2e}, loss {abs(gl - loss):.2e}")
assert np.abs(gi - p).max() / np.abs(p).max() < 1e-5
assert got.shape == (5, 10) and e < 1e-5 and abs(float(gl) - loss) < 1e-5
assert np.abs(got64 - p).max() < 1e-6
PY

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
