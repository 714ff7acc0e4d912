/* train.c -- lathe_train and lathe_eval. A training step is one compiled
 * program: the model's forward graph, its backward graph (passes/autodiff.c)
 * and the optimizer update (passes/optimizer.c). The loop here feeds it
 * batches and the per-step scalars (learning rate from the schedule, bias
 * corrections, noise std, random-stream counter), commits the updated
 * weights and optimizer state, evaluates the validation split after every
 * epoch with a forward-only program, keeps the best weights, stops early,
 * checkpoints atomically and, at the very end, evaluates the test split once
 * on the best weights. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "passes/comm.h"
#include "passes/optimizer.h"
#include "passes/passes.h"
#include "passes/stage.h"
#include "runtime/runtime.h"
#include "runtime/train.h"
#include "rt/lathe_rt.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- settings: the train block, the command line, PyTorch's defaults ---- */

/* The block's settings: read from a graph lowered with every dim = 1. */
static int read_settings(lathe_model *m, const lathe_train_options *o, ir_train *t, lathe_error *err) {
  lathe_options po = {.backend = LATHE_BACKEND_INTERP, .default_dim = 1};
  lathe_program *p = api_program_lower(m, &po, err);
  if (!p) return -1;
  *t = p->g.train;
  int has_loss = p->g.loss >= 0;
  lathe_program_free(p);
  if (!has_loss) return api_fail(err, LATHE_EUSER, "model '%s' has no loss to train", lathe_model_name(m));
  if (o->lr > 0) t->lr = o->lr;
  if (o->epochs > 0) t->epochs = o->epochs;
  if (o->batch > 0) t->batch = o->batch;
  if (o->seed_set) t->seed = (int64_t)o->seed;
  tr_settings_defaults(t);
  return 0;
}

/* ---- programs ---- */

typedef struct {
  lathe_model *m;
  const lathe_train_options *o;
  ir_train t;
  tr_data data;
  lathe_program *step;       /* forward + backward + update */
  lathe_program *eval;       /* forward, with the loss's prediction as output "__pred" */
  int pred_out;
  int tgt_out;               /* the loss's computed target (one_hot(y) ...) as output "__tgt"; -1: the target input */
  rt_progress *prog;
  rt_log *log;
  float **best;              /* per step parameter: the best weights (NULL for state) */
  tr_meta meta;
  int higher;                /* the selection metric: higher is better */
  const char *metric;
  int quant;                 /* lathe_eval: the weights file's quantization (lathe_quant) */
  /* A data-parallel job (docs/distributed.md): ranks share each global batch
   * of gbatch rows, rank `rank` feeding rows [rank * data.batch, ...) of it;
   * only rank 0 evaluates and writes files. One process: 0, 1, data.batch. */
  int rank, ranks;
  int64_t gbatch;
  double step_s, comm_s;     /* inside the step program, and of that inside collectives */
  int64_t timed;             /* steps in step_s */
  FILE *steplog;             /* LATHE_STEP_TIMES=PATH: rank 0 writes each step's seconds and comm seconds there */
  /* --pipeline K (train_pipe.c): this rank's stage; then `step` holds the
   * whole model (never run) and data.batch is one micro-batch of gbatch. */
  tr_pipe *pipe;
  int stages, micro;
  int eval_stages;           /* lathe eval --pipeline K: `eval` is this rank's stage of K */
} tr_run;

static int build_step(tr_run *r, lathe_error *err) {
  lathe_options po = {.backend = r->o->backend};
  api_copy_pass_options(&po, r->o->compile);
  if (r->stages > 1) { /* the whole model's holder: interpreted, never run */
    lathe_options ho = po;
    ho.backend = LATHE_BACKEND_INTERP;
    ir_train ht = r->t;
    ht.ranks = 1;
    r->step = api_compile_train(r->m, &ho, &ht, err);
    return r->step ? tr_pipe_build(&r->pipe, r->m, &po, &r->t, r->stages, r->micro, &r->data, r->o->progress, err) : -1;
  }
  r->step = api_compile_train(r->m, &po, &r->t, err);
  if (r->step && r->ranks > 1) api_dist_reserve(r->step);
  api_prefault(r->step); /* outside the timed steps, as the compile */
  return r->step ? 0 : -1;
}

/* --metric NAME: select by another metric the loss kind computes. */
static int choose_metric(tr_run *r, const char *name, lathe_error *err) {
  static const struct { const char *name; int higher; rt_loss_kind kind; int lm; } known[] = {
    {"loss", 0, RT_LOSS_CROSS_ENTROPY, -1}, {"loss", 0, RT_LOSS_MSE, -1}, {"loss", 0, RT_LOSS_BCE, -1},
    {"accuracy", 1, RT_LOSS_CROSS_ENTROPY, 0}, {"precision", 1, RT_LOSS_CROSS_ENTROPY, 0},
    {"recall", 1, RT_LOSS_CROSS_ENTROPY, 0}, {"f1", 1, RT_LOSS_CROSS_ENTROPY, 0},
    {"roc_auc", 1, RT_LOSS_CROSS_ENTROPY, 0}, {"perplexity", 0, RT_LOSS_CROSS_ENTROPY, 1},
    {"accuracy", 1, RT_LOSS_BCE, -1}, {"precision", 1, RT_LOSS_BCE, -1}, {"recall", 1, RT_LOSS_BCE, -1},
    {"f1", 1, RT_LOSS_BCE, -1}, {"roc_auc", 1, RT_LOSS_BCE, -1},
    {"mse", 0, RT_LOSS_MSE, -1}, {"mae", 0, RT_LOSS_MSE, -1}, {"r2", 1, RT_LOSS_MSE, -1},
  };
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (!strcmp(known[i].name, name) && known[i].kind == r->data.loss && (known[i].lm < 0 || known[i].lm == r->data.lm)) {
      r->metric = known[i].name;
      r->higher = known[i].higher;
      return 0;
    }
  return api_fail(err, LATHE_EUSER, "--metric %s: this model's loss does not report '%s'", name, name);
}

/* lathe eval --pipeline K: p (the evaluation graph) cut to this rank's
 * stage; the last keeps the outputs, the loss and its targets (passes/stage.h). */
static int eval_stage(tr_run *r, lathe_program *p, lathe_error *err) {
  st_plan pl;
  char msg[1024];
  if (st_plan_make(&p->g, r->eval_stages, 0, &pl, msg, sizeof msg) ||
      st_extract(&p->g, &pl, r->rank, ST_P2P | ST_KEEP_LOSS, msg, sizeof msg)) {
    lathe_program_free(p);
    return api_fail(err, LATHE_EUSER, "%s", msg);
  }
  p->pipe_stage = 1;
  return 0;
}

static int build_eval(tr_run *r, lathe_error *err) {
  lathe_options po = {.backend = r->o->backend, .quant = r->quant};
  api_copy_pass_options(&po, r->o->compile);
  lathe_program *p = api_program_lower(r->m, &po, err);
  if (!p) return -1;
  char msg[160];
  int term = tr_loss_term(&p->g, &r->data.loss, msg, sizeof msg);
  if (term < 0) {
    lathe_program_free(p);
    return api_fail(err, LATHE_EUSER, "%s", msg);
  }
  ir_add_output(&p->g, "__pred", p->g.nodes[term].in[0]);
  /* A value loss whose target is computed (mse(p, one_hot(y, C))) has the
   * metrics compare the prediction with that tensor, not with the raw input. */
  int tgt = p->g.nodes[term].in[1];
  if (r->data.loss != RT_LOSS_CROSS_ENTROPY && ir_ops[p->g.nodes[tgt].op].cat != IR_CAT_LEAF)
    ir_add_output(&p->g, "__tgt", tgt);
  int op = p->g.nodes[term].op;
  r->data.form = op == IR_L1      ? RT_FORM_ABS
                 : op == IR_HUBER ? RT_FORM_HUBER
                 : op == IR_NLL   ? RT_FORM_NLL
                                  : RT_FORM_DEFAULT;
  r->data.form_delta = p->g.nodes[term].attr.f;
  r->data.has_ignore = op == IR_CROSS_ENTROPY && p->g.nodes[term].attr.k;
  r->data.ignore = p->g.nodes[term].attr.n;
  if (r->eval_stages > 1 && eval_stage(r, p, err)) return -1;
  if (api_program_finish(p, err)) return -1;
  r->eval = p;
  r->pred_out = ir_find_output(&p->g, "__pred");
  r->tgt_out = ir_find_output(&p->g, "__tgt");
  r->metric = rt_metric_primary(r->data.loss, r->data.lm, &r->higher);
  if (r->pred_out < 0) return 0; /* a pipeline stage before the last */
  if (r->o->metric) return choose_metric(r, r->o->metric, err);
  return 0;
}

/* Copy the step program's weights (not optimizer state) into dst. */
static int copy_weights(const lathe_program *from, lathe_program *to, lathe_error *err) {
  if (api_alloc_params(to, err)) return -1;
  for (int i = 0; i < to->g.nparams; i++) {
    int j = ir_find_param(&from->g, to->g.params[i].name);
    lathe_tensor a, b;
    if (j < 0 || lathe_param_view(from, j, &a) || lathe_param_view(to, i, &b))
      return api_fail(err, LATHE_EINTERNAL, "internal error: parameter '%s' not shared", to->g.params[i].name);
    memcpy(b.data, a.data, lathe_tensor_bytes(&b));
  }
  to->weights_set = 1;
  api_params_changed(to);
  return 0;
}

/* ---- evaluation ---- */

/* A pipeline stage before the last (lathe eval --pipeline): run every batch,
 * its ops passing the activations on; the last stage computes the metrics. */
static int evaluate_stage(tr_run *r, const rt_index *split, int *nout, lathe_error *err) {
  int64_t B = r->data.batch, nb = rt_batch_count(split->n, B, 0);
  *nout = 0;
  for (int64_t b = 0; b < nb; b++) {
    int64_t start = b * B, count = split->n - start < B ? split->n - start : B;
    if (tr_data_feed_some(&r->data, r->eval, split->idx + start, count, 1, err) || lathe_run(r->eval, err)) return -1;
  }
  return 0;
}

static int evaluate(tr_run *r, const rt_index *split, rt_metric *out, int *nout, lathe_error *err) {
  lathe_program *p = r->eval;
  if (r->eval_stages > 1 && r->pred_out < 0) return evaluate_stage(r, split, nout, err);
  const ir_node *pred = &p->g.nodes[p->g.outputs[r->pred_out].node];
  int64_t numel = ir_numel(&pred->shape), B = r->data.batch;
  /* A rank-1 prediction [batch] (mse/bce on one value per example) is one
   * row of width 1 per example, not one row as wide as the batch. */
  int64_t width = pred->shape.rank >= 2 ? pred->shape.d[pred->shape.rank - 1] : 1;
  int64_t rows_per_ex = numel / width / B;
  if (rows_per_ex < 1 || pred->shape.rank < 1)
    return api_fail(err, LATHE_EUSER, "the loss's prediction must have the batch as its first axis");
  rt_metrics *mt = rt_metrics_new(r->data.loss, width, r->data.lm);
  if (mt) rt_metrics_set_form(mt, r->data.form, r->data.form_delta);
  if (mt) rt_metrics_set_ignore(mt, r->data.has_ignore, r->data.ignore);
  float *buf = malloc((size_t)numel * sizeof(float) + 1);
  float *tgt = malloc((size_t)numel * sizeof(float) + 1);
  int32_t *lab = malloc((size_t)numel * sizeof(int32_t) + 1);
  int rc = (!mt || !buf || !tgt || !lab) ? api_fail(err, LATHE_ENOMEM, "out of memory") : 0;
  int tgt_in = -1;
  for (int i = 0; i < r->data.nin; i++)
    if (r->data.ds.f[r->data.field[i]].role == RT_FIELD_TARGET) tgt_in = i;
  int64_t nb = rt_batch_count(split->n, B, 0);
  for (int64_t b = 0; rc == 0 && b < nb; b++) {
    int64_t start = b * B, count = split->n - start < B ? split->n - start : B;
    rc = tr_data_feed_some(&r->data, p, split->idx + start, count, r->eval_stages > 1, err);
    if (!rc) rc = lathe_run(p, err);
    if (rc) break;
    api_read_output(p, r->pred_out, buf);
    const lathe_tensor *tt = &p->in[ir_find_input(&p->g, r->data.name[tgt_in])];
    int64_t rows = count * rows_per_ex;
    char msg[512];
    if (r->data.loss == RT_LOSS_CROSS_ENTROPY) {
      rt_convert(tt->data, tt->dtype, lab, LATHE_I32, rows);
      if (rt_metrics_add_class(mt, buf, lab, rows, msg, sizeof msg)) rc = api_fail(err, LATHE_EUSER, "%s", msg);
    } else {
      if (r->tgt_out >= 0) api_read_output(p, r->tgt_out, tgt);
      else rt_convert(tt->data, tt->dtype, tgt, LATHE_F32, rows * width);
      if (rt_metrics_add_value(mt, buf, tgt, rows, msg, sizeof msg)) rc = api_fail(err, LATHE_EUSER, "%s", msg);
    }
  }
  if (rc == 0) *nout = rt_metrics_result(mt, out);
  if (mt) rt_metrics_free(mt);
  free(buf);
  free(tgt);
  free(lab);
  return rc;
}

static void to_api_metrics(const rt_metric *m, int n, lathe_metrics *out) {
  out->n = n < LATHE_MAX_METRICS ? n : LATHE_MAX_METRICS;
  for (int i = 0; i < out->n; i++) out->name[i] = m[i].name, out->value[i] = m[i].value;
}

/* ---- the loop ---- */

static void ckpt_path(const tr_run *r, int restart, const char *file, char *buf, size_t n) {
  if (r->o->restarts > 1) snprintf(buf, n, "%s/restart%d/%s", r->o->out_dir, restart, file);
  else snprintf(buf, n, "%s/%s", r->o->out_dir, file);
}

static int save_best(tr_run *r) {
  for (int i = 0; i < r->step->g.nparams; i++) {
    if (r->step->g.params[i].state) continue;
    size_t bytes = (size_t)ir_numel(&r->step->g.params[i].shape) * sizeof(float);
    if (!r->best[i] && !(r->best[i] = malloc(bytes))) return -1;
    memcpy(r->best[i], r->step->params[i], bytes);
  }
  return 0;
}

/* The mean of this step's loss over the ranks (each rank's is the mean of
 * its equal slice), so rank 0 reports the global batch's loss: the step's
 * own output when it averaged the loss with the gradients (passes/comm.c),
 * else one more collective. */
static float global_loss(const tr_run *r, float loss) {
  if (r->ranks <= 1) return loss;
  int o = ir_find_output(&r->step->g, COMM_LOSS_OUT);
  if (o >= 0) {
    float v = loss;
    api_read_output(r->step, o, &v);
    return v;
  }
  double v = loss;
  lathe_rt_comm_sum(&v, 1, 1);
  return (float)(v / r->ranks);
}

/* The ranks meet before an epoch's first step, outside the steps' timing:
 * otherwise a rank that compiled its programs later, or rank 0 writing a
 * checkpoint, would show up as the other ranks' communication wait in the
 * next step (and the first step would carry the whole start-up skew). */
static void meet(const tr_run *r) {
  if (r->ranks <= 1) return;
  double v = 0;
  lathe_rt_comm_sum(&v, 1, 1);
  /* Twice: the ranks that waited long in the first (for rank 0's evaluation)
   * were asleep (runtime/dist.c polls briefly, then sleeps) and leave it up
   * to 0.2 ms after rank 0; the first step's sum then waited that long on
   * rank 0 (a quarter of the digits MLP's steps at batch 256). In the second
   * every rank is awake and polling, so all leave within microseconds. */
  lathe_rt_comm_sum(&v, 1, 1);
}

static int run_epoch(tr_run *r, int64_t epoch, int64_t per_epoch, double *train_loss, lathe_error *err) {
  int64_t B = r->gbatch, total = per_epoch * r->t.epochs;
  meet(r);
  int64_t *order = malloc(sizeof(int64_t) * ((size_t)r->data.split.train.n + 1));
  if (!order) return api_fail(err, LATHE_ENOMEM, "out of memory");
  if (r->o->in_order) memcpy(order, r->data.split.train.idx, sizeof(int64_t) * (size_t)r->data.split.train.n);
  else rt_shuffle_epoch(&r->data.split.train, (uint64_t)r->t.seed, epoch, order);
  double sum = 0;
  int rc = 0;
  for (int64_t s = 0; s < per_epoch && rc == 0; s++) {
    int64_t step = r->meta.step + 1;
    r->step->step = r->meta.step;
    r->step->total_steps = total, r->step->steps_per_epoch = per_epoch;
    float loss = 0;
    double t0 = now_s(), c0 = lathe_rt_comm_wait_seconds();
    if (r->pipe) { /* this rank's stage of every micro-batch, then its update */
      rc = tr_pipe_step(r->pipe, &r->data, order + s * B, r->step, &loss, err);
    } else {
      rc = tr_data_feed(&r->data, r->step, order + s * B + r->rank * r->data.batch, r->data.batch, err);
      if (!rc) rc = lathe_run(r->step, err); /* one step: forward, backward, (allreduce,) update */
    }
    double dt = now_s() - t0, dc = lathe_rt_comm_wait_seconds() - c0;
    r->step_s += dt, r->comm_s += dc, r->timed++;
    if (r->steplog) fprintf(r->steplog, "%.9f %.9f\n", dt, dc);
    if (rc && r->ranks > 1) lathe_dist_abort(err->message ? err->message : "a training step failed");
    if (rc) break;
    if (!r->pipe) loss = global_loss(r, api_loss(r->step));
    double lr = tr_step_lr(r->step, step);
    r->meta.step = step;
    sum += loss;
    if (r->prog && r->ranks > 1) rt_progress_comm(r->prog, r->timed, r->step_s, r->comm_s);
    if (r->prog) rt_progress_step(r->prog, epoch, s + 1, loss, lr);
    if (r->log) {
      rt_metric m[2] = {{"loss", loss}, {"lr", lr}};
      char msg[1024];
      if (rt_log_event(r->log, "train", epoch, step, m, 2, msg, sizeof msg))
        rc = api_fail(err, LATHE_EUSER, "%s", msg); /* a full disk ends the run: no silent gap */
    }
  }
  free(order);
  *train_loss = sum / (double)(per_epoch > 0 ? per_epoch : 1);
  return rc;
}

static int better(const tr_run *r, double v) {
  if (isnan(r->meta.best)) return !isnan(v);
  return r->higher ? v > r->meta.best : v < r->meta.best;
}

/* Keep the best, write best and last (rank 0). full: ZeRO-1's whole state. */
static int save_epoch(tr_run *r, int restart, double v, float *const *full, lathe_error *err) {
  char path[4096];
  if (better(r, v)) {
    r->meta.best = v;
    r->meta.bad_epochs = 0;
    if (save_best(r)) return api_fail(err, LATHE_ENOMEM, "out of memory");
    if (r->o->out_dir && r->rank == 0) {
      ckpt_path(r, restart, "best.safetensors", path, sizeof path);
      if (tr_ckpt_save_full(path, r->step, &r->meta, full, err)) return -1;
    }
  } else {
    r->meta.bad_epochs++;
  }
  if (r->o->out_dir && r->rank == 0) {
    ckpt_path(r, restart, "last.safetensors", path, sizeof path);
    if (tr_ckpt_save_full(path, r->step, &r->meta, full, err)) {
      if (r->ranks > 1) lathe_dist_abort(err->message ? err->message : "writing the checkpoint failed");
      return -1;
    }
  }
  return 0;
}

/* After an epoch: validate, keep the best, log, checkpoint. Sets *stop for
 * early stopping. */
static int end_epoch(tr_run *r, int restart, int64_t epoch, double train_loss, int *stop, lathe_error *err) {
  /* the stages' weights and state into rank 0's whole model */
  if (r->pipe && tr_pipe_gather(r->pipe, r->step, err)) {
    lathe_dist_abort(err->message ? err->message : "gathering the stages failed");
    return -1;
  }
  rt_metric vm[RT_MAX_METRICS];
  int nvm = 0;
  double v = NAN, vloss = NAN;
  if (r->data.split.val.n > 0 && r->rank > 0) { /* rank 0 evaluates; the others take its verdict below */
    v = vloss = 0;
  } else if (r->data.split.val.n > 0) {
    if (copy_weights(r->step, r->eval, err) || evaluate(r, &r->data.split.val, vm, &nvm, err)) {
      if (r->ranks > 1) lathe_dist_abort(err->message ? err->message : "evaluation failed");
      return -1;
    }
    v = rt_metric_find(vm, nvm, r->metric);
    vloss = rt_metric_find(vm, nvm, "loss");
    if (r->prog) rt_progress_epoch(r->prog, r->metric, v);
    char msg[1024];
    if (r->log && rt_log_event(r->log, "val", epoch, r->meta.step, vm, nvm, msg, sizeof msg))
      return api_fail(err, LATHE_EUSER, "%s", msg);
  } else {
    v = -train_loss; /* no validation split: select by training loss */
    if (r->prog) rt_progress_epoch(r->prog, NULL, 0);
  }
  if (r->ranks > 1 && r->data.split.val.n > 0) { /* rank 0's values (the others add zeros): one choice everywhere */
    double vv[2] = {v, vloss};
    lathe_rt_comm_sum(vv, 2, 1);
    v = vv[0], vloss = vv[1];
  }
  float *h = realloc(r->meta.hist, sizeof(float) * 3 * (size_t)(r->meta.nhist + 1));
  if (!h) return api_fail(err, LATHE_ENOMEM, "out of memory");
  r->meta.hist = h;
  h[3 * r->meta.nhist] = (float)epoch, h[3 * r->meta.nhist + 1] = (float)train_loss;
  h[3 * r->meta.nhist + 2] = (float)vloss;
  r->meta.nhist++;
  r->meta.epoch = epoch;
  /* ZeRO-1: every rank sends its slices of the optimizer state, so that
   * rank 0 writes the whole of it (a checkpoint any job size resumes) */
  float **full = NULL;
  if (r->o->out_dir && tr_zero_gather(r->step, &full, err)) return -1;
  int rc = save_epoch(r, restart, v, full, err);
  tr_zero_free(r->step, full);
  *stop = r->t.early_stop > 0 && r->meta.bad_epochs >= r->t.early_stop;
  return rc;
}

/* Early stopping says when and why: on the progress output and as an
 * "early_stop" event in log.jsonl (once: a resumed run that had already
 * stopped only says so again). The best epoch is the last one that reset
 * the counter, so it survives a resume without being stored. */
static int report_early_stop(tr_run *r, int already, lathe_error *err) {
  int64_t epoch = r->meta.epoch, best_epoch = epoch - r->meta.bad_epochs;
  int val = r->data.split.val.n > 0;
  double best = val ? r->meta.best : -r->meta.best;
  if (r->prog) {
    char text[512], when[64] = "no epoch gave a finite value";
    if (best_epoch >= 1) snprintf(when, sizeof when, "best %.4f at epoch %lld", best, (long long)best_epoch);
    snprintf(text, sizeof text, "%searly stopping after epoch %lld of %lld: %s %s has not improved for %lld epochs "
             "(early_stop = %lld); %s", already ? "already stopped: " : "", (long long)epoch, (long long)r->t.epochs,
             val ? "validation" : "training", val ? r->metric : "loss", (long long)r->meta.bad_epochs,
             (long long)r->t.early_stop, when);
    rt_progress_note(r->prog, text);
  }
  if (r->log && !already) {
    rt_metric m[3] = {{"best_epoch", (double)best_epoch}, {"patience", (double)r->t.early_stop}, {"best", best}};
    char msg[1024];
    if (rt_log_event(r->log, "early_stop", epoch, r->meta.step, m, 3, msg, sizeof msg))
      return api_fail(err, LATHE_EUSER, "%s", msg);
  }
  return 0;
}

/* LATHE_PROFILE: the training step's kernels, where its time went (every
 * rank's, to stderr: the ranks of a job can differ, docs/distributed.md). */
static void print_profile(const lathe_program *step, int rank) {
  const char *e = getenv("LATHE_PROFILE");
  char *t = e && *e && strcmp(e, "0") != 0 ? lathe_program_profile(step) : NULL;
  if (t) fprintf(stderr, "rank %d: training step %s", rank, t);
  free(t);
}

static void free_run(tr_run *r) {
  if (r->step && r->best)
    for (int i = 0; i < r->step->g.nparams; i++) free(r->best[i]);
  free(r->best);
  free(r->meta.hist);
  lathe_program_free(r->step);
  lathe_program_free(r->eval);
  tr_pipe_free(r->pipe);
  r->best = NULL, r->meta.hist = NULL, r->step = r->eval = NULL, r->pipe = NULL;
}

static int make_dirs(const tr_run *r, int restart, lathe_error *err) {
  if (!r->o->out_dir) return 0;
  char path[4096];
  mkdir(r->o->out_dir, 0777);
  if (r->o->restarts > 1) {
    snprintf(path, sizeof path, "%s/restart%d", r->o->out_dir, restart);
    mkdir(path, 0777);
  } else {
    snprintf(path, sizeof path, "%s", r->o->out_dir);
  }
  struct stat st;
  if (stat(path, &st) || !S_ISDIR(st.st_mode))
    return api_fail(err, LATHE_EUSER, "cannot create the output directory '%s'", path);
  return 0;
}

/* One training run with seed t->seed; leaves the best weights in r->best. */
static int train_one(tr_run *r, int restart, lathe_error *err) {
  if (make_dirs(r, restart, err) || build_step(r, err) || build_eval(r, err) ||
      tr_data_attach_norm(&r->data, r->step, err) || tr_data_attach_norm(&r->data, r->eval, err))
    return -1;
  r->best = calloc((size_t)r->step->g.nparams + 1, sizeof *r->best);
  if (!r->best) return api_fail(err, LATHE_ENOMEM, "out of memory");
  if (lathe_weights_init(r->step, (uint64_t)r->t.seed, err)) return -1;
  r->meta = (tr_meta){.seed = r->t.seed, .best = NAN};
  if (r->o->weights && tr_weights_load(r->o->weights, r->step, err)) return -1;
  if (r->o->resume) {
    /* best.safetensors gives the best weights so far, last.safetensors the
     * weights, optimizer state and position to continue from. */
    char path[4096];
    tr_meta bm = {0};
    ckpt_path(r, restart, "best.safetensors", path, sizeof path);
    int rc = tr_ckpt_load(path, r->step, &bm, err);
    free(bm.hist);
    if (rc) return -1;
    if (save_best(r)) return api_fail(err, LATHE_ENOMEM, "out of memory");
    ckpt_path(r, restart, "last.safetensors", path, sizeof path);
    if (tr_ckpt_load(path, r->step, &r->meta, err)) return -1;
    /* events after the checkpoint (a killed epoch) are done again */
    snprintf(path, sizeof path, "%s/log.jsonl", r->o->out_dir);
    if (r->log && tr_log_cut(path, r->meta.step, err)) return -1;
  }
  if (r->pipe && tr_pipe_load(r->pipe, r->step, err)) return -1;
  int64_t per_epoch = rt_batch_count(r->data.split.train.n, r->gbatch, 1);
  if (per_epoch < 1)
    return api_fail(err, LATHE_EUSER, "the training split has %lld examples, fewer than one batch of %lld",
                    (long long)r->data.split.train.n, (long long)r->gbatch);
  if (r->o->progress) r->prog = rt_progress_new(r->o->progress, r->o->tty, r->t.epochs, per_epoch, r->gbatch);
  int rc = 0, stop = r->t.early_stop > 0 && r->meta.bad_epochs >= r->t.early_stop, already = stop;
  for (int64_t epoch = r->meta.epoch + 1; rc == 0 && !stop && epoch <= r->t.epochs; epoch++) {
    double tl = 0;
    rc = run_epoch(r, epoch, per_epoch, &tl, err);
    if (!rc) rc = end_epoch(r, restart, epoch, tl, &stop, err);
  }
  if (rc == 0 && stop && r->meta.epoch < r->t.epochs) rc = report_early_stop(r, already, err);
  if (r->prog) rt_progress_free(r->prog);
  r->prog = NULL;
  return rc;
}

/* Learning curves of the chosen run: train and validation loss per epoch. */
static int write_plot(const char *path, const tr_meta *meta, lathe_error *err) {
  int64_t n = meta->nhist;
  double *x = malloc(sizeof(double) * (size_t)(3 * n + 1));
  if (!x) return api_fail(err, LATHE_ENOMEM, "out of memory");
  double *tl = x + n, *vl = x + 2 * n;
  for (int64_t i = 0; i < n; i++)
    x[i] = meta->hist[3 * i], tl[i] = meta->hist[3 * i + 1], vl[i] = meta->hist[3 * i + 2];
  rt_plot_series s[2] = {{"train loss", x, tl, n}, {"validation loss", x, vl, n}};
  rt_plot_opts po = {.title = "learning curves", .xlabel = "epoch", .ylabel = "loss"};
  char msg[1024];
  int rc = rt_plot_svg(path, &po, s, 2, msg, sizeof msg);
  free(x);
  return rc ? api_fail(err, LATHE_EUSER, "%s", msg) : 0;
}

/* Put the chosen weights into the eval program and evaluate a split. */
static int eval_split(tr_run *r, float *const *weights, const lathe_program *names, const rt_index *split,
                      lathe_metrics *out, lathe_error *err) {
  if (split->n == 0) { out->n = 0; return 0; }
  if (api_alloc_params(r->eval, err)) return -1;
  for (int i = 0; i < r->eval->g.nparams; i++) {
    int j = ir_find_param(&names->g, r->eval->g.params[i].name);
    lathe_tensor v;
    if (j < 0 || !weights[j] || lathe_param_view(r->eval, i, &v))
      return api_fail(err, LATHE_EINTERNAL, "internal error: no weights for '%s'", r->eval->g.params[i].name);
    memcpy(v.data, weights[j], lathe_tensor_bytes(&v));
  }
  r->eval->weights_set = 1; /* a resumed run with no epoch left has not run eval yet */
  api_params_changed(r->eval);
  rt_metric m[RT_MAX_METRICS];
  int n = 0;
  if (evaluate(r, split, m, &n, err)) return -1;
  to_api_metrics(m, n, out);
  return 0;
}

/* With --restarts, DIR/last.safetensors is the chosen run's last checkpoint,
 * as with one run. */
static int copy_last(const char *dir, int restart, lathe_error *err) {
  char from[4096], to[4096], msg[1024], *buf = NULL;
  size_t len = 0;
  snprintf(from, sizeof from, "%s/restart%d/last.safetensors", dir, restart);
  snprintf(to, sizeof to, "%s/last.safetensors", dir);
  int rc = rt_read_file(from, &buf, &len, msg, sizeof msg);
  if (rc == 0) rc = rt_write_atomic(to, &(rt_chunk){buf, len}, 1, msg, sizeof msg);
  free(buf);
  return rc ? api_fail(err, LATHE_EUSER, "%s", msg) : 0;
}

/* --pipeline K: what the stages need of the job and the options. */
static int pipe_check(const lathe_train_options *o, const ir_train *t, int ranks, int stages, int micro,
                      lathe_error *err) {
  if (ranks != stages)
    return api_fail(err, LATHE_EUSER, "--pipeline %d needs exactly %d ranks (mpirun -np %d), one per stage; the job "
                    "has %d (pipeline and data parallelism together are not supported)", stages, stages, stages, ranks);
  if (o->zero1) return api_fail(err, LATHE_EUSER, "--pipeline cannot be combined with --zero1");
  if (o->restarts > 1) return api_fail(err, LATHE_EUSER, "--pipeline cannot be combined with --restarts");
  if (t->grad_noise > 0)
    return api_fail(err, LATHE_EUSER, "--pipeline: gradient noise (grad_noise) is not supported");
  if (micro < 1 || t->batch % micro)
    return api_fail(err, LATHE_EUSER, "--micro-batches %d: the global batch of %lld must be a multiple of it", micro,
                    (long long)t->batch);
  return 0;
}

/* lathe_train once runtime/api_train.c has checked its arguments (err and res are not NULL). */
int tr_train(lathe_model *m, const lathe_train_options *o, lathe_train_result *res, lathe_error *err) {
  double t0 = now_s();
  memset(res, 0, sizeof *res);
  ir_train t;
  if (read_settings(m, o, &t, err)) return err->code;
  int restarts = o->restarts > 0 ? o->restarts : 1;
  if (o->resume && (!o->out_dir || restarts > 1))
    return api_fail(err, LATHE_EUSER, "--resume needs --out DIR (with the checkpoints) and one restart");
  if (o->resume && o->weights)
    return api_fail(err, LATHE_EUSER, "--resume and --weights cannot be combined: --resume continues from the "
                    "checkpoint's own weights");
  /* A data-parallel job: each rank compiles the step for its slice of the
   * global batch and averages gradients across the job (passes/comm.c);
   * rank 0 alone prints, plots and writes files (it reads the same ones on
   * --resume as every rank). */
  int ranks = lathe_rt_comm_size(), rank = lathe_rt_comm_rank();
  int stages = o->pipeline > 1 ? o->pipeline : 0, micro = o->micro_batches;
  /* by default one micro-batch per stage, or as many as divide the batch */
  for (micro = micro > 0 ? micro : stages; !o->micro_batches && micro > 1 && t.batch % micro; micro--) {}
  if (stages && pipe_check(o, &t, ranks, stages, micro, err)) return err->code;
  if (!stages && ranks > 1 && t.batch % ranks)
    return api_fail(err, LATHE_EUSER, "the global batch of %lld does not split evenly over %d ranks: give a batch "
                    "that is a multiple of the ranks (--batch)", (long long)t.batch, ranks);
  lathe_train_options ro = *o;
  if (rank > 0) ro.progress = NULL, ro.plot = NULL;
  o = &ro;
  t.ranks = ranks, t.bucket_bytes = o->bucket_bytes, t.rank = rank, t.zero1 = o->zero1 && ranks > 1;
  tr_run r = {.m = m, .o = o, .rank = rank, .ranks = ranks, .gbatch = t.batch, .stages = stages, .micro = micro};
  if (stages) t.ranks = 1, t.zero1 = 0; /* no gradient averaging: each stage has its own parameters */
  if (tr_data_open(&r.data, m, o, t.split, (uint64_t)t.seed, stages ? t.batch / micro : t.batch / ranks, err)) {
    tr_data_close(&r.data);
    return err->code;
  }
  char path[4096], msg[1024];
  int rc = 0;
  /* LATHE_STEP_TIMES=PATH: rank 0's seconds per step and of them in collectives, a line each (rank r > 0:
   * PATH.r, to see which rank waits for which): on a loaded machine the quickest steps (percentiles) show
   * what the code does, the mean what the other jobs do */
  const char *steplog = getenv("LATHE_STEP_TIMES");
  if (steplog && *steplog) {
    char sp[4096];
    if (rank) snprintf(sp, sizeof sp, "%s.%d", steplog, rank);
    else snprintf(sp, sizeof sp, "%s", steplog);
    if (!(r.steplog = fopen(sp, "w"))) rc = api_fail(err, LATHE_EUSER, "LATHE_STEP_TIMES: cannot write '%s'", sp);
  }
  if (rc == 0 && o->out_dir && rank == 0) {
    mkdir(o->out_dir, 0777);
    snprintf(path, sizeof path, "%s/log.jsonl", o->out_dir);
    if (rt_log_open(&r.log, path, o->resume, msg, sizeof msg)) rc = api_fail(err, LATHE_EUSER, "%s", msg);
  }
  /* before training, not after: an unwritable plot path must not throw the run away */
  if (rc == 0 && o->plot && rt_check_writable(o->plot, msg, sizeof msg)) rc = api_fail(err, LATHE_EUSER, "%s", msg);
  /* The winner across restarts, by validation (never by test). */
  lathe_program *names = NULL;
  float **win = NULL;
  tr_meta wmeta = {.best = NAN};
  for (int k = 0; rc == 0 && k < restarts; k++) {
    r.t = t;
    r.t.seed = t.seed + k;
    rc = train_one(&r, k, err);
    int higher = r.higher;
    if (rc == 0 && (!win || (higher ? r.meta.best > wmeta.best : r.meta.best < wmeta.best))) {
      if (win) {
        for (int i = 0; i < names->g.nparams; i++) free(win[i]);
        free(win);
        free(wmeta.hist);
        lathe_program_free(names);
      }
      win = r.best, wmeta = r.meta, names = r.step, res->best_restart = k;
      r.best = NULL, r.meta.hist = NULL, r.step = NULL;
    }
    if (rc == 0 && o->progress && restarts > 1)
      fprintf(o->progress, "restart %d (seed %lld): best validation %s %.4f\n", k, (long long)r.t.seed, r.metric,
              r.meta.best);
    if (k + 1 < restarts || rc) free_run(&r);
  }
  res->ranks = ranks, res->step_seconds = r.step_s, res->comm_seconds = r.comm_s, res->timed_steps = r.timed;
  print_profile(names ? names : r.step, rank);
  if (rc == 0) res->steps = wmeta.step, res->epochs = wmeta.epoch;
  if (rc == 0 && rank == 0) {
    rc = eval_split(&r, win, names, &r.data.split.val, &res->best_val, err);
    if (rc == 0) rc = eval_split(&r, win, names, &r.data.split.test, &res->test, err);
    if (rc == 0 && o->plot) rc = write_plot(o->plot, &wmeta, err);
    if (rc == 0 && o->out_dir && restarts > 1) {
      snprintf(path, sizeof path, "%s/best.safetensors", o->out_dir);
      rc = lathe_weights_save(r.eval, path, err);
      if (rc == 0) rc = copy_last(o->out_dir, res->best_restart, err);
    }
  }
  if (win && names)
    for (int i = 0; i < names->g.nparams; i++) free(win[i]);
  free(win);
  free(wmeta.hist);
  lathe_program_free(names);
  free_run(&r);
  if (r.log) rt_log_close(r.log);
  if (r.steplog) fclose(r.steplog);
  tr_data_close(&r.data);
  res->seconds = now_s() - t0;
  return rc ? (err->code ? err->code : LATHE_EINTERNAL) : 0;
}

/* lathe_eval once runtime/api_train.c has checked its arguments (err and out are not NULL). */
int tr_eval(lathe_model *m, const lathe_eval_options *o, lathe_metrics *out, lathe_error *err) {
  memset(out, 0, sizeof *out);
  ir_train t;
  if (read_settings(m, &o->data, &t, err)) return err->code;
  tr_run r = {.m = m, .o = &o->data};
  r.t = t;
  if (o->data.pipeline > 1) { /* lathe eval --pipeline K: rank s evaluates stage s; the last has the metrics */
    r.eval_stages = o->data.pipeline, r.rank = lathe_rt_comm_rank(), r.ranks = lathe_rt_comm_size();
    if (r.ranks != r.eval_stages)
      return api_fail(err, LATHE_EUSER, "--pipeline %d needs exactly %d ranks (mpirun -np %d), one per stage; the "
                      "job has %d", r.eval_stages, r.eval_stages, r.eval_stages, r.ranks);
  }
  int rc = tr_data_open(&r.data, m, &o->data, t.split, (uint64_t)t.seed, t.batch, err);
  if (rc == 0) rc = lathe_weights_quant(o->weights, &r.quant, err); /* a quantized file compiles quantized */
  if (rc == 0) rc = build_eval(&r, err);
  if (rc == 0) rc = lathe_weights_load(r.eval, o->weights, err);
  if (rc == 0) rc = tr_data_eval_norm(&r.data, r.eval, o->data.normalize, o->weights, err);
  rt_index all = {0};
  const rt_index *split = &r.data.split.test;
  const char *which = o->split ? o->split : "test";
  if (rc == 0) {
    if (!strcmp(which, "val")) split = &r.data.split.val;
    else if (!strcmp(which, "train")) split = &r.data.split.train;
    else if (!strcmp(which, "all")) {
      all.n = r.data.ds.n;
      all.idx = malloc(sizeof(int64_t) * ((size_t)all.n + 1));
      if (!all.idx) rc = api_fail(err, LATHE_ENOMEM, "out of memory");
      for (int64_t i = 0; rc == 0 && i < all.n; i++) all.idx[i] = i;
      split = &all;
    } else if (strcmp(which, "test") != 0)
      rc = api_fail(err, LATHE_EUSER, "unknown split '%s' (expected test, val, train or all)", which);
  }
  if (rc == 0 && split->n == 0) rc = api_fail(err, LATHE_EUSER, "the %s split is empty", which);
  rt_metric mm[RT_MAX_METRICS];
  int n = 0;
  if (rc == 0) rc = evaluate(&r, split, mm, &n, err);
  if (rc == 0) to_api_metrics(mm, n, out);
  free(all.idx);
  free_run(&r);
  tr_data_close(&r.data);
  return rc ? (err->code ? err->code : LATHE_EINTERNAL) : 0;
}
