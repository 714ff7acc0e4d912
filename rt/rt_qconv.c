/* rt_qconv.c -- int8 conv2d (IR op QCONV2D): the input unrolled into im2col
 * rows (rt_qconv.h) times the conv's int8 weights, then each image's
 * [OH*OW, O] block transposed into [O, OH, OW]. One product over every
 * image's pixels keeps the integer kernels' 4-row by 16-column blocks full.
 *
 * Static int8 with an integer kernel: the input has one calibrated scale,
 * so it is quantized once (each input value once, not KH*KW times as its
 * unrolled copies) into a padded channels-last copy (the padding: the byte
 * of a zero), whose window rows are runs of KW*C bytes to copy, then
 * lathe_rt_qmatmul_xq. Quantizing x then unrolling gives the
 * bytes that unrolling then quantizing would (the same per-value
 * rt_q_row_static arithmetic), so the result is the reference's.
 * Otherwise (int8-dynamic's per-row scales; static int8's f32 form; not
 * calibrated): f32 rows and lathe_rt_qmatmul. */
#include <string.h>

#include "lathe_rt.h"
#include "rt_qconv.h"
#include "rt_qdq.h"
#include "rt_qgemm.h"
#include "rt_quant.h"
#include "threadpool.h"

enum { QC_GRAIN = 1 << 14 }; /* copied values per part at least */

typedef struct {
  const float *x;
  const int8_t *x8;   /* static int8 between products: x already s8 (rt/rt_qdq.h), or NULL */
  float *cols, *y, *out;
  uint8_t *xc, *xq, *rows; /* static int8: x quantized [N, C, H, W]; padded, channels last [N, Hp, Wp, C]; the rows [M, Kp] */
  int64_t isa;
  float inv;          /* 1 / sx */
  int offset;         /* 128: u8 rows (VNNI), 0: s8 */
  rt_qc_geom g;
  int64_t K, Kp;
} qc_job;

static void im2col_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const qc_job *j = ctx;
  for (int64_t m = lo; m < hi; m++) rt_qc_row(j->x, &j->g, m, j->cols + m * j->K);
}

/* The padded extent the windows span along one axis: from -pad to the last
 * window's end */
static int64_t span(int64_t out, int64_t s, int64_t k, int64_t dil) { return (out - 1) * s + (k - 1) * dil + 1; }

/* x [lo, hi) to bytes, rt_q_row_static's arithmetic value by value:
 * round-to-even(x / sx) clamped to -127..127 (NaN: 0), + offset. The
 * vector form is the same operations (cvtps2dq rounds as cvtss2si does). */
static inline void quant_scalar(const qc_job *j, int64_t lo, int64_t hi) {
  for (int64_t i = lo; i < hi; i++) {
    float q = j->x[i] * j->inv;
    q = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q == q ? q : 0.0f;
    j->xc[i] = (uint8_t)(rt_q_rint(q) + j->offset);
  }
}

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static void quant_avx2(const qc_job *j, int64_t lo, int64_t hi) {
  __m256 inv = _mm256_set1_ps(j->inv), lim = _mm256_set1_ps(127.0f), neg = _mm256_set1_ps(-127.0f);
  __m256i off = _mm256_set1_epi32(j->offset);
  int32_t t[8];
  int64_t i = lo;
  for (; i + 8 <= hi; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(j->x + i), inv);
    __m256 ord = _mm256_cmp_ps(v, v, _CMP_ORD_Q);                  /* NaN: 0 */
    v = _mm256_and_ps(_mm256_min_ps(_mm256_max_ps(v, neg), lim), ord); /* max(NaN, -127) is -127, then masked */
    _mm256_storeu_si256((__m256i *)(void *)t, _mm256_add_epi32(_mm256_cvtps_epi32(v), off));
    for (int k = 0; k < 8; k++) j->xc[i + k] = (uint8_t)t[k];
  }
  quant_scalar(j, i, hi);
}
#endif

static void quant_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const qc_job *j = ctx;
  if (j->x8) { /* already s8: only the offset */
    for (int64_t i = lo; i < hi; i++) j->xc[i] = (uint8_t)(j->x8[i] + j->offset);
    return;
  }
#if defined(__x86_64__)
  if (j->isa >= LATHE_RT_ISA_AVX2) { /* every integer kernel but the scalar one has AVX2 */
    quant_avx2(j, lo, hi);
    return;
  }
#endif
  quant_scalar(j, lo, hi);
}

/* padded rows [lo, hi) (image n, row hh) of the quantized input channels
 * last: xq [N, Hp, Wp, C], the byte of a zero outside the image */
static void nhwc_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const qc_job *j = ctx;
  const rt_qc_geom *g = &j->g;
  int64_t Hp = span(g->OH, g->s, g->KH, g->dil), Wp = span(g->OW, g->s, g->KW, g->dil), C = g->C, HW = g->H * g->W;
  for (int64_t row = lo; row < hi; row++) {
    int64_t n = row / Hp, h = row % Hp - g->padT;
    uint8_t *d = j->xq + row * Wp * C;
    for (int64_t vv = 0; vv < Wp; vv++, d += C) {
      int64_t v = vv - g->padL;
      if (h < 0 || h >= g->H || v < 0 || v >= g->W) {
        memset(d, j->offset, (size_t)C);
        continue;
      }
      const uint8_t *x = j->xc + n * C * HW + h * g->W + v;
      for (int64_t c = 0; c < C; c++) d[c] = x[c * HW];
    }
  }
}

/* rows [lo, hi) of the unrolled bytes: per window row, its KW positions'
 * channels (one run of KW*C bytes without dilation) */
static void bytes_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const qc_job *j = ctx;
  const rt_qc_geom *g = &j->g;
  int64_t P = g->OH * g->OW, C = g->C, KW = g->KW, dil = g->dil;
  int64_t Hp = span(g->OH, g->s, g->KH, g->dil), Wp = span(g->OW, g->s, g->KW, g->dil);
  for (int64_t m = lo; m < hi; m++) {
    int64_t n = m / P, oh = (m % P) / g->OW, ow = m % g->OW;
    uint8_t *r = j->rows + m * j->Kp;
    for (int64_t i = 0; i < g->KH; i++) {
      const uint8_t *src = j->xq + ((n * Hp + oh * g->s + i * dil) * Wp + ow * g->s) * C;
      if (dil == 1) memcpy(r, src, (size_t)(KW * C)), r += KW * C;
      else
        for (int64_t t = 0; t < KW; t++, r += C) memcpy(r, src + t * dil * C, (size_t)C);
    }
    memset(r, j->offset, (size_t)(j->Kp - j->K)); /* the padding to Kp */
  }
}

/* images [lo, hi): y [P, O] to out [O, P] */
static void untranspose_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const qc_job *j = ctx;
  int64_t P = j->g.OH * j->g.OW, O = j->g.O;
  for (int64_t n = lo; n < hi; n++)
    for (int64_t o = 0; o < O; o++) {
      const float *y = j->y + n * P * O + o;
      float *d = j->out + (n * O + o) * P;
      for (int64_t p = 0; p < P; p++) d[p] = y[p * O];
    }
}

static int64_t align64(int64_t b) { return (b + 63) / 64 * 64; }
static int64_t grain(int64_t per) { return per >= QC_GRAIN ? 1 : QC_GRAIN / (per ? per : 1); }

int64_t lathe_rt_qconv2d_scratch_bytes(int64_t mode, int64_t N, int64_t C, int64_t hw, int64_t O, int64_t ohw,
                                       int64_t kern) {
  rt_qc_geom g = rt_qc_unpack(N, C, hw, O, ohw, kern, 0);
  int64_t K = C * g.KH * g.KW, M = N * g.OH * g.OW;
  int64_t f32 = align64(M * K * 4) + lathe_rt_qmatmul_scratch_bytes(mode, M, K, O);
  int64_t Hp = span(g.OH, g.s, g.KH, g.dil), Wp = span(g.OW, g.s, g.KW, g.dil);
  int64_t s8 = align64(N * C * g.H * g.W) + align64(N * Hp * Wp * C) + align64(M * rt_q_kpad(K)) + align64(M * 4);
  return align64(M * O * 4) + (f32 > s8 ? f32 : s8) + 64;
}

/* images [lo, hi): the s8 y [P, O] to out [O, P] */
static void untranspose8_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const qc_job *j = ctx;
  int64_t P = j->g.OH * j->g.OW, O = j->g.O;
  const int8_t *y8 = (const int8_t *)(const void *)j->y;
  int8_t *out8 = (int8_t *)(void *)j->out;
  for (int64_t n = lo; n < hi; n++)
    for (int64_t o = 0; o < O; o++)
      for (int64_t p = 0; p < P; p++) out8[(n * O + o) * P + p] = y8[(n * P + p) * O + o];
}

/* static int8 on an integer kernel: quantize x once (or take its s8 as it
 * is), unroll the bytes; the rows' scales (s[O]) returned */
static float *s8_prep(qc_job *j, const float *s, void *scr, int64_t isa) {
  const rt_qc_geom *g = &j->g;
  int64_t M = g->N * g->OH * g->OW, Hp = span(g->OH, g->s, g->KH, g->dil), Wp = span(g->OW, g->s, g->KW, g->dil);
  int64_t nx = g->N * Hp * Wp * g->C;
  j->xc = scr;
  j->xq = j->xc + align64(g->N * g->C * g->H * g->W);
  j->rows = j->xq + align64(nx);
  j->isa = isa;
  float *sx = (float *)(void *)(j->rows + align64(M * j->Kp));
  j->inv = 1.0f / s[g->O];
  j->offset = isa == LATHE_RT_ISA_AVXVNNI || isa == LATHE_RT_ISA_AVX512VNNI ? 128 : 0;
  rt_pool_for(g->N * g->C * g->H * g->W, QC_GRAIN, quant_part, j);
  rt_pool_for(g->N * Hp, grain(Wp * g->C), nhwc_part, j);
  rt_pool_for(M, grain(j->Kp), bytes_part, j);
  for (int64_t m = 0; m < M; m++) sx[m] = s[g->O];
  return sx;
}

static void s8_rows(qc_job *j, const void *w, const float *s, const int32_t *c, const float *bias, void *scr,
                    int64_t isa, int64_t act) {
  float *sx = s8_prep(j, s, scr, isa);
  lathe_rt_qmatmul_xq(j->y, j->rows, sx, w, s, c, bias, LATHE_RT_Q_S8, j->g.N * j->g.OH * j->g.OW, j->K, j->g.O, isa,
                      act);
}

void lathe_rt_qconv2d_s8io(void *out, const void *x, const void *w, const float *s, const int32_t *c,
                           const float *bias, const float *os, void *scr, int64_t N, int64_t C, int64_t hw, int64_t O,
                           int64_t ohw, int64_t kern, int64_t pad, int64_t flags) {
  int64_t isa = flags & 0xff, act = (flags >> 8) & 0xff, xi8 = (flags >> 16) & 1, oidx = flags >> 24;
  qc_job j = {.x = xi8 ? NULL : x, .x8 = xi8 ? x : NULL, .out = out, .g = rt_qc_unpack(N, C, hw, O, ohw, kern, pad)};
  int64_t P = j.g.OH * j.g.OW, M = N * P;
  j.K = C * j.g.KH * j.g.KW, j.Kp = rt_q_kpad(j.K);
  j.y = scr;
  float *sx = s8_prep(&j, s, (char *)scr + align64(M * O * 4), isa);
  rt_qgemm_args a = {.out = os ? NULL : j.y, .out8 = os ? (int8_t *)(void *)j.y : NULL,
                     .oinv = os ? rt_q_inv(os[oidx]) : 0.0f, .xq = j.rows, .sx = sx, .w = w, .s = s, .c = c,
                     .bias = bias, .act = act, .M = M, .N = O, .Kp = j.Kp};
  rt_q_product(&a, isa);
  rt_pool_for(N, grain(P * O), os ? untranspose8_part : untranspose_part, &j);
}

void lathe_rt_qconv2d(float *out, const float *x, const void *w, const float *s, const int32_t *c, const float *bias,
                      void *scr, int64_t N, int64_t C, int64_t hw, int64_t O, int64_t ohw, int64_t kern, int64_t pad,
                      int64_t flags) {
  qc_job j = {.x = x, .out = out, .g = rt_qc_unpack(N, C, hw, O, ohw, kern, pad)};
  int64_t mode = flags & 0xff, isa = (flags >> 8) & 0xff, act = (flags >> 16) & 0xff;
  int64_t P = j.g.OH * j.g.OW, M = N * P;
  j.K = C * j.g.KH * j.g.KW, j.Kp = rt_q_kpad(j.K);
  j.y = scr;
  void *rest = (char *)scr + align64(M * O * 4);
  if (mode == LATHE_RT_Q_S8 && isa != LATHE_RT_ISA_F32 && s[O] > 0)
    s8_rows(&j, w, s, c, bias, rest, isa, act);
  else {
    j.cols = rest;
    rt_pool_for(M, grain(j.K), im2col_part, &j);
    lathe_rt_qmatmul(j.y, j.cols, w, s, c, bias, (char *)rest + align64(M * j.K * 4), mode, M, j.K, O, isa, act);
  }
  rt_pool_for(N, grain(P * O), untranspose_part, &j);
}
