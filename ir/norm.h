/* norm.h -- the geometry of the channel normalisations (rt/rt_norm.h: the
 * kernels both executors run) for an IR op on x's shape. */
#ifndef LATHE_IR_NORM_H
#define LATHE_IR_NORM_H

#include "ir.h"
#include "rt/rt_norm.h"

/* The geometry of forward op `op` (BATCHNORM, BATCHNORM_TRAIN, GROUPNORM,
 * RMSNORM) on x of shape xs with `groups` (groupnorm) and eps. The shape
 * rules have checked xs. */
static inline rt_norm_geom ir_norm_geom_of(int op, const ir_shape *xs, int64_t groups, double eps) {
  rt_norm_geom g = {0};
  g.eps = eps, g.center = op != IR_RMSNORM;
  if (op == IR_RMSNORM) {
    g.C = xs->rank ? xs->d[xs->rank - 1] : 1, g.S = 1, g.N = ir_numel(xs) / (g.C ? g.C : 1);
    g.nb = 1, g.cb = g.C;
  } else {
    g.N = xs->d[0], g.C = xs->d[1], g.S = 1;
    for (int a = 2; a < xs->rank; a++) g.S *= xs->d[a];
    g.nb = op == IR_GROUPNORM ? 1 : g.N;
    g.cb = op == IR_GROUPNORM ? g.C / groups : 1;
  }
  g.ngroups = g.nb && g.cb ? (g.N / g.nb) * (g.C / g.cb) : 0;
  return g;
}

#endif
