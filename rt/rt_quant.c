/* rt_quant.c -- lathe_rt_qmatmul: the quantized products (layouts in
 * rt/rt_quant.h).
 *
 * int8-dynamic: each activation row is quantized (rt_q_row, or its SIMD
 * form rt_q_row_simd), then tiles of rows x 16-column blocks accumulate
 * exact int32 dot products over K, each lane its own column (the weights
 * stored in blocks of 16 columns by 4 inputs): u8 x s8 with AVX-512 VNNI
 * (vpdpbusd, 6 x 64 tiles) or AVX-VNNI, on AVX2 with the sign trick
 * (maddubs(|x|, sign(w, x)): pairs of at most 2 * 127 * 127 never
 * saturate), all in rt/rt_qgemm.c, or in plain C. The u8 forms read x + 128
 * and subtract 128 * sum_k w (c[n], stored with the weights). Every path
 * gives the same int32, hence the same floats (tests/test_quant.c).
 *
 * Static int8 (s8): the same kernels; each row is quantized with the
 * calibrated input scale instead of its own (rt_q_row_static). Where the
 * integer path would lose to f32 (a CPU without SIMD integer dot products:
 * neither VNNI nor AVX2), the compiler picks LATHE_RT_ISA_F32 instead:
 * f32 arithmetic on the int8 weights (s8_f32_part).
 *
 * Weight-only: w8 and w4 with a few rows on integer dot products over
 * the group-quantized rows (rt/rt_qwo.c); bf16 and f16 with a few rows
 * dequantize each output column's weights into floats in registers and dot
 * them with every x row (the memory-bound case: generation reads half the
 * f32 bytes); for many rows the whole matrix is dequantized once into the
 * scratch and multiplied by the f32 product (rt_sgemm), so a large batch
 * costs one f32 product plus N * K conversions.
 *
 * The kernel is chosen when the model is compiled (lathe_rt_quant_isa):
 * columns split over the pool by a rule fixed by the shapes, so results do
 * not depend on the schedule. */
#include <cpuid.h>
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "rt/blas.h"
#include "rt/lathe_rt.h"
#include "rt/rt_qdq.h"
#include "rt/rt_qgemm.h"
#include "rt/rt_quant.h"
#include "rt/rt_qwo.h"
#include "rt/threadpool.h"
#include "rt/rt_qbf16.h" /* bf16 on bf16 dot products */
#include "rt/rt_amx.h"   /* int8 and bf16 on AMX tiles */

enum {
  Q_GRAIN = 1 << 16,   /* multiply-adds per part at least */
  Q_ROW_MAXK = 16384,  /* weight-only row path: K floats on the stack (rt_q_wo_rows) */
  Q_PANEL_M = 16,      /* static int8's f32 form: from this many rows, dequantize all and use sgemm */
};

/* ---- the features (cpuid, less LATHE_CPU_FEATURES) ---- */

int rt_q_feature_off(const char *env, const char *name) {
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

/* AVX-VNNI from CPUID leaf 7, sub-leaf 1, EAX bit 4: clang 14's
 * __builtin_cpu_supports has no "avxvnni" (the fuzz build uses clang). The
 * OS's saving of the YMM state is already implied by the avx2 test. */
static int has_avxvnni(void) {
  unsigned a, b, c, d;
  return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 4 & 1u);
}

int64_t lathe_rt_quant_isa(void) {
  const char *env = getenv("LATHE_CPU_FEATURES");
  __builtin_cpu_init();
  int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !rt_q_feature_off(env, "avx2");
  int v512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vnni") && !rt_q_feature_off(env, "avx512vnni");
  int vnni = avx2 && has_avxvnni() && !rt_q_feature_off(env, "avxvnni");
  return v512 ? LATHE_RT_ISA_AVX512VNNI : vnni ? LATHE_RT_ISA_AVXVNNI : avx2 ? LATHE_RT_ISA_AVX2
                                                                            : LATHE_RT_ISA_SCALAR;
}

const char *lathe_rt_isa_name(int64_t isa) {
  static const char *const names[] = {"scalar", "avx2", "avx-vnni", "avx512-vnni", "f32"};
  if (isa == LATHE_RT_ISA_AVX512BF16) return "avx512-bf16";
  if (isa == LATHE_RT_ISA_AMXINT8) return "amx-int8";
  if (isa == LATHE_RT_ISA_AMXBF16) return "amx-bf16";
  return isa >= 0 && isa <= LATHE_RT_ISA_F32 ? names[isa] : "unknown";
}

/* ---- int8-dynamic: blocks of MB rows x NB columns, r[i][j] the int32 sums ---- */

#define T512 __attribute__((target("avx512f,avx512bw,avx512vnni")))
/* every CPU with AVX2 and FMA has F16C (Haswell, Piledriver on) */
#define TAVX2 __attribute__((target("avx2,fma,f16c")))

/* The SIMD int8 products are rt/rt_qgemm.c's (AVX-512 VNNI, AVX-VNNI, AVX2);
 * what stays here is the plain C kernel for CPUs with neither. */

typedef struct {
  float *out;
  int8_t *out8;       /* s8 requantized (rt/rt_qdq.h) instead of out: NULL for none */
  float oinv;
  const float *x;
  const void *w;
  const float *s;
  const int32_t *c;
  const float *bias;  /* s8's epilogue: NULL for none */
  int64_t act;        /* s8's epilogue: 1 relu */
  const uint8_t *xq;  /* dq8: [M, Kp] */
  const float *sx;    /* dq8: [M] */
  float *panel;       /* weight-only, many rows: [N, K] */
  int mode, isa;
  int64_t M, K, Kp, N;
} q_job;

/* rows [m0, m0 + mb) x the 16 columns of block b: int32 sums into r
 * (s8 x s8 in plain C: the scalar kernel) */
static void dq8_sums(const q_job *j, int64_t m0, int mb, int64_t b, int32_t r[4][16]) {
  const uint8_t *xq = j->xq + m0 * j->Kp;
  const int8_t *w = (const int8_t *)j->w + b * 16 * j->Kp;
  for (int i = 0; i < mb; i++)
    for (int c = 0; c < 16; c++) {
      int32_t acc = 0;
      for (int64_t k = 0; k < j->Kp; k++) acc += (int32_t)(int8_t)xq[i * j->Kp + k] * w[(k / 4) * 64 + c * 4 + k % 4];
      r[i][c] = acc;
    }
}

/* the floats of rows [m0, m0 + mb) x the block's columns from n0 */
static void dq8_tail(const q_job *j, int64_t m0, int mb, int64_t n0, int32_t r[4][16], int u8) {
  int64_t nb = j->N - n0 < 16 ? j->N - n0 : 16;
  float t[16];
  for (int i = 0; i < mb; i++) {
    float *o = j->out8 ? t : j->out + (m0 + i) * j->N + n0;
    for (int64_t c = 0; c < nb; c++) o[c] = rt_q_out(r[i][c] - (u8 ? j->c[n0 + c] : 0), j->sx[m0 + i], j->s[n0 + c]);
    /* the epilogue in loops of their own (no load under a condition): they
     * vectorise as the product's did, with rt_q_epilogue's operations */
    if (j->bias)
      for (int64_t c = 0; c < nb; c++) o[c] = o[c] + j->bias[n0 + c];
    if (j->act == 1)
      for (int64_t c = 0; c < nb; c++) o[c] = o[c] > 0.0f ? o[c] : 0.0f;
    for (int64_t c = 0; j->out8 && c < nb; c++) j->out8[(m0 + i) * j->N + n0 + c] = rt_q_requant(o[c], j->oinv);
  }
}

/* the scalar kernel: column blocks [lo, hi) against every row */
static void dq8_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const q_job *j = ctx;
  int32_t r[4][16];
  for (int64_t b = lo; b < hi; b++)
    for (int64_t m0 = 0; m0 < j->M; m0 += 4) {
      int mb = j->M - m0 < 4 ? (int)(j->M - m0) : 4;
      dq8_sums(j, m0, mb, b, r);
      dq8_tail(j, m0, mb, b * 16, r, 0);
    }
}

/* AVX-512 VNNI: panels [lo, hi) of 4 blocks (64 columns) in rt_qgemm_512's
 * register tiles */
static void dq8_part_512(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const q_job *j = ctx;
  rt_qgemm_args a = {.out = j->out, .xq = j->xq, .sx = j->sx, .w = j->w, .s = j->s, .c = j->c, .bias = j->bias,
                     .act = j->act, .M = j->M, .N = j->N, .Kp = j->Kp, .out8 = j->out8, .oinv = j->oinv};
  int64_t blocks = (j->N + 15) / 16;
  rt_qgemm_512(&a, lo * 4, hi * 4 < blocks ? hi * 4 : blocks);
}

/* AMX-INT8: pairs of blocks [lo, hi) in rt/rt_amx.c's tiles */
static void dq8_part_amx(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const q_job *j = ctx;
  rt_qgemm_args a = {.out = j->out, .xq = j->xq, .sx = j->sx, .w = j->w, .s = j->s, .c = j->c, .bias = j->bias,
                     .act = j->act, .M = j->M, .N = j->N, .Kp = j->Kp, .out8 = j->out8, .oinv = j->oinv};
  int64_t blocks = (j->N + 15) / 16;
  rt_amx_qgemm(&a, lo * 2, hi * 2 < blocks ? hi * 2 : blocks, RT_AMX_AUTO);
}

/* AVX-VNNI and AVX2: blocks [lo, hi) in rt_qgemm_256's tiles */
static void dq8_part_256(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const q_job *j = ctx;
  rt_qgemm_args a = {.out = j->out, .xq = j->xq, .sx = j->sx, .w = j->w, .s = j->s, .c = j->c, .bias = j->bias,
                     .act = j->act, .M = j->M, .N = j->N, .Kp = j->Kp, .out8 = j->out8, .oinv = j->oinv};
  rt_qgemm_256(&a, lo, hi, j->isa == LATHE_RT_ISA_AVXVNNI);
}

static void dq8_quant_rows(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  q_job *j = ctx;
  int offset = lathe_rt_isa_u8(j->isa) ? 128 : 0;
  for (int64_t m = lo; m < hi; m++) {
    const float *x = j->x + m * j->K;
    uint8_t *q = (uint8_t *)j->xq + m * j->Kp;
    float sx = j->mode == LATHE_RT_Q_S8 ? j->s[j->N] : 0.0f;
    ((float *)j->sx)[m] = j->isa == LATHE_RT_ISA_AMXINT8 ? rt_amx_row(x, j->K, j->Kp, sx, q)
                          : j->isa != LATHE_RT_ISA_SCALAR
                              ? rt_q_row_simd(x, j->K, j->Kp, offset, sx, q, j->isa == LATHE_RT_ISA_AVX512VNNI)
                              : rt_q_row_static(x, j->K, j->Kp, offset, sx, q);
  }
}

/* ---- static int8 in f32 (LATHE_RT_ISA_F32): column blocks [lo, hi) ----
 * For a few rows, sum_k x[k] * q[n, k] in floats, times s[n]: the 64
 * weights of a block's next 4 inputs (16 columns by 4) against the row's 4
 * inputs repeated, 64 independent lanes (vectorised at -O3, no
 * reassociation needed), each column's 4 lanes added at the end; the weights
 * stay int8 in memory. For many rows: the block dequantized into the panel
 * (w = s q, [N, K]) and one f32 product (rt_sgemm). */
static inline __attribute__((always_inline)) void s8_f32_blocks(const q_job *j, int64_t lo, int64_t hi) {
  for (int64_t b = lo; b < hi; b++) {
    const int8_t *w = (const int8_t *)j->w + b * 16 * j->Kp;
    int64_t n0 = b * 16, nb = j->N - n0 < 16 ? j->N - n0 : 16;
    if (j->panel) {
      for (int64_t c = 0; c < nb; c++)
        for (int64_t k = 0; k < j->K; k++)
          j->panel[(n0 + c) * j->K + k] = j->s[n0 + c] * (float)w[(k / 4) * 64 + c * 4 + k % 4];
      continue;
    }
    for (int64_t m = 0; m < j->M; m++) {
      const float *x = j->x + m * j->K;
      float acc[64] = {0};
      for (int64_t k = 0; k < j->Kp; k += 4) {
        float xp[4];
        for (int t = 0; t < 4; t++) xp[t] = k + t < j->K ? x[k + t] : 0.0f; /* K..Kp: zero weights, x unread */
        const int8_t *wk = w + k * 16;
        for (int i = 0; i < 64; i++) acc[i] += xp[i & 3] * (float)wk[i];
      }
      for (int64_t c = 0; c < nb; c++)
        j->out[m * j->N + n0 + c] =
            rt_q_epilogue(((acc[4 * c] + acc[4 * c + 1]) + (acc[4 * c + 2] + acc[4 * c + 3])) * j->s[n0 + c],
                          j->bias ? j->bias[n0 + c] : 0.0f, j->bias != NULL, j->act);
    }
  }
}

/* Float arithmetic: the hardware's widest float vectors, as the f32
 * product (OpenBLAS) uses them; LATHE_CPU_FEATURES only narrows the integer
 * kernels. */
static TAVX2 void s8_f32_avx2(const q_job *j, int64_t lo, int64_t hi) {
  if (j->panel) {
    s8_f32_blocks(j, lo, hi);
    return;
  }
  for (int64_t b = lo; b < hi; b++) {
    const int8_t *w = (const int8_t *)j->w + b * 16 * j->Kp;
    int64_t n0 = b * 16, nb = j->N - n0 < 16 ? j->N - n0 : 16;
    for (int64_t m = 0; m < j->M; m++) {
      const float *x = j->x + m * j->K;
      __m256 acc[8];
      for (int q = 0; q < 8; q++) acc[q] = _mm256_setzero_ps();
      for (int64_t k = 0; k < j->Kp; k += 4) {
        __m128 x4; /* x[k..k+3], twice below: 2 columns' next 4 inputs */
        if (k + 4 <= j->K) x4 = _mm_loadu_ps(x + k);
        else {
          float xp[4];
          for (int t = 0; t < 4; t++) xp[t] = k + t < j->K ? x[k + t] : 0.0f; /* K..Kp: zero weights */
          x4 = _mm_loadu_ps(xp);
        }
        __m256 xv = _mm256_insertf128_ps(_mm256_castps128_ps256(x4), x4, 1);
        const int8_t *wk = w + k * 16;
        for (int q = 0; q < 8; q++) {
          __m256 wf = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const void *)(wk + 8 * q))));
          acc[q] = _mm256_fmadd_ps(xv, wf, acc[q]);
        }
      }
      for (int q = 0; q < 8; q++) { /* lanes 0..3: column 2q, 4..7: column 2q + 1 */
        float l[8];
        _mm256_storeu_ps(l, acc[q]);
        for (int h = 0; h < 2; h++)
          if (2 * q + h < nb) {
            int64_t n = n0 + 2 * q + h;
            j->out[m * j->N + n] = rt_q_epilogue(((l[4 * h] + l[4 * h + 1]) + (l[4 * h + 2] + l[4 * h + 3])) * j->s[n],
                                                 j->bias ? j->bias[n] : 0.0f, j->bias != NULL, j->act);
          }
      }
    }
  }
}
static void s8_f32_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) s8_f32_avx2(ctx, lo, hi);
  else s8_f32_blocks(ctx, lo, hi);
}

/* ---- weight-only ---- */

static void dequant_row(const q_job *j, int64_t n, float *d) {
  int64_t K = j->K, G = K / RT_Q_GROUP;
  switch (j->mode) {
  case LATHE_RT_Q_W8: case LATHE_RT_Q_W4: /* blocked: rt/rt_quant.h */
    for (int64_t k = 0; k < K; k++)
      d[k] = j->s[rt_q_ws_at(n, k / 32, G)] * (float)rt_q_wo_q(j->mode == LATHE_RT_Q_W4, j->w, n, k, K);
    break;
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

/* ---- weight-only, a few rows: dequantized inside the dot products ----
 * Per output column and group of 32 inputs: the 32 weights as floats
 * (unscaled), dotted with each row's 32 inputs, the sum times the group's
 * scale added to the row's accumulator. 16-bit weights: scale 1, and a
 * scalar tail when K is not a multiple of 32. */

static inline float wo_scalar(const q_job *j, int64_t n, int64_t k) {
  int64_t K = j->K;
  if (j->mode == LATHE_RT_Q_BF16) return rt_q_bf16(((const uint16_t *)j->w)[n * K + k]);
  return rt_q_f16(((const uint16_t *)j->w)[n * K + k]);
}

static T512 void wo_group_512(const q_job *j, int64_t n, int64_t g, __m512 *w0, __m512 *w1) {
  int64_t K = j->K;
  switch (j->mode) {
  case LATHE_RT_Q_BF16: {
    const uint16_t *p = (const uint16_t *)j->w + n * K + g * 32;
    *w0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const void *)p)), 16));
    *w1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const void *)(p + 16))), 16));
    break;
  }
  default: {
    const uint16_t *p = (const uint16_t *)j->w + n * K + g * 32;
    *w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)p));
    *w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(p + 16)));
    break;
  }
  }
}

/* rows [m0, m0 + mb) (mb <= 4) against column n */
static T512 void wo_col_512(const q_job *j, int64_t n, int64_t m0, int mb) {
  int64_t K = j->K, K32 = K / 32 * 32;
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int64_t g = 0; g < K32 / 32; g++) {
    __m512 w0, w1;
    wo_group_512(j, n, g, &w0, &w1);
    for (int i = 0; i < mb; i++) {
      const float *x = j->x + (m0 + i) * K + g * 32;
      acc[i] = _mm512_fmadd_ps(_mm512_loadu_ps(x), w0, acc[i]);
      acc[i] = _mm512_fmadd_ps(_mm512_loadu_ps(x + 16), w1, acc[i]);
    }
  }
  for (int i = 0; i < mb; i++) {
    float t = _mm512_reduce_add_ps(acc[i]);
    for (int64_t k = K32; k < K; k++) t += j->x[(m0 + i) * K + k] * wo_scalar(j, n, k);
    j->out[(m0 + i) * j->N + n] = t;
  }
}

/* One row (generation's decode step) against columns n .. n+3: the four
 * columns' sums interleaved, so four independent chains of FMAs run where
 * one column's chain, then its horizontal sum, left the core waiting (with
 * K = 128, four groups a column, the chain's latency was the product's
 * time). Each column's operations and their order are wo_col_512's: the
 * same bits. */
static T512 void wo_cols4_512(const q_job *j, int64_t n) {
  int64_t K = j->K, K32 = K / 32 * 32;
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int64_t g = 0; g < K32 / 32; g++) {
    __m512 x0 = _mm512_loadu_ps(j->x + g * 32), x1 = _mm512_loadu_ps(j->x + g * 32 + 16);
    for (int c = 0; c < 4; c++) {
      __m512 w0, w1;
      wo_group_512(j, n + c, g, &w0, &w1);
      acc[c] = _mm512_fmadd_ps(x0, w0, acc[c]);
      acc[c] = _mm512_fmadd_ps(x1, w1, acc[c]);
    }
  }
  for (int c = 0; c < 4; c++) {
    float t = _mm512_reduce_add_ps(acc[c]);
    for (int64_t k = K32; k < K; k++) t += j->x[k] * wo_scalar(j, n + c, k);
    j->out[n + c] = t;
  }
}

/* the same in 8 lanes */
static TAVX2 void wo_col_avx2(const q_job *j, int64_t n, int64_t m0, int mb) {
  int64_t K = j->K, K32 = K / 32 * 32;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t g = 0; g < K32 / 32; g++) {
    __m256 w[4];
    const uint16_t *p = (const uint16_t *)j->w + n * K + g * 32;
    for (int q = 0; q < 4; q++) {
      __m128i h = _mm_loadu_si128((const void *)(p + 8 * q));
      w[q] = j->mode == LATHE_RT_Q_BF16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                                        : _mm256_cvtph_ps(h);
    }
    for (int i = 0; i < mb; i++) {
      const float *x = j->x + (m0 + i) * K + g * 32;
      for (int q = 0; q < 4; q++) acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 8 * q), w[q], acc[i]);
    }
  }
  for (int i = 0; i < mb; i++) {
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(acc[i]), _mm256_extractf128_ps(acc[i], 1));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    float t = _mm_cvtss_f32(v);
    for (int64_t k = K32; k < K; k++) t += j->x[(m0 + i) * K + k] * wo_scalar(j, n, k);
    j->out[(m0 + i) * j->N + n] = t;
  }
}

static void wo_rows_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const q_job *j = ctx;
  if (j->isa == LATHE_RT_ISA_SCALAR) {
    float d[Q_ROW_MAXK];
    for (int64_t n = lo; n < hi; n++) {
      dequant_row(j, n, d);
      for (int64_t m = 0; m < j->M; m++) j->out[m * j->N + n] = dot(j->x + m * j->K, d, j->K);
    }
    return;
  }
  int64_t n = lo;
  if (j->isa == LATHE_RT_ISA_AVX512VNNI && j->M == 1)
    for (; n + 4 <= hi; n += 4) wo_cols4_512(j, n);
  for (; n < hi; n++)
    for (int64_t m0 = 0; m0 < j->M; m0 += 4) {
      int mb = j->M - m0 < 4 ? (int)(j->M - m0) : 4;
      if (j->isa == LATHE_RT_ISA_AVX512VNNI) wo_col_512(j, n, m0, mb);
      else wo_col_avx2(j, n, m0, mb);
    }
}

static void wo_panel_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const q_job *j = ctx;
  for (int64_t n = lo; n < hi; n++) dequant_row(j, n, j->panel + n * j->K);
}

static int panel_path(int64_t M, int64_t K) { return !rt_q_wo_rows(M, K); }

int64_t lathe_rt_qmatmul_kernel_scratch_bytes(int64_t mode, int64_t M, int64_t K, int64_t N, int64_t isa) {
  if (mode == LATHE_RT_Q_BF16 && isa == LATHE_RT_ISA_AMXBF16) return rt_amx_bf16_scratch_bytes(M, K, N);
  return lathe_rt_qmatmul_scratch_bytes(mode, M, K, N);
}

int64_t lathe_rt_qmatmul_scratch_bytes(int64_t mode, int64_t M, int64_t K, int64_t N) {
  if (mode == LATHE_RT_Q_DQ8) return M * rt_q_kpad(K) + M * 4 + 64;
  if (mode == LATHE_RT_Q_S8) /* the integer kernels' rows, or the f32 form's panel */
    return M * rt_q_kpad(K) + M * 4 + 64 + (M >= Q_PANEL_M ? N * K * 4 : 0);
  if ((mode == LATHE_RT_Q_W8 || mode == LATHE_RT_Q_W4) && !panel_path(M, K)) return rt_qwo_scratch_bytes(M, K);
  int64_t wo = panel_path(M, K) ? N * K * 4 : 0, b = mode == LATHE_RT_Q_BF16 ? rt_qbf16_scratch_bytes(M, K) : 0;
  return wo > b ? wo : b; /* bf16: either kernel (rt/rt_qbf16.c on bf16 dot products) */
}

/* the integer product of quantized rows j->xq by the blocked weights, on
 * the kernel of j->isa (lathe_rt_qmatmul and lathe_rt_qmatmul_xq) */
static void dq8_product(q_job *j) {
  int64_t blocks = (j->N + 15) / 16, per = 16 * j->M * j->Kp, grain = per >= Q_GRAIN ? 1 : Q_GRAIN / per;
  if (j->isa == LATHE_RT_ISA_AVX512VNNI) /* panels of 4 blocks */
    rt_pool_for((blocks + 3) / 4, (grain + 3) / 4, dq8_part_512, j);
  else if (j->isa == LATHE_RT_ISA_AMXINT8) /* pairs of blocks */
    rt_pool_for((blocks + 1) / 2, (grain + 1) / 2, dq8_part_amx, j);
  else if (j->isa == LATHE_RT_ISA_AVXVNNI || j->isa == LATHE_RT_ISA_AVX2)
    rt_pool_for(blocks, grain, dq8_part_256, j);
  else
    rt_pool_for(blocks, grain, dq8_part, j);
}

void rt_q_product(const rt_qgemm_args *a, int64_t isa) {
  q_job j = {.out = a->out, .out8 = a->out8, .oinv = a->oinv, .xq = a->xq, .sx = a->sx, .w = a->w, .s = a->s,
             .c = a->c, .bias = a->bias, .act = a->act, .mode = LATHE_RT_Q_S8, .isa = (int)isa, .M = a->M,
             .N = a->N, .Kp = a->Kp};
  dq8_product(&j);
}

void lathe_rt_qmatmul(float *out, const float *x, const void *w, const float *s, const int32_t *c, const float *bias,
                      void *scr, int64_t mode, int64_t M, int64_t K, int64_t N, int64_t isa, int64_t act) {
  q_job j = {.out = out, .x = x, .w = w, .s = s, .c = c, .bias = bias, .act = act, .mode = (int)mode, .isa = (int)isa,
             .M = M, .K = K, .N = N, .Kp = rt_q_kpad(K)};
  if (mode == LATHE_RT_Q_BF16 && isa == LATHE_RT_ISA_AVX512BF16) {
    rt_qbf16_matmul(out, x, w, bias, act, scr, M, K, N);
    return;
  }
  if (mode == LATHE_RT_Q_BF16 && isa == LATHE_RT_ISA_AMXBF16) {
    rt_amx_bf16_matmul(out, x, w, bias, act, scr, M, K, N, RT_AMX_AUTO);
    return;
  }
  if (mode == LATHE_RT_Q_S8 && isa == LATHE_RT_ISA_F32) {
    int many = M >= Q_PANEL_M;
    int64_t per = 16 * (many ? 1 : M) * j.Kp, grain = per >= Q_GRAIN ? 1 : Q_GRAIN / (per ? per : 1);
    j.panel = many ? scr : NULL;
    rt_pool_for((N + 15) / 16, grain, s8_f32_part, &j);
    if (many) {
      rt_sgemm(101, 111, 112, (int)M, (int)N, (int)K, 1.0f, x, (int)K, j.panel, (int)K, 0.0f, out, (int)N);
      for (int64_t i = 0; (bias || act) && i < M * N; i++)
        out[i] = rt_q_epilogue(out[i], bias ? bias[i % N] : 0.0f, bias != NULL, act);
    }
    return;
  }
  if (mode == LATHE_RT_Q_DQ8 || mode == LATHE_RT_Q_S8) {
    j.xq = scr;
    j.sx = (const float *)(void *)((char *)scr + ((M * j.Kp + 63) / 64) * 64);
    if (M >= 8 && M * K >= Q_GRAIN) rt_pool_for(M, 1, dq8_quant_rows, &j);
    else dq8_quant_rows(&j, 0, M, 0);
    dq8_product(&j);
    return;
  }
  if (panel_path(M, K)) {
    j.panel = scr;
    rt_pool_for(N, K >= Q_GRAIN ? 1 : Q_GRAIN / K, wo_panel_part, &j);
    rt_sgemm(101, 111, 112, (int)M, (int)N, (int)K, 1.0f, x, (int)K, j.panel, (int)K, 0.0f, out, (int)N);
    return;
  }
  if (mode == LATHE_RT_Q_W8 || mode == LATHE_RT_Q_W4) {
    rt_qwo_matmul(out, x, w, s, scr, (int)mode, (int)isa, M, K, N);
    return;
  }
  int64_t per = M * K, grain = per >= Q_GRAIN ? 1 : Q_GRAIN / per;
  rt_pool_for(N, grain, wo_rows_part, &j);
}

/* The integer product on rows already quantized: xq [M, Kp] (u8 = q + 128
 * for the VNNI kernels, s8 otherwise, as dq8_quant_rows writes them), sx
 * [M] their scales. For int8 conv2d (rt/rt_qconv.c), which quantizes its
 * input once and unrolls the bytes, instead of quantizing every unrolled
 * row (each input repeated KH*KW times). */
void lathe_rt_qmatmul_xq(float *out, const uint8_t *xq, const float *sx, const void *w, const float *s,
                         const int32_t *c, const float *bias, int64_t mode, int64_t M, int64_t K, int64_t N, int64_t isa,
                         int64_t act) {
  q_job j = {.out = out, .w = w, .s = s, .c = c, .bias = bias, .act = act, .mode = (int)mode, .isa = (int)isa,
             .M = M, .K = K, .N = N, .Kp = rt_q_kpad(K), .xq = xq, .sx = sx};
  dq8_product(&j);
}
