/* interp_nn.c -- reference kernels for contractions (matmul, conv2d),
 * reductions and normalisations, pools, data movement, embedding and losses.
 * See interp_impl.h for the kernel contract. Many kernels view a tensor as
 * [outer, len, inner] around one axis: element (o, l, i) is at
 * (o * len + l) * inner + i.
 */
#include <math.h>
#include <stdlib.h>

#include "conv.h"
#include "interp_impl.h"

/* ---- contractions ---- */

/* out[m, p] = A[m, k] B[k, p] where A(i, q) = a[i * ar + q * ac] and
 * B(q, j) = b[q * br + j * bc]: a transposed operand is read through
 * swapped strides. Sums in q order from 0, as ik_affine does. */
static void mm_strided(const double *a, int64_t ar, int64_t ac, const double *b, int64_t br, int64_t bc, int64_t m,
                       int64_t k, int64_t p, double *out) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < p; j++) {
      double s = 0.0;
      for (int64_t q = 0; q < k; q++) s += a[i * ar + q * ac] * b[q * br + j * bc];
      out[i * p + j] = s;
    }
}

/* numpy.matmul. A 1-D left operand is one row [1, k], a 1-D right operand
 * one column [k, 1]; the leading (batch) dimensions of each broadcast to the
 * result's. The result's trailing dims are [m, p] minus the promoted ones.
 * A flagged operand (attr.i) is stored with its last two axes swapped:
 * A as [k, m], B as [p, k]. */
int ik_matmul(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sa = &ik_arg(c, n, 0)->shape, *sb = &ik_arg(c, n, 1)->shape;
  const double *a = ik_in(c, n, 0), *b = ik_in(c, n, 1);
  int ta = (n->attr.i & IR_MM_TA) != 0, tb = (n->attr.i & IR_MM_TB) != 0;
  int64_t m = sa->rank >= 2 ? sa->d[sa->rank - 2 + ta] : 1;
  int64_t k = sa->d[sa->rank - 1 - ta];
  int64_t p = sb->rank >= 2 ? sb->d[sb->rank - 1 - tb] : 1;
  ir_shape batch = n->shape, ba = {0}, bb = {0};
  batch.rank -= (sa->rank >= 2) + (sb->rank >= 2);
  ba.rank = sa->rank > 2 ? sa->rank - 2 : 0;
  bb.rank = sb->rank > 2 ? sb->rank - 2 : 0;
  for (int i = 0; i < ba.rank; i++) ba.d[i] = sa->d[i];
  for (int i = 0; i < bb.rank; i++) bb.d[i] = sb->d[i];
  int64_t nbatch = ik_dims(&batch, 0, batch.rank);
  for (int64_t t = 0; t < nbatch; t++) {
    const double *at = a + ik_bcast_index(&batch, &ba, t) * m * k;
    const double *bt = b + ik_bcast_index(&batch, &bb, t) * k * p;
    mm_strided(at, ta ? 1 : k, ta ? m : 1, bt, tb ? 1 : p, tb ? k : 1, m, k, p, out + t * m * p);
  }
  return 0;
}

/* x[N, C, H, W] * w[O, C/G, KH, KW] (+ b[O]) -> [N, O, OH, OW], or the 1-d
 * form (ir/conv.h: H = 1); the input is padded by `pad` zeros at the
 * top/left and `pad_hi` at the bottom/right, taps `dil` apart, output
 * channel o reading its group's input channels only. */
int ik_conv2d(ik_ctx *c, const ir_node *n, double *out) {
  const double *x = ik_in(c, n, 0), *w = ik_in(c, n, 1), *b = n->nin == 3 ? ik_in(c, n, 2) : NULL;
  ir_conv d;
  char msg[256];
  if (ir_conv_geom(&ik_arg(c, n, 0)->shape, &ik_arg(c, n, 1)->shape, &n->attr, &d, msg, sizeof msg))
    return ik_fail(c, n, "%s", msg);
  for (int64_t in = 0; in < d.N; in++)
    for (int64_t o = 0; o < d.O; o++)
      for (int64_t oy = 0; oy < d.OH; oy++)
        for (int64_t ox = 0; ox < d.OW; ox++) {
          double acc = b ? b[o] : 0.0;
          for (int64_t cg = 0; cg < d.Cg; cg++) {
            int64_t ch = o / d.Og * d.Cg + cg;
            for (int64_t ky = 0; ky < d.KH; ky++)
              for (int64_t kx = 0; kx < d.KW; kx++) {
                int64_t y = oy * d.s + ky * d.dil - d.padT, xx = ox * d.s + kx * d.dil - d.padL;
                if (y < 0 || y >= d.H || xx < 0 || xx >= d.W) continue; /* zero padding */
                acc += x[((in * d.C + ch) * d.H + y) * d.W + xx] * w[((o * d.Cg + cg) * d.KH + ky) * d.KW + kx];
              }
          }
          out[((in * d.O + o) * d.OH + oy) * d.OW + ox] = acc;
        }
  return 0;
}

/* ---- pools: k x k windows with a stride, no padding, over [N, C, H, W]; k over [N, C, L] ---- */

static int pool2d(ik_ctx *c, const ir_node *n, double *out, int is_max) {
  const double *x = ik_in(c, n, 0);
  ir_pool p = ir_pool_geom(&ik_arg(c, n, 0)->shape, &n->attr); /* 1-d: H = KH = 1 */
  int64_t planes = p.planes, H = p.H, W = p.W, OH = p.OH, OW = p.OW, s = p.s;
  for (int64_t pl = 0; pl < planes; pl++)
    for (int64_t oy = 0; oy < OH; oy++)
      for (int64_t ox = 0; ox < OW; ox++) {
        double acc = is_max ? -INFINITY : 0.0;
        for (int64_t ky = 0; ky < p.KH; ky++)
          for (int64_t kx = 0; kx < p.KW; kx++) {
            double v = x[(pl * H + oy * s + ky) * W + ox * s + kx];
            if (!is_max) acc += v;
            else if (v > acc || isnan(v)) acc = v; /* NaN propagates, as in PyTorch */
          }
        out[(pl * OH + oy) * OW + ox] = is_max ? acc : acc / (double)(p.KH * p.KW);
      }
  return 0;
}

int ik_maxpool2d(ik_ctx *c, const ir_node *n, double *out) { return pool2d(c, n, out, 1); }
int ik_avgpool2d(ik_ctx *c, const ir_node *n, double *out) { return pool2d(c, n, out, 0); }

/* ---- softmax family along attr.axis ---- */

static int softmax_along(ik_ctx *c, const ir_node *n, double *out, int as_log) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape;
  const double *x = ik_in(c, n, 0);
  int ax = (int)n->attr.axis;
  int64_t outer = ik_dims(sx, 0, ax), len = sx->d[ax], inner = ik_dims(sx, ax + 1, sx->rank);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const double *xr = x + o * len * inner + i;
      double *yr = out + o * len * inner + i;
      double mx = -INFINITY, sum = 0.0;
      for (int64_t l = 0; l < len; l++) mx = xr[l * inner] > mx ? xr[l * inner] : mx;
      for (int64_t l = 0; l < len; l++) sum += exp(xr[l * inner] - mx);
      for (int64_t l = 0; l < len; l++)
        yr[l * inner] = as_log ? xr[l * inner] - mx - log(sum) : exp(xr[l * inner] - mx) / sum;
    }
  return 0;
}

int ik_softmax(ik_ctx *c, const ir_node *n, double *out) { return softmax_along(c, n, out, 0); }
int ik_log_softmax(ik_ctx *c, const ir_node *n, double *out) { return softmax_along(c, n, out, 1); }

/* ---- sum / mean / max / min along attr.axis, or over everything (axis -1) ---- */

enum { RED_SUM, RED_MEAN, RED_MAX, RED_MIN };

static int reduce(ik_ctx *c, const ir_node *n, double *out, int kind) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape;
  const double *x = ik_in(c, n, 0);
  int64_t outer = 1, len = ir_numel(sx), inner = 1;
  if (n->attr.axis >= 0) {
    int ax = (int)n->attr.axis;
    outer = ik_dims(sx, 0, ax);
    len = sx->d[ax];
    inner = ik_dims(sx, ax + 1, sx->rank);
  }
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const double *xr = x + o * len * inner + i;
      double acc = kind == RED_MAX || kind == RED_MIN ? xr[0] : 0.0;
      for (int64_t l = 0; l < len; l++) {
        double v = xr[l * inner];
        if (kind == RED_MAX) { if (v > acc || isnan(v)) acc = v; }
        else if (kind == RED_MIN) { if (v < acc || isnan(v)) acc = v; }
        else acc += v;
      }
      out[o * inner + i] = kind == RED_MEAN ? acc / (double)len : acc;
    }
  return 0;
}

int ik_sum(ik_ctx *c, const ir_node *n, double *out) { return reduce(c, n, out, RED_SUM); }
int ik_mean(ik_ctx *c, const ir_node *n, double *out) { return reduce(c, n, out, RED_MEAN); }
int ik_max(ik_ctx *c, const ir_node *n, double *out) { return reduce(c, n, out, RED_MAX); }
int ik_min(ik_ctx *c, const ir_node *n, double *out) { return reduce(c, n, out, RED_MIN); }

/* argmax / argmin: the index of the first extremum along the axis (the flat
 * index over everything for axis -1); a NaN counts as the extremum, as
 * torch.argmax */
int ik_argext(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape;
  const double *x = ik_in(c, n, 0);
  int64_t outer = 1, len = ir_numel(sx), inner = 1;
  if (n->attr.axis >= 0) {
    int ax = (int)n->attr.axis;
    outer = ik_dims(sx, 0, ax), len = sx->d[ax], inner = ik_dims(sx, ax + 1, sx->rank);
  }
  int is_max = n->op == IR_ARGMAX;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const double *xr = x + o * len * inner + i;
      int64_t best = 0;
      for (int64_t l = 1; l < len; l++) {
        double v = xr[l * inner], b = xr[best * inner];
        if (!isnan(b) && (isnan(v) || (is_max ? v > b : v < b))) best = l;
      }
      out[o * inner + i] = (double)best;
    }
  return 0;
}

/* Running sum along attr.axis, from the start (attr.i 0) or the end (1). */
int ik_cumsum(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape;
  const double *x = ik_in(c, n, 0);
  int ax = (int)n->attr.axis;
  int64_t outer = ik_dims(sx, 0, ax), len = sx->d[ax], inner = ik_dims(sx, ax + 1, sx->rank);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      double acc = 0.0;
      for (int64_t s = 0; s < len; s++) {
        int64_t l = n->attr.i ? len - 1 - s : s, at = (o * len + l) * inner + i;
        acc += x[at];
        out[at] = acc;
      }
    }
  return 0;
}

/* Over the last axis: (x - mean) / sqrt(var + eps) * w + b, var biased. */
int ik_layernorm(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape;
  const double *x = ik_in(c, n, 0), *w = ik_in(c, n, 1), *b = ik_in(c, n, 2);
  int64_t d = sx->d[sx->rank - 1], rows = ir_numel(sx) / d;
  for (int64_t r = 0; r < rows; r++) {
    const double *xr = x + r * d;
    double mean = 0.0, var = 0.0;
    for (int64_t j = 0; j < d; j++) mean += xr[j];
    mean /= (double)d;
    for (int64_t j = 0; j < d; j++) var += (xr[j] - mean) * (xr[j] - mean);
    var /= (double)d;
    double inv = 1.0 / sqrt(var + n->attr.f);
    for (int64_t j = 0; j < d; j++) out[r * d + j] = (xr[j] - mean) * inv * w[j] + b[j];
  }
  return 0;
}

/* ---- data movement ---- */

int ik_reshape(ik_ctx *c, const ir_node *n, double *out) {
  const double *x = ik_in(c, n, 0);
  int64_t count = ir_numel(&n->shape);
  for (int64_t i = 0; i < count; i++) out[i] = x[i];
  return 0;
}

/* out.d[j] = in.d[perm[j]]: output coordinate j steps input axis perm[j]. */
int ik_transpose(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape;
  const double *x = ik_in(c, n, 0);
  int64_t instride[IR_MAXDIM];
  for (int a = 0; a < sx->rank; a++) instride[a] = ik_dims(sx, a + 1, sx->rank);
  int64_t count = ir_numel(&n->shape);
  for (int64_t o = 0; o < count; o++) {
    int64_t rest = o, src = 0;
    for (int j = n->shape.rank - 1; j >= 0; j--) {
      src += (rest % n->shape.d[j]) * instride[n->attr.list[j]];
      rest /= n->shape.d[j];
    }
    out[o] = x[src];
  }
  return 0;
}

int ik_concat(ik_ctx *c, const ir_node *n, double *out) {
  int ax = (int)n->attr.axis;
  int64_t outer = ik_dims(&n->shape, 0, ax), inner = ik_dims(&n->shape, ax + 1, n->shape.rank);
  int64_t olen = n->shape.d[ax], at = 0; /* at: offset of input k along the axis */
  for (int k = 0; k < n->nin; k++) {
    const double *x = ik_in(c, n, k);
    int64_t len = ik_arg(c, n, k)->shape.d[ax];
    for (int64_t o = 0; o < outer; o++)
      for (int64_t e = 0; e < len * inner; e++) out[(o * olen + at) * inner + e] = x[o * len * inner + e];
    at += len;
  }
  return 0;
}

int ik_slice(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape;
  const double *x = ik_in(c, n, 0);
  int ax = (int)n->attr.axis;
  int64_t outer = ik_dims(sx, 0, ax), inner = ik_dims(sx, ax + 1, sx->rank), len = sx->d[ax];
  int64_t olen = n->attr.end - n->attr.start;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t e = 0; e < olen * inner; e++)
      out[o * olen * inner + e] = x[(o * len + n->attr.start) * inner + e];
  return 0;
}

/* ids[...] index rows of weight[V, D]; the result is ids.shape + [D]. An id
 * outside [0, V) is a user error (the data), never an out-of-bounds read. */
int ik_embedding(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *si = &ik_arg(c, n, 0)->shape, *sw = &ik_arg(c, n, 1)->shape;
  const double *ids = ik_in(c, n, 0), *w = ik_in(c, n, 1);
  int64_t count = ir_numel(si), V = sw->d[0], D = sw->d[1];
  for (int64_t i = 0; i < count; i++) {
    double id = ids[i];
    if (!(id >= 0 && id < (double)V && id == floor(id)))
      return ik_fail(c, n, "id %.17g at position %lld is out of range for a vocabulary of %lld",
                     id, (long long)i, (long long)V);
    const double *row = w + (int64_t)id * D;
    for (int64_t j = 0; j < D; j++) out[i * D + j] = row[j];
  }
  return 0;
}

/* ids[...] -> ids.shape + [n]: 1 at each id's class. An id outside [0, n)
 * is an error, as in PyTorch (never an all-zero row that hides bad data). */
int ik_one_hot(ik_ctx *c, const ir_node *n, double *out) {
  const double *ids = ik_in(c, n, 0);
  int64_t count = ir_numel(&ik_arg(c, n, 0)->shape), C = n->attr.n;
  for (int64_t i = 0; i < count; i++) {
    double id = ids[i];
    if (!(id >= 0 && id < (double)C && id == floor(id)))
      return ik_fail(c, n, "id %.17g at position %lld is out of range for %lld classes", id, (long long)i,
                     (long long)C);
    for (int64_t j = 0; j < C; j++) out[i * C + j] = j == (int64_t)id ? 1.0 : 0.0;
  }
  return 0;
}

/* The flat offset in x of element e of index (index's shape), with the
 * axis coordinate replaced by the index value v. */
int64_t ik_gather_at(const ir_shape *sx, const ir_shape *si, int ax, int64_t e, int64_t v) {
  int64_t at = 0, stride = 1;
  for (int k = si->rank - 1; k >= 0; k--) {
    int64_t coord = e % si->d[k];
    e /= si->d[k];
    at += (k == ax ? v : coord) * stride;
    stride *= sx->d[k];
  }
  return at;
}

/* torch.gather: out[e] = x[e with its axis coordinate = index[e]]. An
 * index outside [0, x.d[axis]) is an error, as in PyTorch. */
int ik_gather(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape, *si = &ik_arg(c, n, 1)->shape;
  const double *x = ik_in(c, n, 0), *ix = ik_in(c, n, 1);
  int ax = (int)n->attr.axis;
  int64_t count = ir_numel(si), len = sx->d[ax];
  for (int64_t e = 0; e < count; e++) {
    double v = ix[e];
    if (!(v >= 0 && v < (double)len && v == floor(v)))
      return ik_fail(c, n, "index %.17g at position %lld is out of range for axis %d of size %lld", v,
                     (long long)e, ax, (long long)len);
    out[e] = x[ik_gather_at(sx, si, ax, e, (int64_t)v)];
  }
  return 0;
}

/* ---- losses: scalar results ---- */

/* cross_entropy's rows as torch.nn.functional.cross_entropy weighs them:
 * a row whose label is the ignore_index (attr k = 1, the index in attr n)
 * does not count; every other row weighs w[label] (1 without class
 * weights), and the mean divides by the rows' total weight: *wsum. Returns
 * -1 with the error set for a label that is not a class. */
int ik_ce_weights(ik_ctx *c, const ir_node *n, const double *y, const double *w, int64_t rows, int64_t C, double *wsum) {
  double total = 0.0;
  for (int64_t r = 0; r < rows; r++) {
    double lab = y[r];
    if (n->attr.k && lab == (double)n->attr.n) continue;
    if (!(lab >= 0 && lab < (double)C && lab == floor(lab)))
      return ik_fail(c, n, "label %.17g at position %lld is out of range for %lld classes", lab, (long long)r,
                     (long long)C);
    total += w ? w[(int64_t)lab] : 1.0;
  }
  *wsum = total;
  return 0;
}

/* logits[..., C], labels[...], weight[C]?: over the counted rows,
 * (1 - ls) w[label] (lse - x[label]) + ls / C sum_c w[c] (lse - x[c]), divided
 * by the rows' total weight (PyTorch's label smoothing and class weights). */
int ik_cross_entropy(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape;
  const double *x = ik_in(c, n, 0), *y = ik_in(c, n, 1), *w = n->nin == 3 ? ik_in(c, n, 2) : NULL;
  int64_t C = sx->d[sx->rank - 1], rows = ir_numel(sx) / C;
  double ls = n->attr.f, total = 0.0, wsum;
  if (ik_ce_weights(c, n, y, w, rows, C, &wsum)) return -1;
  for (int64_t r = 0; r < rows; r++) {
    const double *xr = x + r * C;
    double lab = y[r];
    if (n->attr.k && lab == (double)n->attr.n) continue;
    double mx = -INFINITY, sum = 0.0, all = 0.0;
    for (int64_t j = 0; j < C; j++) mx = xr[j] > mx ? xr[j] : mx;
    for (int64_t j = 0; j < C; j++) sum += exp(xr[j] - mx);
    double lse = mx + log(sum); /* -logp[j] = lse - x[j] */
    for (int64_t j = 0; j < C; j++) all += (w ? w[j] : 1.0) * (lse - xr[j]);
    total += (1.0 - ls) * (w ? w[(int64_t)lab] : 1.0) * (lse - xr[(int64_t)lab]) + ls * all / (double)C;
  }
  out[0] = total / wsum; /* every row ignored: 0 / 0, NaN as PyTorch */
  return 0;
}

/* The mean over the broadcast shape of a pointwise loss of (a, b). */
static double pair_mean(ik_ctx *c, const ir_node *n, double (*f)(double, double)) {
  const ir_shape *sa = &ik_arg(c, n, 0)->shape, *sb = &ik_arg(c, n, 1)->shape;
  const double *a = ik_in(c, n, 0), *b = ik_in(c, n, 1);
  ir_shape s;
  if (ir_broadcast(sa, sb, &s)) s = *sa; /* the shape rule has checked them */
  int64_t count = ir_numel(&s);
  double total = 0.0;
  for (int64_t i = 0; i < count; i++)
    total += f(a[ik_bcast_index(&s, sa, i)], b[ik_bcast_index(&s, sb, i)]);
  return total / (double)count;
}

static double sq_err(double p, double t) { return (p - t) * (p - t); }
/* BCE with logits in the stable form max(x, 0) - x y + log1p(exp(-|x|)). */
static double bce_logit(double x, double y) { return (x > 0 ? x : 0) - x * y + log1p(exp(-fabs(x))); }

int ik_mse(ik_ctx *c, const ir_node *n, double *out) {
  out[0] = pair_mean(c, n, sq_err);
  return 0;
}

int ik_bce(ik_ctx *c, const ir_node *n, double *out) {
  out[0] = pair_mean(c, n, bce_logit);
  return 0;
}

/* nll: the mean over rows of -x[label] (torch nll_loss; no normalisation of x) */
int ik_nll(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape;
  const double *x = ik_in(c, n, 0), *y = ik_in(c, n, 1);
  int64_t C = sx->d[sx->rank - 1], rows = ir_numel(sx) / C;
  double total = 0.0;
  for (int64_t r = 0; r < rows; r++) {
    double lab = y[r];
    if (!(lab >= 0 && lab < (double)C && lab == floor(lab)))
      return ik_fail(c, n, "label %.17g at position %lld is out of range for %lld classes", lab,
                     (long long)r, (long long)C);
    total -= x[r * C + (int64_t)lab];
  }
  out[0] = total / (double)rows;
  return 0;
}

/* kl_div, reduction batchmean: sum of t (log t - x), 0 where t == 0 (torch's
 * xlogy), divided by the first dimension (1 for a scalar). */
int ik_kl_div(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape;
  const double *x = ik_in(c, n, 0), *t = ik_in(c, n, 1);
  int64_t count = ir_numel(sx);
  double total = 0.0;
  for (int64_t i = 0; i < count; i++) total += t[i] == 0 ? 0.0 : t[i] * (log(t[i]) - x[i]);
  out[0] = total / (double)(sx->rank ? sx->d[0] : 1);
  return 0;
}

static double abs_err(double p, double t) { return fabs(p - t); }

int ik_l1(ik_ctx *c, const ir_node *n, double *out) {
  out[0] = pair_mean(c, n, abs_err);
  return 0;
}

/* Huber: 0.5 d^2 inside |d| < delta, delta (|d| - 0.5 delta) outside
 * (torch.nn.functional.huber_loss). pair_mean's loss takes no attribute, so
 * the loop is written out here. */
int ik_huber(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sa = &ik_arg(c, n, 0)->shape, *sb = &ik_arg(c, n, 1)->shape;
  const double *a = ik_in(c, n, 0), *b = ik_in(c, n, 1), delta = n->attr.f;
  ir_shape s;
  if (ir_broadcast(sa, sb, &s)) s = *sa;
  int64_t count = ir_numel(&s);
  double total = 0.0;
  for (int64_t i = 0; i < count; i++) {
    double d = fabs(a[ik_bcast_index(&s, sa, i)] - b[ik_bcast_index(&s, sb, i)]);
    total += d < delta ? 0.5 * d * d : delta * (d - 0.5 * delta);
  }
  out[0] = total / (double)count;
  return 0;
}
