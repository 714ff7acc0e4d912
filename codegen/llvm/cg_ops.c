/* cg_ops.c -- one emitter per IR operator, written in the vocabulary of
 * cg_emit.c. Each emits the body of `void k(out, in0.., scratch, err)` for
 * the node's static shapes. Matrix products call lathe_rt_sgemm (OpenBLAS); everything else
 * is a generated loop nest. Shape conventions are the interpreter's
 * (ir/interp*.c), which these kernels must match. */
#include "cg_internal.h"
#include "ir/conv.h"
#include "cg_conv.h"
#include "cg_vec.h"

#include <math.h>
#include <string.h>

#define BLD (k->B)
#define ARG(j) (k->arg[1 + (j)])
#define SH(j) (k->sh[1 + (j)])

static int64_t dims(const ir_shape *s, int lo, int hi) {
  int64_t p = 1;
  for (int i = lo; i < hi; i++) p *= s->d[i];
  return p;
}

static V scr(cg_k *k, int64_t float_off) { return cg_fptr(k, k->scratch, ci(k, float_off)); }

/* ---- elementwise unary ---- */

typedef V (*cg_fmap)(cg_k *k, V x, const ir_attr *a);

/* The unary maps work on f32 or <N x float> (constants via cfl), so fused
 * product kernels can apply them to whole vectors. */
static V u_relu(cg_k *k, V x, const ir_attr *a) {
  (void)a; /* x <= 0 -> 0; NaN stays NaN */
  return LLVMBuildSelect(BLD, LLVMBuildFCmp(BLD, LLVMRealOLE, x, cfl(k, x, 0), ""), cfl(k, x, 0), x, "");
}
static V u_leaky(cg_k *k, V x, const ir_attr *a) {
  return LLVMBuildSelect(BLD, LLVMBuildFCmp(BLD, LLVMRealOGE, x, cfl(k, x, 0), ""), x, cg_fmul(k, cfl(k, x, a->f), x), "");
}
static V u_sigmoid(cg_k *k, V x, const ir_attr *a) { (void)a; return cg_sigmoid(k, x); }
static V u_tanh(cg_k *k, V x, const ir_attr *a) { (void)a; return cg_tanh(k, x); }
static V u_gelu(cg_k *k, V x, const ir_attr *a) {
  if (a->approx) { /* 0.5x(1 + tanh u) = x * sigmoid(2u): no cancellation for x < 0 */
    V x3 = cg_fmul(k, cg_fmul(k, x, x), x);
    V u = cg_fmul(k, cfl(k, x, 0.79788456080286535588), cg_fadd(k, x, cg_fmul(k, cfl(k, x, 0.044715), x3)));
    return cg_fmul(k, x, cg_sigmoid(k, cg_fmul(k, cfl(k, x, 2), u)));
  }
  /* 0.5x(1 + erf(x/sqrt2)) = 0.5x erfc(-x/sqrt2), accurate for x < 0 too */
  V e = cg_erfc(k, cg_fmul(k, x, cfl(k, x, -0.70710678118654752440)));
  return cg_fmul(k, cg_fmul(k, cfl(k, x, 0.5), x), e);
}
static V u_swish(cg_k *k, V x, const ir_attr *a) { (void)a; return cg_fmul(k, x, cg_sigmoid(k, x)); }
static V u_exp(cg_k *k, V x, const ir_attr *a) { (void)a; return cg_exp(k, x); }
static V u_log(cg_k *k, V x, const ir_attr *a) { (void)a; return cg_log(k, x); }
static V u_sqrt(cg_k *k, V x, const ir_attr *a) { (void)a; return cg_sqrt(k, x); }
static V u_abs(cg_k *k, V x, const ir_attr *a) { (void)a; return cg_fabs(k, x); }
static V u_neg(cg_k *k, V x, const ir_attr *a) { (void)a; return LLVMBuildFNeg(BLD, x, ""); }
static V u_pow(cg_k *k, V x, const ir_attr *a) {
  if (a->f == 2.0) return cg_fmul(k, x, x);
  if (a->f == 1.0) return x;
  V args[2] = {x, cf(k, a->f)};
  return cg_call(k, k->m->powf_, args, 2);
}
/* min(max(x, lo), hi) as the reference: ordered compares keep NaN */
static V u_clamp(cg_k *k, V x, const ir_attr *a) {
  V lo = cfl(k, x, a->f), hi = cfl(k, x, a->f2);
  V r = LLVMBuildSelect(BLD, LLVMBuildFCmp(BLD, LLVMRealOLT, x, lo, ""), lo, x, "");
  return LLVMBuildSelect(BLD, LLVMBuildFCmp(BLD, LLVMRealOGT, r, hi, ""), hi, r, "");
}
static V u_id(cg_k *k, V x, const ir_attr *a) { (void)k, (void)a; return x; }

static const cg_fmap unary_fn[IR_NOPS] = {
  [IR_RELU] = u_relu, [IR_LEAKY_RELU] = u_leaky, [IR_SIGMOID] = u_sigmoid, [IR_TANH] = u_tanh,
  [IR_GELU] = u_gelu, [IR_SWISH] = u_swish,      [IR_EXP] = u_exp,         [IR_LOG] = u_log,
  [IR_SQRT] = u_sqrt, [IR_ABS] = u_abs,          [IR_NEG] = u_neg,         [IR_POW] = u_pow,
  [IR_DROPOUT] = u_id, [IR_CAST] = u_id,         [IR_RESHAPE] = u_id,      [IR_CLAMP] = u_clamp,
};

/* Integer abs/neg (i64, wrapped by the store). */
static V u_int(cg_k *k, int op, V x) {
  V neg = LLVMBuildSub(BLD, ci(k, 0), x, "");
  if (op == IR_NEG) return neg;
  return LLVMBuildSelect(BLD, LLVMBuildICmp(BLD, LLVMIntSLT, x, ci(k, 0), ""), neg, x, "");
}

/* Rough cost of each vectorisable map per element, in units of a load, an
 * add and a store (what decides whether a big map is split across cores). */
static const unsigned char unary_cost[IR_NOPS] = {
  [IR_RELU] = 1, [IR_LEAKY_RELU] = 1, [IR_ABS] = 1, [IR_NEG] = 1, [IR_SQRT] = 2, [IR_EXP] = 6,
  [IR_SIGMOID] = 8, [IR_SWISH] = 8, [IR_TANH] = 10, [IR_GELU] = 12,
  [IR_CAST] = 1, [IR_RESHAPE] = 1, [IR_DROPOUT] = 1, [IR_CLAMP] = 1,
};

typedef struct {
  int op;
  const ir_attr *a;
} unary_ctx;

static void unary_vec(cg_k *k, V i, int w, void *ctx) {
  const unary_ctx *c = ctx;
  cg_vst(k, k->arg[0], i, unary_fn[c->op](k, cg_vld(k, k->arg[1], i, w), c->a), w);
}

/* f32 to f32 through a map that works on vectors: explicit vector code
 * (LLVM 14 will not vectorise the polynomials' selects and divisions on
 * its own), on several cores when big; else one scalar loop. */
static void e_unary(cg_k *k) {
  int op = k->n->op;
  int src_float = ir_dtype_is_float(k->dt[1]), dst_float = ir_dtype_is_float(k->dt[0]);
  int64_t n = ir_numel(&k->n->shape);
  if (k->dt[0] == IR_F32 && k->dt[1] == IR_F32 && unary_cost[op]) { /* not log, pow: scalar calls */
    unary_ctx c = {op, &k->n->attr};
    cg_vmap(k, n, unary_cost[op], unary_vec, &c);
    return;
  }
  CG_FOR(k, l, ci(k, 0), ci(k, n)) {
    if (op == IR_CAST || op == IR_RESHAPE || op == IR_DROPOUT) /* moves: the store converts */
      cg_st(k, 0, l.iv, src_float ? cg_ldf(k, 1, l.iv) : cg_ldi(k, 1, l.iv));
    else if (!dst_float)
      cg_st(k, 0, l.iv, u_int(k, op, cg_ldi(k, 1, l.iv)));
    else
      cg_st(k, 0, l.iv, unary_fn[op](k, cg_ldf(k, 1, l.iv), &k->n->attr));
  }
}

/* ---- elementwise binary with broadcasting ---- */

typedef V (*cg_bop)(LLVMBuilderRef, V, V, const char *);

static V int_div(cg_k *k, V a, V b) {
  V zero = LLVMBuildICmp(BLD, LLVMIntEQ, b, ci(k, 0), "");
  V m1 = LLVMBuildICmp(BLD, LLVMIntEQ, b, ci(k, -1), "");
  cg_flag_err(k, zero, 3);
  V safe = LLVMBuildSelect(BLD, LLVMBuildOr(BLD, zero, m1, ""), ci(k, 1), b, "");
  V q = LLVMBuildSDiv(BLD, a, safe, "");
  return LLVMBuildSelect(BLD, m1, LLVMBuildSub(BLD, ci(k, 0), a, ""), q, "");
}

static void binary_body(cg_k *k, V *off, void *ctx) {
  int op = *(int *)ctx;
  static const cg_bop fops[] = {LLVMBuildFAdd, LLVMBuildFSub, LLVMBuildFMul, LLVMBuildFDiv};
  static const cg_bop iops[] = {LLVMBuildAdd, LLVMBuildSub, LLVMBuildMul, NULL};
  int i = op - IR_ADD;
  if (ir_dtype_is_float(k->dt[0])) {
    cg_st(k, 0, off[0], fops[i](BLD, cg_ldf(k, 1, off[1]), cg_ldf(k, 2, off[2]), ""));
    return;
  }
  V a = cg_ldi(k, 1, off[1]), b = cg_ldi(k, 2, off[2]);
  cg_st(k, 0, off[0], op == IR_DIV ? int_div(k, a, b) : iops[i](BLD, a, b, ""));
}

/* comparisons (op - IR_LESS): ordered float predicates are false on NaN,
 * not_equal's unordered one true, as the reference */
static void compare_body(cg_k *k, V *off, void *ctx) {
  static const LLVMRealPredicate fp[] = {LLVMRealOLT, LLVMRealOLE, LLVMRealOGT, LLVMRealOGE, LLVMRealOEQ, LLVMRealUNE};
  static const LLVMIntPredicate ip[] = {LLVMIntSLT, LLVMIntSLE, LLVMIntSGT, LLVMIntSGE, LLVMIntEQ, LLVMIntNE};
  int i = *(int *)ctx - IR_LESS;
  V r = ir_dtype_is_float(k->dt[1])
            ? LLVMBuildFCmp(BLD, fp[i], cg_ldf(k, 1, off[1]), cg_ldf(k, 2, off[2]), "")
            : LLVMBuildICmp(BLD, ip[i], cg_ldi(k, 1, off[1]), cg_ldi(k, 2, off[2]), "");
  cg_st(k, 0, off[0], r);
}

static void where_body(cg_k *k, V *off, void *ctx) {
  (void)ctx;
  V c = LLVMBuildICmp(BLD, LLVMIntNE, cg_ldi(k, 1, off[1]), ci(k, 0), "");
  if (ir_dtype_is_float(k->dt[0]))
    cg_st(k, 0, off[0], LLVMBuildSelect(BLD, c, cg_ldf(k, 2, off[2]), cg_ldf(k, 3, off[3]), ""));
  else
    cg_st(k, 0, off[0], LLVMBuildSelect(BLD, c, cg_ldi(k, 2, off[2]), cg_ldi(k, 3, off[3]), ""));
}

static void e_where(cg_k *k) {
  const ir_shape *o = &k->n->shape;
  int64_t st[4][IR_MAXDIM];
  cg_contig_strides(o, st[0]);
  for (int j = 0; j < 3; j++) cg_bcast_strides(o, SH(j), st[1 + j]);
  cg_nest(k, o->rank, o->d, 4, st, NULL, where_body, NULL);
}

static void e_binary(cg_k *k) {
  const ir_shape *o = &k->n->shape;
  int64_t st[3][IR_MAXDIM];
  cg_contig_strides(o, st[0]);
  cg_bcast_strides(o, SH(0), st[1]);
  cg_bcast_strides(o, SH(1), st[2]);
  int op = k->n->op;
  cg_nest(k, o->rank, o->d, 3, st, NULL, k->n->dtype == IR_BOOL ? compare_body : binary_body, &op);
}

/* ---- matrix products ---- */

/* One product of the batch: C[M, N] = A'[M, K] B'[K, N], where a flagged
 * operand is stored transposed (A as [K, M], B as [N, K]) and handed to
 * sgemm with its transpose flag; lda/ldb are the stored row lengths. */
typedef struct {
  int64_t M, N, K, lda, ldb;
  int ta, tb;
} mm_ctx;

static mm_ctx mm_dims(cg_k *k) {
  const ir_shape *sa = SH(0), *sb = SH(1);
  mm_ctx c;
  c.ta = (k->n->attr.i & IR_MM_TA) != 0, c.tb = (k->n->attr.i & IR_MM_TB) != 0; /* rank >= 2 only */
  c.K = sa->d[sa->rank - 1 - c.ta];
  c.M = sa->rank >= 2 ? sa->d[sa->rank - 2 + c.ta] : 1;
  c.N = sb->rank >= 2 ? sb->d[sb->rank - 1 - c.tb] : 1;
  c.lda = c.ta ? c.M : c.K;
  c.ldb = c.tb ? c.K : c.N;
  return c;
}

static void matmul_body(cg_k *k, V *off, void *ctx) {
  mm_ctx *c = ctx;
  cg_sgemm(k, c->ta, c->tb, c->M, c->N, c->K, 1.0, cg_fptr(k, ARG(0), off[1]), c->lda, cg_fptr(k, ARG(1), off[2]),
           c->ldb, 0.0, cg_fptr(k, k->arg[0], off[0]), c->N);
}

static void e_matmul(cg_k *k) {
  const ir_shape *sa = SH(0), *sb = SH(1);
  mm_ctx c = mm_dims(k);
  ir_shape batch = k->n->shape, ba = {0}, bb = {0};
  batch.rank -= (sa->rank >= 2) + (sb->rank >= 2);
  ba.rank = sa->rank > 2 ? sa->rank - 2 : 0;
  bb.rank = sb->rank > 2 ? sb->rank - 2 : 0;
  for (int i = 0; i < ba.rank; i++) ba.d[i] = sa->d[i];
  for (int i = 0; i < bb.rank; i++) bb.d[i] = sb->d[i];
  int64_t nb = ir_numel(&batch);
  /* shared weights: one tall GEMM over the stacked rows of A; a transposed
   * A's rows are columns of each batch's matrix, so only a single one */
  if (ir_numel(&bb) == 1 && ir_numel(&ba) == nb && (!c.ta || nb == 1)) {
    cg_sgemm(k, c.ta, c.tb, c.M * nb, c.N, c.K, 1.0, ARG(0), c.lda, ARG(1), c.ldb, 0.0, k->arg[0], c.N);
    return;
  }
  int64_t st[3][IR_MAXDIM];
  cg_contig_strides(&batch, st[0]);
  cg_bcast_strides(&batch, &ba, st[1]);
  cg_bcast_strides(&batch, &bb, st[2]);
  for (int d = 0; d < batch.rank; d++) {
    st[0][d] *= c.M * c.N;
    st[1][d] *= c.M * c.K;
    st[2][d] *= c.K * c.N;
  }
  cg_nest(k, batch.rank, batch.d, 3, st, NULL, matmul_body, &c);
}

/* conv2d: im2col GEMMs over chunks of the batch (cg_conv.c) */
static void e_conv2d(cg_k *k) { cg_emit_conv_fwd(k); }

/* ---- reductions along an axis: x viewed as [outer, len, inner] ---- */

/* Row helpers for the explicit vector code: x and y point at a row's start. */
typedef struct {
  V x, y, m, shift;
  cg_acc mx, sum;
  int as_log;
  int op; /* reduce_rows: the reduction */
} row_ctx;

static V sum_d(cg_k *k, cg_acc *a, int w, V f) { /* a += (double)f */
  LLVMTypeRef dt = w > 1 ? LLVMVectorType(k->m->f64, (unsigned)w) : k->m->f64;
  V s = LLVMBuildFAdd(BLD, cg_acc_get(k, a, w), LLVMBuildFPExt(BLD, f, dt, ""), "");
  cg_acc_set(k, a, w, s);
  return s;
}

/* Rows along the last axis (softmax, log_softmax, cross_entropy): each
 * row's length is known here, so a short row is one (masked) vector, a
 * row of up to CG_ROW_REGS vectors stays in registers between its passes
 * (cg_row_stats), and the lanes fold as a tree. A row costs about this
 * much per element (two passes and an exp) when deciding on the pool. */
enum { ROW_COST = 8 };

typedef struct {
  int64_t L;
  int as_log;
} sm_t;

typedef struct {
  cg_rowstat s;
  V y, shift;
  int as_log;
} sm_row;

static void sm_out(cg_k *k, V idx, int j, int last, void *ctx) {
  sm_row *c = ctx;
  V s = cg_bcast(k, c->shift, c->s.r.w);
  V v = c->as_log ? cg_fsub(k, cg_row_x(k, &c->s, idx, j, last), s) : cg_fmul(k, cg_row_exp(k, &c->s, idx, j, last), s);
  cg_row_st(k, &c->s.r, c->y, idx, v, last);
}

/* softmax / log_softmax of row r: y = e / sum or x - (m + log sum), the sum in double */
static void softmax_row(cg_k *k, V r, void *ctx) {
  const sm_t *t = ctx;
  sm_row c = {.as_log = t->as_log};
  V base = cg_muli(k, r, t->L);
  c.s.r = cg_row_of(k, t->L);
  c.s.x = cg_fptr(k, ARG(0), base);
  c.y = cg_fptr(k, k->arg[0], base);
  c.s.ey = t->as_log ? NULL : c.y;
  cg_row_stats(k, &c.s);
  V s = cg_tof(k, c.s.sum);
  c.shift = t->as_log ? cg_fadd(k, c.s.m, cg_log_sum(k, s)) : cg_fdiv(k, cf(k, 1), s);
  cg_row_each(k, &c.s.r, sm_out, &c);
}

static void e_softmax(cg_k *k) {
  const ir_shape *sx = SH(0);
  int ax = (int)k->n->attr.axis, as_log = k->n->op == IR_LOG_SOFTMAX;
  int64_t outer = dims(sx, 0, ax), len = sx->d[ax], inner = dims(sx, ax + 1, sx->rank);
  if (inner == 1) { /* the usual case: rows along the last axis, vectorised */
    sm_t t = {len, as_log};
    cg_rows_for(k, outer, len, ROW_COST, softmax_row, &t);
    return;
  }
  CG_FOR(k, o, ci(k, 0), ci(k, outer)) CG_FOR(k, i, ci(k, 0), ci(k, inner)) {
    V base = cg_add(k, cg_muli(k, o.iv, len * inner), i.iv);
    V mx = cg_var(k, k->m->f32, cf(k, -INFINITY)), sum = cg_var(k, k->m->f64, cd(k, 0));
    CG_FOR(k, j, ci(k, 0), ci(k, len)) {
      V x = cg_ldf(k, 1, cg_add(k, base, cg_muli(k, j.iv, inner))), m = cg_get(k, mx, k->m->f32);
      cg_set(k, mx, LLVMBuildSelect(BLD, LLVMBuildFCmp(BLD, LLVMRealOGT, x, m, ""), x, m, ""));
    }
    V m = cg_get(k, mx, k->m->f32);
    CG_FOR(k, j, ci(k, 0), ci(k, len)) {
      V idx = cg_add(k, base, cg_muli(k, j.iv, inner));
      V e = cg_exp(k, cg_fsub(k, cg_ldf(k, 1, idx), m));
      if (!as_log) cg_stp(k, k->arg[0], idx, e);
      cg_set(k, sum, LLVMBuildFAdd(BLD, cg_get(k, sum, k->m->f64), cg_tod(k, e), ""));
    }
    V s = cg_tof(k, cg_get(k, sum, k->m->f64));
    V shift = as_log ? cg_fadd(k, m, cg_log(k, s)) : cg_fdiv(k, cf(k, 1), s);
    CG_FOR(k, j, ci(k, 0), ci(k, len)) {
      V idx = cg_add(k, base, cg_muli(k, j.iv, inner));
      V y = as_log ? cg_fsub(k, cg_ldf(k, 1, idx), shift) : cg_fmul(k, cg_ldp(k, k->arg[0], idx), shift);
      cg_stp(k, k->arg[0], idx, y);
    }
  }
}

static void red_body(cg_k *k, V i, int w, void *ctx) {
  row_ctx *c = ctx;
  if (c->as_log) /* max, min: NaN-propagating as the scalar path */
    cg_acc_set(k, &c->mx, w, cg_fext_nan(k, c->op, cg_acc_get(k, &c->mx, w), cg_vld(k, c->x, i, w)));
  else sum_d(k, &c->sum, w, cg_vld(k, c->x, i, w));
}

static V fold_max_nan(cg_k *k, V a, V b) { return cg_fmax_nan(k, a, b); }
static V fold_min_nan(cg_k *k, V a, V b) { return cg_fmin_nan(k, a, b); }

/* f32 sum/mean/max over contiguous rows of len: vector accumulators
 * (double for sums, as the scalar path) */
static void reduce_rows(cg_k *k, int64_t outer, int64_t len) {
  int op = k->n->op;
  CG_FOR(k, o, ci(k, 0), ci(k, outer)) {
    row_ctx c = {0};
    c.x = cg_fptr(k, ARG(0), cg_muli(k, o.iv, len));
    c.as_log = op == IR_MAX || op == IR_MIN, c.op = op;
    c.mx = cg_acc_new(k, k->m->f32, op == IR_MIN ? INFINITY : -INFINITY);
    c.sum = cg_acc_new(k, k->m->f64, 0.0);
    cg_vfor(k, ci(k, len), red_body, &c);
    V r;
    if (op == IR_MAX || op == IR_MIN) r = cg_acc_fold(k, &c.mx, op == IR_MIN ? fold_min_nan : fold_max_nan);
    else {
      r = cg_acc_fold(k, &c.sum, cg_fold_add);
      if (op == IR_MEAN) r = LLVMBuildFDiv(BLD, r, cd(k, (double)len), "");
      r = cg_tof(k, r);
    }
    cg_st(k, 0, o.iv, r);
  }
}

static void e_reduce(cg_k *k) {
  const ir_shape *sx = SH(0);
  int op = k->n->op, flt = ir_dtype_is_float(k->dt[0]), ext = op == IR_MAX || op == IR_MIN;
  int64_t outer = 1, len = ir_numel(sx), inner = 1;
  if (k->n->attr.axis >= 0) {
    int ax = (int)k->n->attr.axis;
    outer = dims(sx, 0, ax), len = sx->d[ax], inner = dims(sx, ax + 1, sx->rank);
  }
  if (flt && inner == 1) {
    reduce_rows(k, outer, len);
    return;
  }
  if (k->dt[1] == IR_F32 && k->dt[0] == IR_F32) { /* columns of [len, inner] per outer: vector accumulators */
    cg_colred r = {1, 1, {outer}, {len * inner}, {inner}, {len}, {inner}, inner, op, 1.0 / (double)len};
    cg_emit_colred(k, &r, 1, 0);
    return;
  }
  LLVMTypeRef at = ext ? (flt ? k->m->f32 : k->m->i64) : (flt ? k->m->f64 : k->m->i64);
  CG_FOR(k, o, ci(k, 0), ci(k, outer)) CG_FOR(k, i, ci(k, 0), ci(k, inner)) {
    V base = cg_add(k, cg_muli(k, o.iv, len * inner), i.iv);
    V init = ext ? (flt ? cg_ldf(k, 1, base) : cg_ldi(k, 1, base)) : LLVMConstNull(at);
    V acc = cg_var(k, at, init);
    CG_FOR(k, j, ci(k, 0), ci(k, len)) {
      V idx = cg_add(k, base, cg_muli(k, j.iv, inner)), a = cg_get(k, acc, at), r;
      if (ext && flt) r = cg_fext_nan(k, op, a, cg_ldf(k, 1, idx));
      else if (ext) {
        V v = cg_ldi(k, 1, idx);
        r = LLVMBuildSelect(BLD, LLVMBuildICmp(BLD, op == IR_MIN ? LLVMIntSLT : LLVMIntSGT, v, a, ""), v, a, "");
      } else if (flt) r = LLVMBuildFAdd(BLD, a, cg_tod(k, cg_ldf(k, 1, idx)), "");
      else r = LLVMBuildAdd(BLD, a, cg_ldi(k, 1, idx), "");
      cg_set(k, acc, r);
    }
    V r = cg_get(k, acc, at);
    if (op == IR_MEAN) r = flt ? LLVMBuildFDiv(BLD, r, cd(k, (double)len), "") : LLVMBuildSDiv(BLD, r, ci(k, len), "");
    if (flt && !ext) r = cg_tof(k, r);
    cg_st(k, 0, cg_add(k, cg_muli(k, o.iv, inner), i.iv), r);
  }
}

/* argmax / argmin as the reference: the first extremum's index, NaN wins */
static void e_argext(cg_k *k) {
  const ir_shape *sx = SH(0);
  int flt = ir_dtype_is_float(k->dt[1]), is_max = k->n->op == IR_ARGMAX;
  int64_t outer = 1, len = ir_numel(sx), inner = 1;
  if (k->n->attr.axis >= 0) {
    int ax = (int)k->n->attr.axis;
    outer = dims(sx, 0, ax), len = sx->d[ax], inner = dims(sx, ax + 1, sx->rank);
  }
  LLVMTypeRef vt = flt ? k->m->f32 : k->m->i64;
  V best = cg_var(k, vt, flt ? cf(k, 0) : ci(k, 0)), at = cg_var(k, k->m->i64, ci(k, 0));
  CG_FOR(k, o, ci(k, 0), ci(k, outer)) CG_FOR(k, i, ci(k, 0), ci(k, inner)) {
    V base = cg_add(k, cg_muli(k, o.iv, len * inner), i.iv);
    cg_set(k, best, flt ? cg_ldf(k, 1, base) : cg_ldi(k, 1, base));
    cg_set(k, at, ci(k, 0));
    CG_FOR(k, l, ci(k, 1), ci(k, len)) {
      V idx = cg_add(k, base, cg_muli(k, l.iv, inner)), b = cg_get(k, best, vt), take;
      if (flt) { /* b not NaN and (v NaN or v beyond b): unordered compares take a NaN v */
        V v = cg_ldf(k, 1, idx);
        take = LLVMBuildAnd(BLD, LLVMBuildFCmp(BLD, LLVMRealORD, b, b, ""),
                            LLVMBuildFCmp(BLD, is_max ? LLVMRealUGT : LLVMRealULT, v, b, ""), "");
        cg_set(k, best, LLVMBuildSelect(BLD, take, v, b, ""));
      } else {
        V v = cg_ldi(k, 1, idx);
        take = LLVMBuildICmp(BLD, is_max ? LLVMIntSGT : LLVMIntSLT, v, b, "");
        cg_set(k, best, LLVMBuildSelect(BLD, take, v, b, ""));
      }
      cg_set(k, at, LLVMBuildSelect(BLD, take, l.iv, cg_get(k, at, k->m->i64), ""));
    }
    cg_st(k, 0, cg_add(k, cg_muli(k, o.iv, inner), i.iv), cg_get(k, at, k->m->i64));
  }
}

/* layernorm over the last axis; statistics in double as the oracle does,
 * with vector accumulators. With a residual add before it (p, q set): the
 * first pass makes each x = p + q, stores it and sums it. */
typedef struct {
  V x, y, w, b, mean, meanf, inv, p, q;
  cg_acc sum, sq;
} ln_ctx;

static void ln_sum(cg_k *k, V i, int w, void *ctx) {
  ln_ctx *c = ctx;
  V x = c->p ? cg_fadd(k, cg_vld(k, c->p, i, w), cg_vld(k, c->q, i, w)) : cg_vld(k, c->x, i, w);
  if (c->p) cg_vst(k, c->x, i, x, w);
  sum_d(k, &c->sum, w, x);
}

static void ln_sq(cg_k *k, V i, int w, void *ctx) {
  ln_ctx *c = ctx;
  LLVMTypeRef dt = w > 1 ? LLVMVectorType(k->m->f64, (unsigned)w) : k->m->f64;
  V d = LLVMBuildFSub(BLD, LLVMBuildFPExt(BLD, cg_vld(k, c->x, i, w), dt, ""), cg_bcast(k, c->mean, w), "");
  cg_acc_set(k, &c->sq, w, LLVMBuildFAdd(BLD, cg_acc_get(k, &c->sq, w), LLVMBuildFMul(BLD, d, d, ""), ""));
}

static void ln_out(cg_k *k, V i, int w, void *ctx) {
  ln_ctx *c = ctx;
  V y = cg_fmul(k, cg_fmul(k, cg_fsub(k, cg_vld(k, c->x, i, w), cg_bcast(k, c->meanf, w)), cg_bcast(k, c->inv, w)),
             cg_vld(k, c->w, i, w));
  cg_vst(k, c->y, i, cg_fadd(k, y, cg_vld(k, c->b, i, w)), w);
}

/* one row r of d; pro: x = arg 1 + arg 2 stored to arg 5, w and b args 3, 4 */
static void ln_row(cg_k *k, V r, int64_t d, int pro) {
  LLVMTypeRef f64 = k->m->f64;
  V base = cg_muli(k, r, d);
  ln_ctx c = {0};
  c.x = cg_fptr(k, pro ? k->arg[5] : ARG(0), base), c.y = cg_fptr(k, k->arg[0], base);
  c.w = pro ? k->arg[3] : ARG(1), c.b = pro ? k->arg[4] : ARG(2);
  if (pro) c.p = cg_fptr(k, k->arg[1], base), c.q = cg_fptr(k, k->arg[2], base);
  {
    c.sum = cg_acc_new(k, f64, 0.0);
    c.sq = cg_acc_new(k, f64, 0.0);
    cg_vfor(k, ci(k, d), ln_sum, &c);
    c.mean = LLVMBuildFDiv(BLD, cg_acc_fold(k, &c.sum, cg_fold_add), cd(k, (double)d), "");
    cg_vfor(k, ci(k, d), ln_sq, &c);
    V var = LLVMBuildFAdd(BLD, LLVMBuildFDiv(BLD, cg_acc_fold(k, &c.sq, cg_fold_add), cd(k, (double)d), ""),
                          cd(k, k->n->attr.f), "");
    c.inv = cg_fdiv(k, cf(k, 1), cg_sqrt(k, cg_tof(k, var)));
    c.meanf = cg_tof(k, c.mean);
    cg_vfor(k, ci(k, d), ln_out, &c);
  }
}

static void ln_plain_row(cg_k *k, V r, void *ctx) { ln_row(k, r, *(const int64_t *)ctx, 0); }
static void ln_pro_row(cg_k *k, V r, void *ctx) { ln_row(k, r, *(const int64_t *)ctx, 1); }

/* The rows are independent: split over the pool from 64K elements, as a
 * fused loop (each row computed as on one thread: bit-identical). Both
 * results are first writes of their memory, and two cores write faster
 * than one (the char-GPT's four [1024, 128] add+layernorms: 0.19 -> 0.15
 * ms each). A plain layernorm split too keeps the pool's worker busy
 * between GPT-2's products instead of letting it fall asleep (a wake costs
 * 70-160 us) while one thread normalises. */
static void ln_rows(cg_k *k, int pro) {
  const ir_shape *sx = SH(0);
  int64_t d = sx->d[sx->rank - 1], rows = ir_numel(sx) / d;
  int64_t grain = (1 << 15) / d > 1 ? (1 << 15) / d : 1;
  if (rows >= 2 * grain) cg_parallel_for(k, rows, grain, pro ? ln_pro_row : ln_plain_row, &d);
  else CG_FOR(k, r, ci(k, 0), ci(k, rows)) ln_row(k, r.iv, d, pro);
}

static void e_layernorm(cg_k *k) { ln_rows(k, 0); }

/* layernorm(p + q) that also stores x = p + q (the plan's find_residual_norms, plan/plan_group.c):
 * kernel arguments y, p, q, w, b, x. The rows are independent: split over
 * the pool when big. Each x and y is computed as the two kernels would,
 * so the results are bit-identical to theirs. */
void cg_emit_layernorm_add(cg_k *k) { ln_rows(k, 1); }

static void e_pool(cg_k *k) {
  ir_pool p = ir_pool_geom(SH(0), &k->n->attr); /* ir/conv.h: 1-d is H = KH = 1 */
  int64_t planes = p.planes, H = p.H, W = p.W, OH = p.OH, OW = p.OW, s = p.s;
  int is_max = k->n->op == IR_MAXPOOL2D;
  if (cg_emit_pool_tiled(k, is_max, 0)) return; /* vector code when the windows tile the image */
  CG_FOR(k, pl, ci(k, 0), ci(k, planes)) CG_FOR(k, oy, ci(k, 0), ci(k, OH)) CG_FOR(k, ox, ci(k, 0), ci(k, OW)) {
    V acc = cg_var(k, k->m->f32, cf(k, is_max ? -INFINITY : 0.0));
    V base = cg_add(k, cg_muli(k, cg_add(k, cg_muli(k, pl.iv, H), cg_muli(k, oy.iv, s)), W), cg_muli(k, ox.iv, s));
    CG_FOR(k, ky, ci(k, 0), ci(k, p.KH)) CG_FOR(k, kx, ci(k, 0), ci(k, p.KW)) {
      V v = cg_ldf(k, 1, cg_add(k, base, cg_add(k, cg_muli(k, ky.iv, W), kx.iv))), a = cg_get(k, acc, k->m->f32);
      cg_set(k, acc, is_max ? cg_fmax_nan(k, a, v) : cg_fadd(k, a, v));
    }
    V r = cg_get(k, acc, k->m->f32);
    if (!is_max) r = cg_fdiv(k, r, cf(k, (double)(p.KH * p.KW)));
    cg_st(k, 0, cg_add(k, cg_muli(k, cg_add(k, cg_muli(k, pl.iv, OH), oy.iv), OW), ox.iv), r);
  }
}

/* Running sums along the axis (from the end when attr.i), in double as the
 * reference kernel's. */
static void e_cumsum(cg_k *k) {
  const ir_shape *s = SH(0);
  int ax = (int)k->n->attr.axis, rev = k->n->attr.i != 0;
  int64_t outer = dims(s, 0, ax), len = s->d[ax], inner = dims(s, ax + 1, s->rank);
  V acc = cg_var(k, k->m->f64, cd(k, 0));
  CG_FOR(k, o, ci(k, 0), ci(k, outer)) CG_FOR(k, i, ci(k, 0), ci(k, inner)) {
    V base = cg_add(k, cg_muli(k, o.iv, len * inner), i.iv);
    cg_set(k, acc, cd(k, 0));
    CG_FOR(k, l, ci(k, 0), ci(k, len)) {
      V pos = rev ? LLVMBuildSub(BLD, ci(k, len - 1), l.iv, "") : l.iv;
      V e = cg_add(k, base, cg_muli(k, pos, inner));
      V sum = LLVMBuildFAdd(BLD, cg_get(k, acc, k->m->f64), cg_tod(k, cg_ldf(k, 1, e)), "");
      cg_set(k, acc, sum);
      cg_st(k, 0, e, cg_tof(k, sum));
    }
  }
}

/* ---- data movement: strided copies ---- */

typedef struct {
  int src; /* argument index copied from */
} mv_ctx;

static void copy_body(cg_k *k, V *off, void *ctx) {
  int a = ((mv_ctx *)ctx)->src;
  cg_st(k, 0, off[0], ir_dtype_is_float(k->dt[a]) ? cg_ldf(k, a, off[1]) : cg_ldi(k, a, off[1]));
}

static void e_transpose(cg_k *k) {
  const ir_shape *o = &k->n->shape;
  int64_t st[2][IR_MAXDIM], in[IR_MAXDIM];
  cg_contig_strides(o, st[0]);
  cg_contig_strides(SH(0), in);
  for (int d = 0; d < o->rank; d++) st[1][d] = in[k->n->attr.list[d]];
  mv_ctx c = {1};
  cg_nest(k, o->rank, o->d, 2, st, NULL, copy_body, &c);
}

static void e_concat(cg_k *k) {
  const ir_shape *o = &k->n->shape;
  int ax = (int)k->n->attr.axis;
  int64_t st[2][IR_MAXDIM], at = 0;
  cg_contig_strides(o, st[0]);
  for (int j = 0; j < k->n->nin; j++) {
    cg_contig_strides(SH(j), st[1]);
    int64_t base[2] = {at * st[0][ax], 0};
    mv_ctx c = {1 + j};
    cg_nest(k, o->rank, SH(j)->d, 2, st, base, copy_body, &c);
    at += SH(j)->d[ax];
  }
}

static void e_slice(cg_k *k) {
  const ir_shape *o = &k->n->shape;
  int64_t st[2][IR_MAXDIM];
  cg_contig_strides(o, st[0]);
  cg_contig_strides(SH(0), st[1]);
  int64_t base[2] = {0, k->n->attr.start * st[1][k->n->attr.axis]};
  mv_ctx c = {1};
  cg_nest(k, o->rank, o->d, 2, st, base, copy_body, &c);
}

static void e_embedding(cg_k *k) {
  int64_t count = ir_numel(SH(0)), V_ = SH(1)->d[0], D = SH(1)->d[1];
  CG_FOR(k, i, ci(k, 0), ci(k, count)) {
    V id = cg_ldi(k, 1, i.iv);
    V ok = LLVMBuildICmp(BLD, LLVMIntULT, id, ci(k, V_), "");
    cg_flag_err(k, LLVMBuildNot(BLD, ok, ""), 1);
    V row = cg_muli(k, LLVMBuildSelect(BLD, ok, id, ci(k, 0), ""), D), orow = cg_muli(k, i.iv, D);
    CG_FOR(k, j, ci(k, 0), ci(k, D)) {
      V v = LLVMBuildSelect(BLD, ok, cg_ldf(k, 2, cg_add(k, row, j.iv)), cf(k, 0), "");
      cg_st(k, 0, cg_add(k, orow, j.iv), v);
    }
  }
}

/* ids -> rows of n: 1.0 at the id. An id outside [0, n) flags error
 * CG_ERR_INDEX (the run fails, as the interpreter's and PyTorch's do). */
static void e_one_hot(cg_k *k) {
  int64_t count = ir_numel(SH(0)), C = k->n->attr.n;
  CG_FOR(k, i, ci(k, 0), ci(k, count)) {
    V id = cg_ldi(k, 1, i.iv);
    cg_flag_err(k, LLVMBuildICmp(BLD, LLVMIntUGE, id, ci(k, C), ""), CG_ERR_INDEX);
    V row = cg_muli(k, i.iv, C);
    CG_FOR(k, j, ci(k, 0), ci(k, C))
      cg_st(k, 0, cg_add(k, row, j.iv), cg_sel(k, LLVMBuildICmp(BLD, LLVMIntEQ, j.iv, id, ""), cf(k, 1), cf(k, 0)));
  }
}

typedef struct {
  int64_t step, len; /* x's stride and size along the axis */
  int fl;            /* x is a float tensor */
} ga_t;

/* off[0]: the index's (and result's) element; off[1]: x's with axis coordinate 0 */
static void gather_body(cg_k *k, V *off, void *ctx) {
  const ga_t *g = ctx;
  V v = cg_ldi(k, 2, off[0]), ok = LLVMBuildICmp(BLD, LLVMIntULT, v, ci(k, g->len), "");
  cg_flag_err(k, LLVMBuildNot(BLD, ok, ""), CG_ERR_INDEX);
  V at = cg_add(k, off[1], cg_muli(k, cg_sel(k, ok, v, ci(k, 0)), g->step));
  cg_st(k, 0, off[0], g->fl ? cg_ldf(k, 1, at) : cg_ldi(k, 1, at));
}

static void e_gather(cg_k *k) {
  const ir_shape *si = SH(1);
  int ax = (int)k->n->attr.axis;
  int64_t st[2][IR_MAXDIM];
  cg_contig_strides(si, st[0]);
  cg_contig_strides(SH(0), st[1]);
  ga_t g = {st[1][ax], SH(0)->d[ax], ir_dtype_is_float(k->dt[1])};
  st[1][ax] = 0;
  cg_nest(k, si->rank, si->d, 2, st, NULL, gather_body, &g);
}

/* ---- losses: scalar f32 means, accumulated in double ---- */

typedef struct {
  int64_t C;
  double ls;
  V total; /* the running sum (rows on this thread), or NULL: each row's loss to scratch (rows in parallel) */
} ce_t;

/* row r's (1 - ls) (lse - x[label]) + ls (lse - mean(x)), in double */
static void ce_row(cg_k *k, V r, void *ctx) {
  const ce_t *t = ctx;
  V base = cg_muli(k, r, t->C), lab = cg_ldi(k, 2, r);
  lab = cg_sel(k, LLVMBuildICmp(BLD, LLVMIntULT, lab, ci(k, t->C), ""), lab, ci(k, 0)); /* flagged: cg_check_labels */
  cg_rowstat s = {.all_too = 1};
  s.r = cg_row_of(k, t->C);
  s.x = cg_fptr(k, ARG(0), base);
  cg_row_stats(k, &s);
  /* sum is in [1, C]: its logf is exact enough */
  V lse = LLVMBuildFAdd(BLD, cg_tod(k, s.m), cg_tod(k, cg_log_sum(k, cg_tof(k, s.sum))), "");
  V nll = LLVMBuildFSub(BLD, lse, cg_tod(k, cg_ldf(k, 1, cg_add(k, base, lab))), "");
  V smooth = LLVMBuildFSub(BLD, lse, LLVMBuildFDiv(BLD, s.all, cd(k, (double)t->C), ""), "");
  V l = LLVMBuildFAdd(BLD, LLVMBuildFMul(BLD, cd(k, 1.0 - t->ls), nll, ""), LLVMBuildFMul(BLD, cd(k, t->ls), smooth, ""), "");
  if (t->total) cg_set(k, t->total, LLVMBuildFAdd(BLD, cg_get(k, t->total, k->m->f64), l, ""));
  else LLVMBuildStore(BLD, l, cg_gep(k, k->scratch, k->m->f64, r));
}

/* cross_entropy with class weights or an ignore_index, and its gradient:
 * the labels checked (a class or the ignore_index) and copied to scratch as
 * i64, then liblathe_rt's lathe_rt_cross_entropy (rt/rt_loss.c). Kernel
 * arguments: out, logits, labels, then [weight] (forward) or dl [weight]. */
void cg_emit_cross_entropy_rt(cg_k *k) {
  const ir_node *n = k->n;
  int grad = n->op == IR_CROSS_ENTROPY_GRAD;
  const ir_shape *sx = SH(0);
  int64_t C = sx->d[sx->rank - 1], rows = ir_numel(sx) / C, ls_bits;
  memcpy(&ls_bits, &n->attr.f, sizeof ls_bits);
  V bad = cg_var(k, k->m->i1, LLVMConstInt(k->m->i1, 0, 0));
  CG_FOR(k, r, ci(k, 0), ci(k, rows)) {
    V lab = cg_ldi(k, 2, r.iv);
    LLVMBuildStore(BLD, lab, cg_gep(k, k->scratch, k->m->i64, r.iv));
    V out = LLVMBuildICmp(BLD, LLVMIntUGE, lab, ci(k, C), "");
    if (n->attr.k) out = LLVMBuildAnd(BLD, out, LLVMBuildICmp(BLD, LLVMIntNE, lab, ci(k, n->attr.n), ""), "");
    cg_set(k, bad, LLVMBuildOr(BLD, cg_get(k, bad, k->m->i1), out, ""));
  }
  cg_flag_err(k, cg_get(k, bad, k->m->i1), 2);
  int nw = grad ? 4 : 3; /* the weight's input position + 1 */
  V p[5] = {k->arg[0], k->arg[1], k->scratch, n->nin == nw ? k->arg[nw] : NULL, grad ? k->arg[3] : NULL};
  int64_t ints[5] = {rows, C, n->attr.k != 0, n->attr.n, ls_bits};
  cg_call_rt(k, "lathe_rt_cross_entropy", p, 5, ints, 5);
}

/* The mean of the rows' losses, summed in row order whether the rows ran
 * in parallel (losses through scratch) or not: the same bits either way. */
static void ce_plain(cg_k *k) {
  const ir_shape *sx = SH(0);
  int64_t C = sx->d[sx->rank - 1], rows = ir_numel(sx) / C;
  LLVMTypeRef f64 = k->m->f64;
  V total = cg_var(k, f64, cd(k, 0));
  cg_check_labels(k, 2, rows, C);
  ce_t t = {C, k->n->attr.f, NULL};
  if (cg_rows_parallel(rows, C, ROW_COST)) {
    cg_rows_for(k, rows, C, ROW_COST, ce_row, &t);
    CG_FOR(k, r, ci(k, 0), ci(k, rows))
      cg_set(k, total, LLVMBuildFAdd(BLD, cg_get(k, total, f64), LLVMBuildLoad2(BLD, f64, cg_gep(k, k->scratch, f64, r.iv), ""), ""));
  } else {
    t.total = total;
    CG_FOR(k, r, ci(k, 0), ci(k, rows)) ce_row(k, r.iv, &t);
  }
  cg_st(k, 0, ci(k, 0), cg_tof(k, LLVMBuildFDiv(BLD, cg_get(k, total, f64), cd(k, (double)rows), "")));
}

/* Class weights: lathe_rt_cross_entropy. An ignore_index (every
 * cross_entropy has one: PyTorch's -100 unless given): that too when a label
 * of this batch is ignored, else the plain kernel: without ignored labels
 * the same bits and speed as a cross_entropy without the index. */
static void e_cross_entropy(cg_k *k) {
  const ir_node *n = k->n;
  if (n->nin == 3) cg_emit_cross_entropy_rt(k);
  else if (n->attr.k) cg_if_else(k, cg_any_label(k, 2, ir_numel(SH(1)), n->attr.n), cg_emit_cross_entropy_rt, ce_plain);
  else ce_plain(k);
}

/* nll: the mean over rows of -x[label], summed in double in row order */
static void e_nll(cg_k *k) {
  const ir_shape *sx = SH(0);
  int64_t C = sx->d[sx->rank - 1], rows = ir_numel(sx) / C;
  LLVMTypeRef f64 = k->m->f64;
  V total = cg_var(k, f64, cd(k, 0));
  cg_check_labels(k, 2, rows, C);
  CG_FOR(k, r, ci(k, 0), ci(k, rows)) {
    V lab = cg_ldi(k, 2, r.iv);
    lab = cg_sel(k, LLVMBuildICmp(BLD, LLVMIntULT, lab, ci(k, C), ""), lab, ci(k, 0)); /* flagged above */
    V x = cg_tod(k, cg_ldf(k, 1, cg_add(k, cg_muli(k, r.iv, C), lab)));
    cg_set(k, total, LLVMBuildFSub(BLD, cg_get(k, total, f64), x, ""));
  }
  cg_st(k, 0, ci(k, 0), cg_tof(k, LLVMBuildFDiv(BLD, cg_get(k, total, f64), cd(k, (double)rows), "")));
}

typedef struct {
  V total;
  int op;
} pl_ctx;

static void pair_body(cg_k *k, V *off, void *ctx) {
  pl_ctx *c = ctx;
  V a = cg_ldf(k, 1, off[0]), b = cg_ldf(k, 2, off[1]), t;
  if (c->op == IR_MSE) {
    V d = cg_fsub(k, a, b);
    t = cg_fmul(k, d, d);
  } else if (c->op == IR_KL_DIV) { /* a = input x, b = target t: t == 0 ? 0 : t (log t - x) */
    V v = cg_fmul(k, b, cg_fsub(k, cg_log(k, b), a));
    t = LLVMBuildSelect(BLD, LLVMBuildFCmp(BLD, LLVMRealOEQ, b, cf(k, 0), ""), cf(k, 0), v, "");
  } else if (c->op == IR_L1) {
    t = cg_fabs(k, cg_fsub(k, a, b));
  } else if (c->op == IR_HUBER) { /* |d| < delta ? 0.5 d^2 : delta (|d| - 0.5 delta) */
    double delta = k->n->attr.f;
    V d = cg_fabs(k, cg_fsub(k, a, b));
    V in = cg_fmul(k, cf(k, 0.5), cg_fmul(k, d, d));
    V out = cg_fmul(k, cf(k, delta), cg_fsub(k, d, cf(k, 0.5 * delta)));
    t = LLVMBuildSelect(BLD, LLVMBuildFCmp(BLD, LLVMRealOLT, d, cf(k, delta), ""), in, out, "");
  } else { /* max(x, 0) - x*y + log1p(exp(-|x|)) */
    V pos = LLVMBuildSelect(BLD, LLVMBuildFCmp(BLD, LLVMRealOGT, a, cf(k, 0), ""), a, cf(k, 0), "");
    V sp = cg_call1(k, k->m->log1pf_, cg_exp(k, LLVMBuildFNeg(BLD, cg_fabs(k, a), "")));
    t = cg_fadd(k, cg_fsub(k, pos, cg_fmul(k, a, b)), sp);
  }
  cg_set(k, c->total, LLVMBuildFAdd(BLD, cg_get(k, c->total, k->m->f64), cg_tod(k, t), ""));
}

static void e_pair_loss(cg_k *k) {
  ir_shape s;
  if (ir_broadcast(SH(0), SH(1), &s)) s = *SH(0);
  int64_t st[2][IR_MAXDIM];
  cg_bcast_strides(&s, SH(0), st[0]);
  cg_bcast_strides(&s, SH(1), st[1]);
  pl_ctx c = {cg_var(k, k->m->f64, cd(k, 0)), k->n->op};
  cg_nest(k, s.rank, s.d, 2, st, NULL, pair_body, &c);
  /* kl_div's batchmean divides by the first dimension, the others by the count */
  double div = k->n->op == IR_KL_DIV ? (double)(s.rank ? s.d[0] : 1) : (double)ir_numel(&s);
  V mean = LLVMBuildFDiv(BLD, cg_get(k, c.total, k->m->f64), cd(k, div), "");
  cg_st(k, 0, ci(k, 0), cg_tof(k, mean));
}

/* ---- fused sequence layers ---- */

typedef struct {
  int64_t B, T, in, h, G; /* G gates: 1 rnn, 4 lstm, 3 gru */
} seq_t;

static seq_t seq_of(cg_k *k, int G) {
  seq_t s = {SH(0)->d[0], SH(0)->d[1], SH(0)->d[2], k->n->shape.d[2], G};
  return s;
}

/* xp[B*T, G*h] = x W_ih + bias: the input projection of every time step in one GEMM */
static V seq_inproj(cg_k *k, seq_t s, V bias) {
  V xp = scr(k, 0);
  int64_t gw = s.G * s.h;
  cg_fill_rows(k, xp, s.B * s.T, gw, gw, bias);
  cg_sgemm(k, 0, 0, s.B * s.T, gw, s.in, 1.0, ARG(0), s.in, ARG(1), gw, 1.0, xp, gw);
  return xp;
}

/* dst[B, G*h] (row stride ld) += h_{t-1} W_hh, h_{t-1} read from out */
static void seq_recur(cg_k *k, seq_t s, V t, V dst, int64_t ld) {
  V hp = cg_fptr(k, k->arg[0], cg_muli(k, LLVMBuildSub(BLD, t, ci(k, 1), ""), s.h));
  cg_sgemm(k, 0, 0, s.B, s.G * s.h, s.h, 1.0, hp, s.T * s.h, ARG(2), s.G * s.h, 1.0, dst, ld);
}

static V outidx(cg_k *k, seq_t s, V b, V t, V j) { return cg_add(k, cg_muli(k, cg_add(k, cg_muli(k, b, s.T), t), s.h), j); }

static void rnn_step(cg_k *k, seq_t s, V xp, V t, int first) {
  V g = cg_fptr(k, xp, cg_muli(k, t, s.h));
  if (!first) seq_recur(k, s, t, g, s.T * s.h);
  CG_FOR(k, b, ci(k, 0), ci(k, s.B)) CG_FOR(k, j, ci(k, 0), ci(k, s.h)) {
    V idx = outidx(k, s, b.iv, t, j.iv);
    cg_stp(k, k->arg[0], idx, cg_tanh(k, cg_ldp(k, xp, idx)));
  }
}

/* rnn (lstm and gru: rt/rt_seq.c, cg_seqcall.c). t = 0 is peeled (no
 * previous state: no recurrent GEMM), then a loop. */
static void e_seq(cg_k *k) {
  seq_t s = seq_of(k, 1);
  V xp = seq_inproj(k, s, ARG(3));
  rnn_step(k, s, xp, ci(k, 0), 1);
  CG_FOR(k, t, ci(k, 1), ci(k, s.T)) rnn_step(k, s, xp, t.iv, 0);
}

/* ---- a product with its elementwise tail fused (cg_fuse) ---- */

int cg_fusable_unary(int op) {
  static const unsigned char ok[IR_NOPS] = {
    [IR_RELU] = 1, [IR_LEAKY_RELU] = 1, [IR_SIGMOID] = 1, [IR_TANH] = 1, [IR_GELU] = 1,
    [IR_SWISH] = 1, [IR_EXP] = 1, [IR_SQRT] = 1, [IR_ABS] = 1, [IR_NEG] = 1,
  };
  return op >= 0 && op < IR_NOPS && ok[op];
}

static V epi_apply(cg_k *k, V v, V row, V col, int w, void *ctx) {
  const cg_fuse *f = ctx;
  static const cg_bop fops[] = {LLVMBuildFAdd, LLVMBuildFSub, LLVMBuildFMul, LLVMBuildFDiv};
  int64_t N = k->n->shape.d[k->n->shape.rank - 1];
  for (int s = 0; s < f->nsteps; s++) {
    const ir_node *n = f->node[s];
    if (f->kind[s] == CG_EPI_UNARY) {
      v = unary_fn[n->op](k, v, &n->attr);
    } else if (f->kind[s] == CG_EPI_PROGRAM) { /* cg_fused.c */
      v = cg_fused_epilogue(k, n, f->parg[s], v, row, col, w);
    } else {
      V idx = f->kind[s] == CG_EPI_ROW ? col : cg_add(k, cg_muli(k, row, N), col);
      V o = cg_vld(k, k->arg[f->arg[s]], idx, w);
      v = f->right[s] ? fops[n->op - IR_ADD](BLD, o, v, "") : fops[n->op - IR_ADD](BLD, v, o, "");
    }
    if (f->save[s]) cg_vst(k, k->arg[f->save[s]], cg_add(k, cg_muli(k, row, N), col), v, w); /* a saved link */
  }
  return v;
}

V cg_epi_unary(cg_k *k, V v, int w) { return epi_apply(k, v, NULL, NULL, w, (void *)k->fuse); }

typedef struct {
  int64_t N;
  V row;
} epi_row_t;

/* Per-element cost of the steps, in unary_cost's units. */
static int epi_cost(const cg_fuse *f) {
  int c = 0;
  for (int s = 0; s < f->nsteps; s++) {
    const ir_node *n = f->node[s];
    if (f->kind[s] == CG_EPI_UNARY) c += unary_cost[n->op];
    for (int q = 0; f->kind[s] == CG_EPI_PROGRAM && q < n->fusion->nsteps; q++) {
      int op = n->fusion->step[q].op;
      c += op == IR_UNARY_GRAD ? unary_cost[n->fusion->attr[q].i] : unary_cost[op] ? unary_cost[op] : 1;
    }
    if (f->kind[s] != CG_EPI_UNARY && f->kind[s] != CG_EPI_PROGRAM) c += 1;
  }
  return c;
}

static void epi_elems(cg_k *k, V j, int w, void *ctx) {
  epi_row_t *e = ctx;
  V ix = cg_add(k, cg_muli(k, e->row, e->N), j);
  cg_vst(k, k->arg[0], ix, epi_apply(k, cg_vld(k, k->arg[0], ix, w), e->row, j, w, (void *)k->fuse), w);
}

static void epi_row(cg_k *k, V r, void *ctx) {
  epi_row_t e = {*(int64_t *)ctx, r};
  cg_vfor(k, ci(k, e.N), epi_elems, &e);
}

/* The steps after the product in one pass over its result (none: no pass).
 * A pass that is mostly arithmetic (gelu's erfc) is split over the pool as
 * lathe_rt_sgemm split the product (by rows), so each thread reads rows its
 * own core wrote. A cheap one (a bias, a residual, relu) stays on this
 * thread: split, it measured no faster in the MLP and char-GPT steps. */
static void epi_pass(cg_k *k, int64_t rows, int64_t N) {
  if (k->fuse->nsteps == 0) return;
  if (epi_cost(k->fuse) >= 8) {
    int64_t grain = (1 << 16) / N > 1 ? (1 << 16) / N : 1; /* ~64K elements a part */
    cg_parallel_for(k, rows, grain, epi_row, &N);
    return;
  }
  CG_FOR(k, r, ci(k, 0), ci(k, rows)) epi_row(k, r.iv, &N);
}

/* A first step adding a per-column vector (a dense layer's bias) becomes
 * the product's C before it: the rows filled with the vector, then the
 * product added to them (beta = 1). That saves a pass over the result
 * (GPT-2-small's head writes 51 MB), and OpenBLAS no longer zeroes C
 * first. The sum is rounded in another order (the bias joins OpenBLAS's
 * first block of K instead of the finished dot product): the last bits
 * may differ, never the tolerance. */
static int bias_first(const cg_fuse *f) {
  return f->nsteps > 0 && f->kind[0] == CG_EPI_ROW && f->node[0]->op == IR_ADD && !f->save[0];
}

static cg_fuse steps_after_first(const cg_fuse *f) {
  cg_fuse r = *f;
  r.nsteps = f->nsteps - 1;
  for (int s = 0; s < r.nsteps; s++) {
    r.node[s] = f->node[s + 1], r.kind[s] = f->kind[s + 1], r.arg[s] = f->arg[s + 1];
    r.right[s] = f->right[s + 1], r.save[s] = f->save[s + 1];
    memcpy(r.parg[s], f->parg[s + 1], sizeof r.parg[s]);
  }
  return r;
}

typedef struct {
  int64_t N;
  int bias; /* kernel argument */
} fill_t;

static void fill_elems(cg_k *k, V j, int w, void *ctx) {
  V *rb = ctx; /* the row's first index, the bias */
  cg_vst(k, k->arg[0], cg_add(k, rb[0], j), cg_vld(k, rb[1], j, w), w);
}

static void fill_row(cg_k *k, V r, void *ctx) {
  const fill_t *f = ctx;
  V rb[2] = {cg_muli(k, r, f->N), k->arg[f->bias]};
  cg_vfor(k, ci(k, f->N), fill_elems, rb);
}

/* every row of the result := the bias (a write-only pass, split over the
 * pool like a costly epilogue: rows a part's own product will add to) */
static void fill_bias(cg_k *k, int64_t rows, int64_t N, int bias) {
  fill_t f = {N, bias};
  int64_t grain = (1 << 16) / N > 1 ? (1 << 16) / N : 1;
  cg_parallel_for(k, rows, grain, fill_row, &f);
}

/* The product as e_matmul, with the steps applied as each element is
 * stored (small products: in registers) or in one pass over the result
 * after it. */
void cg_emit_fused(cg_k *k) {
  const ir_shape *sa = SH(0), *sb = SH(1);
  mm_ctx c = mm_dims(k);
  int64_t N = k->n->shape.d[k->n->shape.rank - 1];
  int64_t rows = ir_numel(&k->n->shape) / N;
  /* one GEMM over every row: B shared, A's rows stacked (not transposed, or a single matrix) */
  if (sb->rank == 2 && sa->rank >= 2 && (!c.ta || sa->rank == 2) && rows * N * c.K <= CG_SMALL_GEMM) {
    cg_epi epi = {epi_apply, (void *)k->fuse};
    cg_sgemm_epi(k, c.ta, c.tb, rows, N, c.K, 1.0, ARG(0), c.lda, ARG(1), c.ldb, 0.0, k->arg[0], N, &epi);
    return;
  }
  cg_fuse rest;
  const cg_fuse *all = k->fuse;
  if (bias_first(k->fuse) && sb->rank == 2 && sa->rank >= 2 && (!c.ta || sa->rank == 2)) {
    LLVMBasicBlockRef done = cg_sgemm_bias_first(k, c.ta, c.tb, rows, N, c.K, ARG(0), c.lda, ARG(1), c.ldb,
                                                 k->arg[k->fuse->arg[0]], k->arg[0], N);
    fill_bias(k, rows, N, k->fuse->arg[0]);
    cg_sgemm(k, c.ta, c.tb, rows, N, c.K, 1.0, ARG(0), c.lda, ARG(1), c.ldb, 1.0, k->arg[0], N);
    if (done) {
      LLVMBuildBr(k->B, done);
      LLVMPositionBuilderAtEnd(k->B, done);
    }
    rest = steps_after_first(k->fuse);
    k->fuse = &rest;
  } else {
    e_matmul(k);
  }
  epi_pass(k, rows, N);
  k->fuse = all;
}

/* ---- the table ---- */

const cg_emit_fn cg_emitters[IR_NOPS] = {
  [IR_RELU] = e_unary,      [IR_LEAKY_RELU] = e_unary, [IR_SIGMOID] = e_unary,   [IR_TANH] = e_unary,
  [IR_GELU] = e_unary,      [IR_SWISH] = e_unary,      [IR_EXP] = e_unary,       [IR_LOG] = e_unary,
  [IR_SQRT] = e_unary,      [IR_ABS] = e_unary,        [IR_NEG] = e_unary,       [IR_POW] = e_unary,
  [IR_DROPOUT] = e_unary,   [IR_CAST] = e_unary,       [IR_RESHAPE] = e_unary,   [IR_CLAMP] = e_unary,
  [IR_ADD] = e_binary,      [IR_SUB] = e_binary,       [IR_MUL] = e_binary,      [IR_DIV] = e_binary,
  [IR_LESS] = e_binary,     [IR_LESS_EQUAL] = e_binary, [IR_GREATER] = e_binary, [IR_GREATER_EQUAL] = e_binary,
  [IR_EQUAL] = e_binary,    [IR_NOT_EQUAL] = e_binary,  [IR_WHERE] = e_where,
  [IR_MATMUL] = e_matmul,   [IR_CONV2D] = e_conv2d,
  [IR_SOFTMAX] = e_softmax, [IR_LOG_SOFTMAX] = e_softmax,
  [IR_SUM] = e_reduce,      [IR_MEAN] = e_reduce,      [IR_MAX] = e_reduce,      [IR_LAYERNORM] = e_layernorm,
  [IR_BATCHNORM] = cg_emit_norm, [IR_BATCHNORM_TRAIN] = cg_emit_norm, [IR_GROUPNORM] = cg_emit_norm,
  [IR_RMSNORM] = cg_emit_norm, /* cg_norm.c */
  [IR_MIN] = e_reduce,      [IR_ARGMAX] = e_argext,    [IR_ARGMIN] = e_argext,
  [IR_MAXPOOL2D] = e_pool,  [IR_AVGPOOL2D] = e_pool,
  [IR_TRANSPOSE] = e_transpose, [IR_CONCAT] = e_concat, [IR_SLICE] = e_slice, [IR_EMBEDDING] = e_embedding,
  [IR_ONE_HOT] = e_one_hot, [IR_GATHER] = e_gather, [IR_CUMSUM] = e_cumsum,
  [IR_ATTENTION] = cg_emit_attention, [IR_RNN] = e_seq,      [IR_LSTM] = cg_emit_lstm, [IR_GRU] = cg_emit_gru,
  [IR_CROSS_ENTROPY] = e_cross_entropy, [IR_MSE] = e_pair_loss, [IR_BCE] = e_pair_loss,
  [IR_L1] = e_pair_loss,    [IR_HUBER] = e_pair_loss, [IR_NLL] = e_nll,
  [IR_KL_DIV] = e_pair_loss,
  [IR_SUM_TO ... IR_ATTENTION_GRAD_SAVED] = cg_emit_grad, /* the backward ops: cg_grad.c */
  [IR_MHA] = cg_emit_mha,  [IR_MHA_GRAD] = cg_emit_mha, /* cg_mha.c */
  [IR_QMATMUL] = cg_emit_qmatmul,              /* cg_quant.c */
  [IR_QCONV2D] = cg_emit_qconv2d,              /* cg_qconv.c */
  [IR_QUANTIZE] = cg_emit_qdq, [IR_DEQUANTIZE] = cg_emit_qdq, /* cg_qdq.c */
  [IR_ALLREDUCE ... IR_RECV] = cg_emit_comm, /* cg_comm.c */
  [IR_FUSED] = cg_emit_fused_op,               /* cg_fused.c */
  [IR_SAMPLE_TOKEN] = cg_emit_decode,          /* cg_decode.c: the decode step's token draw */
};

int64_t cg_scratch_bytes(const ir_graph *g, const ir_node *n) {
  const ir_shape *sx = &g->nodes[n->in ? n->in[0] : 0].shape;
  int64_t f = 0;
  switch (n->op) {
  case IR_ATTENTION: case IR_ATTENTION_GRAD: case IR_RNN_GRAD: case IR_LSTM_GRAD: case IR_GRU_GRAD:
  case IR_ATTENTION_SAVE: case IR_ATTENTION_GRAD_SAVED:
    return cg_seq_scratch_bytes(g, n); /* cg_seqcall.c */
  case IR_MHA: case IR_MHA_GRAD: return cg_mha_scratch_bytes(g, n); /* cg_mha.c */
  case IR_QMATMUL: return cg_quant_scratch_bytes(g, n); /* cg_quant.c */
  case IR_QCONV2D: return cg_qconv_scratch_bytes(g, n); /* cg_qconv.c */
  case IR_CONV2D: case IR_CONV2D_GRAD_INPUT: case IR_CONV2D_GRAD_WEIGHT: return cg_conv_scratch_bytes(g, n); /* cg_conv.c */
  case IR_RNN: f = sx->d[0] * sx->d[1] * n->shape.d[2]; break;
  case IR_LSTM: f = sx->d[0] * sx->d[1] * 4 * n->shape.d[2] + sx->d[0] * n->shape.d[2]; break;
  case IR_GRU: f = sx->d[0] * sx->d[1] * 3 * n->shape.d[2] + sx->d[0] * 3 * n->shape.d[2]; break;
  case IR_CROSS_ENTROPY: case IR_CROSS_ENTROPY_GRAD: {
    int64_t C = sx->d[sx->rank - 1], rows = ir_numel(sx) / C;
    if (n->attr.k || n->nin == (n->op == IR_CROSS_ENTROPY ? 3 : 4)) return rows * 8; /* the labels as i64 */
    /* rows in parallel: each row's loss (a double) */
    return n->op == IR_CROSS_ENTROPY && cg_rows_parallel(rows, C, ROW_COST) ? rows * 8 : 0;
  }
  default: break;
  }
  return f * 4;
}

/* the channel normalisations' kernels are float (cg_norm.c) */
static int cg_is_norm(int op) {
  return op == IR_BATCHNORM || op == IR_BATCHNORM_TRAIN || op == IR_GROUPNORM || op == IR_RMSNORM || op == IR_NORM_GRAD;
}

static int is_supported_dtype(ir_dtype t) { return t != IR_F16 && t != IR_BF16; }

int cg_op_has_kernel(int op) {
  return op >= 0 && op < IR_NOPS && (ir_ops[op].cat == IR_CAT_LEAF || cg_emitters[op] != NULL);
}

const char *cg_unsupported(const ir_graph *g, const ir_node *n) {
  if (n->op < 0 || n->op >= IR_NOPS) return "unknown operator";
  if (ir_ops[n->op].cat == IR_CAT_LEAF) return NULL;
  if (!cg_emitters[n->op]) return "operator has no CPU kernel";
  if (n->nin + 3 > CG_MAXARGS) return "too many inputs for one kernel";
  if (!is_supported_dtype(n->dtype)) return "f16/bf16 tensors are not supported by the CPU backend yet";
  for (int j = 0; j < n->nin; j++) {
    ir_dtype t = g->nodes[n->in[j]].dtype;
    if ((n->op == IR_QMATMUL || n->op == IR_QCONV2D) && j > 0) continue; /* stored weights: the shape rule checked their dtypes */
    /* int8 activations between products (rt/rt_qdq.h): the shape rules checked them */
    if (((n->op == IR_QMATMUL || n->op == IR_QCONV2D) && j == 0) || n->op == IR_QUANTIZE || n->op == IR_DEQUANTIZE) continue;
    if (!is_supported_dtype(t)) return "f16/bf16 tensors are not supported by the CPU backend yet";
    int cat = ir_ops[n->op].cat;
    int mha_mask = (n->op == IR_MHA || n->op == IR_MHA_GRAD) && j == 8 && ir_dtype_is_int(t); /* lengths or bool */
    int must_f32 = ((cat == IR_CAT_GEMM || cat == IR_CAT_LAYER || n->op == IR_LAYERNORM || cg_is_norm(n->op)) && !mha_mask) ||
                   (n->op == IR_EMBEDDING && j == 1) || ((n->op == IR_CROSS_ENTROPY || n->op == IR_NLL || n->op == IR_NLL_GRAD) && j == 0);
    if (must_f32 && t != IR_F32) return "this operator needs f32 operands on the CPU backend";
  }
  return NULL;
}

V cg_unary_value(cg_k *k, int op, V x, const ir_attr *a) { return unary_fn[op](k, x, a); }
