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
. "$(dirname "$0")/onnx/vs_torch.sh"
onnx_need onnx_gpt2
"$PY" tests/onnx/export_models.py "$tmp" gpt2 >"$tmp/export.log" 2>&1 || { cat "$tmp/export.log"; bad "export"; finish; exit; }
if ! "$LATHE" import "$tmp/gpt2.onnx" -o "$tmp/i" >"$tmp/imp.log" 2>&1; then bad "import: $(cat "$tmp/imp.log")"; finish; exit; fi
ok
rm -f "$tmp/gpt2.onnx" # the import's safetensors hold the weights now
n=$(grep -c ' = attention(.*, 12, causal=true' "$tmp/i/gpt2.nn")
[ "$n" -eq 12 ] && ok || bad "gpt2.nn has $n attention layers, not 12"
vs_torch "$tmp/i" gpt2
finish
