"""The AOT row of the benchmark (bench/run mlp_aot_b1): the digits MLP emitted
ahead of time (`lathe emit --bind batch=1`), linked by bench/aot_bench.c with
libmlp.a, liblathe_rt and OpenBLAS only, against the JIT on the same model.

  first result: a fresh process (exec, loading, the first mlp_forward), from
                just before the harness starts it to the first result; the
                median of STARTS runs, beside the same process doing nothing
                (the machine's floor for starting a process)
  steady:       batch-1 mlp_forward latency (median), beside lathe_bench's
                mlp_b1 (lathe_set_input + lathe_run through the JIT) run right
                after it, both with the same input size and the same threads
"""

import os
import shutil
import statistics
import subprocess
import tempfile
import time

STARTS, STARTS_QUICK = 30, 5
FIRST_MS_TARGET, STEADY_RATIO_TARGET = 2.0, 1.05


def aot_row(build, quick, run, json_lines, lathe_bench_cmd, lathe_check, workload):
    lathe = os.path.join(build, "lathe", "lathe")
    rt = os.path.join(build, "lathe", "liblathe_rt.a")
    tmp = tempfile.mkdtemp(prefix="lathe-bench-aot-")
    try:
        w = os.path.join(tmp, "w.safetensors")
        run([lathe, "init", "examples/mlp.nn", "-o", w, "--bind", "batch=1"])
        run([lathe, "emit", "examples/mlp.nn", "--weights", w, "-o", tmp, "--bind", "batch=1"])
        exe = os.path.join(tmp, "aot_bench")
        run(["gcc", "-std=c11", "-O2", "-D_POSIX_C_SOURCE=200809L", "-I", tmp, "bench/aot_bench.c",
             os.path.join(tmp, "libmlp.a"), rt, "-Wl,--as-needed", "-lopenblas", "-lm", "-lpthread", "-o", exe])
        env = dict(os.environ, LATHE_THREADS="1")  # both sides on one thread: batch 1 has nothing to split
        firsts, floors = [], []
        for _ in range(STARTS_QUICK if quick else STARTS):
            for mode, into in (("--first", firsts), ("--noop", floors)):
                t0 = time.monotonic_ns()
                out = subprocess.run([exe, mode, str(t0)], capture_output=True, text=True, env=env, check=True)
                into.append(json_lines(out.stdout)[-1]["first_result_ms"])
        reps = workload.quick_reps if quick else workload.reps
        steady = json_lines(run([exe, "--reps", str(reps), "--warmup", str(workload.warmup),
                                 "--max-seconds", str(workload.max_seconds)], env=env))[-1]
        inputs, _, _ = lathe_check(lathe, workload)
        cache = tempfile.mkdtemp(prefix="lathe-bench-cache-", dir=tmp)
        jit = json_lines(run(lathe_bench_cmd(os.path.join(build, "lathe_bench"), workload, inputs, quick),
                             env=dict(env, LATHE_CACHE_DIR=cache, XDG_CACHE_HOME=cache)))[-1]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    first = statistics.median(firsts)
    ratio = steady["median_ms"] / jit["median_ms"] if jit.get("median_ms") else None
    return {"workload": "mlp_aot_b1", "aot_first_result_ms": round(first, 4),
            "aot_first_result_min_ms": round(min(firsts), 4), "aot_starts": len(firsts),
            "process_floor_ms": round(statistics.median(floors), 4), "process_floor_min_ms": round(min(floors), 4),
            "aot_ms": round(steady["median_ms"], 6), "aot_min_ms": round(steady["min_ms"], 6),
            "jit_ms": round(jit["median_ms"], 6), "jit_min_ms": round(jit["min_ms"], 6),
            "aot_jit_ratio": round(ratio, 4) if ratio else None,
            "first_result_ok": first < FIRST_MS_TARGET,
            "steady_ok": ratio is not None and ratio <= STEADY_RATIO_TARGET}


def aot_line(r):
    return ("mlp_aot_b1: lathe emit's object (digits MLP, batch 1, linked with liblathe_rt + OpenBLAS only): "
            "process start to first result %.3f ms (median of %d starts, fastest %.3f; target < %.0f ms: %s; "
            "the same process without the forward pass: %.3f ms, fastest %.3f); "
            "steady mlp_forward %.4f ms against the JIT's %.4f ms (lathe_set_input + lathe_run), ratio %.3f "
            "(target <= %.2f: %s)" %
            (r["aot_first_result_ms"], r["aot_starts"], r["aot_first_result_min_ms"], FIRST_MS_TARGET,
             "met" if r["first_result_ok"] else "MISSED", r["process_floor_ms"], r["process_floor_min_ms"], r["aot_ms"], r["jit_ms"], r["aot_jit_ratio"] or 0,
             STEADY_RATIO_TARGET, "met" if r["steady_ok"] else "MISSED"))


TRAIN_ROW = "mlp_aot_train_b64"


def aot_train_row(build, quick, run, json_lines, lathe_bench_cmd, lathe_check, workload):
    """The digits MLP's training step emitted ahead of time (`lathe emit --entry train_step
    --bind batch=64`, bench/aot_train_bench.c): steady mlp_train_step latency beside
    lathe_bench --train's mlp_train_b64 step through the JIT, run right after it, both on
    one thread; the same program (forward, backward, Adam), so the ratio is the runner's cost
    (the emitted step copies each update into the caller's state; the JIT swaps buffers)."""
    lathe = os.path.join(build, "lathe", "lathe")
    rt = os.path.join(build, "lathe", "liblathe_rt.a")
    tmp = tempfile.mkdtemp(prefix="lathe-bench-aot-train-")
    try:
        w = os.path.join(tmp, "w.safetensors")
        run([lathe, "init", "examples/mlp.nn", "-o", w])
        run([lathe, "emit", "examples/mlp.nn", "--weights", w, "-o", tmp, "--bind", "batch=64", "--entry", "train_step"])
        exe = os.path.join(tmp, "aot_train_bench")
        run(["gcc", "-std=c11", "-O2", "-D_POSIX_C_SOURCE=200809L", "-I", tmp, "bench/aot_train_bench.c",
             os.path.join(tmp, "libmlp.a"), rt, "-Wl,--as-needed", "-lopenblas", "-lm", "-lpthread", "-o", exe])
        env = dict(os.environ, LATHE_THREADS="1")
        reps = workload.quick_reps if quick else workload.reps
        aot = json_lines(run([exe, "--reps", str(reps), "--warmup", str(workload.warmup),
                              "--max-seconds", str(workload.max_seconds)], env=env))[-1]
        inputs, _, _ = lathe_check(lathe, workload)
        cache = tempfile.mkdtemp(prefix="lathe-bench-cache-", dir=tmp)
        jit = json_lines(run(lathe_bench_cmd(os.path.join(build, "lathe_bench"), workload, inputs, quick),
                             env=dict(env, LATHE_CACHE_DIR=cache, XDG_CACHE_HOME=cache)))[-1]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = aot["median_ms"] / jit["median_ms"] if jit.get("median_ms") else None
    return {"workload": TRAIN_ROW, "aot_ms": round(aot["median_ms"], 6), "aot_min_ms": round(aot["min_ms"], 6),
            "jit_ms": round(jit["median_ms"], 6), "jit_min_ms": round(jit["min_ms"], 6),
            "aot_jit_ratio": round(ratio, 4) if ratio else None}


def aot_train_line(r):
    return ("%s: lathe emit --entry train_step (digits MLP, batch 64, Adam; linked with liblathe_rt + OpenBLAS "
            "only): mlp_train_step %.4f ms (fastest %.4f) against the JIT's training step %.4f ms (fastest %.4f), "
            "ratio %.3f" % (TRAIN_ROW, r["aot_ms"], r["aot_min_ms"], r["jit_ms"], r["jit_min_ms"],
                            r["aot_jit_ratio"] or 0))
