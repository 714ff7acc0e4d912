/* cu_render_sample.c -- sample_token on the device: the decode step's token
 * drawn from its logits where they are, so `lathe generate --backend cuda`
 * with a temperature copies back one token a step, not V logits. It
 * follows rt/rt_sample.c (the host's sampler and the op's reference)
 * step for step, so the same draw gives the same token:
 *
 * - the order: larger first, ties by index. Up to 256 classes each thread
 *   finds its own place by counting (the host's stable insertion gives the
 *   same order when there is no NaN; with a NaN, thread 0 runs that
 *   insertion itself, since a NaN makes its order depend on the walk);
 *   above 256, the top_k are picked one round each (every thread its
 *   share's best after the previous pick, then the block's best: warp
 *   shuffles and a pair per warp), NaN last as the host's sort has it;
 * - p_i = exp((l_i - l_top) / temp) in double (each by its own thread),
 *   summed in rank order by thread 0, u * sum walked down that order.
 *
 * Above 256 classes the device takes top_k up to CU_SAMPLE_MAX_K (the
 * picks live in shared memory); runtime/generate.c leaves the rest (top_k
 * 0 over a tokenizer's vocabulary: a sort of every logit) to the host. */
#include <stdio.h>

#include "codegen/cuda/cu_render.h"

/* rank order: (xv, xi) before (yv, yi) */
static const char before_fn[] =
    "    auto before = [](float xv, long long xi, float yv, long long yi) {\n"
    "      bool xn = xv != xv, yn = yv != yv;\n"
    "      if (xn != yn) return yn;\n"
    "      if (!xn && xv != yv) return xv > yv;\n"
    "      return xi < yi;\n    };\n";

/* up to 256 classes: sel_i[0..k) in the host's insertion order */
static void small_order(cu_sb *b, long long V) {
  cu_sb_printf(b,
               "    __shared__ int nan_seen;\n    if (threadIdx.x == 0) nan_seen = 0;\n    __syncthreads();\n"
               "    if (threadIdx.x < %lldLL) {\n"
               "      float v = (float)lg[threadIdx.x];\n      int at = 0;\n"
               "      if (v != v) nan_seen = 1;\n"
               "      for (int j = 0; j < %lld; j++) { float w = (float)lg[j]; at += w > v || (w == v && j < (int)threadIdx.x); }\n"
               "      if (at < K) sel_i[at] = (int)threadIdx.x;\n    }\n    __syncthreads();\n"
               "    if (threadIdx.x == 0 && nan_seen) { // the host's insertion, literally\n"
               "      int idx[%lld];\n"
               "      for (int i = 0; i < %lld; i++) {\n        int j = i;\n"
               "        for (; j > 0 && (float)lg[idx[j - 1]] < (float)lg[i]; j--) idx[j] = idx[j - 1];\n"
               "        idx[j] = i;\n      }\n"
               "      for (int i = 0; i < K; i++) sel_i[i] = idx[i];\n    }\n    __syncthreads();\n"
               "    if (threadIdx.x < K) sel_v[threadIdx.x] = (float)lg[sel_i[threadIdx.x]];\n",
               V, V, V, V);
}

/* above 256 classes: K rounds, each the best after the previous pick */
static void large_order(cu_sb *b) {
  cu_sb_printf(b,
               "%s"
               "    __shared__ float wv[32];\n    __shared__ long long wi[32];\n"
               "    float pv = 0.f;\n    long long pi = -1;\n"
               "    for (int t = 0; t < K; t++) {\n"
               "      float bv = 0.f;\n      long long bi = -1;\n"
               "      for (long long l = threadIdx.x; l < V; l += blockDim.x) {\n"
               "        float v = (float)lg[l];\n"
               "        if ((pi < 0 || before(pv, pi, v, l)) && (bi < 0 || before(v, l, bv, bi))) bv = v, bi = l;\n"
               "      }\n"
               "      for (int o = 16; o > 0; o >>= 1) {\n"
               "        float v = __shfl_down_sync(0xffffffffu, bv, o);\n"
               "        long long vi = __shfl_down_sync(0xffffffffu, bi, o);\n"
               "        if (vi >= 0 && (bi < 0 || before(v, vi, bv, bi))) bv = v, bi = vi;\n      }\n"
               "      if ((threadIdx.x & 31) == 0) wv[threadIdx.x >> 5] = bv, wi[threadIdx.x >> 5] = bi;\n"
               "      __syncthreads();\n"
               "      if (threadIdx.x == 0) {\n"
               "        for (int w = 1; w < (int)(blockDim.x >> 5); w++)\n"
               "          if (wi[w] >= 0 && (bi < 0 || before(wv[w], wi[w], bv, bi))) bv = wv[w], bi = wi[w];\n"
               "        sel_v[t] = bv, sel_i[t] = (int)bi;\n      }\n"
               "      __syncthreads();\n"
               "      pv = sel_v[t], pi = sel_i[t];\n"
               "      __syncthreads();\n    }\n",
               before_fn);
}

int cu_render_sample(cu_rctx *r) {
  const ir_node *n = cu_opn(r, 0), *l = cu_opn(r, 1);
  long long V = (long long)l->shape.d[l->shape.rank - 1], rows = (long long)ir_numel(&n->shape);
  long long K = n->attr.k > 0 && n->attr.k < V ? (long long)n->attr.k : V;
  if (V > 256 && K > CU_SAMPLE_MAX_K)
    return cu_unsupported(r, "top-k %lld of %lld classes (the device samples up to 256 classes, or top-k up to %d)", K,
                          V, CU_SAMPLE_MAX_K);
  cu_begin(r, 1024);
  cu_params(r, 3);
  cu_sb_printf(&r->b,
               ") {\n  const long long V = %lldLL;\n  const int K = %lld;\n  const double TEMP = %.17g;\n"
                              "  __shared__ float sel_v[%lld];\n  __shared__ int sel_i[%lld];\n  __shared__ double p[%lld];\n"
               "  const double u0 = ((double)a2[0] * 67108864.0 + (double)a2[1]) * (1.0 / 9007199254740992.0);\n"
               "  for (long long row = blockIdx.x; row < %lldLL; row += gridDim.x) {\n"
               "    const auto* lg = a1 + row * V;\n",
               V, K, n->attr.f, K, K, K, rows);
  if (V <= 256) small_order(&r->b, V);
  else large_order(&r->b);
  cu_sb_printf(&r->b,
               "    for (int t = threadIdx.x; t < K; t += blockDim.x) p[t] = exp(((double)sel_v[t] - (double)sel_v[0]) / TEMP);\n"
               "    __syncthreads();\n"
               "    if (threadIdx.x == 0) {\n"
               "      double sum = 0, u = u0;\n      for (int t = 0; t < K; t++) sum += p[t];\n"
               "      u *= sum;\n      int tok = sel_i[K - 1];\n"
               "      for (int t = 0; t < K - 1; t++)\n        if ((u -= p[t]) < 0) { tok = sel_i[t]; break; }\n"
               "      a0[row] = tok;\n    }\n    __syncthreads();\n  }\n}\n");
  cu_ref ops[3];
  cu_refs(r, ops, 3);
  return cu_end(r, rows < 1024 ? (unsigned)rows : 1024u, 1024, ops, 3);
}
