/* interp_impl.h -- private to the reference interpreter (ir/interp*.c).
 *
 * A kernel computes one node: it reads its inputs' values through the
 * context and writes numel(n->shape) doubles to `out` (zeroed). It returns 0,
 * or -1 after ik_fail has written a message. Kernels compute in double; the
 * driver (interp.c) then rounds float results in F32 mode and wraps integer
 * results to their dtype, so kernels never think about dtypes.
 *
 * Shape conventions used in the kernels: B = batch, T = sequence length,
 * d = model width, h = hidden size, C = channels or classes.
 */
#ifndef LATHE_INTERP_IMPL_H
#define LATHE_INTERP_IMPL_H

#include "ir.h"

typedef struct {
  const ir_graph *g;
  double **vals;
  ir_interp_mode mode;
  char *msg;
  size_t msgn;
} ik_ctx;

typedef int (*ik_kernel)(ik_ctx *c, const ir_node *n, double *out);

/* Values and node of input k of n. */
static inline const double *ik_in(const ik_ctx *c, const ir_node *n, int k) {
  return c->vals[n->in[k]];
}
static inline const ir_node *ik_arg(const ik_ctx *c, const ir_node *n, int k) {
  return &c->g->nodes[n->in[k]];
}

/* "op (node 7 'name'): " + the formatted text into c->msg; returns -1. */
int ik_fail(ik_ctx *c, const ir_node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* malloc of count doubles (zeroed), or NULL after an "out of memory" ik_fail. */
double *ik_alloc(ik_ctx *c, const ir_node *n, int64_t count);

/* Flat index into a tensor of shape `in` that NumPy broadcasting pairs with
 * flat index o of a tensor of shape `out` (in is aligned from the right and
 * its size-1 dimensions repeat). */
int64_t ik_bcast_index(const ir_shape *out, const ir_shape *in, int64_t o);
/* Product of dims [lo, hi) of s (1 when empty). */
int64_t ik_dims(const ir_shape *s, int lo, int hi);

double ik_logistic(double x); /* 1 / (1 + e^-x), stable for large |x| */

/* y[m, n] = x[m, k] @ w[k, n] (+ b[n] when b != NULL). Row-major. */
void ik_affine(const double *x, const double *w, const double *b, int64_t m, int64_t k, int64_t n,
               double *y);

/* Run op n's kernel into out and round as the driver does for a node: the
 * fused kernel runs its steps through this. */
int ik_run_op(ik_ctx *c, const ir_node *n, double *out);
/* interp_fused.c */
int ik_fused(ik_ctx *c, const ir_node *n, double *out);

/* interp.c: leaves, elementwise, cast */
int ik_leaf(ik_ctx *c, const ir_node *n, double *out);
int ik_const(ik_ctx *c, const ir_node *n, double *out);
int ik_arange(ik_ctx *c, const ir_node *n, double *out);
int ik_relu(ik_ctx *c, const ir_node *n, double *out);
int ik_leaky_relu(ik_ctx *c, const ir_node *n, double *out);
int ik_clamp(ik_ctx *c, const ir_node *n, double *out);
int ik_compare(ik_ctx *c, const ir_node *n, double *out);
int ik_where(ik_ctx *c, const ir_node *n, double *out);
int ik_sigmoid(ik_ctx *c, const ir_node *n, double *out);
int ik_tanh(ik_ctx *c, const ir_node *n, double *out);
int ik_gelu(ik_ctx *c, const ir_node *n, double *out);
int ik_swish(ik_ctx *c, const ir_node *n, double *out);
int ik_exp(ik_ctx *c, const ir_node *n, double *out);
int ik_log(ik_ctx *c, const ir_node *n, double *out);
int ik_sqrt(ik_ctx *c, const ir_node *n, double *out);
int ik_abs(ik_ctx *c, const ir_node *n, double *out);
int ik_neg(ik_ctx *c, const ir_node *n, double *out);
int ik_pow(ik_ctx *c, const ir_node *n, double *out);
int ik_dropout(ik_ctx *c, const ir_node *n, double *out);
int ik_cast(ik_ctx *c, const ir_node *n, double *out);
int ik_add(ik_ctx *c, const ir_node *n, double *out);
int ik_sub(ik_ctx *c, const ir_node *n, double *out);
int ik_mul(ik_ctx *c, const ir_node *n, double *out);
int ik_div(ik_ctx *c, const ir_node *n, double *out);

/* interp_nn.c: contractions, reductions, normalisation, movement, losses */
int ik_matmul(ik_ctx *c, const ir_node *n, double *out);
int ik_conv2d(ik_ctx *c, const ir_node *n, double *out);
int ik_softmax(ik_ctx *c, const ir_node *n, double *out);
int ik_log_softmax(ik_ctx *c, const ir_node *n, double *out);
int ik_sum(ik_ctx *c, const ir_node *n, double *out);
int ik_mean(ik_ctx *c, const ir_node *n, double *out);
int ik_max(ik_ctx *c, const ir_node *n, double *out);
int ik_min(ik_ctx *c, const ir_node *n, double *out);
int ik_argext(ik_ctx *c, const ir_node *n, double *out);
int ik_layernorm(ik_ctx *c, const ir_node *n, double *out);
/* interp_norm.c: batchnorm (both forms), groupnorm, rmsnorm and their gradient */
int ik_norm(ik_ctx *c, const ir_node *n, double *out);
int ik_qmatmul(ik_ctx *c, const ir_node *n, double *out); /* interp_quant.c */
int ik_qconv2d(ik_ctx *c, const ir_node *n, double *out); /* interp_qconv.c */
int ik_quantize(ik_ctx *c, const ir_node *n, double *out);   /* interp_qdq.c */
int ik_dequantize(ik_ctx *c, const ir_node *n, double *out); /* interp_qdq.c */
/* interp_comm.c: the collectives */
int ik_allreduce(ik_ctx *c, const ir_node *n, double *out);
int ik_reduce_scatter(ik_ctx *c, const ir_node *n, double *out);
int ik_all_gather(ik_ctx *c, const ir_node *n, double *out);
int ik_comm_wait(ik_ctx *c, const ir_node *n, double *out);
int ik_send(ik_ctx *c, const ir_node *n, double *out);
int ik_recv(ik_ctx *c, const ir_node *n, double *out);
int ik_norm_grad(ik_ctx *c, const ir_node *n, double *out);
int ik_maxpool2d(ik_ctx *c, const ir_node *n, double *out);
int ik_avgpool2d(ik_ctx *c, const ir_node *n, double *out);
int ik_reshape(ik_ctx *c, const ir_node *n, double *out);
int ik_transpose(ik_ctx *c, const ir_node *n, double *out);
int ik_concat(ik_ctx *c, const ir_node *n, double *out);
int ik_slice(ik_ctx *c, const ir_node *n, double *out);
int ik_embedding(ik_ctx *c, const ir_node *n, double *out);
int ik_one_hot(ik_ctx *c, const ir_node *n, double *out);
int ik_gather(ik_ctx *c, const ir_node *n, double *out);
int ik_cumsum(ik_ctx *c, const ir_node *n, double *out);
int64_t ik_gather_at(const ir_shape *sx, const ir_shape *si, int ax, int64_t e, int64_t v);
/* cross_entropy's counted rows' total weight into *wsum; -1 (error set) for a label not a class */
int ik_ce_weights(ik_ctx *c, const ir_node *n, const double *y, const double *w, int64_t rows, int64_t C, double *wsum);
int ik_cross_entropy(ik_ctx *c, const ir_node *n, double *out);
int ik_mse(ik_ctx *c, const ir_node *n, double *out);
int ik_bce(ik_ctx *c, const ir_node *n, double *out);
int ik_l1(ik_ctx *c, const ir_node *n, double *out);
int ik_huber(ik_ctx *c, const ir_node *n, double *out);
int ik_nll(ik_ctx *c, const ir_node *n, double *out);
int ik_kl_div(ik_ctx *c, const ir_node *n, double *out);
int ik_nll_grad(ik_ctx *c, const ir_node *n, double *out);

/* interp_seq.c: fused sequence layers */
int ik_attention(ik_ctx *c, const ir_node *n, double *out);
int ik_attention_save(ik_ctx *c, const ir_node *n, double *out);
int ik_rnn(ik_ctx *c, const ir_node *n, double *out);
int ik_lstm(ik_ctx *c, const ir_node *n, double *out);
int ik_gru(ik_ctx *c, const ir_node *n, double *out);

/* interp_seq_grad.c: fused backward ops of the sequence layers */
int ik_attention_grad(ik_ctx *c, const ir_node *n, double *out);
int ik_attention_grad_saved(ik_ctx *c, const ir_node *n, double *out);
int ik_rnn_grad(ik_ctx *c, const ir_node *n, double *out);
int ik_lstm_grad(ik_ctx *c, const ir_node *n, double *out);
int ik_gru_grad(ik_ctx *c, const ir_node *n, double *out);

/* interp_mha.c: attention with a mask, a context, rotary embeddings or
 * grouped key/value heads, and its fused backward */
int ik_mha(ik_ctx *c, const ir_node *n, double *out);
int ik_mha_grad(ik_ctx *c, const ir_node *n, double *out);

/* interp_grad.c: backward-pass ops (made by passes/autodiff.c) */
int ik_sum_to(ik_ctx *c, const ir_node *n, double *out);
int ik_broadcast_to(ik_ctx *c, const ir_node *n, double *out);
int ik_unary_grad(ik_ctx *c, const ir_node *n, double *out);
int ik_softmax_grad(ik_ctx *c, const ir_node *n, double *out);
int ik_log_softmax_grad(ik_ctx *c, const ir_node *n, double *out);
int ik_max_grad(ik_ctx *c, const ir_node *n, double *out);
int ik_layernorm_grad(ik_ctx *c, const ir_node *n, double *out);
int ik_conv2d_grad_input(ik_ctx *c, const ir_node *n, double *out);
int ik_conv2d_grad_weight(ik_ctx *c, const ir_node *n, double *out);
int ik_pool2d_grad(ik_ctx *c, const ir_node *n, double *out);
int ik_embedding_grad(ik_ctx *c, const ir_node *n, double *out);
int ik_slice_grad(ik_ctx *c, const ir_node *n, double *out);
int ik_gather_grad(ik_ctx *c, const ir_node *n, double *out);
int ik_cross_entropy_grad(ik_ctx *c, const ir_node *n, double *out);
int ik_bce_grad(ik_ctx *c, const ir_node *n, double *out);

/* interp_opt.c: training-step ops (made by passes/optimizer.c) */
int ik_minimum(ik_ctx *c, const ir_node *n, double *out);
int ik_sign(ik_ctx *c, const ir_node *n, double *out);
int ik_randn(ik_ctx *c, const ir_node *n, double *out);
int ik_dropout_mask(ik_ctx *c, const ir_node *n, double *out);

/* interp_decode.c: decode-step ops (passes/decode.c) */
int ik_kv_write(ik_ctx *c, const ir_node *n, double *out);
int ik_attention_decode(ik_ctx *c, const ir_node *n, double *out);
int ik_sample_token(ik_ctx *c, const ir_node *n, double *out);

/* interp_seq.c: one attention head of one sequence (also recomputed by the
 * backward in interp_seq_grad.c). qkv rows are [q | k | v]; p is scratch [T]. */
void ik_attend_head(const double *qkv, int64_t T, int64_t d, int64_t off, int64_t hd, int causal, double *p,
                    double *ctx, double *lse);

#endif
