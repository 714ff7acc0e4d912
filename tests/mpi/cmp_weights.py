"""cmp_weights.py A.safetensors B.safetensors [TOL]: the largest absolute
difference over every tensor the two files share (f32 weights and optimizer
state; the header's metadata is ignored); exit 1 above TOL (default 1e-5)
or when the tensor names differ."""
import json, struct, sys
import numpy as np


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        body = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__" or v["dtype"] != "F32":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(body[a:b], np.float32).reshape(v["shape"])
    return out


a, b = load(sys.argv[1]), load(sys.argv[2])
tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5
if sorted(a) != sorted(b):
    print("tensor names differ:", sorted(set(a) ^ set(b)))
    sys.exit(1)
worst, where = 0.0, ""
for k in a:
    d = float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) if a[k].size else 0.0
    if d > worst or not np.isfinite(d):
        worst, where = d, k
print(f"max |diff| {worst:.3g} ({where}) over {len(a)} tensors")
sys.exit(0 if worst <= tol else 1)
