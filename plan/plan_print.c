/* plan_print.c -- the plan as text (`lathe check --kernels`, --dump-dir):
 * one line per kernel with its kind, members, the buffer of everything it
 * writes and reads, and its FLOPs and bytes. */
#include <stdio.h>

#include "plan/plan.h"

const char *pl_tensor_name(const ir_graph *g, int i, char *buf, size_t n) {
  const ir_node *x = &g->nodes[i];
  if (x->name) snprintf(buf, n, "'%s'", x->name);
  else snprintf(buf, n, "%s#%d", ir_ops[x->op].name, i);
  return buf;
}

/* "%7 @arena+4096" for one tensor of kernel k */
static void print_buf(const pl_plan *p, int i, int written, FILE *f) {
  static const char *const where[] = {"arena", "input", "param", "const", "output", "alias", "none"};
  const pl_buf *b = &p->buf[i];
  fprintf(f, " %%%d", i);
  if (b->kind == PL_BUF_ARENA || b->kind == PL_BUF_CONST)
    fprintf(f, "@%s+%lld", where[b->kind], (long long)b->off);
  else if (b->kind == PL_BUF_ALIAS)
    fprintf(f, "=%%%d", b->idx);
  else
    fprintf(f, "@%s%d", where[b->kind], b->idx);
  if (written && b->inplace_of >= 0) fprintf(f, "(in place of %%%d)", b->inplace_of);
}

void pl_print(const pl_plan *p, FILE *f) {
  const ir_graph *g = p->g;
  fprintf(f, "kernel plan: %d kernels, arena %lld bytes (naive %lld), %d in place\n", p->nk,
          (long long)p->arena_bytes, (long long)p->naive_bytes, p->inplace);
  for (int q = 0; q < p->nk; q++) {
    const pl_kernel *k = &p->k[q];
    fprintf(f, "k%-4d %-18s ", q, pl_kind_name(k->kind));
    for (int m = 0; m < k->nmember; m++)
      fprintf(f, "%s%s%%%d", m ? "," : "", ir_ops[g->nodes[k->member[m]].op].name, k->member[m]);
    fprintf(f, "  writes");
    for (int j = 0; j < k->nout; j++) print_buf(p, k->out[j], 1, f);
    fprintf(f, "  reads");
    for (int j = 0; j < k->nin; j++) print_buf(p, k->in[j], 0, f);
    if (p->buf[k->node].scr >= 0)
      fprintf(f, "  scratch@arena+%lld", (long long)p->buf[k->node].scr);
    fprintf(f, "  flops %lld bytes %lld", (long long)k->flops, (long long)k->bytes);
    if (k->check) fprintf(f, "  checked");
    fprintf(f, "\n");
  }
}
