/* train_ckpt.c -- training checkpoints: weights, optimizer state and the
 * run's position (step, epoch, early-stopping counter, best validation value
 * bit for bit, learning-curve history) in one safetensors file, written
 * atomically (rt_st_write renames a finished temp file), so a run killed at
 * any moment leaves the previous checkpoint intact and --resume continues
 * exactly where the last complete epoch ended. */
#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/runtime.h"
#include "runtime/train.h"

enum { M_STEP, M_EPOCH, M_BAD, M_SEED, M_BEST, M_COUNT };
static const char *const meta_names[M_COUNT] = {"__meta.step", "__meta.epoch", "__meta.bad_epochs", "__meta.seed",
                                                "__meta.best_bits"};
#define HIST_NAME "__meta.history"

int tr_ckpt_save(const char *path, const lathe_program *p, const tr_meta *meta, lathe_error *err) {
  return tr_ckpt_save_full(path, p, meta, NULL, err);
}

int tr_ckpt_save_full(const char *path, const lathe_program *p, const tr_meta *meta, float *const *full,
                      lathe_error *err) {
  int np = p->g.nparams, n = 0, npre = api_pre_count(p);
  rt_st_entry *e = calloc((size_t)(np + npre) + M_COUNT + 1, sizeof *e);
  void *pre_names = e ? api_pre_entries(p, e) : NULL; /* the data preprocessing, so run and eval apply it */
  if (!e || !pre_names) {
    free(e);
    return api_fail(err, LATHE_ENOMEM, "out of memory");
  }
  n = npre;
  for (int i = 0; i < np; i++) {
    const ir_param *pr = &p->g.params[i];
    e[n].name = (char *)pr->name;
    lathe_param_view(p, i, &e[n].t);
    if (full && full[i]) { /* a ZeRO-1 slice: the whole state instead */
      e[n].t.rank = pr->full.rank, e[n].t.data = full[i];
      for (int d = 0; d < pr->full.rank; d++) e[n].t.shape[d] = pr->full.d[d];
    }
    n++;
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

/* The position must be one this loop can have written: a crafted epoch near
 * INT64_MAX would overflow the epoch counter and loop for ever. */
#define META_MAX ((int64_t)1 << 40)

static int meta_value(const rt_st_file *f, const char *path, int k, int64_t *v, lathe_error *err) {
  const rt_st_entry *e = rt_st_find(f, meta_names[k]);
  if (!e || e->t.dtype != LATHE_I64 || lathe_tensor_numel(&e->t) != 1)
    return api_fail(err, LATHE_EUSER, "'%s' is not a training checkpoint: tensor '%s' is missing or malformed",
                    path, meta_names[k]);
  *v = ((const int64_t *)e->t.data)[0];
  if (k != M_SEED && k != M_BEST && (*v < 0 || *v > META_MAX))
    return api_fail(err, LATHE_EUSER, "'%s': tensor '%s': %lld is out of range (0 to %lld)", path, meta_names[k],
                    (long long)*v, (long long)META_MAX);
  return 0;
}

/* "f32[64, 256]" */
static void type_str(lathe_dtype dt, int rank, const int64_t *d, char *buf, size_t n) {
  ir_shape s = {.rank = rank};
  for (int j = 0; j < rank; j++) s.d[j] = d[j];
  char sh[128];
  ir_shape_str(&s, sh, sizeof sh);
  snprintf(buf, n, "%s%s", lathe_dtype_name(dt), sh);
}

static int load_history(const rt_st_file *f, const char *path, tr_meta *meta, lathe_error *err) {
  const rt_st_entry *h = rt_st_find(f, HIST_NAME);
  int64_t rows = h ? h->t.shape[0] : 0;
  if (h && (h->t.dtype != LATHE_F32 || h->t.rank != 2 || h->t.shape[1] != 3)) {
    char got[160];
    type_str(h->t.dtype, h->t.rank, h->t.shape, got, sizeof got);
    return api_fail(err, LATHE_EUSER, "'%s': tensor '%s': expected f32[%lld, 3], got %s", path, HIST_NAME,
                    (long long)meta->epoch, got);
  }
  if (rows != meta->epoch)
    return api_fail(err, LATHE_EUSER,
                    "'%s': tensor '%s' has %lld epochs of history, but the checkpoint is at epoch %lld", path,
                    HIST_NAME, (long long)rows, (long long)meta->epoch);
  if (rows == 0) return 0;
  meta->hist = malloc((size_t)rows * 3 * sizeof(float));
  if (!meta->hist) return api_fail(err, LATHE_ENOMEM, "out of memory");
  memcpy(meta->hist, h->t.data, (size_t)rows * 3 * sizeof(float));
  meta->nhist = rows;
  return 0;
}

static int load_meta(const rt_st_file *f, const char *path, tr_meta *meta, lathe_error *err) {
  int64_t vals[M_COUNT];
  meta->nhist = 0;
  meta->hist = NULL;
  for (int k = 0; k < M_COUNT; k++)
    if (meta_value(f, path, k, &vals[k], err)) return -1;
  meta->step = vals[M_STEP], meta->epoch = vals[M_EPOCH], meta->bad_epochs = vals[M_BAD];
  meta->seed = vals[M_SEED];
  memcpy(&meta->best, &vals[M_BEST], sizeof(double));
  if (meta->bad_epochs > meta->epoch || meta->step < meta->epoch)
    return api_fail(err, LATHE_EUSER, "'%s': the checkpoint's position does not add up: step %lld, epoch %lld, "
                    "%lld epochs without improvement", path, (long long)meta->step, (long long)meta->epoch,
                    (long long)meta->bad_epochs);
  return load_history(f, path, meta, err);
}

/* Exactly the parameter's dtype and shape: the same element count in another
 * shape (a transposed matrix) would load scrambled. */
static int check_tensor(const char *path, const ir_param *pr, const rt_st_entry *e, int weights_only,
                        lathe_error *err) {
  /* given weights may be f16 or bf16 (imported models), converted on load */
  lathe_dtype dt = e->t.dtype;
  const ir_shape *ps = pr->full.rank > 0 ? &pr->full : &pr->shape; /* ZeRO-1 state: the file holds all of it */
  int same = (dt == LATHE_F32 || (weights_only && (dt == LATHE_F16 || dt == LATHE_BF16))) && e->t.rank == ps->rank;
  for (int j = 0; same && j < ps->rank; j++) same = e->t.shape[j] == ps->d[j];
  if (!same) {
    char want[160], got[160];
    type_str(LATHE_F32, ps->rank, ps->d, want, sizeof want);
    type_str(e->t.dtype, e->t.rank, e->t.shape, got, sizeof got);
    return api_fail(err, LATHE_EUSER, "'%s': tensor '%s': expected %s, got %s", path, pr->name, want, got);
  }
  char msg[1024];
  if (rt_st_check_finite(path, e, msg, sizeof msg)) return api_fail(err, LATHE_EUSER, "%s", msg);
  return 0;
}

/* Names starting "__" are the run's metadata (this file's "__meta.*", the
 * preprocessing, whatever else a checkpoint records about the run); anything
 * else must be a parameter of the program, but for given weights any "opt.*"
 * (another optimizer's state) is ignored too. */
static int check_names(const rt_st_file *f, const char *path, const lathe_program *p, int weights_only,
                       lathe_error *err) {
  for (int k = 0; k < f->n; k++) {
    const char *name = f->e[k].name;
    if (strncmp(name, "__", 2) == 0 || (weights_only && strncmp(name, "opt.", 4) == 0)) continue;
    if (ir_find_param(&p->g, name) < 0)
      return api_fail(err, LATHE_EUSER, "'%s': unexpected tensor '%s': model '%s' has no such parameter", path, name,
                      p->g.model_name);
  }
  return 0;
}

/* A ZeRO-1 state slice: values [shard_off, shard_off + m) of the file's
 * whole (f32, checked) state, zeros past its end. */
static void shard_from(const rt_st_entry *e, const ir_param *pr, float *dst, int64_t m) {
  int64_t n = lathe_tensor_numel(&e->t), off = pr->shard_off;
  int64_t k = off >= n ? 0 : n - off < m ? n - off : m;
  if (k > 0) memcpy(dst, (const float *)e->t.data + off, sizeof(float) * (size_t)k);
  if (m > k) memset(dst + (k > 0 ? k : 0), 0, sizeof(float) * (size_t)(m - (k > 0 ? k : 0)));
}

/* Check every tensor first, then copy: a refused file changes nothing.
 * weights_only: the optimizer state starts at zero (and may be absent). */
static int apply_params(const rt_st_file *f, const char *path, lathe_program *p, int weights_only, lathe_error *err) {
  if (check_names(f, path, p, weights_only, err)) return -1;
  for (int i = 0; i < p->g.nparams; i++) {
    const ir_param *pr = &p->g.params[i];
    const rt_st_entry *e = rt_st_find(f, pr->name);
    if (!e && !pr->state)
      return api_fail(err, LATHE_EUSER, "'%s': missing tensor '%s' (the model expects f32%s)", path, pr->name,
                      ir_shape_str(&pr->shape, (char[128]){0}, 128));
    if (e && !(weights_only && pr->state) && check_tensor(path, pr, e, weights_only, err)) return -1;
  }
  for (int i = 0; i < p->g.nparams; i++) {
    const ir_param *pr = &p->g.params[i];
    const rt_st_entry *e = rt_st_find(f, pr->name);
    lathe_tensor view;
    if (lathe_param_view(p, i, &view))
      return api_fail(err, LATHE_EINTERNAL, "internal error: parameters not allocated");
    if (e && !(weights_only && pr->state) && pr->full.rank > 0) {
      shard_from(e, pr, view.data, lathe_tensor_numel(&view));
    } else if (e && !(weights_only && pr->state)) {
      rt_convert(e->t.data, e->t.dtype, view.data, LATHE_F32, lathe_tensor_numel(&view));
    } else {
      memset(view.data, 0, (size_t)lathe_tensor_bytes(&view));
    }
  }
  return 0;
}

/* The file's data preprocessing ("__preprocess.*") must be well formed and of
 * the kind this run normalises with (the weights were trained on it). */
static int check_pre(const rt_st_file *f, const char *path, const lathe_program *p, lathe_error *err) {
  api_pre *pre = NULL;
  int rc = api_pre_read(p, path, f, &pre, err);
  if (rc == 0) rc = api_pre_check_kinds(p, pre, path, err); /* the run's --normalize against the file's */
  api_pre_discard(p, pre);
  return rc;
}

int tr_ckpt_apply(const rt_st_file *f, const char *path, lathe_program *p, tr_meta *meta, lathe_error *err) {
  meta->nhist = 0;
  meta->hist = NULL;
  if (check_pre(f, path, p, err)) return -1;
  int rc = load_meta(f, path, meta, err);
  if (rc == 0) rc = apply_params(f, path, p, 0, err);
  if (rc) {
    free(meta->hist);
    meta->hist = NULL;
    meta->nhist = 0;
  }
  return rc;
}

int tr_ckpt_load(const char *path, lathe_program *p, tr_meta *meta, lathe_error *err) {
  rt_st_file f = {0};
  char msg[1024];
  if (rt_st_read(path, &f, msg, sizeof msg)) return api_fail(err, LATHE_EUSER, "%s", msg);
  int rc = tr_ckpt_apply(&f, path, p, meta, err);
  rt_st_free(&f);
  return rc;
}

int tr_weights_load(const char *path, lathe_program *p, lathe_error *err) {
  rt_st_file f = {0};
  char msg[1024];
  if (rt_st_read(path, &f, msg, sizeof msg)) return api_fail(err, LATHE_EUSER, "%s", msg);
  int rc = check_pre(&f, path, p, err);
  if (rc == 0) rc = apply_params(&f, path, p, 1, err);
  rt_st_free(&f);
  return rc;
}

/* A complete log line the checkpoint at step covers: an event of that step
 * or before (its training and validation events are written before the
 * checkpoint; early_stop after it, but a resumed run does not repeat it). */
static int log_line_kept(const char *line, size_t n, int64_t step) {
  json_tokener *tok = n <= INT32_MAX ? json_tokener_new() : NULL;
  json_object *o = tok ? json_tokener_parse_ex(tok, line, (int)n) : NULL, *js;
  json_tokener_free(tok);
  int keep = o && json_object_object_get_ex(o, "step", &js) && json_object_is_type(js, json_type_int) &&
             json_object_get_int64(js) <= step;
  json_object_put(o);
  return keep;
}

int tr_log_cut(const char *path, int64_t step, lathe_error *err) {
  char *buf = NULL, msg[1024];
  size_t len = 0, keep = 0;
  if (rt_read_file(path, &buf, &len, msg, sizeof msg)) return api_fail(err, LATHE_EUSER, "%s", msg);
  for (;;) {
    const char *nl = memchr(buf + keep, '\n', len - keep);
    if (!nl || !log_line_kept(buf + keep, (size_t)(nl - (buf + keep)), step)) break;
    keep = (size_t)(nl - buf) + 1;
  }
  free(buf);
  /* one system call: a kill leaves the whole log or the cut one */
  if (keep < len && truncate(path, (off_t)keep))
    return api_fail(err, LATHE_EUSER, "cannot cut '%s' back to step %lld: %s", path, (long long)step, strerror(errno));
  return 0;
}
