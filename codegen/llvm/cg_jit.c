/* cg_jit.c -- the CPU backend driver: plan buffers, build one LLVM module
 * (deduplicated kernels + the entry `lathe_forward`), optimise and compile
 * it for the host CPU in parts on several threads (cg_split.c), link the
 * objects with ORC LLJIT, and run it. The compiled code is shared with later
 * compiles of an equal graph while a program holds it (cg_memo.c).
 *
 * Node buffers at run time (bufs[node]): inputs, parameters and outputs are
 * the caller's; constants live in the program; everything else is at a
 * planned offset in one arena (passes/memplan.c); a reshape or dropout that
 * is not an output shares its input's buffer. */
#include "cg_internal.h"

#include <cblas.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cg_memo.h"
#include "cg_split.h"
#include "passes/passes.h"
#include "runtime/blas.h"
#include "runtime/threadpool.h"

/* BUF_FUSED: a node computed inside a later node's fused kernel; it has no
 * buffer of its own and no kernel. */
enum { BUF_ARENA, BUF_INPUT, BUF_PARAM, BUF_CONST, BUF_OUTPUT, BUF_ALIAS, BUF_FUSED };

typedef struct {
  int kind, idx;  /* idx: input/param/output index, alias source node */
  int64_t off;    /* arena or const offset */
  int64_t scr;    /* scratch offset or -1 */
  int64_t bytes;
  int inside;     /* computed inside a later node's kernel and stored there (a saved link of a chain) */
  int checked;    /* the kernel writing it flags a non-finite value (CG_ERR_NONFINITE) */
} cg_buf;

/* What compiling made, immutable afterwards and shared by every program on
 * it (cg_memo.c counts them): the JIT holding the machine code, the buffer
 * plan, the constants. The programs' fields of the same names point here. */
typedef struct {
  cg_shared sh; /* first: cg_memo.c hands out &code->sh */
  LLVMOrcLLJITRef jit;
  void (*forward)(void **bufs, void **scr, int32_t *err);
  int nnodes, ninputs, nparams, noutputs, loss;
  cg_buf *buf;
  int *out_node;
  unsigned char *consts;
  char *ir_text;
  cg_stats st;
} cg_code;

/* A program: the code (its own until compiled, then code's) and the run
 * state that is each program's own: the arena, the buffer tables, the
 * profile. */
struct cg_program {
  cg_code *code; /* NULL while compiling (the fields below own it all) */
  LLVMOrcLLJITRef jit;
  void (*forward)(void **bufs, void **scr, int32_t *err);
  int nnodes, ninputs, nparams, noutputs, loss;
  cg_buf *buf;
  int *out_node;
  void **bufs, **scr;
  unsigned char *arena, *consts;
  cg_stats st;
  char *ir_text;
  int nonfinite;  /* the last run: a checked buffer held a non-finite value */
  /* profiling (LATHE_PROFILE): per kernel call, its node and accumulated time */
  int *prof_node;
  double *prof_ns;
  double prof_last;
  int64_t prof_runs;
  const char **op_names; /* per node: its operator's name (for the table) */
};

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Consume an LLVMErrorRef into msg. */
static int llvm_fail(LLVMErrorRef e, char *msg, size_t msgn, const char *what) {
  char *s = LLVMGetErrorMessage(e);
  ir_fail(msg, msgn, "llvm backend: %s: %s", what, s ? s : "?");
  LLVMDisposeErrorMessage(s);
  return -1;
}

static int cg_init_llvm(char *msg, size_t msgn) {
  static int done = 0, ok = 0;
  if (!done) {
    done = 1;
    ok = !LLVMInitializeNativeTarget() && !LLVMInitializeNativeAsmPrinter();
  }
  return ok ? 0 : ir_fail(msg, msgn, "llvm backend: this host's CPU is not supported by the LLVM build");
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
 * dy W^T and the activation's gradient that reads it. fuse_of[last]
 * describes the chain. */

typedef struct {
  cg_fuse f;
  const cg_multi *multi;  /* non-NULL: not a product chain but fused siblings (find_siblings) */
  int norm;               /* not a product chain: 1, a residual add and its layernorm (head); 2, a
                           * layernorm's dx (head) and the add of the residual gradient after it */
  int head;               /* the product node (the layernorm, the layernorm's gradient) */
  int extra[CG_MAXARGS];  /* node of each step's other operands, in argument order */
  int nextra;
} cg_group;

/* Whether operand o of a step has a per-column ([.., N], leading 1s) or
 * the full shape; -1 if neither. */
static int step_kind(const ir_shape *out, const ir_shape *o) {
  if (ir_shape_eq(out, o)) return CG_EPI_FULL;
  if (o->rank < 1 || o->rank > out->rank || o->d[o->rank - 1] != out->d[out->rank - 1]) return -1;
  for (int d = 0; d < o->rank - 1; d++)
    if (o->d[d] != 1) return -1;
  return CG_EPI_ROW;
}

/* Add node c (the single reader of cur) as a step of grp if it qualifies. */
static int try_step(const ir_graph *g, cg_group *grp, int cur, int c) {
  const ir_node *n = &g->nodes[c], *h = &g->nodes[grp->head];
  int s = grp->f.nsteps;
  if (s >= CG_MAXFUSE || n->dtype != IR_F32 || !ir_shape_eq(&n->shape, &h->shape)) return 0;
  if (cg_fusable_unary(n->op) && n->nin == 1) {
    grp->f.kind[s] = CG_EPI_UNARY;
  } else if (n->op >= IR_ADD && n->op <= IR_DIV && n->nin == 2 && (n->in[0] == cur) != (n->in[1] == cur)) {
    int right = n->in[1] == cur, o = n->in[right ? 0 : 1];
    int kind = step_kind(&h->shape, &g->nodes[o].shape);
    if (kind < 0 || g->nodes[o].dtype != IR_F32 || grp->nextra >= CG_MAXFUSE || 3 + grp->nextra + 3 > CG_MAXARGS)
      return 0;
    grp->f.kind[s] = kind;
    grp->f.right[s] = right;
    grp->f.arg[s] = 3 + grp->nextra; /* out, A, B, extras... */
    grp->extra[grp->nextra++] = o;
  } else if (n->op == IR_FUSED && cg_fused_epilogue_ok(g, n, cur)) {
    if (3 + grp->nextra + (n->nin - 1) + 2 > CG_MAXARGS) return 0;
    grp->f.kind[s] = CG_EPI_PROGRAM;
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
static int saves_hold(const ir_graph *g, const cg_group *grp, const int *chain, int nc, int at) {
  for (int k = 1; k < nc - 1; k++)
    if (grp->f.save[k - 1] && !no_reader_until(g, chain[k], chain[k + 1], at)) return 0;
  return 1;
}

/* Extend grp's chain (chain[0..nc), last cur) by one link; the new length. */
static int extend(const ir_graph *g, cg_group *grp, const int *uses, const int *reader, int *chain, int nc) {
  int cur = chain[nc - 1], save = uses[cur] > 1;
  int nxt = save ? first_reader(g, cur) : reader[cur];
  if (save && (nc == 1 || 3 + grp->nextra + 1 + 3 > CG_MAXARGS)) return nc; /* not the product itself */
  if (nxt < 0 || nc > CG_MAXFUSE) return nc;
  chain[nc] = nxt;
  if (save && !no_reader_until(g, cur, nxt, nxt)) return nc;
  /* a step reading a saved link as its other operand would load what the
   * same kernel stores, through another (noalias) argument */
  for (int k = 1; k < nc - 1; k++)
    for (int j = 0; grp->f.save[k - 1] && j < g->nodes[nxt].nin; j++)
      if (g->nodes[nxt].in[j] == chain[k]) return nc;
  if (!saves_hold(g, grp, chain, nc + 1, nxt) || !try_step(g, grp, cur, nxt)) return nc;
  if (save) { /* the step that made cur (step nc - 2) also stores it */
    grp->f.save[nc - 2] = 3 + grp->nextra;
    grp->extra[grp->nextra++] = cur;
  }
  return nc + 1;
}

/* Find every fusable chain; mark its inner nodes fused (or, saved links,
 * inside[]) and record the group at its last node (fuse_of) and where each
 * member runs (run_at). */
static void find_fusions(const ir_graph *g, arena *A, const int *is_out, cg_group **fuse_of, int *run_at,
                         int *inside) {
  int nn = g->nnodes;
  int *uses = ar_alloc(A, sizeof(int) * (size_t)nn), *reader = ar_alloc(A, sizeof(int) * (size_t)nn);
  for (int i = 0; i < nn; i++) uses[i] = 0, reader[i] = -1, run_at[i] = i, fuse_of[i] = NULL, inside[i] = 0;
  for (int i = 0; i < nn; i++)
    for (int j = 0; j < g->nodes[i].nin; j++) uses[g->nodes[i].in[j]]++, reader[g->nodes[i].in[j]] = i;
  for (int h = 0; h < nn && !g->no_fusion; h++) {
    const ir_node *n = &g->nodes[h];
    if (n->op != IR_MATMUL || n->dtype != IR_F32 || n->shape.rank < 1) continue;
    cg_group *grp = ar_alloc(A, sizeof *grp);
    memset(grp, 0, sizeof *grp);
    grp->head = h;
    int chain[CG_MAXFUSE + 2] = {h}, nc = 1;
    for (;;) {
      int cur = chain[nc - 1];
      if (is_out[cur] || g->loss == cur) break;
      int more = extend(g, grp, uses, reader, chain, nc);
      if (more == nc) break;
      nc = more;
    }
    if (nc == 1) continue;
    int last = chain[nc - 1];
    fuse_of[last] = grp;
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

static int standalone_fused(const ir_graph *g, const cg_group *const *fuse_of, const int *run_at,
                            const int *inside, int i) {
  return g->nodes[i].op == IR_FUSED && !fuse_of[i] && run_at[i] == i && !inside[i];
}

static int member_of(const cg_multi *mu, int x) {
  for (int m = 0; m < mu->n; m++)
    if (mu->node[m] == x) return m;
  return -1;
}

/* Whether node i joins mu (and then it has). */
static int join(const ir_graph *g, cg_multi *mu, int i, const int *is_out) {
  const ir_node *n = &g->nodes[i];
  if (mu->n >= CG_MAXMULTI || !ir_shape_eq(&n->shape, &g->nodes[mu->node[0]].shape)) return 0;
  int related = 0, add[CG_MAXARGS], na = 0;
  for (int j = 0; j < n->nin; j++) {
    int x = n->in[j], member = member_of(mu, x) >= 0, seen = member;
    for (int q = 0; q < mu->nin; q++) seen |= mu->in[q] == x;
    /* related: it reads a member, or a whole tensor a member reads (a
     * shared scalar, a learning rate, saves nothing) */
    related |= member || (seen && ir_shape_eq(&g->nodes[x].shape, &n->shape));
    for (int q = 0; q < na; q++) seen |= add[q] == x;
    if (!seen) add[na++] = x;
  }
  if (!related || mu->n + 1 + mu->nin + na + 2 > CG_MAXARGS) return 0;
  for (int q = 0; q < na; q++) mu->in[mu->nin++] = add[q];
  mu->check[mu->n] = is_out[i];
  mu->node[mu->n++] = i;
  return 1;
}

static void close_group(cg_multi *mu, cg_group **fuse_of, int *run_at, int *inside, arena *A) {
  if (mu->n >= 2) {
    cg_group *grp = ar_alloc(A, sizeof *grp);
    memset(grp, 0, sizeof *grp);
    cg_multi *keep = ar_alloc(A, sizeof *keep);
    *keep = *mu;
    grp->multi = keep;
    int last = mu->node[mu->n - 1];
    fuse_of[last] = grp;
    for (int m = 0; m < mu->n - 1; m++) run_at[mu->node[m]] = last, inside[mu->node[m]] = 1;
  }
  mu->n = mu->nin = 0;
}

static void start_group(const ir_graph *g, cg_multi *mu, int i, const int *is_out) {
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

static void find_siblings(const ir_graph *g, arena *A, const int *is_out, cg_group **fuse_of, int *run_at,
                          int *inside) {
  cg_multi *open = ar_alloc(A, sizeof(cg_multi) * SIB_OPEN);
  int nopen = 0;
  for (int i = 0; i < g->nnodes && !g->no_fusion; i++) {
    int cand = standalone_fused(g, (const cg_group *const *)fuse_of, run_at, inside, i), joined = 0;
    for (int o = 0; cand && !joined && o < nopen; o++) joined = join(g, &open[o], i, is_out);
    for (int o = 0; o < nopen; o++) { /* a reader from outside: the group ends before it */
      int mine = member_of(&open[o], i) >= 0, reads = 0;
      for (int j = 0; !mine && j < g->nodes[i].nin; j++) reads |= member_of(&open[o], g->nodes[i].in[j]) >= 0;
      if (!reads && open[o].n < CG_MAXMULTI) continue;
      close_group(&open[o], fuse_of, run_at, inside, A);
      open[o--] = open[--nopen];
    }
    if (!cand || joined) continue;
    if (nopen == SIB_OPEN) {
      close_group(&open[0], fuse_of, run_at, inside, A);
      memmove(open, open + 1, sizeof(cg_multi) * (SIB_OPEN - 1));
      nopen--;
    }
    start_group(g, &open[nopen++], i, is_out);
  }
  for (int o = 0; o < nopen; o++) close_group(&open[o], fuse_of, run_at, inside, A);
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
static int norm_grad_pair(const ir_graph *g, const int *is_out, cg_group **fuse_of, int *run_at,
                          const int *inside, const int *uses, int i, arena *A) {
  const ir_node *a = &g->nodes[i];
  if (a->op != IR_ADD || a->dtype != IR_F32 || fuse_of[i] || inside[i] || run_at[i] != i) return 0;
  for (int q = 0; q < 2; q++) {
    int lg = a->in[q], r = a->in[1 - q];
    const ir_node *n = &g->nodes[lg];
    if (n->op != IR_LAYERNORM_GRAD || n->attr.i != 0 || n->dtype != IR_F32 || uses[lg] != 1 || is_out[lg] ||
        g->loss == lg || fuse_of[lg] || inside[lg] || run_at[lg] != lg || r == lg ||
        !ir_shape_eq(&g->nodes[r].shape, &a->shape) || !ir_shape_eq(&n->shape, &a->shape))
      continue;
    cg_group *grp = ar_alloc(A, sizeof *grp);
    memset(grp, 0, sizeof *grp);
    grp->norm = 2, grp->head = lg;
    grp->extra[0] = r, grp->nextra = 1;
    fuse_of[i] = grp;
    run_at[lg] = i;
    return 1;
  }
  return 0;
}

static void find_residual_norms(const ir_graph *g, arena *A, const int *is_out, cg_group **fuse_of, int *run_at,
                                int *inside) {
  int nn = g->nnodes;
  int *first = ar_alloc(A, sizeof(int) * (size_t)(nn ? nn : 1)); /* first reader after the node */
  int *uses = ar_alloc(A, sizeof(int) * (size_t)(nn ? nn : 1));
  for (int i = 0; i < nn; i++) first[i] = nn, uses[i] = 0;
  for (int i = nn - 1; i >= 0; i--)
    for (int j = 0; j < g->nodes[i].nin; j++) first[g->nodes[i].in[j]] = i, uses[g->nodes[i].in[j]]++;
  for (int l = 0; l < nn && !g->no_fusion; l++) {
    if (norm_grad_pair(g, is_out, fuse_of, run_at, inside, uses, l, A)) continue;
    const ir_node *n = &g->nodes[l];
    if (n->op != IR_LAYERNORM || n->dtype != IR_F32 || fuse_of[l] || inside[l] || run_at[l] != l) continue;
    int x = n->in[0];
    const ir_node *a = &g->nodes[x];
    if (a->op != IR_ADD || a->dtype != IR_F32 || is_out[x] || g->loss == x || fuse_of[x] || inside[x] ||
        run_at[x] != x || first[x] != l)
      continue;
    if (!ir_shape_eq(&g->nodes[a->in[0]].shape, &a->shape) || !ir_shape_eq(&g->nodes[a->in[1]].shape, &a->shape))
      continue;
    for (int q = 0; q < n->nin; q++) /* the add's result reaches the layernorm as its input only */
      if (q > 0 && n->in[q] == x) x = -1;
    if (x < 0) continue;
    cg_group *grp = ar_alloc(A, sizeof *grp);
    memset(grp, 0, sizeof *grp);
    grp->norm = 1, grp->head = l;
    grp->extra[0] = a->in[0], grp->extra[1] = a->in[1], grp->extra[2] = x, grp->nextra = 3;
    fuse_of[l] = grp;
    run_at[x] = l, inside[x] = 1;
  }
}

/* ---- buffer plan ---- */

/* Kernels that read element e of each full-shaped input before writing
 * element e of the result, and nothing else of them: their result may be
 * written in place over a dying input (passes/memplan.c). Part of the
 * optimiser, so off when fusion is (-O0). */
static int elementwise_kernel(const ir_node *n) {
  if (n->dtype != IR_F32) return 0;
  if (n->op == IR_FUSED || (n->op >= IR_ADD && n->op <= IR_DIV) || n->op == IR_MINIMUM) return 1;
  return ir_fusable_op(n->op); /* the float unary maps */
}

/* Nodes whose result is their input's first bytes, so they share its
 * buffer instead of copying: a reshape, a dropout (the identity when it is
 * not training), and a slice that is a prefix of its input (from 0 along an
 * axis with only 1s before it: attention_save's y, the first gradient of a
 * packed backward). */
static int aliasable(const ir_graph *g, const ir_node *n) {
  if (n->op == IR_RESHAPE || n->op == IR_DROPOUT) return 1;
  if (n->op != IR_SLICE || n->attr.start != 0) return 0;
  const ir_shape *x = &g->nodes[n->in[0]].shape;
  if (n->attr.axis < 0 || n->attr.axis >= x->rank) return 0;
  for (int d = 0; d < n->attr.axis; d++)
    if (x->d[d] != 1) return 0;
  return 1;
}

/* Lay out every buffer; the arena itself is allocated only when alloc. */
static void plan_buffers(cg_program *p, const ir_graph *g, arena *A, cg_group **fuse_of, int alloc) {
  int nn = g->nnodes;
  int64_t *bytes = ar_alloc(A, sizeof(int64_t) * (size_t)nn), *scratch = ar_alloc(A, sizeof(int64_t) * (size_t)nn);
  int *keep = ar_alloc(A, sizeof(int) * (size_t)nn), *alias = ar_alloc(A, sizeof(int) * (size_t)nn);
  int *owner = ar_alloc(A, sizeof(int) * (size_t)nn), *run_at = ar_alloc(A, sizeof(int) * (size_t)nn);
  int *is_out = ar_alloc(A, sizeof(int) * (size_t)nn), *inside = ar_alloc(A, sizeof(int) * (size_t)nn);
  char *inplace = ar_alloc(A, (size_t)nn + 1);
  for (int i = 0; i < nn; i++) owner[i] = -1, is_out[i] = 0;
  for (int j = g->noutputs - 1; j >= 0; j--) owner[g->outputs[j].node] = j, is_out[g->outputs[j].node] = 1;
  find_fusions(g, A, is_out, fuse_of, run_at, inside);
  find_siblings(g, A, is_out, fuse_of, run_at, inside);
  find_residual_norms(g, A, is_out, fuse_of, run_at, inside);
  int64_t cbytes = 0;
  for (int i = 0; i < nn; i++) {
    const ir_node *n = &g->nodes[i];
    cg_buf *b = &p->buf[i];
    b->bytes = ir_numel(&n->shape) * (int64_t)ir_dtype_size(n->dtype);
    b->scr = -1;
    alias[i] = -1;
    if (n->op == IR_INPUT || n->op == IR_PARAM) {
      b->kind = n->op == IR_INPUT ? BUF_INPUT : BUF_PARAM;
      b->idx = (int)n->attr.i;
    } else if (n->op == IR_CONST || n->op == IR_ARANGE) {
      b->kind = BUF_CONST;
      b->off = cbytes;
      cbytes += (b->bytes + 63) / 64 * 64;
    } else if (run_at[i] > i && !inside[i]) {
      b->kind = BUF_FUSED;
    } else if (owner[i] >= 0) {
      b->kind = BUF_OUTPUT;
      b->idx = owner[i];
    } else if (aliasable(g, n) && g->loss != i) {
      b->kind = BUF_ALIAS;
      b->idx = alias[i] = n->in[0];
    } else {
      b->kind = BUF_ARENA;
      bytes[i] = b->bytes;
    }
    b->inside = inside[i];
    if ((b->kind == BUF_ARENA || b->kind == BUF_OUTPUT) && !inside[i])
      scratch[i] = cg_scratch_bytes(g, fuse_of[i] ? &g->nodes[fuse_of[i]->head] : n);
    inplace[i] = b->kind == BUF_ARENA && !fuse_of[i] && !inside[i] && !g->no_fusion && elementwise_kernel(n);
    keep[i] = g->loss == i;
  }
  mp_plan plan;
  mp_plan_graph_at(g, A, bytes, scratch, keep, alias, run_at, inplace, &plan);
  for (int i = 0; i < nn; i++) {
    if (p->buf[i].kind == BUF_ARENA) p->buf[i].off = plan.offset[i];
    p->buf[i].scr = plan.scratch_off[i];
  }
  p->st.arena_bytes = plan.arena_bytes;
  p->st.naive_bytes = plan.naive_bytes;
  if (!alloc) return;
  p->arena = aligned_alloc(64, (size_t)(plan.arena_bytes + 64) / 64 * 64);
  p->consts = aligned_alloc(64, (size_t)cbytes + 64);
}

static void store_elem(void *base, ir_dtype t, int64_t i, double v) {
  switch (t) {
  case IR_F32: ((float *)base)[i] = (float)v; break;
  case IR_I32: ((int32_t *)base)[i] = (int32_t)v; break;
  case IR_I64: ((int64_t *)base)[i] = (int64_t)v; break;
  default: ((int8_t *)base)[i] = (int8_t)v; break;
  }
}

static void fill_consts(cg_program *p, const ir_graph *g) {
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    if (p->buf[i].kind != BUF_CONST) continue;
    void *base = p->consts + p->buf[i].off;
    int64_t cnt = ir_numel(&n->shape);
    for (int64_t e = 0; e < cnt; e++)
      store_elem(base, n->dtype, e, n->op == IR_ARANGE ? (double)e : n->data ? n->data[e] : n->attr.f);
  }
}

/* ---- module ---- */

static void kernel_key(const ir_graph *g, const ir_node *n, char *key, size_t kn) {
  const ir_attr *a = &n->attr;
  int w = snprintf(key, kn, "%d|%d|%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld|%d,%d,%d|%.17g|%lld|", n->op, n->nin,
                   (long long)a->axis, (long long)a->k, (long long)a->stride, (long long)a->pad,
                   (long long)a->pad_hi, (long long)a->start, (long long)a->end, (long long)a->heads,
                   (long long)a->n, a->keepdims, a->causal, a->approx, a->f, (long long)a->i);
  for (int l = 0; l < a->nlist && w > 0 && (size_t)w < kn; l++) w += snprintf(key + w, kn - (size_t)w, "%lld,", (long long)a->list[l]);
  /* a fused program: its steps (op, operands, the attributes its code reads) */
  for (int s = 0; n->fusion && s < n->fusion->nsteps && w > 0 && (size_t)w < kn; s++) {
    const ir_fstep *st = &n->fusion->step[s];
    w += snprintf(key + w, kn - (size_t)w, "%d(%d,%d)%.17g,%d;", st->op, st->arg[0], st->nin > 1 ? st->arg[1] : 0,
                  n->fusion->attr[s].f, n->fusion->attr[s].approx);
  }
  for (int j = -1; j < n->nin && w > 0 && (size_t)w < kn; j++) {
    const ir_node *x = j < 0 ? n : &g->nodes[n->in[j]];
    w += snprintf(key + w, kn - (size_t)w, "|%d:", (int)x->dtype);
    for (int d = 0; d < x->shape.rank && w > 0 && (size_t)w < kn; d++)
      w += snprintf(key + w, kn - (size_t)w, "%lld,", (long long)x->shape.d[d]);
  }
}

static void set_fn_attrs(cg_mod *m, V fn) { cg_set_fn_attrs(m, fn); }

/* The nodes a kernel reads, in argument order after its result: the node's
 * inputs, or for a fused group the product's two inputs and the extras. */
static int kernel_inputs(const ir_graph *g, const ir_node *n, const cg_group *grp, int *in) {
  if (grp && grp->multi) { /* the other members' results, then the inputs */
    const cg_multi *mu = grp->multi;
    for (int m = 1; m < mu->n; m++) in[m - 1] = mu->node[m - 1];
    for (int j = 0; j < mu->nin; j++) in[mu->n - 1 + j] = mu->in[j];
    return mu->n - 1 + mu->nin;
  }
  if (!grp) {
    for (int j = 0; j < n->nin; j++) in[j] = n->in[j];
    return n->nin;
  }
  const ir_node *h = &g->nodes[grp->head];
  if (grp->norm == 1) { /* the add's operands, the layernorm's w and b, the add's result (stored) */
    in[0] = grp->extra[0], in[1] = grp->extra[1], in[2] = h->in[1], in[3] = h->in[2], in[4] = grp->extra[2];
    return 5;
  }
  if (grp->norm == 2) { /* the gradient's x, w, dy, then the residual gradient */
    in[0] = h->in[0], in[1] = h->in[1], in[2] = h->in[2], in[3] = grp->extra[0];
    return 4;
  }
  in[0] = h->in[0], in[1] = h->in[1];
  for (int j = 0; j < grp->nextra; j++) in[2 + j] = grp->extra[j];
  return 2 + grp->nextra;
}

/* n: the node whose result the kernel writes; grp: its fused group or NULL;
 * check: flag non-finite results (an output's fused kernel). */
static V emit_kernel(cg_mod *m, const ir_graph *g, const ir_node *n, const cg_group *grp, int check, int idx) {
  cg_k k = {0};
  int in[CG_MAXARGS];
  int nin = kernel_inputs(g, n, grp, in);
  k.m = m;
  k.B = m->B;
  k.g = g;
  k.n = grp && !grp->multi ? &g->nodes[grp->head] : n;
  k.fuse = grp && !grp->multi && !grp->norm ? &grp->f : NULL;
  k.check_finite = check;
  k.nargs = nin + 1;
  LLVMTypeRef params[CG_MAXARGS];
  for (int j = 0; j < nin + 3; j++) params[j] = m->ptr;
  char name[64];
  snprintf(name, sizeof name, "k%d_%s%s", idx, ir_ops[k.n->op].name,
           grp ? grp->multi ? "_multi" : grp->norm ? "_add" : "_fused" : ""); /* k.n: the head */
  k.fn = LLVMAddFunction(m->M, name, LLVMFunctionType(m->vd, params, (unsigned)nin + 3, 0));
  LLVMSetLinkage(k.fn, LLVMInternalLinkage);
  set_fn_attrs(m, k.fn);
  for (int j = 0; j < nin + 1; j++) {
    const ir_node *x = j == 0 ? n : &g->nodes[in[j - 1]];
    k.arg[j] = LLVMGetParam(k.fn, (unsigned)j);
    k.dt[j] = x->dtype;
    k.sh[j] = &x->shape;
    LLVMAddAttributeAtIndex(k.fn, (unsigned)j + 1,
                            LLVMCreateEnumAttribute(m->C, LLVMGetEnumAttributeKindForName("noalias", 7), 0));
  }
  k.scratch = LLVMGetParam(k.fn, (unsigned)nin + 1);
  k.err = LLVMGetParam(k.fn, (unsigned)nin + 2);
  k.entry = LLVMAppendBasicBlockInContext(m->C, k.fn, "entry");
  LLVMPositionBuilderAtEnd(m->B, k.entry);
  LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(m->C, k.fn, "start");
  LLVMBuildBr(m->B, start); /* the entry block holds only allocas */
  LLVMPositionBuilderAtEnd(m->B, start);
  if (grp && grp->multi) cg_emit_fused_multi(&k, grp->multi);
  else if (grp && grp->norm == 1) cg_emit_layernorm_add(&k);
  else if (grp && grp->norm == 2) cg_emit_layernorm_grad_add(&k);
  else if (grp) cg_emit_fused(&k);
  else cg_emitters[n->op](&k);
  LLVMBuildRetVoid(m->B);
  return k.fn;
}

typedef struct {
  const char **key;
  V *fn;
  unsigned cap;
} kernel_table;

static unsigned hash_str(const char *s) {
  unsigned h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

/* ---- profiling: the entry calls lathe_prof_tick(seq) after each kernel ---- */

static _Thread_local cg_program *prof_cur;

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void prof_tick(int32_t seq) {
  cg_program *p = prof_cur;
  if (!p) return;
  double t = now_ns();
  p->prof_ns[seq] += t - p->prof_last;
  p->prof_last = t;
}

/* lathe_forward(bufs, scr, err): every kernel in node order */
/* The dedup key of a kernel: every node it computes, with shapes and
 * attributes, and for a fused group the operand sides. */
static void group_key(const ir_graph *g, const ir_node *n, const cg_group *grp, char *key, size_t kn) {
  if (grp && grp->multi) { /* each member, and where each of its inputs comes from */
    const cg_multi *mu = grp->multi;
    size_t w = (size_t)snprintf(key, kn, "multi%d|", mu->n);
    for (int m = 0; m < mu->n && w + 16 < kn; m++) {
      const ir_node *x = &g->nodes[mu->node[m]];
      kernel_key(g, x, key + w, kn - w);
      w = strlen(key);
      for (int j = 0; j < x->nin && w + 16 < kn; j++) {
        int from = -1;
        for (int q = 0; q < mu->nin; q++) from = mu->in[q] == x->in[j] ? q : from;
        for (int q = 0; q < mu->n; q++) from = mu->node[q] == x->in[j] ? 1000 + q : from;
        w += (size_t)snprintf(key + w, kn - w, "<%d", from);
      }
      w += (size_t)snprintf(key + w, kn - w, "%s#", mu->check[m] ? "!" : "");
    }
    return;
  }
  if (!grp) {
    kernel_key(g, n, key, kn);
    return;
  }
  if (grp->norm) { /* the add, then the layernorm (or the gradient, then the add) */
    size_t w = (size_t)snprintf(key, kn, "norm%d|", grp->norm);
    kernel_key(g, &g->nodes[grp->norm == 1 ? grp->extra[2] : grp->head], key + w, kn - w);
    w = strlen(key);
    kernel_key(g, n, key + w, kn - w);
    return;
  }
  size_t w = 0;
  kernel_key(g, &g->nodes[grp->head], key, kn);
  for (int s = 0; s < grp->f.nsteps && (w = strlen(key)) + 8 < kn; s++) {
    snprintf(key + w, kn - w, "#%d%d%d:", grp->f.kind[s], grp->f.right[s], grp->f.save[s]);
    w = strlen(key);
    for (int j = 0; grp->f.kind[s] == CG_EPI_PROGRAM && j < grp->f.node[s]->nin && w + 8 < kn; j++) {
      snprintf(key + w, kn - w, "%d,", grp->f.parg[s][j]);
      w = strlen(key);
    }
    kernel_key(g, grp->f.node[s], key + w, kn - w);
  }
}

static void build_module(cg_program *p, cg_mod *m, const ir_graph *g, arena *A, cg_group **fuse_of) {
  kernel_table kt = {0};
  kt.cap = 16;
  while (kt.cap < (unsigned)g->nnodes * 2) kt.cap *= 2;
  kt.key = ar_alloc(A, sizeof(char *) * kt.cap);
  kt.fn = ar_alloc(A, sizeof(V) * kt.cap);
  LLVMTypeRef ep[3] = {m->ptr, m->ptr, m->ptr};
  V entry = LLVMAddFunction(m->M, "lathe_forward", LLVMFunctionType(m->vd, ep, 3, 0));
  set_fn_attrs(m, entry);
  LLVMBuilderRef EB = LLVMCreateBuilderInContext(m->C);
  LLVMPositionBuilderAtEnd(EB, LLVMAppendBasicBlockInContext(m->C, entry, "entry"));
  V bufs = LLVMGetParam(entry, 0), scr = LLVMGetParam(entry, 1), err = LLVMGetParam(entry, 2);
  LLVMTypeRef tick_ty = LLVMFunctionType(m->vd, &m->i32, 1, 0);
  V tick = p->prof_node ? LLVMAddFunction(m->M, "lathe_prof_tick", tick_ty) : NULL;
  LLVMTypeRef pp = LLVMPointerType(m->ptr, 0);
  V pbufs = LLVMBuildPointerCast(EB, bufs, pp, ""), pscr = LLVMBuildPointerCast(EB, scr, pp, "");
  char key[4096];
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    int kind = p->buf[i].kind;
    if ((kind != BUF_ARENA && kind != BUF_OUTPUT) || p->buf[i].inside) continue;
    p->st.kernels++;
    const cg_group *grp = fuse_of[i];
    /* An output's standalone fused kernel (every optimizer update) checks
     * its values as it stores them: the training step then needs no pass
     * of its own to know they are finite (cg_run_nonfinite). */
    int check = kind == BUF_OUTPUT && !grp && n->op == IR_FUSED;
    p->buf[i].checked = check;
    for (int q = 0; grp && grp->multi && q < grp->multi->n; q++) p->buf[grp->multi->node[q]].checked = grp->multi->check[q];
    group_key(g, n, grp, key, sizeof key);
    if (check) strncat(key, "|check", sizeof key - strlen(key) - 1);
    unsigned h = hash_str(key) & (kt.cap - 1);
    while (kt.key[h] && strcmp(kt.key[h], key)) h = (h + 1) & (kt.cap - 1);
    if (!kt.key[h]) {
      kt.key[h] = ar_strdup(A, key);
      kt.fn[h] = emit_kernel(m, g, n, grp, check, p->st.kernels_unique++);
    }
    int in[CG_MAXARGS], nin = kernel_inputs(g, n, grp, in);
    V args[CG_MAXARGS];
    for (int j = 0; j <= nin; j++) {
      V idx = LLVMConstInt(m->i64, (unsigned long long)(j == 0 ? i : in[j - 1]), 0);
      args[j] = LLVMBuildLoad2(EB, m->ptr, LLVMBuildGEP2(EB, m->ptr, pbufs, &idx, 1, ""), "");
    }
    V si = LLVMConstInt(m->i64, (unsigned long long)i, 0);
    args[nin + 1] = LLVMBuildLoad2(EB, m->ptr, LLVMBuildGEP2(EB, m->ptr, pscr, &si, 1, ""), "");
    args[nin + 2] = err;
    LLVMBuildCall2(EB, LLVMGlobalGetValueType(kt.fn[h]), kt.fn[h], args, (unsigned)nin + 3, "");
    if (grp && p->op_names) p->op_names[i] = grp->multi     ? "fused siblings"
                                                       : grp->norm == 1 ? "add+layernorm"
                                                       : grp->norm == 2 ? "layernorm_grad+add"
                                                                        : "matmul+fused";
    if (p->prof_node) {
      V seq = LLVMConstInt(m->i32, (unsigned long long)(p->st.kernels - 1), 0);
      p->prof_node[p->st.kernels - 1] = i;
      LLVMBuildCall2(EB, tick_ty, tick, &seq, 1, "");
    }
  }
  LLVMBuildRetVoid(EB);
  LLVMDisposeBuilder(EB);
}

/* ---- optimisation and JIT ---- */

static int verify(LLVMModuleRef M, char *msg, size_t msgn) {
  char *vmsg = NULL;
  if (LLVMVerifyModule(M, LLVMReturnStatusAction, &vmsg)) {
    ir_fail(msg, msgn, "llvm backend: internal error: invalid module: %.400s", vmsg ? vmsg : "?");
    LLVMDisposeMessage(vmsg);
    return -1;
  }
  LLVMDisposeMessage(vmsg);
  return 0;
}

/* lathe_parallel_for: a parallel loop of generated code on the runtime
 * pool (the only threads a program uses: OpenBLAS runs single-threaded,
 * and lathe_sgemm splits big products over the same pool). */
static void parallel_for(int64_t n, int64_t grain, void *body, void *cap) {
  rt_pool_fn fn;
  *(void **)&fn = body;
  rt_pool_for(n, grain, fn, cap);
}

/* Symbols the generated code calls, resolved to this process's copies. */
static int define_host_symbols(LLVMOrcLLJITRef J, char *msg, size_t msgn) {
  static const struct {
    const char *name;
    void *addr;
  } syms[] = {
    {"lathe_sgemm", (void *)rt_sgemm}, {"expf", (void *)expf}, {"logf", (void *)logf},
    {"tanhf", (void *)tanhf}, {"erfcf", (void *)erfcf}, {"powf", (void *)powf}, {"log1pf", (void *)log1pf},
    {"memcpy", (void *)memcpy}, {"memset", (void *)memset}, {"memmove", (void *)memmove},
    {"lathe_prof_tick", (void *)prof_tick}, {"lathe_parallel_for", (void *)parallel_for},
    {"lathe_attn_fwd", (void *)cg_attn_fwd_rt}, {"lathe_attn_grad", (void *)cg_attn_grad_rt},
    {"lathe_rec_grad", (void *)cg_rec_grad_rt},
  };
  enum { NS = sizeof syms / sizeof syms[0] };
  __typeof__(*(LLVMOrcCSymbolMapPairs)0) pairs[NS];
  for (int i = 0; i < NS; i++) {
    pairs[i].Name = LLVMOrcLLJITMangleAndIntern(J, syms[i].name);
    pairs[i].Sym.Address = (LLVMOrcExecutorAddress)(uintptr_t)syms[i].addr;
    pairs[i].Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
    pairs[i].Sym.Flags.TargetFlags = 0;
  }
  LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(J);
  LLVMErrorRef e = LLVMOrcJITDylibDefine(jd, LLVMOrcAbsoluteSymbols(pairs, NS));
  if (e) return llvm_fail(e, msg, msgn, "defining host symbols");
  LLVMOrcDefinitionGeneratorRef gen;
  e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(J), NULL, NULL);
  if (e) return llvm_fail(e, msg, msgn, "process symbol search");
  LLVMOrcJITDylibAddGenerator(jd, gen);
  return 0;
}

/* A fresh LLJIT that links every object (each taken) against the host
 * symbols and each other: the entry calls kernels of other parts by name.
 * One thread drives the JIT; only making the objects was parallel. */
static int jit_objects(cg_program *p, cg_objects *objs, char *msg, size_t msgn) {
  double t0 = now_ms();
  LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
  LLVMErrorRef e = LLVMOrcCreateLLJIT(&p->jit, jb); /* takes the builder */
  if (e) {
    p->jit = NULL;
    return llvm_fail(e, msg, msgn, "creating the JIT");
  }
  if (define_host_symbols(p->jit, msg, msgn)) return -1;
  LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(p->jit);
  for (int i = 0; i < objs->nobj; i++) {
    LLVMMemoryBufferRef obj = objs->obj[i];
    objs->obj[i] = NULL; /* the JIT owns it now, even on failure */
    e = LLVMOrcLLJITAddObjectFile(p->jit, jd, obj);
    if (e) return llvm_fail(e, msg, msgn, "adding an object");
  }
  LLVMOrcExecutorAddress addr = 0;
  e = LLVMOrcLLJITLookup(p->jit, &addr, "lathe_forward");
  if (e) return llvm_fail(e, msg, msgn, "linking");
  *(void **)&p->forward = (void *)(uintptr_t)addr;
  p->st.jit_ms = now_ms() - t0;
  return 0;
}

/* Objects for M (taken): verified, split, optimised, generated or cached. */
static int module_objects(cg_program *p, LLVMModuleRef M, const cg_target *t, cg_objects *objs, char *msg,
                          size_t msgn) {
  if (cg_module_target(M, t, msg, msgn) || verify(M, msg, msgn)) {
    LLVMDisposeModule(M);
    return -1;
  }
  int rc = cg_module_objects(M, t, objs, msg, msgn);
  p->st.parse_ms += objs->prep_ms;
  p->st.llvm_opt_ms = objs->opt_ms;
  p->st.codegen_ms = objs->codegen_ms;
  p->st.cache_hit = objs->nobj > 0 && objs->hits == objs->nobj;
  p->st.parts = objs->nobj;
  p->ir_text = objs->ir_text;
  objs->ir_text = NULL;
  return rc;
}

/* ---- public ---- */

static int check_graph(const ir_graph *g, char *msg, size_t msgn) {
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    const char *why = cg_unsupported(g, n);
    if (why)
      return ir_fail(msg, msgn, "%s:%d:%d: error: llvm backend cannot compile '%s': %s", n->loc.file ? n->loc.file : "<graph>",
                  n->loc.line, n->loc.col, n->op >= 0 && n->op < IR_NOPS ? ir_ops[n->op].name : "?", why);
  }
  for (int j = 0; j < g->nparams; j++)
    if (g->params[j].dtype != IR_F32) return ir_fail(msg, msgn, "llvm backend: parameter '%s' is not f32", g->params[j].name);
  return 0;
}

static cg_program *program_new(const ir_graph *g) {
  cg_program *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  size_t nn = (size_t)(g->nnodes ? g->nnodes : 1);
  p->nnodes = g->nnodes;
  p->ninputs = g->ninputs;
  p->nparams = g->nparams;
  p->noutputs = g->noutputs;
  p->loss = g->loss;
  p->buf = calloc(nn, sizeof *p->buf);
  p->bufs = calloc(nn, sizeof(void *));
  p->scr = calloc(nn, sizeof(void *));
  p->out_node = calloc((size_t)g->noutputs + 1, sizeof(int));
  if (!p->buf || !p->bufs || !p->scr || !p->out_node) {
    cg_free(p);
    return NULL;
  }
  for (int j = 0; j < g->noutputs; j++) p->out_node[j] = g->outputs[j].node;
  return p;
}

static int env_profile(void) {
  const char *e = getenv("LATHE_PROFILE");
  return e && *e && strcmp(e, "0") != 0;
}

static int prof_alloc(cg_program *p, const ir_graph *g) {
  size_t nn = (size_t)(g->nnodes ? g->nnodes : 1);
  p->prof_node = calloc(nn, sizeof *p->prof_node);
  p->prof_ns = calloc(nn, sizeof *p->prof_ns);
  p->op_names = calloc(nn, sizeof *p->op_names);
  if (!p->prof_node || !p->prof_ns || !p->op_names) return -1;
  for (int i = 0; i < g->nnodes; i++) {
    int op = g->nodes[i].op;
    p->op_names[i] = op >= 0 && op < IR_NOPS ? ir_ops[op].name : "?";
  }
  return 0;
}

/* Plan, build the module and compile it into p (fresh, owning everything). */
static int compile_into(cg_program *p, const ir_graph *g, const cg_options *o, char *msg, size_t msgn) {
  arena A;
  ar_init(&A);
  double t0 = now_ms();
  cg_group **fuse_of = ar_alloc(&A, sizeof(cg_group *) * (size_t)(g->nnodes ? g->nnodes : 1));
  plan_buffers(p, g, &A, fuse_of, 1);
  if (!p->arena || !p->consts) {
    ar_free(&A);
    return ir_fail(msg, msgn, "llvm backend: out of memory for the activation arena");
  }
  fill_consts(p, g);
  char *triple = LLVMGetDefaultTargetTriple(), *cpu = LLVMGetHostCPUName(), *feat = LLVMGetHostCPUFeatures();
  int rc = cg_host_check(feat, msg, msgn);
  LLVMOrcThreadSafeContextRef tsc = NULL;
  cg_objects objs = {0};
  if (rc == 0) {
    tsc = LLVMOrcCreateNewThreadSafeContext();
    cg_mod m = {0};
    m.C = LLVMOrcThreadSafeContextGetContext(tsc);
    m.M = LLVMModuleCreateWithNameInContext("lathe", m.C);
    m.B = LLVMCreateBuilderInContext(m.C);
    m.cpu = cpu;
    m.features = feat;
    m.vw = strstr(feat, "+avx512f") ? 16 : strstr(feat, "+avx") ? 8 : 4;
    cg_mod_types(&m);
    build_module(p, &m, g, &A, fuse_of);
    LLVMDisposeBuilder(m.B);
    p->st.parse_ms = now_ms() - t0;
    cg_target t = {triple, cpu, feat, o->opt_level, o->keep_ir, !o->no_cache, o->threads};
    rc = module_objects(p, m.M, &t, &objs, msg, msgn); /* takes m.M */
  }
  ar_free(&A);
  if (rc == 0) rc = jit_objects(p, &objs, msg, msgn);
  cg_objects_free(&objs);
  if (tsc) LLVMOrcDisposeThreadSafeContext(tsc);
  LLVMDisposeMessage(triple);
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(feat);
  return rc;
}

/* Hand what p compiled to a new code object (p keeps pointers to it). On
 * failure p stays the sole owner, unshared. */
static cg_code *code_of(cg_program *p) {
  cg_code *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->sh.refs = 1;
  c->jit = p->jit, c->forward = p->forward;
  c->nnodes = p->nnodes, c->ninputs = p->ninputs, c->nparams = p->nparams;
  c->noutputs = p->noutputs, c->loss = p->loss;
  c->buf = p->buf, c->out_node = p->out_node, c->consts = p->consts, c->ir_text = p->ir_text;
  c->st = p->st;
  p->code = c;
  return c;
}

static void code_free(cg_code *c) {
  if (c->jit) {
    LLVMErrorRef e = LLVMOrcDisposeLLJIT(c->jit);
    if (e) LLVMConsumeError(e);
  }
  free(c->buf);
  free(c->out_node);
  free(c->consts);
  free(c->ir_text);
  free(c);
}

/* A program on shared code c (whose reference it takes): its own arena and
 * buffer tables, the same size as the first program's. */
static cg_program *program_on(cg_code *c, char *msg, size_t msgn) {
  cg_program *p = calloc(1, sizeof *p);
  size_t nn = (size_t)(c->nnodes ? c->nnodes : 1);
  if (p) {
    p->code = c;
    p->jit = c->jit, p->forward = c->forward;
    p->nnodes = c->nnodes, p->ninputs = c->ninputs, p->nparams = c->nparams;
    p->noutputs = c->noutputs, p->loss = c->loss;
    p->buf = c->buf, p->out_node = c->out_node, p->consts = c->consts, p->ir_text = c->ir_text;
    p->st = c->st;
    p->st.parse_ms = p->st.llvm_opt_ms = p->st.codegen_ms = p->st.jit_ms = 0;
    p->st.cache_hit = 0;
    p->st.shared = 1;
    p->bufs = calloc(nn, sizeof(void *));
    p->scr = calloc(nn, sizeof(void *));
    p->arena = aligned_alloc(64, (size_t)(c->st.arena_bytes + 64) / 64 * 64); /* as plan_buffers sizes it */
  }
  if (!p || !p->bufs || !p->scr || !p->arena) {
    if (p) cg_free(p);
    else if (cg_memo_release(&c->sh)) code_free(c);
    ir_fail(msg, msgn, "llvm backend: out of memory for the activation arena");
    return NULL;
  }
  return p;
}

cg_program *cg_compile(const ir_graph *g, const cg_options *o, char *msg, size_t msgn) {
  cg_options opts = {.opt_level = 2};
  if (o) opts = *o;
  if (env_profile()) opts.profile = 1;
  if (msg && msgn) msg[0] = '\0';
  /* per-program state (the profile) and kept text are not shared */
  int share = !opts.keep_ir && !opts.profile && !opts.no_cache;
  cg_shared *s = share ? cg_memo_find(g, opts.opt_level, opts.threads) : NULL;
  if (s) return program_on((cg_code *)s, msg, msgn);
  if (cg_init_llvm(msg, msgn) || check_graph(g, msg, msgn)) return NULL;
  rt_blas_single(); /* before any kernel runs: the pool owns the cores */
  cg_program *p = program_new(g);
  if (p && opts.profile && prof_alloc(p, g)) {
    cg_free(p);
    p = NULL;
  }
  if (!p) {
    ir_fail(msg, msgn, "llvm backend: out of memory");
    return NULL;
  }
  if (compile_into(p, g, &opts, msg, msgn)) {
    cg_free(p);
    return NULL;
  }
  cg_code *c = code_of(p);
  if (c && share) cg_memo_add(&c->sh, g, opts.opt_level, opts.threads);
  return p;
}

int cg_run(cg_program *p, void *const *inputs, void *const *params, void *const *outputs, float *loss, char *msg,
           size_t msgn) {
  for (int i = 0; i < p->nnodes; i++) {
    cg_buf *b = &p->buf[i];
    void *v = NULL;
    switch (b->kind) {
    case BUF_ARENA: v = p->arena + b->off; break;
    case BUF_INPUT: v = inputs[b->idx]; break;
    case BUF_PARAM: v = params[b->idx]; break;
    case BUF_CONST: v = p->consts + b->off; break;
    case BUF_OUTPUT: v = outputs[b->idx]; break;
    case BUF_ALIAS: v = p->bufs[b->idx]; break;
    case BUF_FUSED: v = NULL; break;
    }
    p->bufs[i] = v;
    p->scr[i] = b->scr >= 0 ? p->arena + b->scr : NULL;
  }
  int32_t err = 0;
  if (p->prof_node) {
    prof_cur = p;
    p->prof_runs++;
    p->prof_last = now_ns();
  }
  p->forward(p->bufs, p->scr, &err);
  prof_cur = NULL;
  for (int j = 0; j < p->noutputs; j++) {
    int n = p->out_node[j];
    if (p->bufs[n] != outputs[j]) memcpy(outputs[j], p->bufs[n], (size_t)p->buf[n].bytes);
  }
  if (loss && p->loss >= 0) *loss = *(const float *)p->bufs[p->loss];
  static const char *const why[] = {"", "an embedding id is out of range", "a label is out of range for the classes",
                                    "integer division by zero"};
  p->nonfinite = (err & CG_ERR_NONFINITE) != 0;
  err &= ~CG_ERR_NONFINITE;
  if (err) return ir_fail(msg, msgn, "run: %s", err > 0 && err < 4 ? why[err] : "bad data");
  return 0;
}

void cg_free(cg_program *p) {
  if (!p) return;
  free(p->bufs);
  free(p->scr);
  free(p->arena);
  free(p->prof_node);
  free(p->prof_ns);
  free(p->op_names);
  if (p->code) { /* the code goes with its last program */
    if (cg_memo_release(&p->code->sh)) code_free(p->code);
  } else {
    if (p->jit) {
      LLVMErrorRef e = LLVMOrcDisposeLLJIT(p->jit);
      if (e) LLVMConsumeError(e);
    }
    free(p->buf);
    free(p->out_node);
    free(p->consts);
    free(p->ir_text);
  }
  free(p);
}

void cg_get_stats(const cg_program *p, cg_stats *st) { *st = p->st; }

int cg_output_checked(const cg_program *p, int j) {
  return j >= 0 && j < p->noutputs && p->buf[p->out_node[j]].checked;
}

int cg_run_nonfinite(const cg_program *p) { return p->nonfinite; }

int cg_plan_stats(const ir_graph *g, int64_t *arena_bytes, int64_t *naive_bytes) {
  cg_program *p = program_new(g);
  if (!p) return -1;
  arena A;
  ar_init(&A);
  cg_group **fuse_of = ar_alloc(&A, sizeof(cg_group *) * (size_t)(g->nnodes ? g->nnodes : 1));
  plan_buffers(p, g, &A, fuse_of, 0);
  *arena_bytes = p->st.arena_bytes;
  *naive_bytes = p->st.naive_bytes;
  ar_free(&A);
  cg_free(p);
  return 0;
}

char *cg_module_text(const cg_program *p) { return p->ir_text ? strdup(p->ir_text) : NULL; }

/* ---- the profile table ---- */

typedef struct {
  const char *name;
  double ns;
  int calls; /* per operator: kernel calls; per kernel call: its node */
} prof_row;

static int prof_cmp(const void *a, const void *b) {
  double x = ((const prof_row *)a)->ns, y = ((const prof_row *)b)->ns;
  return x < y ? 1 : x > y ? -1 : 0;
}

static void prof_append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void prof_append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
  if (!*buf) return;
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
  va_end(ap);
  if (w > 0) *len += (size_t)w < *cap - *len ? (size_t)w : *cap - *len - 1;
}

char *cg_profile_text(const cg_program *p) {
  if (!p->prof_node) return NULL;
  int nk = p->st.kernels;
  prof_row *ops = calloc((size_t)nk + 1, sizeof *ops), *ks = calloc((size_t)nk + 1, sizeof *ks);
  size_t cap = 4096 + (size_t)nk * 8, len = 0;
  char *buf = malloc(cap);
  if (!ops || !ks || !buf) {
    free(ops), free(ks), free(buf);
    return NULL;
  }
  buf[0] = '\0';
  double runs = p->prof_runs > 0 ? (double)p->prof_runs : 1, total = 0;
  int nops = 0;
  for (int s = 0; s < nk; s++) {
    const char *name = p->op_names[p->prof_node[s]];
    double ns = p->prof_ns[s] / runs;
    total += ns;
    ks[s] = (prof_row){name, ns, p->prof_node[s]};
    int j = 0;
    while (j < nops && strcmp(ops[j].name, name)) j++;
    if (j == nops) ops[nops++] = (prof_row){name, 0, 0};
    ops[j].ns += ns;
    ops[j].calls++;
  }
  qsort(ops, (size_t)nops, sizeof *ops, prof_cmp);
  qsort(ks, (size_t)nk, sizeof *ks, prof_cmp);
  prof_append(&buf, &len, &cap, "profile: %lld run(s), %.3f ms per run in %d kernel calls\n", (long long)p->prof_runs,
              total / 1e6, nk);
  prof_append(&buf, &len, &cap, "  %-16s %6s %12s %6s\n", "operator", "calls", "ms/run", "%");
  for (int j = 0; j < nops; j++)
    prof_append(&buf, &len, &cap, "  %-16s %6d %12.3f %5.1f%%\n", ops[j].name, ops[j].calls, ops[j].ns / 1e6,
                total > 0 ? 100 * ops[j].ns / total : 0);
  /* LATHE_PROFILE=N (N > 8) lists the N slowest calls instead of 8 */
  const char *e = getenv("LATHE_PROFILE");
  int top = e && atoi(e) > 8 ? atoi(e) : 8;
  prof_append(&buf, &len, &cap, "  slowest kernel calls:\n");
  for (int s = 0; s < nk && s < top; s++)
    prof_append(&buf, &len, &cap, "    node %-6d %-16s %10.3f ms\n", ks[s].calls, ks[s].name, ks[s].ns / 1e6);
  free(ops);
  free(ks);
  return buf;
}
