/* rt_qbf16.c -- bf16 products on the host's bf16 dot products.
 *
 * `lathe quantize --mode bf16` stores W as bf16 [N, K]: each output
 * column's K weights contiguous, so consecutive pairs (k, k + 1) are
 * already the pairs vdpbf16ps multiplies: one 64-byte load is a column's
 * next 32 weights, no repacking. Each activation row is rounded to bf16
 * once (rt_qbf16_round: nearest even, the interpreter's reference rounds
 * the same way), then tiles of 4 rows x 4 columns keep 16 accumulators of
 * 16 f32 lanes; vdpbf16ps multiplies bf16 pairs exactly and adds them in
 * f32 (2 x the multiply-adds of an f32 FMA per instruction). The 16 lanes
 * are summed once per tile at the end, then bias and relu.
 *
 * Chosen when the model is compiled (lathe_rt_bf16_isa: CPUID's
 * AVX512_BF16 and the OS's ZMM state, less LATHE_CPU_FEATURES's
 * -avx512bf16); else bf16 weights are converted to f32 inside the f32
 * kernels (rt/rt_quant.c). Columns are split over the pool by a rule fixed
 * by the shapes, so results do not depend on the schedule. */
#include <cpuid.h>
#include <immintrin.h>
#include <stdlib.h>

#include "rt/lathe_rt.h"
#include "rt/rt_qbf16.h"
#include "rt/rt_quant.h"
#include "rt/threadpool.h"

enum {
  B_GRAIN = 1 << 16, /* multiply-adds per part at least */
  B_TILE = 4,        /* rows and columns per tile */
  B_ROWS = 64,       /* rows per pass over a part's columns: 64 bf16 rows of K = 1024 are 128 KiB, in L2 */
};

static int64_t kx_of(int64_t K) { return (K + 31) / 32 * 32; } /* a bf16 row, zero-padded to 64 bytes */

/* CPUID leaf 7 sub-leaf 1 EAX bit 5; avx512f/bw from the compiler's
 * detection, which also checks that the OS saves the ZMM state */
static int has_avx512bf16(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a >> 5 & 1u)) return 0;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}

int64_t lathe_rt_bf16_isa(int64_t isa) {
  return has_avx512bf16() && !rt_q_feature_off(getenv("LATHE_CPU_FEATURES"), "avx512bf16") ? LATHE_RT_ISA_AVX512BF16
                                                                                             : isa;
}

int64_t rt_qbf16_scratch_bytes(int64_t M, int64_t K) { return M * kx_of(K) * 2 + 64; }

typedef struct {
  float *out;
  const float *x, *bias;
  const uint16_t *w, *xb; /* xb: [M, Kx] the rounded rows */
  int64_t act, M, K, Kx, N;
} b_job;

#define TBF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

/* the sums of four 16-lane accumulators, in that order */
static TBF16 __m128 sum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  __m512 v[4] = {a, b, c, d};
  __m128 q[4];
  for (int i = 0; i < 4; i++) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v[i]),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v[i]), 1)));
    q[i] = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  }
  return _mm_hadd_ps(_mm_hadd_ps(q[0], q[1]), _mm_hadd_ps(q[2], q[3]));
}

/* MB rows of xb against columns w[0..3] (the tail of K masked: the
 * weights' rows are not padded), sums into r */
static inline __attribute__((always_inline)) TBF16 void tile(const b_job *j, const uint16_t *xb,
                                                             const uint16_t *const w[B_TILE], int MB,
                                                             float r[B_TILE][B_TILE]) {
  __m512 acc[B_TILE][B_TILE];
  for (int i = 0; i < MB; i++)
    for (int c = 0; c < B_TILE; c++) acc[i][c] = _mm512_setzero_ps();
  int64_t K = j->K, k = 0;
  for (; k < K; k += 32) {
    __mmask32 m = K - k >= 32 ? (__mmask32)~0u : (__mmask32)((1u << (K - k)) - 1);
    __m512i wv[B_TILE];
    for (int c = 0; c < B_TILE; c++) wv[c] = _mm512_maskz_loadu_epi16(m, w[c] + k);
    for (int i = 0; i < MB; i++) {
      __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(xb + i * j->Kx + k));
      for (int c = 0; c < B_TILE; c++) acc[i][c] = _mm512_dpbf16_ps(acc[i][c], xv, (__m512bh)wv[c]);
    }
  }
  for (int i = 0; i < MB; i++) _mm_storeu_ps(r[i], sum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]));
}

/* column tile t against rows [r0, r1) */
static TBF16 void b_tile_rows(const b_job *j, int64_t t, int64_t r0, int64_t r1) {
  float r[B_TILE][B_TILE];
  int64_t n0 = t * B_TILE, nb = j->N - n0 < B_TILE ? j->N - n0 : B_TILE;
  const uint16_t *w[B_TILE];
  for (int c = 0; c < B_TILE; c++) w[c] = j->w + (n0 + (c < nb ? c : nb - 1)) * j->K; /* a short tile repeats its last column */
  for (int64_t m0 = r0; m0 < r1; m0 += B_TILE) {
    int mb = r1 - m0 < B_TILE ? (int)(r1 - m0) : B_TILE;
    const uint16_t *xb = j->xb + m0 * j->Kx;
    switch (mb) { /* constant row counts: the accumulators stay in registers */
    case 1: tile(j, xb, w, 1, r); break;
    case 2: tile(j, xb, w, 2, r); break;
    case 3: tile(j, xb, w, 3, r); break;
    default: tile(j, xb, w, 4, r); break;
    }
    for (int i = 0; i < mb; i++) {
      float *o = j->out + (m0 + i) * j->N + n0;
      for (int64_t c = 0; c < nb; c++)
        o[c] = rt_q_epilogue(r[i][c], j->bias ? j->bias[n0 + c] : 0.0f, j->bias != NULL, j->act);
    }
  }
}

/* column tiles [lo, hi) against every row, B_ROWS rows at a time: those
 * rows stay in cache while every tile passes over them, and each tile's
 * weights stay in L1 while its rows pass */
static void b_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const b_job *j = ctx;
  for (int64_t r0 = 0; r0 < j->M; r0 += B_ROWS)
    for (int64_t t = lo; t < hi; t++) b_tile_rows(j, t, r0, j->M - r0 < B_ROWS ? j->M : r0 + B_ROWS);
}

static void b_round_rows(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const b_job *j = ctx;
  for (int64_t m = lo; m < hi; m++) {
    uint16_t *q = (uint16_t *)j->xb + m * j->Kx;
    for (int64_t k = 0; k < j->K; k++) q[k] = rt_qbf16_round(j->x[m * j->K + k]);
    for (int64_t k = j->K; k < j->Kx; k++) q[k] = 0;
  }
}

void rt_qbf16_matmul(float *out, const float *x, const uint16_t *w, const float *bias, int64_t act, void *scr,
                     int64_t M, int64_t K, int64_t N) {
  b_job j = {.out = out, .x = x, .bias = bias, .w = w, .xb = scr, .act = act, .M = M, .K = K, .Kx = kx_of(K), .N = N};
  if (M * K >= B_GRAIN) rt_pool_for(M, 1, b_round_rows, &j);
  else b_round_rows(&j, 0, M, 0);
  int64_t tiles = (N + B_TILE - 1) / B_TILE, per = B_TILE * M * K, grain = per >= B_GRAIN ? 1 : B_GRAIN / (per ? per : 1);
  rt_pool_for(tiles, grain, b_part, &j);
}
