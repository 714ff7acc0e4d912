/* rt_cblas.h -- the one BLAS function the run-time kernels call,
 * cblas_sgemm: OpenBLAS's, or, when the library is built with
 * LATHE_RT_NOBLAS (liblathe_rt_noblas, and the rt sources a cross compiler
 * builds for another CPU), the plain C product of rt_refgemm.c, so a program
 * linking an emitted model needs no BLAS at all. Internal prefix: rt_ref_. */
#ifndef LATHE_RT_CBLAS_H
#define LATHE_RT_CBLAS_H

#ifdef LATHE_RT_NOBLAS
/* cblas.h's values, so code written for it reads the same */
enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };
/* C = alpha op(A) op(B) + beta C, row-major (order is ignored): cblas_sgemm's meaning */
void rt_ref_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);
#define cblas_sgemm rt_ref_sgemm
#else
#include <cblas.h>
#endif

#endif
