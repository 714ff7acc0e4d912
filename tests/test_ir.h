/* test_ir.h -- graph helpers shared by the tests that build or print IR
 * directly (test_passes, test_fuse, test_llvm_grad, test_kernels). */
#ifndef LATHE_TEST_IR_H
#define LATHE_TEST_IR_H
#include <stdio.h>

#include "ir/ir.h"
#include "passes/passes.h"

/* ir_print's text (malloc'd). */
static inline char *test_text_of(const ir_graph *g) {
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  ir_print(g, f);
  fclose(f);
  return buf;
}

/* g->loss = sum(y * r), r a constant of y's shape drawn from 0.5 + urand():
 * a loss whose gradient gives every element of y its own weight, so a
 * backward kernel that mixes up elements cannot pass. Returns the loss id
 * (negative on failure, msg says why). */
static inline int test_weighted_loss(ir_graph *g, int y, double (*urand)(void), char *msg, size_t mn) {
  ir_loc loc = {0};
  ir_shape sy = g->nodes[y].shape;
  int64_t cnt = ir_numel(&sy);
  int r = ir_add_const(g, IR_F32, 0, loc);
  double *rv = ar_alloc(g->A, sizeof(double) * (size_t)cnt);
  for (int64_t e = 0; e < cnt; e++) rv[e] = (double)(float)(0.5 + urand());
  g->nodes[r].shape = sy, g->nodes[r].data = rv;
  int m = ir_add(g, IR_MUL, (int[]){y, r}, 2, NULL, loc, msg, mn);
  ir_attr all = {0};
  all.axis = -1;
  g->loss = m < 0 ? -1 : ir_add(g, IR_SUM, &m, 1, &all, loc, msg, mn);
  return g->loss;
}

/* Differentiate g->loss and make every backward node an output ("n<id>"),
 * so each backward kernel is compared, not just the parameter gradients. */
static inline int test_grad_outputs(ir_graph *g, char *msg, size_t mn) {
  int nfwd = g->nnodes;
  if (ad_backward(g, NULL, 0, 0, msg, mn)) return -1;
  for (int i = nfwd; i < g->nnodes; i++)
    if (ir_ops[g->nodes[i].op].cat == IR_CAT_GRAD) ir_add_output(g, ar_printf(g->A, "n%d", i), i);
  return 0;
}

#endif
