#!/usr/bin/env python3
"""bench/gpu_peer.py -- PyTorch's side of tests/gpu/run.sh: the same workloads
as bench/peer.py (its model builders and training step), on the GPU, timed
with a synchronisation after every step. Prints one JSON object per line:
{"name", "median_ms", "min_ms", "steps", "mode"}; mode is eager, or compile
where torch.compile works (PyTorch 2; Debian's 1.13 has none: reported).

  gpu_peer.py NAME KIND BATCH [train] [bf16] [--json-kw '{...}']

bf16: the step under torch.autocast(bfloat16) (f32 weights, bf16 products),
the peer of Lathe's --precision bf16.
"""
import contextlib
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import peer  # noqa: E402  (the CPU benchmark's models, one definition)


def timed(fn, reps, warmup):
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times), len(times)


def main():
    name, kind, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    train = "train" in sys.argv[4:]
    bf16 = "bf16" in sys.argv[4:]
    kw = json.loads(sys.argv[sys.argv.index("--json-kw") + 1]) if "--json-kw" in sys.argv else {}
    dev = torch.device(os.environ.get("GPU_PEER_DEVICE", "cuda"))  # cpu: a dry run of this script
    model, x = peer.BUILDERS[kind](batch=batch, **kw)
    model, x = model.to(dev), x.to(dev)
    modes = [("eager", model)]
    if hasattr(torch, "compile"):
        try:
            modes.append(("compile", torch.compile(model)))
        except Exception as e:  # report, do not hide
            print(json.dumps({"name": name, "mode": "compile", "error": str(e)[:200]}))
    for mode, m in modes:
        try:
            if train:
                fn = peer.train_step(m, x, dict(name="adam", lr=1e-3), 0, True)
            else:
                def fn():
                    with torch.no_grad():
                        return m(x)
            def amp():
                return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

            def step():
                with amp():
                    return fn(None) if train else fn()
            reps, warm = (10, 3) if kw.get("T", 0) >= 1024 else (50, 10)
            med, mn, n = timed(step, reps, warm)
            print(json.dumps({"name": name, "mode": mode, "median_ms": med, "min_ms": mn, "steps": n}))
        except Exception as e:
            print(json.dumps({"name": name, "mode": mode, "error": str(e)[:200]}))


if __name__ == "__main__":
    main()
