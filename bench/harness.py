#!/usr/bin/python3
"""Runs the benchmark workloads with Lathe and with the PyTorch peer and
prints the table (or JSON lines). Started by bench/run after the build; see
bench/README.md.

  harness.py BUILD_DIR [--json] [--quick] [WORKLOAD...]
"""

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from workloads import BY_NAME, WORKLOADS  # noqa: E402
import aot  # noqa: E402

AOT_ROW = "mlp_aot_b1"  # not a peer workload: bench/aot.py

PEER_THREADS = (1, 2)       # ATen threads tried; OpenBLAS always gets 2
LATHE_THREADS = (0, 1)      # Lathe's pool sizes tried, as the peer's (0: the default, every online CPU)
PEER_BLAS_THREADS = "2"
# glibc malloc tuned so freed tensors stay in the heap: PyTorch allocates every
# intermediate afresh, and with glibc's defaults a 256 KiB activation is
# mmap'd/trimmed and page-faulted back in on every step (the MLP at batch 256
# spends ~85% of its CPU time in page faults). Setting this is the standard
# CPU-tuning advice for PyTorch (the alternative is preloading jemalloc), so
# the peer tries both.
PEER_MALLOC = {"default": None,
               "tuned": "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"}
SGEMM_N, SGEMM_N_QUICK = 2048, 1024
CORE_GAIN_OK = 1.5  # OpenBLAS two-thread gain below which a run is flagged (a healthy run: 1.9-2.0x)

UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
# A training step's FLOPs taken as 3x the forward's (forward, plus backward
# through activations and weights, each about one forward); `lathe check`
# counts the forward only. The optimizer update is negligible beside it.
TRAIN_FLOP_FACTOR = 3


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, env=None, timeout=600):
    """stdout of cmd; raises with its stderr on failure."""
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("%s failed (exit %d): %s" % (os.path.basename(cmd[0]), p.returncode,
                                                       (p.stderr or p.stdout).strip()[-800:]))
    return p.stdout


def json_lines(text):
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


def peer_env(threads, malloc):
    """The environment a tuning user gives PyTorch: thread counts set, and
    OpenBLAS left to pick its kernel for this processor (the workplace's
    OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE pins are removed in this process only)."""
    env = unpin_blas(dict(os.environ))
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=PEER_BLAS_THREADS, PEER_MALLOC=malloc)
    env.pop("GLIBC_TUNABLES", None)
    if PEER_MALLOC[malloc]:
        env["GLIBC_TUNABLES"] = PEER_MALLOC[malloc]
    return env


# ---- Lathe side ----

CHECK_INPUT = re.compile(r"^\s*\d+\s+input\s+(\w+)\[([\d, ]*)\]\s+(\S+)")
CHECK_FLOPS = re.compile(r"^forward:\s+([\d.]+)\s*([KMGT]?)FLOP")
CHECK_PARAMS = re.compile(r"^parameters:\s+(\d+)")


def lathe_check(lathe, w):
    """Input dtypes/shapes, the forward FLOPs and the parameter count, from
    `lathe check`."""
    cmd = [lathe, "check", w.model] + [a for k, v in w.binds.items() for a in ("--bind", "%s=%d" % (k, v))]
    inputs, flops, params = {}, None, None
    for line in run(cmd).splitlines():
        m = CHECK_PARAMS.match(line)
        if m:
            params = int(m.group(1))
        m = CHECK_INPUT.match(line)
        if m:
            inputs[m.group(3)] = (m.group(1), [int(d) for d in m.group(2).split(",") if d.strip()])
        m = CHECK_FLOPS.match(line)
        if m:
            flops = float(m.group(1)) * UNITS[m.group(2)]
    return inputs, flops, params


def lathe_bench_cmd(bench, w, inputs, quick):
    cmd = [bench, w.model, "--reps", str(w.quick_reps if quick else w.reps),
           "--warmup", str(w.warmup), "--max-seconds", str(w.max_seconds)]
    if w.kind == "train":
        cmd.append("--train")
    if w.kind == "inference":  # inputs bound once, as both peers pass a tensor over the caller's memory
        cmd.append("--zero-copy")
    if w.kind == "generate":  # --in is ignored there: lathe_generate feeds its own prompt
        cmd += ["--generate", str(w.gen_tokens)]
    if w.quant:
        cmd += ["--quant", w.quant]
    if w.calib:
        cmd += ["--calib-data", w.calib]
    for k, v in w.binds.items():
        cmd += ["--bind", "%s=%d" % (k, v)]
    for name, rng in w.inputs.items():
        if name not in inputs:
            raise RuntimeError("%s declares no input '%s'" % (w.model, name))
        dtype, shape = inputs[name]
        spec = "%s=%s:%s" % (name, dtype, "x".join(map(str, shape)))
        cmd += ["--in", spec + (":%d" % rng if rng else "")]
    return cmd


def unpin_blas(env):
    """Let OpenBLAS pick its kernel for this processor (see bench/README.md)."""
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    return env


def lathe_side(build, w, quick, pinned_blas, extras=True):
    """Cold compile + timed steps, then (full runs) a warm compile that may hit
    the on-disk kernel cache. The cache is pointed at a fresh directory so the
    first compile is cold whatever ran before. Training rows run a second
    time at -O0 (no graph passes and no fusion at all): the optimiser's
    speedup, measured in the same run. extras=False: the timed steps only."""
    imp = None
    if w.imported:
        imp = tempfile.mkdtemp(prefix="lathe-bench-import-")
        w = imported_model(build, w, imp)
    try:
        return lathe_side_of(build, w, quick, pinned_blas, extras)
    finally:
        if imp:
            shutil.rmtree(imp, ignore_errors=True)


def export_onnx(w, d):
    """The peer's model exported by torch.onnx.export into d (bench/peer.py
    --export-onnx): what the ORT column times and an imported row imports."""
    return json_lines(run(["/usr/bin/python3", os.path.join(HERE, "peer.py"), w.name, "--export-onnx", d]))[-1]


def imported_model(build, w, d, info=None):
    """The workload with its model replaced by what `lathe import` makes of
    the peer's ONNX export (the file the ORT column times)."""
    info = info or export_onnx(w, d)
    run([os.path.join(build, "lathe", "lathe"), "import", info["onnx"], "-o", d, "--name", "imported"])
    return dataclasses.replace(w, model=os.path.join(d, "imported.nn"))


def lathe_side_of(build, w, quick, pinned_blas, extras):
    inputs, flops, params = lathe_check(os.path.join(build, "lathe", "lathe"), w)
    cmd = lathe_bench_cmd(os.path.join(build, "lathe_bench"), w, inputs, quick)
    cache = tempfile.mkdtemp(prefix="lathe-bench-cache-")
    env = dict(os.environ, XDG_CACHE_HOME=cache, LATHE_CACHE_DIR=cache)
    env.pop("LATHE_OPT_LEVEL", None)
    if not pinned_blas:
        unpin_blas(env)
    try:
        # Each pool size's timed steps; the fastest median is Lathe's, as the peer's fastest thread count is the
        # peer's. The first run compiles cold (its compile time is the row's), the others hit the cache.
        tries = []
        for t in LATHE_THREADS:
            e = dict(env, LATHE_THREADS=str(t)) if t else env
            r = json_lines(run(cmd, env=e))[-1]
            r["lathe_threads"] = t or os.cpu_count()
            tries.append((r, e))
        res, env = min(tries, key=lambda p: p[0]["median_ms"])
        res = dict(res, compile_ms=tries[0][0]["compile_ms"], stats=tries[0][0].get("stats", res.get("stats")))
        if not quick and extras:
            warm = json_lines(run(cmd + ["--compile-only"], env=env))[-1]
            res["warm_compile_ms"] = warm["compile_ms"]
            res["warm_cache_hit"] = warm.get("stats", {}).get("cache_hit")
        if w.kind == "train" and extras:
            # -O0 bracketed by two -O2 runs: the speedup is against their mean, so
            # a machine that speeds up or slows down over the minute cancels out
            o0 = json_lines(run(cmd, env=dict(env, LATHE_OPT_LEVEL="0")))[-1]
            again = json_lines(run(cmd, env=env))[-1]
            res["o0_ms"], res["o0_min_ms"] = o0["median_ms"], o0["min_ms"]
            res["o0_kernels"] = o0.get("stats", {}).get("kernels")
            res["o2_bracket_ms"] = (res["median_ms"] + again["median_ms"]) / 2
            res["o2_bracket_min_ms"] = min(res["min_ms"], again["min_ms"])
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if flops and w.kind == "train":
        flops *= TRAIN_FLOP_FACTOR
    if w.kind == "generate":  # a token is not one full forward for Lathe (cached): no GF/s
        flops = None
    res["flops"], res["params"] = flops, params
    return res


# ---- peer side ----

def peer_side(w, quick):
    """One process per malloc setting, each trying every ATen thread count
    (and TorchScript for batch 1); the fastest configuration is the peer."""
    results = []
    threads = ",".join(map(str, PEER_THREADS))
    for malloc in w.peer_malloc:
        cmd = ["/usr/bin/python3", os.path.join(HERE, "peer.py"), w.name, "--threads", threads]
        results += json_lines(run(cmd + (["--quick"] if quick else []), env=peer_env(max(PEER_THREADS), malloc)))
    return min(results, key=lambda r: r["median_ms"]), results


# ---- ONNX Runtime side (the inference rows) ----

ORT_THREADS = (1, 2)  # intra-op threads tried; the fastest is the peer
ORT_ROUNDS = 2  # rounds of Lathe's and ORT's fastest settings, alternating (rematch)


def ort_version(build):
    """lathe_ort and ONNX Runtime's version, or (None, why) where it is not installed."""
    exe = os.path.join(build, "lathe", "lathe_ort")
    probe = subprocess.run([exe, "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        return None, (probe.stderr or probe.stdout).strip()
    return exe, probe.stdout.split()[-1]


def ort_time(exe, version, w, info, d, threads, quick):
    cmd = [exe, info["onnx"], "--in", "%s=%s" % (info["input"], os.path.join(d, info["input"] + ".npy")),
           "--threads", str(threads), "--opt", "all", "--bench", str(w.quick_reps if quick else w.reps),
           "--warmup", str(w.warmup), "--max-seconds", str(w.max_seconds)]
    r = json_lines(run(cmd, env=unpin_blas(dict(os.environ))))[-1]
    r["config"] = "ort %s all-opt intra=%d" % (version, threads)
    r["ort_threads"], r["params"] = threads, info["params"]
    return r


def ort_side(build, w, quick, info, d):
    """The peer's model as exported into d (export_onnx), timed by lathe_ort
    (tools/ort/ort_run.c) with every graph optimisation on each thread
    count; the fastest configuration, or None (with a message) where ONNX
    Runtime is not installed."""
    exe, version = ort_version(build)
    if not exe:
        log("bench: %s: no ONNX Runtime column (%s)" % (w.name, version))
        return None, []
    results = [ort_time(exe, version, w, info, d, threads, quick) for threads in ORT_THREADS]
    return min(results, key=lambda r: r["median_ms"]), results


def rematch(build, wl, quick, pinned_blas, lathe, ort, info, d):
    """ORT_ROUNDS - 1 more rounds of the two sides' fastest settings, Lathe
    then ORT in turn: each side's median is its best round's. A minute of
    this machine can be several percent slower than the next (the 2 cores
    are shared), and one round each would hand that minute to whichever
    side it fell on; alternating rounds give both sides the same minutes."""
    exe, version = ort_version(build)
    cmd = lathe_bench_cmd(os.path.join(build, "lathe_bench"), wl, lathe_check(os.path.join(build, "lathe", "lathe"),
                                                                              wl)[0], quick)
    lat, rt = [lathe], [ort]
    for _ in range(ORT_ROUNDS - 1):
        cache = tempfile.mkdtemp(prefix="lathe-bench-cache-")
        env = dict(os.environ, XDG_CACHE_HOME=cache, LATHE_CACHE_DIR=cache, LATHE_THREADS=str(lathe["lathe_threads"]))
        env.pop("LATHE_OPT_LEVEL", None)
        if not pinned_blas:
            unpin_blas(env)
        try:
            lat.append(json_lines(run(cmd, env=env))[-1])
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        rt.append(ort_time(exe, version, wl, info, d, ort["ort_threads"], quick))
    best_l, best_o = min(lat, key=lambda r: r["median_ms"]), min(rt, key=lambda r: r["median_ms"])
    lathe = dict(lathe, median_ms=best_l["median_ms"], min_ms=min(r["min_ms"] for r in lat),
                 rounds_ms=[round(r["median_ms"], 6) for r in lat])
    ort = dict(ort, median_ms=best_o["median_ms"], min_ms=min(r["min_ms"] for r in rt),
               rounds_ms=[round(r["median_ms"], 6) for r in rt])
    return lathe, ort


def sgemm_peak(build, quick):
    """OpenBLAS sgemm with the environment as Lathe sees it, and with the
    kernel OpenBLAS picks itself (as the peer runs)."""
    exe = os.path.join(build, "sgemm_peak")
    args = [exe, str(SGEMM_N_QUICK if quick else SGEMM_N), "2" if quick else "5"]
    pinned = json_lines(run(args))[-1]
    native = json_lines(run(args, env=unpin_blas(dict(os.environ))))[-1]
    return pinned, native


def gemm_floor(build, batch, quick):
    """The MLP step's eight products, each alone with OpenBLAS (best of
    reps), summed: no schedule of the step can beat it (bench/README.md)."""
    out = run([os.path.join(build, "mlp_gemm_floor"), str(batch), "20" if quick else "200"],
              env=unpin_blas(dict(os.environ)))
    m = re.search(r"at least ([\d.]+) ms", out)
    return float(m.group(1)) if m else None


# ---- output ----

def row(w, lathe, peer, allpeer, err, ort=None, allort=()):
    r = {"workload": w.name, "lathe_ms": None, "peer_ms": None, "ratio": None, "compile_ms": None}
    if ort:  # ONNX Runtime, the second peer (inference rows)
        r["ort_ms"], r["ort_min_ms"], r["ort_config"] = round(ort["median_ms"], 6), round(ort["min_ms"], 6), ort["config"]
        r["ort_all"] = {o["config"]: round(o["median_ms"], 6) for o in allort}
        if "rounds_ms" in ort:  # rematch: each side's medians, round by round
            r["ort_rounds_ms"] = ort["rounds_ms"]
            if lathe:
                r["lathe_rounds_ms"] = lathe["rounds_ms"]
        if lathe:
            r["ratio_ort"] = round(lathe["median_ms"] / ort["median_ms"], 4)
            r["ratio_ort_min"] = round(lathe["min_ms"] / ort["min_ms"], 4)
    if w.quant:
        r["quant"], r["f32_row"] = w.quant, w.f32_row
    if w.pruned:
        r["pruned"], r["f32_row"] = w.pruned, w.f32_row
    if peer:
        r["peer_ms"] = round(peer["median_ms"], 6)
    if lathe:
        r["lathe_ms"] = round(lathe["median_ms"], 6)
        r["lathe_threads"] = lathe.get("lathe_threads")
        r["compile_ms"] = round(lathe["compile_ms"], 3)
        if peer:
            r["ratio"] = round(lathe["median_ms"] / peer["median_ms"], 4)
        if lathe.get("flops"):
            r["gflops"] = round(lathe["flops"] / lathe["median_ms"] / 1e6, 3)
            if peer:
                r["peer_gflops"] = round(lathe["flops"] / peer["median_ms"] / 1e6, 3)
        if "warm_compile_ms" in lathe:
            r["warm_compile_ms"] = round(lathe["warm_compile_ms"], 3)
        r["lathe_min_ms"] = round(lathe["min_ms"], 6)
        if peer:  # fastest step against fastest step: less sensitive to busy neighbours
            r["ratio_min"] = round(lathe["min_ms"] / peer["min_ms"], 4)
        if "stats" in lathe:
            r["lathe_stats"] = lathe["stats"]
        if lathe.get("warm_cache_hit") is not None:
            r["warm_cache_hit"] = lathe["warm_cache_hit"]
        r["lathe_init_ms"] = lathe.get("init_ms")
        r["lathe_reps"] = lathe.get("reps")
        if w.kind == "train":
            r["lathe_loss"] = [lathe.get("first_loss"), lathe.get("last_loss")]
        if "o0_ms" in lathe:  # the same step compiled at -O0: the graph optimiser's speedup
            r["lathe_o0_ms"] = round(lathe["o0_ms"], 6)
            r["lathe_o2_bracket_ms"] = round(lathe["o2_bracket_ms"], 6)
            r["o2_speedup"] = round(lathe["o0_ms"] / lathe["o2_bracket_ms"], 4)
            r["o2_speedup_min"] = round(lathe["o0_min_ms"] / lathe["o2_bracket_min_ms"], 4)
            r["o0_kernels"] = lathe.get("o0_kernels")
        if w.kind == "generate":
            r["lathe_tokens_per_s"] = lathe.get("tokens_per_s")
            r["lathe_cached"] = lathe.get("cached")
    if peer:
        if w.kind == "train":
            r["peer_loss"] = [peer.get("first_loss"), peer.get("last_loss")]
        if w.kind == "generate":
            r["peer_tokens_per_s"] = peer.get("tokens_per_s")
        r["peer_config"] = peer["config"]
        r["peer_min_ms"] = round(peer["min_ms"], 6)
        r["peer_kernel"] = peer["kernel"]
        r["peer_all"] = {p["config"]: round(p["median_ms"], 6) for p in allpeer}
    if err:
        r["error"] = err
    return r


def size(n):
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return "%.1f %s" % (n / scale, unit)
    return "%d B" % n


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def ms(v):
    """Milliseconds with 3 significant-ish digits whatever the scale."""
    if v is None:
        return "-"
    return "%.4f" % v if v < 1 else "%.3f" % v if v < 10 else "%.1f" % v


def print_table(rows, peak, pinned_blas):
    hdr = ("workload", "lathe ms", "peer ms", "lathe/peer", "min ratio", "ort ms", "lathe/ort", "compile ms",
           "warm ms", "lathe GF/s", "peer GF/s", "peer config")
    last = len(hdr) - 1
    lines = [hdr]
    for r in rows:
        lines.append((r["workload"], ms(r["lathe_ms"]), ms(r["peer_ms"]), fmt(r["ratio"], ".2f"),
                      fmt(r.get("ratio_min"), ".2f"), ms(r.get("ort_ms")), fmt(r.get("ratio_ort"), ".2f"),
                      fmt(r["compile_ms"], ".0f"), fmt(r.get("warm_compile_ms"), ".0f"),
                      fmt(r.get("gflops"), ".1f"), fmt(r.get("peer_gflops"), ".1f"),
                      r.get("peer_config", "-")))
    widths = [max(len(l[i]) for l in lines) for i in range(len(hdr))]
    for i, l in enumerate(lines):
        print(" | ".join(c.ljust(widths[j]) if j in (0, last) else c.rjust(widths[j]) for j, c in enumerate(l)))
        if i == 0:
            print("-+-".join("-" * wd for wd in widths))
    for r in rows:
        st = r.get("lathe_stats")
        if st:
            phases = st["ir_ms"] + st["opt_ms"] + st["codegen_ms"] + st["jit_ms"]
            print("%s: cold compile %.0f ms = IR %.0f + LLVM opt %.0f + codegen %.0f + JIT %.0f + lowering etc. %.0f; "
                  "kernels %d -> %d unique; arena %s (naive %s); steps timed on %s pool thread(s)%s" %
                  (r["workload"], r["compile_ms"], st["ir_ms"], st["opt_ms"], st["codegen_ms"], st["jit_ms"],
                   r["compile_ms"] - phases, st["kernels"], st["kernels_unique"], size(st["arena_bytes"]),
                   size(st["naive_bytes"]), r.get("lathe_threads", "?"),
                   "" if r.get("warm_cache_hit") is None else
                   "; warm compile %s the disk cache" % ("hit" if r["warm_cache_hit"] else "missed")))
    for r in rows:
        if "lathe_o0_ms" in r:
            print("%s: -O0 (no graph passes, no fusion) %s ms per step in %s kernel calls, between two -O2 runs "
                  "(mean %s ms); -O2 is %.2fx faster (%.2fx fastest step against fastest)" %
                  (r["workload"], ms(r["lathe_o0_ms"]), r.get("o0_kernels", "?"), ms(r["lathe_o2_bracket_ms"]),
                   r["o2_speedup"], r["o2_speedup_min"]))
    for r in rows:
        if r.get("gemm_floor_ms") and r.get("peer_ms"):
            print("%s: its eight matrix products alone (OpenBLAS, each timed by itself, bench/mlp_gemm_floor) take "
                  "%s ms, %.2f of the peer's step" % (r["workload"], ms(r["gemm_floor_ms"]),
                                                      r["gemm_floor_ms"] / r["peer_ms"]))
    for r in rows:
        if "lathe_loss" in r or "peer_loss" in r:
            print("%s: loss over the run's steps on its fixed batch: lathe %s, peer %s" %
                  (r["workload"], loss_span(r.get("lathe_loss")), loss_span(r.get("peer_loss"))))
    for r in rows:
        if "lathe_tokens_per_s" in r or "peer_tokens_per_s" in r:
            print("%s: greedy tokens/s: lathe %s (%s), peer %s (full forward over the last T tokens per token); "
                  "ms above are per token" %
                  (r["workload"], fmt(r.get("lathe_tokens_per_s"), ".0f"),
                   "key/value cache" if r.get("lathe_cached") else "recomputed context",
                   fmt(r.get("peer_tokens_per_s"), ".0f")))
    by = {r["workload"]: r for r in rows}
    for r in rows:
        f = by.get(r.get("f32_row"))
        if f and f.get("lathe_ms") and r.get("lathe_ms"):
            print("%s: %s against Lathe's %s (%s): %.2fx faster by medians, %.2fx by fastest steps%s" %
                  (r["workload"], r.get("quant") or r.get("pruned"), "f32" if r.get("quant") else "dense model",
                   f["workload"], f["lathe_ms"] / r["lathe_ms"],
                   f["lathe_min_ms"] / r["lathe_min_ms"],
                   "; tokens/s %s vs %s" % (fmt(r.get("lathe_tokens_per_s"), ".0f"), fmt(f.get("lathe_tokens_per_s"), ".0f"))
                   if r.get("lathe_tokens_per_s") else ""))
    pinned, native = peak
    print("OpenBLAS sgemm peak (n=%d, best of reps): %.1f GFLOP/s on 1 thread, %.1f on 2 with kernel %s "
          "(the environment's pin%s); %.1f / %.1f with kernel %s (unpinned, as the peer%s runs)" %
          (pinned["n"], pinned["gflops_1t"], pinned["gflops_2t"], pinned["core"],
           ", as Lathe runs (--pinned-blas)" if pinned_blas else "", native["gflops_1t"], native["gflops_2t"],
           native["core"], "" if pinned_blas else " and Lathe"))
    ort_cfg = sorted({c for r in rows for c in r.get("ort_all", {})})
    if ort_cfg:
        print("ort: ONNX Runtime (npm onnxruntime-node, loaded by lathe_ort) on the PyTorch peer's model exported by "
              "torch.onnx.export (opset 17), every graph optimisation, the fastest of %s; lathe/ort is Lathe's "
              "median over ORT's, each side's best of %d rounds timed in turn" % (", ".join(ort_cfg), ORT_ROUNDS))
        for r in rows:
            if r.get("lathe_rounds_ms"):
                print("  %s rounds (ms): lathe %s; ort %s" % (r["workload"], ", ".join(ms(v) for v in r["lathe_rounds_ms"]),
                                                            ", ".join(ms(v) for v in r["ort_rounds_ms"])))
    kernels = sorted({r["peer_kernel"] for r in rows if r.get("peer_kernel")})
    if kernels:
        print("peer: PyTorch %s, BLAS %s; per workload the fastest of eager (and TorchScript at batch 1; "
              "training: eager, optimizer per-parameter or foreach) "
              "x ATen threads %s x glibc malloc default/tuned (as the row says), OpenBLAS threads %s" %
              (torch_version(), ", ".join(kernels), "/".join(map(str, PEER_THREADS)), PEER_BLAS_THREADS))
    for r in rows:
        if r.get("error"):
            print("ERROR %s: %s" % (r["workload"], r["error"]))


def loss_span(v):
    if not v or v[0] is None or v[1] is None:
        return "-"
    return "%.3g -> %.3g" % tuple(v)


def torch_version():
    try:
        return run(["/usr/bin/python3", "-c", "import torch; print(torch.__version__)"]).strip()
    except Exception:
        return "?"


def print_cores(start, end):
    """OpenBLAS's two-thread gain (its own kernel) at the start and the end of
    the run, and a warning when the second core gave little at either."""
    gains = [p[1]["gflops_2t"] / p[1]["gflops_1t"] for p in (start, end)]
    print("second core: OpenBLAS on 2 threads is %.2fx its 1-thread speed at the start of the run, %.2fx at the end "
          "(%.1f / %.1f GFLOP/s at the end)" % (gains[0], gains[1], end[1]["gflops_1t"], end[1]["gflops_2t"]))
    if min(gains) < CORE_GAIN_OK:
        print("warning: the second core gave little during this run (the machine's host shares it): rows that "
              "use both cores, and the -O2/-O0 speedups, are not representative; run again")


def compare_builds(builds, todo, quick, pinned_blas, rounds=3):
    """Lathe alone from two builds (two LLVM versions: bench/run --vs-llvm),
    alternating A B A B A B per row so that a machine that drifts between fast
    and slow phases hits both alike; per build the best of its medians, and
    its fastest step. No peer."""
    names = [os.path.basename(b.rstrip("/")) for b in builds]
    print("workload | " + " | ".join("%s ms" % n for n in names) + " | B/A | B/A min | " +
          " | ".join("%s compile ms" % n for n in names))
    worst = 0
    for w in todo:
        log("bench: %s ..." % w.name)
        res = [[], []]
        try:
            for _ in range(rounds):
                for i, b in enumerate(builds):
                    res[i].append(lathe_side(b, w, quick, pinned_blas, extras=False))
        except Exception as e:
            print("ERROR %s: %s" % (w.name, e), flush=True)
            worst = 1
            continue
        med = [min(r["median_ms"] for r in rs) for rs in res]
        mn = [min(r["min_ms"] for r in rs) for rs in res]
        comp = [min(r["compile_ms"] for r in rs) for rs in res]
        print("%s | %s | %s | %.3f | %.3f | %.0f | %.0f" % (w.name, ms(med[0]), ms(med[1]), med[1] / med[0],
                                                          mn[1] / mn[0], comp[0], comp[1]), flush=True)
    return worst


def measure_row(build, w, quick, pinned_blas):
    """Lathe's side, PyTorch's, and for f32 inference rows ONNX Runtime's on
    the peer's model exported once (an imported row imports that very file),
    then rematch's alternating rounds of Lathe and ORT."""
    lathe = peer = ort = None
    allpeer, allort, errs = [], [], []
    with_ort = w.kind == "inference" and not w.quant and ort_version(build)[0] is not None
    d = tempfile.mkdtemp(prefix="lathe-bench-onnx-")
    try:
        info, wl = None, w
        t0 = time.time()
        try:
            if with_ort or w.imported:
                info = export_onnx(w, d)
            if w.imported:
                wl = imported_model(build, w, d, info)
            lathe = lathe_side_of(build, wl, quick, pinned_blas, True)
        except Exception as e:
            errs.append("lathe: %s" % e)
        t1 = time.time()
        try:
            peer, allpeer = peer_side(w, quick)
        except Exception as e:
            errs.append("peer: %s" % e)
        t2 = time.time()
        if w.kind == "inference" and not w.quant:
            try:
                if info or not with_ort:
                    ort, allort = ort_side(build, w, quick, info, d)
                if lathe and ort and ORT_ROUNDS > 1:
                    lathe, ort = rematch(build, wl, quick, pinned_blas, lathe, ort, info, d)
            except Exception as e:
                errs.append("ort: %s" % e)
        log("bench: %s took %.1f s (lathe) + %.1f s (peer) + %.1f s (ort)" % (w.name, t1 - t0, t2 - t1,
                                                                               time.time() - t2))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return lathe, peer, allpeer, ort, allort, errs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--native-blas", action="store_true",
                    help="(the default) both sides run OpenBLAS's own kernel choice")
    ap.add_argument("--pinned-blas", action="store_true",
                    help="Lathe keeps the environment's OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE pin; the peer does not")
    ap.add_argument("--vs", metavar="BUILD2",
                    help="time Lathe from BUILD and BUILD2 (no peer), alternating, and print both")
    ap.add_argument("workloads", nargs="*")
    a = ap.parse_intermixed_args()
    build = os.path.abspath(a.build)
    want_aot = not a.workloads or AOT_ROW in a.workloads
    want_aot_train = not a.workloads or aot.TRAIN_ROW in a.workloads
    names = [n for n in a.workloads if n not in (AOT_ROW, aot.TRAIN_ROW)]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        log("bench: unknown workload(s) %s; known: %s" % (", ".join(unknown), ", ".join(BY_NAME)))
        return 2
    todo = [BY_NAME[n] for n in names] if names else [] if a.workloads else WORKLOADS
    log("bench: load average %s (the 2 cores are shared: busy neighbours slow both sides)" %
        " ".join("%.2f" % x for x in os.getloadavg()))
    if a.vs:
        return compare_builds([build, os.path.abspath(a.vs)], todo, a.quick, a.pinned_blas)
    peak = sgemm_peak(build, a.quick)
    rows = []
    for w in todo:
        log("bench: %s ..." % w.name)
        lathe, peer, allpeer, ort, allort, errs = measure_row(build, w, a.quick, a.pinned_blas)
        if lathe and peer and lathe.get("params") != peer.get("params"):
            errs.append("the peer's model is not the same model: %s parameters against Lathe's %s" %
                        (peer.get("params"), lathe.get("params")))
        if lathe and ort and lathe.get("params") != ort.get("params"):
            errs.append("the ONNX model is not the same model: %s parameters against Lathe's %s" %
                        (ort.get("params"), lathe.get("params")))
        r = row(w, lathe, peer, allpeer, "; ".join(errs), ort, allort)
        r["sgemm_peak_gflops"] = {"lathe_kernel": peak[0]["gflops_2t"], "peer_kernel": peak[1]["gflops_2t"]}
        if w.name.startswith("mlp_train_"):
            r["gemm_floor_ms"] = gemm_floor(build, w.binds["batch"], a.quick)
        rows.append(r)
        if a.json:
            print(json.dumps(r), flush=True)
    aot_r = None
    if want_aot:
        log("bench: %s ..." % AOT_ROW)
        try:
            aot_r = aot.aot_row(build, a.quick, run, json_lines, lathe_bench_cmd, lathe_check, BY_NAME["mlp_b1"])
        except Exception as e:
            aot_r = {"workload": AOT_ROW, "error": "aot: %s" % e}
        rows.append(aot_r)
        if a.json:
            print(json.dumps(aot_r), flush=True)
    aot_t = None
    if want_aot_train:
        log("bench: %s ..." % aot.TRAIN_ROW)
        try:
            aot_t = aot.aot_train_row(build, a.quick, run, json_lines, lathe_bench_cmd, lathe_check,
                                      BY_NAME["mlp_train_b64"])
        except Exception as e:
            aot_t = {"workload": aot.TRAIN_ROW, "error": "aot: %s" % e}
        rows.append(aot_t)
        if a.json:
            print(json.dumps(aot_t), flush=True)
    # the same measurement at the end: this machine's second core comes and
    # goes (its host shares it), and a run without it is not representative
    peak_end = sgemm_peak(build, a.quick)
    if not a.json:
        print_table([r for r in rows if r is not aot_r and r is not aot_t], peak, a.pinned_blas)
        if aot_r and not aot_r.get("error"):
            print(aot.aot_line(aot_r))
        elif aot_r:
            print("ERROR %s: %s" % (AOT_ROW, aot_r["error"]))
        if aot_t and not aot_t.get("error"):
            print(aot.aot_train_line(aot_t))
        elif aot_t:
            print("ERROR %s: %s" % (aot.TRAIN_ROW, aot_t["error"]))
        print_cores(peak, peak_end)
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
