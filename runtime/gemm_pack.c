/* gemm_pack.c -- products by constant weights through oneDNN's matmul
 * primitive with the weights packed once (see gemm_pack.h).
 *
 * Why: on the dense1024 and GPT-2-small products the matmul primitive with
 * its weights reordered once beat OpenBLAS's sgemm and oneDNN's own sgemm,
 * which both pack B again on every call (bench/README.md): the packing of a
 * 1024 x 1024 B is a large part of a 64-row product. ONNX Runtime's MLAS
 * prepacks B the same way.
 *
 * Threads: a product is cut into pieces, each with its own primitive, and
 * the pieces go to Lathe's pool (rt_pool_for) as rt_sgemm's items do. A
 * tall product by a small B is cut by C's rows, one piece a thread over
 * one packed B (by_rows says why); others by C's columns, each piece with its own
 * packed slice of B: one a thread, or for a large product (GPT-2-small's
 * head) up to 16 that the threads take as they finish. Each pool thread runs oneDNN on one OpenMP thread, inline (Debian's
 * oneDNN runs on OpenMP). The alternative, LATHE_DNNL_OMP=1, runs each
 * product whole on the calling thread with an OpenMP team of the pool's
 * size: on a quiet machine a little faster, but OpenMP splits the work
 * statically, so a team thread the machine's other work keeps off its core
 * stalls the product, and its spinning fights the pool's workers (rt/blas.h):
 * on the shared 2-core machine (load 6-7) two-thread medians of 13-21 ms
 * for mlp_b256's 0.3 ms step and 16 ms for dense1024_b64's 0.8
 * (bench/README.md, "Packed weights"). The pool's threads claim pieces as
 * they come, so a late one leaves its share to the others.
 *
 * A dense layer's bias comes with its product (rt_sgemm_bias): oneDNN's
 * bias argument where the pieces run on brgemm (bias_inside says why only
 * there), else C filled with it first and the product added (beta = 1).
 *
 * Every piece has its own memory objects, stream and scratchpad, so pieces
 * run at once on different threads without sharing anything of oneDNN's. */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include "runtime/gemm_pack.h"

#ifdef LATHE_HAVE_DNNL
#include <dlfcn.h>
#include <dnnl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "rt/blas.h"
#include "rt/threadpool.h"

/* columns per column piece: a multiple of oneDNN's widest register block;
 * rows per row piece: a multiple of its row block */
enum { GPK_NSTEP = 64, GPK_MSTEP = 16, GPK_MINROWS = 32, GPK_MAXPIECES = 16 };
/* the largest B (bytes) cut by rows (by_rows) */
#define GPK_ROWS_MAXB ((int64_t)4 << 20)
/* a piece more per this many multiply-adds (rt/blas.c's RT_BLAS_ITEM) */
#define GPK_ITEM ((int64_t)1 << 29)

typedef struct {
  dnnl_primitive_t mm;
  dnnl_memory_t w, src, dst, pad; /* packed weights (owned), A and C (the caller's), scratchpad */
  dnnl_memory_t bias;             /* the caller's bias (an entry with one), else NULL */
  dnnl_stream_t st;
  void *scratch;
  int r0, n0; /* first row and column of C */
} gpk_piece;

/* One product: a weight at B, its shape and strides, cut into pieces. */
typedef struct gpk_entry {
  const float *B;
  int tb, M, N, K, lda, ldb, ldc, beta;
  int bias; /* C = A B + a bias vector, the bias inside oneDNN's kernel (beta 0) */
  int npieces;
  gpk_piece p[GPK_MAXPIECES];
  struct gpk_entry *next;
} gpk_entry;

struct gpk_table {
  int nparams;
  int *constant;
  int64_t *bytes;
  void *const *params; /* this run's buffers (gpk_enter) */
  gpk_entry *entries;
  int stale;           /* gpk_invalidate: drop every entry before the next run */
  int omp;             /* LATHE_DNNL_OMP=1: one piece, an OpenMP team */
  int bias;            /* a dense layer's bias inside the kernel (LATHE_DNNL_BIAS=0: off, to measure) */
  int cut;             /* LATHE_DNNL_CUT: 0 by shape (by_rows), 'c' columns, 'r' rows wherever
                        * possible (to measure the cuts against each other) */
  dnnl_engine_t eng;
  long products, packings, biased;
};

static _Thread_local gpk_table *current; /* the table of the run on this thread */
static _Thread_local int omp_one;        /* this thread runs oneDNN on one OpenMP thread */
static void (*omp_threads)(int);         /* omp_set_num_threads, where oneDNN loaded OpenMP */

static void set_omp(int n) {
  if (omp_threads) omp_threads(n);
}

/* ---- making and dropping packings ---- */

static void piece_free(gpk_piece *p) {
  if (p->mm) dnnl_primitive_destroy(p->mm);
  if (p->w) dnnl_memory_destroy(p->w);
  if (p->src) dnnl_memory_destroy(p->src);
  if (p->dst) dnnl_memory_destroy(p->dst);
  if (p->pad) dnnl_memory_destroy(p->pad);
  if (p->bias) dnnl_memory_destroy(p->bias);
  if (p->st) dnnl_stream_destroy(p->st);
  free(p->scratch);
}

static void entry_free(gpk_entry *e) {
  for (int i = e->npieces - 1; i >= 0; i--) piece_free(&e->p[i]); /* the first owns the shared weights */
  free(e);
}

static void drop_entries(gpk_table *t) {
  for (gpk_entry *e = t->entries, *nx; e; e = nx) nx = e->next, entry_free(e);
  t->entries = NULL;
  t->stale = 0;
}

/* columns [n0, n0 + n) of the logical K x N matrix B' reordered into w's
 * layout; B stored row-major with rows of ldb, as B' (tb = 0) or as its
 * transpose, N x K (tb = 1: a weight used transposed, a tied head) */
static int reorder_weights(dnnl_engine_t eng, dnnl_stream_t st, const dnnl_memory_desc_t *w_md, const float *B,
                           int tb, int K, int n, int ldb, dnnl_memory_t w) {
  dnnl_dims_t dims = {K, n}, strides = {tb ? 1 : ldb, tb ? ldb : 1};
  dnnl_memory_desc_t plain;
  dnnl_memory_t from = NULL;
  dnnl_primitive_desc_t rpd = NULL;
  dnnl_primitive_t re = NULL;
  int ok = dnnl_memory_desc_init_by_strides(&plain, 2, dims, dnnl_f32, strides) == dnnl_success &&
           dnnl_memory_create(&from, &plain, eng, (void *)B) == dnnl_success &&
           dnnl_reorder_primitive_desc_create(&rpd, &plain, eng, w_md, eng, NULL) == dnnl_success &&
           dnnl_primitive_create(&re, rpd) == dnnl_success;
  dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, w}};
  ok = ok && dnnl_primitive_execute(re, st, 2, args) == dnnl_success && dnnl_stream_wait(st) == dnnl_success;
  if (re) dnnl_primitive_destroy(re);
  if (rpd) dnnl_primitive_desc_destroy(rpd);
  if (from) dnnl_memory_destroy(from);
  return ok ? 0 : -1;
}

/* the primitive's attributes: a user scratchpad (one per piece), and C's
 * old values added (beta = 1: a bias filled in first) */
static dnnl_primitive_attr_t make_attr(int beta) {
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  if (dnnl_primitive_attr_create(&attr) != dnnl_success) return NULL;
  int ok = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
  if (ok && beta) {
    ok = dnnl_post_ops_create(&po) == dnnl_success && dnnl_post_ops_append_sum(po, 1.0f) == dnnl_success &&
         dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    if (po) dnnl_post_ops_destroy(po);
  }
  if (!ok) dnnl_primitive_attr_destroy(attr), attr = NULL;
  return attr;
}

/* p's packed weights: the same layout as `share`'s (a row piece after the
 * first) reads share's copy; otherwise columns [p->n0, p->n0 + n) of B
 * reordered into a copy of its own */
static int piece_weights(gpk_table *t, const gpk_entry *e, gpk_piece *p, const dnnl_memory_desc_t *w_md, int n,
                         const gpk_piece *share) {
  void *shared = NULL;
  if (share) {
    const dnnl_memory_desc_t *s_md = NULL;
    if (dnnl_memory_get_memory_desc(share->w, &s_md) == dnnl_success && dnnl_memory_desc_equal(s_md, w_md))
      dnnl_memory_get_data_handle(share->w, &shared);
  }
  if (shared) return dnnl_memory_create(&p->w, w_md, t->eng, shared) == dnnl_success ? 0 : -1;
  if (dnnl_memory_create(&p->w, w_md, t->eng, DNNL_MEMORY_ALLOCATE) != dnnl_success) return -1;
  return reorder_weights(t->eng, p->st, w_md, e->B + (int64_t)p->n0 * (e->tb ? e->ldb : 1), e->tb, e->K, n, e->ldb,
                         p->w);
}

/* piece p of e: rows [r0, r0 + m) and columns [n0, n0 + n) of C, its
 * primitive and packed weights (share: see piece_weights) */
static int piece_make(gpk_table *t, const gpk_entry *e, gpk_piece *p, int r0, int m, int n0, int n,
                      const gpk_piece *share) {
  /* a single row's stride says nothing, but oneDNN counts a row stride
   * above the width as a strided (not dense) matrix: brgemm refuses it */
  dnnl_dims_t sd = {m, e->K}, ss = {m == 1 ? e->K : e->lda, 1}, wd = {e->K, n}, dd = {m, n},
              ds = {m == 1 ? n : e->ldc, 1}, bd = {1, n};
  dnnl_memory_desc_t src_md, w_any, dst_md, bias_md;
  dnnl_matmul_desc_t d;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_attr_t attr = make_attr(e->beta);
  p->r0 = r0, p->n0 = n0;
  int ok = attr && dnnl_memory_desc_init_by_strides(&src_md, 2, sd, dnnl_f32, ss) == dnnl_success &&
           dnnl_memory_desc_init_by_tag(&w_any, 2, wd, dnnl_f32, dnnl_format_tag_any) == dnnl_success &&
           dnnl_memory_desc_init_by_strides(&dst_md, 2, dd, dnnl_f32, ds) == dnnl_success &&
           (!e->bias || dnnl_memory_desc_init_by_tag(&bias_md, 2, bd, dnnl_f32, dnnl_ab) == dnnl_success) &&
           dnnl_matmul_desc_init(&d, &src_md, &w_any, e->bias ? &bias_md : NULL, &dst_md) == dnnl_success &&
           dnnl_primitive_desc_create(&pd, &d, attr, t->eng, NULL) == dnnl_success;
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (!ok) return -1;
  const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  const dnnl_memory_desc_t *pad_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  size_t pad_bytes = pad_md ? dnnl_memory_desc_get_size(pad_md) : 0;
  p->scratch = pad_bytes ? malloc(pad_bytes) : NULL;
  ok = (!pad_bytes || p->scratch) && dnnl_primitive_create(&p->mm, pd) == dnnl_success &&
       dnnl_stream_create(&p->st, t->eng, dnnl_stream_default_flags) == dnnl_success &&
       dnnl_memory_create(&p->src, &src_md, t->eng, DNNL_MEMORY_NONE) == dnnl_success &&
       dnnl_memory_create(&p->dst, &dst_md, t->eng, DNNL_MEMORY_NONE) == dnnl_success &&
       (!e->bias || dnnl_memory_create(&p->bias, &bias_md, t->eng, DNNL_MEMORY_NONE) == dnnl_success) &&
       (!pad_bytes || dnnl_memory_create(&p->pad, pad_md, t->eng, p->scratch) == dnnl_success) &&
       piece_weights(t, e, p, w_md, n, share) == 0;
  dnnl_primitive_desc_destroy(pd);
  return ok ? 0 : -1;
}

/* pieces of an M x N x K product on a pool of `size` threads: one per
 * thread, more (a multiple of the pool size) for a large product, never
 * more than `blocks` */
static int piece_count(const gpk_table *t, int64_t macs, int blocks, int size) {
  if (t->omp || size < 2 || macs < ((int64_t)1 << 20)) return 1;
  int64_t n = macs / GPK_ITEM;
  n = n < GPK_MAXPIECES ? n : GPK_MAXPIECES;
  n = (n + size - 1) / size * size;
  n = n > size ? n : size;
  return n < blocks ? (int)n : blocks;
}

/* Cut by rows or by columns? oneDNN 2.6 runs its brgemm matmul only where C
 * is one dense block (ldc = its width): a piece of C's columns (ldc > its
 * width) gets the older gemm:jit. In Lathe's dense1024_b256 row (quiet)
 * row pieces ran 1.56-1.73 ms median against 1.76-2.01 for column pieces
 * (bench/README.md, "Rows or columns"). Row pieces keep C's rows whole, so
 * each is dense where C is, and all read the one packed copy of B. But
 * each piece streams all of B: that is cheap while B stays in the cache
 * from one call to the next (dense1024's 4 MiB), not where every product
 * brings in a weight of its own from memory. So a B over GPK_ROWS_MAXB is
 * cut by columns. GPT-2-small's forward, quiet, two threads, lathe_bench
 * medians alternating in one window (bench/README.md, "Rows or columns,
 * per shape"): every product by columns 196.5 / 187.0 / 181.1 ms; only
 * B <= 4 MiB by rows (its 2.4 MB attention output) 194.8 / 179.0 / 183.9;
 * B <= 32 MiB by rows (the 7-9 MB qkv, fc and proj too; the 154 MB head by
 * columns) 205.3 / 190.0 / 187.3; and in two earlier windows every product
 * by rows lost to every product by columns five times out of five
 * (186.7-226.9 against 170.9-208.0). Alone, as one dense layer repeated,
 * the same shapes were 0-7% faster by rows, except the head (60.5-60.6 ms
 * by rows against 56.8-57.2): there B stays in the cache. From
 * GPK_MINROWS rows a thread: dense1024_b64 (32 rows a thread) by rows ran
 * 0.336-0.354 ms median against 0.369-0.387 by columns in every clean pair
 * of 2026-12-08's quiet windows (one thread alone: 0.63 ms, at the core's
 * peak). Its bimodal steps (0.63-0.76 ms medians, either cut) are the
 * machine's: traced, both pool threads then ran on one CPU for most of the
 * run (bench/README.md, "dense1024_b64 by rows"). Products whose A or C rows are strided
 * stay by columns too (gemm:jit for rows as well, which would pack all of
 * B in each piece). LATHE_DNNL_CUT=columns / rows force one cut. */
static int by_rows(const gpk_table *t, const gpk_entry *e, int size) {
  if (t->cut == 'c' || size < 2 || e->lda != e->K || e->ldc != e->N) return 0;
  if (t->cut == 'r') return e->M >= GPK_MSTEP * size; /* a row block a piece at least */
  return e->M >= GPK_MINROWS * size && (int64_t)e->K * e->N * (int64_t)sizeof(float) <= GPK_ROWS_MAXB;
}

/* one row piece a thread */
static int cut_rows(gpk_table *t, gpk_entry *e, int size) {
  int blocks = (e->M + GPK_MSTEP - 1) / GPK_MSTEP, parts = size < GPK_MAXPIECES ? size : GPK_MAXPIECES;
  for (int i = 0; i < parts; i++, e->npieces++) {
    int a = (int)((int64_t)blocks * i / parts) * GPK_MSTEP, b = (int)((int64_t)blocks * (i + 1) / parts) * GPK_MSTEP;
    if (b > e->M) b = e->M;
    if (piece_make(t, e, &e->p[i], a, b - a, 0, e->N, i ? &e->p[0] : NULL) != 0) return -1;
  }
  return 0;
}

static int cut_columns(gpk_table *t, gpk_entry *e, int size) {
  int blocks = (e->N + GPK_NSTEP - 1) / GPK_NSTEP;
  int parts = piece_count(t, (int64_t)e->M * e->N * e->K, blocks, size);
  for (int i = 0; i < parts; i++, e->npieces++) {
    int a = (int)((int64_t)blocks * i / parts) * GPK_NSTEP, b = (int)((int64_t)blocks * (i + 1) / parts) * GPK_NSTEP;
    if (b > e->N) b = e->N;
    if (piece_make(t, e, &e->p[i], 0, e->M, a, b - a, NULL) != 0) return -1;
  }
  return 0;
}

static gpk_entry *entry_make(gpk_table *t, const gpk_entry *key) {
  gpk_entry *e = malloc(sizeof *e);
  if (!e) return NULL;
  *e = *key;
  int size = t->omp ? 1 : rt_pool_size();
  /* oneDNN's brgemm fixes its thread count when the primitive is made
   * (OpenMP's max threads then) and asks OpenMP for exactly that many at
   * every run, whatever omp_set_num_threads says by then: a piece made
   * under the default (the CPUs) would start a team of its own on each
   * pool thread. So the pieces brgemm runs (row pieces, single-row column
   * pieces) are made for one thread, a team's product for the team. Column
   * pieces of several rows (gemm:jit, which reads the count at each run)
   * stay made as before: made for one thread, dense1024_b64's medians went
   * from 0.50 to 0.99-1.10 ms in a quiet run (fastest steps 0.43 both). */
  int rows = by_rows(t, e, size);
  if (t->omp) set_omp(rt_pool_size());
  else if (rows || e->M == 1) set_omp(1);
  int rc = rows ? cut_rows(t, e, size) : cut_columns(t, e, size);
  set_omp(1);
  omp_one = 1;
  if (rc != 0) {
    /* refused (no memory, a shape oneDNN rejects): free what was made
     * and keep the entry without pieces, so the product goes straight
     * to OpenBLAS from now on instead of trying again each run. Pieces
     * sharing the first's weights are freed before it. */
    for (int q = e->npieces; q >= 0; q--) piece_free(&e->p[q]);
    memset(e->p, 0, sizeof e->p);
    e->npieces = 0;
  }
  if (e->npieces) t->packings++;
  e->next = t->entries;
  t->entries = e;
  return e;
}

/* ---- running a product ---- */

typedef struct {
  const gpk_entry *e;
  const float *A, *bias;
  float *C;
  atomic_int next, failed;
} gpk_job;

static int piece_run(const gpk_entry *e, const gpk_piece *p, const float *A, const float *bias, float *C) {
  if (dnnl_memory_set_data_handle(p->src, (void *)(A + (int64_t)p->r0 * e->lda)) != dnnl_success ||
      dnnl_memory_set_data_handle(p->dst, C + (int64_t)p->r0 * e->ldc + p->n0) != dnnl_success ||
      (p->bias && dnnl_memory_set_data_handle(p->bias, (void *)(bias + p->n0)) != dnnl_success))
    return -1;
  dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, p->src}, {DNNL_ARG_WEIGHTS, p->w}, {DNNL_ARG_DST, p->dst}};
  int n = 3;
  if (p->bias) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, p->bias};
  if (p->pad) args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->pad};
  return dnnl_primitive_execute(p->mm, p->st, n, args) == dnnl_success ? 0 : -1;
}

static void job_parts(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)lo, (void)hi, (void)part;
  gpk_job *j = ctx;
  if (!omp_one) set_omp(1), omp_one = 1;
  for (int i; (i = atomic_fetch_add(&j->next, 1)) < j->e->npieces;)
    if (piece_run(j->e, &j->e->p[i], j->A, j->bias, j->C) != 0) atomic_store(&j->failed, 1);
}

static int run_entry(const gpk_table *t, const gpk_entry *e, const float *A, const float *bias, float *C) {
  if (t->omp) { /* the whole product on an OpenMP team (measured, not the default) */
    set_omp(rt_pool_size());
    int rc = piece_run(e, &e->p[0], A, bias, C);
    set_omp(1);
    omp_one = 1;
    return rc;
  }
  gpk_job j = {e, A, bias, C, 0, 0};
  int parts = rt_pool_size() < e->npieces ? rt_pool_size() : e->npieces;
  if (parts > 1) rt_pool_for(parts, 1, job_parts, &j);
  else job_parts(&j, 0, 1, 0);
  return atomic_load(&j.failed) ? -1 : 0;
}

/* Does [B, B + span) lie in one constant parameter? */
static int in_constant(const gpk_table *t, const float *B, int64_t span) {
  const char *b = (const char *)B;
  for (int i = 0; i < t->nparams; i++) {
    const char *p = t->params[i];
    if (t->constant[i] && p && b >= p && b + span <= p + t->bytes[i]) return 1;
  }
  return 0;
}

static gpk_entry *lookup(gpk_table *t, const gpk_entry *k) {
  for (gpk_entry *e = t->entries; e; e = e->next)
    if (e->B == k->B && e->tb == k->tb && e->M == k->M && e->N == k->N && e->K == k->K && e->lda == k->lda &&
        e->ldb == k->ldb && e->ldc == k->ldc && e->beta == k->beta && e->bias == k->bias)
      return e;
  int64_t span = k->tb ? (int64_t)(k->N - 1) * k->ldb + k->K : (int64_t)(k->K - 1) * k->ldb + k->N;
  if (!in_constant(t, k->B, span * (int64_t)sizeof(float))) return NULL;
  return entry_make(t, k);
}

/* Does a product with a bias take it inside the kernel? Only where its
 * pieces run on brgemm (row pieces, single rows: by_rows says which), whose
 * kernel adds it as it stores C. oneDNN 2.6's gemm:jit (column pieces of
 * several rows) adds a bias in a pass of its own after the product: there
 * GPT-2-small's head took 72.6-72.9 ms against 57.3 with C filled first
 * (bench/README.md, "The bias inside the kernel"). */
static int bias_inside(const gpk_table *t, const gpk_entry *k) {
  int size = t->omp ? 1 : rt_pool_size();
  return t->bias && !t->omp && (k->M == 1 || by_rows(t, k, size));
}

/* C = A B (+ C where beta, + the vector `bias` on every row where bias):
 * 0 when the product ran here, -1 to leave it */
static int gpk_run(int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, int beta,
                   const float *bias, float *C, int ldc) {
  gpk_table *t = current;
  /* inside a pool loop (attention's work items make their own products):
   * the other threads are busy, so no OpenMP team and no pieces */
  if (!t || rt_pool_busy() || M < 1 || N < 1 || K < 1) return -1;
  gpk_entry key = {.B = B, .tb = tb, .M = M, .N = N, .K = K, .lda = lda, .ldb = ldb, .ldc = ldc, .beta = beta,
                   .bias = bias != NULL};
  if (bias && !bias_inside(t, &key)) return -1;
  gpk_entry *e = lookup(t, &key);
  /* a primitive that was made runs (oneDNN's execute fails only on bad
   * arguments, which its creation already checked) */
  if (!e || !e->npieces || run_entry(t, e, A, bias, C) != 0) return -1;
  t->products++;
  t->biased += bias != NULL;
  return 0;
}

/* rt_blas_set_whole's hook */
static int gpk_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                     int ldb, float beta, float *C, int ldc) {
  if (ta || alpha != 1.0f || (beta != 0.0f && beta != 1.0f)) return -1;
  return gpk_run(tb, M, N, K, A, lda, B, ldb, beta != 0.0f, NULL, C, ldc);
}

/* rt_blas_set_whole_bias's hook: the bias a oneDNN argument, added in the
 * kernel as it stores C. Before, C was filled with the bias and the product
 * added to it (a sum post-op): a pass writing all of C, and C read again in
 * the kernel (bench/README.md, "The bias inside the kernel"). */
static int gpk_sgemm_bias(int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                          const float *bias, float *C, int ldc) {
  return gpk_run(tb, M, N, K, A, lda, B, ldb, 0, bias, C, ldc);
}

/* ---- the table ---- */

static void install_once(void) {
  *(void **)&omp_threads = dlsym(RTLD_DEFAULT, "omp_set_num_threads");
  rt_blas_set_whole(gpk_sgemm);
  rt_blas_set_whole_bias(gpk_sgemm_bias);
}

int gpk_enabled(void) {
  const char *e = getenv("LATHE_DNNL");
  return !e || strcmp(e, "0") != 0;
}

gpk_table *gpk_new(int nparams, const int *constant, const int64_t *bytes) {
  if (!gpk_enabled()) return NULL;
  int any = 0;
  for (int i = 0; i < nparams; i++) any |= constant[i] != 0;
  if (!any) return NULL;
  gpk_table *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->nparams = nparams;
  t->constant = malloc((size_t)nparams * sizeof *t->constant);
  t->bytes = malloc((size_t)nparams * sizeof *t->bytes);
  const char *omp = getenv("LATHE_DNNL_OMP");
  t->omp = omp && !strcmp(omp, "1");
  const char *bias = getenv("LATHE_DNNL_BIAS");
  t->bias = !bias || strcmp(bias, "0") != 0;
  const char *cut = getenv("LATHE_DNNL_CUT");
  t->cut = !cut ? 0 : !strcmp(cut, "columns") ? 'c' : !strcmp(cut, "rows") ? 'r' : 0;
  if (!t->constant || !t->bytes || dnnl_engine_create(&t->eng, dnnl_cpu, 0) != dnnl_success) {
    t->eng = NULL;
    gpk_free(t);
    return NULL;
  }
  memcpy(t->constant, constant, (size_t)nparams * sizeof *t->constant);
  memcpy(t->bytes, bytes, (size_t)nparams * sizeof *t->bytes);
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, install_once);
  return t;
}

void gpk_free(gpk_table *t) {
  if (!t) return;
  drop_entries(t);
  if (t->eng) dnnl_engine_destroy(t->eng);
  free(t->constant);
  free(t->bytes);
  free(t);
}

void gpk_enter(gpk_table *t, void *const *params) {
  if (!t) return;
  if (t->stale) drop_entries(t);
  t->params = params;
  current = t;
}

void gpk_leave(gpk_table *t) {
  if (!t) return;
  current = NULL;
  t->params = NULL;
}

void gpk_invalidate(gpk_table *t) {
  if (t) t->stale = 1;
}

long gpk_products(const gpk_table *t) { return t ? t->products : 0; }
long gpk_packings(const gpk_table *t) { return t ? t->packings : 0; }
long gpk_bias_products(const gpk_table *t) { return t ? t->biased : 0; }

#else /* built without oneDNN: OpenBLAS for every product */
#include <stddef.h>

int gpk_enabled(void) { return 0; }
gpk_table *gpk_new(int nparams, const int *constant, const int64_t *bytes) {
  (void)nparams, (void)constant, (void)bytes;
  return NULL;
}
void gpk_free(gpk_table *t) { (void)t; }
void gpk_enter(gpk_table *t, void *const *params) { (void)t, (void)params; }
void gpk_leave(gpk_table *t) { (void)t; }
void gpk_invalidate(gpk_table *t) { (void)t; }
long gpk_products(const gpk_table *t) { (void)t; return 0; }
long gpk_packings(const gpk_table *t) { (void)t; return 0; }
long gpk_bias_products(const gpk_table *t) { (void)t; return 0; }
#endif
