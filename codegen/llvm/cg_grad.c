/* cg_grad.c -- CPU kernels for the backward-pass ops (the IR_CAT_GRAD rows of
 * ops.def), in the vocabulary of cg_emit.c. cg_ops.c's table sends every
 * backward op to cg_emit_grad, which looks the op up in cg_grad_ops. Layouts
 * and tie rules are the reference kernels' (ir/interp_grad.c); sums run in
 * double as the reference does. The hot ones are explicit vector code:
 * sum_to (cg_vec.c's strided sums), unary_grad (cg_vec.c's maps),
 * layernorm_grad, cross_entropy_grad (cg_vec.c's rows), pool2d_grad (cg_pool.c)
 * and the convolutions (cg_conv.c);
 * the rest are plain scalar loops, written to be checked.
 */
#include "cg_internal.h"
#include "cg_vec.h"
#include "ir/conv.h"

#include <math.h>

#define BLD (k->B)
#define ARG(j) (k->arg[1 + (j)])
#define SH(j) (k->sh[1 + (j)])
#define OUT (k->arg[0])

static int64_t dims(const ir_shape *s, int lo, int hi) {
  int64_t p = 1;
  for (int i = lo; i < hi; i++) p *= s->d[i];
  return p;
}

/* out[i] += v */
static void acc_out(cg_k *k, V i, V v) { cg_stp(k, OUT, i, cg_fadd(k, cg_ldp(k, OUT, i), v)); }

static void zero_out(cg_k *k) {
  CG_FOR(k, l, ci(k, 0), ci(k, ir_numel(&k->n->shape))) cg_stp(k, OUT, l.iv, cf(k, 0));
}

/* ---- broadcasting ---- */

/* x's axes in groups of adjacent axes that are all reduced (the result has
 * 1 or nothing there) or all kept, size-1 axes dropped; merged, since x is
 * contiguous. Kept axes that follow one another are contiguous in the
 * result too. If the last group is kept, its elements are columns summed
 * over the reduced groups (cg_emit_colred); else each result element sums
 * rows of the last group (cg_emit_rowsum). Sums in double, in x's order
 * along the reduced axes, as the reference. */
static void e_sum_to(cg_k *k) {
  const ir_shape *sx = SH(0), *so = &k->n->shape;
  int64_t xst[IR_MAXDIM], ost[IR_MAXDIM];
  cg_contig_strides(sx, xst);
  cg_bcast_strides(sx, so, ost); /* 0 on the axes the result broadcast along */
  cg_colred r = {0};
  r.op = IR_SUM;
  int last = -1; /* class of the last group: 0 kept, 1 reduced */
  for (int d = 0; d < sx->rank; d++) {
    if (sx->d[d] == 1) continue;
    int j = d - (sx->rank - so->rank), red = j < 0 || so->d[j] == 1;
    if (red && last == 1) r.rd[r.nred - 1] *= sx->d[d], r.rs[r.nred - 1] = xst[d];
    else if (red) r.rd[r.nred] = sx->d[d], r.rs[r.nred++] = xst[d];
    else if (last == 0) r.od[r.nout - 1] *= sx->d[d], r.oxs[r.nout - 1] = xst[d], r.oys[r.nout - 1] = ost[d];
    else r.od[r.nout] = sx->d[d], r.oxs[r.nout] = xst[d], r.oys[r.nout++] = ost[d];
    last = red;
  }
  if (last == 1) { /* rows: the last reduced group is contiguous */
    int64_t L = r.rd[--r.nred];
    cg_emit_rowsum(k, &r, L, 1, 0);
    return;
  }
  r.N = 1;
  if (last == 0) r.N = r.od[--r.nout]; /* its strides are 1 in x and out */
  cg_emit_colred(k, &r, 1, 0);
}

static void copy_body(cg_k *k, V *off, void *ctx) {
  (void)ctx;
  cg_stp(k, OUT, off[0], cg_ldf(k, 1, off[1]));
}

static void e_broadcast_to(cg_k *k) {
  const ir_shape *o = &k->n->shape;
  int64_t st[2][IR_MAXDIM];
  cg_contig_strides(o, st[0]);
  cg_bcast_strides(o, SH(0), st[1]);
  cg_nest(k, o->rank, o->d, 2, st, NULL, copy_body, NULL);
}

/* ---- elementwise: f'(x) per forward op, defined once here ----
 * Generic over f32 and <N x float> x (constants through cfl), except
 * d_pow's powf call: unary_grad runs them as explicit vector loops. */

typedef V (*cg_deriv)(cg_k *k, V x, const ir_attr *a);

#define C(v) cfl(k, x, (v))

static V d_relu(cg_k *k, V x, const ir_attr *a) { (void)a; return cg_sel(k, cg_fcmp(k, LLVMRealOGT, x, C(0)), C(1), C(0)); }
static V d_leaky(cg_k *k, V x, const ir_attr *a) { return cg_sel(k, cg_fcmp(k, LLVMRealOGE, x, C(0)), C(1), C(a->f)); }
static V d_sigmoid(cg_k *k, V x, const ir_attr *a) {
  (void)a;
  V s = cg_sigmoid(k, x);
  return cg_fmul(k, s, cg_fsub(k, C(1), s));
}
static V d_tanh(cg_k *k, V x, const ir_attr *a) {
  (void)a;
  V t = cg_tanh(k, x);
  return cg_fsub(k, C(1), cg_fmul(k, t, t));
}
/* exact: Phi(x) + x phi(x), Phi = 0.5 erfc(-x / sqrt2); tanh form as the reference */
static V d_gelu(cg_k *k, V x, const ir_attr *a) {
  V x2 = cg_fmul(k, x, x);
  if (!a->approx) {
    V phi = cg_fmul(k, C(0.39894228040143267794), cg_exp(k, cg_fmul(k, C(-0.5), x2)));
    V Phi = cg_fmul(k, C(0.5), cg_erfc(k, cg_fmul(k, x, C(-0.70710678118654752440))));
    return cg_fadd(k, Phi, cg_fmul(k, x, phi));
  }
  V c = C(0.79788456080286535588);
  V t = cg_tanh(k, cg_fmul(k, c, cg_fadd(k, x, cg_fmul(k, C(0.044715), cg_fmul(k, x2, x)))));
  V left = cg_fmul(k, C(0.5), cg_fadd(k, C(1), t));
  V du = cg_fmul(k, c, cg_fadd(k, C(1), cg_fmul(k, C(3 * 0.044715), x2)));
  return cg_fadd(k, left, cg_fmul(k, cg_fmul(k, cg_fmul(k, C(0.5), x), cg_fsub(k, C(1), cg_fmul(k, t, t))), du));
}
static V d_swish(cg_k *k, V x, const ir_attr *a) {
  (void)a;
  V s = cg_sigmoid(k, x);
  return cg_fadd(k, s, cg_fmul(k, cg_fmul(k, x, s), cg_fsub(k, C(1), s)));
}
static V d_exp(cg_k *k, V x, const ir_attr *a) { (void)a; return cg_exp(k, x); }
static V d_log(cg_k *k, V x, const ir_attr *a) { (void)a; return cg_fdiv(k, C(1), x); }
static V d_sqrt(cg_k *k, V x, const ir_attr *a) { (void)a; return cg_fdiv(k, C(0.5), cg_sqrt(k, x)); }
static V d_abs(cg_k *k, V x, const ir_attr *a) {
  (void)a;
  V pos = cg_fcmp(k, LLVMRealOGT, x, C(0)), neg = cg_fcmp(k, LLVMRealOLT, x, C(0));
  return cg_sel(k, pos, C(1), cg_sel(k, neg, C(-1), C(0)));
}
static V d_neg(cg_k *k, V x, const ir_attr *a) { (void)a; return C(-1); }
static V d_pow(cg_k *k, V x, const ir_attr *a) { /* scalar x unless the exponent is 0, 1 or 2 */
  if (a->f == 0) return C(0);
  if (a->f == 1) return C(1);
  if (a->f == 2) return cg_fmul(k, C(2), x);
  V args[2] = {x, cf(k, a->f - 1)};
  return cg_fmul(k, cf(k, a->f), cg_call(k, k->m->powf_, args, 2));
}
static V d_clamp(cg_k *k, V x, const ir_attr *a) { /* 1 where lo <= x <= hi: NaN gives 0 */
  V in = LLVMBuildAnd(BLD, cg_fcmp(k, LLVMRealOGE, x, cfl(k, x, a->f)), cg_fcmp(k, LLVMRealOLE, x, cfl(k, x, a->f2)), "");
  return cg_sel(k, in, cfl(k, x, 1), cfl(k, x, 0));
}
static V d_one(cg_k *k, V x, const ir_attr *a) { (void)a; return C(1); }

#undef C

static const cg_deriv derivs[IR_NOPS] = {
  [IR_RELU] = d_relu, [IR_LEAKY_RELU] = d_leaky, [IR_SIGMOID] = d_sigmoid, [IR_TANH] = d_tanh,
  [IR_GELU] = d_gelu, [IR_SWISH] = d_swish,      [IR_EXP] = d_exp,         [IR_LOG] = d_log,
  [IR_SQRT] = d_sqrt, [IR_ABS] = d_abs,          [IR_NEG] = d_neg,         [IR_POW] = d_pow,
  [IR_DROPOUT] = d_one,     [IR_CLAMP] = d_clamp,
};

/* per-element cost of dy * f'(x) (cg_vmap's unit: a load, an add, a store) */
static const unsigned char deriv_cost[IR_NOPS] = {
  [IR_RELU] = 1, [IR_LEAKY_RELU] = 1, [IR_SIGMOID] = 8, [IR_TANH] = 10, [IR_GELU] = 14, [IR_SWISH] = 8,
  [IR_EXP] = 6,  [IR_LOG] = 2,        [IR_SQRT] = 3,    [IR_ABS] = 1,   [IR_NEG] = 1,   [IR_POW] = 1,
  [IR_DROPOUT] = 1,     [IR_CLAMP] = 1,
};

/* f'(x) of a unary map on f32 or a vector: fused programs (cg_fused.c) apply it too */
V cg_unary_deriv(cg_k *k, int op, V x, const ir_attr *a) { return derivs[op](k, x, a); }

static void unary_grad_vec(cg_k *k, V i, int w, void *ctx) {
  const ir_attr *a = ctx;
  V d = derivs[a->i](k, cg_vld(k, ARG(0), i, w), a);
  cg_vst(k, OUT, i, cg_fmul(k, cg_vld(k, ARG(1), i, w), d), w);
}

static void e_unary_grad(cg_k *k) {
  int op = (int)k->n->attr.i;
  int64_t n = ir_numel(&k->n->shape);
  if (op == IR_POW && k->n->attr.f != 0 && k->n->attr.f != 1 && k->n->attr.f != 2) { /* powf: scalar */
    CG_FOR(k, l, ci(k, 0), ci(k, n))
      cg_stp(k, OUT, l.iv, cg_fmul(k, cg_ldf(k, 2, l.iv), d_pow(k, cg_ldf(k, 1, l.iv), &k->n->attr)));
    return;
  }
  cg_vmap(k, n, deriv_cost[op], unary_grad_vec, (void *)&k->n->attr);
}

/* ---- softmax family and max: [outer, len, inner] around the axis ---- */

static void e_softmax_grad(cg_k *k) {
  const ir_shape *s = &k->n->shape;
  int ax = (int)k->n->attr.axis, as_log = k->n->op == IR_LOG_SOFTMAX_GRAD;
  int64_t outer = dims(s, 0, ax), len = s->d[ax], inner = dims(s, ax + 1, s->rank);
  V dot = cg_var(k, k->m->f64, cd(k, 0));
  CG_FOR(k, o, ci(k, 0), ci(k, outer)) CG_FOR(k, i, ci(k, 0), ci(k, inner)) {
    V base = cg_add(k, cg_muli(k, o.iv, len * inner), i.iv);
    cg_set(k, dot, cd(k, 0));
    CG_FOR(k, l, ci(k, 0), ci(k, len)) {
      V e = cg_add(k, base, cg_muli(k, l.iv, inner)), dy = cg_ldf(k, 2, e);
      V t = as_log ? dy : cg_fmul(k, dy, cg_ldf(k, 1, e));
      cg_set(k, dot, LLVMBuildFAdd(BLD, cg_get(k, dot, k->m->f64), cg_tod(k, t), ""));
    }
    V d = cg_tof(k, cg_get(k, dot, k->m->f64));
    CG_FOR(k, l, ci(k, 0), ci(k, len)) {
      V e = cg_add(k, base, cg_muli(k, l.iv, inner)), y = cg_ldf(k, 1, e), dy = cg_ldf(k, 2, e);
      cg_stp(k, OUT, e, as_log ? cg_fsub(k, dy, cg_fmul(k, cg_exp(k, y), d)) : cg_fmul(k, y, cg_fsub(k, dy, d)));
    }
  }
}

static void e_max_grad(cg_k *k) {
  const ir_shape *sx = SH(0);
  int64_t outer = 1, len = ir_numel(sx), inner = 1;
  if (k->n->attr.axis >= 0) {
    int ax = (int)k->n->attr.axis;
    outer = dims(sx, 0, ax), len = sx->d[ax], inner = dims(sx, ax + 1, sx->rank);
  }
  V done = cg_var(k, k->m->i1, LLVMConstInt(k->m->i1, 0, 0));
  CG_FOR(k, o, ci(k, 0), ci(k, outer)) CG_FOR(k, i, ci(k, 0), ci(k, inner)) {
    V r = cg_add(k, cg_muli(k, o.iv, inner), i.iv), m = cg_ldf(k, 2, r), dy = cg_ldf(k, 3, r);
    cg_set(k, done, LLVMConstInt(k->m->i1, 0, 0));
    CG_FOR(k, l, ci(k, 0), ci(k, len)) {
      V e = cg_add(k, cg_add(k, cg_muli(k, o.iv, len * inner), cg_muli(k, l.iv, inner)), i.iv), x = cg_ldf(k, 1, e);
      V same = LLVMBuildOr(BLD, cg_fcmp(k, LLVMRealOEQ, x, m),
                           LLVMBuildAnd(BLD, cg_fcmp(k, LLVMRealUNO, x, x), cg_fcmp(k, LLVMRealUNO, m, m), ""), "");
      V hit = LLVMBuildAnd(BLD, same, LLVMBuildNot(BLD, cg_get(k, done, k->m->i1), ""), "");
      cg_stp(k, OUT, e, cg_sel(k, hit, dy, cf(k, 0)));
      cg_set(k, done, LLVMBuildOr(BLD, hit, cg_get(k, done, k->m->i1), ""));
    }
  }
}

/* ---- layernorm: statistics in double, as the reference ----
 * Per row of d: the mean, then one pass for the variance and (dx) the sums
 * of g = dy * w and g * (x - mean), then the result; explicit vector code
 * with double accumulators. dw sums rows into a double array on the stack
 * (f32 into the result when d is too big for the stack). */

enum { LN_DW_STACK = 8192 }; /* most columns summed on the stack (64 KB) */

typedef struct {
  int64_t d;
  int dw, resid;      /* resid: the result is dx + argument 4 (a residual gradient) */
  V x, dy, out, r;    /* the row in x, dy, the result and (resid) argument 4 */
  V mean, inv, m1, m2; /* doubles */
  V dacc;             /* dw: double[d] on the stack, or NULL: f32 sums in the result */
  cg_acc sum, sq, mg, mgc;
} lng_ctx;

static LLVMTypeRef dvec(cg_k *k, int w) { return w > 1 ? LLVMVectorType(k->m->f64, (unsigned)w) : k->m->f64; }
static V ldd(cg_k *k, V p, V i, int w) { return LLVMBuildFPExt(BLD, cg_vld(k, p, i, w), dvec(k, w), ""); }
static V dadd(cg_k *k, V a, V b) { return LLVMBuildFAdd(BLD, a, b, ""); }
static V dsub(cg_k *k, V a, V b) { return LLVMBuildFSub(BLD, a, b, ""); }
static V dmul(cg_k *k, V a, V b) { return LLVMBuildFMul(BLD, a, b, ""); }
static void acc_add(cg_k *k, cg_acc *a, int w, V v) { cg_acc_set(k, a, w, dadd(k, cg_acc_get(k, a, w), v)); }

/* w doubles at ((double *)p)[i] */
static V dptr(cg_k *k, V p, V i, int w) {
  return LLVMBuildPointerCast(BLD, cg_gep(k, p, k->m->f64, i), LLVMPointerType(dvec(k, w), 0), "");
}

static void lng_sum(cg_k *k, V i, int w, void *ctx) {
  lng_ctx *c = ctx;
  acc_add(k, &c->sum, w, ldd(k, c->x, i, w));
}

static void lng_stats(cg_k *k, V i, int w, void *ctx) {
  lng_ctx *c = ctx;
  V xc = dsub(k, ldd(k, c->x, i, w), cg_bcast(k, c->mean, w));
  acc_add(k, &c->sq, w, dmul(k, xc, xc));
  if (c->dw) return;
  V g = dmul(k, ldd(k, c->dy, i, w), ldd(k, ARG(1), i, w));
  acc_add(k, &c->mg, w, g);
  acc_add(k, &c->mgc, w, dmul(k, g, xc));
}

/* dx = inv (g - mean(g) - xh mean(g xh)) */
static void lng_dx(cg_k *k, V i, int w, void *ctx) {
  lng_ctx *c = ctx;
  V inv = cg_bcast(k, c->inv, w);
  V g = dmul(k, ldd(k, c->dy, i, w), ldd(k, ARG(1), i, w));
  V xh = dmul(k, dsub(k, ldd(k, c->x, i, w), cg_bcast(k, c->mean, w)), inv);
  V dx = dmul(k, inv, dsub(k, dsub(k, g, cg_bcast(k, c->m1, w)), dmul(k, xh, cg_bcast(k, c->m2, w))));
  V f = LLVMBuildFPTrunc(BLD, dx, w > 1 ? LLVMVectorType(k->m->f32, (unsigned)w) : k->m->f32, "");
  cg_vst(k, c->out, i, c->resid ? cg_fadd(k, cg_vld(k, c->r, i, w), f) : f, w); /* as add(r, dx) would */
}

/* dw[j] += dy xh */
static void lng_dw(cg_k *k, V i, int w, void *ctx) {
  lng_ctx *c = ctx;
  V xh = dmul(k, dsub(k, ldd(k, c->x, i, w), cg_bcast(k, c->mean, w)), cg_bcast(k, c->inv, w));
  V p = dmul(k, ldd(k, c->dy, i, w), xh);
  if (!c->dacc) { /* f32 sums in the result */
    V f = LLVMBuildFPTrunc(BLD, p, w > 1 ? LLVMVectorType(k->m->f32, (unsigned)w) : k->m->f32, "");
    cg_vst(k, OUT, i, cg_fadd(k, cg_vld(k, OUT, i, w), f), w);
    return;
  }
  V at = dptr(k, c->dacc, i, w);
  V old = LLVMBuildLoad2(BLD, dvec(k, w), at, "");
  LLVMSetAlignment(old, 8);
  LLVMSetAlignment(LLVMBuildStore(BLD, dadd(k, old, p), at), 8);
}

/* one row: r an i64 value; c->dw, c->d and c->dacc set */
static void lng_row(cg_k *k, V r, lng_ctx *c) {
  V base = cg_muli(k, r, c->d), n = ci(k, c->d);
  double d = (double)c->d;
  LLVMTypeRef f64 = k->m->f64;
  c->x = cg_fptr(k, ARG(0), base), c->dy = cg_fptr(k, ARG(2), base), c->out = cg_fptr(k, OUT, base);
  if (c->resid) c->r = cg_fptr(k, ARG(3), base);
  c->sum = cg_acc_new(k, f64, 0.0), c->sq = cg_acc_new(k, f64, 0.0);
  c->mg = cg_acc_new(k, f64, 0.0), c->mgc = cg_acc_new(k, f64, 0.0);
  cg_vfor(k, n, lng_sum, c);
  c->mean = LLVMBuildFDiv(BLD, cg_acc_fold(k, &c->sum, cg_fold_add), cd(k, d), "");
  cg_vfor(k, n, lng_stats, c);
  V var = dadd(k, LLVMBuildFDiv(BLD, cg_acc_fold(k, &c->sq, cg_fold_add), cd(k, d), ""), cd(k, k->n->attr.f));
  c->inv = LLVMBuildFDiv(BLD, cd(k, 1), cg_sqrt(k, var), "");
  if (c->dw) {
    cg_vfor(k, n, lng_dw, c);
    return;
  }
  c->m1 = LLVMBuildFDiv(BLD, cg_acc_fold(k, &c->mg, cg_fold_add), cd(k, d), "");
  c->m2 = LLVMBuildFDiv(BLD, dmul(k, cg_acc_fold(k, &c->mgc, cg_fold_add), c->inv), cd(k, d), "");
  cg_vfor(k, n, lng_dx, c);
}

static void lng_unit(cg_k *k, V r, void *ctx) {
  lng_ctx c = *(lng_ctx *)ctx;
  lng_row(k, r, &c);
}

/* double[n] on the stack (an alloca in the entry block), zeroed here */
static V stack_doubles(cg_k *k, int64_t n) {
  LLVMBasicBlockRef cur = LLVMGetInsertBlock(BLD);
  V first = LLVMGetFirstInstruction(k->entry);
  if (first) LLVMPositionBuilderBefore(BLD, first);
  else LLVMPositionBuilderAtEnd(BLD, k->entry);
  V a = LLVMBuildArrayAlloca(BLD, k->m->f64, ci(k, n), "");
  LLVMSetAlignment(a, 64);
  LLVMPositionBuilderAtEnd(BLD, cur);
  V p = LLVMBuildPointerCast(BLD, a, k->m->ptr, "");
  LLVMBuildMemSet(BLD, p, LLVMConstInt(k->m->i8, 0, 0), ci(k, 8 * n), 64);
  return p;
}

static void dacc_out(cg_k *k, V i, int w, void *ctx) {
  V v = LLVMBuildLoad2(BLD, dvec(k, w), dptr(k, ((lng_ctx *)ctx)->dacc, i, w), "");
  LLVMSetAlignment(v, 8);
  cg_vst(k, OUT, i, LLVMBuildFPTrunc(BLD, v, w > 1 ? LLVMVectorType(k->m->f32, (unsigned)w) : k->m->f32, ""), w);
}

static void e_layernorm_grad(cg_k *k) {
  const ir_shape *sx = SH(0);
  lng_ctx c = {0};
  c.d = sx->d[sx->rank - 1], c.dw = k->n->attr.i == 1;
  int64_t rows = ir_numel(sx) / c.d;
  if (!c.dw) { /* rows are independent: split across the pool when big */
    int64_t per = c.d * 12, grain = CG_PAR_WORK / 2 / per > 1 ? CG_PAR_WORK / 2 / per : 1;
    if (rows * per >= CG_PAR_WORK) cg_parallel_for(k, rows, grain, lng_unit, &c);
    else CG_FOR(k, r, ci(k, 0), ci(k, rows)) lng_unit(k, r.iv, &c);
    return;
  }
  if (c.d <= LN_DW_STACK) c.dacc = stack_doubles(k, c.d);
  else zero_out(k);
  CG_FOR(k, r, ci(k, 0), ci(k, rows)) lng_row(k, r.iv, &c);
  if (c.dacc) cg_vfor(k, ci(k, c.d), dacc_out, &c);
}

/* dx of layernorm plus the residual gradient that the add after it sums
 * with (the plan's find_residual_norms, plan/plan_group.c): arguments out, x, w, dy, r; out =
 * r + dx, stored once instead of dx being stored and read back by an add.
 * Split over the pool from 64K elements, as the forward's add+layernorm. */
void cg_emit_layernorm_grad_add(cg_k *k) {
  const ir_shape *sx = SH(0);
  lng_ctx c = {0};
  c.d = sx->d[sx->rank - 1], c.resid = 1;
  int64_t rows = ir_numel(sx) / c.d, grain = (1 << 15) / c.d > 1 ? (1 << 15) / c.d : 1;
  if (rows >= 2 * grain) cg_parallel_for(k, rows, grain, lng_unit, &c);
  else CG_FOR(k, r, ci(k, 0), ci(k, rows)) lng_unit(k, r.iv, &c);
}

/* ---- convolution: the forward loops with the products sent back ---- */

static void conv_back(cg_k *k, const ir_shape *sx, const ir_shape *sw, int which) {
  ir_conv d;
  char msg[256];
  if (ir_conv_geom(sx, sw, &k->n->attr, &d, msg, sizeof msg)) IR_UNREACHABLE("conv_back: not a convolution");
  int64_t C = d.C, H = d.H, W = d.W, O = d.O, OH = d.OH, OW = d.OW, s = d.s, dil = d.dil;
  int dy_arg = which == 0 ? 1 : 2, other = which == 0 ? 2 : 1; /* dx: (dy, w); dw: (x, dy) */
  if (cg_emit_conv_grad(k)) return; /* f32: im2col GEMMs (cg_conv.c); the loops below are the fallback */
  zero_out(k);
  CG_FOR(k, n, ci(k, 0), ci(k, d.N)) CG_FOR(k, gr, ci(k, 0), ci(k, d.G)) CG_FOR(k, og, ci(k, 0), ci(k, d.Og))
    CG_FOR(k, oy, ci(k, 0), ci(k, OH)) CG_FOR(k, ox, ci(k, 0), ci(k, OW)) {
      V o = cg_add(k, cg_muli(k, gr.iv, d.Og), og.iv);
      V g = cg_ldf(k, dy_arg, cg_add(k, cg_muli(k, cg_add(k, cg_muli(k, cg_add(k, cg_muli(k, n.iv, O), o), OH), oy.iv), OW), ox.iv));
      CG_FOR(k, cg, ci(k, 0), ci(k, d.Cg)) CG_FOR(k, ky, ci(k, 0), ci(k, d.KH)) CG_FOR(k, kx, ci(k, 0), ci(k, d.KW)) {
        V c = cg_add(k, cg_muli(k, gr.iv, d.Cg), cg.iv);
        V y = LLVMBuildSub(BLD, cg_add(k, cg_muli(k, oy.iv, s), cg_muli(k, ky.iv, dil)), ci(k, d.padT), "");
        V x = LLVMBuildSub(BLD, cg_add(k, cg_muli(k, ox.iv, s), cg_muli(k, kx.iv, dil)), ci(k, d.padL), "");
        V in = LLVMBuildAnd(BLD, LLVMBuildICmp(BLD, LLVMIntULT, y, ci(k, H), ""),
                            LLVMBuildICmp(BLD, LLVMIntULT, x, ci(k, W), ""), "");
        V xi = cg_add(k, cg_muli(k, cg_add(k, cg_muli(k, cg_add(k, cg_muli(k, n.iv, C), c), H), y), W), x);
        xi = cg_sel(k, in, xi, ci(k, 0));
        V wi = cg_add(k, cg_muli(k, cg_add(k, cg_muli(k, cg_add(k, cg_muli(k, o, d.Cg), cg.iv), d.KH), ky.iv), d.KW), kx.iv);
        V prod = cg_fmul(k, g, cg_ldf(k, other, which == 0 ? wi : xi));
        V at = which == 0 ? xi : wi;
        acc_out(k, at, cg_sel(k, in, prod, cf(k, 0)));
      }
    }
}

static void e_conv2d_grad_input(cg_k *k) { conv_back(k, &k->n->shape, SH(1), 0); }
static void e_conv2d_grad_weight(cg_k *k) { conv_back(k, SH(0), &k->n->shape, 1); }

static void e_pool2d_grad(cg_k *k) {
  ir_pool p = ir_pool_geom(SH(0), &k->n->attr); /* ir/conv.h: 1-d is H = KH = 1 */
  int64_t planes = p.planes, H = p.H, W = p.W, OH = p.OH, OW = p.OW, s = p.s;
  int is_max = k->n->attr.i == IR_MAXPOOL2D;
  if (cg_emit_pool_tiled(k, is_max, 1)) return; /* vector code when the windows tile the image */
  zero_out(k);
  V best = cg_var(k, k->m->f32, cf(k, 0)), at = cg_var(k, k->m->i64, ci(k, -1));
  CG_FOR(k, pl, ci(k, 0), ci(k, planes)) CG_FOR(k, oy, ci(k, 0), ci(k, OH)) CG_FOR(k, ox, ci(k, 0), ci(k, OW)) {
    V g = cg_ldf(k, 2, cg_add(k, cg_muli(k, cg_add(k, cg_muli(k, pl.iv, OH), oy.iv), OW), ox.iv));
    V base = cg_add(k, cg_muli(k, cg_add(k, cg_muli(k, pl.iv, H), cg_muli(k, oy.iv, s)), W), cg_muli(k, ox.iv, s));
    cg_set(k, at, ci(k, -1));
    CG_FOR(k, ky, ci(k, 0), ci(k, p.KH)) CG_FOR(k, kx, ci(k, 0), ci(k, p.KW)) {
      V e = cg_add(k, base, cg_add(k, cg_muli(k, ky.iv, W), kx.iv));
      if (!is_max) {
        acc_out(k, e, cg_fdiv(k, g, cf(k, (double)(p.KH * p.KW))));
      } else { /* first maximum; a NaN wins over numbers, as the forward */
        V x = cg_ldf(k, 1, e), b = cg_get(k, best, k->m->f32);
        V first = LLVMBuildICmp(BLD, LLVMIntSLT, cg_get(k, at, k->m->i64), ci(k, 0), "");
        V take = LLVMBuildOr(BLD, first, LLVMBuildOr(BLD, cg_fcmp(k, LLVMRealOGT, x, b),
                                                    LLVMBuildAnd(BLD, cg_fcmp(k, LLVMRealUNO, x, x), cg_fcmp(k, LLVMRealORD, b, b), ""), ""), "");
        cg_set(k, best, cg_sel(k, take, x, b));
        cg_set(k, at, cg_sel(k, take, e, cg_get(k, at, k->m->i64)));
      }
    }
    if (is_max) acc_out(k, cg_get(k, at, k->m->i64), g);
  }
}

/* ---- movement ---- */

static void e_embedding_grad(cg_k *k) {
  int64_t count = ir_numel(SH(0)), V_ = k->n->shape.d[0], D = k->n->shape.d[1];
  zero_out(k);
  CG_FOR(k, i, ci(k, 0), ci(k, count)) {
    V id = cg_ldi(k, 1, i.iv);
    V ok = LLVMBuildICmp(BLD, LLVMIntULT, id, ci(k, V_), "");
    cg_flag_err(k, LLVMBuildNot(BLD, ok, ""), 1);
    V row = cg_muli(k, cg_sel(k, ok, id, ci(k, 0)), D), irow = cg_muli(k, i.iv, D);
    CG_FOR(k, j, ci(k, 0), ci(k, D))
      acc_out(k, cg_add(k, row, j.iv), cg_sel(k, ok, cg_ldf(k, 2, cg_add(k, irow, j.iv)), cf(k, 0)));
  }
}

static void e_slice_grad(cg_k *k) {
  const ir_shape *sy = SH(0);
  int64_t st[2][IR_MAXDIM];
  zero_out(k);
  cg_contig_strides(&k->n->shape, st[0]);
  cg_contig_strides(sy, st[1]);
  int64_t base[2] = {k->n->attr.start * st[0][k->n->attr.axis], 0};
  cg_nest(k, sy->rank, sy->d, 2, st, base, copy_body, NULL);
}

typedef struct {
  int64_t step, len; /* the result's stride and size along the axis */
} gg_t;

/* off[0]: the index's (and dy's) element; off[1]: the result's with axis coordinate 0 */
static void gather_grad_body(cg_k *k, V *off, void *ctx) {
  const gg_t *g = ctx;
  V v = cg_ldi(k, 1, off[0]), ok = LLVMBuildICmp(BLD, LLVMIntULT, v, ci(k, g->len), "");
  cg_flag_err(k, LLVMBuildNot(BLD, ok, ""), CG_ERR_INDEX);
  V at = cg_add(k, off[1], cg_muli(k, cg_sel(k, ok, v, ci(k, 0)), g->step));
  acc_out(k, at, cg_sel(k, ok, cg_ldf(k, 2, off[0]), cf(k, 0)));
}

static void e_gather_grad(cg_k *k) {
  const ir_shape *si = SH(0);
  int ax = (int)k->n->attr.axis;
  int64_t st[2][IR_MAXDIM];
  zero_out(k);
  cg_contig_strides(si, st[0]);
  cg_contig_strides(&k->n->shape, st[1]);
  gg_t g = {st[1][ax], k->n->shape.d[ax]};
  st[1][ax] = 0;
  cg_nest(k, si->rank, si->d, 2, st, NULL, gather_grad_body, &g);
}

/* ---- losses ---- */

enum { CEG_COST = 8 }; /* per element: two passes and an exp (cg_rows_for) */

typedef struct {
  int64_t C, rows;
  double ls;
} ceg_t;

typedef struct {
  cg_rowstat s;
  V out, inv, lab, scale;
  double ls;
  int64_t C;
} ceg_row;

/* scale (p - ((j == label) (1 - ls) + ls / C)), the label found by a lane-index compare */
static void ceg_out(cg_k *k, V idx, int j, int last, void *ctx) {
  ceg_row *c = ctx;
  int w = c->s.r.w;
  V p = cg_fmul(k, cg_row_exp(k, &c->s, idx, j, last), cg_bcast(k, c->inv, w));
  V hit = LLVMBuildICmp(BLD, LLVMIntEQ, cg_row_lanes(k, &c->s.r, idx), cg_bcast(k, c->lab, w), "");
  V t = cg_fsub(k, p, cg_fadd(k, cg_sel(k, hit, cfl(k, p, 1.0 - c->ls), cfl(k, p, 0)), cfl(k, p, c->ls / (double)c->C)));
  cg_row_st(k, &c->s.r, c->out, idx, cg_fmul(k, cg_bcast(k, c->scale, w), t), last);
}

static void ceg_row_body(cg_k *k, V r, void *ctx) {
  const ceg_t *t = ctx;
  ceg_row c = {.ls = t->ls, .C = t->C};
  V base = cg_muli(k, r, t->C);
  c.s.r = cg_row_of(k, t->C);
  c.s.x = cg_fptr(k, ARG(0), base);
  c.out = c.s.ey = cg_fptr(k, OUT, base); /* long rows: exp(x - m) parked in the result */
  c.lab = LLVMBuildTrunc(BLD, cg_ldi(k, 2, r), k->m->i32, ""); /* out of range: flagged, the result unused */
  c.scale = cg_fdiv(k, cg_ldf(k, 3, ci(k, 0)), cf(k, (double)t->rows));
  cg_row_stats(k, &c.s);
  c.inv = cg_tof(k, LLVMBuildFDiv(BLD, cd(k, 1), c.s.sum, ""));
  cg_row_each(k, &c.s.r, ceg_out, &c);
}

static void ceg_plain(cg_k *k) {
  const ir_shape *sx = SH(0);
  int64_t C = sx->d[sx->rank - 1], rows = ir_numel(sx) / C;
  ceg_t t = {C, rows, k->n->attr.f};
  cg_check_labels(k, 2, rows, C);
  cg_rows_for(k, rows, C, CEG_COST, ceg_row_body, &t);
}

/* as e_cross_entropy (cg_ops.c): the plain kernel unless there are class
 * weights or an ignored label in this batch */
static void e_cross_entropy_grad(cg_k *k) {
  const ir_node *n = k->n;
  if (n->nin == 4) cg_emit_cross_entropy_rt(k);
  else if (n->attr.k) cg_if_else(k, cg_any_label(k, 2, ir_numel(SH(1)), n->attr.n), cg_emit_cross_entropy_rt, ceg_plain);
  else ceg_plain(k);
}

static void e_bce_grad(cg_k *k) {
  int64_t count = ir_numel(&k->n->shape);
  V scale = cg_fdiv(k, cg_ldf(k, 3, ci(k, 0)), cf(k, (double)count));
  CG_FOR(k, l, ci(k, 0), ci(k, count))
    cg_stp(k, OUT, l.iv, cg_fmul(k, scale, cg_fsub(k, cg_sigmoid(k, cg_ldf(k, 1, l.iv)), cg_ldf(k, 2, l.iv))));
}

/* nll: zeros, then -dl / rows at each row's label */
static void e_nll_grad(cg_k *k) {
  const ir_shape *sx = SH(0);
  int64_t C = sx->d[sx->rank - 1], rows = ir_numel(sx) / C;
  cg_check_labels(k, 2, rows, C);
  CG_FOR(k, l, ci(k, 0), ci(k, rows * C)) cg_st(k, 0, l.iv, cf(k, 0));
  V g = cg_fdiv(k, LLVMBuildFNeg(BLD, cg_ldf(k, 3, ci(k, 0)), ""), cf(k, (double)rows));
  CG_FOR(k, r, ci(k, 0), ci(k, rows)) {
    V lab = cg_ldi(k, 2, r.iv);
    lab = cg_sel(k, LLVMBuildICmp(BLD, LLVMIntULT, lab, ci(k, C), ""), lab, ci(k, 0)); /* flagged above */
    cg_st(k, 0, cg_add(k, cg_muli(k, r.iv, C), lab), g);
  }
}

/* ---- the table ---- */

static const cg_emit_fn cg_grad_ops[IR_NOPS] = {
  [IR_SUM_TO] = e_sum_to,           [IR_BROADCAST_TO] = e_broadcast_to,
  [IR_UNARY_GRAD] = e_unary_grad,   [IR_SOFTMAX_GRAD] = e_softmax_grad,
  [IR_LOG_SOFTMAX_GRAD] = e_softmax_grad, [IR_MAX_GRAD] = e_max_grad,
  [IR_LAYERNORM_GRAD] = e_layernorm_grad, [IR_NORM_GRAD] = cg_emit_norm, [IR_CONV2D_GRAD_INPUT] = e_conv2d_grad_input,
  [IR_CONV2D_GRAD_WEIGHT] = e_conv2d_grad_weight, [IR_POOL2D_GRAD] = e_pool2d_grad,
  [IR_EMBEDDING_GRAD] = e_embedding_grad, [IR_SLICE_GRAD] = e_slice_grad,
  [IR_GATHER_GRAD] = e_gather_grad,
  [IR_CROSS_ENTROPY_GRAD] = e_cross_entropy_grad, [IR_BCE_GRAD] = e_bce_grad,
  [IR_NLL_GRAD] = e_nll_grad,
  [IR_MINIMUM ... IR_NOPS - 1] = cg_emit_opt, /* training-step ops: cg_opt.c */
};

void cg_emit_grad(cg_k *k) {
  if (k->n->op >= IR_ATTENTION_GRAD && k->n->op <= IR_ATTENTION_GRAD_SAVED) { /* sequence layers: cg_seqcall.c */
    cg_emit_seq_grad(k);
    return;
  }
  cg_grad_ops[k->n->op](k);
}
