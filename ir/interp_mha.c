/* interp_mha.c -- reference kernels of mha (attention with a mask, a
 * context, rotary embeddings or grouped key/value heads) and of its fused
 * backward mha_grad: plain loops in double, written to be checked against
 * PyTorch and finite differences (tests/test_mha.c), not to be fast.
 *
 * B = batch, Tq = query positions (rows of x), Tk = key positions (rows of
 * the context c), d = width, H = heads, K = key/value heads, e = wq's
 * width (the inner width: d unless head_dim= is set), hd = e / H, dk = K hd.
 * q = x wq + bq [Tq, e]; kv = c wkv + bkv [Tk, 2 dk] (keys, then
 * values); query head h reads key/value head h / (H / K). Rotary
 * embeddings (GPT-NeoX / LLaMA layout) rotate each head's pairs (e, e + hd/2)
 * of q row i by i theta_e and of k row j by j theta_e, theta_e =
 * 10000^(-2e / hd). A query row whose keys are all masked gets a zero
 * context (and no gradient).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "interp_impl.h"

typedef struct {
  int64_t B, Tq, Tk, d, dc, H, K, hd, dk, e;
  int causal, rope;
  const ir_node *mask; /* NULL, lengths i32[B], bool[B, Tk] or bool[B, Tq, Tk] */
  const double *mv;
} mha_dims;

static mha_dims dims_of(const ik_ctx *c, const ir_node *n) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape, *sc = &ik_arg(c, n, 3)->shape;
  mha_dims m = {sx->d[0], sx->d[1], sc->d[1], sx->d[2], sc->d[2], n->attr.heads, n->attr.k, 0, 0,
                ik_arg(c, n, 1)->shape.d[1], n->attr.causal, (int)n->attr.i, NULL, NULL};
  m.hd = m.e / m.H, m.dk = m.K * m.hd;
  if (n->nin - (n->op == IR_MHA_GRAD) == 9) m.mask = ik_arg(c, n, 8), m.mv = ik_in(c, n, 8);
  return m;
}

/* may query row i of batch b see key j? */
static int allowed(const mha_dims *m, int64_t b, int64_t i, int64_t j) {
  if (m->causal && j > i) return 0;
  if (!m->mask) return 1;
  if (m->mask->shape.rank == 1) return (double)j < m->mv[b];
  if (m->mask->shape.rank == 2) return m->mv[b * m->Tk + j] != 0.0;
  return m->mv[(b * m->Tq + i) * m->Tk + j] != 0.0;
}

/* Rotate the pairs (e, e + hd/2) of every head of `rows` rows (row r at
 * position r, heads of hd columns from column 0, nh heads, stride ld) by
 * sign * pos * theta_e: sign -1 undoes it (the gradient's rotation). */
static void rope_rows(double *v, int64_t rows, int64_t ld, int64_t nh, int64_t hd, double sign) {
  int64_t half = hd / 2;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t h = 0; h < nh; h++)
      for (int64_t e = 0; e < half; e++) {
        double th = (double)r * pow(10000.0, -2.0 * (double)e / (double)hd), cs = cos(th), sn = sign * sin(th);
        double *p = v + r * ld + h * hd + e, a = p[0], bb = p[half];
        p[0] = a * cs - bb * sn, p[half] = bb * cs + a * sn;
      }
}

/* q [B Tq, e] and kv [B Tk, 2 dk], rotated when rope */
static void project(const mha_dims *m, const double *x, const double *wq, const double *bq, const double *cx,
                    const double *wkv, const double *bkv, double *q, double *kv) {
  ik_affine(x, wq, bq, m->B * m->Tq, m->d, m->e, q);
  ik_affine(cx, wkv, bkv, m->B * m->Tk, m->dc, 2 * m->dk, kv);
  if (!m->rope) return;
  for (int64_t b = 0; b < m->B; b++) {
    rope_rows(q + b * m->Tq * m->e, m->Tq, m->e, m->H, m->hd, 1.0);
    rope_rows(kv + b * m->Tk * 2 * m->dk, m->Tk, 2 * m->dk, m->K, m->hd, 1.0);
  }
}

/* Row i of head h of batch b: p[j] = its softmax over the keys it may see (0
 * elsewhere); returns 0 when it sees none. */
static int probs(const mha_dims *m, const double *q, const double *kv, int64_t b, int64_t h, int64_t i, double *p) {
  int64_t kvh = h / (m->H / m->K), ld = 2 * m->dk;
  const double *qi = q + (b * m->Tq + i) * m->e + h * m->hd;
  double mx = -INFINITY, sum = 0.0, scale = 1.0 / sqrt((double)m->hd);
  for (int64_t j = 0; j < m->Tk; j++) {
    p[j] = -INFINITY;
    if (!allowed(m, b, i, j)) continue;
    const double *kj = kv + (b * m->Tk + j) * ld + kvh * m->hd;
    double s = 0.0;
    for (int64_t e = 0; e < m->hd; e++) s += qi[e] * kj[e];
    p[j] = s * scale;
    mx = p[j] > mx ? p[j] : mx;
  }
  if (mx == -INFINITY) {
    memset(p, 0, sizeof(double) * (size_t)m->Tk);
    return 0;
  }
  for (int64_t j = 0; j < m->Tk; j++) sum += (p[j] = p[j] == -INFINITY ? 0.0 : exp(p[j] - mx));
  for (int64_t j = 0; j < m->Tk; j++) p[j] /= sum;
  return 1;
}

/* ctx [B Tq, e]: every head's p v */
static void context(const mha_dims *m, const double *q, const double *kv, double *p, double *ctx) {
  for (int64_t b = 0; b < m->B; b++)
    for (int64_t h = 0; h < m->H; h++)
      for (int64_t i = 0; i < m->Tq; i++) {
        probs(m, q, kv, b, h, i, p);
        double *o = ctx + (b * m->Tq + i) * m->e + h * m->hd;
        const double *v = kv + b * m->Tk * 2 * m->dk + m->dk + h / (m->H / m->K) * m->hd;
        for (int64_t j = 0; j < m->Tk; j++)
          for (int64_t e = 0; e < m->hd; e++) o[e] += p[j] * v[j * 2 * m->dk + e];
      }
}

/* x, wq, bq, c, wkv, bkv, wp, bp (, mask): y = ctx wp + bp */
int ik_mha(ik_ctx *c, const ir_node *n, double *out) {
  mha_dims m = dims_of(c, n);
  int64_t BQ = m.B * m.Tq;
  double *q = ik_alloc(c, n, BQ * m.e), *kv = ik_alloc(c, n, m.B * m.Tk * 2 * m.dk);
  double *ctx = ik_alloc(c, n, BQ * m.e), *p = ik_alloc(c, n, m.Tk);
  int ok = q && kv && ctx && p;
  if (ok) {
    project(&m, ik_in(c, n, 0), ik_in(c, n, 1), ik_in(c, n, 2), ik_in(c, n, 3), ik_in(c, n, 4), ik_in(c, n, 5), q,
            kv);
    context(&m, q, kv, p, ctx);
    ik_affine(ctx, ik_in(c, n, 6), ik_in(c, n, 7), BQ, m.e, m.d, out);
  }
  free(q), free(kv), free(ctx), free(p);
  return ok ? 0 : -1;
}

/* out[k, n] += a[m, k]^T b[m, n] */
static void mm_tn(const double *a, const double *b, int64_t m, int64_t k, int64_t n, double *out) {
  for (int64_t r = 0; r < m; r++)
    for (int64_t i = 0; i < k; i++)
      for (int64_t j = 0; j < n; j++) out[i * n + j] += a[r * k + i] * b[r * n + j];
}

/* out[m, k] += a[m, n] w[k, n]^T */
static void mm_nt(const double *a, const double *w, int64_t m, int64_t k, int64_t n, double *out) {
  for (int64_t r = 0; r < m; r++)
    for (int64_t i = 0; i < k; i++) {
      double s = 0.0;
      for (int64_t j = 0; j < n; j++) s += a[r * n + j] * w[i * n + j];
      out[r * k + i] += s;
    }
}

static void colsum(const double *a, int64_t m, int64_t n, double *out) {
  for (int64_t r = 0; r < m; r++)
    for (int64_t j = 0; j < n; j++) out[j] += a[r * n + j];
}

/* dq, dkv (rotated) of every head from dctx: the softmax backward */
static void heads_grad(const mha_dims *m, const double *q, const double *kv, const double *dctx, double *p,
                       double *dp, double *dq, double *dkv) {
  double scale = 1.0 / sqrt((double)m->hd);
  int64_t ld = 2 * m->dk;
  for (int64_t b = 0; b < m->B; b++)
    for (int64_t h = 0; h < m->H; h++)
      for (int64_t i = 0; i < m->Tq; i++) {
        if (!probs(m, q, kv, b, h, i, p)) continue;
        int64_t row = (b * m->Tq + i) * m->e + h * m->hd, kvo = b * m->Tk * ld + h / (m->H / m->K) * m->hd;
        const double *g = dctx + row, *qi = q + row;
        double dot = 0.0;
        for (int64_t j = 0; j < m->Tk; j++) { /* dp_j = g . v_j; dv_j += p_j g */
          const double *v = kv + kvo + j * ld + m->dk;
          double s = 0.0;
          for (int64_t e = 0; e < m->hd; e++) s += g[e] * v[e], dkv[kvo + j * ld + m->dk + e] += p[j] * g[e];
          dp[j] = s, dot += p[j] * s;
        }
        for (int64_t j = 0; j < m->Tk; j++) { /* ds = p (dp - p.dp) scale */
          double ds = p[j] * (dp[j] - dot) * scale;
          const double *k = kv + kvo + j * ld;
          for (int64_t e = 0; e < m->hd; e++) dq[row + e] += ds * k[e], dkv[kvo + j * ld + e] += ds * qi[e];
        }
      }
}

/* mha's inputs, dy: [dx | dwq | dbq | dc | dwkv | dbkv | dwp | dbp] */
int ik_mha_grad(ik_ctx *c, const ir_node *n, double *out) {
  mha_dims m = dims_of(c, n);
  int64_t BQ = m.B * m.Tq, BK = m.B * m.Tk, d = m.d, e = m.e, dk2 = 2 * m.dk;
  const double *x = ik_in(c, n, 0), *wq = ik_in(c, n, 1), *cx = ik_in(c, n, 3), *wkv = ik_in(c, n, 4);
  const double *wp = ik_in(c, n, 6), *dy = ik_in(c, n, n->nin - 1);
  double *dx = out, *dwq = dx + BQ * d, *dbq = dwq + d * e, *dc = dbq + e, *dwkv = dc + BK * m.dc;
  double *dbkv = dwkv + m.dc * dk2, *dwp = dbkv + dk2, *dbp = dwp + e * d;
  double *q = ik_alloc(c, n, BQ * e), *kv = ik_alloc(c, n, BK * dk2), *ctx = ik_alloc(c, n, BQ * e);
  double *dctx = ik_alloc(c, n, BQ * e), *dq = ik_alloc(c, n, BQ * e), *dkv = ik_alloc(c, n, BK * dk2);
  double *p = ik_alloc(c, n, m.Tk), *dp = ik_alloc(c, n, m.Tk);
  int ok = q && kv && ctx && dctx && dq && dkv && p && dp;
  if (ok) {
    project(&m, x, wq, ik_in(c, n, 2), cx, wkv, ik_in(c, n, 5), q, kv);
    context(&m, q, kv, p, ctx);
    mm_tn(ctx, dy, BQ, e, d, dwp); /* y = ctx wp + bp */
    colsum(dy, BQ, d, dbp);
    mm_nt(dy, wp, BQ, e, d, dctx);
    heads_grad(&m, q, kv, dctx, p, dp, dq, dkv);
    if (m.rope)
      for (int64_t b = 0; b < m.B; b++) {
        rope_rows(dq + b * m.Tq * e, m.Tq, e, m.H, m.hd, -1.0);
        rope_rows(dkv + b * m.Tk * dk2, m.Tk, dk2, m.K, m.hd, -1.0);
      }
    mm_tn(x, dq, BQ, d, e, dwq); /* q = x wq + bq */
    colsum(dq, BQ, e, dbq);
    mm_nt(dq, wq, BQ, d, e, dx);
    mm_tn(cx, dkv, BK, m.dc, dk2, dwkv); /* kv = c wkv + bkv */
    colsum(dkv, BK, dk2, dbkv);
    mm_nt(dkv, wkv, BK, m.dc, dk2, dc);
  }
  free(q), free(kv), free(ctx), free(dctx), free(dq), free(dkv), free(p), free(dp);
  return ok ? 0 : -1;
}
