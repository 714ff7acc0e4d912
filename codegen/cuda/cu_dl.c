/* cu_dl.c -- the CUDA libraries opened with dlopen at run time: the driver
 * API (libcuda.so.1, installed with the NVIDIA driver), NVRTC and cuBLASLt
 * (from the toolkit). Nothing in the build links them, so Lathe builds and
 * runs without CUDA; what is missing is said in one line naming every place
 * looked. Each library is opened once per process (pthread_once). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cuda/cu.h"

/* Toolkit directories, in the order tried: $CUDA_HOME, $CUDA_PATH, the
 * usual install and its target directory; then the loader's own search
 * (LD_LIBRARY_PATH, ld.so.cache) by bare name. */
static int toolkit_dirs(const char **dirs, char bufs[2][512]) {
  int n = 0;
  const char *env[2] = {getenv("CUDA_HOME"), getenv("CUDA_PATH")};
  for (int i = 0; i < 2; i++)
    if (env[i] && *env[i]) {
      snprintf(bufs[i], sizeof bufs[i], "%s/lib64", env[i]);
      dirs[n++] = bufs[i];
    }
  dirs[n++] = "/usr/local/cuda/lib64";
  dirs[n++] = "/usr/local/cuda/targets/x86_64-linux/lib";
  dirs[n++] = ""; /* the loader's search path */
  return n;
}

/* Open the first of names (versioned sonames, newest first) found in dirs;
 * path gets what opened. NULL with msg listing where it looked. */
static void *open_first(const char *what, const char *const *names, int nnames, const char **dirs, int ndirs,
                        char *path, size_t pathn, char *msg, size_t n) {
  for (int d = 0; d < ndirs; d++)
    for (int i = 0; i < nnames; i++) {
      char p[640];
      if (dirs[d][0]) snprintf(p, sizeof p, "%s/%s", dirs[d], names[i]);
      else snprintf(p, sizeof p, "%s", names[i]);
      void *h = dlopen(p, RTLD_NOW | RTLD_LOCAL);
      if (h) {
        size_t k = strlen(p) < pathn ? strlen(p) : pathn - 1;
        memcpy(path, p, k);
        path[k] = 0;
        return h;
      }
    }
  int w = snprintf(msg, n, "%s not found (%s", what, names[0]);
  for (int i = 1; i < nnames && w > 0 && (size_t)w < n; i++) w += snprintf(msg + w, n - (size_t)w, ", %s", names[i]);
  if (w > 0 && (size_t)w < n) w += snprintf(msg + w, n - (size_t)w, "): looked in");
  for (int d = 0; d < ndirs && w > 0 && (size_t)w < n; d++)
    w += snprintf(msg + w, n - (size_t)w, "%s %s", d ? "," : "", dirs[d][0] ? dirs[d] : "the loader's path (LD_LIBRARY_PATH, ld.so.cache)");
  return NULL;
}

typedef struct {
  const char *name;
  size_t off;        /* of the function pointer in the table */
  int optional;
} cu_sym;

/* Fill the table's pointers from h. 0, or -1 with msg naming the symbol. */
static int bind(void *h, void *table, const cu_sym *syms, int nsyms, const char *lib, char *msg, size_t n) {
  for (int i = 0; i < nsyms; i++) {
    void *f = dlsym(h, syms[i].name);
    if (!f && !syms[i].optional) {
      snprintf(msg, n, "%s has no %s (too old a version?)", lib, syms[i].name);
      return -1;
    }
    memcpy((char *)table + syms[i].off, &f, sizeof f);
  }
  return 0;
}

#define SYM(T, field, name) {name, offsetof(T, field), 0}
#define OPT(T, field, name) {name, offsetof(T, field), 1}

/* ---- NVRTC ---- */

static const cu_sym nvrtc_syms[] = {
  SYM(cu_nvrtc_api, Version, "nvrtcVersion"),
  SYM(cu_nvrtc_api, CreateProgram, "nvrtcCreateProgram"),
  SYM(cu_nvrtc_api, CompileProgram, "nvrtcCompileProgram"),
  SYM(cu_nvrtc_api, GetProgramLogSize, "nvrtcGetProgramLogSize"),
  SYM(cu_nvrtc_api, GetProgramLog, "nvrtcGetProgramLog"),
  OPT(cu_nvrtc_api, GetCUBINSize, "nvrtcGetCUBINSize"),
  OPT(cu_nvrtc_api, GetCUBIN, "nvrtcGetCUBIN"),
  SYM(cu_nvrtc_api, GetPTXSize, "nvrtcGetPTXSize"),
  SYM(cu_nvrtc_api, GetPTX, "nvrtcGetPTX"),
  SYM(cu_nvrtc_api, DestroyProgram, "nvrtcDestroyProgram"),
  SYM(cu_nvrtc_api, GetErrorString, "nvrtcGetErrorString"),
};

static cu_nvrtc_api nvrtc_api;
static char nvrtc_err[1024];
static int nvrtc_ok;
static pthread_once_t nvrtc_once = PTHREAD_ONCE_INIT;

static void nvrtc_open(void) {
  static const char *const names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"};
  const char *dirs[8];
  char bufs[2][512];
  int nd = toolkit_dirs(dirs, bufs);
  void *h = open_first("NVRTC", names, 4, dirs, nd, nvrtc_api.path, sizeof nvrtc_api.path, nvrtc_err,
                       sizeof nvrtc_err);
  if (!h) return;
  if (bind(h, &nvrtc_api, nvrtc_syms, (int)(sizeof nvrtc_syms / sizeof nvrtc_syms[0]), nvrtc_api.path, nvrtc_err,
           sizeof nvrtc_err))
    return;
  if (nvrtc_api.Version(&nvrtc_api.major, &nvrtc_api.minor)) {
    snprintf(nvrtc_err, sizeof nvrtc_err, "%s: nvrtcVersion failed", nvrtc_api.path);
    return;
  }
  nvrtc_ok = 1;
}

const cu_nvrtc_api *cu_dl_nvrtc(char *msg, size_t n) {
  pthread_once(&nvrtc_once, nvrtc_open);
  if (nvrtc_ok) return &nvrtc_api;
  snprintf(msg, n, "%s", nvrtc_err);
  return NULL;
}

/* ---- the driver API ---- */

static const cu_sym cuda_syms[] = {
  SYM(cu_cuda_api, Init, "cuInit"),
  SYM(cu_cuda_api, DriverGetVersion, "cuDriverGetVersion"),
  SYM(cu_cuda_api, DeviceGetCount, "cuDeviceGetCount"),
  SYM(cu_cuda_api, DeviceGet, "cuDeviceGet"),
  SYM(cu_cuda_api, DeviceGetName, "cuDeviceGetName"),
  SYM(cu_cuda_api, DeviceGetAttribute, "cuDeviceGetAttribute"),
  SYM(cu_cuda_api, DeviceTotalMem, "cuDeviceTotalMem_v2"),
  SYM(cu_cuda_api, DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
  SYM(cu_cuda_api, DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2"),
  SYM(cu_cuda_api, CtxSetCurrent, "cuCtxSetCurrent"),
  SYM(cu_cuda_api, MemAlloc, "cuMemAlloc_v2"),
  SYM(cu_cuda_api, MemFree, "cuMemFree_v2"),
  SYM(cu_cuda_api, MemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2"),
  SYM(cu_cuda_api, MemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2"),
  OPT(cu_cuda_api, MemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2"),
  OPT(cu_cuda_api, StreamBeginCapture, "cuStreamBeginCapture_v2"),
  OPT(cu_cuda_api, StreamEndCapture, "cuStreamEndCapture"),
  OPT(cu_cuda_api, GraphInstantiate, "cuGraphInstantiateWithFlags"),
  OPT(cu_cuda_api, GraphLaunch, "cuGraphLaunch"),
  OPT(cu_cuda_api, GraphExecDestroy, "cuGraphExecDestroy"),
  OPT(cu_cuda_api, GraphDestroy, "cuGraphDestroy"),
  OPT(cu_cuda_api, MemGetInfo, "cuMemGetInfo_v2"),
  SYM(cu_cuda_api, MemsetD8Async, "cuMemsetD8Async"),
  SYM(cu_cuda_api, ModuleLoadData, "cuModuleLoadData"),
  SYM(cu_cuda_api, ModuleUnload, "cuModuleUnload"),
  SYM(cu_cuda_api, ModuleGetFunction, "cuModuleGetFunction"),
  SYM(cu_cuda_api, LaunchKernel, "cuLaunchKernel"),
  SYM(cu_cuda_api, StreamCreate, "cuStreamCreate"),
  SYM(cu_cuda_api, StreamDestroy, "cuStreamDestroy_v2"),
  SYM(cu_cuda_api, StreamSynchronize, "cuStreamSynchronize"),
  SYM(cu_cuda_api, GetErrorString, "cuGetErrorString"),
};

static cu_cuda_api cuda_api;
static char cuda_err[1024];
static int cuda_ok;
static pthread_once_t cuda_once = PTHREAD_ONCE_INIT;

static void cuda_open(void) {
  static const char *const names[] = {"libcuda.so.1"};
  const char *dirs[] = {"", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/cuda/compat", "/usr/lib/wsl/lib"};
  void *h = open_first("the NVIDIA driver", names, 1, dirs, 5, cuda_api.path, sizeof cuda_api.path,
                       cuda_err, sizeof cuda_err);
  if (!h) return;
  if (bind(h, &cuda_api, cuda_syms, (int)(sizeof cuda_syms / sizeof cuda_syms[0]), cuda_api.path, cuda_err,
           sizeof cuda_err))
    return;
  cuda_ok = 1;
}

const cu_cuda_api *cu_dl_cuda(char *msg, size_t n) {
  pthread_once(&cuda_once, cuda_open);
  if (cuda_ok) return &cuda_api;
  snprintf(msg, n, "%s", cuda_err);
  return NULL;
}

/* ---- cuBLASLt ---- */

static const cu_sym lt_syms[] = {
  SYM(cu_lt_api, Create, "cublasLtCreate"),
  SYM(cu_lt_api, Destroy, "cublasLtDestroy"),
  SYM(cu_lt_api, MatmulDescCreate, "cublasLtMatmulDescCreate"),
  SYM(cu_lt_api, MatmulDescDestroy, "cublasLtMatmulDescDestroy"),
  SYM(cu_lt_api, MatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute"),
  SYM(cu_lt_api, MatrixLayoutCreate, "cublasLtMatrixLayoutCreate"),
  SYM(cu_lt_api, MatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy"),
  SYM(cu_lt_api, MatrixLayoutSetAttribute, "cublasLtMatrixLayoutSetAttribute"),
  SYM(cu_lt_api, Matmul, "cublasLtMatmul"),
};

static cu_lt_api lt_api;
static char lt_err[1024];
static int lt_ok;
static pthread_once_t lt_once = PTHREAD_ONCE_INIT;

static void lt_open(void) {
  static const char *const names[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11",
                                      "libcublasLt.so"};
  const char *dirs[8];
  char bufs[2][512];
  int nd = toolkit_dirs(dirs, bufs);
  void *h = open_first("cuBLASLt", names, 4, dirs, nd, lt_api.path, sizeof lt_api.path, lt_err, sizeof lt_err);
  if (!h) return;
  if (bind(h, &lt_api, lt_syms, (int)(sizeof lt_syms / sizeof lt_syms[0]), lt_api.path, lt_err, sizeof lt_err))
    return;
  lt_ok = 1;
}

const cu_lt_api *cu_dl_cublaslt(char *msg, size_t n) {
  pthread_once(&lt_once, lt_open);
  if (lt_ok) return &lt_api;
  snprintf(msg, n, "%s", lt_err);
  return NULL;
}

/* ---- NCCL (data-parallel training on several GPUs) ---- */

static const cu_sym nccl_syms[] = {
  SYM(cu_nccl_api, GetVersion, "ncclGetVersion"),
  SYM(cu_nccl_api, GetUniqueId, "ncclGetUniqueId"),
  SYM(cu_nccl_api, CommInitRank, "ncclCommInitRank"),
  SYM(cu_nccl_api, CommDestroy, "ncclCommDestroy"),
  SYM(cu_nccl_api, CommGetAsyncError, "ncclCommGetAsyncError"),
  SYM(cu_nccl_api, AllReduce, "ncclAllReduce"),
  SYM(cu_nccl_api, ReduceScatter, "ncclReduceScatter"),
  SYM(cu_nccl_api, AllGather, "ncclAllGather"),
  OPT(cu_nccl_api, Send, "ncclSend"),
  OPT(cu_nccl_api, Recv, "ncclRecv"),
  SYM(cu_nccl_api, GetErrorString, "ncclGetErrorString"),
};

static cu_nccl_api nccl_api;
static char nccl_err[1024];
static int nccl_ok;
static pthread_once_t nccl_once = PTHREAD_ONCE_INIT;

/* LATHE_NCCL_LIB names the one library to open (a test hides NCCL with a
 * path that is not there); else $NCCL_HOME/lib, the toolkit's directories
 * and its lib (where the toolkit's NCCL lives), the distribution's
 * directory (libnccl2), then the loader's path. */
static void *nccl_find(void) {
  static const char *const names[] = {"libnccl.so.2"};
  const char *only = getenv("LATHE_NCCL_LIB"), *home = getenv("NCCL_HOME"), *dirs[12];
  if (only && *only) {
    void *h = dlopen(only, RTLD_NOW | RTLD_LOCAL);
    if (h) snprintf(nccl_api.path, sizeof nccl_api.path, "%s", only);
    else snprintf(nccl_err, sizeof nccl_err, "NCCL not found (libnccl.so.2): looked in %s (LATHE_NCCL_LIB)", only);
    return h;
  }
  char bufs[3][512];
  int nd = 0;
  if (home && *home) snprintf(bufs[2], sizeof bufs[2], "%s/lib", home), dirs[nd++] = bufs[2];
  nd += toolkit_dirs(dirs + nd, bufs) - 1; /* its last entry, the loader's path, comes last here too */
  dirs[nd++] = "/usr/local/cuda/lib";
  dirs[nd++] = "/usr/lib/x86_64-linux-gnu";
  dirs[nd++] = "";
  return open_first("NCCL", names, 1, dirs, nd, nccl_api.path, sizeof nccl_api.path, nccl_err, sizeof nccl_err);
}

static void nccl_open(void) {
  void *h = nccl_find();
  if (!h || bind(h, &nccl_api, nccl_syms, (int)(sizeof nccl_syms / sizeof nccl_syms[0]), nccl_api.path, nccl_err,
                 sizeof nccl_err))
    return;
  if (nccl_api.GetVersion(&nccl_api.version)) {
    snprintf(nccl_err, sizeof nccl_err, "%s: ncclGetVersion failed", nccl_api.path);
    return;
  }
  nccl_ok = 1;
}

const cu_nccl_api *cu_dl_nccl(char *msg, size_t n) {
  pthread_once(&nccl_once, nccl_open);
  if (nccl_ok) return &nccl_api;
  snprintf(msg, n, "%s", nccl_err);
  return NULL;
}

/* ---- the status line ---- */

void cu_backend_status(char *buf, size_t n) {
  char m1[1024] = "", m2[1024] = "", m3[1024] = "";
  const cu_nvrtc_api *nv = cu_dl_nvrtc(m1, sizeof m1);
  const cu_cuda_api *cu = cu_dl_cuda(m2, sizeof m2);
  const cu_lt_api *lt = cu_dl_cublaslt(m3, sizeof m3);
  char nvs[64] = "";
  if (nv) snprintf(nvs, sizeof nvs, "NVRTC %d.%d", nv->major, nv->minor);
  if (!nv) {
    snprintf(buf, n, "cuda: no (%s)", m1);
    return;
  }
  if (!cu) {
    snprintf(buf, n, "cuda: no (%s); compile only with %s: lathe check --backend cuda --gpu-arch sm_90", m2, nvs);
    return;
  }
  int dv = 0, count = 0;
  if (cu->Init(0) || cu->DriverGetVersion(&dv) || cu->DeviceGetCount(&count) || count < 1) {
    snprintf(buf, n, "cuda: no (%s loaded but no usable GPU: cuInit or cuDeviceGetCount failed or found none); "
             "compile only with %s", cu->path, nvs);
    return;
  }
  if (!lt) {
    snprintf(buf, n, "cuda: no (%s)", m3);
    return;
  }
  char name[128] = "?";
  int dev = 0;
  if (!cu->DeviceGet(&dev, 0)) cu->DeviceGetName(name, (int)sizeof name, dev);
  snprintf(buf, n, "cuda: yes (driver %d.%d, %s, cuBLASLt, %d device%s: %s)", dv / 1000, dv % 1000 / 10, nvs, count,
           count == 1 ? "" : "s", name);
}
