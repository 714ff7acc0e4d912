/* cg_norm.c -- batchnorm (both forms), groupnorm, rmsnorm and norm_grad as
 * calls to liblathe_rt's lathe_rt_norm (rt/rt_norm.c) with the node's
 * buffers and its geometry (ir/norm.h), fixed when the kernel is compiled. */
#include "cg_internal.h"

#include <string.h>

#include "ir/norm.h"
#include "rt/lathe_rt.h"

/* kernel arguments: out, then the node's inputs in order */
void cg_emit_norm(cg_k *k) {
  const ir_node *n = k->n;
  int grad = n->op == IR_NORM_GRAD, op = grad ? (int)n->attr.k : n->op;
  rt_norm_geom g = ir_norm_geom_of(op, k->sh[1], grad ? n->attr.n : n->attr.k, n->attr.f);
  int64_t eps_bits;
  memcpy(&eps_bits, &g.eps, sizeof eps_bits);
  int64_t what = grad ? LATHE_RT_NORM_DX + n->attr.i : LATHE_RT_NORM_FWD;
  V p[7] = {k->arg[0], k->arg[1], k->arg[2], NULL, NULL, NULL, NULL};
  if (grad) p[6] = k->arg[3];
  else if (op != IR_RMSNORM) p[3] = k->arg[3];
  if (op == IR_BATCHNORM) p[4] = k->arg[4], p[5] = k->arg[5];
  int64_t ints[8] = {what, g.N, g.C, g.S, g.nb, g.cb, g.center, eps_bits};
  cg_call_rt(k, "lathe_rt_norm", p, 7, ints, 8);
}
