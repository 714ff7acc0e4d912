/* quantize_conv.c -- the quantization pass's conv2d side (docs/quantize.md):
 * a conv2d whose weight w [O, C, KH, KW] is quantized in int8-dynamic or
 * static int8 becomes qconv2d(x, w's stored tensors, bias): the weight is
 * stored as the dense weight [K = C*KH*KW, N = O] would be, and the kernel
 * is im2col and the int8 product (rt/rt_qconv.c). A relu after it joins
 * the product's epilogue. */
#include <string.h>

#include "passes/passes.h"
#include "rt/lathe_rt.h"

/* Windows narrower than this stay f32: the int8 rows are padded to 64
 * inputs, so a 3x3 window over one channel (9 inputs) does 7 times the
 * work, and its f32 convolution is cheaper than quantizing its rows
 * (measured on the digits CNN: docs/quantize.md). */
enum { QC_MIN_K = 32 };
/* Outputs of fewer pixels per image than this stay f32: at batch 1 the
 * int8 path's fixed work (quantizing, unrolling, transposing back) is not
 * repaid. Measured (docs/quantize.md, 16 -> 32 channels, 3x3): 4x4 and 8x8
 * outputs slower in int8 than f32 at batch 1, 16x16 1.3x faster. */
enum { QC_MIN_PIXELS = 256 };

int qz_conv_mode(int mode) { return mode == LATHE_RT_Q_DQ8 || mode == LATHE_RT_Q_S8; }

void qz_weight_kn(const ir_param *p, int64_t *K, int64_t *N) {
  if (p->shape.rank == 2) {
    *K = p->shape.d[0], *N = p->shape.d[1];
    return;
  }
  *N = p->shape.d[0], *K = 1;
  for (int i = 1; i < p->shape.rank; i++) *K *= p->shape.d[i];
}

const char *qz_conv_keep_reason(const ir_graph *g, int param, int mode) {
  const ir_param *p = &g->params[param];
  int readers = 0;
  int64_t pixels = -1; /* the fewest output pixels per image of its convs */
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *n = &g->nodes[i];
    for (int k = 0; k < n->nin; k++) {
      if (n->in[k] != p->node) continue;
      if (n->op != IR_CONV2D || k != 1) return "read by something other than a convolution";
      int64_t nc = n->shape.d[0] * n->shape.d[1], px = nc > 0 ? ir_numel(&n->shape) / nc : 0;
      pixels = pixels < 0 || px < pixels ? px : pixels;
      if (n->attr.k > 1) return "a grouped convolution";
      if (g->nodes[n->in[0]].dtype != IR_F32) return "its convolution's input is not f32";
      readers++;
    }
  }
  for (int o = 0; o < g->noutputs; o++)
    if (g->outputs[o].node == p->node) return "an output";
  if (!readers) return "read by no convolution";
  if (!qz_conv_mode(mode)) return "conv2d weights are quantized in int8 and int8-dynamic only";
  int64_t K, N;
  qz_weight_kn(p, &K, &N);
  if (K > (1 << 16)) return "its window is above 65536 inputs";
  if (K < QC_MIN_K) return "its window has fewer than 32 inputs (C*KH*KW): int8 would be slower than f32 there";
  if (pixels < QC_MIN_PIXELS)
    return ar_printf(g->A, "its output has %lld pixels per image, fewer than %d: int8 would be slower than f32 at "
                     "batch 1", (long long)pixels, QC_MIN_PIXELS);
  return NULL;
}

int qz_conv_node(ir_graph *g, int j, int in[4], int mode, int64_t isa, char *msg, size_t mn) {
  const ir_node *cv = &g->nodes[j];
  const ir_shape *ws = &g->nodes[cv->in[1]].shape;
  int qin[5] = {cv->in[0], in[1], in[2], in[3], cv->nin > 2 ? cv->in[2] : -1};
  ir_attr at = {0};
  at.stride = cv->attr.stride, at.pad = cv->attr.pad, at.pad_hi = cv->attr.pad_hi, at.n = cv->attr.n;
  at.i = mode, at.k = mode == LATHE_RT_Q_S8 ? qz_s8_kernel(isa) : isa;
  at.nlist = ws->rank;
  for (int i = 0; i < ws->rank; i++) at.list[i] = ws->d[i];
  return ir_add(g, IR_QCONV2D, qin, cv->nin > 2 ? 5 : 4, &at, cv->loc, msg, mn);
}

/* Each qconv2d whose only reader is a relu takes it into its epilogue.
 * Returns how many, or -1. */
int qz_conv_fold_relu(ir_graph *g, char *msg, size_t mn) {
  int n0 = g->nnodes, folded = 0;
  char *drop = ar_alloc(g->A, (size_t)n0 + 1);
  memset(drop, 0, (size_t)n0 + 1);
  for (int q = 0; q < n0; q++) {
    const ir_node *qn = &g->nodes[q];
    if (qn->op != IR_QCONV2D || qn->attr.axis) continue;
    int r = qz_sole_reader(g, q);
    if (r < 0 || g->nodes[r].op != IR_RELU) continue;
    ir_attr at = qn->attr;
    at.axis = 1;
    int in[5];
    memcpy(in, qn->in, sizeof(int) * (size_t)qn->nin);
    int f = ir_add(g, IR_QCONV2D, in, qn->nin, &at, g->nodes[r].loc, msg, mn);
    if (f < 0) return -1;
    qz_take_readers(g, r, f);
    drop[q] = drop[r] = 1;
    folded++;
  }
  if (!folded) return 0;
  char *all = ar_alloc(g->A, (size_t)g->nnodes + 1);
  memset(all, 0, (size_t)g->nnodes + 1);
  memcpy(all, drop, (size_t)n0);
  return rw_reorder(g, all, msg, mn) ? -1 : folded;
}
