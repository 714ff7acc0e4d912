/* rt_quant.h -- what the quantized product (IR op QMATMUL, lathe_rt_qmatmul)
 * and its reference in the interpreter (ir/interp_quant.c) must agree on
 * bit for bit: the storage layouts, the quantization of weights (done once,
 * by `lathe quantize`) and of activation rows (int8-dynamic, at run time).
 *
 * Shapes: x [M, K] f32 (M = every leading axis), the result [M, N] f32.
 * Weights are stored per output column n, as PyTorch's Linear does ([N, K]):
 *   w8    w i8 [N, K],            s f32 [N, K/32]: w[n,k] ~ s[n, k/32] * q
 *   w4    w u8 [N, K/2],          s f32 [N, K/32]: group g's 32 values in 16
 *         bytes [n, 16g .. 16g+15]: byte j holds value j in its low nibble
 *         and value 16+j in its high nibble, each stored + 8 (-8..7)
 *   dq8   w i8 [Np, Kp] (Np = N rounded up to 16, Kp = K rounded up to 64,
 *         zero padded) in blocks of 16 columns by 4 inputs, as u8 x s8 dot
 *         products read them: q[n,k] at rt_q_dq8_at(n, k, Kp); s f32 [N]
 *         (per output channel, symmetric: q in -127..127) and c i32 [N] =
 *         128 * sum_k q[n,k] (the u8 x s8 dot products' offset correction)
 *   bf16, f16: w [N, K] 16-bit floats.
 *   s8    (static int8) as dq8, but s f32 [N + 1]: s[N] is the input's
 *         scale sx, calibrated by `lathe quantize --mode int8` (0: not
 *         calibrated, the rows are quantized as int8-dynamic's are)
 * int8-dynamic quantizes each activation row at run time: a = max |x|,
 * qx = round-to-even(x * (127 / a)) in -127..127, row scale a / 127; then
 * y[m,n] = (float)acc * (sx[m] * s[n]) with acc = sum_k qx*q exactly, as an
 * int32 (K <= RT_Q_MAXK keeps it from overflowing). */
#ifndef LATHE_RT_QUANT_H
#define LATHE_RT_QUANT_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

enum { RT_Q_GROUP = 32, RT_Q_KALIGN = 64, RT_Q_MAXK = 1 << 16 };

static inline int64_t rt_q_kpad(int64_t K) { return (K + RT_Q_KALIGN - 1) / RT_Q_KALIGN * RT_Q_KALIGN; }
static inline int64_t rt_q_npad(int64_t N) { return (N + 15) / 16 * 16; }
/* where int8-dynamic's weight (n, k) is stored */
static inline int64_t rt_q_dq8_at(int64_t n, int64_t k, int64_t Kp) {
  return ((n / 16) * (Kp / 4) + k / 4) * 64 + (n % 16) * 4 + k % 4;
}

/* round to nearest, ties to even (the default rounding mode): cvtss2si,
 * not a libm call (a call per activation cost more than the products) */
static inline int rt_q_rint(float v) {
#if defined(__SSE__)
  return _mm_cvtss_si32(_mm_set_ss(v));
#else
  return (int)nearbyintf(v);
#endif
}

/* One activation row to int8 (offset: 0 gives s8, 128 gives the u8 that
 * u8 x s8 dot products take); q[K..Kp) are zeros (offset). Returns the row's
 * scale. */
static inline float rt_q_row(const float *x, int64_t K, int64_t Kp, int offset, uint8_t *q) {
  float a = 0;
  for (int64_t k = 0; k < K; k++) {
    float v = fabsf(x[k]);
    a = v > a ? v : a;
  }
  float inv = a > 0 ? 127.0f / a : 0.0f;
  for (int64_t k = 0; k < K; k++) q[k] = (uint8_t)(rt_q_rint(x[k] * inv) + offset);
  memset(q + K, offset, (size_t)(Kp - K));
  return a / 127.0f;
}

/* One activation row to int8 with the calibrated scale sx (static int8):
 * qx = round-to-even(x / sx) clamped to -127..127 (the clamp on the float,
 * before the conversion: a value past the int range must not wrap). sx <= 0
 * (not calibrated): the row's own scale, as rt_q_row. Returns the scale. */
static inline float rt_q_row_static(const float *x, int64_t K, int64_t Kp, int offset, float sx, uint8_t *q) {
  if (!(sx > 0)) return rt_q_row(x, K, Kp, offset, q);
  float inv = 1.0f / sx;
  for (int64_t k = 0; k < K; k++) {
    float v = x[k] * inv;
    v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v == v ? v : 0.0f;
    q[k] = (uint8_t)(rt_q_rint(v) + offset);
  }
  memset(q + K, offset, (size_t)(Kp - K));
  return sx;
}

/* The output of one int8-dynamic dot product. */
static inline float rt_q_out(int32_t acc, float sx, float sw) { return (float)acc * (sx * sw); }

/* Static int8's epilogue, in the product's kernel: + bias (b: NULL for
 * none), then relu (act 1); the same float operations as the add and relu
 * it replaces. */
static inline float rt_q_epilogue(float y, float b, int has_b, int64_t act) {
  if (has_b) y = y + b;
  return act == 1 ? (y > 0.0f ? y : 0.0f) : y;
}

/* Weight quantization (lathe quantize): symmetric, per group (w8, w4) or
 * per row (dq8), scale = max |w| / qmax, q = round-to-even(w / scale). */
static inline float rt_q_scale(const float *w, int64_t n, int qmax) {
  float a = 0;
  for (int64_t k = 0; k < n; k++) a = fabsf(w[k]) > a ? fabsf(w[k]) : a;
  return a / (float)qmax;
}
static inline int rt_q_round(float w, float s, int qmin, int qmax) {
  float q = s > 0 ? nearbyintf(w / s) : 0.0f;
  return q < (float)qmin ? qmin : q > (float)qmax ? qmax : (int)q;
}

/* LATHE_CPU_FEATURES (env) turns feature name off: "-name" in its list, or "none" */
int rt_q_feature_off(const char *env, const char *name);

/* 16-bit floats to f32 */
static inline float rt_q_bf16(uint16_t h) {
  uint32_t b = (uint32_t)h << 16;
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}
static inline float rt_q_f16(uint16_t h) {
  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, b;
  if (e == 31) b = s | 0x7f800000u | (m << 13);
  else if (e) b = s | ((e + 112) << 23) | (m << 13);
  else if (!m) b = s;
  else { /* subnormal: normalise */
    e = 113;
    while (!(m & 1024)) m <<= 1, e--;
    b = s | (e << 23) | ((m & 1023) << 13);
  }
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

#endif
