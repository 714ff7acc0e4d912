/* rt_mha.c -- C kernels of mha (attention with a mask, a context, rotary
 * embeddings or grouped key/value heads: ir/interp_mha.c is the reference)
 * and of its fused backward mha_grad, in liblathe_rt: generated code calls
 * lathe_rt_mha_fwd and lathe_rt_mha_grad (codegen/llvm/cg_mha.c emits the
 * calls).
 *
 * B = batch, Tq = query rows (x), Tk = key rows (the context c), d = width,
 * H = heads, K = key/value heads, e = the inner width (wq's columns: d, or
 * heads x head_dim), hd = e / H, dk = K hd. A work item is one batch row:
 * its projections (q [Tq, e], kv [Tk, 2 dk]: keys then values),
 * then per head and per tile of MHA_BQ query rows one [MHA_BQ, Tk] score
 * tile: S = scale q k^T (OpenBLAS), the masked softmax in place, ctx = P v.
 * No [Tq, Tk] matrix exists beyond one tile per part. The backward
 * recomputes the tile and accumulates dq, dk and dv tile by tile; heads
 * sharing a key/value head add into its columns. Items write disjoint rows
 * and the weight gradients are whole-batch GEMMs afterwards, so results do
 * not depend on the thread count or timing.
 */
#include "rt/lathe_rt.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "rt/threadpool.h"
#include "rt/rt_cblas.h"

enum { MHA_BQ = 64, MHA_PARTS = 16 };

typedef struct {
  int64_t B, Tq, Tk, d, dc, H, K, hd, dk, e, causal, rope, mkind;
  float scale;
  const float *x, *wq, *bq, *c, *wkv, *bkv, *wp, *bp, *dy;
  const void *mask;
  const float *rot;          /* rope: cos then sin [max(Tq, Tk), hd / 2] each */
  float *out, *ctx, *dq, *dkv, *slabs;
  double *bsum;              /* backward: per batch row the column sums of dq, dkv and dy [B, e + 2dk + d] */
  atomic_llong next;
} mha_job;

static void gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  if (M <= 0 || N <= 0 || K <= 0) return; /* callers never ask for K = 0 with beta != 1 */
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
              alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

static int64_t mha_parts(int64_t B) { return B < MHA_PARTS ? B : MHA_PARTS; }
static int64_t mha_maxt(int64_t Tq, int64_t Tk) { return Tq > Tk ? Tq : Tk; }
/* per part: q, kv, ctx or dctx rows, the score tile and its gradient */
static int64_t mha_slab(int64_t Tq, int64_t Tk, int64_t e, int64_t dk) {
  return 2 * Tq * e + Tk * 2 * dk + 2 * MHA_BQ * Tk;
}

/* may query row i of batch b see key j? (the causal bound is the caller's) */
static int mha_allowed(const mha_job *a, int64_t b, int64_t i, int64_t j) {
  switch (a->mkind) {
  case LATHE_RT_MASK_LENGTHS: return j < ((const int32_t *)a->mask)[b];
  case LATHE_RT_MASK_KEYS: return ((const uint8_t *)a->mask)[b * a->Tk + j] != 0;
  case LATHE_RT_MASK_FULL: return ((const uint8_t *)a->mask)[(b * a->Tq + i) * a->Tk + j] != 0;
  default: return 1;
  }
}

/* rotate each head's pairs (e, e + hd/2) of rows [0, rows) (row r at
 * position r; nh heads from column 0, stride ld) by sign * r theta_e */
static void mha_rope(const mha_job *a, float *v, int64_t rows, int64_t ld, int64_t nh, float sign) {
  int64_t half = a->hd / 2, maxt = mha_maxt(a->Tq, a->Tk);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t h = 0; h < nh; h++) {
      float *p = v + r * ld + h * a->hd;
      const float *cs = a->rot + r * half, *sn = a->rot + maxt * half + r * half;
      for (int64_t e = 0; e < half; e++) {
        float x0 = p[e], x1 = p[half + e], s = sign * sn[e];
        p[e] = x0 * cs[e] - x1 * s, p[half + e] = x1 * cs[e] + x0 * s;
      }
    }
}

/* q and kv rows of batch b into the part's slab (rotated when rope) */
static void mha_project(const mha_job *a, int64_t b, float *q, float *kv) {
  int64_t d = a->d, e = a->e, dk2 = 2 * a->dk;
  for (int64_t i = 0; i < a->Tq; i++) memcpy(q + i * e, a->bq, sizeof(float) * (size_t)e);
  for (int64_t j = 0; j < a->Tk; j++) memcpy(kv + j * dk2, a->bkv, sizeof(float) * (size_t)dk2);
  gemm(0, 0, a->Tq, e, d, 1.0f, a->x + b * a->Tq * d, d, a->wq, e, 1.0f, q, e);
  gemm(0, 0, a->Tk, dk2, a->dc, 1.0f, a->c + b * a->Tk * a->dc, a->dc, a->wkv, dk2, 1.0f, kv, dk2);
  if (a->rope) mha_rope(a, q, a->Tq, e, a->H, 1.0f), mha_rope(a, kv, a->Tk, dk2, a->K, 1.0f);
}

/* keys the tile of query rows [i0, i0 + nq) can see at most */
static int64_t mha_kend(const mha_job *a, int64_t i0, int64_t nq) {
  return a->causal && i0 + nq < a->Tk ? i0 + nq : a->Tk;
}

/* P [nq, kend] (stride Tk) of head h for query rows [i0, i0 + nq) of batch
 * b: the masked softmax of scale q k^T; a row that sees no key is zero */
static void mha_probs(const mha_job *a, const float *q, const float *kv, int64_t b, int64_t h, int64_t i0,
                      int64_t nq, int64_t kend, float *P) {
  int64_t kvh = h / (a->H / a->K), dk2 = 2 * a->dk;
  gemm(0, 1, nq, kend, a->hd, a->scale, q + i0 * a->e + h * a->hd, a->e, kv + kvh * a->hd, dk2, 0.0f, P, a->Tk);
  for (int64_t r = 0; r < nq; r++) {
    float *p = P + r * a->Tk, mx = -INFINITY, sum = 0.0f;
    int64_t i = i0 + r, nj = a->causal && i + 1 < kend ? i + 1 : kend;
    for (int64_t j = 0; j < kend; j++) {
      if (j >= nj || !mha_allowed(a, b, i, j)) p[j] = -INFINITY;
      mx = p[j] > mx ? p[j] : mx;
    }
    for (int64_t j = 0; j < kend; j++) sum += (p[j] = mx == -INFINITY || p[j] == -INFINITY ? 0.0f : expf(p[j] - mx));
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int64_t j = 0; j < kend; j++) p[j] *= inv;
  }
}

/* ctx rows of batch b (stride e) from its q and kv; P: the part's tile */
static void mha_context(const mha_job *a, int64_t b, const float *q, const float *kv, float *ctx, float *P) {
  int64_t dk2 = 2 * a->dk;
  for (int64_t h = 0; h < a->H; h++)
    for (int64_t i0 = 0; i0 < a->Tq; i0 += MHA_BQ) {
      int64_t nq = a->Tq - i0 < MHA_BQ ? a->Tq - i0 : MHA_BQ, kend = mha_kend(a, i0, nq);
      mha_probs(a, q, kv, b, h, i0, nq, kend, P);
      gemm(0, 0, nq, a->hd, kend, 1.0f, P, a->Tk, kv + a->dk + h / (a->H / a->K) * a->hd, dk2, 0.0f,
           ctx + i0 * a->e + h * a->hd, a->e);
    }
}

static float *mha_slab_of(const mha_job *a, int part) {
  return a->slabs + (int64_t)part * mha_slab(a->Tq, a->Tk, a->e, a->dk);
}

/* the forward of batch row b: y rows = ctx wp + bp */
static void mha_fwd_item(mha_job *a, int64_t b, int part) {
  float *q = mha_slab_of(a, part), *kv = q + a->Tq * a->e, *ctx = kv + a->Tk * 2 * a->dk, *P = ctx + a->Tq * a->e;
  int64_t d = a->d;
  mha_project(a, b, q, kv);
  mha_context(a, b, q, kv, ctx, P);
  float *y = a->out + b * a->Tq * d;
  for (int64_t i = 0; i < a->Tq; i++) memcpy(y + i * d, a->bp, sizeof(float) * (size_t)d);
  gemm(0, 0, a->Tq, d, a->e, 1.0f, ctx, a->e, a->wp, d, 1.0f, y, d);
}

/* column sums of a[m, n] into out[n], in double */
static void colsum(const float *a, int64_t m, int64_t n, double *out) {
  for (int64_t j = 0; j < n; j++) out[j] = 0.0;
  for (int64_t r = 0; r < m; r++)
    for (int64_t j = 0; j < n; j++) out[j] += a[r * n + j];
}

/* one head's backward over batch row b: dq (stored), dk and dv (added) */
static void mha_bwd_head(const mha_job *a, int64_t b, int64_t h, const float *q, const float *kv, const float *dctx,
                         float *P, float *dP) {
  int64_t d = a->e, hd = a->hd, dk2 = 2 * a->dk, kvo = h / (a->H / a->K) * hd; /* rows of q, dq, dO: e wide */
  float *dq = a->dq + b * a->Tq * d + h * hd, *dkv = a->dkv + b * a->Tk * dk2 + kvo;
  for (int64_t i0 = 0; i0 < a->Tq; i0 += MHA_BQ) {
    int64_t nq = a->Tq - i0 < MHA_BQ ? a->Tq - i0 : MHA_BQ, kend = mha_kend(a, i0, nq);
    const float *g = dctx + i0 * d + h * hd, *qi = q + i0 * d + h * hd;
    mha_probs(a, q, kv, b, h, i0, nq, kend, P);
    gemm(0, 1, nq, kend, hd, 1.0f, g, d, kv + a->dk + kvo, dk2, 0.0f, dP, a->Tk); /* dP = dO v^T */
    for (int64_t r = 0; r < nq; r++) { /* dS = P (dP - rowsum(P dP)) scale */
      float *p = P + r * a->Tk, *dp = dP + r * a->Tk, D = 0.0f;
      for (int64_t j = 0; j < kend; j++) D += p[j] * dp[j];
      for (int64_t j = 0; j < kend; j++) dp[j] = p[j] * (dp[j] - D) * a->scale;
    }
    gemm(0, 0, nq, hd, kend, 1.0f, dP, a->Tk, kv + kvo, dk2, 0.0f, dq + i0 * d, d);    /* dq = dS k */
    gemm(1, 0, kend, hd, nq, 1.0f, dP, a->Tk, qi, d, 1.0f, dkv, dk2);                  /* dk += dS^T q */
    gemm(1, 0, kend, hd, nq, 1.0f, P, a->Tk, g, d, 1.0f, dkv + a->dk, dk2);            /* dv += P^T dO */
  }
}

/* the backward of batch row b up to dq, dkv, dx and dc rows and the bias
 * sums; ctx rows kept for dwp */
static void mha_bwd_item(mha_job *a, int64_t b, int part) {
  float *q = mha_slab_of(a, part), *kv = q + a->Tq * a->e, *dctx = kv + a->Tk * 2 * a->dk, *P = dctx + a->Tq * a->e;
  float *dP = P + MHA_BQ * a->Tk;
  int64_t d = a->d, e = a->e, dk2 = 2 * a->dk, Tq = a->Tq, Tk = a->Tk;
  float *ctx = a->ctx + b * Tq * e, *dq = a->dq + b * Tq * e, *dkv = a->dkv + b * Tk * dk2;
  const float *dy = a->dy + b * Tq * d;
  mha_project(a, b, q, kv);
  mha_context(a, b, q, kv, ctx, P);
  gemm(0, 1, Tq, e, d, 1.0f, dy, d, a->wp, d, 0.0f, dctx, e); /* dctx = dy wp^T */
  memset(dkv, 0, sizeof(float) * (size_t)(Tk * dk2));
  for (int64_t h = 0; h < a->H; h++) mha_bwd_head(a, b, h, q, kv, dctx, P, dP);
  if (a->rope) mha_rope(a, dq, Tq, e, a->H, -1.0f), mha_rope(a, dkv, Tk, dk2, a->K, -1.0f);
  float *dx = a->out, *dc = dx + a->B * Tq * d + d * e + e;
  gemm(0, 1, Tq, d, e, 1.0f, dq, e, a->wq, e, 0.0f, dx + b * Tq * d, d);
  gemm(0, 1, Tk, a->dc, dk2, 1.0f, dkv, dk2, a->wkv, dk2, 0.0f, dc + b * Tk * a->dc, a->dc);
  double *s = a->bsum + b * (e + dk2 + d);
  colsum(dq, Tq, e, s), colsum(dkv, Tk, dk2, s + e), colsum(dy, Tq, d, s + e + dk2);
}

static void mha_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)lo, (void)hi;
  mha_job *a = ctx;
  for (int64_t b; (b = atomic_fetch_add(&a->next, 1)) < a->B;)
    if (a->dy) mha_bwd_item(a, b, part);
    else mha_fwd_item(a, b, part);
}

/* Scratch, in floats: the bias sums (doubles, first: 8-byte aligned), the
 * rotation table, (backward) ctx, dq and dkv of every row, the parts' slabs. */
int64_t lathe_rt_mha_scratch_floats(int64_t B, int64_t Tq, int64_t Tk, int64_t d, int64_t e, int64_t dk, int64_t hd,
                                    int grad) {
  int64_t f = mha_maxt(Tq, Tk) * hd + mha_parts(B) * mha_slab(Tq, Tk, e, dk);
  return grad ? f + 2 * B * (e + d + 2 * dk) + 2 * B * Tq * e + B * Tk * 2 * dk : f;
}

static void mha_setup(mha_job *a, float *scr, const int64_t *dims, int grad) {
  memset(a, 0, sizeof *a);
  a->B = dims[0], a->Tq = dims[1], a->Tk = dims[2], a->d = dims[3], a->dc = dims[4], a->H = dims[5];
  a->K = dims[6], a->causal = dims[7], a->rope = dims[8], a->mkind = dims[9], a->e = dims[10];
  a->hd = a->e / a->H, a->dk = a->K * a->hd, a->scale = (float)(1.0 / sqrt((double)a->hd));
  float *f = scr;
  if (grad) {
    a->bsum = (double *)(void *)f, f += 2 * a->B * (a->e + a->d + 2 * a->dk);
    a->ctx = f, a->dq = f + a->B * a->Tq * a->e, a->dkv = a->dq + a->B * a->Tq * a->e;
    f = a->dkv + a->B * a->Tk * 2 * a->dk;
  }
  int64_t maxt = mha_maxt(a->Tq, a->Tk), half = a->hd / 2;
  a->rot = f;
  if (a->rope)
    for (int64_t r = 0; r < maxt; r++)
      for (int64_t e = 0; e < half; e++) {
        double th = (double)r * pow(10000.0, -2.0 * (double)e / (double)a->hd);
        f[r * half + e] = (float)cos(th), f[maxt * half + r * half + e] = (float)sin(th);
      }
  a->slabs = f + maxt * a->hd;
}

static void mha_run(mha_job *a) {
  int64_t parts = rt_pool_size();
  parts = parts < mha_parts(a->B) ? parts : mha_parts(a->B);
  rt_pool_for(parts, 1, mha_part, a);
}

/* out = mha(x, ...): dims B, Tq, Tk, d, dc, H, K, causal, rope, mask kind, e */
void lathe_rt_mha_fwd(float *out, const float *x, const float *wq, const float *bq, const float *c, const float *wkv,
                      const float *bkv, const float *wp, const float *bp, const void *mask, float *scr,
                      const int64_t *dims) {
  mha_job a;
  mha_setup(&a, scr, dims, 0);
  a.x = x, a.wq = wq, a.bq = bq, a.c = c, a.wkv = wkv, a.bkv = bkv, a.wp = wp, a.bp = bp, a.mask = mask, a.out = out;
  mha_run(&a);
}

/* out = [dx | dwq | dbq | dc | dwkv | dbkv | dwp | dbp] */
void lathe_rt_mha_grad(float *out, const float *x, const float *wq, const float *bq, const float *c, const float *wkv,
                       const float *bkv, const float *wp, const float *bp, const void *mask, const float *dy,
                       float *scr, const int64_t *dims) {
  mha_job a;
  mha_setup(&a, scr, dims, 1);
  a.x = x, a.wq = wq, a.bq = bq, a.c = c, a.wkv = wkv, a.bkv = bkv, a.wp = wp, a.bp = bp, a.mask = mask;
  a.dy = dy, a.out = out;
  mha_run(&a);
  int64_t B = a.B, d = a.d, e = a.e, dk2 = 2 * a.dk, BQ = B * a.Tq, BK = B * a.Tk, w = e + dk2 + d;
  float *dwq = out + BQ * d, *dbq = dwq + d * e, *dwkv = dbq + e + BK * a.dc, *dbkv = dwkv + a.dc * dk2;
  float *dwp = dbkv + dk2, *dbp = dwp + e * d;
  gemm(1, 0, d, e, BQ, 1.0f, x, d, a.dq, e, 0.0f, dwq, e);
  gemm(1, 0, a.dc, dk2, BK, 1.0f, c, a.dc, a.dkv, dk2, 0.0f, dwkv, dk2);
  gemm(1, 0, e, d, BQ, 1.0f, a.ctx, e, dy, d, 0.0f, dwp, d);
  for (int64_t j = 0; j < w; j++) { /* bias gradients: the rows' sums in batch order */
    double s = 0.0;
    for (int64_t b = 0; b < B; b++) s += a.bsum[b * w + j];
    (j < e ? dbq + j : j < e + dk2 ? dbkv + j - e : dbp + j - e - dk2)[0] = (float)s;
  }
}

