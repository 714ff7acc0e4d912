/* dist_shm.h -- gradient sums through memory the ranks of one machine share
 * (runtime/dist_shm.c); internal to runtime/dist.c, built with MPI only. */
#ifndef LATHE_DIST_SHM_H
#define LATHE_DIST_SHM_H

#include <mpi.h>
#include <stdint.h>

typedef struct dshm dshm;

/* One wait's progress through the caller's policy (spin, then sleep, answer
 * "are you alive?" probes, end the job past the timeout). */
typedef struct {
  int spins;
  double t0;
  long sleep_ns;
} dshm_pause;

typedef struct {
  void *ctx;
  void (*pause)(void *ctx, dshm_pause *p, const char *call); /* called while a rank's part is missing */
  void (*fail)(void *ctx, const char *what);                 /* does not return */
} dshm_waiter;

/* NULL where the ranks do not all share this machine, or LATHE_COMM_SHM=0:
 * the caller keeps its MPI collectives. Collective over comm. */
dshm *dshm_open(MPI_Comm comm, const dshm_waiter *w);
/* Sets up the places of a step's k sums of n[i] values (in start order)
 * ahead of its first start. Collective. */
void dshm_reserve(dshm *s, const int64_t *n, int k);
/* Starts the sum over ranks of concat(in[0..k)) (n[j] values each), found
 * again by key. Every rank starts the same sums in the same order. */
void dshm_start(dshm *s, const float *key, float *const *in, const int64_t *n, int64_t k);
/* out[total] = that sum (the ranks added in rank order) times scale. */
void dshm_wait(dshm *s, const float *key, float *out, int64_t total, float scale);
/* Blocking collectives (--zero1's, rt/rt_comm.c), every rank making the
 * same calls in the same order, with the MPI path's results:
 * reduce_scatter: out[m] = the sum over ranks, in rank order, of each
 * rank's in[rank * m .. + m); allgather: out[m * size] = every rank's in[m]
 * in rank order. f64: doubles instead of floats. */
void dshm_reduce_scatter(dshm *s, const void *in, void *out, int64_t m, int f64);
void dshm_allgather(dshm *s, const void *in, void *out, int64_t m, int f64);
/* Sets up their slot for calls of up to bytes per rank. Collective. */
void dshm_reserve_blocking(dshm *s, int64_t bytes);
void dshm_close(dshm *s); /* collective */

#endif
