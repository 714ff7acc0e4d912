/* cg_seqcall.c -- the fused sequence layers (attention, the recurrences'
 * backward through time, the lstm and gru forward) as calls to liblathe_rt's C
 * kernels (rt/rt_seq.c): the generated kernel passes its buffers, scratch
 * and static shapes. */
#include "cg_internal.h"

#include "rt/lathe_rt.h"

/* the recurrence's code in lathe_rt.h for an IR op */
static int64_t rec_code(int op) {
  return op == IR_LSTM ? LATHE_RT_LSTM : op == IR_LSTM_GRAD ? LATHE_RT_LSTM_GRAD
       : op == IR_GRU_GRAD ? LATHE_RT_GRU_GRAD : LATHE_RT_RNN_GRAD;
}

void cg_call_rt(cg_k *k, const char *name, V *ptrs, int np, const int64_t *ints, int ni) {
  LLVMTypeRef ty[16];
  V args[16];
  for (int i = 0; i < np; i++) ty[i] = k->m->ptr, args[i] = ptrs[i] ? ptrs[i] : LLVMConstNull(k->m->ptr);
  for (int i = 0; i < ni; i++) ty[np + i] = k->m->i64, args[np + i] = ci(k, ints[i]);
  cg_fn f;
  f.ty = LLVMFunctionType(k->m->vd, ty, (unsigned)(np + ni), 0);
  f.fn = LLVMGetNamedFunction(k->m->M, name);
  if (!f.fn) f.fn = LLVMAddFunction(k->m->M, name, f.ty);
  cg_call(k, f, args, (unsigned)(np + ni));
}

/* whether the program has an attention backward (a training step) */
static int has_attention_grad(const ir_graph *g) {
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == IR_ATTENTION_GRAD || g->nodes[i].op == IR_ATTENTION_GRAD_SAVED) return 1;
  return 0;
}

void cg_emit_attention(cg_k *k) {
  const ir_shape *sx = k->sh[1];
  int64_t save = (k->n->op == IR_ATTENTION_SAVE) | (has_attention_grad(k->g) ? 0 : LATHE_RT_ATTN_SPLIT);
  int64_t ints[6] = {sx->d[0], sx->d[1], sx->d[2], k->n->attr.heads, k->n->attr.causal, save};
  V p[7] = {k->arg[0], k->arg[1], k->arg[2], k->arg[3], k->arg[4], k->arg[5], k->scratch};
  cg_call_rt(k, "lathe_rt_attn_fwd", p, 7, ints, 6);
}

/* lstm forward: y = lstm(x; w_ih, w_hh, b) */
void cg_emit_lstm(cg_k *k) {
  const ir_shape *sx = k->sh[1];
  int64_t ints[5] = {LATHE_RT_LSTM, sx->d[0], sx->d[1], sx->d[2], k->n->shape.d[2]};
  V p[9] = {k->arg[0], k->arg[1], k->arg[2], k->arg[3], k->arg[4], NULL, NULL, NULL, k->scratch};
  cg_call_rt(k, "lathe_rt_rec_grad", p, 9, ints, 5);
}

/* gru forward: y = gru(x; w_ih, w_hh, b_ih, b_hh) */
void cg_emit_gru(cg_k *k) {
  const ir_shape *sx = k->sh[1];
  int64_t ints[5] = {LATHE_RT_GRU, sx->d[0], sx->d[1], sx->d[2], k->n->shape.d[2]};
  V p[9] = {k->arg[0], k->arg[1], k->arg[2], k->arg[3], k->arg[4], k->arg[5], NULL, NULL, k->scratch};
  cg_call_rt(k, "lathe_rt_rec_grad", p, 9, ints, 5);
}

void cg_emit_seq_grad(cg_k *k) {
  const ir_shape *sx = k->sh[1];
  if (k->n->op == IR_ATTENTION_SAVE) {
    cg_emit_attention(k);
    return;
  }
  if (k->n->op == IR_ATTENTION_GRAD || k->n->op == IR_ATTENTION_GRAD_SAVED) {
    int64_t ints[5] = {sx->d[0], sx->d[1], sx->d[2], k->n->attr.heads, k->n->attr.causal};
    V saved = k->n->op == IR_ATTENTION_GRAD_SAVED ? k->arg[7] : NULL;
    V p[8] = {k->arg[0], k->arg[1], k->arg[2], k->arg[3], k->arg[4], k->arg[6], saved, k->scratch};
    cg_call_rt(k, "lathe_rt_attn_grad", p, 8, ints, 5);
    return;
  }
  int gru = k->n->op == IR_GRU_GRAD;
  int64_t ints[5] = {rec_code(k->n->op), sx->d[0], sx->d[1], sx->d[2], k->sh[3]->d[0]};
  V p[9] = {k->arg[0], k->arg[1], k->arg[2], k->arg[3], k->arg[4],
            gru ? k->arg[5] : NULL, k->arg[5 + gru], k->arg[6 + gru], k->scratch};
  cg_call_rt(k, "lathe_rt_rec_grad", p, 9, ints, 5);
}

int64_t cg_seq_scratch_bytes(const ir_graph *g, const ir_node *n) {
  const ir_shape *sx = &g->nodes[n->in[0]].shape;
  int64_t B = sx->d[0], T = sx->d[1], d = sx->d[2];
  if (n->op == IR_ATTENTION || n->op == IR_ATTENTION_SAVE)
    return 4 * lathe_rt_attn_scratch_floats(B, T, d, n->attr.heads, 0);
  if (n->op == IR_ATTENTION_GRAD || n->op == IR_ATTENTION_GRAD_SAVED)
    return 4 * lathe_rt_attn_scratch_floats(B, T, d, n->attr.heads, 1);
  return 4 * lathe_rt_rec_scratch_floats((int)rec_code(n->op), B, T, g->nodes[n->in[2]].shape.d[0]);
}
