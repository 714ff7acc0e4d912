/* cg_decode.c -- CPU kernels for the decode-step ops (kv_write and
 * attention_decode, made by passes/decode.c for generation with a key/value
 * cache), in the vocabulary of cg_emit.c. cg_opt.c's table sends these rows
 * here. The reference is ir/interp_decode.c; the work per call is O(T d):
 * one query row against the cache, no [T, T] matrix.
 *
 * Arguments: arg[0] the result, arg[1 + j] input j. T = cache rows,
 * d = width, hd = d / heads. */
#include "cg_internal.h"

#include <math.h>

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

/* out = cache; out[pos, :] = row */
static void e_kv_write(cg_k *k) {
  int64_t T = k->n->shape.d[0], d = k->n->shape.d[1];
  V pos = cache_pos(k, 3, T);
  CG_FOR(k, i, ci(k, 0), ci(k, T * d)) cg_st(k, 0, i.iv, cg_ldf(k, 1, i.iv));
  V base = cg_muli(k, pos, d);
  CG_FOR(k, e, ci(k, 0), ci(k, d)) cg_st(k, 0, addi(k, base, e.iv), cg_ldf(k, 2, e.iv));
}

/* q_h . k_jg * scale (f32, in order e = 0..hd-1): q from qoff, the cache
 * row j of width dk from koff */
static V score(cg_k *k, V qoff, V koff, V j, int64_t dk, int64_t hd, V scale) {
  V acc = cg_var(k, k->m->f32, cf(k, 0));
  V row = addi(k, cg_muli(k, j, dk), koff);
  CG_FOR(k, e, ci(k, 0), ci(k, hd)) {
    V qk = cg_fmul(k, cg_ldf(k, 1, addi(k, qoff, e.iv)), cg_ldf(k, 2, addi(k, row, e.iv)));
    cg_set(k, acc, cg_fadd(k, cg_get(k, acc, k->m->f32), qk));
  }
  return cg_fmul(k, cg_get(k, acc, k->m->f32), scale);
}

/* Per head, two passes over rows 0..pos as the reference does: the maximum
 * score, then exp(score - max) summed and applied to the values (the scores
 * are recomputed rather than kept: no scratch, and hd is small). Query head
 * h reads cache head h / G (G = H / K query heads per key/value head; 1
 * but for mha's grouped heads). */
static void e_attention_decode(cg_k *k) {
  const ir_shape *sk = k->sh[2];
  int64_t T = sk->d[0], dk = sk->d[1], H = k->n->attr.heads, hd = ir_numel(&k->n->shape) / H, G = H / (dk / hd);
  LLVMTypeRef f = k->m->f32;
  V pos = cache_pos(k, 4, T), n = addi(k, pos, ci(k, 1));
  V scale = cf(k, 1.0 / sqrt((double)hd));
  CG_FOR(k, h, ci(k, 0), ci(k, H)) {
    V off = cg_muli(k, h.iv, hd), koff = cg_muli(k, LLVMBuildSDiv(BLD, h.iv, ci(k, G), ""), hd);
    V mx = cg_var(k, f, cf(k, -INFINITY)), sum = cg_var(k, f, cf(k, 0));
    CG_FOR(k, j, ci(k, 0), n)
    cg_set(k, mx, cg_fmax_nan(k, cg_get(k, mx, f), score(k, off, koff, j.iv, dk, hd, scale)));
    CG_FOR(k, e, ci(k, 0), ci(k, hd)) cg_st(k, 0, addi(k, off, e.iv), cf(k, 0));
    CG_FOR(k, j, ci(k, 0), n) {
      V s = LLVMBuildFSub(BLD, score(k, off, koff, j.iv, dk, hd, scale), cg_get(k, mx, f), "");
      V p = cg_exp(k, s);
      cg_set(k, sum, cg_fadd(k, cg_get(k, sum, f), p));
      V row = addi(k, cg_muli(k, j.iv, dk), koff);
      CG_FOR(k, e, ci(k, 0), ci(k, hd)) {
        V o = addi(k, off, e.iv);
        cg_st(k, 0, o, cg_fadd(k, cg_ldf(k, 0, o), cg_fmul(k, p, cg_ldf(k, 3, addi(k, row, e.iv)))));
      }
    }
    V total = cg_get(k, sum, f);
    CG_FOR(k, e, ci(k, 0), ci(k, hd)) {
      V o = addi(k, off, e.iv);
      cg_st(k, 0, o, LLVMBuildFDiv(BLD, cg_ldf(k, 0, o), total, ""));
    }
  }
}

static const cg_emit_fn cg_decode_ops[IR_NOPS] = {
  [IR_KV_WRITE] = e_kv_write,
  [IR_ATTENTION_DECODE] = e_attention_decode,
};

void cg_emit_decode(cg_k *k) { cg_decode_ops[k->n->op](k); }
