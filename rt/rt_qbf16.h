/* rt_qbf16.h -- bf16 products on the host's bf16 dot products (AVX-512
 * BF16: rt/rt_qbf16.c), and the activations' rounding to bf16 that the
 * kernel and the interpreter's reference (ir/interp_quant.c) share. */
#ifndef LATHE_RT_QBF16_H
#define LATHE_RT_QBF16_H

#include <stdint.h>
#include <string.h>

/* f32 to bf16, round to nearest even; NaN stays a (quiet) NaN */
static inline uint16_t rt_qbf16_round(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* out[M, N] = bf16(x) [M, K] . w^T, w [N, K] bf16, f32 sums; then + bias
 * (NULL: none) and relu (act 1). scr: rt_qbf16_scratch_bytes. Only on a
 * CPU where lathe_rt_bf16_isa said LATHE_RT_ISA_AVX512BF16. */
void rt_qbf16_matmul(float *out, const float *x, const uint16_t *w, const float *bias, int64_t act, void *scr,
                     int64_t M, int64_t K, int64_t N);
int64_t rt_qbf16_scratch_bytes(int64_t M, int64_t K);

#endif
