/* dist_shm.c -- the overlapped gradient sums (lathe_rt_allreduce_start ..
 * lathe_rt_comm_wait) between ranks of one machine, through memory they
 * share (MPI_Win_allocate_shared) instead of MPI messages.
 *
 * Why: the digits MLP's step is about 0.7 ms per rank, and its 330 kB
 * bucket through MPI cost a packed copy, an alltoall, the sum, an
 * allgather, a copy out and a scaling pass, with two points where a rank
 * waits for the other: about 20% of the step. Here a start copies the
 * bucket's gradients into this rank's part of the shared window and
 * publishes a generation number; the wait, once every rank has published,
 * adds the ranks' parts in rank order 0, 1, ..., R-1 straight into the
 * output, scaled in the same pass. One point of waiting, three passes over
 * the bucket, and the same bits as the MPI path (the same additions in the
 * same order, then the same multiplication), on every rank, whatever the
 * timing.
 *
 * Every rank reads every rank's part (R x the bucket), which for the few
 * ranks a machine holds costs less than a second exchange would.
 *
 * Reuse without locks: each part has two buffers, generation g in buffer
 * g & 1. A rank writes generation g + 1 only after its wait for g, which
 * saw every rank's g, and a rank publishes g only after its wait for g - 1:
 * so when a rank overwrites buffer (g + 1) & 1 = (g - 1) & 1, every rank
 * has finished reading generation g - 1 from it. */
#ifdef LATHE_HAVE_MPI /* a build without MPI has nothing here */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/dist_shm.h"

enum { SHM_LINE = 64, SHM_BLOCK = 1024 };

/* One bucket's place, the same slot on every rank: a window in which each
 * rank's segment is [published generation, padded to a cache line]
 * [buffer 0][buffer 1], cap values each. */
typedef struct {
  MPI_Win win;
  int64_t cap;
  uint64_t gen;     /* sums started in this slot (the same count on every rank) */
  const float *key; /* the started sum's key while it is in flight, else NULL */
  char **seg;       /* each rank's segment */
} shm_slot;

struct dshm {
  MPI_Comm node;
  int rank, size;
  dshm_waiter w;
  shm_slot *slot;
  int nslot, next; /* next: the slot the next start takes (a step's starts in order) */
  shm_slot blk;    /* the blocking collectives' one slot (dshm_reduce_scatter, dshm_allgather) */
};

static void check(dshm *s, int rc, const char *call) {
  if (rc == MPI_SUCCESS) return;
  char msg[128];
  snprintf(msg, sizeof msg, "%s failed (shared-memory gradient sums)", call);
  s->w.fail(s->w.ctx, msg);
}

dshm *dshm_open(MPI_Comm comm, const dshm_waiter *w) {
  const char *e = getenv("LATHE_COMM_SHM");
  int size = 0, nsize = 0, want = !(e && *e && strcmp(e, "0") == 0), all = 0;
  MPI_Comm node;
  MPI_Comm_size(comm, &size);
  if (size < 2 || MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) != MPI_SUCCESS) return NULL;
  MPI_Comm_size(node, &nsize);
  want = want && nsize == size;
  /* every rank must take the same path, whatever its own environment says */
  MPI_Allreduce(&want, &all, 1, MPI_INT, MPI_MIN, comm);
  dshm *s = all ? calloc(1, sizeof *s) : NULL;
  if (!s) {
    MPI_Comm_free(&node);
    return NULL;
  }
  s->node = node, s->w = *w;
  MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN);
  MPI_Comm_rank(node, &s->rank);
  MPI_Comm_size(node, &s->size);
  return s;
}

static _Atomic uint64_t *published(const shm_slot *sl, int r) { return (_Atomic uint64_t *)(void *)sl->seg[r]; }

static float *part(const shm_slot *sl, int r, uint64_t gen) {
  return (float *)(void *)(sl->seg[r] + SHM_LINE) + (size_t)(gen & 1) * (size_t)sl->cap;
}

static void slot_free(shm_slot *sl) {
  if (!sl->seg) return;
  MPI_Win_free(&sl->win);
  free(sl->seg);
  sl->seg = NULL;
}

/* Maps every rank's pages of the slot into this process now, at set-up,
 * rather than in the first two steps (one per buffer): on the digits MLP
 * those faults (the owner's first writes, every reader's first reads of a
 * page of shared memory) made each of the first two steps wait about 2 ms
 * in its sum, on both ranks: 4 ms of the 11 ms that 100 steps spent in
 * collectives. The owner zeroed its buffers before the barrier. */
static void touch_parts(const dshm *s, const shm_slot *sl) {
  volatile float sink = 0;
  for (int r = 0; r < s->size; r++) {
    const float *p = part(sl, r, 0);
    for (int64_t i = 0; i < 2 * sl->cap; i += 1024) sink += p[i];
  }
  (void)sink;
}

/* (Re)allocates sl for n values: collective, and it happens at the same
 * call on every rank (the same programs make the same calls). */
static void slot_alloc(dshm *s, shm_slot *sl, int64_t n) {
  slot_free(sl);
  MPI_Info info;
  MPI_Info_create(&info);
  MPI_Info_set(info, "alloc_shared_noncontig", "true"); /* each rank's part in pages near it */
  MPI_Aint bytes = SHM_LINE + (MPI_Aint)(2 * sizeof(float)) * (MPI_Aint)n;
  bytes = (bytes + SHM_LINE - 1) / SHM_LINE * SHM_LINE;
  char *mine = NULL;
  int rc = MPI_Win_allocate_shared(bytes, 1, info, s->node, &mine, &sl->win);
  MPI_Info_free(&info);
  check(s, rc, "MPI_Win_allocate_shared");
  sl->seg = calloc((size_t)s->size, sizeof *sl->seg);
  if (!sl->seg) s->w.fail(s->w.ctx, "out of memory for the shared-memory gradient sums");
  for (int r = 0; r < s->size; r++) {
    MPI_Aint sz = 0;
    int du = 0;
    check(s, MPI_Win_shared_query(sl->win, r, &sz, &du, &sl->seg[r]), "MPI_Win_shared_query");
  }
  sl->cap = n, sl->gen = 0, sl->key = NULL;
  atomic_store_explicit(published(sl, s->rank), 0, memory_order_release);
  memset(part(sl, s->rank, 0), 0, sizeof(float) * 2 * (size_t)n); /* both buffers: see touch_parts */
  check(s, MPI_Barrier(s->node), "MPI_Barrier"); /* every header is 0 before anyone publishes */
  touch_parts(s, sl);
}

/* Slot i (a step's i-th started sum), for at least n values. */
static shm_slot *slot_for(dshm *s, int i, int64_t n) {
  if (i >= s->nslot) {
    shm_slot *p = realloc(s->slot, sizeof *p * (size_t)(i + 1));
    if (!p) s->w.fail(s->w.ctx, "out of memory for the shared-memory gradient sums");
    memset(p + s->nslot, 0, sizeof *p * (size_t)(i + 1 - s->nslot));
    s->slot = p, s->nslot = i + 1;
  }
  shm_slot *sl = &s->slot[i];
  if (!sl->seg || sl->cap < n) slot_alloc(s, sl, n);
  return sl;
}

void dshm_reserve(dshm *s, const int64_t *n, int k) {
  for (int i = 0; i < k; i++) slot_for(s, i, n[i]);
}

void dshm_start(dshm *s, const float *key, float *const *in, const int64_t *n, int64_t k) {
  int64_t total = 0;
  for (int64_t j = 0; j < k; j++) total += n[j];
  shm_slot *sl = slot_for(s, s->next++, total);
  uint64_t g = ++sl->gen;
  float *dst = part(sl, s->rank, g);
  for (int64_t j = 0, off = 0; j < k; off += n[j], j++)
    if (n[j] > 0) memcpy(dst + off, in[j], sizeof(float) * (size_t)n[j]);
  sl->key = key;
  atomic_store_explicit(published(sl, s->rank), g, memory_order_release);
}

/* out = (a + b) * scale, or a + b for scale NULL: each element rounded
 * as its own float addition, then its own multiply. restrict, so that it
 * vectorises (-O3, CMakeLists.txt): written as passes of out = a, out +=
 * b, out *= scale that the compiler had to keep scalar (the buffers might
 * overlap), the sum took 90 us of the digits MLP's 0.85 ms 2-rank step. */
static void add_pair(float *restrict out, const float *restrict a, const float *restrict b, int64_t n,
                     const float *scale) {
  if (!scale) {
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    return;
  }
  float s = *scale;
  for (int64_t i = 0; i < n; i++) out[i] = (a[i] + b[i]) * s;
}

/* out += b (then * scale): the third and later ranks */
static void add_into(float *restrict out, const float *restrict b, int64_t n, const float *scale) {
  if (!scale) {
    for (int64_t i = 0; i < n; i++) out[i] += b[i];
    return;
  }
  float s = *scale;
  for (int64_t i = 0; i < n; i++) out[i] = (out[i] + b[i]) * s;
}

/* out = (src[0] + src[1] + ... + src[R-1]) * scale (no multiply for scale
 * NULL), a cache-sized block at a time: every element's additions in rank
 * order, then its one multiply (the MPI path's order, so the same bits).
 * R >= 2. */
static void sum_parts(float *out, const float *const *src, int R, int64_t n, const float *scale) {
  for (int64_t lo = 0; lo < n; lo += SHM_BLOCK) {
    int64_t len = n - lo < SHM_BLOCK ? n - lo : SHM_BLOCK;
    add_pair(out + lo, src[0] + lo, src[1] + lo, len, R == 2 ? scale : NULL);
    for (int r = 2; r < R; r++) add_into(out + lo, src[r] + lo, len, r == R - 1 ? scale : NULL);
  }
}

/* Until every rank has published generation sl->gen in sl. */
static void wait_all(dshm *s, const shm_slot *sl, const char *what) {
  for (int r = 0; r < s->size; r++) {
    dshm_pause p = {0};
    while (atomic_load_explicit(published(sl, r), memory_order_acquire) < sl->gen) s->w.pause(s->w.ctx, &p, what);
  }
}

void dshm_wait(dshm *s, const float *key, float *out, int64_t total, float scale) {
  int i = 0;
  while (i < s->next && s->slot[i].key != key) i++;
  if (i == s->next) s->w.fail(s->w.ctx, "internal error: waiting for a sum that was not started");
  shm_slot *sl = &s->slot[i];
  const float *src[64], **srcs = s->size <= 64 ? src : malloc(sizeof *srcs * (size_t)s->size);
  if (!srcs) s->w.fail(s->w.ctx, "out of memory for the shared-memory gradient sums");
  for (int r = 0; r < s->size; r++) srcs[r] = part(sl, r, sl->gen);
  wait_all(s, sl, "a shared-memory gradient sum");
  sum_parts(out, srcs, s->size, total, &scale);
  if (srcs != src) free(srcs);
  sl->key = NULL;
  int busy = 0;
  for (int k = 0; k < s->next; k++) busy |= s->slot[k].key != NULL;
  if (!busy) s->next = 0; /* the step's buckets are all in: the next step starts at slot 0 again */
}

/* ---- the blocking collectives: --zero1's reduce-scatters and all-gathers ----
 * All of them take turns in one slot: every rank makes the same calls in
 * the same order, and each call is whole on a rank (write its part, publish,
 * wait for every rank's, read) before its next one starts, so the two
 * buffers' argument above holds call by call: a rank writes buffer
 * (g + 1) & 1 only after every rank published g, i.e. finished reading g - 1. */

/* The next generation's buffer of this rank's part, with room for bytes; a
 * new size is collective, and every rank asks for it at the same call. */
static char *blk_begin(dshm *s, int64_t bytes) {
  shm_slot *sl = &s->blk;
  int64_t n = (bytes + (int64_t)sizeof(float) - 1) / (int64_t)sizeof(float);
  if (!sl->seg || sl->cap < n) slot_alloc(s, sl, n);
  return (char *)part(sl, s->rank, ++sl->gen);
}

static void blk_publish(dshm *s) {
  atomic_store_explicit(published(&s->blk, s->rank), s->blk.gen, memory_order_release);
  wait_all(s, &s->blk, "a shared-memory collective");
}

static const char *blk_part(const dshm *s, int r) { return (const char *)part(&s->blk, r, s->blk.gen); }

void dshm_reserve_blocking(dshm *s, int64_t bytes) {
  int64_t n = (bytes + (int64_t)sizeof(float) - 1) / (int64_t)sizeof(float);
  if (n > 0 && (!s->blk.seg || s->blk.cap < n)) slot_alloc(s, &s->blk, n);
}

/* Only the other ranks' chunks go into this rank's part (each reads its own
 * chunk there): this rank's own chunk is added straight from in, unless out
 * overlaps in (the sum's loops take their operands as restrict). */
void dshm_reduce_scatter(dshm *s, const void *in, void *out, int64_t m, int f64) {
  size_t es = f64 ? 8 : 4, cb = (size_t)m * es;
  int R = s->size, me = s->rank;
  const char *a = in, *o = out;
  int own = o < a + (size_t)R * cb && a < o + cb; /* this rank's chunk too goes through its part */
  char *dst = blk_begin(s, (int64_t)cb * R);
  for (int r = 0; r < R; r++)
    if ((r != me || own) && cb) memcpy(dst + r * cb, a + r * cb, cb);
  blk_publish(s);
  const void *src[64], **srcs = R <= 64 ? src : malloc(sizeof *srcs * (size_t)R);
  if (!srcs) s->w.fail(s->w.ctx, "out of memory for the shared-memory collectives");
  for (int r = 0; r < R; r++) srcs[r] = r == me && !own ? a + me * cb : blk_part(s, r) + me * cb;
  if (!f64) {
    sum_parts(out, (const float *const *)srcs, R, m, NULL);
  } else { /* the blocking sums' doubles (lathe_rt_comm_sum: a few values), in rank order */
    double *od = out;
    for (int64_t i = 0; i < m; i++) {
      double v = ((const double *)srcs[0])[i];
      for (int r = 1; r < R; r++) v += ((const double *)srcs[r])[i];
      od[i] = v;
    }
  }
  if (srcs != src) free(srcs);
}

void dshm_allgather(dshm *s, const void *in, void *out, int64_t m, int f64) {
  size_t cb = (size_t)m * (f64 ? 8 : 4);
  char *dst = blk_begin(s, (int64_t)cb);
  if (cb) memcpy(dst, in, cb);
  blk_publish(s);
  for (int r = 0; r < s->size; r++) /* this rank's own chunk too from its part: in may lie inside out */
    if (cb) memcpy((char *)out + r * cb, blk_part(s, r), cb);
}

void dshm_close(dshm *s) {
  if (!s) return;
  slot_free(&s->blk);
  for (int i = 0; i < s->nslot; i++) slot_free(&s->slot[i]);
  free(s->slot);
  MPI_Comm_free(&s->node);
  free(s);
}

#else
typedef int dshm_unused; /* ISO C wants a translation unit to declare something */
#endif
