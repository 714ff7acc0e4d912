/* cx_driver.c: the CPU executor behind codegen/cuda/cu_driver.h. Every call
 * checks its device ranges against the allocations and fails with one line
 * in d->err, as the real driver's calls would fail (or worse, silently
 * corrupt). gemm is OpenBLAS's cblas_sgemm followed by the epilogue: bias
 * (f32, or bf16 for a bf16 C), then ReLU or GELU in cuBLASLt's tanh form;
 * or the bias gradient (BGRAD_B: op(B)'s column sums). */
#define _GNU_SOURCE
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cx.h"
#include "rt/lathe_rt.h"

static cx_state *cx_s(cu_driver *d) { return d->self; }

static int cx_mem_alloc_(cu_driver *d, size_t bytes, cu_dptr *out) {
  return cx_mem_alloc(&cx_s(d)->mem, bytes, out, d->err, sizeof d->err);
}

static void cx_mem_free_(cu_driver *d, cu_dptr p) {
  cx_mem_free(&cx_s(d)->mem, p, d->err, sizeof d->err);
}

static int cx_htod(cu_driver *d, cu_dptr dst, const void *src, size_t bytes) {
  if (bytes == 0) return 0;
  if (cx_mem_check(&cx_s(d)->mem, dst, bytes, "htod: the destination", d->err, sizeof d->err)) return 1;
  memcpy((void *)(uintptr_t)dst, src, bytes);
  return 0;
}

static int cx_dtoh(cu_driver *d, void *dst, cu_dptr src, size_t bytes) {
  if (bytes == 0) return 0;
  if (cx_mem_check(&cx_s(d)->mem, src, bytes, "dtoh: the source", d->err, sizeof d->err)) return 1;
  memcpy(dst, (const void *)(uintptr_t)src, bytes);
  return 0;
}

/* ---- graphs: as CUDA's stream capture, the calls between graph_begin
 * and graph_end are recorded (not run) and graph_launch replays them. A
 * launch's arguments are copied by value (every rendered kernel takes
 * pointers only: 8 bytes each). ---- */

enum { CX_G_MEMSET, CX_G_DTOD, CX_G_LAUNCH, CX_G_GEMM, CX_G_COLL, CX_G_MAXARGS = 160 }; /* the update kernel: 128 operands */
typedef struct {
  int what;
  cu_dptr dst, src;
  size_t bytes;
  void *fn;
  unsigned g[3], b[3], shmem;
  int nargs;
  uint64_t arg[CX_G_MAXARGS];
  cu_gemm gemm;
  cu_coll coll;
} cx_gop;
typedef struct cx_graph {
  cx_gop *op;
  int n, cap;
} cx_graph;

static long graph_replays;

static int cx_record(cu_driver *d, const cx_gop *op) {
  cx_graph *g = cx_s(d)->capturing;
  if (g->n == g->cap) {
    int cap = g->cap ? 2 * g->cap : 64;
    cx_gop *v = realloc(g->op, sizeof *v * (size_t)cap);
    if (!v) return snprintf(d->err, sizeof d->err, "graph: out of host memory"), 1;
    g->op = v, g->cap = cap;
  }
  g->op[g->n++] = *op;
  return 0;
}

static int cx_memset0(cu_driver *d, cu_dptr dst, size_t bytes) {
  if (cx_s(d)->capturing) return cx_record(d, &(cx_gop){.what = CX_G_MEMSET, .dst = dst, .bytes = bytes});
  if (bytes == 0) return 0;
  if (cx_mem_check(&cx_s(d)->mem, dst, bytes, "memset0: the destination", d->err, sizeof d->err)) return 1;
  memset((void *)(uintptr_t)dst, 0, bytes);
  return 0;
}

static int cx_dtod(cu_driver *d, cu_dptr dst, cu_dptr src, size_t bytes) {
  if (cx_s(d)->capturing) return cx_record(d, &(cx_gop){.what = CX_G_DTOD, .dst = dst, .src = src, .bytes = bytes});
  if (bytes == 0) return 0;
  if (cx_mem_check(&cx_s(d)->mem, dst, bytes, "dtod: the destination", d->err, sizeof d->err) ||
      cx_mem_check(&cx_s(d)->mem, src, bytes, "dtod: the source", d->err, sizeof d->err))
    return 1;
  memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, bytes);
  return 0;
}

static int cx_module_load_(cu_driver *d, const char *cuda_src, const void *image, size_t image_len,
                           void **mod) {
  (void)image, (void)image_len; /* the executor compiles the source; the driver loads the image */
  cx_module *m;
  if (cx_module_load(cuda_src, &m, d->err, sizeof d->err)) return 1;
  m->next = cx_s(d)->mods;
  cx_s(d)->mods = m;
  *mod = m;
  return 0;
}

static int cx_get_function(cu_driver *d, void *mod, const char *name, void **fn) {
  cx_module *m = mod;
  for (m = cx_s(d)->mods; m && m != mod; m = m->next) {}
  if (!m) {
    snprintf(d->err, sizeof d->err, "get_function: %p is not a module this driver loaded", mod);
    return 1;
  }
  cx_kernel *k;
  if (cx_module_kernel(m, name, &k, d->err, sizeof d->err)) return 1;
  *fn = k;
  return 0;
}

static int cx_launch_(cu_driver *d, void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                      unsigned by, unsigned bz, unsigned shmem_bytes, void **args) {
  int known = 0;
  for (cx_module *m = cx_s(d)->mods; m && !known; m = m->next)
    for (int i = 0; i < m->nk; i++) known |= (void *)m->k[i] == fn;
  if (!known) {
    snprintf(d->err, sizeof d->err, "launch: %p is not a function from get_function", fn);
    return 1;
  }
  const unsigned g[3] = {gx, gy, gz}, b[3] = {bx, by, bz};
  if (cx_s(d)->capturing) {
    cx_gop op = {.what = CX_G_LAUNCH, .fn = fn, .g = {gx, gy, gz}, .b = {bx, by, bz}, .shmem = shmem_bytes};
    const cx_kernel *k = fn;
    if (k->nargs > CX_G_MAXARGS) return snprintf(d->err, sizeof d->err, "graph: a kernel of %d arguments", k->nargs), 1;
    for (int i = 0; i < k->nargs; i++) memcpy(&op.arg[i], args[i], sizeof op.arg[i]);
    op.nargs = k->nargs;
    return cx_record(d, &op);
  }
  return cx_launch(d, fn, g, b, shmem_bytes, args);
}

/* ---- gemm ---- */

/* One operand's extent in elements: rows of ld, the last row cols long, then
 * batch-1 strides. */
static int cx_operand(cu_driver *d, const char *name, cu_dptr p, int rows, int cols, int ld,
                      int batch, long long stride, int type) {
  if (ld < cols || ld < 1) {
    snprintf(d->err, sizeof d->err, "gemm: %s has a row stride of %d below its %d columns", name, ld, cols);
    return 1;
  }
  if (rows == 0 || cols == 0) return 0;
  if (batch > 1 && stride < 0) {
    snprintf(d->err, sizeof d->err, "gemm: %s has a negative batch stride", name);
    return 1;
  }
  size_t n = (size_t)(rows - 1) * (size_t)ld + (size_t)cols + (size_t)(batch - 1) * (size_t)stride;
  char what[64];
  snprintf(what, sizeof what, "gemm: operand %s", name);
  return cx_mem_check(&cx_s(d)->mem, p, n * (type == CU_T_BF16 ? 2 : sizeof(float)), what, d->err, sizeof d->err);
}

static float cx_gelu_tanh(float x) {
  const float k = 0.7978845608028654f; /* sqrt(2/pi) */
  return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

static float cx_bf16_f(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint16_t cx_f_bf16(float f) { /* round to nearest even, as __float2bfloat16 */
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Bias element j: f32, or bf16 widened (a bf16 C's bias, as cuBLASLt's). */
static float cx_bias(const cu_gemm *g, int j) {
  return g->bias_type == CU_T_BF16 ? cx_bf16_f(((const uint16_t *)(uintptr_t)g->bias)[j])
                                   : ((const float *)(uintptr_t)g->bias)[j];
}

/* CU_EPI_BGRAD_B: bias[j] = the sum over op(B)'s k rows of column j, in
 * double (cuBLASLt's reduction order is its own; the tests' tolerances
 * cover either). */
static void cx_bgrad(const cu_gemm *g) {
  float *out = (float *)(uintptr_t)g->bias;
  for (int j = 0; j < g->n; j++) {
    double acc = 0;
    for (int q = 0; q < g->k; q++) {
      size_t at = g->trans_b ? (size_t)j * (size_t)g->ldb + (size_t)q : (size_t)q * (size_t)g->ldb + (size_t)j;
      acc += g->ab_type == CU_T_BF16 ? cx_bf16_f(((const uint16_t *)(uintptr_t)g->b)[at])
                                     : ((const float *)(uintptr_t)g->b)[at];
    }
    out[j] = (float)acc;
  }
}

/* A bf16 product (--precision bf16) as cuBLASLt's CUBLAS_COMPUTE_32F does
 * it: the bf16 operands widened to f32, f32 sums (OpenBLAS), the f32
 * result rounded once to bf16 when C is bf16. Dense copies: the executor
 * runs small shapes. */
static int cx_gemm_bf16(cu_driver *d, const cu_gemm *g, int batch) {
  int ar = g->trans_a ? g->k : g->m, br = g->trans_b ? g->n : g->k;
  size_t na = (size_t)ar * (size_t)g->lda, nb = (size_t)br * (size_t)g->ldb, nc = (size_t)g->m * (size_t)g->n;
  float *a = malloc((na + nb + nc + 1) * sizeof *a), *b = a ? a + na : NULL, *c = a ? b + nb : NULL;
  if (!a) return snprintf(d->err, sizeof d->err, "gemm: out of host memory"), 1;
  for (int i = 0; i < batch; i++) {
    for (int q = 0; q < 2; q++) { /* widen A and B */
      size_t n = q ? nb : na;
      long long st = q ? g->stride_b : g->stride_a;
      cu_dptr p = q ? g->b : g->a;
      float *dst = q ? b : a;
      for (size_t e = 0; e < n; e++)
        dst[e] = g->ab_type == CU_T_BF16 ? cx_bf16_f(((const uint16_t *)(uintptr_t)p)[(size_t)i * (size_t)st + e])
                                         : ((const float *)(uintptr_t)p)[(size_t)i * (size_t)st + e];
    }
    if (g->k > 0)
      cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans, g->trans_b ? CblasTrans : CblasNoTrans,
                  g->m, g->n, g->k, g->alpha, a, g->lda, b, g->ldb, 0.f, c, g->n);
    else
      memset(c, 0, nc * sizeof *c);
    for (int r = 0; r < g->m; r++)
      for (int j = 0; j < g->n; j++) {
        size_t at = (size_t)i * (size_t)g->stride_c + (size_t)r * (size_t)g->ldc + (size_t)j;
        float v = c[(size_t)r * g->n + j], old = g->beta == 0.f ? 0.f
                                            : g->c_type == CU_T_BF16 ? cx_bf16_f(((uint16_t *)(uintptr_t)g->c)[at])
                                                                     : ((float *)(uintptr_t)g->c)[at];
        v += g->beta * old;
        if (g->epilogue != CU_EPI_NONE && g->epilogue != CU_EPI_BGRAD_B) v += cx_bias(g, j);
        if (g->epilogue == CU_EPI_BIAS_RELU) v = v > 0.0f ? v : 0.0f;
        else if (g->epilogue == CU_EPI_BIAS_GELU) v = cx_gelu_tanh(v);
        if (g->c_type == CU_T_BF16) ((uint16_t *)(uintptr_t)g->c)[at] = cx_f_bf16(v);
        else ((float *)(uintptr_t)g->c)[at] = v;
      }
  }
  free(a);
  if (g->epilogue == CU_EPI_BGRAD_B) cx_bgrad(g);
  return 0;
}

static int cx_gemm(cu_driver *d, const cu_gemm *g) {
  if (cx_s(d)->capturing) return cx_record(d, &(cx_gop){.what = CX_G_GEMM, .gemm = *g});
  if (g->m < 0 || g->n < 0 || g->k < 0 || g->batch < 0 || g->epilogue < CU_EPI_NONE ||
      g->epilogue >= CU_EPI_COUNT || (g->epilogue == CU_EPI_BGRAD_B && (g->batch > 1 || g->c_type != CU_T_F32)) ||
      (g->epilogue != CU_EPI_NONE && g->bias_type != g->c_type)) {
    snprintf(d->err, sizeof d->err, "gemm: m=%d n=%d k=%d batch=%d epilogue=%d (bias type %d, C's %d) is not a product",
             g->m, g->n, g->k, g->batch, g->epilogue, g->bias_type, g->c_type);
    return 1;
  }
  int batch = g->batch > 1 ? g->batch : 1;
  if (cx_operand(d, "A", g->a, g->trans_a ? g->k : g->m, g->trans_a ? g->m : g->k, g->lda, batch, g->stride_a,
                 g->ab_type) ||
      cx_operand(d, "B", g->b, g->trans_b ? g->n : g->k, g->trans_b ? g->k : g->n, g->ldb, batch, g->stride_b,
                 g->ab_type) ||
      cx_operand(d, "C", g->c, g->m, g->n, g->ldc, batch, g->stride_c, g->c_type))
    return 1;
  if (g->epilogue != CU_EPI_NONE && g->n > 0 &&
      cx_mem_check(&cx_s(d)->mem, g->bias, (size_t)g->n * (g->bias_type == CU_T_BF16 ? 2 : 4), "gemm: the bias", d->err,
                   sizeof d->err))
    return 1;
  if (g->m == 0 || g->n == 0) return 0;
  if (g->ab_type == CU_T_BF16 || g->c_type == CU_T_BF16) return cx_gemm_bf16(d, g, batch);
  if (g->epilogue == CU_EPI_BGRAD_B) cx_bgrad(g); /* before the product: C may not overlap B, but be safe */
  for (int i = 0; i < batch; i++) {
    const float *a = (const float *)(uintptr_t)g->a + (size_t)i * (size_t)g->stride_a;
    const float *b = (const float *)(uintptr_t)g->b + (size_t)i * (size_t)g->stride_b;
    float *c = (float *)(uintptr_t)g->c + (size_t)i * (size_t)g->stride_c;
    if (g->k == 0) { /* BLAS leaves C alone when k is 0; the definition says beta*C */
      for (int r = 0; r < g->m; r++)
        for (int j = 0; j < g->n; j++) c[(size_t)r * g->ldc + j] *= g->beta;
    } else {
      cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans, g->trans_b ? CblasTrans : CblasNoTrans,
                  g->m, g->n, g->k, g->alpha, a, g->lda, b, g->ldb, g->beta, c, g->ldc);
    }
    if (g->epilogue == CU_EPI_NONE || g->epilogue == CU_EPI_BGRAD_B) continue;
    for (int r = 0; r < g->m; r++) {
      float *row = c + (size_t)r * (size_t)g->ldc;
      for (int j = 0; j < g->n; j++) {
        float v = row[j] + cx_bias(g, j);
        if (g->epilogue == CU_EPI_BIAS_RELU) v = v > 0.0f ? v : 0.0f;
        else if (g->epilogue == CU_EPI_BIAS_GELU) v = cx_gelu_tanh(v);
        row[j] = v;
      }
    }
  }
  return 0;
}

/* ---- collectives: NCCL's calls answered through the job's MPI path
 * (rt/rt_comm.c: the communicator runtime/dist.c installs under mpirun,
 * sums in rank order), as the CPU backends' collectives run. A test
 * instrument: the product's driver calls NCCL (codegen/cuda/cu_nccl.c). ---- */

static int cx_coll_open(cu_driver *d, int rank, int ranks) {
  if (ranks == lathe_rt_comm_size() && rank == lathe_rt_comm_rank()) return 0;
  return snprintf(d->err, sizeof d->err, "coll_open: rank %d of %d, but the job's communicator is rank %d of %d",
                  rank, ranks, lathe_rt_comm_rank(), lathe_rt_comm_size()), 1;
}

static int cx_coll(cu_driver *d, const cu_coll *c) {
  if (cx_s(d)->capturing) return cx_record(d, &(cx_gop){.what = CX_G_COLL, .coll = *c});
  if (c->op == CU_COLL_SEND || c->op == CU_COLL_RECV) return cx_p2p(&cx_s(d)->mem, c, d->err, sizeof d->err);
  size_t ranks = (size_t)lathe_rt_comm_size(), in = c->count * 4, out = c->count * 4;
  if (c->op == CU_COLL_REDUCE_SCATTER) in *= ranks;
  if (c->op == CU_COLL_ALL_GATHER) out *= ranks;
  if (cx_mem_check(&cx_s(d)->mem, c->send, in, "coll: the send buffer", d->err, sizeof d->err) ||
      cx_mem_check(&cx_s(d)->mem, c->recv, out, "coll: the receive buffer", d->err, sizeof d->err))
    return 1;
  void *s = (void *)(uintptr_t)c->send, *r = (void *)(uintptr_t)c->recv;
  int rc;
  if (c->op == CU_COLL_ALLREDUCE) {
    if (s != r) memmove(r, s, in);
    rc = lathe_rt_comm_sum(r, (int64_t)c->count, 0);
  } else if (c->op == CU_COLL_REDUCE_SCATTER) {
    rc = lathe_rt_comm_scatter_sum(s, r, (int64_t)c->count, 0);
  } else {
    rc = lathe_rt_comm_gather(s, r, (int64_t)c->count, 0);
  }
  return rc ? (snprintf(d->err, sizeof d->err, "coll: the MPI collective failed"), 1) : 0;
}

/* Launches run to completion: nothing is left to wait for. */
static int cx_sync(cu_driver *d) {
  (void)d;
  return 0;
}

static int cx_graph_begin(cu_driver *d) {
  if (cx_s(d)->capturing) return snprintf(d->err, sizeof d->err, "graph_begin: already capturing"), 1;
  cx_s(d)->capturing = calloc(1, sizeof(cx_graph));
  return cx_s(d)->capturing ? 0 : (snprintf(d->err, sizeof d->err, "graph: out of host memory"), 1);
}

static int cx_graph_end(cu_driver *d, void **graph) {
  if (!cx_s(d)->capturing) return snprintf(d->err, sizeof d->err, "graph_end: not capturing"), 1;
  *graph = cx_s(d)->capturing;
  cx_s(d)->capturing = NULL;
  return 0;
}

static int cx_graph_launch(cu_driver *d, void *graph) {
  cx_graph *g = graph;
  __atomic_add_fetch(&graph_replays, 1, __ATOMIC_RELAXED);
  for (int i = 0; i < g->n; i++) {
    cx_gop *op = &g->op[i];
    void *args[CX_G_MAXARGS + 1] = {0};
    for (int j = 0; j < op->nargs; j++) args[j] = &op->arg[j];
    int rc = op->what == CX_G_MEMSET ? cx_memset0(d, op->dst, op->bytes)
             : op->what == CX_G_DTOD ? cx_dtod(d, op->dst, op->src, op->bytes)
             : op->what == CX_G_GEMM ? cx_gemm(d, &op->gemm)
             : op->what == CX_G_COLL ? cx_coll(d, &op->coll)
                                     : cx_launch(d, op->fn, op->g, op->b, op->shmem, args);
    if (rc) return rc;
  }
  return 0;
}

static void cx_graph_free(cu_driver *d, void *graph) {
  (void)d;
  cx_graph *g = graph;
  if (g) free(g->op);
  free(g);
}

long cx_graph_replays_total(void) { return __atomic_load_n(&graph_replays, __ATOMIC_RELAXED); }

static void cx_destroy(cu_driver *d) {
  if (!d) return;
  cx_state *s = d->self;
  while (s->mods) {
    cx_module *m = s->mods;
    s->mods = m->next;
    cx_module_free(m);
  }
  cx_mem_release(&s->mem);
  cx_launch_release(s);
  cx_graph_free(d, s->capturing);
  free(s);
  free(d);
}

static int cx_mem_info(cu_driver *d, size_t *free_bytes, size_t *total_bytes) {
  const cx_mem *m = &cx_s(d)->mem;
  *free_bytes = m->limit - m->in_use, *total_bytes = m->limit;
  return 0;
}

cu_driver *cx_driver(char *err, size_t errlen) {
  cu_driver *d = calloc(1, sizeof *d);
  cx_state *s = calloc(1, sizeof *s);
  if (!d || !s) {
    free(d), free(s);
    snprintf(err, errlen, "cpu-executor: out of host memory");
    return NULL;
  }
  d->name = "cpu-executor";
  snprintf(d->arch, sizeof d->arch, "sm_80");
  s->mem.limit = (size_t)8 << 30;
  d->total_mem = s->mem.limit;
  d->self = s;
  d->mem_alloc = cx_mem_alloc_;
  d->mem_free = cx_mem_free_;
  d->htod = cx_htod;
  d->dtoh = cx_dtoh;
  d->memset0 = cx_memset0;
  d->module_load = cx_module_load_;
  d->get_function = cx_get_function;
  d->launch = cx_launch_;
  d->gemm = cx_gemm;
  d->sync = cx_sync;
  d->destroy = cx_destroy;
  d->dtod = cx_dtod;
  d->graph_begin = cx_graph_begin, d->graph_end = cx_graph_end, d->graph_launch = cx_graph_launch;
  d->graph_free = cx_graph_free;
  d->mem_info = cx_mem_info;
  d->coll_open = cx_coll_open, d->coll = cx_coll;
  return d;
}

void cx_set_mem_limit(cu_driver *d, size_t bytes) {
  cx_s(d)->mem.limit = bytes;
  d->total_mem = bytes;
}

void cx_force_fibers(cu_driver *d, int on) { cx_s(d)->force_fibers = on; }

int cx_kernel_fibers(const void *fn) { return ((const cx_kernel *)fn)->fibers; }

long cx_launch_count(const cu_driver *d) { return ((const cx_state *)d->self)->launches; }
