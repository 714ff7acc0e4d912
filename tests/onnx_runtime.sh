# onnx_runtime.sh -- lathe_ort (tools/ort/ort_run.c), ONNX Runtime as a peer
# (issue 18): a small PyTorch model exported by torch.onnx.export (dense +
# softmax, and an embedding that takes int64 ids) runs in ONNX Runtime and
# equals PyTorch within 1e-6; i32 ids are converted to the i64 the model
# declares; --bench prints its JSON line; a missing file, an unknown input
# and a malformed flag are errors. Without ONNX Runtime (./setup.sh installs
# the npm package onnxruntime-node) or torch it says SKIPPED loudly.
. "$(dirname "$0")/lib/common.sh"
ORT="$(dirname "$LATHE")/lathe_ort"
PY=/usr/bin/python3

"$ORT" --version >"$tmp/v" 2>&1
rc=$?
if [ $rc -eq 77 ]; then
  echo "SKIPPED: $(cat "$tmp/v")"
  exit 0
fi
[ $rc -eq 0 ] && grep -q "^onnxruntime [0-9]" "$tmp/v" && ok || bad "lathe_ort --version: $(cat "$tmp/v")"
if ! $PY -c "import torch, numpy" 2>/dev/null; then
  echo "SKIPPED: the model checks: /usr/bin/python3 has no torch (./setup.sh installs python3-torch)"
  finish
  exit $?
fi

$PY - "$tmp" <<'PY' || bad "export with torch"
import sys, numpy as np, torch, torch.nn as nn
d = sys.argv[1]
torch.manual_seed(0)
class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.fc = nn.Embedding(11, 8), nn.Linear(8, 5)
    def forward(self, x, ids):
        return torch.softmax(self.fc(x + self.emb(ids)), -1)
m = M().eval()
x, ids = torch.randn(3, 8), torch.randint(0, 11, (3,))
torch.onnx.export(m, (x, ids), d + "/m.onnx", opset_version=17, input_names=["x", "ids"], output_names=["p"])
np.save(d + "/x.npy", x.numpy())
np.save(d + "/ids32.npy", ids.numpy().astype(np.int32))
np.save(d + "/ids64.npy", ids.numpy())
with torch.no_grad():
    np.save(d + "/want.npy", m(x, ids).numpy())
PY

for ids in ids32 ids64; do
  if "$ORT" "$tmp/m.onnx" --in x="$tmp/x.npy" --in ids="$tmp/$ids.npy" --out p="$tmp/p_$ids.npy" 2>"$tmp/err"; then
    $PY -c "import numpy as np, sys; a, b = np.load('$tmp/want.npy'), np.load('$tmp/p_$ids.npy');
sys.exit(0 if a.shape == b.shape and abs(a - b).max() <= 1e-6 else 1)" && ok || bad "$ids: ONNX Runtime differs from torch"
  else
    bad "$ids: lathe_ort failed: $(cat "$tmp/err")"
  fi
done

for t in 1 2; do
  "$ORT" "$tmp/m.onnx" --in x="$tmp/x.npy" --in ids="$tmp/ids32.npy" --threads $t --bench 20 --warmup 2 \
    >"$tmp/bench" 2>"$tmp/err" || bad "--bench --threads $t: $(cat "$tmp/err")"
  $PY -c "import json; r = json.load(open('$tmp/bench')); assert r['reps'] == 20 and 0 < r['min_ms'] <= r['median_ms']" \
    && ok || bad "--bench JSON: $(cat "$tmp/bench")"
done

"$ORT" "$tmp/none.onnx" --in x="$tmp/x.npy" 2>"$tmp/err" && bad "a missing model ran"
grep -q "none.onnx" "$tmp/err" && ok || bad "missing model not named: $(cat "$tmp/err")"
"$ORT" "$tmp/m.onnx" --in y="$tmp/x.npy" 2>"$tmp/err" && bad "an unknown input ran"
grep -q "no input called y" "$tmp/err" && ok || bad "unknown input: $(cat "$tmp/err")"
"$ORT" "$tmp/m.onnx" --in x 2>"$tmp/err" && bad "a malformed --in ran"
grep -q "expected NAME=FILE" "$tmp/err" && ok || bad "malformed --in: $(cat "$tmp/err")"
"$ORT" "$tmp/m.onnx" --frob 1 2>"$tmp/err" && bad "an unknown flag ran"
grep -q "unknown flag --frob" "$tmp/err" && ok || bad "unknown flag: $(cat "$tmp/err")"
LATHE_ORT_LIB=/nonexistent "$ORT" --version >/dev/null 2>&1 # falls back to the installed copy
[ $? -eq 0 ] && ok || bad "LATHE_ORT_LIB to a missing file: no fallback"
finish
