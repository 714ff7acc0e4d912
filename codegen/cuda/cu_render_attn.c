/* cu_render_attn.c -- attention (attention, attention_save) as two
 * products and one fused kernel: qkv = x W_qkv + b (cuBLASLt, bias
 * epilogue), each (batch, head, query row) attended by one warp with an
 * online softmax over the keys (flash-style: the running maximum and sum
 * rescale the accumulated context, so no T x T matrix exists anywhere;
 * causal rows stop at their own position), then y = ctx W_p + b_p.
 * attention keeps qkv and the context in the kernel's scratch;
 * attention_save writes them (and each row's logsumexp) into its result
 * [y | qkv | ctx | lse], which its backward reads. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codegen/cuda/cu_render.h"

/* A plain row-major product c[m, n] = a[m, k] b[k, n] + bias. */
static int gemm_raw(cu_rctx *r, int64_t m, int64_t k, int64_t n, cu_ref a, cu_ref b, cu_ref c, cu_ref bias) {
  if (m > 2147483647 || k > 2147483647 || n > 2147483647) return cu_unsupported(r, "a product too large for int");
  cu_launch l;
  memset(&l, 0, sizeof l);
  l.what = CU_L_GEMM;
  l.gemm.m = (int)m, l.gemm.k = (int)k, l.gemm.n = (int)n;
  l.gemm.lda = (int)k, l.gemm.ldb = (int)n, l.gemm.ldc = (int)n;
  l.gemm.alpha = 1.f, l.gemm.beta = 0.f, l.gemm.batch = 1;
  l.gemm.epilogue = CU_EPI_BIAS;
  l.ga = a, l.gb = b, l.gc = c, l.gbias = bias;
  return cu_add_launch(r, &l);
}

static cu_ref ref(int node, int64_t off) {
  cu_ref x = {node, off};
  return x;
}

int cu_render_attention(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0), *x = &r->g->nodes[n->in[0]];
  int save = n->op == IR_ATTENTION_SAVE;
  int64_t B = x->shape.d[0], T = x->shape.d[1], D = x->shape.d[2], H = n->attr.heads;
  if (H < 1 || D % H) return cu_unsupported(r, "%lld heads do not divide width %lld", (long long)H, (long long)D);
  int64_t HD = D / H, BT = B * T, NE = (HD + 31) / 32;
  if (NE > 8) return cu_unsupported(r, "a head width above 256");
  cu_ref y = ref(r->k->node, 0), qkv, ctx, lse = ref(r->k->node, 0);
  if (save) {
    qkv = ref(r->k->node, BT * D * 4);
    ctx = ref(r->k->node, BT * D * 4 + BT * 3 * D * 4);
    lse = ref(r->k->node, BT * D * 4 + BT * 3 * D * 4 + BT * D * 4);
  } else {
    int64_t scr = r->p->buf[r->k->node].scr;
    if (scr < 0) return cu_unsupported(r, "no scratch for qkv and the context");
    qkv = ref(CU_REF_ARENA, scr), ctx = ref(CU_REF_ARENA, scr + BT * 3 * D * 4);
  }
  if (gemm_raw(r, BT, D, 3 * D, ref(n->in[0], 0), ref(n->in[1], 0), qkv, ref(n->in[2], 0))) return -1;
  char sc[48];
  cu_flt(1.0 / sqrt((double)HD), sc, sizeof sc);
  cu_begin(r, 256);
  cu_sb_printf(&r->b, "const float* __restrict__ qkv, float* __restrict__ ctx, float* __restrict__ lse) {\n"
                      "  const long long T = %lldLL, D = %lldLL, H = %lldLL, HD = %lldLL, ROWS = %lldLL;\n"
                      "  const float SCALE = %s;\n  const int lane = threadIdx.x & 31;\n"
                      "  for (long long w = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; w < ROWS;"
                      " w += ((long long)gridDim.x * blockDim.x) >> 5) {\n"
                      "    long long i = w %% T, h = w / T %% H, b = w / (T * H);\n"
                      "    const float* base = qkv + b * T * 3 * D;\n"
                      "    float q[%lld], acc[%lld], m = -LT_INF, l = 0.f;\n"
                      "    for (int t = 0; t < %lld; t++) {\n      long long e = lane + 32 * t;\n"
                      "      q[t] = e < HD ? base[i * 3 * D + h * HD + e] : 0.f; acc[t] = 0.f;\n    }\n"
                      "    long long nj = %s;\n"
                      "    for (long long j = 0; j < nj; j++) {\n"
                      "      const float* kr = base + j * 3 * D + D + h * HD;\n      const float* vr = kr + D;\n"
                      "      float s = 0.f;\n"
                      "      for (int t = 0; t < %lld; t++) { long long e = lane + 32 * t; if (e < HD) s += q[t] * kr[e]; }\n"
                      "      s = lt_warp_sum(s) * SCALE;\n"
                      "      float mn = fmaxf(m, s), c = expf(m - mn), p = expf(s - mn);\n      l = l * c + p;\n"
                      "      for (int t = 0; t < %lld; t++) { long long e = lane + 32 * t; if (e < HD) acc[t] = acc[t] * c + p * vr[e]; }\n"
                      "      m = mn;\n    }\n"
                      "    for (int t = 0; t < %lld; t++) { long long e = lane + 32 * t; if (e < HD) ctx[(b * T + i) * D + h * HD + e] = acc[t] / l; }\n"
                      "    %s\n  }\n}\n",
               (long long)T, (long long)D, (long long)H, (long long)HD, (long long)(B * H * T), sc, (long long)NE,
               (long long)NE, (long long)NE, n->attr.causal ? "i + 1" : "T", (long long)NE, (long long)NE, (long long)NE,
               save ? "if (lane == 0) lse[(b * H + h) * T + i] = m + logf(l);" : "(void)lse;");
  cu_ref ops[3] = {qkv, ctx, lse};
  if (cu_end(r, cu_blocks(B * H * T * 32, 256), 256, ops, 3)) return -1;
  return gemm_raw(r, BT, D, D, ctx, ref(n->in[3], 0), y, ref(n->in[4], 0));
}
