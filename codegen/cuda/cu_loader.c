/* cu_loader.c -- the product's cu_driver: the CUDA driver API and cuBLASLt,
 * both opened with dlopen (cu_dl.c), and NCCL for a data-parallel step
 * (cu_nccl.c). This process's device's primary context (device 0, or in a
 * job of several ranks the one its local rank picks: cu_job_device), one
 * stream for every copy, launch and product; copies to the host wait for
 * the stream. Every failure is one line naming the call and the driver's
 * error. cu_set_driver_factory lets a test put its own executor
 * (tests/cuexec/) in this one's place; the product never does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cuda/cu.h"

typedef struct {
  const cu_cuda_api *cu;
  const cu_lt_api *lt;
  int dev;
  void *ctx, *stream, *lt_handle;
  void *nccl;                 /* the process's communicator once coll_open joined it */
  cu_dptr workspace;
  size_t workspace_bytes;
} cu_real;

enum { CU_LT_WORKSPACE = 32 << 20 };

static int fail(cu_driver *d, const char *call, int rc) {
  cu_real *s = d->self;
  const char *why = NULL;
  if (s && s->cu && s->cu->GetErrorString) s->cu->GetErrorString(rc, &why);
  if (rc == 222) /* CUDA_ERROR_UNSUPPORTED_PTX_VERSION */
    why = "the PTX is newer than this driver: update the NVIDIA driver, or use an NVRTC no newer than the driver";
  snprintf(d->err, sizeof d->err, "%s failed: %s (CUDA error %d)", call, why ? why : "unknown error", rc);
  return -1;
}

static int r_alloc(cu_driver *d, size_t bytes, cu_dptr *out) {
  cu_real *s = d->self;
  uint64_t p = 0;
  int rc = s->cu->MemAlloc(&p, bytes ? bytes : 1);
  if (rc == 2) /* CUDA_ERROR_OUT_OF_MEMORY */
    return snprintf(d->err, sizeof d->err, "out of device memory: %zu bytes asked, the GPU has %zu bytes", bytes,
                    d->total_mem), -1;
  if (rc) return fail(d, "cuMemAlloc", rc);
  *out = p;
  return 0;
}

static int r_mem_info(cu_driver *d, size_t *free_bytes, size_t *total_bytes) {
  cu_real *s = d->self;
  int rc = s->cu->MemGetInfo(free_bytes, total_bytes);
  return rc ? fail(d, "cuMemGetInfo", rc) : 0;
}

static void r_free(cu_driver *d, cu_dptr p) {
  cu_real *s = d->self;
  if (p) s->cu->MemFree(p);
}

static int r_htod(cu_driver *d, cu_dptr dst, const void *src, size_t bytes) {
  cu_real *s = d->self;
  int rc = s->cu->MemcpyHtoDAsync(dst, src, bytes, s->stream);
  if (!rc) rc = s->cu->StreamSynchronize(s->stream); /* the caller may free src on return */
  return rc ? fail(d, "cuMemcpyHtoD", rc) : 0;
}

static int r_dtoh(cu_driver *d, void *dst, cu_dptr src, size_t bytes) {
  cu_real *s = d->self;
  int rc = s->cu->MemcpyDtoHAsync(dst, src, bytes, s->stream);
  if (!rc) rc = s->cu->StreamSynchronize(s->stream);
  return rc ? fail(d, "cuMemcpyDtoH", rc) : 0;
}

static int r_memset0(cu_driver *d, cu_dptr dst, size_t bytes) {
  cu_real *s = d->self;
  int rc = s->cu->MemsetD8Async(dst, 0, bytes, s->stream);
  return rc ? fail(d, "cuMemsetD8", rc) : 0;
}

int cu_image_vs_driver(const void *image, size_t len, int driver_version, int nvrtc_major, int nvrtc_minor, char *msg,
                       size_t n) {
  int elf = len >= 4 && !memcmp(image, "\x7f" "ELF", 4);
  int nvrtc = nvrtc_major * 1000 + nvrtc_minor * 10;
  if (elf || !driver_version || driver_version >= nvrtc) return 0;
  snprintf(msg, n, "the kernels are PTX from NVRTC %d.%d, newer than this driver (CUDA %d.%d), which cannot load it: "
           "update the NVIDIA driver, or use an NVRTC no newer than %d.%d (CUDA_HOME)", nvrtc_major, nvrtc_minor,
           driver_version / 1000, driver_version % 1000 / 10, driver_version / 1000, driver_version % 1000 / 10);
  return -1;
}

static int r_module_load(cu_driver *d, const char *src, const void *image, size_t len, void **mod) {
  (void)src;
  cu_real *s = d->self;
  int dv = 0;
  const cu_nvrtc_api *nv = cu_dl_nvrtc(NULL, 0);
  if (nv && !s->cu->DriverGetVersion(&dv) && cu_image_vs_driver(image, len, dv, nv->major, nv->minor, d->err, sizeof d->err))
    return -1;
  int rc = s->cu->ModuleLoadData(mod, image);
  return rc ? fail(d, "cuModuleLoadData", rc) : 0;
}

static int r_get_function(cu_driver *d, void *mod, const char *name, void **fn) {
  cu_real *s = d->self;
  int rc = s->cu->ModuleGetFunction(fn, mod, name);
  if (rc) {
    fail(d, "cuModuleGetFunction", rc);
    size_t k = strlen(d->err);
    snprintf(d->err + k, sizeof d->err - k, " for %s", name);
    return -1;
  }
  return 0;
}

static int r_launch(cu_driver *d, void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                    unsigned bz, unsigned shmem, void **args) {
  cu_real *s = d->self;
  int rc = s->cu->LaunchKernel(fn, gx, gy, gz, bx, by, bz, shmem, s->stream, args, NULL);
  return rc ? fail(d, "cuLaunchKernel", rc) : 0;
}

/* cuBLASLt's attribute numbers and types (cublasLt.h, library_types.h) */
enum { LT_COMPUTE_32F = 68, LT_R_32F = 0, LT_DESC_TRANSA = 3, LT_DESC_TRANSB = 4, LT_DESC_EPILOGUE = 7,
       LT_DESC_BIAS_POINTER = 8, LT_LAYOUT_BATCH_COUNT = 5, LT_LAYOUT_BATCH_STRIDE = 6, LT_EPI_DEFAULT = 1,
       LT_EPI_BIAS = 4, LT_EPI_RELU_BIAS = 6, LT_EPI_GELU_BIAS = 36, LT_EPI_BGRADA = 256, LT_R_16BF = 14 };

/* Row-major C[m, n] = op(A) op(B) is column-major C^T[n, m] = op(B)^T op(A)^T:
 * cuBLASLt gets B first, then A, each as stored (a row-major [r, c] with
 * leading dimension ld is a column-major [c, r]). */
static int r_gemm(cu_driver *d, const cu_gemm *g) {
  cu_real *s = d->self;
  const cu_lt_api *lt = s->lt;
  void *desc = NULL, *la = NULL, *lb = NULL, *lc = NULL;
  int rc = lt->MatmulDescCreate(&desc, LT_COMPUTE_32F, LT_R_32F);
  int ta = g->trans_b ? 1 : 0, tb = g->trans_a ? 1 : 0; /* CUBLAS_OP_T = 1 */
  /* our B is cuBLASLt's A (the swap above): the bias gradient over op(B)'s
   * k rows, one per column of C (a row of C^T), is BGRADA */
  static const int epi[CU_EPI_COUNT] = {[CU_EPI_NONE] = LT_EPI_DEFAULT, [CU_EPI_BIAS] = LT_EPI_BIAS,
                                        [CU_EPI_BIAS_RELU] = LT_EPI_RELU_BIAS, [CU_EPI_BIAS_GELU] = LT_EPI_GELU_BIAS,
                                        [CU_EPI_BGRAD_B] = LT_EPI_BGRADA};
  int e = g->epilogue >= 0 && g->epilogue < CU_EPI_COUNT ? epi[g->epilogue] : LT_EPI_DEFAULT;
  if (g->epilogue != CU_EPI_NONE && g->bias_type != g->c_type)
    return snprintf(d->err, sizeof d->err, "cublasLtMatmul: the bias (type %d) must have C's type (%d)",
                    g->bias_type, g->c_type), -1;
  if (!rc) rc = lt->MatmulDescSetAttribute(desc, LT_DESC_TRANSA, &ta, sizeof ta);
  if (!rc) rc = lt->MatmulDescSetAttribute(desc, LT_DESC_TRANSB, &tb, sizeof tb);
  if (!rc) rc = lt->MatmulDescSetAttribute(desc, LT_DESC_EPILOGUE, &e, sizeof e);
  if (!rc && g->epilogue != CU_EPI_NONE) {
    void *bias = (void *)(uintptr_t)g->bias;
    rc = lt->MatmulDescSetAttribute(desc, LT_DESC_BIAS_POINTER, &bias, sizeof bias);
  }
  int tab = g->ab_type == CU_T_BF16 ? LT_R_16BF : LT_R_32F, tc = g->c_type == CU_T_BF16 ? LT_R_16BF : LT_R_32F;
  /* first operand: B as stored; second: A as stored; result C^T[n, m] */
  if (!rc) rc = lt->MatrixLayoutCreate(&lb, tab, g->trans_b ? g->k : g->n, g->trans_b ? g->n : g->k, g->ldb);
  if (!rc) rc = lt->MatrixLayoutCreate(&la, tab, g->trans_a ? g->m : g->k, g->trans_a ? g->k : g->m, g->lda);
  if (!rc) rc = lt->MatrixLayoutCreate(&lc, tc, g->n, g->m, g->ldc);
  if (!rc && g->batch > 1) {
    int32_t nb = g->batch;
    int64_t sa = g->stride_a, sb = g->stride_b, sc = g->stride_c;
    void *l3[3] = {lb, la, lc};
    int64_t st[3] = {sb, sa, sc};
    for (int i = 0; i < 3 && !rc; i++) {
      rc = lt->MatrixLayoutSetAttribute(l3[i], LT_LAYOUT_BATCH_COUNT, &nb, sizeof nb);
      if (!rc) rc = lt->MatrixLayoutSetAttribute(l3[i], LT_LAYOUT_BATCH_STRIDE, &st[i], sizeof st[i]);
    }
  }
  if (!rc)
    rc = lt->Matmul(s->lt_handle, desc, &g->alpha, (const void *)(uintptr_t)g->b, lb, (const void *)(uintptr_t)g->a,
                    la, &g->beta, (const void *)(uintptr_t)g->c, lc, (void *)(uintptr_t)g->c, lc, NULL,
                    (void *)(uintptr_t)s->workspace, s->workspace_bytes, s->stream);
  if (lc) lt->MatrixLayoutDestroy(lc);
  if (la) lt->MatrixLayoutDestroy(la);
  if (lb) lt->MatrixLayoutDestroy(lb);
  if (desc) lt->MatmulDescDestroy(desc);
  if (rc)
    return snprintf(d->err, sizeof d->err, "cublasLtMatmul (m %d n %d k %d, batch %d, epilogue %d) failed: cuBLAS status %d%s",
                    g->m, g->n, g->k, g->batch, g->epilogue, rc,
                    g->epilogue == CU_EPI_BGRAD_B ? " (LATHE_CUDA_BGRAD=0 sums the bias gradient in a kernel instead)" : ""),
           -1;
  return 0;
}

static int r_sync(cu_driver *d) {
  cu_real *s = d->self;
  int rc = s->cu->StreamSynchronize(s->stream);
  return rc ? fail(d, "cuStreamSynchronize (a kernel failed)", rc) : 0;
}

static int r_dtod(cu_driver *d, cu_dptr dst, cu_dptr src, size_t bytes) {
  cu_real *s = d->self;
  int rc = s->cu->MemcpyDtoDAsync(dst, src, bytes, s->stream);
  return rc ? fail(d, "cuMemcpyDtoD", rc) : 0;
}

/* CUDA graphs: the stream's work captured (global mode: nothing else may
 * touch the context meanwhile), instantiated once, replayed per step. */
static int r_graph_begin(cu_driver *d) {
  cu_real *s = d->self;
  int rc = s->cu->StreamBeginCapture(s->stream, 0 /* CU_STREAM_CAPTURE_MODE_GLOBAL */);
  return rc ? fail(d, "cuStreamBeginCapture", rc) : 0;
}

static int r_graph_end(cu_driver *d, void **graph) {
  cu_real *s = d->self;
  void *g = NULL, *exec = NULL;
  int rc = s->cu->StreamEndCapture(s->stream, &g);
  if (rc) return fail(d, "cuStreamEndCapture", rc);
  rc = s->cu->GraphInstantiate(&exec, g, 0);
  s->cu->GraphDestroy(g); /* the executable graph keeps what it needs */
  if (rc) return fail(d, "cuGraphInstantiate", rc);
  *graph = exec;
  return 0;
}

static int r_graph_launch(cu_driver *d, void *graph) {
  cu_real *s = d->self;
  int rc = s->cu->GraphLaunch(graph, s->stream);
  return rc ? fail(d, "cuGraphLaunch", rc) : 0;
}

static void r_graph_free(cu_driver *d, void *graph) {
  cu_real *s = d->self;
  if (graph) s->cu->GraphExecDestroy(graph);
}

static int r_coll_open(cu_driver *d, int rank, int ranks) {
  cu_real *s = d->self;
  int rc = s->cu->CtxSetCurrent(s->ctx); /* NCCL binds the communicator to the current device */
  if (rc) return fail(d, "cuCtxSetCurrent", rc);
  return cu_nccl_open(rank, ranks, s->dev, &s->nccl, d->err, sizeof d->err) ? -1 : 0;
}

static int r_coll(cu_driver *d, const cu_coll *c) {
  cu_real *s = d->self;
  return cu_nccl_coll(s->nccl, c, s->stream, d->err, sizeof d->err) ? -1 : 0;
}

static void r_destroy(cu_driver *d) {
  if (!d) return;
  cu_real *s = d->self;
  if (s) {
    if (s->stream) s->cu->StreamSynchronize(s->stream);
    if (s->workspace) s->cu->MemFree(s->workspace);
    if (s->lt_handle) s->lt->Destroy(s->lt_handle);
    if (s->stream) s->cu->StreamDestroy(s->stream);
    if (s->ctx) s->cu->DevicePrimaryCtxRelease(s->dev);
    free(s);
  }
  free(d);
}

static cu_driver *real_driver(char *err, size_t errlen) {
  char why[1024];
  const cu_cuda_api *cu = cu_dl_cuda(why, sizeof why);
  if (!cu) return snprintf(err, errlen, "--backend cuda: %s", why), NULL;
  const cu_lt_api *lt = cu_dl_cublaslt(why, sizeof why);
  if (!lt) return snprintf(err, errlen, "--backend cuda: %s", why), NULL;
  cu_driver *d = calloc(1, sizeof *d);
  cu_real *s = calloc(1, sizeof *s);
  if (!d || !s) {
    free(d), free(s);
    return snprintf(err, errlen, "out of memory"), NULL;
  }
  d->self = s, d->name = "cuda";
  s->cu = cu, s->lt = lt;
  int count = 0, major = 0, minor = 0, rc;
  if ((rc = cu->Init(0)) || (rc = cu->DeviceGetCount(&count)) || count < 1) {
    snprintf(err, errlen, "--backend cuda: %s is loaded but finds no GPU (cuInit/cuDeviceGetCount: error %d, %d devices)",
             cu->path, rc, count);
    r_destroy(d);
    return NULL;
  }
  const char *step = "cuDeviceGet";
  rc = cu->DeviceGet(&s->dev, cu_job_device(count));
  if (!rc) step = "cuDeviceGetAttribute", rc = cu->DeviceGetAttribute(&major, 75, s->dev);
  if (!rc) rc = cu->DeviceGetAttribute(&minor, 76, s->dev);
  if (!rc) step = "cuDeviceTotalMem", rc = cu->DeviceTotalMem(&d->total_mem, s->dev);
  if (!rc) step = "cuDevicePrimaryCtxRetain", rc = cu->DevicePrimaryCtxRetain(&s->ctx, s->dev);
  if (!rc) step = "cuCtxSetCurrent", rc = cu->CtxSetCurrent(s->ctx);
  if (!rc) step = "cuStreamCreate", rc = cu->StreamCreate(&s->stream, 1 /* non-blocking */);
  if (!rc) step = "cublasLtCreate", rc = lt->Create(&s->lt_handle);
  if (!rc) step = "cuMemAlloc (cuBLASLt workspace)", rc = cu->MemAlloc(&s->workspace, CU_LT_WORKSPACE);
  if (rc) {
    fail(d, step, rc);
    snprintf(err, errlen, "--backend cuda: %s", d->err);
    r_destroy(d);
    return NULL;
  }
  s->workspace_bytes = CU_LT_WORKSPACE;
  snprintf(d->arch, sizeof d->arch, "sm_%d%d", major, minor);
  d->mem_alloc = r_alloc, d->mem_free = r_free, d->htod = r_htod, d->dtoh = r_dtoh, d->memset0 = r_memset0;
  d->module_load = r_module_load, d->get_function = r_get_function, d->launch = r_launch, d->gemm = r_gemm;
  d->sync = r_sync, d->destroy = r_destroy, d->coll_open = r_coll_open, d->coll = r_coll;
  if (cu->MemcpyDtoDAsync) d->dtod = r_dtod;
  if (cu->MemGetInfo) d->mem_info = r_mem_info;
  if (cu->StreamBeginCapture && cu->StreamEndCapture && cu->GraphInstantiate && cu->GraphLaunch &&
      cu->GraphExecDestroy && cu->GraphDestroy)
    d->graph_begin = r_graph_begin, d->graph_end = r_graph_end, d->graph_launch = r_graph_launch,
    d->graph_free = r_graph_free;
  return d;
}

static cu_driver_ctor factory;

void cu_set_driver_factory(cu_driver_ctor ctor) { factory = ctor; }

cu_driver *cu_driver_create(char *err, size_t errlen) { return (factory ? factory : real_driver)(err, errlen); }
