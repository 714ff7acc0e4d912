/* aot_train_bench.c -- the digits MLP's training step emitted ahead of time
 * (`lathe emit examples/mlp.nn --entry train_step --bind batch=64`), timed
 * by bench/aot.py's mlp_aot_train_b64 row. Linked with libmlp.a,
 * liblathe_rt and OpenBLAS only (no liblathe).
 *
 *   aot_train_bench --reps N [--warmup W] [--max-seconds S]
 *       N timed mlp_train_step calls on a fixed batch (pixels 0..16, labels
 *       0..9), from the emitted weights; prints one JSON line (median_ms,
 *       min_ms, reps, the last loss) */
#include <math.h>
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
  static float x[MLP_X_NUMEL];
  static int32_t y[MLP_Y_NUMEL];
  for (int i = 0; i < MLP_X_NUMEL; i++) x[i] = (float)((i * 7919) % 17);
  for (int i = 0; i < MLP_Y_NUMEL; i++) y[i] = (i * 31) % 10;
  int reps = 100, warmup = 10;
  double max_s = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--max-seconds")) max_s = strtod(argv[i + 1], NULL);
  }
  if (reps < 1) reps = 1;
  double *ms = malloc(sizeof *ms * (size_t)reps);
  mlp_state *st = malloc(sizeof *st);
  if (!ms || !st || mlp_state_init(st)) return 1;
  float loss = 0;
  for (int i = 0; i < warmup; i++)
    if (isnan(loss = mlp_train_step(st, x, y))) return fprintf(stderr, "%s\n", lathe_rt_last_error()), 1;
  int n = 0;
  for (double start = now_ns(); n < reps && (now_ns() - start) / 1e9 < max_s; n++) {
    double t = now_ns();
    loss = mlp_train_step(st, x, y);
    ms[n] = (now_ns() - t) / 1e6;
    if (isnan(loss)) return fprintf(stderr, "%s\n", lathe_rt_last_error()), 1;
  }
  qsort(ms, (size_t)n, sizeof *ms, cmp);
  printf("{\"median_ms\": %.6f, \"min_ms\": %.6f, \"reps\": %d, \"loss\": %.6g}\n", ms[n / 2], ms[0], n, loss);
  free(ms), free(st);
  return 0;
}
