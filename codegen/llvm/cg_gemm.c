/* cg_gemm.c -- the generated matrix product (--gemm generated): what
 * lathe_rt_sgemm computes, emitted as LLVM IR instead of calling OpenBLAS, so
 * a compiled model needs no BLAS (an object for a machine without one,
 * --target aarch64-linux-gnu). Vectors are LLVM vector types of the
 * module's width (cg_mod.vw), so the same code serves every target.
 *
 * Each product becomes one function of its kernel, body(captures, lo, hi,
 * part), over groups of nr rows of C, so the runtime pool splits it by rows
 * (lathe_rt_parallel_for) exactly as lathe_rt_sgemm splits its products; captures
 * holds A, B and C. Inside, C is computed in column panels (outer) and row
 * groups (inner), each tile's accumulators in registers across the whole K
 * loop, so a panel of B stays in cache while every row group of the part
 * streams past it:
 *   B's rows contiguous (tb = 0): tiles of nr rows x nq vectors, one A
 *     element broadcast against nq vectors of a B row per step of k; each
 *     element of C is summed in K order, as the small products of
 *     cg_emit.c's sg_small are;
 *   B transposed (tb = 1, stored [N, K]): tiles of nr rows x nc columns as
 *     dot products along k, vectors of A's and B's rows (contiguous in k)
 *     multiplied lane by lane, the lanes folded in a fixed order at the end.
 * A transposed (ta) is read down its columns one element at a time. Results
 * never depend on the thread count: every element has one owner and one
 * order of summation. */
#include "cg_internal.h"
#include "cg_vec.h"

#include <stdio.h>

typedef struct {
  int ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
  double alpha, beta;
  V A, B, C; /* in the body function */
  int nr;    /* rows per group */
} gm_t;

/* A run of count column blocks of nq vectors of w lanes (nq * w columns
 * each; w = 1 for the dot tiles), the first at column first. */
typedef struct {
  int64_t first, count;
  int nq, w;
} gm_seg;

enum { GM_MAXSEG = 8 };

static V gm_add(cg_k *k, V a, int64_t b) { return cg_add(k, a, ci(k, b)); }

/* alpha, beta and the store of one accumulated value (w lanes) at C[ix] */
static void gm_store(cg_k *k, const gm_t *s, V ix, V v, int w) {
  if (s->alpha != 1.0) v = cg_fmul(k, v, cfl(k, v, s->alpha));
  if (s->beta != 0.0) {
    V old = cg_vld(k, s->C, ix, w);
    v = cg_fadd(k, v, s->beta == 1.0 ? old : cg_fmul(k, old, cfl(k, v, s->beta)));
  }
  cg_vst(k, s->C, ix, v, w);
}

/* index of A[row, kk] in A's storage */
static V gm_aix(cg_k *k, const gm_t *s, V row, V kk) {
  return s->ta ? cg_add(k, cg_muli(k, kk, s->lda), row) : cg_add(k, cg_muli(k, row, s->lda), kk);
}

/* C[row .. row + nr, j0 .. j0 + nq w) with B's rows contiguous: nr * nq
 * vector accumulators, summed in K order. */
static void gm_tile_rows(cg_k *k, const gm_t *s, V row, int nr, V j0, const gm_seg *g) {
  int nq = g->nq, w = g->w;
  LLVMTypeRef t = w > 1 ? LLVMVectorType(k->m->f32, (unsigned)w) : k->m->f32;
  V acc[64], rows[8], b[8];
  for (int q = 0; q < nr * nq; q++) acc[q] = cg_var(k, t, LLVMConstNull(t));
  for (int r = 0; r < nr; r++) rows[r] = gm_add(k, row, r);
  CG_FOR(k, kk, ci(k, 0), ci(k, s->K)) {
    V brow = cg_add(k, cg_muli(k, kk.iv, s->ldb), j0);
    for (int q = 0; q < nq; q++) b[q] = cg_vld(k, s->B, gm_add(k, brow, (int64_t)q * w), w);
    for (int r = 0; r < nr; r++) {
      V a = cg_bcast(k, cg_ldp(k, s->A, gm_aix(k, s, rows[r], kk.iv)), w);
      for (int q = 0; q < nq; q++) {
        V args[3] = {a, b[q], cg_get(k, acc[r * nq + q], t)};
        cg_set(k, acc[r * nq + q], cg_intr(k, "llvm.fmuladd", args, 3));
      }
    }
  }
  for (int r = 0; r < nr; r++)
    for (int q = 0; q < nq; q++)
      gm_store(k, s, gm_add(k, cg_add(k, cg_muli(k, rows[r], s->ldc), j0), (int64_t)q * w),
               cg_get(k, acc[r * nq + q], t), w);
}

/* sum over kk in [k0, k0 + n) of A[row, kk] B^T[kk, col], B stored [N, K]:
 * vectors of w lanes along k into acc (a vector accumulator per tile
 * element) */
static void gm_dot_steps(cg_k *k, const gm_t *s, V *rows, int nr, V *cols, int nc, V *acc, LLVMTypeRef t, int w,
                         int64_t k0, int64_t n) {
  V a[8];
  CG_FOR(k, kv, ci(k, 0), ci(k, n)) {
    V kk = gm_add(k, cg_muli(k, kv.iv, w), k0);
    for (int r = 0; r < nr; r++)
      a[r] = s->ta ? cg_ldp(k, s->A, gm_aix(k, s, rows[r], kk)) : cg_vld(k, s->A, gm_aix(k, s, rows[r], kk), w);
    for (int c = 0; c < nc; c++) {
      V b = cg_vld(k, s->B, cg_add(k, cg_muli(k, cols[c], s->ldb), kk), w);
      for (int r = 0; r < nr; r++) {
        V args[3] = {a[r], b, cg_get(k, acc[r * nc + c], t)};
        cg_set(k, acc[r * nc + c], cg_intr(k, "llvm.fmuladd", args, 3));
      }
    }
  }
}

/* C[row .. row + nr, j0 .. j0 + nc) with B transposed: dot products, whole
 * vectors of k then the scalar rest (a transposed A: scalars throughout). */
static void gm_tile_dots(cg_k *k, const gm_t *s, V row, int nr, V j0, const gm_seg *g) {
  int nc = g->nq, w = s->ta || k->m->vw <= 1 ? 1 : k->m->vw;
  LLVMTypeRef vt = w > 1 ? LLVMVectorType(k->m->f32, (unsigned)w) : k->m->f32, st = k->m->f32;
  V vacc[64], sacc[64], rows[8], cols[8];
  for (int r = 0; r < nr; r++) rows[r] = gm_add(k, row, r);
  for (int c = 0; c < nc; c++) cols[c] = gm_add(k, j0, c);
  for (int q = 0; q < nr * nc; q++) {
    vacc[q] = cg_var(k, vt, LLVMConstNull(vt));
    sacc[q] = cg_var(k, st, LLVMConstNull(st));
  }
  int64_t kv = s->K / w, rest = s->K - kv * w;
  gm_dot_steps(k, s, rows, nr, cols, nc, vacc, vt, w, 0, kv);
  if (rest) gm_dot_steps(k, s, rows, nr, cols, nc, sacc, st, 1, kv * w, rest);
  for (int r = 0; r < nr; r++)
    for (int c = 0; c < nc; c++) {
      V v = cg_vfold(k, cg_get(k, vacc[r * nc + c], vt), cg_fold_add);
      if (rest) v = cg_fadd(k, v, cg_get(k, sacc[r * nc + c], st));
      gm_store(k, s, cg_add(k, cg_muli(k, rows[r], s->ldc), cols[c]), v, 1);
    }
}

/* The tile shapes, by the registers a target has: nr rows x nq vectors
 * (nr * nq accumulators, nq vectors of B and one broadcast of A live at
 * once: 15 of AVX2's 16, 29 of AVX-512's and NEON's 32), or nr x nc dot
 * products (nr * nc accumulators, nr vectors of A and one of B). */
static int gm_rows_per_group(int tb) { return tb ? 4 : 6; }
static int gm_vectors(const cg_mod *m) { return m->vw >= 16 ? 4 : 2; }
static int gm_dot_cols(const cg_mod *m) { return m->vw >= 16 ? 4 : 2; }

/* C's columns as segments: whole blocks, then narrower pieces. */
static int gm_segments(const cg_mod *m, const gm_t *s, gm_seg *seg) {
  int n = 0;
  if (s->tb) {
    int nc = gm_dot_cols(m);
    if (s->N / nc) seg[n++] = (gm_seg){0, s->N / nc, nc, 1};
    if (s->N % nc) seg[n++] = (gm_seg){s->N / nc * nc, 1, (int)(s->N % nc), 1};
    return n;
  }
  int vw = m->vw > 1 ? m->vw : 1, maxq = gm_vectors(m), blk = maxq * vw;
  if (s->N / blk) seg[n++] = (gm_seg){0, s->N / blk, maxq, vw};
  int64_t j = s->N / blk * blk;
  for (int w = vw; w >= 1 && n < GM_MAXSEG; w /= 2) /* the rest: narrower vectors, then scalars */
    while (s->N - j >= w && n < GM_MAXSEG) {
      int nq = (int)((s->N - j) / w < maxq ? (s->N - j) / w : maxq);
      seg[n++] = (gm_seg){j, 1, nq, w};
      j += (int64_t)nq * w;
    }
  return n;
}

typedef void (*gm_tile_fn)(cg_k *k, const gm_t *s, V row, int nr, V j0, const gm_seg *g);

/* groups [lo, hi) of rows, against columns j0 .. of one block of g */
static void gm_groups(cg_k *k, const gm_t *s, V lo, V hi, V j0, const gm_seg *g, gm_tile_fn tile) {
  int64_t full = s->M / s->nr;
  V end = cg_sel(k, LLVMBuildICmp(k->B, LLVMIntSLT, hi, ci(k, full), ""), hi, ci(k, full));
  CG_FOR(k, r, lo, end) tile(k, s, cg_muli(k, r.iv, s->nr), s->nr, j0, g);
  if (s->M % s->nr) /* the last, short group: at most one trip, in the part that owns it */
    CG_FOR(k, r, ci(k, full), hi) tile(k, s, ci(k, full * s->nr), (int)(s->M % s->nr), j0, g);
}

static void gm_body(cg_k *k, const gm_t *s, V lo, V hi) {
  gm_seg seg[GM_MAXSEG];
  int n = gm_segments(k->m, s, seg);
  gm_tile_fn tile = s->tb ? gm_tile_dots : gm_tile_rows;
  for (int i = 0; i < n; i++) {
    int64_t cols = (int64_t)seg[i].nq * seg[i].w;
    if (seg[i].count == 1) {
      gm_groups(k, s, lo, hi, ci(k, seg[i].first), &seg[i], tile);
      continue;
    }
    CG_FOR(k, jb, ci(k, 0), ci(k, seg[i].count)) {
      gm_groups(k, s, lo, hi, gm_add(k, cg_muli(k, jb.iv, cols), seg[i].first), &seg[i], tile);
    }
  }
}

/* The product's function: void f(ptr captures, i64 lo, i64 hi, i32 part)
 * with captures = {A, B, C}. */
static V gm_function(cg_k *k, gm_t s) {
  cg_mod *m = k->m;
  LLVMBasicBlockRef resume = LLVMGetInsertBlock(k->B);
  LLVMTypeRef pt[4] = {m->ptr, m->i64, m->i64, m->i32};
  char name[96];
  snprintf(name, sizeof name, "%s_gemm%d", LLVMGetValueName(k->fn), m->npar++);
  V f = LLVMAddFunction(m->M, name, LLVMFunctionType(m->vd, pt, 4, 0));
  LLVMSetLinkage(f, LLVMInternalLinkage);
  cg_set_fn_attrs(m, f);
  cg_k b = *k;
  b.fn = f;
  b.entry = LLVMAppendBasicBlockInContext(m->C, f, "entry");
  b.part = NULL;
  LLVMPositionBuilderAtEnd(k->B, b.entry);
  LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(m->C, f, "start");
  LLVMBuildBr(k->B, start);
  LLVMPositionBuilderAtEnd(k->B, start);
  V cap = LLVMBuildPointerCast(k->B, LLVMGetParam(f, 0), LLVMPointerType(m->ptr, 0), ""), got[3];
  for (int j = 0; j < 3; j++) {
    V ix = ci(&b, j);
    got[j] = LLVMBuildLoad2(k->B, m->ptr, LLVMBuildGEP2(k->B, m->ptr, cap, &ix, 1, ""), "");
  }
  s.A = got[0], s.B = got[1], s.C = got[2];
  gm_body(&b, &s, LLVMGetParam(f, 1), LLVMGetParam(f, 2));
  LLVMBuildRetVoid(k->B);
  LLVMPositionBuilderAtEnd(k->B, resume);
  return f;
}

/* Products of at least this many multiply-adds go to the pool (about
 * 0.25 ms on one core): handing out parts costs up to 0.16 ms. */
enum { GM_PAR_WORK = 1 << 23 };

void cg_gemm_generated(cg_k *k, int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha, V A, int64_t lda,
                       V Bm, int64_t ldb, double beta, V Cm, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  gm_t s = {ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, NULL, NULL, NULL, gm_rows_per_group(tb)};
  V f = gm_function(k, s);
  cg_mod *m = k->m;
  LLVMTypeRef at = LLVMArrayType(m->ptr, 3);
  V arr = cg_var(k, at, LLVMGetUndef(at)), ptrs[3] = {A, Bm, Cm};
  V arrp = LLVMBuildPointerCast(k->B, arr, LLVMPointerType(m->ptr, 0), "");
  for (int j = 0; j < 3; j++) {
    V ix = ci(k, j);
    LLVMBuildStore(k->B, LLVMBuildPointerCast(k->B, ptrs[j], m->ptr, ""), LLVMBuildGEP2(k->B, m->ptr, arrp, &ix, 1, ""));
  }
  int64_t groups = (M + s.nr - 1) / s.nr, per = (int64_t)s.nr * N * (K > 0 ? K : 1);
  V capv = LLVMBuildPointerCast(k->B, arr, m->ptr, "");
  if (M * N * K >= GM_PAR_WORK) {
    int64_t grain = GM_PAR_WORK / 2 / per > 1 ? GM_PAR_WORK / 2 / per : 1;
    V args[4] = {ci(k, groups), ci(k, grain), LLVMBuildPointerCast(k->B, f, m->ptr, ""), capv};
    cg_call(k, m->parfor, args, 4);
    return;
  }
  LLVMTypeRef pt[4] = {m->ptr, m->i64, m->i64, m->i32};
  V args[4] = {capv, ci(k, 0), ci(k, groups), ci32(k, 0)};
  LLVMBuildCall2(k->B, LLVMFunctionType(m->vd, pt, 4, 0), f, args, 4, "");
}
