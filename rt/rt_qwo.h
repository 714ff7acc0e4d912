/* rt_qwo.h -- w8 / w4 products with fewer than 16 rows on integer dot
 * products (rt/rt_qwo.c; the arithmetic is rt_q_wo_row's, rt/rt_quant.h). */
#ifndef LATHE_RT_QWO_H
#define LATHE_RT_QWO_H

#include <stdint.h>

/* scr: rt_qwo_scratch_bytes(M, K) bytes, 64-byte aligned */
int64_t rt_qwo_scratch_bytes(int64_t M, int64_t K);
void rt_qwo_matmul(float *out, const float *x, const void *w, const float *s, void *scr, int mode, int isa, int64_t M,
                   int64_t K, int64_t N);

#endif
