/* rt_train.c -- the runner of emitted training steps (`lathe emit --entry
 * train_step`): MODEL_state_init, MODEL_train_step, MODEL_state_save and
 * MODEL_state_load call these with their object's image (rt_image.h).
 *
 * A step does what lathe train's does (runtime/train_step.c): the per-step
 * scalars from the step count (learning rate by the schedule, Adam's bias
 * corrections, the gradient-noise std, the random-stream counter), one run
 * of the training program with the caller's inputs and targets (normalised
 * as the weights say), then -- only when the loss and every update are
 * finite -- each "new.X" output copied over X in the caller's state. The
 * state's files are safetensors with the tensor names of lathe train's
 * checkpoints (rt_sft.c writes and reads them), so lathe eval and
 * lathe train --resume take them and MODEL_state_load takes theirs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt/lathe_rt.h"
#include "rt/rt_image.h"
#include "rt/rt_sft.h"

double lathe_rt_sched_lr(const lathe_rt_sched *s, int64_t step, int64_t total, int64_t per_epoch) {
  const double pi = 3.14159265358979323846;
  double epoch = (double)((step - 1) / (per_epoch > 0 ? per_epoch : 1));
  if (s->kind == LATHE_RT_SCHED_STEP) return s->lr * pow(s->gamma, floor(epoch / s->every));
  if (s->kind == LATHE_RT_SCHED_EXPONENTIAL) return s->lr * pow(s->gamma, epoch);
  if (s->kind != LATHE_RT_SCHED_COSINE) return s->lr;
  double w = s->warmup;
  if ((double)step <= w) return s->lr * (double)step / w;
  double prog = (double)total > w ? ((double)step - w) / ((double)total - w) : 0;
  return s->min_lr + 0.5 * (s->lr - s->min_lr) * (1 + cos(pi * prog));
}

static const void *at(const lathe_rt_image *im, int64_t off) { return (const char *)im + off; }

enum { HEAD = sizeof(lathe_rt_train_head) }; /* 64: the tensors follow */
_Static_assert(sizeof(lathe_rt_train_head) == 64, "MODEL.h lays the tensors out after a 64-byte head");

/* The image of a training step, or NULL with the error set. */
static const lathe_rt_train *train_of(const lathe_rt_image *im, int *rc) {
  *rc = 0;
  if (!im || im->magic != LATHE_RT_IMAGE_MAGIC || im->abi != LATHE_RT_ABI) *rc = LATHE_RT_EABI;
  else if (im->train_off < 0) *rc = rt_failf(LATHE_RT_EARG, "model '%s' was emitted without --entry train_step",
                                            (const char *)at(im, im->name_off));
  return *rc ? NULL : at(im, im->train_off);
}

static unsigned char *data_of(void *state) { return (unsigned char *)state + HEAD; }

int lathe_rt_state_init(const void *image, const lathe_rt_state *rs, void *state) {
  const lathe_rt_image *im = image;
  int rc;
  if (!train_of(im, &rc)) return rc;
  if (!state) return rt_failf(LATHE_RT_EARG, "MODEL_state_init: the state is NULL");
  const unsigned char *w = im->weights_off >= 0 ? at(im, im->weights_off) : rs->weights;
  if (!w) return rt_failf(LATHE_RT_ENO_WEIGHTS, "MODEL_state_init: no weights: call MODEL_load_weights first");
  memset(state, 0, HEAD);
  memcpy(data_of(state), w, (size_t)im->weights_bytes);
  return 0;
}

/* ---- one step ---- */

static int all_finite(const float *v, int64_t n) {
  uint32_t bad = 0;
  for (int64_t k = 0; k < n; k++) {
    uint32_t b;
    memcpy(&b, &v[k], sizeof b);
    bad |= (b & 0x7f800000u) == 0x7f800000u;
  }
  return !bad;
}

/* The value input role takes at 1-based step `step` (train_step.c's
 * set_step_scalars: computed in double, given as f32 or i64). */
static void scalar(const lathe_rt_train *tr, const lathe_rt_train_head *h, int64_t role, int64_t step,
                   int64_t dtype, void *dst) {
  double v = 0;
  switch (role) {
  case LATHE_RT_IN_LR: v = lathe_rt_sched_lr(&tr->sched, step, h->total_steps, h->steps_per_epoch); break;
  case LATHE_RT_IN_BC1: v = 1 - pow(tr->beta1, (double)step); break;
  case LATHE_RT_IN_BC2: v = 1 - pow(tr->beta2, (double)step); break;
  case LATHE_RT_IN_NOISE: v = sqrt(tr->grad_noise / pow(1.0 + (double)step, 0.55)); break;
  default: v = (double)step; break;
  }
  enum { DT_I64 = 4 }; /* ir/ir.h's IR_I64; every other scalar is f32 */
  if (dtype == DT_I64) {
    int64_t i = (int64_t)v;
    memcpy(dst, &i, sizeof i);
  } else {
    float f = (float)v;
    memcpy(dst, &f, sizeof f);
  }
}

float lathe_rt_train_step(const void *image, lathe_rt_entry entry, lathe_rt_state *rs, void *state,
                          void *const *args) {
  const lathe_rt_image *im = image;
  int rc;
  const lathe_rt_train *tr = train_of(im, &rc);
  if (!tr) return NAN;
  lathe_rt_default_threads(1); /* embedded use: one thread unless MODEL_set_threads or LATHE_THREADS say */
  if (!state || !args) return rt_failf(LATHE_RT_EARG, "MODEL_train_step: a NULL argument"), NAN;
  for (int64_t a = 0; a < im->nargs; a++)
    if (!args[a]) return rt_failf(LATHE_RT_EARG, "MODEL_train_step: data argument %lld is NULL", (long long)a), NAN;
  if (!rs->work && !(rs->work = malloc((size_t)im->work_bytes + 64)))
    return rt_failf(LATHE_RT_ENOMEM, "MODEL_train_step: out of memory for the workspace"), NAN;
  lathe_rt_train_head *h = state;
  unsigned char *w = data_of(state);
  unsigned char *work = (unsigned char *)(((uintptr_t)rs->work + 63) & ~(uintptr_t)63);
  const lathe_rt_io *io = at(im, im->inputs_off), *out = at(im, im->outputs_off);
  const lathe_rt_train_in *tin = at(im, tr->ins_off);
  const lathe_rt_tensor *t = at(im, im->tensors_off);
  const int64_t *commit = at(im, tr->commit_off);
  int64_t step = h->step + 1;
  void *in[64];
  void **ins = im->ninputs <= 64 ? in : (void **)(void *)(work + im->tables_off) + im->nnodes;
  for (int64_t i = 0; i < im->ninputs; i++) {
    const lathe_rt_io *x = &io[i];
    if (tin[i].role != LATHE_RT_IN_ARG && tin[i].role != LATHE_RT_IN_TARGET) {
      ins[i] = work + x->copy_off;
      scalar(tr, h, tin[i].role, step, x->dtype, ins[i]);
      continue;
    }
    ins[i] = args[tin[i].arg];
    if (x->shift < 0) continue;
    float *copy = (float *)(void *)(work + x->copy_off);
    memcpy(copy, ins[i], (size_t)x->bytes);
    lathe_rt_normalize(copy, x->bytes / 4 / x->width, x->width, (const float *)(const void *)(w + t[x->shift].off),
                       (const float *)(const void *)(w + t[x->scale].off));
    ins[i] = copy;
  }
  void *outv[64];
  void **outs = im->noutputs <= 64 ? outv : malloc(sizeof *outs * (size_t)im->noutputs);
  if (!outs) return rt_failf(LATHE_RT_ENOMEM, "MODEL_train_step: out of memory"), NAN;
  for (int64_t j = 0; j < im->noutputs; j++) outs[j] = work + out[j].copy_off;
  rc = rt_image_call(im, entry, w, ins, outs, work);
  enum { NONFINITE = 0x100 }; /* codegen/llvm/cg.h's CG_ERR_NONFINITE */
  int flagged = (rc & NONFINITE) != 0;
  rc &= ~NONFINITE;
  const int64_t *checked = at(im, tr->checked_off);
  void **bufs = (void **)(void *)(work + im->tables_off);
  float loss = rc ? NAN : *(const float *)bufs[tr->loss_node];
  if (rc) rt_failf(rc, "MODEL_train_step: step %lld: %s (the state is unchanged)", (long long)step,
                   lathe_rt_strerror(rc));
  else if (!isfinite(loss))
    rt_failf(LATHE_RT_ENONFINITE, "MODEL_train_step: step %lld: the loss is %s (the state is unchanged)",
             (long long)step, isnan(loss) ? "nan" : "inf"), rc = 1;
  for (int64_t j = 0; rc == 0 && j < im->noutputs; j++)
    if (commit[j] >= 0 && (flagged || !checked[j]) && !all_finite(outs[j], out[j].bytes / 4)) /* as lathe train */
      rt_failf(LATHE_RT_ENONFINITE, "MODEL_train_step: step %lld: '%s' became non-finite (the state is unchanged)",
               (long long)step, t[commit[j]].name), rc = 1;
  /* every update is known finite before any is written: a bad step changes nothing */
  for (int64_t j = 0; rc == 0 && j < im->noutputs; j++)
    if (commit[j] >= 0) memcpy(w + t[commit[j]].off, outs[j], (size_t)t[commit[j]].bytes);
  if (outs != outv) free(outs);
  if (rc) return NAN;
  h->step = step;
  return loss;
}

/* ---- the state's files ---- */

#define PRE "__preprocess."
static const char *const meta_names[] = {"__meta.step", "__meta.epoch", "__meta.bad_epochs", "__meta.seed",
                                         "__meta.best_bits"};
enum { NMETA = sizeof meta_names / sizeof meta_names[0] };

static rt_sft_tensor f32_of(const lathe_rt_tensor *t, const void *data) {
  rt_sft_tensor s = {.name = t->name, .dtype = RT_SFT_F32, .rank = (int)t->rank, .data = data, .bytes = t->bytes};
  for (int64_t d = 0; d < t->rank && d < RT_SFT_MAXDIM; d++) s.shape[d] = t->dim[d];
  return s;
}

/* Every tensor under its own name (parameters, optimizer state "opt.*",
 * the normalisation "__preprocess.NAME.shift/scale" and each input's
 * ".kind"), and the position lathe train's checkpoints hold: the step, the
 * whole epochs done (step / steps_per_epoch; 0 when that is not set), a
 * history row per epoch (its losses unknown: NaN), no early-stopping
 * count, the train block's seed, no best value (NaN). So lathe train
 * --resume goes on with the next epoch, as after its own checkpoint. */
int lathe_rt_state_save(const void *image, const void *state, const char *path) {
  const lathe_rt_image *im = image;
  int rc;
  const lathe_rt_train *tr = train_of(im, &rc);
  if (!tr) return rc;
  if (!state || !path) return rt_failf(LATHE_RT_EARG, "MODEL_state_save: a NULL argument");
  const lathe_rt_train_head *h = state;
  const unsigned char *w = (const unsigned char *)state + HEAD;
  const lathe_rt_tensor *t = at(im, im->tensors_off);
  const lathe_rt_train_in *tin = at(im, tr->ins_off);
  int n = 0, cap = (int)(im->ntensors + im->ninputs) + NMETA + 1;
  int64_t epoch = h->steps_per_epoch > 0 ? h->step / h->steps_per_epoch : 0;
  float *hist = epoch > 0 && epoch < ((int64_t)1 << 32) ? malloc(sizeof *hist * 3 * (size_t)epoch) : NULL;
  if (!hist) epoch = 0;
  for (int64_t k = 0; k < epoch; k++) hist[3 * k] = (float)(k + 1), hist[3 * k + 1] = hist[3 * k + 2] = NAN;
  rt_sft_tensor *e = calloc((size_t)cap, sizeof *e);
  char(*kname)[LATHE_RT_NAME + 32] = calloc((size_t)im->ninputs + 1, sizeof *kname);
  int64_t *kinds = calloc((size_t)im->ninputs + 1, sizeof *kinds);
  if (!e || !kname || !kinds) {
    free(e), free(kname), free(kinds), free(hist);
    return rt_failf(LATHE_RT_ENOMEM, "MODEL_state_save: out of memory");
  }
  for (int64_t i = 0; i < im->ninputs; i++)
    if (tin[i].norm_kind >= 0) {
      snprintf(kname[i], sizeof kname[i], PRE "%s.kind", tin[i].name);
      kinds[i] = tin[i].norm_kind;
      e[n++] = (rt_sft_tensor){.name = kname[i], .dtype = RT_SFT_I64, .rank = 1, .shape = {1}, .data = &kinds[i],
                               .bytes = 8};
    }
  for (int64_t k = 0; k < im->ntensors; k++) e[n++] = f32_of(&t[k], w + t[k].off);
  double nan = NAN;
  int64_t meta[NMETA] = {h->step, epoch, 0, tr->seed, 0};
  memcpy(&meta[NMETA - 1], &nan, sizeof nan);
  for (int k = 0; k < NMETA; k++)
    e[n++] = (rt_sft_tensor){.name = meta_names[k], .dtype = RT_SFT_I64, .rank = 1, .shape = {1}, .data = &meta[k],
                             .bytes = 8};
  if (epoch > 0)
    e[n++] = (rt_sft_tensor){.name = "__meta.history", .dtype = RT_SFT_F32, .rank = 2, .shape = {epoch, 3},
                             .data = hist, .bytes = 12 * epoch};
  char msg[512];
  rc = rt_sft_write(path, e, n, msg, sizeof msg) ? rt_failf(LATHE_RT_EWRITE, "MODEL_state_save: %s", msg) : 0;
  free(e), free(kname), free(kinds), free(hist);
  return rc;
}

/* "f32[64, 256]" */
static void type_str(int dtype, int rank, const int64_t *d, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "%s[", rt_sft_dtype_name(dtype));
  for (int j = 0; j < rank && k < n; j++) k += (size_t)snprintf(buf + k, n - k, j ? ", %lld" : "%lld", (long long)d[j]);
  if (k < n) snprintf(buf + k, n - k, "]");
  for (char *c = buf; *c && c < buf + 4; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
}

/* The file's tensor for record t: f32 of exactly t's shape, finite. */
static int check_tensor(const char *path, const lathe_rt_tensor *t, const rt_sft_tensor *e) {
  int same = e->dtype == RT_SFT_F32 && e->rank == t->rank;
  for (int d = 0; same && d < e->rank; d++) same = e->shape[d] == t->dim[d];
  if (!same) {
    char want[160], got[160];
    type_str(RT_SFT_F32, (int)t->rank, t->dim, want, sizeof want);
    type_str(e->dtype, e->rank, e->shape, got, sizeof got);
    return rt_failf(LATHE_RT_EFORMAT, "'%s': tensor '%s': expected %s, got %s", path, t->name, want, got);
  }
  const unsigned char *b = e->data;
  for (int64_t k = 0; k < e->bytes / 4; k++) {
    float v;
    memcpy(&v, b + 4 * k, 4);
    if (!isfinite(v))
      return rt_failf(LATHE_RT_EFORMAT, "'%s': tensor '%s': element %lld is %s; the state must be finite", path,
                      t->name, (long long)k, isnan(v) ? "nan" : "inf");
  }
  return 0;
}

static int i64_scalar(const char *path, const rt_sft_tensor *e, int64_t lo, int64_t hi, int64_t *v) {
  if (e->dtype != RT_SFT_I64 || e->bytes != 8)
    return rt_failf(LATHE_RT_EFORMAT, "'%s': tensor '%s' must be i64[1]", path, e->name);
  memcpy(v, e->data, 8);
  if (*v < lo || *v > hi)
    return rt_failf(LATHE_RT_EFORMAT, "'%s': tensor '%s': %lld is out of range (%lld to %lld)", path, e->name,
                    (long long)*v, (long long)lo, (long long)hi);
  return 0;
}

/* An input's normalisation in the file against the emitted model's: the
 * vectors replace the state's when both have them; a file that says the
 * model was trained otherwise (vectors where the model has none, or "none"
 * where it has some) is refused. */
static int check_pre(const char *path, const lathe_rt_image *im, const lathe_rt_io *x, const lathe_rt_train_in *ti,
                     const rt_sft_file *f) {
  char name[LATHE_RT_NAME + 32];
  snprintf(name, sizeof name, PRE "%s.kind", ti->name);
  const rt_sft_tensor *e = rt_sft_find(f, name);
  int64_t kind = -1;
  if (e && i64_scalar(path, e, 0, 2, &kind)) return LATHE_RT_EFORMAT;
  snprintf(name, sizeof name, PRE "%s.shift", ti->name);
  int vectors = rt_sft_find(f, name) != NULL;
  if (kind < 0 && !vectors) return 0;
  if ((x->shift >= 0) != (kind > 0 || (kind < 0 && vectors)))
    return rt_failf(LATHE_RT_EFORMAT, "'%s': input '%s': the file's weights were trained %s normalisation, the "
                    "model '%s' was emitted %s: emit it from weights that carry the same", path, ti->name,
                    x->shift >= 0 ? "without" : "with", (const char *)at(im, im->name_off),
                    x->shift >= 0 ? "with it" : "without it");
  return 0;
}

/* Names starting "__" are run metadata; "opt.*" of another optimizer is
 * ignored as lathe train --weights ignores it; anything else must be a
 * tensor of the model. */
static int check_names(const char *path, const lathe_rt_image *im, const rt_sft_file *f) {
  const lathe_rt_tensor *t = at(im, im->tensors_off);
  for (int k = 0; k < f->n; k++) {
    const char *nm = f->t[k].name;
    if (!strncmp(nm, "__", 2) || !strncmp(nm, "opt.", 4)) continue;
    int64_t j = 0;
    while (j < im->ntensors && strcmp(t[j].name, nm)) j++;
    if (j == im->ntensors)
      return rt_failf(LATHE_RT_EFORMAT, "'%s': unexpected tensor '%s': model '%s' has no such parameter", path, nm,
                      (const char *)at(im, im->name_off));
  }
  return 0;
}

/* Every check first, then the copy: a refused file changes nothing. */
static int load_file(const lathe_rt_image *im, const lathe_rt_train *tr, void *state, const char *path,
                     const rt_sft_file *f) {
  const lathe_rt_tensor *t = at(im, im->tensors_off);
  const lathe_rt_io *io = at(im, im->inputs_off);
  const lathe_rt_train_in *tin = at(im, tr->ins_off);
  if (check_names(path, im, f)) return LATHE_RT_EFORMAT;
  for (int64_t i = 0; i < im->ninputs; i++)
    if (check_pre(path, im, &io[i], &tin[i], f)) return LATHE_RT_EFORMAT;
  for (int64_t k = 0; k < im->ntensors; k++) {
    const rt_sft_tensor *e = rt_sft_find(f, t[k].name);
    if (!e && k < tr->nparams && strncmp(t[k].name, "opt.", 4)) {
      char want[160];
      type_str(RT_SFT_F32, (int)t[k].rank, t[k].dim, want, sizeof want);
      return rt_failf(LATHE_RT_EFORMAT, "'%s': missing tensor '%s' (the model expects %s)", path, t[k].name, want);
    }
    if (e && check_tensor(path, &t[k], e)) return LATHE_RT_EFORMAT;
  }
  int64_t step = 0;
  const rt_sft_tensor *s = rt_sft_find(f, meta_names[0]);
  if (s && i64_scalar(path, s, 0, (int64_t)1 << 40, &step)) return LATHE_RT_EFORMAT;
  unsigned char *w = data_of(state);
  for (int64_t k = 0; k < im->ntensors; k++) {
    const rt_sft_tensor *e = rt_sft_find(f, t[k].name);
    if (e) memcpy(w + t[k].off, e->data, (size_t)t[k].bytes);
    else if (k < tr->nparams) memset(w + t[k].off, 0, (size_t)t[k].bytes); /* optimizer state starts at zero */
  }
  memset(state, 0, HEAD);
  ((lathe_rt_train_head *)state)->step = step;
  return 0;
}

int lathe_rt_state_load(const void *image, void *state, const char *path) {
  const lathe_rt_image *im = image;
  int rc;
  const lathe_rt_train *tr = train_of(im, &rc);
  if (!tr) return rc;
  if (!state || !path) return rt_failf(LATHE_RT_EARG, "MODEL_state_load: a NULL argument");
  rt_sft_file f;
  char msg[512];
  if (rt_sft_read(path, &f, msg, sizeof msg))
    return rt_failf(strncmp(msg, "cannot open", 11) ? LATHE_RT_EFORMAT : LATHE_RT_EFILE, "%s", msg);
  rc = load_file(im, tr, state, path, &f);
  rt_sft_free(&f);
  return rc;
}
