/* cg_emit.c -- the IR-building vocabulary of the CPU backend (see
 * cg_internal.h). Pointers are generic byte pointers bitcast to the element
 * type at each access, which is correct with LLVM 14's typed pointers and a
 * no-op with the opaque pointers of LLVM 15+. */
#include "cg_internal.h"
#include "cg_vec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rt/threadpool.h"

static cg_fn cg_declare(cg_mod *m, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, unsigned n) {
  cg_fn f;
  f.ty = LLVMFunctionType(ret, params, n, 0);
  f.fn = LLVMGetNamedFunction(m->M, name);
  if (!f.fn) f.fn = LLVMAddFunction(m->M, name, f.ty);
  return f;
}

static cg_fn cg_intrinsic(cg_mod *m, const char *name, LLVMTypeRef ty) {
  cg_fn f;
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  f.fn = LLVMGetIntrinsicDeclaration(m->M, id, &ty, 1);
  f.ty = LLVMIntrinsicGetType(m->C, id, &ty, 1);
  return f;
}

void cg_mod_types(cg_mod *m) {
  LLVMContextRef C = m->C;
  m->i1 = LLVMInt1TypeInContext(C);
  m->i8 = LLVMInt8TypeInContext(C);
  m->i32 = LLVMInt32TypeInContext(C);
  m->i64 = LLVMInt64TypeInContext(C);
  m->f32 = LLVMFloatTypeInContext(C);
  m->f64 = LLVMDoubleTypeInContext(C);
  m->ptr = LLVMPointerType(m->i8, 0);
  m->vd = LLVMVoidTypeInContext(C);
  LLVMTypeRef g[14] = {m->i32, m->i32, m->i32, m->i32, m->i32, m->i32, m->f32,
                       m->ptr, m->i32, m->ptr, m->i32, m->f32, m->ptr, m->i32};
  m->sgemm = cg_declare(m, "lathe_rt_sgemm", m->vd, g, 14);
  if (m->jit) { /* an emitted object links liblathe_rt's ABI, which has no packed weights */
    LLVMTypeRef gp[10] = {m->i32, m->i32, m->i32, m->ptr, m->i32, m->ptr, m->i32, m->f32, m->ptr, m->i32};
    m->sgemm_packed = cg_declare(m, "lathe_rt_sgemm_packed", m->i32, gp, 10);
    LLVMTypeRef gb[11] = {m->i32, m->i32, m->i32, m->i32, m->ptr, m->i32, m->ptr, m->i32, m->ptr, m->ptr, m->i32};
    m->sgemm_bias = cg_declare(m, "lathe_rt_sgemm_bias", m->i32, gb, 11);
  }
  LLVMTypeRef f1[2] = {m->f32, m->f32};
  m->logf_ = cg_declare(m, "logf", m->f32, f1, 1);
  m->log1pf_ = cg_declare(m, "log1pf", m->f32, f1, 1);
  m->powf_ = cg_declare(m, "powf", m->f32, f1, 2);
  LLVMTypeRef pf[4] = {m->i64, m->i64, m->ptr, m->ptr};
  m->parfor = cg_declare(m, "lathe_rt_parallel_for", m->vd, pf, 4);
  m->sqrt_ = cg_intrinsic(m, "llvm.sqrt", m->f32);
  m->fabs_ = cg_intrinsic(m, "llvm.fabs", m->f32);
}

V ci(cg_k *k, int64_t v) { return LLVMConstInt(k->m->i64, (unsigned long long)v, 1); }
V ci32(cg_k *k, int64_t v) { return LLVMConstInt(k->m->i32, (unsigned long long)v, 1); }
V cf(cg_k *k, double v) { return LLVMConstReal(k->m->f32, v); }
V cd(cg_k *k, double v) { return LLVMConstReal(k->m->f64, v); }

V cg_gep(cg_k *k, V base, LLVMTypeRef ty, V idx) {
  V p = LLVMBuildPointerCast(k->B, base, LLVMPointerType(ty, 0), "");
  return LLVMBuildGEP2(k->B, ty, p, &idx, 1, "");
}

V cg_fptr(cg_k *k, V base, V idx) {
  return LLVMBuildPointerCast(k->B, cg_gep(k, base, k->m->f32, idx), k->m->ptr, "");
}

static LLVMTypeRef cg_elem_type(cg_mod *m, ir_dtype t) {
  switch (t) {
  case IR_F32: return m->f32;
  case IR_I32: return m->i32;
  case IR_I64: return m->i64;
  default: return m->i8; /* i8, u8, bool */
  }
}

static int cg_unsigned(ir_dtype t) { return t == IR_U8 || t == IR_BOOL; }

V cg_ldf(cg_k *k, int a, V idx) {
  ir_dtype t = k->dt[a];
  LLVMTypeRef ty = cg_elem_type(k->m, t);
  V v = LLVMBuildLoad2(k->B, ty, cg_gep(k, k->arg[a], ty, idx), "");
  if (t == IR_F32) return v;
  return cg_unsigned(t) ? LLVMBuildUIToFP(k->B, v, k->m->f32, "") : LLVMBuildSIToFP(k->B, v, k->m->f32, "");
}

V cg_ldi(cg_k *k, int a, V idx) {
  ir_dtype t = k->dt[a];
  LLVMTypeRef ty = cg_elem_type(k->m, t);
  V v = LLVMBuildLoad2(k->B, ty, cg_gep(k, k->arg[a], ty, idx), "");
  if (t == IR_F32) { /* truncation toward zero; NaN and out-of-range become 0 */
    V ok = LLVMBuildFCmp(k->B, LLVMRealOLT, LLVMBuildCall2(k->B, k->m->fabs_.ty, k->m->fabs_.fn, &v, 1, ""),
                         cf(k, 9.2233715e18), "");
    V i = LLVMBuildFPToSI(k->B, LLVMBuildSelect(k->B, ok, v, cf(k, 0), ""), k->m->i64, "");
    return i;
  }
  if (t == IR_I64) return v;
  return cg_unsigned(t) ? LLVMBuildZExt(k->B, v, k->m->i64, "") : LLVMBuildSExt(k->B, v, k->m->i64, "");
}

void cg_st(cg_k *k, int a, V idx, V v) {
  ir_dtype t = k->dt[a];
  LLVMTypeRef ty = cg_elem_type(k->m, t), vt = LLVMTypeOf(v);
  int vf = vt == k->m->f32;
  V s;
  if (t == IR_F32) s = vf ? v : LLVMBuildSIToFP(k->B, v, k->m->f32, "");
  else if (t == IR_BOOL)
    s = LLVMBuildZExt(k->B, vf ? LLVMBuildFCmp(k->B, LLVMRealUNE, v, cf(k, 0), "")
                               : LLVMBuildICmp(k->B, LLVMIntNE, v, LLVMConstInt(vt, 0, 0), ""),
                      k->m->i8, "");
  else {
    if (vf) { /* as cg_ldi: truncate, NaN and out of range to 0 */
      V ok = LLVMBuildFCmp(k->B, LLVMRealOLT, cg_call1(k, k->m->fabs_, v), cf(k, 9.2233715e18), "");
      v = LLVMBuildFPToSI(k->B, LLVMBuildSelect(k->B, ok, v, cf(k, 0), ""), k->m->i64, "");
    }
    s = LLVMBuildIntCast2(k->B, v, ty, 1, "");
  }
  LLVMBuildStore(k->B, s, cg_gep(k, k->arg[a], ty, idx));
}

V cg_ldp(cg_k *k, V p, V idx) { return LLVMBuildLoad2(k->B, k->m->f32, cg_gep(k, p, k->m->f32, idx), ""); }
void cg_stp(cg_k *k, V p, V idx, V v) { LLVMBuildStore(k->B, v, cg_gep(k, p, k->m->f32, idx)); }

V cg_call(cg_k *k, cg_fn f, V *args, unsigned n) { return LLVMBuildCall2(k->B, f.ty, f.fn, args, n, ""); }
V cg_call1(cg_k *k, cg_fn f, V x) { return cg_call(k, f, &x, 1); }

/* ---- loops ---- */

cg_loop cg_loop_open(cg_k *k, V lo, V hi) {
  cg_loop l;
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(k->B);
  l.head = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "loop");
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "body");
  l.exit = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "done");
  LLVMBuildBr(k->B, l.head);
  LLVMPositionBuilderAtEnd(k->B, l.head);
  l.iv = LLVMBuildPhi(k->B, k->m->i64, "i");
  LLVMAddIncoming(l.iv, &lo, &pre, 1);
  LLVMBuildCondBr(k->B, LLVMBuildICmp(k->B, LLVMIntSLT, l.iv, hi, ""), body, l.exit);
  LLVMPositionBuilderAtEnd(k->B, body);
  l.once = 1;
  return l;
}

void cg_loop_close(cg_k *k, cg_loop *l) {
  V next = LLVMBuildNSWAdd(k->B, l->iv, ci(k, 1), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(k->B);
  LLVMBuildBr(k->B, l->head);
  LLVMAddIncoming(l->iv, &next, &latch, 1);
  LLVMPositionBuilderAtEnd(k->B, l->exit);
  l->once = 0;
}

V cg_var(cg_k *k, LLVMTypeRef ty, V init) {
  LLVMBasicBlockRef cur = LLVMGetInsertBlock(k->B);
  LLVMValueRef first = LLVMGetFirstInstruction(k->entry);
  if (first) LLVMPositionBuilderBefore(k->B, first);
  else LLVMPositionBuilderAtEnd(k->B, k->entry);
  V a = LLVMBuildAlloca(k->B, ty, "");
  LLVMPositionBuilderAtEnd(k->B, cur);
  LLVMBuildStore(k->B, init, a);
  return a;
}
V cg_get(cg_k *k, V var, LLVMTypeRef ty) { return LLVMBuildLoad2(k->B, ty, var, ""); }
void cg_set(cg_k *k, V var, V v) { LLVMBuildStore(k->B, v, var); }

/* ---- math ---- */

/* The transcendentals are branch-free polynomials in IR, generic over f32
 * and <N x float> (the type of x), so loops that use them vectorise: LLVM 14
 * has no vector math library and will not vectorise a loop calling expf.
 * Accuracy (checked against double libm over the whole float range): exp
 * 1.4 ulp (Cephes expf), tanh 2 ulp (Cephes tanhf), erfc 1.2e-7 relative
 * (Numerical Recipes' erfcc), all well inside the 1e-5 test tolerance. */

static LLVMTypeRef cg_int_like(cg_k *k, LLVMTypeRef t) {
  return LLVMGetTypeKind(t) == LLVMVectorTypeKind ? LLVMVectorType(k->m->i32, LLVMGetVectorSize(t)) : k->m->i32;
}

V cg_splat(cg_k *k, LLVMTypeRef ty, V c) {
  (void)k;
  if (LLVMGetTypeKind(ty) != LLVMVectorTypeKind) return c;
  V lanes[64];
  unsigned n = LLVMGetVectorSize(ty);
  for (unsigned i = 0; i < n && i < 64; i++) lanes[i] = c;
  return LLVMConstVector(lanes, n);
}

V cfl(cg_k *k, V like, double v) { return cg_splat(k, LLVMTypeOf(like), cf(k, v)); }
static V cil(cg_k *k, LLVMTypeRef ity, int v) { return cg_splat(k, ity, ci32(k, v)); }

V cg_intr(cg_k *k, const char *name, V *args, unsigned n) {
  LLVMTypeRef ty = LLVMTypeOf(args[0]);
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  V fn = LLVMGetIntrinsicDeclaration(k->m->M, id, &ty, 1);
  return LLVMBuildCall2(k->B, LLVMIntrinsicGetType(k->m->C, id, &ty, 1), fn, args, n, "");
}
V cg_fabs(cg_k *k, V x) { return cg_intr(k, "llvm.fabs", &x, 1); }

static V fm(cg_k *k, V a, V b) { return LLVMBuildFMul(k->B, a, b, ""); }
static V fa(cg_k *k, V a, V b) { return LLVMBuildFAdd(k->B, a, b, ""); }

/* a * b + c, fused where the target has FMA (one rounding: no less accurate) */
static V fma_(cg_k *k, V a, V b, V c) {
  V args[3] = {a, b, c};
  return cg_intr(k, "llvm.fmuladd", args, 3);
}

/* Horner: c[0] x^(n-1) + ... + c[n-1] */
static V horner(cg_k *k, V x, const double *c, int n) {
  V p = cfl(k, x, c[0]);
  for (int i = 1; i < n; i++) p = fma_(k, p, x, cfl(k, x, c[i]));
  return p;
}

V cg_exp(cg_k *k, V x) {
  static const double P[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                             4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
  LLVMBuilderRef B = k->B;
  LLVMTypeRef ity = cg_int_like(k, LLVMTypeOf(x));
  V nan = cg_fcmp(k, LLVMRealUNO, x, x);
  /* clamp to where the result is inf or 0 anyway; NaN lanes compute on 0 */
  V c = cg_sel(k, cg_fcmp(k, LLVMRealOGT, x, cfl(k, x, 89.0)), cfl(k, x, 89.0), x);
  c = cg_sel(k, cg_fcmp(k, LLVMRealOLT, c, cfl(k, x, -104.0)), cfl(k, x, -104.0), c);
  c = cg_sel(k, nan, cfl(k, x, 0.0), c);
  V t = fma_(k, c, cfl(k, x, 1.44269504088896341), cfl(k, x, 0.5));
  V n = cg_intr(k, "llvm.floor", &t, 1);
  V r = fma_(k, n, cfl(k, x, -0.693359375), c); /* Cody-Waite: c - n ln2 in two parts */
  r = fma_(k, n, cfl(k, x, 2.12194440e-4), r);
  V p = fa(k, fma_(k, horner(k, r, P, 6), fm(k, r, r), r), cfl(k, x, 1.0));
  /* p * 2^n as two exact scalings, so results down to the denormals are right */
  V ni = LLVMBuildFPToSI(B, n, ity, "");
  V n1 = LLVMBuildAShr(B, ni, cil(k, ity, 1), ""), n2 = LLVMBuildSub(B, ni, n1, "");
  V s1 = LLVMBuildBitCast(B, LLVMBuildShl(B, LLVMBuildAdd(B, n1, cil(k, ity, 127), ""), cil(k, ity, 23), ""),
                          LLVMTypeOf(x), "");
  V s2 = LLVMBuildBitCast(B, LLVMBuildShl(B, LLVMBuildAdd(B, n2, cil(k, ity, 127), ""), cil(k, ity, 23), ""),
                          LLVMTypeOf(x), "");
  return cg_sel(k, nan, x, fm(k, fm(k, p, s1), s2));
}

V cg_log(cg_k *k, V x) { return cg_call1(k, k->m->logf_, x); } /* scalar only: never in a hot loop */

V cg_tanh(cg_k *k, V x) {
  static const double P[] = {-5.70498872745E-3, 2.06390887954E-2, -5.37397155531E-2, 1.33314422036E-1,
                             -3.33332819422E-1};
  V a = cg_fabs(k, x), z = fm(k, x, x);
  V small = fa(k, x, fm(k, fm(k, x, z), horner(k, z, P, 5)));
  V e = cg_exp(k, fm(k, a, cfl(k, x, 2.0)));
  V big = LLVMBuildFSub(k->B, cfl(k, x, 1.0), LLVMBuildFDiv(k->B, cfl(k, x, 2.0), fa(k, e, cfl(k, x, 1.0)), ""), "");
  V args[2] = {big, x};
  big = cg_intr(k, "llvm.copysign", args, 2);
  return cg_sel(k, cg_fcmp(k, LLVMRealOLT, a, cfl(k, x, 0.625)), small, big); /* NaN: big is NaN */
}

V cg_erfc(cg_k *k, V x) {
  static const double P[] = {0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807,
                             -0.18628806, 0.09678418, 0.37409196, 1.00002368, -1.26551223};
  V a = cg_fabs(k, x);
  V t = LLVMBuildFDiv(k->B, cfl(k, x, 1.0), fa(k, cfl(k, x, 1.0), fm(k, a, cfl(k, x, 0.5))), "");
  V ex = fa(k, LLVMBuildFNeg(k->B, fm(k, a, a), ""), horner(k, t, P, 10));
  V ans = fm(k, t, cg_exp(k, ex));
  return cg_sel(k, cg_fcmp(k, LLVMRealOGE, x, cfl(k, x, 0.0)), ans, LLVMBuildFSub(k->B, cfl(k, x, 2.0), ans, ""));
}

V cg_sqrt(cg_k *k, V x) { return cg_intr(k, "llvm.sqrt", &x, 1); }

/* 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below: no overflow, no cancellation */
V cg_sigmoid(cg_k *k, V x) {
  LLVMBuilderRef B = k->B;
  V e = cg_exp(k, LLVMBuildFNeg(B, cg_fabs(k, x), ""));
  V r = LLVMBuildFDiv(B, cfl(k, x, 1), fa(k, cfl(k, x, 1), e), "");
  return cg_sel(k, cg_fcmp(k, LLVMRealOGE, x, cfl(k, x, 0)), r, fm(k, e, r));
}

/* The running extremum with NaN winning (as torch.max/min): v replaces acc
 * when it compares past it (unordered counts: v or acc NaN), unless acc is
 * already NaN and v is not. pred is LLVMRealUGT for max, LLVMRealULT for min. */
static V fext_nan(cg_k *k, LLVMRealPredicate pred, V acc, V v) {
  V take = LLVMBuildFCmp(k->B, pred, v, acc, "");
  V vnan = LLVMBuildFCmp(k->B, LLVMRealUNO, v, v, "");
  V accnan = LLVMBuildFCmp(k->B, LLVMRealUNO, acc, acc, "");
  take = LLVMBuildAnd(k->B, take, LLVMBuildOr(k->B, vnan, LLVMBuildNot(k->B, accnan, ""), ""), "");
  return LLVMBuildSelect(k->B, take, v, acc, "");
}

V cg_fmax_nan(cg_k *k, V acc, V v) { return fext_nan(k, LLVMRealUGT, acc, v); }
V cg_fmin_nan(cg_k *k, V acc, V v) { return fext_nan(k, LLVMRealULT, acc, v); }

V cg_fext_nan(cg_k *k, int op, V acc, V v) { return op == IR_MIN ? cg_fmin_nan(k, acc, v) : cg_fmax_nan(k, acc, v); }

void cg_flag_err(cg_k *k, V bad, int code) {
  V old = LLVMBuildLoad2(k->B, k->m->i32, cg_gep(k, k->err, k->m->i32, ci(k, 0)), "");
  V nv = LLVMBuildSelect(k->B, bad, ci32(k, code), old, "");
  LLVMBuildStore(k->B, nv, cg_gep(k, k->err, k->m->i32, ci(k, 0)));
}

/* ---- loop nests ---- */

void cg_contig_strides(const ir_shape *s, int64_t *st) {
  int64_t acc = 1;
  for (int d = s->rank - 1; d >= 0; d--) {
    st[d] = acc;
    acc *= s->d[d];
  }
}

void cg_bcast_strides(const ir_shape *out, const ir_shape *s, int64_t *st) {
  int64_t own[IR_MAXDIM];
  cg_contig_strides(s, own);
  for (int d = out->rank - 1, j = s->rank - 1; d >= 0; d--, j--)
    st[d] = (j < 0 || s->d[j] == 1) ? 0 : own[j];
}

typedef struct {
  int rank, nops;
  int64_t dims[IR_MAXDIM];
  int64_t st[4][IR_MAXDIM];
  cg_body_fn body;
  void *ctx;
} cg_nest_t;

static void cg_nest_level(cg_k *k, cg_nest_t *t, int d, V *off) {
  if (d == t->rank) {
    t->body(k, off, t->ctx);
    return;
  }
  CG_FOR(k, l, ci(k, 0), ci(k, t->dims[d])) {
    V o[4];
    for (int j = 0; j < t->nops; j++)
      o[j] = t->st[j][d] ? LLVMBuildNSWAdd(k->B, off[j], LLVMBuildNSWMul(k->B, l.iv, ci(k, t->st[j][d]), ""), "")
                         : off[j];
    cg_nest_level(k, t, d + 1, o);
  }
}

void cg_nest(cg_k *k, int rank, const int64_t *dims, int nops, int64_t strides[][IR_MAXDIM],
             const int64_t *base, cg_body_fn body, void *ctx) {
  cg_nest_t t = {0};
  t.nops = nops;
  t.body = body;
  t.ctx = ctx;
  /* drop size-1 dims, merge d into the previous kept dim when contiguous */
  for (int d = 0; d < rank; d++) {
    if (dims[d] == 1) continue;
    int r = t.rank, merge = r > 0;
    for (int j = 0; j < nops && merge; j++) merge = strides[j][d] * dims[d] == t.st[j][r - 1];
    if (merge) {
      t.dims[r - 1] *= dims[d];
      for (int j = 0; j < nops; j++) t.st[j][r - 1] = strides[j][d];
      continue;
    }
    t.dims[r] = dims[d];
    for (int j = 0; j < nops; j++) t.st[j][r] = strides[j][d];
    t.rank++;
  }
  V off[4];
  for (int j = 0; j < nops; j++) off[j] = ci(k, base ? base[j] : 0);
  cg_nest_level(k, &t, 0, off);
}

/* ---- BLAS ---- */

/* Small products are generated loops: cblas_sgemm costs about 1 us a call
 * (argument checks, packing B), more than a batch-1 layer's arithmetic.
 * Each row of C is computed in column blocks of up to 8 vectors held in
 * registers across the whole K loop (8 independent FMA chains keep both FMA
 * units busy); B's rows are read contiguously (a transposed B is packed
 * first: sg_pack). SG_ROWS rows of C are computed at a time: each B vector
 * loaded serves all of them (a transposed A, stored [K, M], is read down
 * its columns, and those rows' elements share cache lines). Every element of C is summed
 * in K order whatever the blocking. */

enum { SG_ROWS = 4 };

typedef struct {
  int ta;
  int64_t K, lda, ldb, ldc;
  double alpha, beta;
  V A, B, C, row; /* row: the first row of the block */
  const cg_epi *epi;
} sg_t;

/* C[row .. row + nr, j0 .. j0 + nq*w) for constant widths (nr * nq <= 16);
 * j0 an i64 value. */
static void sg_cols(cg_k *k, const sg_t *s, V j0, int nq, int w, int nr) {
  LLVMTypeRef t = w > 1 ? LLVMVectorType(k->m->f32, (unsigned)w) : k->m->f32;
  V acc[16], rows[SG_ROWS];
  for (int q = 0; q < nr * nq; q++) acc[q] = cg_var(k, t, LLVMConstNull(t));
  for (int r = 0; r < nr; r++) rows[r] = LLVMBuildNSWAdd(k->B, s->row, ci(k, r), "");
  CG_FOR(k, kk, ci(k, 0), ci(k, s->K)) {
    V brow = LLVMBuildNSWAdd(k->B, LLVMBuildNSWMul(k->B, kk.iv, ci(k, s->ldb), ""), j0, ""), b[16];
    for (int q = 0; q < nq; q++) b[q] = cg_vld(k, s->B, LLVMBuildNSWAdd(k->B, brow, ci(k, q * w), ""), w);
    for (int r = 0; r < nr; r++) {
      V ai = s->ta ? LLVMBuildNSWAdd(k->B, LLVMBuildNSWMul(k->B, kk.iv, ci(k, s->lda), ""), rows[r], "")
                   : LLVMBuildNSWAdd(k->B, LLVMBuildNSWMul(k->B, rows[r], ci(k, s->lda), ""), kk.iv, "");
      V a = cg_bcast(k, cg_ldp(k, s->A, ai), w);
      for (int q = 0; q < nq; q++) {
        V args[3] = {a, b[q], cg_get(k, acc[r * nq + q], t)};
        cg_set(k, acc[r * nq + q], cg_intr(k, "llvm.fmuladd", args, 3));
      }
    }
  }
  for (int r = 0; r < nr; r++) {
    V crow = LLVMBuildNSWAdd(k->B, LLVMBuildNSWMul(k->B, rows[r], ci(k, s->ldc), ""), j0, "");
    for (int q = 0; q < nq; q++) {
      V ix = LLVMBuildNSWAdd(k->B, crow, ci(k, q * w), ""), v = cg_get(k, acc[r * nq + q], t);
      if (s->alpha != 1.0) v = LLVMBuildFMul(k->B, v, cfl(k, v, s->alpha), "");
      if (s->beta != 0.0) {
        V old = cg_vld(k, s->C, ix, w);
        v = LLVMBuildFAdd(k->B, v, s->beta == 1.0 ? old : LLVMBuildFMul(k->B, old, cfl(k, v, s->beta), ""), "");
      }
      if (s->epi) v = s->epi->fn(k, v, rows[r], LLVMBuildNSWAdd(k->B, j0, ci(k, q * w), ""), w, s->epi->ctx);
      cg_vst(k, s->C, ix, v, w);
    }
  }
}

/* Rows s->row .. + nr of C, all N columns: whole blocks of maxq vectors,
 * then narrower vectors, then scalars. */
static void sg_rows(cg_k *k, const sg_t *s, int64_t N, int maxq, int nr) {
  int vw = k->m->vw > 1 ? k->m->vw : 1, blk = maxq * vw;
  if (N / blk > 0)
    CG_FOR(k, jb, ci(k, 0), ci(k, N / blk)) sg_cols(k, s, LLVMBuildNSWMul(k->B, jb.iv, ci(k, blk), ""), maxq, vw, nr);
  int64_t j = N / blk * blk;
  for (int w = vw; w >= 1; w /= 2) /* the rest: narrower vectors, then scalars */
    while (N - j >= w) {
      int nq = (int)((N - j) / w < maxq ? (N - j) / w : maxq);
      sg_cols(k, s, ci(k, j), nq, w, nr);
      j += (int64_t)nq * w;
    }
}

/* A transposed B (stored [N, K], row stride ldb) is first copied into a
 * [K, N] block on the kernel's stack, so the loops read its rows
 * contiguously: the same arithmetic in the same order as a transpose
 * kernel followed by the product, without the kernel or the tensor. Blocks
 * up to SG_PACK_MAX floats (64 KiB); larger transposed B's go to cblas. */
enum { SG_PACK_MAX = 1 << 14 };

static V sg_pack(cg_k *k, V Bm, int64_t N, int64_t K, int64_t ldb) {
  LLVMBasicBlockRef cur = LLVMGetInsertBlock(k->B);
  V first = LLVMGetFirstInstruction(k->entry); /* allocas live in the entry block */
  if (first) LLVMPositionBuilderBefore(k->B, first);
  else LLVMPositionBuilderAtEnd(k->B, k->entry);
  V buf = LLVMBuildAlloca(k->B, LLVMArrayType(k->m->f32, (unsigned)(K * N)), "bt");
  LLVMSetAlignment(buf, 64);
  LLVMPositionBuilderAtEnd(k->B, cur);
  CG_FOR(k, j, ci(k, 0), ci(k, N)) {
    V src = LLVMBuildNSWMul(k->B, j.iv, ci(k, ldb), "");
    CG_FOR(k, q, ci(k, 0), ci(k, K)) {
      V to = LLVMBuildNSWAdd(k->B, LLVMBuildNSWMul(k->B, q.iv, ci(k, N), ""), j.iv, "");
      cg_stp(k, buf, to, cg_ldp(k, Bm, LLVMBuildNSWAdd(k->B, src, q.iv, "")));
    }
  }
  return buf;
}

/* Whether the product is a generated loop (sg_small) rather than a cblas call. */
static int sg_fits(int tb, int64_t M, int64_t N, int64_t K) {
  return M * N * K <= CG_SMALL_GEMM && K > 0 && (!tb || K * N <= SG_PACK_MAX);
}

/* A narrow C (N below the vector width: a 10-class head and its weight
 * gradient) as one vector per row, masked past N, SG_NARROW rows at a
 * time: one K loop with SG_NARROW independent FMA chains, where pieces of
 * 8 and 2 lanes took two loops of SG_ROWS chains each (latency-bound).
 * Each element is still summed in K order. The epilogue, whose operand
 * loads are not masked, is a pass over C afterwards (C is small, in L1). */
enum { SG_NARROW = 8 };

typedef struct {
  cg_row r;
  int ta, nr;
  int64_t K, lda, ldb, ldc;
  double alpha, beta;
  V A, B, C;
} sn_t;

static void sn_rows(cg_k *k, const sn_t *s, V row0, int nr) {
  LLVMTypeRef t = LLVMVectorType(k->m->f32, (unsigned)s->r.w);
  V acc[SG_NARROW], rows[SG_NARROW];
  for (int q = 0; q < nr; q++) {
    acc[q] = cg_var(k, t, LLVMConstNull(t));
    rows[q] = LLVMBuildNSWAdd(k->B, row0, ci(k, q), "");
  }
  CG_FOR(k, kk, ci(k, 0), ci(k, s->K)) {
    V b = cg_row_ld(k, &s->r, s->B, LLVMBuildNSWMul(k->B, kk.iv, ci(k, s->ldb), ""), 1);
    for (int q = 0; q < nr; q++) {
      V ai = s->ta ? LLVMBuildNSWAdd(k->B, LLVMBuildNSWMul(k->B, kk.iv, ci(k, s->lda), ""), rows[q], "")
                   : LLVMBuildNSWAdd(k->B, LLVMBuildNSWMul(k->B, rows[q], ci(k, s->lda), ""), kk.iv, "");
      V args[3] = {cg_bcast(k, cg_ldp(k, s->A, ai), s->r.w), b, cg_get(k, acc[q], t)};
      cg_set(k, acc[q], cg_intr(k, "llvm.fmuladd", args, 3));
    }
  }
  for (int q = 0; q < nr; q++) {
    V ix = LLVMBuildNSWMul(k->B, rows[q], ci(k, s->ldc), ""), v = cg_get(k, acc[q], t);
    if (s->alpha != 1.0) v = LLVMBuildFMul(k->B, v, cfl(k, v, s->alpha), "");
    if (s->beta != 0.0) {
      V old = cg_row_ld(k, &s->r, s->C, ix, 1);
      v = LLVMBuildFAdd(k->B, v, s->beta == 1.0 ? old : LLVMBuildFMul(k->B, old, cfl(k, v, s->beta), ""), "");
    }
    cg_row_st(k, &s->r, s->C, ix, v, 1);
  }
}

typedef struct {
  V C;
  int64_t ldc;
  const cg_epi *epi;
  V row;
} epi_pass;

static void epi_body(cg_k *k, V j, int w, void *ctx) {
  epi_pass *e = ctx;
  V ix = LLVMBuildNSWAdd(k->B, LLVMBuildNSWMul(k->B, e->row, ci(k, e->ldc), ""), j, "");
  cg_vst(k, e->C, ix, e->epi->fn(k, cg_vld(k, e->C, ix, w), e->row, j, w, e->epi->ctx), w);
}

static void epi_rows(cg_k *k, int64_t M, int64_t N, V Cm, int64_t ldc, const cg_epi *epi) {
  epi_pass e = {Cm, ldc, epi, NULL};
  CG_FOR(k, r, ci(k, 0), ci(k, M)) {
    e.row = r.iv;
    cg_vfor(k, ci(k, N), epi_body, &e);
  }
}

static int sn_fits(cg_k *k, int tb, int64_t M, int64_t N) {
  return !tb && M >= SG_NARROW && N > 1 && N < (k->m->vw > 1 ? k->m->vw : 1) && N % 8 != 0 && N % 4 != 0;
}

static void sg_narrow(cg_k *k, int ta, int64_t M, int64_t N, int64_t K, double alpha, V A, int64_t lda, V Bm,
                      int64_t ldb, double beta, V Cm, int64_t ldc, const cg_epi *epi) {
  sn_t s = {cg_row_of(k, N), ta, SG_NARROW, K, lda, ldb, ldc, alpha, beta, A, Bm, Cm};
  CG_FOR(k, i, ci(k, 0), ci(k, M / SG_NARROW)) sn_rows(k, &s, LLVMBuildNSWMul(k->B, i.iv, ci(k, SG_NARROW), ""), SG_NARROW);
  if (M % SG_NARROW) sn_rows(k, &s, ci(k, M / SG_NARROW * SG_NARROW), (int)(M % SG_NARROW));
  if (epi) epi_rows(k, M, N, Cm, ldc, epi);
}

/* A small product whose B is large (a batch-1 layer: 1024 x 1024 floats,
 * 4 MiB) is bound by reading B, not by arithmetic: one core streamed
 * dense1024_b1's weights at about half the rate two do. Such a product is
 * split over the pool by blocks of C's columns, each part reading its own
 * columns of B. Every element of C is computed as in the loop on one
 * thread (same K order, same epilogue), so the bits never depend on the
 * split. From SG_PAR_B floats of B (1 MiB, an L2's worth) and SG_PAR_WORK
 * multiply-adds (about 5 us on one core; handing out parts to a spinning
 * pool costs 1-2 us). */
enum { SG_PAR_B = 1 << 18, SG_PAR_WORK = 1 << 18 };

typedef struct {
  sg_t s;
  int ia, ib, ic;  /* A, B and C's kernel arguments */
  int64_t M, cols; /* rows of C; columns per unit */
  int nr, nq, vw;  /* rows per group; vectors (of vw lanes) per row of a unit */
} sg_par_t;

/* which kernel argument v is (-1: none, e.g. a pointer into one) */
static int sg_arg_of(const cg_k *k, V v) {
  for (int j = 0; j < k->nargs; j++)
    if (k->arg[j] == v) return j;
  return -1;
}

/* unit u: columns [u cols, (u + 1) cols) of every row of C */
static void sg_par_unit(cg_k *k, V u, void *ctx) {
  const sg_par_t *p = ctx;
  sg_t s = p->s;
  s.A = k->arg[p->ia], s.B = k->arg[p->ib], s.C = k->arg[p->ic];
  V j0 = LLVMBuildNSWMul(k->B, u, ci(k, p->cols), "");
  CG_FOR(k, i, ci(k, 0), ci(k, p->M / p->nr)) {
    s.row = LLVMBuildNSWMul(k->B, i.iv, ci(k, p->nr), "");
    sg_cols(k, &s, j0, p->nq, p->vw, p->nr);
  }
  for (int64_t r = p->M / p->nr * p->nr; r < p->M; r++) { /* at most SG_ROWS - 1 rows */
    s.row = ci(k, r);
    sg_cols(k, &s, j0, p->nq, p->vw, 1);
  }
}

/* The split of sg_small when it pays and can be outlined (A, B and C are
 * kernel arguments; not already inside a pool loop): whole units of
 * columns on the pool, the narrower rest on this thread. 1 when done. The
 * code does not depend on the pool's size (a pool of one runs the units in
 * turn), so a cached kernel serves any LATHE_THREADS. */
static int sg_par(cg_k *k, const sg_t *s0, int tb, int64_t M, int64_t N, int64_t K, int maxq, int nr) {
  int vw = k->m->vw > 1 ? k->m->vw : 1, nq = maxq / nr;
  sg_par_t p = {*s0, sg_arg_of(k, s0->A), sg_arg_of(k, s0->B), sg_arg_of(k, s0->C), M, (int64_t)nq * vw, nr, nq, vw};
  int64_t units = N / p.cols;
  if (tb || k->part || K * N < SG_PAR_B || M * N * K < SG_PAR_WORK || units < 2 || p.ia < 0 || p.ib < 0 ||
      p.ic < 0)
    return 0;
  cg_parallel_for(k, units, 1, sg_par_unit, &p);
  sg_t s = *s0;
  int64_t j = units * p.cols;
  for (int w = vw; w >= 1; w /= 2) /* the rest, as sg_rows does it, rows one at a time */
    while (N - j >= w) {
      int q = (int)((N - j) / w < maxq ? (N - j) / w : maxq);
      CG_FOR(k, i, ci(k, 0), ci(k, M)) {
        s.row = i.iv;
        sg_cols(k, &s, ci(k, j), q, w, 1);
      }
      j += (int64_t)q * w;
    }
  return 1;
}

/* A batch-1 product by a large B (dense1024_b1: a 4 MiB weight) asks the
 * run-time first whether B is one of the running program's packed weights
 * (lathe_rt_sgemm_packed, runtime/gemm_pack.c): oneDNN's brgemm on two
 * column pieces ran it in 28-30 us against this loop's 33-34 on two
 * threads (bench/README.md, "Rows or columns"). Where the answer is no
 * (training steps, LATHE_DNNL=0, no oneDNN) the loop below runs as before.
 * Returns the block after both ways, the builder left in the loop's block;
 * NULL (nothing emitted) where the product cannot be packed. */
static LLVMBasicBlockRef sg_packed_first(cg_k *k, int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha,
                                         V A, int64_t lda, V Bm, int64_t ldb, double beta, V Cm, int64_t ldc,
                                         const cg_epi *epi) {
  if (!k->m->jit || k->m->gemm_gen || k->part || ta || tb || alpha != 1.0 || (beta != 0.0 && beta != 1.0) ||
      K * N < SG_PAR_B || M * N * K < SG_PAR_WORK)
    return NULL;
  V a[10] = {ci32(k, M), ci32(k, N), ci32(k, K), A, ci32(k, lda), Bm, ci32(k, ldb), cf(k, beta), Cm, ci32(k, ldc)};
  V took = cg_call(k, k->m->sgemm_packed, a, 10);
  LLVMBasicBlockRef packed = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "packed");
  LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "gemv_loop");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "gemv_done");
  LLVMBuildCondBr(k->B, LLVMBuildICmp(k->B, LLVMIntNE, took, ci32(k, 0), ""), packed, loop);
  LLVMPositionBuilderAtEnd(k->B, packed);
  if (epi) epi_rows(k, M, N, Cm, ldc, epi);
  LLVMBuildBr(k->B, done);
  LLVMPositionBuilderAtEnd(k->B, loop);
  return done;
}

static void sg_small_loops(cg_k *k, int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha, V A,
                           int64_t lda, V Bm, int64_t ldb, double beta, V Cm, int64_t ldc, const cg_epi *epi);

static void sg_small(cg_k *k, int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha, V A, int64_t lda,
                     V Bm, int64_t ldb, double beta, V Cm, int64_t ldc, const cg_epi *epi) {
  LLVMBasicBlockRef done = sg_packed_first(k, ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, Cm, ldc, epi);
  sg_small_loops(k, ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, Cm, ldc, epi);
  if (done) {
    LLVMBuildBr(k->B, done);
    LLVMPositionBuilderAtEnd(k->B, done);
  }
}

static void sg_small_loops(cg_k *k, int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha, V A,
                           int64_t lda, V Bm, int64_t ldb, double beta, V Cm, int64_t ldc, const cg_epi *epi) {
  if (sn_fits(k, tb, M, N)) {
    sg_narrow(k, ta, M, N, K, alpha, A, lda, Bm, ldb, beta, Cm, ldc, epi);
    return;
  }
  /* SG_ROWS rows at a time whenever there are that many: a narrow C (a
   * 10-class head) then still has enough independent FMA chains to hide
   * the FMA latency, and each B vector loaded serves SG_ROWS rows */
  int maxq = k->m->vw >= 16 ? 16 : 8, nr = M >= SG_ROWS ? SG_ROWS : 1;
  sg_t s = {ta, K, lda, ldb, ldc, alpha, beta, A, Bm, Cm, NULL, epi};
  if (sg_par(k, &s, tb, M, N, K, maxq, nr)) return;
  if (tb) s.B = sg_pack(k, Bm, N, K, ldb), s.ldb = N;
  CG_FOR(k, i, ci(k, 0), ci(k, M / nr)) {
    s.row = LLVMBuildNSWMul(k->B, i.iv, ci(k, nr), "");
    sg_rows(k, &s, N, maxq / nr, nr);
  }
  if (M % nr)
    CG_FOR(k, i, ci(k, M / nr * nr), ci(k, M)) {
      s.row = i.iv;
      sg_rows(k, &s, N, maxq, 1);
    }
}

void cg_sgemm_epi(cg_k *k, int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha, V A, int64_t lda,
                  V Bm, int64_t ldb, double beta, V Cm, int64_t ldc, const cg_epi *epi) {
  if (sg_fits(tb, M, N, K)) {
    sg_small(k, ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, Cm, ldc, epi);
    return;
  }
  cg_sgemm(k, ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, Cm, ldc);
  if (epi) epi_rows(k, M, N, Cm, ldc, epi);
}

void cg_sgemm(cg_k *k, int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha, V A, int64_t lda,
              V Bm, int64_t ldb, double beta, V Cm, int64_t ldc) {
  if (sg_fits(tb, M, N, K)) {
    sg_small(k, ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, Cm, ldc, NULL);
    return;
  }
  if (k->m->gemm_gen) {
    cg_gemm_generated(k, ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, Cm, ldc);
    return;
  }
  V a[14] = {ci32(k, 101),  ci32(k, ta ? 112 : 111), ci32(k, tb ? 112 : 111), ci32(k, M), ci32(k, N),
             ci32(k, K),    cf(k, alpha), A, ci32(k, lda), Bm, ci32(k, ldb), cf(k, beta), Cm, ci32(k, ldc)};
  cg_call(k, k->m->sgemm, a, 14);
}

/* A dense layer's product with its bias asks the run-time first
 * (lathe_rt_sgemm_bias, runtime/gemm_pack.c): oneDNN adds the bias in its
 * kernel, where filling C with it first cost a pass over C and a sum in the
 * kernel (bench/README.md, "The bias inside the kernel"). */
LLVMBasicBlockRef cg_sgemm_bias_first(cg_k *k, int ta, int tb, int64_t M, int64_t N, int64_t K, V A, int64_t lda,
                                      V Bm, int64_t ldb, V bias, V Cm, int64_t ldc) {
  if (!k->m->jit || k->m->gemm_gen || k->part || ta || sg_fits(tb, M, N, K)) return NULL;
  V a[11] = {ci32(k, tb), ci32(k, M), ci32(k, N), ci32(k, K), A, ci32(k, lda), Bm, ci32(k, ldb), bias, Cm,
             ci32(k, ldc)};
  V took = cg_call(k, k->m->sgemm_bias, a, 11);
  LLVMBasicBlockRef other = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "bias_fill");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "bias_done");
  LLVMBuildCondBr(k->B, LLVMBuildICmp(k->B, LLVMIntNE, took, ci32(k, 0), ""), done, other);
  LLVMPositionBuilderAtEnd(k->B, other);
  return done;
}

void cg_fill_rows(cg_k *k, V p, int64_t rows, int64_t cols, int64_t ld, V bias) {
  CG_FOR(k, r, ci(k, 0), ci(k, rows)) {
    V row = LLVMBuildNSWMul(k->B, r.iv, ci(k, ld), "");
    CG_FOR(k, c, ci(k, 0), ci(k, cols)) {
      cg_stp(k, p, LLVMBuildNSWAdd(k->B, row, c.iv, ""), cg_ldp(k, bias, c.iv));
    }
  }
}

/* ---- explicit vector loops ---- */

static LLVMTypeRef vec_ptr(LLVMTypeRef et, int w) {
  return LLVMPointerType(w > 1 ? LLVMVectorType(et, (unsigned)w) : et, 0);
}

V cg_vld(cg_k *k, V p, V idx, int w) {
  V e = cg_gep(k, p, k->m->f32, idx);
  LLVMTypeRef t = w > 1 ? LLVMVectorType(k->m->f32, (unsigned)w) : k->m->f32;
  V l = LLVMBuildLoad2(k->B, t, LLVMBuildPointerCast(k->B, e, vec_ptr(k->m->f32, w), ""), "");
  LLVMSetAlignment(l, 4);
  return l;
}

void cg_vst(cg_k *k, V p, V idx, V v, int w) {
  V e = cg_gep(k, p, k->m->f32, idx);
  V s = LLVMBuildStore(k->B, v, LLVMBuildPointerCast(k->B, e, vec_ptr(k->m->f32, w), ""));
  LLVMSetAlignment(s, 4);
}

V cg_bcast(cg_k *k, V x, int w) {
  if (w <= 1) return x;
  LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(x), (unsigned)w);
  V v = LLVMBuildInsertElement(k->B, LLVMGetUndef(vt), x, ci32(k, 0), "");
  V zeros = LLVMConstNull(LLVMVectorType(k->m->i32, (unsigned)w));
  return LLVMBuildShuffleVector(k->B, v, LLVMGetUndef(vt), zeros, "");
}

void cg_vfor(cg_k *k, V n, cg_vbody body, void *ctx) {
  int w = k->m->vw > 1 ? k->m->vw : 1;
  V nv = LLVMBuildAnd(k->B, n, ci(k, ~(int64_t)(w - 1)), ""); /* whole vectors */
  if (w > 1) {
    V steps = LLVMBuildLShr(k->B, nv, ci(k, __builtin_ctz((unsigned)w)), "");
    CG_FOR(k, l, ci(k, 0), steps) body(k, LLVMBuildNSWMul(k->B, l.iv, ci(k, w), ""), w, ctx);
  }
  CG_FOR(k, l, nv, n) body(k, l.iv, 1, ctx);
}

cg_acc cg_acc_new(cg_k *k, LLVMTypeRef st, double init) {
  cg_acc a;
  int w = k->m->vw > 1 ? k->m->vw : 1;
  V s = LLVMConstReal(st, init);
  a.st = st;
  a.vt = LLVMVectorType(st, (unsigned)w);
  a.one = cg_var(k, st, s);
  a.vec = cg_var(k, a.vt, cg_splat(k, a.vt, s));
  return a;
}

V cg_acc_get(cg_k *k, const cg_acc *a, int w) { return cg_get(k, w > 1 ? a->vec : a->one, w > 1 ? a->vt : a->st); }
void cg_acc_set(cg_k *k, const cg_acc *a, int w, V v) { cg_set(k, w > 1 ? a->vec : a->one, v); }

/* Lanes then the scalar tail, in a fixed order: results never depend on timing. */
V cg_acc_fold(cg_k *k, const cg_acc *a, cg_fold_fn f) {
  V v = cg_get(k, a->vec, a->vt), r = NULL;
  unsigned n = LLVMGetVectorSize(a->vt);
  for (unsigned i = 0; i < n; i++) {
    V e = LLVMBuildExtractElement(k->B, v, ci32(k, i), "");
    r = r ? f(k, r, e) : e;
  }
  return f(k, r, cg_get(k, a->one, a->st));
}

V cg_fold_add(cg_k *k, V a, V b) { return LLVMBuildFAdd(k->B, a, b, ""); }
V cg_fold_max(cg_k *k, V a, V b) { return cg_sel(k, cg_fcmp(k, LLVMRealOGT, b, a), b, a); }

/* ---- parallel loops on the runtime pool ---- */

void cg_set_fn_attrs(cg_mod *m, V fn) {
  LLVMAddTargetDependentFunctionAttr(fn, "target-cpu", m->cpu);
  LLVMAddTargetDependentFunctionAttr(fn, "target-features", m->features);
  LLVMAddTargetDependentFunctionAttr(fn, "frame-pointer", "none");
  if (m->vw >= 16) LLVMAddTargetDependentFunctionAttr(fn, "prefer-vector-width", "512");
}

int cg_pool_parts(void) { return rt_pool_size(); }

/* captures: arg[0..nargs), scratch, err -- as pointers in one array */
void cg_parallel_for(cg_k *k, int64_t n, int64_t grain, cg_par_body body, void *ctx) {
  cg_mod *m = k->m;
  unsigned nc = (unsigned)k->nargs + 2;
  LLVMTypeRef at = LLVMArrayType(m->ptr, nc);
  /* the outlined body: void (i8 *captures, i64 lo, i64 hi, i32 part) */
  LLVMBasicBlockRef resume = LLVMGetInsertBlock(k->B);
  LLVMTypeRef pt[4] = {m->ptr, m->i64, m->i64, m->i32};
  char name[96];
  snprintf(name, sizeof name, "%s_par%d", LLVMGetValueName(k->fn), m->npar++);
  V f = LLVMAddFunction(m->M, name, LLVMFunctionType(m->vd, pt, 4, 0));
  LLVMSetLinkage(f, LLVMInternalLinkage);
  cg_set_fn_attrs(m, f);
  cg_k b = *k;
  b.fn = f;
  b.entry = LLVMAppendBasicBlockInContext(m->C, f, "entry");
  LLVMPositionBuilderAtEnd(k->B, b.entry);
  LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(m->C, f, "start");
  LLVMBuildBr(k->B, start);
  LLVMPositionBuilderAtEnd(k->B, start);
  V cap = LLVMBuildPointerCast(k->B, LLVMGetParam(f, 0), LLVMPointerType(m->ptr, 0), "");
  V got[CG_MAXKARGS];
  for (unsigned j = 0; j < nc; j++) {
    V ix = ci(k, j);
    got[j] = LLVMBuildLoad2(k->B, m->ptr, LLVMBuildGEP2(k->B, m->ptr, cap, &ix, 1, ""), "");
  }
  for (int j = 0; j < k->nargs; j++) b.arg[j] = got[j];
  b.scratch = got[nc - 2];
  b.err = got[nc - 1];
  b.part = LLVMBuildSExt(k->B, LLVMGetParam(f, 3), m->i64, "");
  CG_FOR(&b, l, LLVMGetParam(f, 1), LLVMGetParam(f, 2)) body(&b, l.iv, ctx);
  LLVMBuildRetVoid(k->B);
  /* the call, back in the kernel */
  LLVMPositionBuilderAtEnd(k->B, resume);
  V arr = cg_var(k, at, LLVMGetUndef(at));
  V arrp = LLVMBuildPointerCast(k->B, arr, LLVMPointerType(m->ptr, 0), "");
  for (unsigned j = 0; j < nc; j++) {
    V v = j < (unsigned)k->nargs ? k->arg[j] : j == nc - 2 ? k->scratch : k->err;
    V ix = ci(k, j);
    LLVMBuildStore(k->B, LLVMBuildPointerCast(k->B, v, m->ptr, ""), LLVMBuildGEP2(k->B, m->ptr, arrp, &ix, 1, ""));
  }
  V args[4] = {ci(k, n), ci(k, grain > 0 ? grain : 1), LLVMBuildPointerCast(k->B, f, m->ptr, ""),
               LLVMBuildPointerCast(k->B, arr, m->ptr, "")};
  cg_call(k, m->parfor, args, 4);
}

/* log x for a softmax row's sum of exp(x - max): x >= 1, or NaN / +inf
 * (passed through); right for every positive normal x. Cephes logf's
 * polynomial (1 ulp, as logf) inline, so a loop over rows makes no libm
 * call, which would spill every vector register in each iteration. */
V cg_log_sum(cg_k *k, V x) {
  static const double P[] = {7.0376836292E-2,  -1.1514610310E-1, 1.1676998740E-1,
                             -1.2420140846E-1, 1.4249322787E-1,  -1.6668057665E-1,
                             2.0000714765E-1,  -2.4999993993E-1, 3.3333331174E-1};
  LLVMBuilderRef B = k->B;
  LLVMTypeRef ft = LLVMTypeOf(x), ity = cg_int_like(k, ft);
  V bits = LLVMBuildBitCast(B, x, ity, "");
  /* x = m 2^e, m in [1, 2), then m in [sqrt(1/2), sqrt(2)) */
  V e = LLVMBuildSub(B, LLVMBuildLShr(B, bits, cil(k, ity, 23), ""), cil(k, ity, 127), "");
  V m = LLVMBuildBitCast(B, LLVMBuildOr(B, LLVMBuildAnd(B, bits, cil(k, ity, 0x7fffff), ""), cil(k, ity, 0x3f800000), ""),
                         ft, "");
  V big = cg_fcmp(k, LLVMRealOGT, m, cfl(k, x, 1.41421356237309504880));
  m = cg_sel(k, big, fm(k, m, cfl(k, x, 0.5)), m);
  V fe = LLVMBuildSIToFP(B, LLVMBuildAdd(B, e, LLVMBuildZExt(B, big, ity, ""), ""), ft, "");
  V f = LLVMBuildFSub(B, m, cfl(k, x, 1.0), ""), z = fm(k, f, f);
  V y = fm(k, fm(k, f, z), horner(k, f, P, 9));
  y = fma_(k, fe, cfl(k, x, -2.12194440e-4), y);
  y = fma_(k, z, cfl(k, x, -0.5), y);
  V r = fma_(k, fe, cfl(k, x, 0.693359375), fa(k, f, y));
  V pass = LLVMBuildOr(B, cg_fcmp(k, LLVMRealUNO, x, x), cg_fcmp(k, LLVMRealOEQ, x, cfl(k, x, INFINITY)), "");
  return cg_sel(k, pass, x, r);
}
