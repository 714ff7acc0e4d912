/* cu_render_wide.c -- --precision bf16 around the kernels that compute
 * from packed f32 layouts: mha and mha_grad and the recurrences'
 * gradients (the training attention and the recurrences' forward take
 * bf16 directly: cu_render_attn.c, cu_render_seq.c). Their renderers index byte offsets into packed results and
 * keep f32 scratch, so rather than typing every pointer they run unchanged
 * on f32 copies: each bf16 input is widened into the kernel's scratch
 * first, the renderer's launches are pointed at those copies, and a bf16
 * result is computed into scratch and rounded once into its buffer after.
 * The activations between kernels are bf16 in memory (half the bytes and
 * the neighbouring products in bf16), while these kernels' sums, online
 * softmaxes and recurrent state stay f32 as the precision asks. */
#include <string.h>

#include "codegen/cuda/cu_render.h"

/* The ops rendered through the copies (attention in every form and
 * attention_decode take bf16 directly: cu_render_attn.c; the recurrences'
 * forward too: cu_render_seq.c). */
int cu_wide_op(int op) {
  switch (op) {
  case IR_MHA: case IR_MHA_GRAD:
  case IR_RNN_GRAD: case IR_LSTM_GRAD: case IR_GRU_GRAD: return 1;
  default: return 0;
  }
}

enum { WIDE_MAX = 16 }; /* the result and up to 15 inputs (a GRU's gradient has 7) */

static int64_t al256(int64_t b) { return (b + 255) / 256 * 256; }

/* A tensor that may be stored as bf16: an f32 result of a non-leaf node
 * (inputs, parameters and constants never are). */
static int candidate(const ir_graph *g, int i) {
  return i >= 0 && i < g->nnodes && g->nodes[i].dtype == IR_F32 && ir_ops[g->nodes[i].op].cat != IR_CAT_LEAF;
}

/* Slot c (0: the result, 1 + j: input j): its byte offset from the copies'
 * start, or -1; returns the copies' total. Plan time and render time share
 * it, so the offsets agree whichever tensors turned out bf16. */
static int64_t layout(const ir_graph *g, const ir_node *n, int64_t *off) {
  int64_t at = 0;
  for (int c = 0; c <= n->nin && c < WIDE_MAX; c++) {
    int node = c ? n->in[c - 1] : (int)(n - g->nodes);
    off[c] = candidate(g, node) ? at : -1;
    if (off[c] >= 0) at += al256(4 * ir_numel(&g->nodes[node].shape));
  }
  return at;
}

int64_t cu_wide_scratch(const ir_graph *g, const ir_node *n, int64_t own) {
  int64_t off[1 + WIDE_MAX];
  return al256(own) + layout(g, n, off);
}

/* y (f32 or bf16, as typed) = x over count elements */
static int convert(cu_rctx *r, cu_ref x, const char *xt, cu_ref y, const char *yt, int64_t count) {
  cu_begin(r, 256);
  cu_sb_printf(&r->b, "const %s* __restrict__ x, %s* __restrict__ y", xt, yt);
  cu_loop_open(&r->b, count);
  cu_sb_printf(&r->b, "    y[e] = (float)x[e];\n  }\n}\n");
  cu_ref ops[2] = {x, y};
  return cu_end(r, cu_blocks(count, 256), 256, ops, 2);
}

static void remap(cu_ref *x, const int *from, const int64_t *to, int nmap) {
  for (int i = 0; i < nmap; i++)
    if (x->node == from[i]) { x->node = CU_REF_ARENA, x->off += to[i]; return; }
}

/* Render kernel r->k with renderer f on f32 copies of its bf16 tensors. */
int cu_render_wide(cu_rctx *r, cu_render_fn f, int64_t own_scratch) {
  const ir_graph *g = r->g;
  const ir_node *n = &g->nodes[r->k->node];
  int64_t off[1 + WIDE_MAX], scr = r->p->buf[r->k->node].scr, base = scr + al256(own_scratch);
  if (n->nin >= WIDE_MAX) return cu_unsupported(r, "%d inputs under --precision bf16", n->nin);
  layout(g, n, off);
  int from[1 + WIDE_MAX], nmap = 0, out_bf16 = 0;
  int64_t to[1 + WIDE_MAX];
  for (int c = 0; c <= n->nin; c++) {
    int node = c ? n->in[c - 1] : r->k->node, seen = 0;
    if (off[c] < 0 || !cu_is_bf16(r, &g->nodes[node])) continue;
    for (int i = 0; i < nmap; i++) seen |= from[i] == node;
    if (seen) continue;
    if (scr < 0) return cu_unsupported(r, "no scratch for the f32 copies of its bf16 tensors");
    from[nmap] = node, to[nmap++] = base + off[c];
    if (!c) { out_bf16 = 1; continue; }
    if (convert(r, cu_ref_at(node, 0), "lt_bf16", cu_ref_at(CU_REF_ARENA, base + off[c]), "float",
                ir_numel(&g->nodes[node].shape)))
      return -1;
  }
  int l0 = r->out->nl;
  r->wide = 1; /* the renderer sees f32 tensors (cu_is_bf16 says no) */
  int rc = f(r);
  r->wide = 0;
  if (rc) return -1;
  for (int l = l0; l < r->out->nl; l++) {
    cu_launch *L = &r->out->l[l];
    if (L->what == CU_L_KERNEL)
      for (int j = 0; j < L->nops; j++) remap(&L->op[j], from, to, nmap);
    if (L->what == CU_L_GEMM) {
      remap(&L->ga, from, to, nmap), remap(&L->gb, from, to, nmap), remap(&L->gc, from, to, nmap);
      if (L->gemm.epilogue != CU_EPI_NONE) remap(&L->gbias, from, to, nmap);
    }
    if (L->what == CU_L_ZERO) remap(&L->zero, from, to, nmap);
  }
  if (!out_bf16) return 0;
  return convert(r, cu_ref_at(CU_REF_ARENA, base + off[0]), "float", cu_ref_at(r->k->node, 0), "lt_bf16",
                 ir_numel(&n->shape));
}
