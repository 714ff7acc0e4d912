/* plan_verify.c -- the plan's invariants, checked in kernel order: what a
 * kernel reads was written before it (or is the caller's or a constant);
 * each stored tensor has exactly one writer; two arena tensors share bytes
 * only when their lives do not meet, or when an elementwise kernel writes
 * its result over an input it is the last to read; a kernel's scratch
 * overlaps nothing live while it runs. Errors name the tensors. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "plan/plan_impl.h"

typedef struct {
  const pl_plan *p;
  int *writer;   /* per node: the kernel storing it, -1 */
  int *last;     /* per arena root: the last kernel reading it (nk: kept to the end) */
  char *msg;
  size_t msgn;
} vctx;

static int vfail(vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int vfail(vctx *v, const char *fmt, ...) {
  if (v->msg && v->msgn) {
    int w = snprintf(v->msg, v->msgn, "plan: ");
    va_list ap;
    va_start(ap, fmt);
    if (w > 0 && (size_t)w < v->msgn) vsnprintf(v->msg + w, v->msgn - (size_t)w, fmt, ap);
    va_end(ap);
  }
  return -1;
}

static int root(const pl_plan *p, int i) {
  for (int hops = 0; p->buf[i].kind == PL_BUF_ALIAS && hops < p->g->nnodes; hops++) i = p->buf[i].idx;
  return i;
}

static int stored(const pl_buf *b) { return b->kind == PL_BUF_ARENA || b->kind == PL_BUF_OUTPUT; }

#define NM(i, b) pl_tensor_name(p->g, (i), b, sizeof b)

/* Each stored tensor written by one kernel, each kernel's results stored. */
static int check_writers(vctx *v) {
  const pl_plan *p = v->p;
  char a[160];
  for (int q = 0; q < p->nk; q++)
    for (int j = 0; j < p->k[q].nout; j++) {
      int t = p->k[q].out[j];
      if (!stored(&p->buf[t])) return vfail(v, "kernel %d writes %s, which has no buffer", q, NM(t, a));
      if (v->writer[t] >= 0) return vfail(v, "%s is written by kernels %d and %d", NM(t, a), v->writer[t], q);
      v->writer[t] = q;
    }
  for (int i = 0; i < p->g->nnodes; i++)
    if (stored(&p->buf[i]) && v->writer[i] < 0) return vfail(v, "no kernel writes %s", NM(i, a));
  return 0;
}

static int is_member(const pl_kernel *k, int x, int before) {
  for (int m = 0; m < before; m++)
    if (k->member[m] == x) return 1;
  return 0;
}

static int is_read(const pl_kernel *k, int x) {
  for (int j = 0; j < k->nin; j++)
    if (k->in[j] == x) return 1;
  return 0;
}

/* Reads in order: defined before, and every member's operand accounted for. */
static int check_reads(vctx *v) {
  const pl_plan *p = v->p;
  char a[160], b[160];
  for (int q = 0; q < p->nk; q++) {
    const pl_kernel *k = &p->k[q];
    for (int j = 0; j < k->nin; j++) {
      int x = k->in[j], r = root(p, x);
      if (p->buf[r].kind == PL_BUF_NONE) return vfail(v, "kernel %d reads %s, which has no buffer", q, NM(x, a));
      if (!stored(&p->buf[r])) continue;
      if (v->writer[r] >= q)
        return vfail(v, "kernel %d reads %s before kernel %d writes it", q, NM(x, a), v->writer[r]);
      if (v->last[r] < q) v->last[r] = q;
    }
    for (int m = 0; m < k->nmember; m++) {
      const ir_node *n = &p->g->nodes[k->member[m]];
      for (int j = 0; j < n->nin; j++)
        if (!is_member(k, n->in[j], m) && !is_read(k, n->in[j]))
          return vfail(v, "kernel %d computes %s from %s, which it neither computes first nor reads", q,
                       NM(k->member[m], a), NM(n->in[j], b));
    }
  }
  if (p->g->loss >= 0) v->last[root(p, p->g->loss)] = p->nk;
  return 0;
}

static int meet(int64_t a0, int64_t a1, int64_t b0, int64_t b1) { return a0 < b1 && b0 < a1; }

/* t written over s: allowed when t's kernel is one elementwise node that is
 * s's last reader and t took s's block exactly. */
static int good_inplace(vctx *v, int t, int s) {
  const pl_plan *p = v->p;
  const pl_buf *bt = &p->buf[t], *bs = &p->buf[s];
  const pl_kernel *k = &p->k[v->writer[t]];
  return bt->inplace_of == s && bt->off == bs->off && bt->bytes == bs->bytes && v->last[s] == v->writer[t] &&
         k->nmember == 1 && pl_elementwise_kernel(&p->g->nodes[t]);
}

static int check_overlap(vctx *v, int s, int t) {
  const pl_plan *p = v->p;
  const pl_buf *bs = &p->buf[s], *bt = &p->buf[t];
  char a[160], b[160];
  if (!meet(bs->off, bs->off + bs->bytes, bt->off, bt->off + bt->bytes)) return 0;
  if (!meet(v->writer[s], v->last[s] + 1, v->writer[t], v->last[t] + 1)) return 0;
  if (good_inplace(v, t, s) || good_inplace(v, s, t)) return 0;
  int w = bt->inplace_of == s ? t : bs->inplace_of == t ? s : -1;
  if (w >= 0) {
    int o = w == t ? s : t;
    return vfail(v, "kernel %d writes %s in place over %s, which kernel %d reads later", v->writer[w], NM(w, a),
                 NM(o, b), v->last[o]);
  }
  return vfail(v, "%s (arena+%lld, %lld bytes, kernels %d..%d) and %s (arena+%lld, %lld bytes, kernels %d..%d) "
               "overlap while both are live", NM(s, a), (long long)bs->off, (long long)bs->bytes, v->writer[s],
               v->last[s], NM(t, b), (long long)bt->off, (long long)bt->bytes, v->writer[t], v->last[t]);
}

/* Arena blocks: inside the arena, and no two live ones overlapping. */
static int check_arena(vctx *v) {
  const pl_plan *p = v->p;
  int nn = p->g->nnodes;
  char a[160];
  for (int i = 0; i < nn; i++) {
    const pl_buf *b = &p->buf[i];
    if (b->kind == PL_BUF_ARENA && (b->off < 0 || b->off + b->bytes > p->arena_bytes))
      return vfail(v, "%s at arena+%lld (%lld bytes) is outside the arena's %lld bytes", NM(i, a),
                   (long long)b->off, (long long)b->bytes, (long long)p->arena_bytes);
    if (b->kind == PL_BUF_ARENA && v->last[i] < v->writer[i]) v->last[i] = v->writer[i];
  }
  for (int s = 0; s < nn; s++)
    for (int t = s + 1; p->buf[s].kind == PL_BUF_ARENA && t < nn; t++)
      if (p->buf[t].kind == PL_BUF_ARENA && check_overlap(v, s, t)) return -1;
  for (int q = 0; q < p->nk; q++) {
    const pl_buf *k = &p->buf[p->k[q].node];
    if (k->scr < 0 || k->scr_bytes <= 0) continue;
    if (k->scr + k->scr_bytes > p->arena_bytes)
      return vfail(v, "kernel %d's scratch (%lld bytes) is outside the arena", q, (long long)k->scr_bytes);
    for (int t = 0; t < nn; t++) {
      const pl_buf *b = &p->buf[t];
      if (b->kind == PL_BUF_ARENA && v->writer[t] <= q && q <= v->last[t] &&
          meet(k->scr, k->scr + k->scr_bytes, b->off, b->off + b->bytes))
        return vfail(v, "kernel %d's scratch overlaps %s, live in kernels %d..%d", q, NM(t, a), v->writer[t],
                     v->last[t]);
    }
  }
  return 0;
}

int pl_verify(const pl_plan *p, char *msg, size_t msgn) {
  size_t nn = (size_t)(p->g->nnodes ? p->g->nnodes : 1);
  vctx v = {p, malloc(sizeof(int) * nn), malloc(sizeof(int) * nn), msg, msgn};
  int rc = -1;
  if (!v.writer || !v.last) {
    vfail(&v, "out of memory");
  } else {
    for (int i = 0; i < p->g->nnodes; i++) v.writer[i] = v.last[i] = -1;
    rc = check_writers(&v) || check_reads(&v) || check_arena(&v) ? -1 : 0;
  }
  free(v.writer);
  free(v.last);
  return rc;
}
