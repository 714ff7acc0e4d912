/* blas.c -- OpenBLAS's sgemm split over the runtime pool (see blas.h). */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE */
#include "rt/blas.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rt/lathe_rt.h"
#include "rt/threadpool.h"
#include "rt/rt_cblas.h"

#ifdef LATHE_RT_NOBLAS
/* liblathe_rt_noblas (rt_cblas.h): no OpenBLAS, so no threads of its own to
 * stop and no buffers to make; rt_ref_sgemm stands in for cblas_sgemm. */
static void openblas_set_num_threads(int n) { (void)n; }
#else
/* OpenBLAS's own buffer pool (exported by libopenblas, not in cblas.h):
 * one buffer per thread inside a BLAS call, kept for reuse once made */
void *blas_memory_alloc(int procpos);
void blas_memory_free(void *buffer);
#endif

/* below this many multiply-adds (~12 us on one core) a product stays whole:
 * the hand-off would cost more than the second core gains */
enum { RT_BLAS_SPLIT = 1 << 20, RT_BLAS_MSTEP = 16, RT_BLAS_NSTEP = 16 };

static void blas_once(void) { openblas_set_num_threads(1); }

void rt_blas_single(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, blas_once);
}

/* OpenBLAS's BUFFER_SIZE on x86-64 and arm64 (32 << 22) plus the page it
 * adds, rounded up: what one of its buffers takes of the address space. */
enum { RT_BLAS_BUFFER_MIB = 129 };
#define RT_BLAS_BUFFER ((size_t)RT_BLAS_BUFFER_MIB << 20)

/* Can `n` buffers be mapped at once? Each is mapped and unmapped again:
 * address space only (nothing is touched), which is what RLIMIT_AS counts. */
static int probe_buffers(int n) {
  void *maps[64];
  int got = 0;
  while (got < n) {
    void *m = mmap(NULL, RT_BLAS_BUFFER, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) break;
    maps[got++] = m;
  }
  for (int i = 0; i < got; i++) munmap(maps[i], RT_BLAS_BUFFER);
  return got == n ? 0 : -1;
}

/* " (ulimit -v 300 MiB, 212 MiB of it in use)", or "" when unlimited */
static void limit_text(char *buf, size_t n) {
  struct rlimit rl;
  buf[0] = '\0';
  if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return;
  unsigned long long pages = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f && fscanf(f, "%llu", &pages) == 1)
    snprintf(buf, n, " (ulimit -v %llu MiB, %llu MiB of it in use)", (unsigned long long)(rl.rlim_cur >> 20),
             pages * (unsigned long long)sysconf(_SC_PAGESIZE) >> 20);
  else snprintf(buf, n, " (ulimit -v %llu MiB)", (unsigned long long)(rl.rlim_cur >> 20));
  if (f) fclose(f);
}

static pthread_mutex_t ready_mu = PTHREAD_MUTEX_INITIALIZER;
static int ready_done;

int rt_blas_ready(char *msg, size_t msgn) {
  rt_blas_single();
#ifdef LATHE_RT_NOBLAS
  (void)msg, (void)msgn, (void)limit_text, (void)probe_buffers, (void)ready_mu, (void)ready_done;
  return 0;
#else
  pthread_mutex_lock(&ready_mu);
  int rc = 0;
  if (!ready_done) {
    int n = rt_pool_size();
    if (n > 64) n = 64;
    if (probe_buffers(n) != 0) {
      char lim[96];
      limit_text(lim, sizeof lim);
      if (msg && msgn)
        snprintf(msg, msgn,
                 "out of memory: OpenBLAS's buffers (%d x %d MiB of address space, one per thread) do not fit "
                 "under the address-space limit%s; raise the limit%s",
                 n, RT_BLAS_BUFFER_MIB, lim, n > 1 ? " or use fewer threads (LATHE_THREADS=1)" : "");
      rc = -1;
    } else {
      /* Make every buffer now, while they fit: later calls reuse them, and
       * OpenBLAS never again retries a failing allocation (it would loop). */
      void *buf[64];
      for (int i = 0; i < n; i++) buf[i] = blas_memory_alloc(0);
      for (int i = 0; i < n; i++) blas_memory_free(buf[i]);
      ready_done = 1;
    }
  }
  pthread_mutex_unlock(&ready_mu);
  return rc;
#endif
}

static _Atomic(rt_gemm_provider) provider, whole;
static _Atomic(rt_gemm_bias_fn) whole_bias;

void rt_blas_set_provider(rt_gemm_provider f) { atomic_store(&provider, f); }
void rt_blas_set_whole(rt_gemm_provider f) { atomic_store(&whole, f); }
void rt_blas_set_whole_bias(rt_gemm_bias_fn f) { atomic_store(&whole_bias, f); }

/* one single-threaded product: the provider's if it takes it, else OpenBLAS's */
static void one_call(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                     int ldb, float beta, float *C, int ldc) {
  rt_gemm_provider f = atomic_load_explicit(&provider, memory_order_relaxed);
  if (f && f(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) == 0) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
              B, ldb, beta, C, ldc);
}

/* A split product's items: at least one per pool thread, more for a large
 * product (about RT_BLAS_ITEM multiply-adds each, at most RT_BLAS_ITEMS),
 * a multiple of the pool size. The threads take items as they finish the
 * last, so a core that the machine's other work slows (or a worker that
 * wakes late) leaves its items to the others instead of holding the whole
 * product up for its half: GPT-2-small's head product alone is ~20 GFLOP.
 * Each item packs the shared operand again (A when C is cut by columns), so
 * only products of several RT_BLAS_ITEM get more than one item a thread:
 * at GPT-2's 256 x 3072 the extra packs of a smaller one cost ~15% of it. */
enum { RT_BLAS_ITEM = 1 << 29, RT_BLAS_ITEMS = 16 };

typedef struct {
  int ta, tb, M, N, K, lda, ldb, ldc, by_rows, blocks, items;
  float alpha, beta;
  const float *A, *B;
  float *C;
  atomic_int next; /* the next item a thread takes */
} gemm_job;

/* element i of an operand stored row-major, transposed or not: the start of
 * row (or column) i of the logical matrix */
static const float *row_of(const float *X, int trans, int ld, int i) {
  return trans ? X + i : X + (int64_t)i * ld;
}

/* item p: one cblas call for blocks [blocks p / items, blocks (p + 1) / items),
 * rows (or columns) of C */
static void gemm_one(const gemm_job *j, int64_t p) {
  int step = j->by_rows ? RT_BLAS_MSTEP : RT_BLAS_NSTEP, ext = j->by_rows ? j->M : j->N;
  int64_t lo = j->blocks * p / j->items, hi = j->blocks * (p + 1) / j->items;
  int a = (int)lo * step, b = (int)hi * step < ext ? (int)hi * step : ext;
  if (a >= b) return;
  if (j->by_rows)
    one_call(j->ta, j->tb, b - a, j->N, j->K, j->alpha, row_of(j->A, j->ta, j->lda, a), j->lda, j->B, j->ldb, j->beta,
             j->C + (int64_t)a * j->ldc, j->ldc);
  else
    one_call(j->ta, j->tb, j->M, b - a, j->K, j->alpha, j->A, j->lda, row_of(j->B, !j->tb, j->ldb, a), j->ldb,
             j->beta, j->C + a, j->ldc);
}

/* A pool part: items until none is left. Inside another pool loop the one
 * part runs every item here in turn: OpenBLAS's rounding depends on the
 * size of a call (its Haswell kernel: thousands of last-bit differences
 * between one call and two halves), so the same calls keep a product's bits
 * the same wherever it runs. */
static void gemm_parts(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)lo, (void)hi, (void)part;
  gemm_job *j = ctx;
  for (int p; (p = atomic_fetch_add(&j->next, 1)) < j->items;) gemm_one(j, p);
}

/* items of a product cut into `blocks` blocks on a pool of `size` threads */
static int gemm_items(int64_t macs, int blocks, int size) {
  int64_t n = macs / RT_BLAS_ITEM;
  n = n < RT_BLAS_ITEMS ? n : RT_BLAS_ITEMS;
  n = (n + size - 1) / size * size;
  n = n > size ? n : size;
  return n < blocks ? (int)n : blocks;
}

void rt_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc) {
  rt_blas_single();
  /* the backward pass's products are where started gradient sums get to
   * move on (a cheap test with none in flight; rt/rt_comm.c) */
  lathe_rt_comm_progress();
  int tA = ta == CblasTrans, tB = tb == CblasTrans;
  (void)order;
  rt_gemm_provider w = atomic_load_explicit(&whole, memory_order_relaxed);
  if (w && w(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) == 0) return;
  int64_t macs = (int64_t)M * N * K;
  if (macs < RT_BLAS_SPLIT || rt_pool_size() < 2) {
    one_call(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  /* cut the longer side of C: each block then still has a long side */
  gemm_job j = {tA, tB, M, N, K, lda, ldb, ldc, M >= N, 0, 0, alpha, beta, A, B, C, 0};
  j.blocks = j.by_rows ? (M + RT_BLAS_MSTEP - 1) / RT_BLAS_MSTEP : (N + RT_BLAS_NSTEP - 1) / RT_BLAS_NSTEP;
  j.items = gemm_items(macs, j.blocks, rt_pool_size());
  int parts = rt_pool_size() < j.items ? rt_pool_size() : j.items;
  rt_pool_for(parts, 1, gemm_parts, &j);
}

int lathe_rt_sgemm_packed(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta,
                          float *C, int ldc) {
  rt_gemm_provider w = atomic_load_explicit(&whole, memory_order_relaxed);
  return w && w(0, 0, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc) == 0;
}

int lathe_rt_sgemm_bias(int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                        const float *bias, float *C, int ldc) {
  rt_gemm_bias_fn w = atomic_load_explicit(&whole_bias, memory_order_relaxed);
  return w && w(tb, M, N, K, A, lda, B, ldb, bias, C, ldc) == 0;
}

typedef struct {
  const float *bias;
  float *C;
  int N, ldc;
} fill_job;

static void fill_rows(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const fill_job *f = ctx;
  for (int64_t i = lo; i < hi; i++) memcpy(f->C + i * f->ldc, f->bias, sizeof(float) * (size_t)f->N);
}

void rt_sgemm_bias(int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, const float *bias,
                   float *C, int ldc) {
  if (lathe_rt_sgemm_bias(tb, M, N, K, A, lda, B, ldb, bias, C, ldc)) return;
  fill_job f = {bias, C, N, ldc};
  rt_pool_for(M, (1 << 16) / N > 1 ? (1 << 16) / N : 1, fill_rows, &f); /* ~64K floats a part, as generated fills */
  rt_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc);
}

/* The name generated code calls (lathe_rt.h). */
void lathe_rt_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
  rt_sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
