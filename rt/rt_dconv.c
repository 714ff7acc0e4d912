/* rt_dconv.c -- the direct f32 convolution for small channel counts
 * (lathe_rt_conv2d; codegen/llvm/cg_dconv.c decides when it runs).
 *
 * Profiled on the digits CNN at batch 128 (LATHE_PROFILE): the two conv2d
 * kernels were 85-90% of the step, as im2col copies and an OpenBLAS product
 * whose M = O = 16 or 32 is too short for its packing to pay.
 *
 * The register tile is RP images at one output pixel by OV vectors of
 * output channels: per tap (kh, kw) and channel c, OV weight vectors (w
 * packed as wt[kh][kw][c][Op]) and RP broadcasts make RP*OV FMAs. Tiling
 * across images rather than across the pixels of one image lets every tile
 * skip the taps that fall in the zero padding: all its pixels are at the
 * same place. On 4x4 images with a 3x3 window and padding 1 (conv2) that is
 * 100 of 144 taps, 31% of the multiply-adds; on 8x8 (conv1) 16%. A group of
 * RP images is first interleaved into xg[ih][iw][c][r] (image r of the
 * group innermost), so a tile's RP broadcasts are at constant offsets from
 * one pointer. Bias and relu are applied in registers; results go
 * channels-last into t[r][16 pixels][Op], and each image's 16-pixel chunk
 * is transposed into the NCHW output (16 x 16 blocks in zmm, else 8 x 8 in
 * ymm). Op is O padded to 8: a last 8 channels (a pruned layer's 8 or 24)
 * run on 256-bit tiles rather than a zmm half of zeros (on CPUs that split
 * 512-bit FMAs in two, 256-bit ones issue at twice the rate); 8 channels
 * alone take 16 images (16 ymm sums: AVX-512VL's registers).
 *
 * A max-pool the plan fused (conv2d -> relu -> maxpool2d, flags >> 16: its
 * window k = stride) is applied to each chunk, made of whole rows of k
 * windows, before the transpose: the unpooled result is never stored (the
 * separate pools were 7-14% of the digits CNN's step).
 *
 * A part of the pool with fewer than DC_PXMAX images (batch 1) would
 * repeat its last image to fill a group, so it runs the pixel path instead:
 * each image copied into a zero-bordered channels-last buffer, a tile of RP
 * pixels of one image by OV channel vectors, the padding's zeros multiplied
 * too (an FMA of +0 leaves every finite sum as it was).
 *
 * Images are split across the pool in parts of DC_FINE that the threads
 * claim as they finish (a preempted thread holds back one part, not half
 * the batch); every output sums its taps in the same
 * order (kh, kw, c) whatever the thread count, path or tile, so results do
 * not depend on them (up to a non-finite weight on a padding tap, which
 * only the pixel path multiplies). The scalar path (any CPU, and
 * LATHE_CPU_FEATURES=-avx2) does the same arithmetic one lane at a time. */
#include <math.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "lathe_rt.h"
#include "rt_dconv_rows.h"
#include "rt_qconv.h"
#include "threadpool.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

#include "rt_quant.h"
#endif

/* DC_PB: output pixels per transposed chunk; DC_MINRP: the smallest image
 * group the code generator accepts (its stack buffers: lathe_rt_conv2d_floats);
 * DC_PXMAX: parts of fewer images run the pixel path (a group of images
 * would repeat the last one up to the group's size: 16x the work at batch
 * 1); DC_RP: the pixel path's tile */
enum { DC_PB = 16, DC_MINRP = 4, DC_PXMAX = 8, DC_RP = 12 };
/* images per part of the pool (DC_FINE = a group of 16, or two of 8), not
 * a thread's half: the threads claim parts as they finish, so a preempted
 * or late thread holds back one part, not half the batch */
enum { DC_FINE = 16 };

typedef struct {
  float *out;
  const float *x, *wt, *bias; /* wt [KH*KW][C][Op], bias [Op] */
  const int32_t *ntap;        /* [P + 1]: pixel p's valid taps are tap[ntap[p] .. ntap[p + 1]) */
  const int32_t *tap;         /* pairs: the input pixel ih*W + iw, and the window position kh*KW + kw */
  const int32_t *koff;        /* the pixel path: [K] tap (kh, kw, c)'s offset in xp from its window's corner */
  const int32_t *poff;        /* the pixel path: [P] output pixel p's window corner in xp */
  rt_qc_geom g;
  int64_t P, Op, isa, act, Hp, Wp, K;
  int64_t pk; /* a fused max-pool's window (= its stride; 0: none) */
  int64_t PO; /* output pixels an image: P, or P / pk^2 pooled */
  int vl;     /* the CPU has AVX-512VL (16 ymm sums: tile256vl_16x1) */
  int dq;     /* and AVX-512DQ (pixel_dq16) */
  int64_t poff_pool[DC_PB]; /* the pool's window: its pk^2 rows' offsets in a chunk, in floats */
} dc_job;

static int64_t dc_span(int64_t out, int64_t s, int64_t k, int64_t dil) { return (out - 1) * s + (k - 1) * dil + 1; }

/* the pixel path's padded image: every window inside, x at (padT, padL) */
static void dc_padded(const rt_qc_geom *g, int64_t *Hp, int64_t *Wp) {
  int64_t h = dc_span(g->OH, g->s, g->KH, g->dil), w = dc_span(g->OW, g->s, g->KW, g->dil);
  *Hp = h > g->H + g->padT ? h : g->H + g->padT, *Wp = w > g->W + g->padL ? w : g->W + g->padL;
}

/* floats of a group of rp images' buffers: xg and t */
static int64_t dc_group_floats(int64_t rp, int64_t C, int64_t HW, int64_t Op) { return rp * (C * HW + DC_PB * Op); }

int64_t lathe_rt_conv2d_floats(int64_t C, int64_t hw, int64_t O, int64_t ohw, int64_t kern, int64_t pad) {
  rt_qc_geom g = rt_qc_unpack(1, C, hw, O, ohw, kern, pad);
  int64_t Hp, Wp, Op = (O + 7) / 8 * 8;
  dc_padded(&g, &Hp, &Wp);
  int64_t px = (C * Hp * Wp + 15) / 16 * 16 + g.OH * g.OW * Op, grp = dc_group_floats(DC_MINRP, C, g.H * g.W, Op);
  return px > grp ? px : grp; /* both paths' buffers */
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


/* ---- the scalar path: one image, pixel and channel at a time ---- */

static float scalar_at(const dc_job *j, const float *x, int64_t p, int64_t o) {
  int64_t C = j->g.C, HW = j->g.H * j->g.W;
  float acc = j->bias[o];
  for (int32_t e = j->ntap[p]; e < j->ntap[p + 1]; e++) {
    const float *xq = x + j->tap[2 * e], *w = j->wt + (int64_t)j->tap[2 * e + 1] * C * j->Op + o;
    for (int64_t c = 0; c < C; c++) acc = fmaf(xq[c * HW], w[c * j->Op], acc);
  }
  return j->act && !(acc > 0) && acc == acc ? 0.0f : acc;
}

/* the pool's maximum as the vector paths take it (max_ps(m, v): v unless m
 * > v), and a NaN already in m stays: NaN wins, as in the reference */
static float pool_max(float m, float v) { return m != m ? m : m > v ? m : v; }

static void image_scalar(const dc_job *j, const float *x, float *out) {
  const rt_qc_geom *g = &j->g;
  int64_t K = j->pk, PW = K ? g->OW / K : 0;
  for (int64_t q = 0; q < j->PO; q++)
    for (int64_t o = 0; o < g->O; o++) {
      if (!K) {
        out[o * j->PO + q] = scalar_at(j, x, q, o);
        continue;
      }
      int64_t p0 = (q / PW) * K * g->OW + (q % PW) * K; /* the window's first pixel */
      float m = scalar_at(j, x, p0, o);
      for (int64_t t = 1; t < K * K; t++) m = pool_max(m, scalar_at(j, x, p0 + (t / K) * g->OW + t % K, o));
      out[o * j->PO + q] = m;
    }
}

#if defined(__x86_64__) /* what only the vector paths use */
/* t [pb][Op] (one image's chunk of pixels p0 ..) to out [O][P] */
static void untranspose_scalar(const dc_job *j, const float *t, int64_t p0, int64_t pb, float *out) {
  for (int64_t o = 0; o < j->g.O; o++)
    for (int64_t q = 0; q < pb; q++) out[o * j->PO + p0 + q] = t[q * j->Op + o];
}

/* ---- the vector paths (x86-64): the pixel path for parts of few images, one image
 * at a time, padded channels-last; image groups for the rest ---- */

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

/* a group's images [n0, n0 + rp) interleaved as xg[pixel][c][r] for r < RP,
 * the last image repeated to fill RP (its extra results go nowhere) */
static void interleave(const dc_job *j, int64_t n0, int rp, int RP, float *xg) {
  int64_t C = j->g.C, HW = j->g.H * j->g.W;
  for (int r = 0; r < RP; r++) {
    const float *x = j->x + (n0 + (r < rp ? r : rp - 1)) * C * HW;
    for (int64_t c = 0; c < C; c++)
      for (int64_t i = 0; i < HW; i++) xg[(i * C + c) * RP + r] = x[c * HW + i];
  }
}

#define T512 __attribute__((target("avx512f,avx2,fma")))
#define TAVX2 __attribute__((target("avx2,fma")))
#define INLINE inline __attribute__((always_inline))

/* The register tile, written once per ISA: RP images at pixel p by OV
 * vectors of VL channels from channel o0, into t (image r at t + r*ts). */
#define DC_TILE(NAME, ATTR, RP, VT, VL, OV, LOAD, STORE, BCAST, FMA, ZERO, MAX)                                        \
  static ATTR INLINE void NAME(const dc_job *j, const float *xg, int64_t p, int64_t o0, float *t, int64_t ts) {   \
    VT acc[RP][OV];                                                                                               \
    for (int v = 0; v < OV; v++) {                                                                                \
      VT b = LOAD(j->bias + o0 + v * VL);                                                                         \
      for (int r = 0; r < RP; r++) acc[r][v] = b;                                                                 \
    }                                                                                                             \
    int64_t C = j->g.C, Op = j->Op;                                                                               \
    for (int32_t e = j->ntap[p]; e < j->ntap[p + 1]; e++) {                                                       \
      const float *q = xg + (int64_t)j->tap[2 * e] * C * RP, *w = j->wt + (int64_t)j->tap[2 * e + 1] * C * Op + o0; \
      for (int64_t c = 0; c < C; c++, q += RP, w += Op) {                                                         \
        VT wv[OV];                                                                                                \
        for (int v = 0; v < OV; v++) wv[v] = LOAD(w + v * VL);                                                    \
        for (int r = 0; r < RP; r++) {                                                                            \
          VT xv = BCAST(q[r]);                                                                                    \
          for (int v = 0; v < OV; v++) acc[r][v] = FMA(xv, wv[v], acc[r][v]);                                     \
        }                                                                                                         \
      }                                                                                                           \
    }                                                                                                             \
    for (int r = 0; r < RP; r++)                                                                                  \
      for (int v = 0; v < OV; v++) STORE(t + r * ts + o0 + v * VL, j->act ? MAX(ZERO(), acc[r][v]) : acc[r][v]);  \
  }

/* the bias is read VL floats at a time: the caller passes a padded copy */
#define DC_512(NAME, RP, OV)                                                                                      \
  DC_TILE(NAME, T512, RP, __m512, 16, OV, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps,     \
          _mm512_setzero_ps, _mm512_max_ps)
#define DC_256(NAME, RP)                                                                                          \
  DC_TILE(NAME, TAVX2, RP, __m256, 8, 1, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps,      \
          _mm256_setzero_ps, _mm256_max_ps)
DC_512(tile512_16x1, 16, 1)
DC_512(tile512_12x2, 12, 2)
DC_512(tile512_12x1, 12, 1)
DC_512(tile512_8x2, 8, 2)
DC_512(tile512_8x1, 8, 1)
DC_512(tile512_4x2, 4, 2)
DC_512(tile512_4x1, 4, 1)
/* a last 8 channels on ymm inside the AVX-512 path */
#define DC_256V(NAME, RP)                                                                                         \
  DC_TILE(NAME, T512, RP, __m256, 8, 1, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps,       \
          _mm256_setzero_ps, _mm256_max_ps)
DC_256V(tile256v_12x1, 12)
DC_256V(tile256v_8x1, 8)
DC_256V(tile256v_4x1, 4)
/* 16 images by 8 channels (a pruned layer's 8: as many FMAs per tap and
 * channel as the 16 x 16 zmm tile has, instead of 8 on the 8-image tile):
 * 16 ymm sums, which need AVX-512VL's ymm16-31 */
#define T512VL __attribute__((target("avx512f,avx512vl,avx2,fma")))
DC_TILE(tile256vl_16x1, T512VL, 16, __m256, 8, 1, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps,
        _mm256_setzero_ps, _mm256_max_ps)
/* 16 images by 8 channels on 8 zmm (AVX-512DQ): half the FMAs of the ymm
 * tile. Images 2k and 2k+1 share accumulator k: a broadcast pair [a, b, a,
 * b, ...] times the weights doubled [w0, w0, w1, w1, ...] puts image 2k's
 * channel i in lane 2i and image 2k+1's in lane 2i+1 (each lane sums the
 * taps in the same order: bit for bit the other paths); one permute per
 * accumulator at the end separates the two images. */
#define T512DQ __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
static T512DQ __attribute__((noinline)) void pixel_dq16(const dc_job *j, const float *xg, int64_t p, float *t, int64_t ts) {
  const __m512i dup = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  const __m512i split = _mm512_set_epi32(15, 13, 11, 9, 7, 5, 3, 1, 14, 12, 10, 8, 6, 4, 2, 0);
  __m512 acc[8], b = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(j->bias)));
  for (int k = 0; k < 8; k++) acc[k] = b;
  int64_t C = j->g.C;
  for (int32_t e = j->ntap[p]; e < j->ntap[p + 1]; e++) {
    const float *q = xg + (int64_t)j->tap[2 * e] * C * 16, *w = j->wt + (int64_t)j->tap[2 * e + 1] * C * 8;
    for (int64_t c = 0; c < C; c++, q += 16, w += 8) {
      __m512 wv = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(w)));
      for (int k = 0; k < 8; k++) {
        __m512 xv = _mm512_broadcast_f32x2(_mm_castpd_ps(_mm_load_sd((const double *)(const void *)(q + 2 * k))));
        acc[k] = _mm512_fmadd_ps(xv, wv, acc[k]);
      }
    }
  }
  for (int k = 0; k < 8; k++) {
    __m512 v = _mm512_permutexvar_ps(split, j->act ? _mm512_max_ps(_mm512_setzero_ps(), acc[k]) : acc[k]);
    _mm256_storeu_ps(t + 2 * k * ts, _mm512_castps512_ps256(v));
    _mm256_storeu_ps(t + (2 * k + 1) * ts, _mm512_extractf32x8_ps(v, 1));
  }
}

/* called, not inlined, from the AVX-512F code (only where the CPU has VL) */
static T512VL __attribute__((noinline)) void pixel_vl16(const dc_job *j, const float *xg, int64_t p, float *t, int64_t ts) {
  tile256vl_16x1(j, xg, p, 0, t, ts);
}
DC_256(tile256_12x1, 12)
DC_256(tile256_8x1, 8)
DC_256(tile256_4x1, 4)

/* every tile of pixel p for a group of RP images */
static T512 void pixel_512(const dc_job *j, const float *xg, int64_t p, int RP, float *t, int64_t ts) {
  int64_t o = 0;
  if (RP == 16 && j->Op == 8) {
    if (j->dq) pixel_dq16(j, xg, p, t, ts);
    else pixel_vl16(j, xg, p, t, ts);
    return;
  }
  if (RP == 16) {
    for (; o < j->Op; o += 16) tile512_16x1(j, xg, p, o, t, ts);
    return;
  }
  for (; o + 32 <= j->Op; o += 32)
    RP == 12 ? tile512_12x2(j, xg, p, o, t, ts) : RP == 8 ? tile512_8x2(j, xg, p, o, t, ts) : tile512_4x2(j, xg, p, o, t, ts);
  for (; o + 16 <= j->Op; o += 16)
    RP == 12 ? tile512_12x1(j, xg, p, o, t, ts) : RP == 8 ? tile512_8x1(j, xg, p, o, t, ts) : tile512_4x1(j, xg, p, o, t, ts);
  if (o < j->Op) /* Op is a multiple of 8 */
    RP == 12 ? tile256v_12x1(j, xg, p, o, t, ts) : RP == 8 ? tile256v_8x1(j, xg, p, o, t, ts) : tile256v_4x1(j, xg, p, o, t, ts);
}

static TAVX2 void pixel_avx2(const dc_job *j, const float *xg, int64_t p, int RP, float *t, int64_t ts) {
  for (int64_t o = 0; o < j->Op; o += 8)
    RP == 12 ? tile256_12x1(j, xg, p, o, t, ts) : RP == 8 ? tile256_8x1(j, xg, p, o, t, ts) : tile256_4x1(j, xg, p, o, t, ts);
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

/* 4 rows of 4 floats: a pooled chunk's 4 pixels (2x2 pooling of 16) */
static TAVX2 INLINE void tr4(const float *in, int64_t ld, float *out, int64_t od) {
  __m128 a = _mm_loadu_ps(in), b = _mm_loadu_ps(in + ld), c = _mm_loadu_ps(in + 2 * ld), d = _mm_loadu_ps(in + 3 * ld);
  _MM_TRANSPOSE4_PS(a, b, c, d);
  _mm_storeu_ps(out, a), _mm_storeu_ps(out + od, b), _mm_storeu_ps(out + 2 * od, c), _mm_storeu_ps(out + 3 * od, d);
}

/* t [pb][Op] (pixels p0 ..) to out [O][PO] by 8 x 8 blocks where pb and O
 * are multiples of 8, else 4 x 4 where they are multiples of 4 */
static TAVX2 void untranspose_avx2(const dc_job *j, const float *t, int64_t p0, int64_t pb, float *out) {
  int b = pb % 8 == 0 && j->g.O % 8 == 0 ? 8 : pb % 4 == 0 && j->g.O % 4 == 0 ? 4 : 0;
  if (!b) {
    untranspose_scalar(j, t, p0, pb, out);
    return;
  }
  for (int64_t q = 0; q < pb; q += b)
    for (int64_t o = 0; o < j->g.O; o += b) {
      float *d = out + o * j->PO + p0 + q;
      if (b == 8) tr8(t + q * j->Op + o, j->Op, d, j->PO);
      else tr4(t + q * j->Op + o, j->Op, d, j->PO);
    }
}

static T512 void untranspose_512(const dc_job *j, const float *t, int64_t p0, int64_t pb, float *out) {
  if (pb != 16 || j->g.O % 16) {
    untranspose_avx2(j, t, p0, pb, out);
    return;
  }
  for (int64_t o = 0; o < j->g.O; o += 16) tr16(t + o, j->Op, out + o * j->PO + p0, j->PO);
}

/* NaN wins, as pool_max: max_ps(m, v) is v when either is NaN */
static TAVX2 INLINE __m256 max_nan(__m256 m, __m256 v) {
  return _mm256_blendv_ps(_mm256_max_ps(m, v), m, _mm256_cmp_ps(m, m, _CMP_UNORD_Q));
}

/* NaN wins (zmm): max_ps(m, v), or m where m is NaN */
static T512 INLINE __m512 max_nan512(__m512 m, __m512 v) {
  return _mm512_mask_mov_ps(_mm512_max_ps(m, v), _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q), m);
}

/* The fused max-pool, in place: t [pb][Op] holds whole rows of OW output
 * pixels (pb a multiple of pk * OW; pk * OW <= DC_PB, so pk <= 4); pooled
 * pixel q goes to row q. Row q is read only by q itself or an earlier
 * pooled pixel, so none is overwritten before it is read. The window's
 * offsets are the job's (computed once per call: divisions per pixel, or
 * even per chunk, made the pool cost more than the separate kernel did).
 * The pooled rows: pb / pk^2. */
static TAVX2 int64_t pool_rows(const dc_job *j, float *t, int64_t pb) {
  const int64_t *off = j->poff_pool;
  int64_t K = j->pk, KK = K * K, OW = j->g.OW, Op = j->Op;
  float *d = t;
  for (int64_t y = 0; y < pb; y += K * OW)
    for (int64_t x = 0; x < OW; x += K, d += Op) {
      const float *s = t + (y + x) * Op;
      for (int64_t o = 0; o < Op; o += 8) {
        __m256 m = _mm256_loadu_ps(s + o);
        for (int64_t u = 1; u < KK; u++) m = max_nan(m, _mm256_loadu_ps(s + off[u] + o));
        _mm256_storeu_ps(d + o, m);
      }
    }
  return pb / KK;
}

/* the same on zmm where the channels are a multiple of 16 */
static T512 int64_t pool_rows_512(const dc_job *j, float *t, int64_t pb) {
  if (j->Op % 16) return pool_rows(j, t, pb);
  const int64_t *off = j->poff_pool;
  int64_t K = j->pk, KK = K * K, OW = j->g.OW, Op = j->Op;
  float *d = t;
  for (int64_t y = 0; y < pb; y += K * OW)
    for (int64_t x = 0; x < OW; x += K, d += Op) {
      const float *s = t + (y + x) * Op;
      for (int64_t o = 0; o < Op; o += 16) {
        __m512 m = _mm512_loadu_ps(s + o);
        for (int64_t u = 1; u < KK; u++) m = max_nan512(m, _mm512_loadu_ps(s + off[u] + o));
        _mm512_storeu_ps(d + o, m);
      }
    }
  return pb / KK;
}

/* The pixel tile (the small-batch path), written once per ISA: RP pixels (rp <= DC_RP, pointers
 * xr) by OV vectors of VL channels from channel o0. */
#define PX_TILE(NAME, ATTR, RP, VT, VL, OV, LOAD, STORE, BCAST, FMA, ZERO, MAX)                                        \
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

#define PX_512(NAME, RP, OV)                                                                                      \
  PX_TILE(NAME, T512, RP, __m512, 16, OV, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps,     \
          _mm512_setzero_ps, _mm512_max_ps)
PX_512(px512_12x2, 12, 2)
PX_512(px512_12x1, 12, 1)
PX_512(px512_8x2, 8, 2)
PX_512(px512_8x1, 8, 1)
PX_512(px512_16x1, 16, 1)
#define PX_256V(NAME, RP)                                                                                         \
  PX_TILE(NAME, T512, RP, __m256, 8, 1, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps,       \
          _mm256_setzero_ps, _mm256_max_ps)
PX_256V(px256v_12x1, 12)
PX_256V(px256v_8x1, 8)
PX_TILE(px256_12x1, TAVX2, 12, __m256, 8, 1, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps,
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

static T512 void px_image_512(const dc_job *j, const float *xp, float *t) {
  const float *xr[16];
  if (j->Op == 16 && j->P % 16 == 0) { /* one vector of channels (conv1: 16): 16 pixels keep 16 sums in flight */
    for (int64_t p = 0; p < j->P; p += 16) {
      int rp = tile_pixels(j, xp, p, 16, xr);
      px512_16x1(j, xr, rp, 0, t + p * j->Op);
    }
    return;
  }
  int RP = tile_rows(j->P);
  for (int64_t p = 0; p < j->P; p += RP) {
    int rp = tile_pixels(j, xp, p, RP, xr);
    float *tp = t + p * j->Op;
    int64_t o = 0;
    for (; o + 32 <= j->Op; o += 32) RP == 8 ? px512_8x2(j, xr, rp, o, tp) : px512_12x2(j, xr, rp, o, tp);
    for (; o + 16 <= j->Op; o += 16) RP == 8 ? px512_8x1(j, xr, rp, o, tp) : px512_12x1(j, xr, rp, o, tp);
    if (o < j->Op) RP == 8 ? px256v_8x1(j, xr, rp, o, tp) : px256v_12x1(j, xr, rp, o, tp);
  }
}

static TAVX2 void px_image_avx2(const dc_job *j, const float *xp, float *t) {
  const float *xr[DC_RP];
  for (int64_t p = 0; p < j->P; p += DC_RP) {
    int rp = tile_pixels(j, xp, p, DC_RP, xr);
    for (int64_t o = 0; o < j->Op; o += 8) px256_12x1(j, xr, rp, o, t + p * j->Op);
  }
}

/* t [P][Op], the whole image (pooled first when a max-pool is fused) */
static T512 void px_untranspose_512(const dc_job *j, float *t, float *out) {
  int64_t np = j->pk ? pool_rows_512(j, t, j->P) : j->P;
  if (np % 16 || j->g.O % 16) {
    untranspose_avx2(j, t, 0, np, out); /* one chunk of all its pixels */
    return;
  }
  for (int64_t p = 0; p < np; p += 16)
    for (int64_t o = 0; o < j->g.O; o += 16) tr16(t + p * j->Op + o, j->Op, out + o * j->PO + p, j->PO);
}

static TAVX2 void px_untranspose_avx2(const dc_job *j, float *t, float *out) {
  untranspose_avx2(j, t, 0, j->pk ? pool_rows(j, t, j->P) : j->P, out);
}

/* images [n0, n0 + rp) as one group of RP: interleaved, then every pixel's
 * tiles, a chunk of up to DC_PB pixels at a time transposed out (with a
 * fused max-pool, whole rows of pk windows: pooled, then transposed) */
static void group_vec(const dc_job *j, int64_t n0, int rp, int RP, float *xg, float *t) {
  interleave(j, n0, rp, RP, xg);
  int64_t ts = DC_PB * j->Op, OP = j->g.O * j->PO, K2 = j->pk ? j->pk * j->pk : 1;
  int64_t chunk = j->pk ? DC_PB / (j->pk * j->g.OW) * j->pk * j->g.OW : DC_PB;
  for (int64_t p0 = 0; p0 < j->P; p0 += chunk) {
    int64_t pb = j->P - p0 < chunk ? j->P - p0 : chunk;
    for (int64_t q = 0; q < pb; q++) {
      if (j->isa == LATHE_RT_CONV_AVX512) pixel_512(j, xg, p0 + q, RP, t + q * j->Op, ts);
      else pixel_avx2(j, xg, p0 + q, RP, t + q * j->Op, ts);
    }
    for (int r = 0; r < rp; r++) {
      int64_t np = !j->pk ? pb : j->isa == LATHE_RT_CONV_AVX512 ? pool_rows_512(j, t + r * ts, pb) : pool_rows(j, t + r * ts, pb);
      if (j->isa == LATHE_RT_CONV_AVX512) untranspose_512(j, t + r * ts, p0 / K2, np, j->out + (n0 + r) * OP);
      else untranspose_avx2(j, t + r * ts, p0 / K2, np, j->out + (n0 + r) * OP);
    }
  }
}
#endif

#if defined(__x86_64__)
/* The images per group: 16 by one vector of channels where AVX-512 has one
 * (16 sums in flight), else 12; 8 where that covers the part's images
 * exactly and 12 would not (64 or 128 images); fewer when the group's
 * buffers would not fit LATHE_RT_CONV_STACK floats. */
static int group_size(const dc_job *j, int64_t m) {
  int RP = j->isa == LATHE_RT_CONV_AVX512 && (j->Op == 16 || (j->Op == 8 && j->vl)) ? 16 : 12;
  if (m % RP && !(m % 8)) RP = 8;
  int64_t per = dc_group_floats(1, j->g.C, j->g.H * j->g.W, j->Op);
  while (RP > DC_MINRP && RP * per > LATHE_RT_CONV_STACK) RP = RP > 8 ? 8 : DC_MINRP;
  return RP;
}
#endif

/* images [lo, hi); this part's buffers on the stack (the code generator
 * takes this path only when a group of DC_MINRP fits) */
static void conv_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const dc_job *j = ctx;
  const rt_qc_geom *g = &j->g;
#if defined(__x86_64__)
  if (j->isa != LATHE_RT_CONV_SCALAR && hi - lo < DC_PXMAX) {
    alignas(64) float buf[LATHE_RT_CONV_STACK];
    float *xp = buf, *t = buf + (g->C * j->Hp * j->Wp + 15) / 16 * 16;
    for (int64_t n = lo; n < hi; n++) {
      pad_image(j, j->x + n * g->C * g->H * g->W, xp);
      if (j->isa == LATHE_RT_CONV_AVX512) px_image_512(j, xp, t), px_untranspose_512(j, t, j->out + n * g->O * j->PO);
      else px_image_avx2(j, xp, t), px_untranspose_avx2(j, t, j->out + n * g->O * j->PO);
    }
    return;
  }
  if (j->isa != LATHE_RT_CONV_SCALAR) {
    alignas(64) float buf[LATHE_RT_CONV_STACK];
    int RP = group_size(j, hi - lo);
    float *t = buf + RP * g->C * g->H * g->W;
    for (int64_t n = lo; n < hi; n += RP) group_vec(j, n, hi - n < RP ? (int)(hi - n) : RP, RP, buf, t);
    return;
  }
#endif
  for (int64_t n = lo; n < hi; n++) image_scalar(j, j->x + n * g->C * g->H * g->W, j->out + n * g->O * j->PO);
}

static void rows_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  rt_dconv_rows_part(ctx, lo, hi);
}

/* A max-pool fused into the kernel: windows of k x k at stride k tiling
 * the output exactly, and k rows of output pixels in one chunk (the
 * chunk's pixels are pooled before they are transposed out). */
int64_t lathe_rt_conv2d_pool_ok(int64_t ohw, int64_t k) {
  int64_t OH = ohw & 0xffffffff, OW = ohw >> 32;
  return k >= 2 && k <= 255 && OH % k == 0 && OW % k == 0 && k * OW <= DC_PB;
}

int64_t lathe_rt_conv2d_scratch_bytes(int64_t C, int64_t O, int64_t ohw, int64_t kern) {
  int64_t KH = kern & 0xffff, KW = (kern >> 16) & 0xffff, Op = (O + 7) / 8 * 8;
  int64_t P = (ohw & 0xffffffff) * (ohw >> 32);
  return 4 * (KH * KW * C * Op + Op + P + 1 + 2 * P * KH * KW + KH * KW * C + P); /* wt, bias, ntap, tap, koff, poff */
}

/* pixel p's taps inside the image, in (kh, kw) order; their count */
static int32_t pixel_taps(const rt_qc_geom *g, int64_t p, int32_t *tap) {
  int64_t oy = p / g->OW, ox = p % g->OW;
  int32_t n = 0;
  for (int64_t ky = 0; ky < g->KH; ky++)
    for (int64_t kx = 0; kx < g->KW; kx++) {
      int64_t y = oy * g->s + ky * g->dil - g->padT, v = ox * g->s + kx * g->dil - g->padL;
      if (y < 0 || y >= g->H || v < 0 || v >= g->W) continue; /* zero padding: no product */
      tap[2 * n] = (int32_t)(y * g->W + v), tap[2 * n + 1] = (int32_t)(ky * g->KW + kx), n++;
    }
  return n;
}

void lathe_rt_conv2d(float *out, const float *x, const float *w, const float *bias, void *scr, int64_t N, int64_t C,
                     int64_t hw, int64_t O, int64_t ohw, int64_t kern, int64_t pad, int64_t flags) {
  dc_job j = {.out = out, .x = x, .g = rt_qc_unpack(N, C, hw, O, ohw, kern, pad)};
  const rt_qc_geom *g = &j.g;
  j.isa = flags & 0xff, j.act = (flags >> 8) & 1, j.pk = (flags >> 16) & 0xff;
  if (j.isa > lathe_rt_conv_isa()) j.isa = lathe_rt_conv_isa(); /* an object emitted for a wider CPU */
  /* channels padded to 8, not 16: the AVX-512 path takes a last 8 in ymm
   * (a pruned layer's 8 or 24 channels would otherwise pay for 16 lanes) */
  j.P = g->OH * g->OW, j.Op = (O + 7) / 8 * 8;
  j.PO = j.pk ? j.P / (j.pk * j.pk) : j.P;
  for (int64_t u = 0; u < j.pk * j.pk && u < DC_PB; u++) j.poff_pool[u] = ((u / j.pk) * g->OW + u % j.pk) * j.Op;
#if defined(__x86_64__)
  j.vl = j.isa == LATHE_RT_CONV_AVX512 && __builtin_cpu_supports("avx512vl");
  j.dq = j.vl && __builtin_cpu_supports("avx512dq");
#endif
  /* wt [kh][kw][c][Op] from w [O][C][KH][KW], zero in the padded channels;
   * then the bias, padded; then the taps of every pixel (the code generator
   * keeps images under 2^31 floats) */
  float *wt = scr, *bp = wt + g->KH * g->KW * C * j.Op;
  for (int64_t ky = 0; ky < g->KH; ky++)
    for (int64_t kx = 0; kx < g->KW; kx++)
      for (int64_t c = 0; c < C; c++) {
        float *d = wt + ((ky * g->KW + kx) * C + c) * j.Op;
        for (int64_t o = 0; o < j.Op; o++) d[o] = o < O ? w[((o * C + c) * g->KH + ky) * g->KW + kx] : 0.0f;
      }
  for (int64_t o = 0; o < j.Op; o++) bp[o] = bias && o < O ? bias[o] : 0.0f;
  int64_t per = j.P * O * C * g->KH * g->KW; /* multiply-adds an image */
  int64_t grain = per >= (1 << 16) ? 1 : (1 << 16) / (per ? per : 1);
  rw_job rw = {.out = out, .x = x, .wt = wt, .bias = bp, .g = *g, .Op = j.Op, .act = j.act, .pk = j.pk, .P = j.P,
               .PO = j.PO};
  if (!(flags & LATHE_RT_CONV_NOROWS) && rt_dconv_rows_init(&rw, j.isa)) { /* it reads neither taps nor offsets */
    rt_pool_for_fine(N, grain, N / DC_FINE, rows_part, &rw);
    return;
  }
  int32_t *ntap = (int32_t *)(void *)(bp + j.Op), *tap = ntap + j.P + 1;
  ntap[0] = 0;
  /* the taps only where a path reads them (at batch 1 they cost more than
   * a sixth of the digits CNN's step) */
  for (int64_t p = 0; p < j.P; p++)
    ntap[p + 1] = j.isa == LATHE_RT_CONV_SCALAR || N >= DC_PXMAX ? ntap[p] + pixel_taps(g, p, tap + 2 * ntap[p]) : 0;
  dc_padded(g, &j.Hp, &j.Wp);
  j.K = g->KH * g->KW * C;
  int32_t *koff = tap + 2 * ntap[j.P], *poff = koff + j.K;
  for (int64_t ky = 0; ky < g->KH; ky++)
    for (int64_t kx = 0; kx < g->KW; kx++)
      for (int64_t c = 0; c < C; c++) koff[(ky * g->KW + kx) * C + c] = (int32_t)((ky * j.Wp + kx) * g->dil * C + c);
  for (int64_t p = 0; p < j.P; p++) poff[p] = (int32_t)(((p / g->OW) * j.Wp + p % g->OW) * g->s * C);
  j.wt = wt, j.bias = bp, j.ntap = ntap, j.tap = tap, j.koff = koff, j.poff = poff;
  rt_pool_for_fine(N, grain, N / DC_FINE, conv_part, &j);
}
