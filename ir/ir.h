/* ir.h -- the internal header of Lathe's middle: arena, dtypes, shapes, the
 * static graph, the op table, verifier, printers, statistics and the
 * reference interpreter. Sections are named after the file that defines them.
 *
 * Conventions: shapes are row-major; a tensor of rank 0 is a scalar. Every
 * shape in a graph is static (symbolic dimensions are bound by the frontend
 * before any node exists). Node ids are indices into g->nodes and every input
 * of a node has a smaller id than the node (the node array is a topological
 * order).
 */
#ifndef LATHE_IR_H
#define LATHE_IR_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- ir/arena.c: bump allocation for everything that lives as long as a
 * compilation. Freed all at once; allocation failure aborts (internal tier). */
typedef struct ar_block ar_block;
typedef struct arena {
  ar_block *head;
  size_t used_total;
} arena;

void ar_init(arena *a);
void ar_free(arena *a);
void *ar_alloc(arena *a, size_t n);            /* zeroed, 16-byte aligned */
char *ar_strdup(arena *a, const char *s);
char *ar_strndup(arena *a, const char *s, size_t n);
char *ar_printf(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Internal errors (bugs, not user errors): print file:line and abort. */
#define IR_UNREACHABLE(msg) ir_die(__FILE__, __LINE__, msg)
void ir_die(const char *file, int line, const char *msg) __attribute__((noreturn));
/* The user-error tier: format a message into msg[0..n) (when msg is non-NULL)
 * and return -1, so checks read `return ir_fail(msg, n, "...", ...)`. */
int ir_fail(char *msg, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- ir/dtype.c ---- */
typedef enum {
  IR_F32, IR_F16, IR_BF16, IR_I32, IR_I64, IR_I8, IR_U8, IR_BOOL,
  IR_NDTYPES
} ir_dtype;

const char *ir_dtype_name(ir_dtype t);          /* "f32" ... */
int ir_dtype_parse(const char *s, ir_dtype *out); /* 0 ok, -1 unknown */
size_t ir_dtype_size(ir_dtype t);
int ir_dtype_is_float(ir_dtype t);
int ir_dtype_is_int(ir_dtype t);                /* i32 i64 i8 u8 bool */

/* ---- ir/shape.c ---- */
#define IR_MAXDIM 8
/* Largest element count accepted for one tensor: 2^40 elements. Keeps every
 * byte count and flop count well inside int64. */
#define IR_MAX_ELEMS ((int64_t)1 << 40)

typedef struct {
  int rank;
  int64_t d[IR_MAXDIM];
} ir_shape;

int64_t ir_numel(const ir_shape *s);
/* attention_save's result size, [y | qkv | ctx | lse], for x[B, T, d] and H heads (ir/shape_seq_grad.c) */
int64_t ir_attention_saved_numel(int64_t B, int64_t T, int64_t d, int64_t H);
int ir_shape_eq(const ir_shape *a, const ir_shape *b);
/* "[2, 3, 4]" into buf; returns buf */
char *ir_shape_str(const ir_shape *s, char *buf, size_t n);
/* NumPy broadcast of a and b into out; -1 if incompatible. */
int ir_broadcast(const ir_shape *a, const ir_shape *b, ir_shape *out);

/* matmul's transpose flags, in its attr.i (ops.def): the operand's last
 * two axes are swapped before the product (folded in by passes/simplify.c). */
#define IR_MM_TA 1
#define IR_MM_TB 2

/* ---- ir/ops.c: the op table ---- */
typedef enum {
#define OP(e, name, arity, cat, shape) IR_##e,
#include "ops.def"
#undef OP
  IR_NOPS
} ir_op;

typedef enum {
  IR_CAT_LEAF, IR_CAT_UNARY, IR_CAT_BINARY, IR_CAT_GEMM, IR_CAT_REDUCE,
  IR_CAT_MOVE, IR_CAT_LAYER, IR_CAT_LOSS,
  IR_CAT_SELECT,          /* elementwise with three broadcast operands (where) */
  IR_CAT_GRAD,            /* backward-pass ops made by passes/autodiff.c */
  IR_CAT_FUSED            /* an elementwise program made by passes/fuse.c */
} ir_cat;

struct ir_graph;
struct ir_node;
typedef int (*ir_shape_fn)(struct ir_graph *g, struct ir_node *n, char *msg, size_t msgn);

typedef struct {
  const char *name;
  int arity;
  ir_cat cat;
  ir_shape_fn shape;
} ir_opinfo;

extern const ir_opinfo ir_ops[IR_NOPS];
/* Per-op flags from the OPF rows of ops.def (0 for most ops). */
enum { IR_OPF_RANDOM = 1,       /* a draw from the RNG: never merged or folded */
       IR_OPF_COMM = 2 };       /* a collective across ranks: never merged or folded */
extern const unsigned ir_op_flags[IR_NOPS];
int ir_op_lookup(const char *name); /* -1 if unknown */

/* ---- the graph (ir/graph.c) ---- */
typedef struct {
  int64_t axis, k, stride, pad, pad_hi, start, end, heads, n, i;
  int keepdims, causal, approx;
  double f;                  /* alpha, p, eps, label smoothing, exponent, const, clamp's min */
  double f2;                 /* clamp's max (+-inf for an absent bound) */
  int nlist;
  int64_t list[IR_MAXDIM];   /* perm or reshape dims */
} ir_attr;

typedef struct {
  const char *file;  /* may be NULL for synthesised nodes */
  int line, col;     /* 1-based; 0 = unknown */
} ir_loc;

/* A fused elementwise program (passes/fuse.c, op IR_FUSED): steps run in
 * order on every element of the node's result; each step is one of the
 * fusable elementwise ops (ir_fusable_step) and the last step's value is the
 * node's. A step operand is an input of the node (arg >= 0: its value at the
 * element, broadcast as NumPy does) or an earlier step (arg < 0: step
 * -1 - arg). Every step computes in the node's dtype (f32). */
enum { IR_FUSE_MAXSTEPS = 48 };
typedef struct ir_fstep {
  int op;                 /* ir_op: ir_fusable_step(op, attr) */
  int nin;                /* 1 or 2 */
  int arg[2];
} ir_fstep;

typedef struct ir_fusion {
  int nsteps;
  ir_fstep *step;         /* arena-allocated */
  ir_attr *attr;          /* per step: the op's attributes */
} ir_fusion;

typedef struct ir_node {
  int op;                 /* ir_op */
  int nin;
  int *in;                /* node ids, arena-allocated */
  ir_dtype dtype;
  ir_shape shape;
  ir_attr attr;
  const double *data;     /* CONST with a non-scalar payload: numel values */
  const char *name;       /* binding name or parameter name; may be NULL */
  ir_loc loc;
  const ir_fusion *fusion;/* IR_FUSED only: its program (arena-allocated) */
} ir_node;

typedef enum { IR_INIT_ZEROS, IR_INIT_ONES, IR_INIT_NORMAL, IR_INIT_XAVIER, IR_INIT_HE,
               IR_INIT_UNIFORM } ir_init;

typedef struct {
  const char *name;       /* "fc1.weight", "h.0.ln1.bias", ... */
  ir_dtype dtype;
  ir_shape shape;
  ir_init init;
  double std;             /* for IR_INIT_NORMAL (and uniform bound) */
  int64_t fan_in, fan_out;/* for xavier / he */
  int node;               /* the PARAM node */
  int state;              /* optimizer state (passes/optimizer.h), not a weight */
  int buffer;             /* a weight the optimizer does not train (batchnorm's running statistics:
                             updated by the training step itself, passes/optimizer.c) */
  int stored;             /* held and loaded in its own dtype, never converted to f32: the
                             quantized weights passes/quantize.c makes (read by qmatmul only) */
  int from_quant;         /* LATHE_RT_Q_* mode, 0 none: an f32 weight kept f32 by passes/quantize.c
                             (its quantized kernel would be slower than f32 on this host and
                             shape); not in the file: made at load from its stored tensors
                             (NAME + the mode's suffixes), dequantized once (runtime/api_quant.c) */
  const char *kept_why;   /* from_quant: why it was kept f32 (passes/quantize_cost.c) */
  /* ZeRO-1 optimizer state (ir_train.zero1): this rank's values
   * [shard_off, shard_off + numel) of a state shaped `full` (flat, zero
   * padded past its end); full.rank 0: not sharded. Checkpoints hold the
   * full state (runtime/train.c gathers it). */
  ir_shape full;
  int64_t shard_off;
} ir_param;

typedef struct {
  const char *name;
  ir_dtype dtype;
  ir_shape shape;
  int is_target;          /* declared with `target` */
  int node;
} ir_input;

typedef struct {
  const char *name;
  int node;
} ir_output;

/* The training block, checked and kept for the training stage. Every field
 * has its "unset" value (-1 or NAN or NULL) when the block does not set it. */
typedef enum { IR_OPT_NONE, IR_OPT_SGD, IR_OPT_ADAM, IR_OPT_ADAMW, IR_OPT_RMSPROP } ir_optkind;
typedef enum { IR_SCHED_CONSTANT, IR_SCHED_STEP, IR_SCHED_COSINE, IR_SCHED_EXPONENTIAL } ir_schedkind;

typedef struct {
  int present;            /* a train { } block was given */
  ir_optkind opt;
  double lr, momentum, beta1, beta2, eps, weight_decay, alpha;
  int nesterov;
  ir_schedkind sched;
  double sched_every, sched_gamma, sched_warmup, sched_min_lr;
  int64_t epochs, batch, early_stop, seed;
  int init_set;           /* init = ... given */
  ir_init init;
  double init_std;
  double l1, l2, clip_norm, grad_noise;
  int nsplit;
  double split[3];
  /* Not from the block: the driver's (docs/distributed.md). ranks > 1: the
   * step is compiled for a data-parallel job of that many ranks (gradients
   * averaged by allreduce, passes/comm.c) in buckets of about bucket_bytes
   * (0: COMM_BUCKET_DEFAULT). 0 or 1: one process. */
  int64_t ranks, bucket_bytes;
  /* zero1: ZeRO-1 optimizer-state sharding (passes/optimizer.c): this
   * rank (0..ranks-1) keeps and updates 1/ranks of every parameter's
   * optimizer state, and the ranks gather the updated weights. */
  int64_t rank;
  int zero1;
  /* stages > 1: one stage of a pipeline of that many ranks (passes/stage.h):
   * clipping's global norm adds the stages' sums of squares (allreduce). */
  int64_t stages;
} ir_train;

typedef struct ir_graph {
  arena *A;               /* owns every string and array below */
  const char *model_name;
  ir_node *nodes;
  int nnodes, capnodes;
  ir_param *params;
  int nparams, capparams;
  ir_input *inputs;
  int ninputs, capinputs;
  ir_output *outputs;
  int noutputs, capoutputs;
  int loss;               /* node id of the loss, -1 if none */
  ir_train train;
  /* After autodiff (passes/autodiff.c): grads[i] is the node holding
   * d loss / d params[i], -1 when not asked for; NULL before. */
  int *grads;
  /* Set by the pass manager when its pipeline had no "fuse" (-O0, -O1):
   * then no backend fuses anything either (no product epilogues), so -O0
   * is the unfused baseline. 0 for graphs that never met the pipeline. */
  int no_fusion;
  /* The quantization asked for (LATHE_RT_Q_*, 0 none): the pass manager then
   * runs passes/quantize.c first. */
  int quant;
  /* Set by passes/quantize.c: one line naming the dense layers it kept in
   * f32 and why (NULL: none); the pass manager prints it. */
  const char *quant_note;
} ir_graph;

void ir_graph_init(ir_graph *g, arena *A, const char *model_name);
/* cross_entropy's (and its gradient's) optional class weights fit the logits
 * (ir/shape.c; shared by both shape rules). */
int ir_ce_weight_check(ir_graph *g, ir_node *n, char *msg, size_t mn);
/* Append a node, run the op's shape rule. Returns the node id, or -1 with a
 * message in msg (the node is not added) when the inputs do not fit the op.
 * `attr` may be NULL (all zero). */
int ir_add(ir_graph *g, int op, const int *in, int nin, const ir_attr *attr,
           ir_loc loc, char *msg, size_t msgn);
/* Leaves are created through these: */
int ir_add_input(ir_graph *g, const char *name, ir_dtype t, const ir_shape *s, int is_target, ir_loc loc);
int ir_add_param(ir_graph *g, const char *name, ir_dtype t, const ir_shape *s, ir_init init,
                 double std, int64_t fan_in, int64_t fan_out, ir_loc loc);
int ir_add_const(ir_graph *g, ir_dtype t, double value, ir_loc loc);
void ir_add_output(ir_graph *g, const char *name, int node);
int ir_find_param(const ir_graph *g, const char *name);  /* index or -1 */
int ir_find_input(const ir_graph *g, const char *name);  /* index or -1 */
int ir_find_output(const ir_graph *g, const char *name); /* index or -1 */

/* ---- ir/fused.c: rules shared by everything that reads IR_FUSED nodes ----
 * Fusable ops: the f32 elementwise ops whose code works on vectors in every
 * backend (unary maps, add/sub/mul/div, minimum). The index of input `in`
 * at flat element o of a result shaped `out` has one of these forms, which
 * backends turn into loads without a per-axis walk: */
typedef enum {
  IR_BC_FULL,    /* same shape: o */
  IR_BC_SCALAR,  /* one element: 0 */
  IR_BC_SUFFIX,  /* the trailing dims of out (a bias row): o % m, m = numel(in) */
  IR_BC_PREFIX,  /* the leading dims, trailing 1s (a per-row value): o / m, m = numel(out) / numel(in) */
  IR_BC_OTHER    /* any other broadcast */
} ir_bcast_kind;
int ir_fusable_op(int op);
int ir_fusable_step(int op, const ir_attr *a); /* ir_fusable_op, or unary_grad of a fusable unary map */
ir_bcast_kind ir_bcast_kind_of(const ir_shape *out, const ir_shape *in, int64_t *m);
int ir_attr_eq(const ir_attr *a, const ir_attr *b);  /* field by field */
int ir_fusion_eq(const ir_fusion *a, const ir_fusion *b);
/* Same op, inputs, dtype, shape, attributes, constant data and program:
 * the two nodes compute the same value (CSE; the in-process program cache). */
int ir_node_same(const ir_node *a, const ir_node *b);
/* " [mul($0, $1); add(@0, $2)]": $k = input k, @s = step s */
void ir_fusion_print(const ir_fusion *f, FILE *out);

/* ---- ir/verify.c: structural invariants; returns 0 or -1 with msg ---- */
int ir_verify(const ir_graph *g, char *msg, size_t msgn);

/* ---- ir/print.c ---- */
void ir_print(const ir_graph *g, FILE *f);  /* one line per node */
void ir_dot(const ir_graph *g, FILE *f);    /* Graphviz */

/* ---- ir/stats.c ---- */
int64_t ir_node_flops(const ir_graph *g, int node); /* forward FLOPs (mul+add = 2) */
int64_t ir_node_bytes(const ir_graph *g, int node); /* bytes of the node's result */
typedef struct {
  int64_t params;          /* parameter element count */
  int64_t param_bytes;
  int64_t activation_bytes;/* naive sum over non-leaf nodes */
  int64_t input_bytes;
  int64_t flops;
} ir_stats;
void ir_graph_stats(const ir_graph *g, ir_stats *st);
void ir_summary(const ir_graph *g, FILE *f); /* the `lathe check` table */

/* ---- ir/interp.c: the reference interpreter ----
 * Every value is an array of doubles (integers stored exactly). In
 * IR_INTERP_F32 mode each floating result is rounded to float after every op,
 * matching a float32 program; IR_INTERP_F64 keeps doubles (the oracle for
 * gradient checks). vals[i] is the value of node i: the caller fills INPUT
 * and PARAM nodes (numel doubles each, caller-owned); ir_interp allocates
 * every other entry, which ir_interp_release frees. */
typedef enum { IR_INTERP_F32, IR_INTERP_F64 } ir_interp_mode;
int ir_interp(const ir_graph *g, ir_interp_mode mode, double **vals, char *msg, size_t msgn);
void ir_interp_release(const ir_graph *g, double **vals);
/* One node's reference kernel: node id's value into out (numel doubles,
 * zeroed), reading only the entries of vals of its inputs, rounded as
 * ir_interp rounds it. Not for inputs and parameters. For executors that
 * keep values elsewhere (plan/plan_exec.c). 0, or -1 with a message. */
int ir_interp_node(const ir_graph *g, ir_interp_mode mode, double **vals, int id, double *out, char *msg,
                   size_t msgn);

/* ---- ir/rng.c: counter-based RNG (Philox-4x32-10) for initialisers and
 * dropout, identical on every backend and thread schedule. ---- */
typedef struct { uint64_t key; uint64_t counter; } ir_rng;
void ir_rng_seed(ir_rng *r, uint64_t seed, uint64_t stream);
uint32_t ir_rng_u32(ir_rng *r);
double ir_rng_uniform(ir_rng *r);   /* [0, 1) */
double ir_rng_normal(ir_rng *r);    /* N(0, 1), Box-Muller */
/* Fill n floats for parameter p as its initialiser says (seeded per name so
 * adding a parameter does not shift the others). */
void ir_param_init_values(const ir_param *p, uint64_t seed, float *out);

#endif
