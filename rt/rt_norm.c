/* rt_norm.c -- lathe_rt_norm: the channel normalisations' CPU kernels,
 * rt/rt_norm.h's kernels in float (statistics in double, as the reference
 * interpreter). Groups are independent: split over the pool when there is
 * enough work, with a split fixed by the shapes, so results do not depend on
 * the schedule. */
#include <string.h>

#include "rt/lathe_rt.h"
#include "rt/threadpool.h"

#define NT float
#define NK(name) rt_norm_##name
#include "rt/rt_norm.h"

enum { NORM_GRAIN = 1 << 14 }; /* elements per part at least */

/* The kernels' loops (double lanes) vectorise 2 wide at the x86-64 baseline,
 * 8 wide with AVX-512: with GCC on x86-64, norm_part (with every kernel
 * inlined into it: flatten) is compiled for three levels and the loader
 * picks the copy the CPU runs best, as rt_seqk.c's entry points. ISO C
 * mode keeps contraction off, so every copy rounds alike: the same bits on
 * every machine. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define NORM_FN __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), flatten))
#else
#define NORM_FN
#endif

typedef struct {
  rt_norm_geom g;
  float *out;
  const float *x, *w, *b, *rm, *rv, *dy;
  int what;
} norm_job;

/* ---- batchnorm over features: x [N, C], S = 1 ----
 * rt_norm.h's kernels walk a channel as a column (stride C), one element per
 * (row, channel) step: slow. Here BN_COLS columns at a time, row by row, each
 * column's sums in row order in double exactly as those kernels take them
 * (with S = 1 a row's one element lands in lane 0 and the lane totals add
 * zeros), so the results are the same bits. */
enum { BN_COLS = 64 };

typedef struct {
  double mean[BN_COLS], rstd[BN_COLS], gw[BN_COLS], gxw[BN_COLS];
} bn_stats;

/* columns [c0, c0 + nc): rt_norm_sums of each (w NULL: ones; dy NULL: only
 * mean and rstd) */
static void bn_col_sums(const rt_norm_geom *g, const float *x, const float *dy, const float *w, int64_t c0,
                        int64_t nc, bn_stats *st) {
  double sh[BN_COLS], wc[BN_COLS], s[BN_COLS] = {0}, v[BN_COLS] = {0}, tg[BN_COLS] = {0}, tgx[BN_COLS] = {0};
  for (int64_t c = 0; c < nc; c++) sh[c] = (double)x[c0 + c], wc[c] = w ? (double)w[c0 + c] : 1.0;
  for (int64_t n = 0; n < g->N; n++) {
    const float *xr = x + n * g->C + c0, *dr = dy ? dy + n * g->C + c0 : NULL;
    for (int64_t c = 0; c < nc; c++) {
      double d = (double)xr[c] - sh[c];
      s[c] += d, v[c] += d * d;
    }
    for (int64_t c = 0; dr && c < nc; c++) {
      double d = (double)xr[c] - sh[c], e = (double)dr[c];
      tg[c] += e * wc[c], tgx[c] += e * d * wc[c];
    }
  }
  for (int64_t c = 0; c < nc; c++) {
    double d = s[c] / (double)g->N, var = v[c] / (double)g->N - d * d;
    st->mean[c] = sh[c] + d, st->rstd[c] = 1.0 / sqrt((var > 0.0 ? var : 0.0) + g->eps);
    st->gw[c] = tg[c], st->gxw[c] = tgx[c] - d * tg[c];
  }
}

/* one block of columns of what j asks */
static void bn_cols(const norm_job *j, int64_t c0, int64_t nc) {
  const rt_norm_geom *g = &j->g;
  int64_t C = g->C, N = g->N;
  bn_stats st;
  if (j->what == LATHE_RT_NORM_DB) {
    double a[BN_COLS] = {0};
    for (int64_t n = 0; n < N; n++)
      for (int64_t c = 0; c < nc; c++) a[c] += (double)j->dy[n * C + c0 + c];
    for (int64_t c = 0; c < nc; c++) j->out[c0 + c] = (float)(0.0 + a[c]); /* as rt_norm_dwb: out (0) + sum */
    return;
  }
  if (j->what == LATHE_RT_NORM_FWD && j->rm)
    for (int64_t c = 0; c < nc; c++)
      st.mean[c] = j->rm[c0 + c], st.rstd[c] = 1.0 / sqrt((double)j->rv[c0 + c] + g->eps);
  else
    bn_col_sums(g, j->x, j->what == LATHE_RT_NORM_FWD ? NULL : j->dy, j->what == LATHE_RT_NORM_DX ? j->w : NULL, c0,
                nc, &st);
  if (j->what == LATHE_RT_NORM_DW) {
    for (int64_t c = 0; c < nc; c++) j->out[c0 + c] = (float)(0.0 + st.gxw[c] * st.rstd[c]);
    return;
  }
  double sc[BN_COLS], sh[BN_COLS];
  for (int64_t c = 0; c < nc; c++) {
    double rs = st.rstd[c], wc = (double)j->w[c0 + c];
    if (j->what == LATHE_RT_NORM_FWD) sc[c] = rs * wc, sh[c] = (j->b ? (double)j->b[c0 + c] : 0.0) - st.mean[c] * sc[c];
    else sc[c] = st.gw[c] / (double)N, sh[c] = st.gxw[c] * (rs / (double)N); /* dx: mean(g), mean(g xh) */
  }
  for (int64_t n = 0; n < N; n++) {
    const float *xr = j->x + n * C + c0;
    float *o = j->out + n * C + c0;
    if (j->what == LATHE_RT_NORM_FWD) {
      for (int64_t c = 0; c < nc; c++) o[c] = (float)((double)xr[c] * sc[c] + sh[c]);
      continue;
    }
    const float *dr = j->dy + n * C + c0;
    for (int64_t c = 0; c < nc; c++) {
      double rs = st.rstd[c], xh = ((double)xr[c] - st.mean[c]) * rs;
      o[c] = (float)(rs * ((double)dr[c] * (double)j->w[c0 + c] - sc[c] - xh * sh[c]));
    }
  }
}

/* ---- batchnorm over channels with S a multiple of 8 (conv maps) ----
 * The same sums as rt_norm_sums (lane l of RT_NORM_LANES takes the elements
 * k = l mod 8 of every row; the dy sums are per row, their lane totals added
 * to the channel's) on vectors of 8 doubles, which the compiler keeps in
 * registers: the same bits, a fraction of the time. */
typedef float bn_vf __attribute__((vector_size(32), aligned(4), may_alias));
typedef double bn_vd __attribute__((vector_size(64)));

/* 8 floats at p as doubles (a macro: a function returning the vector would
 * change the ABI of the baseline copy) */
#define bn_ld(p) __builtin_convertvector(*(const bn_vf *)(const void *)(p), bn_vd)
static inline double bn_total(const bn_vd *v) {
  double a[RT_NORM_LANES];
  memcpy(a, v, sizeof a);
  return rt_norm_total(a);
}

/* channel c's mean and rstd, and with dy its gw, gxw (w NULL: ones) */
static void bn_chan_sums(const rt_norm_geom *g, const float *x, const float *dy, const float *w, int64_t c, double *st) {
  int64_t S = g->S, m = g->N * S;
  double sh = (double)x[c * S], wc = w ? (double)w[c] : 1.0, tg = 0.0, tgx = 0.0;
  bn_vd s = {0}, v = {0};
  for (int64_t n = 0; n < g->N; n++) {
    const float *xr = x + (n * g->C + c) * S, *dr = dy ? dy + (n * g->C + c) * S : NULL;
    bn_vd a = {0}, b = {0};
    for (int64_t k = 0; k < S; k += RT_NORM_LANES) {
      bn_vd d = bn_ld(xr + k) - sh;
      s += d, v += d * d;
      if (dr) {
        bn_vd e = bn_ld(dr + k);
        a += e, b += e * d;
      }
    }
    if (dr) tg += bn_total(&a) * wc, tgx += bn_total(&b) * wc;
  }
  double d = bn_total(&s) / (double)m, var = bn_total(&v) / (double)m - d * d;
  st[0] = sh + d, st[1] = 1.0 / sqrt((var > 0.0 ? var : 0.0) + g->eps), st[2] = tg, st[3] = tgx - d * tg;
}

/* channel c of what j asks */
static void bn_chan(const norm_job *j, int64_t c) {
  const rt_norm_geom *g = &j->g;
  int64_t S = g->S, m = g->N * S;
  double st[4] = {0};
  if (j->what == LATHE_RT_NORM_DB) {
    bn_vd a = {0};
    for (int64_t n = 0; n < g->N; n++)
      for (int64_t k = 0; k < S; k += RT_NORM_LANES) a += bn_ld(j->dy + (n * g->C + c) * S + k);
    j->out[c] = (float)(0.0 + bn_total(&a));
    return;
  }
  if (j->what == LATHE_RT_NORM_FWD && j->rm) st[0] = j->rm[c], st[1] = 1.0 / sqrt((double)j->rv[c] + g->eps);
  else bn_chan_sums(g, j->x, j->what == LATHE_RT_NORM_FWD ? NULL : j->dy, j->what == LATHE_RT_NORM_DX ? j->w : NULL, c, st);
  double mu = st[0], rs = st[1], wc = (double)j->w[c];
  if (j->what == LATHE_RT_NORM_DW) {
    j->out[c] = (float)(0.0 + st[3] * rs);
    return;
  }
  double sc = rs * wc, sb = (j->b ? (double)j->b[c] : 0.0) - mu * sc; /* forward */
  double mg = st[2] / (double)m, mgx = st[3] * (rs / (double)m); /* dx */
  for (int64_t n = 0; n < g->N; n++) {
    int64_t o = (n * g->C + c) * S;
    const float *xr = j->x + o;
    float *out = j->out + o;
    if (j->what == LATHE_RT_NORM_FWD) {
      for (int64_t k = 0; k < S; k++) out[k] = (float)((double)xr[k] * sc + sb);
      continue;
    }
    const float *dr = j->dy + o;
    for (int64_t k = 0; k < S; k++) {
      double xh = ((double)xr[k] - mu) * rs;
      out[k] = (float)(rs * ((double)dr[k] * wc - mg - xh * mgx));
    }
  }
}

static int bn_channels(const rt_norm_geom *g) {
  return g->S % RT_NORM_LANES == 0 && g->cb == 1 && g->nb == g->N && g->center;
}

/* batchnorm over features ([N, C]): channels [q0, q1) */
static int bn_features(const rt_norm_geom *g) { return g->S == 1 && g->cb == 1 && g->nb == g->N && g->center; }

NORM_FN static void norm_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const norm_job *j = ctx;
  if (bn_features(&j->g)) {
    for (int64_t c = lo; c < hi; c += BN_COLS) bn_cols(j, c, hi - c < BN_COLS ? hi - c : BN_COLS);
    return;
  }
  if (bn_channels(&j->g)) {
    for (int64_t c = lo; c < hi; c++) bn_chan(j, c);
    return;
  }
  switch (j->what) {
  case LATHE_RT_NORM_FWD: rt_norm_fwd(&j->g, j->x, j->w, j->b, j->rm, j->rv, j->out, lo, hi); break;
  case LATHE_RT_NORM_DX: rt_norm_dx(&j->g, j->x, j->w, j->dy, j->out, lo, hi); break;
  default: rt_norm_dwb(&j->g, j->x, j->dy, j->what == LATHE_RT_NORM_DB, j->out, lo, hi); break;
  }
}

void lathe_rt_norm(float *out, const float *x, const float *w, const float *b, const float *rm, const float *rv,
                   const float *dy, int64_t what, int64_t N, int64_t C, int64_t S, int64_t nb, int64_t cb,
                   int64_t center, int64_t eps_bits) {
  norm_job j = {.out = out, .x = x, .w = w, .b = b, .rm = rm, .rv = rv, .dy = dy, .what = (int)what};
  j.g.N = N, j.g.C = C, j.g.S = S, j.g.nb = nb, j.g.cb = cb, j.g.center = (int)center;
  j.g.ngroups = (N / nb) * (C / cb);
  memcpy(&j.g.eps, &eps_bits, sizeof j.g.eps);
  int sums = what == LATHE_RT_NORM_DW || what == LATHE_RT_NORM_DB;
  if (sums) memset(out, 0, sizeof(float) * (size_t)C);
  /* dw and db of groups that share channels (groupnorm, rmsnorm) add into
   * the same sums: one part */
  int64_t per = nb * cb * S, grain = per >= NORM_GRAIN ? 1 : NORM_GRAIN / per;
  if ((sums && nb != N) || j.g.ngroups < 2 * grain) norm_part(&j, 0, j.g.ngroups, 0);
  else rt_pool_for(j.g.ngroups, grain, norm_part, &j);
}
