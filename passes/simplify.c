/* simplify.c -- algebraic simplification. One sweep in id order; each rule
 * looks at one node whose inputs are already simplified and either names an
 * earlier node that has the same value (x*1 -> x), or rewrites the node in
 * place to read earlier nodes only (transpose(transpose(x)) -> one
 * transpose), so ids stay topological. Nodes left unused are dce's.
 *
 * Rules (a replacement must have the node's exact dtype and shape, so a
 * broadcasting x*1 that grows x is left alone):
 *   x*1, 1*x, x+0, 0+x, x-0, x/1, pow(x, 1)     -> x
 *   neg(neg(x))                                 -> x
 *   dropout(x) (inference: identity), cast to x's own dtype,
 *   reshape to x's shape, transpose by the identity,
 *   sum_to / broadcast_to x's own shape         -> x
 *   transpose(transpose(x, p), q)               -> transpose(x, p.q) or x
 *   reshape(reshape(x))                         -> reshape(x)
 *   log(softmax(x))                             -> log_softmax(x)
 *   cross_entropy(log_softmax(x), y)            -> cross_entropy(x, y)
 *     (over the class axis: log_softmax is idempotent and cross_entropy
 *     applies it to its logits, so the value is the same)
 *   matmul(transpose(x), y), matmul(y, transpose(x)) -> matmul[ta](x, y),
 *     matmul[tb](y, x), when the transpose swaps exactly the last two axes
 *     (the backward GEMMs autodiff builds): the product reads x through
 *     BLAS's transpose flag instead of a copy. A flag already set is
 *     cleared (x^T^T = x).
 *   unary_grad[relu](x, dy)                     -> unary_grad[relu](relu(x), dy)
 *     when the graph computes relu(x) anyway: relu(x) > 0 exactly where
 *     x > 0 (NaN and -0 included), so the value is the same, and x is then
 *     read by the relu alone, which lets fuse make the product, bias and
 *     relu one kernel (PyTorch's threshold_backward reads the result too).
 */
#include <string.h>

#include "passes/passes.h"

/* A rule returns the replacement id (< id), id when it rewrote the node in
 * place, or -1 for no change. */
typedef int (*sp_rule)(ir_graph *g, int id);

static ir_node *N(ir_graph *g, int id) { return &g->nodes[id]; }

/* x when x can stand for node id: same dtype and shape. */
static int same_as(ir_graph *g, int id, int x) {
  const ir_node *n = N(g, id), *v = N(g, x);
  return n->dtype == v->dtype && ir_shape_eq(&n->shape, &v->shape) ? x : -1;
}

/* op(a, b) where b (or a, when commutes) is a constant all equal to unit. */
static int unit_operand(ir_graph *g, int id, double unit, int commutes) {
  const ir_node *n = N(g, id);
  if (rw_const_all(g, n->in[1], unit) && same_as(g, id, n->in[0]) >= 0) return n->in[0];
  if (commutes && rw_const_all(g, n->in[0], unit) && same_as(g, id, n->in[1]) >= 0) return n->in[1];
  return -1;
}

static int r_mul(ir_graph *g, int id) { return unit_operand(g, id, 1.0, 1); }
static int r_add(ir_graph *g, int id) { return unit_operand(g, id, 0.0, 1); }
static int r_sub(ir_graph *g, int id) { return unit_operand(g, id, 0.0, 0); }
static int r_div(ir_graph *g, int id) { return unit_operand(g, id, 1.0, 0); }
static int r_identity(ir_graph *g, int id) { return same_as(g, id, N(g, id)->in[0]); }
static int r_pow(ir_graph *g, int id) { return N(g, id)->attr.f == 1.0 ? r_identity(g, id) : -1; }

static int r_neg(ir_graph *g, int id) {
  const ir_node *x = N(g, N(g, id)->in[0]);
  return x->op == IR_NEG ? same_as(g, id, x->in[0]) : -1;
}

static int r_reshape(ir_graph *g, int id) {
  ir_node *n = N(g, id);
  int same = r_identity(g, id);
  if (same >= 0) return same;
  const ir_node *x = N(g, n->in[0]);
  if (x->op != IR_RESHAPE) return -1;
  n->in[0] = x->in[0]; /* the outer shape alone decides the result */
  return r_identity(g, id) >= 0 ? n->in[0] : id;
}

static int is_identity_perm(const ir_attr *a) {
  for (int i = 0; i < a->nlist; i++)
    if (a->list[i] != i) return 0;
  return 1;
}

static int r_transpose(ir_graph *g, int id) {
  ir_node *n = N(g, id);
  if (is_identity_perm(&n->attr)) return r_identity(g, id);
  const ir_node *x = N(g, n->in[0]);
  if (x->op != IR_TRANSPOSE || x->attr.nlist != n->attr.nlist) return -1;
  int64_t c[IR_MAXDIM]; /* out.d[i] = x.d[q[i]] = x.in.d[p[q[i]]] */
  for (int i = 0; i < n->attr.nlist; i++) c[i] = x->attr.list[n->attr.list[i]];
  memcpy(n->attr.list, c, sizeof(int64_t) * (size_t)n->attr.nlist);
  n->in[0] = x->in[0];
  return is_identity_perm(&n->attr) ? r_identity(g, id) : id;
}

/* A transpose that swaps the last two axes and keeps the rest. */
static int swaps_last_two(const ir_node *x) {
  int r = x->attr.nlist;
  if (x->op != IR_TRANSPOSE || r < 2) return 0;
  for (int i = 0; i < r - 2; i++)
    if (x->attr.list[i] != i) return 0;
  return x->attr.list[r - 2] == r - 1 && x->attr.list[r - 1] == r - 2;
}

static int r_matmul(ir_graph *g, int id) {
  static const int64_t flag[2] = {IR_MM_TA, IR_MM_TB};
  ir_node *n = N(g, id);
  int changed = 0;
  for (int k = 0; k < 2; k++) {
    const ir_node *x = N(g, n->in[k]);
    if (!swaps_last_two(x)) continue;
    n->in[k] = x->in[0];
    n->attr.i ^= flag[k];
    changed = 1;
  }
  return changed ? id : -1;
}

static int r_log(ir_graph *g, int id) {
  ir_node *n = N(g, id);
  const ir_node *x = N(g, n->in[0]);
  if (x->op != IR_SOFTMAX || same_as(g, id, n->in[0]) < 0) return -1;
  n->op = IR_LOG_SOFTMAX;
  n->attr = x->attr;
  n->in[0] = x->in[0];
  return id;
}

static int r_cross_entropy(ir_graph *g, int id) {
  ir_node *n = N(g, id);
  const ir_node *x = N(g, n->in[0]);
  if (x->op != IR_LOG_SOFTMAX || x->attr.axis != x->shape.rank - 1) return -1;
  n->in[0] = x->in[0];
  return id;
}

static int r_unary_grad(ir_graph *g, int id) {
  ir_node *n = N(g, id);
  int x = n->in[0];
  if (n->attr.i != IR_RELU) return -1;
  for (int j = x + 1; j < id; j++) {
    const ir_node *r = N(g, j);
    if (r->op == IR_RELU && r->in[0] == x && r->dtype == n->dtype && ir_shape_eq(&r->shape, &n->shape)) {
      n->in[0] = j;
      return id;
    }
  }
  return -1;
}

static const sp_rule rules[IR_NOPS] = {
  [IR_MUL] = r_mul,         [IR_ADD] = r_add,          [IR_SUB] = r_sub,
  [IR_DIV] = r_div,         [IR_POW] = r_pow,          [IR_NEG] = r_neg,
  [IR_DROPOUT] = r_identity, [IR_CAST] = r_identity,
  [IR_SUM_TO] = r_identity, [IR_BROADCAST_TO] = r_identity,
  [IR_RESHAPE] = r_reshape, [IR_TRANSPOSE] = r_transpose,
  [IR_LOG] = r_log,         [IR_CROSS_ENTROPY] = r_cross_entropy,
  [IR_MATMUL] = r_matmul,   [IR_UNARY_GRAD] = r_unary_grad,
};

int ps_simplify(ir_graph *g, char *msg, size_t msgn) {
  int *repl = rw_identity(g), changed = 0, dropped = 0;
  for (int i = 0; i < g->nnodes; i++) {
    ir_node *nd = N(g, i);
    for (int k = 0; k < nd->nin; k++) nd->in[k] = rw_resolve(repl, nd->in[k]);
    if (!rules[nd->op]) continue;
    int r = rules[nd->op](g, i);
    if (r < 0) continue;
    changed++;
    if (r != i) repl[i] = r, dropped++;
  }
  if (dropped && rw_rebuild(g, repl, msg, msgn)) return -1;
  return changed;
}
