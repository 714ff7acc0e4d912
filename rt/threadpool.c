/* threadpool.c -- the persistent worker pool (see threadpool.h).
 *
 * One job at a time: the caller publishes (fn, ctx, n, parts), then the
 * claim word (generation, parts, next part), bumps the generation counter
 * and wakes sleepers. Every thread -- the caller included -- claims parts
 * one at a time from the claim word with a compare-and-swap and runs them;
 * the caller returns once `done` counts every part. A worker the system has
 * not scheduled yet claims nothing, so the caller runs its parts instead of
 * waiting for it (on a machine whose other cores are busy a woken worker
 * may start milliseconds later). A claim names its job's generation and
 * part count, so a late worker never claims a part of a job that has moved
 * on; a claimed part keeps its job open, so the job's fields stay valid
 * while the part runs. Parts are fixed ranges whichever thread runs them:
 * results do not depend on the schedule. Workers spin on the generation for
 * a while, then sleep on a condition variable; `sleepers` (sequentially
 * consistent with `gen`) tells the caller whether a broadcast is needed,
 * without losing a wake-up. */
#include "rt/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

enum { POOL_MAX = 64, SPIN_ROUNDS = 20000 }; /* ~50 us of pause instructions */

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_uint gen;      /* bumped once per job */
  atomic_int sleepers;  /* workers in (or about to be in) cond_wait */
  _Atomic uint64_t claim; /* gen << 32 | parts << 16 | the next unclaimed part */
  atomic_int done;      /* parts of the job finished */
  atomic_int busy;      /* a job is running */
  rt_pool_fn fn;
  void *ctx;
  int64_t n;
  int parts, size;
  atomic_int active;    /* threads loops use now: 1 <= active <= size */
} pool_t;

static pool_t pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static void run_part(int p) {
  int64_t lo = pool.n * p / pool.parts, hi = pool.n * (p + 1) / pool.parts;
  if (lo < hi) pool.fn(pool.ctx, lo, hi, p);
}

/* Claim and run parts of job `gen` until none is left. */
static void run_parts(unsigned gen) {
  uint64_t c = atomic_load_explicit(&pool.claim, memory_order_acquire);
  for (;;) {
    unsigned parts = (unsigned)(c >> 16) & 0xffff, next = (unsigned)c & 0xffff;
    if ((unsigned)(c >> 32) != gen || next >= parts) return;
    if (!atomic_compare_exchange_weak_explicit(&pool.claim, &c, c + 1, memory_order_acq_rel, memory_order_acquire))
      continue;
    run_part((int)next);
    atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
    c = atomic_load_explicit(&pool.claim, memory_order_acquire);
  }
}

/* Wait for a generation other than seen: spin, then sleep. */
static unsigned wait_gen(unsigned seen) {
  for (int i = 0; i < SPIN_ROUNDS; i++) {
    unsigned g = atomic_load_explicit(&pool.gen, memory_order_acquire);
    if (g != seen) return g;
    cpu_relax();
  }
  pthread_mutex_lock(&pool.mu);
  atomic_fetch_add(&pool.sleepers, 1);
  unsigned g;
  while ((g = atomic_load(&pool.gen)) == seen) pthread_cond_wait(&pool.cv, &pool.mu);
  atomic_fetch_sub(&pool.sleepers, 1);
  pthread_mutex_unlock(&pool.mu);
  return g;
}

static void *worker(void *arg) {
  int w = (int)(intptr_t)arg;
  /* Workers are started before the first job is published, but may begin
   * running after it: start from generation 0, not from what gen says now,
   * or that first job would be missed and never acknowledged. */
  (void)w;
  unsigned seen = 0;
  for (;;) {
    seen = wait_gen(seen);
    run_parts(seen);
  }
  return NULL;
}

static atomic_int want_size, default_size; /* rt_pool_set_size, rt_pool_default_size (0: unset) */

static int clamp_size(int n) { return n < 1 ? 1 : n > POOL_MAX ? POOL_MAX : n; }

static int env_threads(void) {
  if (atomic_load(&want_size) > 0) return atomic_load(&want_size);
  const char *e = getenv("LATHE_THREADS");
  if (e && *e) {
    char *end;
    long v = strtol(e, &end, 10);
    if (!*end && v >= 1) return v > POOL_MAX ? POOL_MAX : (int)v;
  }
  if (atomic_load(&default_size) > 0) return atomic_load(&default_size);
  long c = sysconf(_SC_NPROCESSORS_ONLN);
  return c < 1 ? 1 : c > POOL_MAX ? POOL_MAX : (int)c;
}

/* Start the workers; a worker that cannot be created shrinks the pool. */
static void pool_init(void) {
  int want = env_threads();
  pool.size = 1;
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  for (int w = 1; w < want; w++) {
    pthread_t t;
    if (pthread_create(&t, &at, worker, (void *)(intptr_t)w) != 0) break;
    pool.size++;
  }
  pthread_attr_destroy(&at);
  atomic_store(&pool.active, pool.size);
}

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

int rt_pool_size(void) {
  pthread_once(&pool_once, pool_init);
  return atomic_load(&pool.active);
}

int rt_pool_set_size(int n) {
  atomic_store(&want_size, clamp_size(n));
  pthread_once(&pool_once, pool_init);
  atomic_store(&pool.active, clamp_size(n) < pool.size ? clamp_size(n) : pool.size);
  return atomic_load(&pool.active);
}

void rt_pool_default_size(int n) { atomic_store(&default_size, clamp_size(n)); }

int rt_pool_busy(void) { return atomic_load_explicit(&pool.busy, memory_order_relaxed); }

/* fn over [0, n) in `parts` parts on the pool (one thread: one call) */
static void pool_run(int64_t n, int64_t parts, int size, rt_pool_fn fn, void *ctx) {
  int idle = 0;
  if (parts <= 1 || size <= 1 || !atomic_compare_exchange_strong(&pool.busy, &idle, 1)) {
    fn(ctx, 0, n, 0);
    return;
  }
  pool.fn = fn, pool.ctx = ctx, pool.n = n, pool.parts = (int)parts;
  atomic_store(&pool.done, 0);
  unsigned gen = atomic_load(&pool.gen) + 1;
  atomic_store_explicit(&pool.claim, (uint64_t)gen << 32 | (uint64_t)parts << 16, memory_order_release);
  atomic_store(&pool.gen, gen); /* seq_cst: ordered before the sleepers read */
  if (atomic_load(&pool.sleepers) > 0) {
    pthread_mutex_lock(&pool.mu);
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
  }
  run_parts(gen);
  while (atomic_load_explicit(&pool.done, memory_order_acquire) < (int)parts) cpu_relax();
  atomic_store(&pool.busy, 0);
}

void rt_pool_for(int64_t n, int64_t grain, rt_pool_fn fn, void *ctx) {
  if (n <= 0) return;
  int size = rt_pool_size();
  int64_t g = grain > 0 ? grain : 1, parts = n / g < size ? n / g : size;
  pool_run(n, parts, size, fn, ctx);
}

void rt_pool_for_fine(int64_t n, int64_t grain, int64_t fine, rt_pool_fn fn, void *ctx) {
  if (n <= 0) return;
  int size = rt_pool_size();
  int64_t g = grain > 0 ? grain : 1, most = n / g < 0xffff ? n / g : 0xffff;
  int64_t parts = fine > size && most > size ? (fine < most ? fine : most) : most < size ? most : size;
  pool_run(n, parts, size, fn, ctx);
}
