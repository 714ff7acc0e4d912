"""export_models.py OUT [NAME...] -- the PyTorch models of issue 18's import
check, exported with torch.onnx.export (dynamic batch) beside inputs and
PyTorch's outputs as .npy: OUT/NAME.onnx, OUT/NAME.in.npy, OUT/NAME.out.npy
for the digits MLP (examples/mlp.nn's layers), a CNN on 8x8 digits, a 2-layer
LSTM language model, a bidirectional LSTM, a 2-layer bidirectional GRU, a GPT
of the char-GPT's shape (examples/gpt.nn) at opsets 14 and 17, a one-block
encoder (attention without a mask), a one-block GPT whose attention scale is
not 1/sqrt(dk), a GPT with separate q/k/v projections, an encoder with a
key-padding mask input, a decoder layer with cross-attention, reverse LSTM
and GRU nodes, recurrences from initial-state inputs (a model's inputs after
the first: OUT/NAME.<input>.npy) and, only when named, the GPT-2-small
of the benchmark (bench/gpt2_small.nn's shape at a short context: 124M random
weights). Seeded; small batch. Without names: every model but gpt2."""
import math
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
out = sys.argv[1]
GPT2_T = 16  # a short context keeps the 124M-parameter check quick


class MLP(nn.Module):
    """examples/mlp.nn's layers, so the imported model trains like it."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 256)
        self.fc2 = nn.Linear(256, 256)
        self.out = nn.Linear(256, 10)

    def forward(self, x):
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(128, 64)
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = torch.flatten(h, 1)
        return self.out(F.relu(self.fc1(h)))


class LSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(96, 64)
        self.lstm1 = nn.LSTM(64, 128, batch_first=True)
        self.lstm2 = nn.LSTM(128, 128, batch_first=True)
        self.head = nn.Linear(128, 96)

    def forward(self, t):
        h, _ = self.lstm1(self.emb(t))
        h, _ = self.lstm2(h)
        return self.head(h)


class BiLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(96, 32)
        self.lstm = nn.LSTM(32, 48, batch_first=True, bidirectional=True)
        self.head = nn.Linear(96, 96)

    def forward(self, t):
        return self.head(self.lstm(self.emb(t))[0])


class BiGRU(nn.Module):
    """examples/bigru.nn's shape: two bidirectional GRU layers, a mean over
    the positions, a linear head."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(16, 32, num_layers=2, bidirectional=True, batch_first=True)
        self.out = nn.Linear(64, 4)

    def forward(self, x):
        return self.out(self.gru(x)[0].mean(1))


class Block(nn.Module):
    def __init__(self, d, heads, causal=True, scale=None):
        super().__init__()
        self.heads, self.causal, self.scale = heads, causal, scale or 1 / math.sqrt(d // heads)
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj_attn = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)

    def forward(self, x, mask=None):
        B, T, D = x.shape
        H = self.heads
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q = q.reshape(B, T, H, D // H).transpose(1, 2)
        k = k.reshape(B, T, H, D // H).transpose(1, 2)
        v = v.reshape(B, T, H, D // H).transpose(1, 2)
        if self.scale == 1 / math.sqrt(D // H):
            s = q @ k.transpose(-2, -1) / math.sqrt(D // H)
        else:
            s = q @ k.transpose(-2, -1) * self.scale
        if self.causal:
            s = s.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
        if mask is not None:  # a key-padding mask, true = attends
            s = s.masked_fill(~mask[:, None, None, :], float("-inf"))
        a = (F.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.proj_attn(a)
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))


class SepAttn(nn.Module):
    """HuggingFace-style attention (GPT-2 / BERT / BART blocks written out):
    separate q, k, v projections, keys and values from `ctx` when given
    (cross-attention), an optional causal mask and key-padding mask."""

    def __init__(self, d, heads, dc=None, causal=False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(dc or d, d), nn.Linear(dc or d, d)
        self.o = nn.Linear(d, d)

    def forward(self, x, ctx=None, mask=None):
        B, T, D = x.shape
        src = x if ctx is None else ctx
        S, H = src.shape[1], self.heads
        q = self.q(x).view(B, T, H, D // H).transpose(1, 2)
        k = self.k(src).view(B, S, H, D // H).transpose(1, 2)
        v = self.v(src).view(B, S, H, D // H).transpose(1, 2)
        s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(D // H)
        if self.causal:
            s = s.masked_fill(~torch.tril(torch.ones(T, S, dtype=torch.bool)), float("-inf"))
        if mask is not None:
            s = s.masked_fill(~mask[:, None, None, :], float("-inf"))
        a = torch.matmul(F.softmax(s, dim=-1), v).transpose(1, 2).reshape(B, T, D)
        return self.o(a)


class SepGPT(nn.Module):
    """A GPT-2-style stack with separate q/k/v projections (causal)."""

    def __init__(self, vocab=96, T=16, d=64, heads=4, layers=2):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(T, d) * 0.02)
        self.ln = nn.ModuleList([nn.LayerNorm(d) for _ in range(layers)])
        self.attn = nn.ModuleList([SepAttn(d, heads, causal=True) for _ in range(layers)])
        self.fc = nn.ModuleList([nn.Linear(d, d) for _ in range(layers)])
        self.head = nn.Linear(d, vocab)

    def forward(self, t):
        x = self.tok(t) + self.pos
        for ln, at, fc in zip(self.ln, self.attn, self.fc):
            x = x + at(ln(x))
            x = x + fc(F.gelu(x))
        return self.head(x)


class PadEnc(nn.Module):
    """An encoder block (packed qkv, no causal mask) with a key-padding mask input."""

    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(96, 64)
        self.b = Block(64, 4, causal=False)
        self.head = nn.Linear(64, 96)

    def forward(self, t, m):
        return self.head(self.b(self.tok(t), m))


class Cross(nn.Module):
    """A decoder layer: causal self-attention (separate q/k/v), then
    cross-attention over a memory of another width with its padding mask."""

    def __init__(self, d=64, dc=40):
        super().__init__()
        self.tok = nn.Embedding(96, d)
        self.self_attn = SepAttn(d, 4, causal=True)
        self.cross = SepAttn(d, 4, dc=dc)
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, 96)

    def forward(self, t, mem, m):
        x = self.tok(t)
        x = x + self.self_attn(x)
        x = x + self.cross(self.ln(x), mem, m)
        return self.head(x)


class ExtRev(torch.autograd.Function):
    """An ONNX LSTM / GRU node with direction="reverse" (PyTorch's own modules
    export only forward and bidirectional ones): symbolic writes the node
    with the module's weights in ONNX's gate order; the values come from the
    PyTorch module on the time-reversed input (Reverse.forward outside the
    export). REV is the module."""

    REV = None

    @staticmethod
    def forward(ctx, x, W, R, B):  # only traced: the shape of Y [T, 1, B, h]
        return x.new_zeros(x.shape[0], 1, x.shape[1], ExtRev.REV.hidden_size)

    @staticmethod
    def symbolic(g, x, W, R, B):
        m = ExtRev.REV
        extra = {"linear_before_reset_i": 1} if isinstance(m, nn.GRU) else {}
        return g.op(type(m).__name__, x, W, R, B, direction_s="reverse", hidden_size_i=m.hidden_size, **extra)


def onnx_weights(m):
    """weight_ih/hh_l0, bias_ih/hh_l0 in ONNX's layout: gates i o f c (lstm: PyTorch's i f g o), z r h (gru: r z n)."""
    order = [1, 0, 2] if isinstance(m, nn.GRU) else [0, 3, 1, 2]
    re = lambda t: torch.cat([t.chunk(len(order))[k] for k in order])
    return (re(m.weight_ih_l0)[None], re(m.weight_hh_l0)[None],
            torch.cat([re(m.bias_ih_l0), re(m.bias_hh_l0)])[None])


class Reverse(nn.Module):
    """A reverse-direction LSTM or GRU node (ExtRev) between an embedding and a head."""

    def __init__(self, kind):
        super().__init__()
        self.emb = nn.Embedding(96, 24)
        self.rnn = kind(24, 32)
        self.head = nn.Linear(32, 96)

    def forward(self, t):
        x = self.emb(t)
        if not torch.onnx.is_in_onnx_export():  # PyTorch's reverse recurrence
            return self.head(self.rnn(x.flip(1).transpose(0, 1))[0].transpose(0, 1).flip(1))
        ExtRev.REV = self.rnn
        y = ExtRev.apply(x.transpose(0, 1), *onnx_weights(self.rnn))
        return self.head(y[:, 0].transpose(0, 1))


class ExtLens(torch.autograd.Function):
    """An LSTM node whose sequence_lens is a graph input (what packed
    sequences export): Lathe refuses it with a clear error."""

    @staticmethod
    def forward(ctx, x, W, R, B, lens):
        return x.new_zeros(x.shape[0], 1, x.shape[1], 32)

    @staticmethod
    def symbolic(g, x, W, R, B, lens):
        return g.op("LSTM", x, W, R, B, lens, hidden_size_i=32)


class SeqLens(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(24, 32)

    def forward(self, x, lens):
        return ExtLens.apply(x, *onnx_weights(self.rnn), lens)[:, 0]


class InitState(nn.Module):
    """Recurrences from given initial states (inputs): an LSTM with h0 and c0,
    then a bidirectional GRU from h1."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(96, 24)
        self.lstm = nn.LSTM(24, 32, batch_first=True)
        self.gru = nn.GRU(32, 16, batch_first=True, bidirectional=True)
        self.head = nn.Linear(32, 96)

    def forward(self, t, h0, c0, h1):
        y, _ = self.lstm(self.emb(t), (h0, c0))
        return self.head(self.gru(y, h1)[0])


def pad_mask(B, T):
    """true = attends; every row keeps at least one key (PyTorch gives NaN for none)"""
    return torch.arange(T)[None, :] < torch.tensor([T - 3 * i for i in range(B)])[:, None]


class GPT(nn.Module):
    def __init__(self, vocab=96, T=64, d=128, heads=4, layers=4, **block):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(T, d) * 0.02)
        self.h = nn.ModuleList([Block(d, heads, **block) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, t):
        x = self.tok(t) + self.pos
        for b in self.h:
            x = b(x)
        return self.head(self.ln_f(x))


models = {
    "mlp": lambda: (MLP(), torch.randn(5, 64)),
    "cnn": lambda: (CNN(), torch.randn(5, 1, 8, 8)),
    "lstm2": lambda: (LSTM(), torch.randint(0, 96, (3, 32))),
    "bilstm": lambda: (BiLSTM(), torch.randint(0, 96, (3, 20))),
    "bigru": lambda: (BiGRU(), torch.randn(3, 12, 16)),
    "gpt": lambda: (GPT(), torch.randint(0, 96, (2, 64))),
    "gpt17": lambda: (GPT(), torch.randint(0, 96, (2, 64))),  # opset 17: LayerNormalization nodes
    # an encoder block (no mask: attention(causal=false)), and one whose scale is not Lathe's (stays primitive ops)
    "enc": lambda: (GPT(T=16, layers=1, causal=False), torch.randint(0, 96, (2, 16))),
    "oddscale": lambda: (GPT(T=16, layers=1, scale=0.1), torch.randint(0, 96, (2, 16))),
    # separate q/k/v projections, a key-padding mask, cross-attention (all -> attention layers)
    "sepgpt": lambda: (SepGPT(), torch.randint(0, 96, (2, 16))),
    "padenc": lambda: (PadEnc(), (torch.randint(0, 96, (3, 12)), pad_mask(3, 12))),
    "cross": lambda: (Cross(), (torch.randint(0, 96, (3, 10)), torch.randn(3, 14, 40), pad_mask(3, 14))),
    # recurrences: reverse-direction LSTM and GRU nodes, non-zero initial states (inputs)
    "revlstm": lambda: (Reverse(nn.LSTM), torch.randint(0, 96, (3, 11))),
    "revgru": lambda: (Reverse(nn.GRU), torch.randint(0, 96, (3, 11))),
    "initstate": lambda: (InitState(), (torch.randint(0, 96, (3, 9)), torch.randn(1, 3, 32), torch.randn(1, 3, 32),
                                 torch.randn(2, 3, 16)), ["x", "h0", "c0", "h1"], {"h0": 1, "c0": 1, "h1": 1}),
    # refused: sequence_lens given at run time (no reference output needed)
    "seqlens": lambda: (SeqLens(), (torch.randn(7, 2, 24), torch.tensor([7, 4], dtype=torch.int32)), ["x", "lens"],
                        {"x": 1, "lens": 0}),
    "gpt2": lambda: (GPT(vocab=50257, T=GPT2_T, d=768, heads=12, layers=12), torch.randint(0, 50257, (1, GPT2_T))),
}
only = sys.argv[2:] or [m for m in models if m != "gpt2"]
for name in only:
    torch.manual_seed(0)
    m, x, *spec = models[name]()
    m.eval()
    xs = x if isinstance(x, tuple) else (x,)
    names = spec[0] if spec else ["x", "mem", "m"] if len(xs) == 3 else ["x", "m"][: len(xs)]
    with torch.no_grad():
        y = m(*xs)
    bdim = spec[1] if spec else {}  # the batch axis of each input (0 unless named)
    axes = {k: {bdim.get(k, 0): "batch"} for k in names + ["y"]}
    torch.onnx.export(m, xs, f"{out}/{name}.onnx", input_names=names, output_names=["y"],
                      dynamic_axes=axes, opset_version=17 if name == "gpt17" else 14)
    for k, v in zip(names, xs):  # the first input is NAME.in.npy, the others NAME.<input>.npy
        arr = v.numpy() if v.dtype in (torch.float32, torch.bool) else v.numpy().astype(np.int64)
        np.save(f"{out}/{name}.in.npy" if k == "x" else f"{out}/{name}.{k}.npy", arr)
    np.save(f"{out}/{name}.out.npy", y.numpy())
    print("exported", name)
