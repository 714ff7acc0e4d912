/* plan.c -- the kernel plan of a graph: the groups (plan_group.c) and the
 * buffers (plan_buffers.c) turned into the ordered list of kernels a
 * backend renders. A kernel runs at its node's place in the graph's order;
 * every node with a buffer of its own (arena or output) that no later
 * kernel stores is one kernel's node. */
#include <string.h>

#include "plan/plan_impl.h"

static const char *const kind_names[PL_NKINDS] = {
  [PL_K_GEMM_EPI] = "gemm+epilogue", [PL_K_SIBLINGS] = "siblings",   [PL_K_ADD_NORM] = "add+layernorm",
  [PL_K_NORM_GRAD_ADD] = "layernorm_grad+add", [PL_K_GEMM] = "gemm", [PL_K_ELEMENTWISE] = "elementwise",
  [PL_K_ROWS] = "rows",             [PL_K_ATTENTION] = "attention", [PL_K_RECURRENCE] = "recurrence",
  [PL_K_MOVE] = "move",             [PL_K_LOSS] = "loss",           [PL_K_OTHER] = "other",
};

const char *pl_kind_name(pl_kind k) { return k >= 0 && k < PL_NKINDS ? kind_names[k] : "?"; }

/* The kind of a one-node kernel: by the op's category, with the backward
 * and training-step ops (all IR_CAT_GRAD) sorted by what they do. */
static pl_kind single_kind(int op) {
  static const signed char by_op[IR_NOPS] = {
    [IR_ATTENTION] = PL_K_ATTENTION + 1,   [IR_ATTENTION_GRAD] = PL_K_ATTENTION + 1,
    [IR_ATTENTION_SAVE] = PL_K_ATTENTION + 1, [IR_ATTENTION_GRAD_SAVED] = PL_K_ATTENTION + 1,
    [IR_ATTENTION_DECODE] = PL_K_ATTENTION + 1,
    [IR_MHA] = PL_K_ATTENTION + 1,         [IR_MHA_GRAD] = PL_K_ATTENTION + 1,
    [IR_RNN] = PL_K_RECURRENCE + 1,        [IR_LSTM] = PL_K_RECURRENCE + 1,
    [IR_GRU] = PL_K_RECURRENCE + 1,        [IR_RNN_GRAD] = PL_K_RECURRENCE + 1,
    [IR_LSTM_GRAD] = PL_K_RECURRENCE + 1,  [IR_GRU_GRAD] = PL_K_RECURRENCE + 1,
    [IR_CONV2D_GRAD_INPUT] = PL_K_GEMM + 1, [IR_CONV2D_GRAD_WEIGHT] = PL_K_GEMM + 1,
    [IR_UNARY_GRAD] = PL_K_ELEMENTWISE + 1, [IR_MINIMUM] = PL_K_ELEMENTWISE + 1,
    [IR_SIGN] = PL_K_ELEMENTWISE + 1,
    [IR_SOFTMAX_GRAD] = PL_K_ROWS + 1,     [IR_LOG_SOFTMAX_GRAD] = PL_K_ROWS + 1,
    [IR_LAYERNORM_GRAD] = PL_K_ROWS + 1,   [IR_NORM_GRAD] = PL_K_ROWS + 1,   [IR_SUM_TO] = PL_K_ROWS + 1,
    [IR_BROADCAST_TO] = PL_K_MOVE + 1,     [IR_SLICE_GRAD] = PL_K_MOVE + 1,
    [IR_EMBEDDING_GRAD] = PL_K_MOVE + 1,   [IR_GATHER_GRAD] = PL_K_MOVE + 1,
    [IR_KV_WRITE] = PL_K_MOVE + 1,
    [IR_CROSS_ENTROPY_GRAD] = PL_K_LOSS + 1, [IR_BCE_GRAD] = PL_K_LOSS + 1,
    [IR_NLL_GRAD] = PL_K_LOSS + 1,
  };
  static const pl_kind by_cat[] = {
    [IR_CAT_LEAF] = PL_K_OTHER,        [IR_CAT_UNARY] = PL_K_ELEMENTWISE, [IR_CAT_BINARY] = PL_K_ELEMENTWISE,
    [IR_CAT_GEMM] = PL_K_GEMM,         [IR_CAT_REDUCE] = PL_K_ROWS,       [IR_CAT_MOVE] = PL_K_MOVE,
    [IR_CAT_LAYER] = PL_K_OTHER,       [IR_CAT_LOSS] = PL_K_LOSS,         [IR_CAT_GRAD] = PL_K_OTHER,
    [IR_CAT_FUSED] = PL_K_ELEMENTWISE, [IR_CAT_SELECT] = PL_K_ELEMENTWISE,
  };
  if (op < 0 || op >= IR_NOPS) return PL_K_OTHER;
  return by_op[op] ? (pl_kind)(by_op[op] - 1) : by_cat[ir_ops[op].cat];
}

/* The operands of sibling groups (one, or every parameter's update): each
 * group's results, then its inputs not listed before; res/inop of each
 * group say where (a copy the kernel owns). Operand 0 is the last group's
 * last member (the kernel's node). */
static int sibling_args(const pl_group *grp, pl_siblings *all, int *in) {
  int narg = 0, node = grp->multi[grp->nmulti - 1].node[grp->multi[grp->nmulti - 1].n - 1];
  for (int q = 0; q < grp->nmulti; q++) {
    pl_siblings *mu = &all[q];
    *mu = grp->multi[q];
    for (int m = 0; m < mu->n; m++) {
      if (mu->node[m] == node) mu->res[m] = 0;
      else in[narg++] = mu->node[m], mu->res[m] = narg;
    }
    for (int j = 0; j < mu->nin; j++) {
      int at = -1;
      for (int a = 0; a < narg && at < 0; a++) at = in[a] == mu->in[j] ? a : -1;
      if (at < 0) in[narg++] = mu->in[j], at = narg - 1;
      mu->inop[j] = at + 1;
    }
  }
  return narg;
}

/* The nodes of a kernel's operands after its result, in the order a
 * backend passes them: the node's inputs; for a product's epilogue the
 * product's two inputs and the extras; for siblings sibling_args. */
static int kernel_args(const ir_graph *g, const ir_node *n, const pl_group *grp, int *in) {
  if (!grp) {
    for (int j = 0; j < n->nin; j++) in[j] = n->in[j];
    return n->nin;
  }
  const ir_node *h = &g->nodes[grp->head];
  if (grp->kind == PL_K_ADD_NORM) { /* the add's operands, the layernorm's w and b, the add's result (stored) */
    in[0] = grp->extra[0], in[1] = grp->extra[1], in[2] = h->in[1], in[3] = h->in[2], in[4] = grp->extra[2];
    return 5;
  }
  if (grp->kind == PL_K_NORM_GRAD_ADD) { /* the gradient's x, w, dy, then the residual gradient */
    in[0] = h->in[0], in[1] = h->in[1], in[2] = h->in[2], in[3] = grp->extra[0];
    return 4;
  }
  if (h->op == IR_CONV2D) { /* x, w (, bias): a convolution's chain has no extras (plan_group.c) */
    for (int j = 0; j < h->nin; j++) in[j] = h->in[j];
    return h->nin;
  }
  in[0] = h->in[0], in[1] = h->in[1];
  for (int j = 0; j < grp->nextra; j++) in[2 + j] = grp->extra[j];
  return 2 + grp->nextra;
}

static int listed(const int *v, int n, int x) {
  for (int j = 0; j < n; j++)
    if (v[j] == x) return 1;
  return 0;
}

/* Members, operands, what it stores and reads, and the hints. */
static int fill_kernel(pl_plan *p, pl_kernel *k, int i, const pl_group *grp) {
  const ir_graph *g = p->g;
  const ir_node *n = &g->nodes[i];
  int nsib = grp && grp->multi ? grp->nmulti : 0, big = 0;
  for (int q = 0; nsib > 1 && q < nsib; q++) big += grp->multi[q].n + grp->multi[q].nin; /* every operand, members */
  if (big && big < PL_MAXMULTI + PL_MAXFUSE + 1) big = PL_MAXMULTI + PL_MAXFUSE + 1;
  k->node = i;
  k->kind = grp ? grp->kind : single_kind(n->op);
  k->head = grp && !grp->multi ? grp->head : i;
  k->epi = grp && grp->kind == PL_K_GEMM_EPI ? &grp->f : NULL;
  k->member = ar_alloc(&p->A, sizeof(int) * (size_t)(big ? big : PL_MAXFUSE + 2));
  k->arg = ar_alloc(&p->A, sizeof(int) * (size_t)(big ? big : PL_MAXARGS));
  k->in = ar_alloc(&p->A, sizeof(int) * (size_t)(big ? big : PL_MAXARGS));
  k->out = ar_alloc(&p->A, sizeof(int) * (size_t)(big ? big : PL_MAXMULTI + PL_MAXFUSE));
  pl_siblings *all = nsib ? ar_alloc(&p->A, sizeof(pl_siblings) * (size_t)nsib) : NULL;
  if (!k->member || !k->arg || !k->in || !k->out || (nsib && !all)) return -1;
  k->nsib = nsib, k->sib = all;
  k->nmember = grp && !nsib ? grp->nmember : nsib ? 0 : 1;
  if (grp && !nsib) memcpy(k->member, grp->member, sizeof(int) * (size_t)grp->nmember);
  else if (!grp) k->member[0] = i;
  k->narg = nsib ? sibling_args(grp, all, k->arg) : kernel_args(g, n, grp, k->arg);
  for (int q = 0; q < nsib; q++)
    for (int m = 0; m < all[q].n; m++) k->member[k->nmember++] = all[q].node[m];
  k->out[k->nout++] = i;
  for (int m = 0; m < k->nmember; m++)
    if (k->member[m] != i && p->buf[k->member[m]].inside) k->out[k->nout++] = k->member[m];
  for (int j = 0; j < k->narg; j++)
    if (!listed(k->out, k->nout, k->arg[j]) && !listed(k->in, k->nin, k->arg[j])) k->in[k->nin++] = k->arg[j];
  /* An output's standalone fused kernel (every optimizer update) checks its
   * values as it stores them: the training step then needs no pass of its
   * own to know they are finite. */
  k->check = p->buf[i].kind == PL_BUF_OUTPUT && !grp && n->op == IR_FUSED;
  p->buf[i].checked = k->check;
  for (int s = 0; s < k->nsib; s++)
    for (int q = 0; q < k->sib[s].n; q++) p->buf[k->sib[s].node[q]].checked = k->sib[s].check[q];
  k->inplace = p->buf[i].inplace_of >= 0;
  k->elems = ir_numel(&n->shape);
  k->cols = n->shape.rank ? n->shape.d[n->shape.rank - 1] : 1;
  k->rows = k->cols > 0 ? k->elems / k->cols : 0;
  k->grain = k->cols >= 4096 ? 1 : 4096 / (k->cols > 0 ? k->cols : 1); /* rows per part: ~4096 elements */
  for (int m = 0; m < k->nmember; m++) k->flops += ir_node_flops(g, k->member[m]);
  for (int j = 0; j < k->nin; j++) k->bytes += p->buf[k->in[j]].bytes;
  for (int j = 0; j < k->nout; j++) k->bytes += p->buf[k->out[j]].bytes;
  return 0;
}

int pl_build(const ir_graph *g, const pl_target *t, pl_plan *p) {
  memset(p, 0, sizeof *p);
  ar_init(&p->A);
  p->g = g;
  size_t nn = (size_t)(g->nnodes ? g->nnodes : 1);
  pl_groups gr;
  pl_find_groups(g, t, &p->A, &gr);
  p->buf = ar_alloc(&p->A, sizeof *p->buf * nn);
  pl_plan_buffers(p, t, &gr);
  p->k = ar_alloc(&p->A, sizeof *p->k * nn);
  if (!p->buf || !p->k) {
    pl_free(p);
    return -1;
  }
  for (int i = 0; i < g->nnodes; i++) p->buf[i].kernel = -1;
  for (int i = 0; i < g->nnodes; i++) {
    int kind = p->buf[i].kind;
    if ((kind != PL_BUF_ARENA && kind != PL_BUF_OUTPUT) || p->buf[i].inside) continue;
    pl_kernel *k = &p->k[p->nk];
    if (fill_kernel(p, k, i, gr.group_of[i])) {
      pl_free(p);
      return -1;
    }
    for (int j = 0; j < k->nout; j++) p->buf[k->out[j]].kernel = p->nk;
    p->nk++;
  }
  return 0;
}

void pl_free(pl_plan *p) {
  ar_free(&p->A);
  memset(p, 0, sizeof *p);
}
