/* interp_grad.c -- reference kernels for the backward-pass ops (the
 * IR_CAT_GRAD rows of ops.def), written from the forward kernels in interp.c
 * and interp_nn.c: same layouts, same tie rules (the first maximum wins), so
 * gradients computed in IR_INTERP_F64 mode are the oracle the finite
 * differences and the backends are checked against. See interp_impl.h for
 * the kernel contract (out is zeroed on entry).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "interp_impl.h"

static const ir_shape *shp(const ik_ctx *c, const ir_node *n, int k) { return &ik_arg(c, n, k)->shape; }

/* ---- broadcasting ---- */

int ik_sum_to(ik_ctx *c, const ir_node *n, double *out) {
  const double *x = ik_in(c, n, 0);
  const ir_shape *sx = shp(c, n, 0);
  int64_t count = ir_numel(sx);
  for (int64_t i = 0; i < count; i++) out[ik_bcast_index(sx, &n->shape, i)] += x[i];
  return 0;
}

int ik_broadcast_to(ik_ctx *c, const ir_node *n, double *out) {
  const double *x = ik_in(c, n, 0);
  int64_t count = ir_numel(&n->shape);
  for (int64_t o = 0; o < count; o++) out[o] = x[ik_bcast_index(&n->shape, shp(c, n, 0), o)];
  return 0;
}

/* ---- elementwise: f'(x) per forward op, defined once here ---- */

typedef double (*deriv_fn)(double x, const ir_attr *a);

static const double k_sqrt2 = 1.41421356237309504880, k_sqrt_2_over_pi = 0.79788456080286535588;
static const double k_inv_sqrt_2pi = 0.39894228040143267794;

static double d_relu(double x, const ir_attr *a) { (void)a; return x > 0 ? 1.0 : 0.0; }
static double d_leaky(double x, const ir_attr *a) { return x >= 0 ? 1.0 : a->f; }
static double d_sigmoid(double x, const ir_attr *a) {
  (void)a;
  double s = ik_logistic(x);
  return s * (1.0 - s);
}
static double d_tanh(double x, const ir_attr *a) {
  (void)a;
  double t = tanh(x);
  return 1.0 - t * t;
}
/* exact: Phi(x) + x phi(x); tanh form: d/dx 0.5 x (1 + tanh u), u = c (x + 0.044715 x^3) */
static double d_gelu(double x, const ir_attr *a) {
  if (!a->approx) return 0.5 * (1.0 + erf(x / k_sqrt2)) + x * k_inv_sqrt_2pi * exp(-0.5 * x * x);
  double t = tanh(k_sqrt_2_over_pi * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k_sqrt_2_over_pi * (1.0 + 3 * 0.044715 * x * x);
}
static double d_swish(double x, const ir_attr *a) {
  (void)a;
  double s = ik_logistic(x);
  return s + x * s * (1.0 - s);
}
static double d_exp(double x, const ir_attr *a) { (void)a; return exp(x); }
static double d_log(double x, const ir_attr *a) { (void)a; return 1.0 / x; }
static double d_sqrt(double x, const ir_attr *a) { (void)a; return 0.5 / sqrt(x); }
static double d_abs(double x, const ir_attr *a) { (void)a; return x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0; }
static double d_neg(double x, const ir_attr *a) { (void)x, (void)a; return -1.0; }
static double d_pow(double x, const ir_attr *a) { return a->f == 0 ? 0.0 : a->f * pow(x, a->f - 1.0); }
/* torch.clamp's backward: dy where lo <= x <= hi (bounds included), else 0 */
static double d_clamp(double x, const ir_attr *a) { return x >= a->f && x <= a->f2 ? 1.0 : 0.0; }
static double d_one(double x, const ir_attr *a) { (void)x, (void)a; return 1.0; } /* dropout: identity for now */

static const deriv_fn derivs[IR_NOPS] = {
  [IR_RELU] = d_relu, [IR_LEAKY_RELU] = d_leaky, [IR_SIGMOID] = d_sigmoid, [IR_TANH] = d_tanh,
  [IR_GELU] = d_gelu, [IR_SWISH] = d_swish,      [IR_EXP] = d_exp,         [IR_LOG] = d_log,
  [IR_SQRT] = d_sqrt, [IR_ABS] = d_abs,          [IR_NEG] = d_neg,         [IR_POW] = d_pow,
  [IR_DROPOUT] = d_one,     [IR_CLAMP] = d_clamp,
};

int ik_unary_grad(ik_ctx *c, const ir_node *n, double *out) {
  const double *x = ik_in(c, n, 0), *dy = ik_in(c, n, 1);
  deriv_fn f = n->attr.i >= 0 && n->attr.i < IR_NOPS ? derivs[n->attr.i] : NULL;
  if (!f) return ik_fail(c, n, "no derivative for op %lld", (long long)n->attr.i);
  int64_t count = ir_numel(&n->shape);
  for (int64_t i = 0; i < count; i++) out[i] = dy[i] * f(x[i], &n->attr);
  return 0;
}

/* ---- softmax family: x viewed as [outer, len, inner] around the axis ---- */

static int softmax_grad(ik_ctx *c, const ir_node *n, double *out, int as_log) {
  const double *y = ik_in(c, n, 0), *dy = ik_in(c, n, 1);
  const ir_shape *s = &n->shape;
  int ax = (int)n->attr.axis;
  int64_t outer = ik_dims(s, 0, ax), len = s->d[ax], inner = ik_dims(s, ax + 1, s->rank);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t base = o * len * inner + i;
      double dot = 0.0;
      for (int64_t l = 0; l < len; l++) dot += as_log ? dy[base + l * inner] : dy[base + l * inner] * y[base + l * inner];
      for (int64_t l = 0; l < len; l++) {
        int64_t e = base + l * inner;
        out[e] = as_log ? dy[e] - exp(y[e]) * dot : y[e] * (dy[e] - dot);
      }
    }
  return 0;
}

int ik_softmax_grad(ik_ctx *c, const ir_node *n, double *out) { return softmax_grad(c, n, out, 0); }
int ik_log_softmax_grad(ik_ctx *c, const ir_node *n, double *out) { return softmax_grad(c, n, out, 1); }

/* dy goes to the first position holding the maximum (NaN counts as one). */
int ik_max_grad(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = shp(c, n, 0);
  const double *x = ik_in(c, n, 0), *y = ik_in(c, n, 1), *dy = ik_in(c, n, 2);
  int64_t outer = 1, len = ir_numel(sx), inner = 1;
  if (n->attr.axis >= 0) {
    int ax = (int)n->attr.axis;
    outer = ik_dims(sx, 0, ax), len = sx->d[ax], inner = ik_dims(sx, ax + 1, sx->rank);
  }
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      double m = y[o * inner + i];
      for (int64_t l = 0; l < len; l++) {
        int64_t e = (o * len + l) * inner + i;
        if (x[e] == m || (isnan(x[e]) && isnan(m))) {
          out[e] = dy[o * inner + i];
          break;
        }
      }
    }
  return 0;
}

/* Over the last axis, xh = (x - mean) * inv, g = dy * w:
 * dx = inv * (g - mean(g) - xh * mean(g * xh)); dw = sum over rows of dy * xh. */
int ik_layernorm_grad(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = shp(c, n, 0);
  const double *x = ik_in(c, n, 0), *w = ik_in(c, n, 1), *dy = ik_in(c, n, 2);
  int64_t d = sx->d[sx->rank - 1], rows = ir_numel(sx) / d;
  for (int64_t r = 0; r < rows; r++) {
    const double *xr = x + r * d, *gr = dy + r * d;
    double mean = 0.0, var = 0.0, mg = 0.0, mgx = 0.0;
    for (int64_t j = 0; j < d; j++) mean += xr[j];
    mean /= (double)d;
    for (int64_t j = 0; j < d; j++) var += (xr[j] - mean) * (xr[j] - mean);
    double inv = 1.0 / sqrt(var / (double)d + n->attr.f);
    if (n->attr.i == 1) {
      for (int64_t j = 0; j < d; j++) out[j] += gr[j] * (xr[j] - mean) * inv;
      continue;
    }
    for (int64_t j = 0; j < d; j++) {
      double g = gr[j] * w[j];
      mg += g;
      mgx += g * (xr[j] - mean) * inv;
    }
    mg /= (double)d, mgx /= (double)d;
    for (int64_t j = 0; j < d; j++) out[r * d + j] = inv * (gr[j] * w[j] - mg - (xr[j] - mean) * inv * mgx);
  }
  return 0;
}

/* ---- convolution: the forward loops with the products sent back ---- */

/* which = 0: out is dx (from dy and w); 1: out is dw (from x and dy) */
static void conv_back(const ir_conv *d, const double *x, const double *w, const double *dy, double *out,
                      int which) {
  for (int64_t in = 0; in < d->N; in++)
    for (int64_t o = 0; o < d->O; o++)
      for (int64_t oy = 0; oy < d->OH; oy++)
        for (int64_t ox = 0; ox < d->OW; ox++) {
          double g = dy[((in * d->O + o) * d->OH + oy) * d->OW + ox];
          for (int64_t cg = 0; cg < d->Cg; cg++) {
            int64_t ch = o / d->Og * d->Cg + cg;
            for (int64_t ky = 0; ky < d->KH; ky++)
              for (int64_t kx = 0; kx < d->KW; kx++) {
                int64_t y = oy * d->s + ky * d->dil - d->padT, xx = ox * d->s + kx * d->dil - d->padL;
                if (y < 0 || y >= d->H || xx < 0 || xx >= d->W) continue;
                int64_t xi = ((in * d->C + ch) * d->H + y) * d->W + xx;
                int64_t wi = ((o * d->Cg + cg) * d->KH + ky) * d->KW + kx;
                if (which == 0) out[xi] += g * w[wi];
                else out[wi] += g * x[xi];
              }
          }
        }
}

int ik_conv2d_grad_input(ik_ctx *c, const ir_node *n, double *out) {
  ir_conv d;
  char msg[256];
  if (ir_conv_geom(&n->shape, shp(c, n, 1), &n->attr, &d, msg, sizeof msg)) return ik_fail(c, n, "%s", msg);
  conv_back(&d, NULL, ik_in(c, n, 1), ik_in(c, n, 0), out, 0);
  return 0;
}

int ik_conv2d_grad_weight(ik_ctx *c, const ir_node *n, double *out) {
  ir_conv d;
  char msg[256];
  if (ir_conv_geom(shp(c, n, 0), &n->shape, &n->attr, &d, msg, sizeof msg)) return ik_fail(c, n, "%s", msg);
  conv_back(&d, ik_in(c, n, 0), NULL, ik_in(c, n, 1), out, 1);
  return 0;
}

/* max: dy to the window's first maximum (the forward's rule); avg: dy / k^2 to each */
int ik_pool2d_grad(ik_ctx *c, const ir_node *n, double *out) {
  const double *x = ik_in(c, n, 0), *dy = ik_in(c, n, 1);
  ir_pool p = ir_pool_geom(shp(c, n, 0), &n->attr); /* 1-d: H = KH = 1 */
  int64_t planes = p.planes, H = p.H, W = p.W, OH = p.OH, OW = p.OW, s = p.s, KH = p.KH, KW = p.KW;
  int is_max = n->attr.i == IR_MAXPOOL2D;
  for (int64_t pl = 0; pl < planes; pl++)
    for (int64_t oy = 0; oy < OH; oy++)
      for (int64_t ox = 0; ox < OW; ox++) {
        double g = dy[(pl * OH + oy) * OW + ox], best = -INFINITY;
        int64_t at = -1;
        for (int64_t ky = 0; ky < KH; ky++)
          for (int64_t kx = 0; kx < KW; kx++) {
            int64_t e = (pl * H + oy * s + ky) * W + ox * s + kx;
            if (!is_max) out[e] += g / (double)(KH * KW);
            else if (at < 0 || x[e] > best || (isnan(x[e]) && !isnan(best))) best = x[e], at = e;
          }
        if (is_max) out[at] += g;
      }
  return 0;
}

/* ---- movement ---- */

int ik_embedding_grad(ik_ctx *c, const ir_node *n, double *out) {
  const double *ids = ik_in(c, n, 0), *dy = ik_in(c, n, 1);
  int64_t count = ir_numel(shp(c, n, 0)), V = n->shape.d[0], D = n->shape.d[1];
  for (int64_t i = 0; i < count; i++) {
    double id = ids[i];
    if (!(id >= 0 && id < (double)V && id == floor(id)))
      return ik_fail(c, n, "id %.17g at position %lld is out of range for a vocabulary of %lld", id,
                     (long long)i, (long long)V);
    for (int64_t j = 0; j < D; j++) out[(int64_t)id * D + j] += dy[i * D + j];
  }
  return 0;
}

int ik_slice_grad(ik_ctx *c, const ir_node *n, double *out) {
  const double *dy = ik_in(c, n, 0);
  int ax = (int)n->attr.axis;
  int64_t outer = ik_dims(&n->shape, 0, ax), inner = ik_dims(&n->shape, ax + 1, n->shape.rank);
  int64_t len = n->shape.d[ax], olen = n->attr.end - n->attr.start;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t e = 0; e < olen * inner; e++) out[(o * len + n->attr.start) * inner + e] = dy[o * olen * inner + e];
  return 0;
}

/* dy scattered back to x's shape (list), summed where an index repeats. */
int ik_gather_grad(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *si = shp(c, n, 0);
  const double *ix = ik_in(c, n, 0), *dy = ik_in(c, n, 1);
  int ax = (int)n->attr.axis;
  int64_t count = ir_numel(si), len = n->shape.d[ax];
  for (int64_t e = 0; e < count; e++) {
    double v = ix[e];
    if (!(v >= 0 && v < (double)len && v == floor(v)))
      return ik_fail(c, n, "index %.17g at position %lld is out of range for axis %d of size %lld", v,
                     (long long)e, ax, (long long)len);
    out[ik_gather_at(&n->shape, si, ax, e, (int64_t)v)] += dy[e];
  }
  return 0;
}

/* ---- losses: the loss gradient dl is a scalar ---- */

/* d/dx_j of cross_entropy (ik_cross_entropy): on a counted row,
 * dl / W ((1-ls) w[lab] (p_j - [j == lab]) + ls / C (p_j sum_c w[c] - w[j]))
 * with W the rows' total weight; 0 on an ignored row. Without weights this
 * is (p_j - (1-ls) [j == lab] - ls / C) dl / rows. */
int ik_cross_entropy_grad(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = shp(c, n, 0);
  const double *x = ik_in(c, n, 0), *y = ik_in(c, n, 1), dl = ik_in(c, n, 2)[0];
  const double *w = n->nin == 4 ? ik_in(c, n, 3) : NULL;
  int64_t C = sx->d[sx->rank - 1], rows = ir_numel(sx) / C;
  double ls = n->attr.f, wsum, wall = 0.0;
  if (ik_ce_weights(c, n, y, w, rows, C, &wsum)) return -1;
  for (int64_t j = 0; j < C; j++) wall += w ? w[j] : 1.0;
  double scale = dl / wsum;
  for (int64_t r = 0; r < rows; r++) {
    const double *xr = x + r * C;
    double lab = y[r];
    if (n->attr.k && lab == (double)n->attr.n) {
      for (int64_t j = 0; j < C; j++) out[r * C + j] = 0.0;
      continue;
    }
    double mx = -INFINITY, sum = 0.0, wl = w ? w[(int64_t)lab] : 1.0;
    for (int64_t j = 0; j < C; j++) mx = xr[j] > mx ? xr[j] : mx;
    for (int64_t j = 0; j < C; j++) sum += exp(xr[j] - mx);
    for (int64_t j = 0; j < C; j++) {
      double p = exp(xr[j] - mx) / sum;
      double g = (1.0 - ls) * wl * (p - (j == (int64_t)lab ? 1.0 : 0.0)) + ls / (double)C * (p * wall - (w ? w[j] : 1.0));
      out[r * C + j] = scale * g;
    }
  }
  return 0;
}

/* d/dx of mean(-x[label]): -dl / rows at each row's label, 0 elsewhere */
int ik_nll_grad(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = shp(c, n, 0);
  const double *y = ik_in(c, n, 1), dl = ik_in(c, n, 2)[0];
  int64_t C = sx->d[sx->rank - 1], rows = ir_numel(sx) / C;
  memset(out, 0, sizeof(double) * (size_t)(rows * C));
  for (int64_t r = 0; r < rows; r++) {
    double lab = y[r];
    if (!(lab >= 0 && lab < (double)C && lab == floor(lab)))
      return ik_fail(c, n, "label %.17g at position %lld is out of range for %lld classes", lab,
                     (long long)r, (long long)C);
    out[r * C + (int64_t)lab] = -dl / (double)rows;
  }
  return 0;
}

/* d/dx of mean(max(x,0) - x y + log1p(exp(-|x|))) = (sigmoid(x) - y) / count */
int ik_bce_grad(ik_ctx *c, const ir_node *n, double *out) {
  const double *x = ik_in(c, n, 0), *y = ik_in(c, n, 1), dl = ik_in(c, n, 2)[0];
  int64_t count = ir_numel(&n->shape);
  for (int64_t i = 0; i < count; i++) out[i] = dl * (ik_logistic(x[i]) - y[i]) / (double)count;
  return 0;
}
