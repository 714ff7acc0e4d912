/* plan.h -- the kernel plan: the stage between the graph passes and a
 * backend. From a graph after the passes it decides, once for every backend,
 * which nodes run as one kernel (plan_group.c), in which order the kernels
 * run, and where every tensor lives (plan_buffers.c: the arena layout,
 * aliases, in-place reuse). A backend renders each kernel of the list and
 * launches them in order; it decides nothing about grouping or memory.
 *
 * The plan is checked by pl_verify (plan_verify.c) and can be run by the
 * reference executor pl_exec (plan_exec.c: the interpreter's kernels on the
 * plan's buffers), so a wrong plan shows up as an error or as results that
 * differ from the unplanned interpreter. Internal prefix: pl_. */
#ifndef LATHE_PLAN_H
#define LATHE_PLAN_H

#include <stdio.h>

#include "ir/ir.h"

/* PL_MAXARGS: a kernel's tensor operands at most (result, inputs, then a
 * scratch pointer and the status word make 3 more); PL_MAXFUSE: steps of a
 * product's epilogue; PL_MAXMULTI: members of a sibling group. */
enum { PL_MAXARGS = 24, PL_MAXFUSE = 6, PL_MAXMULTI = 4 };
/* PL_MAXUPD: operands of the kernel that runs every parameter's optimizer
 * update (sibling groups batched, plan_group.c) at most, for a backend
 * that passes them as a kernel's arguments (the LLVM backend: its
 * kernels' argument arrays); a model with more parameters gets one such
 * kernel per 128 operands there. A backend that reads them from a table
 * in memory (pl_target.upd_table: the CUDA backend, where 128 pointers
 * are already 1 KB of a launch's 4 KB of arguments) has no such limit. */
enum { PL_MAXUPD = 128 };

/* A matrix product's epilogue: the elementwise nodes after it, applied to
 * each element of the product before it is stored, so the intermediate
 * tensors are never written. The kernel's operands: the last node's result,
 * the product's two inputs, then the extras (pl_kernel.arg). */
enum { PL_EPI_UNARY, PL_EPI_ROW, PL_EPI_FULL, /* other operand: none, [N] per column, the full shape */
       PL_EPI_PROGRAM,                        /* an IR_FUSED node reading the running value */
       PL_EPI_POOL };                         /* a convolution's last step: a max-pool (pl_target.conv_pool) */
typedef struct {
  int nsteps;
  const ir_node *node[PL_MAXFUSE]; /* the step's node (op and attributes) */
  int kind[PL_MAXFUSE];
  int arg[PL_MAXFUSE];             /* kernel operand of the other operand */
  int right[PL_MAXFUSE];           /* the running value is the right operand (b - v) */
  int parg[PL_MAXFUSE][PL_MAXARGS];/* PL_EPI_PROGRAM: kernel operand of each input, -1 = the running value */
  int save[PL_MAXFUSE];            /* > 0: the step's value is also stored to this kernel operand (a link
                                    * the backward reads too: gelu's input) */
} pl_epilogue;

/* Several fused nodes of one shape in one loop (an Adam update's new m, new
 * v and new weight); a member reading an earlier member takes its value
 * from registers. check[m]: flag a non-finite result of member m. One
 * group alone is a kernel whose operands are its results (the last member
 * first, then the others in order), then its other inputs; a kernel of
 * several groups (every parameter's update) has each group's results and
 * then its inputs not listed before (shared scalars once). res/inop: the
 * kernel operand of each member's result and of each input. */
typedef struct {
  int n;
  int node[PL_MAXMULTI]; /* in node order; the kernel runs at the last one's place */
  int check[PL_MAXMULTI];
  int nin;
  int in[PL_MAXARGS];    /* the other inputs, in operand order after the results */
  int res[PL_MAXMULTI];  /* set by pl_build */
  int inop[PL_MAXARGS];
} pl_siblings;

/* What a kernel computes. The first four are groups made by plan_group.c;
 * the others are one node, named by the node's category. */
typedef enum {
  PL_K_GEMM_EPI,      /* a matrix product and the elementwise chain after it */
  PL_K_SIBLINGS,      /* sibling fused elementwise nodes in one loop (optimizer updates): one group, or
                       * every parameter's update, one group per parameter, in one kernel */
  PL_K_ADD_NORM,      /* a residual add and the layernorm reading it */
  PL_K_NORM_GRAD_ADD, /* a layernorm's dx and the residual-gradient add reading it */
  PL_K_GEMM,          /* a matrix product or a convolution alone */
  PL_K_ELEMENTWISE,   /* a unary or binary map, or a fused elementwise program */
  PL_K_ROWS,          /* a row reduction or normalisation (softmax, layernorm, sum, ...) */
  PL_K_ATTENTION,     /* attention and its backward */
  PL_K_RECURRENCE,    /* rnn, lstm, gru and their backward */
  PL_K_MOVE,          /* data movement (transpose, concat, slice, embedding, ...) */
  PL_K_LOSS,          /* a loss and its gradient */
  PL_K_OTHER,         /* everything else (backward ops, decode steps, random numbers) */
  PL_NKINDS
} pl_kind;
const char *pl_kind_name(pl_kind k);

/* Where a tensor (a node's result) lives at run time. */
typedef enum {
  PL_BUF_ARENA,  /* at off in the activation arena */
  PL_BUF_INPUT,  /* the caller's input idx */
  PL_BUF_PARAM,  /* the caller's parameter idx */
  PL_BUF_CONST,  /* at off in the program's constants */
  PL_BUF_OUTPUT, /* the caller's output buffer idx */
  PL_BUF_ALIAS,  /* the buffer of node idx (a reshape: no data moves, no kernel) */
  PL_BUF_NONE    /* computed inside a kernel and never stored */
} pl_buf_kind;

typedef struct {
  int kind, idx;    /* pl_buf_kind; input/param/output index, alias source node */
  int64_t off;      /* arena or constant offset */
  int64_t scr;      /* the arena offset of the scratch of the kernel at this node, or -1 */
  int64_t bytes;
  int64_t scr_bytes;
  int inside;       /* stored by a later node's kernel (a saved link, a sibling, a residual add) */
  int checked;      /* the kernel writing it flags a non-finite value */
  int inplace_of;   /* the dying input whose block this result took over, or -1 */
  int kernel;       /* the kernel that writes it, or -1 (leaves, aliases) */
} pl_buf;

typedef struct {
  pl_kind kind;
  int node;        /* the node whose result is operand 0; the kernel runs at its place */
  int head;        /* the node whose op the kernel is named after: the product, the layernorm (its
                    * gradient), the last sibling; node itself for a single node */
  /* the arrays below live in the plan's arena, each sized for the kernel:
   * PL_MAXFUSE + 2 members, PL_MAXARGS operands, PL_MAXMULTI + PL_MAXFUSE
   * results at most, except PL_K_SIBLINGS of several groups (as many as
   * its groups have: PL_MAXUPD operands, or any with pl_target.upd_table) */
  int nmember;
  int *member; /* every node it computes, in node order within each sibling group (<= node) */
  int narg;
  int *arg;    /* the nodes of operands 1.., in order (operand 0 is node) */
  int nin;
  int *in;     /* the tensors it reads from buffers (the operands it does not write) */
  int nout;
  int *out;    /* the tensors it stores: node, then stored members */
  const pl_epilogue *epi; /* PL_K_GEMM_EPI */
  int nsib;
  const pl_siblings *sib; /* PL_K_SIBLINGS: nsib groups, in run order */
  int check;       /* a single output fused kernel: flag non-finite results */
  int inplace;     /* node's result may take over a dying same-shaped input (elementwise) */
  /* hints for splitting the work: rows x cols of the result (cols = the last
   * dimension), its elements, and a grain (rows per part: about 4096
   * elements). The LLVM backend sizes its parts by its own cost model. */
  int64_t rows, cols, elems, grain;
  int64_t flops, bytes; /* FLOPs of the members; bytes read and written through buffers */
} pl_kernel;

/* What the plan asks of a backend: its scratch needs per kernel head, and
 * which unary ops it can apply as a product's epilogue step; optionally
 * (half, per node, NULL: none) the f32 arena tensors it stores in 2 bytes
 * an element (the CUDA backend's bf16), which then take half-sized blocks
 * and are written in place only over inputs of the same width. */
typedef struct pl_target {
  const char *name;
  int64_t (*scratch_bytes)(const ir_graph *g, const ir_node *n);
  int (*epilogue_unary)(int op);
  int conv_epilogue; /* a conv2d may head a chain of unary epilogue steps (conv2d -> relu) */
  const unsigned char *half;
  /* optional (NULL: never): whether the kernel of convolution conv, with
   * the steps so far, can also apply the max-pool `pool` reading its value
   * (conv2d -> relu -> maxpool2d: the convolution's result is pooled before
   * it is stored, never written whole) */
  int (*conv_pool)(const ir_graph *g, const ir_node *conv, const pl_epilogue *sofar, const ir_node *pool);
  /* 1: a kernel of several sibling groups (every parameter's update) reads
   * its operands' addresses from a table in memory, not from its launch
   * arguments, so the plan batches every update into one such kernel with
   * no operand limit; 0: at most PL_MAXUPD operands a kernel */
  int upd_table;
} pl_target;

typedef struct {
  const ir_graph *g;
  int nk;
  pl_kernel *k;      /* in run order */
  pl_buf *buf;       /* per node */
  int64_t arena_bytes, naive_bytes, const_bytes;
  int inplace;       /* results written over a dying input */
  arena A;           /* owns everything above */
} pl_plan;

/* Plan g for target t (g must outlive the plan). 0, or -1 when out of memory. */
int pl_build(const ir_graph *g, const pl_target *t, pl_plan *p);
void pl_free(pl_plan *p);

/* Check the plan's order and buffers (plan_verify.c): every tensor a kernel
 * reads was written by an earlier kernel; no two tensors share bytes while
 * both are live; a result written in place takes over an input that no
 * later kernel reads; a kernel's scratch overlaps nothing live. 0, or -1
 * with a message naming the tensors. */
int pl_verify(const pl_plan *p, char *msg, size_t msgn);

/* One line per kernel (plan_print.c): kind, members, buffers, FLOPs and
 * bytes; then the arena's size. */
void pl_print(const pl_plan *p, FILE *f);
/* 'name' or op#id of node i, into buf. */
const char *pl_tensor_name(const ir_graph *g, int i, char *buf, size_t n);

/* The dedup key of kernel k (plan_key.c): every node it computes with
 * shapes and attributes, and where its operands come from. Two kernels with
 * equal keys have the same code. */
void pl_kernel_key(const pl_plan *p, const pl_kernel *k, char *key, size_t kn);

/* The reference executor (plan_exec.c): runs p kernel by kernel with the
 * interpreter's kernels, every tensor stored at its dtype's width in the
 * plan's buffers (one arena, the same offsets, aliases and in-place
 * writes). vals as for ir_interp (inputs and parameters given); on return
 * the outputs' and the loss's entries hold their values (free with
 * ir_interp_release). In IR_INTERP_F32 mode a right plan gives the
 * interpreter's values bit for bit. 0, or -1 with a message. */
int pl_exec(const pl_plan *p, double **vals, char *msg, size_t msgn);

#endif
