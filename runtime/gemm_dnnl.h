/* gemm_dnnl.h -- oneDNN as a second GEMM for the products it is faster on
 * (issue 18; bench/README.md, "OpenBLAS against oneDNN and BLIS"), when the
 * build found it (CMake option LATHE_DNNL, Debian's libdnnl-dev): installed
 * into rt_sgemm (rt/blas.h, rt_blas_set_provider) by the JIT when
 * LATHE_DNNL=1. Built without
 * oneDNN, these do nothing. Internal prefix: gdn_. */
#ifndef LATHE_GEMM_DNNL_H
#define LATHE_GEMM_DNNL_H

/* Install the provider (once; cheap after) when LATHE_DNNL=1 is in the
 * environment; otherwise OpenBLAS alone, as in a build without oneDNN.
 * Opt-in because oneDNN rounds some products otherwise than OpenBLAS does
 * in a way that is not the same at every optimisation level: with it on,
 * tests/test_passes.c's -O0 and -O3 training steps of examples/gpt.nn
 * differed in 1-2 weights of a layer after Adam (with OpenBLAS they agree
 * bit for bit). */
void gdn_install(void);

/* 1 when this build has oneDNN */
int gdn_built(void);

/* products oneDNN has computed so far (the tests' proof it ran) */
long gdn_calls(void);

/* the provider itself (rt_gemm_provider): 0 when it computed the product,
 * -1 to leave it to OpenBLAS */
int gdn_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc);

#endif
