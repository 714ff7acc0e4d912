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
 * ends the others and names the rank. A rank that stops answering without
 * dying (stopped, hung, cut off) is found by a timeout on every wait
 * (lathe_dist_set_timeout, --comm-timeout): the waiting rank asks every
 * other rank whether it is alive (a probe on a communicator of its own that
 * every waiting rank answers), names those that do not answer, and ends
 * the job. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/program.h"
#include "rt/lathe_rt.h"
#ifdef LATHE_HAVE_MPI
#include "runtime/dist_shm.h"
#endif

/* Whether a launcher started this process as one rank of a job. */
static int under_launcher(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i])) return 1;
  return 0;
}

#ifdef LATHE_HAVE_MPI
#include <mpi.h>

/* An overlapped sum (lathe_rt_allreduce_start .. lathe_rt_comm_wait):
 * phase 1 exchanges the chunks (MPI_Ialltoall on comm), then the chunks
 * are added in rank order and phase 2 gathers the sums (MPI_Iallgather on
 * comm2). Collectives must start in the same order on every rank: the
 * alltoalls start in graph order, which is every rank's, and a gather
 * starts only after every earlier request's, whatever the timing, on a
 * communicator of its own. */
typedef struct {
  const float *key;     /* the start kernel's buffer: the wait finds the request by it */
  int64_t n, m;         /* values; chunk per rank */
  int phase;            /* 0 free, 1 exchanging chunks, 2 gathering sums, 3 done */
  MPI_Request req;
  float *pad, *rx, *mine, *all; /* in one allocation of cap bytes */
  size_t cap;
} dist_req;

typedef struct {
  MPI_Comm comm, comm2, probe; /* probe: "are you alive?" questions and answers (hang detection) */
  MPI_Request ask;             /* the posted receive of the next question */
  int asked, *reply;           /* the question's buffer; answers sent (one slot per rank) */
  MPI_Request *answers;
  int rank, size;
  void *a, *b; /* scratch: padded buffer, received chunks */
  size_t na, nb;
  dist_req *q;             /* in start order (grown as a step has more buckets; slots kept for the next step) */
  int nq, capq, gathered;  /* requests started; of them, the first `gathered` have left phase 1 */
  dshm *shm;               /* every rank on this machine: overlapped sums through shared memory (dist_shm.c) */
} dist_mpi;

static dist_mpi D;
static int D_inited;
static double D_timeout = 120; /* seconds a wait may take before the job is ended (0: forever) */
static double D_spin = 0;       /* seconds a wait polls before it starts sleeping (set by share_cores) */

enum { TAG_ASK = 1, TAG_ANSWER = 2 };

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

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Answer any rank that asked whether this one is alive: only ranks inside a
 * wait answer, which is where a healthy rank is when another times out. */
static void answer_probes(dist_mpi *d) {
  for (;;) {
    int got = 0;
    MPI_Status st;
    if (MPI_Test(&d->ask, &got, &st) != MPI_SUCCESS || !got) return;
    int s = st.MPI_SOURCE, done = 1;
    if (d->answers[s] != MPI_REQUEST_NULL) MPI_Test(&d->answers[s], &done, MPI_STATUS_IGNORE);
    if (done) MPI_Isend(&d->reply[s], 1, MPI_INT, s, TAG_ANSWER, d->probe, &d->answers[s]);
    MPI_Irecv(&d->asked, 1, MPI_INT, MPI_ANY_SOURCE, TAG_ASK, d->probe, &d->ask);
  }
}

/* A wait ran past the timeout: ask every other rank (a grace of a few
 * seconds, answering theirs meanwhile) and end the job naming the silent. */
static void hang(dist_mpi *d, const char *call, int peer) {
  int n = d->size, one = 1, *back = calloc((size_t)n * 2 + 1, sizeof(int));
  MPI_Request *rq = malloc(sizeof *rq * (size_t)n * 2 + 1);
  if (!back || !rq) mpi_fail(d, "a wait ran past --comm-timeout (and no memory to ask which rank is silent)");
  for (int r = 0; r < n; r++) {
    rq[2 * r] = rq[2 * r + 1] = MPI_REQUEST_NULL;
    if (r == d->rank || (peer >= 0 && r != peer)) continue;
    MPI_Irecv(&back[r], 1, MPI_INT, r, TAG_ANSWER, d->probe, &rq[2 * r]);
    MPI_Isend(&one, 1, MPI_INT, r, TAG_ASK, d->probe, &rq[2 * r + 1]);
  }
  double t0 = mono_s(), grace = D_timeout < 5 ? D_timeout : 5;
  int silent = 0;
  char who[256] = "";
  struct timespec ts = {0, 1000000};
  for (int all = 0; !all && mono_s() - t0 < grace; nanosleep(&ts, NULL)) {
    answer_probes(d);
    all = 1;
    for (int r = 0; r < n; r++) {
      int done = 1;
      if (rq[2 * r] != MPI_REQUEST_NULL) MPI_Test(&rq[2 * r], &done, MPI_STATUS_IGNORE);
      back[n + r] = done;
      all &= done;
    }
  }
  for (int r = 0; r < n; r++) {
    if (r == d->rank || (peer >= 0 && r != peer) || back[n + r]) continue;
    size_t l = strlen(who);
    if (l + 16 < sizeof who) snprintf(who + l, sizeof who - l, "%s%d", silent++ ? ", " : "", r);
  }
  char msg[512];
  if (silent)
    snprintf(msg, sizeof msg, "%s waited %.0f s (--comm-timeout) and rank%s %s did not answer: stopped, hung or "
             "unreachable", call, D_timeout, silent > 1 ? "s" : "", who);
  else
    snprintf(msg, sizeof msg, "%s waited %.0f s (--comm-timeout); every rank answers, but the operation has not "
             "completed (ranks out of step?)", call, D_timeout);
  free(back); /* rq's requests are left to MPI_Abort */
  free(rq);
  mpi_fail(d, msg);
}

/* Waiting for a request: test it, spin a little, then sleep between tests
 * (50 us growing to 200 us) instead of MPI_Wait's busy polling. A rank
 * that spins while the other computes burns its share of a busy machine's
 * cores (and, under Linux's fair scheduler, is then scheduled less for its
 * own compute); a sleeping one leaves the core to the rank it waits for.
 * The cost is at most one sleep's latency per wait, and a sleeping rank
 * takes 70-160 us to wake: where every rank has cores of its own
 * (share_cores), a wait first polls for D_spin (300 us), which covers a
 * short step's collectives. Past D_timeout seconds
 * the job ends, naming the rank that does not answer (peer: the one this
 * wait is on, or -1 for a collective). */
static void pause_on(dist_mpi *d, dshm_pause *p, const char *call, int peer) {
  int spins = p->spins++;
  if (spins < 64) return;
  if (spins == 64) p->t0 = mono_s(), p->sleep_ns = 50000;
  if (D_spin > 0 && mono_s() - p->t0 < D_spin) return;
  answer_probes(d);
  if (D_timeout > 0 && (spins & 63) == 0 && mono_s() - p->t0 > D_timeout) hang(d, call, peer);
  struct timespec ts = {0, p->sleep_ns};
  nanosleep(&ts, NULL);
  if (p->sleep_ns < 200000) p->sleep_ns *= 2;
}

static void wait_on(dist_mpi *d, MPI_Request *req, const char *call, int peer) {
  for (dshm_pause p = {0};;) {
    int done = 0;
    check(d, MPI_Test(req, &done, MPI_STATUS_IGNORE), call);
    if (done) return;
    pause_on(d, &p, call, peer);
  }
}

/* dist_shm.c's waits pass the time the same way */
static void shm_pause(void *ctx, dshm_pause *p, const char *call) { pause_on(ctx, p, call, -1); }

static void wait_req(dist_mpi *d, MPI_Request *req, const char *call) { wait_on(d, req, call, -1); }

/* MPI counts are ints: a chunk above INT_MAX values ends the job rather
 * than wrapping. */
static int count_of(dist_mpi *d, int64_t m) {
  if (m > 0x7fffffff) mpi_fail(d, "a collective of more than 2^31 values per rank");
  return (int)m;
}

/* out[m] = sum over ranks r (in order) of rank r's in[rank * m .. + m). */
static int mpi_reduce_scatter(void *ctx, const void *in, void *out, int64_t m, int f64) {
  dist_mpi *d = ctx;
  if (d->shm) {
    dshm_reduce_scatter(d->shm, in, out, m, f64);
    return 0;
  }
  size_t es = f64 ? 8 : 4;
  MPI_Datatype t = f64 ? MPI_DOUBLE : MPI_FLOAT;
  int cnt = count_of(d, m);
  void *rx = grow(d, &d->b, &d->nb, (size_t)m * (size_t)d->size * es + 1);
  MPI_Request req;
  check(d, MPI_Ialltoall(in, cnt, t, rx, cnt, t, d->comm, &req), "MPI_Ialltoall");
  wait_req(d, &req, "MPI_Ialltoall");
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
  if (d->shm) {
    dshm_allgather(d->shm, in, out, m, f64);
    return 0;
  }
  MPI_Datatype t = f64 ? MPI_DOUBLE : MPI_FLOAT;
  int cnt = count_of(d, m);
  MPI_Request req;
  check(d, MPI_Iallgather(in, cnt, t, out, cnt, t, d->comm, &req), "MPI_Iallgather");
  wait_req(d, &req, "MPI_Iallgather");
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

/* ---- point to point (pipeline stages) ----
 * On comm2's tag 7, in one message (bytes fit an int) or chunks of 1 GiB;
 * the sender's Isend is awaited like every request, so a silent peer ends
 * the job after the timeout, named. */
enum { TAG_P2P = 7, P2P_CHUNK = 1 << 30 };

static int mpi_send(void *ctx, const void *buf, int64_t bytes, int peer) {
  dist_mpi *d = ctx;
  for (int64_t off = 0; off < bytes || off == 0; off += P2P_CHUNK) {
    int64_t n = bytes - off < P2P_CHUNK ? bytes - off : P2P_CHUNK;
    MPI_Request req;
    check(d, MPI_Isend((const char *)buf + off, (int)n, MPI_BYTE, peer, TAG_P2P, d->comm2, &req), "MPI_Isend");
    wait_on(d, &req, "MPI_Isend (to the next stage)", peer);
    if (bytes == 0) break;
  }
  return 0;
}

static int mpi_recv(void *ctx, void *buf, int64_t bytes, int peer) {
  dist_mpi *d = ctx;
  for (int64_t off = 0; off < bytes || off == 0; off += P2P_CHUNK) {
    int64_t n = bytes - off < P2P_CHUNK ? bytes - off : P2P_CHUNK;
    MPI_Request req;
    check(d, MPI_Irecv((char *)buf + off, (int)n, MPI_BYTE, peer, TAG_P2P, d->comm2, &req), "MPI_Irecv");
    wait_on(d, &req, "MPI_Irecv (from another stage)", peer);
    if (bytes == 0) break;
  }
  return 0;
}

/* Ranks that share a machine share its cores: unless LATHE_THREADS says
 * otherwise, each rank's pool gets cores / (ranks on this machine) threads
 * (at least 1), not every core, which would put R x cores compute threads
 * on the machine, descheduled in turn in the middle of every collective. */
static void share_cores(void) {
  const char *e = getenv("LATHE_THREADS"), *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  if (!local) return;
  long n = strtol(local, NULL, 10), c = sysconf(_SC_NPROCESSORS_ONLN), t = e && *e ? strtol(e, NULL, 10) : 0;
  if (n < 1 || c < 1) return;
  if (!t) lathe_rt_default_threads(c / n > 1 ? (int)(c / n) : 1);
  /* a rank's waits may poll only where no rank's threads take another's core */
  D_spin = n * (t > 0 ? t : (c / n > 1 ? c / n : 1)) <= c ? 300e-6 : 0;
  const char *us = getenv("LATHE_COMM_SPIN_US"); /* the poll time, microseconds (0: sleep at once) */
  if (us && *us) D_spin = strtod(us, NULL) * 1e-6;
}

/* ---- overlapped sums ---- */

static int mpi_start(void *ctx, const float *key, float *const *in, const int64_t *len, int64_t k) {
  dist_mpi *d = ctx;
  if (d->shm) {
    dshm_start(d->shm, key, in, len, k);
    return 0;
  }
  int64_t n = 0;
  for (int64_t j = 0; j < k; j++) n += len[j];
  if (d->nq == d->capq) {
    int cap = d->capq ? 2 * d->capq : 16;
    dist_req *q = realloc(d->q, sizeof *q * (size_t)cap);
    if (!q) mpi_fail(d, "out of memory for a collective's requests");
    memset(q + d->capq, 0, sizeof *q * (size_t)(cap - d->capq));
    d->q = q, d->capq = cap;
  }
  dist_req *r = &d->q[d->nq++];
  int64_t m = (n + d->size - 1) / d->size, tot = m * d->size;
  size_t bytes = sizeof(float) * (size_t)(4 * tot) + 1;
  if (bytes > r->cap) {
    float *p = realloc(r->pad, bytes);
    if (!p) mpi_fail(d, "out of memory for a collective's buffer");
    r->pad = p, r->cap = bytes;
  }
  r->rx = r->pad + tot, r->mine = r->rx + tot, r->all = r->mine + tot;
  r->key = key, r->n = n, r->m = m, r->phase = 1;
  for (int64_t j = 0, off = 0; j < k; off += len[j], j++) /* packed, padded to whole chunks */
    if (len[j] > 0) memcpy(r->pad + off, in[j], sizeof(float) * (size_t)len[j]);
  memset(r->pad + n, 0, sizeof(float) * (size_t)(tot - n));
  int cnt = count_of(d, m);
  check(d, MPI_Ialltoall(r->pad, cnt, MPI_FLOAT, r->rx, cnt, MPI_FLOAT, d->comm, &r->req), "MPI_Ialltoall");
  return 0;
}

/* Request i's chunks have arrived: add them in rank order, gather the sums. */
static void start_gather(dist_mpi *d, dist_req *r) {
  for (int64_t i = 0; i < r->m; i++) {
    float s = r->rx[i];
    for (int k = 1; k < d->size; k++) s += r->rx[(int64_t)k * r->m + i];
    r->mine[i] = s;
  }
  int cnt = count_of(d, r->m);
  check(d, MPI_Iallgather(r->mine, cnt, MPI_FLOAT, r->all, cnt, MPI_FLOAT, d->comm2, &r->req), "MPI_Iallgather");
  r->phase = 2;
  d->gathered++;
}

/* Move requests on: the gathers start in request order, each once its
 * chunks are in; block: until request `upto` has left phase 1. */
static void advance(dist_mpi *d, int upto, int block) {
  while (d->gathered < d->nq) {
    dist_req *r = &d->q[d->gathered];
    int done = 0;
    if (block && d->gathered <= upto) wait_req(d, &r->req, "MPI_Ialltoall"), done = 1;
    else check(d, MPI_Test(&r->req, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (!done) break;
    start_gather(d, r);
  }
  for (int i = 0; !block && i < d->gathered; i++) {
    int done = 0;
    if (d->q[i].phase != 2) continue;
    check(d, MPI_Test(&d->q[i].req, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done) d->q[i].phase = 3;
  }
}

static void mpi_progress(void *ctx) {
  dist_mpi *d = ctx;
  if (!d->shm) advance(d, -1, 0);
}

static int mpi_wait(void *ctx, const float *buf, float *out, int64_t n, float scale) {
  dist_mpi *d = ctx;
  if (d->shm) {
    dshm_wait(d->shm, buf, out, n, scale);
    return 0;
  }
  int i = 0;
  while (i < d->nq && !(d->q[i].phase && d->q[i].key == buf)) i++;
  if (i == d->nq || d->q[i].n != n) mpi_fail(d, "internal error: waiting for a sum that was not started");
  dist_req *r = &d->q[i];
  if (r->phase == 1) advance(d, i, 1);
  if (r->phase == 2) wait_req(d, &r->req, "MPI_Iallgather");
  for (int64_t j = 0; j < n; j++) out[j] = r->all[j] * scale;
  r->phase = 0, r->key = NULL;
  int busy = 0;
  for (int k = 0; k < d->nq; k++) busy |= d->q[k].phase != 0;
  if (!busy) d->nq = d->gathered = 0; /* the step's buckets are all in: the slots are free again */
  return 0;
}

void api_dist_reserve(const lathe_program *step) {
  if (!D_inited || !D.shm || !step) return;
  const ir_graph *g = &step->g;
  int k = 0;
  int64_t *n = malloc(sizeof *n * (size_t)(g->nnodes + 1));
  if (!n) return; /* the first step sets them up instead */
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *x = &g->nodes[i];
    if (x->op != IR_ALLREDUCE || x->attr.k != 1) continue;
    n[k] = 0;
    for (int j = 0; j < x->nin; j++) n[k] += ir_numel(&g->nodes[x->in[j]].shape);
    k += n[k] > 0; /* an empty sum is never started (rt/rt_comm.c) */
  }
  dshm_reserve(D.shm, n, k);
  free(n);
  /* --zero1's collectives: one slot, as large as the largest call's part */
  int64_t most = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const ir_node *x = &g->nodes[i];
    if (x->op != IR_REDUCE_SCATTER && x->op != IR_ALL_GATHER) continue;
    int64_t b = 4 * ir_numel(&g->nodes[x->in[0]].shape);
    most = b > most ? b : most;
  }
  dshm_reserve_blocking(D.shm, most);
}

int lathe_dist_init(lathe_error *err) {
  if (D_inited || !under_launcher()) return 0;
  share_cores();
  int provided = 0;
  if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    return api_fail(err, LATHE_EUSER, "lathe_dist_init: MPI_Init failed");
  MPI_Comm_dup(MPI_COMM_WORLD, &D.comm);
  MPI_Comm_dup(MPI_COMM_WORLD, &D.comm2);
  MPI_Comm_dup(MPI_COMM_WORLD, &D.probe);
  MPI_Comm_set_errhandler(D.comm, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(D.comm2, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(D.probe, MPI_ERRORS_RETURN);
  MPI_Comm_rank(D.comm, &D.rank);
  MPI_Comm_size(D.comm, &D.size);
  D.reply = calloc((size_t)D.size, sizeof(int));
  D.answers = malloc(sizeof *D.answers * (size_t)D.size);
  if (!D.reply || !D.answers) return api_fail(err, LATHE_ENOMEM, "lathe_dist_init: out of memory");
  for (int r = 0; r < D.size; r++) D.answers[r] = MPI_REQUEST_NULL;
  MPI_Irecv(&D.asked, 1, MPI_INT, MPI_ANY_SOURCE, TAG_ASK, D.probe, &D.ask);
  const char *to = getenv("LATHE_COMM_TIMEOUT");
  if (to && *to) lathe_dist_set_timeout(strtod(to, NULL));
  dshm_waiter w = {.ctx = &D, .pause = shm_pause, .fail = mpi_fail};
  D.shm = dshm_open(D.comm, &w);
  D_inited = 1;
  lathe_rt_comm c = {.rank = D.rank, .size = D.size, .ctx = &D, .allreduce = mpi_allreduce,
                     .reduce_scatter = mpi_reduce_scatter, .allgather = mpi_allgather, .fail = mpi_fail,
                     .start = mpi_start, .wait = mpi_wait, .progress = mpi_progress,
                     .send = mpi_send, .recv = mpi_recv};
  lathe_rt_comm_install(&c);
  return 0;
}

void lathe_dist_finalize(void) {
  if (!D_inited) return;
  lathe_rt_comm_install(NULL);
  dshm_close(D.shm);
  free(D.a), free(D.b);
  for (int i = 0; i < D.capq; i++) free(D.q[i].pad);
  free(D.q);
  /* the probes: nothing is asked any more (every rank is here, past its last wait) */
  MPI_Cancel(&D.ask);
  MPI_Wait(&D.ask, MPI_STATUS_IGNORE);
  for (int r = 0; r < D.size; r++)
    if (D.answers[r] != MPI_REQUEST_NULL) MPI_Wait(&D.answers[r], MPI_STATUS_IGNORE);
  free(D.reply), free(D.answers);
  MPI_Comm_free(&D.probe);
  MPI_Comm_free(&D.comm);
  MPI_Comm_free(&D.comm2);
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
void api_dist_reserve(const lathe_program *step) { (void)step; }

#endif

int lathe_dist_rank(void) { return lathe_rt_comm_rank(); }

#ifdef LATHE_HAVE_MPI
void lathe_dist_set_timeout(double seconds) { D_timeout = seconds > 0 ? seconds : 0; }
#else
void lathe_dist_set_timeout(double seconds) { (void)seconds; }
#endif
int lathe_dist_size(void) { return lathe_rt_comm_size(); }
