/* plan_buffers.c -- where every tensor lives: the caller's buffers (inputs,
 * parameters, outputs), the program's constants, an alias of another
 * tensor's buffer, nowhere (a value computed and consumed inside one
 * kernel), or a block of the one activation arena laid out by
 * passes/memplan.c with reuse after the last reader and in-place writes of
 * elementwise results over a dying input. */
#include "plan/plan_impl.h"

#include "passes/passes.h"

/* Kernels that read element e of each full-shaped input before writing
 * element e of the result, and nothing else of them: their result may be
 * written in place over a dying input (passes/memplan.c), which saves a
 * block and keeps the working set in cache. Part of the optimiser, so off
 * when fusion is (-O0). */
int pl_elementwise_kernel(const ir_node *n) {
  if (n->dtype != IR_F32) return 0;
  if (n->op == IR_FUSED || (n->op >= IR_ADD && n->op <= IR_DIV) || n->op == IR_MINIMUM) return 1;
  return ir_fusable_op(n->op); /* the float unary maps */
}

/* Nodes whose result is their input's first bytes, so they share its
 * buffer instead of copying: a reshape, a dropout (the identity when it is
 * not training), and a slice that is a prefix of its input (from 0 along an
 * axis with only 1s before it: attention_save's y, the first gradient of a
 * packed backward). */
static int aliasable(const ir_graph *g, const ir_node *n) {
  if (n->op == IR_RESHAPE || n->op == IR_DROPOUT) return 1;
  if (n->op != IR_SLICE || n->attr.start != 0) return 0;
  const ir_shape *x = &g->nodes[n->in[0]].shape;
  if (n->attr.axis < 0 || n->attr.axis >= x->rank) return 0;
  for (int d = 0; d < n->attr.axis; d++)
    if (x->d[d] != 1) return 0;
  return 1;
}

/* The kind of node i's buffer; the constant area grows by its bytes. */
static int buf_kind(const ir_graph *g, const pl_groups *gr, const int *owner, int i, pl_buf *b, int64_t *cbytes) {
  const ir_node *n = &g->nodes[i];
  if (n->op == IR_INPUT || n->op == IR_PARAM) {
    b->idx = (int)n->attr.i;
    return n->op == IR_INPUT ? PL_BUF_INPUT : PL_BUF_PARAM;
  }
  if (n->op == IR_CONST || n->op == IR_ARANGE) {
    b->off = *cbytes;
    *cbytes += (b->bytes + 63) / 64 * 64;
    return PL_BUF_CONST;
  }
  if (gr->run_at[i] > i && !gr->inside[i]) return PL_BUF_NONE;
  if (owner[i] >= 0) {
    b->idx = owner[i];
    return PL_BUF_OUTPUT;
  }
  if (aliasable(g, n) && g->loss != i) {
    b->idx = n->in[0];
    return PL_BUF_ALIAS;
  }
  return PL_BUF_ARENA;
}

/* An element's bytes in node i's buffer: 2 for the target's half-width
 * (bf16) f32 tensors, else its dtype's. */
static int64_t elem_bytes(const pl_target *t, const ir_graph *g, int i) {
  return t->half && t->half[i] && g->nodes[i].dtype == IR_F32 ? 2 : (int64_t)ir_dtype_size(g->nodes[i].dtype);
}

/* A result written in place must have its inputs' width: a bf16 element
 * written over an f32 one would land on bytes another thread still reads. */
static int same_width(const pl_target *t, const ir_graph *g, int i) {
  const ir_node *n = &g->nodes[i];
  for (int j = 0; t->half && j < n->nin; j++)
    if (elem_bytes(t, g, n->in[j]) != elem_bytes(t, g, i)) return 0;
  return 1;
}

void pl_plan_buffers(pl_plan *p, const pl_target *t, const pl_groups *gr) {
  const ir_graph *g = p->g;
  arena *A = &p->A;
  int nn = g->nnodes;
  size_t sn = (size_t)(nn ? nn : 1);
  int64_t *bytes = ar_alloc(A, sizeof(int64_t) * sn), *scratch = ar_alloc(A, sizeof(int64_t) * sn);
  int *keep = ar_alloc(A, sizeof(int) * sn), *alias = ar_alloc(A, sizeof(int) * sn);
  int *owner = ar_alloc(A, sizeof(int) * sn);
  char *inplace = ar_alloc(A, sn + 1);
  for (int i = 0; i < nn; i++) owner[i] = -1;
  for (int j = g->noutputs - 1; j >= 0; j--) owner[g->outputs[j].node] = j;
  int64_t cbytes = 0;
  for (int i = 0; i < nn; i++) {
    const ir_node *n = &g->nodes[i];
    pl_buf *b = &p->buf[i];
    const pl_group *grp = gr->group_of[i];
    b->bytes = ir_numel(&n->shape) * elem_bytes(t, g, i);
    b->scr = -1;
    b->kind = buf_kind(g, gr, owner, i, b, &cbytes);
    alias[i] = b->kind == PL_BUF_ALIAS ? b->idx : -1;
    if (b->kind == PL_BUF_ARENA) bytes[i] = b->bytes;
    b->inside = gr->inside[i];
    if ((b->kind == PL_BUF_ARENA || b->kind == PL_BUF_OUTPUT) && !b->inside && t->scratch_bytes)
      scratch[i] = b->scr_bytes = t->scratch_bytes(g, grp ? &g->nodes[grp->head] : n);
    inplace[i] = b->kind == PL_BUF_ARENA && !grp && !b->inside && !g->no_fusion && pl_elementwise_kernel(n) &&
                 same_width(t, g, i);
    keep[i] = g->loss == i;
  }
  mp_plan plan;
  mp_plan_graph_at(g, A, bytes, scratch, keep, alias, gr->run_at, inplace, &plan);
  for (int i = 0; i < nn; i++) {
    pl_buf *b = &p->buf[i];
    if (b->kind == PL_BUF_ARENA) b->off = plan.offset[i];
    b->scr = plan.scratch_off[i];
    b->inplace_of = -1;
  }
  /* which input each in-place result took over (the planner says only that
   * it did: the same offset as an arena input it read last) */
  for (int i = 0; i < nn; i++) {
    const ir_node *n = &g->nodes[i];
    for (int j = 0; inplace[i] && p->buf[i].kind == PL_BUF_ARENA && j < n->nin; j++) {
      const pl_buf *x = &p->buf[n->in[j]];
      if (x->kind == PL_BUF_ARENA && x->off == p->buf[i].off) p->buf[i].inplace_of = n->in[j];
    }
  }
  p->arena_bytes = plan.arena_bytes;
  p->naive_bytes = plan.naive_bytes;
  p->const_bytes = cbytes;
  p->inplace = plan.inplace;
}
