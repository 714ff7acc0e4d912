/* cu_render.h -- private to the renderer (cu_render*.c): the context a
 * kernel renderer writes into and the helpers every renderer shares. A
 * renderer writes one or more __global__ functions (named @K@ until they
 * are deduplicated and named) and the launch of each. */
#ifndef LATHE_CU_RENDER_H
#define LATHE_CU_RENDER_H

#include <stdarg.h>

#include "codegen/cuda/cu.h"

typedef struct {
  char *s;
  size_t n, cap;
  int oom;
} cu_sb;
void cu_sb_printf(cu_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Special buffers of a cu_ref: node >= 0 is a tensor. */
enum { CU_REF_ARENA = -1, /* off is an offset in the activation arena (a kernel's scratch) */
       CU_REF_STATUS = -2 /* the program's status word (int): a kernel's run-time error */ };

typedef struct cu_rctx {
  const pl_plan *p;
  const ir_graph *g;
  cu_program *out;
  int pk;             /* the plan kernel being rendered */
  const pl_kernel *k;
  cu_sb b;            /* the function being written */
  const unsigned char *bf16; /* per node: stored as bf16 (NULL: none) */
  char *msg;
  size_t msgn;
} cu_rctx;

/* Renderers: 0, or -1 with r->msg set (cu_unsupported). */
typedef int (*cu_render_fn)(cu_rctx *r);

/* Node n (a pointer into r->g->nodes) is stored as bf16. */
int cu_is_bf16(const cu_rctx *r, const ir_node *n);
/* Kernel operand j's node (0: the kernel's node, then pl_kernel.arg). */
int cu_opnode(const cu_rctx *r, int j);
const ir_node *cu_opn(const cu_rctx *r, int j);
/* "float* __restrict__ a3" etc. for operand j's dtype; const when read-only. */
void cu_param(cu_rctx *r, const char *name, const ir_node *n, int is_out);
/* Start a function: `extern "C" __global__ void __launch_bounds__(threads) @K@(` */
void cu_begin(cu_rctx *r, int threads);
/* Finish the function (deduplicated against the ones before) and add its
 * launch; ops[0..nops) are its pointer arguments. */
int cu_end(cu_rctx *r, unsigned grid, unsigned threads, const cu_ref *ops, int nops);
int cu_add_launch(cu_rctx *r, const cu_launch *l);
/* The refs of operands 0..nops-1 (each at its buffer's start). */
void cu_refs(const cu_rctx *r, cu_ref *ops, int nops);
/* Refuse: "cuda backend: kernel kN (KIND) node %ID OP: WHY is not rendered". */
int cu_unsupported(cu_rctx *r, const char *why, ...) __attribute__((format(printf, 2, 3)));
/* A float literal (inf and NaN as bit patterns), into buf. */
const char *cu_flt(double v, char *buf, size_t n);
/* Blocks of `threads` covering `count` items (at least 1, capped: kernels loop). */
unsigned cu_blocks(int64_t count, unsigned threads);
/* The expression of the element of operand `name` (node in) at flat
 * index `o` of a result shaped `out` (NumPy broadcasting), as float. */
void cu_load(cu_sb *b, const char *name, const ir_shape *out, const ir_node *in, const char *o);
/* The value of unary op `op` (attributes a) at x, as an expression. */
int cu_unary_expr(cu_sb *b, int op, const ir_attr *a, const char *x);
/* dy * f'(x) for the forward op a->i. */
int cu_deriv_expr(cu_sb *b, const ir_attr *a, const char *x, const char *dy);
/* a OP b for the binary elementwise ops. */
int cu_binary_expr(cu_sb *b, int op, const char *x, const char *y);

/* cu_render_rows.c: rows, losses and data movement, by head op; the
 * helpers the one-node renderers share. */
int cu_render_by_op(cu_rctx *r);
enum { CU_ROW_THREADS = 256 };
/* [outer, len, inner] around axis ax of s (axis < 0: everything is one row). */
void cu_around(const ir_shape *s, int64_t ax, int64_t *outer, int64_t *len, int64_t *inner);
/* The grid-stride loop every thread-per-element kernel opens with (one
 * spelling for every renderer): `for (e = ...; e < count; ...) {`; and
 * cu_loop_open: `) {` (the end of the parameters) then that loop. */
void cu_grid_loop(cu_sb *b, int64_t count);
void cu_loop_open(cu_sb *b, int64_t count);
/* The loop of a warp-per-row kernel over rows (a warp each, grid-stride):
 * `const int lane` and `for (w = ...; w < rows; ...) {`. */
void cu_warp_loop(cu_sb *b, int64_t rows);
/* Threads for rows of len: a warp for short rows, up to CU_ROW_THREADS. */
unsigned cu_row_threads(int64_t len);
/* `) {` and the loop over rows of [outer, len, inner], a block per row:
 * base = the row's first element, element l at base + l * INNER. */
void cu_rows_open(cu_sb *b, int64_t outer, int64_t len, int64_t inner);
#define FOR_L "    for (long long l = threadIdx.x; l < LEN; l += blockDim.x) "
/* Close the row loop and the function; launch a block per row. */
int cu_finish_rows(cu_rctx *r, int64_t rows, unsigned threads, int nops);
/* Operands 0..nops-1 as a0, a1, ...; those in the bit mask `out` written. */
void cu_params_out(cu_rctx *r, int nops, unsigned out);
void cu_params(cu_rctx *r, int nops);
/* ", int* status": the status word. */
int cu_status_param(cu_rctx *r);
/* The status code of a run-time error at node (what: 0 an id, 1 a label, 2 an index). */
long long cu_code_of(int node, int what);
/* A thread per result element: `body` computes a0[e] from e (status: the
 * status word is the last argument). */
int cu_per_element(cu_rctx *r, int nops, int status, const char *body);

/* Renderers of the other files, by op (NULL: not theirs); cu_op_renderer:
 * the one-node renderer of op from any of them (cu_render.c). */
cu_render_fn cu_rows_renderer(int op); /* cu_render_rows.c */
cu_render_fn cu_op_renderer(int op);
cu_render_fn cu_misc_renderer(int op); /* cu_render_misc.c */
int cu_render_sample(cu_rctx *r);      /* cu_render_sample.c: sample_token */
cu_render_fn cu_seq_renderer(int op);  /* cu_render_seq.c */
cu_render_fn cu_mha_renderer(int op);  /* cu_render_mha.c */
cu_render_fn cu_comm_renderer(int op); /* cu_render_comm.c: the collectives */
cu_render_fn cu_quant_renderer(int op); /* cu_render_quant.c: qmatmul, qconv2d, quantize, dequantize */
int64_t cu_quant_scratch(const ir_graph *g, const ir_node *n);
int64_t cu_mha_scratch(const ir_graph *g, const ir_node *n);
/* cu_render_seq.c: the scratch bytes of a recurrence or its gradient. */
int64_t cu_seq_scratch(const ir_graph *g, const ir_node *n);
/* cu_render_attn.c: products and column sums any renderer may launch:
 * c[m, n] = op(a)[m, k] op(b)[k, n] (+ bias, a row, unless bias.node is
 * CU_REF_NONE), ta/tb: the operand is stored transposed; c[j] = the sum of
 * column j of x[rows, cols] (a block per column). */
enum { CU_REF_NONE = -100 };
cu_ref cu_ref_at(int node, int64_t off);
int cu_gemm_t(cu_rctx *r, int64_t m, int64_t k, int64_t n, int ta, int tb, cu_ref a, cu_ref b, cu_ref c, cu_ref bias);
int cu_colsum(cu_rctx *r, int64_t rows, int64_t cols, cu_ref x, cu_ref c);
/* f32 node `node` rounded to bf16 into the arena at byte `at` (a kernel); its ref there. */
int cu_to_bf16(cu_rctx *r, int node, int64_t at, cu_ref *ref);
/* The same for count f32 elements at src (four a thread where both ends are 16-byte aligned). */
int cu_round_bf16(cu_rctx *r, cu_ref src, int64_t count, int64_t at, cu_ref *out);
/* --precision bf16 attention's scratch: qkv, ctx, the rounded weights and x (cu_render_attn.c). */
int64_t cu_attention_scratch_bf16(const ir_graph *g, const ir_node *n);
/* attention_save and the attention backward under --precision bf16: their
 * f32 scratch, then the bf16 operands of their products */
int64_t cu_attention_train_scratch_bf16(const ir_graph *g, const ir_node *n);
/* rnn/lstm/gru under --precision bf16: their scratch, then w_ih in bf16 (cu_render_seq.c) */
int64_t cu_seq_scratch_bf16(const ir_graph *g, const ir_node *n);
/* c = a^T b ([m, k]^T [k, n]) with db = b's column sums as the product's
 * bias-gradient epilogue (cuBLASLt BGRAD; LATHE_CUDA_BGRAD=0: a kernel). */
int cu_gemm_bgrad(cu_rctx *r, int64_t m, int64_t k, int64_t n, cu_ref a, cu_ref b, cu_ref c, cu_ref db);
/* cu_render_attn.c: attention and attention_save; their backward
 * (attention_grad, attention_grad_saved) and its scratch bytes. */
int cu_render_attention(cu_rctx *r);
int cu_render_attention_grad(cu_rctx *r);
int64_t cu_attention_grad_scratch(const ir_graph *g, const ir_node *n);

/* --precision bf16 products (cu_render_attn.c), shared by the kernels of
 * packed f32 layouts (the training attention, mha, the recurrences): the
 * last product added reads bf16 A and B with f32 sums (C bf16 when c_bf16,
 * a bias of C's type); a product's operand as bf16 (the tensor itself when
 * node is bf16, else `count` f32 elements at ref rounded into the arena at
 * byte `at`); cu_gemm_bgrad on bf16 operands (an f32 c and bias gradient). */
void cu_gemm_bf16(cu_rctx *r, int c_bf16);
int cu_as_bf16(cu_rctx *r, int node, cu_ref ref, int64_t count, int64_t at, cu_ref *out);
int cu_gemm_bgrad_bf16(cu_rctx *r, int64_t m, int64_t k, int64_t n, cu_ref a, cu_ref b, cu_ref c, cu_ref db);
/* mha, mha_grad and the recurrences' gradients under --precision bf16: their
 * f32 scratch with the bf16 parts (cu_render_mha.c, cu_render_seq.c). */
int64_t cu_mha_scratch_bf16(const ir_graph *g, const ir_node *n);
int64_t cu_seq_grad_scratch_bf16(const ir_graph *g, const ir_node *n);

#endif
