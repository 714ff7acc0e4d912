#!/usr/bin/python3
"""The PyTorch peer: the benchmark's workloads in PyTorch, same shapes,
random weights. Run with Debian's /usr/bin/python3 (it has torch).

  peer.py WORKLOAD --threads 1,2 [--quick]
  peer.py WORKLOAD --export-onnx DIR      (the ONNX Runtime peer's model, see below)

bench/harness.py starts one process per malloc setting, with the environment
a tuning user would set (OPENBLAS_NUM_THREADS=2, OMP_NUM_THREADS=2,
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset so OpenBLAS picks its kernel for
this processor, GLIBC_TUNABLES for malloc or not). Inside, for each ATen
thread count (torch.set_num_threads), it times every mode that applies: eager under torch.inference_mode(), and for batch-1 inference
TorchScript, torch.jit.optimize_for_inference(torch.jit.trace(...)), which
freezes the module and lets it rewrite ops for inference. One JSON object per
mode goes to stdout.

With --export-onnx DIR it times nothing: the workload's model (the same
random weights, seed 0) goes to DIR/model.onnx by torch.onnx.export (opset
17, constants folded, static shapes) and its input to DIR/NAME.npy, for the
ONNX Runtime column of the inference rows (harness.py runs it with
lathe_ort).

Training rows (kind "train") time one full step, eager as training is usually
run: zero_grad(set_to_none=True), forward to the logits, cross-entropy,
backward, clip_grad_norm_ when the model's train block clips, optimizer step
(torch.optim.Adam/AdamW with the row's settings), on one fixed random batch.
Both the per-parameter loop and the multi-tensor (foreach) implementation of
the optimizer are tried. The parameter count is that of the trainable
parameters.
"""

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workloads import BY_NAME  # noqa: E402


# ---- the models (the same layers as the .nn files; see the spec) ----

class MLP(nn.Module):
    """examples/mlp.nn: 64-256-256-10, softmax output."""

    def __init__(self, hidden=256):
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(64, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 10)

    def logits(self, x):
        h = F.relu(self.fc1(x))
        return self.out(F.relu(self.fc2(h)))

    def forward(self, x):
        return F.softmax(self.logits(x), dim=-1)


class CNN(nn.Module):
    """examples/cnn.nn: two 3x3 convs with max pooling, two dense layers."""

    def __init__(self, c1=16, c2=32, f1=64):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, c1, 3, padding=1), nn.Conv2d(c1, c2, 3, padding=1)
        self.fc1, self.out = nn.Linear(c2 * 4, f1), nn.Linear(f1, 10)

    def logits(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return self.out(F.relu(self.fc1(torch.flatten(h, 1))))

    def forward(self, x):
        return F.softmax(self.logits(x), dim=-1)


class CNNBN(nn.Module):
    """examples/cnn_bn.nn: the digits CNN with batchnorm after each conv (no conv bias) and the hidden dense
    layer; training mode, as the training step."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(16), nn.BatchNorm2d(32), nn.BatchNorm1d(64)
        self.fc1, self.out = nn.Linear(128, 64), nn.Linear(64, 10)

    def logits(self, x):
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        h = F.max_pool2d(F.relu(self.bn2(self.conv2(h))), 2)
        return self.out(F.relu(self.bn3(self.fc1(torch.flatten(h, 1)))))

    def forward(self, x):
        return F.softmax(self.logits(x), dim=-1)


class Attention(nn.Module):
    """Lathe's attention(x, heads, causal=true, head_dim=d/heads): fused qkv,
    scale 1/sqrt(head_dim); the inner width heads * head_dim may be below d
    (a model whose heads were pruned). (torch 1.13 has no
    scaled_dot_product_attention; this is the usual minGPT-style
    formulation.)"""

    def __init__(self, d, heads, T, head_dim=0):
        super().__init__()
        self.hd = head_dim or d // heads
        self.heads, self.inner, self.scale = heads, heads * self.hd, 1.0 / math.sqrt(self.hd)
        self.qkv, self.proj = nn.Linear(d, 3 * self.inner), nn.Linear(self.inner, d)
        self.register_buffer("mask", torch.ones(T, T, dtype=torch.bool).tril().logical_not())

    def forward(self, x):
        B, T, _ = x.shape
        hd, D = self.hd, self.inner
        q, k, v = self.qkv(x).split(D, dim=2)
        q = q.view(B, T, self.heads, hd).transpose(1, 2)
        k = k.view(B, T, self.heads, hd).transpose(1, 2)
        v = v.view(B, T, self.heads, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * self.scale
        att = F.softmax(att.masked_fill(self.mask[:T, :T], float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, D)
        return self.proj(y)


class Block(nn.Module):
    def __init__(self, d, heads, T, head_dim=0, ffn=0):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads, T, head_dim)
        self.fc, self.proj = nn.Linear(d, ffn or 4 * d), nn.Linear(ffn or 4 * d, d)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))  # exact GELU, as the .nn default


class GPT(nn.Module):
    """examples/gpt.nn and bench/gpt2_small.nn: token + learned position
    embeddings, pre-norm blocks, final layernorm, untied head; logits out.
    head_dim and ffn (0: d / heads and 4 d): bench/gpt_pruned50.nn's widths."""

    def __init__(self, vocab, T, d, heads, layers, head_dim=0, ffn=0):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(T, d) * 0.02)
        self.blocks = nn.Sequential(*[Block(d, heads, T, head_dim, ffn) for _ in range(layers)])
        self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

    def forward(self, tokens):
        h = self.tok(tokens) + self.pos[:tokens.shape[1]]  # shorter contexts while generating
        return self.head(self.ln_f(self.blocks(h)))

    logits = forward


class LSTM(nn.Module):
    """examples/lstm.nn: embedding, one LSTM layer (gates i, f, g, o as in
    PyTorch), a linear head at every position. Lathe's lstm has one bias per
    gate where nn.LSTM has two (bias_ih + bias_hh): bias_hh is held at zero
    and frozen, which is the same model with the same trainable parameters."""

    def __init__(self, vocab, E, H):
        super().__init__()
        self.emb, self.head = nn.Embedding(vocab, E), nn.Linear(H, vocab)
        self.lstm = nn.LSTM(E, H, batch_first=True)
        with torch.no_grad():
            self.lstm.bias_hh_l0.zero_()
        self.lstm.bias_hh_l0.requires_grad_(False)

    def forward(self, tokens):
        return self.head(self.lstm(self.emb(tokens))[0])

    logits = forward


class BiGRU(nn.Module):
    """examples/bigru.nn: a 2-layer bidirectional GRU (dropout 0.1 between
    the layers, in training), the mean over the positions, a linear head."""

    def __init__(self, symbols, H):
        super().__init__()
        self.gru = nn.GRU(symbols, H, num_layers=2, bidirectional=True, dropout=0.1, batch_first=True)
        self.out = nn.Linear(2 * H, 4)

    def logits(self, x):
        return self.out(self.gru(x)[0].mean(1))

    forward = logits


def build_dense(batch):
    """bench/dense1024.nn: one nn.Linear(1024, 1024)."""
    return nn.Linear(1024, 1024), torch.randn(batch, 1024)


def build_mlp(batch, hidden=256):
    return MLP(hidden), torch.randn(batch, 64)


def build_cnn(batch, c1=16, c2=32, f1=64):
    return CNN(c1, c2, f1), torch.randn(batch, 1, 8, 8)


def build_cnn_bn(batch):
    return CNNBN(), torch.randn(batch, 1, 8, 8)


def tokens(batch, vocab, T):
    return torch.randint(0, vocab, (batch, T), dtype=torch.int64)


def build_gpt(batch, vocab, T, d, heads, layers, head_dim=0, ffn=0):
    return GPT(vocab, T, d, heads, layers, head_dim, ffn), tokens(batch, vocab, T)


def build_lstm(batch, vocab, T, E, H):
    return LSTM(vocab, E, H), tokens(batch, vocab, T)


def build_bigru(batch, T, symbols, H):
    return BiGRU(symbols, H), torch.randn(batch, T, symbols)


BUILDERS = {"dense": build_dense, "mlp": build_mlp, "cnn": build_cnn, "cnn_bn": build_cnn_bn, "gpt": build_gpt,
            "lstm": build_lstm, "bigru": build_bigru}


# ---- training steps ----

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def classes(model, x):
    """How many classes the logits have (targets are drawn below it)."""
    was = model.training  # in eval mode: batchnorm refuses one example per channel in training mode
    model.eval()
    with torch.no_grad():
        n = model.logits(x[:1]).shape[-1]
    model.train(was)
    return n


def train_step(model, x, optim, clip_norm, foreach):
    """One full training step on the fixed batch (x, y), returning the loss.
    Targets: one class per example (or per position for a sequence model)."""
    nclass = classes(model, x)
    y = torch.randint(0, nclass, x.shape[:1] if x.dtype.is_floating_point else x.shape, dtype=torch.int64,
                      generator=torch.Generator().manual_seed(1)).to(x.device)  # the same targets everywhere
    params = [p for p in model.parameters() if p.requires_grad]
    kw = dict(optim)
    opt = OPTIMIZERS[kw.pop("name")](params, foreach=foreach, **kw)

    def step(_):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model.logits(x).reshape(-1, nclass), y.reshape(-1))
        loss.backward()
        if clip_norm:
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        opt.step()
        return loss
    return step


# ---- timing ----

def time_steps(fn, x, reps, warmup, max_seconds):
    """Median and fastest step in ms, the step count, and the first and the
    last step's result (a training step's loss; read outside the timing)."""
    first = out = None
    for i in range(warmup):
        out = fn(x)
        if i == 0:
            first = out
    if hasattr(fn, "reset"):  # generation: the timed tokens start from the prompt again
        fn.reset()
    times, start = [], time.perf_counter()
    while len(times) < reps:
        t0 = time.perf_counter()
        out = fn(x)
        times.append((time.perf_counter() - t0) * 1e3)
        if first is None:
            first = out
        if len(times) >= 3 and time.perf_counter() - start > max_seconds:
            break
    if hasattr(fn, "reset"):
        fn.times = times
    return statistics.median(times), min(times), len(times), first, out


def blas_kernel():
    """Which OpenBLAS kernel (and library) torch's BLAS calls run."""
    try:
        import threadpoolctl
        for info in threadpoolctl.threadpool_info():
            if info.get("internal_api") == "openblas":
                return "openblas-%s:%s" % (info.get("version"), info.get("architecture"))
        return "no-openblas"
    except Exception as e:  # threadpoolctl missing: say so rather than guess
        return "unknown (%s)" % type(e).__name__


class Recompute:
    """The naive generation loop: each call runs the full forward over the
    last T tokens of the context (batch 1) and appends the argmax of the last
    position's logits. reset() goes back to the prompt."""

    def __init__(self, model, prompt, T):
        self.model, self.prompt, self.T = model, prompt.reshape(1, -1), T
        self.reset()

    def reset(self):
        self.ctx = self.prompt.clone()

    def __call__(self, _):
        logits = self.model(self.ctx[:, -self.T:])
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        self.ctx = torch.cat([self.ctx, nxt], dim=1)
        return nxt


GEN_PROMPT_TOKENS = 17  # as many as lathe_bench's prompt ("ROMEO:\nWhat light")


def modes(w, model, x):
    """(name, callable) for every configuration this workload tries."""
    if w.kind == "train":  # each configuration trains its own copy from the same start
        for foreach in (False, True):
            yield "eager-train%s" % ("-foreach" if foreach else ""), train_step(copy.deepcopy(model), x, w.optim,
                                                                                 w.clip_norm, foreach)
        return
    if w.kind == "generate":
        yield "eager-recompute", Recompute(model, x[0, :GEN_PROMPT_TOKENS], x.shape[1])
        return
    yield "eager", model
    if w.batch1:
        with torch.no_grad():
            traced = torch.jit.trace(model, x)
            yield "torchscript", torch.jit.optimize_for_inference(traced)


def export_onnx(w, model, x, out_dir):
    """The inference model as ONNX for ONNX Runtime, and its input as .npy."""
    import numpy as np
    name = next(iter(w.inputs))
    model.eval()
    with torch.no_grad():
        torch.onnx.export(model, (x,), os.path.join(out_dir, "model.onnx"), opset_version=17,
                          input_names=[name], output_names=["out"], do_constant_folding=True)
    np.save(os.path.join(out_dir, name + ".npy"), x.numpy())
    print(json.dumps({"workload": w.name, "onnx": os.path.join(out_dir, "model.onnx"), "input": name,
                      "params": sum(p.numel() for p in model.parameters() if p.requires_grad)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload")
    ap.add_argument("--threads", default="1", help="ATen thread counts to try, e.g. 1,2")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--export-onnx", metavar="DIR", help="write DIR/model.onnx and the input; time nothing")
    a = ap.parse_args()
    w = BY_NAME[a.workload]
    torch.manual_seed(0)
    model, x = BUILDERS[w.peer](**w.peer_args)
    if a.export_onnx:
        return export_onnx(w, model, x, a.export_onnx)
    train = w.kind == "train"
    model.train(train)

    reps = w.quick_reps if a.quick else w.reps
    kernel = blas_kernel()
    nparams = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # batchnorm's running statistics: Lathe counts them with its parameters (saved with the weights)
    nparams += sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    if w.quant in ("int8-dynamic", "int8"):  # PyTorch's dynamic int8 (the engine it offers: onednn here); counted before
        model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    if w.quant == "bf16":  # PyTorch's bf16 nn.Linear (oneDNN on CPU): weights and input in bf16
        model, x = model.to(torch.bfloat16), x.to(torch.bfloat16)
    prepared = list(modes(w, model, x))  # tracing + freezing GPT-2 takes seconds: once
    for threads in [int(t) for t in a.threads.split(",")]:
        torch.set_num_threads(threads)
        if train:  # fresh models and optimizer state for every configuration
            prepared = list(modes(w, model, x))
        for mode, fn in prepared:
            with torch.inference_mode(not train):
                med, best, n, first, last = time_steps(fn, x, reps, w.warmup, w.max_seconds)
            cfg = "%s aten=%d blas=%s malloc=%s" % (mode, threads, os.environ.get("OPENBLAS_NUM_THREADS", "?"),
                                                    os.environ.get("PEER_MALLOC", "default"))
            r = {"workload": w.name, "config": cfg, "median_ms": med, "min_ms": best, "reps": n,
                 "kernel": kernel, "params": nparams}
            if train:
                r.update(first_loss=first.item(), last_loss=last.item())
            if w.kind == "generate":
                r["tokens_per_s"] = 1e3 / statistics.mean(fn.times)  # as lathe_generate's: tokens / seconds
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
