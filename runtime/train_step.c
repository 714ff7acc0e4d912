/* train_step.c -- a training-step program (lathe_compile_train): the model's
 * forward graph, its backward graph (passes/autodiff.c) and the optimizer
 * update (passes/optimizer.c) compiled as one program. Each lathe_run takes
 * one step: it sets the per-step scalars (learning rate from the schedule,
 * bias corrections, noise std, random-stream counter), runs, refuses a
 * non-finite result, and commits the updated weights and optimizer state. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "passes/optimizer.h"
#include "passes/passes.h"
#include "runtime/runtime.h"
#include "runtime/train.h"
#include "rt/lathe_rt.h"

static double dflt(double v, double d) { return isnan(v) ? d : v; }

void tr_settings_defaults(ir_train *t) {
  static const double lr_of[] = {[IR_OPT_SGD] = 1e-2, [IR_OPT_ADAM] = 1e-3, [IR_OPT_ADAMW] = 1e-3,
                                 [IR_OPT_RMSPROP] = 1e-2};
  if (t->opt == IR_OPT_NONE) t->opt = IR_OPT_ADAM;
  t->lr = dflt(t->lr, lr_of[t->opt]);
  t->beta1 = dflt(t->beta1, 0.9);
  t->beta2 = dflt(t->beta2, 0.999);
  t->eps = dflt(t->eps, 1e-8);
  t->weight_decay = dflt(t->weight_decay, t->opt == IR_OPT_ADAMW ? 1e-2 : 0);
  t->alpha = dflt(t->alpha, 0.99);
  t->momentum = dflt(t->momentum, 0);
  if (t->nesterov < 0) t->nesterov = 0;
  t->sched_gamma = dflt(t->sched_gamma, 0.1);
  t->sched_every = dflt(t->sched_every, 1);
  t->sched_warmup = dflt(t->sched_warmup, 0);
  t->sched_min_lr = dflt(t->sched_min_lr, 0);
  if (t->epochs < 1) t->epochs = 10;
  if (t->batch < 1) t->batch = 32;
  if (t->seed < 0) t->seed = 0;
  t->l1 = dflt(t->l1, 0);
  t->l2 = dflt(t->l2, 0);
  t->clip_norm = dflt(t->clip_norm, 0);
  t->grad_noise = dflt(t->grad_noise, 0);
  if (t->nsplit < 2) t->split[0] = 0.8, t->split[1] = 0.1, t->split[2] = 0.1;
  else if (t->nsplit == 2) t->split[2] = 0;
}

void tr_rt_sched(const ir_train *t, lathe_rt_sched *s) {
  static const int64_t kind[] = {[IR_SCHED_CONSTANT] = LATHE_RT_SCHED_CONSTANT, [IR_SCHED_STEP] = LATHE_RT_SCHED_STEP,
                                 [IR_SCHED_COSINE] = LATHE_RT_SCHED_COSINE,
                                 [IR_SCHED_EXPONENTIAL] = LATHE_RT_SCHED_EXPONENTIAL};
  *s = (lathe_rt_sched){.kind = (int)t->sched >= 0 && t->sched <= IR_SCHED_EXPONENTIAL ? kind[t->sched] : 0,
                        .lr = t->lr, .gamma = t->sched_gamma, .every = t->sched_every, .warmup = t->sched_warmup,
                        .min_lr = t->sched_min_lr};
}

/* Learning rate at 1-based step `step` of `total` (0: no cosine decay):
 * liblathe_rt's schedule, which emitted training steps use too. */
static double schedule_lr(const ir_train *t, int64_t step, int64_t total, int64_t per_epoch) {
  lathe_rt_sched s;
  tr_rt_sched(t, &s);
  return lathe_rt_sched_lr(&s, step, total, per_epoch);
}

double tr_step_lr(const lathe_program *p, int64_t step) {
  return schedule_lr(&p->train, step, p->total_steps, p->steps_per_epoch);
}

static lathe_program *as_step(lathe_program *p, const ir_train *t, lathe_error *err);

lathe_program *api_compile_train(lathe_model *m, const lathe_options *o, const ir_train *settings,
                                 lathe_error *err) {
  lathe_program *p = api_program_lower(m, o, err);
  if (!p) return NULL;
  if (p->g.loss < 0) {
    api_fail(err, LATHE_EUSER, "model '%s' has no loss to train", p->g.model_name);
    lathe_program_free(p);
    return NULL;
  }
  /* Training keeps f32 weights and f32 gradients; an f16/bf16 parameter (a
   * layer on an f16 input) would need mixed precision, which the backward
   * and the optimizer do not do. Refuse it where the layer is. */
  for (int i = 0; i < p->g.nparams; i++) {
    const ir_param *pr = &p->g.params[i];
    if (pr->dtype == IR_F32 || !ir_dtype_is_float(pr->dtype)) continue;
    const ir_loc *l = &p->g.nodes[pr->node].loc;
    api_fail(err, LATHE_EUSER, "%s:%d:%d: error: cannot train parameter '%s': it is %s (the layer reads %s data); "
             "training needs f32 parameters: declare the model's inputs f32", l->file ? l->file : p->g.model_name,
             l->line, l->col, pr->name, ir_dtype_name(pr->dtype), ir_dtype_name(pr->dtype));
    lathe_program_free(p);
    return NULL;
  }
  ir_train t = settings ? *settings : p->g.train;
  if (!settings) tr_settings_defaults(&t);
  p->g.train = t;
  char msg[1024];
  if (opt_prepare_training(&p->g, msg, sizeof msg) || ad_backward(&p->g, NULL, 0, 0, msg, sizeof msg) ||
      opt_append(&p->g, &t, msg, sizeof msg)) {
    lathe_program_free(p);
    api_fail(err, LATHE_EUSER, "%s", msg);
    return NULL;
  }
  if (api_program_finish(p, err)) return NULL;
  return as_step(p, &t, err);
}

/* A compiled step: which outputs are updates ("new.X") to commit into X. */
static lathe_program *as_step(lathe_program *p, const ir_train *t, lathe_error *err) {
  p->is_train = 1;
  p->train = *t;
  p->commit = malloc(sizeof(int) * ((size_t)p->g.noutputs + 1));
  if (!p->commit) {
    lathe_program_free(p);
    api_fail(err, LATHE_ENOMEM, "out of memory");
    return NULL;
  }
  size_t pl = strlen(OPT_NEW_PREFIX);
  for (int k = 0; k < p->g.noutputs; k++) {
    const char *nm = p->g.outputs[k].name;
    p->commit[k] = strncmp(nm, OPT_NEW_PREFIX, pl) == 0 ? ir_find_param(&p->g, nm + pl) : -1;
  }
  return p;
}

/* An update program (a pipeline stage's, runtime/train_pipe.c): p's graph
 * is replaced by its parameters, an input "grad.X" for each trainable X
 * (the gradient the stage accumulated over its micro-batches) and the
 * optimizer update of t on them; one api_update_run = one update. */
lathe_program *api_compile_update(lathe_program *p, const ir_train *t, lathe_error *err) {
  ir_graph ng;
  ir_graph_init(&ng, p->g.A, p->g.model_name);
  int n = p->g.nparams;
  int *grads = ar_alloc(p->g.A, sizeof(int) * (size_t)(n + 1));
  for (int i = 0; i < n; i++) {
    const ir_param *q = &p->g.params[i];
    ir_loc loc = p->g.nodes[q->node].loc;
    ir_add_param(&ng, q->name, q->dtype, &q->shape, q->init, q->std, q->fan_in, q->fan_out, loc);
    ng.params[i].state = q->state, ng.params[i].buffer = q->buffer, ng.params[i].stored = q->stored;
    ng.params[i].from_quant = q->from_quant, ng.params[i].kept_why = q->kept_why;
    int trainable = q->dtype == IR_F32 && !q->state && !q->buffer;
    grads[i] = trainable ? ir_add_input(&ng, ar_printf(p->g.A, "grad.%s", q->name), IR_F32, &q->shape, 0, loc) : -1;
  }
  ng.grads = grads;
  ng.train = *t;
  ng.no_fusion = p->g.no_fusion;
  p->g = ng;
  char msg[1024];
  if (opt_append(&p->g, t, msg, sizeof msg)) {
    lathe_program_free(p);
    api_fail(err, LATHE_EUSER, "%s", msg);
    return NULL;
  }
  if (api_program_finish(p, err)) return NULL;
  return as_step(p, t, err);
}

lathe_program *lathe_compile_train(lathe_model *m, const lathe_options *opt, lathe_error *err) {
  if (!m) { api_null(err, "lathe_compile_train", "the model"); return NULL; }
  if (api_check_options(err, "lathe_compile_train", opt)) return NULL;
  lathe_options o = {0};
  if (opt) o = *opt;
  return api_compile_train(m, &o, NULL, err);
}

static void set_scalar(lathe_program *p, const char *name, lathe_dtype dt, double v) {
  if (ir_find_input(&p->g, name) < 0) return;
  float f = (float)v;
  int64_t i = (int64_t)v;
  lathe_tensor t = {.dtype = dt, .rank = 0, .data = dt == LATHE_I64 ? (void *)&i : (void *)&f};
  lathe_error e = {0};
  lathe_set_input(p, name, &t, &e);
  lathe_error_clear(&e);
}

static void set_step_scalars(lathe_program *p, int64_t step) {
  const ir_train *t = &p->train;
  set_scalar(p, OPT_IN_LR, LATHE_F32, schedule_lr(t, step, p->total_steps, p->steps_per_epoch));
  set_scalar(p, OPT_IN_BC1, LATHE_F32, 1 - pow(t->beta1, (double)step));
  set_scalar(p, OPT_IN_BC2, LATHE_F32, 1 - pow(t->beta2, (double)step));
  /* Annealed Gaussian gradient noise (Neelakantan et al. 2015): var = eta / (1 + t)^0.55. */
  set_scalar(p, OPT_IN_NOISE, LATHE_F32, sqrt(t->grad_noise / pow(1.0 + (double)step, 0.55)));
  set_scalar(p, OPT_IN_RNG, LATHE_I64, (double)step);
}

/* Every "new.X" output is checked before any is copied into X, so a
 * diverging step leaves the weights as they were. */
/* Whether n floats are all finite: an exponent test on the bits, which
 * vectorises (isfinite per element does not), so the check costs about a
 * memcpy's read. In blocks of a fixed length: at -O2 GCC vectorises only
 * loops whose count it knows; written as one loop over n, the test stayed
 * scalar and took 40 us a step of the digits MLP under --zero1 (whose
 * gathered weights no kernel checks), 6% of the step. */
enum { FINITE_BLOCK = 64 };
static uint32_t bad_bits(const float *v, int n) {
  uint32_t bad = 0;
  for (int k = 0; k < n; k++) {
    uint32_t b;
    memcpy(&b, &v[k], sizeof b);
    bad |= (b & 0x7f800000u) == 0x7f800000u;
  }
  return bad;
}

static int all_finite(const float *v, int64_t n) {
  uint32_t bad = 0;
  int64_t k = 0;
  for (; k + FINITE_BLOCK <= n; k += FINITE_BLOCK) bad |= bad_bits(v + k, FINITE_BLOCK);
  return !(bad | bad_bits(v + k, (int)(n - k)));
}

static int update_finite(const lathe_program *p, int k) {
  int node = p->g.outputs[k].node;
  if (p->cux && p->g.nodes[node].dtype == IR_F32) return all_finite(p->outbufs[k], ir_numel(&p->g.nodes[node].shape));
  if (!p->cg || p->g.nodes[node].dtype != IR_F32) return api_output_finite(p, k);
  /* the kernel that wrote it checked it, and saw nothing wrong anywhere */
  if (cg_output_checked(p->cg, k) && !cg_run_nonfinite(p->cg)) return 1;
  return all_finite(p->outbufs[k], ir_numel(&p->g.nodes[node].shape));
}

/* Nothing is written until every update is known finite, so a bad step
 * changes no weight and no optimizer state. An update's buffer (the same
 * size: numel + 1 floats, both allocated by this program) becomes the
 * parameter's, and the old parameter buffer receives the next update, so a
 * lathe_param_view is valid until the next step (lathe.h). */
static int commit_step(lathe_program *p, int64_t step, lathe_error *err) {
  float loss = p->g.loss >= 0 ? api_loss(p) : 0; /* an update program has no loss */
  if (!isfinite(loss))
    return api_fail(err, LATHE_EUSER, "training stopped at step %lld: the loss is %s", (long long)step,
                    isnan(loss) ? "nan" : "inf");
  for (int k = 0; k < p->g.noutputs; k++) {
    int i = p->commit[k];
    if (i >= 0 && !update_finite(p, k))
      return api_fail(err, LATHE_EUSER, "training stopped at step %lld: parameter '%s' became non-finite",
                      (long long)step, p->g.params[i].name);
  }
  for (int k = 0; k < p->g.noutputs; k++) {
    int i = p->commit[k], node = p->g.outputs[k].node;
    if (i < 0) continue;
    if ((p->cg || p->cux) && p->g.nodes[node].dtype == IR_F32) { /* f32 to f32: the buffers change places, no copy */
      void *w = p->params[i];
      p->params[i] = p->outbufs[k];
      p->outbufs[k] = w;
    } else
      api_read_output(p, k, p->params[i]);
  }
  /* the cuda backend keeps the committed updates on the device too */
  char msg[512];
  for (int k = 0; p->cux && k < p->g.noutputs; k++)
    if (p->commit[k] >= 0 && cu_exec_feedback(p->cux, k, p->commit[k], msg, sizeof msg))
      return api_fail(err, LATHE_EUSER, "%s", msg);
  return 0;
}

int api_train_run(lathe_program *p, lathe_error *err) {
  int64_t step = p->step + 1;
  set_step_scalars(p, step);
  p->committed = 0;
  int rc = api_run_core(p, err);
  if (rc == 0) rc = commit_step(p, step, err);
  if (rc == 0) p->committed = p->cg != NULL || p->cux != NULL;
  if (rc == 0) p->step = step;
  return rc;
}
