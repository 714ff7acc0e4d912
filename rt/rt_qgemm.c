/* rt_qgemm.c -- the int8 product's fast paths (rt/rt_qgemm.h).
 *
 * Profiled at K = N = 1024 (perf, one thread, M = 256): the VNNI dot
 * products were half the time; quantizing the rows one cvtss2si at a time
 * took a quarter and the int32 sums' round trip through memory to a scalar
 * epilogue most of the rest. So the rows are quantized 16 (or 8) values per
 * instruction, and the product keeps a tile of 6 rows by 64 columns in 24
 * accumulators (4 weight loads and 6 broadcasts per 24 vpdpbusd, where the
 * 4 x 32 tile had 6 loads per 8), writing each tile's outputs once, scaled,
 * biased and rectified in registers. */
#include <immintrin.h>
#include <string.h>

#include "rt/rt_qgemm.h"

#define T512 __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define TAVX2 __attribute__((target("avx2,fma")))
#define INLINE inline __attribute__((always_inline))

/* ---- rows ----
 * The scalar code's operations lane by lane: max |x| skipping NaNs (v > a ?
 * v : a is max_ps(v, a)), x * inv, the static clamp with NaN to 0, the
 * conversion in the current rounding mode (to nearest even, as cvtss2si),
 * + offset, and the int's low byte (a truncation, as the scalar cast: an
 * out-of-range conversion's 0x80000000 gives the same byte). */

static T512 float row_512(const float *x, int64_t K, int offset, float sx, uint8_t *q) {
  float inv;
  int clamp = sx > 0; /* static: the calibrated scale clamps; a row's own needs none */
  if (clamp) {
    inv = 1.0f / sx;
  } else {
    __m512 a = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k += 16) {
      __mmask16 m = K - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (K - k)) - 1);
      a = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps(m, x + k)), a);
    }
    float am = _mm512_reduce_max_ps(a);
    sx = am / 127.0f, inv = am > 0 ? 127.0f / am : 0.0f;
  }
  const __m512 vi = _mm512_set1_ps(inv), hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
  const __m512i off = _mm512_set1_epi32(offset);
  for (int64_t k = 0; k < K; k += 16) {
    __mmask16 m = K - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (K - k)) - 1);
    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + k), vi);
    if (clamp) {
      __m512 c = _mm512_max_ps(lo, _mm512_min_ps(hi, v)); /* NaN passes through both */
      v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), c);
    }
    _mm512_mask_cvtepi32_storeu_epi8(q + k, m, _mm512_add_epi32(_mm512_cvtps_epi32(v), off));
  }
  return sx;
}

/* low bytes of 8 int32 lanes (a truncation, as vpmovdb) */
static TAVX2 void store8_avx2(uint8_t *q, __m256i v, int64_t n) {
  const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1,
                                        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  __m256i b = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, pick), _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
  uint64_t t = (uint64_t)_mm_cvtsi128_si64(_mm256_castsi256_si128(b));
  memcpy(q, &t, (size_t)n);
}

static TAVX2 float row_avx2(const float *x, int64_t K, int offset, float sx, uint8_t *q) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  float inv;
  int clamp = sx > 0; /* static: the calibrated scale clamps; a row's own needs none */
  if (clamp) {
    inv = 1.0f / sx;
  } else {
    __m256 a = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) a = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)), a);
    float l[8], am = 0;
    _mm256_storeu_ps(l, a);
    for (int i = 0; i < 8; i++) am = l[i] > am ? l[i] : am;
    for (; k < K; k++) am = __builtin_fabsf(x[k]) > am ? __builtin_fabsf(x[k]) : am;
    sx = am / 127.0f, inv = am > 0 ? 127.0f / am : 0.0f;
  }
  const __m256 vi = _mm256_set1_ps(inv), hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
  const __m256i off = _mm256_set1_epi32(offset);
  for (int64_t k = 0; k < K; k += 8) {
    float t[8] = {0};
    int64_t n = K - k >= 8 ? 8 : K - k;
    memcpy(t, x + k, (size_t)n * sizeof *t);
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(t), vi);
    if (clamp) {
      __m256 c = _mm256_max_ps(lo, _mm256_min_ps(hi, v));
      v = _mm256_and_ps(c, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
    }
    store8_avx2(q + k, _mm256_add_epi32(_mm256_cvtps_epi32(v), off), n);
  }
  return sx;
}

float rt_q_row_simd(const float *x, int64_t K, int64_t Kp, int offset, float sx, uint8_t *q, int wide) {
  float r = wide ? row_512(x, K, offset, sx, q) : row_avx2(x, K, offset, sx, q);
  memset(q + K, offset, (size_t)(Kp - K));
  return r;
}

/* ---- the product: MR rows x NB blocks of 16 columns ---- */

static T512 INLINE void epilogue(const rt_qgemm_args *a, int64_t m, int64_t n, __m512i acc) {
  int64_t left = a->N - n;
  __mmask16 k = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
  __m512 scale = _mm512_mul_ps(_mm512_set1_ps(a->sx[m]), _mm512_maskz_loadu_ps(k, a->s + n)); /* sx * sw */
  __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc, _mm512_maskz_loadu_epi32(k, a->c + n))), scale);
  if (a->bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(k, a->bias + n));
  if (a->act == 1) y = _mm512_max_ps(y, _mm512_setzero_ps()); /* y > 0 ? y : 0, NaN and -0 to 0 */
  if (a->out8) { /* requantized: rt_q_requant's operations, as row_512's */
    __m512 v = _mm512_mul_ps(y, _mm512_set1_ps(a->oinv));
    __m512 c = _mm512_max_ps(_mm512_set1_ps(-127.0f), _mm512_min_ps(_mm512_set1_ps(127.0f), v));
    v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), c);
    _mm512_mask_cvtepi32_storeu_epi8(a->out8 + m * a->N + n, k, _mm512_cvtps_epi32(v));
    return;
  }
  _mm512_mask_storeu_ps(a->out + m * a->N + n, k, y);
}

/* Accumulators as named variables, not an array, and vpdpbusd in inline
 * assembly: with the intrinsic, gcc 12 copied every accumulator to a fresh
 * register and to the stack on each step (half the loop's instructions).
 * MR and NB are constants after inlining, so the unused ones and their
 * tests vanish. */
#define DPBUSD(acc, x, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define ACC_ROW(i) __m512i a##i##0 = z, a##i##1 = z, a##i##2 = z, a##i##3 = z;
#define DOT_ROW(i)                                                                                                     \
  if (MR > i) {                                                                                                        \
    int32_t t;                                                                                                         \
    memcpy(&t, x + i * Kp + k, 4);                                                                                     \
    __m512i xb = _mm512_set1_epi32(t);                                                                                 \
    DPBUSD(a##i##0, xb, w0);                                                                    \
    if (NB > 1) DPBUSD(a##i##1, xb, w1);                                                        \
    if (NB > 2) DPBUSD(a##i##2, xb, w2);                                                        \
    if (NB > 3) DPBUSD(a##i##3, xb, w3);                                                        \
  }
#define OUT_ROW(i)                                                                                                     \
  if (MR > i) {                                                                                                        \
    epilogue(a, m0 + i, b * 16, a##i##0);                                                                              \
    if (NB > 1) epilogue(a, m0 + i, b * 16 + 16, a##i##1);                                                             \
    if (NB > 2) epilogue(a, m0 + i, b * 16 + 32, a##i##2);                                                             \
    if (NB > 3) epilogue(a, m0 + i, b * 16 + 48, a##i##3);                                                             \
  }

static T512 INLINE void tile(const rt_qgemm_args *a, int64_t m0, int64_t b, const int MR, const int NB) {
  const __m512i z = _mm512_setzero_si512();
  ROWS(ACC_ROW)
  const int64_t Kp = a->Kp;
  const uint8_t *x = a->xq + m0 * Kp;
  const int8_t *w = a->w + b * 16 * Kp;
  for (int64_t k = 0; k < Kp; k += 4) {
    const int8_t *wk = w + k * 16;
    __m512i w0 = _mm512_loadu_si512((const void *)wk);
    __m512i w1 = NB > 1 ? _mm512_loadu_si512((const void *)(wk + 16 * Kp)) : z;
    __m512i w2 = NB > 2 ? _mm512_loadu_si512((const void *)(wk + 32 * Kp)) : z;
    __m512i w3 = NB > 3 ? _mm512_loadu_si512((const void *)(wk + 48 * Kp)) : z;
    ROWS(DOT_ROW)
  }
  ROWS(OUT_ROW)
}

/* each (rows, blocks) shape its own unrolled copy */
#define TILE_ROW(mr)                                                                                                   \
  static T512 void tile##mr(const rt_qgemm_args *a, int64_t m0, int64_t b, int nb) {                                  \
    if (nb == 4) tile(a, m0, b, mr, 4);                                                                                \
    else if (nb == 3) tile(a, m0, b, mr, 3);                                                                           \
    else if (nb == 2) tile(a, m0, b, mr, 2);                                                                           \
    else tile(a, m0, b, mr, 1);                                                                                        \
  }
TILE_ROW(1)
TILE_ROW(2)
TILE_ROW(3)
TILE_ROW(4)
TILE_ROW(5)
TILE_ROW(6)

void rt_qgemm_512(const rt_qgemm_args *a, int64_t b0, int64_t b1) {
  static void (*const rows[7])(const rt_qgemm_args *, int64_t, int64_t, int) = {NULL,   tile1, tile2, tile3,
                                                                                  tile4, tile5, tile6};
  for (int64_t b = b0; b < b1; b += 4) {
    int nb = b1 - b < 4 ? (int)(b1 - b) : 4;
    for (int64_t m0 = 0; m0 < a->M; m0 += 6) rows[a->M - m0 < 6 ? a->M - m0 : 6](a, m0, b, nb);
  }
}

/* ---- 256 bits: MR rows x one block of 16 columns (two halves of 8) ----
 * AVX-VNNI's vpdpbusd in inline assembly ({vex}: the 256-bit VEX form)
 * for the reason above; that also lets one AVX2-targeted function hold
 * both forms. AVX2: maddubs(|x|, sign(w, x)) (pairs of at most
 * 2 * 127 * 127 never saturate), then madd with ones to int32. */
static TAVX2 INLINE __m256i dot256(__m256i acc, __m256i xb, __m256i w, const int VNNI) {
  if (VNNI) {
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(xb), "x"(w));
    return acc;
  }
  __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(xb), _mm256_sign_epi8(w, xb));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

static TAVX2 INLINE void epilogue256(const rt_qgemm_args *a, int64_t m, int64_t n, __m256i acc, const int VNNI) {
  int64_t left = a->N - n;
  if (left <= 0) return;
  __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32(left >= 8 ? 8 : (int)left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256 scale = _mm256_mul_ps(_mm256_set1_ps(a->sx[m]), _mm256_maskload_ps(a->s + n, k)); /* sx * sw */
  if (VNNI) acc = _mm256_sub_epi32(acc, _mm256_maskload_epi32((const int *)(a->c + n), k));
  __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), scale);
  if (a->bias) y = _mm256_add_ps(y, _mm256_maskload_ps(a->bias + n, k));
  if (a->act == 1) y = _mm256_max_ps(y, _mm256_setzero_ps());
  if (a->out8) { /* requantized: rt_q_requant's operations, as row_avx2's */
    __m256 v = _mm256_mul_ps(y, _mm256_set1_ps(a->oinv));
    __m256 c = _mm256_max_ps(_mm256_set1_ps(-127.0f), _mm256_min_ps(_mm256_set1_ps(127.0f), v));
    v = _mm256_and_ps(c, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
    store8_avx2((uint8_t *)a->out8 + m * a->N + n, _mm256_cvtps_epi32(v), left >= 8 ? 8 : left);
    return;
  }
  _mm256_maskstore_ps(a->out + m * a->N + n, k, y);
}

#define ROWS4(X) X(0) X(1) X(2) X(3)
#define ACC256(i) __m256i c##i##0 = z, c##i##1 = z;
#define DOT256(i)                                                                                                      \
  if (MR > i) {                                                                                                        \
    int32_t t;                                                                                                         \
    memcpy(&t, x + i * Kp + k, 4);                                                                                     \
    __m256i xb = _mm256_set1_epi32(t);                                                                                 \
    c##i##0 = dot256(c##i##0, xb, w0, VNNI);                                                                           \
    c##i##1 = dot256(c##i##1, xb, w1, VNNI);                                                                           \
  }
#define OUT256(i)                                                                                                      \
  if (MR > i) {                                                                                                        \
    epilogue256(a, m0 + i, b * 16, c##i##0, VNNI);                                                                     \
    epilogue256(a, m0 + i, b * 16 + 8, c##i##1, VNNI);                                                                 \
  }

static TAVX2 INLINE void tile256(const rt_qgemm_args *a, int64_t m0, int64_t b, const int MR, const int VNNI) {
  const __m256i z = _mm256_setzero_si256();
  ROWS4(ACC256)
  const int64_t Kp = a->Kp;
  const uint8_t *x = a->xq + m0 * Kp;
  const int8_t *w = a->w + b * 16 * Kp;
  for (int64_t k = 0; k < Kp; k += 4) {
    __m256i w0 = _mm256_loadu_si256((const void *)(w + k * 16)), w1 = _mm256_loadu_si256((const void *)(w + k * 16 + 32));
    ROWS4(DOT256)
  }
  ROWS4(OUT256)
}

#define TILE256(mr)                                                                                                    \
  static TAVX2 void tile256_##mr(const rt_qgemm_args *a, int64_t m0, int64_t b, int vnni) {                            \
    if (vnni) tile256(a, m0, b, mr, 1);                                                                                \
    else tile256(a, m0, b, mr, 0);                                                                                     \
  }
TILE256(1)
TILE256(2)
TILE256(3)
TILE256(4)

void rt_qgemm_256(const rt_qgemm_args *a, int64_t b0, int64_t b1, int vnni) {
  static void (*const rows[5])(const rt_qgemm_args *, int64_t, int64_t, int) = {NULL, tile256_1, tile256_2, tile256_3,
                                                                                  tile256_4};
  for (int64_t b = b0; b < b1; b++)
    for (int64_t m0 = 0; m0 < a->M; m0 += 4) rows[a->M - m0 < 4 ? a->M - m0 : 4](a, m0, b, vnni);
}
