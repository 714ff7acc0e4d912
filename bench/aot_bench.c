/* aot_bench.c -- the digits MLP emitted ahead of time (`lathe emit
 * examples/mlp.nn --bind batch=1`), timed by bench/harness.py's AOT row.
 * Linked with libmlp.a, liblathe_rt and OpenBLAS only (no liblathe).
 *
 *   aot_bench --first T0_NS       one forward pass, then print the time since
 *                                 T0_NS (CLOCK_MONOTONIC, taken by the harness
 *                                 just before it started this process): process
 *                                 start to first result, loading included
 *   aot_bench --noop T0_NS        the same without the forward pass: the floor
 *                                 (process creation and loading) on this machine
 *   aot_bench --reps N [--warmup W] [--max-seconds S]
 *                                 steady batch-1 latency: N timed mlp_forward
 *                                 calls on a fixed input; prints one JSON line
 *                                 (median_ms, min_ms, reps) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mlp.h"

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  static float x[MLP_X_NUMEL], probs[MLP_PROBS_NUMEL];
  for (int i = 0; i < MLP_X_NUMEL; i++) x[i] = (float)((i * 7919) % 17); /* pixel values 0..16 */
  if (argc == 3 && (!strcmp(argv[1], "--first") || !strcmp(argv[1], "--noop"))) {
    double t0 = strtod(argv[2], NULL);
    int rc = strcmp(argv[1], "--noop") ? mlp_forward(x, probs) : 0;
    double t = now_ns();
    if (rc) return fprintf(stderr, "aot_bench: %s\n", lathe_rt_strerror(rc)), 1;
    printf("{\"first_result_ms\": %.6f, \"p0\": %.6g}\n", (t - t0) / 1e6, probs[0]);
    return 0;
  }
  int reps = 1000, warmup = 100;
  double max_s = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--max-seconds")) max_s = strtod(argv[i + 1], NULL);
  }
  if (reps < 1) reps = 1;
  double *ms = malloc(sizeof *ms * (size_t)reps);
  if (!ms) return 1;
  for (int i = 0; i < warmup; i++)
    if (mlp_forward(x, probs)) return 1;
  int n = 0;
  for (double start = now_ns(); n < reps && (now_ns() - start) / 1e9 < max_s; n++) {
    double t = now_ns();
    if (mlp_forward(x, probs)) return 1;
    ms[n] = (now_ns() - t) / 1e6;
  }
  qsort(ms, (size_t)n, sizeof *ms, cmp);
  printf("{\"median_ms\": %.6f, \"min_ms\": %.6f, \"reps\": %d}\n", ms[n / 2], ms[0], n);
  free(ms);
  return 0;
}
