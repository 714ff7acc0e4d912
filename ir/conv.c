/* conv.c -- the convolution's geometry (conv.h). */
#include <stdio.h>

#include "conv.h"

/* Output length of a window spanning `span` with a stride over a padded
 * length, or -1 when the window does not fit (or the sums overflow). */
static int64_t window_out(int64_t len, int64_t pad, int64_t pad_hi, int64_t span, int64_t stride) {
  int64_t padded;
  if (__builtin_add_overflow(len, pad, &padded) || __builtin_add_overflow(padded, pad_hi, &padded)) return -1;
  if (padded < span) return -1;
  return (padded - span) / stride + 1;
}

int ir_conv_geom(const ir_shape *x, const ir_shape *w, const ir_attr *a, ir_conv *c, char *msg, size_t mn) {
  char b1[200], b2[200];
  ir_conv d = {0};
  if (x->rank != 3 && x->rank != 4)
    return ir_fail(msg, mn, "conv2d: input must be rank 4 [N, C, H, W] or rank 3 [N, C, L], got %s",
                   ir_shape_str(x, b1, sizeof b1));
  if (w->rank != x->rank)
    return ir_fail(msg, mn, "conv2d: weight must be rank %d [O, C/groups%s], got %s", x->rank,
                   x->rank == 4 ? ", kh, kw" : ", k", ir_shape_str(w, b1, sizeof b1));
  d.rank = x->rank;
  d.N = x->d[0], d.C = x->d[1], d.H = d.rank == 4 ? x->d[2] : 1, d.W = x->d[d.rank - 1];
  d.O = w->d[0], d.KH = d.rank == 4 ? w->d[2] : 1, d.KW = w->d[d.rank - 1];
  d.s = a->stride, d.dil = a->n > 1 ? a->n : 1, d.G = a->k > 1 ? a->k : 1;
  if (d.s < 1) return ir_fail(msg, mn, "conv2d: stride must be >= 1, got %lld", (long long)a->stride);
  if (a->n < 0 || a->n > 1 << 20) return ir_fail(msg, mn, "conv2d: dilation must be >= 1, got %lld", (long long)a->n);
  if (a->k < 0) return ir_fail(msg, mn, "conv2d: groups must be >= 1, got %lld", (long long)a->k);
  if (a->pad < 0 || a->pad_hi < 0)
    return ir_fail(msg, mn, "conv2d: padding must be >= 0, got %lld and %lld", (long long)a->pad,
                   (long long)a->pad_hi);
  if (d.C % d.G || d.O % d.G)
    return ir_fail(msg, mn, "conv2d: groups %lld must divide the input channels %lld and the output channels %lld",
                   (long long)d.G, (long long)d.C, (long long)d.O);
  d.Cg = d.C / d.G, d.Og = d.O / d.G;
  if (w->d[1] != d.Cg)
    return ir_fail(msg, mn, "conv2d: channels differ: input %s has %lld%s, weight %s expects %lld",
                   ir_shape_str(x, b1, sizeof b1), (long long)d.C, d.G > 1 ? " (per group: C/groups)" : "",
                   ir_shape_str(w, b2, sizeof b2), (long long)(w->d[1] * d.G));
  d.padT = d.rank == 4 ? a->pad : 0, d.padL = a->pad;
  int64_t spanh, spanw; /* the input extent one window covers */
  if (__builtin_mul_overflow(d.KH - 1, d.dil, &spanh) || __builtin_mul_overflow(d.KW - 1, d.dil, &spanw))
    return ir_fail(msg, mn, "conv2d: dilation %lld is too large", (long long)d.dil);
  d.OH = d.rank == 4 ? window_out(d.H, a->pad, a->pad_hi, spanh + 1, d.s) : 1;
  d.OW = window_out(d.W, a->pad, a->pad_hi, spanw + 1, d.s);
  if (d.OH < 1 || d.OW < 1) {
    if (d.rank == 3)
      return ir_fail(msg, mn, "conv2d: kernel %lld%s does not fit input length %lld padded by %lld+%lld",
                     (long long)d.KW, d.dil > 1 ? " (dilated)" : "", (long long)d.W, (long long)a->pad,
                     (long long)a->pad_hi);
    if (d.KH == d.KW)
      return ir_fail(msg, mn, "conv2d: kernel %lld%s does not fit input %lldx%lld padded by %lld+%lld",
                     (long long)d.KW, d.dil > 1 ? " (dilated)" : "", (long long)d.H, (long long)d.W,
                     (long long)a->pad, (long long)a->pad_hi);
    return ir_fail(msg, mn, "conv2d: kernel %lldx%lld%s does not fit input %lldx%lld padded by %lld+%lld",
                   (long long)d.KH, (long long)d.KW, d.dil > 1 ? " (dilated)" : "", (long long)d.H, (long long)d.W,
                   (long long)a->pad, (long long)a->pad_hi);
  }
  *c = d;
  return 0;
}

ir_pool ir_pool_geom(const ir_shape *x, const ir_attr *a) {
  ir_pool p = {0};
  int two = x->rank == 4;
  p.planes = x->d[0] * x->d[1], p.H = two ? x->d[2] : 1, p.W = x->d[x->rank - 1];
  p.KH = two ? a->k : 1, p.KW = a->k, p.s = a->stride;
  p.OH = p.s >= 1 && p.KH >= 1 ? window_out(p.H, 0, 0, p.KH, p.s) : -1;
  p.OW = p.s >= 1 && p.KW >= 1 ? window_out(p.W, 0, 0, p.KW, p.s) : -1;
  return p;
}

ir_shape ir_conv_out(const ir_conv *c) {
  ir_shape s = {.rank = c->rank};
  s.d[0] = c->N, s.d[1] = c->O;
  if (c->rank == 4) s.d[2] = c->OH;
  s.d[c->rank - 1] = c->OW;
  return s;
}
