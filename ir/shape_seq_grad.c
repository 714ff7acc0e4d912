/* shape_seq_grad.c -- shape rules of the fused backward ops of the sequence
 * layers (ATTENTION_GRAD, RNN_GRAD, LSTM_GRAD, GRU_GRAD in ops.def), and of
 * the attention pair that saves the forward's work (ATTENTION_SAVE,
 * ATTENTION_GRAD_SAVED). Their
 * leading inputs are exactly the forward op's inputs, so the forward shape
 * rule checks them (it reads only those) and yields the forward result's
 * shape, which y and dy must have. The result is one flat vector holding the
 * gradient of every forward input, concatenated in input order.
 */
#include <stdio.h>

#include "ir.h"

int shp_attention(ir_graph *g, ir_node *n, char *msg, size_t mn);
int shp_rnn(ir_graph *g, ir_node *n, char *msg, size_t mn);
int shp_lstm(ir_graph *g, ir_node *n, char *msg, size_t mn);
int shp_gru(ir_graph *g, ir_node *n, char *msg, size_t mn);

/* Forward rule on the first nfwd inputs, then inputs nfwd .. last - 1 (y
 * and/or dy) must be forward-shaped; the result is f32[sum of the forward
 * inputs' sizes]. */
static int seq_grad_to(ir_graph *g, ir_node *n, ir_shape_fn fwd, int nfwd, int last, char *msg, size_t mn) {
  if (fwd(g, n, msg, mn)) return -1;
  ir_shape ys = n->shape;
  for (int k = nfwd; k < last; k++) {
    const ir_node *a = &g->nodes[n->in[k]];
    char b1[100], b2[100];
    if (!ir_shape_eq(&a->shape, &ys) || a->dtype != n->dtype) {
      snprintf(msg, mn, "%s: input %d must be %s%s like the forward result, got %s%s", ir_ops[n->op].name,
               k, ir_dtype_name(n->dtype), ir_shape_str(&ys, b1, sizeof b1), ir_dtype_name(a->dtype),
               ir_shape_str(&a->shape, b2, sizeof b2));
      return -1;
    }
  }
  int64_t total = 0;
  for (int k = 0; k < nfwd; k++) total += ir_numel(&g->nodes[n->in[k]].shape);
  n->shape = (ir_shape){.rank = 1, .d = {total}};
  return 0;
}

static int seq_grad(ir_graph *g, ir_node *n, ir_shape_fn fwd, int nfwd, char *msg, size_t mn) {
  return seq_grad_to(g, n, fwd, nfwd, n->nin, msg, mn);
}

int shp_attention_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  return seq_grad(g, n, shp_attention, 5, msg, mn);
}
int shp_rnn_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) { return seq_grad(g, n, shp_rnn, 4, msg, mn); }
int shp_lstm_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) { return seq_grad(g, n, shp_lstm, 4, msg, mn); }
int shp_gru_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) { return seq_grad(g, n, shp_gru, 5, msg, mn); }

/* [y | qkv | ctx | lse] of an attention over x[B, T, d] with H heads. */
int64_t ir_attention_saved_numel(int64_t B, int64_t T, int64_t d, int64_t H) {
  return B * T * d + B * T * 3 * d + B * T * d + B * H * T;
}

int shp_attention_save(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  if (shp_attention(g, n, msg, mn)) return -1;
  const ir_shape *y = &n->shape;
  n->shape = (ir_shape){.rank = 1, .d = {ir_attention_saved_numel(y->d[0], y->d[1], y->d[2], n->attr.heads)}};
  return 0;
}

int shp_attention_grad_saved(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  if (seq_grad_to(g, n, shp_attention, 5, 6, msg, mn)) return -1; /* attention_grad's inputs */
  const ir_shape *sx = &g->nodes[n->in[0]].shape;
  const ir_node *s = &g->nodes[n->in[6]];
  int64_t want = ir_attention_saved_numel(sx->d[0], sx->d[1], sx->d[2], n->attr.heads);
  if (s->dtype != IR_F32 || s->shape.rank != 1 || s->shape.d[0] != want)
    return ir_fail(msg, mn, "attention_grad_saved: input 6 must be attention_save's result, f32[%lld]",
                   (long long)want);
  return 0;
}
