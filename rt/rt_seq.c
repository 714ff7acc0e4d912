/* rt_seq.c -- CPU kernels of the fused sequence layers' hard parts: flash
 * attention (forward and backward), the lstm forward and backward through
 * time for rnn, lstm and gru. The kernels are plain C compiled into the
 * library (OpenBLAS for the big products, rt_seqk.c's vectorised tiles and
 * rows for the small ones); the generated code calls them with the node's
 * buffers (codegen/llvm/cg_seqcall.c emits the calls; the JIT resolves
 * their names to these functions, an emitted object links them from
 * liblathe_rt).
 *
 * Parallelism: the batch rows of a sequence layer never meet until the
 * weight gradients, so each kernel is one loop of work items over the
 * batch (seq_run: items taken in turn by the runtime pool's threads, each
 * with single-threaded OpenBLAS), then the weight gradients as whole-batch
 * GEMMs split into items too. An item's arithmetic does not depend on
 * which thread runs it, so results are bit-identical from run to run.
 *
 * Attention: an item is one batch row: its qkv GEMM, then per head and per
 * tile of ATT_BQ query rows against tiles of ATT_BK keys an online softmax:
 * a running row maximum m and sum l, the output rescaled by exp(m_old -
 * m_new) when a new tile raises the maximum. No [T, T] matrix exists; the
 * per-part scratch holds the tiles. Causal attention skips the key tiles
 * after the query tile and the blocks above the diagonal inside it. The
 * backward recomputes the forward, then each probability tile from the
 * saved per-row logsumexp (P = exp(S - L)) and accumulates dq, dk, dv tile
 * by tile (FlashAttention-2's recurrence).
 *
 * The recurrent backward reads every h_t from the forward result y, so the
 * gate pre-activations of all steps are GEMMs over the item's rows (x w_ih
 * and h_{t-1} w_hh) and the LSTM cell one elementwise scan; only the
 * gradient through w_hh is sequential (one [rows, G h] x [G h, h] product
 * per step). dx is then one GEMM per item, the weight gradients one each.
 */
#include "rt/lathe_rt.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "rt/blas.h"
#include "rt/rt_seqk.h"
#include "rt/threadpool.h"
#include "rt/rt_cblas.h"

enum { ATT_BQ = 64, ATT_BK = 64 };

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

/* out[j] = the sum over parts p (in order) of part[p stride + j], j < n, in
 * double: bias gradients from the column sums each work item took of its
 * rows */
static void sum_parts(const double *part, int64_t nparts, int64_t stride, int64_t n, float *out) {
  for (int64_t j = 0; j < n; j++) {
    double s = 0.0;
    for (int64_t p = 0; p < nparts; p++) s += part[p * stride + j];
    out[j] = (float)s;
  }
}

/* ---- work items on the runtime pool ---- */

typedef void (*seq_item_fn)(void *job, int64_t item, int part);

typedef struct {
  seq_item_fn fn;
  void *job;
  int64_t n;
  atomic_llong next; /* the next item a part takes */
} seq_loop;

static void seq_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)lo, (void)hi;
  seq_loop *L = ctx;
  for (int64_t i; (i = atomic_fetch_add(&L->next, 1)) < L->n;) L->fn(L->job, i, part);
}

/* fn(job, i, part) for every i in [0, n), on at most maxparts parts of the
 * runtime pool (0 <= part < maxparts: per-part scratch). Each part takes the
 * next item until none is left, so a worker that wakes late costs no idle
 * time. An item's arithmetic (fixed shapes) does not depend on which part
 * runs it and items write disjoint rows, so results do not depend on the
 * timing. OpenBLAS is single-threaded (rt/blas.h), so the items'
 * GEMMs never contend with threads of its own. */
static void seq_run(int64_t n, int64_t maxparts, seq_item_fn fn, void *job) {
  seq_loop L = {fn, job, n, 0};
  int64_t parts = rt_pool_size();
  parts = parts < maxparts ? parts : maxparts;
  parts = parts < n ? parts : n;
  rt_pool_for(parts, 1, seq_part, &L);
}

/* Weight gradients C = A^T B (sums over every batch row, K = B T) as work
 * items too: each product split by columns of C into chunks (at most
 * WG_SPLIT per product, sizes from the shapes alone). */
enum { WG_SPLIT = 8, WG_MAX = 2 * WG_SPLIT, WG_MINCOLS = 64 };

typedef struct {
  const float *A, *B;
  float *C;
  int64_t M, N, K, lda, ldb, ldc;
} wg_gemm;

typedef struct {
  wg_gemm g[WG_MAX];
  int n;
} wg_job;

static void wg_add(wg_job *w, const float *A, int64_t lda, const float *B, int64_t ldb, float *C, int64_t M,
                   int64_t N, int64_t K) {
  int64_t cols = (N + WG_SPLIT - 1) / WG_SPLIT;
  cols = cols < WG_MINCOLS ? WG_MINCOLS : (cols + 15) / 16 * 16;
  for (int64_t j = 0; j < N && w->n < WG_MAX; j += cols) /* at most WG_SPLIT chunks: never cut short */
    w->g[w->n++] = (wg_gemm){A, B + j, C + j, M, N - j < cols ? N - j : cols, K, lda, ldb, N};
}

static void wg_item(void *job, int64_t i, int part) {
  (void)part;
  const wg_gemm *g = &((const wg_job *)job)->g[i];
  gemm(1, 0, g->M, g->N, g->K, 1.0f, g->A, g->lda, g->B, g->ldb, 0.0f, g->C, g->ldc);
}

static void wg_run(wg_job *w) { seq_run(w->n, w->n, wg_item, w); }

/* ---- attention ---- */

enum {
  ATT_PARTS = 16, /* the most parts a pool loop is split into (per-part scratch) */
  ATT_ROWS = 256, /* rows per work item (whole batches) */
};

/* One call's buffers. Rows of batch b: [b T, (b + 1) T) of x, dy, out and
 * (backward) ctx, dqkv. Everything only a work item needs lives in its
 * part's slab of scratch, reused by the part's next item while it is still
 * in cache: the tiles, the item's qkv rows, its ctx (forward) or dctx rows
 * and its logsumexp. */
typedef struct {
  int64_t B, T, d, H, hd;
  int causal;
  float scale;
  const float *x, *wq, *bq, *wp, *bp, *dy;
  float *ctx, *dqkv, *out, *slabs; /* slabs: per part, att_slab_floats */
  float *sqkv, *slse;              /* attention_save's pack (qkv, lse; ctx is ctx), or NULL */
  double *bsum; /* per work item: column sums of its dqkv and dy rows [items, 4d] */
} att_job;

/* A work item: batches [b0, b1), rows [r0, r0 + n); its rows of qkv, ctx,
 * dctx (row 0 = row r0), lse[(b - b0) H + h][T], and the tiles w. */
typedef struct {
  int64_t b0, b1, r0, n;
  float *qkv, *ctx, *dctx, *lse, *w;
} att_span;

/* batches per work item: about ATT_ROWS rows, so that the items' GEMMs
 * (OpenBLAS packs the weights once per call) are not too small */
static int64_t att_group(int64_t T) { return T < ATT_ROWS ? ATT_ROWS / T : 1; }
static int64_t att_items(int64_t B, int64_t T) { return (B + att_group(T) - 1) / att_group(T); }
static int64_t att_nparts(int64_t B, int64_t T) { return att_items(B, T) < ATT_PARTS ? att_items(B, T) : ATT_PARTS; }
/* n rounded up to even: doubles after n floats stay 8-byte aligned (every
 * other scratch section is an even number of floats) */
static int64_t att_even(int64_t n) { return (n + 1) & ~(int64_t)1; }

/* per part: two [BQ, BK] tiles (S, or P and dP), K^T and V^T tiles
 * [hd, BK], and m, l, D [BQ] */
static int64_t att_tile_floats(int64_t hd) { return 2 * ATT_BQ * ATT_BK + 2 * hd * ATT_BK + 3 * ATT_BQ; }
/* per part: the tiles, qkv and ctx or dctx rows [group T, 4d], lse */
static int64_t att_slab_floats(int64_t T, int64_t d, int64_t H) {
  int64_t g = att_group(T);
  return att_tile_floats(d / H) + g * T * 4 * d + att_even(g * H * T);
}

/* keys [j0, j0 + nk) that query row i may see: [j0, j0 + valid) */
static int64_t att_valid(const att_job *a, int64_t i, int64_t j0, int64_t nk) {
  int64_t v = a->causal ? i + 1 - j0 : nk;
  return v > nk ? nk : v < 0 ? 0 : v;
}

/* One query tile of one head: ctx rows (the head's columns, used as the
 * running output) and their logsumexp. Causal tiles skip the products'
 * blocks above the diagonal (rt_sk_mm's RT_SK_TRI_*). */
static void att_fwd_tile(const att_job *a, const float *q, float *ctx, float *lse, int64_t i0, int64_t nq, float *w) {
  int64_t d3 = 3 * a->d, hd = a->hd, dd = a->d;
  float *S = w, *Kt = S + 2 * ATT_BQ * ATT_BK, *m = Kt + 2 * hd * ATT_BK, *l = m + ATT_BQ;
  int tc = a->causal ? RT_SK_TRI_C : RT_SK_FULL, ta = a->causal ? RT_SK_TRI_AK : RT_SK_FULL;
  for (int64_t r = 0; r < nq; r++) {
    m[r] = -INFINITY, l[r] = 0.0f;
    memset(ctx + (i0 + r) * dd, 0, sizeof(float) * (size_t)hd);
  }
  int64_t kend = a->causal ? i0 + nq : a->T;
  for (int64_t j0 = 0; j0 < kend; j0 += ATT_BK) {
    int64_t nk = kend - j0 < ATT_BK ? kend - j0 : ATT_BK;
    rt_sk_transpose(q + a->d + j0 * d3, d3, nk, hd, Kt, ATT_BK);
    rt_sk_mm(nq, nk, hd, q + i0 * d3, d3, 1, Kt, ATT_BK, S, ATT_BK, 0, tc, i0 - j0);
    for (int64_t r = 0; r < nq; r++) {
      float corr = rt_sk_att_row(S + r * ATT_BK, nk, att_valid(a, i0 + r, j0, nk), a->scale, m + r, l + r);
      if (corr != 1.0f) rt_sk_scale(ctx + (i0 + r) * dd, hd, corr);
    }
    rt_sk_mm(nq, hd, nk, S, ATT_BK, 1, q + 2 * dd + j0 * d3, d3, ctx + i0 * dd, dd, 1, ta, i0 - j0);
  }
  for (int64_t r = 0; r < nq; r++) {
    rt_sk_scale(ctx + (i0 + r) * dd, hd, 1.0f / l[r]);
    if (lse) lse[i0 + r] = m[r] + logf(l[r]);
  }
}

/* Backward of one (query tile, key tile) block of one head:
 * P = exp(scale q k^T - lse); dP = do v^T; dS = P (dP - D) scale;
 * dv += P^T do; dq += dS k; dk += dS^T q. */
static void att_bwd_block(const att_job *a, const float *q, float *dq, const float *dO, const float *lse,
                          const float *D, int64_t i0, int64_t nq, int64_t j0, int64_t nk, float *w) {
  /* the first block to reach a dq row (j0 = 0) or dk, dv row (the query
   * tile holding j0 when causal, the first when not) stores, not adds: no
   * memset of dqkv */
  int acc_q = j0 > 0, acc_kv = a->causal ? j0 < i0 : i0 > 0;
  int64_t d3 = 3 * a->d, hd = a->hd, dd = a->d, o = i0 - j0;
  float *P = w, *dP = P + ATT_BQ * ATT_BK, *Kt = dP + ATT_BQ * ATT_BK, *Vt = Kt + hd * ATT_BK;
  int tc = a->causal ? RT_SK_TRI_C : RT_SK_FULL, ta = a->causal ? RT_SK_TRI_AK : RT_SK_FULL;
  int tt = a->causal ? RT_SK_TRI_AKT : RT_SK_FULL;
  const float *k = q + dd + j0 * d3, *v = q + 2 * dd + j0 * d3, *qi = q + i0 * d3, *doi = dO + i0 * dd;
  rt_sk_transpose(k, d3, nk, hd, Kt, ATT_BK);
  rt_sk_transpose(v, d3, nk, hd, Vt, ATT_BK);
  rt_sk_mm(nq, nk, hd, qi, d3, 1, Kt, ATT_BK, P, ATT_BK, 0, tc, o);
  rt_sk_mm(nq, nk, hd, doi, dd, 1, Vt, ATT_BK, dP, ATT_BK, 0, tc, o);
  for (int64_t r = 0; r < nq; r++)
    rt_sk_att_drow(P + r * ATT_BK, dP + r * ATT_BK, nk, att_valid(a, i0 + r, j0, nk), a->scale, lse[i0 + r], D[r]);
  rt_sk_mm(nk, hd, nq, P, 1, ATT_BK, doi, dd, dq + 2 * dd + j0 * d3, d3, acc_kv, tt, o);
  rt_sk_mm(nq, hd, nk, dP, ATT_BK, 1, k, d3, dq + i0 * d3, d3, acc_q, ta, o);
  rt_sk_mm(nk, hd, nq, dP, 1, ATT_BK, qi, d3, dq + dd + j0 * d3, d3, acc_kv, tt, o);
}

/* The context (and logsumexp when s->lse) of head h of the item's batch
 * b0 + lb from its qkv rows, with the tiles at w. */
static void att_fwd_head(const att_job *a, const att_span *s, int64_t lb, int64_t h, float *w) {
  int64_t T = a->T, d = a->d;
  const float *q = s->qkv + lb * T * 3 * d + h * a->hd;
  float *c = s->ctx + lb * T * d + h * a->hd, *lse = s->lse ? s->lse + (lb * a->H + h) * T : NULL;
  for (int64_t i0 = 0; i0 < T; i0 += ATT_BQ) att_fwd_tile(a, q, c, lse, i0, T - i0 < ATT_BQ ? T - i0 : ATT_BQ, w);
}

/* The item's qkv rows, then per batch and head the context. */
static void att_fwd_heads(const att_job *a, const att_span *s) {
  affine(a->x + s->r0 * a->d, a->wq, a->bq, s->n, a->d, 3 * a->d, s->qkv);
  for (int64_t lb = 0; lb < s->b1 - s->b0; lb++)
    for (int64_t h = 0; h < a->H; h++) att_fwd_head(a, s, lb, h, s->w);
}

/* one head's backward: head h of the item's batch b0 + lb */
static void att_bwd_head(const att_job *a, const att_span *s, int64_t lb, int64_t h) {
  int64_t T = a->T, dd = a->d, d3 = 3 * dd, hd = a->hd, off = lb * T * dd + h * hd;
  const float *q = s->qkv + lb * T * d3 + h * hd, *dO = s->dctx + off, *O = s->ctx + off;
  const float *lse = s->lse + (lb * a->H + h) * T;
  float *dq = a->dqkv + (s->r0 + lb * T) * d3 + h * hd, *D = s->w + 2 * ATT_BQ * ATT_BK + 2 * hd * ATT_BK;
  for (int64_t i0 = 0; i0 < T; i0 += ATT_BQ) {
    int64_t nq = T - i0 < ATT_BQ ? T - i0 : ATT_BQ, kend = a->causal ? i0 + nq : T;
    for (int64_t r = 0; r < nq; r++) D[r] = rt_sk_dot(dO + (i0 + r) * dd, O + (i0 + r) * dd, hd); /* rowsum(do o) */
    for (int64_t j0 = 0; j0 < kend; j0 += ATT_BK)
      att_bwd_block(a, q, dq, dO, lse, D, i0, nq, j0, kend - j0 < ATT_BK ? kend - j0 : ATT_BK, s->w);
  }
}

/* item i's rows and its part's slab: tiles, then qkv, then ctx (forward)
 * or dctx and lse (backward) */
static att_span att_item(const att_job *a, int64_t i, int part) {
  int64_t g = att_group(a->T), d = a->d, R = g * a->T;
  att_span s = {i * g, i * g + g < a->B ? i * g + g : a->B, i * g * a->T, 0, NULL, NULL, NULL, NULL, NULL};
  s.n = (s.b1 - s.b0) * a->T;
  s.w = a->slabs + (int64_t)part * att_slab_floats(a->T, d, a->H);
  s.qkv = s.w + att_tile_floats(a->hd);
  if (!a->dqkv) {
    s.ctx = s.qkv + R * 3 * d;
    return s;
  }
  s.ctx = a->ctx + s.r0 * d, s.dctx = s.qkv + R * 3 * d, s.lse = s.dctx + R * d;
  if (a->sqkv) s.qkv = a->sqkv + s.r0 * 3 * d, s.lse = a->slse + s.b0 * a->H * a->T;
  return s;
}

/* A saving forward's item writes qkv, ctx and lse into the pack. */
static att_span att_save_item(const att_job *a, int64_t i, int part) {
  att_span s = att_item(a, i, part);
  int64_t d = a->d;
  s.qkv = a->sqkv + s.r0 * 3 * d, s.ctx = a->ctx + s.r0 * d, s.lse = a->slse + s.b0 * a->H * a->T;
  return s;
}

/* ---- one item alone (batch 1): its products and its heads split ---- */

/* A forward of a single item (B <= att_group(T): GPT-2 at batch 1) would
 * keep one core busy while the others wait. Instead its two products are
 * rt_sgemm calls, split over the pool like any dense layer's, and its
 * heads are the work items, each in its part's area after the slab
 * (lathe_rt_attn_scratch_floats). The choice follows from the shapes alone.
 *
 * Up to ATT_EXACT_T keys a head is done whole with an exact softmax instead
 * of the online one: K^T and V copied once per head (not once per query
 * tile), then per tile of ATT_EQ queries S = q K^T over every key
 * it may see, one softmax pass per row and ctx = P V, scaled by 1 / sum at
 * the end: no running maximum, no rescaling of the output, and the copies
 * make K^T and V contiguous. ATT_EQ = 32 rows keep S [32, T] in L1 up to
 * T 256. GPT-2-small's 12 heads alone (T 256, quiet machine, best of 300
 * to 600, 2 threads): 0.62 ms before, 0.47-0.53 with 64-row tiles,
 * 0.43-0.45 with 32 (16: 0.41-0.44). Beyond ATT_EXACT_T keys a row of S
 * would leave the cache: the flash tiles then, as in the batched forward. */
enum { ATT_EXACT_T = 1024, ATT_EQ = 32 };
static int att_wide(int64_t B, int64_t T) { return att_items(B, T) == 1; }
/* its parts: one per head at most (the item holds every batch) */
static int64_t att_wide_parts(int64_t B, int64_t H) { return B * H < ATT_PARTS ? B * H : ATT_PARTS; }
/* S's row stride: T rounded up to whole vectors */
static int64_t att_ld(int64_t T) { return (T + 15) & ~(int64_t)15; }
/* per part: the query tile [EQ, hd], K^T [hd, ld], V [T, hd] and S [EQ,
 * ld]; or the flash tiles */
static int64_t att_wide_floats(int64_t T, int64_t hd) {
  return T <= ATT_EXACT_T ? ATT_EQ * hd + hd * att_ld(T) + T * hd + ATT_EQ * att_ld(T) : att_tile_floats(hd);
}

/* whole heads (the biases always given, as cg_seqcall.c passes them) */
static int att_exact(const att_job *a) { return a->T <= ATT_EXACT_T && a->bq && a->bp; }

typedef struct {
  const att_job *a;
  att_span s;
} att_wide_job;

static float *att_wide_area(const att_wide_job *j, int part) {
  const att_job *a = j->a;
  return a->slabs + att_slab_floats(a->T, a->d, a->H) + (int64_t)part * att_wide_floats(a->T, a->hd);
}

/* One query tile of a whole head (see above): ctx rows [i0, i0 + nq). q's
 * rows hold the product without its bias: the query's bias bq is added as
 * the tile is copied, the value's bv after the normalisation (each row of P
 * sums to 1, so P (V + bv) = P V + bv), and the key's is left out: it adds
 * q_i . bk to every logit of row i alike, which the softmax cancels. */
static void att_exact_tile(const att_job *a, const float *q, const float *bq, float *ctx, int64_t i0, int64_t nq,
                           float *w) {
  int64_t d3 = 3 * a->d, hd = a->hd, ld = att_ld(a->T), kn = a->causal ? i0 + nq : a->T;
  float *Q = w, *Kt = Q + ATT_EQ * hd, *V = Kt + hd * ld, *S = V + a->T * hd, inv[ATT_EQ];
  int tc = a->causal ? RT_SK_TRI_C : RT_SK_FULL, ta = a->causal ? RT_SK_TRI_AK : RT_SK_FULL;
  for (int64_t r = 0; r < nq; r++) rt_sk_add(Q + r * hd, q + (i0 + r) * d3, bq, hd);
  rt_sk_mm(nq, kn, hd, Q, hd, 1, Kt, ld, S, ld, 0, tc, i0);
  rt_sk_softmax_rows(S, ld, nq, kn, att_valid(a, i0, 0, kn), a->causal ? 1 : 0, a->scale, inv);
  rt_sk_mm(nq, hd, kn, S, ld, 1, V, hd, ctx + i0 * a->d, a->d, 0, ta, i0);
  for (int64_t r = 0; r < nq; r++) rt_sk_scale_add(ctx + (i0 + r) * a->d, hd, inv[r], bq + 2 * a->d);
}

/* head h's context from q (its columns of the biasless qkv rows) */
static void att_exact_head(const att_job *a, const float *q, float *ctx, int64_t h, float *w) {
  int64_t T = a->T, d3 = 3 * a->d, hd = a->hd, ld = att_ld(T);
  float *Kt = w + ATT_EQ * hd, *V = Kt + hd * ld;
  rt_sk_transpose(q + a->d, d3, T, hd, Kt, ld);
  for (int64_t t = 0; t < T; t++) memcpy(V + t * hd, q + 2 * a->d + t * d3, sizeof(float) * (size_t)hd);
  for (int64_t i0 = 0; i0 < T; i0 += ATT_EQ)
    att_exact_tile(a, q, a->bq + h * hd, ctx, i0, T - i0 < ATT_EQ ? T - i0 : ATT_EQ, w);
}

static void att_wide_head(void *job, int64_t i, int part) {
  const att_wide_job *j = job;
  const att_job *a = j->a;
  int64_t lb = i / a->H, h = i % a->H;
  float *w = att_wide_area(j, part);
  if (!att_exact(a)) {
    att_fwd_head(a, &j->s, lb, h, w);
    return;
  }
  att_exact_head(a, j->s.qkv + lb * a->T * 3 * a->d + h * a->hd, j->s.ctx + lb * a->T * a->d + h * a->hd, h, w);
  /* the output's rows filled with its bias, a share per item: on every
   * thread, not the caller's alone before the product */
  int64_t n = j->s.n, r0 = n * i / (a->B * a->H), r1 = n * (i + 1) / (a->B * a->H);
  for (int64_t r = r0; r < r1; r++) memcpy(a->out + r * a->d, a->bp, sizeof(float) * (size_t)a->d);
}

/* y[m, n] = bias[n] + x[m, k] w[k, n], the product split over the pool
 * (rt_sgemm_bias: the bias inside a packed weight's kernel where it can) */
static void affine_split(const float *x, const float *w, const float *bias, int64_t m, int64_t k, int64_t n,
                         float *y) {
  if (bias) {
    rt_sgemm_bias(0, (int)m, (int)n, (int)k, x, (int)k, w, (int)n, bias, y, (int)n);
    return;
  }
  rt_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, x, (int)k, w, (int)n, 0.0f, y,
           (int)n);
}

/* Up to ATT_EXACT_T keys the qkv product has no bias (the heads add it)
 * and the heads' items fill the output with its bias: no pass on the
 * caller alone, and no read of C in the qkv product. */
static void att_fwd_wide(const att_job *a) {
  att_wide_job j = {a, att_item(a, 0, 0)};
  int64_t d = a->d, m = j.s.n;
  if (!att_exact(a)) {
    affine_split(a->x, a->wq, a->bq, m, d, 3 * d, j.s.qkv);
    seq_run(a->B * a->H, att_wide_parts(a->B, a->H), att_wide_head, &j);
    affine_split(j.s.ctx, a->wp, a->bp, m, d, d, a->out);
    return;
  }
  rt_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)(3 * d), (int)d, 1.0f, a->x, (int)d, a->wq,
           (int)(3 * d), 0.0f, j.s.qkv, (int)(3 * d));
  seq_run(a->B * a->H, att_wide_parts(a->B, a->H), att_wide_head, &j);
  rt_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)d, (int)d, 1.0f, j.s.ctx, (int)d, a->wp, (int)d,
           1.0f, a->out, (int)d);
}

/* the forward of item i: out rows = ctx wp + bp */
static void att_fwd_item(void *job, int64_t i, int part) {
  const att_job *a = job;
  att_span s = a->sqkv ? att_save_item(a, i, part) : att_item(a, i, part);
  att_fwd_heads(a, &s);
  affine(s.ctx, a->wp, a->bp, s.n, a->d, a->d, a->out + s.r0 * a->d);
}

/* the backward of item i up to dqkv, dx's rows (out) and the bias
 * gradients' column sums; the weight gradients, sums over every batch,
 * follow */
static void att_bwd_item(void *job, int64_t i, int part) {
  const att_job *a = job;
  att_span s = att_item(a, i, part);
  int64_t dd = a->d, d3 = 3 * dd, r0 = s.r0;
  if (!a->sqkv) att_fwd_heads(a, &s); /* recompute qkv, ctx and the logsumexp (unless saved) */
  gemm(0, 1, s.n, dd, dd, 1.0f, a->dy + r0 * dd, dd, a->wp, dd, 0.0f, s.dctx, dd);
  for (int64_t lb = 0; lb < s.b1 - s.b0; lb++)
    for (int64_t h = 0; h < a->H; h++) att_bwd_head(a, &s, lb, h);
  gemm(0, 1, s.n, dd, d3, 1.0f, a->dqkv + r0 * d3, d3, a->wq, d3, 0.0f, a->out + r0 * dd, dd);
  rt_sk_colsum(a->dqkv + r0 * d3, s.n, d3, d3, a->bsum + i * 4 * dd);
  rt_sk_colsum(a->dy + r0 * dd, s.n, dd, dd, a->bsum + i * 4 * dd + d3);
}

static void att_setup(att_job *a, float *scr, int64_t B, int64_t T, int64_t d, int64_t H, int64_t causal) {
  memset(a, 0, sizeof *a);
  a->B = B, a->T = T, a->d = d, a->H = H, a->hd = d / H, a->causal = (int)causal;
  a->scale = (float)(1.0 / sqrt((double)(d / H)));
  a->slabs = scr;
}

/* out = attention(x): per item the qkv GEMM, flash heads, output GEMM; with
 * save (bit 0), out is [y | qkv | ctx | lse] and the items keep those there.
 * A single item splits its products only with LATHE_RT_ATTN_SPLIT (an
 * inference program): in a training program the backward recomputes (or
 * reads) the forward with the items' unsplit products, and a forward rounded
 * differently would make -O0 and -O3 steps differ (Adam amplifies the last
 * bits of a near-zero gradient). */
void lathe_rt_attn_fwd(float *out, const float *x, const float *wq, const float *bq, const float *wp, const float *bp,
                    float *scr, int64_t B, int64_t T, int64_t d, int64_t H, int64_t causal, int64_t save) {
  rt_blas_single(); /* its GEMMs run inside pool parts: OpenBLAS on one thread */
  att_job a;
  att_setup(&a, scr, B, T, d, H, causal);
  a.x = x, a.wq = wq, a.bq = bq, a.wp = wp, a.bp = bp, a.out = out;
  int split = (save & LATHE_RT_ATTN_SPLIT) != 0;
  save &= 1;
  if (save) a.sqkv = out + B * T * d, a.ctx = a.sqkv + B * T * 3 * d, a.slse = a.ctx + B * T * d;
  if (split && att_wide(B, T)) att_fwd_wide(&a);
  else seq_run(att_items(B, T), ATT_PARTS, att_fwd_item, &a);
}

/* out = [dx | dwq | dbq | dwp | dbp]; saved: attention_save's pack, whose
 * qkv, ctx and lse the items read instead of recomputing them */
void lathe_rt_attn_grad(float *out, const float *x, const float *wq, const float *bq, const float *wp, const float *dy,
                     const float *saved, float *scr, int64_t B, int64_t T, int64_t d, int64_t H, int64_t causal) {
  rt_blas_single(); /* its GEMMs run inside pool parts: OpenBLAS on one thread */
  att_job a;
  att_setup(&a, scr, B, T, d, H, causal);
  int64_t BT = B * T, items = att_items(B, T);
  float *dx = out, *dwq = dx + BT * d, *dbq = dwq + d * 3 * d, *dwp = dbq + 3 * d, *dbp = dwp + d * d;
  a.x = x, a.wq = wq, a.bq = bq, a.wp = wp, a.dy = dy, a.out = dx;
  a.ctx = scr + att_nparts(B, T) * att_slab_floats(T, d, H), a.dqkv = a.ctx + BT * d;
  a.bsum = (double *)(void *)(a.dqkv + BT * 3 * d);
  if (saved) { /* read-only from here on: the items write dqkv, dctx and out, never these */
    a.sqkv = (float *)(uintptr_t)(saved + BT * d);
    a.ctx = a.sqkv + BT * 3 * d, a.slse = a.ctx + BT * d;
  }
  seq_run(items, ATT_PARTS, att_bwd_item, &a);
  wg_job w = {.n = 0};
  wg_add(&w, x, d, a.dqkv, 3 * d, dwq, d, 3 * d, BT);
  wg_add(&w, a.ctx, d, dy, d, dwp, d, d, BT);
  wg_run(&w);
  sum_parts(a.bsum, items, 4 * d, 3 * d, dbq);
  sum_parts(a.bsum + 3 * d, items, 4 * d, d, dbp);
  /* The key bias adds q_i . b_k to every logit of query row i alike, which
   * the softmax cancels: its gradient is exactly zero. The column sums give
   * rounding noise instead, which Adam would scale up to lr-sized steps (and
   * which differs between one process and several ranks summing in another
   * order). */
  memset(dbq + d, 0, sizeof(float) * (size_t)d);
}

int64_t lathe_rt_attn_scratch_floats(int64_t B, int64_t T, int64_t d, int64_t H, int grad) {
  int64_t f = att_nparts(B, T) * att_slab_floats(T, d, H);
  if (!grad && att_wide(B, T)) f += att_wide_parts(B, H) * att_wide_floats(T, d / H); /* att_fwd_wide's parts */
  return grad ? f + B * T * 4 * d + 2 * att_items(B, T) * 4 * d : f;
}

/* ---- recurrences: backward through time ---- */

enum { REC_ROWS = 8 }; /* batch rows per work item (fixed: the items' shapes never depend on the thread count) */

/* Rows of batch b: [b T, (b + 1) T) of x, y, dy, hp, a, ah, da, dah, cell,
 * dx; [b, b + 1) of drec, dc. whht = w_hh^T [G h, h]. */
typedef struct {
  int op;
  int64_t B, T, in, h, G;
  const float *x, *wih, *whh, *bih, *bhh, *y, *dy;
  float *hp, *a, *ah, *da, *dah, *cell, *drec, *dc, *whht, *dx, *yout;
  double *bsum; /* per item: column sums of its da (and dah) rows [items, 2 G h] */
} rec_job; /* scratch: bsum, then the float buffers in the order above */

static int64_t rec_items(int64_t B) { return (B + REC_ROWS - 1) / REC_ROWS; }

int64_t lathe_rt_rec_scratch_floats(int op, int64_t B, int64_t T, int64_t h) {
  int64_t G = op == LATHE_RT_LSTM_GRAD ? 4 : op == LATHE_RT_GRU_GRAD ? 3 : 1, BT = B * T;
  return BT * h * 2 + BT * G * h * 4 + B * h * 2 + G * h * h + 2 * rec_items(B) * 2 * G * h;
}

/* Step t of batch rows [b0, b1): the pre-activation gradients da (and dah)
 * from dy_t + drec; drec is then overwritten by the caller. */
static void rnn_step(rec_job *r, int64_t t, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; b++) {
    int64_t row = (b * r->T + t) * r->h;
    for (int64_t j = 0; j < r->h; j++) {
      float hv = r->y[row + j];
      r->da[row + j] = (r->dy[row + j] + r->drec[b * r->h + j]) * (1.0f - hv * hv);
    }
  }
}

static void lstm_step(rec_job *r, int64_t t, int64_t b0, int64_t b1) {
  int64_t h = r->h;
  for (int64_t b = b0; b < b1; b++) {
    int64_t row = b * r->T + t;
    const float *cl = r->cell + row * h;
    rt_sk_lstm_bwd(r->a + row * 4 * h, cl, t ? cl - h : NULL, r->dy + row * h, r->drec + b * h, r->dc + b * h,
                   r->da + row * 4 * h, h);
  }
}

static void gru_step(rec_job *r, int64_t t, int64_t b0, int64_t b1) {
  int64_t h = r->h;
  for (int64_t b = b0; b < b1; b++) {
    int64_t row = b * r->T + t;
    rt_sk_gru_bwd(r->a + row * 3 * h, r->ah + row * 3 * h, r->hp + row * h, r->dy + row * h, r->drec + b * h,
                  r->da + row * 3 * h, r->dah + row * 3 * h, r->dc + b * h, h);
  }
}

typedef void (*rec_step_fn)(rec_job *r, int64_t t, int64_t b0, int64_t b1);

/* Batch rows [b0, b1) (rows [r0, r0 + n) of every [B T, .] buffer): the
 * inputs h_{t-1} and the gate values recomputed from y (GEMMs over all the
 * steps at once; lstm: activated gates and the cell scan). */
static void rec_prepare(rec_job *r, int64_t b0, int64_t b1) {
  int64_t T = r->T, h = r->h, gh = r->G * h, r0 = b0 * T, n = (b1 - b0) * T;
  for (int64_t b = b0; b < b1; b++) { /* hp[b, t] = y[b, t - 1], 0 at t = 0 */
    memset(r->hp + b * T * h, 0, sizeof(float) * (size_t)h);
    memcpy(r->hp + (b * T + 1) * h, r->y + b * T * h, sizeof(float) * (size_t)((T - 1) * h));
  }
  memset(r->drec + b0 * h, 0, sizeof(float) * (size_t)((b1 - b0) * h));
  memset(r->dc + b0 * h, 0, sizeof(float) * (size_t)((b1 - b0) * h));
  if (r->op == LATHE_RT_RNN_GRAD) return;
  float *a = r->a + r0 * gh, *ah = r->ah + r0 * gh;
  affine(r->x + r0 * r->in, r->wih, r->bih, n, r->in, gh, a);
  if (r->op == LATHE_RT_GRU_GRAD) {
    affine(r->hp + r0 * h, r->whh, r->bhh, n, h, gh, ah);
    return;
  }
  gemm(0, 0, n, gh, h, 1.0f, r->hp + r0 * h, h, r->whh, gh, 1.0f, a, gh); /* lstm: one pre-activation sum */
  rt_sk_lstm_gates(a, NULL, n, h);
  for (int64_t b = b0; b < b1; b++) rt_sk_lstm_cell(r->a + b * T * gh, r->cell + b * T * h, T, h);
}

/* Item i: batch rows [i REC_ROWS, ..): backward through time (the gradient
 * into h_{t-1} is one small product per step with w_hh^T) and dx's rows.
 * The batch rows never meet before the weight gradients. */
static void rec_item(void *job, int64_t i, int part) {
  (void)part;
  rec_job *r = job;
  static const rec_step_fn steps[] = {rnn_step, lstm_step, gru_step};
  rec_step_fn step = steps[r->op == LATHE_RT_LSTM_GRAD ? 1 : r->op == LATHE_RT_GRU_GRAD ? 2 : 0];
  int64_t b0 = i * REC_ROWS, b1 = b0 + REC_ROWS < r->B ? b0 + REC_ROWS : r->B, T = r->T, h = r->h, gh = r->G * h;
  rec_prepare(r, b0, b1);
  float *dah = r->op == LATHE_RT_GRU_GRAD ? r->dah : r->da; /* rnn, lstm: one pre-activation */
  for (int64_t t = T - 1; t >= 0; t--) {
    step(r, t, b0, b1);
    if (t == 0) break;
    rt_sk_mm(b1 - b0, h, gh, dah + (b0 * T + t) * gh, T * gh, 1, r->whht, h, r->drec + b0 * h, h, 0, RT_SK_FULL, 0);
    if (r->op == LATHE_RT_GRU_GRAD)
      for (int64_t j = b0 * h; j < b1 * h; j++) r->drec[j] += r->dc[j];
  }
  int64_t r0 = b0 * T, n = (b1 - b0) * T;
  gemm(0, 1, n, r->in, gh, 1.0f, r->da + r0 * gh, gh, r->wih, gh, 0.0f, r->dx + r0 * r->in, r->in);
  rt_sk_colsum(r->da + r0 * gh, n, gh, gh, r->bsum + i * 2 * gh);
  if (r->op == LATHE_RT_GRU_GRAD) rt_sk_colsum(dah + r0 * gh, n, gh, gh, r->bsum + i * 2 * gh + gh);
}

/* The lstm forward of item i (batch rows [i REC_ROWS, ..)): the input
 * projection of every step in one GEMM, then per step the recurrent product
 * (added to step t's pre-activations) and the cell. scratch: a [B T, 4h]
 * (pre-activations), cell [B, h]: the compiler's scratch size for LATHE_RT_LSTM. */
static void lstm_fwd_item(void *job, int64_t i, int part) {
  (void)part;
  rec_job *r = job;
  int64_t b0 = i * REC_ROWS, b1 = b0 + REC_ROWS < r->B ? b0 + REC_ROWS : r->B, T = r->T, h = r->h, gh = 4 * h;
  affine(r->x + b0 * T * r->in, r->wih, r->bih, (b1 - b0) * T, r->in, gh, r->a + b0 * T * gh);
  for (int64_t t = 0; t < T; t++) {
    if (t > 0)
      rt_sk_mm(b1 - b0, gh, h, r->yout + (b0 * T + t - 1) * h, T * h, 1, r->whh, gh, r->a + (b0 * T + t) * gh, T * gh,
               1, RT_SK_FULL, 0);
    for (int64_t b = b0; b < b1; b++)
      rt_sk_lstm_fwd(r->a + (b * T + t) * gh, r->cell + b * h, r->yout + (b * T + t) * h, t == 0, h);
  }
}

static void lstm_fwd(float *y, const float *x, const float *wih, const float *whh, const float *b, float *scr,
                     int64_t B, int64_t T, int64_t in, int64_t h) {
  rec_job r = {0};
  r.op = LATHE_RT_LSTM, r.B = B, r.T = T, r.in = in, r.h = h, r.G = 4;
  r.x = x, r.wih = wih, r.whh = whh, r.bih = b, r.yout = y;
  r.a = scr, r.cell = scr + B * T * 4 * h;
  seq_run(rec_items(B), rec_items(B), lstm_fwd_item, &r);
}

/* The gru forward of item i (batch rows [i REC_ROWS, ..)), as the lstm's:
 * the input projection of every step in one GEMM, then per step the
 * recurrent pre-activations b_hh + h_{t-1} w_hh (kept apart from the input
 * side: r scales only the recurrent n term) and the cell. scratch: a
 * [B T, 3h], ah [B, 3h]: the compiler's scratch size for IR_GRU. */
static void gru_fwd_item(void *job, int64_t i, int part) {
  (void)part;
  rec_job *r = job;
  int64_t b0 = i * REC_ROWS, b1 = b0 + REC_ROWS < r->B ? b0 + REC_ROWS : r->B, T = r->T, h = r->h, gh = 3 * h;
  affine(r->x + b0 * T * r->in, r->wih, r->bih, (b1 - b0) * T, r->in, gh, r->a + b0 * T * gh);
  float *ah = r->ah + b0 * gh;
  for (int64_t t = 0; t < T; t++) {
    for (int64_t b = 0; b < b1 - b0; b++) memcpy(ah + b * gh, r->bhh, sizeof(float) * (size_t)gh);
    if (t > 0)
      rt_sk_mm(b1 - b0, gh, h, r->yout + (b0 * T + t - 1) * h, T * h, 1, r->whh, gh, ah, gh, 1, RT_SK_FULL, 0);
    for (int64_t b = b0; b < b1; b++)
      rt_sk_gru_fwd(r->a + (b * T + t) * gh, ah + (b - b0) * gh, t ? r->yout + (b * T + t - 1) * h : NULL,
                    r->yout + (b * T + t) * h, h);
  }
}

static void gru_fwd(float *y, const float *x, const float *wih, const float *whh, const float *bih, const float *bhh,
                    float *scr, int64_t B, int64_t T, int64_t in, int64_t h) {
  rec_job r = {0};
  r.op = LATHE_RT_GRU, r.B = B, r.T = T, r.in = in, r.h = h, r.G = 3;
  r.x = x, r.wih = wih, r.whh = whh, r.bih = bih, r.bhh = bhh, r.yout = y;
  r.a = scr, r.ah = scr + B * T * 3 * h;
  seq_run(rec_items(B), rec_items(B), gru_fwd_item, &r);
}

/* out = [dx | dw_ih | dw_hh | db (| db_hh)]; bhh only for gru. op LATHE_RT_LSTM
 * or LATHE_RT_GRU (not a gradient): the lstm or gru forward, out = y (its own
 * entry point would be clearer; this one is already among the JIT's host
 * symbols). */
void lathe_rt_rec_grad(float *out, const float *x, const float *wih, const float *whh, const float *bih,
                    const float *bhh, const float *y, const float *dy, float *scr, int64_t op, int64_t B, int64_t T,
                    int64_t in, int64_t h) {
  rt_blas_single(); /* its GEMMs run inside pool parts: OpenBLAS on one thread */
  if (op == LATHE_RT_LSTM) {
    lstm_fwd(out, x, wih, whh, bih, scr, B, T, in, h);
    return;
  }
  if (op == LATHE_RT_GRU) {
    gru_fwd(out, x, wih, whh, bih, bhh, scr, B, T, in, h);
    return;
  }
  int64_t G = op == LATHE_RT_LSTM_GRAD ? 4 : op == LATHE_RT_GRU_GRAD ? 3 : 1, BT = B * T, gh = G * h;
  rec_job r = {0};
  r.op = (int)op, r.B = B, r.T = T, r.in = in, r.h = h, r.G = G;
  r.x = x, r.wih = wih, r.whh = whh, r.bih = bih, r.bhh = bhh, r.y = y, r.dy = dy;
  r.bsum = (double *)(void *)scr; /* first: 8-byte aligned */
  r.hp = scr + 2 * rec_items(B) * 2 * gh, r.a = r.hp + BT * h, r.ah = r.a + BT * gh, r.da = r.ah + BT * gh;
  r.dah = r.da + BT * gh, r.cell = r.dah + BT * gh, r.drec = r.cell + BT * h, r.dc = r.drec + B * h;
  r.whht = r.dc + B * h;
  float *dx = out, *dwih = dx + BT * in, *dwhh = dwih + in * gh, *db = dwhh + h * gh;
  r.dx = dx;
  rt_sk_transpose(whh, gh, h, gh, r.whht, h);
  seq_run(rec_items(B), rec_items(B), rec_item, &r);
  wg_job w = {.n = 0};
  wg_add(&w, x, in, r.da, gh, dwih, in, gh, BT);
  wg_add(&w, r.hp, h, op == LATHE_RT_GRU_GRAD ? r.dah : r.da, gh, dwhh, h, gh, BT);
  wg_run(&w);
  sum_parts(r.bsum, rec_items(B), 2 * gh, op == LATHE_RT_GRU_GRAD ? 2 * gh : gh, db);
}

