/* train_ckpt.c -- training checkpoints: weights, optimizer state and the
 * run's position (step, epoch, early-stopping counter, best validation value
 * bit for bit, learning-curve history) in one safetensors file, written
 * atomically (rt_st_write renames a finished temp file), so a run killed at
 * any moment leaves the previous checkpoint intact and --resume continues
 * exactly where the last complete epoch ended. */
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"
#include "runtime/train.h"

enum { M_STEP, M_EPOCH, M_BAD, M_SEED, M_BEST, M_COUNT };
static const char *const meta_names[M_COUNT] = {"__meta.step", "__meta.epoch", "__meta.bad_epochs", "__meta.seed",
                                                "__meta.best_bits"};
#define HIST_NAME "__meta.history"

int tr_ckpt_save(const char *path, const lathe_program *p, const tr_meta *meta, lathe_error *err) {
  int np = p->g.nparams, n = 0, npre = api_pre_count(p);
  rt_st_entry *e = calloc((size_t)(np + npre) + M_COUNT + 1, sizeof *e);
  void *pre_names = e ? api_pre_entries(p, e) : NULL; /* the data preprocessing, so run and eval apply it */
  if (!e || !pre_names) {
    free(e);
    return api_fail(err, LATHE_ENOMEM, "out of memory");
  }
  n = npre;
  for (int i = 0; i < np; i++) {
    e[n].name = (char *)p->g.params[i].name;
    lathe_param_view(p, i, &e[n++].t);
  }
  int64_t vals[M_COUNT] = {meta->step, meta->epoch, meta->bad_epochs, meta->seed, 0};
  memcpy(&vals[M_BEST], &meta->best, sizeof(double)); /* the bits, so a resumed run compares exactly */
  for (int k = 0; k < M_COUNT; k++) {
    e[n].name = (char *)meta_names[k];
    e[n++].t = (lathe_tensor){.dtype = LATHE_I64, .rank = 1, .shape = {1}, .data = &vals[k]};
  }
  if (meta->nhist > 0) {
    e[n].name = HIST_NAME;
    e[n++].t = (lathe_tensor){.dtype = LATHE_F32, .rank = 2, .shape = {meta->nhist, 3}, .data = meta->hist};
  }
  char msg[1024];
  int rc = rt_st_write(path, e, n, msg, sizeof msg);
  free(pre_names);
  free(e);
  return rc ? api_fail(err, LATHE_EUSER, "%s", msg) : 0;
}

static int load_meta(const rt_st_file *f, const char *path, tr_meta *meta, lathe_error *err) {
  int64_t vals[M_COUNT];
  for (int k = 0; k < M_COUNT; k++) {
    const rt_st_entry *e = rt_st_find(f, meta_names[k]);
    if (!e || e->t.dtype != LATHE_I64 || lathe_tensor_numel(&e->t) != 1)
      return api_fail(err, LATHE_EUSER, "'%s' is not a training checkpoint: tensor '%s' is missing or malformed",
                      path, meta_names[k]);
    vals[k] = ((const int64_t *)e->t.data)[0];
  }
  meta->step = vals[M_STEP], meta->epoch = vals[M_EPOCH], meta->bad_epochs = vals[M_BAD];
  meta->seed = vals[M_SEED];
  memcpy(&meta->best, &vals[M_BEST], sizeof(double));
  const rt_st_entry *h = rt_st_find(f, HIST_NAME);
  meta->nhist = 0;
  meta->hist = NULL;
  if (h && h->t.dtype == LATHE_F32 && h->t.rank == 2 && h->t.shape[1] == 3) {
    meta->nhist = h->t.shape[0];
    meta->hist = malloc((size_t)meta->nhist * 3 * sizeof(float) + 1);
    if (!meta->hist) return api_fail(err, LATHE_ENOMEM, "out of memory");
    memcpy(meta->hist, h->t.data, (size_t)meta->nhist * 3 * sizeof(float));
  }
  return 0;
}

int tr_ckpt_load(const char *path, lathe_program *p, tr_meta *meta, lathe_error *err) {
  rt_st_file f = {0};
  char msg[1024];
  if (rt_st_read(path, &f, msg, sizeof msg)) return api_fail(err, LATHE_EUSER, "%s", msg);
  api_pre *pre = NULL;
  int rc = api_pre_read(p, path, &f, &pre, err);
  if (rc == 0) rc = api_pre_check_kinds(p, pre, path, err); /* the run's --normalize against the checkpoint's */
  api_pre_discard(p, pre);
  if (rc) {
    rt_st_free(&f);
    return rc;
  }
  rc = load_meta(&f, path, meta, err);
  char want[128], got[128];
  for (int i = 0; rc == 0 && i < p->g.nparams; i++) {
    const ir_param *pr = &p->g.params[i];
    const rt_st_entry *e = rt_st_find(&f, pr->name);
    lathe_tensor view;
    if (lathe_param_view(p, i, &view)) {
      rc = api_fail(err, LATHE_EINTERNAL, "internal error: parameters not allocated");
      break;
    }
    if (!e) {
      if (pr->state) { memset(view.data, 0, (size_t)lathe_tensor_bytes(&view)); continue; }
      rc = api_fail(err, LATHE_EUSER, "'%s': missing tensor '%s'", path, pr->name);
      break;
    }
    if (lathe_tensor_numel(&e->t) != lathe_tensor_numel(&view) || e->t.dtype != LATHE_F32) {
      ir_shape a = {.rank = e->t.rank}, b = pr->shape;
      for (int j = 0; j < a.rank; j++) a.d[j] = e->t.shape[j];
      rc = api_fail(err, LATHE_EUSER, "'%s': tensor '%s' is %s%s, but the model expects f32%s", path, pr->name,
                    lathe_dtype_name(e->t.dtype), ir_shape_str(&a, got, sizeof got), ir_shape_str(&b, want, sizeof want));
      break;
    }
    memcpy(view.data, e->t.data, (size_t)lathe_tensor_bytes(&view));
  }
  rt_st_free(&f);
  if (rc) { free(meta->hist); meta->hist = NULL; }
  return rc;
}
