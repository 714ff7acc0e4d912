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
  void (*part)(int p); /* what thread p (0: the caller, 1: the helper) runs */
  double ms[2];        /* each thread's time in the last call */
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

static void timed_part(int p) {
  double t0 = now_ms();
  job.part(p);
  job.ms[p] = now_ms() - t0;
}

static void *helper(void *arg) {
  (void)arg;
#ifdef HAVE_DNNL
  omp_set_num_threads(1); /* a new thread starts from OMP_NUM_THREADS */
#endif
  int seen = 0;
  for (;;) {
    int g;
    while ((g = atomic_load(&job.gen)) == seen) __builtin_ia32_pause(); /* spins: a benchmark, not a library */
    if (g < 0) return NULL;
    seen = g;
    timed_part(1);
    atomic_fetch_add(&job.done, 1);
  }
}

/* both parts of the job: this thread part 0, the spinning helper part 1 */
static void two_parts(const shape *s, const float *A, const float *B, float *C) {
  job.s = s, job.A = A, job.B = B, job.C = C;
  atomic_store(&job.done, 0);
  atomic_fetch_add(&job.gen, 1);
  timed_part(0);
  while (atomic_load(&job.done) < 1) __builtin_ia32_pause();
}

static void split_run(lib *l, const shape *s, const float *A, const float *B, float *C) {
  (void)l;
  job.part = half;
  two_parts(s, A, B, C);
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

/* ---- oneDNN on two threads of our own (what runtime/gemm_pack.c does) ----
 * Each thread runs a primitive made for one OpenMP thread:
 *   dnnl_cols  C cut into two column halves (multiples of 64), each with its
 *              own primitive and its own packed slice of B (gemm_pack.c's
 *              pieces)
 *   dnnl_rows  C cut into two row halves: one primitive for M/2 rows (M - M/2
 *              for the second), both reading the one packed B
 * GEMM_LIBS_SUM=1 adds C's old values (the sum post-op Lathe's bias uses). */

typedef struct {
  dnnl_primitive_t mm;
  dnnl_memory_t w, src, dst, pad;
  dnnl_stream_t st;
  void *scratch;
  int r0, n0; /* first row and column of C */
} mm_piece;

static struct {
  dnnl_engine_t eng;
  mm_piece p[2];
  int rows;
} two;

/* a primitive for an m x n x K piece reading A (lda K) and writing C (ldc N);
 * its packed weights: columns [n0, n0 + n) of B, or w_shared's */
static int piece_prep(mm_piece *p, const shape *s, int m, int n, const float *B, int n0, dnnl_memory_t w_shared) {
  /* one row: C's row stride says nothing, and oneDNN takes a single row
   * with a row stride above its width for a strided (not dense) C */
  dnnl_dims_t sd = {m, s->K}, ss = {s->K, 1}, wd = {s->K, n}, dd = {m, n}, ds = {m == 1 ? n : s->N, 1};
  dnnl_memory_desc_t src_md, w_any, dst_md, w_plain;
  DN(dnnl_memory_desc_init_by_strides(&src_md, 2, sd, dnnl_f32, ss));
  DN(dnnl_memory_desc_init_by_tag(&w_any, 2, wd, dnnl_f32, dnnl_format_tag_any));
  dnnl_dims_t ws = {s->N, 1};
  DN(dnnl_memory_desc_init_by_strides(&w_plain, 2, wd, dnnl_f32, ws));
  DN(dnnl_memory_desc_init_by_strides(&dst_md, 2, dd, dnnl_f32, ds));
  dnnl_primitive_attr_t attr;
  DN(dnnl_primitive_attr_create(&attr));
  DN(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
  const char *sum = getenv("GEMM_LIBS_SUM");
  if (sum && !strcmp(sum, "1")) {
    dnnl_post_ops_t po;
    DN(dnnl_post_ops_create(&po));
    DN(dnnl_post_ops_append_sum(po, 1.0f));
    DN(dnnl_primitive_attr_set_post_ops(attr, po));
    dnnl_post_ops_destroy(po);
  }
  dnnl_matmul_desc_t d;
  DN(dnnl_matmul_desc_init(&d, &src_md, &w_any, NULL, &dst_md));
  dnnl_primitive_desc_t pd;
  DN(dnnl_primitive_desc_create(&pd, &d, attr, two.eng, NULL));
  dnnl_primitive_attr_destroy(attr);
  const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  const dnnl_memory_desc_t *pad_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  size_t pad = pad_md ? dnnl_memory_desc_get_size(pad_md) : 0;
  p->scratch = pad ? malloc(pad) : NULL;
  if (pad) DN(dnnl_memory_create(&p->pad, pad_md, two.eng, p->scratch));
  const char *impl = NULL;
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  fprintf(stderr, "piece %dx%dx%d: %s, scratchpad %zu bytes\n", m, n, s->K, impl ? impl : "?", pad);
  DN(dnnl_primitive_create(&p->mm, pd));
  DN(dnnl_stream_create(&p->st, two.eng, dnnl_stream_default_flags));
  DN(dnnl_memory_create(&p->src, &src_md, two.eng, DNNL_MEMORY_NONE));
  DN(dnnl_memory_create(&p->dst, &dst_md, two.eng, DNNL_MEMORY_NONE));
  if (w_shared) {
    p->w = w_shared;
  } else {
    DN(dnnl_memory_create(&p->w, w_md, two.eng, DNNL_MEMORY_ALLOCATE));
    dnnl_memory_t from;
    DN(dnnl_memory_create(&from, &w_plain, two.eng, (void *)(B + n0)));
    dnnl_primitive_desc_t rpd;
    DN(dnnl_reorder_primitive_desc_create(&rpd, &w_plain, two.eng, w_md, two.eng, NULL));
    dnnl_primitive_t re;
    DN(dnnl_primitive_create(&re, rpd));
    dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, p->w}};
    DN(dnnl_primitive_execute(re, p->st, 2, ra));
    DN(dnnl_stream_wait(p->st));
    dnnl_primitive_destroy(re);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(from);
  }
  dnnl_primitive_desc_destroy(pd);
  return 0;
}

static void two_free(void) {
  for (int i = 0; i < 2; i++) {
    mm_piece *p = &two.p[i];
    if (p->mm) dnnl_primitive_destroy(p->mm);
    if (p->w && !(two.rows && i == 1)) dnnl_memory_destroy(p->w);
    if (p->src) dnnl_memory_destroy(p->src);
    if (p->dst) dnnl_memory_destroy(p->dst);
    if (p->pad) dnnl_memory_destroy(p->pad);
    if (p->st) dnnl_stream_destroy(p->st);
    free(p->scratch);
  }
  memset(two.p, 0, sizeof two.p);
}

static int two_prep(lib *l, const shape *s, const float *B) {
  (void)l;
  if (!two.eng) DN(dnnl_engine_create(&two.eng, dnnl_cpu, 0));
  two_free();
  omp_set_num_threads(1);
  if (two.rows) {
    int h = s->M / 2 > 0 ? s->M / 2 : 1;
    if (piece_prep(&two.p[0], s, h, s->N, B, 0, NULL) != 0) return -1;
    two.p[0].r0 = 0;
    if (s->M > h && piece_prep(&two.p[1], s, s->M - h, s->N, B, 0, two.p[0].w) != 0) return -1;
    two.p[1].r0 = h;
  } else {
    int blocks = (s->N + 63) / 64, a = blocks / 2 * 64;
    if (piece_prep(&two.p[0], s, s->M, a, B, 0, NULL) != 0) return -1;
    if (piece_prep(&two.p[1], s, s->M, s->N - a, B, a, NULL) != 0) return -1;
    two.p[1].n0 = a;
  }
  return 0;
}

static void two_part(int i) {
  mm_piece *p = &two.p[i];
  if (!p->mm) return;
  dnnl_memory_set_data_handle(p->src, (void *)(job.A + (size_t)p->r0 * job.s->K));
  dnnl_memory_set_data_handle(p->dst, job.C + (size_t)p->r0 * job.s->N + p->n0);
  dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, p->src}, {DNNL_ARG_WEIGHTS, p->w}, {DNNL_ARG_DST, p->dst},
                          {DNNL_ARG_SCRATCHPAD, p->pad}};
  dnnl_primitive_execute(p->mm, p->st, p->pad ? 4 : 3, a);
}

static void two_run(lib *l, const shape *s, const float *A, const float *B, float *C) {
  (void)l;
  job.part = two_part;
  two_parts(s, A, B, C);
}

static void two_done(lib *l) {
  (void)l;
  two_free();
  if (two.eng) dnnl_engine_destroy(two.eng);
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
  double best = 1e30, parts[2] = {0, 0}; /* each thread's time in the fastest call (two-thread modes) */
  while (n < MAX_REPS && (n < 5 || now_ms() - start < 300)) {
    double t0 = now_ms();
    l->run(l, s, A, B, C);
    t[n] = now_ms() - t0;
    if (t[n] < best) best = t[n], parts[0] = job.ms[0], parts[1] = job.ms[1];
    n++;
  }
  qsort(t, (size_t)n, sizeof t[0], cmp_d);
  double gf = 2.0 * s->M * s->N * s->K / t[0] / 1e6, sum = 0;
  for (size_t i = 0; i < (size_t)s->M * s->N; i++) sum += C[i]; /* the same for every library, to rounding */
  printf("%-8s %-15s [%4d x %4d] x [%4d x %5d]  best %8.4f ms  median %8.4f ms  %6.1f GFLOP/s  (%3d calls, sum %.6g)\n",
         l->name, s->name, s->M, s->K, s->K, s->N, t[0], t[n / 2], gf, n, sum);
  if (job.part) printf("         fastest call's parts: %.4f ms (caller), %.4f ms (helper)\n", parts[0], parts[1]);
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
  if (!strcmp(which, "dnnl_cols") || !strcmp(which, "dnnl_rows")) {
    two.rows = !strcmp(which, "dnnl_rows");
    if (pthread_create(&th, NULL, helper, NULL) != 0) return fprintf(stderr, "gemm_libs: no thread\n"), 1;
    helper_up = 1;
    l.run = two_run, l.prep = two_prep, l.done = two_done;
  }
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
