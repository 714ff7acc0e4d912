/* interp_seq_grad.c -- reference kernels of the fused backward ops of the
 * sequence layers: plain loops in double, written to be checked against
 * finite differences (tests/test_seq.c), not to be fast.
 *
 * Each result is one flat vector: the gradients of the forward inputs in
 * input order. Attention recomputes its forward pass (qkv, the softmax rows,
 * the context); the recurrences read h_t from the forward result y and
 * recompute the gate values (and the LSTM cell) from it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "interp_impl.h"

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

/* out[n] += column sums of a[m, n] */
static void colsum(const double *a, int64_t m, int64_t n, double *out) {
  for (int64_t r = 0; r < m; r++)
    for (int64_t j = 0; j < n; j++) out[j] += a[r * n + j];
}

/* ---- attention ---- */

/* One head of one sequence, forward and backward at once. qkv/dqkv rows are
 * [q | k | v] (3d wide), ctx/dctx rows d wide; the head's columns start at
 * off. p and dp hold one softmax row each (T). */
static void head_grad(const double *qkv, const double *dctx, int64_t T, int64_t d, int64_t off, int64_t hd,
                      int causal, double *p, double *dp, double *dqkv) {
  double scale = 1.0 / sqrt((double)hd);
  for (int64_t i = 0; i < T; i++) {
    const double *q = qkv + i * 3 * d + off, *g = dctx + i * d + off;
    int64_t nj = causal ? i + 1 : T;
    double mx = -INFINITY, sum = 0.0, dot = 0.0;
    for (int64_t j = 0; j < nj; j++) { /* p = softmax(q k_j * scale) */
      const double *kj = qkv + j * 3 * d + d + off;
      double s = 0.0;
      for (int64_t e = 0; e < hd; e++) s += q[e] * kj[e];
      p[j] = s * scale;
      mx = p[j] > mx ? p[j] : mx;
    }
    for (int64_t j = 0; j < nj; j++) sum += (p[j] = exp(p[j] - mx));
    for (int64_t j = 0; j < nj; j++) { /* dp_j = dctx_i . v_j; dv_j += p_j dctx_i */
      p[j] /= sum;
      const double *vj = qkv + j * 3 * d + 2 * d + off;
      double *dvj = dqkv + j * 3 * d + 2 * d + off;
      double s = 0.0;
      for (int64_t e = 0; e < hd; e++) s += g[e] * vj[e], dvj[e] += p[j] * g[e];
      dp[j] = s;
      dot += p[j] * s;
    }
    for (int64_t j = 0; j < nj; j++) { /* ds = p (dp - sum p dp); dq += ds k scale, dk += ds q scale */
      double ds = p[j] * (dp[j] - dot) * scale;
      const double *kj = qkv + j * 3 * d + d + off;
      double *dq = dqkv + i * 3 * d + off, *dk = dqkv + j * 3 * d + d + off;
      for (int64_t e = 0; e < hd; e++) dq[e] += ds * kj[e], dk[e] += ds * q[e];
    }
  }
}


int ik_attention_grad(ik_ctx *c, const ir_node *n, double *out) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape;
  const double *x = ik_in(c, n, 0), *wq = ik_in(c, n, 1), *bq = ik_in(c, n, 2), *wp = ik_in(c, n, 3);
  const double *dy = ik_in(c, n, 5);
  int64_t B = sx->d[0], T = sx->d[1], d = sx->d[2], H = n->attr.heads, hd = d / H, BT = B * T;
  double *dx = out, *dwq = dx + BT * d, *dbq = dwq + d * 3 * d, *dwp = dbq + 3 * d, *dbp = dwp + d * d;
  double *qkv = ik_alloc(c, n, BT * 3 * d), *dqkv = ik_alloc(c, n, BT * 3 * d);
  double *ctx = ik_alloc(c, n, BT * d), *dctx = ik_alloc(c, n, BT * d);
  double *p = ik_alloc(c, n, T), *dp = ik_alloc(c, n, T);
  int ok = qkv && dqkv && ctx && dctx && p && dp;
  if (ok) {
    ik_affine(x, wq, bq, BT, d, 3 * d, qkv);
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < H; h++)
        ik_attend_head(qkv + b * T * 3 * d, T, d, h * hd, hd, n->attr.causal, p, ctx + b * T * d, NULL);
    mm_tn(ctx, dy, BT, d, d, dwp); /* out = ctx wp + bp */
    colsum(dy, BT, d, dbp);
    mm_nt(dy, wp, BT, d, d, dctx);
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < H; h++)
        head_grad(qkv + b * T * 3 * d, dctx + b * T * d, T, d, h * hd, hd, n->attr.causal, p, dp,
                  dqkv + b * T * 3 * d);
    mm_tn(x, dqkv, BT, d, 3 * d, dwq); /* qkv = x wq + bq */
    colsum(dqkv, BT, 3 * d, dbq);
    memset(dbq + d, 0, sizeof(double) * (size_t)d); /* the key bias: exactly zero (rt/rt_seq.c says why) */
    mm_nt(dqkv, wq, BT, d, 3 * d, dx);
  }
  free(qkv), free(dqkv), free(ctx), free(dctx), free(p), free(dp);
  return ok ? 0 : -1;
}

/* attention_grad_saved: attention_grad's result. The saved forward values
 * are a cache of what attention_grad recomputes, so the reference simply
 * recomputes (and so checks the backend's use of them). */
int ik_attention_grad_saved(ik_ctx *c, const ir_node *n, double *out) { return ik_attention_grad(c, n, out); }

/* ---- recurrences ---- */

typedef struct {
  int64_t B, T, in, h, G; /* G gates of h columns each */
} rdims;

static rdims rdims_of(const ik_ctx *c, const ir_node *n, int G) {
  const ir_shape *sx = &ik_arg(c, n, 0)->shape;
  rdims s = {sx->d[0], sx->d[1], sx->d[2], ik_arg(c, n, 2)->shape.d[0], G};
  return s;
}

/* hp[b, t] = y[b, t - 1], zeros at t = 0 */
static void shift_h(const double *y, rdims s, double *hp) {
  for (int64_t b = 0; b < s.B; b++)
    for (int64_t t = 1; t < s.T; t++) memcpy(hp + (b * s.T + t) * s.h, y + (b * s.T + t - 1) * s.h, sizeof(double) * (size_t)s.h);
}

/* Given the gradients of the pre-activations x w_ih (+ b_ih) (dai) and
 * hp w_hh (+ b_hh) (dah), both [B*T, G*h]: dx, dw_ih, dw_hh, the bias(es). */
static void proj_grads(const double *x, const double *wih, const double *hp, const double *dai, const double *dah,
                       rdims s, int nbias, double *out) {
  int64_t BT = s.B * s.T, gh = s.G * s.h;
  double *dx = out, *dwih = dx + BT * s.in, *dwhh = dwih + s.in * gh, *db = dwhh + s.h * gh;
  mm_nt(dai, wih, BT, s.in, gh, dx);
  mm_tn(x, dai, BT, s.in, gh, dwih);
  mm_tn(hp, dah, BT, s.h, gh, dwhh);
  colsum(dai, BT, gh, db);
  if (nbias == 2) colsum(dah, BT, gh, db + gh);
}

/* The per-kernel work: buffers [B*T, G*h] for the recomputed gates (a, ah),
 * their gradients (da, dah), hp [B*T, h], the LSTM cell c, and one row of
 * the recurrent gradient drec [h]. */
typedef struct {
  double *hp, *a, *ah, *da, *dah, *cell, *drec;
} rbufs;

static int rbufs_alloc(ik_ctx *c, const ir_node *n, rdims s, rbufs *r) {
  int64_t BT = s.B * s.T, gh = s.G * s.h;
  r->hp = ik_alloc(c, n, BT * s.h), r->a = ik_alloc(c, n, BT * gh), r->ah = ik_alloc(c, n, BT * gh);
  r->da = ik_alloc(c, n, BT * gh), r->dah = ik_alloc(c, n, BT * gh), r->cell = ik_alloc(c, n, BT * s.h);
  r->drec = ik_alloc(c, n, s.h);
  return r->hp && r->a && r->ah && r->da && r->dah && r->cell && r->drec ? 0 : -1;
}

static void rbufs_free(rbufs *r) {
  free(r->hp), free(r->a), free(r->ah), free(r->da), free(r->dah), free(r->cell), free(r->drec);
}

/* a = x w_ih + b_ih, ah = hp w_hh (+ b_hh) for every step at once */
static void recompute(const double *x, const double *wih, const double *whh, const double *bih,
                      const double *bhh, const double *y, rdims s, rbufs *r) {
  int64_t BT = s.B * s.T, gh = s.G * s.h;
  shift_h(y, s, r->hp);
  ik_affine(x, wih, bih, BT, s.in, gh, r->a);
  ik_affine(r->hp, whh, bhh, BT, s.h, gh, r->ah);
}

/* drec = dah_row w_hh^T: the gradient reaching h_{t-1} through w_hh */
static void back_rec(const double *dah_row, const double *whh, rdims s, double *drec) {
  memset(drec, 0, sizeof(double) * (size_t)s.h);
  mm_nt(dah_row, whh, 1, s.h, s.G * s.h, drec);
}

/* h_t = tanh(a + ah): da = (dy + drec) (1 - h^2) */
int ik_rnn_grad(ik_ctx *c, const ir_node *n, double *out) {
  rdims s = rdims_of(c, n, 1);
  const double *x = ik_in(c, n, 0), *wih = ik_in(c, n, 1), *whh = ik_in(c, n, 2), *b = ik_in(c, n, 3);
  const double *y = ik_in(c, n, 4), *dy = ik_in(c, n, 5);
  rbufs r = {0};
  if (rbufs_alloc(c, n, s, &r)) return rbufs_free(&r), -1;
  recompute(x, wih, whh, b, NULL, y, s, &r);
  for (int64_t bi = 0; bi < s.B; bi++) {
    memset(r.drec, 0, sizeof(double) * (size_t)s.h);
    for (int64_t t = s.T - 1; t >= 0; t--) {
      int64_t row = bi * s.T + t;
      for (int64_t j = 0; j < s.h; j++) {
        double h = y[row * s.h + j];
        r.da[row * s.h + j] = (dy[row * s.h + j] + r.drec[j]) * (1.0 - h * h);
      }
      back_rec(r.da + row * s.h, whh, s, r.drec);
    }
  }
  proj_grads(x, wih, r.hp, r.da, r.da, s, 1, out);
  rbufs_free(&r);
  return 0;
}

/* gates i, f, g, o; c_t = f c_{t-1} + i g; h_t = o tanh(c_t) */
int ik_lstm_grad(ik_ctx *c, const ir_node *n, double *out) {
  rdims s = rdims_of(c, n, 4);
  const double *x = ik_in(c, n, 0), *wih = ik_in(c, n, 1), *whh = ik_in(c, n, 2), *b = ik_in(c, n, 3);
  const double *y = ik_in(c, n, 4), *dy = ik_in(c, n, 5);
  int64_t h = s.h;
  rbufs r = {0};
  double *dc = ik_alloc(c, n, h);
  if (!dc || rbufs_alloc(c, n, s, &r)) return free(dc), rbufs_free(&r), -1;
  recompute(x, wih, whh, b, NULL, y, s, &r);
  for (int64_t i = 0; i < s.B * s.T * 4 * h; i++) { /* activated gates */
    int64_t gate = (i / h) % 4;
    double v = r.a[i] + r.ah[i];
    r.a[i] = gate == 2 ? tanh(v) : ik_logistic(v);
  }
  for (int64_t bi = 0; bi < s.B; bi++)
    for (int64_t t = 0; t < s.T; t++) {
      const double *g = r.a + (bi * s.T + t) * 4 * h;
      for (int64_t j = 0; j < h; j++)
        r.cell[(bi * s.T + t) * h + j] = g[j] * g[2 * h + j] + (t ? g[h + j] * r.cell[(bi * s.T + t - 1) * h + j] : 0.0);
    }
  for (int64_t bi = 0; bi < s.B; bi++) {
    memset(r.drec, 0, sizeof(double) * (size_t)h);
    memset(dc, 0, sizeof(double) * (size_t)h);
    for (int64_t t = s.T - 1; t >= 0; t--) {
      int64_t row = bi * s.T + t;
      const double *g = r.a + row * 4 * h;
      double *da = r.da + row * 4 * h;
      for (int64_t j = 0; j < h; j++) {
        double ig = g[j], fg = g[h + j], gg = g[2 * h + j], og = g[3 * h + j];
        double tc = tanh(r.cell[row * h + j]), cp = t ? r.cell[(row - 1) * h + j] : 0.0;
        double dh = dy[row * h + j] + r.drec[j];
        double dct = dc[j] + dh * og * (1.0 - tc * tc);
        da[j] = dct * gg * ig * (1.0 - ig);
        da[h + j] = dct * cp * fg * (1.0 - fg);
        da[2 * h + j] = dct * ig * (1.0 - gg * gg);
        da[3 * h + j] = dh * tc * og * (1.0 - og);
        dc[j] = dct * fg;
      }
      back_rec(da, whh, s, r.drec);
    }
  }
  proj_grads(x, wih, r.hp, r.da, r.da, s, 1, out);
  free(dc);
  rbufs_free(&r);
  return 0;
}

/* r = sig(a_r + ah_r), z = sig(a_z + ah_z), n = tanh(a_n + r ah_n),
 * h = (1 - z) n + z hp, with a = x w_ih + b_ih and ah = hp w_hh + b_hh. */
int ik_gru_grad(ik_ctx *c, const ir_node *n, double *out) {
  rdims s = rdims_of(c, n, 3);
  const double *x = ik_in(c, n, 0), *wih = ik_in(c, n, 1), *whh = ik_in(c, n, 2);
  const double *bih = ik_in(c, n, 3), *bhh = ik_in(c, n, 4), *y = ik_in(c, n, 5), *dy = ik_in(c, n, 6);
  int64_t h = s.h;
  rbufs r = {0};
  if (rbufs_alloc(c, n, s, &r)) return rbufs_free(&r), -1;
  recompute(x, wih, whh, bih, bhh, y, s, &r);
  for (int64_t bi = 0; bi < s.B; bi++) {
    memset(r.drec, 0, sizeof(double) * (size_t)h);
    for (int64_t t = s.T - 1; t >= 0; t--) {
      int64_t row = bi * s.T + t;
      const double *a = r.a + row * 3 * h, *ah = r.ah + row * 3 * h, *hp = r.hp + row * h;
      double *da = r.da + row * 3 * h, *dah = r.dah + row * 3 * h, *dhp = r.cell + row * h;
      for (int64_t j = 0; j < h; j++) {
        double rg = ik_logistic(a[j] + ah[j]), zg = ik_logistic(a[h + j] + ah[h + j]);
        double ng = tanh(a[2 * h + j] + rg * ah[2 * h + j]);
        double dh = dy[row * h + j] + r.drec[j];
        double dn = dh * (1.0 - zg) * (1.0 - ng * ng), dz = dh * (hp[j] - ng) * zg * (1.0 - zg);
        double dr = dn * ah[2 * h + j] * rg * (1.0 - rg);
        da[j] = dah[j] = dr;
        da[h + j] = dah[h + j] = dz;
        da[2 * h + j] = dn;
        dah[2 * h + j] = dn * rg;
        dhp[j] = dh * zg; /* h_{t-1}'s direct share */
      }
      back_rec(dah, whh, s, r.drec);
      for (int64_t j = 0; j < h; j++) r.drec[j] += dhp[j];
    }
  }
  proj_grads(x, wih, r.hp, r.da, r.dah, s, 2, out);
  rbufs_free(&r);
  return 0;
}
