/* interp_opt.c -- reference kernels for the training-step ops (the last rows
 * of ops.def, made by passes/optimizer.c). Kernel contract: interp_impl.h.
 *
 * The random ops' stream, exactly (codegen/llvm/cg_opt.c emits the same):
 *   stream   = tag * 0x9E3779B97F4A7C15 XOR (uint64) step     (mod 2^64)
 *   key      = seed XOR mix64(stream)                         (ir_rng_seed)
 *   randn    element e: ir_rng_normal at u32 position 4e, i.e. the four
 *            words of Philox block e: u1 from words 0, 1 and u2 from 2, 3
 *   dropout  element e: ir_rng_uniform at u32 position 2e (block e / 2,
 *            words 2 (e % 2) and 2 (e % 2) + 1); kept when u >= p, the
 *            kept value is 1 / (1 - p), a dropped one 0
 * seed is the train seed, tag names the node's purpose (the dropout node's
 * id in the lowered forward graph; for gradient noise 2^32 + the parameter's
 * index), step the value of the i64 scalar input (OPT_IN_RNG). Each element
 * depends only on (seed, tag, step, e): no thread schedule can change it.
 */
#include <math.h>

#include "interp_impl.h"

#define RNG_TAG_MUL 0x9E3779B97F4A7C15ull

static ir_rng stream_at(const ik_ctx *c, const ir_node *n) {
  int64_t step = (int64_t)ik_in(c, n, 0)[0];
  ir_rng r;
  ir_rng_seed(&r, (uint64_t)n->attr.n, (uint64_t)n->attr.k * RNG_TAG_MUL ^ (uint64_t)step);
  return r;
}

int ik_randn(ik_ctx *c, const ir_node *n, double *out) {
  ir_rng r = stream_at(c, n);
  int64_t count = ir_numel(&n->shape);
  for (int64_t e = 0; e < count; e++) {
    r.counter = 4 * (uint64_t)e;
    out[e] = ir_rng_normal(&r);
  }
  return 0;
}

int ik_dropout_mask(ik_ctx *c, const ir_node *n, double *out) {
  ir_rng r = stream_at(c, n);
  int64_t count = ir_numel(&n->shape);
  double p = n->attr.f, keep = 1.0 / (1.0 - p);
  for (int64_t e = 0; e < count; e++) {
    r.counter = 2 * (uint64_t)e;
    out[e] = ir_rng_uniform(&r) >= p ? keep : 0.0;
  }
  return 0;
}

/* torch.minimum: a NaN on either side gives NaN. */
static double s_min(double a, double b) { return isnan(a) || isnan(b) ? NAN : (b < a ? b : a); }

int ik_minimum(ik_ctx *c, const ir_node *n, double *out) {
  const double *a = ik_in(c, n, 0), *b = ik_in(c, n, 1);
  const ir_shape *sa = &ik_arg(c, n, 0)->shape, *sb = &ik_arg(c, n, 1)->shape;
  int64_t count = ir_numel(&n->shape);
  for (int64_t i = 0; i < count; i++)
    out[i] = s_min(a[ik_bcast_index(&n->shape, sa, i)], b[ik_bcast_index(&n->shape, sb, i)]);
  return 0;
}

/* torch.sign: zeros (of either sign) and NaN are kept as they are. */
int ik_sign(ik_ctx *c, const ir_node *n, double *out) {
  const double *x = ik_in(c, n, 0);
  int64_t count = ir_numel(&n->shape);
  for (int64_t i = 0; i < count; i++) out[i] = x[i] > 0 ? 1.0 : x[i] < 0 ? -1.0 : x[i];
  return 0;
}
