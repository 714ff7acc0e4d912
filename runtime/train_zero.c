/* train_zero.c -- ZeRO-1 checkpoints (docs/distributed.md): under
 * --zero1 each rank holds 1/N of every optimizer state (ir_param.full,
 * passes/optimizer.c); before rank 0 writes a checkpoint every rank sends
 * its slices, so the file holds the whole state, as one process writes it,
 * and any number of ranks (or one process) resumes from it. */
#include <stdlib.h>
#include <string.h>

#include "runtime/train.h"
#include "rt/lathe_rt.h"

int tr_zero_gather(const lathe_program *p, float ***full, lathe_error *err) {
  *full = NULL;
  int np = p->g.nparams, any = 0;
  for (int i = 0; i < np; i++) any |= p->g.params[i].full.rank > 0;
  if (!any) return 0;
  float **f = calloc((size_t)np, sizeof *f);
  if (!f) return api_fail(err, LATHE_ENOMEM, "out of memory");
  int ranks = lathe_rt_comm_size();
  for (int i = 0; i < np; i++) {
    lathe_tensor v;
    if (p->g.params[i].full.rank == 0 || lathe_param_view(p, i, &v)) continue;
    int64_t m = lathe_tensor_numel(&v);
    f[i] = malloc(sizeof(float) * (size_t)(m * ranks) + 1);
    /* every rank gathers, whatever happens: a rank that stopped here alone would hang the others */
    if (!f[i] || lathe_rt_comm_gather(v.data, f[i], m, 0)) {
      tr_zero_free(p, f);
      lathe_dist_abort("out of memory gathering the optimizer state");
      return api_fail(err, LATHE_ENOMEM, "out of memory");
    }
  }
  *full = f;
  return 0;
}

void tr_zero_free(const lathe_program *p, float **full) {
  if (!full) return;
  for (int i = 0; i < p->g.nparams; i++) free(full[i]);
  free(full);
}
