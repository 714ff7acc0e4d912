/* rt_norm.h -- the channel normalisations (batchnorm, groupnorm, rmsnorm)
 * and their gradient, written once for both executors: the reference
 * interpreter includes the kernels below with NT = double (ir/interp_norm.c),
 * liblathe_rt with NT = float (rt/rt_norm.c, lathe_rt_norm, which the CPU
 * backend's generated code calls). Statistics are accumulated in double in
 * both. Internal prefix: rt_norm_. No dependency but libm.
 *
 * Every one views x as [N, C, S] (S: the product of the axes after C; 1 for
 * [batch, F]) and normalises groups of elements, group q covering the rows
 * n in [n0, n0 + nb) and channels c in [c0, c0 + cb), all S positions:
 *   batchnorm  a group per channel: nb = N, cb = 1 (PyTorch's BatchNorm1d/2d)
 *   groupnorm  a group per sample and channel group: nb = 1, cb = C / groups
 *   rmsnorm    a group per row of the last axis (C = that axis, S = 1): nb = 1,
 *              cb = C, and no centring (RMSNorm: x / sqrt(mean(x^2) + eps))
 * y = (x - mean) * rstd * w[c] + b[c], rstd = 1 / sqrt(var + eps), var biased.
 * batchnorm's inference form reads mean and var per channel from its running
 * statistics instead. The gradient with respect to x is the usual
 * dx = rstd * (g - mean(g) - xh * mean(g * xh)), g = dy * w[c], xh the
 * normalised x (without the mean(g) term when not centred); dw[c] and db[c]
 * sum dy * xh and dy over every element of channel c.
 * ir/norm.h derives the geometry from an IR node. */
#ifndef LATHE_RT_NORM_H
#define LATHE_RT_NORM_H

#include <math.h>
#include <stdint.h>

typedef struct {
  int64_t N, C, S;   /* x as [N, C, S] */
  int64_t nb, cb;    /* a group: nb rows by cb channels */
  int64_t ngroups;
  int center;        /* subtract the mean (not rmsnorm) */
  double eps;
} rt_norm_geom;

/* First row and channel of group q. */
static inline void rt_norm_group(const rt_norm_geom *g, int64_t q, int64_t *n0, int64_t *c0) {
  int64_t per = g->C / g->cb;
  *n0 = q / per * g->nb, *c0 = q % per * g->cb;
}

/* Sums run in RT_NORM_LANES independent double accumulators (element k of
 * a row into lane k % RT_NORM_LANES), added in a fixed tree at the end: the
 * loops vectorise instead of waiting on one accumulator's latency, and the
 * result still depends only on the shapes. */
enum { RT_NORM_LANES = 8 };

static inline double rt_norm_total(const double *a) {
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

#endif

/* ---- the kernels, once per element type: define NT (double or float) and
 * NK(name) (a suffix) before including this file again ---- */
#if defined(NT) && defined(NK)

/* a[l] += r[k] - mu (sq: its square) over k = l, l + LANES, ... < S */
static inline void NK(lanes)(const NT *r, int64_t S, double mu, int sq, double *a) {
  int64_t k = 0;
  if (sq)
    for (; k + RT_NORM_LANES <= S; k += RT_NORM_LANES)
      for (int l = 0; l < RT_NORM_LANES; l++) a[l] += ((double)r[k + l] - mu) * ((double)r[k + l] - mu);
  else
    for (; k + RT_NORM_LANES <= S; k += RT_NORM_LANES)
      for (int l = 0; l < RT_NORM_LANES; l++) a[l] += (double)r[k + l] - mu;
  for (int l = 0; k < S; k++, l++) a[l] += sq ? ((double)r[k] - mu) * ((double)r[k] - mu) : (double)r[k] - mu;
}

/* a[l] += dy[k], b[l] += dy[k] (x[k] - mu), lanes as above */
static inline void NK(lanes2)(const NT *dy, const NT *x, int64_t S, double mu, double *a, double *b) {
  int64_t k = 0;
  for (; k + RT_NORM_LANES <= S; k += RT_NORM_LANES)
    for (int l = 0; l < RT_NORM_LANES; l++) {
      a[l] += (double)dy[k + l];
      b[l] += (double)dy[k + l] * ((double)x[k + l] - mu);
    }
  for (int l = 0; k < S; k++, l++) a[l] += (double)dy[k], b[l] += (double)dy[k] * ((double)x[k] - mu);
}

/* s[l] += x[k] - sh, v[l] += (x[k] - sh)^2, and with dy: a[l] += dy[k],
 * b[l] += dy[k] (x[k] - sh); lanes as above */
static inline void NK(lanes4)(const NT *x, const NT *dy, int64_t S, double sh, double *s, double *v, double *a,
                              double *b) {
  int64_t k = 0;
  if (dy)
    for (; k + RT_NORM_LANES <= S; k += RT_NORM_LANES)
      for (int l = 0; l < RT_NORM_LANES; l++) {
        double d = (double)x[k + l] - sh;
        s[l] += d, v[l] += d * d, a[l] += (double)dy[k + l], b[l] += (double)dy[k + l] * d;
      }
  else
    for (; k + RT_NORM_LANES <= S; k += RT_NORM_LANES)
      for (int l = 0; l < RT_NORM_LANES; l++) {
        double d = (double)x[k + l] - sh;
        s[l] += d, v[l] += d * d;
      }
  for (int l = 0; k < S; k++, l++) {
    double d = (double)x[k] - sh;
    s[l] += d, v[l] += d * d;
    if (dy) a[l] += (double)dy[k], b[l] += (double)dy[k] * d;
  }
}

/* One pass over group q: its mean and rstd, and with dy the sums over the
 * group of dy w[c] (*gw) and dy w[c] (x - mean) (*gxw; w NULL: ones). The
 * values are shifted by the group's first one before they are summed, so
 * the variance E[(x - sh)^2] - (mean - sh)^2 does not cancel when the mean
 * is large against the spread. */
static void NK(sums)(const rt_norm_geom *g, const NT *x, const NT *dy, const NT *w, int64_t q, double *mean,
                     double *rstd, double *gw, double *gxw) {
  int64_t n0, c0, m = g->nb * g->cb * g->S;
  rt_norm_group(g, q, &n0, &c0);
  double sh = g->center ? (double)x[(n0 * g->C + c0) * g->S] : 0.0, tg = 0.0, tgx = 0.0;
  double s[RT_NORM_LANES] = {0}, v[RT_NORM_LANES] = {0};
  for (int64_t n = n0; n < n0 + g->nb; n++)
    for (int64_t c = c0; c < c0 + g->cb; c++) {
      int64_t o = (n * g->C + c) * g->S;
      double a[RT_NORM_LANES] = {0}, b[RT_NORM_LANES] = {0}, wc = w ? (double)w[c] : 1.0;
      NK(lanes4)(x + o, dy ? dy + o : NULL, g->S, sh, s, v, a, b);
      if (dy) tg += rt_norm_total(a) * wc, tgx += rt_norm_total(b) * wc;
    }
  double d = g->center ? rt_norm_total(s) / (double)m : 0.0, var = rt_norm_total(v) / (double)m - d * d;
  *mean = sh + d, *rstd = 1.0 / sqrt((var > 0.0 ? var : 0.0) + g->eps);
  if (dy) *gw = tg, *gxw = tgx - d * tg; /* sum w dy (x - sh) - (mean - sh) sum w dy */
}

/* mean and rstd of group q */
static void NK(stats)(const rt_norm_geom *g, const NT *x, int64_t q, double *mean, double *rstd) {
  NK(sums)(g, x, NULL, NULL, q, mean, rstd, NULL, NULL);
}

/* y for groups [q0, q1). b may be NULL (rmsnorm). rm, rv non-NULL: batchnorm's
 * inference form (the group is the channel; its running statistics). */
static void NK(fwd)(const rt_norm_geom *g, const NT *x, const NT *w, const NT *b, const NT *rm, const NT *rv, NT *y,
                    int64_t q0, int64_t q1) {
  for (int64_t q = q0; q < q1; q++) {
    int64_t n0, c0;
    double mu, rs;
    rt_norm_group(g, q, &n0, &c0);
    if (rm) mu = rm[c0], rs = 1.0 / sqrt((double)rv[c0] + g->eps);
    else NK(stats)(g, x, q, &mu, &rs);
    for (int64_t n = n0; n < n0 + g->nb; n++)
      for (int64_t c = c0; c < c0 + g->cb; c++) {
        int64_t o = (n * g->C + c) * g->S;
        double sc = rs * (double)w[c], sh = (b ? (double)b[c] : 0.0) - mu * sc;
        for (int64_t k = 0; k < g->S; k++) y[o + k] = (NT)((double)x[o + k] * sc + sh);
      }
  }
}

/* dx for groups [q0, q1) */
static void NK(dx)(const rt_norm_geom *g, const NT *x, const NT *w, const NT *dy, NT *dx, int64_t q0, int64_t q1) {
  int64_t m = g->nb * g->cb * g->S;
  for (int64_t q = q0; q < q1; q++) {
    int64_t n0, c0;
    double mu, rs, mg = 0.0, mgx = 0.0;
    rt_norm_group(g, q, &n0, &c0);
    NK(sums)(g, x, dy, w, q, &mu, &rs, &mg, &mgx); /* one pass: the statistics and both sums */
    mg = g->center ? mg / (double)m : 0.0, mgx *= rs / (double)m;
    for (int64_t n = n0; n < n0 + g->nb; n++)
      for (int64_t c = c0; c < c0 + g->cb; c++) {
        int64_t o = (n * g->C + c) * g->S;
        double wc = (double)w[c];
        for (int64_t k = 0; k < g->S; k++) {
          double xh = ((double)x[o + k] - mu) * rs;
          dx[o + k] = (NT)(rs * ((double)dy[o + k] * wc - mg - xh * mgx));
        }
      }
  }
}

/* dw (db when bias) accumulated over groups [q0, q1) into out[C] (zeroed by
 * the caller); a group's channels are its own, so batchnorm's groups can
 * run in parallel. */
static void NK(dwb)(const rt_norm_geom *g, const NT *x, const NT *dy, int bias, NT *out, int64_t q0, int64_t q1) {
  for (int64_t q = q0; q < q1; q++) {
    int64_t n0, c0;
    double mu = 0.0, rs = 1.0, sg = 0.0, sgx = 0.0;
    rt_norm_group(g, q, &n0, &c0);
    if (!bias && g->cb == 1) { /* the group is one channel (batchnorm): one pass gives dw */
      NK(sums)(g, x, dy, NULL, q, &mu, &rs, &sg, &sgx);
      out[c0] = (NT)((double)out[c0] + sgx * rs);
      continue;
    }
    if (!bias) NK(stats)(g, x, q, &mu, &rs);
    for (int64_t c = c0; c < c0 + g->cb; c++) {
      double a[RT_NORM_LANES] = {0}, b[RT_NORM_LANES] = {0};
      for (int64_t n = n0; n < n0 + g->nb; n++) {
        int64_t o = (n * g->C + c) * g->S;
        if (bias) NK(lanes)(dy + o, g->S, 0.0, 0, a);
        else NK(lanes2)(dy + o, x + o, g->S, mu, a, b);
      }
      out[c] = (NT)((double)out[c] + (bias ? rt_norm_total(a) : rt_norm_total(b) * rs)); /* sum dy (x - mu) rs */
    }
  }
}

#endif
