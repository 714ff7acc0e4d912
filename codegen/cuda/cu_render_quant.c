/* cu_render_quant.c -- the quantized models of `lathe quantize`
 * (docs/quantize.md) on the GPU: qmatmul and qconv2d in every mode, static
 * int8's quantize and dequantize. The semantics are the interpreter's
 * (ir/interp_quant.c, interp_qconv.c, interp_qdq.c; layouts rt/rt_quant.h):
 *
 * - int8-dynamic and static int8 on an integer kernel (attr k not F32):
 *   one kernel quantizes each row (a block per row; an im2col row for
 *   qconv2d) into the node's scratch as s8 with its scale, exactly as
 *   rt_q_row / rt_q_row_static do; then a thread per result sums the
 *   row's bytes times the weight's with __dp4a (s8 x s8 into int32: exact,
 *   so the c offsets the CPU's u8 x s8 products need are not read) and
 *   applies the epilogue in the same kernel: (float)acc * (sx * s[n]),
 *   + bias, relu, the requantization to s8 of a folded DQ -> Q pair. Every
 *   float step is __fmul_rn / __fadd_rn, so NVRTC cannot contract it into
 *   an FMA: the result equals the interpreter's bit for bit.
 * - static int8's f32 form (k = F32, a CPU without SIMD dot products chose
 *   it): the f32 inputs times the int8 weights summed in f32 (the
 *   interpreter sums in double: within f32 rounding).
 * - w8 / w4 below 16 rows (rt_q_wo_rows): each row quantized per group of
 *   32 (a warp per group), exact __dp4a dot products per group (w4: the
 *   nibbles masked out of the word, their +8 taken off through the group's
 *   sum of q), the groups summed in f32 (the CPU's order; the interpreter
 *   sums in double).
 * - w8 / w4 from 16 rows, bf16, f16: the weights dequantized (w8/w4: s * q
 *   in f32; 16-bit floats widened exactly) into the scratch as [N, K] f32,
 *   then the driver's product (cuBLASLt); bf16 on the CPU's bf16 dot
 *   products (k = AVX512BF16) rounds the activations to bf16 first and
 *   takes its bias and relu as the product's epilogue.
 * - quantize / dequantize: elementwise, rt_q_requant's and q * sx's f32
 *   operations. */
#include <stdio.h>
#include <string.h>

#include "codegen/cuda/cu_render.h"
#include "ir/conv.h"
#include "rt/lathe_rt.h"
#include "rt/rt_quant.h"

enum { QT = 256 };

static int64_t al256(int64_t b) { return (b + 255) / 256 * 256; }

/* What a quantized product needs to know: rows M of K inputs times N
 * columns; conv: the geometry of its im2col rows. */
typedef struct {
  const ir_node *n;
  int conv, mode, f32form, xi8, o8, relu;
  int64_t M, K, Kp, N;
  int bias, os;  /* operand indexes (cu_opn) of the bias and of the output scale, or 0 */
  ir_conv d;
} qd;

/* operand j of the kernel for the node's input i (the plan's operands are its inputs, in order) */
static int in_op(const cu_rctx *r, int i) {
  for (int j = 1; j <= r->k->narg; j++)
    if (r->k->arg[j - 1] == r->g->nodes[r->k->node].in[i]) return j;
  return -1;
}

static int dims_of(cu_rctx *r, qd *q) {
  const ir_node *n = cu_opn(r, 0), *x = &r->g->nodes[n->in[0]];
  memset(q, 0, sizeof *q);
  q->n = n, q->conv = n->op == IR_QCONV2D, q->mode = (int)n->attr.i;
  q->xi8 = x->dtype == IR_I8;
  q->o8 = q->mode == LATHE_RT_Q_S8 && (q->conv ? n->attr.start == 1 : n->attr.pad == 1);
  q->f32form = q->mode == LATHE_RT_Q_S8 && n->attr.k == LATHE_RT_ISA_F32;
  q->relu = n->attr.axis == 1;
  if (q->conv) {
    if (ir_qconv_geom(r->g, n, &q->d, r->msg, r->msgn)) return -1;
    q->K = q->d.C * q->d.KH * q->d.KW, q->M = q->d.N * q->d.OH * q->d.OW, q->N = q->d.O;
  } else {
    q->K = x->shape.d[x->shape.rank - 1], q->N = n->attr.n;
    q->M = ir_numel(&x->shape) / (q->K ? q->K : 1);
  }
  q->Kp = rt_q_kpad(q->K);
  int i8 = q->mode == LATHE_RT_Q_DQ8 || q->mode == LATHE_RT_Q_S8;
  int base = n->nin - q->o8, want = i8 ? 4 : q->mode == LATHE_RT_Q_W8 || q->mode == LATHE_RT_Q_W4 ? 3 : 2;
  if (base > want) q->bias = in_op(r, want);
  if (q->o8) q->os = in_op(r, n->nin - 1);
  for (int j = 0; j <= r->k->narg; j++)
    if (cu_is_bf16(r, cu_opn(r, j))) return cu_unsupported(r, "a bf16 activation (--precision bf16) in a quantized product");
  if ((base > want && q->bias < 0) || (q->o8 && q->os < 0) || in_op(r, 0) != 1)
    return cu_unsupported(r, "operands out of the node's order");
  return 0;
}

/* The scratch: int8 modes on an integer kernel: the s8 rows [M, Kp] and
 * their scales [M]; w8/w4 below 16 rows: the s8 rows [M, K] and the group
 * scales [M, K/32]; the dequantizing modes: the weights [N, K] f32 (and
 * bf16 on its dot products: the rounded activations [M, K]). */
int64_t cu_quant_scratch(const ir_graph *g, const ir_node *n) {
  const ir_node *x = &g->nodes[n->in[0]];
  int64_t mode = n->attr.i, K, M, N;
  if (n->op == IR_QCONV2D) {
    ir_conv d;
    char msg[8];
    if (ir_qconv_geom(g, n, &d, msg, sizeof msg)) return 0;
    K = d.C * d.KH * d.KW, M = d.N * d.OH * d.OW, N = d.O;
  } else {
    K = x->shape.d[x->shape.rank - 1], N = n->attr.n, M = ir_numel(&x->shape) / (K ? K : 1);
  }
  if (mode == LATHE_RT_Q_DQ8 || mode == LATHE_RT_Q_S8)
    return mode == LATHE_RT_Q_S8 && n->attr.k == LATHE_RT_ISA_F32 ? 0 : al256(M * rt_q_kpad(K)) + al256(4 * M);
  if ((mode == LATHE_RT_Q_W8 || mode == LATHE_RT_Q_W4) && rt_q_wo_rows(M, K))
    return al256(M * K) + al256(4 * M * (K / RT_Q_GROUP));
  int rb = mode == LATHE_RT_Q_BF16 && n->attr.k == LATHE_RT_ISA_AVX512BF16;
  return al256(4 * N * K) + (rb ? al256(4 * M * K) : 0);
}

/* ---- pieces of kernel text ---- */

/* `float v` = element k of im2col row `row` (rt_qc_row's order: kh, kw, c), or of x's row */
static void load_v(cu_sb *b, const qd *q) {
  if (!q->conv) {
    cu_sb_printf(b, "      float v = (float)x[row * %lldLL + k];\n", (long long)q->K);
    return;
  }
  const ir_conv *d = &q->d;
  cu_sb_printf(b,
               "      long long c_ = k %% %lldLL, kw_ = k / %lldLL %% %lldLL, kh_ = k / %lldLL;\n"
               "      long long h_ = oh_ * %lldLL + kh_ * %lldLL - %lldLL, w_ = ow_ * %lldLL + kw_ * %lldLL - %lldLL;\n"
               "      float v = h_ >= 0 && h_ < %lldLL && w_ >= 0 && w_ < %lldLL ? (float)x[((n_ * %lldLL + c_) * %lldLL + h_) * %lldLL + w_] : 0.f;\n",
               (long long)d->C, (long long)d->C, (long long)d->KW, (long long)(d->C * d->KW), (long long)d->s,
               (long long)d->dil, (long long)d->padT, (long long)d->s, (long long)d->dil, (long long)d->padL,
               (long long)d->H, (long long)d->W, (long long)d->C, (long long)d->H, (long long)d->W);
}

/* the im2col row's image and output pixel (conv) */
static void row_pos(cu_sb *b, const qd *q) {
  if (!q->conv) return;
  long long P = (long long)(q->d.OH * q->d.OW), OW = (long long)q->d.OW;
  cu_sb_printf(b, "    const long long n_ = row / %lldLL, oh_ = row %% %lldLL / %lldLL, ow_ = row %% %lldLL;\n", P, P, OW,
               OW);
}

/* rt_q_requant(y, inv) as s8 into `dst` */
static void requant(cu_sb *b, const char *dst, const char *y, const char *inv) {
  cu_sb_printf(b, "    { float v_ = __fmul_rn(%s, %s);\n"
                  "      v_ = v_ > 127.f ? 127.f : v_ < -127.f ? -127.f : v_ == v_ ? v_ : 0.f;\n"
                  "      %s = (signed char)__float2int_rn(v_); }\n", y, inv, dst);
}

/* where result (row, column j) goes */
static void out_index(cu_sb *b, const qd *q) {
  if (!q->conv) {
    cu_sb_printf(b, "    const long long oi = e;\n");
    return;
  }
  long long P = (long long)(q->d.OH * q->d.OW);
  cu_sb_printf(b, "    const long long oi = (row / %lldLL * %lldLL + j) * %lldLL + row %% %lldLL;\n", P,
               (long long)q->N, P, P);
}

/* "const float* __restrict__ x" etc. for operand j under a given name */
static void param(cu_rctx *r, const char *name, int j, int out) { cu_param(r, name, cu_opn(r, j), out); }

/* ---- int8-dynamic and static int8 on integer kernels ---- */

/* Each row to s8 into q [M, Kp] (zeros past K) and its scale into sx [M]:
 * rt_q_row (the row's max |x| / 127), rt_q_row_static (s[N] > 0), or an
 * i8 input as it is with the scale s[N]. A block per row. */
static int quantize_rows(cu_rctx *r, const qd *q, cu_ref rows, cu_ref scales) {
  unsigned t = cu_row_threads(q->K);
  long long K = (long long)q->K, Kp = (long long)q->Kp;
  cu_begin(r, (int)t);
  param(r, "x", 1, 0);
  param(r, "s", in_op(r, 2), 0);
  cu_sb_printf(&r->b, ", signed char* __restrict__ q, float* __restrict__ sx) {\n"
                      "  for (long long row = blockIdx.x; row < %lldLL; row += gridDim.x) {\n", (long long)q->M);
  row_pos(&r->b, q);
  cu_sb_printf(&r->b, "    signed char* qr = q + row * %lldLL;\n"
                      "    for (long long k = %lldLL + threadIdx.x; k < %lldLL; k += blockDim.x) qr[k] = 0;\n",
               Kp, K, Kp);
  if (q->xi8) { /* already s8, with the reading product's scale */
    cu_sb_printf(&r->b, "    for (long long k = threadIdx.x; k < %lldLL; k += blockDim.x) {\n", K);
    load_v(&r->b, q);
    cu_sb_printf(&r->b, "      qr[k] = (signed char)(int)v;\n    }\n"
                        "    if (threadIdx.x == 0) sx[row] = s[%lldLL];\n  }\n}\n", (long long)q->N);
  } else {
    /* static int8's calibrated scale (s[N] > 0), else the row's own; the
     * branch is the same for the whole block (its barrier is safe) */
    if (q->mode == LATHE_RT_Q_S8) {
      cu_sb_printf(&r->b, "    const float ss = s[%lldLL];\n    if (ss > 0.f) {\n      const float inv = 1.0f / ss;\n"
                          "    for (long long k = threadIdx.x; k < %lldLL; k += blockDim.x) {\n",
                   (long long)q->N, K);
      load_v(&r->b, q);
      requant(&r->b, "qr[k]", "v", "inv");
      cu_sb_printf(&r->b, "    }\n    if (threadIdx.x == 0) sx[row] = ss;\n    continue;\n    }\n");
    }
    cu_sb_printf(&r->b, "    float a = 0.f;\n    for (long long k = threadIdx.x; k < %lldLL; k += blockDim.x) {\n", K);
    load_v(&r->b, q);
    /* rt_q_row's `v > a ? v : a` from 0: a NaN never wins */
    cu_sb_printf(&r->b, "      float av = fabsf(v);\n      a = av > a ? av : a;\n    }\n"
                        "    a = lt_block_reduce(a, 1);\n"
                        "    const float inv = a > 0.f ? 127.0f / a : 0.0f;\n"
                        "    for (long long k = threadIdx.x; k < %lldLL; k += blockDim.x) {\n", K);
    load_v(&r->b, q);
    cu_sb_printf(&r->b, "      qr[k] = (signed char)__float2int_rn(__fmul_rn(v, inv));\n    }\n"
                        "    if (threadIdx.x == 0) sx[row] = a / 127.0f;\n    __syncthreads();\n  }\n}\n");
  }
  cu_ref ops[4] = {cu_ref_at(cu_opnode(r, 1), 0), cu_ref_at(cu_opnode(r, in_op(r, 2)), 0), rows, scales};
  return cu_end(r, cu_blocks(q->M, 1), t, ops, 4);
}

/* The epilogue after `float y` (the sum already scaled): bias, relu, and
 * the store (s8 requantized with os's last value when o8). */
static void epilogue(cu_rctx *r, const qd *q) {
  if (q->bias) cu_sb_printf(&r->b, "    y = __fadd_rn(y, b[j]);\n");
  if (q->relu) cu_sb_printf(&r->b, "    y = y > 0.f ? y : 0.f;\n");
  out_index(&r->b, q);
  if (!q->o8) {
    cu_sb_printf(&r->b, "    o[oi] = y;\n");
    return;
  }
  const ir_node *os = cu_opn(r, q->os);
  cu_sb_printf(&r->b, "    const float osv = os[%lldLL], oinv = osv > 0.f ? 1.0f / osv : 0.0f;\n",
               (long long)os->shape.d[0] - 1);
  requant(&r->b, "o[oi]", "y", "oinv");
}

/* The parameters after the first ones: bias, os, then `) {` and the loop over results */
static void product_params(cu_rctx *r, const qd *q, cu_ref *ops, int *no) {
  if (q->bias) param(r, "b", q->bias, 0), ops[(*no)++] = cu_ref_at(cu_opnode(r, q->bias), 0);
  if (q->os) param(r, "os", q->os, 0), ops[(*no)++] = cu_ref_at(cu_opnode(r, q->os), 0);
  cu_loop_open(&r->b, q->M * q->N);
  cu_sb_printf(&r->b, "    const long long row = e / %lldLL, j = e %% %lldLL;\n", (long long)q->N, (long long)q->N);
}

/* acc = the s8 row times column j's s8 weights (rt_q_dq8_at: 16 columns'
 * 4 bytes in a row, so a word per column and 4 inputs) by __dp4a */
static int int8_product(cu_rctx *r, const qd *q, cu_ref rows, cu_ref scales) {
  long long Kp = (long long)q->Kp;
  cu_begin(r, QT);
  param(r, "o", 0, 1);
  cu_sb_printf(&r->b, ", const int* __restrict__ q, const float* __restrict__ sx, const int* __restrict__ w");
  param(r, "s", in_op(r, 2), 0);
  cu_ref ops[8] = {cu_ref_at(cu_opnode(r, 0), 0), rows, scales, cu_ref_at(cu_opnode(r, in_op(r, 1)), 0),
                   cu_ref_at(cu_opnode(r, in_op(r, 2)), 0)};
  int no = 5;
  product_params(r, q, ops, &no);
  cu_sb_printf(&r->b, "    const int* qr = q + row * %lldLL;\n"
                      "    const int* wj = w + j / 16 * %lldLL + j %% 16;\n"
                      "    int acc = 0;\n"
                      "    for (long long k4 = 0; k4 < %lldLL; k4++) acc = __dp4a(qr[k4], wj[k4 * 16], acc);\n"
                      "    float y = __fmul_rn((float)acc, __fmul_rn(sx[row], s[j]));\n",
               Kp / 4, Kp / 4 * 16, Kp / 4);
  epilogue(r, q);
  cu_sb_printf(&r->b, "  }\n}\n");
  return cu_end(r, cu_blocks(q->M * q->N, QT), QT, ops, no);
}

/* static int8's f32 form: sum x * q in f32, * s[n], bias, relu (!(y > 0): 0) */
static int f32_product(cu_rctx *r, const qd *q) {
  cu_begin(r, QT);
  param(r, "o", 0, 1);
  param(r, "x", 1, 0);
  cu_sb_printf(&r->b, ", const signed char* __restrict__ w");
  param(r, "s", in_op(r, 2), 0);
  cu_ref ops[8] = {cu_ref_at(cu_opnode(r, 0), 0), cu_ref_at(cu_opnode(r, 1), 0),
                   cu_ref_at(cu_opnode(r, in_op(r, 1)), 0), cu_ref_at(cu_opnode(r, in_op(r, 2)), 0)};
  int no = 4;
  product_params(r, q, ops, &no);
  row_pos(&r->b, q);
  cu_sb_printf(&r->b, "    float acc = 0.f;\n    for (long long k = 0; k < %lldLL; k++) {\n", (long long)q->K);
  load_v(&r->b, q);
  cu_sb_printf(&r->b, "      acc += v * (float)w[(j / 16 * %lldLL + k / 4) * 64 + j %% 16 * 4 + k %% 4];\n    }\n"
                      "    float y = acc * s[j];\n",
               (long long)q->Kp / 4);
  if (q->bias) cu_sb_printf(&r->b, "    y = y + b[j];\n");
  if (q->relu) cu_sb_printf(&r->b, "    y = !(y > 0.f) ? 0.f : y;\n");
  out_index(&r->b, q);
  cu_sb_printf(&r->b, "    o[oi] = y;\n  }\n}\n");
  return cu_end(r, cu_blocks(q->M * q->N, QT), QT, ops, no);
}

static int render_int8(cu_rctx *r, const qd *q) {
  if (q->f32form) return f32_product(r, q);
  int64_t scr = r->p->buf[r->k->node].scr;
  if (scr < 0) return cu_unsupported(r, "no scratch for the quantized rows");
  cu_ref rows = cu_ref_at(CU_REF_ARENA, scr), scales = cu_ref_at(CU_REF_ARENA, scr + al256(q->M * q->Kp));
  return quantize_rows(r, q, rows, scales) || int8_product(r, q, rows, scales) ? -1 : 0;
}

/* ---- w8 / w4 below 16 rows: group-quantized rows, exact group dot products ---- */

static int wo_rows(cu_rctx *r, const qd *q) {
  int64_t scr = r->p->buf[r->k->node].scr, G = q->K / RT_Q_GROUP;
  if (scr < 0) return cu_unsupported(r, "no scratch for the quantized rows");
  cu_ref rows = cu_ref_at(CU_REF_ARENA, scr), scales = cu_ref_at(CU_REF_ARENA, scr + al256(q->M * q->K));
  long long K = (long long)q->K;
  /* a warp per group of 32: rt_q_row on the group (max |x| from 0, a NaN never wins) */
  cu_begin(r, QT);
  param(r, "x", 1, 0);
  cu_sb_printf(&r->b, ", signed char* __restrict__ q, float* __restrict__ sx) {\n");
  cu_warp_loop(&r->b, q->M * G);
  cu_sb_printf(&r->b, "    const float v = x[w * 32 + lane];\n"
                      "    float a = fabsf(v);\n    a = a > 0.f ? a : 0.f;\n    a = lt_warp_max(a);\n"
                      "    const float inv = a > 0.f ? 127.0f / a : 0.0f;\n"
                      "    q[w * 32 + lane] = (signed char)__float2int_rn(__fmul_rn(v, inv));\n"
                      "    if (lane == 0) sx[w] = a / 127.0f;\n  }\n}\n");
  cu_ref qops[3] = {cu_ref_at(cu_opnode(r, 1), 0), rows, scales};
  if (cu_end(r, cu_blocks(q->M * G * 32, QT), QT, qops, 3)) return -1;
  int w4 = q->mode == LATHE_RT_Q_W4;
  cu_begin(r, QT);
  param(r, "o", 0, 1);
  cu_sb_printf(&r->b, ", const int* __restrict__ q, const float* __restrict__ sx, const int* __restrict__ w");
  param(r, "s", in_op(r, 2), 0);
  cu_loop_open(&r->b, q->M * q->N);
  cu_sb_printf(&r->b, "    const long long row = e / %lldLL, j = e %% %lldLL;\n"
                      "    const int* qr = q + row * %lldLL;\n    float y = 0.f;\n"
                      "    for (long long g = 0; g < %lldLL; g++) {\n      int dot = 0;\n",
               (long long)q->N, (long long)q->N, K / 4, (long long)G);
  if (w4) /* run i: inputs 4i..4i+3 in the low nibbles, 16+4i.. in the high, each + 8 */
    cu_sb_printf(&r->b, "      const int* wg = w + (j / 16 * %lldLL + g) * 64 + j %% 16;\n      int qs = 0;\n"
                        "      for (int i = 0; i < 4; i++) {\n        const int wv = wg[i * 16];\n"
                        "        dot = __dp4a(qr[g * 8 + i], wv & 0x0f0f0f0f, dot);\n"
                        "        dot = __dp4a(qr[g * 8 + 4 + i], (wv >> 4) & 0x0f0f0f0f, dot);\n      }\n"
                        "      for (int i = 0; i < 8; i++) qs = __dp4a(qr[g * 8 + i], 0x01010101, qs);\n"
                        "      dot -= 8 * qs;\n",
                 (long long)G);
  else
    cu_sb_printf(&r->b, "      const int* wg = w + (j / 16 * %lldLL + g * 8) * 16 + j %% 16;\n"
                        "      for (int i = 0; i < 8; i++) dot = __dp4a(qr[g * 8 + i], wg[i * 16], dot);\n",
                 K / 4);
  cu_sb_printf(&r->b, "      y += (float)dot * (sx[row * %lldLL + g] * s[(j / 16 * %lldLL + g) * 16 + j %% 16]);\n"
                      "    }\n    o[e] = y;\n  }\n}\n",
               (long long)G, (long long)G);
  cu_ref ops[5] = {cu_ref_at(cu_opnode(r, 0), 0), rows, scales, cu_ref_at(cu_opnode(r, in_op(r, 1)), 0),
                   cu_ref_at(cu_opnode(r, in_op(r, 2)), 0)};
  return cu_end(r, cu_blocks(q->M * q->N, QT), QT, ops, 5);
}

/* ---- the dequantizing modes: the weights as f32 [N, K], then the driver's product ---- */

static int dequantized(cu_rctx *r, const qd *q) {
  int64_t scr = r->p->buf[r->k->node].scr, N = q->N, K = q->K, G = K / RT_Q_GROUP;
  if (scr < 0) return cu_unsupported(r, "no scratch for the dequantized weights");
  int grouped = q->mode == LATHE_RT_Q_W8 || q->mode == LATHE_RT_Q_W4;
  int rb = q->mode == LATHE_RT_Q_BF16 && q->n->attr.k == LATHE_RT_ISA_AVX512BF16;
  cu_ref wf = cu_ref_at(CU_REF_ARENA, scr), xr = cu_ref_at(CU_REF_ARENA, scr + al256(4 * N * K));
  cu_begin(r, QT);
  cu_sb_printf(&r->b, "float* __restrict__ wf");
  param(r, "w", in_op(r, 1), 0);
  if (grouped) param(r, "s", in_op(r, 2), 0);
  cu_loop_open(&r->b, N * K);
  if (grouped)
    cu_sb_printf(&r->b, "    const long long j = e / %lldLL, k = e %% %lldLL;\n", (long long)K, (long long)K);
  if (q->mode == LATHE_RT_Q_W8)
    cu_sb_printf(&r->b, "    const int qv = w[(j / 16 * %lldLL + k / 4) * 64 + j %% 16 * 4 + k %% 4];\n",
                 (long long)K / 4);
  else if (q->mode == LATHE_RT_Q_W4)
    cu_sb_printf(&r->b, "    const long long rr = k %% 32;\n"
                        "    const int by = w[(j / 16 * %lldLL + k / 32) * 256 + rr %% 16 / 4 * 64 + j %% 16 * 4 + rr %% 4];\n"
                        "    const int qv = (rr >= 16 ? by >> 4 : by & 15) - 8;\n",
                 (long long)G);
  if (grouped)
    cu_sb_printf(&r->b, "    wf[e] = s[(j / 16 * %lldLL + k / 32) * 16 + j %% 16] * (float)qv;\n", (long long)G);
  else if (q->mode == LATHE_RT_Q_BF16)
    cu_sb_printf(&r->b, "    wf[e] = __uint_as_float((unsigned)w[e] << 16);\n");
  else /* f16 widened exactly (rt_q_f16) */
    cu_sb_printf(&r->b, "    const unsigned h = w[e], sg = (h >> 15) << 31, ex = (h >> 10) & 31;\n"
                        "    unsigned m = h & 1023, bits;\n"
                        "    if (ex == 31) bits = sg | 0x7f800000u | (m << 13);\n"
                        "    else if (ex) bits = sg | ((ex + 112) << 23) | (m << 13);\n"
                        "    else if (!m) bits = sg;\n"
                        "    else { unsigned ee = 113; while (!(m & 1024)) { m <<= 1; ee--; }"
                        " bits = sg | (ee << 23) | ((m & 1023) << 13); }\n"
                        "    wf[e] = __uint_as_float(bits);\n");
  cu_sb_printf(&r->b, "  }\n}\n");
  cu_ref ops[3] = {wf, cu_ref_at(cu_opnode(r, in_op(r, 1)), 0), grouped ? cu_ref_at(cu_opnode(r, in_op(r, 2)), 0) : wf};
  if (cu_end(r, cu_blocks(N * K, QT), QT, ops, grouped ? 3 : 2)) return -1;
  cu_ref x = cu_ref_at(cu_opnode(r, 1), 0);
  if (rb) { /* the activations rounded to bf16 (rt_qbf16_round) */
    cu_begin(r, QT);
    cu_sb_printf(&r->b, "float* __restrict__ xr");
    param(r, "x", 1, 0);
    cu_loop_open(&r->b, q->M * K);
    cu_sb_printf(&r->b, "    xr[e] = (float)lt_bf16(x[e]);\n  }\n}\n");
    cu_ref xops[2] = {xr, x};
    if (cu_end(r, cu_blocks(q->M * K, QT), QT, xops, 2)) return -1;
    x = xr;
  }
  cu_ref bias = q->bias ? cu_ref_at(cu_opnode(r, q->bias), 0) : cu_ref_at(CU_REF_NONE, 0);
  if (q->relu && !q->bias) return cu_unsupported(r, "a relu epilogue without a bias");
  if (cu_gemm_t(r, q->M, K, N, 0, 1, x, wf, cu_ref_at(r->k->node, 0), bias)) return -1;
  if (q->relu) r->out->l[r->out->nl - 1].gemm.epilogue = CU_EPI_BIAS_RELU;
  return 0;
}

static int r_qproduct(cu_rctx *r) {
  qd q;
  if (dims_of(r, &q)) return -1;
  if (q.M * q.N == 0) return 0;
  if (q.mode == LATHE_RT_Q_DQ8 || q.mode == LATHE_RT_Q_S8) return render_int8(r, &q);
  if (q.conv) return cu_unsupported(r, "qconv2d in mode %d (int8 modes only)", q.mode);
  if ((q.mode == LATHE_RT_Q_W8 || q.mode == LATHE_RT_Q_W4) && rt_q_wo_rows(q.M, q.K)) return wo_rows(r, &q);
  if (q.mode >= LATHE_RT_Q_W8 && q.mode <= LATHE_RT_Q_F16) return dequantized(r, &q);
  return cu_unsupported(r, "unknown quantization mode %d", q.mode);
}

/* ---- static int8's quantize and dequantize (rt/rt_qdq.h) ---- */

static int r_quantize(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0);
  char body[512];
  snprintf(body, sizeof body,
           "    const float sv = a2[%lldLL], inv = sv > 0.f ? 1.0f / sv : 0.0f;\n"
           "    float v_ = __fmul_rn(a1[e], inv);\n"
           "    v_ = v_ > 127.f ? 127.f : v_ < -127.f ? -127.f : v_ == v_ ? v_ : 0.f;\n"
           "    a0[e] = (signed char)__float2int_rn(v_);\n",
           (long long)n->attr.n);
  return cu_per_element(r, 3, 0, body);
}

static int r_dequantize(cu_rctx *r) {
  char body[160];
  snprintf(body, sizeof body, "    a0[e] = __fmul_rn((float)a1[e], a2[%lldLL]);\n", (long long)cu_opn(r, 0)->attr.n);
  return cu_per_element(r, 3, 0, body);
}

cu_render_fn cu_quant_renderer(int op) {
  return op == IR_QMATMUL || op == IR_QCONV2D ? r_qproduct
         : op == IR_QUANTIZE                  ? r_quantize
         : op == IR_DEQUANTIZE                ? r_dequantize
                                              : NULL;
}
