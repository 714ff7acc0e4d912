/* cu.h -- the internal header of the CUDA backend (codegen/cuda/). The plan
 * (plan/plan.h) is rendered as CUDA C (cu_render*.c), compiled by NVRTC
 * (cu_nvrtc.c) and run through a cu_driver (cu_driver.h: the real driver API
 * in cu_loader.c, or a test's executor). Nothing links CUDA: every library
 * is opened with dlopen (cu_dl.c), so a build without the toolkit or a GPU
 * still builds and says what is missing. Internal prefix: cu_. Sections are
 * named after the file that defines them. */
#ifndef LATHE_CU_H
#define LATHE_CU_H

#include <stddef.h>
#include <stdint.h>

#include "codegen/cuda/cu_driver.h"
#include "codegen/cuda/cu_exec.h"
#include "plan/plan.h"

/* ---- cu_dl.c: the CUDA libraries, opened once per process ----
 * NVRTC's C API as function pointers (the handful we call); the types are
 * NVRTC's own ABI (nvrtcResult is an int, nvrtcProgram a pointer). */
typedef struct cu_nvrtc_api {
  char path[512];
  int major, minor; /* NVRTC's version */
  int (*Version)(int *major, int *minor);
  int (*CreateProgram)(void **prog, const char *src, const char *name, int nheaders, const char *const *headers,
                       const char *const *include_names);
  int (*CompileProgram)(void *prog, int nopts, const char *const *opts);
  int (*GetProgramLogSize)(void *prog, size_t *n);
  int (*GetProgramLog)(void *prog, char *log);
  int (*GetCUBINSize)(void *prog, size_t *n);  /* NULL: this NVRTC has no CUBIN output */
  int (*GetCUBIN)(void *prog, char *cubin);
  int (*GetPTXSize)(void *prog, size_t *n);
  int (*GetPTX)(void *prog, char *ptx);
  int (*DestroyProgram)(void **prog);
  const char *(*GetErrorString)(int result);
} cu_nvrtc_api;

/* The driver API (libcuda.so.1) as function pointers; CUresult is an int,
 * handles are pointers, CUdeviceptr a 64-bit integer. */
typedef struct cu_cuda_api {
  char path[512];
  int (*Init)(unsigned flags);
  int (*DriverGetVersion)(int *v);
  int (*DeviceGetCount)(int *n);
  int (*DeviceGet)(int *dev, int ordinal);
  int (*DeviceGetName)(char *name, int len, int dev);
  int (*DeviceGetAttribute)(int *v, int attrib, int dev);
  int (*DeviceTotalMem)(size_t *bytes, int dev);
  int (*DevicePrimaryCtxRetain)(void **ctx, int dev);
  int (*DevicePrimaryCtxRelease)(int dev);
  int (*CtxSetCurrent)(void *ctx);
  int (*MemAlloc)(uint64_t *p, size_t bytes);
  int (*MemFree)(uint64_t p);
  int (*MemcpyHtoDAsync)(uint64_t dst, const void *src, size_t bytes, void *stream);
  int (*MemcpyDtoHAsync)(void *dst, uint64_t src, size_t bytes, void *stream);
  /* optional (NULL in an old driver): device copies, stream capture into a graph */
  int (*MemcpyDtoDAsync)(uint64_t dst, uint64_t src, size_t bytes, void *stream);
  int (*StreamBeginCapture)(void *stream, int mode);
  int (*StreamEndCapture)(void *stream, void **graph);
  int (*GraphInstantiate)(void **exec, void *graph, unsigned long long flags);
  int (*GraphLaunch)(void *exec, void *stream);
  int (*GraphExecDestroy)(void *exec);
  int (*GraphDestroy)(void *graph);
  int (*MemGetInfo)(size_t *free_bytes, size_t *total_bytes); /* optional */
  int (*MemsetD8Async)(uint64_t dst, unsigned char v, size_t n, void *stream);
  int (*ModuleLoadData)(void **mod, const void *image);
  int (*ModuleUnload)(void *mod);
  int (*ModuleGetFunction)(void **fn, void *mod, const char *name);
  int (*LaunchKernel)(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                      unsigned shmem, void *stream, void **params, void **extra);
  int (*StreamCreate)(void **stream, unsigned flags);
  int (*StreamDestroy)(void *stream);
  int (*StreamSynchronize)(void *stream);
  int (*GetErrorString)(int err, const char **s);
} cu_cuda_api;

/* cuBLASLt (libcublasLt): the matrix products and their epilogues. */
typedef struct cu_lt_api {
  char path[512];
  int (*Create)(void **handle);
  int (*Destroy)(void *handle);
  int (*MatmulDescCreate)(void **desc, int compute_type, int scale_type);
  int (*MatmulDescDestroy)(void *desc);
  int (*MatmulDescSetAttribute)(void *desc, int attr, const void *buf, size_t n);
  int (*MatrixLayoutCreate)(void **layout, int type, uint64_t rows, uint64_t cols, int64_t ld);
  int (*MatrixLayoutDestroy)(void *layout);
  int (*MatrixLayoutSetAttribute)(void *layout, int attr, const void *buf, size_t n);
  int (*Matmul)(void *handle, void *desc, const void *alpha, const void *a, void *adesc, const void *b, void *bdesc,
                const void *beta, const void *c, void *cdesc, void *d, void *ddesc, const void *algo, void *workspace,
                size_t workspace_bytes, void *stream);
} cu_lt_api;

/* NCCL (libnccl.so.2): the communicator of a data-parallel job and its
 * collectives (cu_nccl.c). ncclResult_t, ncclDataType_t and ncclRedOp_t
 * are ints, a communicator and a stream pointers; the unique id is passed
 * by value, as NCCL's 128-byte struct. */
typedef struct { char internal[128]; } cu_nccl_id;
typedef struct cu_nccl_api {
  char path[512];
  int version;        /* 22307 for 2.23.7 */
  int (*GetVersion)(int *version);
  int (*GetUniqueId)(cu_nccl_id *id);
  int (*CommInitRank)(void **comm, int nranks, cu_nccl_id id, int rank);
  int (*CommDestroy)(void *comm);
  int (*CommGetAsyncError)(void *comm, int *result);
  int (*AllReduce)(const void *send, void *recv, size_t count, int dtype, int op, void *comm, void *stream);
  int (*ReduceScatter)(const void *send, void *recv, size_t recvcount, int dtype, int op, void *comm, void *stream);
  int (*AllGather)(const void *send, void *recv, size_t sendcount, int dtype, void *comm, void *stream);
  /* NCCL 2.7 and later (NULL before): a pipeline stage's transfers */
  int (*Send)(const void *send, size_t count, int dtype, int peer, void *comm, void *stream);
  int (*Recv)(void *recv, size_t count, int dtype, int peer, void *comm, void *stream);
  const char *(*GetErrorString)(int result);
} cu_nccl_api;

/* Each: the library's table, opened on first use, or NULL with one line in
 * msg naming the library and every place looked. Thread-safe. */
const cu_nvrtc_api *cu_dl_nvrtc(char *msg, size_t n);
const cu_cuda_api *cu_dl_cuda(char *msg, size_t n);
const cu_lt_api *cu_dl_cublaslt(char *msg, size_t n);
const cu_nccl_api *cu_dl_nccl(char *msg, size_t n);
/* One line for `lathe --version`: "cuda: yes (...)" or "cuda: no (why)". */
void cu_backend_status(char *buf, size_t n);

/* ---- cu_nvrtc.c: CUDA C to a device image ----
 * arch: "sm_80", "sm_90", ... Compiles to CUBIN when this NVRTC can, else to
 * PTX (image is then NUL-terminated text). The disk cache (the directory of
 * the CPU backend's object cache) is keyed by a hash of the source, the
 * options, the arch and NVRTC's version. log: NVRTC's warnings (malloc'd,
 * NULL when none). 0, or -1 with msg (NVRTC's log included). */
typedef struct {
  void *image;     /* malloc'd */
  size_t len;
  int is_ptx;
  int cache_hit;
  char *log;       /* warnings (malloc'd) or NULL */
  double ms;       /* wall time of this compile (or cache load) */
} cu_image;
int cu_nvrtc_compile(const char *src, const char *name, const char *arch, cu_image *out, char *msg, size_t n);
void cu_image_free(cu_image *im);
/* "sm_80" etc.: 0; -1 with msg for anything else. */
int cu_arch_ok(const char *arch, char *msg, size_t n);

/* ---- cu_render.c: the plan as CUDA C ----
 * A program is a list of launches in the plan's order; each names one of
 * the rendered kernels (deduplicated: kernels with one plan key share one
 * function) or a matrix product for the driver's gemm. Every kernel
 * argument is a pointer: a tensor's buffer (node id) plus a byte offset;
 * shapes are constants in the source. */
enum { CU_L_KERNEL, CU_L_GEMM, CU_L_ZERO, CU_L_COLL };
/* A kernel's pointer arguments at most: the plan's operands and a few
 * scratch pointers. A kernel of every parameter's update has any number of
 * operands (pl_target.upd_table): it takes one argument, the device address
 * of its launch's table (tab: the operands' addresses, filled once when the
 * program is loaded, since the addresses never change), and reads each
 * operand's address from there. */
enum { CU_MAXOPS = PL_MAXARGS + 8 };
typedef struct {
  int node;        /* tensor whose buffer it points into */
  int64_t off;     /* bytes from the buffer's start */
} cu_ref;
typedef struct {
  int what;        /* CU_L_* */
  int pk;          /* the plan kernel it belongs to */
  int fn;          /* CU_L_KERNEL: index into cu_program.fn */
  unsigned grid[3], block[3], shmem;
  int nops;
  cu_ref op[CU_MAXOPS];   /* CU_L_KERNEL: the pointer arguments in order */
  int ntab;               /* CU_L_KERNEL, > 0: no arguments but the address of a table of ntab pointers to */
  cu_ref *tab;            /* (malloc'd, owned by the program): a u64 each, nops 0 */
  cu_gemm gemm;           /* CU_L_GEMM: pointers are filled at run time from: */
  cu_ref ga, gb, gc, gbias;
  cu_ref zero;            /* CU_L_ZERO: bytes at zero_bytes */
  int64_t zero_bytes;
  cu_coll coll;           /* CU_L_COLL: op and count; send and recv filled at run time from: */
  cu_ref csend, crecv;
  int ranks;              /* CU_L_COLL: the job size the program was compiled for */
} cu_launch;
typedef struct {
  char *name;      /* "k12_rows_softmax" */
  char *src;       /* the kernel's CUDA C (without the prelude) */
  int pk;          /* the first plan kernel that uses it */
} cu_fn;
typedef struct {
  int nfn, capfn;
  cu_fn *fn;
  int nl, capl;
  cu_launch *l;
} cu_program;
/* The prelude every module starts with (helpers: warp reductions, gelu). */
extern const char cu_prelude[];
/* Render every kernel of p. 0, or -1 with msg naming the kernel kind, the
 * node and what is not rendered. */
int cu_render(const pl_plan *p, cu_program *out, char *msg, size_t n);
/* The same with per-node storage (cu_precision.c): bf16[i] 1 stores node i
 * as bf16 (NULL: every tensor at its dtype). */
int cu_render_prec(const pl_plan *p, const unsigned char *bf16, cu_program *out, char *msg, size_t n);
/* cu_bgrad.c: partner[q] = the kernel whose product and column sum pair
 * with kernel q's as one product with cuBLASLt's bias-gradient epilogue
 * (the earlier of the two renders it), or -1. 0, or -1 out of memory. */
int cu_bgrad_pairs(const pl_plan *p, const unsigned char *bf16, int *partner);
void cu_program_free(cu_program *cp);
/* Whether the renderer has a kernel for op (leaves and reshapes need none;
 * elementwise ops by their expression, matmul through the driver's gemm,
 * the others by their one-node renderer). The op-coverage audit in
 * test_cuda_exec compares it with the CPU backend's ops. */
int cu_op_rendered(int op);
/* The plan target of the CUDA backend (its scratch and epilogue rules);
 * bf16: also scratch for a product's operands rounded to bf16. */
const pl_target *cu_plan_target(void);
const pl_target *cu_plan_target_bf16(void);

/* ---- cu_precision.c: --precision bf16's tensors ----
 * *out (malloc'd, per node): 1 where the tensor is stored as bf16. 0, or -1
 * out of memory. */
int cu_bf16_buffers(const pl_plan *p, unsigned char **out);

/* ---- cu_modules.c: the program's kernels as modules compiled at once ----
 * The unique kernels are cut into parts, each part one module of CUDA C
 * compiled by NVRTC on its own thread; a program without kernels (only the
 * driver's products or transfers) has no module. */
typedef struct {
  int nmod;
  char **src;      /* per module: prelude + its kernels */
  cu_image *img;   /* per module */
  int *mod_of;     /* per function: its module */
  double wall_ms;  /* all compiles, wall clock */
  int cache_hits;
} cu_modules;
int cu_modules_build(const cu_program *cp, const char *arch, int nparts, cu_modules *out, char *msg, size_t n);
void cu_modules_free(cu_modules *m);
/* Write every module's .cu and .cubin (or .ptx) into dir. */
int cu_modules_dump(const cu_modules *m, const char *dir, char *msg, size_t n);

/* ---- cu_compile.c: a graph to loadable modules ----
 * The plan for the CUDA target, rendered and compiled for arch ("sm_90";
 * NULL or "": ask the driver for device 0's). */
typedef struct {
  pl_plan plan;
  cu_program prog;
  cu_modules mods;
  char arch[16];
  double render_ms;   /* planning and rendering */
  unsigned char *bf16; /* --precision bf16: per node, stored as bf16 (NULL: f32) */
} cu_compiled;
int cu_compile(const ir_graph *g, const char *arch, cu_compiled *out, char *msg, size_t n);
/* bf16: --precision bf16 (cu_precision.c), else as cu_compile. */
int cu_compile_prec(const ir_graph *g, const char *arch, int bf16, cu_compiled *out, char *msg, size_t n);
void cu_compiled_free(cu_compiled *c);
/* ---- cu_loader.c: the product's driver (the driver API and cuBLASLt), or
 * the one a test installed with cu_set_driver_factory. NULL with err. */
cu_driver *cu_driver_create(char *err, size_t errlen);

/* A PTX image (not an ELF CUBIN) from an NVRTC newer than the driver
 * (cuDriverGetVersion's 12040 for 12.4) cannot be loaded: -1 with one line
 * saying so, before the driver is asked; 0 otherwise. */
int cu_image_vs_driver(const void *image, size_t len, int driver_version, int nvrtc_major, int nvrtc_minor, char *msg,
                       size_t n);

/* ---- cu_nccl.c: the product's collectives ----
 * This process's device in a job: its local rank (OMPI_COMM_WORLD_LOCAL_RANK,
 * MPI_LOCALRANKID, SLURM_LOCALID; else its rank) modulo count; 0 alone. */
int cu_job_device(int count);
/* The process's one NCCL communicator, rank `rank` of `ranks` on the
 * current context's device: made on first use (rank 0's ncclGetUniqueId
 * broadcast over MPI, rt/rt_comm.c, then ncclCommInitRank on every rank),
 * kept for the process's life. 0, or -1 with one line in msg. */
int cu_nccl_open(int rank, int ranks, int dev, void **comm, char *msg, size_t n);
/* One collective enqueued on stream (cu_driver.h's cu_coll). 0, or -1. */
int cu_nccl_coll(void *comm, const cu_coll *c, void *stream, char *msg, size_t n);

/* Device 0's architecture ("sm_90") from the driver, or -1 with msg. */
int cu_device_arch(char *arch, size_t an, char *msg, size_t n);

#endif
