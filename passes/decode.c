/* decode.c -- the one-position decode graph with key/value caches (see
 * decode.h for what it computes and why). One walk over the full graph in
 * node order: each node needed by the output is rebuilt in the new graph
 * with its time axis narrowed to 1, by a rule chosen by the op's category;
 * attention is expanded into its cached form.
 *
 * Shapes: T = sequence length (the cache length), d = model width. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "optimizer.h"

enum { DEC_MAXIN = 64 };

typedef struct {
  const ir_graph *f; /* the full graph at batch 1 */
  ir_graph *g;       /* the decode graph being built */
  int64_t T;
  int *nid;          /* per full node: its node in g, -1 = not built */
  int *tax;          /* per full node: its time axis, -1 = position-independent */
  int pos;           /* the DEC_IN_POS scalar */
  int posvec;        /* pos reshaped to [1] (for row gathers), -1 until needed */
  int64_t rope_hd;   /* the head width of rope_cos/rope_sin (0: none yet) */
  int rope_cos, rope_sin; /* rotary tables' rows at pos [1, hd] (mha's rope) */
  char *msg;
  size_t msgn;
} dec;

static int fail(dec *c, const ir_node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(dec *c, const ir_node *n, const char *fmt, ...) {
  if (!c->msg || !c->msgn) return -1;
  int at = 0;
  if (n && n->loc.file && n->loc.line)
    at = snprintf(c->msg, c->msgn, "%s:%d:%d: ", n->loc.file, n->loc.line, n->loc.col);
  else if (n)
    at = snprintf(c->msg, c->msgn, "%s: ", ir_ops[n->op].name);
  if (at < 0 || (size_t)at >= c->msgn) return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->msg + at, c->msgn - (size_t)at, fmt, ap);
  va_end(ap);
  return -1;
}

static const ir_node *fnode(const dec *c, int id) { return &c->f->nodes[id]; }

/* Add a node to the decode graph; an internal failure names the op. */
static int add(dec *c, int op, const int *in, int nin, const ir_attr *at, ir_loc loc) {
  char m[256];
  int id = ir_add(c->g, op, in, nin, at, loc, m, sizeof m);
  if (id < 0) snprintf(c->msg, c->msgn, "decode graph: %s", m);
  return id;
}

static int reshape(dec *c, int x, const ir_shape *s, ir_loc loc) {
  ir_attr at = {0};
  at.nlist = s->rank;
  memcpy(at.list, s->d, sizeof(int64_t) * (size_t)s->rank);
  return add(c, IR_RESHAPE, &x, 1, &at, loc);
}

static int pos_vector(dec *c, ir_loc loc) {
  if (c->posvec < 0) {
    ir_shape one = {.rank = 1, .d = {1}};
    c->posvec = reshape(c, c->pos, &one, loc);
  }
  return c->posvec;
}

/* ---- leaves ---- */

static int copy_param(dec *c, const ir_node *n) {
  const ir_param *p = &c->f->params[n->attr.i];
  int id = ir_add_param(c->g, p->name, p->dtype, &p->shape, p->init, p->std, p->fan_in, p->fan_out, n->loc);
  if (id >= 0) c->g->params[c->g->nparams - 1].state = p->state;
  if (id >= 0) c->g->params[c->g->nparams - 1].buffer = p->buffer;
  if (id >= 0) c->g->params[c->g->nparams - 1].stored = p->stored;
  return id;
}

static int copy_const(dec *c, const ir_node *n) {
  int id = ir_add_const(c->g, n->dtype, n->attr.f, n->loc);
  if (id < 0) return -1;
  c->g->nodes[id].shape = n->shape; /* a payload keeps the full graph's data (same lifetime) */
  c->g->nodes[id].data = n->data;
  c->g->nodes[id].name = n->name;
  return id;
}

/* A state parameter of zeros: a key or value cache. */
static int cache_param(dec *c, const char *name, int64_t d, ir_loc loc) {
  ir_shape s = {.rank = 2, .d = {c->T, d}};
  int id = ir_add_param(c->g, name, IR_F32, &s, IR_INIT_ZEROS, 0, 0, 0, loc);
  if (id >= 0) c->g->params[c->g->nparams - 1].state = 1;
  return id;
}

static int leaf(dec *c, int id, int input) {
  const ir_node *n = fnode(c, id);
  switch (n->op) {
  case IR_PARAM: c->tax[id] = -1; return copy_param(c, n);
  case IR_CONST: c->tax[id] = -1; return copy_const(c, n);
  case IR_INPUT:
    if (n->attr.i != input)
      return fail(c, n, "input '%s': generation feeds only the token sequence", c->f->inputs[n->attr.i].name);
    c->tax[id] = 1;
    return c->g->inputs[0].node;
  case IR_ARANGE:
    if (n->attr.n == c->T) { c->tax[id] = 0; return pos_vector(c, n->loc); } /* arange(T)[pos] = pos */
    c->tax[id] = -1;
    return add(c, IR_ARANGE, NULL, 0, &n->attr, n->loc);
  default: return fail(c, n, "unexpected leaf");
  }
}

/* ---- per-position ops ---- */

/* Input j of n aligned to n's rank R (NumPy broadcasting aligns right). */
static int aligned(const dec *c, const ir_node *n, int j) {
  int t = c->tax[n->in[j]];
  return t < 0 ? -1 : t + n->shape.rank - fnode(c, n->in[j])->shape.rank;
}

/* A position-independent operand x that a binary op broadcasts along the
 * time axis (its axis ax has size T): gather row pos of axis 0 as an
 * embedding lookup, keeping x's rank with that axis narrowed to 1. */
static int gather_rows(dec *c, const ir_node *n, int j, int ax) {
  const ir_node *x = fnode(c, n->in[j]);
  if (ax != 0)
    return fail(c, n, "a tensor of shape [.., %lld, ..] broadcast along positions on an inner axis has no "
                      "decode form", (long long)c->T);
  int64_t rest = ir_numel(&x->shape) / c->T;
  ir_shape tab = {.rank = 2, .d = {c->T, rest}}, one = x->shape;
  one.d[0] = 1;
  int t = c->nid[n->in[j]];
  if (x->shape.rank != 2 && (t = reshape(c, t, &tab, n->loc)) < 0) return -1;
  int in[2] = {pos_vector(c, n->loc), t};
  int row = add(c, IR_EMBEDDING, in, 2, NULL, n->loc); /* [1, rest] */
  return row < 0 || x->shape.rank == 2 ? row : reshape(c, row, &one, n->loc);
}

static int binary(dec *c, int id) {
  const ir_node *n = fnode(c, id);
  int ax = -1, in[DEC_MAXIN];
  for (int j = 0; j < n->nin && j < DEC_MAXIN; j++) {
    int a = aligned(c, n, j);
    if (a >= 0 && ax >= 0 && a != ax)
      return fail(c, n, "operands indexed by position along different axes have no decode form");
    if (a >= 0) ax = a;
  }
  c->tax[id] = ax;
  for (int j = 0; j < n->nin && j < DEC_MAXIN; j++) {
    in[j] = c->nid[n->in[j]];
    const ir_node *x = fnode(c, n->in[j]);
    int xa = ax - (n->shape.rank - x->shape.rank);
    if (ax >= 0 && c->tax[n->in[j]] < 0 && xa >= 0 && x->shape.d[xa] != 1 && (in[j] = gather_rows(c, n, j, xa)) < 0)
      return -1;
  }
  return add(c, n->op, in, n->nin, &n->attr, n->loc);
}

/* The same op on the rebuilt inputs, after checking the time axis is not one
 * the op mixes: `mixed` is the axis it reduces or contracts (-1 none). */
static int same_op(dec *c, int id, int ax, int mixed, const char *why) {
  const ir_node *n = fnode(c, id);
  if (ax >= 0 && ax == mixed) return fail(c, n, "%s", why);
  int in[DEC_MAXIN];
  if (n->nin > DEC_MAXIN) return fail(c, n, "too many inputs");
  for (int j = 0; j < n->nin; j++) in[j] = c->nid[n->in[j]];
  c->tax[id] = ax;
  return add(c, n->op, in, n->nin, &n->attr, n->loc);
}

static int reduce(dec *c, int id) {
  const ir_node *n = fnode(c, id);
  int ax = c->tax[n->in[0]];
  if (n->op == IR_LAYERNORM) return same_op(c, id, ax, n->shape.rank - 1, "layernorm over positions");
  if (n->op == IR_MAXPOOL2D || n->op == IR_AVGPOOL2D)
    return same_op(c, id, ax, ax, "pooling over positions has no decode form");
  if (ax >= 0 && (n->op == IR_SUM || n->op == IR_MEAN || n->op == IR_MAX || n->op == IR_MIN || n->op == IR_ARGMAX || n->op == IR_ARGMIN) && n->attr.axis < 0)
    return fail(c, n, "a reduction over all positions has no decode form");
  int r = same_op(c, id, ax, (int)n->attr.axis, "a reduction over positions has no decode form");
  if (r >= 0 && ax >= 0 && (n->op == IR_SUM || n->op == IR_MEAN || n->op == IR_MAX || n->op == IR_MIN || n->op == IR_ARGMAX || n->op == IR_ARGMIN) && !n->attr.keepdims &&
      n->attr.axis < ax)
    c->tax[id] = ax - 1;
  return r;
}

/* x[.., T, K] @ w[K, N]: each position's row times the same matrix. */
static int matmul(dec *c, int id) {
  const ir_node *n = fnode(c, id), *a = fnode(c, n->in[0]);
  if (c->tax[n->in[1]] >= 0) return fail(c, n, "a product with a position-indexed right operand has no decode form");
  if (a->shape.rank < 2 || c->tax[n->in[0]] == a->shape.rank - 1)
    return fail(c, n, "a product that contracts over positions has no decode form");
  return same_op(c, id, aligned(c, n, 0), -1, "");
}

/* reshape: the time axis must survive as an axis of size T with the same
 * number of elements before it. */
static int reshape_op(dec *c, int id) {
  const ir_node *n = fnode(c, id), *x = fnode(c, n->in[0]);
  int ax = c->tax[n->in[0]];
  if (ax < 0) return same_op(c, id, -1, -1, "");
  int64_t before = 1, acc = 1;
  for (int k = 0; k < ax; k++) before *= x->shape.d[k];
  ir_shape s = n->shape;
  for (int k = 0; k < s.rank; acc *= s.d[k], k++)
    if (acc == before && s.d[k] == c->T) {
      s.d[k] = 1;
      c->tax[id] = k;
      return reshape(c, c->nid[n->in[0]], &s, n->loc);
    }
  return fail(c, n, "a reshape that merges positions with another axis has no decode form");
}

static int move(dec *c, int id) {
  const ir_node *n = fnode(c, id);
  int ax = c->tax[n->in[0]];
  switch (n->op) {
  case IR_RESHAPE: return reshape_op(c, id);
  case IR_TRANSPOSE:
    for (int k = 0; ax >= 0 && k < n->attr.nlist; k++)
      if (n->attr.list[k] == ax) return same_op(c, id, k, -1, "");
    return same_op(c, id, -1, -1, "");
  case IR_EMBEDDING:
    if (c->tax[n->in[1]] >= 0) return fail(c, n, "an embedding table indexed by position has no decode form");
    return same_op(c, id, ax, -1, "");
  case IR_CONCAT:
    for (int j = 1; j < n->nin; j++)
      if (c->tax[n->in[j]] != ax) return fail(c, n, "concat of position-indexed and other tensors has no decode form");
    return same_op(c, id, ax, (int)n->attr.axis, "a concat along positions has no decode form");
  case IR_ONE_HOT: return same_op(c, id, ax, -1, ""); /* a new last axis: positions keep theirs */
  case IR_GATHER:
    if (c->tax[n->in[1]] != ax) return fail(c, n, "gather of position-indexed and other tensors has no decode form");
    return same_op(c, id, ax, (int)n->attr.axis, "a gather along positions has no decode form");
  default: /* slice */
    return same_op(c, id, ax, (int)n->attr.axis, "a slice along positions has no decode form");
  }
}

/* ---- attention ---- */

/* "cache.h.0.attn" from the qkv weight "h.0.attn.qkv.weight" (else the node
 * id); mha's query weight is a slice of that parameter. */
static const char *cache_name(dec *c, int id, const char *kv) {
  const ir_node *w = fnode(c, fnode(c, id)->in[1]);
  if (w->op == IR_SLICE) w = fnode(c, w->in[0]);
  const char *pn = w->op == IR_PARAM ? c->f->params[w->attr.i].name : NULL;
  size_t len = pn ? strlen(pn) : 0, suf = strlen(".qkv.weight");
  if (len > suf && !strcmp(pn + len - suf, ".qkv.weight"))
    return ar_printf(c->g->A, DEC_CACHE_PREFIX "%.*s.%s", (int)(len - suf), pn, kv);
  return ar_printf(c->g->A, DEC_CACHE_PREFIX "%d.%s", id, kv);
}

static int slice3(dec *c, int x, int64_t part, int64_t d, ir_loc loc) {
  ir_attr at = {0};
  at.axis = 2, at.start = part * d, at.end = (part + 1) * d;
  return add(c, IR_SLICE, &x, 1, &at, loc);
}

/* y = attention_decode(q, kv_write(kc, k, pos), kv_write(vc, v, pos)) @ proj_w + proj_b
 * with [q | k | v] = x qkv_w + qkv_b: the row of the fused layer at pos. */
static int attention(dec *c, int id) {
  const ir_node *n = fnode(c, id);
  if (c->tax[n->in[0]] != 1) return fail(c, n, "attention over an axis other than positions");
  for (int j = 1; j < 5; j++)
    if (c->tax[n->in[j]] >= 0) return fail(c, n, "attention weights indexed by position");
  if (!n->attr.causal)
    return fail(c, n, "non-causal attention lets each position see later ones: no decode form");
  int64_t d = n->shape.d[2];
  ir_loc L = n->loc;
  int w[5];
  for (int j = 0; j < 5; j++) w[j] = c->nid[n->in[j]];
  int qkv = add(c, IR_MATMUL, (int[]){w[0], w[1]}, 2, NULL, L);
  if (qkv < 0 || (qkv = add(c, IR_ADD, (int[]){qkv, w[2]}, 2, NULL, L)) < 0) return -1;
  int q = slice3(c, qkv, 0, d, L), k = slice3(c, qkv, 1, d, L), v = slice3(c, qkv, 2, d, L);
  const char *kn = cache_name(c, id, "k"), *vn = cache_name(c, id, "v");
  int kc = cache_param(c, kn, d, L), vc = cache_param(c, vn, d, L);
  if (q < 0 || k < 0 || v < 0 || kc < 0 || vc < 0) return -1;
  int k2 = add(c, IR_KV_WRITE, (int[]){kc, k, c->pos}, 3, NULL, L);
  int v2 = add(c, IR_KV_WRITE, (int[]){vc, v, c->pos}, 3, NULL, L);
  if (k2 < 0 || v2 < 0) return -1;
  ir_add_output(c->g, ar_printf(c->g->A, OPT_NEW_PREFIX "%s", kn), k2);
  ir_add_output(c->g, ar_printf(c->g->A, OPT_NEW_PREFIX "%s", vn), v2);
  ir_attr at = {0};
  at.heads = n->attr.heads;
  int a = add(c, IR_ATTENTION_DECODE, (int[]){q, k2, v2, c->pos}, 4, &at, L);
  if (a < 0 || (a = add(c, IR_MATMUL, (int[]){a, w[3]}, 2, NULL, L)) < 0) return -1;
  c->tax[id] = 1;
  return add(c, IR_ADD, (int[]){a, w[4]}, 2, NULL, L);
}

/* A rotary-embedding table as a constant [T, hd]: row t, column e holds
 * f(t theta_{e mod hd/2}), theta_e = 10000^(-2e / hd) (ir/interp_mha.c's
 * angles); sign -1 negates the first half (the sine that multiplies the
 * swapped halves). */
static int rope_table(dec *c, int64_t hd, int sine, ir_loc loc) {
  int id = ir_add_const(c->g, IR_F32, 0, loc);
  double *v = id < 0 ? NULL : ar_alloc(c->g->A, sizeof(double) * (size_t)(c->T * hd));
  if (!v) return -1;
  int64_t half = hd / 2;
  for (int64_t t = 0; t < c->T; t++)
    for (int64_t e = 0; e < half; e++) {
      double th = (double)t * pow(10000.0, -2.0 * (double)e / (double)hd);
      v[t * hd + e] = sine ? -sin(th) : cos(th);
      v[t * hd + half + e] = sine ? sin(th) : cos(th);
    }
  c->g->nodes[id].shape = (ir_shape){.rank = 2, .d = {c->T, hd}};
  c->g->nodes[id].data = v;
  return id;
}

/* x [1, 1, nh hd] rotated at position pos, per head: x cos + swap(x) sin'
 * with swap exchanging each head's halves and sin' = [-sin, sin]: the
 * pairs (e, e + hd/2) as mha's rope_rows turns them. The tables' rows at pos
 * are embedding lookups. */
static int rope_at_pos(dec *c, int x, int64_t nh, int64_t hd, ir_loc L) {
  if (c->rope_hd != hd) {
    c->rope_hd = hd;
    int cs = rope_table(c, hd, 0, L), sn = rope_table(c, hd, 1, L), pv = pos_vector(c, L);
    if (cs < 0 || sn < 0 || pv < 0) return -1;
    c->rope_cos = add(c, IR_EMBEDDING, (int[]){pv, cs}, 2, NULL, L); /* [1, hd] */
    c->rope_sin = add(c, IR_EMBEDDING, (int[]){pv, sn}, 2, NULL, L);
    if (c->rope_cos < 0 || c->rope_sin < 0) return -1;
  }
  ir_shape heads = {.rank = 2, .d = {nh, hd}}, row = {.rank = 3, .d = {1, 1, nh * hd}};
  int h = reshape(c, x, &heads, L);
  if (h < 0) return -1;
  ir_attr lo = {0}, hi = {0}, cat = {0};
  lo.axis = hi.axis = cat.axis = 1;
  lo.start = 0, lo.end = hd / 2, hi.start = hd / 2, hi.end = hd;
  int x1 = add(c, IR_SLICE, &h, 1, &lo, L), x2 = add(c, IR_SLICE, &h, 1, &hi, L);
  if (x1 < 0 || x2 < 0) return -1;
  int sw = add(c, IR_CONCAT, (int[]){x2, x1}, 2, &cat, L);
  int a = add(c, IR_MUL, (int[]){h, c->rope_cos}, 2, NULL, L);
  int b = sw < 0 ? -1 : add(c, IR_MUL, (int[]){sw, c->rope_sin}, 2, NULL, L);
  int r = a < 0 || b < 0 ? -1 : add(c, IR_ADD, (int[]){a, b}, 2, NULL, L);
  return r < 0 ? -1 : reshape(c, r, &row, L);
}

/* mha's causal self-attention (rope=, kv_heads=; no mask, no context) at
 * pos: q = x wq + bq and [k | v] = x wkv + bkv, q and k rotated at pos when
 * rope, k and v written into caches [T, dk] (dk = K hd: grouped heads keep
 * the smaller cache), attention_decode of q over rows 0..pos (query head h
 * reads cache head h / (H / K)), then the projection. */
static int mha(dec *c, int id) {
  const ir_node *n = fnode(c, id);
  if (n->in[3] != n->in[0])
    return fail(c, n, "cross-attention reads a context that is not generated token by token: no decode form");
  if (n->nin > 8) return fail(c, n, "masked attention has no decode form (generation feeds only the tokens)");
  if (!n->attr.causal)
    return fail(c, n, "non-causal attention lets each position see later ones: no decode form");
  if (c->tax[n->in[0]] != 1) return fail(c, n, "attention over an axis other than positions");
  for (int j = 1; j < 8; j++)
    if (j != 3 && c->tax[n->in[j]] >= 0) return fail(c, n, "attention weights indexed by position");
  int64_t e = fnode(c, n->in[1])->shape.d[1], H = n->attr.heads, hd = e / H, dk = n->attr.k * hd; /* e: inner width */
  ir_loc L = n->loc;
  int w[8];
  for (int j = 0; j < 8; j++) w[j] = c->nid[n->in[j]];
  int q = add(c, IR_MATMUL, (int[]){w[0], w[1]}, 2, NULL, L);
  int kv = add(c, IR_MATMUL, (int[]){w[0], w[4]}, 2, NULL, L);
  if (q < 0 || kv < 0 || (q = add(c, IR_ADD, (int[]){q, w[2]}, 2, NULL, L)) < 0 ||
      (kv = add(c, IR_ADD, (int[]){kv, w[5]}, 2, NULL, L)) < 0)
    return -1;
  int k = slice3(c, kv, 0, dk, L), v = slice3(c, kv, 1, dk, L);
  if (k < 0 || v < 0) return -1;
  if (n->attr.i && ((q = rope_at_pos(c, q, H, hd, L)) < 0 || (k = rope_at_pos(c, k, n->attr.k, hd, L)) < 0))
    return -1;
  const char *kn = cache_name(c, id, "k"), *vn = cache_name(c, id, "v");
  int kc = cache_param(c, kn, dk, L), vc = cache_param(c, vn, dk, L);
  if (kc < 0 || vc < 0) return -1;
  int k2 = add(c, IR_KV_WRITE, (int[]){kc, k, c->pos}, 3, NULL, L);
  int v2 = add(c, IR_KV_WRITE, (int[]){vc, v, c->pos}, 3, NULL, L);
  if (k2 < 0 || v2 < 0) return -1;
  ir_add_output(c->g, ar_printf(c->g->A, OPT_NEW_PREFIX "%s", kn), k2);
  ir_add_output(c->g, ar_printf(c->g->A, OPT_NEW_PREFIX "%s", vn), v2);
  ir_attr at = {0};
  at.heads = H;
  int a = add(c, IR_ATTENTION_DECODE, (int[]){q, k2, v2, c->pos}, 4, &at, L);
  if (a < 0 || (a = add(c, IR_MATMUL, (int[]){a, w[6]}, 2, NULL, L)) < 0) return -1;
  c->tax[id] = 1;
  return add(c, IR_ADD, (int[]){a, w[7]}, 2, NULL, L);
}

/* ---- recurrences ---- */

/* "cache.lstm1" from the weight "lstm1.weight_ih" (else the node id), then
 * ".h" or ".c". */
static const char *state_name(dec *c, int id, const char *what) {
  const ir_node *w = fnode(c, fnode(c, id)->in[1]);
  const char *pn = w->op == IR_PARAM ? c->f->params[w->attr.i].name : NULL;
  size_t len = pn ? strlen(pn) : 0, suf = strlen(".weight_ih");
  if (len > suf && !strcmp(pn + len - suf, ".weight_ih"))
    return ar_printf(c->g->A, DEC_CACHE_PREFIX "%.*s.%s", (int)(len - suf), pn, what);
  return ar_printf(c->g->A, DEC_CACHE_PREFIX "%d.%s", id, what);
}

/* The state parameter [1, h] (zeros), published as an output with its
 * value after this step (nv); returns the state as this step reads it:
 * zeros at position 0, so a run that starts over (the window sliding)
 * needs no reset from the driver. */
typedef struct {
  const char *name;
  int param, read;
} rec_state;

static int state_in(dec *c, rec_state *st, const char *name, int64_t h, ir_loc L) {
  ir_shape s = {.rank = 2, .d = {1, h}};
  st->name = name;
  st->param = ir_add_param(c->g, name, IR_F32, &s, IR_INIT_ZEROS, 0, 0, 0, L);
  if (st->param < 0) return fail(c, NULL, "decode graph: cannot add state '%s'", name);
  c->g->params[c->g->nparams - 1].state = 1;
  int zi = ir_add_const(c->g, IR_I32, 0, L), zf = ir_add_const(c->g, IR_F32, 0, L);
  if (zi < 0 || zf < 0) return -1;
  int later = add(c, IR_GREATER, (int[]){c->pos, zi}, 2, NULL, L);
  if (later < 0) return -1;
  return st->read = add(c, IR_WHERE, (int[]){later, st->param, zf}, 3, NULL, L);
}

static void state_out(dec *c, const rec_state *st, int nv) {
  ir_add_output(c->g, ar_printf(c->g->A, OPT_NEW_PREFIX "%s", st->name), nv);
}

static int slice_gate(dec *c, int x, int64_t part, int64_t h, ir_loc L) {
  ir_attr at = {0};
  at.axis = 1, at.start = part * h, at.end = (part + 1) * h;
  return add(c, IR_SLICE, &x, 1, &at, L);
}

static int un(dec *c, int op, int x, ir_loc L) { return x < 0 ? -1 : add(c, op, &x, 1, NULL, L); }
static int bin(dec *c, int op, int a, int b, ir_loc L) {
  return a < 0 || b < 0 ? -1 : add(c, op, (int[]){a, b}, 2, NULL, L);
}
/* x [1, K] @ w [K, N] + b */
static int affine(dec *c, int x, int w, int b, ir_loc L) {
  int y = bin(c, IR_MATMUL, x, w, L);
  return b < 0 ? y : bin(c, IR_ADD, y, b, L);
}

/* One step of rnn / lstm / gru at batch 1 (the formulas of
 * ir/interp_seq.c), its state carried in "cache.<layer>.h" (and ".c" for
 * the lstm's cell): the full op's row at pos, from the state the step at
 * pos - 1 left. */
static int recurrent(dec *c, int id) {
  const ir_node *n = fnode(c, id);
  if (c->tax[n->in[0]] != 1) return fail(c, n, "%s over an axis other than positions", ir_ops[n->op].name);
  for (int j = 1; j < n->nin; j++)
    if (c->tax[n->in[j]] >= 0) return fail(c, n, "%s weights indexed by position", ir_ops[n->op].name);
  int64_t h = n->shape.d[2], in = fnode(c, n->in[0])->shape.d[2];
  ir_loc L = n->loc;
  ir_shape row = {.rank = 2, .d = {1, in}}, out = {.rank = 3, .d = {1, 1, h}};
  int x = reshape(c, c->nid[n->in[0]], &row, L), w[5];
  for (int j = 1; j < n->nin; j++) w[j] = c->nid[n->in[j]];
  rec_state hs, cs;
  int hp = x < 0 ? -1 : state_in(c, &hs, state_name(c, id, "h"), h, L), hn = -1;
  if (hp < 0) return -1;
  if (n->op == IR_RNN) {
    hn = un(c, IR_TANH, bin(c, IR_ADD, affine(c, x, w[1], w[3], L), affine(c, hp, w[2], -1, L), L), L);
  } else if (n->op == IR_LSTM) { /* i f g o; c' = f c + i g, h' = o tanh(c') */
    int cp = state_in(c, &cs, state_name(c, id, "c"), h, L);
    int g = bin(c, IR_ADD, affine(c, x, w[1], w[3], L), affine(c, hp, w[2], -1, L), L);
    if (cp < 0 || g < 0) return -1;
    int ig = un(c, IR_SIGMOID, slice_gate(c, g, 0, h, L), L), fg = un(c, IR_SIGMOID, slice_gate(c, g, 1, h, L), L);
    int gg = un(c, IR_TANH, slice_gate(c, g, 2, h, L), L), og = un(c, IR_SIGMOID, slice_gate(c, g, 3, h, L), L);
    int cn = bin(c, IR_ADD, bin(c, IR_MUL, fg, cp, L), bin(c, IR_MUL, ig, gg, L), L);
    if (cn < 0) return -1;
    state_out(c, &cs, cn);
    hn = bin(c, IR_MUL, og, un(c, IR_TANH, cn, L), L);
  } else { /* r z n; n = tanh(xn + r hn), h' = (1 - z) n + z h */
    int gi = affine(c, x, w[1], w[3], L), gh = affine(c, hp, w[2], w[4], L);
    if (gi < 0 || gh < 0) return -1;
    int r = un(c, IR_SIGMOID, bin(c, IR_ADD, slice_gate(c, gi, 0, h, L), slice_gate(c, gh, 0, h, L), L), L);
    int z = un(c, IR_SIGMOID, bin(c, IR_ADD, slice_gate(c, gi, 1, h, L), slice_gate(c, gh, 1, h, L), L), L);
    int rn = bin(c, IR_MUL, r, slice_gate(c, gh, 2, h, L), L);
    int nn = un(c, IR_TANH, bin(c, IR_ADD, slice_gate(c, gi, 2, h, L), rn, L), L);
    int one = ir_add_const(c->g, IR_F32, 1, L);
    hn = bin(c, IR_ADD, bin(c, IR_MUL, bin(c, IR_SUB, one, z, L), nn, L), bin(c, IR_MUL, z, hp, L), L);
  }
  if (hn < 0) return -1;
  state_out(c, &hs, hn);
  c->tax[id] = 1;
  return reshape(c, hn, &out, L);
}

/* ---- the walk ---- */

static int node(dec *c, int id, int input) {
  const ir_node *n = fnode(c, id);
  int dep = 0;
  for (int j = 0; j < n->nin; j++) dep |= c->tax[n->in[j]] >= 0;
  switch (ir_ops[n->op].cat) {
  case IR_CAT_LEAF: return leaf(c, id, input);
  case IR_CAT_UNARY: return same_op(c, id, c->tax[n->in[0]], -1, "");
  case IR_CAT_BINARY:
  case IR_CAT_SELECT: return binary(c, id);
  case IR_CAT_REDUCE: return reduce(c, id);
  case IR_CAT_MOVE: return move(c, id);
  default: break;
  }
  if (!dep) return same_op(c, id, -1, -1, ""); /* weights-only arithmetic */
  if (n->op == IR_MATMUL) return matmul(c, id);
  if (n->op == IR_ATTENTION) return attention(c, id);
  if (n->op == IR_MHA) return mha(c, id);
  if (n->op == IR_RNN || n->op == IR_LSTM || n->op == IR_GRU) return recurrent(c, id);
  return fail(c, n, "%s has no decode form", ir_ops[n->op].name);
}

/* need[i]: node i is an ancestor of (or is) the output. */
static void mark_needed(const ir_graph *f, int out, char *need) {
  need[out] = 1;
  for (int i = out; i >= 0; i--)
    if (need[i])
      for (int j = 0; j < f->nodes[i].nin; j++) need[f->nodes[i].in[j]] = 1;
}

static int check_io(const ir_graph *f, int input, int output, char *msg, size_t msgn) {
  const ir_input *in = &f->inputs[input];
  const ir_node *o = &f->nodes[f->outputs[output].node];
  if (in->shape.rank != 2 || in->shape.d[0] != 1 || !ir_dtype_is_int(in->dtype))
    return snprintf(msg, msgn, "input '%s' must be an integer token sequence [batch, T]", in->name), -1;
  if (o->shape.rank != 3 || o->shape.d[0] != 1 || o->shape.d[1] != in->shape.d[1] || !ir_dtype_is_float(o->dtype))
    return snprintf(msg, msgn, "output '%s' must be logits [batch, T, vocab]", f->outputs[output].name), -1;
  return 0;
}

int dec_build(const ir_graph *full, int input, int output, arena *A, ir_graph *out, char *msg, size_t msgn) {
  if (check_io(full, input, output, msg, msgn)) return -1;
  dec c = {.f = full, .g = out, .T = full->inputs[input].shape.d[1], .posvec = -1, .msg = msg, .msgn = msgn};
  ir_graph_init(out, A, full->model_name);
  const ir_input *in = &full->inputs[input];
  ir_shape one = {.rank = 2, .d = {1, 1}}, scalar = {.rank = 0};
  ir_loc L = full->nodes[in->node].loc;
  ir_add_input(out, in->name, in->dtype, &one, 0, L);
  c.pos = ir_add_input(out, DEC_IN_POS, IR_I32, &scalar, 0, L);
  int nn = full->nnodes, onode = full->outputs[output].node;
  c.nid = calloc((size_t)nn + 1, sizeof *c.nid);
  c.tax = calloc((size_t)nn + 1, sizeof *c.tax);
  char *need = calloc((size_t)nn + 1, 1);
  int rc = c.nid && c.tax && need ? 0 : (snprintf(msg, msgn, "out of memory"), -1);
  if (rc == 0) mark_needed(full, onode, need);
  for (int i = 0; rc == 0 && i < nn; i++) {
    c.nid[i] = c.tax[i] = -1;
    if (need[i] && (c.nid[i] = node(&c, i, input)) < 0) rc = -1;
  }
  if (rc == 0 && c.tax[onode] != 1)
    rc = fail(&c, &full->nodes[onode], "the output is not indexed by position on axis 1");
  if (rc == 0) ir_add_output(out, full->outputs[output].name, c.nid[onode]);
  if (rc == 0 && ir_verify(out, msg, msgn)) rc = -1;
  free(c.nid), free(c.tax), free(need);
  return rc;
}
