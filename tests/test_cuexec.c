/* test_cuexec.c: the CPU executor for rendered CUDA C (tests/cuexec/), one
 * hand-written kernel per feature, each checked against plain C: grid and
 * block indexing, a shared-memory tree reduction with __syncthreads (static
 * and dynamic shared memory), warp-shuffle reductions, atomicAdd, a softmax
 * row kernel, math builtins, bf16 and float4, gemm with every epilogue, and
 * the failures the executor must name (out-of-range accesses, host pointers,
 * deadlocks, exited lanes, bad launches). Every kernel source is also compiled
 * by NVRTC for sm_80 and sm_90 with no warning, so the executor only runs CUDA
 * C a GPU would take (skipped, saying so, without the toolkit). */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cx.h"
#include "test.h"

/* ---- NVRTC, loaded at run time (nothing in the build links CUDA) ---- */

typedef struct nv_api {
  void *dl;
  int (*create)(void **prog, const char *src, const char *name, int nh, const char *const *h,
                const char *const *hn);
  int (*compile)(void *prog, int nopt, const char *const *opt);
  int (*log_size)(void *prog, size_t *n);
  int (*log)(void *prog, char *out);
  int (*cubin_size)(void *prog, size_t *n);
  int (*cubin)(void *prog, char *out);
  int (*destroy)(void **prog);
} nv_api;

static nv_api nv;

static int nv_open(void) {
  static const char *const names[] = {
      "libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "/usr/local/cuda/lib64/libnvrtc.so",
      "/usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so"};
  for (size_t i = 0; i < sizeof names / sizeof *names && !nv.dl; i++) nv.dl = dlopen(names[i], RTLD_NOW);
  if (!nv.dl) return 0;
  *(void **)&nv.create = dlsym(nv.dl, "nvrtcCreateProgram");
  *(void **)&nv.compile = dlsym(nv.dl, "nvrtcCompileProgram");
  *(void **)&nv.log_size = dlsym(nv.dl, "nvrtcGetProgramLogSize");
  *(void **)&nv.log = dlsym(nv.dl, "nvrtcGetProgramLog");
  *(void **)&nv.cubin_size = dlsym(nv.dl, "nvrtcGetCUBINSize");
  *(void **)&nv.cubin = dlsym(nv.dl, "nvrtcGetCUBIN");
  *(void **)&nv.destroy = dlsym(nv.dl, "nvrtcDestroyProgram");
  return nv.create && nv.compile && nv.log_size && nv.log && nv.cubin_size && nv.cubin && nv.destroy;
}

/* NVRTC must take src for arch with an empty log; the CUBIN comes back. */
static char *nv_compile(const char *src, const char *arch, size_t *len) {
  char archopt[64];
  snprintf(archopt, sizeof archopt, "--gpu-architecture=%s", arch);
  const char *opts[] = {archopt, "-I/usr/local/cuda/include", "--std=c++17"};
  void *prog = NULL;
  char *cubin = NULL;
  if (nv.create(&prog, src, "kernel.cu", 0, NULL, NULL) != 0) {
    CHECK_MSG(0, "nvrtcCreateProgram failed");
    return NULL;
  }
  int rc = nv.compile(prog, 3, opts);
  size_t n = 0;
  nv.log_size(prog, &n);
  char *log = calloc(1, n + 1);
  if (log) nv.log(prog, log);
  int quiet = !log || strspn(log, " \n\r\t") == strlen(log);
  CHECK_MSG(rc == 0 && quiet, "NVRTC %s (rc %d): %s", arch, rc, log ? log : "");
  free(log);
  if (rc == 0 && nv.cubin_size(prog, len) == 0 && (cubin = malloc(*len ? *len : 1)) != NULL)
    nv.cubin(prog, cubin);
  nv.destroy(&prog);
  return cubin;
}

/* ---- the executor ---- */

static cu_driver *D;
static int have_nvrtc;

/* Loads src on the executor (after NVRTC took it for sm_80 and sm_90) and
 * returns kernel name. */
static void *kernel(const char *src, const char *name) {
  char *image = NULL;
  size_t len = 0;
  if (have_nvrtc) {
    free(nv_compile(src, "sm_90", &len));
    image = nv_compile(src, "sm_80", &len);
  }
  void *mod = NULL, *fn = NULL;
  int rc = D->module_load(D, src, image, len, &mod);
  free(image);
  CHECK_MSG(rc == 0, "module_load: %s", D->err);
  if (rc) return NULL;
  rc = D->get_function(D, mod, name, &fn);
  CHECK_MSG(rc == 0, "get_function: %s", D->err);
  return rc ? NULL : fn;
}

static cu_dptr dev(size_t bytes) {
  cu_dptr p = 0;
  int rc = D->mem_alloc(D, bytes, &p);
  CHECK_MSG(rc == 0, "mem_alloc: %s", D->err);
  return p;
}

static cu_dptr dev_from(const void *host, size_t bytes) {
  cu_dptr p = dev(bytes);
  CHECK_MSG(p && D->htod(D, p, host, bytes) == 0, "htod: %s", D->err);
  return p;
}

static void from_dev(void *host, cu_dptr p, size_t bytes) {
  int rc = D->dtoh(D, host, p, bytes);
  CHECK_MSG(rc == 0, "dtoh: %s", D->err);
}

static int launch(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                  unsigned shmem, void **args) {
  if (!fn) return 1;
  return D->launch(D, fn, gx, gy, gz, bx, by, bz, shmem, args);
}

static float frand(unsigned *s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* ---- grid and block indexing ---- */

static const char *k_index =
    "extern \"C\" __global__ void __launch_bounds__(256) index3(unsigned *out) {\n"
    "  unsigned bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);\n"
    "  unsigned tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);\n"
    "  unsigned n = blockDim.x * blockDim.y * blockDim.z;\n"
    "  out[bx * n + tx] = (blockIdx.x << 24) | (blockIdx.y << 20) | (blockIdx.z << 16) |\n"
    "                     (threadIdx.x << 8) | (threadIdx.y << 4) | threadIdx.z;\n"
    "}\n";

static void test_index(int fibers) {
  void *fn = kernel(k_index, "index3");
  CHECK(fn && !cx_kernel_fibers(fn)); /* thread after thread unless forced */
  enum { GX = 3, GY = 2, GZ = 2, BX = 4, BY = 3, BZ = 2, N = GX * GY * GZ * BX * BY * BZ };
  cu_dptr out = dev(N * sizeof(unsigned));
  void *args[] = {&out};
  cx_force_fibers(D, fibers);
  CHECK_MSG(launch(fn, GX, GY, GZ, BX, BY, BZ, 0, args) == 0, "%s", D->err);
  cx_force_fibers(D, 0);
  unsigned got[N];
  from_dev(got, out, sizeof got);
  int bad = 0;
  for (unsigned z = 0; z < GZ; z++)
    for (unsigned y = 0; y < GY; y++)
      for (unsigned x = 0; x < GX; x++)
        for (unsigned tz = 0; tz < BZ; tz++)
          for (unsigned ty = 0; ty < BY; ty++)
            for (unsigned tx = 0; tx < BX; tx++) {
              unsigned b = x + GX * (y + GY * z), t = tx + BX * (ty + BY * tz);
              unsigned want = (x << 24) | (y << 20) | (z << 16) | (tx << 8) | (ty << 4) | tz;
              bad += got[b * BX * BY * BZ + t] != want;
            }
  CHECK_MSG(bad == 0, "%d of %d indices wrong (fibers %d)", bad, N, fibers);
  D->mem_free(D, out);
}

/* ---- shared-memory tree reduction: static and dynamic shared arrays ---- */

static const char *k_tree =
    "extern \"C\" __global__ void tree_sum(const float *__restrict__ x, float *out, int n) {\n"
    "  __shared__ float s[256];\n"
    "  int i = blockIdx.x * 256 + threadIdx.x;\n"
    "  s[threadIdx.x] = i < n ? x[i] : 0.0f;\n"
    "  __syncthreads();\n"
    "  for (int stride = 128; stride > 0; stride >>= 1) {\n"
    "    if (threadIdx.x < stride) s[threadIdx.x] += s[threadIdx.x + stride];\n"
    "    __syncthreads();\n"
    "  }\n"
    "  if (threadIdx.x == 0) out[blockIdx.x] = s[0];\n"
    "}\n"
    "/* dynamic shared memory: blockDim.x floats, then the block's maximum */\n"
    "extern \"C\" __global__ void tree_max(const float *__restrict__ x, float *out, int n) {\n"
    "  extern __shared__ __align__(16) float dyn[];\n"
    "  int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "  dyn[threadIdx.x] = i < n ? x[i] : __int_as_float(0xff800000);\n"
    "  __syncthreads();\n"
    "  for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {\n"
    "    if (threadIdx.x < stride) dyn[threadIdx.x] = fmaxf(dyn[threadIdx.x], dyn[threadIdx.x + stride]);\n"
    "    __syncthreads();\n"
    "  }\n"
    "  if (threadIdx.x == 0) out[blockIdx.x] = dyn[0];\n"
    "}\n";

static void test_tree(void) {
  enum { N = 1000, B = 4 };
  float x[N], sums[B], maxes[8];
  unsigned seed = 1;
  for (int i = 0; i < N; i++) x[i] = frand(&seed);
  cu_dptr dx = dev_from(x, sizeof x), dout = dev(8 * sizeof(float));
  int n = N;
  void *args[] = {&dx, &dout, &n};
  CHECK_MSG(launch(kernel(k_tree, "tree_sum"), B, 1, 1, 256, 1, 1, 0, args) == 0, "%s", D->err);
  from_dev(sums, dout, sizeof sums);
  for (int b = 0; b < B; b++) {
    double want = 0;
    for (int i = b * 256; i < N && i < b * 256 + 256; i++) want += x[i];
    CHECK_NEAR(sums[b], want, 1e-5);
  }
  /* 128 threads a block: 8 blocks, 128 floats of dynamic shared memory */
  CHECK_MSG(launch(kernel(k_tree, "tree_max"), 8, 1, 1, 128, 1, 1, 128 * sizeof(float), args) == 0, "%s",
            D->err);
  from_dev(maxes, dout, sizeof maxes);
  for (int b = 0; b < 8; b++) {
    float want = -INFINITY;
    for (int i = b * 128; i < N && i < b * 128 + 128; i++) want = x[i] > want ? x[i] : want;
    CHECK_NEAR(maxes[b], want, 0);
  }
  D->mem_free(D, dx);
  D->mem_free(D, dout);
}

/* ---- warp shuffles: xor butterfly, down-shift, broadcast, across warps ---- */

static const char *k_warp =
    "__device__ __forceinline__ float warp_sum(float v) {\n"
    "  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);\n"
    "  return v;\n"
    "}\n"
    "/* one row per block of 128 threads: lanes stride the row, warps meet in shared */\n"
    "extern \"C\" __global__ void row_sum(const float *__restrict__ x, float *out, int cols) {\n"
    "  __shared__ float part[4];\n"
    "  const float *row = x + (size_t)blockIdx.x * cols;\n"
    "  float v = 0.0f;\n"
    "  for (int j = threadIdx.x; j < cols; j += blockDim.x) v += row[j];\n"
    "  v = warp_sum(v);\n"
    "  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;\n"
    "  __syncthreads();\n"
    "  if (threadIdx.x < 32) {\n"
    "    float w = threadIdx.x < 4 ? part[threadIdx.x] : 0.0f;\n"
    "    w = warp_sum(w);\n"
    "    if (threadIdx.x == 0) out[blockIdx.x] = w;\n"
    "  }\n"
    "}\n"
    "/* a down-shift reduction and a broadcast of lane 3 */\n"
    "extern \"C\" __global__ void down_bcast(const float *__restrict__ x, float *sum, float *b) {\n"
    "  int i = blockIdx.x * 32 + threadIdx.x;\n"
    "  float v = x[i];\n"
    "  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);\n"
    "  if (threadIdx.x == 0) sum[blockIdx.x] = v;\n"
    "  b[i] = __shfl_sync(0xffffffffu, x[i], 3);\n"
    "}\n";

static void test_warp(void) {
  enum { ROWS = 3, COLS = 300 };
  float x[ROWS * COLS], out[ROWS];
  unsigned seed = 7;
  for (int i = 0; i < ROWS * COLS; i++) x[i] = frand(&seed);
  cu_dptr dx = dev_from(x, sizeof x), dout = dev(sizeof out);
  int cols = COLS;
  void *args[] = {&dx, &dout, &cols};
  CHECK_MSG(launch(kernel(k_warp, "row_sum"), ROWS, 1, 1, 128, 1, 1, 0, args) == 0, "%s", D->err);
  from_dev(out, dout, sizeof out);
  for (int r = 0; r < ROWS; r++) {
    double want = 0;
    for (int j = 0; j < COLS; j++) want += x[r * COLS + j];
    CHECK_NEAR(out[r], want, 1e-5);
  }
  float sum[2], b[64];
  cu_dptr dsum = dev(sizeof sum), db = dev(sizeof b);
  void *args2[] = {&dx, &dsum, &db};
  CHECK_MSG(launch(kernel(k_warp, "down_bcast"), 2, 1, 1, 32, 1, 1, 0, args2) == 0, "%s", D->err);
  from_dev(sum, dsum, sizeof sum);
  from_dev(b, db, sizeof b);
  for (int w = 0; w < 2; w++) {
    double want = 0;
    for (int j = 0; j < 32; j++) want += x[w * 32 + j];
    CHECK_NEAR(sum[w], want, 1e-5);
    int bad = 0;
    for (int j = 0; j < 32; j++) bad += b[w * 32 + j] != x[w * 32 + 3];
    CHECK_MSG(bad == 0, "warp %d: %d lanes did not get lane 3's value", w, bad);
  }
  D->mem_free(D, dx), D->mem_free(D, dout), D->mem_free(D, dsum), D->mem_free(D, db);
}

/* ---- which kernels run as fibers: those reaching a barrier or collective
 * through calls, seen through extern "C" blocks, comments and structs ---- */

static const char *k_chain =
    "struct pair { float a, b; };\n"
    "__device__ float leaf(float v) { return __shfl_down_sync(0xffffffffu, v, 1); }\n"
    "__device__ float mid(float v) { /* calls leaf */ return leaf(v) + 1.0f; }\n"
    "__device__ float plain(float v) { return v * 2.0f; } // not __syncthreads\n"
    "extern \"C\" {\n"
    "__global__ void via_chain(float *y) { y[threadIdx.x] = mid(y[threadIdx.x]); }\n"
    "__global__ void no_sync(float *y) { pair p = {y[threadIdx.x], 1.0f}; y[threadIdx.x] = plain(p.a) + p.b; }\n"
    "}\n"
    "extern \"C\" __global__ void __launch_bounds__(64) direct(float *y) { __syncthreads(); y[0] = 1.0f; }\n";

static void test_chain(void) {
  void *a = kernel(k_chain, "via_chain"), *b = kernel(k_chain, "no_sync"), *c = kernel(k_chain, "direct");
  CHECK(a && cx_kernel_fibers(a));
  CHECK(b && !cx_kernel_fibers(b));
  CHECK(c && cx_kernel_fibers(c));
  float y[32], got[32];
  for (int i = 0; i < 32; i++) y[i] = (float)i;
  cu_dptr dy = dev_from(y, sizeof y);
  void *args[] = {&dy};
  CHECK_MSG(launch(a, 1, 1, 1, 32, 1, 1, 0, args) == 0, "%s", D->err);
  CHECK_MSG(launch(b, 1, 1, 1, 32, 1, 1, 0, args) == 0, "%s", D->err);
  from_dev(got, dy, sizeof got);
  int bad = 0;
  for (int i = 0; i < 32; i++) bad += got[i] != 2.0f * (y[i < 31 ? i + 1 : i] + 1.0f) + 1.0f;
  CHECK_MSG(bad == 0, "%d lanes wrong after the chained shuffle", bad);
  D->mem_free(D, dy);
}

/* ---- atomics ---- */

static const char *k_atomic =
    "extern \"C\" __global__ void histo(const int *__restrict__ idx, const float *__restrict__ w,\n"
    "                                  int *count, float *mass, int n) {\n"
    "  int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "  if (i >= n) return;\n"
    "  atomicAdd(&count[idx[i]], 1);\n"
    "  atomicAdd(&mass[idx[i]], w[i]);\n"
    "}\n";

static void test_atomic(void) {
  enum { N = 777, BINS = 10 };
  int idx[N], count[BINS], want_c[BINS] = {0};
  float w[N], mass[BINS];
  double want_m[BINS] = {0};
  unsigned seed = 3;
  for (int i = 0; i < N; i++) {
    idx[i] = (int)((seed = seed * 1103515245u + 12345u) >> 16) % BINS;
    w[i] = frand(&seed);
    want_c[idx[i]]++, want_m[idx[i]] += w[i];
  }
  cu_dptr di = dev_from(idx, sizeof idx), dw = dev_from(w, sizeof w);
  cu_dptr dc = dev(sizeof count), dm = dev(sizeof mass);
  CHECK(D->memset0(D, dc, sizeof count) == 0 && D->memset0(D, dm, sizeof mass) == 0);
  int n = N;
  void *args[] = {&di, &dw, &dc, &dm, &n};
  CHECK_MSG(launch(kernel(k_atomic, "histo"), (N + 127) / 128, 1, 1, 128, 1, 1, 0, args) == 0, "%s", D->err);
  from_dev(count, dc, sizeof count);
  from_dev(mass, dm, sizeof mass);
  for (int b = 0; b < BINS; b++) {
    CHECK(count[b] == want_c[b]);
    CHECK_NEAR(mass[b], want_m[b], 1e-4);
  }
  D->mem_free(D, di), D->mem_free(D, dw), D->mem_free(D, dc), D->mem_free(D, dm);
}

/* ---- a softmax row kernel: max and sum by warps, then by shared memory ---- */

static const char *k_softmax =
    "__device__ __forceinline__ float wmax(float v) {\n"
    "  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));\n"
    "  return v;\n"
    "}\n"
    "__device__ __forceinline__ float wsum(float v) {\n"
    "  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);\n"
    "  return v;\n"
    "}\n"
    "extern \"C\" __global__ void __launch_bounds__(64) softmax_rows(const float *__restrict__ x,\n"
    "                                                             float *__restrict__ y, int cols) {\n"
    "  __shared__ float red[2];\n"
    "  const float *xr = x + (size_t)blockIdx.x * cols;\n"
    "  float *yr = y + (size_t)blockIdx.x * cols;\n"
    "  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;\n"
    "  float m = __int_as_float(0xff800000);\n"
    "  for (int j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, xr[j]);\n"
    "  m = wmax(m);\n"
    "  if (lane == 0) red[warp] = m;\n"
    "  __syncthreads();\n"
    "  m = fmaxf(red[0], red[1]);\n"
    "  __syncthreads();\n"
    "  float s = 0.0f;\n"
    "  for (int j = threadIdx.x; j < cols; j += blockDim.x) s += __expf(xr[j] - m);\n"
    "  s = wsum(s);\n"
    "  if (lane == 0) red[warp] = s;\n"
    "  __syncthreads();\n"
    "  float inv = 1.0f / (red[0] + red[1]);\n"
    "  for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = __expf(xr[j] - m) * inv;\n"
    "}\n";

static void test_softmax(void) {
  enum { ROWS = 5, COLS = 100 };
  float x[ROWS * COLS], y[ROWS * COLS];
  unsigned seed = 11;
  for (int i = 0; i < ROWS * COLS; i++) x[i] = 4.0f * frand(&seed);
  cu_dptr dx = dev_from(x, sizeof x), dy = dev(sizeof y);
  int cols = COLS;
  void *args[] = {&dx, &dy, &cols};
  CHECK_MSG(launch(kernel(k_softmax, "softmax_rows"), ROWS, 1, 1, 64, 1, 1, 0, args) == 0, "%s", D->err);
  from_dev(y, dy, sizeof y);
  double worst = 0;
  for (int r = 0; r < ROWS; r++) {
    double m = -INFINITY, s = 0;
    for (int j = 0; j < COLS; j++) m = fmax(m, x[r * COLS + j]);
    for (int j = 0; j < COLS; j++) s += exp(x[r * COLS + j] - m);
    for (int j = 0; j < COLS; j++) worst = fmax(worst, fabs(y[r * COLS + j] - exp(x[r * COLS + j] - m) / s));
  }
  CHECK_MSG(worst < 1e-6, "softmax differs by %g", worst);
  D->mem_free(D, dx), D->mem_free(D, dy);
}

/* ---- math builtins, float4 and bf16 ---- */

static const char *k_math =
    "#include <cuda_bf16.h>\n"
    "extern \"C\" __global__ void mathk(const float4 *__restrict__ x, float4 *y, __nv_bfloat16 *h,\n"
    "                                   float *back, int n4) {\n"
    "  int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "  if (i >= n4) return;\n"
    "  float4 v = x[i];\n"
    "  float g = 0.5f * v.x * (1.0f + erff(v.x * 0.70710678f));\n"
    "  float t = tanhf(v.y) + rsqrtf(fabsf(v.y) + 1.0f);\n"
    "  y[i] = make_float4(g, t, __expf(v.z) + expf(-v.z), fmaxf(v.w, 0.0f));\n"
    "  for (int c = 0; c < 4; c++) {\n"
    "    float f = c == 0 ? v.x : c == 1 ? v.y : c == 2 ? v.z : v.w;\n"
    "    h[4 * i + c] = __float2bfloat16(f * 100.0f);\n"
    "    back[4 * i + c] = __bfloat162float(h[4 * i + c]);\n"
    "  }\n"
    "}\n";

static float bf16_round(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  memcpy(&f, &u, 4);
  return f;
}

static void test_math(void) {
  enum { N4 = 33, N = 4 * N4 };
  float x[N], y[N], back[N];
  uint16_t h[N];
  unsigned seed = 5;
  for (int i = 0; i < N; i++) x[i] = 3.0f * frand(&seed);
  cu_dptr dx = dev_from(x, sizeof x), dy = dev(sizeof y), dh = dev(sizeof h), db = dev(sizeof back);
  int n4 = N4;
  void *args[] = {&dx, &dy, &dh, &db, &n4};
  CHECK_MSG(launch(kernel(k_math, "mathk"), 2, 1, 1, 32, 1, 1, 0, args) == 0, "%s", D->err);
  from_dev(y, dy, sizeof y);
  from_dev(h, dh, sizeof h);
  from_dev(back, db, sizeof back);
  int bad = 0;
  for (int i = 0; i < N4; i++) {
    const float *v = x + 4 * i, *o = y + 4 * i;
    double want[4] = {0.5 * v[0] * (1 + erf(v[0] / sqrt(2.0))), tanh(v[1]) + 1 / sqrt(fabs(v[1]) + 1),
                      exp(v[2]) + exp(-v[2]), v[3] > 0 ? v[3] : 0};
    for (int c = 0; c < 4; c++) bad += fabs(o[c] - want[c]) > 1e-5 * (1 + fabs(want[c]));
    for (int c = 0; c < 4; c++) {
      float r = bf16_round(v[c] * 100.0f);
      uint32_t bits;
      memcpy(&bits, &r, 4);
      bad += back[4 * i + c] != r || h[4 * i + c] != (uint16_t)(bits >> 16);
    }
  }
  CHECK_MSG(bad == 0, "%d math/bf16 values wrong", bad);
  D->mem_free(D, dx), D->mem_free(D, dy), D->mem_free(D, dh), D->mem_free(D, db);
}

/* A failure that happened and says what it should; printed for the log. */
static int refused(int rc, const char *a, const char *b) {
  int ok = rc != 0 && strstr(D->err, a) && (!b || strstr(D->err, b));
  printf("  %s: %s\n", ok ? "refused as expected" : "NOT AS EXPECTED", rc ? D->err : "(it succeeded)");
  return ok;
}

/* ---- gemm: transposes, batches, every epilogue, against a plain loop ---- */

static void test_gemm(void) {
  static const int epis[] = {CU_EPI_NONE, CU_EPI_BIAS, CU_EPI_BIAS_RELU, CU_EPI_BIAS_GELU};
  enum { M = 5, N = 7, K = 6, BATCH = 3, LD = 9 };
  float a[BATCH * 16 * LD], b[BATCH * 16 * LD], c0[BATCH * M * LD], c[BATCH * M * LD], bias[N];
  unsigned seed = 13;
  for (size_t i = 0; i < sizeof a / sizeof *a; i++) a[i] = frand(&seed), b[i] = frand(&seed);
  for (size_t i = 0; i < sizeof c0 / sizeof *c0; i++) c0[i] = frand(&seed);
  for (int j = 0; j < N; j++) bias[j] = frand(&seed);
  cu_dptr da = dev_from(a, sizeof a), db = dev_from(b, sizeof b), dc = dev(sizeof c), dbias = dev_from(bias, sizeof bias);
  for (int e = 0; e < 4; e++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++)
        for (int batched = 0; batched < 2; batched++) {
          cu_gemm g = {.m = M, .n = N, .k = K, .trans_a = ta, .trans_b = tb, .lda = LD, .ldb = LD,
                       .ldc = LD, .alpha = 0.75f, .beta = e == 0 ? 0.5f : 0.0f, .a = da, .b = db,
                       .c = dc, .epilogue = epis[e], .bias = dbias, .batch = batched ? BATCH : 1,
                       .stride_a = 16 * LD, .stride_b = 16 * LD, .stride_c = M * LD};
          CHECK(D->htod(D, dc, c0, sizeof c0) == 0);
          CHECK_MSG(D->gemm(D, &g) == 0, "%s", D->err);
          from_dev(c, dc, sizeof c);
          int bad = 0;
          for (int q = 0; q < (batched ? BATCH : 1); q++)
            for (int i = 0; i < M; i++)
              for (int j = 0; j < N; j++) {
                const float *A = a + q * 16 * LD, *B = b + q * 16 * LD;
                double s = 0;
                for (int k = 0; k < K; k++)
                  s += (double)(ta ? A[k * LD + i] : A[i * LD + k]) * (tb ? B[j * LD + k] : B[k * LD + j]);
                double v = 0.75 * s + g.beta * c0[q * M * LD + i * LD + j];
                if (e > 0) v += bias[j];
                if (e == 2) v = v > 0 ? v : 0;
                if (e == 3) v = 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
                bad += fabs(c[q * M * LD + i * LD + j] - v) > 1e-5 * (1 + fabs(v));
              }
          /* the padding columns of C are untouched */
          for (int i = 0; i < M; i++) bad += c[i * LD + N] != c0[i * LD + N];
          CHECK_MSG(bad == 0, "gemm epilogue %d ta %d tb %d batched %d: %d wrong", e, ta, tb, batched, bad);
        }
  cu_gemm over = {.m = M, .n = N, .k = K, .lda = LD, .ldb = LD, .ldc = LD, .alpha = 1, .a = da, .b = db,
                  .c = dc, .batch = BATCH + 1, .stride_a = 0, .stride_b = 0, .stride_c = M * LD};
  CHECK(refused(D->gemm(D, &over), "operand C", "past the end"));
  D->mem_free(D, da), D->mem_free(D, db), D->mem_free(D, dc), D->mem_free(D, dbias);
}

/* ---- what the executor must refuse, and how it says so ---- */

static const char *k_bad =
    "extern \"C\" __global__ void no_bounds(const float *__restrict__ x, float *y) {\n"
    "  int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "  y[i] = 2.0f * x[i];\n"
    "}\n"
    "extern \"C\" __global__ void read_before(const float *__restrict__ x, float *y) {\n"
    "  y[threadIdx.x] = x[(int)threadIdx.x - 1024];\n"
    "}\n"
    "extern \"C\" __global__ void shared_over(float *y) {\n"
    "  extern __shared__ float dyn[];\n"
    "  dyn[threadIdx.x * 1024] = 1.0f;\n"
    "  __syncthreads();\n"
    "  y[threadIdx.x] = dyn[0];\n"
    "}\n"
    "extern \"C\" __global__ void split_wait(float *y) {\n"
    "  float v = y[threadIdx.x];\n"
    "  if (threadIdx.x == 0) v = __shfl_sync(0xffffffffu, v, 1);\n"
    "  __syncthreads();\n"
    "  y[threadIdx.x] = v;\n"
    "}\n"
    "extern \"C\" __global__ void early_exit(float *y) {\n"
    "  if (threadIdx.x >= 16) return;\n"
    "  y[threadIdx.x] = __shfl_xor_sync(0xffffffffu, y[threadIdx.x], 1);\n"
    "}\n"
    "extern \"C\" __global__ void trap_at(float *y) {\n"
    "  if (blockIdx.x == 1 && threadIdx.x == 2) __trap();\n"
    "  y[threadIdx.x] = 1.0f;\n"
    "}\n";

static void test_errors(void) {
  enum { N = 100 };
  float x[N] = {0};
  cu_dptr dx = dev_from(x, sizeof x), dy = dev(sizeof x);
  void *args[] = {&dx, &dy};
  /* 128 threads over 100 floats: thread 100 reads past x's end */
  void *fn = kernel(k_bad, "no_bounds");
  int rc = launch(fn, 1, 1, 1, 128, 1, 1, 0, args);
  CHECK(refused(rc, "kernel no_bounds, block (0,0,0), thread (100,0,0): out-of-range read", "past its end"));
  rc = launch(kernel(k_bad, "read_before"), 1, 1, 1, 4, 1, 1, 0, args);
  CHECK(refused(rc, "before the start of allocation", NULL));
  /* a host pointer as an argument */
  float *host = x;
  void *hargs[] = {&dx, &host};
  rc = launch(fn, 1, 1, 1, 32, 1, 1, 0, hargs);
  CHECK(refused(rc, "argument 1", "not device memory"));
  void *yargs[] = {&dy};
  rc = launch(kernel(k_bad, "shared_over"), 1, 1, 1, 4, 1, 1, 64, yargs);
  CHECK(refused(rc, "out-of-range write of dynamic shared memory", NULL));
  rc = launch(kernel(k_bad, "split_wait"), 1, 1, 1, 32, 1, 1, 0, yargs);
  CHECK(refused(rc, "deadlock", NULL));
  rc = launch(kernel(k_bad, "early_exit"), 1, 1, 1, 32, 1, 1, 0, yargs);
  CHECK(refused(rc, "exited before the warp collective", NULL));
  rc = launch(kernel(k_bad, "trap_at"), 2, 1, 1, 4, 1, 1, 0, yargs);
  CHECK(refused(rc, "__trap", "block (1,0,0), thread (2,0,0)"));
  /* the executor still works after each failure */
  CHECK_MSG(launch(fn, 1, 1, 1, N, 1, 1, 0, args) == 0, "%s", D->err);

  /* launches outside the device's limits */
  CHECK(refused(launch(fn, 1, 1, 1, 2048, 1, 1, 0, args), "limits", NULL));
  CHECK(refused(launch(fn, 1, 1, 1, 32, 32, 2, 0, args), "more than 1024 threads", NULL));
  CHECK(refused(launch(fn, 0, 1, 1, 32, 1, 1, 0, args), "limits", NULL));
  CHECK(refused(launch(fn, 1, 1, 1, 32, 1, 1, 64 << 10, args), "48 KiB", NULL));
  CHECK(refused(D->launch(D, (void *)x, 1, 1, 1, 1, 1, 1, 0, args), "not a function", NULL));

  /* copies, frees and modules */
  CHECK(refused(D->htod(D, dx, x, sizeof x + 4), "htod", "4 bytes past the end"));
  CHECK(refused(D->dtoh(D, x, dx + 4 * N, 4), "dtoh", "not inside any device allocation"));
  CHECK(refused(D->memset0(D, (cu_dptr)(uintptr_t)x, 4), "memset0", NULL));
  void *mod = NULL, *k = NULL;
  CHECK(D->module_load(D, "extern \"C\" __global__ void ok(float *y) { y[0] = 1.0f; }\n", NULL, 0, &mod) == 0);
  CHECK(refused(D->get_function(D, mod, "missing", &k), "it has: ok", NULL));
  CHECK(refused(D->module_load(D, "extern \"C\" __global__ void broken(float *y) { y[0] = undeclared; }\n",
                               NULL, 0, &mod),
                "rejected the kernel source", "undeclared"));
  CHECK(refused(D->module_load(D, "__device__ float f(float x) { return x; }\n", NULL, 0, &mod),
                "no __global__", NULL));
  D->mem_free(D, dx);
  D->mem_free(D, dx);
  CHECK(refused(1, "not a device allocation", NULL));
  D->mem_free(D, dy);

  cx_set_mem_limit(D, 1 << 20);
  cu_dptr big = 0;
  CHECK(refused(D->mem_alloc(D, 2 << 20, &big), "out of device memory", NULL));
  cx_set_mem_limit(D, (size_t)8 << 30);
}

int main(void) {
  const char *cxx = cx_host_compiler();
  if (!cxx) {
    printf("SKIP test_cuexec: no host C++ compiler was found at configure time; the executor needs one\n");
    return 0;
  }
  char err[256];
  D = cx_driver(err, sizeof err);
  if (!D) {
    fprintf(stderr, "cx_driver: %s\n", err);
    return 1;
  }
  have_nvrtc = nv_open();
  if (!have_nvrtc)
    printf("SKIP (part): libnvrtc not found (looked in the loader path and /usr/local/cuda); kernel "
           "sources are not checked by NVRTC in this run\n");
  test_index(0);
  test_index(1);
  test_tree();
  test_warp();
  test_chain();
  test_atomic();
  test_softmax();
  test_math();
  test_gemm();
  test_errors();
  CHECK(cx_launch_count(D) > 10);
  D->destroy(D);
  /* libnvrtc stays loaded: unloading it strands its C++ runtime's pool, which
   * LeakSanitizer would report */
  return TEST_REPORT();
}
