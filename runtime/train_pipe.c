/* train_pipe.c -- pipeline-parallel training (--pipeline K; train.h and
 * docs/distributed.md): rank s runs stage s of K under GPipe's schedule.
 *
 * Why three programs per stage instead of one step: the backward of a
 * micro-batch needs the gradient the next stage sends back, which exists
 * only after every later stage's forward of it, so a stage's forward and
 * backward cannot be one run. The gradient program recomputes the
 * stage's forward (GPipe's re-materialisation: a stage keeps only the
 * activations it received, not its internals), and the update runs once
 * per step on the gradients summed over the micro-batches. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/optimizer.h"
#include "passes/passes.h"
#include "passes/stage.h"
#include "runtime/train.h"

struct tr_pipe {
  int k, s, micro, last;
  lathe_program *fwd, *grad, *upd; /* fwd: the last stage's receives only (its gradient program runs the forward) */
  int64_t nin, nout;               /* floats of the activation received / passed on, one micro-batch */
  float *acts, *tmp;               /* micro * nin activations received; one gradient read */
  int *gout;                       /* per update parameter: the gradient program's output "grad.X", or -1 */
  float **acc;                     /* per update parameter: the gradient summed over the micro-batches */
  st_plan plan;
};

static int pfail(lathe_error *err, const char *msg) { return api_fail(err, LATHE_EUSER, "%s", msg); }

/* What the stages cannot do yet: a random stream keyed by node ids (which
 * the cut renumbers) and a batch's statistics (which a micro-batch changes). */
static int refuse(const ir_graph *g, lathe_error *err) {
  for (int id = 0; id < g->nnodes; id++) {
    const ir_node *n = &g->nodes[id];
    if ((n->op == IR_DROPOUT && n->attr.f > 0) || n->op == IR_BATCHNORM)
      return api_fail(err, LATHE_EUSER, "--pipeline: the model has %s, which pipeline training does not support",
                      n->op == IR_DROPOUT ? "dropout" : "batchnorm");
  }
  return 0;
}

/* The model lowered and cut to stage s (TR_RECV_ONLY: the last stage's
 * receiver, passes/stage.h). */
enum { TR_RECV_ONLY = 1 << 8 };
static lathe_program *lower_stage(lathe_model *m, const lathe_options *po, int k, int s, st_plan *pl, int flags,
                                  lathe_error *err) {
  lathe_program *p = api_program_lower(m, po, err);
  if (!p) return NULL;
  char msg[1024];
  if (refuse(&p->g, err)) goto fail;
  if (st_plan_make(&p->g, k, 1, pl, msg, sizeof msg) ||
      (flags & TR_RECV_ONLY ? st_receiver(&p->g, pl, s, msg, sizeof msg)
                            : st_extract(&p->g, pl, s, flags, msg, sizeof msg))) {
    pfail(err, msg);
    goto fail;
  }
  return p;
fail:
  lathe_program_free(p);
  return NULL;
}

/* The last stage's forward only receives: a program of its own (one op
 * recv), not a host transfer, so the activation comes on the channel the
 * previous stage's op send uses (NCCL on GPUs: a host MPI receive would
 * never pair with an ncclSend). */
static int build_fwd(tr_pipe *p, lathe_model *m, const lathe_options *po, lathe_error *err) {
  p->fwd = lower_stage(m, po, p->k, p->s, &p->plan, p->last ? TR_RECV_ONLY : ST_TRAIN | ST_P2P, err);
  return !p->fwd || api_program_finish(p->fwd, err) ? (p->fwd = NULL, -1) : 0;
}

static int build_grad(tr_pipe *p, lathe_model *m, const lathe_options *po, lathe_error *err) {
  lathe_program *q = lower_stage(m, po, p->k, p->s, &p->plan, ST_TRAIN, err);
  if (!q) return -1;
  char msg[1024];
  /* the gradient of the output comes from stage s + 1 (op recv), that of
   * the input goes to stage s - 1 (op send) */
  if ((!p->last && st_surrogate_loss(&q->g, p->s + 1, msg, sizeof msg)) ||
      ad_backward(&q->g, NULL, 0, 1, msg, sizeof msg) ||
      (p->s > 0 && st_send_output(&q->g, "grad." ST_ACT_IN, p->s - 1, msg, sizeof msg))) {
    lathe_program_free(q);
    return pfail(err, msg);
  }
  if (api_program_finish(q, err)) return -1;
  p->grad = q;
  return 0;
}

static int build_upd(tr_pipe *p, lathe_model *m, const lathe_options *po, const ir_train *t, lathe_error *err) {
  lathe_program *q = lower_stage(m, po, p->k, p->s, &p->plan, ST_TRAIN, err);
  if (!q) return -1;
  int n = 0; /* the stage's own parameters: not the activation it receives */
  for (int i = 0; i < q->g.nparams; i++)
    if (strcmp(q->g.params[i].name, ST_ACT_IN)) q->g.params[n++] = q->g.params[i];
  q->g.nparams = n;
  ir_train ut = *t;
  ut.ranks = 1, ut.zero1 = 0, ut.stages = p->k;
  p->upd = api_compile_update(q, &ut, err);
  if (!p->upd) return -1;
  n = p->upd->g.nparams;
  p->gout = malloc(sizeof(int) * ((size_t)n + 1));
  p->acc = calloc((size_t)n + 1, sizeof *p->acc);
  if (!p->gout || !p->acc) return api_fail(err, LATHE_ENOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    char name[512];
    snprintf(name, sizeof name, "grad.%s", p->upd->g.params[i].name);
    p->gout[i] = ir_find_input(&p->upd->g, name) >= 0 ? ir_find_output(&p->grad->g, name) : -1;
    if (ir_find_input(&p->upd->g, name) >= 0 && p->gout[i] < 0)
      return api_fail(err, LATHE_EINTERNAL, "internal error: --pipeline: no gradient of '%s'", p->upd->g.params[i].name);
    int64_t numel = ir_numel(&p->upd->g.params[i].shape);
    if (p->gout[i] >= 0 && !(p->acc[i] = malloc(sizeof(float) * (size_t)numel + 1)))
      return api_fail(err, LATHE_ENOMEM, "out of memory");
  }
  return 0;
}

static int64_t act_numel(const lathe_program *q, const char *name, int param) {
  int i = param ? ir_find_param(&q->g, name) : ir_find_output(&q->g, name);
  if (i < 0) return 0;
  return ir_numel(param ? &q->g.params[i].shape : &q->g.nodes[q->g.outputs[i].node].shape);
}

/* The plan, once (rank 0): each stage's share of the forward FLOPs and
 * GPipe's bubble, the share of a step a stage idles, (K - 1) / (M + K - 1). */
static void say_plan(const tr_pipe *p, FILE *f, int64_t rows) {
  int64_t tot = 0;
  for (int s = 0; s < p->k; s++) tot += p->plan.flops[s];
  fprintf(f, "pipeline: %d stages, %d micro-batches of %lld;", p->k, p->micro, (long long)rows);
  for (int s = 0; s < p->k; s++)
    fprintf(f, " stage %d: %.1f%% of the FLOPs%s", s, tot ? 100.0 * (double)p->plan.flops[s] / (double)tot : 0,
            s + 1 < p->k ? "," : ";");
  fprintf(f, " bubble %.1f%%\n", 100.0 * (p->k - 1) / (p->micro + p->k - 1));
}

int tr_pipe_build(tr_pipe **out, lathe_model *m, const lathe_options *po, const ir_train *t, int k, int micro,
                  tr_data *d, FILE *progress, lathe_error *err) {
  tr_pipe *p = calloc(1, sizeof *p);
  *out = p;
  if (!p) return api_fail(err, LATHE_ENOMEM, "out of memory");
  p->k = k, p->s = lathe_rt_comm_rank(), p->micro = micro, p->last = p->s == k - 1;
  if (build_fwd(p, m, po, err) || build_grad(p, m, po, err) || build_upd(p, m, po, t, err)) return -1;
  if ((!p->last && tr_data_attach_norm(d, p->fwd, err)) || tr_data_attach_norm(d, p->grad, err)) return -1;
  p->nin = act_numel(p->grad, ST_ACT_IN, 1);
  p->nout = p->last ? 0 : act_numel(p->fwd, ST_ACT_OUT, 0); /* sent by the program's op send */
  int64_t big = p->nin > p->nout ? p->nin : p->nout;
  for (int i = 0; i < p->upd->g.nparams; i++) {
    int64_t n = ir_numel(&p->upd->g.params[i].shape);
    if (n > big) big = n;
  }
  p->acts = malloc(sizeof(float) * (size_t)(p->nin * micro) + 1);
  p->tmp = malloc(sizeof(float) * (size_t)big + 1);
  if (!p->acts || !p->tmp) return api_fail(err, LATHE_ENOMEM, "out of memory");
  if (progress) say_plan(p, progress, d->batch);
  return 0;
}

void tr_pipe_free(tr_pipe *p) {
  if (!p) return;
  for (int i = 0; p->acc && p->upd && i < p->upd->g.nparams; i++) free(p->acc[i]);
  free(p->acc), free(p->gout), free(p->acts), free(p->tmp);
  lathe_program_free(p->fwd);
  lathe_program_free(p->grad);
  lathe_program_free(p->upd);
  free(p);
}

/* ---- weights between the programs ---- */

/* Every parameter of dst that src has (by name), copied; state too when
 * state is set, else weights only. */
static int copy_params(lathe_program *dst, const lathe_program *src, int state, lathe_error *err) {
  if (api_alloc_params(dst, err)) return -1;
  for (int i = 0; i < dst->g.nparams; i++) {
    int j = ir_find_param(&src->g, dst->g.params[i].name);
    lathe_tensor a, b;
    if (j < 0 || (dst->g.params[i].state && !state)) continue;
    if (lathe_param_view(src, j, &a) || lathe_param_view(dst, i, &b) || lathe_tensor_bytes(&a) != lathe_tensor_bytes(&b))
      return api_fail(err, LATHE_EINTERNAL, "internal error: --pipeline: parameter '%s' differs",
                      dst->g.params[i].name);
    memcpy(b.data, a.data, lathe_tensor_bytes(&b));
  }
  dst->weights_set = 1;
  api_params_changed(dst);
  return 0;
}

int tr_pipe_load(tr_pipe *p, const lathe_program *holder, lathe_error *err) {
  if (copy_params(p->upd, holder, 1, err) || copy_params(p->grad, holder, 0, err)) return -1;
  return p->last ? 0 : copy_params(p->fwd, holder, 0, err);
}

static int set_act(lathe_program *q, const float *v, lathe_error *err) {
  int i = ir_find_param(&q->g, ST_ACT_IN);
  lathe_tensor t;
  if (i < 0 || lathe_param_view(q, i, &t))
    return api_fail(err, LATHE_EINTERNAL, "internal error: --pipeline: no %s", ST_ACT_IN);
  memcpy(t.data, v, lathe_tensor_bytes(&t));
  api_params_changed(q);
  return 0;
}

static int set_f32(lathe_program *q, const char *name, const float *v, lathe_error *err) {
  const ir_input *in = &q->g.inputs[ir_find_input(&q->g, name)];
  lathe_tensor t = {.dtype = LATHE_F32, .rank = in->shape.rank, .data = (void *)v};
  for (int j = 0; j < in->shape.rank; j++) t.shape[j] = in->shape.d[j];
  return lathe_set_input(q, name, &t, err);
}

static int xfer(int send, void *buf, int64_t n, int peer, lathe_error *err) {
  int rc = send ? lathe_rt_comm_send(buf, n * (int64_t)sizeof(float), peer)
                : lathe_rt_comm_recv(buf, n * (int64_t)sizeof(float), peer);
  return rc ? api_fail(err, LATHE_EUSER, "--pipeline: this build cannot send between ranks (no MPI)") : 0;
}

/* ---- the step ---- */

/* Every micro-batch forward: the program receives its activation (op recv)
 * and sends its own on (op send); the stage keeps what it received for the
 * backward. The last stage's forward is its receiver: it only receives. */
static int forwards(tr_pipe *p, tr_data *d, const int64_t *rows, lathe_error *err) {
  int64_t b = d->batch;
  for (int mb = 0; mb < p->micro; mb++) {
    float *a = p->acts + (int64_t)mb * p->nin;
    if ((!p->last && tr_data_feed_some(d, p->fwd, rows + mb * b, b, 1, err)) || api_run_core(p->fwd, err)) return -1;
    if (p->s > 0) api_read_output(p->fwd, ir_find_output(&p->fwd->g, ST_ACT_IN), a);
  }
  return 0;
}

/* Every micro-batch backward: the program receives the gradient of its
 * output (op recv) and sends its input's back (op send); the parameters'
 * gradients are added up here. */
static int backwards(tr_pipe *p, tr_data *d, const int64_t *rows, double *loss, lathe_error *err) {
  int64_t b = d->batch;
  const ir_graph *ug = &p->upd->g;
  for (int mb = 0; mb < p->micro; mb++) {
    if ((p->s > 0 && set_act(p->grad, p->acts + (int64_t)mb * p->nin, err)) ||
        tr_data_feed_some(d, p->grad, rows + mb * b, b, 1, err) || api_run_core(p->grad, err))
      return -1;
    for (int i = 0; i < ug->nparams; i++) {
      if (p->gout[i] < 0) continue;
      int64_t n = ir_numel(&ug->params[i].shape);
      float *acc = p->acc[i], *g = mb ? p->tmp : acc;
      api_read_output(p->grad, p->gout[i], g);
      for (int64_t j = 0; mb && j < n; j++) acc[j] += g[j];
    }
    if (p->last) *loss += api_loss(p->grad);
  }
  return 0;
}

/* The update on the mean of the micro-batches' gradients (each is its
 * micro-batch's mean: their mean is the global batch's). */
static int update(tr_pipe *p, const lathe_program *holder, lathe_error *err) {
  const ir_graph *ug = &p->upd->g;
  float inv = 1.0f / (float)p->micro;
  for (int i = 0; i < ug->nparams; i++) {
    if (p->gout[i] < 0) continue;
    int64_t n = ir_numel(&ug->params[i].shape);
    if (p->micro > 1)
      for (int64_t j = 0; j < n; j++) p->acc[i][j] *= inv;
    char name[512];
    snprintf(name, sizeof name, "grad.%s", ug->params[i].name);
    if (set_f32(p->upd, name, p->acc[i], err)) return -1;
  }
  p->upd->step = holder->step;
  p->upd->total_steps = holder->total_steps, p->upd->steps_per_epoch = holder->steps_per_epoch;
  if (api_train_run(p->upd, err)) return -1;
  return copy_params(p->grad, p->upd, 0, err) || (!p->last && copy_params(p->fwd, p->upd, 0, err)) ? -1 : 0;
}

int tr_pipe_step(tr_pipe *p, tr_data *d, const int64_t *rows, const lathe_program *holder, float *loss,
                 lathe_error *err) {
  double l = 0;
  if (forwards(p, d, rows, err) || backwards(p, d, rows, &l, err) || update(p, holder, err)) return -1;
  l = p->last ? l / p->micro : 0; /* the last stage has the loss: every rank gets it */
  lathe_rt_comm_sum(&l, 1, 1);
  *loss = (float)l;
  return 0;
}

/* Rank 0's holder receives every stage's weights and optimizer state (in
 * the holder's order; who owns which is agreed by one sum). */
int tr_pipe_gather(tr_pipe *p, lathe_program *holder, lathe_error *err) {
  int n = holder->g.nparams;
  double *own = calloc((size_t)n + 1, sizeof(double));
  if (!own) return api_fail(err, LATHE_ENOMEM, "out of memory");
  for (int i = 0; i < n; i++)
    if (ir_find_param(&p->upd->g, holder->g.params[i].name) >= 0) own[i] = p->s + 1;
  lathe_rt_comm_sum(own, n, 1);
  int rc = 0;
  for (int i = 0; rc == 0 && i < n; i++) {
    int owner = (int)own[i] - 1, j = ir_find_param(&p->upd->g, holder->g.params[i].name);
    lathe_tensor h;
    if (owner < 0 || (p->s != 0 && p->s != owner) || lathe_param_view(holder, i, &h)) continue;
    int64_t cnt = (int64_t)(lathe_tensor_bytes(&h) / sizeof(float));
    if (p->s == owner) {
      lathe_tensor u;
      if (lathe_param_view(p->upd, j, &u)) { rc = api_fail(err, LATHE_EINTERNAL, "internal error: --pipeline gather"); break; }
      if (owner == 0) memcpy(h.data, u.data, lathe_tensor_bytes(&h));
      else rc = xfer(1, u.data, cnt, 0, err);
    } else {
      rc = xfer(0, h.data, cnt, owner, err);
    }
  }
  free(own);
  return rc;
}
