"""parity_seq.py IN OUT -- the PyTorch side of tests/test_seq.c's parity cases.

IN holds one case: a header line "op B T in h heads causal" and then f32
arrays (the layer's parameters in Lathe's layout, then R). The layer is
rebuilt from torch.nn modules (MultiheadAttention, RNN, LSTM, GRU) with the
weights transposed (Lathe stores [in, out]); Lathe's single rnn/lstm bias is
torch's bias_ih with bias_hh = 0. loss = sum(y * R) is differentiated and
OUT gets y then every parameter's gradient in Lathe's layout, as f32.
Exit status 77 when torch is missing."""
import sys

try:
    import numpy as np
    import torch
except Exception as e:  # noqa: BLE001 - any import failure means: skip
    print("torch unavailable: %s" % e)
    sys.exit(77)


def main():
    raw = open(sys.argv[1], "rb").read()
    head, body = raw.split(b"\n", 1)
    op, B, T, n_in, h, heads, causal = head.split()
    B, T, n_in, h, heads, causal = (int(v) for v in (B, T, n_in, h, heads, causal))
    flat = np.frombuffer(body, dtype=np.float32).astype(np.float64)
    torch.set_default_dtype(torch.float32)
    G = {"attention": 0, "rnn": 1, "lstm": 4, "gru": 3}[op.decode()]
    if G == 0:
        d = n_in
        sizes = [(B, T, d), (d, 3 * d), (3 * d,), (d, d), (d,)]
    else:
        sizes = [(B, T, n_in), (n_in, G * h), (h, G * h), (G * h,)] + ([(G * h,)] if G == 3 else [])
    arrs, at = [], 0
    for s in sizes + [None]:
        n = int(np.prod(s)) if s else flat.size - at
        arrs.append(torch.tensor(flat[at:at + n], dtype=torch.float32))
        at += n
    R = arrs.pop()
    x = arrs[0].reshape(sizes[0]).clone().requires_grad_(True)
    if G == 0:
        m = torch.nn.MultiheadAttention(d, heads, batch_first=True)
        with torch.no_grad():
            m.in_proj_weight.copy_(arrs[1].reshape(d, 3 * d).t())
            m.in_proj_bias.copy_(arrs[2])
            m.out_proj.weight.copy_(arrs[3].reshape(d, d).t())
            m.out_proj.bias.copy_(arrs[4])
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1) if causal else None
        y = m(x, x, x, attn_mask=mask, need_weights=False)[0]
        ps = [m.in_proj_weight, m.in_proj_bias, m.out_proj.weight, m.out_proj.bias]
        tr = [True, False, True, False]
    else:
        cls = {1: torch.nn.RNN, 4: torch.nn.LSTM, 3: torch.nn.GRU}[G]
        m = cls(n_in, h, batch_first=True)
        with torch.no_grad():
            m.weight_ih_l0.copy_(arrs[1].reshape(n_in, G * h).t())
            m.weight_hh_l0.copy_(arrs[2].reshape(h, G * h).t())
            m.bias_ih_l0.copy_(arrs[3])
            m.bias_hh_l0.copy_(arrs[4] if G == 3 else torch.zeros(G * h))
        y = m(x)[0]
        ps = [m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0] + ([m.bias_hh_l0] if G == 3 else [])
        tr = [True, True, False, False]
    (y * R.reshape(y.shape)).sum().backward()
    out = [y.detach().reshape(-1), x.grad.reshape(-1)]
    out += [(p.grad.t() if t else p.grad).reshape(-1) for p, t in zip(ps, tr)]
    torch.cat(out).numpy().astype(np.float32).tofile(sys.argv[2])


main()
