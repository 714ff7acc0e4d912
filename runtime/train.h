/* train.h -- internals of lathe_train / lathe_eval, shared by
 * runtime/train.c (the loop), train_data.c (data to batches) and
 * train_ckpt.c (checkpoints). Internal prefix: tr_.
 *
 * B = the compiled batch, N = examples, W = elements per example.
 */
#ifndef LATHE_TRAIN_H
#define LATHE_TRAIN_H

#include "runtime/data.h"
#include "runtime/program.h"
#include "runtime/runtime.h"
#include "rt/lathe_rt.h"

/* ---- train_data.c: the data set, its split and how it feeds the model ---- */
typedef struct {
  rt_dataset ds;
  rt_split split;
  int nin;                     /* model inputs (fe order), inputs and targets */
  int field[16];               /* per model input: its data set field */
  const char *name[16];        /* per model input: its name (owned by the model) */
  rt_norm norm[16];            /* per model input: normalisation (kind none if not F32 features) */
  int64_t batch;               /* B */
  rt_loss_kind loss;
  rt_loss_form form;           /* the term's own loss for the metrics' "loss" (l1_loss, huber, nll) */
  double form_delta;           /* huber's delta */
  int has_ignore;              /* the cross_entropy term's ignore_index (labels not counted) */
  int64_t ignore;
  int lm;                      /* a language model (text data): loss + perplexity */
  char msg[1024];
} tr_data;

/* Load the data the options name, split it with (fractions, seed), check
 * every model input has a field of a fitting shape, bind the model's batch
 * dimension to B and fit the normalisation on the training split. */
int tr_data_open(tr_data *d, lathe_model *m, const lathe_train_options *o, const double split[3], uint64_t seed,
                 int64_t batch, lathe_error *err);
void tr_data_close(tr_data *d);
/* Fill every model input of p (by name) with examples rows[0..count); pads
 * to B. Returns 0 or an error. */
int tr_data_feed(tr_data *d, lathe_program *p, const int64_t *rows, int64_t count, lathe_error *err);
/* some: only the inputs p has (a pipeline stage's program) */
int tr_data_feed_some(tr_data *d, lathe_program *p, const int64_t *rows, int64_t count, int some, lathe_error *err);
/* Attach the normalisation fitted on the training split to every f32
 * feature input of p: lathe_set_input applies it (tr_data_feed gives raw
 * features) and checkpoints and lathe_weights_save carry it. */
int tr_data_attach_norm(const tr_data *d, lathe_program *p, lathe_error *err);
/* lathe eval, after loading the weights into p: weights that carry
 * preprocessing keep it, and a --normalize (normalize non-NULL) that
 * disagrees is refused; weights without any get the fitted statistics. */
int tr_data_eval_norm(const tr_data *d, lathe_program *p, const char *normalize, const char *weights,
                      lathe_error *err);
/* The loss kind the model declares (cross_entropy, mse, bce). */
int tr_loss_kind(const ir_graph *g, rt_loss_kind *kind);
/* The node of the loss's one recognised loss term (the loss itself,
 * or the term of a composite loss such as mse(p, y) + 0.01 * mean(p * p)),
 * and its kind; -1 with a message when there is none or more than one. */
int tr_loss_term(const ir_graph *g, rt_loss_kind *kind, char *msg, size_t msgn);

/* ---- train_ckpt.c: checkpoints ----
 * A checkpoint is a safetensors file with every parameter (weights and
 * optimizer state) under its own name and the run's position as i64 tensors
 * named "__meta.*", plus the data preprocessing ("__preprocess.*",
 * api_preprocess.c); lathe_weights_load skips "__meta.*" and "opt.*" and
 * reads the preprocessing, so a checkpoint is also a weights file. Written
 * atomically. tr_ckpt_load refuses a checkpoint whose normalisation kind
 * differs from the one attached to p (resuming with another --normalize). */
typedef struct {
  int64_t step, epoch, bad_epochs, seed;
  double best;                 /* best validation value so far (bit-exact) */
  int64_t nhist;               /* epochs in the learning-curve history */
  float *hist;                 /* [nhist, 3]: epoch, train loss, val loss */
} tr_meta;

int tr_ckpt_save(const char *path, const lathe_program *p, const tr_meta *meta, lathe_error *err);
/* The same, with full[i] (when full and full[i] are not NULL) written for
 * parameter i, a ZeRO-1 state slice, in its whole shape (ir_param.full). */
int tr_ckpt_save_full(const char *path, const lathe_program *p, const tr_meta *meta, float *const *full,
                      lathe_error *err);
/* ZeRO-1 (runtime/train_zero.c): *full[i] = the whole of every sharded
 * state parameter i, gathered from every rank (every rank calls it; *full
 * stays NULL without sharded state). tr_zero_free frees it. */
int tr_zero_gather(const lathe_program *p, float ***full, lathe_error *err);

/* ---- train_pipe.c: pipeline parallelism (--pipeline K; docs/distributed.md) ----
 * Rank s of K compiles stage s (passes/stage.h) three ways: its forward
 * pass for one micro-batch, its gradient for one micro-batch (the forward
 * again, then the backward: the activations are recomputed, not stored),
 * and its optimizer update. A step is GPipe's schedule: every micro-batch
 * forward (activations sent on), then every micro-batch backward
 * (gradients sent back, accumulated), then the update. The whole model
 * (weights and optimizer state) lives in `holder`, a step program of the
 * full model that is never run: tr_pipe_load gives the stage its part,
 * tr_pipe_gather collects every stage's part into rank 0's holder (for
 * evaluation and checkpoints). */
typedef struct tr_pipe tr_pipe;
int tr_pipe_build(tr_pipe **out, lathe_model *m, const lathe_options *po, const ir_train *t, int k, int micro,
                  tr_data *d, FILE *progress, lathe_error *err);
int tr_pipe_load(tr_pipe *p, const lathe_program *holder, lathe_error *err);
/* One step on the global batch rows[0 .. micro * d->batch); *loss: its mean
 * loss (on every rank). */
int tr_pipe_step(tr_pipe *p, tr_data *d, const int64_t *rows, const lathe_program *holder, float *loss,
                 lathe_error *err);
int tr_pipe_gather(tr_pipe *p, lathe_program *holder, lathe_error *err);
void tr_pipe_free(tr_pipe *p);
void tr_zero_free(const lathe_program *p, float **full);
/* Loads weights and state into p and the position into meta (hist malloc'd).
 * Every parameter's dtype and shape must match exactly and its values be
 * finite; the position must be in range; tensors named "__*" that are not
 * the position are tolerated (other run metadata), any other unknown name is
 * refused. A refused checkpoint leaves p unchanged. */
int tr_ckpt_load(const char *path, lathe_program *p, tr_meta *meta, lathe_error *err);
/* The same from a file already read (the fuzz target's entry). */
int tr_ckpt_apply(const rt_st_file *f, const char *path, lathe_program *p, tr_meta *meta, lathe_error *err);
/* Weights only (train --weights): the checks of tr_ckpt_load; the optimizer
 * state, and any "opt.*" or "__*" tensor in the file, are ignored (state
 * starts at zero). */
int tr_weights_load(const char *path, lathe_program *p, lathe_error *err);
/* After --resume: cut log.jsonl back to the events of steps up to the
 * checkpoint's (a killed epoch's events would otherwise appear twice). */
int tr_log_cut(const char *path, int64_t step, lathe_error *err);

/* ---- train_step.c ---- */
/* The train block's schedule as liblathe_rt's (lathe_rt_sched_lr computes
 * every step's rate, for lathe train and emitted training steps alike). */
void tr_rt_sched(const ir_train *t, lathe_rt_sched *s);
/* Fill every unset setting with PyTorch's default (adam, lr 1e-3, ...). */
void tr_settings_defaults(ir_train *t);
/* The learning rate the schedule gives 1-based step `step` of training
 * program p (what the step feeds the update; log.jsonl and the progress line
 * report it). */
double tr_step_lr(const lathe_program *p, int64_t step);
/* train.c: lathe_train and lathe_eval behind api_train.c's argument checks. */
int tr_train(lathe_model *m, const lathe_train_options *o, lathe_train_result *res, lathe_error *err);
int tr_eval(lathe_model *m, const lathe_eval_options *o, lathe_metrics *out, lathe_error *err);

/* ---- train_calib.c: static int8's calibration (lathe_quantize, mode int8) ----
 * Runs the f32 model (o->weights) over the first o->calib_batches batches
 * of o->data's training split and sets cal->scale[i], the input scale of the
 * products of weight cal->name[i]: max |x| or o->percentile of |x| (over
 * every product reading it), over 127. */
int tr_calibrate(lathe_model *m, const lathe_quantize_options *o, api_calib *cal, lathe_error *err);

/* ---- api_program.c helpers for the loop ---- */
/* The f32 value of output o (or of the loss when o < 0) after a run. */
void api_read_output(const lathe_program *p, int o, float *dst);
float api_loss(const lathe_program *p);

#endif
