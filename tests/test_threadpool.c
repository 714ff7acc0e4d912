/* test_threadpool.c -- the runtime pool: every index of every loop is run
 * exactly once, parts are fixed, nested calls run serially, and many loops in
 * a row (including the very first, racing the workers' start) finish. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt/threadpool.h"
#include "test.h"

typedef struct {
  int *hits;
  int64_t n;
  int nested;
} job;

static void mark(void *ctx, int64_t lo, int64_t hi, int part) {
  job *j = ctx;
  if (part < 0 || part >= rt_pool_size()) return;
  for (int64_t i = lo; i < hi; i++) j->hits[i]++;
  if (j->nested) { /* runs on the caller: the same hits again, offset */
    job inner = {j->hits + j->n + lo, hi - lo, 0};
    rt_pool_for(hi - lo, 1, mark, &inner);
  }
}

int main(void) {
  int size = rt_pool_size();
  CHECK(size >= 1 && size <= 64);
  int *hits = calloc(2 * 4096, sizeof *hits);
  int bad = 0;
  for (int it = 0; it < 2000 && hits; it++) {
    int64_t n = 1 + (it * 37) % 4096;
    memset(hits, 0, sizeof(int) * 2 * 4096);
    job j = {hits, n, 0};
    rt_pool_for(n, 1 + it % 7, mark, &j);
    for (int64_t i = 0; i < n; i++) bad += hits[i] != 1;
  }
  CHECK_MSG(bad == 0, "%d indices not run exactly once", bad);
  if (hits) { /* a loop started from inside a part runs serially */
    memset(hits, 0, sizeof(int) * 2 * 4096);
    job j = {hits, 1000, 1};
    rt_pool_for(1000, 1, mark, &j);
    int ok = 1;
    for (int i = 0; i < 2000; i++) ok &= hits[i] == 1;
    CHECK(ok);
  }
  free(hits);
  return TEST_REPORT();
}
