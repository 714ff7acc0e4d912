#!/bin/bash
# onnx_models.sh -- models exported from PyTorch (tests/onnx/export_models.py:
# the digits MLP, a CNN, a 2-layer LSTM, a bidirectional LSTM, a 2-layer
# bidirectional GRU, a GPT of the char-GPT's shape at opsets 14 and 17, a
# one-block encoder without a mask, a one-block GPT whose attention scale
# is not 1/sqrt(dk), a GPT with separate q/k/v projections, an encoder with a
# key-padding mask input, a decoder layer with cross-attention over a masked
# memory, reverse-direction LSTM and GRU nodes, recurrences from given
# initial states, all with a dynamic batch) imported with `lathe import`,
# run by `lathe run` on the interpreter and the LLVM backend and compared with
# PyTorch's outputs (max |diff| <= 1e-5 of max |PyTorch|). The GPTs' and the
# encoder's attention subgraphs must import as the language's attention layer
# (the fused kernels; mask= and context= for the padding mask and the
# cross-attention), the odd-scale one as primitive ops, the bidirectional
# recurrences as bidirectional=true layers, the reverse ones as the fused
# layer between time flips, those with initial states step by step. Then the imported digits MLP
# (examples/mlp.nn's layers) with a train block appended trains with `lathe
# train` to exactly the hand-written examples/mlp.nn's test accuracy. Skips
# loudly without torch or without ONNX support in this build. GPT-2-small:
# tests/onnx_gpt2.sh.
. "$(dirname "$0")/lib/common.sh"
. "$(dirname "$0")/onnx/vs_torch.sh"
DIGITS=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
onnx_need onnx_models
"$PY" tests/onnx/export_models.py "$tmp" >"$tmp/export.log" 2>&1 || { cat "$tmp/export.log"; bad "export"; }
# layer NN PATTERN COUNT: the imported .nn has COUNT lines matching PATTERN
layer() {
  local n
  n=$(grep -c -- "$2" "$1")
  [ "$n" -eq "$3" ] && ok || bad "$(basename "$1") has $n lines matching '$2', not $3"
}
for m in mlp cnn lstm2 bilstm bigru gpt gpt17 enc oddscale sepgpt padenc cross revlstm revgru initstate; do
  if ! "$LATHE" import "$tmp/$m.onnx" -o "$tmp/i" >"$tmp/imp.log" 2>&1; then bad "import $m: $(cat "$tmp/imp.log")"; continue; fi
  ok
  case $m in
    gpt|gpt17) layer "$tmp/i/$m.nn" ' = attention(.*, 4, causal=true' 4; layer "$tmp/i/$m.nn" 'softmax(' 0 ;;
    enc) layer "$tmp/i/$m.nn" ' = attention(.*, 4, causal=false' 1 ;;
    oddscale) layer "$tmp/i/$m.nn" ' = attention(' 0; layer "$tmp/i/$m.nn" 'softmax(' 1 ;;
    bilstm) layer "$tmp/i/$m.nn" ' = lstm(.*bidirectional=true' 1 ;;
    bigru) layer "$tmp/i/$m.nn" ' = gru(.*bidirectional=true' 2 ;;
    sepgpt) layer "$tmp/i/$m.nn" ' = attention(.*, 4, causal=true, name=' 2; layer "$tmp/i/$m.nn" 'softmax(' 0 ;;
    padenc) layer "$tmp/i/$m.nn" ' = attention(.*, 4, causal=false, mask=' 1; layer "$tmp/i/$m.nn" 'softmax(' 0 ;;
    cross) layer "$tmp/i/$m.nn" ' = attention(.*, 4, causal=false, mask=.*, context=mem' 1
      layer "$tmp/i/$m.nn" ' = attention(.*, 4, causal=true, name=' 1; layer "$tmp/i/$m.nn" 'softmax(' 0 ;;
    revlstm) layer "$tmp/i/$m.nn" ' = lstm(' 1 ;;
    revgru) layer "$tmp/i/$m.nn" ' = gru(' 1 ;;
    initstate) layer "$tmp/i/$m.nn" ' = lstm(\| = gru(' 0 ;;
  esac
  vs_torch "$tmp/i" "$m"
done
# refused with the node, the op, the opset and what: an LSTM whose sequence_lens is a run-time input
if "$LATHE" import "$tmp/seqlens.onnx" -o "$tmp/i" >"$tmp/imp.log" 2>&1; then bad "import seqlens succeeded"
else grep -q "(LSTM, opset 14): unsupported: input 4 (sequence_lens) computed at run time" "$tmp/imp.log" && ok ||
  bad "seqlens: $(cat "$tmp/imp.log")"; fi
# the imported MLP trains like the hand-written one (same layers and names, so
# the same seeded initialisation; same train block): the same accuracy
if [ -f "$tmp/i/mlp.nn" ] && [ -f "$DIGITS" ]; then
  { cat "$tmp/i/mlp.nn"; echo "target t : i32[batch]"; echo "loss = cross_entropy(y, t)"
    sed -n '/^train {/,/^}/p' examples/mlp.nn; } >"$tmp/mlp_train.nn"
  a=$("$LATHE" train "$tmp/mlp_train.nn" --data "$DIGITS" 2>/dev/null | sed -n 's/^test accuracy: //p')
  b=$("$LATHE" train examples/mlp.nn --data "$DIGITS" 2>/dev/null | sed -n 's/^test accuracy: //p')
  echo "test accuracy: imported MLP $a, examples/mlp.nn $b"
  [ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "imported MLP trains to $a, hand-written to $b"
fi
finish
