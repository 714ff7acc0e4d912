/* rt_dconv_rows.c -- the direct conv2d's row path: one image's 16 output
 * pixels (whole rows: two rows of 8, four of 4) in a zmm, by 8 or 16
 * output channels in registers.
 *
 * Why: on the digits CNN's small layers the image-group path (rt_dconv.c)
 * spent more on its fixed work per image than on multiply-adds: the
 * interleaved copy of each group's images, the channels-last tile written
 * out, pooled and transposed back to NCHW. With 1 or 8 input channels that
 * work is not shared by enough products (LATHE_PROFILE: the pruned conv1,
 * 1 -> 8 channels, cost 80% of the dense 1 -> 16). Here the vector runs
 * along the pixels, so the input is read where it lies (NCHW) and the
 * output is written where it goes; each tap's input vector is one two-
 * register permute of the image's blocks (x is not copied), zeros where the
 * window leaves the image. The padding's taps are multiplied too (a +0
 * leaves every finite sum as it was), so this pays where padding is a small
 * share of the taps or the channels are few; rt_dconv.c decides.
 *
 * Every output sums bias, then its taps in the order (kh, kw, c), as the
 * other paths do; a fused 2x2 max-pool takes its window's pixels in the
 * same order as rt_dconv.c's pool_rows (NaN wins), so results are bit for
 * bit those of the scalar path (tests/test_dconv.c checks). */
#include "rt_dconv_rows.h"

#include "lathe_rt.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* the tables of one block and tap: for output lane i (pixel 16k + i at
 * row y[i], column v[i]), input pixel p = 16k + i + off, inside the image
 * or masked off (no divisions: this runs on every call) */
static void rw_tap(rw_job *j, int64_t k, int64_t t, const int64_t *y, const int64_t *v) {
  const rt_qc_geom *g = &j->g;
  int64_t dy = t / g->KW - g->padT, dx = t % g->KW - g->padL, off = dy * g->W + dx, nb = j->P / 16;
  int64_t lo = (16 * k + off) >> 4; /* floor: off may be negative */
  lo = lo < 0 ? 0 : lo > nb - 1 ? nb - 1 : lo;
  int64_t hi = lo + 1 < nb ? lo + 1 : lo, e = k * g->KH * g->KW + t;
  uint16_t m = 0;
  for (int64_t i = 0; i < 16; i++) {
    int64_t s = 16 * k + i + off, yy = y[i] + dy, vv = v[i] + dx;
    int in = yy >= 0 && yy < g->H && vv >= 0 && vv < g->W;
    j->idx[e][i] = !in ? 0 : s < 16 * (lo + 1) ? (int32_t)(s - 16 * lo) : (int32_t)(16 + s - 16 * hi);
    m |= (uint16_t)(in << i);
  }
  j->lo[e] = (int32_t)(lo * 16), j->hi[e] = (int32_t)(hi * 16), j->mask[e] = m;
}

/* the geometry the row path covers: stride 1, "same" output of 16..64
 * pixels in whole rows of at most 16, every tap's pixels within two
 * blocks, channels in 8s, a 2x2 pool whose windows lie inside a block */
static int rw_fits(const rw_job *j, int64_t isa) {
  const rt_qc_geom *g = &j->g;
  if (isa != LATHE_RT_CONV_AVX512 || g->s != 1 || g->dil != 1 || g->OH != g->H || g->OW != g->W) return 0;
  if (j->P % 16 || j->P / 16 > RW_MAXB || 16 % g->W || g->KH * g->KW > RW_MAXT || g->O % 8 || g->C > RW_MAXC) return 0;
  if (j->pk && (j->pk != 2 || 16 % (2 * g->W))) return 0;
  int64_t lo = -g->padT * g->W - g->padL, hi = (g->KH - 1 - g->padT) * g->W + g->KW - 1 - g->padL;
  return lo >= -16 && hi <= 16;
}

int rt_dconv_rows_init(rw_job *j, int64_t isa) {
  if (!rw_fits(j, isa)) return 0;
  int64_t y[16], v[16], yy = 0, vv = 0;
  for (int64_t k = 0; k < j->P / 16; k++) {
    for (int64_t i = 0; i < 16; i++, vv = vv + 1 < j->g.W ? vv + 1 : 0, yy += vv == 0) y[i] = yy, v[i] = vv;
    for (int64_t t = 0; t < j->g.KH * j->g.KW; t++) rw_tap(j, k, t, y, v);
  }
  /* window w (row-major in the block) at lane (2 * (w / PW)) * W + 2 * (w % PW); its pixels +0, +1, +W, +W+1 */
  int64_t W = j->g.W, PW = W / 2;
  for (int64_t u = 0; u < 16; u++) {
    int64_t w = u % 4, pos = u / 4, c0 = 2 * (w / PW) * W + 2 * (w % PW);
    j->wperm[u] = (int32_t)(c0 + (pos / 2) * W + pos % 2);
  }
  return 1;
}

#if defined(__x86_64__)
#define TRW __attribute__((target("avx512f,avx2,fma")))
#define INLINE inline __attribute__((always_inline))

/* NaN wins, as rt_dconv.c's pool: max_ps(m, v), or m where m is NaN */
static TRW INLINE __m512 rw_max(__m512 m, __m512 v) {
  return _mm512_mask_mov_ps(_mm512_max_ps(m, v), _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q), m);
}

/* block k of 4 channels' sums a[0..3] pooled 2x2: each permuted to its
 * windows' first, second, third and fourth pixels (128-bit lanes), those
 * lanes gathered across the 4 channels (a 4 x 4 transpose of lanes), then
 * the maximum in window order: channel o + i's 4 pooled pixels in lane i */
static TRW INLINE __m512 rw_pool4(const __m512 *a, __m512i wp) {
  __m512 b0 = _mm512_permutexvar_ps(wp, a[0]), b1 = _mm512_permutexvar_ps(wp, a[1]);
  __m512 b2 = _mm512_permutexvar_ps(wp, a[2]), b3 = _mm512_permutexvar_ps(wp, a[3]);
  __m512 t0 = _mm512_shuffle_f32x4(b0, b1, 0x44), t1 = _mm512_shuffle_f32x4(b2, b3, 0x44);
  __m512 t2 = _mm512_shuffle_f32x4(b0, b1, 0xee), t3 = _mm512_shuffle_f32x4(b2, b3, 0xee);
  __m512 m = rw_max(_mm512_shuffle_f32x4(t0, t1, 0x88), _mm512_shuffle_f32x4(t0, t1, 0xdd));
  m = rw_max(m, _mm512_shuffle_f32x4(t2, t3, 0x88));
  return rw_max(m, _mm512_shuffle_f32x4(t2, t3, 0xdd));
}

/* OB channels from o0 of block k of the image at x, written out */
static TRW INLINE void rw_block(const rw_job *j, const float *x, float *out, int64_t k, int64_t o0, const int OB) {
  const rt_qc_geom *g = &j->g;
  int64_t C = g->C, HW = g->H * g->W, T = g->KH * g->KW, Op = j->Op;
  __m512 acc[16];
  for (int v = 0; v < OB; v++) acc[v] = _mm512_set1_ps(j->bias[o0 + v]);
  for (int64_t t = 0; t < T; t++) {
    int64_t e = k * T + t;
    __m512i idx = _mm512_loadu_si512(j->idx[e]);
    __mmask16 m = j->mask[e];
    const float *xl = x + j->lo[e], *xh = x + j->hi[e], *w = j->wt + t * C * Op + o0;
    for (int64_t c = 0; c < C; c++, xl += HW, xh += HW, w += Op) {
      __m512 s = _mm512_maskz_permutex2var_ps(m, _mm512_loadu_ps(xl), idx, _mm512_loadu_ps(xh));
      for (int v = 0; v < OB; v++) acc[v] = _mm512_fmadd_ps(s, _mm512_set1_ps(w[v]), acc[v]);
    }
  }
  if (j->act)
    for (int v = 0; v < OB; v++) acc[v] = _mm512_max_ps(_mm512_setzero_ps(), acc[v]);
  if (!j->pk) {
    for (int v = 0; v < OB; v++) _mm512_storeu_ps(out + (o0 + v) * j->P + 16 * k, acc[v]);
    return;
  }
  __m512i wp = _mm512_loadu_si512(j->wperm);
  for (int v = 0; v < OB; v += 4) {
    __m512 r = rw_pool4(acc + v, wp);
    float *d = out + (o0 + v) * j->PO + 4 * k;
    if (j->PO == 4) { /* the 4 channels' pooled images are contiguous */
      _mm512_storeu_ps(d, r);
      continue;
    }
    _mm_storeu_ps(d, _mm512_castps512_ps128(r));
    _mm_storeu_ps(d + j->PO, _mm512_extractf32x4_ps(r, 1));
    _mm_storeu_ps(d + 2 * j->PO, _mm512_extractf32x4_ps(r, 2));
    _mm_storeu_ps(d + 3 * j->PO, _mm512_extractf32x4_ps(r, 3));
  }
}

static TRW void rw_image(const rw_job *j, const float *x, float *out) {
  for (int64_t k = 0; k < j->P / 16; k++) {
    int64_t o = 0;
    for (; o + 16 <= j->g.O; o += 16) rw_block(j, x, out, k, o, 16);
    if (o < j->g.O) rw_block(j, x, out, k, o, 8); /* O is a multiple of 8 */
  }
}

void rt_dconv_rows_part(const rw_job *j, int64_t lo, int64_t hi) {
  const rt_qc_geom *g = &j->g;
  for (int64_t n = lo; n < hi; n++) rw_image(j, j->x + n * g->C * g->H * g->W, j->out + n * g->O * j->PO);
}
#else
void rt_dconv_rows_part(const rw_job *j, int64_t lo, int64_t hi) { (void)j, (void)lo, (void)hi; }
#endif
