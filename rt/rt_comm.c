/* rt_comm.c -- the collectives generated code calls (the ops allreduce,
 * reduce_scatter and all_gather) over whatever communicator the host
 * installed: liblathe's MPI layer (runtime/comm_mpi.c) under mpirun, nothing
 * in a single process. liblathe_rt itself never links MPI, so emitted
 * models and builds without MPI stay as they were; with no communicator
 * installed the collectives are those of a job of one rank (copies and the
 * scale), which is what a program compiled for one rank means.
 *
 * The time spent inside the installed collectives is summed, so a training
 * loop can print how long a step waited for communication. */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "lathe_rt.h"

static lathe_rt_comm installed; /* size 0: none */
static double waited;          /* seconds inside the installed collectives */
static int inflight;           /* overlapped sums started and not yet waited for */
static pthread_t starter;      /* the thread that started them: MPI is called from one thread only */

void lathe_rt_comm_install(const lathe_rt_comm *c) {
  if (c) installed = *c;
  else memset(&installed, 0, sizeof installed);
  waited = 0, inflight = 0;
}

int lathe_rt_comm_rank(void) { return installed.size > 0 ? installed.rank : 0; }
int lathe_rt_comm_size(void) { return installed.size > 0 ? installed.size : 1; }
const lathe_rt_comm *lathe_rt_comm_get(void) { return installed.size > 0 ? &installed : NULL; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double lathe_rt_comm_wait_seconds(void) { return waited; }

/* A program compiled for `ranks` ranks run in a job of another size would
 * average wrongly or hang: the kernel stores LATHE_RT_ECOMM instead (every
 * rank compiled the same program, so every rank stops here alike). */
static int check_size(int64_t ranks, int32_t *err) {
  if (ranks == lathe_rt_comm_size()) return 0;
  if (err) *err = LATHE_RT_ECOMM;
  return -1;
}

int lathe_rt_comm_sum(void *buf, int64_t n, int f64) {
  if (!installed.size || installed.size == 1 || n <= 0) return 0;
  double t0 = now_s();
  int rc = installed.allreduce(installed.ctx, buf, n, f64);
  waited += now_s() - t0;
  return rc;
}

int lathe_rt_comm_send(const void *buf, int64_t bytes, int peer) {
  if (installed.size <= 1 || !installed.send) return -1;
  double t0 = now_s();
  int rc = installed.send(installed.ctx, buf, bytes, peer);
  waited += now_s() - t0;
  return rc;
}

int lathe_rt_comm_recv(void *buf, int64_t bytes, int peer) {
  if (installed.size <= 1 || !installed.recv) return -1;
  double t0 = now_s();
  int rc = installed.recv(installed.ctx, buf, bytes, peer);
  waited += now_s() - t0;
  return rc;
}

/* Root's bytes to every rank, as point-to-point messages from root (the
 * layer's send and recv: waits with the job's timeout, a silent rank named),
 * not MPI_Bcast, which would wait forever. */
int lathe_rt_comm_bcast(void *buf, int64_t bytes, int root) {
  if (installed.size <= 1) return 0;
  if (!installed.send || !installed.recv || root < 0 || root >= installed.size) return -1;
  if (installed.rank != root) return lathe_rt_comm_recv(buf, bytes, root);
  for (int r = 0; r < installed.size; r++)
    if (r != root && lathe_rt_comm_send(buf, bytes, r)) return -1;
  return 0;
}

int lathe_rt_comm_gather(const void *in, void *out, int64_t n, int f64) {
  if (!installed.size || installed.size == 1) {
    if (n > 0 && in != out) memmove(out, in, (size_t)n * (f64 ? 8 : 4));
    return 0;
  }
  double t0 = now_s();
  int rc = installed.allgather(installed.ctx, in, out, n, f64);
  waited += now_s() - t0;
  return rc;
}

/* A bucket's gradients in[0..k) one after another into out; their total count. */
static int64_t pack(float *out, float *const *in, const int64_t *n, int64_t k) {
  int64_t off = 0;
  for (int64_t j = 0; j < k; j++) {
    if (n[j] > 0) memcpy(out + off, in[j], (size_t)n[j] * sizeof(float));
    off += n[j];
  }
  return off;
}

/* out = concat(in[0..k)) summed over ranks, times scale. */
void lathe_rt_allreduce(float *out, float *const *in, const int64_t *n, int64_t k, float scale, int64_t ranks,
                        int32_t *err) {
  if (check_size(ranks, err)) return;
  int64_t off = pack(out, in, n, k);
  lathe_rt_comm_sum(out, off, 0);
  if (scale != 1.0f)
    for (int64_t i = 0; i < off; i++) out[i] *= scale;
}

/* out[m] = this rank's slice (m values, rank-major) of in[m * ranks] summed
 * over ranks (in rank order, as allreduce adds them), times scale. */
void lathe_rt_reduce_scatter(float *out, const float *in, int64_t m, float scale, int64_t ranks, int32_t *err) {
  if (check_size(ranks, err)) return;
  if (!installed.size || installed.size == 1) {
    for (int64_t i = 0; i < m; i++) out[i] = in[i] * scale;
    return;
  }
  double t0 = now_s();
  installed.reduce_scatter(installed.ctx, in, out, m, 0);
  waited += now_s() - t0;
  if (scale != 1.0f)
    for (int64_t i = 0; i < m; i++) out[i] *= scale;
}

int lathe_rt_comm_scatter_sum(const void *in, void *out, int64_t m, int f64) {
  if (!installed.size || installed.size == 1) {
    if (m > 0 && in != out) memmove(out, in, (size_t)m * (f64 ? 8 : 4));
    return 0;
  }
  double t0 = now_s();
  int rc = installed.reduce_scatter(installed.ctx, in, out, m, f64);
  waited += now_s() - t0;
  return rc;
}

/* out[m * ranks] = every rank's in[m], in rank order. */
void lathe_rt_all_gather(float *out, const float *in, int64_t m, int64_t ranks, int32_t *err) {
  if (check_size(ranks, err)) return;
  lathe_rt_comm_gather(in, out, m, 0);
}

/* ---- overlapped allreduce ---- */

/* With an overlapping communicator the gradients go to it unpacked (it
 * packs them where the other ranks can read them: one copy, not two), and
 * the wait scales the sum as it writes it; out (the started buffer) then
 * stays unwritten: only the wait reads it, as the key to its sum. */
void lathe_rt_allreduce_start(float *out, float *const *in, const int64_t *n, int64_t k, int64_t ranks,
                              int32_t *err) {
  if (check_size(ranks, err)) return;
  if (installed.size > 1 && installed.start) {
    int64_t total = 0;
    for (int64_t j = 0; j < k; j++) total += n[j];
    if (total <= 0) return;
    double t0 = now_s();
    if (!inflight) starter = pthread_self();
    installed.start(installed.ctx, out, in, n, k);
    inflight++;
    waited += now_s() - t0;
    return;
  }
  int64_t off = pack(out, in, n, k);
  if (!installed.size || installed.size == 1 || off <= 0) return;
  double t0 = now_s();
  installed.allreduce(installed.ctx, out, off, 0); /* no overlap: the sum now, the wait only scales */
  waited += now_s() - t0;
}

void lathe_rt_comm_wait(float *out, const float *started, int64_t n, float scale, int64_t ranks, int32_t *err) {
  if (check_size(ranks, err)) return;
  if (installed.size > 1 && installed.start) {
    if (n <= 0) return;
    double t0 = now_s();
    installed.wait(installed.ctx, started, out, n, scale);
    inflight--;
    waited += now_s() - t0;
    return;
  }
  if (n > 0 && out != started) memmove(out, started, (size_t)n * sizeof(float));
  if (scale != 1.0f)
    for (int64_t i = 0; i < n; i++) out[i] *= scale;
}

void lathe_rt_comm_progress(void) {
  if (inflight <= 0 || !installed.progress || !pthread_equal(starter, pthread_self())) return;
  double t0 = now_s();
  installed.progress(installed.ctx);
  waited += now_s() - t0;
}

/* ---- point to point (the ops send and recv: pipeline stages) ---- */

/* out = in, sent to rank peer. Without a communicator (one process) or
 * to a rank the job lacks: LATHE_RT_ECOMM, nothing sent. */
void lathe_rt_send(float *out, const float *in, int64_t n, int64_t peer, int32_t *err) {
  if (n > 0 && out != in) memmove(out, in, (size_t)n * sizeof(float));
  if (peer < 0 || peer >= lathe_rt_comm_size() || peer == lathe_rt_comm_rank() ||
      lathe_rt_comm_send(in, n * (int64_t)sizeof(float), (int)peer)) {
    if (err) *err = LATHE_RT_ECOMM;
  }
}

void lathe_rt_recv(float *out, int64_t n, int64_t peer, int32_t *err) {
  if (peer < 0 || peer >= lathe_rt_comm_size() || peer == lathe_rt_comm_rank() ||
      lathe_rt_comm_recv(out, n * (int64_t)sizeof(float), (int)peer)) {
    if (err) *err = LATHE_RT_ECOMM;
    if (n > 0) memset(out, 0, (size_t)n * sizeof(float));
  }
}
