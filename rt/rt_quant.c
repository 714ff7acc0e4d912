/* rt_quant.c -- lathe_rt_qmatmul: the quantized products (layouts in
 * rt/rt_quant.h).
 *
 * int8-dynamic: each activation row is quantized (rt_q_row), then blocks
 * of 4 rows x 4 output columns accumulate exact int32 dot products over K:
 * u8 x s8 with AVX-512 VNNI (vpdpbusd, 64 bytes a step) or AVX-VNNI (32),
 * on AVX2 with the sign trick (maddubs(|x|, sign(w, x)): pairs of at most
 * 2 * 127 * 127 never saturate), or in plain C. The u8 forms read x + 128
 * and subtract 128 * sum_k w (c[n], stored with the weights). Every path
 * gives the same int32, hence the same floats (tests/test_quant.c).
 *
 * Weight-only (w8, w4, bf16, f16): for a few rows each output column's
 * weights are dequantized into a row of floats in cache and dotted with
 * every x row (the memory-bound case: generation reads 1/4 or 1/8 of the
 * f32 bytes); for many rows the whole matrix is dequantized once into the
 * scratch and multiplied by the f32 product (rt_sgemm), so a large batch
 * costs one f32 product plus N * K conversions.
 *
 * The kernel is chosen when the model is compiled (lathe_rt_quant_isa):
 * columns split over the pool by a rule fixed by the shapes, so results do
 * not depend on the schedule. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "rt/blas.h"
#include "rt/lathe_rt.h"
#include "rt/rt_quant.h"
#include "rt/threadpool.h"

enum {
  Q_GRAIN = 1 << 16,   /* multiply-adds per part at least */
  Q_PANEL_M = 16,      /* weight-only: from this many rows, dequantize all and use sgemm */
  Q_ROW_MAXK = 16384,  /* weight-only row path: K floats on the stack */
};

/* ---- the features (cpuid, less LATHE_CPU_FEATURES) ---- */

static int feature_off(const char *env, const char *name) {
  if (!env) return 0;
  if (!strcmp(env, "none")) return 1;
  size_t n = strlen(name);
  for (const char *p = env; *p;) {
    size_t len = strcspn(p, ",");
    if (len == n + 1 && p[0] == '-' && !strncmp(p + 1, name, n)) return 1;
    p += len + (p[len] == ',');
  }
  return 0;
}

int64_t lathe_rt_quant_isa(void) {
  const char *env = getenv("LATHE_CPU_FEATURES");
  __builtin_cpu_init();
  int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !feature_off(env, "avx2");
  int v512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vnni") && !feature_off(env, "avx512vnni");
  int vnni = avx2 && __builtin_cpu_supports("avxvnni") && !feature_off(env, "avxvnni");
  return v512 ? LATHE_RT_ISA_AVX512VNNI : vnni ? LATHE_RT_ISA_AVXVNNI : avx2 ? LATHE_RT_ISA_AVX2
                                                                            : LATHE_RT_ISA_SCALAR;
}

const char *lathe_rt_isa_name(int64_t isa) {
  static const char *const names[] = {"scalar", "avx2", "avx-vnni", "avx512-vnni"};
  return isa >= 0 && isa <= LATHE_RT_ISA_AVX512VNNI ? names[isa] : "unknown";
}

/* ---- int8-dynamic: blocks of MB rows x NB columns, r[i][j] the int32 sums ---- */

#define T512 __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define TVNNI __attribute__((target("avx2,fma,avxvnni")))
#define TAVX2 __attribute__((target("avx2,fma")))

static TVNNI int32_t hsum256(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}
static TAVX2 int32_t hsum256_avx2(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

#define DQ8_512(MB, NB)                                                                                    \
  static T512 void dq8_512_##MB##x##NB(const uint8_t *xq, const int8_t *w, int64_t Kp, int32_t r[4][4]) { \
    __m512i a[MB][NB];                                                                                    \
    for (int i = 0; i < MB; i++)                                                                          \
      for (int j = 0; j < NB; j++) a[i][j] = _mm512_setzero_si512();                                      \
    for (int64_t k = 0; k < Kp; k += 64) {                                                                \
      __m512i wv[NB];                                                                                     \
      for (int j = 0; j < NB; j++) wv[j] = _mm512_loadu_si512((const void *)(w + j * Kp + k));            \
      for (int i = 0; i < MB; i++) {                                                                      \
        __m512i xv = _mm512_loadu_si512((const void *)(xq + i * Kp + k));                                 \
        for (int j = 0; j < NB; j++) a[i][j] = _mm512_dpbusd_epi32(a[i][j], xv, wv[j]);                  \
      }                                                                                                   \
    }                                                                                                     \
    for (int i = 0; i < MB; i++)                                                                          \
      for (int j = 0; j < NB; j++) r[i][j] = _mm512_reduce_add_epi32(a[i][j]);                            \
  }
DQ8_512(4, 4)
DQ8_512(1, 4)
DQ8_512(4, 1)
DQ8_512(1, 1)

#define DQ8_VNNI(MB, NB)                                                                                    \
  static TVNNI void dq8_vnni_##MB##x##NB(const uint8_t *xq, const int8_t *w, int64_t Kp, int32_t r[4][4]) { \
    __m256i a[MB][NB];                                                                                     \
    for (int i = 0; i < MB; i++)                                                                           \
      for (int j = 0; j < NB; j++) a[i][j] = _mm256_setzero_si256();                                       \
    for (int64_t k = 0; k < Kp; k += 32) {                                                                 \
      __m256i wv[NB];                                                                                      \
      for (int j = 0; j < NB; j++) wv[j] = _mm256_loadu_si256((const void *)(w + j * Kp + k));             \
      for (int i = 0; i < MB; i++) {                                                                       \
        __m256i xv = _mm256_loadu_si256((const void *)(xq + i * Kp + k));                                  \
        for (int j = 0; j < NB; j++) a[i][j] = _mm256_dpbusd_avx_epi32(a[i][j], xv, wv[j]);               \
      }                                                                                                    \
    }                                                                                                      \
    for (int i = 0; i < MB; i++)                                                                           \
      for (int j = 0; j < NB; j++) r[i][j] = hsum256(a[i][j]);                                             \
  }
DQ8_VNNI(4, 4)
DQ8_VNNI(1, 4)
DQ8_VNNI(4, 1)
DQ8_VNNI(1, 1)

/* s8 activations: |x| (u8) times w with x's sign, pairs summed to i16
 * (no saturation: 2 * 127 * 127 < 2^15), then pairs of i16 to i32 */
#define DQ8_AVX2(MB, NB)                                                                                    \
  static TAVX2 void dq8_avx2_##MB##x##NB(const uint8_t *xq, const int8_t *w, int64_t Kp, int32_t r[4][4]) { \
    __m256i a[MB][NB], one = _mm256_set1_epi16(1);                                                         \
    for (int i = 0; i < MB; i++)                                                                           \
      for (int j = 0; j < NB; j++) a[i][j] = _mm256_setzero_si256();                                       \
    for (int64_t k = 0; k < Kp; k += 32) {                                                                 \
      __m256i wv[NB];                                                                                      \
      for (int j = 0; j < NB; j++) wv[j] = _mm256_loadu_si256((const void *)(w + j * Kp + k));             \
      for (int i = 0; i < MB; i++) {                                                                       \
        __m256i xv = _mm256_loadu_si256((const void *)(xq + i * Kp + k)), ax = _mm256_abs_epi8(xv);        \
        for (int j = 0; j < NB; j++) {                                                                     \
          __m256i p = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv[j], xv));                               \
          a[i][j] = _mm256_add_epi32(a[i][j], _mm256_madd_epi16(p, one));                                  \
        }                                                                                                  \
      }                                                                                                    \
    }                                                                                                      \
    for (int i = 0; i < MB; i++)                                                                           \
      for (int j = 0; j < NB; j++) r[i][j] = hsum256_avx2(a[i][j]);                                        \
  }
DQ8_AVX2(4, 4)
DQ8_AVX2(1, 4)
DQ8_AVX2(4, 1)
DQ8_AVX2(1, 1)

static void dq8_scalar(const uint8_t *xq, const int8_t *w, int64_t Kp, int mb, int nb, int32_t r[4][4]) {
  for (int i = 0; i < mb; i++)
    for (int j = 0; j < nb; j++) {
      int32_t acc = 0;
      for (int64_t k = 0; k < Kp; k++) acc += (int32_t)(int8_t)xq[i * Kp + k] * w[j * Kp + k];
      r[i][j] = acc;
    }
}

typedef void (*dq8_blk)(const uint8_t *, const int8_t *, int64_t, int32_t[4][4]);
/* per isa: 4x4, 1x4, 4x1, 1x1 */
static const dq8_blk dq8_blocks[][4] = {
  [LATHE_RT_ISA_AVX2] = {dq8_avx2_4x4, dq8_avx2_1x4, dq8_avx2_4x1, dq8_avx2_1x1},
  [LATHE_RT_ISA_AVXVNNI] = {dq8_vnni_4x4, dq8_vnni_1x4, dq8_vnni_4x1, dq8_vnni_1x1},
  [LATHE_RT_ISA_AVX512VNNI] = {dq8_512_4x4, dq8_512_1x4, dq8_512_4x1, dq8_512_1x1},
};

typedef struct {
  float *out;
  const float *x;
  const void *w;
  const float *s;
  const int32_t *c;
  const uint8_t *xq;  /* dq8: [M, Kp] */
  const float *sx;    /* dq8: [M] */
  float *panel;       /* weight-only, many rows: [N, K] */
  int mode, isa;
  int64_t M, K, Kp, N;
} q_job;

static void dq8_block(const q_job *j, int64_t m0, int mb, int64_t n0, int nb) {
  int32_t r[4][4];
  const uint8_t *xq = j->xq + m0 * j->Kp;
  const int8_t *w = (const int8_t *)j->w + n0 * j->Kp;
  if (j->isa == LATHE_RT_ISA_SCALAR) dq8_scalar(xq, w, j->Kp, mb, nb, r);
  else {
    const dq8_blk *b = dq8_blocks[j->isa];
    if (mb == 4 && nb == 4) b[0](xq, w, j->Kp, r);
    else if (mb == 1 && nb == 4) b[1](xq, w, j->Kp, r);
    else if (mb == 4 && nb == 1) b[2](xq, w, j->Kp, r);
    else
      for (int i = 0; i < mb; i++)
        for (int q = 0; q < nb; q++) {
          int32_t t[4][4];
          b[3](xq + i * j->Kp, w + q * j->Kp, j->Kp, t);
          r[i][q] = t[0][0];
        }
  }
  int u8 = j->isa == LATHE_RT_ISA_AVXVNNI || j->isa == LATHE_RT_ISA_AVX512VNNI;
  for (int i = 0; i < mb; i++)
    for (int q = 0; q < nb; q++)
      j->out[(m0 + i) * j->N + n0 + q] =
          rt_q_out(r[i][q] - (u8 ? j->c[n0 + q] : 0), j->sx[m0 + i], j->s[n0 + q]);
}

/* columns [4 lo, 4 hi) against every row */
static void dq8_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const q_job *j = ctx;
  for (int64_t n0 = lo * 4; n0 < hi * 4 && n0 < j->N; n0 += 4) {
    int nb = j->N - n0 >= 4 ? 4 : (int)(j->N - n0);
    int64_t m0 = 0;
    for (; m0 + 4 <= j->M; m0 += 4) dq8_block(j, m0, 4, n0, nb);
    for (; m0 < j->M; m0++) dq8_block(j, m0, 1, n0, nb);
  }
}

static void dq8_quant_rows(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  q_job *j = ctx;
  int offset = j->isa == LATHE_RT_ISA_AVXVNNI || j->isa == LATHE_RT_ISA_AVX512VNNI ? 128 : 0;
  for (int64_t m = lo; m < hi; m++)
    ((float *)j->sx)[m] = rt_q_row(j->x + m * j->K, j->K, j->Kp, offset, (uint8_t *)j->xq + m * j->Kp);
}

/* ---- weight-only ---- */

static void dequant_row(const q_job *j, int64_t n, float *d) {
  int64_t K = j->K, G = K / RT_Q_GROUP;
  const float *s = j->s + n * G;
  switch (j->mode) {
  case LATHE_RT_Q_W8: {
    const int8_t *w = (const int8_t *)j->w + n * K;
    for (int64_t k = 0; k < K; k++) d[k] = s[k / RT_Q_GROUP] * (float)w[k];
    break;
  }
  case LATHE_RT_Q_W4: {
    const uint8_t *w = (const uint8_t *)j->w + n * (K / 2);
    for (int64_t g = 0; g < G; g++)
      for (int b = 0; b < 16; b++) {
        uint8_t v = w[g * 16 + b];
        d[g * 32 + b] = s[g] * (float)((v & 15) - 8);
        d[g * 32 + 16 + b] = s[g] * (float)((v >> 4) - 8);
      }
    break;
  }
  case LATHE_RT_Q_BF16: {
    const uint16_t *w = (const uint16_t *)j->w + n * K;
    for (int64_t k = 0; k < K; k++) d[k] = rt_q_bf16(w[k]);
    break;
  }
  default: {
    const uint16_t *w = (const uint16_t *)j->w + n * K;
    for (int64_t k = 0; k < K; k++) d[k] = rt_q_f16(w[k]);
    break;
  }
  }
}

/* 16 partial sums in a fixed order: vectorises without reassociation */
static float dot(const float *a, const float *b, int64_t K) {
  float acc[16] = {0};
  int64_t k = 0;
  for (; k + 16 <= K; k += 16)
    for (int l = 0; l < 16; l++) acc[l] += a[k + l] * b[k + l];
  float t = 0;
  for (; k < K; k++) t += a[k] * b[k];
  for (int l = 0; l < 16; l++) t += acc[l];
  return t;
}

static void wo_rows_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const q_job *j = ctx;
  float d[Q_ROW_MAXK];
  for (int64_t n = lo; n < hi; n++) {
    dequant_row(j, n, d);
    for (int64_t m = 0; m < j->M; m++) j->out[m * j->N + n] = dot(j->x + m * j->K, d, j->K);
  }
}

static void wo_panel_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const q_job *j = ctx;
  for (int64_t n = lo; n < hi; n++) dequant_row(j, n, j->panel + n * j->K);
}

static int panel_path(int64_t M, int64_t K) { return M >= Q_PANEL_M || K > Q_ROW_MAXK; }

int64_t lathe_rt_qmatmul_scratch_bytes(int64_t mode, int64_t M, int64_t K, int64_t N) {
  if (mode == LATHE_RT_Q_DQ8) return M * rt_q_kpad(K) + M * 4 + 64;
  return panel_path(M, K) ? N * K * 4 : 0;
}

void lathe_rt_qmatmul(float *out, const float *x, const void *w, const float *s, const int32_t *c, void *scr,
                      int64_t mode, int64_t M, int64_t K, int64_t N, int64_t isa) {
  q_job j = {.out = out, .x = x, .w = w, .s = s, .c = c, .mode = (int)mode, .isa = (int)isa,
             .M = M, .K = K, .N = N, .Kp = rt_q_kpad(K)};
  if (mode == LATHE_RT_Q_DQ8) {
    j.xq = scr;
    j.sx = (const float *)(void *)((char *)scr + ((M * j.Kp + 63) / 64) * 64);
    if (M >= 8 && M * K >= Q_GRAIN) rt_pool_for(M, 1, dq8_quant_rows, &j);
    else dq8_quant_rows(&j, 0, M, 0);
    int64_t blocks = (N + 3) / 4, per = 4 * M * j.Kp, grain = per >= Q_GRAIN ? 1 : Q_GRAIN / per;
    rt_pool_for(blocks, grain, dq8_part, &j);
    return;
  }
  if (panel_path(M, K)) {
    j.panel = scr;
    rt_pool_for(N, K >= Q_GRAIN ? 1 : Q_GRAIN / K, wo_panel_part, &j);
    rt_sgemm(101, 111, 112, (int)M, (int)N, (int)K, 1.0f, x, (int)K, j.panel, (int)K, 0.0f, out, (int)N);
    return;
  }
  int64_t per = M * K, grain = per >= Q_GRAIN ? 1 : Q_GRAIN / per;
  rt_pool_for(N, grain, wo_rows_part, &j);
}
