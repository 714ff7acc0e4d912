/* cx_abi.h: what a kernel module compiled for the host (cx_shim.h included
 * first) and the executor (cx_driver.c) share. Read by both the C executor and
 * the C++ kernel module, so plain C only.
 *
 * The module exports, with C linkage:
 *   void cx_bind(cx_api *api);            set before every launch
 *   void cx_w_NAME(void **args);          kernel NAME, args as cuLaunchKernel's
 *   void cx_p_NAME(void **args);          reports each pointer argument once
 *                                         (api->check_ptr) before the launch
 * The executor runs cx_w_NAME once per GPU thread, with the thread's indices
 * in the api block. */
#ifndef CX_ABI_H
#define CX_ABI_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cx_dim3 { unsigned x, y, z; } cx_dim3;

/* Widest value a warp exchange carries (double, long long, float2). */
#define CX_LANE_BYTES 16

typedef struct cx_api {
  /* The running GPU thread's indices; the scheduler rewrites them before it
   * resumes a fiber. */
  cx_dim3 threadIdx, blockIdx, blockDim, gridDim;
  void *dyn_shared;            /* extern __shared__: shmem_bytes of the launch */
  unsigned dyn_shared_bytes;
  void *self;                  /* the executor's state */
  void (*sync_block)(void);    /* __syncthreads */
  void (*sync_warp)(unsigned mask);
  /* Every lane in mask writes CX_LANE_BYTES at mine; all receives the 32
   * lanes' values (lane i at all + i*CX_LANE_BYTES); lanes outside mask or
   * exited carry nothing: the returned mask says which lanes all holds. */
  unsigned (*warp_exchange)(unsigned mask, const void *mine, void *all);
  unsigned (*active_mask)(void);
  void (*trap)(const char *why);                    /* never returns */
  void (*check_ptr)(int arg, const void *p);        /* one pointer argument */
} cx_api;

#ifdef __cplusplus
}
#endif
#endif
