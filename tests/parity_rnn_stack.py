"""parity_rnn_stack.py IN OUT -- the PyTorch side of tests/test_rnn_stack.c.

IN: a text header "op B T in h layers bidirectional", then one line per
Lathe parameter "name count" (graph order), a line "---", then f32 arrays:
every parameter (Lathe's layout), x [B, T, in] and R (y's shape). The layer
is torch.nn.RNN/LSTM/GRU(num_layers=layers, bidirectional=..., batch_first=True)
with the weights mapped by name (docs/language.md's table):
N.l<l>[.rev].weight_ih [in, G h] -> weight_ih_l<l>[_reverse] transposed, and
rnn/lstm's single bias -> bias_ih with bias_hh = 0. loss = sum(y * R) is
differentiated; OUT gets y, then every Lathe parameter's gradient in Lathe's
layout (same order), then dx, as f32. Exit status 77 when torch is missing."""
import sys

try:
    import numpy as np
    import torch
except Exception as e:  # noqa: BLE001 - any import failure means: skip
    print("torch unavailable: %s" % e)
    sys.exit(77)


def torch_name(lathe, layers, bidir):
    """'r.l1.rev.weight_ih' -> ('weight_ih_l1_reverse'); a plain layer's 'r.weight_ih' -> 'weight_ih_l0'."""
    parts = lathe.split(".")
    kind = parts[-1]
    rev = "rev" in parts[1:-1]
    lyr = [p for p in parts[1:-1] if p.startswith("l") and p[1:].isdigit()]
    l = int(lyr[0][1:]) if lyr else 0
    if kind == "bias":
        kind = "bias_ih"
    return "%s_l%d%s" % (kind, l, "_reverse" if rev else "")


def main():
    raw = open(sys.argv[1], "rb").read()
    text, body = raw.split(b"---\n", 1)
    lines = text.decode().splitlines()
    op, B, T, n_in, h, layers, bidir = lines[0].split()
    B, T, n_in, h, layers, bidir = (int(v) for v in (B, T, n_in, h, layers, bidir))
    params = [(ln.split()[0], int(ln.split()[1])) for ln in lines[1:]]
    flat = np.frombuffer(body, dtype=np.float32)
    torch.set_default_dtype(torch.float64)  # float64: the reference, compared against Lathe's f32
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[op]
    m = cls(n_in, h, num_layers=layers, bidirectional=bool(bidir), batch_first=True)
    at, mapped = 0, []
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for name, cnt in params:
            v = torch.tensor(flat[at:at + cnt].astype(np.float64))
            at += cnt
            tp = getattr(m, torch_name(name, layers, bidir))
            if tp.dim() == 2:
                tp.copy_(v.reshape(tp.shape[1], tp.shape[0]).t())
            else:
                tp.copy_(v)
            mapped.append(tp)
    x = torch.tensor(flat[at:at + B * T * n_in].astype(np.float64)).reshape(B, T, n_in).requires_grad_(True)
    at += B * T * n_in
    y = m(x)[0]
    R = torch.tensor(flat[at:at + y.numel()].astype(np.float64)).reshape(y.shape)
    (y * R).sum().backward()
    out = [y.detach().reshape(-1)]
    out += [(p.grad.t() if p.dim() == 2 else p.grad).reshape(-1) for p in mapped]
    out.append(x.grad.reshape(-1))
    torch.cat(out).numpy().astype(np.float32).tofile(sys.argv[2])


main()
