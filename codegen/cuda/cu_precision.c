/* cu_precision.c -- which buffers --precision bf16 stores as bf16. The
 * decision is the plan's, per tensor, before anything is rendered: the
 * renderer types each kernel argument by it (cu_param) and the products by
 * it (cu_render.c gemm_of), so no kernel decides on its own.
 *
 * Stored as bf16: the f32 activations in the arena (and their gradients)
 * that only kernels of the kinds below write and read. Kept f32: every
 * parameter (the master weights), input, constant and output (the loss,
 * the optimizer's new weights and state are outputs), the parameters'
 * gradients (g->grads: the optimizer reads f32), and any tensor that a
 * kernel outside the list touches (scatter-adds with atomics, the
 * optimizer's siblings, ...), and attention_save's packed result (its
 * logsumexp). The norms, convolutions, pools, attention in every form, mha
 * and the recurrences take bf16. A tensor and
 * the ones sharing its bytes (reshape aliases, results written in place of
 * an input) get one type. Every kernel computes in f32 registers: a bf16
 * value is widened on load and rounded once on store, and the reductions
 * (softmax, layernorm, cross-entropy, sums) accumulate in f32. */
#include <stdlib.h>

#include "codegen/cuda/cu.h"

/* Kernels that take bf16 operands: their renderers index their pointers
 * element by element (lt_bf16 converts), with no byte offsets into them and
 * no atomics on them; or they are the kernels of packed f32 layouts (the
 * training attention, mha, the recurrences and their gradients) that load
 * bf16 operands widened and run their products in bf16. */
static int kernel_takes_bf16(const pl_plan *p, const pl_kernel *k) {
  static const unsigned char by_op[IR_NOPS] = {
    [IR_SOFTMAX] = 1, [IR_LOG_SOFTMAX] = 1, [IR_SOFTMAX_GRAD] = 1, [IR_LOG_SOFTMAX_GRAD] = 1, [IR_LAYERNORM] = 1,
    [IR_LAYERNORM_GRAD] = 1, [IR_SUM] = 1, [IR_MEAN] = 1, [IR_MAX] = 1, [IR_MIN] = 1, [IR_SUM_TO] = 1,
    [IR_TRANSPOSE] = 1, [IR_SLICE] = 1, [IR_CONCAT] = 1, [IR_BROADCAST_TO] = 1, [IR_EMBEDDING] = 1,
    [IR_CROSS_ENTROPY] = 1, [IR_CROSS_ENTROPY_GRAD] = 1,
    /* the channel norms (cu_render_misc.c): a block per group, statistics in f32 registers (scratch is f32) */
    [IR_BATCHNORM] = 1, [IR_BATCHNORM_TRAIN] = 1, [IR_GROUPNORM] = 1, [IR_RMSNORM] = 1, [IR_NORM_GRAD] = 1,
    /* the direct convolutions and the pools gather with f32 sums (pool2d_grad's atomics stay f32) */
    [IR_CONV2D] = 1, [IR_CONV2D_GRAD_INPUT] = 1, [IR_CONV2D_GRAD_WEIGHT] = 1, [IR_MAXPOOL2D] = 1, [IR_AVGPOOL2D] = 1,
    /* attention's inference form (bf16 scratch) and the decode step (a warp per head over the f32 caches) */
    [IR_ATTENTION] = 1, [IR_ATTENTION_DECODE] = 1, [IR_KV_WRITE] = 1,
    /* the training attention: bf16 x and dy in bf16 products, flash kernels on f32 saved values (cu_render_attn.c) */
    [IR_ATTENTION_SAVE] = 1, [IR_ATTENTION_GRAD] = 1, [IR_ATTENTION_GRAD_SAVED] = 1,
    /* the recurrences: a bf16 x in the input projection, a bf16 y written once per h_t; their gradients read
     * bf16 x, y, dy (cu_render_seq.c) */
    [IR_RNN] = 1, [IR_LSTM] = 1, [IR_GRU] = 1, [IR_RNN_GRAD] = 1, [IR_LSTM_GRAD] = 1, [IR_GRU_GRAD] = 1,
    /* mha: bf16 x, the context and dy in bf16 products, the flash kernels on f32 q and kv (cu_render_mha.c) */
    [IR_MHA] = 1, [IR_MHA_GRAD] = 1,
  };
  int op = p->g->nodes[k->head].op;
  switch (k->kind) {
  case PL_K_ELEMENTWISE: case PL_K_GEMM_EPI: case PL_K_ADD_NORM: case PL_K_NORM_GRAD_ADD: return 1;
  case PL_K_GEMM: return op == IR_MATMUL || (op >= 0 && op < IR_NOPS && by_op[op]);
  default: return op >= 0 && op < IR_NOPS && by_op[op];
  }
}

static int root_of(const pl_plan *p, int i) {
  for (int hops = 0; p->buf[i].kind == PL_BUF_ALIAS && hops < p->g->nnodes; hops++) i = p->buf[i].idx;
  return i;
}

int cu_bf16_buffers(const pl_plan *p, unsigned char **out) {
  const ir_graph *g = p->g;
  unsigned char *ok = calloc((size_t)g->nnodes + 1, 1);
  *out = ok;
  if (!ok) return -1;
  for (int i = 0; i < g->nnodes; i++)
    ok[i] = p->buf[i].kind == PL_BUF_ARENA && g->nodes[i].dtype == IR_F32 && i != g->loss;
  for (int i = 0; g->grads && i < g->nparams; i++)
    if (g->grads[i] >= 0) ok[root_of(p, g->grads[i])] = 0;
  for (int q = 0; q < p->nk; q++) {
    const pl_kernel *k = &p->k[q];
    /* attention_save's packed result (y, qkv, ctx and each row's logsumexp) stays f32 for its backward, and
     * so do the packed results of the attention, mha and recurrence gradients ([dx | dw | db ...]: the
     * weights' gradients are slices of them) */
    int hop = p->g->nodes[k->head].op;
    if (hop == IR_ATTENTION_SAVE || hop == IR_ATTENTION_GRAD || hop == IR_ATTENTION_GRAD_SAVED || hop == IR_MHA_GRAD ||
        hop == IR_RNN_GRAD || hop == IR_LSTM_GRAD || hop == IR_GRU_GRAD)
      ok[root_of(p, k->node)] = 0;
    /* mha's biases stay f32: bq and bkv are the epilogue biases of its f32 q and kv products (cuBLASLt reads
     * D's type), bp is rounded for a bf16 y. A bias sliced from a fused parameter (head_dim, kv_heads) would
     * otherwise be a bf16 slice result read as floats (logits 0.6-0.9 off) */
    static const int mha_bias[3] = {2, 5, 7}; /* bq, bkv, bp */
    for (int j = 0; j < 3 && (hop == IR_MHA || hop == IR_MHA_GRAD); j++)
      ok[root_of(p, p->g->nodes[k->head].in[mha_bias[j]])] = 0;
    if (kernel_takes_bf16(p, k)) continue;
    for (int j = 0; j < k->nin; j++) ok[root_of(p, k->in[j])] = 0;
    for (int j = 0; j < k->nout; j++) ok[root_of(p, k->out[j])] = 0;
    ok[root_of(p, k->node)] = 0;
  }
  for (int changed = 1; changed;) { /* a result written in place of an input shares its bytes */
    changed = 0;
    for (int i = 0; i < g->nnodes; i++) {
      int j = p->buf[i].inplace_of;
      if (j < 0) continue;
      int a = root_of(p, i), b = root_of(p, j);
      if (ok[a] != ok[b]) ok[a] = ok[b] = 0, changed = 1;
    }
  }
  for (int i = 0; i < g->nnodes; i++) ok[i] = g->nodes[i].dtype == IR_F32 && ok[root_of(p, i)];
  return 0;
}
