/* rt_sample.c -- the token sampler of lathe_generate (runtime/generate.c),
 * one implementation for every place a token is drawn: the host between
 * decode steps, the sample_token op's reference kernel (ir/interp_decode.c)
 * and its CPU kernel (codegen/llvm/cg_decode.c). The CUDA kernel
 * (codegen/cuda/cu_render_sample.c) follows it: the same order, the same
 * double sums, the same inverse-CDF walk, so a draw gives the same token.
 *
 * Greedy (temp 0): the first maximum. Else softmax(logits / temp) over the
 * top_k largest (0: all), p_i = exp((l_i - l_top) / temp) in double, summed
 * in rank order, and the token is where u * sum falls walking that order. A
 * vocabulary up to 256 ranks by a stable insertion (larger first, ties by
 * index), a larger one by a sort with the same order (NaN last). */
#include <math.h>
#include <stdlib.h>

#include "rt/lathe_rt.h"

typedef struct {
  float v;
  int i;
} ranked;

/* Larger first, ties (and NaNs, last) by index: the insertion order below. */
static int by_rank(const void *a, const void *b) {
  const ranked *x = a, *y = b;
  int xn = x->v != x->v, yn = y->v != y->v;
  if (xn != yn) return xn - yn;
  if (!xn && x->v != y->v) return x->v > y->v ? -1 : 1;
  return (x->i > y->i) - (x->i < y->i);
}

/* A tokenizer's vocabulary (above 256): the top_k by a sort of every
 * logit, then as below. 0 when out of memory (the first token). */
static int sample_large(const float *lg, int64_t V, double temp, int64_t top_k, double u) {
  ranked *r = malloc((size_t)V * sizeof *r);
  double *p = malloc((size_t)V * sizeof *p);
  int tok = 0;
  if (r && p) {
    for (int64_t i = 0; i < V; i++) r[i].v = lg[i], r[i].i = (int)i;
    qsort(r, (size_t)V, sizeof *r, by_rank);
    int64_t k = top_k > 0 && top_k < V ? top_k : V;
    double sum = 0, top = r[0].v;
    for (int64_t i = 0; i < k; i++) sum += (p[i] = exp(((double)r[i].v - top) / temp));
    u *= sum;
    tok = r[k - 1].i;
    for (int64_t i = 0; i < k - 1; i++)
      if ((u -= p[i]) < 0) { tok = r[i].i; break; }
  }
  free(r), free(p);
  return tok;
}

int32_t lathe_rt_sample(const float *lg, int64_t V, double temp, int64_t top_k, double u) {
  if (V < 1) return 0;
  if (temp == 0) {
    int best = 0;
    for (int i = 1; i < V; i++)
      if (lg[i] > lg[best]) best = i;
    return best;
  }
  if (V > 256) return sample_large(lg, V, temp, top_k, u);
  int idx[256];
  for (int i = 0; i < V; i++) {
    int j = i;
    for (; j > 0 && lg[idx[j - 1]] < lg[i]; j--) idx[j] = idx[j - 1];
    idx[j] = i;
  }
  int k = top_k > 0 && top_k < V ? (int)top_k : (int)V;
  double p[256], sum = 0, top = lg[idx[0]];
  for (int i = 0; i < k; i++) sum += (p[i] = exp(((double)lg[idx[i]] - top) / temp));
  u *= sum;
  for (int i = 0; i < k - 1; i++)
    if ((u -= p[i]) < 0) return idx[i];
  return idx[k - 1];
}

/* ir_rng_uniform's 53 bits as the op's i32 pair: u = (a 2^26 + b) / 2^53. */
void lathe_rt_draw_split(double u, int32_t draw[2]) {
  int64_t n = (int64_t)(u * 9007199254740992.0);
  draw[0] = (int32_t)(n >> 26), draw[1] = (int32_t)(n & 67108863);
}

double lathe_rt_draw_join(const int32_t draw[2]) {
  return ((double)draw[0] * 67108864.0 + (double)draw[1]) * (1.0 / 9007199254740992.0);
}

void lathe_rt_sample_token(int32_t *out, const float *lg, const int32_t *draw, int64_t rows, int64_t V, double temp,
                           int64_t top_k) {
  double u = lathe_rt_draw_join(draw);
  for (int64_t r = 0; r < rows; r++) out[r] = lathe_rt_sample(lg + r * V, V, temp, top_k, u);
}
