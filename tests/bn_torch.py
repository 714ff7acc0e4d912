"""bn_torch.py DIR STEPS B -- the PyTorch side of tests/test_batchnorm.c.

Rebuilds the test's model with torch.nn modules (float64) from Lathe's initial
weights (DIR/manifest.txt, DIR/init.bin; dense weights are [in, out] in Lathe,
transposed here), trains it in training mode with torch.optim.SGD on the same
batches (DIR/batches.bin, DIR/labels.bin) and compares every step's loss and
the final weights and running statistics with Lathe's (DIR/interp.bin,
DIR/llvm.bin). Exit 0 when both agree, 1 when not, 77 without torch."""
import os
import sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except Exception as e:  # noqa: BLE001 - any import failure means: skip
    print("torch unavailable: %s" % e)
    sys.exit(77)

torch.set_default_dtype(torch.float64)
d, steps, B = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
man = [line.split() for line in open(os.path.join(d, "manifest.txt")) if line.strip()]
names = [m[0] for m in man]
shapes = [[int(v) for v in m[1:]] for m in man]


def unpack(buf):
    out, at = {}, 0
    for n, s in zip(names, shapes):
        k = int(np.prod(s))
        out[n] = buf[at:at + k].reshape(s).astype(np.float64)
        at += k
    return out


init = unpack(np.fromfile(os.path.join(d, "init.bin"), dtype=np.float32))
xs = np.fromfile(os.path.join(d, "batches.bin"), dtype=np.float32).reshape(steps, B, 2, 5, 5)
ys = np.fromfile(os.path.join(d, "labels.bin"), dtype=np.int32).reshape(steps, B)

conv = nn.Conv2d(2, 4, 3, padding=1, bias=False)
bn1 = nn.BatchNorm2d(4, momentum=0.2)
fc = nn.Linear(100, 6, bias=False)
bn2 = nn.BatchNorm1d(6, eps=1e-3)
out = nn.Linear(6, 3)
t = lambda a: torch.tensor(np.asarray(a, dtype=np.float64))
with torch.no_grad():
    conv.weight.copy_(t(init["conv.weight"]))
    fc.weight.copy_(t(init["fc.weight"]).T)
    out.weight.copy_(t(init["out.weight"]).T)
    out.bias.copy_(t(init["out.bias"]))
    for bn, n in ((bn1, "bn1"), (bn2, "bn2")):
        bn.weight.copy_(t(init[n + ".weight"]))
        bn.bias.copy_(t(init[n + ".bias"]))
        bn.running_mean.copy_(t(init[n + ".running_mean"]))
        bn.running_var.copy_(t(init[n + ".running_var"]))
mods = nn.ModuleList([conv, bn1, fc, bn2, out]).train()
opt = torch.optim.SGD(mods.parameters(), lr=0.1, momentum=0.9)
losses = []
for s in range(steps):
    h = F.relu(bn1(conv(t(xs[s]))))
    logits = out(torch.tanh(bn2(fc(h.flatten(1)))))
    loss = F.cross_entropy(logits, torch.tensor(ys[s], dtype=torch.long))
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())

want = {"conv.weight": conv.weight, "fc.weight": fc.weight.T, "out.weight": out.weight.T, "out.bias": out.bias}
for bn, n in ((bn1, "bn1"), (bn2, "bn2")):
    want.update({n + ".weight": bn.weight, n + ".bias": bn.bias, n + ".running_mean": bn.running_mean,
                 n + ".running_var": bn.running_var})
want = {k: v.detach().numpy() for k, v in want.items()}
losses = np.array(losses)

bad = 0
for be in ("interp", "llvm"):
    buf = np.fromfile(os.path.join(d, be + ".bin"), dtype=np.float32)
    got_loss, got = buf[:steps].astype(np.float64), unpack(buf[steps:])
    lerr = np.max(np.abs(got_loss - losses) / np.abs(losses))
    worst = 0.0
    for n in want:  # the optimizer's state (opt.*) is not compared
        r = np.linalg.norm(got[n] - want[n]) / max(np.linalg.norm(want[n]), 1e-30)
        worst = max(worst, r)
        if r > 1e-4:
            print("%s: %s differs from PyTorch: relative error %.3g" % (be, n, r))
            bad = 1
    if lerr > 1e-5:
        print("%s: step losses differ from PyTorch: relative error %.3g" % (be, lerr))
        bad = 1
    print("%-6s vs PyTorch after %d steps: losses rel err %.3g, weights and running statistics rel err %.3g"
          % (be, steps, lerr, worst))
sys.exit(bad)
