#!/usr/bin/python3
"""bigru_data.py DIR [N] [SEED] -- data for examples/bigru.nn: N sequences of
24 one-hot symbols (x.npy, f32[N, 24, 6]). Two markers, A (symbol 0) and B
(symbol 1), occur once each at random places; the other positions are
symbols 2..5 at random. The class (y.npy, i32[N]) is 2 * (A comes before B)
+ (the markers are at least 8 positions apart): it depends on the order and
the distance of two events anywhere in the sequence, which a recurrence
reading both ways sees and a bag of symbols does not."""
import sys

import numpy as np

T, S, GAP = 24, 6, 8
d = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
rng = np.random.default_rng(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
sym = rng.integers(2, S, size=(n, T))
y = np.zeros(n, dtype=np.int32)
for i in range(n):
    a, b = rng.choice(T, size=2, replace=False)
    sym[i, a], sym[i, b] = 0, 1
    y[i] = 2 * int(a < b) + int(abs(int(a) - int(b)) >= GAP)
x = np.eye(S, dtype=np.float32)[sym]
np.save(f"{d}/x.npy", x)
np.save(f"{d}/y.npy", y)
