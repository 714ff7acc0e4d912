/* cu_driver.h: the seam between Lathe's CUDA runtime and whatever executes
 * the rendered kernels. The product fills it from the real CUDA driver API and
 * cuBLASLt (loaded with dlopen, codegen/cuda/cu_loader.c); the test suite fills
 * it from a CPU executor that compiles the same CUDA C for the host
 * (tests/cuexec/). Nothing above this seam knows which one it talks to.
 *
 * Every call returns 0 on success, nonzero on failure with a one-line message
 * in err. Device pointers are opaque 64-bit values (CUdeviceptr). */
#ifndef CU_DRIVER_H
#define CU_DRIVER_H
#include <stddef.h>
#include <stdint.h>

typedef uint64_t cu_dptr;

/* C = alpha * op(A) @ op(B) + beta * C, row-major, with an optional
 * epilogue on C: bias (length n, added per row) then activation (cuBLASLt's
 * CUBLASLT_EPILOGUE_BIAS, RELU_BIAS, GELU_BIAS: GELU's tanh form); or the
 * bias gradient CU_EPI_BGRAD_B: bias[j] = the sum over the k rows of
 * op(B)'s column j, written beside the product (cuBLASLt's BGRADA once the
 * operands are swapped into column-major order; one product, f32 C).
 * Element types: A and B f32, or both bf16 (--precision bf16); C f32 or
 * bf16; the sums are f32 either way (cuBLASLt's CUBLAS_COMPUTE_32F); the
 * bias has C's type (cuBLASLt's default bias type is D's). */
enum { CU_T_F32 = 0, CU_T_BF16 = 1 };
enum { CU_EPI_NONE, CU_EPI_BIAS, CU_EPI_BIAS_RELU, CU_EPI_BIAS_GELU, CU_EPI_BGRAD_B, CU_EPI_COUNT };
typedef struct cu_gemm {
  int m, n, k;
  int trans_a, trans_b;      /* 1: the operand is stored transposed */
  int lda, ldb, ldc;         /* row strides in elements */
  float alpha, beta;
  cu_dptr a, b, c;
  int epilogue;              /* CU_EPI_* */
  cu_dptr bias;              /* [n] of bias_type when epilogue has a bias (read) or is BGRAD_B (written, f32) */
  int bias_type;             /* CU_T_*: C's (a bf16 C's bias is rounded to bf16 by the renderer first) */
  int batch;                 /* 0 or 1: one GEMM; >1: strided batch */
  long long stride_a, stride_b, stride_c;
  int ab_type, c_type;       /* CU_T_*: A and B's, C's */
} cu_gemm;

/* One collective over the job's ranks (NCCL on a GPU): f32 values, sums.
 * ALLREDUCE: recv[count] = the sum over ranks of send[count] (send may be
 * recv); REDUCE_SCATTER: recv[count] = this rank's count values of the sum
 * of send[count * ranks]; ALL_GATHER: recv[count * ranks] = every rank's
 * send[count] in rank order. Point to point (pipeline stages, the ops send
 * and recv: ncclSend and ncclRecv): SEND sends send[count] to rank peer,
 * RECV fills recv[count] with what rank peer sends; each pairs with the
 * peer's opposite call, in the order both ranks make them. */
enum { CU_COLL_ALLREDUCE, CU_COLL_REDUCE_SCATTER, CU_COLL_ALL_GATHER, CU_COLL_SEND, CU_COLL_RECV, CU_COLL_COUNT };
typedef struct cu_coll {
  int op;                    /* CU_COLL_* */
  cu_dptr send, recv;        /* SEND reads send only, RECV writes recv only */
  size_t count;
  int peer;                  /* SEND, RECV: the other rank */
} cu_coll;

typedef struct cu_driver cu_driver;
struct cu_driver {
  const char *name;          /* "cuda" or "cpu-executor" */
  char arch[16];             /* "sm_90" etc.; set at creation */
  size_t total_mem;          /* bytes of device memory */
  char err[256];             /* the last failure, one line */
  void *self;                /* implementation state */

  int (*mem_alloc)(cu_driver *d, size_t bytes, cu_dptr *out);
  void (*mem_free)(cu_driver *d, cu_dptr p);
  int (*htod)(cu_driver *d, cu_dptr dst, const void *src, size_t bytes);
  int (*dtoh)(cu_driver *d, void *dst, cu_dptr src, size_t bytes);
  int (*memset0)(cu_driver *d, cu_dptr dst, size_t bytes);
  /* Load one module: cuda_src is the CUDA C that NVRTC compiled into image
   * (CUBIN or PTX, image_len bytes). The driver uses image; the executor
   * compiles cuda_src for the host. Kernels are extern "C" __global__. */
  int (*module_load)(cu_driver *d, const char *cuda_src, const void *image,
                     size_t image_len, void **mod);
  int (*get_function)(cu_driver *d, void *mod, const char *name, void **fn);
  /* args as cuLaunchKernel's kernelParams: args[i] points at argument i. */
  int (*launch)(cu_driver *d, void *fn, unsigned gx, unsigned gy, unsigned gz,
                unsigned bx, unsigned by, unsigned bz, unsigned shmem_bytes,
                void **args);
  int (*gemm)(cu_driver *d, const cu_gemm *g);
  int (*sync)(cu_driver *d);
  void (*destroy)(cu_driver *d);
  /* Optional (NULL: not offered). A copy on the device, in stream order. */
  int (*dtod)(cu_driver *d, cu_dptr dst, cu_dptr src, size_t bytes);
  /* Capture everything queued on the stream between graph_begin and
   * graph_end into a replayable graph (a CUDA graph): graph_launch replays
   * it on the stream, graph_free releases it. */
  int (*graph_begin)(cu_driver *d);
  int (*graph_end)(cu_driver *d, void **graph);
  int (*graph_launch)(cu_driver *d, void *graph);
  void (*graph_free)(cu_driver *d, void *graph);
  /* Optional: the device memory free now and in all (cuMemGetInfo), asked
   * before the program's one allocation so that a model too large for what
   * is free is refused in one line before anything is allocated. */
  int (*mem_info)(cu_driver *d, size_t *free_bytes, size_t *total_bytes);
  /* Optional: collectives and point-to-point transfers (data-parallel
   * steps, pipeline stages). coll_open joins this process as rank `rank`
   * of `ranks` (every rank calls it at the same point: the product's NCCL
   * communicator is made there, codegen/cuda/cu_nccl.c); coll enqueues one
   * collective or transfer on the stream, in order with the launches (so a
   * graph captures it with the step). */
  int (*coll_open)(cu_driver *d, int rank, int ranks);
  int (*coll)(cu_driver *d, const cu_coll *c);
};

/* Creates a driver, or NULL with a one-line reason in err[errlen]. */
typedef cu_driver *(*cu_driver_ctor)(char *err, size_t errlen);

/* The CUDA runtime creates its driver with the real loader unless a test has
 * installed another constructor (the CPU executor). NULL restores the real
 * one. Defined in codegen/cuda/; not part of the public API. */
void cu_set_driver_factory(cu_driver_ctor ctor);

#endif
