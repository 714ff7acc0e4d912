"""parity_mha.py IN OUT -- the PyTorch side of tests/test_mha.c's parity
cases, in plain torch ops and float64 (torch 1.13 has no
scaled_dot_product_attention).

IN: a header line "B Tq Tk d dc H K causal rope mkind self hd" (hd: the
head width, heads x hd the inner width; d / H when left out), then f32
arrays: x, wq, bq, c (absent when self: the context is x), wkv, bkv, wp, bp
(Lathe's [in, out] layout), the mask as f32 values (absent when mkind is 0;
1: lengths [B], 2: bool [B, Tk], 3: bool [B, Tq, Tk]), then R. loss =
sum(y * R) is differentiated; OUT gets y, then the gradient of every
parameter (x, wq, bq, c, wkv, bkv, wp, bp) as f32. Exit status 77 when torch
is missing."""
import sys

try:
    import numpy as np
    import torch
except Exception as e:  # noqa: BLE001 - any import failure means: skip
    print("torch unavailable: %s" % e)
    sys.exit(77)


def rope(t, hd):
    """GPT-NeoX / LLaMA rotary embedding of t [B, heads, T, hd]: pairs (e, e + hd/2)."""
    T = t.shape[2]
    inv = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
    x1, x2 = t[..., : hd // 2], t[..., hd // 2:]
    return t * cos + torch.cat([-x2, x1], -1) * sin


def main():
    raw = open(sys.argv[1], "rb").read()
    head, body = raw.split(b"\n", 1)
    vals = [int(v) for v in head.split()]
    B, Tq, Tk, d, dc, H, K, causal, use_rope, mkind, self_ = vals[:11]
    hd = vals[11] if len(vals) > 11 and vals[11] else d // H
    e, dk = H * hd, K * hd
    flat = np.frombuffer(body, dtype=np.float32).astype(np.float64)
    names = ["x", "wq", "bq"] + ([] if self_ else ["c"]) + ["wkv", "bkv", "wp", "bp"]
    sizes = {"x": (B, Tq, d), "wq": (d, e), "bq": (e,), "c": (B, Tk, dc), "wkv": (dc, 2 * dk),
             "bkv": (2 * dk,), "wp": (e, d), "bp": (d,)}
    mshape = {1: (B,), 2: (B, Tk), 3: (B, Tq, Tk)}.get(mkind)
    at, P = 0, {}
    for nm in names + (["mask"] if mshape else []):
        s = sizes.get(nm, mshape)
        n = int(np.prod(s))
        P[nm] = torch.tensor(flat[at:at + n].reshape(s), dtype=torch.float64, requires_grad=nm != "mask")
        at += n
    R = torch.tensor(flat[at:], dtype=torch.float64)
    x = P["x"]
    c = x if self_ else P["c"]
    q = (x @ P["wq"] + P["bq"]).reshape(B, Tq, H, hd).transpose(1, 2)
    kv = c @ P["wkv"] + P["bkv"]
    k = kv[..., :dk].reshape(B, Tk, K, hd).transpose(1, 2)
    v = kv[..., dk:].reshape(B, Tk, K, hd).transpose(1, 2)
    if use_rope:
        q, k = rope(q, hd), rope(k, hd)
    k, v = k.repeat_interleave(H // K, dim=1), v.repeat_interleave(H // K, dim=1)
    s = q @ k.transpose(-1, -2) / hd ** 0.5
    allowed = torch.ones(B, 1, Tq, Tk, dtype=torch.bool)
    if causal:
        allowed = allowed & torch.ones(Tq, Tk, dtype=torch.bool).tril()
    if mkind == 1:
        allowed = allowed & (torch.arange(Tk)[None, :] < P["mask"][:, None]).reshape(B, 1, 1, Tk)
    elif mkind == 2:
        allowed = allowed & (P["mask"] != 0).reshape(B, 1, 1, Tk)
    elif mkind == 3:
        allowed = allowed & (P["mask"] != 0).reshape(B, 1, Tq, Tk)
    p = torch.softmax(s.masked_fill(~allowed, float("-inf")), -1)
    ctx = (p @ v).transpose(1, 2).reshape(B, Tq, e)
    y = ctx @ P["wp"] + P["bp"]
    (y * R.reshape(y.shape)).sum().backward()
    out = [y.detach().reshape(-1)] + [P[nm].grad.reshape(-1) for nm in names]
    torch.cat(out).numpy().astype(np.float32).tofile(sys.argv[2])


main()
