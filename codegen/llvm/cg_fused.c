/* cg_fused.c -- the CPU kernel of a fused elementwise program (IR_FUSED,
 * made by passes/fuse.c): one loop over the result, explicit vectors of the
 * module's width, each input loaded once per element in its broadcast form
 * (ir_bcast_kind_of) and every step applied in registers. The same program
 * also runs as a matrix product's epilogue (cg_fused_epilogue), on the
 * product's values before they are stored. */
#include <stdlib.h>

#include "cg_internal.h"

/* Inputs of the program: input j of the fused node is kernel argument
 * arg[j] (resolved against whichever cg_k emits, so parallel bodies see
 * their own arguments), or the running value when j == cursor. */
typedef struct {
  const ir_node *n;
  int nin, cursor;
  int arg[CG_MAXARGS];
  ir_bcast_kind kind[CG_MAXARGS];
  int64_t m[CG_MAXARGS];
  int from[CG_MAXARGS]; /* >= 0: input j is that member's value (mv) in a multi kernel */
  const V *mv;
} fz_prog;

static void fz_setup(fz_prog *p, const ir_graph *g, const ir_node *n, const int *arg, int cursor) {
  p->n = n, p->nin = n->nin, p->cursor = cursor, p->mv = NULL;
  for (int j = 0; j < n->nin && j < CG_MAXARGS; j++) {
    p->from[j] = -1;
    p->arg[j] = arg ? arg[j] : 1 + j;
    p->kind[j] = ir_bcast_kind_of(&n->shape, &g->nodes[n->in[j]].shape, &p->m[j]);
  }
}

/* Input j at flat element o of the result (w lanes). row and col (both or
 * neither) give o as row * N + col, for the epilogue's per-row/per-column
 * inputs (m == N there, so no division is needed). */
static V fz_load(cg_k *k, const fz_prog *p, int j, V o, V row, V col, int w) {
  V base = k->arg[p->arg[j]];
  switch (p->kind[j]) {
  case IR_BC_FULL: return cg_vld(k, base, o, w);
  case IR_BC_SCALAR: return cg_bcast(k, cg_ldp(k, base, ci(k, 0)), w);
  case IR_BC_SUFFIX: return cg_vld(k, base, col ? col : LLVMBuildURem(k->B, o, ci(k, p->m[j]), ""), w);
  default: return cg_bcast(k, cg_ldp(k, base, row ? row : LLVMBuildUDiv(k->B, o, ci(k, p->m[j]), "")), w);
  }
}

static V fz_min(cg_k *k, V a, V b) { /* torch.minimum: NaN propagates */
  V m = cg_sel(k, cg_fcmp(k, LLVMRealOLT, b, a), b, a);
  return cg_sel(k, cg_fcmp(k, LLVMRealUNO, a, b), cfl(k, a, __builtin_nan("")), m);
}

static V fz_step(cg_k *k, const ir_fstep *st, const ir_attr *at, V x, V y) {
  switch (st->op) {
  case IR_ADD: return cg_fadd(k, x, y);
  case IR_SUB: return cg_fsub(k, x, y);
  case IR_MUL: return cg_fmul(k, x, y);
  case IR_DIV: return cg_fdiv(k, x, y);
  case IR_MINIMUM: return fz_min(k, x, y);
  case IR_UNARY_GRAD: return cg_fmul(k, y, cg_unary_deriv(k, (int)at->i, x, at)); /* dy * f'(x), as e_unary_grad */
  default: return cg_unary_value(k, st->op, x, at);
  }
}

static V fz_eval(cg_k *k, const fz_prog *p, V v, V o, V row, V col, int w) {
  const ir_fusion *f = p->n->fusion;
  V in[CG_MAXARGS], val[IR_FUSE_MAXSTEPS];
  for (int j = 0; j < p->nin; j++)
    in[j] = j == p->cursor ? v : p->from[j] >= 0 ? p->mv[p->from[j]] : fz_load(k, p, j, o, row, col, w);
  for (int s = 0; s < f->nsteps; s++) {
    const ir_fstep *st = &f->step[s];
    V a[2] = {NULL, NULL};
    for (int q = 0; q < st->nin; q++) a[q] = st->arg[q] >= 0 ? in[st->arg[q]] : val[-1 - st->arg[q]];
    val[s] = fz_step(k, st, &f->attr[s], a[0], a[1]);
  }
  return val[f->nsteps - 1];
}

/* ---- the standalone kernel ---- */

typedef struct {
  const fz_prog *p;
  int w;
  int64_t chunk, total;
} fz_loop;

/* The finiteness check of an output's kernel (k->check_finite): the
 * training step's commit needs to know every update is finite, and here
 * the values are in registers, so the test is an and and a compare per
 * vector instead of a second pass over the tensor. bad is an i32 (or i32
 * vector) variable of all-ones lanes where an exponent was all ones. */
static void fz_note(cg_k *k, V bad, V v, int w) {
  LLVMTypeRef it = w > 1 ? LLVMVectorType(k->m->i32, (unsigned)w) : k->m->i32;
  V ex = w > 1 ? cg_splat(k, it, ci32(k, 0x7f800000)) : ci32(k, 0x7f800000);
  V e = LLVMBuildAnd(k->B, LLVMBuildBitCast(k->B, v, it, ""), ex, "");
  V hit = LLVMBuildSExt(k->B, LLVMBuildICmp(k->B, LLVMIntEQ, e, ex, ""), it, "");
  cg_set(k, bad, LLVMBuildOr(k->B, cg_get(k, bad, it), hit, ""));
}

/* *err |= CG_ERR_NONFINITE if any lane of bad is set (atomic: parts of a
 * parallel loop may finish together; only the rare bad path writes). */
static void fz_flag(cg_k *k, V bad, int w) {
  LLVMTypeRef it = w > 1 ? LLVMVectorType(k->m->i32, (unsigned)w) : k->m->i32;
  V b = cg_get(k, bad, it);
  if (w > 1) b = cg_intr(k, "llvm.vector.reduce.or", &b, 1);
  LLVMBasicBlockRef yes = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "nonfinite");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "finite");
  LLVMBuildCondBr(k->B, LLVMBuildICmp(k->B, LLVMIntNE, b, ci32(k, 0), ""), yes, done);
  LLVMPositionBuilderAtEnd(k->B, yes);
  LLVMBuildAtomicRMW(k->B, LLVMAtomicRMWBinOpOr, k->err, ci32(k, CG_ERR_NONFINITE), LLVMAtomicOrderingMonotonic, 0);
  LLVMBuildBr(k->B, done);
  LLVMPositionBuilderAtEnd(k->B, done);
}

static void fz_elems(cg_k *k, const fz_loop *L, V base, V len) {
  int w = L->w;
  LLVMTypeRef vt = LLVMVectorType(k->m->i32, (unsigned)(w > 1 ? w : 2));
  V vbad = k->check_finite && w > 1 ? cg_var(k, vt, LLVMConstNull(vt)) : NULL;
  V sbad = k->check_finite ? cg_var(k, k->m->i32, ci32(k, 0)) : NULL;
  V nv = w > 1 ? LLVMBuildAnd(k->B, len, ci(k, ~(int64_t)(w - 1)), "") : ci(k, 0); /* whole vectors */
  if (w > 1)
    CG_FOR(k, l, ci(k, 0), LLVMBuildUDiv(k->B, nv, ci(k, w), "")) {
      V o = cg_add(k, base, cg_muli(k, l.iv, w)), v = fz_eval(k, L->p, NULL, o, NULL, NULL, w);
      cg_vst(k, k->arg[0], o, v, w);
      if (vbad) fz_note(k, vbad, v, w);
    }
  CG_FOR(k, l, nv, len) {
    V o = cg_add(k, base, l.iv), v = fz_eval(k, L->p, NULL, o, NULL, NULL, 1);
    cg_vst(k, k->arg[0], o, v, 1);
    if (sbad) fz_note(k, sbad, v, 1);
  }
  if (vbad) fz_flag(k, vbad, w);
  if (sbad) fz_flag(k, sbad, 1);
}

static void fz_part(cg_k *k, V i, void *ctx) {
  const fz_loop *L = ctx;
  V base = cg_muli(k, i, L->chunk);
  V rest = LLVMBuildSub(k->B, ci(k, L->total), base, "");
  V len = cg_sel(k, LLVMBuildICmp(k->B, LLVMIntSLT, rest, ci(k, L->chunk), ""), rest, ci(k, L->chunk));
  fz_elems(k, L, base, len);
}

/* The widest vector every input can be loaded with: a per-row or periodic
 * input must not change element (or wrap) inside one vector. */
static int fz_width(const fz_prog *p, int vw) {
  int w = vw > 1 ? vw : 1;
  for (int j = 0; j < p->nin; j++)
    if (p->kind[j] == IR_BC_SUFFIX || p->kind[j] == IR_BC_PREFIX)
      while (w > 1 && p->m[j] % w) w /= 2;
  return w;
}

/* A part is worth a hand-off to the other core at about 64K elements; a
 * sibling loop (an Adam update: seven streams) at 32K, which took the MLP
 * step's 256x256 update from 0.055 ms on one thread to about 0.03. */
enum { FZ_CHUNK = 1 << 15, FZ_GRAIN_CHUNKS = 2, FM_GRAIN_CHUNKS = 1 };

void cg_emit_fused_op(cg_k *k) {
  fz_prog p;
  fz_setup(&p, k->g, k->n, NULL, -1);
  int64_t total = ir_numel(&k->n->shape);
  fz_loop L = {&p, fz_width(&p, k->m->vw), FZ_CHUNK, total};
  int64_t parts = (total + FZ_CHUNK - 1) / FZ_CHUNK;
  if (parts >= 2 * FZ_GRAIN_CHUNKS) cg_parallel_for(k, parts, FZ_GRAIN_CHUNKS, fz_part, &L);
  else fz_elems(k, &L, ci(k, 0), ci(k, total));
}

/* ---- several programs in one loop ---- */

typedef struct {
  const cg_multi *mu;
  fz_prog p[CG_MAXMULTI];
  int w;
  int64_t chunk, total;
} fm_loop;

/* Elements [o, o + w) of every member, in member order, each stored. */
static void fm_vec(cg_k *k, fm_loop *L, V o, int w, V *bad) {
  V mv[CG_MAXMULTI];
  for (int m = 0; m < L->mu->n; m++) {
    L->p[m].mv = mv;
    mv[m] = fz_eval(k, &L->p[m], NULL, o, NULL, NULL, w);
    cg_vst(k, k->arg[L->mu->res[m]], o, mv[m], w);
    if (bad && L->mu->check[m]) fz_note(k, *bad, mv[m], w);
  }
}

static void fm_elems(cg_k *k, fm_loop *L, V base, V len) {
  int w = L->w, check = 0;
  for (int m = 0; m < L->mu->n; m++) check |= L->mu->check[m];
  LLVMTypeRef vt = LLVMVectorType(k->m->i32, (unsigned)(w > 1 ? w : 2));
  V vbad = check && w > 1 ? cg_var(k, vt, LLVMConstNull(vt)) : NULL;
  V sbad = check ? cg_var(k, k->m->i32, ci32(k, 0)) : NULL;
  V nv = w > 1 ? LLVMBuildAnd(k->B, len, ci(k, ~(int64_t)(w - 1)), "") : ci(k, 0);
  if (w > 1)
    CG_FOR(k, l, ci(k, 0), LLVMBuildUDiv(k->B, nv, ci(k, w), "")) fm_vec(k, L, cg_add(k, base, cg_muli(k, l.iv, w)), w, vbad ? &vbad : NULL);
  CG_FOR(k, l, nv, len) fm_vec(k, L, cg_add(k, base, l.iv), 1, sbad ? &sbad : NULL);
  if (vbad) fz_flag(k, vbad, w);
  if (sbad) fz_flag(k, sbad, 1);
}

static void fm_part(cg_k *k, V i, fm_loop *L) {
  V base = cg_muli(k, i, L->chunk);
  V rest = LLVMBuildSub(k->B, ci(k, L->total), base, "");
  fm_elems(k, L, base, cg_sel(k, LLVMBuildICmp(k->B, LLVMIntSLT, rest, ci(k, L->chunk), ""), rest, ci(k, L->chunk)));
}

/* Every group's loop, its parts numbered one after another: part i of the
 * whole is part i - first[g] of the group g whose range holds it. */
typedef struct {
  fm_loop *L;
  int n;
  int64_t *first; /* n + 1 */
} fm_batch;

static void fm_batch_part(cg_k *k, V i, void *ctx) {
  const fm_batch *b = ctx;
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "upd.done");
  for (int g = 0; g < b->n; g++) {
    LLVMBasicBlockRef in = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "upd.group");
    LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "upd.next");
    LLVMBuildCondBr(k->B, LLVMBuildICmp(k->B, LLVMIntSLT, i, ci(k, b->first[g + 1]), ""), in, next);
    LLVMPositionBuilderAtEnd(k->B, in);
    fm_part(k, LLVMBuildSub(k->B, i, ci(k, b->first[g]), ""), &b->L[g]);
    LLVMBuildBr(k->B, done);
    LLVMPositionBuilderAtEnd(k->B, next);
  }
  LLVMBuildBr(k->B, done);
  LLVMPositionBuilderAtEnd(k->B, done);
}

static void fm_setup(cg_k *k, const cg_multi *mu, fm_loop *L) {
  *L = (fm_loop){mu, {{0}}, k->m->vw > 1 ? k->m->vw : 1, FZ_CHUNK, 0};
  for (int m = 0; m < mu->n; m++) {
    const ir_node *n = &k->g->nodes[mu->node[m]];
    int arg[CG_MAXARGS] = {0};
    for (int j = 0; j < n->nin; j++)
      for (int q = 0; q < mu->nin; q++)
        if (mu->in[q] == n->in[j]) arg[j] = mu->inop[q];
    fz_setup(&L->p[m], k->g, n, arg, -1);
    for (int j = 0; j < n->nin; j++)
      for (int q = 0; q < m; q++)
        if (mu->node[q] == n->in[j]) L->p[m].from[j] = q;
    int w = fz_width(&L->p[m], k->m->vw);
    L->w = w < L->w ? w : L->w;
  }
  L->total = ir_numel(&k->g->nodes[mu->node[0]].shape);
}

void cg_emit_fused_multi(cg_k *k, const cg_multi *sib, int nsib) {
  fm_loop *L = calloc((size_t)nsib, sizeof *L);
  int64_t *first = calloc((size_t)nsib + 1, sizeof *first);
  if (!L || !first) { /* no memory for the tables: the groups one after another on this thread */
    fm_loop one;
    for (int g = 0; g < nsib; g++) fm_setup(k, &sib[g], &one), fm_elems(k, &one, ci(k, 0), ci(k, one.total));
    free(L), free(first);
    return;
  }
  for (int g = 0; g < nsib; g++) {
    fm_setup(k, &sib[g], &L[g]);
    first[g + 1] = first[g] + (L[g].total + FZ_CHUNK - 1) / FZ_CHUNK;
  }
  fm_batch b = {L, nsib, first};
  if (first[nsib] >= 2 * FM_GRAIN_CHUNKS) cg_parallel_for(k, first[nsib], FM_GRAIN_CHUNKS, fm_batch_part, &b);
  else
    for (int g = 0; g < nsib; g++) fm_elems(k, &L[g], ci(k, 0), ci(k, L[g].total));
  free(L), free(first);
}

/* ---- as a product's epilogue ---- */

V cg_fused_epilogue(cg_k *k, const ir_node *fz, const int *arg, V v, V row, V col, int w) {
  fz_prog p;
  int cursor = -1;
  int64_t N = fz->shape.d[fz->shape.rank - 1];
  for (int j = 0; j < fz->nin; j++)
    if (arg[j] < 0) cursor = j;
  fz_setup(&p, k->g, fz, arg, cursor);
  V o = cg_add(k, cg_muli(k, row, N), col);
  return fz_eval(k, &p, v, o, row, col, w);
}
