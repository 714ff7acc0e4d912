#!/bin/bash
# reverse.sh -- issue 17's encoder-decoder acceptance: examples/reverse.nn
# (encoder self-attention with a length mask, decoder causal self-attention
# and masked cross-attention) trained by `lathe train` on 6000 generated
# strings (examples/reverse_data.py), then scored on 1000 new strings by
# greedy decoding: `lathe run` once per position, each feeding the argmax
# so far back as the decoder input (no true prefix is given). Exact-sequence
# accuracy = the share of strings whose 8 predicted tokens (the reversed
# letters, then the padding) all equal the answer; it must be >= 0.95.
. "$(dirname "$0")/lib/common.sh"
PY=/usr/bin/python3
"$PY" -c "import numpy" 2>/dev/null || { echo "SKIPPED: reverse.sh needs $PY with numpy"; finish; exit; }

mkdir -p "$tmp/train" "$tmp/held"
"$PY" examples/reverse_data.py "$tmp/train" 6000 0 && "$PY" examples/reverse_data.py "$tmp/held" 1000 1 && ok ||
  bad "examples/reverse_data.py"
d="$tmp/train"
"$LATHE" train examples/reverse.nn --data src="$d/src.npy" --data len="$d/len.npy" --data dec="$d/dec.npy" \
  --data out="$d/out.npy" --out "$tmp/run" --quiet >"$tmp/train.txt" 2>"$tmp/err" && ok ||
  bad "train: $(cat "$tmp/err")"
"$PY" - "$LATHE" "$tmp/run/best.safetensors" "$tmp/held" <<'PY' >"$tmp/acc.txt" && ok || bad "greedy decoding: $(cat "$tmp/acc.txt")"
import subprocess, sys
import numpy as np
lathe, w, d = sys.argv[1:4]
out = np.load(f"{d}/out.npy")
n, L = out.shape
dec = np.zeros((n, L), np.int32)  # 0 starts the decoder
for t in range(L):
    np.save(f"{d}/dec_greedy.npy", dec)
    subprocess.run([lathe, "run", "examples/reverse.nn", "--weights", w, "--in", f"src={d}/src.npy",
                    "--in", f"len={d}/len.npy", "--in", f"dec={d}/dec_greedy.npy", "--out", f"logits={d}/logits.npy"],
                   check=True)
    pred = np.load(f"{d}/logits.npy").argmax(-1).astype(np.int32)
    if t + 1 < L:
        dec[:, t + 1] = pred[:, t]
exact = float((pred == out).all(axis=1).mean())
print(f"exact-sequence accuracy {exact:.4f} on {n} held-out strings (greedy decoding)")
sys.exit(0 if exact >= 0.95 else 1)
PY
cat "$tmp/acc.txt"
finish
