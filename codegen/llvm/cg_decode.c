/* cg_decode.c -- CPU kernels for the decode-step ops (kv_write and
 * attention_decode, made by passes/decode.c for generation with a key/value
 * cache), in the vocabulary of cg_emit.c. cg_opt.c's table sends these rows
 * here. The reference is ir/interp_decode.c; the work per call is O(T d):
 * one query row against the cache, no [T, T] matrix.
 *
 * Arguments: arg[0] the result, arg[1 + j] input j. T = cache rows,
 * d = width, hd = d / heads. */
#include "cg_internal.h"

#include "rt/lathe_rt.h"

#define BLD (k->B)
#define OUT (k->arg[0])

enum { DEC_ERR_POS = 5 }; /* reported by cg_run as "bad data" */

static V addi(cg_k *k, V a, V b) { return LLVMBuildAdd(BLD, a, b, ""); }

/* The position (input a, an integer scalar), clamped into [0, T) with the
 * error word set when it was outside: the kernels never index out of bounds. */
static V cache_pos(cg_k *k, int a, int64_t T) {
  V p = cg_ldi(k, a, ci(k, 0));
  V ok = LLVMBuildICmp(BLD, LLVMIntULT, p, ci(k, T), "");
  cg_flag_err(k, LLVMBuildNot(BLD, ok, ""), DEC_ERR_POS);
  return LLVMBuildSelect(BLD, ok, p, ci(k, 0), "");
}

/* out = cache; out[pos, :] = row. Where out is the cache itself (generation
 * binds the step's cache parameter to this output's buffer,
 * runtime/generate.c) only the row is written: the rest is there already
 * (the whole-cache copy was T*d floats per cache and token). The kernel's
 * arguments are not noalias for that reason (cg_jit.c). */
static void e_kv_write(cg_k *k) {
  int64_t T = k->n->shape.d[0], d = k->n->shape.d[1];
  V pos = cache_pos(k, 3, T);
  LLVMBasicBlockRef copy = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "kv_copy");
  LLVMBasicBlockRef row = LLVMAppendBasicBlockInContext(k->m->C, k->fn, "kv_row");
  LLVMBuildCondBr(BLD, LLVMBuildICmp(BLD, LLVMIntNE, OUT, k->arg[1], ""), copy, row);
  LLVMPositionBuilderAtEnd(BLD, copy);
  CG_FOR(k, i, ci(k, 0), ci(k, T * d)) cg_st(k, 0, i.iv, cg_ldf(k, 1, i.iv));
  LLVMBuildBr(BLD, row);
  LLVMPositionBuilderAtEnd(BLD, row);
  V base = cg_muli(k, pos, d);
  CG_FOR(k, e, ci(k, 0), ci(k, d)) cg_st(k, 0, addi(k, base, e.iv), cg_ldf(k, 2, e.iv));
}

/* A call of lathe_rt_attention_decode (rt/rt_decode.c: vector scores, exp
 * and sums; the scalar loops it replaced chained every score's 32 adds and
 * were a third of a decode step), with the position clamped here as
 * kv_write's is (an outside position sets the error word). Query head h
 * reads cache head h / G (G = H / K query heads per key/value head; 1 but
 * for mha's grouped heads). The kernel (AVX-512 or C) is chosen now. */
static void e_attention_decode(cg_k *k) {
  const ir_shape *sk = k->sh[2];
  int64_t T = sk->d[0], dk = sk->d[1], H = k->n->attr.heads, hd = ir_numel(&k->n->shape) / H, G = H / (dk / hd);
  V pos = cache_pos(k, 4, T);
  LLVMTypeRef p = k->m->ptr, i = k->m->i64;
  LLVMTypeRef ty[10] = {p, p, p, p, i, i, i, i, i, i};
  V args[10] = {OUT, k->arg[1], k->arg[2], k->arg[3], pos, ci(k, dk), ci(k, H), ci(k, hd), ci(k, G),
                ci(k, lathe_rt_attention_decode_isa())};
  cg_fn f = {LLVMGetNamedFunction(k->m->M, "lathe_rt_attention_decode"), LLVMFunctionType(k->m->vd, ty, 10, 0)};
  if (!f.fn) f.fn = LLVMAddFunction(k->m->M, "lathe_rt_attention_decode", f.ty);
  cg_call(k, f, args, 10);
}

/* sample_token: a call of lathe_rt_sample_token (rt/rt_sample.c, the host's
 * sampler), each row with the draw input. */
static void e_sample_token(cg_k *k) {
  const ir_shape *sl = k->sh[1];
  int64_t classes = sl->d[sl->rank - 1], rows = ir_numel(&k->n->shape);
  LLVMTypeRef p = k->m->ptr, i = k->m->i64;
  LLVMTypeRef ty[7] = {p, p, p, i, i, k->m->f64, i};
  V args[7] = {OUT, k->arg[1], k->arg[2], ci(k, rows), ci(k, classes), LLVMConstReal(k->m->f64, k->n->attr.f),
               ci(k, k->n->attr.k)};
  cg_fn f = {LLVMGetNamedFunction(k->m->M, "lathe_rt_sample_token"), LLVMFunctionType(k->m->vd, ty, 7, 0)};
  if (!f.fn) f.fn = LLVMAddFunction(k->m->M, "lathe_rt_sample_token", f.ty);
  cg_call(k, f, args, 7);
}

static const cg_emit_fn cg_decode_ops[IR_NOPS] = {
  [IR_KV_WRITE] = e_kv_write,
  [IR_ATTENTION_DECODE] = e_attention_decode,
  [IR_SAMPLE_TOKEN] = e_sample_token,
};

void cg_emit_decode(cg_k *k) { cg_decode_ops[k->n->op](k); }
