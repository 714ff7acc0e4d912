/* rt_qgemm.h -- the fast paths of the int8 product (int8-dynamic and
 * static int8, rt/rt_quant.c calls them): activation rows quantized in
 * SIMD registers, and the AVX-512 VNNI product in register tiles with the
 * epilogue applied to the accumulators. Each gives exactly what the scalar
 * code in rt/rt_quant.h gives (the same roundings, the same float
 * operations), so the kernels still equal the interpreter's reference bit
 * for bit. */
#ifndef LATHE_RT_QGEMM_H
#define LATHE_RT_QGEMM_H

#include <stdint.h>

/* One activation row to int8 as rt_q_row (sx <= 0: the row's own scale) or
 * rt_q_row_static (sx > 0) do, in AVX-512 (wide 1) or AVX2 (wide 0) lanes;
 * the caller checked the CPU has them. Returns the row's scale. */
float rt_q_row_simd(const float *x, int64_t K, int64_t Kp, int offset, float sx, uint8_t *q, int wide);

/* The u8 x s8 product of rows [0, M) of xq ([M, Kp], x + 128) by the
 * weights' column blocks [b0, b1) (16 columns each, rt_q_dq8_at's layout),
 * in tiles of 6 rows by 4 blocks (24 zmm accumulators, K innermost), each
 * output written once: (acc - c[n]) * (sx[m] * s[n]) [+ bias[n]] [relu]. */
typedef struct {
  float *out;         /* [M, N], or NULL when out8 is written */
  int8_t *out8;       /* [M, N] requantized (rt/rt_qdq.h: rt_q_requant with oinv), or NULL */
  float oinv;         /* 1 / the reading product's input scale */
  const uint8_t *xq;  /* [M, Kp] */
  const float *sx;    /* [M] */
  const int8_t *w;    /* [Np, Kp] blocked */
  const float *s;     /* [N] */
  const int32_t *c;   /* [N] */
  const float *bias;  /* [N] or NULL */
  int64_t act;        /* 1: relu */
  int64_t M, N, Kp;
} rt_qgemm_args;
void rt_qgemm_512(const rt_qgemm_args *a, int64_t b0, int64_t b1);
/* The same in 256-bit registers, tiles of 4 rows by 16 columns (8 ymm
 * accumulators): AVX-VNNI (vnni 1: xq holds x + 128, c corrects) or AVX2
 * (vnni 0: xq holds s8 x, sign trick, c unread). */
void rt_qgemm_256(const rt_qgemm_args *a, int64_t b0, int64_t b1, int vnni);
/* The product of a's rows on the kernel of isa (LATHE_RT_ISA_*, not F32),
 * split over the pool as lathe_rt_qmatmul splits it (rt/rt_quant.c). */
void rt_q_product(const rt_qgemm_args *a, int64_t isa);

#endif
