/* autodiff.c -- reverse-mode differentiation of the static graph.
 *
 * The backward graph is appended to the same graph, so one program runs the
 * forward pass, the backward pass (and later the optimizer) and the memory
 * planner sees the whole step: a forward activation is freed after its last
 * reader, backward ones included.
 *
 * Walk: nodes are visited from the loss down to node 0 (the node array is a
 * topological order, so every consumer of a node is visited before it and its
 * gradient is complete when it is reached). Each op has one rule in `rules`
 * that turns dy (the gradient of its result) into contributions to its
 * inputs; contributions to a tensor that fans out are summed with ADD, and a
 * contribution of a broadcast shape is summed back to the operand's shape
 * with SUM_TO. Only nodes that depend on a requested parameter ("req") get
 * gradient nodes.
 *
 * Integer tensors (ids, labels, casts to int) carry no gradient: the path is
 * cut there, as in PyTorch. A requested parameter whose every path to the
 * loss is cut is an error naming the op that cut it; one that does not reach
 * the loss at all gets a zero gradient.
 *
 * The fused sequence layers (attention, rnn, lstm, gru) have fused backward
 * ops (ATTENTION_GRAD ...: see r_fused) that recompute what they need.
 *
 * Dropout is the identity here (the interpreter's and backends' inference
 * semantics); training-mode dropout masks come with the training stage.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "passes.h"

typedef struct {
  ir_graph *g;
  int *grad;  /* per node: node id of d loss / d node, -1 = none yet */
  char *req;  /* per node: depends on a requested parameter */
  int cap;
  int nfwd;   /* nodes of the forward graph */
  int failed;
  char *msg;
  size_t msgn;
} ad_ctx;

static int fail(ad_ctx *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(ad_ctx *a, const char *fmt, ...) {
  if (!a->failed && a->msg && a->msgn) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->msg, a->msgn, fmt, ap);
    va_end(ap);
  }
  a->failed = 1;
  return -1;
}

/* Keep the per-node arrays as long as the graph. */
static void ensure(ad_ctx *a) {
  if (a->g->nnodes <= a->cap) return;
  int nc = a->cap * 2 > a->g->nnodes ? a->cap * 2 : a->g->nnodes + 64;
  int *grad = ar_alloc(a->g->A, sizeof(int) * (size_t)nc);
  char *req = ar_alloc(a->g->A, (size_t)nc);
  if (a->cap) {
    memcpy(grad, a->grad, sizeof(int) * (size_t)a->cap);
    memcpy(req, a->req, (size_t)a->cap);
  }
  for (int i = a->cap; i < nc; i++) grad[i] = -1;
  a->grad = grad, a->req = req, a->cap = nc;
}

static const ir_node *N(ad_ctx *a, int id) { return &a->g->nodes[id]; }

/* Append a node; -1 after a failure (every helper passes -1 through). */
static int add(ad_ctx *a, int op, const int *in, int nin, const ir_attr *at) {
  if (a->failed) return -1;
  for (int k = 0; k < nin; k++)
    if (in[k] < 0) return -1;
  char why[256];
  ir_loc loc = {0};
  int id = ir_add(a->g, op, in, nin, at, loc, why, sizeof why);
  if (id < 0) return fail(a, "autodiff: internal: cannot build %s: %s", ir_ops[op].name, why);
  ensure(a);
  for (int k = 0; k < nin; k++) a->req[id] |= a->req[in[k]];
  return id;
}

static int add1(ad_ctx *a, int op, int x, const ir_attr *at) { return add(a, op, &x, 1, at); }
static int add2(ad_ctx *a, int op, int x, int y) {
  int in[2] = {x, y};
  return add(a, op, in, 2, NULL);
}

static int cnst(ad_ctx *a, ir_dtype t, double v) {
  if (a->failed) return -1;
  ir_loc loc = {0};
  int id = ir_add_const(a->g, t, v, loc);
  ensure(a);
  return id;
}

static ir_attr shape_attr(const ir_shape *s) {
  ir_attr at = {0};
  at.nlist = s->rank;
  memcpy(at.list, s->d, sizeof(int64_t) * (size_t)s->rank);
  return at;
}

static int reshape(ad_ctx *a, int x, const ir_shape *s) {
  if (x < 0) return -1;
  if (ir_shape_eq(&N(a, x)->shape, s)) return x;
  ir_attr at = shape_attr(s);
  return add1(a, IR_RESHAPE, x, &at);
}

/* Sum a contribution back to the shape it broadcast from. */
static int sum_to(ad_ctx *a, int x, const ir_shape *s) {
  if (x < 0) return -1;
  if (ir_shape_eq(&N(a, x)->shape, s)) return x;
  ir_attr at = shape_attr(s);
  return add1(a, IR_SUM_TO, x, &at);
}

static int scale(ad_ctx *a, int x, double f) {
  if (x < 0) return -1;
  return add2(a, IR_MUL, x, cnst(a, N(a, x)->dtype, f));
}

/* Swap the last two axes. */
static int swap_last(ad_ctx *a, int x) {
  if (x < 0) return -1;
  int r = N(a, x)->shape.rank;
  ir_attr at = {0};
  at.nlist = r;
  for (int i = 0; i < r; i++) at.list[i] = i;
  at.list[r - 2] = r - 1, at.list[r - 1] = r - 2;
  return add1(a, IR_TRANSPOSE, x, &at);
}

/* Does input k of node id want a gradient? Integer tensors never do. */
static int want(ad_ctx *a, int id, int k) {
  int x = N(a, id)->in[k];
  return !a->failed && a->req[x] && ir_dtype_is_float(N(a, x)->dtype);
}

/* Add a contribution to input k's gradient (summed back to its shape). */
static void give(ad_ctx *a, int id, int k, int contrib) {
  if (contrib < 0 || !want(a, id, k)) return;
  int x = N(a, id)->in[k];
  contrib = sum_to(a, contrib, &N(a, x)->shape);
  if (contrib < 0) return;
  int sum = a->grad[x] < 0 ? contrib : add2(a, IR_ADD, a->grad[x], contrib);
  a->grad[x] = sum; /* after add2: it may have moved a->grad */
}

/* ---- rules: one per op; n = the node, dy = its gradient ---- */

typedef void (*ad_rule)(ad_ctx *a, int id, int dy);

static int in(ad_ctx *a, int id, int k) { return N(a, id)->in[k]; }

static void r_unary(ad_ctx *a, int id, int dy) {
  if (!want(a, id, 0)) return;
  ir_attr at = N(a, id)->attr;
  at.i = N(a, id)->op;
  give(a, id, 0, add(a, IR_UNARY_GRAD, (int[]){in(a, id, 0), dy}, 2, &at));
}

static void r_identity(ad_ctx *a, int id, int dy) { give(a, id, 0, dy); }
static void r_neg(ad_ctx *a, int id, int dy) {
  if (want(a, id, 0)) give(a, id, 0, add1(a, IR_NEG, dy, NULL));
}

/* float -> float casts pass the gradient back in the source dtype */
static void r_cast(ad_ctx *a, int id, int dy) {
  if (!want(a, id, 0)) return;
  ir_attr at = {0};
  at.i = N(a, in(a, id, 0))->dtype;
  give(a, id, 0, at.i == N(a, dy)->dtype ? dy : add1(a, IR_CAST, dy, &at));
}

static void r_add(ad_ctx *a, int id, int dy) {
  give(a, id, 0, dy);
  if (want(a, id, 1)) give(a, id, 1, N(a, id)->op == IR_SUB ? add1(a, IR_NEG, dy, NULL) : dy);
}

/* y = where(c, a, b): da = where(c, dy, 0), db = where(c, 0, dy) (give sums
 * each back to its operand's shape) */
static void r_where(ad_ctx *a, int id, int dy) {
  int c = in(a, id, 0), z = cnst(a, N(a, dy)->dtype, 0.0);
  if (want(a, id, 1)) give(a, id, 1, add(a, IR_WHERE, (int[]){c, dy, z}, 3, NULL));
  if (want(a, id, 2)) give(a, id, 2, add(a, IR_WHERE, (int[]){c, z, dy}, 3, NULL));
}

static void r_mul(ad_ctx *a, int id, int dy) {
  if (want(a, id, 0)) give(a, id, 0, add2(a, IR_MUL, dy, in(a, id, 1)));
  if (want(a, id, 1)) give(a, id, 1, add2(a, IR_MUL, dy, in(a, id, 0)));
}

/* y = a / b: da = dy / b, db = -dy * y / b */
static void r_div(ad_ctx *a, int id, int dy) {
  int b = in(a, id, 1);
  if (want(a, id, 0)) give(a, id, 0, add2(a, IR_DIV, dy, b));
  if (want(a, id, 1)) give(a, id, 1, add1(a, IR_NEG, add2(a, IR_MUL, dy, add2(a, IR_DIV, id, b)), NULL));
}

static int swap_if(ad_ctx *a, int x, int t) { return t ? swap_last(a, x) : x; }

/* numpy.matmul: promote 1-D operands to matrices ([k] -> [1, k] on the left,
 * [k, 1] on the right), then dA = dY B^T and dB = A^T dY, summed over the
 * batch dimensions each operand broadcast along. A flagged product (only
 * operands of rank >= 2 are) reads A' = A^T and/or B' = B^T; a flagged
 * operand's gradient is the transpose of its view's: dA = (dY B'^T)^T =
 * B' dY^T and dB = (A'^T dY)^T = dY^T A'. Every transpose here swaps the
 * last two axes, so simplify folds them into the products' flags.
 * A B without batch dims that a batched, untransposed A multiplies (a dense
 * layer over [batch, T, d]) gets the sum over the batch as one product over
 * the stacked rows, A as [rows, K] and dY as [rows, N]: no per-batch
 * products and no sum_to of a batch-sized stack of them. */
static void r_matmul(ad_ctx *a, int id, int dy) {
  int x = in(a, id, 0), w = in(a, id, 1);
  int ta = (N(a, id)->attr.i & IR_MM_TA) != 0, tb = (N(a, id)->attr.i & IR_MM_TB) != 0;
  ir_shape sa = N(a, x)->shape, sb = N(a, w)->shape, sy = N(a, id)->shape;
  ir_shape sa2 = sa, sb2 = sb, sy2 = sy;
  if (sa.rank == 1) sa2 = (ir_shape){.rank = 2, .d = {1, sa.d[0]}};
  if (sb.rank == 1) sb2 = (ir_shape){.rank = 2, .d = {sb.d[0], 1}};
  sy2.rank = sy.rank - (sa.rank >= 2) - (sb.rank >= 2);
  sy2.d[sy2.rank++] = sa2.d[sa2.rank - 2 + ta]; /* rows of A' */
  sy2.d[sy2.rank++] = sb2.d[sb2.rank - 1 - tb]; /* columns of B' */
  int dy2 = reshape(a, dy, &sy2);
  if (want(a, id, 0)) {
    int w2 = swap_if(a, reshape(a, w, &sb2), ta ? tb : !tb); /* B' or B'^T */
    int d = ta ? add2(a, IR_MATMUL, w2, swap_last(a, dy2)) : add2(a, IR_MATMUL, dy2, w2);
    give(a, id, 0, reshape(a, sum_to(a, d, &sa2), &sa));
  }
  if (want(a, id, 1)) {
    ir_shape sar = sa2;
    int dyr = dy2;
    if (sb.rank <= 2 && sa.rank > 2 && !ta) { /* B shared by A's batch: stack the batch's rows */
      int64_t k = sa.d[sa.rank - 1], rows = ir_numel(&sa) / k;
      ir_shape syr = {.rank = 2, .d = {rows, sy2.d[sy2.rank - 1]}};
      sar = (ir_shape){.rank = 2, .d = {rows, k}};
      dyr = reshape(a, dy2, &syr);
    }
    int x2 = swap_if(a, reshape(a, x, &sar), tb ? ta : !ta); /* A' or A'^T */
    int d = tb ? add2(a, IR_MATMUL, swap_last(a, dyr), x2) : add2(a, IR_MATMUL, x2, dyr);
    give(a, id, 1, reshape(a, sum_to(a, d, &sb2), &sb));
  }
}

static void r_conv2d(ad_ctx *a, int id, int dy) {
  const ir_node *n = N(a, id);
  int x = n->in[0], w = n->in[1], nin = n->nin;
  ir_attr at = n->attr;
  ir_shape sx = N(a, x)->shape, sw = N(a, w)->shape;
  if (want(a, id, 0)) {
    ir_attr t = at;
    ir_attr s = shape_attr(&sx);
    t.nlist = s.nlist, memcpy(t.list, s.list, sizeof t.list);
    give(a, id, 0, add(a, IR_CONV2D_GRAD_INPUT, (int[]){dy, w}, 2, &t));
  }
  if (want(a, id, 1)) {
    ir_attr t = at;
    ir_attr s = shape_attr(&sw);
    t.nlist = s.nlist, memcpy(t.list, s.list, sizeof t.list);
    give(a, id, 1, add(a, IR_CONV2D_GRAD_WEIGHT, (int[]){x, dy}, 2, &t));
  }
  if (nin == 3 && want(a, id, 2)) { /* bias [O]: sum over N, OH, OW (N, OL for 1-d) */
    ir_shape o11 = {.rank = sx.rank - 1, .d = {sw.d[0], 1, 1}}, o = {.rank = 1, .d = {sw.d[0]}};
    give(a, id, 2, reshape(a, sum_to(a, dy, &o11), &o));
  }
}

static void r_softmax(ad_ctx *a, int id, int dy) {
  if (!want(a, id, 0)) return;
  ir_attr at = {0};
  at.axis = N(a, id)->attr.axis;
  int op = N(a, id)->op == IR_SOFTMAX ? IR_SOFTMAX_GRAD : IR_LOG_SOFTMAX_GRAD;
  give(a, id, 0, add(a, op, (int[]){id, dy}, 2, &at));
}

/* sum / mean: dy put back on the reduced axis (keepdims shape), broadcast */
static void r_sum(ad_ctx *a, int id, int dy) {
  if (!want(a, id, 0)) return;
  const ir_node *n = N(a, id);
  ir_shape sx = N(a, n->in[0])->shape, keep = sx;
  int64_t len = ir_numel(&sx), axis = n->attr.axis;
  int is_mean = n->op == IR_MEAN;
  if (axis >= 0) {
    len = sx.d[axis];
    keep.d[axis] = 1;
  } else {
    for (int i = 0; i < keep.rank; i++) keep.d[i] = 1;
  }
  ir_attr at = shape_attr(&sx);
  int d = add1(a, IR_BROADCAST_TO, reshape(a, dy, &keep), &at);
  give(a, id, 0, is_mean ? scale(a, d, 1.0 / (double)len) : d);
}

static void r_max(ad_ctx *a, int id, int dy) {
  if (!want(a, id, 0)) return;
  ir_attr at = N(a, id)->attr;
  give(a, id, 0, add(a, IR_MAX_GRAD, (int[]){in(a, id, 0), id, dy}, 3, &at));
}

static void r_layernorm(ad_ctx *a, int id, int dy) {
  int x = in(a, id, 0), w = in(a, id, 1);
  ir_attr at = {0};
  at.f = N(a, id)->attr.f;
  if (want(a, id, 0)) give(a, id, 0, add(a, IR_LAYERNORM_GRAD, (int[]){x, w, dy}, 3, &at));
  at.i = 1;
  if (want(a, id, 1)) give(a, id, 1, add(a, IR_LAYERNORM_GRAD, (int[]){x, w, dy}, 3, &at));
  if (want(a, id, 2)) give(a, id, 2, dy); /* summed to [d] by give */
}

/* batchnorm_train, groupnorm, rmsnorm: norm_grad for dx, dw and db */
static void r_norm(ad_ctx *a, int id, int dy) {
  const ir_node *n = N(a, id); /* read before add() grows the node array */
  int x = in(a, id, 0), w = in(a, id, 1), nin = n->nin;
  ir_attr at = {0};
  at.k = n->op, at.n = n->attr.k, at.f = n->attr.f;
  for (int k = 0; k < nin; k++) {
    at.i = k;
    if (want(a, id, k)) give(a, id, k, add(a, IR_NORM_GRAD, (int[]){x, w, dy}, 3, &at));
  }
}

static void r_pool(ad_ctx *a, int id, int dy) {
  if (!want(a, id, 0)) return;
  ir_attr at = {0};
  at.k = N(a, id)->attr.k, at.stride = N(a, id)->attr.stride, at.i = N(a, id)->op;
  give(a, id, 0, add(a, IR_POOL2D_GRAD, (int[]){in(a, id, 0), dy}, 2, &at));
}

static void r_reshape(ad_ctx *a, int id, int dy) {
  if (want(a, id, 0)) give(a, id, 0, reshape(a, dy, &N(a, in(a, id, 0))->shape));
}

static void r_transpose(ad_ctx *a, int id, int dy) {
  if (!want(a, id, 0)) return;
  ir_attr at = {0};
  at.nlist = N(a, id)->attr.nlist;
  for (int j = 0; j < at.nlist; j++) at.list[N(a, id)->attr.list[j]] = j;
  give(a, id, 0, add1(a, IR_TRANSPOSE, dy, &at));
}

static void r_concat(ad_ctx *a, int id, int dy) {
  int64_t at0 = 0, ax = N(a, id)->attr.axis;
  for (int k = 0; k < N(a, id)->nin; k++) {
    int64_t len = N(a, in(a, id, k))->shape.d[ax];
    if (want(a, id, k)) {
      ir_attr at = {0};
      at.axis = ax, at.start = at0, at.end = at0 + len;
      give(a, id, k, add1(a, IR_SLICE, dy, &at));
    }
    at0 += len;
  }
}

static void r_slice(ad_ctx *a, int id, int dy) {
  if (!want(a, id, 0)) return;
  ir_attr at = shape_attr(&N(a, in(a, id, 0))->shape);
  at.axis = N(a, id)->attr.axis, at.start = N(a, id)->attr.start, at.end = N(a, id)->attr.end;
  give(a, id, 0, add1(a, IR_SLICE_GRAD, dy, &at));
}

static void r_embedding(ad_ctx *a, int id, int dy) {
  if (!want(a, id, 1)) return;
  ir_attr at = shape_attr(&N(a, in(a, id, 1))->shape);
  give(a, id, 1, add(a, IR_EMBEDDING_GRAD, (int[]){in(a, id, 0), dy}, 2, &at));
}

/* cumsum's gradient is the running sum of dy the other way round */
static void r_cumsum(ad_ctx *a, int id, int dy) {
  if (!want(a, id, 0)) return;
  ir_attr at = N(a, id)->attr;
  at.i = !at.i;
  give(a, id, 0, add1(a, IR_CUMSUM, dy, &at));
}

/* gather's gradient scatters dy back to x's shape, adding where an index repeats */
static void r_gather(ad_ctx *a, int id, int dy) {
  if (!want(a, id, 0)) return;
  ir_attr at = shape_attr(&N(a, in(a, id, 0))->shape);
  at.axis = N(a, id)->attr.axis;
  give(a, id, 0, add(a, IR_GATHER_GRAD, (int[]){in(a, id, 1), dy}, 2, &at));
}

static void r_cross_entropy(ad_ctx *a, int id, int dy) {
  if (!want(a, id, 0)) return;
  ir_attr at = N(a, id)->attr; /* label smoothing, ignore_index; the class weights (a constant) get no gradient */
  int w = N(a, id)->nin == 3 ? in(a, id, 2) : -1;
  give(a, id, 0, add(a, IR_CROSS_ENTROPY_GRAD, (int[]){in(a, id, 0), in(a, id, 1), dy, w}, w < 0 ? 3 : 4, &at));
}

/* kl_div (batchmean over N = d[0]) = sum(t (log t - x)) / N: dx = -t dl / N,
 * dt = (log t + 1 - x) dl / N (-inf at t == 0, where torch gives NaN) */
static void r_kl_div(ad_ctx *a, int id, int dy) {
  int x = in(a, id, 0), t = in(a, id, 1);
  const ir_shape *s = &N(a, x)->shape;
  double inv = 1.0 / (double)(s->rank ? s->d[0] : 1);
  if (want(a, id, 0)) give(a, id, 0, scale(a, add2(a, IR_MUL, t, dy), -inv));
  if (want(a, id, 1)) {
    int lt = add1(a, IR_LOG, t, NULL);
    int d = add2(a, IR_SUB, add2(a, IR_ADD, lt, cnst(a, N(a, t)->dtype, 1.0)), x);
    give(a, id, 1, scale(a, add2(a, IR_MUL, d, dy), inv));
  }
}

static void r_nll(ad_ctx *a, int id, int dy) {
  if (want(a, id, 0)) give(a, id, 0, add(a, IR_NLL_GRAD, (int[]){in(a, id, 0), in(a, id, 1), dy}, 3, NULL));
}

/* mse = mean((p - t)^2): dp = 2 (p - t) dl / count, dt = -dp */
static void r_mse(ad_ctx *a, int id, int dy) {
  int p = in(a, id, 0), t = in(a, id, 1);
  double count = (double)ir_numel(&N(a, p)->shape);
  int d = scale(a, add2(a, IR_MUL, add2(a, IR_SUB, p, t), dy), 2.0 / count);
  if (want(a, id, 0)) give(a, id, 0, d);
  if (want(a, id, 1)) give(a, id, 1, add1(a, IR_NEG, d, NULL));
}

/* bce with logits: dx by BCE_GRAD, dy_target = -x dl / count */
static void r_bce(ad_ctx *a, int id, int dy) {
  int x = in(a, id, 0), t = in(a, id, 1);
  if (want(a, id, 0)) give(a, id, 0, add(a, IR_BCE_GRAD, (int[]){x, t, dy}, 3, NULL));
  if (want(a, id, 1))
    give(a, id, 1, scale(a, add2(a, IR_MUL, x, dy), -1.0 / (double)ir_numel(&N(a, x)->shape)));
}

/* l1 = mean|p - t|: dp = sign(p - t) dl / count (0 where p == t, as torch), dt = -dp */
static void r_l1(ad_ctx *a, int id, int dy) {
  int p = in(a, id, 0), t = in(a, id, 1);
  double count = (double)ir_numel(&N(a, p)->shape);
  int d = scale(a, add2(a, IR_MUL, add1(a, IR_SIGN, add2(a, IR_SUB, p, t), NULL), dy), 1.0 / count);
  if (want(a, id, 0)) give(a, id, 0, d);
  if (want(a, id, 1)) give(a, id, 1, add1(a, IR_NEG, d, NULL));
}

/* huber: dp = clamp(p - t, -delta, delta) dl / count, dt = -dp; the clamp is
 * -min(-min(d, delta), delta) with the training-step op MINIMUM */
static void r_huber(ad_ctx *a, int id, int dy) {
  int p = in(a, id, 0), t = in(a, id, 1);
  double count = (double)ir_numel(&N(a, p)->shape), delta = N(a, id)->attr.f;
  int hi = cnst(a, N(a, p)->dtype, delta);
  int up = add2(a, IR_MINIMUM, add2(a, IR_SUB, p, t), hi);
  int clamped = add1(a, IR_NEG, add2(a, IR_MINIMUM, add1(a, IR_NEG, up, NULL), hi), NULL);
  int d = scale(a, add2(a, IR_MUL, clamped, dy), 1.0 / count);
  if (want(a, id, 0)) give(a, id, 0, d);
  if (want(a, id, 1)) give(a, id, 1, add1(a, IR_NEG, d, NULL));
}

static void r_fused(ad_ctx *a, int id, int dy);

static const ad_rule rules[IR_NOPS] = {
  [IR_RELU] = r_unary,     [IR_LEAKY_RELU] = r_unary, [IR_SIGMOID] = r_unary,   [IR_TANH] = r_unary,
  [IR_GELU] = r_unary,     [IR_SWISH] = r_unary,      [IR_EXP] = r_unary,       [IR_LOG] = r_unary,
  [IR_SQRT] = r_unary,     [IR_ABS] = r_unary,        [IR_NEG] = r_neg,         [IR_POW] = r_unary,
  [IR_CLAMP] = r_unary,   [IR_DROPOUT] = r_identity, [IR_CAST] = r_cast,
  [IR_ADD] = r_add,        [IR_SUB] = r_add,          [IR_MUL] = r_mul,         [IR_DIV] = r_div,
  [IR_WHERE] = r_where,
  [IR_MATMUL] = r_matmul,  [IR_CONV2D] = r_conv2d,
  [IR_SOFTMAX] = r_softmax, [IR_LOG_SOFTMAX] = r_softmax,
  [IR_SUM] = r_sum,        [IR_MEAN] = r_sum,         [IR_MAX] = r_max,         [IR_LAYERNORM] = r_layernorm,
  [IR_BATCHNORM_TRAIN] = r_norm, [IR_GROUPNORM] = r_norm, [IR_RMSNORM] = r_norm,
  [IR_MIN] = r_max, /* max_grad routes dy to the first x equal to the result */
  [IR_MAXPOOL2D] = r_pool, [IR_AVGPOOL2D] = r_pool,
  [IR_RESHAPE] = r_reshape, [IR_TRANSPOSE] = r_transpose, [IR_CONCAT] = r_concat, [IR_SLICE] = r_slice,
  [IR_EMBEDDING] = r_embedding, [IR_GATHER] = r_gather, [IR_CUMSUM] = r_cumsum,
  [IR_ATTENTION] = r_fused, [IR_RNN] = r_fused,       [IR_LSTM] = r_fused,      [IR_GRU] = r_fused,
  [IR_MHA] = r_fused,
  [IR_CROSS_ENTROPY] = r_cross_entropy, [IR_MSE] = r_mse, [IR_BCE] = r_bce,
  [IR_L1] = r_l1,          [IR_HUBER] = r_huber,   [IR_NLL] = r_nll,
  [IR_KL_DIV] = r_kl_div,
};

int ad_differentiable(int op) { return op >= 0 && op < IR_NOPS && rules[op] != NULL; }

/* Does any input want a gradient? Not when all are integer (one_hot's ids):
 * the path is cut there, so such an op needs no rule. */
static int any_want(ad_ctx *a, int id) {
  for (int k = 0; k < N(a, id)->nin; k++)
    if (want(a, id, k)) return 1;
  return 0;
}

/* Visit ids hi-1 down to lo: each node with a gradient hands it on. */
static void backprop(ad_ctx *a, int lo, int hi) {
  for (int id = hi - 1; id >= lo && !a->failed; id--) {
    int dy = a->grad[id];
    if (dy < 0 || !a->req[id] || ir_ops[N(a, id)->op].cat == IR_CAT_LEAF || !any_want(a, id)) continue;
    ad_rule r = rules[N(a, id)->op];
    if (!r) {
      fail(a, "autodiff: %s (node %d) has no gradient rule", ir_ops[N(a, id)->op].name, id);
      return;
    }
    r(a, id, dy);
  }
}

/* ---- fused layers: one fused backward op each ----
 * ATTENTION_GRAD / RNN_GRAD / LSTM_GRAD / GRU_GRAD take the forward inputs
 * (the recurrences also the forward result y, whose h_t they need) and dy,
 * and return one flat vector of every input's gradient in input order,
 * unpacked here with SLICE + RESHAPE. */

static int slice(ad_ctx *a, int x, int64_t axis, int64_t lo, int64_t hi) {
  ir_attr at = {0};
  at.axis = axis, at.start = lo, at.end = hi;
  return add1(a, IR_SLICE, x, &at);
}

static void r_fused(ad_ctx *a, int id, int dy) {
  static const int gop[IR_NOPS] = {[IR_ATTENTION] = IR_ATTENTION_GRAD, [IR_RNN] = IR_RNN_GRAD,
                                   [IR_LSTM] = IR_LSTM_GRAD, [IR_GRU] = IR_GRU_GRAD,
                                   [IR_MHA] = IR_MHA_GRAD};
  const ir_node *n = N(a, id);
  int op = n->op, nf = n->nin, any = 0, ins[12], nin = 0;
  for (int k = 0; k < nf; k++) any |= want(a, id, k), ins[nin++] = n->in[k];
  if (!any) return;
  if (op != IR_ATTENTION && op != IR_MHA) ins[nin++] = id; /* y: the h_t the backward reads */
  ins[nin++] = dy;
  ir_attr at = {0};
  at.heads = n->attr.heads, at.causal = n->attr.causal;
  if (op == IR_MHA) at.k = n->attr.k, at.i = n->attr.i; /* kv heads, rope */
  int flat = add(a, gop[op], ins, nin, &at);
  int64_t off = 0;
  for (int k = 0; k < nf; k++) {
    ir_shape s = N(a, ins[k])->shape;
    int64_t len = ir_numel(&s);
    if (want(a, id, k)) give(a, id, k, reshape(a, slice(a, flat, 0, off, off + len), &s));
    off += len;
  }
}

/* ---- the driver ---- */

/* Why does requested parameter node p get no gradient although it reaches
 * the loss? The first node on a path from p to the loss that turns a float
 * tensor into an integer one. */
static int cut_point(ad_ctx *a, const char *live, int p) {
  for (int id = p + 1; id < a->nfwd; id++) {
    const ir_node *n = N(a, id);
    if (!live[id] || !a->req[id] || ir_dtype_is_float(n->dtype)) continue;
    for (int k = 0; k < n->nin; k++)
      if (a->req[n->in[k]] && ir_dtype_is_float(N(a, n->in[k])->dtype)) return id;
  }
  return -1;
}

/* The node to publish as a gradient: its own node (a copy when it is shared
 * with another parameter's gradient or is not a computed node). */
static int publish(ad_ctx *a, int node, const int *taken, int ntaken) {
  int shared = ir_ops[N(a, node)->op].cat == IR_CAT_LEAF;
  for (int i = 0; i < ntaken; i++) shared |= taken[i] == node;
  for (int i = 0; i < a->g->noutputs; i++) shared |= a->g->outputs[i].node == node;
  if (!shared) return node;
  ir_attr at = shape_attr(&N(a, node)->shape);
  return add1(a, IR_RESHAPE, node, &at);
}

static int finish(ad_ctx *a, const int *which, int nwhich, int as_outputs, const char *live) {
  ir_graph *g = a->g;
  int *grads = ar_alloc(g->A, sizeof(int) * (size_t)(g->nparams ? g->nparams : 1));
  for (int i = 0; i < g->nparams; i++) grads[i] = -1;
  for (int w = 0; w < nwhich && !a->failed; w++) {
    const ir_param *p = &g->params[which[w]];
    int node = p->node, gnode = a->grad[node];
    if (gnode < 0 && live[node]) {
      int c = cut_point(a, live, node);
      const ir_node *cn = c >= 0 ? N(a, c) : NULL;
      return fail(a, "autodiff: cannot differentiate the loss with respect to '%s': every path to the loss "
                     "goes through %s (node %d) producing %s, which has no gradient",
                  p->name, cn ? ir_ops[cn->op].name : "an integer tensor", c,
                  cn ? ir_dtype_name(cn->dtype) : "integers");
    }
    if (gnode < 0) { /* does not reach the loss: zero */
      ir_attr at = shape_attr(&p->shape);
      gnode = add1(a, IR_BROADCAST_TO, cnst(a, p->dtype, 0.0), &at);
    }
    grads[which[w]] = gnode = publish(a, gnode, grads, g->nparams);
    if (gnode >= 0 && as_outputs) ir_add_output(g, ar_printf(g->A, "grad.%s", p->name), gnode);
  }
  if (a->failed) return -1;
  g->grads = grads;
  return 0;
}

int ad_backward(ir_graph *g, const int *params, int nparams, int as_outputs, char *msg, size_t msgn) {
  ad_ctx a = {g, NULL, NULL, 0, g->nnodes, 0, msg, msgn};
  if (msg && msgn) msg[0] = '\0';
  if (g->loss < 0 || g->loss >= g->nnodes) return fail(&a, "autodiff: the model has no loss");
  ir_node l = g->nodes[g->loss];
  if (l.shape.rank != 0 || !ir_dtype_is_float(l.dtype)) return fail(&a, "autodiff: the loss is not a float scalar");
  if (g->grads) return fail(&a, "autodiff: the graph already has a backward pass");
  int *which = ar_alloc(g->A, sizeof(int) * (size_t)(g->nparams ? g->nparams : 1)), nwhich = 0;
  for (int i = 0; i < (params ? nparams : g->nparams); i++) {
    int p = params ? params[i] : i;
    if (p < 0 || p >= g->nparams) return fail(&a, "autodiff: parameter index %d out of range", p);
    if (!params && g->params[p].buffer) continue; /* running statistics: no gradient */
    if (!ir_dtype_is_float(g->params[p].dtype)) {
      if (params) return fail(&a, "autodiff: parameter '%s' is %s, not floating-point", g->params[p].name,
                              ir_dtype_name(g->params[p].dtype));
      continue;
    }
    which[nwhich++] = p;
  }
  int nfwd = g->nnodes, loss = g->loss;
  ensure(&a);
  for (int w = 0; w < nwhich; w++) a.req[g->params[which[w]].node] = 1;
  for (int id = 0; id < nfwd; id++)
    for (int k = 0; k < g->nodes[id].nin; k++) a.req[id] |= a.req[g->nodes[id].in[k]];
  char *live = ar_alloc(g->A, (size_t)nfwd); /* reaches the loss */
  live[loss] = 1;
  for (int id = loss; id >= 0; id--)
    if (live[id])
      for (int k = 0; k < g->nodes[id].nin; k++) live[g->nodes[id].in[k]] = 1;
  int seed = cnst(&a, l.dtype, 1.0); /* d loss / d loss */
  a.grad[loss] = seed;
  backprop(&a, 0, loss + 1);
  if (a.failed) return -1;
  return finish(&a, which, nwhich, as_outputs, live);
}
