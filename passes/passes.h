/* passes.h -- graph passes that run between the IR and a backend. Sections are
 * named after the file that defines them. */
#ifndef LATHE_PASSES_H
#define LATHE_PASSES_H

#include "ir.h"

/* ---- passes/memplan.c: the static memory plan ----
 * Every intermediate tensor lives in one arena. A tensor's bytes become
 * reusable after the last node that reads it has run (liveness over the
 * node order, which is a topological order); new tensors take the smallest
 * free gap that fits (best fit), else grow the arena. Offsets are 64-byte
 * aligned. A node's result never shares bytes with its own inputs or its
 * scratch, so kernels need not be written to work in place -- except where
 * the backend says a kernel is elementwise (inplace below).
 *
 * Inputs, per node i (arrays of g->nnodes):
 *   bytes[i]    bytes of node i's result if it lives in the arena, 0 if it
 *               does not (leaves, caller-owned outputs, aliases)
 *   scratch[i]  temporary bytes node i needs while it runs (0 = none)
 *   keep[i]     non-zero: the result must survive to the end (e.g. the loss)
 *   alias[i]    -1, or the node whose buffer node i reuses as its own (a
 *               reshape that moves no data); that buffer then lives until
 *               node i's last use too. May be NULL (no aliases).
 */
typedef struct {
  int64_t *offset;       /* per node: arena offset of the result, -1 = none */
  int64_t *scratch_off;  /* per node: arena offset of its scratch, -1 = none */
  int64_t arena_bytes;   /* planned peak */
  int64_t naive_bytes;   /* sum of every planned tensor and scratch */
  int inplace;           /* results written over a dying input (see inplace below) */
} mp_plan;

void mp_plan_graph(const ir_graph *g, arena *A, const int64_t *bytes, const int64_t *scratch,
                   const int *keep, const int *alias, mp_plan *out);
/* The same, where node i's kernel runs (reads its inputs) at position
 * run_at[i] >= i instead of i: a backend that fuses a node into a later
 * one's kernel says so here, so the inputs stay live until then. run_at may
 * be NULL. */
void mp_plan_graph_at(const ir_graph *g, arena *A, const int64_t *bytes, const int64_t *scratch,
                      const int *keep, const int *alias, const int *run_at, const char *inplace, mp_plan *out);
/* inplace (may be NULL): inplace[i] non-zero says node i's kernel is
 * elementwise -- it reads each element of a same-shaped input before it
 * writes the same element of its result -- so its result may take over the
 * buffer of an input whose last reader it is (no new block, and the peak
 * drops). The planner checks liveness, size and aliases. */

/* ---- passes/autodiff.c: reverse-mode differentiation ----
 * Appends the backward graph of g->loss to g. params: indices into g->params
 * to differentiate (NULL = every floating-point parameter; nparams ignored).
 * On success g->grads[i] is the node of d loss / d params[i] (-1 for those
 * not asked for) and, when as_outputs, each is also an output named
 * "grad.<param name>". Returns 0, or -1 with a message (no loss, a gradient
 * asked through an integer path, ...); g is then not usable for training. */
int ad_backward(ir_graph *g, const int *params, int nparams, int as_outputs, char *msg, size_t msgn);
/* Whether autodiff has a rule for op (leaves and backward ops have none). */
int ad_differentiable(int op);

/* ---- passes/rewrite.c: rebuilding a graph through a node map ----
 * Every graph pass edits nodes in place (only ever pointing a node at
 * earlier nodes) and then records, per node, what becomes of it:
 *   repl[i] == i    node i stays
 *   repl[i] == j<i  every use of node i (inputs, outputs, loss, grads) reads
 *                   node j instead, and node i goes
 *   repl[i] == -1   node i goes; nothing that stays may use it
 * rw_rebuild then compacts g->nodes (ids stay a topological order) and
 * renumbers inputs, g->inputs/params (same order, so the program's tables
 * keep their meaning), outputs, loss and grads. INPUT and PARAM leaves are
 * the program's interface and are never dropped. Returns 0, or -1 with a
 * message when the map is inconsistent (a bug in the pass). */
int rw_rebuild(ir_graph *g, const int *repl, char *msg, size_t msgn);
/* For a pass that appended nodes (ir_add) and pointed earlier readers at
 * them: a topological order again, which keeps every node where it was
 * unless an input of it now comes later, and then moves that input (and
 * what it reads) up to just before its first reader. Nodes with drop[i]
 * set (drop may be NULL) go; nothing may read them. Tables renumbered as
 * rw_rebuild does. 0, or -1 with a message. */
int rw_reorder(ir_graph *g, const char *drop, char *msgbuf, size_t msgn);
/* Put g's nodes in `order`, a permutation of 0..nnodes-1 in which every
 * node comes after its inputs (else -1 with a message, g unchanged);
 * newid (nnodes entries, or NULL) receives each old id's new one. Tables
 * renumbered as rw_rebuild does. */
int rw_permute(ir_graph *g, const int *order, int *newid, char *msgbuf, size_t msgn);
/* A fresh identity map (repl[i] = i) in g's arena. */
int *rw_identity(ir_graph *g);
/* Resolve node id through repl chains (repl[x] < x) to the node that stays. */
int rw_resolve(const int *repl, int id);
/* Whether node id is a constant leaf: CONST or ARANGE. */
int rw_is_const(const ir_graph *g, int id);
/* Whether every element of constant node id equals v (false for non-CONST). */
int rw_const_all(const ir_graph *g, int id, double v);

/* ---- the graph passes, one file each (passes/<name>.c) ----
 * Each rewrites g in place and returns how many rewrites it made (0: the
 * graph is unchanged, node for node), or -1 with a message. */
int ps_constfold(ir_graph *g, char *msg, size_t msgn); /* constfold.c: ops on constants -> constants */
int ps_cse(ir_graph *g, char *msg, size_t msgn);       /* cse.c: identical nodes -> one */
int ps_dce(ir_graph *g, char *msg, size_t msgn);       /* dce.c: drop what no output/loss/grad needs */
int ps_simplify(ir_graph *g, char *msg, size_t msgn);  /* simplify.c: algebraic identities */
int ps_fuse(ir_graph *g, char *msg, size_t msgn);      /* fuse.c: elementwise trees -> one IR_FUSED node */
int ps_attnsave(ir_graph *g, char *msg, size_t msgn);  /* attnsave.c: attention's backward reads its forward's work */
int ps_foldbn(ir_graph *g, char *msg, size_t msgn);
/* quantize.c: matmul(x, W) of a weight W [K, N] becomes qmatmul(x, stored
 * weights) in mode g->quant (nothing when 0); W leaves the parameters and
 * its quantized tensors (qz_tensor names) join them. */
int ps_quantize(ir_graph *g, char *msg, size_t msgn);
/* quantize_qdq.c (static int8 only): qdq_place puts quantize nodes before
 * the int8 products and makes a product whose output another quantizes
 * write int8 followed by a dequantize; qdq_fold folds each dequantize
 * [-> relu] -> quantize pair into the product before it and returns the
 * remaining quantize nodes into their products' kernels. */
int ps_qdq_place(ir_graph *g, char *msg, size_t msgn);
int ps_qdq_fold(ir_graph *g, char *msg, size_t msgn);
/* The modes: "w8", "w4", "int8-dynamic", "bf16", "f16", "int8" (LATHE_RT_Q_*
 * order from 1); -1 unknown. */
int qz_mode_parse(const char *name);
const char *qz_mode_name(int mode);
/* Suffix of quantized tensor k (0 weights, 1 scales, 2 offsets) of mode;
 * NULL when the mode has no such tensor. W's are W's name + the suffix. */
const char *qz_suffix(int mode, int k);
/* Why W (param index) stays f32 in mode, or NULL when it is quantized. */
const char *qz_keep_reason(const ir_graph *g, int param, int mode);
/* The kernel (LATHE_RT_ISA_*) of a static int8 product on a CPU whose best
 * integer kernel is isa: LATHE_RT_ISA_F32 where int8 would lose to f32. */
int64_t qz_s8_kernel(int64_t isa);
/* quantize_cost.c: why a dense product of M rows by K inputs in mode on
 * kernel isa (as the pass picks it) would be slower than its f32 version,
 * from a table measured per feature set; NULL when it is not. The pass then
 * keeps the layer in f32 (ir_param.from_quant). */
const char *qz_slow_reason(int mode, int64_t isa, int64_t M, int64_t K);
/* quantize_conv.c: conv2d weights in int8-dynamic and static int8 (the
 * pass's qconv2d). qz_conv_mode: the mode quantizes conv weights;
 * qz_weight_kn: W's product shape (a conv's [O, C, KH, KW] is K = C*KH*KW,
 * N = O); qz_conv_keep_reason: qz_keep_reason for a rank-3/4 weight;
 * qz_conv_node: qconv2d of conv node j with the stored tensors in[1..3];
 * qz_conv_fold_relu: each qconv2d's only reader relu into its epilogue. */
/* the one reader of node v (-1: none, several, or an output or the loss) */
int qz_sole_reader(const ir_graph *g, int v);
void qz_take_readers(ir_graph *g, int v, int f);
int qz_conv_mode(int mode);
void qz_weight_kn(const ir_param *p, int64_t *K, int64_t *N);
const char *qz_conv_keep_reason(const ir_graph *g, int param, int mode);
int qz_conv_node(ir_graph *g, int j, int in[4], int mode, int64_t isa, char *msg, size_t mn);
int qz_conv_fold_relu(ir_graph *g, char *msg, size_t mn);
    /* foldbn.c: inference batchnorm into the conv2d/dense before it */
/* prune.c: pruning's graph side (runtime/api_prune.c, docs/prune.md).
 * pr_prunable: W (param index) is read only as the weight of dense products
 * or convolutions. ps_mask: every such W is read as mul(W, W.mask), W.mask a
 * buffer (not trained, no gradient), so a fine-tuning step keeps W's pruned
 * entries at zero in everything it computes. */
#define PR_MASK_SUFFIX ".mask"
int pr_prunable(const ir_graph *g, int param);
int ps_mask(ir_graph *g, char *msg, size_t msgn);
/* Structured pruning's plan: the layers whose units (dense neurons, conv
 * channels, attention heads) can go, and every parameter axis that indexes a
 * layer's units (its weight and bias, a batchnorm's statistics after it, the
 * weight of the layer reading it; through flatten a unit owns `group`
 * consecutive entries; an attention head owns hd columns in each of the
 * q, k and v blocks of qkv: `blocks` blocks `stride` apart). A layer that
 * cannot be resized has units 0 and why set. */
#define PR_MAXLAYERS 64
#define PR_MAXSLICES 256
typedef struct {
  int node, weight, bias, conv;   /* the product node, its W and bias (-1: none) */
  int attn, proj;                 /* attention: heads are the units; qkv (or q) is weight (-1: none), proj.weight proj */
  int64_t units, hd;              /* hd: an attention head's width */
  ir_loc loc;                     /* the layer's call in the source */
  const char *why;                /* why it stays whole (NULL: prunable) */
} pr_layer;
typedef struct {
  int param, dim;
  int64_t group, blocks, stride;  /* unit u owns entries b stride + u group + [0, group), b < blocks */
  int layer;
} pr_slice;
typedef struct {
  pr_layer layers[PR_MAXLAYERS];
  int nlayers;
  pr_slice slices[PR_MAXSLICES];
  int nslices;
} pr_plan;
int pr_structure(const ir_graph *g, pr_plan *pl);
/* Fold limit: results up to this many elements are always folded; larger
 * ones only when no larger than the constants they are computed from. */
#define CF_MAX_ELEMS 4096

/* ---- passes/pipeline.c: the pass manager ----
 * A pipeline is a list of pass names, chosen by level (-O0..-O3) or given
 * explicitly ("constfold,cse,dce"). ir_verify runs after every pass when
 * verify is set (debug builds and LATHE_VERIFY=1 set it too). */
typedef struct {
  int nodes;           /* every node */
  int kernels;         /* non-leaf nodes: one kernel each before fusion */
  int64_t bytes;       /* memory traffic: per kernel, its inputs read + its result written */
} pm_cost;

typedef struct {
  int level;               /* 0..3; used when passes is NULL */
  const char *passes;      /* explicit comma-separated list, or NULL */
  const char *print_after; /* print the graph (ir_print) to log after this pass, or NULL */
  const char *dump_dir;    /* write NN-pass.txt and NN-pass.dot here after every pass, or NULL */
  int time_passes;         /* per-pass times to log */
  int verify;              /* ir_verify after every pass */
  FILE *log;               /* print_after and time_passes write here (NULL: stderr) */
} pm_options;

#define PM_MAX_LEVEL 3
void pm_graph_cost(const ir_graph *g, pm_cost *c);
/* Run the pipeline on g; before/after (may be NULL) receive the costs.
 * Errors: an unknown pass name or level, an unwritable dump directory (the
 * message says which), or a pass that broke the graph (a bug). */
int pm_run(ir_graph *g, const pm_options *o, pm_cost *before, pm_cost *after, char *msg, size_t msgn);
/* The pass names of a level as a comma-separated list ("" for -O0). */
const char *pm_level_passes(int level);
/* Whether name is a known pass. */
int pm_pass_known(const char *name);

#endif
