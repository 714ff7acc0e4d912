/* threadpool.h -- one persistent pool of worker threads for the parallel
 * loops of generated code (codegen/llvm). Internal prefix: rt_pool_.
 *
 * Handing work to a sleeping thread costs 70-160 us on the machines Lathe
 * targets, more than most kernels of a small model, so workers spin briefly
 * (about 50 us) after each loop before they sleep, and callers keep small
 * loops on one thread (the grain). Work is split into fixed contiguous
 * parts that depend only on n, the grain and the pool size, never on
 * timing, so results are bit-identical from run to run.
 *
 * The pool does not call OpenBLAS; callers whose parts call it set
 * OpenBLAS to one thread around the loop so the two pools never
 * oversubscribe the cores (codegen/llvm/cg_jit.c does).
 */
#ifndef LATHE_THREADPOOL_H
#define LATHE_THREADPOOL_H

#include <stdint.h>

/* part: which part this is, 0 <= part < rt_pool_size() (per-part scratch) */
typedef void (*rt_pool_fn)(void *ctx, int64_t lo, int64_t hi, int part);

/* Threads a loop may use, the caller included: what rt_pool_set_size asked
 * for, else LATHE_THREADS if set (1..64), else what rt_pool_default_size
 * said, else the online CPUs; never more than the workers started (the pool
 * starts on first use, at that size). */
int rt_pool_size(void);

/* Use n threads (1..64) from now on: before the pool starts, its size;
 * afterwards at most the started size. Returns rt_pool_size(). Call it
 * between loops, not while one runs. */
int rt_pool_set_size(int n);

/* The size the pool starts at when neither rt_pool_set_size nor
 * LATHE_THREADS says: emitted models default to one thread, not the CPUs. */
void rt_pool_default_size(int n);

/* fn(ctx, lo, hi, part) over [0, n) in min(rt_pool_size(), n / grain) (at least
 * one) contiguous parts of equal size; the caller and the workers claim
 * parts until none is left (a worker not yet running leaves its share to
 * the caller), and the caller returns when every part is done. A call made while another loop runs (from
 * a part, or from a second thread) runs all of [0, n) on the caller as part
 * 0, which gives the same result. */
void rt_pool_for(int64_t n, int64_t grain, rt_pool_fn fn, void *ctx);

/* rt_pool_for, but in `fine` parts (at most n / grain, 65535) where that is
 * more than the threads: the threads claim them as they finish, so a
 * thread the system preempts, or a worker that starts late, holds back
 * one small part instead of a thread's whole share (the direct conv: on a
 * shared machine the other thread's half came in at up to 2.3x the
 * caller's). For fn whose results do not depend on how [0, n) is cut (it
 * must not size per-part scratch by rt_pool_size: part goes up to fine). */
void rt_pool_for_fine(int64_t n, int64_t grain, int64_t fine, rt_pool_fn fn, void *ctx);

/* Whether a loop is running now (on any thread): work started from inside
 * one should not start threads of its own (runtime/gemm_pack.c). */
int rt_pool_busy(void);

#endif
