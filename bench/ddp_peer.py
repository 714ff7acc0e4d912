#!/usr/bin/python3
"""The PyTorch side of bench/mpi_bench.sh: data-parallel training with
torch.nn.parallel.DistributedDataParallel over gloo, N processes of one
thread each (torch.set_num_threads(1)), on the same models as bench/peer.py.

  ddp_peer.py mlp|gpt --batch B --procs N --steps S

The global batch B is split over the N processes (B / N rows each, as
mpirun -np N lathe train does); each step is a full training step (zero_grad,
forward, cross-entropy, backward with DDP's bucketed allreduce overlapped,
clip_grad_norm_ for the GPT, the optimizer). With --procs 1 there is no DDP
(plain single-process training). Prints one JSON object: the median step,
samples/s of the global batch, on rank 0."""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer  # noqa: E402

GPT_CHAR = dict(vocab=96, T=64, d=128, heads=4, layers=4)


class Logits(torch.nn.Module):
    """The model with forward() = its logits: DDP reduces the gradients of
    the graph its own forward() call builds."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner.logits(x)


def build(model, batch):
    torch.manual_seed(0)  # the same weights on every rank, as DDP wants
    if model == "mlp":
        m, x = peer.build_mlp(batch)
        return Logits(m), x, lambda ps: torch.optim.Adam(ps, lr=1e-3), 0.0
    m, x = peer.build_gpt(batch, **GPT_CHAR)
    return Logits(m), x, lambda ps: torch.optim.AdamW(ps, lr=1.5e-3, weight_decay=0.1), 1.0


def worker(rank, a, port, out):
    torch.set_num_threads(1)
    if a.procs > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=a.procs)
    model, x, make_opt, clip = build(a.model, a.batch // a.procs)
    with torch.no_grad():
        nclass = model(x[:1]).shape[-1]
    y = torch.randint(0, nclass, x.shape[:1] if x.dtype.is_floating_point else x.shape, dtype=torch.int64)
    if a.procs > 1:
        # the attention's causal mask is a bool buffer, which gloo cannot broadcast; it is a constant anyway
        consts = [n for n, b in model.named_buffers() if b.dtype == torch.bool]
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, consts)
        model = torch.nn.parallel.DistributedDataParallel(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_opt(params)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).reshape(-1, nclass), y.reshape(-1))
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()

    for _ in range(a.warmup):
        step()
    times = []
    t_all = time.perf_counter()
    for _ in range(a.steps):
        if a.procs > 1:
            dist.barrier()
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_all
    if rank == 0:
        med = statistics.median(times)
        # samples_per_s: over the median step, which the barrier before each step starts on every rank
        # together (the time one rank waits for a late one is outside it); wall_samples_per_s: over the
        # whole timed loop, barriers included, as lathe's step_seconds counts every wait
        out.put({"model": a.model, "procs": a.procs, "batch": a.batch, "median_ms": med * 1e3,
                 "samples_per_s": a.batch / med, "wall_samples_per_s": a.batch * a.steps / wall})
    if a.procs > 1:
        dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["mlp", "gpt"])
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = 29500 + os.getpid() % 1000
    ps = [ctx.Process(target=worker, args=(r, a, port, q)) for r in range(a.procs)]
    for p in ps:
        p.start()
    while True:  # a worker that died must not leave this waiting for ever
        try:
            res = q.get(timeout=5)
            break
        except Exception:
            if any(p.exitcode not in (None, 0) for p in ps):
                for p in ps:
                    p.kill()
                sys.exit("ddp_peer.py: a worker failed")
    for p in ps:
        p.join()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
