#!/usr/bin/env python3
"""bench/gpu_peer.py -- PyTorch's side of tests/gpu/run.sh: the same workloads
as bench/peer.py (its model builders and training step), on the GPU, timed
with a synchronisation after every step. Prints one JSON object per line:
{"name", "median_ms", "min_ms", "steps", "mode"}; mode is eager, or compile
where torch.compile works (PyTorch 2; Debian's 1.13 has none: reported).

  gpu_peer.py NAME KIND BATCH [train] [bf16] [--json-kw '{...}']
  gpu_peer.py NAME gpt 1 generate N [bf16] --json-kw '{...}'

bf16: the step under torch.autocast(bfloat16) (f32 weights, bf16 products),
the peer of Lathe's --precision bf16.

generate N: greedy decoding of N tokens at batch 1 from a 17-token prompt
with PyTorch's own key/value cache loop (KVDecoder: per layer a cache
preallocated for T positions, each new key/value row written in place, the
query row attending over rows 0..pos), the peer of lathe_generate --backend
cuda. Prints tokens_per_s (generated tokens over the seconds generating them,
as lathe_generate counts) and median_ms per token; the next token stays on
the GPU (no host copy per token, which Lathe's host-side sampler pays).
"""
import contextlib
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

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


class KVDecoder:
    """peer.GPT decoded with a key/value cache, the layers' own weights."""

    def __init__(self, model, T):
        self.m, self.T = model, T
        blk = model.blocks[0]
        self.H, self.D = blk.attn.heads, blk.attn.qkv.in_features
        self.hd = self.D // self.H
        dev, L = model.pos.device, len(model.blocks)
        self.k = torch.zeros(L, self.H, T, self.hd, device=dev)
        self.v = torch.zeros_like(self.k)

    def block(self, i, blk, x, pos):
        """x [n, D] at positions pos..pos+n-1: its rows written into the cache."""
        n, H, hd = x.shape[0], self.H, self.hd
        q, k, v = blk.attn.qkv(blk.ln1(x)).split(self.D, dim=1)
        self.k[i, :, pos:pos + n] = k.view(n, H, hd).transpose(0, 1).to(self.k.dtype)
        self.v[i, :, pos:pos + n] = v.view(n, H, hd).transpose(0, 1).to(self.v.dtype)
        keys, vals = self.k[i, :, :pos + n], self.v[i, :, :pos + n]
        att = (q.view(n, H, hd).transpose(0, 1) @ keys.transpose(1, 2).to(q.dtype)) * blk.attn.scale
        if n > 1:  # the prompt: causal within it
            mask = torch.ones(n, pos + n, dtype=torch.bool, device=x.device).tril(pos).logical_not()
            att = att.masked_fill(mask, float("-inf"))
        y = (F.softmax(att.float(), dim=-1).to(vals.dtype) @ vals).transpose(0, 1).reshape(n, self.D)
        x = x + blk.attn.proj(y.to(x.dtype))
        return x + blk.proj(F.gelu(blk.fc(blk.ln2(x))))

    def forward(self, tokens, pos):
        x = self.m.tok(tokens) + self.m.pos[pos:pos + tokens.shape[0]]
        for i, blk in enumerate(self.m.blocks):
            x = self.block(i, blk, x, pos)
        return self.m.head(self.m.ln_f(x[-1:]))[0].argmax()


def generate(name, model, kw, ntok, amp):
    """Prefill the prompt, then time ntok greedy decode steps."""
    T = kw.get("T", 1024)
    prompt = torch.randint(0, kw.get("vocab", 256), (17,), device=model.pos.device)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    res = []
    for _ in range(2):  # the first run warms up the allocator and cuBLAS
        dec = KVDecoder(model, T)
        with torch.no_grad(), amp():
            tok = dec.forward(prompt, 0)
            pos = prompt.shape[0]
            sync()
            t0 = time.perf_counter()
            for _ in range(min(ntok, T - pos)):
                tok = dec.forward(tok.view(1), pos)
                pos += 1
            sync()
        res.append(time.perf_counter() - t0)
    n = min(ntok, T - 17)
    print(json.dumps({"name": name, "mode": "eager-kv", "median_ms": res[-1] * 1e3 / n,
                      "tokens_per_s": n / res[-1], "steps": n}))


def main():
    name, kind, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    train = "train" in sys.argv[4:]
    bf16 = "bf16" in sys.argv[4:]
    kw = json.loads(sys.argv[sys.argv.index("--json-kw") + 1]) if "--json-kw" in sys.argv else {}
    dev = torch.device(os.environ.get("GPU_PEER_DEVICE", "cuda"))  # cpu: a dry run of this script
    model, x = peer.BUILDERS[kind](batch=batch, **kw)
    model, x = model.to(dev), x.to(dev)

    def amp():
        return torch.autocast(dev.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    if "generate" in sys.argv[4:]:
        return generate(name, model.eval(), kw, int(sys.argv[sys.argv.index("generate") + 1]), amp)
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
