/* passes.h -- graph passes that run between the IR and a backend. Sections are
 * named after the file that defines them. */
#ifndef LATHE_PASSES_H
#define LATHE_PASSES_H

#include "ir.h"

/* ---- passes/memplan.c: the static memory plan ----
 * Every intermediate tensor lives in one arena. A tensor's bytes become
 * reusable after the last node that reads it has run (liveness over the
 * node order, which is a topological order); new tensors take the smallest
 * free gap that fits (best fit), else grow the arena. Offsets are 64-byte
 * aligned. A node's result never shares bytes with its own inputs or its
 * scratch, so kernels need not be written to work in place.
 *
 * Inputs, per node i (arrays of g->nnodes):
 *   bytes[i]    bytes of node i's result if it lives in the arena, 0 if it
 *               does not (leaves, caller-owned outputs, aliases)
 *   scratch[i]  temporary bytes node i needs while it runs (0 = none)
 *   keep[i]     non-zero: the result must survive to the end (e.g. the loss)
 *   alias[i]    -1, or the node whose buffer node i reuses as its own (a
 *               reshape that moves no data); that buffer then lives until
 *               node i's last use too. May be NULL (no aliases).
 */
typedef struct {
  int64_t *offset;       /* per node: arena offset of the result, -1 = none */
  int64_t *scratch_off;  /* per node: arena offset of its scratch, -1 = none */
  int64_t arena_bytes;   /* planned peak */
  int64_t naive_bytes;   /* sum of every planned tensor and scratch */
} mp_plan;

void mp_plan_graph(const ir_graph *g, arena *A, const int64_t *bytes, const int64_t *scratch,
                   const int *keep, const int *alias, mp_plan *out);
/* The same, where node i's kernel runs (reads its inputs) at position
 * run_at[i] >= i instead of i: a backend that fuses a node into a later
 * one's kernel says so here, so the inputs stay live until then. run_at may
 * be NULL. */
void mp_plan_graph_at(const ir_graph *g, arena *A, const int64_t *bytes, const int64_t *scratch,
                      const int *keep, const int *alias, const int *run_at, mp_plan *out);

/* ---- passes/autodiff.c: reverse-mode differentiation ----
 * Appends the backward graph of g->loss to g. params: indices into g->params
 * to differentiate (NULL = every floating-point parameter; nparams ignored).
 * On success g->grads[i] is the node of d loss / d params[i] (-1 for those
 * not asked for) and, when as_outputs, each is also an output named
 * "grad.<param name>". Returns 0, or -1 with a message (no loss, a gradient
 * asked through an integer path, ...); g is then not usable for training. */
int ad_backward(ir_graph *g, const int *params, int nparams, int as_outputs, char *msg, size_t msgn);
/* Whether autodiff has a rule for op (leaves and backward ops have none). */
int ad_differentiable(int op);

#endif
