/* rt_qdq.c -- static int8 between products (rt/rt_qdq.h): the quantize
 * and dequantize kernels, and the int8 product whose input is already int8
 * (its activation quantization skipped: the rows are copied into the
 * kernel's padded layout) or whose output is int8 (requantized in the
 * kernel's epilogue with the reading product's scale). */
#include <string.h>

#include "lathe_rt.h"
#include "rt_amx.h"
#include "rt_qdq.h"
#include "rt_qgemm.h"
#include "rt_quant.h"

void lathe_rt_quantize(int8_t *out, const float *x, const float *s, int64_t n, int64_t idx) {
  float inv = rt_q_inv(s[idx]);
  for (int64_t i = 0; i < n; i++) out[i] = rt_q_requant(x[i], inv);
}

void lathe_rt_dequantize(float *out, const int8_t *q, const float *s, int64_t n, int64_t idx) {
  float sx = s[idx];
  for (int64_t i = 0; i < n; i++) out[i] = (float)q[i] * sx;
}

int64_t lathe_rt_qmatmul_s8io_scratch_bytes(int64_t M, int64_t K) { return M * rt_q_kpad(K) + 64 + M * 4 + 64; }

/* the rows [M, Kp] the kernel of isa reads: int8 input copied (+ 128 for
 * the u8 x s8 kernels), f32 input quantized with the product's scale */
static void rows(const void *x, int xi8, uint8_t *xq, float *sx, float s, int64_t M, int64_t K, int64_t isa) {
  int64_t Kp = rt_q_kpad(K);
  int off = lathe_rt_isa_u8(isa) ? 128 : 0;
  for (int64_t m = 0; m < M; m++) {
    uint8_t *q = xq + m * Kp;
    if (xi8) {
      const int8_t *r = (const int8_t *)x + m * K;
      for (int64_t k = 0; k < K; k++) q[k] = (uint8_t)(r[k] + off);
      memset(q + K, off, (size_t)(Kp - K));
      sx[m] = s;
    } else {
      const float *r = (const float *)x + m * K;
      sx[m] = isa == LATHE_RT_ISA_AMXINT8   ? rt_amx_row(r, K, Kp, s, q)
              : isa != LATHE_RT_ISA_SCALAR ? rt_q_row_simd(r, K, Kp, off, s, q, isa == LATHE_RT_ISA_AVX512VNNI)
                                         : rt_q_row_static(r, K, Kp, off, s, q);
    }
  }
}

void lathe_rt_qmatmul_s8io(void *out, const void *x, const void *w, const float *s, const int32_t *c,
                           const float *bias, const float *os, void *scr, int64_t M, int64_t K, int64_t N, int64_t isa,
                           int64_t act, int64_t xi8, int64_t oidx) {
  int64_t Kp = rt_q_kpad(K);
  uint8_t *xq = scr;
  float *sx = (float *)(void *)((char *)scr + ((M * Kp + 63) / 64) * 64);
  rows(x, (int)xi8, xq, sx, s[N], M, K, isa);
  rt_qgemm_args a = {.out = os ? NULL : out, .out8 = os ? out : NULL, .oinv = os ? rt_q_inv(os[oidx]) : 0.0f,
                     .xq = xq, .sx = sx, .w = w, .s = s, .c = c, .bias = bias, .act = act, .M = M, .N = N, .Kp = Kp};
  rt_q_product(&a, isa);
}
