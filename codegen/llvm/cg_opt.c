/* cg_opt.c -- CPU kernels for the training-step ops (the last rows of
 * ops.def, made by passes/optimizer.c), in the vocabulary of cg_emit.c.
 * cg_grad.c's table sends these rows here. The random ops generate Philox
 * inline, following the stream layout of ir/interp_opt.c to the bit: the
 * uniforms and normals are formed in double with the same operations and the
 * same libm log and cos the reference calls, then rounded to f32 once. */
#include "cg_internal.h"

#include <math.h>

#define BLD (k->B)
#define OUT (k->arg[0])

static V xor_(cg_k *k, V a, V b) { return LLVMBuildXor(BLD, a, b, ""); }
static V lshr(cg_k *k, V a, int64_t s) { return LLVMBuildLShr(BLD, a, LLVMConstInt(LLVMTypeOf(a), (unsigned long long)s, 0), ""); }
static V mulc(cg_k *k, V a, uint64_t c) { return LLVMBuildMul(BLD, a, LLVMConstInt(LLVMTypeOf(a), c, 0), ""); }
static V c32(cg_k *k, uint32_t v) { return LLVMConstInt(k->m->i32, v, 0); }
static V lo32(cg_k *k, V x) { return LLVMBuildTrunc(BLD, x, k->m->i32, ""); }
static V hi32(cg_k *k, V x) { return lo32(k, lshr(k, x, 32)); }

/* ---- Philox-4x32-10 (ir/rng.c) ---- */

typedef struct {
  V key[10][2]; /* the round keys, computed once per kernel */
} philox_keys;

/* SplitMix64's finaliser (ir/rng.c's mix64). */
static V mix64(cg_k *k, V z) {
  z = mulc(k, xor_(k, z, lshr(k, z, 30)), 0xBF58476D1CE4E5B9ull);
  z = mulc(k, xor_(k, z, lshr(k, z, 27)), 0x94D049BB133111EBull);
  return xor_(k, z, lshr(k, z, 31));
}

/* key = seed ^ mix64(tag * 0x9E3779B97F4A7C15 ^ step), then its round keys. */
static philox_keys philox_setup(cg_k *k) {
  const ir_attr *a = &k->n->attr;
  V step = cg_ldi(k, 1, ci(k, 0));
  V stream = xor_(k, ci(k, (int64_t)((uint64_t)a->k * 0x9E3779B97F4A7C15ull)), step);
  V key = xor_(k, ci(k, a->n), mix64(k, stream));
  philox_keys pk;
  pk.key[0][0] = lo32(k, key), pk.key[0][1] = hi32(k, key);
  for (int r = 1; r < 10; r++) {
    pk.key[r][0] = LLVMBuildAdd(BLD, pk.key[r - 1][0], c32(k, 0x9E3779B9u), "");
    pk.key[r][1] = LLVMBuildAdd(BLD, pk.key[r - 1][1], c32(k, 0xBB67AE85u), "");
  }
  return pk;
}

static void mulhilo(cg_k *k, uint32_t m, V x, V *hi, V *lo) {
  V p = mulc(k, LLVMBuildZExt(BLD, x, k->m->i64, ""), m);
  *hi = hi32(k, p), *lo = lo32(k, p);
}

/* The four words of block `block` (i64). */
static void philox_block(cg_k *k, const philox_keys *pk, V block, V w[4]) {
  V c[4] = {lo32(k, block), hi32(k, block), c32(k, 0), c32(k, 0)};
  for (int r = 0; r < 10; r++) {
    V hi0, lo0, hi1, lo1;
    mulhilo(k, 0xD2511F53u, c[0], &hi0, &lo0);
    mulhilo(k, 0xCD9E8D57u, c[2], &hi1, &lo1);
    V n0 = xor_(k, xor_(k, hi1, c[1]), pk->key[r][0]);
    V n2 = xor_(k, xor_(k, hi0, c[3]), pk->key[r][1]);
    c[0] = n0, c[1] = lo1, c[2] = n2, c[3] = lo0;
  }
  for (int i = 0; i < 4; i++) w[i] = c[i];
}

/* ((a >> 5) * 2^26 + (b >> 6)) / 2^53, in double (ir_rng_uniform). */
static V uniform(cg_k *k, V a, V b) {
  V x = LLVMBuildUIToFP(BLD, lshr(k, a, 5), k->m->f64, "");
  V y = LLVMBuildUIToFP(BLD, lshr(k, b, 6), k->m->f64, "");
  V s = LLVMBuildFAdd(BLD, LLVMBuildFMul(BLD, x, cd(k, 67108864.0), ""), y, "");
  return LLVMBuildFMul(BLD, s, cd(k, 1.0 / 9007199254740992.0), "");
}

static V libm_d(cg_k *k, const char *name, V x) {
  LLVMTypeRef f64 = k->m->f64, ty = LLVMFunctionType(f64, &f64, 1, 0);
  V fn = LLVMGetNamedFunction(k->m->M, name);
  if (!fn) fn = LLVMAddFunction(k->m->M, name, ty);
  return LLVMBuildCall2(BLD, ty, fn, &x, 1, "");
}

/* randn: element e is the Box-Muller normal of block e. */
static void e_randn(cg_k *k) {
  philox_keys pk = philox_setup(k);
  CG_FOR(k, l, ci(k, 0), ci(k, ir_numel(&k->n->shape))) {
    V w[4];
    philox_block(k, &pk, l.iv, w);
    V u1 = uniform(k, w[0], w[1]), u2 = uniform(k, w[2], w[3]);
    V lg = libm_d(k, "log", LLVMBuildFSub(BLD, cd(k, 1.0), u1, ""));
    V rad = LLVMBuildFMul(BLD, cd(k, -2.0), lg, "");
    V r = cg_intr(k, "llvm.sqrt", &rad, 1);
    V c = libm_d(k, "cos", LLVMBuildFMul(BLD, cd(k, 6.283185307179586476925), u2, ""));
    cg_stp(k, OUT, l.iv, LLVMBuildFPTrunc(BLD, LLVMBuildFMul(BLD, r, c, ""), k->m->f32, ""));
  }
}

/* dropout_mask: element e uses words 2 (e % 2), 2 (e % 2) + 1 of block e / 2. */
static void e_dropout_mask(cg_k *k) {
  philox_keys pk = philox_setup(k);
  double p = k->n->attr.f;
  V keep = cf(k, 1.0 / (1.0 - p));
  CG_FOR(k, l, ci(k, 0), ci(k, ir_numel(&k->n->shape))) {
    V w[4];
    philox_block(k, &pk, LLVMBuildLShr(BLD, l.iv, ci(k, 1), ""), w);
    V odd = LLVMBuildTrunc(BLD, l.iv, k->m->i1, "");
    V u = uniform(k, cg_sel(k, odd, w[2], w[0]), cg_sel(k, odd, w[3], w[1]));
    cg_stp(k, OUT, l.iv, cg_sel(k, cg_fcmp(k, LLVMRealOGE, u, cd(k, p)), keep, cf(k, 0)));
  }
}

/* ---- elementwise ---- */

static void minimum_body(cg_k *k, V *off, void *ctx) {
  (void)ctx;
  if (!ir_dtype_is_float(k->dt[0])) {
    V a = cg_ldi(k, 1, off[1]), b = cg_ldi(k, 2, off[2]);
    cg_st(k, 0, off[0], cg_sel(k, LLVMBuildICmp(BLD, LLVMIntSLT, b, a, ""), b, a));
    return;
  }
  V a = cg_ldf(k, 1, off[1]), b = cg_ldf(k, 2, off[2]);
  V m = cg_sel(k, cg_fcmp(k, LLVMRealOLT, b, a), b, a);
  cg_st(k, 0, off[0], cg_sel(k, cg_fcmp(k, LLVMRealUNO, a, b), cf(k, NAN), m));
}

static void e_minimum(cg_k *k) {
  const ir_shape *o = &k->n->shape;
  int64_t st[3][IR_MAXDIM];
  cg_contig_strides(o, st[0]);
  cg_bcast_strides(o, k->sh[1], st[1]);
  cg_bcast_strides(o, k->sh[2], st[2]);
  cg_nest(k, o->rank, o->d, 3, st, NULL, minimum_body, NULL);
}

static void e_sign(cg_k *k) {
  CG_FOR(k, l, ci(k, 0), ci(k, ir_numel(&k->n->shape))) {
    V x = cg_ldf(k, 1, l.iv);
    V s = cg_sel(k, cg_fcmp(k, LLVMRealOGT, x, cf(k, 0)), cf(k, 1), cg_sel(k, cg_fcmp(k, LLVMRealOLT, x, cf(k, 0)), cf(k, -1), x));
    cg_st(k, 0, l.iv, s);
  }
}

/* ---- the table ---- */

static const cg_emit_fn cg_opt_ops[IR_NOPS] = {
  [IR_MINIMUM] = e_minimum, [IR_SIGN] = e_sign, [IR_RANDN] = e_randn, [IR_DROPOUT_MASK] = e_dropout_mask,
  [IR_KV_WRITE] = cg_emit_decode, [IR_ATTENTION_DECODE] = cg_emit_decode, /* cg_decode.c */
};

void cg_emit_opt(cg_k *k) { cg_opt_ops[k->n->op](k); }
