/* shape_mha.c -- shape rules of mha (attention with a mask, a context,
 * rotary embeddings or grouped key/value heads) and of its fused backward.
 *
 * B = batch, Tq = query positions (x), Tk = key positions (c), d = x's
 * width, dc = c's width, H = heads, K = key/value heads, e = the query
 * weight's width (the inner width: d, or heads x head_dim with head_dim=),
 * hd = e / H, dk = K hd (the width of the keys and of the values).
 */
#include <stdio.h>

#include "ir.h"

enum { MHA_NFLOAT = 8 }; /* x, wq, bq, c, wkv, bkv, wp, bp; then the mask */

static int want(const ir_node *a, const char *what, ir_dtype t, const ir_shape *s, char *msg, size_t mn) {
  char b1[100], b2[100];
  if (a->dtype == t && ir_shape_eq(&a->shape, s)) return 0;
  return ir_fail(msg, mn, "mha: %s must be %s%s, got %s%s", what, ir_dtype_name(t), ir_shape_str(s, b1, sizeof b1),
                 ir_dtype_name(a->dtype), ir_shape_str(&a->shape, b2, sizeof b2));
}

/* lengths i32[B]; bool[B, Tk]; bool[B, Tq, Tk] */
static int want_mask(const ir_node *m, int64_t B, int64_t Tq, int64_t Tk, char *msg, size_t mn) {
  char b[100];
  const ir_shape *s = &m->shape;
  if (m->dtype == IR_I32 && s->rank == 1 && s->d[0] == B) return 0;
  if (m->dtype == IR_BOOL && s->rank == 2 && s->d[0] == B && s->d[1] == Tk) return 0;
  if (m->dtype == IR_BOOL && s->rank == 3 && s->d[0] == B && s->d[1] == Tq && s->d[2] == Tk) return 0;
  return ir_fail(msg, mn,
                 "mha: the mask must be lengths i32[%lld], bool[%lld, %lld] or bool[%lld, %lld, %lld], got %s%s",
                 (long long)B, (long long)B, (long long)Tk, (long long)B, (long long)Tq, (long long)Tk,
                 ir_dtype_name(m->dtype), ir_shape_str(s, b, sizeof b));
}

int shp_mha(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  if (n->nin < MHA_NFLOAT || n->nin > MHA_NFLOAT + 1)
    return ir_fail(msg, mn, "mha: %d inputs, expected 8 or 9", n->nin);
  const ir_node *x = &g->nodes[n->in[0]], *c = &g->nodes[n->in[3]];
  char b[100];
  if (x->dtype != IR_F32 && x->dtype != IR_F16 && x->dtype != IR_BF16)
    return ir_fail(msg, mn, "mha: x must be a float tensor, got %s", ir_dtype_name(x->dtype));
  if (x->shape.rank != 3 || c->shape.rank != 3 || c->shape.d[0] != x->shape.d[0])
    return ir_fail(msg, mn, "mha: x and the context must be [batch, T, width] with one batch, got %s and %s",
                   ir_shape_str(&x->shape, b, sizeof b), ir_shape_str(&c->shape, (char[100]){0}, 100));
  int64_t B = x->shape.d[0], Tq = x->shape.d[1], Tk = c->shape.d[1], d = x->shape.d[2], dc = c->shape.d[2];
  int64_t H = n->attr.heads, K = n->attr.k;
  const ir_node *wq = &g->nodes[n->in[1]];
  int64_t e = wq->shape.rank == 2 ? wq->shape.d[1] : 0; /* the inner width: wq decides it */
  if (H < 1 || e < 1 || e % H || K < 1 || H % K)
    return ir_fail(msg, mn, "mha: %lld heads must divide the inner width %lld and be a multiple of kv_heads %lld",
                   (long long)H, (long long)e, (long long)K);
  int64_t hd = e / H, dk = K * hd;
  if (n->attr.i && hd % 2)
    return ir_fail(msg, mn, "mha: rotary embeddings need an even head width, got %lld", (long long)hd);
  ir_dtype t = x->dtype;
  if (want(c, "the context", t, &c->shape, msg, mn) ||
      want(wq, "the query weight", t, &(ir_shape){2, {d, e}}, msg, mn) ||
      want(&g->nodes[n->in[2]], "the query bias", t, &(ir_shape){1, {e}}, msg, mn) ||
      want(&g->nodes[n->in[4]], "the key/value weight", t, &(ir_shape){2, {dc, 2 * dk}}, msg, mn) ||
      want(&g->nodes[n->in[5]], "the key/value bias", t, &(ir_shape){1, {2 * dk}}, msg, mn) ||
      want(&g->nodes[n->in[6]], "the output weight", t, &(ir_shape){2, {e, d}}, msg, mn) ||
      want(&g->nodes[n->in[7]], "the output bias", t, &(ir_shape){1, {d}}, msg, mn))
    return -1;
  if (n->nin > MHA_NFLOAT && want_mask(&g->nodes[n->in[MHA_NFLOAT]], B, Tq, Tk, msg, mn)) return -1;
  n->dtype = t, n->shape = x->shape;
  return 0;
}

/* mha's inputs, then dy (the forward result's shape): f32[the float inputs'
 * sizes summed] */
int shp_mha_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  if (n->nin < MHA_NFLOAT + 1) return ir_fail(msg, mn, "mha_grad: %d inputs, expected 9 or 10", n->nin);
  n->nin--; /* the forward rule sees mha's inputs only */
  int r = shp_mha(g, n, msg, mn);
  n->nin++;
  if (r) return -1;
  const ir_node *dy = &g->nodes[n->in[n->nin - 1]];
  if (want(dy, "dy", n->dtype, &n->shape, msg, mn)) return -1;
  int64_t total = 0;
  for (int k = 0; k < MHA_NFLOAT; k++) total += ir_numel(&g->nodes[n->in[k]].shape);
  n->dtype = IR_F32, n->shape = (ir_shape){.rank = 1, .d = {total}};
  return 0;
}
