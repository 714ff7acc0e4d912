/* data_npy.c -- data sets from one .npy array per model input and target
 * (`--data x=images.npy --data y=labels.npy`). The arrays are taken as
 * rt_npy_read returns them; their first axis is the example axis. */
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "runtime.h"

int rt_data_parse_pair(const char *spec, char *name, size_t namen, const char **path, char *msg, size_t msgn) {
  const char *eq = strchr(spec, '=');
  if (!eq || eq == spec || !eq[1]) {
    snprintf(msg, msgn, "'%s': expected NAME=FILE", spec);
    return -1;
  }
  size_t k = (size_t)(eq - spec);
  if (k >= namen) {
    snprintf(msg, msgn, "'%s': name too long", spec);
    return -1;
  }
  memcpy(name, spec, k);
  name[k] = 0;
  *path = eq + 1;
  return 0;
}

static int is_integer(lathe_dtype t) {
  return t == LATHE_I32 || t == LATHE_I64 || t == LATHE_I8 || t == LATHE_U8 || t == LATHE_BOOL;
}

/* The largest value of an integer tensor plus one (0 when empty). */
static int64_t classes_of(const lathe_tensor *t) {
  int64_t n = lathe_tensor_numel(t), mx = -1;
  for (int64_t i = 0; i < n; i++) {
    int64_t v;
    rt_convert((const char *)t->data + (size_t)i * lathe_dtype_size(t->dtype), t->dtype, &v, LATHE_I64, 1);
    if (v > mx) mx = v;
  }
  return mx < INT64_MAX ? mx + 1 : INT64_MAX;   /* a label of 2^63-1 is refused later, not overflowed */
}

/* Elements per example (the product of the shape without N), or -1 when it
 * does not fit: N may be 0, so the file's size bounds nothing. */
static int64_t example_width(const lathe_tensor *t) {
  int64_t w = 1;
  for (int d = 1; d < t->rank; d++) {
    if (t->shape[d] && w > INT64_MAX / 16 / t->shape[d]) return -1;
    w *= t->shape[d];
  }
  return w;
}

int rt_data_add_array(rt_dataset *ds, const rt_npy_source *s, lathe_tensor *t, char *msg, size_t msgn) {
  if (ds->nfields >= RT_DATA_MAXFIELDS) {
    snprintf(msg, msgn, "%s: more than %d arrays", s->path, RT_DATA_MAXFIELDS);
    return -1;
  }
  if (t->rank < 1) {
    snprintf(msg, msgn, "%s: '%s' is a scalar; need an array whose first axis is the examples", s->path, s->name);
    return -1;
  }
  int64_t width = example_width(t);
  if (width < 0) {
    snprintf(msg, msgn, "%s: '%s' has too many elements per example", s->path, s->name);
    return -1;
  }
  if (t->shape[0] == 0) {
    snprintf(msg, msgn, "%s: '%s' has no examples (its first axis is 0)", s->path, s->name);
    return -1;
  }
  if (ds->nfields > 0 && t->shape[0] != ds->n) {
    snprintf(msg, msgn, "%s: '%s' has %lld examples but '%s' has %lld", s->path, s->name, (long long)t->shape[0],
             ds->f[0].name, (long long)ds->n);
    return -1;
  }
  rt_field *f = &ds->f[ds->nfields++];
  snprintf(f->name, sizeof f->name, "%s", s->name);
  snprintf(ds->fsource[ds->nfields - 1], sizeof ds->fsource[0], "%s", s->path);
  f->role = s->role;
  f->dtype = t->dtype;
  f->rank = t->rank - 1;
  f->width = width;
  for (int d = 1; d < t->rank; d++) f->shape[d - 1] = t->shape[d];
  if (s->role == RT_FIELD_TARGET && is_integer(f->dtype) && !ds->nclasses) ds->nclasses = classes_of(t);
  f->data = t->data;
  t->data = NULL;
  ds->n = t->shape[0];
  return 0;
}

int rt_data_load_npy(const rt_npy_source *src, int nsrc, rt_dataset *out, char *msg, size_t msgn) {
  memset(out, 0, sizeof *out);
  if (nsrc < 1 || nsrc > RT_DATA_MAXFIELDS) {
    snprintf(msg, msgn, "expected 1 to %d NAME=FILE.npy arrays, got %d", RT_DATA_MAXFIELDS, nsrc);
    return -1;
  }
  snprintf(out->source, sizeof out->source, "%s", src[0].path);
  for (int i = 0; i < nsrc; i++) {
    for (int j = 0; j < i; j++)
      if (strcmp(src[i].name, src[j].name) == 0) {
        snprintf(msg, msgn, "'%s' is given twice", src[i].name);
        rt_data_free(out);
        return -1;
      }
    lathe_tensor t;
    if (rt_npy_read(src[i].path, &t, msg, msgn) < 0) {
      rt_data_free(out);
      return -1;
    }
    if (rt_data_add_array(out, &src[i], &t, msg, msgn) < 0) {
      lathe_tensor_free(&t);
      rt_data_free(out);
      return -1;
    }
  }
  return 0;
}
