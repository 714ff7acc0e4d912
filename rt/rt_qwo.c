/* rt_qwo.c -- w8 / w4 products with fewer than 16 rows (generation's
 * decode step): integer dot products on the group-quantized activations
 * (rt_q_wo_row in rt/rt_quant.h says the arithmetic; the interpreter's
 * reference, ir/interp_quant.c, does the same).
 *
 * Why integers: the char-GPT's w4 weights (400 KB) sit in L2, so the
 * product is bound by instructions, not bytes; dequantizing every weight to
 * a float (unpack, convert, scale: 5 instructions per 16 weights) cost more
 * than the f32 product's one FMA. With AVX-512 VNNI one vpdpbusd does 64
 * multiply-adds on bytes as stored: each 32-bit lane is one column (the
 * weights in blocks of 16 columns by 4 inputs), the row's 4 next inputs
 * broadcast, no horizontal sums; w4's low nibbles are one AND away, its high
 * nibbles (AND 0xF0, i.e. 16 times the value) go to a second accumulator
 * that is shifted right by 4 once per group. Per group of 32 inputs the
 * int32 sums become floats and are scaled by sx[g] * s[n, g] into the
 * column's f32 sum. Four blocks (64 columns) run at once: eight
 * independent chains of dot products. With AVX2 (or AVX-VNNI) the same
 * sums with vpmaddubsw / vpmaddwd, without either in plain C. */
#include <immintrin.h>
#include <string.h>

#include "rt/lathe_rt.h"
#include "rt/rt_quant.h"
#include "rt/rt_qwo.h"
#include "rt/threadpool.h"

#define T512 __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define TAVX2 __attribute__((target("avx2,fma")))
#define INLINE inline __attribute__((always_inline))
/* inline assembly, as rt/rt_qgemm.c: gcc 12's intrinsic spilled the accumulators */
#define DPBUSD(acc, x, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

enum { WO_GRAIN = 1 << 15 }; /* multiply-adds per part at least: a decode product is one part */

typedef struct {
  float *out;
  const void *w;
  const float *s;
  const int8_t *xq;   /* [M, K] */
  const float *sx;    /* [M, G] */
  const int32_t *cor; /* [M, G] */
  int w4, isa;
  int64_t M, K, G, N;
} wo_job;

static int64_t wo_group_bytes(int w4) { return w4 ? 256 : 512; }

/* ---- AVX-512 VNNI: row m, nb (1..4) blocks of 16 columns from block b ---- */

static T512 INLINE __m512i wo_x4(const int8_t *p) {
  int32_t t;
  memcpy(&t, p, 4);
  return _mm512_set1_epi32(t);
}

static T512 INLINE void wo_blocks_512(const wo_job *j, int64_t m, int64_t b, int nb, int w4) {
  int64_t G = j->G, gb = wo_group_bytes(w4);
  const int8_t *xq = j->xq + m * j->K;
  const float *sx = j->sx + m * G;
  const int32_t *cor = j->cor + m * G;
  const uint8_t *w = (const uint8_t *)j->w + b * G * gb;
  const __m512i lo4 = _mm512_set1_epi8(15), hi4 = _mm512_set1_epi8((char)0xF0), flip = _mm512_set1_epi8((char)0x80);
  __m512 y0 = _mm512_setzero_ps(), y1 = y0, y2 = y0, y3 = y0;
  for (int64_t g = 0; g < G; g++) {
    const int8_t *x = xq + g * 32;
    __m512i c = _mm512_set1_epi32(cor[g]), z = _mm512_setzero_si512();
    __m512i a0 = c, a1 = c, a2 = c, a3 = c, h0 = z, h1 = z, h2 = z, h3 = z;
#define WBLK(q, i) (w + ((q) * G + g) * gb + (i) * 64)
    if (w4) {
#define W4STEP(q)                                                                                                      \
  if (nb > q) {                                                                                                        \
    __m512i v = _mm512_loadu_si512(WBLK(q, i));                                                                        \
    DPBUSD(a##q, _mm512_and_si512(v, lo4), xl);                                                                        \
    DPBUSD(h##q, _mm512_and_si512(v, hi4), xh);                                                                        \
  }
      for (int i = 0; i < 4; i++) {
        __m512i xl = wo_x4(x + 4 * i), xh = wo_x4(x + 16 + 4 * i);
        W4STEP(0) W4STEP(1) W4STEP(2) W4STEP(3)
      }
      /* h holds 16 times the high nibbles' sums: exact to shift back */
      a0 = _mm512_add_epi32(a0, _mm512_srai_epi32(h0, 4)), a1 = _mm512_add_epi32(a1, _mm512_srai_epi32(h1, 4));
      a2 = _mm512_add_epi32(a2, _mm512_srai_epi32(h2, 4)), a3 = _mm512_add_epi32(a3, _mm512_srai_epi32(h3, 4));
    } else {
#define W8STEP(q)                                                                                                      \
  if (nb > q) DPBUSD(a##q, _mm512_xor_si512(_mm512_loadu_si512(WBLK(q, i)), flip), xb);
      for (int i = 0; i < 8; i++) {
        __m512i xb = wo_x4(x + 4 * i);
        W8STEP(0) W8STEP(1) W8STEP(2) W8STEP(3)
      }
    }
    __m512 sg = _mm512_set1_ps(sx[g]);
#define WSCALE(q)                                                                                                      \
  if (nb > q)                                                                                                          \
    y##q = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a##q), _mm512_mul_ps(sg, _mm512_loadu_ps(j->s + ((b + q) * G + g) * 16)), \
                           y##q);
    WSCALE(0) WSCALE(1) WSCALE(2) WSCALE(3)
  }
  float *o = j->out + m * j->N;
  int64_t n = b * 16;
#define WSTORE(q)                                                                                                      \
  if (nb > q) {                                                                                                        \
    int64_t left = j->N - n - 16 * q;                                                                                  \
    _mm512_mask_storeu_ps(o + n + 16 * q, left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1), y##q);     \
  }
  WSTORE(0) WSTORE(1) WSTORE(2) WSTORE(3)
}

static T512 void wo_part_512(const wo_job *j, int64_t lo, int64_t hi) {
  int64_t nblk = (j->N + 15) / 16;
  for (int64_t m = 0; m < j->M; m++)
    for (int64_t p = lo; p < hi; p++) {
      int64_t b = p * 4, nb = nblk - b < 4 ? nblk - b : 4;
      if (j->w4) {
        if (nb == 4) wo_blocks_512(j, m, b, 4, 1);
        else for (int64_t q = 0; q < nb; q++) wo_blocks_512(j, m, b + q, 1, 1);
      } else {
        if (nb == 4) wo_blocks_512(j, m, b, 4, 0);
        else for (int64_t q = 0; q < nb; q++) wo_blocks_512(j, m, b + q, 1, 0);
      }
    }
}

/* rt_q_wo_row's quantization in 16 lanes, the same operations (max of
 * |x| skipping NaNs: maxps(v, a) is v > a ? v : a; x * inv converted to
 * nearest even; the int's low byte): the same bytes */
static T512 void wo_quant_row_512(const float *x, int64_t K, int off, int8_t *q, float *sx, int32_t *cor) {
  const __m512 z = _mm512_setzero_ps();
  for (int64_t g = 0; g < K / 32; g++) {
    __m512 v0 = _mm512_loadu_ps(x + g * 32), v1 = _mm512_loadu_ps(x + g * 32 + 16);
    __m512 a = _mm512_max_ps(_mm512_abs_ps(v1), _mm512_max_ps(_mm512_abs_ps(v0), z));
    float m = _mm512_reduce_max_ps(a), inv = m > 0 ? 127.0f / m : 0.0f;
    __m512 vi = _mm512_set1_ps(inv);
    __m128i q0 = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, vi)));
    __m128i q1 = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, vi)));
    _mm_storeu_si128((void *)(q + g * 32), q0);
    _mm_storeu_si128((void *)(q + g * 32 + 16), q1);
    sx[g] = m / 127.0f;
    cor[g] = -off * _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_cvtepi8_epi32(q0), _mm512_cvtepi8_epi32(q1)));
  }
}

/* ---- plain C (AVX2 by compilation): the same sums, 16 lanes a block ---- */

static INLINE void wo_blocks_c(const wo_job *j, int64_t m, int64_t b) {
  int64_t G = j->G, gb = wo_group_bytes(j->w4);
  const int8_t *xq = j->xq + m * j->K;
  float y[16] = {0};
  for (int64_t g = 0; g < G; g++) {
    const uint8_t *w = (const uint8_t *)j->w + (b * G + g) * gb;
    const int8_t *x = xq + g * 32;
    int32_t a[16];
    for (int c = 0; c < 16; c++) a[c] = j->cor[m * G + g];
    for (int i = 0; i < (j->w4 ? 4 : 8); i++)
      for (int r = 0; r < 4; r++)
        for (int c = 0; c < 16; c++) {
          uint8_t v = w[i * 64 + c * 4 + r];
          if (j->w4) a[c] += (v & 15) * x[4 * i + r] + (v >> 4) * x[16 + 4 * i + r];
          else a[c] += (uint8_t)(v ^ 0x80) * x[4 * i + r];
        }
    float sg = j->sx[m * G + g];
    for (int c = 0; c < 16; c++) y[c] += (float)a[c] * (sg * j->s[(b * G + g) * 16 + c]);
  }
  for (int c = 0; c < 16 && b * 16 + c < j->N; c++) j->out[m * j->N + b * 16 + c] = y[c];
}

/* ---- AVX2 (and AVX-VNNI): vpmaddubsw pairs, vpmaddwd to int32 ----
 * One block of 16 columns in two ymm (8 columns each). w4: nibbles (0..15)
 * times x (-127..127): a pair is at most 2 * 15 * 127, the low and high
 * nibbles' pairs add in int16 (at most 4 * 1905 = 7620) before vpmaddwd.
 * w8: the sign trick, |w| times x with w's sign (pairs at most 2 * 127 *
 * 127: no saturation), so w8 needs no offset (its sums start at 0). */
static TAVX2 INLINE __m256i wo_x4_256(const int8_t *p) {
  int32_t t;
  memcpy(&t, p, 4);
  return _mm256_set1_epi32(t);
}

static TAVX2 void wo_block_avx2(const wo_job *j, int64_t m, int64_t b) {
  int64_t G = j->G, gb = wo_group_bytes(j->w4);
  const int8_t *xq = j->xq + m * j->K;
  const __m256i lo4 = _mm256_set1_epi8(15), one = _mm256_set1_epi16(1);
  __m256 y0 = _mm256_setzero_ps(), y1 = y0;
  for (int64_t g = 0; g < G; g++) {
    const uint8_t *w = (const uint8_t *)j->w + (b * G + g) * gb;
    const int8_t *x = xq + g * 32;
    __m256i a0, a1;
    if (j->w4) {
      a0 = a1 = _mm256_set1_epi32(j->cor[m * G + g]);
      for (int i = 0; i < 4; i++) {
        __m256i xl = wo_x4_256(x + 4 * i), xh = wo_x4_256(x + 16 + 4 * i);
        __m256i v0 = _mm256_loadu_si256((const void *)(w + i * 64)), v1 = _mm256_loadu_si256((const void *)(w + i * 64 + 32));
        __m256i t0 = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(v0, lo4), xl),
                                      _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v0, 4), lo4), xh));
        __m256i t1 = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(v1, lo4), xl),
                                      _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v1, 4), lo4), xh));
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(t0, one)), a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(t1, one));
      }
    } else {
      a0 = a1 = _mm256_setzero_si256();
      for (int i = 0; i < 8; i++) {
        __m256i xb = wo_x4_256(x + 4 * i);
        __m256i v0 = _mm256_loadu_si256((const void *)(w + i * 64)), v1 = _mm256_loadu_si256((const void *)(w + i * 64 + 32));
        __m256i t0 = _mm256_maddubs_epi16(_mm256_abs_epi8(v0), _mm256_sign_epi8(xb, v0));
        __m256i t1 = _mm256_maddubs_epi16(_mm256_abs_epi8(v1), _mm256_sign_epi8(xb, v1));
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(t0, one)), a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(t1, one));
      }
    }
    __m256 sg = _mm256_set1_ps(j->sx[m * G + g]);
    const float *sc = j->s + (b * G + g) * 16;
    y0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a0), _mm256_mul_ps(sg, _mm256_loadu_ps(sc)), y0);
    y1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a1), _mm256_mul_ps(sg, _mm256_loadu_ps(sc + 8)), y1);
  }
  float y[16], *o = j->out + m * j->N + b * 16;
  _mm256_storeu_ps(y, y0), _mm256_storeu_ps(y + 8, y1);
  for (int c = 0; c < 16 && b * 16 + c < j->N; c++) o[c] = y[c];
}

static TAVX2 void wo_part_avx2(const wo_job *j, int64_t lo, int64_t hi) {
  int64_t nblk = (j->N + 15) / 16;
  for (int64_t m = 0; m < j->M; m++)
    for (int64_t b = lo * 4; b < hi * 4 && b < nblk; b++) wo_block_avx2(j, m, b);
}

static void wo_part_c(const wo_job *j, int64_t lo, int64_t hi) {
  int64_t nblk = (j->N + 15) / 16;
  for (int64_t m = 0; m < j->M; m++)
    for (int64_t b = lo * 4; b < hi * 4 && b < nblk; b++) wo_blocks_c(j, m, b);
}

/* parts are panels of 4 blocks (64 columns) */
static void wo_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const wo_job *j = ctx;
  if (j->isa == LATHE_RT_ISA_AVX512VNNI) wo_part_512(j, lo, hi);
  else if (j->isa == LATHE_RT_ISA_AVX2 || j->isa == LATHE_RT_ISA_AVXVNNI) wo_part_avx2(j, lo, hi);
  else wo_part_c(j, lo, hi);
}

int64_t rt_qwo_scratch_bytes(int64_t M, int64_t K) { return (M * K + 63) / 64 * 64 + M * (K / 32) * 8; }

void rt_qwo_matmul(float *out, const float *x, const void *w, const float *s, void *scr, int mode, int isa, int64_t M,
                   int64_t K, int64_t N) {
  int w4 = mode == LATHE_RT_Q_W4;
  int64_t G = K / 32;
  int8_t *xq = scr;
  float *sx = (float *)(void *)((char *)scr + (M * K + 63) / 64 * 64);
  int32_t *cor = (int32_t *)(void *)(sx + M * G);
  for (int64_t m = 0; m < M; m++)
    if (isa == LATHE_RT_ISA_AVX512VNNI) wo_quant_row_512(x + m * K, K, w4 ? 8 : 128, xq + m * K, sx + m * G, cor + m * G);
    else rt_q_wo_row(x + m * K, K, w4 ? 8 : 128, xq + m * K, sx + m * G, cor + m * G);
  wo_job j = {.out = out, .w = w, .s = s, .xq = xq, .sx = sx, .cor = cor, .w4 = w4, .isa = isa,
              .M = M, .K = K, .G = G, .N = N};
  int64_t panels = (N + 63) / 64, per = 64 * M * K, grain = per >= WO_GRAIN ? 1 : WO_GRAIN / per;
  rt_pool_for(panels, grain, wo_part, &j);
}
