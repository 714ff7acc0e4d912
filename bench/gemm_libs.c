/* gemm_libs.c -- issue 18: is another f32 GEMM faster than OpenBLAS on the
 * products of the dense1024 and GPT-2-small rows? Times C[M, N] = A[M, K]
 * B[K, N] (row-major, B a dense layer's [in, out] weight) on two threads
 * with one library per process:
 *
 *   gemm_libs openblas  OpenBLAS's cblas_sgemm on its own 2 threads
 *   gemm_libs split     OpenBLAS on 1 thread, C's columns cut in two halves
 *                       run by this thread and one spinning helper: what
 *                       Lathe's pool does (rt/blas.c)
 *   gemm_libs dnnl      oneDNN's dnnl_sgemm (OpenMP, OMP_NUM_THREADS=2)
 *   gemm_libs dnnl_mm   oneDNN's matmul primitive, its weights reordered
 *                       once into the layout it chose (format "any"), the
 *                       primitive made once and reused
 *   gemm_libs blis      BLIS's bli_sgemm (bli_thread_set_num_threads(2))
 *
 *   gemm_libs LIB [SHAPE [THREADS]]   only the shapes whose name contains
 *                       SHAPE ("" for all); THREADS (default 2): 1 times
 *                       each library on one thread, its kernel alone
 *
 * Each shape: a warm-up, then calls until 0.3 s or 200 calls have run; the
 * best and median time and the best's GFLOP/s. Run it with the benchmark's
 * environment (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset), alternating
 * libraries so that the machine's load falls on all of them; bench/README.md
 * has the table. Built by bench/CMakeLists.txt when oneDNN and BLIS are
 * installed (Debian: libdnnl-dev, libblis-dev); a library it was built
 * without is reported as missing.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>
#ifdef HAVE_DNNL
#include <dnnl.h>
#include <omp.h> /* Debian's oneDNN runs on OpenMP */
#endif
#ifdef HAVE_BLIS
#include <blis.h>
#endif

typedef struct {
  const char *name;
  int M, N, K;
} shape;

static const shape SHAPES[] = {
  {"dense1024_b1", 1, 1024, 1024},   {"dense1024_b64", 64, 1024, 1024}, {"dense1024_b256", 256, 1024, 1024},
  {"gpt2 qkv", 256, 2304, 768},      {"gpt2 attn out", 256, 768, 768},  {"gpt2 fc", 256, 3072, 768},
  {"gpt2 proj", 256, 768, 3072},     {"gpt2 head", 256, 50257, 768},
};
enum { NSHAPES = sizeof SHAPES / sizeof SHAPES[0], MAX_REPS = 200 };

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* one product with the chosen library; prep (once per shape) may make a
 * primitive or pack weights, and is not timed */
typedef struct lib lib;
struct lib {
  const char *name;
  int (*prep)(lib *l, const shape *s, const float *B);
  void (*run)(lib *l, const shape *s, const float *A, const float *B, float *C);
  void (*done)(lib *l);
  void *state;
};

/* ---- OpenBLAS, its own threads ---- */

static void ob_run(lib *l, const shape *s, const float *A, const float *B, float *C) {
  (void)l;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->M, s->N, s->K, 1.0f, A, s->K, B, s->N, 0.0f, C, s->N);
}

/* ---- OpenBLAS on one thread, two halves of C's columns (Lathe's split) ---- */

typedef struct {
  const shape *s;
  const float *A, *B;
  float *C;
  atomic_int gen, done;
} split_job;

static split_job job;

/* columns [lo, hi) of C, in blocks of 16 as rt/blas.c cuts them */
static void half(int p) {
  int blocks = (job.s->N + 15) / 16, lo = blocks * p / 2 * 16, hi = blocks * (p + 1) / 2 * 16;
  if (hi > job.s->N) hi = job.s->N;
  if (lo >= hi) return;
  const shape *s = job.s;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->M, hi - lo, s->K, 1.0f, job.A, s->K, job.B + lo, s->N,
              0.0f, job.C + lo, s->N);
}

static void *helper(void *arg) {
  (void)arg;
  int seen = 0;
  for (;;) {
    int g;
    while ((g = atomic_load(&job.gen)) == seen) __builtin_ia32_pause(); /* spins: a benchmark, not a library */
    if (g < 0) return NULL;
    seen = g;
    half(1);
    atomic_fetch_add(&job.done, 1);
  }
}

static void split_run(lib *l, const shape *s, const float *A, const float *B, float *C) {
  (void)l;
  job.s = s, job.A = A, job.B = B, job.C = C;
  atomic_store(&job.done, 0);
  atomic_fetch_add(&job.gen, 1);
  half(0);
  while (atomic_load(&job.done) < 1) __builtin_ia32_pause();
}

/* ---- oneDNN ---- */

#ifdef HAVE_DNNL
static void dnnl_run(lib *l, const shape *s, const float *A, const float *B, float *C) {
  (void)l;
  dnnl_sgemm('N', 'N', s->M, s->N, s->K, 1.0f, A, s->K, B, s->N, 0.0f, C, s->N);
}

typedef struct {
  dnnl_engine_t eng;
  dnnl_stream_t str;
  dnnl_primitive_t mm;
  dnnl_memory_t wpacked;
  dnnl_memory_desc_t src_md, dst_md;
} mm_state;

#define DN(call)                                                                                                   \
  do {                                                                                                             \
    if ((call) != dnnl_success) {                                                                                  \
      fprintf(stderr, "gemm_libs: oneDNN call failed: %s\n", #call);                                               \
      return -1;                                                                                                   \
    }                                                                                                              \
  } while (0)

/* the primitive for this shape, weights reordered into its layout */
static int mm_prep(lib *l, const shape *s, const float *B) {
  mm_state *m = l->state;
  if (!m->eng) {
    DN(dnnl_engine_create(&m->eng, dnnl_cpu, 0));
    DN(dnnl_stream_create(&m->str, m->eng, dnnl_stream_default_flags));
  }
  if (m->mm) dnnl_primitive_destroy(m->mm), m->mm = NULL;
  if (m->wpacked) dnnl_memory_destroy(m->wpacked), m->wpacked = NULL;
  dnnl_dims_t sd = {s->M, s->K}, wd = {s->K, s->N}, dd = {s->M, s->N};
  dnnl_memory_desc_t w_any, w_plain;
  DN(dnnl_memory_desc_init_by_tag(&m->src_md, 2, sd, dnnl_f32, dnnl_ab));
  DN(dnnl_memory_desc_init_by_tag(&w_any, 2, wd, dnnl_f32, dnnl_format_tag_any));
  DN(dnnl_memory_desc_init_by_tag(&w_plain, 2, wd, dnnl_f32, dnnl_ab));
  DN(dnnl_memory_desc_init_by_tag(&m->dst_md, 2, dd, dnnl_f32, dnnl_ab));
  dnnl_matmul_desc_t d;
  DN(dnnl_matmul_desc_init(&d, &m->src_md, &w_any, NULL, &m->dst_md));
  dnnl_primitive_desc_t pd;
  DN(dnnl_primitive_desc_create(&pd, &d, NULL, m->eng, NULL));
  const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  DN(dnnl_primitive_create(&m->mm, pd));
  DN(dnnl_memory_create(&m->wpacked, w_md, m->eng, DNNL_MEMORY_ALLOCATE));
  dnnl_memory_t wsrc;
  DN(dnnl_memory_create(&wsrc, &w_plain, m->eng, (void *)B));
  dnnl_primitive_desc_t rpd;
  DN(dnnl_reorder_primitive_desc_create(&rpd, &w_plain, m->eng, w_md, m->eng, NULL));
  dnnl_primitive_t re;
  DN(dnnl_primitive_create(&re, rpd));
  dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, wsrc}, {DNNL_ARG_TO, m->wpacked}};
  DN(dnnl_primitive_execute(re, m->str, 2, ra));
  DN(dnnl_stream_wait(m->str));
  dnnl_primitive_destroy(re);
  dnnl_primitive_desc_destroy(rpd);
  dnnl_memory_destroy(wsrc);
  dnnl_primitive_desc_destroy(pd);
  return 0;
}

static void mm_run(lib *l, const shape *s, const float *A, const float *B, float *C) {
  (void)s, (void)B;
  mm_state *m = l->state;
  dnnl_memory_t src, dst; /* wrappers around the caller's buffers: no copy */
  dnnl_memory_create(&src, &m->src_md, m->eng, (void *)A);
  dnnl_memory_create(&dst, &m->dst_md, m->eng, C);
  dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, m->wpacked}, {DNNL_ARG_DST, dst}};
  dnnl_primitive_execute(m->mm, m->str, 3, a);
  dnnl_stream_wait(m->str);
  dnnl_memory_destroy(src);
  dnnl_memory_destroy(dst);
}

static void mm_done(lib *l) {
  mm_state *m = l->state;
  if (m->mm) dnnl_primitive_destroy(m->mm);
  if (m->wpacked) dnnl_memory_destroy(m->wpacked);
  if (m->str) dnnl_stream_destroy(m->str);
  if (m->eng) dnnl_engine_destroy(m->eng);
}
#endif

/* ---- BLIS ---- */

#ifdef HAVE_BLIS
static void blis_run(lib *l, const shape *s, const float *A, const float *B, float *C) {
  (void)l;
  float one = 1.0f, zero = 0.0f;
  bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, s->M, s->N, s->K, &one, (float *)A, s->K, 1, (float *)B, s->N, 1,
            &zero, C, s->N, 1);
}
#endif

/* ---- driver ---- */

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void time_shape(lib *l, const shape *s, const float *A, const float *B, float *C) {
  double t[MAX_REPS], start = now_ms();
  int n = 0;
  l->run(l, s, A, B, C);
  l->run(l, s, A, B, C);
  while (n < MAX_REPS && (n < 5 || now_ms() - start < 300)) {
    double t0 = now_ms();
    l->run(l, s, A, B, C);
    t[n++] = now_ms() - t0;
  }
  qsort(t, (size_t)n, sizeof t[0], cmp_d);
  double gf = 2.0 * s->M * s->N * s->K / t[0] / 1e6, sum = 0;
  for (size_t i = 0; i < (size_t)s->M * s->N; i++) sum += C[i]; /* the same for every library, to rounding */
  printf("%-8s %-15s [%4d x %4d] x [%4d x %5d]  best %8.4f ms  median %8.4f ms  %6.1f GFLOP/s  (%3d calls, sum %.6g)\n",
         l->name, s->name, s->M, s->K, s->K, s->N, t[0], t[n / 2], gf, n, sum);
}

static int no_prep(lib *l, const shape *s, const float *B) { return (void)l, (void)s, (void)B, 0; }
static void no_done(lib *l) { (void)l; }

int main(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "";
  int threads = argc > 3 ? atoi(argv[3]) : 2;
  if (threads < 1 || threads > 2) return fprintf(stderr, "gemm_libs: THREADS is 1 or 2\n"), 2;
  lib l = {which, no_prep, NULL, no_done, NULL};
  pthread_t th;
  int helper_up = 0;
  if (!strcmp(which, "openblas")) {
    openblas_set_num_threads(threads);
    l.run = ob_run;
  } else if (!strcmp(which, "split")) {
    openblas_set_num_threads(1);
    if (threads == 1) return fprintf(stderr, "gemm_libs: split needs 2 threads\n"), 2;
    if (pthread_create(&th, NULL, helper, NULL) != 0) return fprintf(stderr, "gemm_libs: no thread\n"), 1;
    helper_up = 1;
    l.run = split_run;
  }
#ifdef HAVE_DNNL
  static mm_state mm;
  omp_set_num_threads(threads);
  if (!strcmp(which, "dnnl")) l.run = dnnl_run;
  if (!strcmp(which, "dnnl_mm")) l.run = mm_run, l.prep = mm_prep, l.done = mm_done, l.state = &mm;
#endif
#ifdef HAVE_BLIS
  if (!strcmp(which, "blis")) {
    bli_thread_set_num_threads(threads);
    l.run = blis_run;
  }
#endif
  if (!l.run) {
    fprintf(stderr, "usage: gemm_libs openblas|split|dnnl|dnnl_mm|blis (built without %s?)\n", which);
    return 2;
  }
  size_t na = 256 * 3072, nb = (size_t)768 * 50257, nc = (size_t)256 * 50257;
  float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *C = calloc(nc, sizeof *C);
  if (!A || !B || !C) return fprintf(stderr, "gemm_libs: out of memory\n"), 1;
  for (size_t i = 0; i < na; i++) A[i] = (float)(i % 7) * 0.1f + 0.05f; /* positive: the sums below do not cancel */
  for (size_t i = 0; i < nb; i++) B[i] = (float)(i % 5) * 0.01f + 0.01f;
  int rc = 0;
  for (int i = 0; i < NSHAPES && rc == 0; i++) {
    if (argc > 2 && *argv[2] && !strstr(SHAPES[i].name, argv[2])) continue;
    if ((rc = l.prep(&l, &SHAPES[i], B)) == 0) time_shape(&l, &SHAPES[i], A, B, C);
  }
  l.done(&l);
  if (helper_up) {
    atomic_store(&job.gen, -1);
    pthread_join(th, NULL);
  }
  free(A), free(B), free(C);
  return rc ? 1 : 0;
}
