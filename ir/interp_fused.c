/* interp_fused.c -- the reference kernel of a fused elementwise program
 * (IR_FUSED): the steps are run one by one as the ops they were, each on
 * whole tensors through the ordinary kernels and rounded as their nodes
 * would be. So a fused node computes, by definition, exactly what the
 * unfused graph did; the backends' single loops are checked against this. */
#include <stdlib.h>

#include "interp_impl.h"

typedef struct {
  ir_graph g;       /* the program as a small graph: inputs, then steps */
  double **vals;
} fz_graph;

static void fz_free(fz_graph *z, int nin) {
  for (int s = nin; z->vals && s < z->g.nnodes; s++) free(z->vals[s]);
  free(z->vals);
  free(z->g.nodes);
}

/* Node j < nin stands for input j (its type; its values are the caller's);
 * node nin + s is step s, typed as the fused node. */
static int fz_build(const ik_ctx *c, const ir_node *n, fz_graph *z, int *ins) {
  const ir_fusion *f = n->fusion;
  int total = n->nin + f->nsteps;
  z->g = *c->g;
  z->g.nodes = calloc((size_t)total, sizeof(ir_node));
  z->g.nnodes = total;
  z->vals = calloc((size_t)total, sizeof(double *));
  if (!z->g.nodes || !z->vals) return -1;
  for (int j = 0; j < n->nin; j++) {
    z->g.nodes[j] = *ik_arg(c, n, j);
    z->vals[j] = (double *)ik_in(c, n, j);
  }
  for (int s = 0; s < f->nsteps; s++) {
    ir_node *st = &z->g.nodes[n->nin + s];
    const ir_fstep *fs = &f->step[s];
    *st = *n;
    st->op = fs->op, st->nin = fs->nin, st->attr = f->attr[s], st->fusion = NULL;
    st->in = &ins[2 * s];
    for (int k = 0; k < fs->nin; k++) st->in[k] = fs->arg[k] >= 0 ? fs->arg[k] : n->nin + (-1 - fs->arg[k]);
  }
  return 0;
}

int ik_fused(ik_ctx *c, const ir_node *n, double *out) {
  const ir_fusion *f = n->fusion;
  if (!f || f->nsteps < 1) return ik_fail(c, n, "no fused program");
  int64_t count = ir_numel(&n->shape);
  fz_graph z = {0};
  int *ins = calloc((size_t)(2 * f->nsteps), sizeof(int));
  int rc = ins ? fz_build(c, n, &z, ins) : -1;
  if (rc) ik_fail(c, n, "out of memory");
  ik_ctx sub = {&z.g, z.vals, c->mode, c->msg, c->msgn};
  for (int s = 0; rc == 0 && s < f->nsteps; s++) {
    int id = n->nin + s;
    z.vals[id] = ik_alloc(c, n, count);
    rc = z.vals[id] ? ik_run_op(&sub, &z.g.nodes[id], z.vals[id]) : -1;
  }
  if (rc == 0)
    for (int64_t e = 0; e < count; e++) out[e] = z.vals[n->nin + f->nsteps - 1][e];
  fz_free(&z, n->nin);
  free(ins);
  return rc;
}
