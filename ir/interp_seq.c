/* interp_seq.c -- reference kernels for the fused sequence layers: multi-head
 * self-attention and the rnn / lstm / gru recurrences. Weights are stored
 * [in, out] (transposed relative to PyTorch's [out, in]), so every projection
 * is a row vector times a matrix (ik_affine). All return every time step:
 * [B, T, d] for attention, [B, T, h] for the recurrences, with h_0 = c_0 = 0.
 */
#include <math.h>
#include <stdlib.h>

#include "interp_impl.h"

/* ---- attention ---- */

/* One head of one sequence: ctx[i, :] = softmax_j(q_i . k_j / sqrt(hd)) v_j,
 * j <= i when causal. qkv rows are [q | k | v] (3d wide); the head's slice
 * starts at column off of each part; ctx rows are d wide. lse (when not
 * NULL): each row's log-sum-exp of its scaled scores, lse[i]. */
void ik_attend_head(const double *qkv, int64_t T, int64_t d, int64_t off, int64_t hd, int causal, double *p,
                    double *ctx, double *lse) {
  double scale = 1.0 / sqrt((double)hd);
  for (int64_t i = 0; i < T; i++) {
    const double *q = qkv + i * 3 * d + off;
    int64_t nj = causal ? i + 1 : T; /* causal: keys after i are masked out */
    double mx = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j < nj; j++) {
      const double *k = qkv + j * 3 * d + d + off;
      double s = 0.0;
      for (int64_t e = 0; e < hd; e++) s += q[e] * k[e];
      p[j] = s * scale;
      mx = p[j] > mx ? p[j] : mx;
    }
    for (int64_t j = 0; j < nj; j++) sum += (p[j] = exp(p[j] - mx));
    for (int64_t e = 0; e < hd; e++) {
      double acc = 0.0;
      for (int64_t j = 0; j < nj; j++) acc += p[j] * qkv[j * 3 * d + 2 * d + off + e];
      ctx[i * d + off + e] = acc / sum;
    }
    if (lse) lse[i] = mx + log(sum);
  }
}

/* x[B, T, d], qkv_w[d, 3d], qkv_b[3d], proj_w[d, d], proj_b[d]; heads H:
 * qkv = x @ qkv_w + qkv_b; per head attention; out = concat(heads) @ proj_w + proj_b. */
int ik_attention(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape;
  const double *x = ik_in(c, n, 0), *wqkv = ik_in(c, n, 1), *bqkv = ik_in(c, n, 2);
  const double *wp = ik_in(c, n, 3), *bp = ik_in(c, n, 4);
  int64_t B = sx->d[0], T = sx->d[1], d = sx->d[2], H = n->attr.heads;
  if (H < 1 || d % H) return ik_fail(c, n, "%lld heads do not divide width %lld", (long long)H, (long long)d);
  int64_t hd = d / H;
  double *qkv = ik_alloc(c, n, B * T * 3 * d), *ctx = ik_alloc(c, n, B * T * d), *p = ik_alloc(c, n, T);
  if (!qkv || !ctx || !p) {
    free(qkv), free(ctx), free(p);
    return -1;
  }
  ik_affine(x, wqkv, bqkv, B * T, d, 3 * d, qkv);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      ik_attend_head(qkv + b * T * 3 * d, T, d, h * hd, hd, n->attr.causal, p, ctx + b * T * d, NULL);
  ik_affine(ctx, wp, bp, B * T, d, d, out);
  free(qkv), free(ctx), free(p);
  return 0;
}

/* attention_save: the attention's result y, then the qkv rows, the heads'
 * context and each (batch, head, query row)'s logsumexp, as ATTENTION_GRAD
 * would recompute them. */
int ik_attention_save(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape;
  const double *x = ik_in(c, n, 0), *wqkv = ik_in(c, n, 1), *bqkv = ik_in(c, n, 2);
  const double *wp = ik_in(c, n, 3), *bp = ik_in(c, n, 4);
  int64_t B = sx->d[0], T = sx->d[1], d = sx->d[2], H = n->attr.heads, BT = B * T;
  if (H < 1 || d % H) return ik_fail(c, n, "%lld heads do not divide width %lld", (long long)H, (long long)d);
  int64_t hd = d / H;
  double *y = out, *qkv = y + BT * d, *ctx = qkv + BT * 3 * d, *lse = ctx + BT * d, *p = ik_alloc(c, n, T);
  if (!p) return -1;
  ik_affine(x, wqkv, bqkv, BT, d, 3 * d, qkv);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      ik_attend_head(qkv + b * T * 3 * d, T, d, h * hd, hd, n->attr.causal, p, ctx + b * T * d, lse + (b * H + h) * T);
  ik_affine(ctx, wp, bp, BT, d, d, y);
  free(p);
  return 0;
}

/* ---- recurrences ----
 * Each step computes gate pre-activations for one batch row from x_t and the
 * previous hidden state (the output row of t-1, or zeros at t = 0). */

typedef struct {
  int64_t B, T, in, h;
} seq_dims;

static seq_dims dims_of(const ik_ctx *c, const ir_node *n) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape;
  seq_dims s = {sx->d[0], sx->d[1], sx->d[2], n->shape.d[2]};
  return s;
}

/* y[gw] = x[in] @ w_ih[in, gw] + hp[h] @ w_hh[h, gw] + b[gw] */
static void gates(const double *x, const double *w_ih, const double *hp, const double *w_hh,
                  const double *b, int64_t in, int64_t h, int64_t gw, double *y, double *tmp) {
  ik_affine(x, w_ih, b, 1, in, gw, y);
  ik_affine(hp, w_hh, NULL, 1, h, gw, tmp);
  for (int64_t j = 0; j < gw; j++) y[j] += tmp[j];
}

/* h_t = tanh(x_t @ w_ih + h_{t-1} @ w_hh + b) */
int ik_rnn(ik_ctx *c, const ir_node *n, double *out) {
  seq_dims s = dims_of(c, n);
  const double *x = ik_in(c, n, 0), *wih = ik_in(c, n, 1), *whh = ik_in(c, n, 2), *b = ik_in(c, n, 3);
  double *zero = ik_alloc(c, n, s.h), *tmp = ik_alloc(c, n, s.h);
  if (!zero || !tmp) {
    free(zero), free(tmp);
    return -1;
  }
  for (int64_t bi = 0; bi < s.B; bi++)
    for (int64_t t = 0; t < s.T; t++) {
      double *ht = out + (bi * s.T + t) * s.h;
      const double *hp = t ? ht - s.h : zero;
      gates(x + (bi * s.T + t) * s.in, wih, hp, whh, b, s.in, s.h, s.h, ht, tmp);
      for (int64_t j = 0; j < s.h; j++) ht[j] = tanh(ht[j]);
    }
  free(zero), free(tmp);
  return 0;
}

/* gates = x_t w_ih + h w_hh + b split i, f, g, o (PyTorch's order);
 * c = sig(f) c + sig(i) tanh(g); h = sig(o) tanh(c). */
int ik_lstm(ik_ctx *c, const ir_node *n, double *out) {
  seq_dims s = dims_of(c, n);
  const double *x = ik_in(c, n, 0), *wih = ik_in(c, n, 1), *whh = ik_in(c, n, 2), *b = ik_in(c, n, 3);
  int64_t h = s.h;
  double *zero = ik_alloc(c, n, h), *cell = ik_alloc(c, n, h);
  double *g = ik_alloc(c, n, 4 * h), *tmp = ik_alloc(c, n, 4 * h);
  if (!zero || !cell || !g || !tmp) {
    free(zero), free(cell), free(g), free(tmp);
    return -1;
  }
  for (int64_t bi = 0; bi < s.B; bi++) {
    for (int64_t j = 0; j < h; j++) cell[j] = 0.0;
    for (int64_t t = 0; t < s.T; t++) {
      double *ht = out + (bi * s.T + t) * h;
      const double *hp = t ? ht - h : zero;
      gates(x + (bi * s.T + t) * s.in, wih, hp, whh, b, s.in, h, 4 * h, g, tmp);
      for (int64_t j = 0; j < h; j++) {
        double ig = ik_logistic(g[j]), fg = ik_logistic(g[h + j]);
        double gg = tanh(g[2 * h + j]), og = ik_logistic(g[3 * h + j]);
        cell[j] = fg * cell[j] + ig * gg;
        ht[j] = og * tanh(cell[j]);
      }
    }
  }
  free(zero), free(cell), free(g), free(tmp);
  return 0;
}

/* Gates r, z, n (PyTorch's order and formula):
 * r = sig(x W_ir + b_ir + h W_hr + b_hr), z likewise,
 * n = tanh(x W_in + b_in + r (h W_hn + b_hn)), h' = (1 - z) n + z h. */
int ik_gru(ik_ctx *c, const ir_node *n, double *out) {
  seq_dims s = dims_of(c, n);
  const double *x = ik_in(c, n, 0), *wih = ik_in(c, n, 1), *whh = ik_in(c, n, 2);
  const double *bih = ik_in(c, n, 3), *bhh = ik_in(c, n, 4);
  int64_t h = s.h;
  double *zero = ik_alloc(c, n, h), *gi = ik_alloc(c, n, 3 * h), *gh = ik_alloc(c, n, 3 * h);
  if (!zero || !gi || !gh) {
    free(zero), free(gi), free(gh);
    return -1;
  }
  for (int64_t bi = 0; bi < s.B; bi++)
    for (int64_t t = 0; t < s.T; t++) {
      double *ht = out + (bi * s.T + t) * h;
      const double *hp = t ? ht - h : zero;
      ik_affine(x + (bi * s.T + t) * s.in, wih, bih, 1, s.in, 3 * h, gi);
      ik_affine(hp, whh, bhh, 1, h, 3 * h, gh);
      for (int64_t j = 0; j < h; j++) {
        double r = ik_logistic(gi[j] + gh[j]), z = ik_logistic(gi[h + j] + gh[h + j]);
        double nn = tanh(gi[2 * h + j] + r * gh[2 * h + j]);
        ht[j] = (1.0 - z) * nn + z * hp[j];
      }
    }
  free(zero), free(gi), free(gh);
  return 0;
}
