/* plan_key.c -- a kernel's dedup key: identical layers make identical
 * kernels, and a backend compiles each distinct one once. The key holds
 * everything a kernel's code depends on: every node it computes (op,
 * attributes, fused program, dtypes and shapes of result and operands) and
 * where each operand comes from. */
#include <stdio.h>
#include <string.h>

#include "plan/plan.h"

static void kernel_key(const ir_graph *g, const ir_node *n, char *key, size_t kn) {
  const ir_attr *a = &n->attr;
  int w = snprintf(key, kn, "%d|%d|%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld|%d,%d,%d|%.17g,%.17g|%lld|", n->op, n->nin,
                   (long long)a->axis, (long long)a->k, (long long)a->stride, (long long)a->pad,
                   (long long)a->pad_hi, (long long)a->start, (long long)a->end, (long long)a->heads,
                   (long long)a->n, a->keepdims, a->causal, a->approx, a->f, a->f2,
                   (long long)a->i);
  for (int l = 0; l < a->nlist && w > 0 && (size_t)w < kn; l++) w += snprintf(key + w, kn - (size_t)w, "%lld,", (long long)a->list[l]);
  /* a fused program: its steps (op, operands, the attributes its code reads) */
  for (int s = 0; n->fusion && s < n->fusion->nsteps && w > 0 && (size_t)w < kn; s++) {
    const ir_fstep *st = &n->fusion->step[s];
    w += snprintf(key + w, kn - (size_t)w, "%d(%d,%d)%.17g,%d;", st->op, st->arg[0], st->nin > 1 ? st->arg[1] : 0,
                  n->fusion->attr[s].f, n->fusion->attr[s].approx);
  }
  for (int j = -1; j < n->nin && w > 0 && (size_t)w < kn; j++) {
    const ir_node *x = j < 0 ? n : &g->nodes[n->in[j]];
    w += snprintf(key + w, kn - (size_t)w, "|%d:", (int)x->dtype);
    for (int d = 0; d < x->shape.rank && w > 0 && (size_t)w < kn; d++)
      w += snprintf(key + w, kn - (size_t)w, "%lld,", (long long)x->shape.d[d]);
  }
}

static void group_key(const ir_graph *g, const pl_kernel *k, char *key, size_t kn) {
  const ir_node *n = &g->nodes[k->node];
  if (k->sib) { /* each group's members, and the operand each input comes from */
    size_t w = (size_t)snprintf(key, kn, "multi%d|", k->nsib);
    for (int s = 0; s < k->nsib; s++) {
      const pl_siblings *mu = &k->sib[s];
      w += (size_t)snprintf(key + w, kn - w, "g%d|", mu->n);
      for (int m = 0; m < mu->n && w + 16 < kn; m++) {
        const ir_node *x = &g->nodes[mu->node[m]];
        kernel_key(g, x, key + w, kn - w);
        w = strlen(key);
        for (int j = 0; j < x->nin && w + 16 < kn; j++) {
          int from = -1;
          for (int q = 0; q < mu->nin; q++) from = mu->in[q] == x->in[j] ? mu->inop[q] : from;
          for (int q = 0; q < mu->n; q++) from = mu->node[q] == x->in[j] ? 1000 + q : from;
          w += (size_t)snprintf(key + w, kn - w, "<%d", from);
        }
        w += (size_t)snprintf(key + w, kn - w, "%s>%d#", mu->check[m] ? "!" : "", mu->res[m]);
      }
      if (w + 16 >= kn) { /* too long to tell apart: unique to this kernel */
        snprintf(key, kn, "multi@%d", k->node);
        return;
      }
    }
    return;
  }
  if (k->kind == PL_K_ADD_NORM || k->kind == PL_K_NORM_GRAD_ADD) {
    /* the add, then the layernorm (or the gradient, then the add) */
    size_t w = (size_t)snprintf(key, kn, "norm%d|", k->kind == PL_K_ADD_NORM ? 1 : 2);
    kernel_key(g, &g->nodes[k->member[0]], key + w, kn - w);
    w = strlen(key);
    kernel_key(g, n, key + w, kn - w);
    return;
  }
  if (!k->epi) {
    kernel_key(g, n, key, kn);
    return;
  }
  const pl_epilogue *f = k->epi;
  size_t w = 0;
  kernel_key(g, &g->nodes[k->head], key, kn);
  for (int s = 0; s < f->nsteps && (w = strlen(key)) + 8 < kn; s++) {
    snprintf(key + w, kn - w, "#%d%d%d:", f->kind[s], f->right[s], f->save[s]);
    w = strlen(key);
    for (int j = 0; f->kind[s] == PL_EPI_PROGRAM && j < f->node[s]->nin && w + 8 < kn; j++) {
      snprintf(key + w, kn - w, "%d,", f->parg[s][j]);
      w = strlen(key);
    }
    kernel_key(g, f->node[s], key + w, kn - w);
  }
}

void pl_kernel_key(const pl_plan *p, const pl_kernel *k, char *key, size_t kn) {
  group_key(p->g, k, key, kn);
  if (k->check) strncat(key, "|check", kn - strlen(key) - 1);
}
