"""parity_torch.py DIR -- the PyTorch side of tests/test_parity.c.

For every case directory DIR/<case>/ written by the C test (manifest.txt,
params.bin, x.bin, y.bin), rebuild the model functionally with the same
initial weights, run its steps with torch.optim on the same batches and write
the final weights to DIR/<case>/torch.bin in manifest order. The models mirror
Lathe's operators: dense is x @ W + b with W [in, out]; attention is one
qkv projection [d, 3d], heads split from q, k, v, softmax(q k^T / sqrt(hd))
with a causal mask, heads concatenated, then the output projection.
Exit status 77 (with the reason on stdout) when torch is missing."""
import math
import os
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except Exception as e:  # noqa: BLE001 - any import failure means: skip
    print("torch unavailable: %s" % e)
    sys.exit(77)


def read_manifest(path):
    cfg, params = {}, []
    with open(path) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            if w[0] == "param":
                params.append((w[1], [int(d) for d in w[2:]]))
            else:
                cfg[w[0]] = w[1]
    return cfg, params


def mlp(P, x):
    h = F.relu(x @ P["fc1.weight"] + P["fc1.bias"])
    h = F.relu(h @ P["fc2.weight"] + P["fc2.bias"])
    return h @ P["out.weight"] + P["out.bias"]


def attention(P, pre, x, heads):
    B, T, d = x.shape
    hd = d // heads
    qkv = x @ P[pre + "qkv.weight"] + P[pre + "qkv.bias"]
    q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(B, T, heads, hd).transpose(1, 2) for i in range(3))
    s = q @ k.transpose(-1, -2) / math.sqrt(hd)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    s = s.masked_fill(mask, float("-inf"))
    o = torch.softmax(s, dim=-1) @ v
    o = o.transpose(1, 2).reshape(B, T, d)
    return o @ P[pre + "proj.weight"] + P[pre + "proj.bias"]


def ln(P, pre, x):
    return F.layer_norm(x, x.shape[-1:], P[pre + ".weight"], P[pre + ".bias"], eps=1e-5)


def gpt(P, tok, layers, heads):
    h = P["tok.weight"][tok] + P["pos"]
    for i in range(layers):
        pre = "h.%d." % i
        h = h + attention(P, pre + "attn.", ln(P, pre + "ln1", h), heads)
        m = F.gelu(ln(P, pre + "ln2", h) @ P[pre + "fc.weight"] + P[pre + "fc.bias"])
        h = h + (m @ P[pre + "proj.weight"] + P[pre + "proj.bias"])
    h = ln(P, "ln_f", h)
    return h @ P["head.weight"] + P["head.bias"]


def make_opt(cfg, params):
    kind, lr = cfg["opt"], float(cfg["lr"])
    l2, wd, mom = float(cfg["l2"]), float(cfg["wd"]), float(cfg["momentum"])
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=mom, nesterov=cfg["nesterov"] == "1",
                               weight_decay=l2 + wd, foreach=False)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=l2 + wd, foreach=False)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, foreach=False)
    return torch.optim.RMSprop(params, lr=lr, momentum=mom, weight_decay=l2 + wd, foreach=False)


def run_case(d):
    cfg, specs = read_manifest(os.path.join(d, "manifest.txt"))
    flat = np.fromfile(os.path.join(d, "params.bin"), dtype=np.float32)
    P, order, at = {}, [], 0
    for name, shape in specs:
        n = int(np.prod(shape)) if shape else 1
        P[name] = torch.tensor(flat[at:at + n].reshape(shape), requires_grad=True)
        order.append(name)
        at += n
    steps, batch = int(cfg["steps"]), int(cfg["batch"])
    opt = make_opt(cfg, [P[n] for n in order])
    clip = float(cfg["clip"])
    if cfg["model"] == "mlp":
        xs = torch.tensor(np.fromfile(os.path.join(d, "x.bin"), dtype=np.float32).reshape(steps, batch, -1))
        ys = torch.tensor(np.fromfile(os.path.join(d, "y.bin"), dtype=np.int32).reshape(steps, batch)).long()
    else:
        T = int(cfg["T"])
        xs = torch.tensor(np.fromfile(os.path.join(d, "x.bin"), dtype=np.int32).reshape(steps, batch, T)).long()
        ys = torch.tensor(np.fromfile(os.path.join(d, "y.bin"), dtype=np.int32).reshape(steps, batch, T)).long()
    for s in range(steps):
        opt.zero_grad()
        if cfg["model"] == "mlp":
            loss = F.cross_entropy(mlp(P, xs[s]), ys[s])
        else:
            logits = gpt(P, xs[s], int(cfg["layers"]), int(cfg["heads"]))
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys[s].reshape(-1))
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_([P[n] for n in order], clip)
        opt.step()
    out = np.concatenate([P[n].detach().numpy().reshape(-1) for n in order]).astype(np.float32)
    out.tofile(os.path.join(d, "torch.bin"))


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    root = sys.argv[1]
    for case in sorted(os.listdir(root)):
        if os.path.isdir(os.path.join(root, case)):
            run_case(os.path.join(root, case))
    return 0


if __name__ == "__main__":
    sys.exit(main())
