/* optimizer.c -- the training step's update as graph ops (see optimizer.h):
 * training-mode dropout before autodiff, then clipping, noise, penalties
 * and the update rule of torch.optim after it. Everything is built from the
 * ordinary elementwise ops plus the training-step rows of ops.def (minimum,
 * sign, randn, dropout_mask), so every backend runs it unchanged.
 *
 * The formulas follow PyTorch's single-tensor implementations operation by
 * operation (torch/optim/sgd.py, adam.py, adamw.py, rmsprop.py), so that a
 * float32 program rounds as PyTorch does as far as the ops allow:
 *   sgd      d = g (+ wd p); buf = momentum buf + d; d = nesterov ? d + momentum buf : buf;
 *            p = p - lr d
 *   adam     m = m + (1 - beta1) (g - m)            (exp_avg.lerp_)
 *            v = beta2 v + ((1 - beta2) g) g        (mul_, addcmul_)
 *            p = p - (lr / bc1) (m / (sqrt(v) / sqrt(bc2) + eps))
 *   adamw    p = p (1 - lr wd), then adam without coupled decay
 *   rmsprop  sa = alpha sa + ((1 - alpha) g) g; avg = sqrt(sa) + eps;
 *            momentum: buf = momentum buf + g / avg, p = p - lr buf;
 *            else p = p - lr (g / avg)
 * A zero-initialised momentum buffer reproduces PyTorch's first step
 * (buf = g), so no step counter is needed in the graph.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "optimizer.h"
#include "passes/comm.h"

typedef struct {
  ir_graph *g;
  const ir_train *t;
  char *msg;
  size_t msgn;
  int failed;
  ir_dtype dt;  /* the parameter being updated */
  const ir_shape *shard; /* ZeRO-1: the state's shape is this rank's slice [m], not the parameter's */
} opt_ctx;

static const ir_loc no_loc = {0};

static int fail(opt_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(opt_ctx *c, const char *fmt, ...) {
  if (!c->failed && c->msg && c->msgn) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, c->msgn, fmt, ap);
    va_end(ap);
  }
  c->failed = 1;
  return -1;
}

/* ---- building blocks: each returns a node id, or -1 once failed ---- */

static int op2(opt_ctx *c, int op, int a, int b) {
  if (c->failed || a < 0 || b < 0) return -1;
  char why[256];
  int id = ir_add(c->g, op, (int[]){a, b}, 2, NULL, no_loc, why, sizeof why);
  if (id < 0) fail(c, "optimizer: %s", why);
  return id;
}

static int op1(opt_ctx *c, int op, int a, const ir_attr *at) {
  if (c->failed || a < 0) return -1;
  char why[256];
  int id = ir_add(c->g, op, &a, 1, at, no_loc, why, sizeof why);
  if (id < 0) fail(c, "optimizer: %s", why);
  return id;
}

static int add(opt_ctx *c, int a, int b) { return op2(c, IR_ADD, a, b); }
static int sub(opt_ctx *c, int a, int b) { return op2(c, IR_SUB, a, b); }
static int mul(opt_ctx *c, int a, int b) { return op2(c, IR_MUL, a, b); }
static int dvd(opt_ctx *c, int a, int b) { return op2(c, IR_DIV, a, b); }
static int num(opt_ctx *c, double v) { return c->failed ? -1 : ir_add_const(c->g, c->dt, v, no_loc); }
static int scale(opt_ctx *c, double v, int x) { return mul(c, num(c, v), x); }

/* The scalar input `name` (added on first use). */
static int scalar_input(ir_graph *g, const char *name, ir_dtype t) {
  int i = ir_find_input(g, name);
  if (i >= 0) return g->inputs[i].node;
  ir_shape s = {0};
  return ir_add_input(g, name, t, &s, 0, no_loc);
}

static int f32_input(opt_ctx *c, const char *name) {
  if (c->failed) return -1;
  int id = scalar_input(c->g, name, IR_F32);
  if (id >= 0 && c->g->nodes[id].dtype != c->dt)
    return fail(c, "optimizer: parameters must be f32 (got %s)", ir_dtype_name(c->dt));
  return id;
}

static uint64_t seed_of(int64_t seed) { return seed < 0 ? 0 : (uint64_t)seed; }

/* f32 random tensor of shape s from the step counter: randn or dropout_mask. */
static ir_attr rng_attr(const ir_shape *s, int64_t seed, int64_t tag, double p) {
  ir_attr at = {0};
  at.nlist = s->rank;
  memcpy(at.list, s->d, sizeof(int64_t) * (size_t)s->rank);
  at.n = (int64_t)seed_of(seed), at.k = tag, at.f = p;
  return at;
}

/* ---- training-mode dropout ---- */

static int is_live_dropout(const ir_node *n) { return n->op == IR_DROPOUT && n->attr.f > 0; }

/* Reorder g's nodes: `first` (a leaf) at position 0, then the old nodes in
 * order with mask_of[id] (when >= 0) just before id. Every id held by the
 * graph is remapped. */
static void renumber(ir_graph *g, int nold, int first, const int *mask_of) {
  int n = g->nnodes;
  int *pos = ar_alloc(g->A, sizeof(int) * (size_t)n), *order = ar_alloc(g->A, sizeof(int) * (size_t)n);
  int k = 0;
  order[k++] = first;
  for (int id = 0; id < nold; id++) {
    if (id == first) continue;
    if (mask_of[id] >= 0) order[k++] = mask_of[id];
    order[k++] = id;
  }
  if (k != n) IR_UNREACHABLE("optimizer: renumbering lost nodes");
  for (int i = 0; i < n; i++) pos[order[i]] = i;
  ir_node *nodes = ar_alloc(g->A, sizeof(ir_node) * (size_t)g->capnodes);
  for (int i = 0; i < n; i++) {
    ir_node nd = g->nodes[order[i]];
    int *in = ar_alloc(g->A, sizeof(int) * (size_t)(nd.nin ? nd.nin : 1));
    for (int j = 0; j < nd.nin; j++) in[j] = pos[nd.in[j]];
    nd.in = in;
    nodes[i] = nd;
  }
  g->nodes = nodes;
  for (int i = 0; i < g->nparams; i++) g->params[i].node = pos[g->params[i].node];
  for (int i = 0; i < g->ninputs; i++) g->inputs[i].node = pos[g->inputs[i].node];
  for (int i = 0; i < g->noutputs; i++) g->outputs[i].node = pos[g->outputs[i].node];
  if (g->loss >= 0) g->loss = pos[g->loss];
}

/* ---- training-mode batchnorm ----
 * batchnorm(x, w, b, rm, rv) becomes batchnorm_train(x, w, b) (this batch's
 * statistics), and the step publishes the running statistics as PyTorch's
 * BatchNorm updates them in training mode, m = N * S values per channel:
 *   rm' = (1 - momentum) rm + momentum mean
 *   rv' = (1 - momentum) rv + momentum var m / (m - 1)     (unbiased)
 * mean and var (biased) per channel from x as [N, C, S], by ordinary means
 * over S then N. Every node is appended after its operands, so the order
 * stays topological; the statistics reach no loss and get no gradient. */
static int mean_axis(opt_ctx *c, int x, int axis) {
  ir_attr at = {0};
  at.axis = axis;
  return op1(c, IR_MEAN, x, &at);
}

static int reshape3(opt_ctx *c, int x, int64_t a, int64_t b, int64_t d) {
  ir_attr at = {0};
  at.nlist = 3, at.list[0] = a, at.list[1] = b, at.list[2] = d;
  return op1(c, IR_RESHAPE, x, &at);
}

static void publish(opt_ctx *c, int state_or_param, int value); /* with the update below */

/* (1 - mom) r + mom v, published as r's new value when r is a parameter */
static void running(opt_ctx *c, int r, int v, double mom) {
  int nr = add(c, scale(c, 1 - mom, r), scale(c, mom, v));
  if (c->g->nodes[r].op == IR_PARAM) publish(c, r, nr);
}

static int prepare_batchnorm(opt_ctx *c, int id) {
  ir_graph *g = c->g;
  ir_node bn = g->nodes[id];
  const ir_shape *xs = &g->nodes[bn.in[0]].shape;
  int64_t N = xs->d[0], C = xs->d[1], S = ir_numel(xs) / (N * C);
  if (N * S < 2) {
    char b[160];
    return fail(c, "batchnorm (node %d): training needs more than one value per channel, got input %s", id,
                ir_shape_str(xs, b, sizeof b));
  }
  int x3 = reshape3(c, bn.in[0], N, C, S);
  int mean = mean_axis(c, mean_axis(c, x3, 2), 0);
  int d = sub(c, x3, reshape3(c, mean, 1, C, 1));
  int var = mean_axis(c, mean_axis(c, mul(c, d, d), 2), 0);
  running(c, bn.in[3], mean, bn.attr.f2);
  running(c, bn.in[4], scale(c, (double)(N * S) / (double)(N * S - 1), var), bn.attr.f2);
  if (c->failed) return -1;
  ir_node *n = &g->nodes[id];
  n->op = IR_BATCHNORM_TRAIN, n->nin = 3, n->attr.f2 = 0;
  return 0;
}

int opt_prepare_training(ir_graph *g, char *msg, size_t msgn) {
  opt_ctx c = {g, &g->train, msg, msgn, 0, IR_F32, NULL};
  if (msg && msgn) msg[0] = '\0';
  if (g->grads) return fail(&c, "opt_prepare_training: call it before autodiff");
  for (int id = 0, n = g->nnodes; id < n; id++)
    if (g->nodes[id].op == IR_BATCHNORM && prepare_batchnorm(&c, id)) return -1;
  int nold = g->nnodes, ndrop = 0;
  for (int id = 0; id < nold; id++) ndrop += is_live_dropout(&g->nodes[id]);
  if (!ndrop) return 0;
  int rng = scalar_input(g, OPT_IN_RNG, IR_I64);
  if (rng < 0 || g->nodes[rng].dtype != IR_I64 || g->nodes[rng].shape.rank != 0)
    return fail(&c, "opt_prepare_training: input '%s' is reserved for the step counter", OPT_IN_RNG);
  int *mask_of = ar_alloc(g->A, sizeof(int) * (size_t)nold);
  for (int id = 0; id < nold; id++) {
    mask_of[id] = -1;
    if (!is_live_dropout(&g->nodes[id])) continue;
    int x = g->nodes[id].in[0];
    if (g->nodes[x].dtype != IR_F32)
      return fail(&c, "dropout (node %d): training supports f32 tensors only, got %s", id,
                  ir_dtype_name(g->nodes[x].dtype));
    /* the tag is the dropout's id in the graph as lowered: stable per model */
    ir_attr at = rng_attr(&g->nodes[x].shape, g->train.seed, id, g->nodes[id].attr.f);
    int m = op1(&c, IR_DROPOUT_MASK, rng, &at);
    if (m < 0) return -1;
    mask_of[id] = m;
    ir_node *d = &g->nodes[id];
    int *in = ar_alloc(g->A, sizeof(int) * 2);
    in[0] = x, in[1] = m;
    d->op = IR_MUL, d->nin = 2, d->in = in;
    memset(&d->attr, 0, sizeof d->attr);
  }
  renumber(g, nold, rng, mask_of);
  return 0;
}

/* ---- the update ---- */

/* Optimizer state "opt.<slot>.<param>": a zero-initialised parameter. */
static int state(opt_ctx *c, const char *slot, int pi) {
  if (c->failed) return -1;
  ir_graph *g = c->g;
  ir_param p = g->params[pi];
  const char *name = ar_printf(g->A, "opt.%s.%s", slot, p.name);
  if (ir_find_param(g, name) >= 0) return fail(c, "optimizer: parameter name '%s' is taken", name);
  const ir_shape *s = c->shard ? c->shard : &p.shape;
  int id = ir_add_param(g, name, p.dtype, s, IR_INIT_ZEROS, 0, 0, 0, p.node >= 0 ? g->nodes[p.node].loc : no_loc);
  if (id < 0) return fail(c, "optimizer: cannot add state '%s'", name);
  ir_param *st = &g->params[g->nparams - 1];
  st->state = 1;
  if (c->shard) st->full = p.shape, st->shard_off = c->t->rank * s->d[0];
  return id;
}

static void publish(opt_ctx *c, int state_or_param, int value) {
  if (c->failed || value < 0) return;
  const char *name = c->g->nodes[state_or_param].name;
  ir_add_output(c->g, ar_printf(c->g->A, "%s%s", OPT_NEW_PREFIX, name), value);
}

/* d = g + (l2 [+ wd]) p + l1 sign(p): PyTorch's coupled weight_decay. */
static int penalties(opt_ctx *c, int p, int gr) {
  const ir_train *t = c->t;
  double wd = t->l2 + (t->opt != IR_OPT_ADAMW ? t->weight_decay : 0);
  if (wd != 0) gr = add(c, gr, scale(c, wd, p));
  if (t->l1 != 0) gr = add(c, gr, scale(c, t->l1, op1(c, IR_SIGN, p, NULL)));
  return gr;
}

static int step_sgd(opt_ctx *c, int pi, int p, int d) {
  const ir_train *t = c->t;
  if (t->momentum != 0) {
    int buf = state(c, "momentum_buffer", pi);
    int nb = add(c, scale(c, t->momentum, buf), d);
    publish(c, buf, nb);
    d = t->nesterov ? add(c, d, scale(c, t->momentum, nb)) : nb;
  }
  return sub(c, p, mul(c, f32_input(c, OPT_IN_LR), d));
}

static int step_adam(opt_ctx *c, int pi, int p, int d) {
  const ir_train *t = c->t;
  int lr = f32_input(c, OPT_IN_LR);
  if (t->opt == IR_OPT_ADAMW && t->weight_decay != 0)
    p = mul(c, p, sub(c, num(c, 1), scale(c, t->weight_decay, lr)));
  int m = state(c, "exp_avg", pi), v = state(c, "exp_avg_sq", pi);
  int nm = add(c, m, scale(c, 1 - t->beta1, sub(c, d, m)));
  int nv = add(c, scale(c, t->beta2, v), mul(c, scale(c, 1 - t->beta2, d), d));
  publish(c, m, nm), publish(c, v, nv);
  int step = dvd(c, lr, f32_input(c, OPT_IN_BC1));
  int bc2 = op1(c, IR_SQRT, f32_input(c, OPT_IN_BC2), NULL);
  int denom = add(c, dvd(c, op1(c, IR_SQRT, nv, NULL), bc2), num(c, t->eps));
  return sub(c, p, mul(c, step, dvd(c, nm, denom)));
}

static int step_rmsprop(opt_ctx *c, int pi, int p, int d) {
  const ir_train *t = c->t;
  int lr = f32_input(c, OPT_IN_LR);
  int sa = state(c, "square_avg", pi);
  int nsa = add(c, scale(c, t->alpha, sa), mul(c, scale(c, 1 - t->alpha, d), d));
  publish(c, sa, nsa);
  int q = dvd(c, d, add(c, op1(c, IR_SQRT, nsa, NULL), num(c, t->eps)));
  if (t->momentum > 0) {
    int buf = state(c, "momentum_buffer", pi);
    q = add(c, scale(c, t->momentum, buf), q);
    publish(c, buf, q);
  }
  return sub(c, p, mul(c, lr, q));
}

typedef int (*opt_rule)(opt_ctx *c, int pi, int p, int d);
static const opt_rule rules[] = {
  [IR_OPT_SGD] = step_sgd, [IR_OPT_ADAM] = step_adam, [IR_OPT_ADAMW] = step_adam,
  [IR_OPT_RMSPROP] = step_rmsprop,
};

/* The sum of every g^2 (-1 when there are no gradients). */
static int sumsq(opt_ctx *c, const int *gr, int nw) {
  ir_attr all = {0};
  all.axis = -1;
  int sq = -1;
  for (int w = 0; w < nw; w++) {
    int s = op1(c, IR_SUM, mul(c, gr[w], gr[w]), &all);
    sq = sq < 0 ? s : add(c, sq, s);
  }
  return sq;
}

/* g *= min(1, clip / (sqrt(sum of every g^2) + 1e-6)), as clip_grad_norm_. */
static void clip(opt_ctx *c, int *gr, int nw) {
  int sq = sumsq(c, gr, nw);
  /* a pipeline stage holds some of the parameters: the norm is over all of them */
  if (c->t->stages > 1 && sq >= 0 && (sq = comm_sum_scalar(c->g, sq, c->t->stages, c->msg, c->msgn)) < 0) {
    c->failed = 1;
    return;
  }
  int norm = add(c, op1(c, IR_SQRT, sq, NULL), num(c, 1e-6));
  int coef = op2(c, IR_MINIMUM, num(c, 1), dvd(c, num(c, c->t->clip_norm), norm));
  for (int w = 0; w < nw; w++) gr[w] = mul(c, gr[w], coef);
}

/* g += std * N(0, 1), std from OPT_IN_NOISE, per parameter stream 2^32 + i. */
static void noise(opt_ctx *c, int *gr, const int *which, int nw) {
  int rng = c->failed ? -1 : scalar_input(c->g, OPT_IN_RNG, IR_I64);
  if (rng < 0 || c->g->nodes[rng].dtype != IR_I64) {
    fail(c, "optimizer: input '%s' is reserved for the step counter", OPT_IN_RNG);
    return;
  }
  int std = f32_input(c, OPT_IN_NOISE);
  for (int w = 0; w < nw; w++) {
    ir_attr at = rng_attr(&c->g->params[which[w]].shape, c->t->seed, ((int64_t)1 << 32) + which[w], 0);
    gr[w] = add(c, gr[w], mul(c, std, op1(c, IR_RANDN, rng, &at)));
  }
}

static int check(opt_ctx *c) {
  const ir_train *t = c->t;
  ir_graph *g = c->g;
  for (int id = 0; id < g->nnodes; id++)
    if (is_live_dropout(&g->nodes[id]))
      return fail(c, "opt_append: dropout (node %d) is not in training form: call opt_prepare_training "
                     "before ad_backward", id);
  if (!g->grads) return fail(c, "opt_append: run autodiff first");
  if (t->opt <= IR_OPT_NONE || t->opt > IR_OPT_RMSPROP)
    return fail(c, "opt_append: no optimizer chosen (the driver normalises the train block)");
  return 0;
}

/* The trainable parameters: float, not state or a buffer, with a gradient. */
static int trainable(const ir_graph *g, int *which) {
  int nw = 0;
  for (int i = 0; i < g->nparams; i++)
    if (ir_dtype_is_float(g->params[i].dtype) && !g->params[i].state && !g->params[i].buffer && g->grads[i] >= 0)
      which[nw++] = i;
  return nw;
}

/* ---- ZeRO-1 (t->zero1, docs/distributed.md) ----
 * Instead of every rank updating every parameter with the averaged
 * gradient: each gradient is reduce-scattered (this rank receives the
 * average of its 1/R slice), the rank updates its slice of the weight with
 * its slice of the optimizer state (state parameters of the slice's size,
 * ir_param.full), and the updated slices are all-gathered into the new
 * weight. The elementwise rules give each value what the unsharded update
 * gives it; clipping's global norm adds the ranks' partial sums. */
/* passes/comm.c wrote its message into c->msg already */
static int comm_failed(opt_ctx *c) {
  c->failed = 1;
  return -1;
}

static int zero_clip(opt_ctx *c, int *gr, int nw) {
  int sq = sumsq(c, gr, nw);
  if (sq < 0) return -1;
  int tot = comm_sum_scalar(c->g, sq, c->t->ranks, c->msg, c->msgn);
  if (tot < 0) return comm_failed(c);
  int norm = add(c, op1(c, IR_SQRT, tot, NULL), num(c, 1e-6));
  int coef = op2(c, IR_MINIMUM, num(c, 1), dvd(c, num(c, c->t->clip_norm), norm));
  for (int w = 0; w < nw; w++) gr[w] = mul(c, gr[w], coef);
  return c->failed ? -1 : 0;
}

static int zero_append(opt_ctx *c, const int *which, int *gr, int nw) {
  ir_graph *g = c->g;
  const ir_train *t = c->t;
  if (t->grad_noise > 0) return fail(c, "--zero1: gradient noise (grad_noise) is not supported with sharded state");
  for (int w = 0; w < nw; w++)
    if ((gr[w] = comm_shard_grad(g, gr[w], t->ranks, c->msg, c->msgn)) < 0) return comm_failed(c);
  if (t->clip_norm > 0 && nw && zero_clip(c, gr, nw)) return -1;
  for (int w = 0; w < nw && !c->failed; w++) {
    int pi = which[w], p = g->params[pi].node;
    ir_shape full = g->params[pi].shape;
    ir_shape sh = {.rank = 1, .d = {comm_shard_len(ir_numel(&full), t->ranks)}};
    int ps = comm_shard_of(g, p, t->ranks, t->rank, c->msg, c->msgn);
    if (ps < 0) return comm_failed(c);
    c->shard = &sh;
    int nps = rules[t->opt](c, pi, ps, penalties(c, ps, gr[w]));
    c->shard = NULL;
    int np = nps < 0 ? -1 : comm_unshard(g, nps, t->ranks, &full, c->msg, c->msgn);
    if (np < 0) return comm_failed(c);
    publish(c, p, np);
  }
  return c->failed ? -1 : 0;
}

int opt_append(ir_graph *g, const ir_train *t, char *msg, size_t msgn) {
  opt_ctx c = {g, t, msg, msgn, 0, IR_F32, NULL};
  if (msg && msgn) msg[0] = '\0';
  if (check(&c)) return -1;
  int n0 = g->nparams;
  int *which = ar_alloc(g->A, sizeof(int) * (size_t)(n0 + 1)), *gr = ar_alloc(g->A, sizeof(int) * (size_t)(n0 + 1));
  int nw = trainable(g, which);
  for (int w = 0; w < nw; w++) {
    gr[w] = g->grads[which[w]];
    if (g->params[which[w]].dtype != IR_F32)
      return fail(&c, "opt_append: parameter '%s' is %s; training needs f32 parameters", g->params[which[w]].name,
                  ir_dtype_name(g->params[which[w]].dtype));
  }
  if (t->zero1 && t->ranks > 1) {
    if (zero_append(&c, which, gr, nw)) return -1;
  } else {
    /* a data-parallel step averages the gradients first: clipping and the
     * rule then see the global batch's gradient (passes/comm.c) */
    if (comm_average_grads(g, gr, nw, t->ranks, t->bucket_bytes, msg, msgn) < 0) return -1;
    if (t->clip_norm > 0 && nw) clip(&c, gr, nw);
    if (t->grad_noise > 0 && nw) noise(&c, gr, which, nw);
    for (int w = 0; w < nw && !c.failed; w++) {
      int pi = which[w], p = g->params[pi].node;
      int np = rules[t->opt](&c, pi, p, penalties(&c, p, gr[w]));
      publish(&c, p, np);
    }
  }
  if (c.failed) return -1;
  /* state parameters have no gradient */
  int *grads = ar_alloc(g->A, sizeof(int) * (size_t)(g->nparams + 1));
  for (int i = 0; i < g->nparams; i++) grads[i] = i < n0 ? g->grads[i] : -1;
  g->grads = grads;
  return 0;
}
