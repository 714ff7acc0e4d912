/* api_preprocess.c -- the data preprocessing that travels with the weights.
 *
 * Training normalises the model's f32 feature inputs with statistics of the
 * training split (data_split.c: x' = (x - shift[j]) * scale[j], j the
 * element within one example). A model is only right on data normalised the
 * same way, so the statistics are part of the weights: a program holds, per
 * input, the preprocessing its weights carry; lathe_weights_save and the
 * training checkpoints write it, lathe_weights_load reads it, and
 * lathe_set_input applies it to the raw features the caller gives. Emitted
 * code (lathe emit) is meant to do the same in MODEL_forward.
 *
 * In the safetensors file, per input NAME (W = values per example):
 *   __preprocess.NAME.kind   i64[1]: 0 none, 1 standard, 2 minmax
 *   __preprocess.NAME.shift  f32[W]   (absent for none)
 *   __preprocess.NAME.scale  f32[W]   (absent for none)
 * "none" is recorded too: it says the model was trained on raw features, so
 * nothing may refit statistics for it. A file with no __preprocess tensors
 * (lathe init, weights written before this existed) carries nothing, and the
 * program applies nothing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/data.h"
#include "runtime/program.h"
#include "runtime/runtime.h"

#define PRE_PREFIX "__preprocess."

/* Per program input; carried = 0 when the weights say nothing about it. */
struct api_pre {
  int carried;
  rt_norm nm;
};

static const char *const kind_names[] = {"none", "standard", "minmax"};
enum { NKINDS = 3 };
static const char *const field_names[] = {"kind", "shift", "scale"};
enum { F_KIND, F_SHIFT, F_SCALE, NFIELDS };

const char *lathe_norm_kind_name(lathe_norm_kind k) {
  return (int)k >= 0 && (int)k < NKINDS ? kind_names[k] : NULL;
}

int api_pre_is_name(const char *name) { return strncmp(name, PRE_PREFIX, strlen(PRE_PREFIX)) == 0; }

static void pre_free_array(api_pre *pre, int n) {
  if (!pre) return;
  for (int i = 0; i < n; i++) rt_norm_free(&pre[i].nm);
  free(pre);
}

void api_pre_free(lathe_program *p) {
  pre_free_array(p->pre, p->g.ninputs);
  p->pre = NULL;
}

/* Values per example of input i: everything but the leading batch axis. */
static int64_t per_example(const ir_input *in) {
  if (in->shape.rank < 1 || in->shape.d[0] < 1) return ir_numel(&in->shape);
  return ir_numel(&in->shape) / in->shape.d[0];
}

/* "__preprocess.x.shift" -> input index and field, or -1 with a message. */
static int split_name(const lathe_program *p, const char *path, const char *name, int *input, int *field,
                      lathe_error *err) {
  const char *rest = name + strlen(PRE_PREFIX), *dot = strrchr(rest, '.');
  *field = -1;
  for (int k = 0; dot && k < NFIELDS; k++)
    if (!strcmp(dot + 1, field_names[k])) *field = k;
  if (!dot || *field < 0)
    return api_fail(err, LATHE_EUSER, "'%s': unknown preprocessing tensor '%s' (expected %sINPUT.kind, .shift or "
                    ".scale)", path, name, PRE_PREFIX);
  *input = -1;
  for (int i = 0; i < p->g.ninputs; i++)
    if (strlen(p->g.inputs[i].name) == (size_t)(dot - rest) && !strncmp(p->g.inputs[i].name, rest, (size_t)(dot - rest)))
      *input = i;
  if (*input < 0)
    return api_fail(err, LATHE_EUSER, "'%s': tensor '%s' holds preprocessing for input '%.*s', but model '%s' has "
                    "no such input", path, name, (int)(dot - rest), rest, p->g.model_name);
  const ir_input *in = &p->g.inputs[*input];
  if (in->is_target || in->dtype != IR_F32)
    return api_fail(err, LATHE_EUSER, "'%s': tensor '%s' holds preprocessing for '%s', but only f32 feature "
                    "inputs are normalised ('%s' is %s%s)", path, name, in->name, in->name,
                    in->is_target ? "a target of dtype " : "", ir_dtype_name(in->dtype));
  return 0;
}

/* The statistics tensor of field k for input in: f32[W], finite. */
static int check_stats(const char *path, const rt_st_entry *e, const ir_input *in, int64_t w, lathe_error *err) {
  if (e->t.dtype != LATHE_F32 || e->t.rank != 1 || e->t.shape[0] != w)
    return api_fail(err, LATHE_EUSER, "'%s': tensor '%s' must be f32[%lld] (input '%s' takes %lld values per "
                    "example), got %s with %lld values", path, e->name, (long long)w, in->name, (long long)w,
                    lathe_dtype_name(e->t.dtype), (long long)lathe_tensor_numel(&e->t));
  const float *v = e->t.data;
  for (int64_t j = 0; j < w; j++)
    if (!isfinite(v[j]))
      return api_fail(err, LATHE_EUSER, "'%s': tensor '%s' holds a non-finite value at [%lld]", path, e->name,
                      (long long)j);
  return 0;
}

/* One input's entries (each may be NULL) into pre. */
static int read_one(const char *path, const ir_input *in, const rt_st_entry *const f[NFIELDS], api_pre *pre,
                    lathe_error *err) {
  if (!f[F_KIND])
    return api_fail(err, LATHE_EUSER, "'%s': tensor '%s' has no '%s%s.kind' beside it", path,
                    (f[F_SHIFT] ? f[F_SHIFT] : f[F_SCALE])->name, PRE_PREFIX, in->name);
  int64_t k = -1;
  if (f[F_KIND]->t.dtype == LATHE_I64 && lathe_tensor_numel(&f[F_KIND]->t) == 1) k = *(const int64_t *)f[F_KIND]->t.data;
  if (k < 0 || k >= NKINDS)
    return api_fail(err, LATHE_EUSER, "'%s': tensor '%s' must be one i64 (0 none, 1 standard, 2 minmax)", path,
                    f[F_KIND]->name);
  int64_t w = per_example(in);
  if (k == RT_NORM_NONE) {
    if (f[F_SHIFT] || f[F_SCALE])
      return api_fail(err, LATHE_EUSER, "'%s': input '%s' is not normalised (kind none), but '%s' is present",
                      path, in->name, (f[F_SHIFT] ? f[F_SHIFT] : f[F_SCALE])->name);
  } else {
    for (int j = F_SHIFT; j <= F_SCALE; j++) {
      if (!f[j])
        return api_fail(err, LATHE_EUSER, "'%s': %s normalisation of input '%s' needs tensor '%s%s.%s'", path,
                        kind_names[k], in->name, PRE_PREFIX, in->name, field_names[j]);
      int rc = check_stats(path, f[j], in, w, err);
      if (rc) return rc;
    }
    pre->nm.shift = malloc((size_t)w * sizeof(float));
    pre->nm.scale = malloc((size_t)w * sizeof(float));
    if (!pre->nm.shift || !pre->nm.scale) return api_fail(err, LATHE_ENOMEM, "out of memory");
    memcpy(pre->nm.shift, f[F_SHIFT]->t.data, (size_t)w * sizeof(float));
    memcpy(pre->nm.scale, f[F_SCALE]->t.data, (size_t)w * sizeof(float));
  }
  pre->carried = 1;
  pre->nm.kind = (rt_norm_kind)k;
  pre->nm.width = k == RT_NORM_NONE ? 0 : w;
  return 0;
}

int api_pre_read(const lathe_program *p, const char *path, const rt_st_file *f, api_pre **out, lathe_error *err) {
  *out = NULL;
  int ni = p->g.ninputs, any = 0;
  const rt_st_entry **by = calloc((size_t)ni * NFIELDS + 1, sizeof *by);
  if (!by) return api_fail(err, LATHE_ENOMEM, "out of memory");
  int rc = 0;
  for (int k = 0; rc == 0 && k < f->n; k++) {
    int i = -1, j = -1;
    if (!api_pre_is_name(f->e[k].name)) continue;
    rc = split_name(p, path, f->e[k].name, &i, &j, err);
    if (rc && p->pipe_stage && i < 0 && j >= 0) { /* another pipeline stage's input */
      lathe_error_clear(err);
      rc = 0;
      continue;
    }
    if (rc == 0) by[i * NFIELDS + j] = &f->e[k], any = 1;
  }
  api_pre *pre = rc == 0 && any ? calloc((size_t)ni, sizeof *pre) : NULL;
  if (rc == 0 && any && !pre) rc = api_fail(err, LATHE_ENOMEM, "out of memory");
  for (int i = 0; rc == 0 && pre && i < ni; i++) {
    const rt_st_entry *const *fi = by + i * NFIELDS;
    if (fi[F_KIND] || fi[F_SHIFT] || fi[F_SCALE]) rc = read_one(path, &p->g.inputs[i], fi, &pre[i], err);
  }
  free(by);
  if (rc) pre_free_array(pre, ni);
  else *out = pre;
  return rc;
}

void api_pre_replace(lathe_program *p, api_pre *pre) {
  api_pre_free(p);
  p->pre = pre;
}

void api_pre_discard(const lathe_program *p, api_pre *pre) { pre_free_array(pre, p->g.ninputs); }

int api_pre_set(lathe_program *p, const char *input, const rt_norm *nm, lathe_error *err) {
  int i = ir_find_input(&p->g, input);
  if (i < 0 || p->g.inputs[i].dtype != IR_F32 || p->g.inputs[i].is_target)
    return api_fail(err, LATHE_EINTERNAL, "internal error: no f32 feature input '%s' to normalise", input);
  int64_t w = per_example(&p->g.inputs[i]);
  if (nm->kind != RT_NORM_NONE && nm->width != w)
    return api_fail(err, LATHE_EINTERNAL, "internal error: normalisation of %lld values for input '%s' of %lld",
                    (long long)nm->width, input, (long long)w);
  if (!p->pre && !(p->pre = calloc((size_t)p->g.ninputs, sizeof *p->pre)))
    return api_fail(err, LATHE_ENOMEM, "out of memory");
  api_pre *d = &p->pre[i];
  rt_norm_free(&d->nm);
  d->carried = 1;
  d->nm.kind = nm->kind;
  if (nm->kind == RT_NORM_NONE) return 0;
  d->nm.width = w;
  d->nm.shift = malloc((size_t)w * sizeof(float));
  d->nm.scale = malloc((size_t)w * sizeof(float));
  if (!d->nm.shift || !d->nm.scale) {
    rt_norm_free(&d->nm);
    d->carried = 0;
    return api_fail(err, LATHE_ENOMEM, "out of memory");
  }
  memcpy(d->nm.shift, nm->shift, (size_t)w * sizeof(float));
  memcpy(d->nm.scale, nm->scale, (size_t)w * sizeof(float));
  return 0;
}

void api_pre_apply(const lathe_program *p, int input, void *data, int64_t n) {
  if (!p->pre || !p->pre[input].carried || p->g.inputs[input].dtype != IR_F32) return;
  const rt_norm *nm = &p->pre[input].nm;
  if (nm->kind == RT_NORM_NONE || nm->width < 1) return;
  rt_norm_apply(nm, data, n / nm->width);
}

int api_pre_check_kinds(const lathe_program *p, const api_pre *pre, const char *path, lathe_error *err) {
  for (int i = 0; pre && p->pre && i < p->g.ninputs; i++) {
    if (!pre[i].carried || !p->pre[i].carried || pre[i].nm.kind == p->pre[i].nm.kind) continue;
    return api_fail(err, LATHE_EUSER, "'%s' was trained with %s normalisation of input '%s', but this run asks for %s "
                    "(--normalize): resume with --normalize %s", path, kind_names[pre[i].nm.kind], p->g.inputs[i].name,
                    kind_names[p->pre[i].nm.kind], kind_names[pre[i].nm.kind]);
  }
  return 0;
}

/* ---- writing ---- */

int api_pre_count(const lathe_program *p) {
  int n = 0;
  for (int i = 0; p->pre && i < p->g.ninputs; i++)
    if (p->pre[i].carried) n += p->pre[i].nm.kind == RT_NORM_NONE ? 1 : 3;
  return n;
}

/* One block: the kinds (i64 per input), then the entries' names. */
void *api_pre_entries(const lathe_program *p, rt_st_entry *e) {
  int ni = p->g.ninputs, n = 0;
  size_t bytes = (size_t)ni * sizeof(int64_t) + 1;
  for (int i = 0; i < ni; i++) bytes += NFIELDS * (strlen(PRE_PREFIX) + strlen(p->g.inputs[i].name) + 8);
  char *block = malloc(bytes);
  if (!block) return NULL;
  int64_t *kinds = (int64_t *)block;
  char *names = block + (size_t)ni * sizeof(int64_t);
  for (int i = 0; p->pre && i < ni; i++) {
    const api_pre *d = &p->pre[i];
    if (!d->carried) continue;
    kinds[i] = d->nm.kind;
    char *nm[NFIELDS];
    for (int j = 0; j < NFIELDS; j++) {
      nm[j] = names;
      names += sprintf(names, PRE_PREFIX "%s.%s", p->g.inputs[i].name, field_names[j]) + 1;
    }
    e[n++] = (rt_st_entry){.name = nm[F_KIND], .t = {.dtype = LATHE_I64, .rank = 1, .shape = {1}, .data = &kinds[i]}};
    if (d->nm.kind == RT_NORM_NONE) continue;
    lathe_tensor t = {.dtype = LATHE_F32, .rank = 1, .shape = {d->nm.width}, .data = d->nm.shift};
    e[n++] = (rt_st_entry){.name = nm[F_SHIFT], .t = t};
    t.data = d->nm.scale;
    e[n++] = (rt_st_entry){.name = nm[F_SCALE], .t = t};
  }
  return block;
}

/* ---- the public query ---- */

int lathe_input_preprocess(const lathe_program *p, const char *input, lathe_preprocess *out) {
  if (!out) return 0;
  memset(out, 0, sizeof *out);
  int i = p && input ? ir_find_input(&p->g, input) : -1;
  if (i < 0 || !p->pre || !p->pre[i].carried) return 0;
  const rt_norm *nm = &p->pre[i].nm;
  out->kind = (lathe_norm_kind)nm->kind;
  out->width = nm->kind == RT_NORM_NONE ? 0 : nm->width;
  out->shift = nm->shift;
  out->scale = nm->scale;
  return 1;
}
