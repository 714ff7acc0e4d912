/* cx.h: the CPU executor for rendered CUDA C, a test instrument (README.md).
 * cx_driver() fills codegen/cuda/cu_driver.h's seam: device memory is host
 * memory behind guard pages, modules are the kernel source compiled for the
 * host with cx_shim.h, launches run every block and every thread of a block
 * as a fiber, gemm is OpenBLAS. Internal names: cx_. Sections by file. */
#ifndef CX_H
#define CX_H
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include "codegen/cuda/cu_driver.h"
#include "cx_abi.h"

/* ---- cx_driver.c: the seam ---- */

/* The executor as a cu_driver, or NULL with the reason in err. */
cu_driver *cx_driver(char *err, size_t errlen);
/* Device memory the executor pretends to have (default 8 GiB). */
void cx_set_mem_limit(cu_driver *d, size_t bytes);
/* 1: every launch runs its threads as fibers, also for modules with no
 * barrier or shuffle (they normally run thread after thread on one stack). */
void cx_force_fibers(cu_driver *d, int on);
/* The host C++ compiler kernels are built with, or NULL when the build
 * found none (tests then skip, saying so). */
const char *cx_host_compiler(void);
/* 1 when the kernel (a get_function result) runs as fibers: it reaches a
 * barrier or warp collective through its calls (cx_module.c). */
int cx_kernel_fibers(const void *fn);
/* Launches so far (tests check that a path really ran on the executor). */
long cx_launch_count(const cu_driver *d);

/* ---- cx_mem.c: device memory behind guard pages ---- */

typedef struct cx_alloc {
  unsigned char *map;          /* mmap base: guard page, data pages, guard page */
  size_t map_len;
  unsigned char *base;         /* the device pointer */
  size_t bytes;                /* as asked */
  size_t span;                 /* bytes rounded up to 16: base+span is the guard */
  int id;                      /* 1, 2, ... in allocation order */
} cx_alloc;

typedef struct cx_mem {
  cx_alloc *a;                 /* sorted by base */
  int n, cap, next_id;
  size_t in_use, limit;
} cx_mem;

int cx_mem_alloc(cx_mem *m, size_t bytes, cu_dptr *out, char *err, size_t errlen);
int cx_mem_free(cx_mem *m, cu_dptr p, char *err, size_t errlen);
void cx_mem_release(cx_mem *m);
/* 0 when [p, p+bytes) lies in one allocation; else a message naming what
 * (e.g. "htod destination") and by how much it misses. */
int cx_mem_check(const cx_mem *m, uint64_t p, size_t bytes, const char *what, char *err,
                 size_t errlen);
const cx_alloc *cx_mem_find(const cx_mem *m, uint64_t p);
/* Describes a faulting address relative to the nearest allocation's guard
 * pages; 0 when it is near none. */
int cx_mem_describe_fault(const cx_mem *m, uint64_t addr, char *out, size_t outlen);
/* 0 when no launch wrote into an allocation's slack (the <16 bytes between
 * its end and the guard page, and the slack before it). */
int cx_mem_check_canaries(const cx_mem *m, char *err, size_t errlen);

/* ---- cx_p2p.c: ncclSend and ncclRecv through the job's MPI path ---- */

/* One CU_COLL_SEND or CU_COLL_RECV, run now (a header travels with the
 * values, so a host-side MPI transfer can never pair with it). 0, or 1
 * with one line in err. */
int cx_p2p(const cx_mem *m, const cu_coll *c, char *err, size_t n);

/* ---- cx_module.c: kernel source compiled for the host ---- */

typedef struct cx_module cx_module;
typedef struct cx_kernel {
  cx_module *mod;
  char name[128];
  void (*run)(void **args);    /* cx_w_NAME: one GPU thread */
  void (*ptrs)(void **args);   /* cx_p_NAME: reports pointer arguments */
  int fibers;                  /* it reaches a barrier or warp collective */
  int nargs;                   /* its arguments (cx_n_NAME) */
} cx_kernel;

struct cx_module {
  void *dl;
  void (*bind)(cx_api *);
  cx_kernel **k;
  int nk;
  char **names;                /* kernels found in the source */
  int *fibers;                 /* per name: reaches a barrier or collective */
  int nnames;
  cx_module *next;
};

int cx_module_load(const char *cuda_src, cx_module **out, char *err, size_t errlen);
int cx_module_kernel(cx_module *m, const char *name, cx_kernel **out, char *err, size_t errlen);
void cx_module_free(cx_module *m);

/* ---- cx_launch.c: grid, blocks, fibers ---- */

typedef struct cx_state {
  cx_mem mem;
  cx_module *mods;
  int force_fibers;
  long launches;
  void *stacks;                /* cx_launch.c's fiber stack pool */
  struct cx_graph *capturing;  /* graph_begin .. graph_end: calls are recorded, not run */
} cx_state;
/* graph_launch calls so far, by every executor of the process */
long cx_graph_replays_total(void);

int cx_launch(cu_driver *d, cx_kernel *k, const unsigned grid[3], const unsigned block[3],
              unsigned shmem_bytes, void **args);
void cx_launch_release(cx_state *s);

#endif
