/* memplan.c -- liveness-based static memory plan (see passes.h).
 *
 * One pass over the nodes in order: a node's result (and its scratch) is
 * placed, best fit, among the blocks live at that moment; then its scratch
 * and every tensor whose last reader it was are released. Quadratic in the
 * number of live blocks, which stays small (a few dozen) for real models.
 */
#include "passes.h"

#include <string.h>

#define MP_ALIGN 64

typedef struct {
  int64_t off, size;
  int owner;       /* node id; -(id+1) for a node's scratch */
} mp_block;

typedef struct {
  mp_block *b;
  int n;
  int64_t peak;
} mp_live;

static int64_t mp_round(int64_t n) { return (n + MP_ALIGN - 1) / MP_ALIGN * MP_ALIGN; }

/* Smallest gap between live blocks (kept sorted by offset) that fits size;
 * past the last block when none does. */
static int64_t mp_place(mp_live *L, int64_t size, int owner) {
  int64_t best = -1, best_gap = INT64_MAX, prev_end = 0;
  int at = L->n;
  for (int k = 0; k <= L->n; k++) {
    int64_t start = k < L->n ? L->b[k].off : INT64_MAX;
    int64_t gap = start - prev_end;
    if (gap >= size && (k < L->n ? gap : INT64_MAX - 1) < best_gap) {
      best_gap = k < L->n ? gap : INT64_MAX - 1;
      best = prev_end;
      at = k;
    }
    if (k < L->n && L->b[k].off + L->b[k].size > prev_end) prev_end = L->b[k].off + L->b[k].size;
  }
  memmove(&L->b[at + 1], &L->b[at], (size_t)(L->n - at) * sizeof *L->b);
  L->b[at] = (mp_block){best, size, owner};
  L->n++;
  if (best + size > L->peak) L->peak = best + size;
  return best;
}

static void mp_release(mp_live *L, int owner) {
  for (int k = 0; k < L->n; k++)
    if (L->b[k].owner == owner) {
      memmove(&L->b[k], &L->b[k + 1], (size_t)(L->n - k - 1) * sizeof *L->b);
      L->n--;
      return;
    }
}

static int mp_root(const int *alias, int i) {
  while (alias && alias[i] >= 0) i = alias[i];
  return i;
}

/* last[r]: the last node position that reads tensor r directly or through
 * an alias (node i reads its inputs at run_at[i], default i). A result
 * stored by a later node's kernel (run_at[i] > i: a sibling of a group, a
 * saved link) keeps its block at least until that kernel has written it,
 * read or not: its block must not go to another result of the same kernel. */
static void mp_last_uses(const ir_graph *g, const int *keep, const int *alias, const int *run_at, int *last) {
  for (int i = 0; i < g->nnodes; i++) last[i] = run_at && run_at[i] > i ? run_at[i] : i;
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    int at = run_at && run_at[i] > i ? run_at[i] : i;
    for (int k = 0; k < n->nin; k++) {
      int r = mp_root(alias, n->in[k]);
      if (last[r] < at) last[r] = at;
    }
    int r = mp_root(alias, i);
    if (last[r] < last[i]) last[r] = last[i];
    if (keep && keep[i]) last[r] = g->nnodes;
  }
  /* An alias's own reads extend its root: propagate once more in order. */
  for (int i = g->nnodes - 1; i >= 0; i--) {
    int r = mp_root(alias, i);
    if (last[r] < last[i]) last[r] = last[i];
  }
}

void mp_plan_graph(const ir_graph *g, arena *A, const int64_t *bytes, const int64_t *scratch,
                   const int *keep, const int *alias, mp_plan *out) {
  mp_plan_graph_at(g, A, bytes, scratch, keep, alias, NULL, NULL, out);
}

/* The input of elementwise node i whose buffer i may take over: same shape
 * and size, in the arena, read for the last time by i, and not read by i
 * under another name (an alias reads it at other indices). -1 if none. */
static int mp_inplace_source(const ir_graph *g, const int64_t *bytes, const int *alias, const int *last,
                             const int64_t *offset, int i) {
  const ir_node *n = &g->nodes[i];
  for (int k = 0; k < n->nin; k++) {
    int j = n->in[k], clash = 0;
    if (offset[j] < 0 || (alias && alias[j] >= 0) || last[j] != i || bytes[j] != bytes[i] ||
        !ir_shape_eq(&g->nodes[j].shape, &n->shape))
      continue;
    for (int q = 0; q < n->nin; q++) clash |= n->in[q] != j && mp_root(alias, n->in[q]) == j;
    if (!clash) return j;
  }
  return -1;
}

/* Block of owner `from` now belongs to `to`. */
static void mp_transfer(mp_live *L, int from, int to) {
  for (int k = 0; k < L->n; k++)
    if (L->b[k].owner == from) L->b[k].owner = to;
}

void mp_plan_graph_at(const ir_graph *g, arena *A, const int64_t *bytes, const int64_t *scratch,
                      const int *keep, const int *alias, const int *run_at, const char *inplace, mp_plan *out) {
  int nn = g->nnodes;
  out->offset = ar_alloc(A, sizeof(int64_t) * (size_t)(nn ? nn : 1));
  out->scratch_off = ar_alloc(A, sizeof(int64_t) * (size_t)(nn ? nn : 1));
  out->arena_bytes = out->naive_bytes = 0;
  out->inplace = 0;
  int *last = ar_alloc(A, sizeof(int) * (size_t)(nn ? nn : 1));
  mp_last_uses(g, keep, alias, run_at, last);
  /* freeing[j] lists the tensors released after node j */
  int *head = ar_alloc(A, sizeof(int) * (size_t)(nn + 1)), *next = ar_alloc(A, sizeof(int) * (size_t)(nn ? nn : 1));
  for (int j = 0; j <= nn; j++) head[j] = -1;
  mp_live L = {ar_alloc(A, sizeof(mp_block) * (size_t)(2 * nn + 1)), 0, 0};
  for (int i = 0; i < nn; i++) {
    out->offset[i] = out->scratch_off[i] = -1;
    int planned = bytes[i] > 0 && !(alias && alias[i] >= 0);
    if (planned) {
      int64_t sz = mp_round(bytes[i]);
      int src = inplace && inplace[i] ? mp_inplace_source(g, bytes, alias, last, out->offset, i) : -1;
      if (src >= 0) { /* in place: the dying input's block becomes i's */
        out->offset[i] = out->offset[src];
        mp_transfer(&L, src, i);
        out->inplace++;
      } else {
        out->offset[i] = mp_place(&L, sz, i);
      }
      out->naive_bytes += sz;
      next[i] = head[last[i]];
      head[last[i]] = i;
    }
    if (scratch && scratch[i] > 0) {
      int64_t sz = mp_round(scratch[i]);
      out->scratch_off[i] = mp_place(&L, sz, -(i + 1));
      out->naive_bytes += sz;
      mp_release(&L, -(i + 1));
    }
    for (int t = head[i]; t >= 0; t = next[t]) mp_release(&L, t);
  }
  for (int i = 0; i < nn; i++)
    if (alias && alias[i] >= 0) out->offset[i] = out->offset[mp_root(alias, i)];
  out->arena_bytes = L.peak;
}
