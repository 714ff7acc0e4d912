/* interp_norm.c -- reference kernels of batchnorm (both forms), groupnorm,
 * rmsnorm and norm_grad: rt/rt_norm.h's kernels in double. */
#include "interp_impl.h"
#include "norm.h"

#define NT double
#define NK(name) ik_norm_##name
#include "rt/rt_norm.h"

static rt_norm_geom geom(const ik_ctx *c, const ir_node *n, int op, int64_t groups) {
  return ir_norm_geom_of(op, &ik_arg(c, n, 0)->shape, groups, n->attr.f);
}

/* batchnorm, batchnorm_train, groupnorm, rmsnorm */
int ik_norm(ik_ctx *c, const ir_node *n, double *out) {
  rt_norm_geom g = geom(c, n, n->op, n->attr.k);
  int eval = n->op == IR_BATCHNORM, bias = n->op != IR_RMSNORM;
  ik_norm_fwd(&g, ik_in(c, n, 0), ik_in(c, n, 1), bias ? ik_in(c, n, 2) : NULL, eval ? ik_in(c, n, 3) : NULL,
              eval ? ik_in(c, n, 4) : NULL, out, 0, g.ngroups);
  return 0;
}

int ik_norm_grad(ik_ctx *c, const ir_node *n, double *out) {
  rt_norm_geom g = geom(c, n, (int)n->attr.k, n->attr.n);
  const double *x = ik_in(c, n, 0), *w = ik_in(c, n, 1), *dy = ik_in(c, n, 2);
  if (n->attr.i == 0) ik_norm_dx(&g, x, w, dy, out, 0, g.ngroups);
  else ik_norm_dwb(&g, x, dy, n->attr.i == 2, out, 0, g.ngroups);
  return 0;
}
