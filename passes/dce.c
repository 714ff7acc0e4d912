/* dce.c -- dead-code elimination: a node stays when an output, the loss or a
 * gradient needs it (transitively). INPUT and PARAM leaves always stay: they
 * are the program's interface, fed by index whether used or not. */
#include "passes/passes.h"

static void mark(char *live, int id) {
  if (id >= 0) live[id] = 1;
}

int ps_dce(ir_graph *g, char *msg, size_t msgn) {
  int n = g->nnodes;
  char *live = ar_alloc(g->A, (size_t)n + 1);
  for (int i = 0; i < g->noutputs; i++) mark(live, g->outputs[i].node);
  for (int i = 0; g->grads && i < g->nparams; i++) mark(live, g->grads[i]);
  mark(live, g->loss);
  /* Ids are topological: one sweep from the end sees every user first. */
  for (int i = n - 1; i >= 0; i--) {
    const ir_node *nd = &g->nodes[i];
    if (nd->op == IR_INPUT || nd->op == IR_PARAM) live[i] = 1;
    if (!live[i]) continue;
    for (int k = 0; k < nd->nin; k++) live[nd->in[k]] = 1;
  }
  int *repl = rw_identity(g), dropped = 0;
  for (int i = 0; i < n; i++)
    if (!live[i]) repl[i] = -1, dropped++;
  if (!dropped) return 0;
  return rw_rebuild(g, repl, msg, msgn) ? -1 : dropped;
}
