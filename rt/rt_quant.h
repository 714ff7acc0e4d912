/* rt_quant.h -- what the quantized product (IR op QMATMUL, lathe_rt_qmatmul)
 * and its reference in the interpreter (ir/interp_quant.c) must agree on
 * bit for bit: the storage layouts, the quantization of weights (done once,
 * by `lathe quantize`) and of activation rows (int8-dynamic, at run time).
 *
 * Shapes: x [M, K] f32 (M = every leading axis), the result [M, N] f32.
 * Weights are stored per output column n:
 *   w8    w i8 [Np, K],           s f32 [Np, K/32]: w[n,k] ~ s[n, k/32] * q,
 *         in blocks of 16 columns by 4 inputs as dq8 (q at rt_q_w8_at), the
 *         scales in blocks of 16 columns (s at rt_q_ws_at): one 64-byte load
 *         is 16 columns' next 4 weights, one 64-byte load 16 columns' scales
 *   w4    w u8 [Np, K/2],         s f32 [Np, K/32]: per block of 16 columns
 *         and group g of 32 inputs, 4 runs of 64 bytes; in run i, byte
 *         4 c + r holds column c's input 4 i + r in its low nibble and
 *         16 + 4 i + r in its high nibble, each stored + 8 (-8..7)
 *         (rt_q_w4_at); the scales as w8's
 *   (Np = N rounded up to 16; the padding columns are zeros.)
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

/* The version of the w8 / w4 layouts above, which `lathe quantize` writes
 * into the file's "__metadata__" (RT_Q_LAYOUT_KEY): files of the older
 * layout have the same tensor shapes, so only this tells them apart. */
#define RT_Q_LAYOUT_KEY "lathe.quant_layout"
#define RT_Q_LAYOUT "2"

/* w8 / w4 (the layouts above; K a multiple of 32): weight (n, k)'s byte,
 * w4's nibble (*hi: the high one), the scale of (n, group g) */
static inline int64_t rt_q_w8_at(int64_t n, int64_t k, int64_t K) { return rt_q_dq8_at(n, k, K); }
static inline int64_t rt_q_w4_at(int64_t n, int64_t k, int64_t K, int *hi) {
  int64_t r = k % 32;
  *hi = r >= 16;
  return ((n / 16) * (K / 32) + k / 32) * 256 + (r % 16) / 4 * 64 + (n % 16) * 4 + r % 4;
}
static inline int64_t rt_q_ws_at(int64_t n, int64_t g, int64_t G) { return ((n / 16) * G + g) * 16 + n % 16; }
/* the signed weight q (w8: -127..127, w4: -8..7) */
static inline int rt_q_wo_q(int w4, const void *w, int64_t n, int64_t k, int64_t K) {
  if (!w4) return ((const int8_t *)w)[rt_q_w8_at(n, k, K)];
  int hi;
  uint8_t b = ((const uint8_t *)w)[rt_q_w4_at(n, k, K, &hi)];
  return (hi ? b >> 4 : b & 15) - 8;
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

/* w8 / w4 with fewer than 16 rows (generation's decode step): each row's
 * activations are quantized per group of 32 inputs as rt_q_row quantizes a
 * row (sx[g] its scale), and each group's dot product is exact in int32:
 * y[m,n] = sum_g (float)dot_g * (sx[g] * s[n,g]). cor[g] = -off * sum of
 * the group's q: the offset correction of the u8 forms (w4's nibbles are
 * stored + 8, w8's bytes read + 128). From 16 rows (or K past 16384) the
 * weights are dequantized and multiplied in f32 instead. */
static inline int rt_q_wo_rows(int64_t M, int64_t K) { return M < 16 && K <= 16384; }
static inline void rt_q_wo_row(const float *x, int64_t K, int off, int8_t *q, float *sx, int32_t *cor) {
  for (int64_t g = 0; g < K / 32; g++) {
    sx[g] = rt_q_row(x + g * 32, 32, 32, 0, (uint8_t *)(q + g * 32));
    int32_t sum = 0;
    for (int j = 0; j < 32; j++) sum += q[g * 32 + j];
    cor[g] = -off * sum;
  }
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
