/* plan_impl.h -- private to plan/: the groups plan_group.c finds and the
 * per-node tables plan_buffers.c and plan.c share. */
#ifndef LATHE_PLAN_IMPL_H
#define LATHE_PLAN_IMPL_H

#include "plan/plan.h"

/* A kernel of several nodes, recorded at the node where it runs (the last
 * member). */
typedef struct {
  pl_kind kind;           /* PL_K_GEMM_EPI, PL_K_SIBLINGS, PL_K_ADD_NORM or PL_K_NORM_GRAD_ADD */
  pl_epilogue f;          /* PL_K_GEMM_EPI */
  const pl_siblings *multi; /* PL_K_SIBLINGS: nmulti groups (several: every parameter's update) */
  int nmulti;
  int head;               /* the product node (the layernorm, the layernorm's gradient) */
  int extra[PL_MAXARGS];  /* node of each step's other operands, in argument order */
  int nextra;
  int nmember;
  int member[PL_MAXFUSE + 2];
} pl_group;

/* What grouping decided, per node (arrays of g->nnodes). */
typedef struct {
  pl_group **group_of; /* the group whose kernel runs at this node, or NULL */
  int *run_at;         /* where the node's kernel runs (reads its inputs): itself or a later node */
  int *inside;         /* stored by the kernel of a later node */
  int *is_out;         /* an output of the graph */
} pl_groups;

/* plan_group.c: every grouping rule, in the order they apply. */
void pl_find_groups(const ir_graph *g, const pl_target *t, arena *A, pl_groups *gr);
/* plan_buffers.c: every node's buffer into p->buf, the arena's size into p. */
void pl_plan_buffers(pl_plan *p, const pl_target *t, const pl_groups *gr);
/* plan_buffers.c: whether a kernel may write its result over a dying input. */
int pl_elementwise_kernel(const ir_node *n);

#endif
