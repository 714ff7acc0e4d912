/* rt_norm.c -- lathe_rt_norm: the channel normalisations' CPU kernels,
 * rt/rt_norm.h's kernels in float (statistics in double, as the reference
 * interpreter). Groups are independent: split over the pool when there is
 * enough work, with a split fixed by the shapes, so results do not depend on
 * the schedule. */
#include <string.h>

#include "rt/lathe_rt.h"
#include "rt/threadpool.h"

#define NT float
#define NK(name) rt_norm_##name
#include "rt/rt_norm.h"

enum { NORM_GRAIN = 1 << 14 }; /* elements per part at least */

typedef struct {
  rt_norm_geom g;
  float *out;
  const float *x, *w, *b, *rm, *rv, *dy;
  int what;
} norm_job;

static void norm_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const norm_job *j = ctx;
  switch (j->what) {
  case LATHE_RT_NORM_FWD: rt_norm_fwd(&j->g, j->x, j->w, j->b, j->rm, j->rv, j->out, lo, hi); break;
  case LATHE_RT_NORM_DX: rt_norm_dx(&j->g, j->x, j->w, j->dy, j->out, lo, hi); break;
  default: rt_norm_dwb(&j->g, j->x, j->dy, j->what == LATHE_RT_NORM_DB, j->out, lo, hi); break;
  }
}

void lathe_rt_norm(float *out, const float *x, const float *w, const float *b, const float *rm, const float *rv,
                   const float *dy, int64_t what, int64_t N, int64_t C, int64_t S, int64_t nb, int64_t cb,
                   int64_t center, int64_t eps_bits) {
  norm_job j = {.out = out, .x = x, .w = w, .b = b, .rm = rm, .rv = rv, .dy = dy, .what = (int)what};
  j.g.N = N, j.g.C = C, j.g.S = S, j.g.nb = nb, j.g.cb = cb, j.g.center = (int)center;
  j.g.ngroups = (N / nb) * (C / cb);
  memcpy(&j.g.eps, &eps_bits, sizeof j.g.eps);
  int sums = what == LATHE_RT_NORM_DW || what == LATHE_RT_NORM_DB;
  if (sums) memset(out, 0, sizeof(float) * (size_t)C);
  /* dw and db of groups that share channels (groupnorm, rmsnorm) add into
   * the same sums: one part */
  int64_t per = nb * cb * S, grain = per >= NORM_GRAIN ? 1 : NORM_GRAIN / per;
  if ((sums && nb != N) || j.g.ngroups < 2 * grain) norm_part(&j, 0, j.g.ngroups, 0);
  else rt_pool_for(j.g.ngroups, grain, norm_part, &j);
}
