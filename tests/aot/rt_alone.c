/* rt_alone.c -- a program that links liblathe_rt and nothing of Lathe
 * else (tests/rt_split.sh builds it with gcc): the entry points generated
 * code calls work without the compiler library. Exit 0 when every check
 * holds. */
#include <stdio.h>

#include "lathe_rt.h"

static float acc[1000];

/* the outlined body's signature: (captures, lo, hi, part) */
static void body(void *cap, int64_t lo, int64_t hi, int part) {
  (void)part;
  const float *x = cap;
  for (int64_t i = lo; i < hi; i++) acc[i] = 2 * x[i];
}

int main(void) {
  int fails = 0;
  float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {7, 8, 9, 10, 11, 12}, c[4] = {0};
  static const float want[4] = {58, 64, 139, 154};
  lathe_rt_sgemm(101, 0, 0, 2, 2, 3, 1.0f, a, 3, b, 2, 0.0f, c, 2);
  for (int i = 0; i < 4; i++) fails += c[i] != want[i];
  if (lathe_rt_set_threads(2) < 1) fails++;
  static float x[1000];
  for (int i = 0; i < 1000; i++) x[i] = (float)i;
  lathe_rt_parallel_for(1000, 10, (void *)body, x);
  for (int i = 0; i < 1000; i++) fails += acc[i] != 2.0f * (float)i;
  float v[4] = {1, 2, 3, 4}, shift[2] = {1, 1}, scale[2] = {2, 0.5f};
  lathe_rt_normalize(v, 2, 2, shift, scale);
  fails += v[0] != 0 || v[1] != 0.5f || v[2] != 4 || v[3] != 1.5f;
  printf("rt_alone: %s\n", fails ? "FAILED" : "ok");
  return fails != 0;
}
