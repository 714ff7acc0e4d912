/* blas.h -- fp32 GEMM for generated code: OpenBLAS's sgemm, threaded by the
 * runtime pool instead of OpenBLAS's own threads. Internal prefix: rt_blas_.
 *
 * Why: OpenBLAS's workers busy-wait (with sched_yield) for a long while
 * after every threaded call. The next kernel, split over the pool, then
 * shares each core with a spinning OpenBLAS thread and ran 1.5-2x slower
 * (a [1024, 512] gelu after its product: 0.7-1.1 ms against 0.42 ms
 * alone). With one set of workers for everything there is nothing to
 * contend with: OpenBLAS runs single-threaded and a large product is cut
 * into blocks of rows (or columns) of C, one per pool thread.
 */
#ifndef LATHE_RT_BLAS_H
#define LATHE_RT_BLAS_H

#include <stddef.h>
#include <stdint.h>

/* cblas_sgemm's signature and meaning (row-major only, which is all
 * Lathe's code generators emit). A product of at least 2^20 multiply-adds
 * is cut into items (rows of C, or columns when C is wider than tall), one
 * single-threaded cblas call each: one per pool thread, or for a very large
 * product (GPT-2-small's head) up to 16 that the threads take as they
 * finish, so a slowed core does not hold the product up. A call from
 * inside a pool loop makes the same calls in turn on its caller. So a
 * product's bits depend only on its shape and the pool size, never on
 * timing or on what runs beside it (OpenBLAS's rounding does change with
 * the size of a call, so a different pool size may change the last bits). */
void rt_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc);

/* An optional second GEMM for chosen products (runtime/gemm_dnnl.c: oneDNN,
 * when the build found it): f(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta,
 * C, ldc) computes a row-major single-threaded product and returns 0, or
 * returns -1 to leave it to OpenBLAS (a shape it is not faster on). Every
 * cblas call rt_sgemm would make goes to it first, whole or as one item of
 * a split product. Installed by the JIT (cg_compile, with LATHE_DNNL=1) only: the runtime
 * library itself, what emitted models link, keeps OpenBLAS alone. NULL
 * removes it. */
typedef int (*rt_gemm_provider)(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                                const float *B, int ldb, float beta, float *C, int ldc);
void rt_blas_set_provider(rt_gemm_provider f);

/* A hook that sees every product rt_sgemm is handed whole, before any
 * split, with the same arguments as a provider (row-major; it may use the
 * pool itself): 0 when it computed the product, -1 to go on as without
 * it. runtime/gemm_pack.c installs it for inference programs' products by
 * constant weights (oneDNN's matmul primitive on packed weights). NULL
 * removes it. */
void rt_blas_set_whole(rt_gemm_provider f);

/* C = A B + bias (bias[n] added to every row), A not transposed, B as
 * stored (tb): 0 when the hook computed it, -1 to leave it. */
typedef int (*rt_gemm_bias_fn)(int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                               const float *bias, float *C, int ldc);
/* The whole-product hook for a product with a bias (runtime/gemm_pack.c:
 * the bias inside oneDNN's kernel instead of a pass that fills C first).
 * NULL removes it. */
void rt_blas_set_whole_bias(rt_gemm_bias_fn f);

/* C = A B + bias: the hook's where it takes it, else C's rows filled with
 * the bias (over the pool) and rt_sgemm with beta = 1. */
void rt_sgemm_bias(int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, const float *bias,
                   float *C, int ldc);

/* Put OpenBLAS on one thread for good (idempotent). rt_sgemm calls it; so
 * do kernels that call cblas_sgemm directly. */
void rt_blas_single(void);

/* Ready OpenBLAS for rt_pool_size() threads at once, before any BLAS call:
 * calls rt_blas_single, then checks that the address space holds one OpenBLAS
 * buffer (128 MiB, mapped but untouched) per thread and makes them all.
 * OpenBLAS itself retries a failing buffer allocation for ever, so under a
 * tight `ulimit -v` the first product would hang; here it is an error
 * ("out of memory: ...") in msg, -1. Cheap after the first success. */
int rt_blas_ready(char *msg, size_t msgn);

#endif
