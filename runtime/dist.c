/* dist.c -- joining a distributed job (docs/distributed.md): under mpirun,
 * lathe_dist_init initialises MPI and installs liblathe_rt's communicator
 * (rt/rt_comm.c) with the collectives below; without mpirun, or in a build
 * without MPI (CMake found none), the process is a job of one rank.
 *
 * The collectives are written on MPI_Alltoall and MPI_Allgather instead of
 * MPI_Allreduce so that the order of the sums is Lathe's, not the MPI
 * library's choice of algorithm: rank j receives every rank's j-th chunk
 * and adds them in rank order 0, 1, ..., R-1 (a reduce-scatter), then every
 * rank gathers the summed chunks. That moves 2 (R-1)/R of the buffer per
 * rank, as a ring allreduce does, and the result is the same bits whatever
 * the timing, on every rank.
 *
 * Failures end the job: MPI errors come back (MPI_ERRORS_RETURN) to fail(),
 * which prints which rank and which call failed and calls MPI_Abort, so no
 * rank is left waiting. A rank that dies outright is mpirun's to notice: it
 * ends the others and names the rank. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/program.h"
#include "rt/lathe_rt.h"

/* Whether a launcher started this process as one rank of a job. */
static int under_launcher(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i])) return 1;
  return 0;
}

#ifdef LATHE_HAVE_MPI
#include <mpi.h>

typedef struct {
  MPI_Comm comm;
  int rank, size;
  void *a, *b; /* scratch: padded buffer, received chunks */
  size_t na, nb;
} dist_mpi;

static dist_mpi D;
static int D_inited;

static void mpi_fail(void *ctx, const char *what) {
  dist_mpi *d = ctx;
  fprintf(stderr, "lathe: rank %d of %d: %s; ending every rank\n", d->rank, d->size, what);
  fflush(stderr);
  MPI_Abort(d->comm, 1);
  abort(); /* MPI_Abort does not return; if it did, this rank must not go on */
}

static void check(dist_mpi *d, int rc, const char *call) {
  if (rc == MPI_SUCCESS) return;
  char s[MPI_MAX_ERROR_STRING + 64], es[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, es, &len);
  snprintf(s, sizeof s, "%s failed (%s): another rank died or the network failed", call, es);
  mpi_fail(d, s);
}

static void *grow(dist_mpi *d, void **p, size_t *n, size_t bytes) {
  if (bytes <= *n) return *p;
  void *q = realloc(*p, bytes);
  if (!q) mpi_fail(d, "out of memory for a collective's buffer");
  *p = q, *n = bytes;
  return q;
}

/* MPI counts are ints: a chunk above INT_MAX values ends the job rather
 * than wrapping. */
static int count_of(dist_mpi *d, int64_t m) {
  if (m > 0x7fffffff) mpi_fail(d, "a collective of more than 2^31 values per rank");
  return (int)m;
}

/* out[m] = sum over ranks r (in order) of rank r's in[rank * m .. + m). */
static int mpi_reduce_scatter(void *ctx, const void *in, void *out, int64_t m, int f64) {
  dist_mpi *d = ctx;
  size_t es = f64 ? 8 : 4;
  MPI_Datatype t = f64 ? MPI_DOUBLE : MPI_FLOAT;
  int cnt = count_of(d, m);
  void *rx = grow(d, &d->b, &d->nb, (size_t)m * (size_t)d->size * es + 1);
  check(d, MPI_Alltoall(in, cnt, t, rx, cnt, t, d->comm), "MPI_Alltoall");
  if (f64) {
    const double *r = rx;
    double *o = out;
    for (int64_t i = 0; i < m; i++) {
      double s = r[i];
      for (int k = 1; k < d->size; k++) s += r[(int64_t)k * m + i];
      o[i] = s;
    }
  } else {
    const float *r = rx;
    float *o = out;
    for (int64_t i = 0; i < m; i++) {
      float s = r[i];
      for (int k = 1; k < d->size; k++) s += r[(int64_t)k * m + i];
      o[i] = s;
    }
  }
  return 0;
}

static int mpi_allgather(void *ctx, const void *in, void *out, int64_t m, int f64) {
  dist_mpi *d = ctx;
  MPI_Datatype t = f64 ? MPI_DOUBLE : MPI_FLOAT;
  int cnt = count_of(d, m);
  check(d, MPI_Allgather(in, cnt, t, out, cnt, t, d->comm), "MPI_Allgather");
  return 0;
}

/* In place: n values padded to m * size, reduce-scattered, gathered. */
static int mpi_allreduce(void *ctx, void *buf, int64_t n, int f64) {
  dist_mpi *d = ctx;
  size_t es = f64 ? 8 : 4;
  int64_t m = (n + d->size - 1) / d->size, tot = m * d->size;
  char *pad = grow(d, &d->a, &d->na, (size_t)tot * es * 2 + 1);
  memcpy(pad, buf, (size_t)n * es);
  memset(pad + (size_t)n * es, 0, (size_t)(tot - n) * es);
  char *mine = pad + (size_t)tot * es;
  mpi_reduce_scatter(d, pad, mine, m, f64);
  mpi_allgather(d, mine, pad, m, f64);
  memcpy(buf, pad, (size_t)n * es);
  return 0;
}

int lathe_dist_init(lathe_error *err) {
  if (D_inited || !under_launcher()) return 0;
  int provided = 0;
  if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    return api_fail(err, LATHE_EUSER, "lathe_dist_init: MPI_Init failed");
  MPI_Comm_dup(MPI_COMM_WORLD, &D.comm);
  MPI_Comm_set_errhandler(D.comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(D.comm, &D.rank);
  MPI_Comm_size(D.comm, &D.size);
  D_inited = 1;
  lathe_rt_comm c = {.rank = D.rank, .size = D.size, .ctx = &D, .allreduce = mpi_allreduce,
                     .reduce_scatter = mpi_reduce_scatter, .allgather = mpi_allgather, .fail = mpi_fail};
  lathe_rt_comm_install(&c);
  return 0;
}

void lathe_dist_finalize(void) {
  if (!D_inited) return;
  lathe_rt_comm_install(NULL);
  free(D.a), free(D.b);
  MPI_Comm_free(&D.comm);
  MPI_Finalize();
  memset(&D, 0, sizeof D);
  D_inited = 0;
}

void lathe_dist_abort(const char *why) {
  if (D_inited) mpi_fail(&D, why);
}

int lathe_dist_available(void) { return 1; }

#else

int lathe_dist_init(lathe_error *err) {
  if (!under_launcher()) return 0;
  return api_fail(err, LATHE_EUSER, "lathe_dist_init: started by an MPI launcher, but this Lathe was built without "
                  "MPI (install libopenmpi-dev and reconfigure; docs/distributed.md)");
}

void lathe_dist_finalize(void) {}
void lathe_dist_abort(const char *why) { (void)why; }
int lathe_dist_available(void) { return 0; }

#endif

int lathe_dist_rank(void) { return lathe_rt_comm_rank(); }
int lathe_dist_size(void) { return lathe_rt_comm_size(); }
