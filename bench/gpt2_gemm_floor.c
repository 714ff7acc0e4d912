/* gpt2_gemm_floor.c -- the floor under the gpt2_small_b1 and
 * gpt2_small_onnx_b1 rows: GPT-2-small's forward matrix products at batch 1
 * (T = 256, d = 768, 12 layers, vocabulary 50257), each timed alone with
 * OpenBLAS on 1 and on 2 of its own threads, best of REPS. Every product is
 * needed and OpenBLAS is the GEMM Lathe calls, so their sum (times twelve
 * for the blocks, plus the head once) is what no schedule of the forward
 * beats with it; the attention's own products (q k^T and p v, 2 x 0.1
 * GFLOP a layer when causal) and the elementwise work come on top.
 *
 *   gpt2_gemm_floor [REPS]
 *
 * Prints one line per product (ms and GFLOP/s on 1 and 2 threads) and the
 * forward's sums. Run it with the environment the benchmark gives both
 * sides (OPENBLAS_CORETYPE unset: bench/README.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cblas.h>

enum { T = 256, D = 768, LAYERS = 12, VOCAB = 50257 };

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Best time of C[M, N] = A[M, K] B[K, N] over reps after a warm-up. */
static double best_ms(int M, int N, int K, int reps, const float *A, const float *B, float *C) {
  double best = 1e30;
  for (int r = 0; r <= reps; r++) {
    double t = now_ms();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    t = now_ms() - t;
    if (r > 0 && t < best) best = t;
  }
  return best;
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 5;
  if (reps < 1 || reps > 1000) {
    fprintf(stderr, "usage: gpt2_gemm_floor [REPS 1..1000]\n");
    return 2;
  }
  static const struct {
    int n, k, times;
    const char *what;
  } g[] = {
    {3 * D, D, LAYERS, "qkv: x wq"},   {D, D, LAYERS, "out: ctx wp"},  {4 * D, D, LAYERS, "fc: h w1"},
    {D, 4 * D, LAYERS, "proj: m w2"}, {VOCAB, D, 1, "head: h wte"},
  };
  size_t most = (size_t)D * VOCAB; /* the largest operand: the head's weight (and its output, T x VOCAB) */
  float *A = malloc(sizeof(float) * (size_t)T * 4 * D), *B = malloc(sizeof(float) * most),
        *C = malloc(sizeof(float) * (size_t)T * VOCAB);
  if (!A || !B || !C) {
    free(A), free(B), free(C);
    fprintf(stderr, "gpt2_gemm_floor: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < (size_t)T * 4 * D; i++) A[i] = (float)(i % 7) * 0.1f - 0.3f;
  for (size_t i = 0; i < most; i++) B[i] = (float)(i % 5) * 0.01f - 0.02f;
  double sum[2] = {0, 0}, flops = 0;
  for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
    double f = 2.0 * T * g[i].n * g[i].k, ms[2];
    for (int th = 0; th < 2; th++) {
      openblas_set_num_threads(th + 1);
      ms[th] = best_ms(T, g[i].n, g[i].k, reps, A, B, C);
      sum[th] += ms[th] * g[i].times;
    }
    flops += f * g[i].times;
    printf("%-12s [%d x %d] x [%d x %d] (x%d): 1 thread %.3f ms (%.0f GFLOP/s), 2 threads %.3f ms (%.0f GFLOP/s)\n",
           g[i].what, T, g[i].k, g[i].k, g[i].n, g[i].times, ms[0], f / ms[0] / 1e6, ms[1], f / ms[1] / 1e6);
  }
  printf("forward's products: %.1f GFLOP; alone they take at least %.1f ms on 1 thread (%.0f GFLOP/s), %.1f ms on 2 "
         "(%.0f GFLOP/s)\n",
         flops / 1e9, sum[0], flops / sum[0] / 1e6, sum[1], flops / sum[1] / 1e6);
  free(A), free(B), free(C);
  return 0;
}
