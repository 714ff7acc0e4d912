/* cg_dconv.c -- conv2d on liblathe_rt's direct kernel (lathe_rt_conv2d,
 * rt/rt_dconv.c) where it beats im2col + GEMM: one group, few channels
 * (the digits CNN: 1 -> 16 -> 32 channels on 8x8 images, where the GEMM's
 * M = O is too short for OpenBLAS and im2col copies more than the product
 * reads), one image's buffers small enough for a thread's stack, and a CPU
 * with AVX2 or AVX-512 (lathe_rt_conv_isa when the code is generated:
 * LATHE_CPU_FEATURES=-avx512f or -avx2 forces the narrower paths). A relu
 * epilogue runs in the kernel's registers; any other unary chain the plan
 * fused runs over the result afterwards. */
#include "cg_conv.h"

#include "ir/conv.h"
#include "rt/lathe_rt.h"

/* "small": beyond these the GEMM's packing pays for itself */
enum { DC_MAX_C = 64, DC_MAX_O = 128 };

/* N, C, H | W << 32, O, OH | OW << 32, KH | KW << 16 | s << 32 | dil << 48,
 * padT | padL << 32 (rt_qc_unpack's packing); 0 when not a convolution */
static int dc_packed(const ir_graph *g, const ir_node *n, int64_t v[7], ir_conv *c) {
  char msg[256];
  if (ir_conv_geom(&g->nodes[n->in[0]].shape, &g->nodes[n->in[1]].shape, &n->attr, c, msg, sizeof msg)) return 0;
  v[0] = c->N, v[1] = c->C, v[2] = c->H | c->W << 32, v[3] = c->O, v[4] = c->OH | c->OW << 32;
  v[5] = c->KH | c->KW << 16 | c->s << 32 | c->dil << 48, v[6] = c->padT | c->padL << 32;
  return 1;
}

int cg_dconv_applies(const ir_graph *g, const ir_node *n) {
  int64_t v[7];
  ir_conv c = {0};
  if (n->op != IR_CONV2D || n->dtype != IR_F32 || g->nodes[n->in[0]].dtype != IR_F32 ||
      g->nodes[n->in[1]].dtype != IR_F32 || !dc_packed(g, n, v, &c))
    return 0;
  if (c.G != 1 || c.C > DC_MAX_C || c.O > DC_MAX_O || c.H >= 1 << 30 || c.W >= 1 << 30 || c.KH >= 1 << 15 ||
      c.KW >= 1 << 15 || c.s >= 1 << 15 || c.dil >= 1 << 15 || c.padT >= 1 << 30 || c.padL >= 1 << 30)
    return 0;
  return lathe_rt_conv_isa() != LATHE_RT_CONV_SCALAR &&
         lathe_rt_conv2d_floats(v[1], v[2], v[3], v[4], v[5], v[6]) <= LATHE_RT_CONV_STACK;
}

int64_t cg_dconv_scratch_bytes(const ir_graph *g, const ir_node *n) {
  int64_t v[7];
  ir_conv c = {0};
  dc_packed(g, n, v, &c);
  return lathe_rt_conv2d_scratch_bytes(v[1], v[3], v[4], v[5]);
}

/* whether the fused steps begin with a relu, which the kernel applies in
 * its registers */
static int relu_first(const cg_fuse *f) {
  return f && f->nsteps >= 1 && f->kind[0] == PL_EPI_UNARY && !f->save[0] && f->node[0]->op == IR_RELU;
}

/* a fused max-pool's window (the chain's last step), or 0 */
static int64_t pool_window(const cg_fuse *f) {
  return f && f->nsteps >= 1 && f->kind[f->nsteps - 1] == PL_EPI_POOL ? f->node[f->nsteps - 1]->attr.k : 0;
}

/* The plan's conv_pool: the direct kernel pools the relu'd (or raw) result
 * of each chunk of output rows before transposing it out, for a 2-d
 * max-pool whose windows tile the image (window = stride) and whose rows
 * fit a chunk; any other step before it would have to run on the unpooled
 * result, which this kernel never stores. */
int cg_dconv_pool_ok(const ir_graph *g, const ir_node *conv, const pl_epilogue *sofar, const ir_node *pool) {
  if (pool->op != IR_MAXPOOL2D || pool->shape.rank != 4 || !cg_dconv_applies(g, conv)) return 0;
  if (sofar->nsteps > 1 || (sofar->nsteps == 1 && !relu_first(sofar))) return 0;
  ir_pool p = ir_pool_geom(&conv->shape, &pool->attr);
  if (p.KH != p.KW || p.s != p.KW || p.OH * p.KH != p.H || p.OW * p.KW != p.W) return 0;
  return (int)lathe_rt_conv2d_pool_ok(p.H | p.W << 32, p.KW);
}

static void epi_body(cg_k *k, V i, int w, void *ctx) {
  (void)ctx;
  cg_vst(k, k->arg[0], i, cg_epi_unary(k, cg_vld(k, k->arg[0], i, w), w), w);
}

/* kernel arguments: out, x, w, bias (conv2d's third input, if any) */
void cg_emit_dconv(cg_k *k) {
  int64_t ints[8];
  ir_conv c = {0};
  dc_packed(k->g, k->n, ints, &c);
  int relu = relu_first(k->fuse);
  int64_t pk = pool_window(k->fuse);
  ints[7] = lathe_rt_conv_isa() | (int64_t)relu << 8 | pk << 16;
  V p[5] = {k->arg[0], k->arg[1], k->arg[2], k->n->nin == 3 ? k->arg[3] : NULL, k->scratch};
  cg_call_rt(k, "lathe_rt_conv2d", p, 5, ints, 8);
  /* other unary steps (never with a pool: cg_dconv_pool_ok) run over the result */
  if (k->fuse && k->fuse->nsteps > relu + (pk > 0)) cg_vfor(k, ci(k, c.N * c.O * c.OH * c.OW), epi_body, NULL);
}
