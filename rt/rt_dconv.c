/* rt_dconv.c -- the direct f32 convolution for small channel counts
 * (lathe_rt_conv2d; codegen/llvm/cg_dconv.c decides when it runs).
 *
 * Profiled on the digits CNN at batch 128 (LATHE_PROFILE): the two conv2d
 * kernels were 85-90% of the step, as im2col copies (C*KH*KW rows of OW
 * floats per image: 2304 floats an image for conv2) and an OpenBLAS product
 * whose M = O = 16 or 32 is too short for its packing to pay. Here each
 * image is copied once into a zero-bordered channels-last buffer
 * xp[Hp][Wp][C], and a tile of RP output pixels by OV vectors of output
 * channels stays in registers for the whole window: per tap and channel,
 * OV weight vectors (w packed as wt[kh][kw][c][O]) and RP broadcasts of the
 * pixels' input value make RP*OV FMAs. Bias and relu are applied in
 * registers; the tile is written channels-last into t[P][Op], and each
 * image's t is transposed into the NCHW output (16 x 16 blocks in zmm, else
 * 8 x 8 in ymm). Op is O padded to 8: a last 8 channels (a pruned layer's
 * 8 or 24) run on 256-bit tiles rather than a zmm half of zeros.
 * Images are split across the pool; every output sums its taps in the same
 * order (kh, kw, c) whatever the thread count or path's vector width, so
 * results do not depend on the threads. The scalar path (any CPU, and
 * LATHE_CPU_FEATURES=-avx2) does the same arithmetic one lane at a time. */
#include <math.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "lathe_rt.h"
#include "rt_qconv.h"
#include "threadpool.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

#include "rt_quant.h"
#endif

enum { DC_RP = 12 }; /* output pixels per register tile (16 for a single vector of channels) */

typedef struct {
  float *out;
  const float *x, *wt, *bias; /* wt [KH*KW*C][Op] */
  const int32_t *koff;        /* [K]: tap (kh, kw, c)'s offset in xp from its window's corner */
  const int32_t *poff;        /* [P]: output pixel p's window corner in xp (no division per tile) */
  rt_qc_geom g;
  int64_t Hp, Wp, P, Op, K, isa, act;
} dc_job;

static int64_t dc_span(int64_t out, int64_t s, int64_t k, int64_t dil) { return (out - 1) * s + (k - 1) * dil + 1; }

/* the padded image's extent: every window inside, x at (padT, padL) */
static void dc_padded(const rt_qc_geom *g, int64_t *Hp, int64_t *Wp) {
  int64_t h = dc_span(g->OH, g->s, g->KH, g->dil), w = dc_span(g->OW, g->s, g->KW, g->dil);
  *Hp = h > g->H + g->padT ? h : g->H + g->padT, *Wp = w > g->W + g->padL ? w : g->W + g->padL;
}

int64_t lathe_rt_conv2d_floats(int64_t C, int64_t hw, int64_t O, int64_t ohw, int64_t kern, int64_t pad) {
  rt_qc_geom g = rt_qc_unpack(1, C, hw, O, ohw, kern, pad);
  int64_t Hp, Wp;
  dc_padded(&g, &Hp, &Wp);
  return (C * Hp * Wp + 15) / 16 * 16 + g.OH * g.OW * ((O + 7) / 8 * 8);
}

/* ---- the features: AVX-512F (and the OS's ZMM state) or AVX2 + FMA ---- */

int64_t lathe_rt_conv_isa(void) {
#if defined(__x86_64__)
  const char *env = getenv("LATHE_CPU_FEATURES");
  __builtin_cpu_init();
  int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !rt_q_feature_off(env, "avx2");
  int v512 = avx2 && __builtin_cpu_supports("avx512f") && !rt_q_feature_off(env, "avx512f");
  return v512 ? LATHE_RT_CONV_AVX512 : avx2 ? LATHE_RT_CONV_AVX2 : LATHE_RT_CONV_SCALAR;
#else
  return LATHE_RT_CONV_SCALAR;
#endif
}

/* ---- per image: the padded channels-last copy ---- */

static void pad_image(const dc_job *j, const float *x, float *xp) {
  const rt_qc_geom *g = &j->g;
  int64_t C = g->C, HW = g->H * g->W;
  memset(xp, 0, sizeof(float) * (size_t)(C * j->Hp * j->Wp));
  for (int64_t h = 0; h < g->H; h++)
    for (int64_t v = 0; v < g->W; v++) {
      float *d = xp + ((h + g->padT) * j->Wp + v + g->padL) * C;
      const float *s = x + h * g->W + v;
      for (int64_t c = 0; c < C; c++) d[c] = s[c * HW];
    }
}

/* the input of output pixel p: its window's top left corner in xp */
static const float *pixel_at(const dc_job *j, const float *xp, int64_t p) { return xp + j->poff[p]; }

/* ---- the scalar tile: one pixel, every channel ---- */

static void tile_scalar(const dc_job *j, const float *xp, int64_t p, float *t) {
  const rt_qc_geom *g = &j->g;
  const float *xr = pixel_at(j, xp, p);
  float *acc = t + p * j->Op;
  for (int64_t o = 0; o < g->O; o++) acc[o] = j->bias ? j->bias[o] : 0.0f;
  const float *w = j->wt;
  for (int64_t k = 0; k < j->K; k++, w += j->Op)
    for (int64_t o = 0; o < g->O; o++) acc[o] = fmaf(xr[j->koff[k]], w[o], acc[o]);
  if (j->act)
    for (int64_t o = 0; o < g->O; o++) acc[o] = acc[o] > 0 ? acc[o] : acc[o] == acc[o] ? 0.0f : acc[o];
}

static void image_scalar(const dc_job *j, const float *xp, float *t) {
  for (int64_t p = 0; p < j->P; p++) tile_scalar(j, xp, p, t);
}

/* t [P][Op] to out [O][P] */
static void untranspose_scalar(const dc_job *j, const float *t, float *out) {
  for (int64_t o = 0; o < j->g.O; o++)
    for (int64_t p = 0; p < j->P; p++) out[o * j->P + p] = t[p * j->Op + o];
}

#if defined(__x86_64__)
#define T512 __attribute__((target("avx512f,avx2,fma")))
#define TAVX2 __attribute__((target("avx2,fma")))
#define INLINE inline __attribute__((always_inline))

/* The register tile, written once per ISA: RP pixels (rp <= DC_RP, pointers
 * xr) by OV vectors of VL channels from channel o0. */
#define DC_TILE(NAME, ATTR, RP, VT, VL, OV, LOAD, STORE, BCAST, FMA, ZERO, MAX)                                        \
  static ATTR INLINE void NAME(const dc_job *j, const float *const *xr, int rp, int64_t o0, float *t) {           \
    VT acc[RP][OV];                                                                                               \
    for (int v = 0; v < OV; v++) {                                                                                \
      VT b = j->bias ? LOAD(j->bias + o0 + v * VL) : ZERO();                                                      \
      for (int r = 0; r < RP; r++) acc[r][v] = b;                                                                 \
    }                                                                                                             \
    const float *w = j->wt + o0;                                                                                  \
    for (int64_t k = 0; k < j->K; k++, w += j->Op) {                                                              \
      int64_t off = j->koff[k];                                                                                   \
      VT wv[OV];                                                                                                  \
      for (int v = 0; v < OV; v++) wv[v] = LOAD(w + v * VL);                                                      \
      for (int r = 0; r < RP; r++) {                                                                              \
        VT xv = BCAST(xr[r][off]);                                                                                \
        for (int v = 0; v < OV; v++) acc[r][v] = FMA(xv, wv[v], acc[r][v]);                                       \
      }                                                                                                           \
    }                                                                                                             \
    for (int r = 0; r < rp; r++)                                                                                  \
      for (int v = 0; v < OV; v++) STORE(t + r * j->Op + o0 + v * VL, j->act ? MAX(ZERO(), acc[r][v]) : acc[r][v]); \
  }

/* the bias is read VL floats at a time: the caller passes a padded copy */
#define DC_512(NAME, RP, OV)                                                                                      \
  DC_TILE(NAME, T512, RP, __m512, 16, OV, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps,     \
          _mm512_setzero_ps, _mm512_max_ps)
DC_512(tile512_12x2, 12, 2)
DC_512(tile512_12x1, 12, 1)
DC_512(tile512_8x2, 8, 2)
DC_512(tile512_8x1, 8, 1)
DC_512(tile512_16x1, 16, 1)
/* 8 channels on 256-bit vectors inside the AVX-512 path: a layer of 8 (or
 * 16k + 8) channels, as structured pruning leaves them, would otherwise pay
 * for 16 lanes of which 8 are zero padding (on CPUs that split 512-bit
 * FMAs in two, 256-bit ones issue at twice the rate) */
DC_TILE(tile256v_12x1, T512, 12, __m256, 8, 1, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps,
        _mm256_setzero_ps, _mm256_max_ps)
DC_TILE(tile256v_8x1, T512, 8, __m256, 8, 1, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps,
        _mm256_setzero_ps, _mm256_max_ps)
DC_TILE(tile256_12x1, TAVX2, 12, __m256, 8, 1, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps,
        _mm256_setzero_ps, _mm256_max_ps)

/* A tile's pixels: pointers for rp <= RP pixels from p, the last repeated
 * to fill RP (their extra results go nowhere). */
static int tile_pixels(const dc_job *j, const float *xp, int64_t p, int RP, const float **xr) {
  int rp = j->P - p < RP ? (int)(j->P - p) : RP;
  for (int r = 0; r < RP; r++) xr[r] = pixel_at(j, xp, p + (r < rp ? r : rp - 1));
  return rp;
}

/* Tiles of 8 pixels where they cover the image exactly and 12 would not
 * (the digits CNN: 64 and 16 pixels), else 12. */
static int tile_rows(int64_t P) { return P % 12 && !(P % 8) ? 8 : 12; }

/* One tile row of pixels from p across the channels: 32 and 16 at a time
 * in zmm, a last 8 (Op is a multiple of 8) in ymm. */
static T512 INLINE void row_512(const dc_job *j, const float *const *xr, int rp, int RP, float *tp) {
  int64_t o = 0;
  for (; o + 32 <= j->Op; o += 32) RP == 8 ? tile512_8x2(j, xr, rp, o, tp) : tile512_12x2(j, xr, rp, o, tp);
  for (; o + 16 <= j->Op; o += 16) RP == 8 ? tile512_8x1(j, xr, rp, o, tp) : tile512_12x1(j, xr, rp, o, tp);
  if (o < j->Op) RP == 8 ? tile256v_8x1(j, xr, rp, o, tp) : tile256v_12x1(j, xr, rp, o, tp);
}

static T512 void image_512(const dc_job *j, const float *xp, float *t) {
  const float *xr[16];
  if (j->Op == 16 && j->P % 16 == 0) { /* one vector of channels (conv1: 16): 16 pixels keep 16 sums in flight */
    for (int64_t p = 0; p < j->P; p += 16) {
      int rp = tile_pixels(j, xp, p, 16, xr);
      tile512_16x1(j, xr, rp, 0, t + p * j->Op);
    }
    return;
  }
  int RP = tile_rows(j->P);
  for (int64_t p = 0; p < j->P; p += RP) row_512(j, xr, tile_pixels(j, xp, p, RP, xr), RP, t + p * j->Op);
}

static TAVX2 void image_avx2(const dc_job *j, const float *xp, float *t) {
  const float *xr[DC_RP];
  for (int64_t p = 0; p < j->P; p += DC_RP) {
    int rp = tile_pixels(j, xp, p, DC_RP, xr);
    for (int64_t o = 0; o < j->Op; o += 8) tile256_12x1(j, xr, rp, o, t + p * j->Op);
  }
}

/* 16 rows of 16 floats (stride ld) transposed into 16 rows at out (stride
 * od): pairs of rows interleaved, then pairs of pairs, so that r[4i + k]'s
 * 128-bit lane L holds column 4L + k of rows 4i .. 4i+3; the lanes are then
 * gathered across the four r[4i + k]. */
static T512 void tr16(const float *in, int64_t ld, float *out, int64_t od) {
  __m512 r[16], u[16];
  for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(in + i * ld);
  for (int i = 0; i < 16; i += 2) {
    u[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    u[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    __m512d a = _mm512_castps_pd(u[i]), b = _mm512_castps_pd(u[i + 1]);
    __m512d c = _mm512_castps_pd(u[i + 2]), d = _mm512_castps_pd(u[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int k = 0; k < 4; k++) {
    __m512 lo01 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x44), lo23 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x44);
    __m512 hi01 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xee), hi23 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xee);
    _mm512_storeu_ps(out + k * od, _mm512_shuffle_f32x4(lo01, lo23, 0x88));
    _mm512_storeu_ps(out + (4 + k) * od, _mm512_shuffle_f32x4(lo01, lo23, 0xdd));
    _mm512_storeu_ps(out + (8 + k) * od, _mm512_shuffle_f32x4(hi01, hi23, 0x88));
    _mm512_storeu_ps(out + (12 + k) * od, _mm512_shuffle_f32x4(hi01, hi23, 0xdd));
  }
}

/* 8 rows of 8 floats (stride ld) transposed into 8 rows at out (stride od):
 * the same interleaving as tr16 within 128-bit lanes, then the lanes. */
static TAVX2 INLINE void tr8(const float *in, int64_t ld, float *out, int64_t od) {
  __m256 r[8], u[8];
  for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(in + i * ld);
  for (int i = 0; i < 8; i += 2) {
    u[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    u[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) { /* r[i + k]: column k (and 4 + k) of rows i .. i+3 */
    r[i] = _mm256_shuffle_ps(u[i], u[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(u[i], u[i + 2], 0xee);
    r[i + 2] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0xee);
  }
  for (int k = 0; k < 4; k++) {
    _mm256_storeu_ps(out + k * od, _mm256_permute2f128_ps(r[k], r[4 + k], 0x20));
    _mm256_storeu_ps(out + (4 + k) * od, _mm256_permute2f128_ps(r[k], r[4 + k], 0x31));
  }
}

/* t [P][Op] to out [O][P] by 8 x 8 blocks (O and P multiples of 8) */
static TAVX2 void untranspose_avx2(const dc_job *j, const float *t, float *out) {
  if (j->P % 8 || j->g.O % 8) {
    untranspose_scalar(j, t, out);
    return;
  }
  for (int64_t p = 0; p < j->P; p += 8)
    for (int64_t o = 0; o < j->g.O; o += 8) tr8(t + p * j->Op + o, j->Op, out + o * j->P + p, j->P);
}

static T512 void untranspose_512(const dc_job *j, const float *t, float *out) {
  if (j->P % 16 || j->g.O % 16) {
    untranspose_avx2(j, t, out);
    return;
  }
  for (int64_t p = 0; p < j->P; p += 16)
    for (int64_t o = 0; o < j->g.O; o += 16) tr16(t + p * j->Op + o, j->Op, out + o * j->P + p, j->P);
}
#endif

/* images [lo, hi); this part's buffers on the stack (the code generator
 * takes this path only when they fit: LATHE_RT_CONV_STACK floats) */
static void conv_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const dc_job *j = ctx;
  const rt_qc_geom *g = &j->g;
  alignas(64) float buf[LATHE_RT_CONV_STACK];
  float *xp = buf, *t = buf + (g->C * j->Hp * j->Wp + 15) / 16 * 16;
  for (int64_t n = lo; n < hi; n++) {
    float *out = j->out + n * g->O * j->P;
    pad_image(j, j->x + n * g->C * g->H * g->W, xp);
#if defined(__x86_64__)
    if (j->isa == LATHE_RT_CONV_AVX512) {
      image_512(j, xp, t);
      untranspose_512(j, t, out);
      continue;
    }
    if (j->isa == LATHE_RT_CONV_AVX2) {
      image_avx2(j, xp, t);
      untranspose_avx2(j, t, out);
      continue;
    }
#endif
    image_scalar(j, xp, t);
    untranspose_scalar(j, t, out);
  }
}

int64_t lathe_rt_conv2d_scratch_bytes(int64_t C, int64_t O, int64_t ohw, int64_t kern) {
  int64_t KH = kern & 0xffff, KW = (kern >> 16) & 0xffff, Op = (O + 7) / 8 * 8;
  int64_t P = (ohw & 0xffffffff) * (ohw >> 32);
  return 4 * (KH * KW * C * (Op + 1) + Op + P); /* wt, the bias, koff, poff */
}

void lathe_rt_conv2d(float *out, const float *x, const float *w, const float *bias, void *scr, int64_t N, int64_t C,
                     int64_t hw, int64_t O, int64_t ohw, int64_t kern, int64_t pad, int64_t flags) {
  dc_job j = {.out = out, .x = x, .g = rt_qc_unpack(N, C, hw, O, ohw, kern, pad)};
  const rt_qc_geom *g = &j.g;
  j.isa = flags & 0xff, j.act = (flags >> 8) & 1;
  if (j.isa > lathe_rt_conv_isa()) j.isa = lathe_rt_conv_isa(); /* an object emitted for a wider CPU */
  dc_padded(g, &j.Hp, &j.Wp);
  /* channels padded to 8, not 16: the AVX-512 path takes a last 8 in ymm */
  j.P = g->OH * g->OW, j.Op = (O + 7) / 8 * 8;
  /* wt [kh][kw][c][Op] from w [O][C][KH][KW], zero in the padded channels;
   * then the bias, padded */
  float *wt = scr, *bp = wt + g->KH * g->KW * C * j.Op;
  for (int64_t ky = 0; ky < g->KH; ky++)
    for (int64_t kx = 0; kx < g->KW; kx++)
      for (int64_t c = 0; c < C; c++) {
        float *d = wt + ((ky * g->KW + kx) * C + c) * j.Op;
        for (int64_t o = 0; o < j.Op; o++) d[o] = o < O ? w[((o * C + c) * g->KH + ky) * g->KW + kx] : 0.0f;
      }
  for (int64_t o = 0; o < j.Op; o++) bp[o] = bias && o < O ? bias[o] : 0.0f;
  int32_t *koff = (int32_t *)(void *)(bp + j.Op);
  j.K = g->KH * g->KW * C;
  for (int64_t ky = 0; ky < g->KH; ky++) /* the code generator keeps xp under 2^31 floats */
    for (int64_t kx = 0; kx < g->KW; kx++)
      for (int64_t c = 0; c < C; c++) koff[(ky * g->KW + kx) * C + c] = (int32_t)((ky * j.Wp + kx) * g->dil * C + c);
  int32_t *poff = koff + j.K;
  for (int64_t p = 0; p < j.P; p++) poff[p] = (int32_t)(((p / g->OW) * j.Wp + p % g->OW) * g->s * C);
  j.wt = wt, j.bias = bp, j.koff = koff, j.poff = poff;
  int64_t per = j.P * O * C * g->KH * g->KW; /* multiply-adds an image */
  rt_pool_for(N, per >= (1 << 16) ? 1 : (1 << 16) / (per ? per : 1), conv_part, &j);
}
