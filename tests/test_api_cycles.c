/* test_api_cycles.c -- a host program that loads, compiles, runs and frees
 * a model over and over must not grow: 1000 cycles through the C API (model
 * text -> program on the llvm backend -> weights -> input -> run -> output
 * -> free) after a warm-up, with the heap in use (mallinfo2) and the
 * resident set (/proc/self/statm) compared before and after. LLVM's one-time
 * set-up, the worker pool and the allocator's caches settle in the warm-up.
 * What remains is noise of a few dozen bytes per cycle: LLVM 14 itself keeps
 * a few bytes per JIT it has created and disposed (measured with a bare
 * LLJIT create/dispose loop), and mallinfo2 sees only the main arena, so
 * compile threads move numbers around. Anything of Lathe's left behind per
 * cycle -- a model or program (an arena block of 64 KiB), a table entry of
 * the program cache, compiled code -- is far above the bound; unreachable
 * leaks of any size are ASan's job (this test runs under it in CI). */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lathe.h"
#include "tests/test.h"

static const char *MLP =
    "model tiny\n"
    "input x : f32[batch, 3]\n"
    "target y : i32[batch]\n"
    "h = dense(x, 4, name=\"fc1\") |> relu\n"
    "logits = dense(h, 2, name=\"out\")\n"
    "output probs = softmax(logits)\n"
    "loss = cross_entropy(logits, y)\n";

/* Under AddressSanitizer the allocator is ASan's (mallinfo2 sees nothing,
 * freed memory waits in quarantine, so the resident set grows by design):
 * fewer cycles, no bounds, and ASan's leak check at exit does the job. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifdef UNDER_ASAN
enum { WARMUP = 5, CYCLES = 50 };
#else
enum { WARMUP = 100, CYCLES = 1000 };
#endif
/* Growth allowed over all cycles: 256 bytes per cycle (measured: 35 to 80). */
#define HEAP_BOUND (256 * 1024)
#define RSS_BOUND (1024 * 1024)

static float first_prob = -1;

/* One full life of a model: odd cycles bind the input (zero-copy) at -O0,
 * even ones copy it at -O2. */
static int cycle(int i) {
  lathe_error err = {0};
  int rc = LATHE_EUSER;
  lathe_model *m = lathe_model_parse("tiny.nn", MLP, strlen(MLP), &err);
  lathe_program *p = NULL;
  lathe_tensor out = {0};
  float xs[6] = {1, 2, 3, -1, 0.5f, 2};
  lathe_tensor x = {.dtype = LATHE_F32, .rank = 2, .shape = {2, 3}, .data = xs};
  lathe_options o = {.backend = LATHE_BACKEND_LLVM, .opt_level_set = 1, .opt_level = i % 2 ? 0 : 2};
  if (m && lathe_model_bind_input(m, "x", 2, x.shape, &err) == 0 && (p = lathe_compile(m, &o, &err)) &&
      lathe_weights_init(p, 1, &err) == 0 &&
      (i % 2 ? lathe_bind_input(p, "x", &x, &err) : lathe_set_input(p, "x", &x, &err)) == 0 &&
      lathe_run(p, &err) == 0 && lathe_get_output(p, "probs", &out, &err) == 0)
    rc = 0;
  if (rc) fprintf(stderr, "cycle %d: %s\n", i, err.message ? err.message : "?");
  else if (first_prob < 0) first_prob = ((float *)out.data)[0];
  else if (((float *)out.data)[0] != first_prob) rc = LATHE_EINTERNAL;
  /* An error path each cycle too: its message must be freed as well. */
  if (rc == 0 && lathe_set_input(p, "nope", &x, &err) != LATHE_EUSER) rc = LATHE_EINTERNAL;
  lathe_tensor_free(&out);
  lathe_program_free(p);
  lathe_model_free(m);
  lathe_error_clear(&err);
  return rc;
}

static long rss_bytes(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f && fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  if (f) fclose(f);
  return resident * sysconf(_SC_PAGESIZE);
}

static long heap_in_use(void) {
  malloc_trim(0);
  struct mallinfo2 mi = mallinfo2();
  return (long)(mi.uordblks + mi.hblkhd);
}

int main(void) {
  int failed = 0;
  for (int i = 0; i < WARMUP && !failed; i++) failed = cycle(i);
  long heap0 = heap_in_use(), rss0 = rss_bytes();
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < CYCLES && !failed; i++) failed = cycle(i);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long heap1 = heap_in_use(), rss1 = rss_bytes();
  CHECK(!failed);
  printf("%d cycles in %.2f s; heap in use %ld -> %ld bytes (%+ld), resident %ld -> %ld KiB (%+ld)\n", CYCLES,
         (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, heap0, heap1, heap1 - heap0,
         rss0 / 1024, rss1 / 1024, (rss1 - rss0) / 1024);
#ifdef UNDER_ASAN
  printf("under AddressSanitizer: growth not bounded here (the leak check at exit is)\n");
  heap1 = heap0, rss1 = rss0;
#endif
  CHECK_MSG(heap1 - heap0 <= HEAP_BOUND, "the heap grew by %ld bytes over %d cycles", heap1 - heap0, CYCLES);
  CHECK_MSG(rss1 - rss0 <= RSS_BOUND, "the resident set grew by %ld KiB over %d cycles", (rss1 - rss0) / 1024,
            CYCLES);
  return TEST_REPORT();
}
