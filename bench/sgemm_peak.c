/* sgemm_peak.c -- OpenBLAS's own single-precision GEMM throughput on this
 * machine: a large square C = A B, on 1 and on 2 threads, best of a few
 * repetitions after a warm-up. Prints one JSON object:
 *   {"n": 2048, "core": "Haswell", "gflops_1t": ..., "gflops_2t": ...}
 * The best (not median) repetition estimates the peak: on a shared machine
 * the slow ones measure the neighbours, not OpenBLAS.
 *
 *   sgemm_peak [N] [REPS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cblas.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double best_gflops(int n, int reps, const float *a, const float *b, float *c) {
  double best = 0;
  for (int r = 0; r <= reps; r++) { /* r == 0 is the warm-up */
    double t0 = now_s();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double g = 2.0 * n * n * (double)n / (now_s() - t0) / 1e9;
    if (r > 0 && g > best) best = g;
  }
  return best;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 2048;
  int reps = argc > 2 ? atoi(argv[2]) : 5;
  if (n < 16 || n > 16384 || reps < 1 || reps > 1000) {
    fprintf(stderr, "usage: sgemm_peak [N 16..16384] [REPS 1..1000]\n");
    return 2;
  }
  size_t nn = (size_t)n * (size_t)n;
  float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
  if (!a || !b || !c) {
    fprintf(stderr, "sgemm_peak: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < nn; i++) {
    a[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    b[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
  }
  openblas_set_num_threads(1);
  double g1 = best_gflops(n, reps, a, b, c);
  openblas_set_num_threads(2);
  double g2 = best_gflops(n, reps, a, b, c);
  printf("{\"n\": %d, \"core\": \"%s\", \"gflops_1t\": %.1f, \"gflops_2t\": %.1f}\n", n, openblas_get_corename(), g1,
         g2);
  free(a);
  free(b);
  free(c);
  return 0;
}
