#!/bin/bash
# bigru.sh -- examples/bigru.nn (a 2-layer bidirectional GRU classifier,
# issue 17 item 3) on examples/bigru_data.py's task (which of two markers
# comes first, and whether they are at least 8 apart) trains with lathe
# train to at least 95% test accuracy (in about 20 s); then the trained
# weights run forward on the interpreter and on the llvm backend at -O0,
# -O2 and -O3 alike (1e-4).
# The layers against PyTorch: tests/test_rnn_stack.c.
. "$(dirname "$0")/lib/common.sh"
PY=/usr/bin/python3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
metric() { sed -n "s/^$1: //p" "$2" | tail -1; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }

"$PY" "$ROOT/examples/bigru_data.py" "$tmp" 3000 && ok || bad "bigru_data.py"
"$LATHE" train "$ROOT/examples/bigru.nn" --data x="$tmp/x.npy" --data y="$tmp/y.npy" --out "$tmp/run" --quiet \
  >"$tmp/train.out" 2>"$tmp/train.err" && ok || bad "train bigru: $(tail -3 "$tmp/train.err")"
acc=$(metric "test accuracy" "$tmp/train.out")
echo "bigru test accuracy: ${acc:-none} ($(grep -h trained "$tmp/train.out" "$tmp/train.err" | head -1))"
ge "${acc:-0}" 0.95 && ok || bad "bigru test accuracy ${acc:-none} < 0.95"

# the trained model forward on both backends
w=$(ls "$tmp"/run/*.safetensors 2>/dev/null | head -1)
[ -n "$w" ] && ok || bad "no weights in $tmp/run: $(ls "$tmp/run" 2>&1)"
"$PY" -c "import numpy as np; np.save('$tmp/x8.npy', np.load('$tmp/x.npy')[:8])" && ok || bad "x8"
for b in "interp" "llvm -O0" "llvm -O2" "llvm -O3"; do
  set -- $b
  "$LATHE" run "$ROOT/examples/bigru.nn" --weights "$w" --in x="$tmp/x8.npy" --out probs="$tmp/p_$1${2:-}.npy" \
    --backend "$@" >/dev/null 2>"$tmp/run.err" && ok || bad "run --backend $b: $(cat "$tmp/run.err")"
done
for o in -O0 -O2 -O3; do
  "$PY" -c "
import numpy as np
a, b = np.load('$tmp/p_interp.npy'), np.load('$tmp/p_llvm$o.npy')
assert a.shape == (8, 4) and np.abs(a - b).max() <= 1e-4, np.abs(a - b).max()" && ok || bad "interp and llvm $o differ"
done
finish
