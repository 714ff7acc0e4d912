#!/usr/bin/python3
"""seq_cnn_data.py DIR [N] [SEED] -- data for examples/seq_cnn.nn: N noisy
sequences of 48 values (x.npy, f32[N, 1, 48]), each holding one of 4 motifs
of 6 values at a random place (y.npy, i32[N]: which motif). The motifs are
fixed shapes (a rising ramp, a falling ramp, a spike pair, a square pulse),
scaled by a random amplitude and buried in Gaussian noise, so the class is
only visible through a local pattern anywhere in the sequence: a 1-d CNN's
task."""
import sys

import numpy as np

L, M = 48, 6
d = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
rng = np.random.default_rng(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
motifs = np.array([np.linspace(-1, 1, M), np.linspace(1, -1, M), [0, 1.5, 0, 0, 1.5, 0],
                   [-1, 1, 1, 1, 1, -1]], dtype=np.float64)
y = rng.integers(0, len(motifs), size=n)
x = rng.normal(0.0, 0.35, size=(n, 1, L))
at = rng.integers(0, L - M + 1, size=n)
amp = rng.uniform(0.8, 1.6, size=n)
for i in range(n):
    x[i, 0, at[i]:at[i] + M] += amp[i] * motifs[y[i]]
np.save(f"{d}/x.npy", x.astype(np.float32))
np.save(f"{d}/y.npy", y.astype(np.int32))
