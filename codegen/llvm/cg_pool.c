/* cg_pool.c -- max and average pooling, and their gradient, as explicit
 * vector code when the windows tile the image exactly (stride = window, H
 * = OH k, W = OW k: every input element in exactly one window, the usual
 * "maxpool2d(h, 2)"). The image is viewed as rows of output: R output rows
 * (R*OW <= the vector width) read R*k*W contiguous input floats, loaded as
 * one vector; each window position (ky, kx) is a constant shuffle of it.
 * The gradient writes every input element once (no zeroing, no scatter):
 * the k*k per-position vectors are shuffled back into input order. The
 * rules are the reference's: NaN wins the maximum, the first maximum in
 * (ky, kx) order takes dy, average divides the f32 sum by k*k.
 */
#include "cg_vec.h"

#include <math.h>

#define BLD (k->B)

enum { POOL_MAX_SPAN = 256 }; /* most input floats in one vector */

typedef struct {
  int64_t K, W, OW, rows; /* rows: output rows of all planes */
  int64_t R;              /* output rows per unit */
  int is_max, grad;
} pool_t;

static LLVMTypeRef fvec(cg_k *k, int64_t n) { return n > 1 ? LLVMVectorType(k->m->f32, (unsigned)n) : k->m->f32; }

static V vload(cg_k *k, V p, V idx, int64_t n) { return cg_vld(k, p, idx, (int)n); }

/* lanes[i] of v (a vector of at least max(lanes)+1 floats) */
static V pick(cg_k *k, V v, const int *lanes, int64_t n) {
  V m[POOL_MAX_SPAN];
  for (int64_t i = 0; i < n; i++) m[i] = ci32(k, lanes[i]);
  V sh = LLVMBuildShuffleVector(BLD, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(m, (unsigned)n), "");
  if (n == 1) return LLVMBuildExtractElement(BLD, sh, ci32(k, 0), "");
  return sh;
}

/* the input lane of window position t = ky*K + kx for output lane l */
static int in_lane(const pool_t *p, int64_t t, int64_t l) {
  int64_t rr = l / p->OW, ox = l % p->OW, ky = t / p->K, kx = t % p->K;
  return (int)(rr * p->K * p->W + ky * p->W + ox * p->K + kx);
}

static V position(cg_k *k, const pool_t *p, V X, int64_t t, int64_t n) {
  int lanes[POOL_MAX_SPAN];
  for (int64_t l = 0; l < n; l++) lanes[l] = in_lane(p, t, l);
  return pick(k, X, lanes, n);
}

/* the window maximum (NaN wins) or f32 sum / k*k, for n output lanes */
static V pool_value(cg_k *k, const pool_t *p, V X, int64_t n) {
  LLVMTypeRef t = fvec(k, n);
  V acc = cg_splat(k, t, cf(k, p->is_max ? -INFINITY : 0.0));
  for (int64_t q = 0; q < p->K * p->K; q++) {
    V v = position(k, p, X, q, n);
    acc = p->is_max ? cg_fmax_nan(k, acc, v) : cg_fadd(k, acc, v);
  }
  if (!p->is_max) acc = cg_fdiv(k, acc, cg_splat(k, t, cf(k, (double)(p->K * p->K))));
  return acc;
}

/* one vector of the T vectors g[t] (n lanes each) side by side */
static V concat(cg_k *k, V *g, int64_t T, int64_t n) {
  V cur[64];
  int64_t m = T;
  for (int64_t i = 0; i < T; i++) cur[i] = n > 1 ? g[i] : LLVMBuildInsertElement(BLD, LLVMGetUndef(fvec(k, 2)), g[i], ci32(k, 0), "");
  int64_t len = n > 1 ? n : 2; /* scalars went into 2-lane vectors */
  while (m > 1) {
    if (m % 2) cur[m++] = LLVMGetUndef(LLVMTypeOf(cur[0]));
    V mask[2 * POOL_MAX_SPAN];
    for (int64_t i = 0; i < 2 * len; i++) mask[i] = ci32(k, i);
    for (int64_t i = 0; i < m / 2; i++)
      cur[i] = LLVMBuildShuffleVector(BLD, cur[2 * i], cur[2 * i + 1], LLVMConstVector(mask, (unsigned)(2 * len)), "");
    m /= 2, len *= 2;
  }
  return cur[0];
}

/* dx for the R*k*W input floats of a unit: every element is the dy of its
 * window where it holds the window's first maximum (max) or dy / k*k (avg) */
static V pool_grad(cg_k *k, const pool_t *p, V X, V dy, int64_t n, int64_t span) {
  int64_t T = p->K * p->K, stride = n > 1 ? n : 2;
  V g[64];
  if (!p->is_max) {
    V v = cg_fdiv(k, dy, cg_splat(k, fvec(k, n), cf(k, (double)T)));
    for (int64_t t = 0; t < T; t++) g[t] = v;
  } else {
    V m = pool_value(k, p, X, n), zero = cg_splat(k, fvec(k, n), cf(k, 0));
    V mnan = cg_fcmp(k, LLVMRealUNO, m, m), found = NULL;
    for (int64_t t = 0; t < T; t++) {
      V x = position(k, p, X, t, n);
      V same = LLVMBuildOr(BLD, cg_fcmp(k, LLVMRealOEQ, x, m), LLVMBuildAnd(BLD, cg_fcmp(k, LLVMRealUNO, x, x), mnan, ""), "");
      V hit = found ? LLVMBuildAnd(BLD, same, LLVMBuildNot(BLD, found, ""), "") : same;
      found = found ? LLVMBuildOr(BLD, found, hit, "") : hit;
      g[t] = cg_sel(k, hit, dy, zero);
    }
  }
  V all = concat(k, g, T, n);
  int lanes[POOL_MAX_SPAN];
  for (int64_t e = 0; e < span; e++) { /* input lane e: which position and output lane */
    int64_t rr = e / (p->K * p->W), rem = e % (p->K * p->W), ky = rem / p->W, col = rem % p->W;
    lanes[e] = (int)((ky * p->K + col % p->K) * stride + rr * p->OW + col / p->K);
  }
  return pick(k, all, lanes, span);
}

/* output rows r0 .. r0 + Rn */
static void pool_unit(cg_k *k, const pool_t *p, V r0, int64_t Rn) {
  int64_t n = Rn * p->OW, span = Rn * p->K * p->W;
  V X = vload(k, k->arg[1], cg_muli(k, r0, p->K * p->W), span);
  V o = cg_muli(k, r0, p->OW);
  if (!p->grad) {
    cg_vst(k, k->arg[0], o, pool_value(k, p, X, n), (int)n);
    return;
  }
  V dx = pool_grad(k, p, X, vload(k, k->arg[2], o, n), n, span);
  cg_vst(k, k->arg[0], cg_muli(k, r0, p->K * p->W), dx, (int)span);
}

int cg_emit_pool_tiled(cg_k *k, int is_max, int grad) {
  const ir_shape *sx = k->sh[1];
  const ir_shape *sy = grad ? k->sh[2] : &k->n->shape;
  if (sx->rank != 4) return 0; /* the 1-d pools: the plain loops */
  int64_t K = k->n->attr.k, s = k->n->attr.stride, H = sx->d[2], W = sx->d[3], OH = sy->d[2], OW = sy->d[3];
  int vw = k->m->vw > 1 ? k->m->vw : 1;
  for (int a = 0; a < 2 + grad; a++)
    if (k->dt[a] != IR_F32) return 0;
  if (s != K || H != OH * K || W != OW * K || OW > vw || K * K > 64) return 0;
  pool_t p = {K, W, OW, sx->d[0] * sx->d[1] * OH, vw / OW, is_max, grad};
  while (p.R > 1 && p.R * K * W > POOL_MAX_SPAN) p.R--;
  if (p.R * K * W > POOL_MAX_SPAN) return 0;
  int64_t units = p.rows / p.R, rest = p.rows % p.R;
  if (units > 0) CG_FOR(k, u, ci(k, 0), ci(k, units)) pool_unit(k, &p, cg_muli(k, u.iv, p.R), p.R);
  if (rest) pool_unit(k, &p, ci(k, units * p.R), rest);
  return 1;
}
