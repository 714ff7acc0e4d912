/* cu_bgrad.c -- a dense layer's bias gradient as its weight gradient's
 * cuBLASLt epilogue. The backward of y = x w + b has two plan kernels:
 * dw = x^T dy (a product) and db = sum_to(dy) (a column sum). cuBLASLt's
 * bias-gradient epilogue (CU_EPI_BGRAD_B) writes db beside dw in the one
 * product, so the pair becomes one launch at the earlier kernel's place
 * and the later one renders nothing.
 *
 * Moving the later kernel's result earlier is safe only where the arena
 * lets it: its block must overlap nothing live from the earlier kernel to
 * the later one (a buffer the plan reuses there, a kernel's scratch), and
 * the moved kernel's operands must be written by then. The plan is not
 * changed: pairs that fail the check keep their column-sum kernel.
 * LATHE_CUDA_BGRAD=0 (read at render time) turns the pairing off. */
#include <stdlib.h>
#include <string.h>

#include "codegen/cuda/cu.h"

static int root_of(const pl_plan *p, int i) {
  for (int hops = 0; i >= 0 && p->buf[i].kind == PL_BUF_ALIAS && hops < p->g->nnodes; hops++) i = p->buf[i].idx;
  return i;
}

/* The kernels' live ranges per arena root: first writer, last reader. */
typedef struct {
  const pl_plan *p;
  int *writer, *last;
} live;

static int live_of(const pl_plan *p, live *v) {
  int nn = p->g->nnodes;
  v->p = p;
  v->writer = malloc(sizeof(int) * (size_t)(nn ? nn : 1));
  v->last = malloc(sizeof(int) * (size_t)(nn ? nn : 1));
  if (!v->writer || !v->last) return -1;
  for (int i = 0; i < nn; i++) v->writer[i] = p->buf[i].kernel, v->last[i] = p->buf[i].kernel;
  for (int q = 0; q < p->nk; q++)
    for (int j = 0; j < p->k[q].nin; j++) {
      int r = root_of(p, p->k[q].in[j]);
      if (r >= 0 && v->last[r] < q) v->last[r] = q;
    }
  if (p->g->loss >= 0) v->last[root_of(p, p->g->loss)] = p->nk;
  return 0;
}

static int meet(int64_t a0, int64_t a1, int64_t b0, int64_t b1) { return a0 < b1 && b0 < a1; }

/* Tensor x (written by kernel q2) may be written at kernel q1 < q2 instead. */
static int movable(const live *v, int x, int q1, int q2) {
  const pl_plan *p = v->p;
  const pl_buf *bx = &p->buf[x];
  if (bx->kind != PL_BUF_ARENA) return bx->kind == PL_BUF_OUTPUT;
  for (int t = 0; t < p->g->nnodes; t++) {
    const pl_buf *b = &p->buf[t];
    if (t == x || b->kind != PL_BUF_ARENA || v->writer[t] < 0) continue;
    if (v->writer[t] <= q2 && v->last[t] >= q1 && meet(bx->off, bx->off + bx->bytes, b->off, b->off + b->bytes))
      return 0;
  }
  for (int q = q1; q <= q2; q++) {
    const pl_buf *k = &p->buf[p->k[q].node];
    if (k->scr >= 0 && k->scr_bytes > 0 && meet(bx->off, bx->off + bx->bytes, k->scr, k->scr + k->scr_bytes)) return 0;
  }
  return 1;
}

/* Kernel q: x^T dy, both [k, n] f32 matrices: the dy node, else -1. */
static int weight_grad(const pl_plan *p, int q) {
  const pl_kernel *k = &p->k[q];
  const ir_node *n = &p->g->nodes[k->head];
  if (k->kind != PL_K_GEMM || k->nmember != 1 || n->op != IR_MATMUL || (n->attr.i & IR_MM_TB) || !(n->attr.i & IR_MM_TA))
    return -1;
  const ir_node *a = &p->g->nodes[n->in[0]], *b = &p->g->nodes[n->in[1]];
  if (a->shape.rank != 2 || b->shape.rank != 2 || a->dtype != IR_F32 || b->dtype != IR_F32 || n->dtype != IR_F32)
    return -1;
  return n->in[1];
}

/* Kernel q: sum_to(x) of an f32 [rows, cols] tensor to its last axis's cols. */
static int col_sum(const pl_plan *p, int q, int *x) {
  const pl_kernel *k = &p->k[q];
  const ir_node *n = &p->g->nodes[k->head];
  if (k->nmember != 1 || n->op != IR_SUM_TO || n->dtype != IR_F32) return 0;
  const ir_node *in = &p->g->nodes[n->in[0]];
  int64_t cols = in->shape.rank ? in->shape.d[in->shape.rank - 1] : 1;
  if (ir_numel(&n->shape) != cols || n->shape.rank < 1 || n->shape.d[n->shape.rank - 1] != cols) return 0;
  *x = n->in[0];
  return 1;
}

int cu_bgrad_pairs(const pl_plan *p, const unsigned char *bf16, int *partner) {
  for (int q = 0; q < p->nk; q++) partner[q] = -1;
  const char *env = getenv("LATHE_CUDA_BGRAD");
  if (env && !strcmp(env, "0")) return 0;
  live v = {0};
  if (live_of(p, &v)) {
    free(v.writer), free(v.last);
    return -1;
  }
  for (int m = 0; m < p->nk; m++) {
    int dy = weight_grad(p, m);
    if (dy < 0) continue;
    const ir_node *mn = &p->g->nodes[p->k[m].head];
    int64_t cols = p->g->nodes[dy].shape.d[1];
    for (int s = 0; s < p->nk; s++) {
      int x;
      if (partner[s] >= 0 || !col_sum(p, s, &x) || root_of(p, x) != root_of(p, dy)) continue;
      if (ir_numel(&p->g->nodes[x].shape) != ir_numel(&p->g->nodes[dy].shape) || ir_numel(&p->g->nodes[p->k[s].node].shape) != cols)
        continue;
      if (bf16 && bf16[p->k[s].node]) continue; /* the bias gradient has C's type (f32) */
      int ok;
      if (m < s) ok = movable(&v, p->k[s].node, m, s);
      else { /* the product moves: its x must be written by then */
        int a = root_of(p, mn->in[0]);
        ok = movable(&v, p->k[m].node, s, m) && (p->buf[a].kind != PL_BUF_ARENA || v.writer[a] < s) &&
             p->buf[p->k[m].node].scr_bytes <= 0; /* its scratch (bf16 operands) is reserved at its own place */
      }
      if (!ok) continue;
      partner[m] = s, partner[s] = m;
      break;
    }
  }
  free(v.writer), free(v.last);
  return 0;
}
