/* interp_decode.c -- reference kernels for the decode-step ops (kv_write,
 * attention_decode; passes/decode.c). attention_decode computes what one
 * row of ir/interp_seq.c's causal attention computes, with the keys and
 * values of earlier positions read from the caches instead of recomputed:
 * same scale, same max-subtracted softmax, same summation order.
 *
 * T = cache length, d = the query's width, H = heads, hd = d / H, dk = the
 * caches' width (K hd: K key/value heads, K = H but for mha's grouped heads). */
#include <math.h>
#include <stdlib.h>

#include "interp_impl.h"
#include "rt/lathe_rt.h"

/* The position as an index into the cache, or -1 after ik_fail. */
static int64_t cache_pos(ik_ctx *c, const ir_node *n, int k, int64_t T) {
  double p = ik_in(c, n, k)[0];
  if (!(p >= 0 && p < (double)T))
    return ik_fail(c, n, "position %g is outside the cache of %lld rows", p, (long long)T);
  return (int64_t)p;
}

/* out = cache, then out[pos, :] = row */
int ik_kv_write(ik_ctx *c, const ir_node *n, double *out) {
  int64_t T = n->shape.d[0], d = n->shape.d[1];
  int64_t pos = cache_pos(c, n, 2, T);
  if (pos < 0) return -1;
  const double *cache = ik_in(c, n, 0), *row = ik_in(c, n, 1);
  for (int64_t i = 0; i < T * d; i++) out[i] = cache[i];
  for (int64_t e = 0; e < d; e++) out[pos * d + e] = row[e];
  return 0;
}

/* out[h*hd + e] = sum_{j <= pos} softmax_j(q_h . k_jg / sqrt(hd)) v_jg[e],
 * g = h / (H / K) the cache head query head h reads (K = dk / hd). */
int ik_attention_decode(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sk = &ik_arg(c, n, 1)->shape;
  int64_t T = sk->d[0], dk = sk->d[1], H = n->attr.heads, hd = ir_numel(&n->shape) / H, G = H / (dk / hd);
  int64_t pos = cache_pos(c, n, 3, T);
  if (pos < 0) return -1;
  const double *q = ik_in(c, n, 0), *kc = ik_in(c, n, 1), *vc = ik_in(c, n, 2);
  double *p = ik_alloc(c, n, pos + 1);
  if (!p) return -1;
  double scale = 1.0 / sqrt((double)hd);
  for (int64_t h = 0; h < H; h++) {
    int64_t off = h * hd, koff = h / G * hd;
    double mx = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j <= pos; j++) {
      double s = 0.0;
      for (int64_t e = 0; e < hd; e++) s += q[off + e] * kc[j * dk + koff + e];
      p[j] = s * scale;
      mx = p[j] > mx ? p[j] : mx;
    }
    for (int64_t j = 0; j <= pos; j++) sum += (p[j] = exp(p[j] - mx));
    for (int64_t e = 0; e < hd; e++) {
      double acc = 0.0;
      for (int64_t j = 0; j <= pos; j++) acc += p[j] * vc[j * dk + koff + e];
      out[off + e] = acc / sum;
    }
  }
  free(p);
  return 0;
}

/* sample_token: each row's token by rt/rt_sample.c, the sampler the host
 * runs between decode steps, so the reference is the host's own draw. */
int ik_sample_token(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sl = &ik_arg(c, n, 0)->shape;
  int64_t V = sl->d[sl->rank - 1], rows = ir_numel(&n->shape);
  const double *lg = ik_in(c, n, 0), *dr = ik_in(c, n, 1);
  float *row = malloc((size_t)V * sizeof *row);
  if (!row) return ik_fail(c, n, "out of memory");
  int32_t draw[2] = {(int32_t)dr[0], (int32_t)dr[1]};
  double u = lathe_rt_draw_join(draw);
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t i = 0; i < V; i++) row[i] = (float)lg[r * V + i];
    out[r] = lathe_rt_sample(row, V, n->attr.f, n->attr.k, u);
  }
  free(row);
  return 0;
}
