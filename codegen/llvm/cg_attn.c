/* cg_attn.c -- CPU kernels of the fused sequence layers' hard parts: flash
 * attention (forward and backward) and backward through time for rnn, lstm
 * and gru. The kernels are plain C compiled into the library (tiles of
 * cblas_sgemm calls and short elementwise loops); the generated code calls
 * them with the node's buffers (the emitters at the end of this file), and
 * cg_jit.c resolves their names to these functions.
 *
 * Attention works per (batch, head) and per tile of ATT_BQ query rows
 * against tiles of ATT_BK keys with an online softmax: a running row maximum
 * m and sum l, the output tile rescaled by exp(m_old - m_new) when a new tile
 * raises the maximum. No [T, T] matrix exists; the per-part scratch holds one
 * [BQ, BK] tile. Causal attention skips the key tiles after the query tile.
 * The backward recomputes each probability tile from the saved per-row
 * logsumexp (P = exp(S - L)) and accumulates dq, dk, dv tile by tile
 * (FlashAttention-2's recurrence, run single-threaded per (batch, head)).
 *
 * The recurrent backward reads every h_t from the forward result y, so the
 * gate pre-activations of all steps are two GEMMs (x w_ih and h_{t-1} w_hh
 * over B*T rows) and the LSTM cell one elementwise scan; only the gradient
 * through w_hh is sequential (one [B, G*h] x [G*h, h] GEMM per step). The
 * weight and input gradients are then one GEMM each over all steps.
 */
#include "cg_internal.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "runtime/threadpool.h"


enum { ATT_BQ = 64, ATT_BK = 64 };

/* ---- fast vectorisable transcendental functions (|rel err| < 2e-7) ---- */

static inline float fexp(float x) {
  x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
  float n = floorf(x * 1.44269504f + 0.5f);
  float r = x - n * 0.693145752f - n * 1.42860677e-6f;
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666418f + r * (0.00833342969f + r * 0.00138887367f)))));
  union {
    float f;
    int32_t i;
  } u = {p};
  u.i += (int32_t)n * (1 << 23); /* scale by 2^n */
  return u.f;
}

static inline float fsig(float x) { return 1.0f / (1.0f + fexp(-x)); }

static inline float ftanh(float x) {
  float a = fabsf(x), e = fexp(-2.0f * a), t = (1.0f - e) / (1.0f + e);
  float x2 = x * x, small = x * (1.0f + x2 * (-0.333333333f + x2 * (0.133333333f - x2 * 0.0539682540f)));
  t = x < 0 ? -t : t;
  return a < 0.0625f ? small : t;
}

static void gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) { /* cblas requires K >= 1; C = beta C */
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
              alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* y[m, n] = bias[n] (or 0) then += x[m, k] w[k, n] */
static void affine(const float *x, const float *w, const float *bias, int64_t m, int64_t k, int64_t n, float *y) {
  for (int64_t i = 0; i < m; i++)
    if (bias) memcpy(y + i * n, bias, sizeof(float) * (size_t)n);
    else memset(y + i * n, 0, sizeof(float) * (size_t)n);
  gemm(0, 0, m, n, k, 1.0f, x, k, w, n, 1.0f, y, n);
}

/* out[n] = column sums of a[m, n] (summed in double, row order) */
static void colsum(const float *a, int64_t m, int64_t n, float *out) {
  for (int64_t j = 0; j < n; j++) {
    double s = 0.0;
    for (int64_t i = 0; i < m; i++) s += a[i * n + j];
    out[j] = (float)s;
  }
}

/* Run fn over [0, n). Sequential for now: the (batch, head) parts are
 * independent and per-part scratch exists (rt_pool_for(n, 1, fn, ctx) with
 * OpenBLAS single-threaded around it would run them in parallel), but the
 * runtime pool is still being written; OpenBLAS threads the big GEMMs. */
static void par_blas(int64_t n, rt_pool_fn fn, void *ctx) {
  if (n > 0) fn(ctx, 0, n, 0);
}

/* ---- attention ---- */

typedef struct {
  int64_t B, T, d, H, hd;
  int causal;
  float scale;
  const float *qkv, *dctx;
  float *ctx, *lse, *dqkv, *work; /* work: per part, att_part_floats */
} att_job;

static int64_t att_part_floats(int64_t hd) { return 2 * ATT_BQ * ATT_BK + ATT_BQ * hd + 4 * ATT_BQ; }

/* One query tile of one head: ctx rows (heads' columns) and their logsumexp. */
static void att_fwd_tile(const att_job *a, const float *q, const float *kv, float *ctx, float *lse, int64_t i0,
                         int64_t nq, float *w) {
  int64_t d3 = 3 * a->d, hd = a->hd;
  float *S = w, *O = S + ATT_BQ * ATT_BK, *m = O + ATT_BQ * hd, *l = m + ATT_BQ;
  for (int64_t r = 0; r < nq; r++) m[r] = -INFINITY, l[r] = 0.0f;
  memset(O, 0, sizeof(float) * (size_t)(nq * hd));
  int64_t kend = a->causal ? i0 + nq : a->T;
  for (int64_t j0 = 0; j0 < kend; j0 += ATT_BK) {
    int64_t nk = kend - j0 < ATT_BK ? kend - j0 : ATT_BK;
    gemm(0, 1, nq, nk, hd, a->scale, q + i0 * d3, d3, kv + j0 * d3, d3, 0.0f, S, ATT_BK);
    for (int64_t r = 0; r < nq; r++) {
      float *s = S + r * ATT_BK, mx = m[r], sum = 0.0f;
      int64_t valid = a->causal ? i0 + r + 1 - j0 : nk; /* keys j0.. j0+valid-1 are visible */
      valid = valid > nk ? nk : valid < 0 ? 0 : valid;
      for (int64_t j = 0; j < valid; j++) mx = s[j] > mx ? s[j] : mx;
      if (valid == 0) {
        memset(s, 0, sizeof(float) * (size_t)nk);
        continue;
      }
      float corr = fexp(m[r] - mx); /* 0 when m was -inf */
      for (int64_t j = 0; j < valid; j++) sum += (s[j] = fexp(s[j] - mx));
      for (int64_t j = valid; j < nk; j++) s[j] = 0.0f;
      l[r] = l[r] * corr + sum, m[r] = mx;
      float *o = O + r * hd;
      for (int64_t e = 0; e < hd; e++) o[e] *= corr;
    }
    gemm(0, 0, nq, hd, nk, 1.0f, S, ATT_BK, kv + j0 * d3 + a->d, d3, 1.0f, O, hd);
  }
  for (int64_t r = 0; r < nq; r++) {
    float inv = 1.0f / l[r];
    for (int64_t e = 0; e < hd; e++) ctx[(i0 + r) * a->d + e] = O[r * hd + e] * inv;
    if (lse) lse[i0 + r] = m[r] + logf(l[r]);
  }
}

/* Head pairs [lo, hi): the forward context (and logsumexp when lse). */
static void att_fwd_part(void *ctx, int64_t lo, int64_t hi, int part) {
  const att_job *a = ctx;
  float *w = a->work + (int64_t)part * att_part_floats(a->hd);
  for (int64_t bh = lo; bh < hi; bh++) {
    int64_t b = bh / a->H, h = bh % a->H;
    const float *q = a->qkv + b * a->T * 3 * a->d + h * a->hd;
    float *c = a->ctx + b * a->T * a->d + h * a->hd, *lse = a->lse ? a->lse + bh * a->T : NULL;
    for (int64_t i0 = 0; i0 < a->T; i0 += ATT_BQ)
      att_fwd_tile(a, q, q + a->d, c, lse, i0, a->T - i0 < ATT_BQ ? a->T - i0 : ATT_BQ, w);
  }
}

/* Backward of one (query tile, key tile) block of one head:
 * P = exp(S - lse); dv += P^T do; dP = do v^T; dS = P (dP - D) scale;
 * dq += dS k; dk += dS^T q. */
static void att_bwd_block(const att_job *a, const float *q, float *dq, const float *dO, const float *lse,
                          const float *D, int64_t i0, int64_t nq, int64_t j0, int64_t nk, float *w) {
  int64_t d3 = 3 * a->d, hd = a->hd, dd = a->d;
  float *P = w, *dP = P + ATT_BQ * ATT_BK;
  gemm(0, 1, nq, nk, hd, a->scale, q + i0 * d3, d3, q + dd + j0 * d3, d3, 0.0f, P, ATT_BK);
  gemm(0, 1, nq, nk, hd, 1.0f, dO + i0 * dd, dd, q + 2 * dd + j0 * d3, d3, 0.0f, dP, ATT_BK);
  for (int64_t r = 0; r < nq; r++) {
    float *p = P + r * ATT_BK, *dp = dP + r * ATT_BK, L = lse[i0 + r], Di = D[r];
    int64_t valid = a->causal ? i0 + r + 1 - j0 : nk;
    valid = valid > nk ? nk : valid < 0 ? 0 : valid;
    for (int64_t j = 0; j < valid; j++) {
      p[j] = fexp(p[j] - L);
      dp[j] = p[j] * (dp[j] - Di) * a->scale;
    }
    for (int64_t j = valid; j < nk; j++) p[j] = dp[j] = 0.0f;
  }
  gemm(1, 0, nk, hd, nq, 1.0f, P, ATT_BK, dO + i0 * dd, dd, 1.0f, dq + 2 * dd + j0 * d3, d3);
  gemm(0, 0, nq, hd, nk, 1.0f, dP, ATT_BK, q + dd + j0 * d3, d3, 1.0f, dq + i0 * d3, d3);
  gemm(1, 0, nk, hd, nq, 1.0f, dP, ATT_BK, q + i0 * d3, d3, 1.0f, dq + dd + j0 * d3, d3);
}

static void att_bwd_part(void *ctx, int64_t lo, int64_t hi, int part) {
  const att_job *a = ctx;
  float *w = a->work + (int64_t)part * att_part_floats(a->hd), *D = w + 2 * ATT_BQ * ATT_BK;
  int64_t dd = a->d;
  for (int64_t bh = lo; bh < hi; bh++) {
    int64_t b = bh / a->H, h = bh % a->H, off = b * a->T * dd + h * a->hd;
    const float *q = a->qkv + b * a->T * 3 * dd + h * a->hd, *dO = a->dctx + off, *O = a->ctx + off;
    float *dq = a->dqkv + b * a->T * 3 * dd + h * a->hd;
    for (int64_t i0 = 0; i0 < a->T; i0 += ATT_BQ) {
      int64_t nq = a->T - i0 < ATT_BQ ? a->T - i0 : ATT_BQ, kend = a->causal ? i0 + nq : a->T;
      for (int64_t r = 0; r < nq; r++) { /* D = rowsum(do * o) */
        float s = 0.0f;
        for (int64_t e = 0; e < a->hd; e++) s += dO[(i0 + r) * dd + e] * O[(i0 + r) * dd + e];
        D[r] = s;
      }
      for (int64_t j0 = 0; j0 < kend; j0 += ATT_BK)
        att_bwd_block(a, q, dq, dO, a->lse + bh * a->T, D, i0, nq, j0, kend - j0 < ATT_BK ? kend - j0 : ATT_BK, w);
    }
  }
}

static att_job att_setup(float *scr, int64_t B, int64_t T, int64_t d, int64_t H, int64_t causal) {
  att_job a = {B, T, d, H, d / H, (int)causal, (float)(1.0 / sqrt((double)(d / H))), NULL, NULL,
               NULL, NULL, NULL, NULL};
  int64_t BT = B * T;
  a.qkv = scr, a.ctx = scr + BT * 3 * d;
  a.work = a.ctx + BT * d;
  return a;
}

/* out = attention(x): qkv GEMM, flash heads, output GEMM. */
void cg_attn_fwd_rt(float *out, const float *x, const float *wq, const float *bq, const float *wp, const float *bp,
                    float *scr, int64_t B, int64_t T, int64_t d, int64_t H, int64_t causal) {
  att_job a = att_setup(scr, B, T, d, H, causal);
  affine(x, wq, bq, B * T, d, 3 * d, (float *)a.qkv);
  par_blas(B * H, att_fwd_part, &a);
  affine(a.ctx, wp, bp, B * T, d, d, out);
}

/* out = [dx | dwq | dbq | dwp | dbp] */
void cg_attn_grad_rt(float *out, const float *x, const float *wq, const float *bq, const float *wp, const float *dy,
                     float *scr, int64_t B, int64_t T, int64_t d, int64_t H, int64_t causal) {
  att_job a = att_setup(scr, B, T, d, H, causal);
  int64_t BT = B * T;
  float *dx = out, *dwq = dx + BT * d, *dbq = dwq + d * 3 * d, *dwp = dbq + 3 * d, *dbp = dwp + d * d;
  float *dctx = a.work + att_part_floats(a.hd);
  a.dctx = dctx, a.dqkv = dctx + BT * d, a.lse = a.dqkv + BT * 3 * d;
  affine(x, wq, bq, BT, d, 3 * d, (float *)a.qkv);
  par_blas(B * H, att_fwd_part, &a); /* recompute ctx and the logsumexp */
  gemm(1, 0, d, d, BT, 1.0f, a.ctx, d, dy, d, 0.0f, dwp, d);
  colsum(dy, BT, d, dbp);
  gemm(0, 1, BT, d, d, 1.0f, dy, d, wp, d, 0.0f, dctx, d);
  memset(a.dqkv, 0, sizeof(float) * (size_t)(BT * 3 * d));
  par_blas(B * H, att_bwd_part, &a);
  gemm(1, 0, d, 3 * d, BT, 1.0f, x, d, a.dqkv, 3 * d, 0.0f, dwq, 3 * d);
  colsum(a.dqkv, BT, 3 * d, dbq);
  gemm(0, 1, BT, d, 3 * d, 1.0f, a.dqkv, 3 * d, wq, 3 * d, 0.0f, dx, d);
}

int64_t cg_attn_scratch_floats(int64_t B, int64_t T, int64_t d, int64_t H, int grad) {
  int64_t BT = B * T, f = BT * 4 * d + att_part_floats(d / H);
  return grad ? f + BT * 4 * d + B * H * T : f;
}

/* ---- recurrences: backward through time ---- */

typedef struct {
  int op;
  int64_t B, T, in, h, G;
  float *hp, *a, *ah, *da, *dah, *cell, *drec, *dc;
} rec_job;

int64_t cg_rec_scratch_floats(int op, int64_t B, int64_t T, int64_t h) {
  int64_t G = op == IR_LSTM_GRAD ? 4 : op == IR_GRU_GRAD ? 3 : 1, BT = B * T;
  return BT * h * 2 + BT * G * h * 4 + B * h * 2;
}

/* Step t of every batch row: the pre-activation gradients da (and dah) from
 * dy_t + drec; drec is then overwritten by the caller. */
static void rnn_step(rec_job *r, const float *y, const float *dy, int64_t t) {
  for (int64_t b = 0; b < r->B; b++) {
    int64_t row = (b * r->T + t) * r->h;
    for (int64_t j = 0; j < r->h; j++) {
      float hv = y[row + j];
      r->da[row + j] = (dy[row + j] + r->drec[b * r->h + j]) * (1.0f - hv * hv);
    }
  }
}

static void lstm_step(rec_job *r, const float *y, const float *dy, int64_t t) {
  (void)y;
  int64_t h = r->h;
  for (int64_t b = 0; b < r->B; b++) {
    int64_t row = b * r->T + t;
    const float *g = r->a + row * 4 * h, *cl = r->cell + row * h, *cp = t ? cl - h : NULL;
    float *da = r->da + row * 4 * h, *dc = r->dc + b * h, *drec = r->drec + b * h;
    const float *dyr = dy + row * h;
    for (int64_t j = 0; j < h; j++) {
      float ig = g[j], fg = g[h + j], gg = g[2 * h + j], og = g[3 * h + j], tc = ftanh(cl[j]);
      float dh = dyr[j] + drec[j], dct = dc[j] + dh * og * (1.0f - tc * tc), c0 = cp ? cp[j] : 0.0f;
      da[j] = dct * gg * ig * (1.0f - ig);
      da[h + j] = dct * c0 * fg * (1.0f - fg);
      da[2 * h + j] = dct * ig * (1.0f - gg * gg);
      da[3 * h + j] = dh * tc * og * (1.0f - og);
      dc[j] = dct * fg;
    }
  }
}

static void gru_step(rec_job *r, const float *y, const float *dy, int64_t t) {
  (void)y;
  int64_t h = r->h;
  for (int64_t b = 0; b < r->B; b++) {
    int64_t row = b * r->T + t;
    const float *a = r->a + row * 3 * h, *ah = r->ah + row * 3 * h, *hp = r->hp + row * h, *dyr = dy + row * h;
    float *da = r->da + row * 3 * h, *dah = r->dah + row * 3 * h, *drec = r->drec + b * h, *dd = r->dc + b * h;
    for (int64_t j = 0; j < h; j++) {
      float rg = fsig(a[j] + ah[j]), zg = fsig(a[h + j] + ah[h + j]);
      float ng = ftanh(a[2 * h + j] + rg * ah[2 * h + j]), dh = dyr[j] + drec[j];
      float dn = dh * (1.0f - zg) * (1.0f - ng * ng), dz = dh * (hp[j] - ng) * zg * (1.0f - zg);
      float dr = dn * ah[2 * h + j] * rg * (1.0f - rg);
      da[j] = dah[j] = dr;
      da[h + j] = dah[h + j] = dz;
      da[2 * h + j] = dn, dah[2 * h + j] = dn * rg;
      dd[j] = dh * zg; /* h_{t-1}'s direct share */
    }
  }
}

/* LSTM: activate the gates in place and run the cell scan. */
static void lstm_prepare(rec_job *r) {
  int64_t h = r->h, n = r->B * r->T;
  for (int64_t row = 0; row < n; row++) {
    float *g = r->a + row * 4 * h;
    const float *gh = r->ah + row * 4 * h;
    for (int64_t j = 0; j < 4 * h; j++) g[j] += gh[j];
    for (int64_t j = 0; j < h; j++) g[j] = fsig(g[j]), g[h + j] = fsig(g[h + j]);
    for (int64_t j = 0; j < h; j++) g[2 * h + j] = ftanh(g[2 * h + j]), g[3 * h + j] = fsig(g[3 * h + j]);
  }
  for (int64_t b = 0; b < r->B; b++)
    for (int64_t t = 0; t < r->T; t++) {
      int64_t row = b * r->T + t;
      const float *g = r->a + row * 4 * h;
      float *c = r->cell + row * h;
      for (int64_t j = 0; j < h; j++) c[j] = g[j] * g[2 * h + j] + (t ? g[h + j] * c[j - h] : 0.0f);
    }
}

/* out = [dx | dw_ih | dw_hh | db (| db_hh)]; bhh only for gru. */
void cg_rec_grad_rt(float *out, const float *x, const float *wih, const float *whh, const float *bih,
                    const float *bhh, const float *y, const float *dy, float *scr, int64_t op, int64_t B, int64_t T,
                    int64_t in, int64_t h) {
  int64_t G = op == IR_LSTM_GRAD ? 4 : op == IR_GRU_GRAD ? 3 : 1, BT = B * T, gh = G * h;
  rec_job r = {(int)op, B, T, in, h, G, scr, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
  r.a = r.hp + BT * h, r.ah = r.a + BT * gh, r.da = r.ah + BT * gh, r.dah = r.da + BT * gh;
  r.cell = r.dah + BT * gh, r.drec = r.cell + BT * h, r.dc = r.drec + B * h;
  for (int64_t b = 0; b < B; b++) { /* hp[b, t] = y[b, t - 1], 0 at t = 0 */
    memset(r.hp + b * T * h, 0, sizeof(float) * (size_t)h);
    memcpy(r.hp + (b * T + 1) * h, y + b * T * h, sizeof(float) * (size_t)((T - 1) * h));
  }
  memset(r.drec, 0, sizeof(float) * (size_t)(2 * B * h));
  if (op != IR_RNN_GRAD) { /* gate values from y: two GEMMs over every step */
    affine(x, wih, bih, BT, in, gh, r.a);
    affine(r.hp, whh, bhh, BT, h, gh, r.ah);
  }
  if (op == IR_LSTM_GRAD) lstm_prepare(&r);
  float *dah = op == IR_GRU_GRAD ? r.dah : r.da; /* rnn, lstm: one pre-activation */
  for (int64_t t = T - 1; t >= 0; t--) {
    if (op == IR_RNN_GRAD) rnn_step(&r, y, dy, t);
    else if (op == IR_LSTM_GRAD) lstm_step(&r, y, dy, t);
    else gru_step(&r, y, dy, t);
    if (t == 0) break;
    gemm(0, 1, B, h, gh, 1.0f, dah + t * gh, T * gh, whh, gh, 0.0f, r.drec, h);
    if (op == IR_GRU_GRAD)
      for (int64_t i = 0; i < B * h; i++) r.drec[i] += r.dc[i];
  }
  float *dx = out, *dwih = dx + BT * in, *dwhh = dwih + in * gh, *db = dwhh + h * gh;
  gemm(0, 1, BT, in, gh, 1.0f, r.da, gh, wih, gh, 0.0f, dx, in);
  gemm(1, 0, in, gh, BT, 1.0f, x, in, r.da, gh, 0.0f, dwih, gh);
  gemm(1, 0, h, gh, BT, 1.0f, r.hp, h, dah, gh, 0.0f, dwhh, gh);
  colsum(r.da, BT, gh, db);
  if (op == IR_GRU_GRAD) colsum(dah, BT, gh, db + gh);
}

/* ---- emitters: a call to one of the kernels above ---- */

/* fn(ptrs..., i64s...) declared on first use */
static void call_rt(cg_k *k, const char *name, V *ptrs, int np, const int64_t *ints, int ni) {
  LLVMTypeRef ty[16];
  V args[16];
  for (int i = 0; i < np; i++) ty[i] = k->m->ptr, args[i] = ptrs[i] ? ptrs[i] : LLVMConstNull(k->m->ptr);
  for (int i = 0; i < ni; i++) ty[np + i] = k->m->i64, args[np + i] = ci(k, ints[i]);
  cg_fn f;
  f.ty = LLVMFunctionType(k->m->vd, ty, (unsigned)(np + ni), 0);
  f.fn = LLVMGetNamedFunction(k->m->M, name);
  if (!f.fn) f.fn = LLVMAddFunction(k->m->M, name, f.ty);
  cg_call(k, f, args, (unsigned)(np + ni));
}

void cg_emit_attention(cg_k *k) {
  const ir_shape *sx = k->sh[1];
  int64_t ints[5] = {sx->d[0], sx->d[1], sx->d[2], k->n->attr.heads, k->n->attr.causal};
  V p[7] = {k->arg[0], k->arg[1], k->arg[2], k->arg[3], k->arg[4], k->arg[5], k->scratch};
  call_rt(k, "lathe_attn_fwd", p, 7, ints, 5);
}

void cg_emit_seq_grad(cg_k *k) {
  const ir_shape *sx = k->sh[1];
  if (k->n->op == IR_ATTENTION_GRAD) {
    int64_t ints[5] = {sx->d[0], sx->d[1], sx->d[2], k->n->attr.heads, k->n->attr.causal};
    V p[7] = {k->arg[0], k->arg[1], k->arg[2], k->arg[3], k->arg[4], k->arg[6], k->scratch};
    call_rt(k, "lathe_attn_grad", p, 7, ints, 5);
    return;
  }
  int gru = k->n->op == IR_GRU_GRAD;
  int64_t ints[5] = {k->n->op, sx->d[0], sx->d[1], sx->d[2], k->sh[3]->d[0]};
  V p[9] = {k->arg[0], k->arg[1], k->arg[2], k->arg[3], k->arg[4],
            gru ? k->arg[5] : NULL, k->arg[5 + gru], k->arg[6 + gru], k->scratch};
  call_rt(k, "lathe_rec_grad", p, 9, ints, 5);
}

int64_t cg_seq_scratch_bytes(const ir_graph *g, const ir_node *n) {
  const ir_shape *sx = &g->nodes[n->in[0]].shape;
  int64_t B = sx->d[0], T = sx->d[1], d = sx->d[2];
  if (n->op == IR_ATTENTION || n->op == IR_ATTENTION_GRAD)
    return 4 * cg_attn_scratch_floats(B, T, d, n->attr.heads, n->op == IR_ATTENTION_GRAD);
  return 4 * cg_rec_scratch_floats(n->op, B, T, g->nodes[n->in[2]].shape.d[0]);
}
