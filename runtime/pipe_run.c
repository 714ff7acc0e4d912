/* pipe_run.c -- pipeline inference (lathe run --pipeline K; lathe.h,
 * docs/distributed.md): rank s compiles stage s of the model's forward pass
 * (passes/stage.h, the cut the FLOPs pick), loads its part of the weights
 * and runs: the stage's op recv takes the activation the previous stage's
 * op send sends. The last stage holds the model's outputs. */
#include <stdlib.h>
#include <string.h>

#include "passes/stage.h"
#include "runtime/program.h"
#include "runtime/runtime.h"
#include "runtime/train.h"
#include "rt/lathe_rt.h"

static lathe_program *compile_stage(lathe_model *m, const lathe_options *o, int k, int s, lathe_error *err) {
  lathe_program *p = api_program_lower(m, o, err);
  if (!p) return NULL;
  st_plan pl;
  char msg[1024];
  if (st_plan_make(&p->g, k, 0, &pl, msg, sizeof msg) || st_extract(&p->g, &pl, s, ST_P2P, msg, sizeof msg)) {
    lathe_program_free(p);
    api_fail(err, LATHE_EUSER, "%s", msg);
    return NULL;
  }
  p->pipe_stage = 1;
  return api_program_finish(p, err) ? NULL : p;
}

int lathe_run_pipeline(lathe_model *m, const lathe_options *o, int stages, const char *weights,
                       const char *const *names, const lathe_tensor *ins, int nins, lathe_program **out,
                       lathe_error *err) {
  if (out) *out = NULL;
  if (!m || !weights || !out || (nins > 0 && (!names || !ins)))
    return api_fail(err, LATHE_EUSER, "lathe_run_pipeline: the model, the weights, the inputs and out are required");
  int ranks = lathe_rt_comm_size(), s = lathe_rt_comm_rank();
  if (stages < 2 || ranks != stages)
    return api_fail(err, LATHE_EUSER, "--pipeline %d needs exactly %d ranks (mpirun -np %d), one per stage; the job "
                    "has %d", stages, stages, stages, ranks);
  lathe_options po = {0};
  if (o) po = *o;
  lathe_program *p = compile_stage(m, &po, stages, s, err);
  if (!p) return err->code ? err->code : LATHE_EINTERNAL;
  int rc = lathe_weights_load(p, weights, err);
  for (int i = 0; rc == 0 && i < nins; i++)
    if (ir_find_input(&p->g, names[i]) >= 0) rc = lathe_set_input(p, names[i], &ins[i], err);
  if (rc == 0) rc = lathe_run(p, err); /* its ops recv and send move the activations */
  if (rc == 0 && s == stages - 1) {
    *out = p;
    return 0;
  }
  lathe_program_free(p);
  return rc;
}
