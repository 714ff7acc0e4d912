/* mlp_gemm_floor.c -- the floor under the digits MLP training step: its
 * eight matrix products (three forward, five backward: 64 -> 256 -> 256 ->
 * 10 at batch B), each timed alone with OpenBLAS on the same threads Lathe
 * and the peer use, best of REPS. No schedule of the step can beat the sum
 * (every product is needed, and OpenBLAS is the GEMM Lathe calls), so the
 * number says how close a ratio target is to the machine's limit.
 *
 *   mlp_gemm_floor [B] [REPS]
 *
 * Prints one line per product and the sum. Run it with the environment the
 * benchmark gives both sides (OPENBLAS_CORETYPE unset: bench/README.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cblas.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Best time of C[M, N] = op(A) op(B) over reps, op = transpose when flagged. */
static double best_ms(int ta, int tb, int M, int N, int K, int reps) {
  float *A = malloc(sizeof(float) * (size_t)M * (size_t)K), *B = malloc(sizeof(float) * (size_t)K * (size_t)N);
  float *C = malloc(sizeof(float) * (size_t)M * (size_t)N);
  if (!A || !B || !C) {
    free(A), free(B), free(C);
    return -1;
  }
  for (long i = 0; i < (long)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
  for (long i = 0; i < (long)K * N; i++) B[i] = (float)(i % 5) * 0.1f;
  double best = 1e30;
  for (int r = 0; r <= reps; r++) { /* r == 0 warms up */
    double t = now_ms();
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A,
                ta ? M : K, B, tb ? K : N, 0.0f, C, N);
    t = now_ms() - t;
    if (r > 0 && t < best) best = t;
  }
  free(A), free(B), free(C);
  return best;
}

int main(int argc, char **argv) {
  int b = argc > 1 ? atoi(argv[1]) : 256, reps = argc > 2 ? atoi(argv[2]) : 200;
  if (b < 1 || b > 65536 || reps < 1 || reps > 100000) {
    fprintf(stderr, "usage: mlp_gemm_floor [B 1..65536] [REPS 1..100000]\n");
    return 2;
  }
  static const struct {
    int ta, tb, m, n, k; /* 0 in m, n or k: the batch */
    const char *what;
  } g[] = {
    {0, 0, 0, 256, 64, "fc1: x w1"},        {0, 0, 0, 256, 256, "fc2: h1 w2"},
    {0, 0, 0, 10, 256, "out: h2 w3"},       {0, 1, 0, 256, 10, "dh2 = dz w3^T"},
    {1, 0, 256, 10, 0, "dw3 = h2^T dz"},    {0, 1, 0, 256, 256, "dh1 = dz2 w2^T"},
    {1, 0, 256, 256, 0, "dw2 = h1^T dz2"},  {1, 0, 64, 256, 0, "dw1 = x^T dz1"},
  };
  double total = 0;
  for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
    int M = g[i].m ? g[i].m : b, N = g[i].n ? g[i].n : b, K = g[i].k ? g[i].k : b;
    double t = best_ms(g[i].ta, g[i].tb, M, N, K, reps);
    if (t < 0) return 1;
    total += t;
    printf("%-16s [%d x %d] x [%d x %d]: %.4f ms\n", g[i].what, M, K, K, N, t);
  }
  printf("batch %d: the eight products alone take at least %.4f ms\n", b, total);
  return 0;
}
