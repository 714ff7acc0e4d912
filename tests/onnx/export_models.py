"""export_models.py OUT [NAME...] -- the PyTorch models of issue 18's import
check, exported with torch.onnx.export (dynamic batch) beside inputs and
PyTorch's outputs as .npy: OUT/NAME.onnx, OUT/NAME.in.npy, OUT/NAME.out.npy
for the digits MLP (examples/mlp.nn's layers), a CNN on 8x8 digits, a 2-layer
LSTM language model, a bidirectional LSTM, a 2-layer bidirectional GRU, a GPT
of the char-GPT's shape (examples/gpt.nn) at opsets 14 and 17, a one-block
encoder (attention without a mask), a one-block GPT whose attention scale is
not 1/sqrt(dk) and, only when named, the GPT-2-small
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

    def forward(self, x):
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
            mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
            s = s.masked_fill(~mask, float("-inf"))
        a = (F.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.proj_attn(a)
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))


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
    "gpt2": lambda: (GPT(vocab=50257, T=GPT2_T, d=768, heads=12, layers=12), torch.randint(0, 50257, (1, GPT2_T))),
}
only = sys.argv[2:] or [m for m in models if m != "gpt2"]
for name in only:
    torch.manual_seed(0)
    m, x = models[name]()
    m.eval()
    with torch.no_grad():
        y = m(x)
    torch.onnx.export(m, x, f"{out}/{name}.onnx", input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17 if name == "gpt17" else 14)
    xin = x.numpy() if x.dtype == torch.float32 else x.numpy().astype(np.int64)
    np.save(f"{out}/{name}.in.npy", xin)
    np.save(f"{out}/{name}.out.npy", y.numpy())
    print("exported", name)
