/* shape_seq_grad.c -- shape rules of the fused backward ops of the sequence
 * layers (ATTENTION_GRAD, RNN_GRAD, LSTM_GRAD, GRU_GRAD in ops.def). Their
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

/* Forward rule on the first nfwd inputs, then inputs nfwd.. (y and/or dy)
 * must be forward-shaped; the result is f32[sum of the forward inputs' sizes]. */
static int seq_grad(ir_graph *g, ir_node *n, ir_shape_fn fwd, int nfwd, char *msg, size_t mn) {
  if (fwd(g, n, msg, mn)) return -1;
  ir_shape ys = n->shape;
  for (int k = nfwd; k < n->nin; k++) {
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

int shp_attention_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) {
  return seq_grad(g, n, shp_attention, 5, msg, mn);
}
int shp_rnn_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) { return seq_grad(g, n, shp_rnn, 4, msg, mn); }
int shp_lstm_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) { return seq_grad(g, n, shp_lstm, 4, msg, mn); }
int shp_gru_grad(ir_graph *g, ir_node *n, char *msg, size_t mn) { return seq_grad(g, n, shp_gru, 5, msg, mn); }
