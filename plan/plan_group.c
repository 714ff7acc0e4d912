/* plan_group.c -- which nodes run as one kernel. Every grouping rule of the
 * plan is here, each with why it pays; they apply in this order (a node
 * taken by one rule is not offered to the next):
 *   1. a matrix product and the elementwise chain after it (find_fusions)
 *   2. sibling fused elementwise nodes: an optimizer update (find_siblings)
 *   3. a residual add and the layernorm reading it, and the backward's
 *      mirror (find_residual_norms)
 *   4. the sibling groups of every parameter's update as one kernel
 *      (batch_updates)
 * A group runs at its last member's place (run_at); a member whose value
 * other kernels read is stored by the group's kernel (inside). Nothing is
 * grouped at -O0 (g->no_fusion: the unfused baseline). */
#include <string.h>

#include "plan/plan_impl.h"

/* A fused node fz reading the product `product` can be the product's
 * epilogue when its other inputs are full, scalar, per row or per column of
 * the product's shape (a backend evaluates it at (row, col) given the
 * product's value there). */
static int epilogue_program_ok(const ir_graph *g, const ir_node *fz, int product) {
  int64_t N = fz->shape.rank ? fz->shape.d[fz->shape.rank - 1] : 1, m;
  int seen = 0;
  for (int j = 0; j < fz->nin; j++) {
    if (fz->in[j] == product) {
      seen++;
      continue;
    }
    ir_bcast_kind kd = ir_bcast_kind_of(&fz->shape, &g->nodes[fz->in[j]].shape, &m);
    if (kd == IR_BC_OTHER || ((kd == IR_BC_SUFFIX || kd == IR_BC_PREFIX) && m != N)) return 0;
  }
  return seen == 1 && ir_shape_eq(&fz->shape, &g->nodes[product].shape);
}

/* ---- fusion: a matrix product and the elementwise chain after it ----
 *
 * matmul -> add(bias) -> gelu, or -> add(residual): each link's value has
 * exactly one reader (the next link) and is neither an output nor the loss,
 * and every link has the product's shape. The chain runs at its last node's
 * position: no node in between can read a link (each has one reader), and
 * the memory plan is told (run_at) that the product's operands are read
 * there, so nothing in between takes their blocks. Other nodes may sit in
 * between: the backward puts the weight gradient's product between dx =
 * dy W^T and the activation's gradient that reads it. group_of[last]
 * describes the chain.
 *
 * Why it pays: the bias, the activation and the residual are applied to
 * each element while it is still in a register after the product, instead
 * of a pass over the whole tensor per step (each a write and a read of
 * memory). */


/* Whether operand o of a step has a per-column ([.., N], leading 1s) or
 * the full shape; -1 if neither. */
static int step_kind(const ir_shape *out, const ir_shape *o) {
  if (ir_shape_eq(out, o)) return PL_EPI_FULL;
  if (o->rank < 1 || o->rank > out->rank || o->d[o->rank - 1] != out->d[out->rank - 1]) return -1;
  for (int d = 0; d < o->rank - 1; d++)
    if (o->d[d] != 1) return -1;
  return PL_EPI_ROW;
}

/* Add node c (the single reader of cur, unless save) as a step of grp if
 * it qualifies. */
static int try_step(const ir_graph *g, const pl_target *t, pl_group *grp, int cur, int c, int save) {
  const ir_node *n = &g->nodes[c], *h = &g->nodes[grp->head];
  int s = grp->f.nsteps;
  if (s > 0 && grp->f.kind[s - 1] == PL_EPI_POOL) return 0; /* a pool is a chain's last step */
  /* a convolution's result pooled before it is stored (its shape is the
   * pool's: nothing can follow it); why it pays: the convolution's output,
   * k^2 times the pool's, never goes through memory (the digits CNN:
   * 0.5 MB a batch of 128 for conv1) */
  if (h->op == IR_CONV2D && n->op == IR_MAXPOOL2D && !save && s < PL_MAXFUSE && n->in[0] == cur && t->conv_pool &&
      t->conv_pool(g, h, &grp->f, n)) {
    grp->f.kind[s] = PL_EPI_POOL;
    grp->f.node[s] = n;
    grp->f.nsteps++;
    return 1;
  }
  if (s >= PL_MAXFUSE || n->dtype != IR_F32 || !ir_shape_eq(&n->shape, &h->shape)) return 0;
  if (t->epilogue_unary && t->epilogue_unary(n->op) && n->nin == 1) {
    grp->f.kind[s] = PL_EPI_UNARY;
  } else if (n->op >= IR_ADD && n->op <= IR_DIV && n->nin == 2 && (n->in[0] == cur) != (n->in[1] == cur)) {
    int right = n->in[1] == cur, o = n->in[right ? 0 : 1];
    int kind = step_kind(&h->shape, &g->nodes[o].shape);
    if (kind < 0 || g->nodes[o].dtype != IR_F32 || grp->nextra >= PL_MAXFUSE || 3 + grp->nextra + 3 > PL_MAXARGS)
      return 0;
    grp->f.kind[s] = kind;
    grp->f.right[s] = right;
    grp->f.arg[s] = 3 + grp->nextra; /* out, A, B, extras... */
    grp->extra[grp->nextra++] = o;
  } else if (n->op == IR_FUSED && epilogue_program_ok(g, n, cur)) {
    if (3 + grp->nextra + (n->nin - 1) + 2 > PL_MAXARGS) return 0;
    grp->f.kind[s] = PL_EPI_PROGRAM;
    for (int j = 0; j < n->nin; j++) {
      grp->f.parg[s][j] = n->in[j] == cur ? -1 : 3 + grp->nextra;
      if (n->in[j] != cur) grp->extra[grp->nextra++] = n->in[j];
    }
  } else {
    return 0;
  }
  grp->f.node[s] = n;
  grp->f.nsteps++;
  return 1;
}

/* Whether no node in (x, at] other than c reads x. */
static int no_reader_until(const ir_graph *g, int x, int c, int at) {
  for (int i = x + 1; i <= at; i++)
    for (int j = 0; i != c && j < g->nodes[i].nin; j++)
      if (g->nodes[i].in[j] == x) return 0;
  return 1;
}

static int first_reader(const ir_graph *g, int x) {
  for (int i = x + 1; i < g->nnodes; i++)
    for (int j = 0; j < g->nodes[i].nin; j++)
      if (g->nodes[i].in[j] == x) return i;
  return -1;
}

/* A link read by later nodes too (z = x W + b, read by gelu and by gelu's
 * gradient) can still be a link: the kernel also stores its value to z's
 * own buffer (inside[z]). Every other reader of every saved link must come
 * after the chain's last node, where the chain runs. */
static int saves_hold(const ir_graph *g, const pl_group *grp, const int *chain, int nc, int at) {
  for (int k = 1; k < nc - 1; k++)
    if (grp->f.save[k - 1] && !no_reader_until(g, chain[k], chain[k + 1], at)) return 0;
  return 1;
}

/* Extend grp's chain (chain[0..nc), last cur) by one link; the new length. */
static int extend(const ir_graph *g, const pl_target *t, pl_group *grp, const int *uses, const int *reader, int *chain, int nc) {
  int cur = chain[nc - 1], save = uses[cur] > 1;
  int nxt = save ? first_reader(g, cur) : reader[cur];
  if (save && (nc == 1 || 3 + grp->nextra + 1 + 3 > PL_MAXARGS)) return nc; /* not the product itself */
  if (nxt < 0 || nc > PL_MAXFUSE) return nc;
  chain[nc] = nxt;
  if (save && !no_reader_until(g, cur, nxt, nxt)) return nc;
  /* a step reading a saved link as its other operand would load what the
   * same kernel stores, through another (noalias) argument */
  for (int k = 1; k < nc - 1; k++)
    for (int j = 0; grp->f.save[k - 1] && j < g->nodes[nxt].nin; j++)
      if (g->nodes[nxt].in[j] == chain[k]) return nc;
  if (!saves_hold(g, grp, chain, nc + 1, nxt) || !try_step(g, t, grp, cur, nxt, save)) return nc;
  if (save) { /* the step that made cur (step nc - 2) also stores it */
    grp->f.save[nc - 2] = 3 + grp->nextra;
    grp->extra[grp->nextra++] = cur;
  }
  return nc + 1;
}

/* A convolution's chain: unary steps only, nothing saved (its kernel
 * applies them as it copies each output row out; there is no (row, col)
 * of a product for other operands to be indexed by), and perhaps a
 * max-pool last. */
static int unary_chain(const pl_group *grp) {
  for (int s = 0; s < grp->f.nsteps; s++)
    if ((grp->f.kind[s] != PL_EPI_UNARY && grp->f.kind[s] != PL_EPI_POOL) || grp->f.save[s]) return 0;
  return 1;
}

/* Find every fusable chain; mark its inner nodes fused (or, saved links,
 * inside[]) and record the group at its last node (group_of) and where each
 * member runs (run_at). */
static void find_fusions(const ir_graph *g, const pl_target *t, arena *A, const int *is_out, pl_group **group_of, int *run_at,
                         int *inside) {
  int nn = g->nnodes;
  int *uses = ar_alloc(A, sizeof(int) * (size_t)nn), *reader = ar_alloc(A, sizeof(int) * (size_t)nn);
  for (int i = 0; i < nn; i++) uses[i] = 0, reader[i] = -1, run_at[i] = i, group_of[i] = NULL, inside[i] = 0;
  for (int i = 0; i < nn; i++)
    for (int j = 0; j < g->nodes[i].nin; j++) uses[g->nodes[i].in[j]]++, reader[g->nodes[i].in[j]] = i;
  for (int h = 0; h < nn && !g->no_fusion; h++) {
    const ir_node *n = &g->nodes[h];
    int conv = n->op == IR_CONV2D && t->conv_epilogue;
    if ((n->op != IR_MATMUL && !conv) || n->dtype != IR_F32 || n->shape.rank < 1) continue;
    pl_group *grp = ar_alloc(A, sizeof *grp);
    memset(grp, 0, sizeof *grp);
    grp->head = h;
    int chain[PL_MAXFUSE + 2] = {h}, nc = 1;
    for (;;) {
      int cur = chain[nc - 1];
      if (is_out[cur] || g->loss == cur) break;
      int more = extend(g, t, grp, uses, reader, chain, nc);
      if (more == nc) break;
      nc = more;
    }
    /* a node of two products (x W + h U: a recurrent cell's step) is taken
     * by the first product's chain; the second product stays a kernel of
     * its own, which that chain reads */
    int taken = 0;
    for (int k = 1; k < nc; k++) taken |= group_of[chain[k]] != NULL || run_at[chain[k]] != chain[k];
    if (nc == 1 || taken || (conv && !unary_chain(grp))) continue;
    int last = chain[nc - 1];
    grp->kind = PL_K_GEMM_EPI;
    grp->nmember = nc;
    memcpy(grp->member, chain, sizeof(int) * (size_t)nc);
    group_of[last] = grp;
    for (int k = 0; k < nc - 1; k++) run_at[chain[k]] = last;
    for (int s = 0; s < grp->f.nsteps; s++)
      if (grp->f.save[s]) inside[chain[s + 1]] = 1;
  }
}

/* ---- fused siblings: several fused nodes in one loop ----
 *
 * An optimizer update is three fused nodes per parameter (new m, new v, new
 * weight), each an output, so fuse cannot make them one node; each reads
 * the gradient and the new weight reads the other two. One loop computing
 * all three reads every input once and keeps m and v in registers. Members:
 * standalone fused kernels of one shape, related (a shared input, or one
 * reading another), with no other node between them reading a member; the
 * group runs at its last member's place (run_at), the others are inside[]. */

static int standalone_fused(const ir_graph *g, const pl_group *const *group_of, const int *run_at,
                            const int *inside, int i) {
  return g->nodes[i].op == IR_FUSED && !group_of[i] && run_at[i] == i && !inside[i];
}

static int member_of(const pl_siblings *mu, int x) {
  for (int m = 0; m < mu->n; m++)
    if (mu->node[m] == x) return m;
  return -1;
}

/* Whether node i joins mu (and then it has). */
static int join(const ir_graph *g, pl_siblings *mu, int i, const int *is_out) {
  const ir_node *n = &g->nodes[i];
  if (mu->n >= PL_MAXMULTI || !ir_shape_eq(&n->shape, &g->nodes[mu->node[0]].shape)) return 0;
  int related = 0, add[PL_MAXARGS], na = 0;
  for (int j = 0; j < n->nin; j++) {
    int x = n->in[j], member = member_of(mu, x) >= 0, seen = member;
    for (int q = 0; q < mu->nin; q++) seen |= mu->in[q] == x;
    /* related: it reads a member, or a whole tensor a member reads (a
     * shared scalar, a learning rate, saves nothing) */
    related |= member || (seen && ir_shape_eq(&g->nodes[x].shape, &n->shape));
    for (int q = 0; q < na; q++) seen |= add[q] == x;
    if (!seen) add[na++] = x;
  }
  if (!related || mu->n + 1 + mu->nin + na + 2 > PL_MAXARGS) return 0;
  for (int q = 0; q < na; q++) mu->in[mu->nin++] = add[q];
  mu->check[mu->n] = is_out[i];
  mu->node[mu->n++] = i;
  return 1;
}

static void close_group(pl_siblings *mu, pl_group **group_of, int *run_at, int *inside, arena *A) {
  if (mu->n >= 2) {
    pl_group *grp = ar_alloc(A, sizeof *grp);
    memset(grp, 0, sizeof *grp);
    pl_siblings *keep = ar_alloc(A, sizeof *keep);
    *keep = *mu;
    grp->multi = keep;
    grp->nmulti = 1;
    grp->kind = PL_K_SIBLINGS;
    grp->nmember = mu->n;
    memcpy(grp->member, mu->node, sizeof(int) * (size_t)mu->n);
    int last = mu->node[mu->n - 1];
    group_of[last] = grp;
    for (int m = 0; m < mu->n - 1; m++) run_at[mu->node[m]] = last, inside[mu->node[m]] = 1;
  }
  mu->n = mu->nin = 0;
}

static void start_group(const ir_graph *g, pl_siblings *mu, int i, const int *is_out) {
  const ir_node *n = &g->nodes[i];
  mu->n = 1, mu->node[0] = i, mu->check[0] = is_out[i], mu->nin = 0;
  for (int j = 0; j < n->nin; j++) mu->in[mu->nin++] = n->in[j]; /* a fused node's inputs are distinct */
}

/* Several groups stay open at once: a training step clips every gradient
 * (g * s) first and updates the parameters later, so a gradient's group
 * collects its update's nodes far down the list. A group closes when a
 * node from outside reads a member (it must run before that reader), when
 * it is full, or when SIB_OPEN newer groups push it out. */
enum { SIB_OPEN = 64 };

static void find_siblings(const ir_graph *g, arena *A, const int *is_out, pl_group **group_of, int *run_at,
                          int *inside) {
  pl_siblings *open = ar_alloc(A, sizeof(pl_siblings) * SIB_OPEN);
  int nopen = 0;
  for (int i = 0; i < g->nnodes && !g->no_fusion; i++) {
    int cand = standalone_fused(g, (const pl_group *const *)group_of, run_at, inside, i), joined = 0;
    for (int o = 0; cand && !joined && o < nopen; o++) joined = join(g, &open[o], i, is_out);
    for (int o = 0; o < nopen; o++) { /* a reader from outside: the group ends before it */
      int mine = member_of(&open[o], i) >= 0, reads = 0;
      for (int j = 0; !mine && j < g->nodes[i].nin; j++) reads |= member_of(&open[o], g->nodes[i].in[j]) >= 0;
      if (!reads && open[o].n < PL_MAXMULTI) continue;
      close_group(&open[o], group_of, run_at, inside, A);
      open[o--] = open[--nopen];
    }
    if (!cand || joined) continue;
    if (nopen == SIB_OPEN) {
      close_group(&open[0], group_of, run_at, inside, A);
      memmove(open, open + 1, sizeof(pl_siblings) * (SIB_OPEN - 1));
      nopen--;
    }
    start_group(g, &open[nopen++], i, is_out);
  }
  for (int o = 0; o < nopen; o++) close_group(&open[o], group_of, run_at, inside, A);
}

/* ---- a residual add and the layernorm that reads it ----
 *
 * A transformer block normalises its residual stream right after adding to
 * it: x = x + a; h = layernorm(x), with x read again later. One kernel
 * computes each row of x, stores it and normalises it while the row is in
 * L1, instead of writing x and reading it back. The add runs at the
 * layernorm's place (run_at) and is stored there (inside), so no node
 * between them may read it. The backward mirrors it: the residual stream's
 * gradient is r + dx, dx the layernorm's gradient read by that add alone,
 * so the gradient's kernel stores r + dx and dx is never stored. */

/* The backward pair at add node i, or 0: dx (attr i 0) read by i alone. */
static int norm_grad_pair(const ir_graph *g, const int *is_out, pl_group **group_of, int *run_at,
                          const int *inside, const int *uses, int i, arena *A) {
  const ir_node *a = &g->nodes[i];
  if (a->op != IR_ADD || a->dtype != IR_F32 || group_of[i] || inside[i] || run_at[i] != i) return 0;
  for (int q = 0; q < 2; q++) {
    int lg = a->in[q], r = a->in[1 - q];
    const ir_node *n = &g->nodes[lg];
    if (n->op != IR_LAYERNORM_GRAD || n->attr.i != 0 || n->dtype != IR_F32 || uses[lg] != 1 || is_out[lg] ||
        g->loss == lg || group_of[lg] || inside[lg] || run_at[lg] != lg || r == lg ||
        !ir_shape_eq(&g->nodes[r].shape, &a->shape) || !ir_shape_eq(&n->shape, &a->shape))
      continue;
    pl_group *grp = ar_alloc(A, sizeof *grp);
    memset(grp, 0, sizeof *grp);
    grp->kind = PL_K_NORM_GRAD_ADD, grp->head = lg;
    grp->nmember = 2, grp->member[0] = lg, grp->member[1] = i;
    grp->extra[0] = r, grp->nextra = 1;
    group_of[i] = grp;
    run_at[lg] = i;
    return 1;
  }
  return 0;
}

static void find_residual_norms(const ir_graph *g, arena *A, const int *is_out, pl_group **group_of, int *run_at,
                                int *inside) {
  int nn = g->nnodes;
  int *first = ar_alloc(A, sizeof(int) * (size_t)(nn ? nn : 1)); /* first reader after the node */
  int *uses = ar_alloc(A, sizeof(int) * (size_t)(nn ? nn : 1));
  for (int i = 0; i < nn; i++) first[i] = nn, uses[i] = 0;
  for (int i = nn - 1; i >= 0; i--)
    for (int j = 0; j < g->nodes[i].nin; j++) first[g->nodes[i].in[j]] = i, uses[g->nodes[i].in[j]]++;
  for (int l = 0; l < nn && !g->no_fusion; l++) {
    if (norm_grad_pair(g, is_out, group_of, run_at, inside, uses, l, A)) continue;
    const ir_node *n = &g->nodes[l];
    if (n->op != IR_LAYERNORM || n->dtype != IR_F32 || group_of[l] || inside[l] || run_at[l] != l) continue;
    int x = n->in[0];
    const ir_node *a = &g->nodes[x];
    if (a->op != IR_ADD || a->dtype != IR_F32 || is_out[x] || g->loss == x || group_of[x] || inside[x] ||
        run_at[x] != x || first[x] != l)
      continue;
    if (!ir_shape_eq(&g->nodes[a->in[0]].shape, &a->shape) || !ir_shape_eq(&g->nodes[a->in[1]].shape, &a->shape))
      continue;
    for (int q = 0; q < n->nin; q++) /* the add's result reaches the layernorm as its input only */
      if (q > 0 && n->in[q] == x) x = -1;
    if (x < 0) continue;
    pl_group *grp = ar_alloc(A, sizeof *grp);
    memset(grp, 0, sizeof *grp);
    grp->kind = PL_K_ADD_NORM, grp->head = l;
    grp->nmember = 2, grp->member[0] = x, grp->member[1] = l;
    grp->extra[0] = a->in[0], grp->extra[1] = a->in[1], grp->extra[2] = x, grp->nextra = 3;
    group_of[l] = grp;
    run_at[x] = l, inside[x] = 1;
  }
}

/* ---- every parameter's update in one kernel ----
 *
 * A training step updates each parameter with one sibling group (new m, v
 * and weight); the groups are independent of each other, and each runs
 * after the last gradient it reads. One kernel running all of them is one
 * launch instead of one per parameter (on a GPU a launch of a small
 * parameter's update costs more than its work) and, on the CPU, one
 * hand-off to the thread pool with the work split over every element.
 * A group joins the batch open before it unless a node between the
 * batch's groups reads a member of the batch (the batch runs at its last
 * group's place, so its members are stored only then: a data-parallel
 * step's all_gather of the new weights closes it) or, on a backend that
 * passes the operands as launch arguments, the kernel would have more than
 * PL_MAXUPD operands (limit). A backend reading them from a table in
 * memory (pl_target.upd_table: CUDA) has no limit, so every update of a
 * training step is one kernel there: each launch of a small update costs
 * more on a GPU than its work (the char-GPT's step had 4 update launches
 * at 128 operands each). The earlier groups run at the last one's place
 * (run_at: the memory plan keeps their inputs live until then) and are
 * stored by its kernel (inside). */
typedef struct {
  pl_group **grp; /* the batch's groups, at most one per node */
  int ngrp, nops, place, limit;
  int *ops;      /* the kernel's operand nodes so far (results and inputs, distinct) */
  char *member;  /* per node: a member of a batched group */
} upd_batch;

static int upd_listed(const upd_batch *b, int x) {
  for (int j = 0; j < b->nops; j++)
    if (b->ops[j] == x) return 1;
  return 0;
}

/* Operands group mu adds to b. */
static int upd_new_ops(const upd_batch *b, const pl_siblings *mu) {
  int add = mu->n;
  for (int q = 0; q < mu->nin; q++) add += !upd_listed(b, mu->in[q]);
  return add;
}

static void upd_close(upd_batch *b, pl_group **group_of, int *run_at, int *inside, arena *A) {
  if (b->ngrp >= 2) {
    pl_siblings *all = ar_alloc(A, sizeof *all * (size_t)b->ngrp);
    pl_group *grp = ar_alloc(A, sizeof *grp);
    memset(grp, 0, sizeof *grp);
    grp->kind = PL_K_SIBLINGS;
    grp->multi = all, grp->nmulti = b->ngrp;
    for (int q = 0; q < b->ngrp; q++) {
      all[q] = *b->grp[q]->multi;
      int last = all[q].node[all[q].n - 1];
      group_of[last] = NULL;
      for (int m = 0; m < all[q].n; m++) run_at[all[q].node[m]] = b->place, inside[all[q].node[m]] = 1;
    }
    inside[b->place] = 0;
    group_of[b->place] = grp;
  }
  for (int q = 0; q < b->ngrp; q++)
    for (int m = 0; m < b->grp[q]->multi->n; m++) b->member[b->grp[q]->multi->node[m]] = 0;
  b->ngrp = b->nops = 0;
}

static void batch_updates(const ir_graph *g, const pl_target *t, arena *A, pl_group **group_of, int *run_at,
                          int *inside) {
  size_t nn = (size_t)g->nnodes + 1;
  /* every operand is a node, listed once: nn bounds a table's operands */
  upd_batch b = {.ops = ar_alloc(A, sizeof(int) * nn), .member = ar_alloc(A, nn),
                 .grp = ar_alloc(A, sizeof(pl_group *) * nn), .limit = t && t->upd_table ? (int)nn : PL_MAXUPD};
  memset(b.member, 0, nn);
  for (int i = 0; i < g->nnodes && !g->no_fusion; i++) {
    pl_group *grp = group_of[i];
    int sib = grp && grp->kind == PL_K_SIBLINGS && grp->nmulti == 1;
    for (int j = 0; !b.member[i] && j < g->nodes[i].nin && b.ngrp; j++)
      if (b.member[g->nodes[i].in[j]]) { /* a reader of a batched member: the batch runs before it */
        upd_close(&b, group_of, run_at, inside, A);
        break;
      }
    if (!sib) continue;
    const pl_siblings *mu = grp->multi;
    if (1 + mu->n + mu->nin > b.limit) continue; /* wider than a batch's operands: stays its own kernel */
    if (1 + b.nops + upd_new_ops(&b, mu) > b.limit) upd_close(&b, group_of, run_at, inside, A);
    for (int m = 0; m < mu->n; m++) b.ops[b.nops++] = mu->node[m], b.member[mu->node[m]] = 1;
    for (int q = 0; q < mu->nin; q++)
      if (!upd_listed(&b, mu->in[q])) b.ops[b.nops++] = mu->in[q];
    b.grp[b.ngrp++] = grp;
    b.place = i;
  }
  upd_close(&b, group_of, run_at, inside, A);
}

void pl_find_groups(const ir_graph *g, const pl_target *t, arena *A, pl_groups *gr) {
  size_t nn = (size_t)(g->nnodes ? g->nnodes : 1);
  gr->group_of = ar_alloc(A, sizeof(pl_group *) * nn);
  gr->run_at = ar_alloc(A, sizeof(int) * nn);
  gr->inside = ar_alloc(A, sizeof(int) * nn);
  gr->is_out = ar_alloc(A, sizeof(int) * nn);
  for (int j = 0; j < g->noutputs; j++) gr->is_out[g->outputs[j].node] = 1;
  find_fusions(g, t, A, gr->is_out, gr->group_of, gr->run_at, gr->inside);
  find_siblings(g, A, gr->is_out, gr->group_of, gr->run_at, gr->inside);
  find_residual_norms(g, A, gr->is_out, gr->group_of, gr->run_at, gr->inside);
  batch_updates(g, t, A, gr->group_of, gr->run_at, gr->inside);
}
