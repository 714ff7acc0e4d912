/* cg_vec.c -- vectorised maps and strided reductions (see cg_vec.h). */
#include "cg_vec.h"

#include <math.h>
#include <string.h>

#define BLD (k->B)

static int vwidth(const cg_k *k) { return k->m->vw > 1 ? k->m->vw : 1; }

void cg_unflatten(cg_k *k, V u, int n, const int64_t *d, const int64_t *s1, const int64_t *s2, V *o1, V *o2) {
  V a = ci(k, 0), b = ci(k, 0);
  for (int i = n - 1; i >= 0; i--) {
    V q = u, dig = u;
    if (i > 0) { /* the outermost digit needs no remainder */
      dig = LLVMBuildURem(BLD, u, ci(k, d[i]), "");
      q = LLVMBuildUDiv(BLD, u, ci(k, d[i]), "");
    }
    a = cg_add(k, a, cg_muli(k, dig, s1[i]));
    if (s2) b = cg_add(k, b, cg_muli(k, dig, s2[i]));
    u = q;
  }
  *o1 = a;
  if (o2) *o2 = b;
}

/* ---- elementwise maps ---- */

enum { VMAP_CHUNK = 1 << 13 }; /* elements per unit of a parallel map: a multiple of every vector width */

typedef struct {
  cg_vbody body;
  void *ctx;
  V lo; /* the chunk's first element, in the part's function */
} vmap_t;

static void vmap_shifted(cg_k *k, V i, int w, void *ctx) {
  vmap_t *m = ctx;
  m->body(k, cg_add(k, m->lo, i), w, m->ctx);
}

typedef struct {
  cg_vbody body;
  void *ctx;
  int64_t n;
} vmap_par;

static void vmap_chunk(cg_k *k, V u, void *ctx) {
  vmap_par *p = ctx;
  vmap_t m = {p->body, p->ctx, cg_muli(k, u, VMAP_CHUNK)};
  V left = LLVMBuildSub(BLD, ci(k, p->n), m.lo, "");
  V len = cg_sel(k, LLVMBuildICmp(BLD, LLVMIntSLT, left, ci(k, VMAP_CHUNK), ""), left, ci(k, VMAP_CHUNK));
  cg_vfor(k, len, vmap_shifted, &m);
}

void cg_vmap(cg_k *k, int64_t n, int64_t cost, cg_vbody body, void *ctx) {
  if (cost < 1) cost = 1;
  if (n * cost < CG_PAR_WORK || n <= VMAP_CHUNK) {
    cg_vfor(k, ci(k, n), body, ctx);
    return;
  }
  vmap_par p = {body, ctx, n};
  int64_t units = (n + VMAP_CHUNK - 1) / VMAP_CHUNK, per = (int64_t)VMAP_CHUNK * cost;
  int64_t grain = CG_PAR_WORK / 2 / per > 1 ? CG_PAR_WORK / 2 / per : 1;
  cg_parallel_for(k, units, grain, vmap_chunk, &p);
}

/* ---- reductions over leading axes: column blocks held in registers ---- */

typedef struct {
  const cg_colred *r;
  int xa, ya, nq, w;
  V xoff, j0;
  V acc[16];
  LLVMTypeRef at;
} colblk;

static LLVMTypeRef vec_of(LLVMTypeRef t, int w) { return w > 1 ? LLVMVectorType(t, (unsigned)w) : t; }

static void colblk_row(cg_k *k, V *off, void *ctx) {
  colblk *b = ctx;
  V base = cg_add(k, cg_add(k, b->xoff, off[0]), b->j0);
  for (int q = 0; q < b->nq; q++) {
    V v = cg_vld(k, k->arg[b->xa], cg_add(k, base, ci(k, q * b->w)), b->w), a = cg_get(k, b->acc[q], b->at);
    if (b->r->op == IR_MAX || b->r->op == IR_MIN) v = cg_fext_nan(k, b->r->op, a, v);
    else v = LLVMBuildFAdd(BLD, a, LLVMBuildFPExt(BLD, v, b->at, ""), "");
    cg_set(k, b->acc[q], v);
  }
}

/* y[yoff + j0 + (0 .. nq*w)] from the red nest at x offset xoff */
static void colred_block(cg_k *k, const cg_colred *r, int xa, int ya, V xoff, V yoff, V j0, int nq, int w) {
  colblk b = {r, xa, ya, nq, w, xoff, j0, {0}, NULL};
  int is_max = r->op == IR_MAX || r->op == IR_MIN; /* an extremum, kept in f32 */
  b.at = vec_of(is_max ? k->m->f32 : k->m->f64, w);
  V init = is_max ? cg_splat(k, b.at, cf(k, r->op == IR_MIN ? INFINITY : -INFINITY)) : LLVMConstNull(b.at);
  for (int q = 0; q < nq; q++) b.acc[q] = cg_var(k, b.at, init);
  int64_t st[1][IR_MAXDIM];
  for (int d = 0; d < r->nred; d++) st[0][d] = r->rs[d];
  cg_nest(k, r->nred, r->rd, 1, st, NULL, colblk_row, &b);
  V ybase = cg_add(k, yoff, j0);
  for (int q = 0; q < nq; q++) {
    V v = cg_get(k, b.acc[q], b.at);
    if (!is_max) {
      if (r->op == IR_MEAN) v = LLVMBuildFMul(BLD, v, cg_splat(k, b.at, cd(k, r->scale)), "");
      v = LLVMBuildFPTrunc(BLD, v, vec_of(k->m->f32, w), "");
    }
    cg_vst(k, k->arg[ya], cg_add(k, ybase, ci(k, q * w)), v, w);
  }
}

static int colred_maxq(const cg_k *k) { return vwidth(k) >= 16 ? 8 : 4; } /* double accumulators fill half the registers */

typedef struct {
  const cg_colred *r;
  int xa, ya;
  int64_t nblk, bw;
} colunits;

/* unit u: outer index u / nblk, full column block u % nblk */
static void colred_unit(cg_k *k, V u, void *ctx) {
  colunits *c = ctx;
  V o = u, bl = ci(k, 0), xo, yo;
  if (c->nblk > 1) {
    o = LLVMBuildUDiv(BLD, u, ci(k, c->nblk), "");
    bl = LLVMBuildURem(BLD, u, ci(k, c->nblk), "");
  }
  cg_unflatten(k, o, c->r->nout, c->r->od, c->r->oxs, c->r->oys, &xo, &yo);
  colred_block(k, c->r, c->xa, c->ya, xo, yo, cg_muli(k, bl, c->bw), colred_maxq(k), vwidth(k));
}

static int64_t count_of(int n, const int64_t *d) {
  int64_t p = 1;
  for (int i = 0; i < n; i++) p *= d[i];
  return p;
}

/* the columns after the full blocks: narrower vectors, then scalars */
static void colred_tail(cg_k *k, const cg_colred *r, int xa, int ya, int64_t from) {
  int vw = vwidth(k), maxq = colred_maxq(k);
  CG_FOR(k, o, ci(k, 0), ci(k, count_of(r->nout, r->od))) {
    V xo, yo;
    cg_unflatten(k, o.iv, r->nout, r->od, r->oxs, r->oys, &xo, &yo);
    int64_t j = from;
    for (int w = vw; w >= 1; w /= 2)
      while (r->N - j >= w) {
        int nq = (int)((r->N - j) / w < maxq ? (r->N - j) / w : maxq);
        colred_block(k, r, xa, ya, xo, yo, ci(k, j), nq, w);
        j += (int64_t)nq * w;
      }
  }
}

void cg_emit_colred(cg_k *k, const cg_colred *r, int xa, int ya) {
  int64_t bw = (int64_t)colred_maxq(k) * vwidth(k), nblk = r->N / bw;
  int64_t outer = count_of(r->nout, r->od), red = count_of(r->nred, r->rd);
  if (nblk > 0) {
    colunits c = {r, xa, ya, nblk, bw};
    int64_t units = outer * nblk, per = red * bw;
    if (units >= 2 && units * per >= CG_PAR_WORK) {
      int64_t grain = CG_PAR_WORK / 2 / per > 1 ? CG_PAR_WORK / 2 / per : 1;
      cg_parallel_for(k, units, grain, colred_unit, &c);
    } else {
      CG_FOR(k, u, ci(k, 0), ci(k, units)) colred_unit(k, u.iv, &c);
    }
  }
  if (r->N % bw) colred_tail(k, r, xa, ya, nblk * bw);
}

/* ---- sums over the last axes: vector accumulators along contiguous rows ---- */

typedef struct {
  const cg_colred *r;
  int xa, ya;
  int64_t L;
  V row;
  cg_acc acc;
} rowsum_t;

static void rowsum_elems(cg_k *k, V i, int w, void *ctx) {
  rowsum_t *s = ctx;
  V v = cg_vld(k, s->row, i, w);
  V a = cg_acc_get(k, &s->acc, w);
  cg_acc_set(k, &s->acc, w, LLVMBuildFAdd(BLD, a, LLVMBuildFPExt(BLD, v, vec_of(k->m->f64, w), ""), ""));
}

typedef struct {
  rowsum_t *s;
  V xo;
} rowsum_nest;

static void rowsum_row(cg_k *k, V *off, void *ctx) {
  rowsum_nest *n = ctx;
  n->s->row = cg_fptr(k, k->arg[n->s->xa], cg_add(k, n->xo, off[0]));
  cg_vfor(k, ci(k, n->s->L), rowsum_elems, n->s);
}

static void rowsum_unit(cg_k *k, V u, void *ctx) {
  rowsum_t s = *(rowsum_t *)ctx;
  const cg_colred *r = s.r;
  V xo, yo;
  cg_unflatten(k, u, r->nout, r->od, r->oxs, r->oys, &xo, &yo);
  s.acc = cg_acc_new(k, k->m->f64, 0.0);
  rowsum_nest n = {&s, xo};
  int64_t st[1][IR_MAXDIM];
  for (int d = 0; d < r->nred; d++) st[0][d] = r->rs[d];
  cg_nest(k, r->nred, r->rd, 1, st, NULL, rowsum_row, &n);
  V v = cg_acc_fold(k, &s.acc, cg_fold_add);
  if (r->op == IR_MEAN) v = LLVMBuildFMul(BLD, v, cd(k, r->scale), "");
  cg_stp(k, k->arg[s.ya], yo, cg_tof(k, v));
}

void cg_emit_rowsum(cg_k *k, const cg_colred *r, int64_t L, int xa, int ya) {
  rowsum_t s = {r, xa, ya, L, NULL, {0}};
  int64_t outer = count_of(r->nout, r->od), per = count_of(r->nred, r->rd) * L;
  if (outer >= 2 && outer * per >= CG_PAR_WORK) {
    int64_t grain = CG_PAR_WORK / 2 / per > 1 ? CG_PAR_WORK / 2 / per : 1;
    cg_parallel_for(k, outer, grain, rowsum_unit, &s);
    return;
  }
  CG_FOR(k, u, ci(k, 0), ci(k, outer)) rowsum_unit(k, u.iv, &s);
}

/* ---- rows of a length known at compile time ---- */

cg_row cg_row_of(cg_k *k, int64_t L) {
  cg_row r = {L, vwidth(k), 0, NULL};
  while (r.w > 1 && r.w / 2 >= L) r.w /= 2;
  r.nv = (int)((L + r.w - 1) / r.w);
  if (L % r.w) {
    V m[64];
    for (int i = 0; i < r.w; i++) m[i] = LLVMConstInt(k->m->i1, i < L % r.w, 0);
    r.tail = LLVMConstVector(m, (unsigned)r.w);
  }
  return r;
}

/* llvm.masked.load / store: overloaded on the vector and its pointer type */
static V masked_mem(cg_k *k, const char *name, const cg_row *r, V *args, unsigned n) {
  LLVMTypeRef vt = LLVMVectorType(k->m->f32, (unsigned)r->w), tys[2] = {vt, LLVMPointerType(vt, 0)};
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  V fn = LLVMGetIntrinsicDeclaration(k->m->M, id, tys, 2);
  return LLVMBuildCall2(BLD, LLVMIntrinsicGetType(k->m->C, id, tys, 2), fn, args, n, "");
}

static V row_vptr(cg_k *k, const cg_row *r, V p, V idx) {
  LLVMTypeRef pt = LLVMPointerType(LLVMVectorType(k->m->f32, (unsigned)r->w), 0);
  return LLVMBuildPointerCast(BLD, cg_gep(k, p, k->m->f32, idx), pt, "");
}

V cg_row_ld(cg_k *k, const cg_row *r, V p, V idx, int last) {
  if (!last || !r->tail) return cg_vld(k, p, idx, r->w);
  V args[4] = {row_vptr(k, r, p, idx), ci32(k, 4), r->tail, LLVMConstNull(LLVMVectorType(k->m->f32, (unsigned)r->w))};
  return masked_mem(k, "llvm.masked.load", r, args, 4);
}

void cg_row_st(cg_k *k, const cg_row *r, V p, V idx, V v, int last) {
  if (!last || !r->tail) {
    cg_vst(k, p, idx, v, r->w);
    return;
  }
  V args[4] = {v, row_vptr(k, r, p, idx), ci32(k, 4), r->tail};
  masked_mem(k, "llvm.masked.store", r, args, 4);
}

V cg_row_live(cg_k *k, const cg_row *r, V v, int last, double pad) {
  if (!last || !r->tail) return v;
  return cg_sel(k, r->tail, v, cfl(k, v, pad));
}

V cg_row_lanes(cg_k *k, const cg_row *r, V idx) {
  V i = LLVMBuildTrunc(BLD, idx, k->m->i32, "");
  if (r->w == 1) return i;
  V iota[64];
  for (int l = 0; l < r->w; l++) iota[l] = ci32(k, l);
  return LLVMBuildAdd(BLD, cg_bcast(k, i, r->w), LLVMConstVector(iota, (unsigned)r->w), "");
}

V cg_vfold(cg_k *k, V v, cg_fold_fn f) {
  LLVMTypeRef t = LLVMTypeOf(v);
  if (LLVMGetTypeKind(t) != LLVMVectorTypeKind) return v;
  for (unsigned n = LLVMGetVectorSize(t); n > 1; n /= 2) {
    V lo[32], hi[32];
    for (unsigned i = 0; i < n / 2; i++) lo[i] = ci32(k, i), hi[i] = ci32(k, n / 2 + i);
    V u = LLVMGetUndef(LLVMTypeOf(v));
    V a = LLVMBuildShuffleVector(BLD, v, u, LLVMConstVector(lo, n / 2), "");
    V b = LLVMBuildShuffleVector(BLD, v, u, LLVMConstVector(hi, n / 2), "");
    v = f(k, a, b);
  }
  return LLVMBuildExtractElement(BLD, v, ci32(k, 0), "");
}

void cg_row_each(cg_k *k, const cg_row *r, cg_row_fn body, void *ctx) {
  if (r->nv <= CG_ROW_REGS) {
    for (int j = 0; j < r->nv; j++) body(k, ci(k, (int64_t)j * r->w), j, j == r->nv - 1, ctx);
    return;
  }
  int64_t full = r->L / r->w;
  CG_FOR(k, l, ci(k, 0), ci(k, full)) body(k, cg_muli(k, l.iv, r->w), -1, 0, ctx);
  if (r->tail) body(k, ci(k, full * r->w), -1, 1, ctx);
}

typedef struct {
  cg_rowstat *s;
  V mx, sum, all; /* accumulators: <w x float>, <w x double>, <w x double> */
  LLVMTypeRef ft, dt;
} rowstat_t;

V cg_row_x(cg_k *k, const cg_rowstat *s, V idx, int j, int last) {
  return j >= 0 && s->xv[j] ? s->xv[j] : cg_row_ld(k, &s->r, s->x, idx, last);
}

static void acc_d(cg_k *k, V acc, LLVMTypeRef dt, V f) { /* acc += (double)f */
  cg_set(k, acc, LLVMBuildFAdd(BLD, cg_get(k, acc, dt), LLVMBuildFPExt(BLD, f, dt, ""), ""));
}

static void rowstat_max(cg_k *k, V idx, int j, int last, void *ctx) {
  rowstat_t *t = ctx;
  V x = cg_row_ld(k, &t->s->r, t->s->x, idx, last);
  if (j >= 0) t->s->xv[j] = x;
  cg_set(k, t->mx, cg_fold_max(k, cg_get(k, t->mx, t->ft), cg_row_live(k, &t->s->r, x, last, -INFINITY)));
  if (t->s->all_too) acc_d(k, t->all, t->dt, x); /* dead lanes load as 0 */
}

static V row_e(cg_k *k, const cg_rowstat *s, V x, int last) {
  return cg_row_live(k, &s->r, cg_exp(k, cg_fsub(k, x, cg_bcast(k, s->m, s->r.w))), last, 0.0);
}

static void rowstat_exp(cg_k *k, V idx, int j, int last, void *ctx) {
  rowstat_t *t = ctx;
  cg_rowstat *s = t->s;
  V e = row_e(k, s, cg_row_x(k, s, idx, j, last), last);
  if (j >= 0) s->ev[j] = e;
  else if (s->ey) cg_row_st(k, &s->r, s->ey, idx, e, last);
  acc_d(k, t->sum, t->dt, e);
}

void cg_row_stats(cg_k *k, cg_rowstat *s) {
  int w = s->r.w;
  rowstat_t t = {s, NULL, NULL, NULL, k->m->f32, k->m->f64};
  if (w > 1) t.ft = LLVMVectorType(k->m->f32, (unsigned)w), t.dt = LLVMVectorType(k->m->f64, (unsigned)w);
  for (int j = 0; j < CG_ROW_REGS; j++) s->xv[j] = s->ev[j] = NULL;
  t.mx = cg_var(k, t.ft, cg_splat(k, t.ft, cf(k, -INFINITY)));
  t.sum = cg_var(k, t.dt, LLVMConstNull(t.dt));
  if (s->all_too) t.all = cg_var(k, t.dt, LLVMConstNull(t.dt));
  cg_row_each(k, &s->r, rowstat_max, &t);
  s->m = cg_vfold(k, cg_get(k, t.mx, t.ft), cg_fold_max);
  cg_row_each(k, &s->r, rowstat_exp, &t);
  s->sum = cg_vfold(k, cg_get(k, t.sum, t.dt), cg_fold_add);
  s->all = s->all_too ? cg_vfold(k, cg_get(k, t.all, t.dt), cg_fold_add) : NULL;
}

V cg_row_exp(cg_k *k, const cg_rowstat *s, V idx, int j, int last) {
  if (j >= 0) return s->ev[j];
  if (s->ey) return cg_row_ld(k, &s->r, s->ey, idx, last);
  return row_e(k, s, cg_row_ld(k, &s->r, s->x, idx, last), last);
}

int cg_rows_parallel(int64_t rows, int64_t L, int64_t cost) { return rows >= 2 && rows * L * cost >= CG_PAR_WORK; }

void cg_rows_for(cg_k *k, int64_t rows, int64_t L, int64_t cost, cg_par_body body, void *ctx) {
  if (cg_rows_parallel(rows, L, cost)) {
    int64_t per = L * cost, grain = CG_PAR_WORK / 2 / per > 1 ? CG_PAR_WORK / 2 / per : 1;
    cg_parallel_for(k, rows, grain, body, ctx);
    return;
  }
  CG_FOR(k, r, ci(k, 0), ci(k, rows)) body(k, r.iv, ctx);
}

V cg_any_label(cg_k *k, int a, int64_t rows, int64_t v) {
  V hit = cg_var(k, k->m->i1, LLVMConstInt(k->m->i1, 0, 0));
  CG_FOR(k, r, ci(k, 0), ci(k, rows)) {
    V eq = LLVMBuildICmp(BLD, LLVMIntEQ, cg_ldi(k, a, r.iv), ci(k, v), "");
    cg_set(k, hit, LLVMBuildOr(BLD, cg_get(k, hit, k->m->i1), eq, ""));
  }
  return cg_get(k, hit, k->m->i1);
}

void cg_if_else(cg_k *k, V cond, void (*yes)(cg_k *k), void (*no)(cg_k *k)) {
  LLVMBasicBlockRef y = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "then");
  LLVMBasicBlockRef n = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "else");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "endif");
  LLVMBuildCondBr(BLD, cond, y, n);
  LLVMPositionBuilderAtEnd(BLD, y);
  yes(k);
  LLVMBuildBr(BLD, done);
  LLVMPositionBuilderAtEnd(BLD, n);
  no(k);
  LLVMBuildBr(BLD, done);
  LLVMPositionBuilderAtEnd(BLD, done);
}

void cg_check_labels(cg_k *k, int a, int64_t rows, int64_t C) {
  V bad = cg_var(k, k->m->i1, LLVMConstInt(k->m->i1, 0, 0));
  CG_FOR(k, r, ci(k, 0), ci(k, rows)) {
    V out = LLVMBuildICmp(BLD, LLVMIntUGE, cg_ldi(k, a, r.iv), ci(k, C), "");
    cg_set(k, bad, LLVMBuildOr(BLD, cg_get(k, bad, k->m->i1), out, ""));
  }
  cg_flag_err(k, cg_get(k, bad, k->m->i1), 2);
}
