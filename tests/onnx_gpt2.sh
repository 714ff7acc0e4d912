#!/bin/bash
# onnx_gpt2.sh -- issue 18's GPT-2-small check: the benchmark's shape
# (bench/gpt2_small.nn: 50257-token vocabulary, d=768, 12 heads, 12 layers,
# exact GELU, untied head; 124M parameters) built in PyTorch with random
# weights at a short context (T=16, so the check takes minutes, not tens of
# them), exported by torch.onnx.export (opset 14, dynamic batch), imported
# with `lathe import` (every block's attention as the attention layer), run
# by `lathe run` on the interpreter and the LLVM backend and compared with
# PyTorch's logits: max |diff| <= 1e-5 of max |PyTorch|. Skips loudly
# without torch or without ONNX support in this build. About 1.3 GB of
# scratch files.
. "$(dirname "$0")/lib/common.sh"
PY=/usr/bin/python3
if ! "$PY" -c "import torch, numpy" 2>/dev/null; then
  echo "SKIPPED (loudly): onnx_gpt2 needs $PY with torch and numpy (apt-get install python3-torch)"; exit 0
fi
if "$LATHE" import 2>&1 | grep -q "without ONNX"; then
  echo "SKIPPED (loudly): this lathe was built without ONNX support (./setup.sh, then configure again)"; exit 0
fi
"$PY" tests/onnx/export_models.py "$tmp" gpt2 >"$tmp/export.log" 2>&1 || { cat "$tmp/export.log"; bad "export"; finish; exit; }
if ! "$LATHE" import "$tmp/gpt2.onnx" -o "$tmp/i" >"$tmp/imp.log" 2>&1; then bad "import: $(cat "$tmp/imp.log")"; finish; exit; fi
ok
rm -f "$tmp/gpt2.onnx" # the import's safetensors hold the weights now
n=$(grep -c ' = attention(.*, 12, causal=true' "$tmp/i/gpt2.nn")
[ "$n" -eq 12 ] && ok || bad "gpt2.nn has $n attention layers, not 12"
for be in interp llvm; do
  if ! "$LATHE" run "$tmp/i/gpt2.nn" --weights "$tmp/i/gpt2.safetensors" --in x="$tmp/gpt2.in.npy" \
      --out y="$tmp/gpt2.$be.npy" --backend $be >/dev/null 2>"$tmp/run.log"; then
    bad "run $be: $(cat "$tmp/run.log")"; continue
  fi
  "$PY" - "$tmp/gpt2.$be.npy" "$tmp/gpt2.out.npy" "gpt2 $be" <<'PY' && ok || bad "gpt2 $be differs from PyTorch"
import sys, numpy as np
got, want = np.load(sys.argv[1]), np.load(sys.argv[2])
err = float(np.abs(got - want).max() / np.abs(want).max()) if got.shape == want.shape else float("inf")
print(f"{sys.argv[3]}: max |diff| / max |PyTorch| = {err:.2e}")
sys.exit(0 if err <= 1e-5 else 1)
PY
done
finish
