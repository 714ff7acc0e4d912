/* shape_decode.c -- shape rules of the decode-step ops (the kv_write and
 * attention_decode rows of ops.def, made by passes/decode.c). Same contract
 * as shape.c: check the inputs, set n->dtype and n->shape, or write
 * "op: what is wrong" and return -1.
 *
 * Shapes: T = cache length (the model's sequence length), d = width. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "ir.h"

static int fail(char *msg, size_t mn, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *msg, size_t mn, const char *fmt, ...) {
  if (msg && mn) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, mn, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* cache f32[T, d]: the shape both ops take their caches in. */
static int need_cache(const ir_node *n, const ir_node *c, const char *what, char *msg, size_t mn) {
  if (c->dtype != IR_F32 || c->shape.rank != 2 || c->shape.d[0] < 1 || c->shape.d[1] < 1)
    return fail(msg, mn, "%s: %s must be f32[T, d]", ir_ops[n->op].name, what);
  return 0;
}

/* A vector of exactly d f32 values, in any shape ([1, 1, d] in practice). */
static int need_row(const ir_node *n, const ir_node *r, int64_t d, const char *what, char *msg, size_t mn) {
  if (r->dtype != IR_F32 || ir_numel(&r->shape) != d)
    return fail(msg, mn, "%s: %s must hold %lld f32 values (the cache width)", ir_ops[n->op].name, what,
                (long long)d);
  return 0;
}

static int need_pos(const ir_node *n, const ir_node *p, char *msg, size_t mn) {
  if (p->shape.rank != 0 || !ir_dtype_is_int(p->dtype) || p->dtype == IR_BOOL)
    return fail(msg, mn, "%s: the position must be an integer scalar", ir_ops[n->op].name);
  return 0;
}

/* sample_token(logits f32[..., V], draw i32[2]; f = temperature, k =
 * top_k) -> i32[...]: the last axis dropped. */
int shp_sample_token(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *l = &g->nodes[n->in[0]], *d = &g->nodes[n->in[1]];
  if (l->dtype != IR_F32 || l->shape.rank < 1 || l->shape.d[l->shape.rank - 1] < 1 ||
      l->shape.d[l->shape.rank - 1] > 2147483647)
    return fail(msg, mn, "sample_token: the logits must be f32[..., V] with 1 <= V < 2^31");
  if (d->dtype != IR_I32 || ir_numel(&d->shape) != 2)
    return fail(msg, mn, "sample_token: the draw must be i32[2]");
  if (!(n->attr.f > 0) || isinf(n->attr.f) || n->attr.k < 0)
    return fail(msg, mn, "sample_token: the temperature must be finite and > 0 and top-k >= 0");
  n->dtype = IR_I32;
  n->shape = l->shape;
  n->shape.rank--;
  return 0;
}

/* kv_write(cache[T, d], row, pos) -> [T, d] */
int shp_kv_write(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *c = &g->nodes[n->in[0]], *r = &g->nodes[n->in[1]], *p = &g->nodes[n->in[2]];
  if (need_cache(n, c, "the cache", msg, mn) || need_row(n, r, c->shape.d[1], "the row", msg, mn) ||
      need_pos(n, p, msg, mn))
    return -1;
  n->dtype = IR_F32;
  n->shape = c->shape;
  return 0;
}

/* attention_decode(q, k_cache[T, dk], v_cache[T, dk], pos; heads) -> q's
 * shape. q holds d = H hd values; the caches hold K = dk / hd key/value
 * heads (K = H for plain attention; fewer for mha's grouped heads, query
 * head h reading cache head h / (H / K)), so K comes from the shapes. */
int shp_attention_decode(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  const ir_node *q = &g->nodes[n->in[0]], *k = &g->nodes[n->in[1]], *v = &g->nodes[n->in[2]];
  if (need_cache(n, k, "the key cache", msg, mn) || need_cache(n, v, "the value cache", msg, mn)) return -1;
  if (k->shape.d[0] != v->shape.d[0] || k->shape.d[1] != v->shape.d[1])
    return fail(msg, mn, "attention_decode: the key and value caches differ in shape");
  int64_t d = ir_numel(&q->shape), dk = k->shape.d[1], H = n->attr.heads;
  if (q->dtype != IR_F32) return fail(msg, mn, "attention_decode: the query must be f32");
  if (need_pos(n, &g->nodes[n->in[3]], msg, mn)) return -1;
  if (H < 1 || d % H)
    return fail(msg, mn, "attention_decode: %lld heads do not divide width %lld", (long long)H, (long long)d);
  int64_t hd = d / H;
  if (dk % hd || H % (dk / hd))
    return fail(msg, mn, "attention_decode: cache width %lld is not a number of %lld-wide heads dividing %lld",
                (long long)dk, (long long)hd, (long long)H);
  n->dtype = IR_F32;
  n->shape = q->shape;
  return 0;
}
