#!/usr/bin/python3
"""reverse_data.py DIR [N] [SEED] -- data for examples/reverse.nn: N strings
of 4 to 8 letters (tokens 2..11) padded with 1 to 8 tokens, as src.npy,
len.npy, dec.npy (0, then out shifted right) and out.npy (the reversed
letters, then padding), i32."""
import sys

import numpy as np

L, PAD, BOS = 8, 1, 0
d = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 6000
rng = np.random.default_rng(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
lens = rng.integers(4, L + 1, size=n)
src = np.full((n, L), PAD, np.int32)
out = np.full((n, L), PAD, np.int32)
for i, k in enumerate(lens):
    s = rng.integers(2, 12, size=k)
    src[i, :k], out[i, :k] = s, s[::-1]
dec = np.concatenate([np.full((n, 1), BOS, np.int32), out[:, :-1]], axis=1)
for name, a in (("src", src), ("len", lens.astype(np.int32)), ("dec", dec), ("out", out)):
    np.save(f"{d}/{name}.npy", a)
