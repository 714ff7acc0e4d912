/* data.c -- what every data-set loader shares: reading a plain or gzip file
 * whole, finding fields, checking labels, freeing. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data.h"

void rt_data_free(rt_dataset *ds) {
  if (!ds) return;
  for (int i = 0; i < ds->nfields; i++) free(ds->f[i].data);
  memset(ds, 0, sizeof *ds);
}

int rt_data_field(const rt_dataset *ds, rt_field_role role, const char *name) {
  for (int i = 0; i < ds->nfields; i++)
    if (ds->f[i].role == role && (!name || !name[0] || strcmp(ds->f[i].name, name) == 0)) return i;
  return -1;
}

/* The integer value of element k of a field (integer dtypes only). */
static int64_t int_at(const rt_field *f, int64_t k) {
  switch (f->dtype) {
    case LATHE_I32: return ((const int32_t *)f->data)[k];
    case LATHE_I64: return ((const int64_t *)f->data)[k];
    case LATHE_I8: return ((const int8_t *)f->data)[k];
    case LATHE_U8: return ((const uint8_t *)f->data)[k];
    case LATHE_BOOL: return ((const uint8_t *)f->data)[k] != 0;
    default: return 0;
  }
}

int rt_data_check_labels(const rt_dataset *ds, int field, int64_t nclasses, char *msg, size_t msgn) {
  if (field < 0 || field >= ds->nfields) {
    snprintf(msg, msgn, "%s: no such field", ds->source);
    return -1;
  }
  const rt_field *f = &ds->f[field];
  if (f->dtype == LATHE_F32 || f->dtype == LATHE_F16 || f->dtype == LATHE_BF16) {
    snprintf(msg, msgn, "%s: the targets are not integers (class labels are needed)", ds->source);
    return -1;
  }
  for (int64_t k = 0; k < ds->n * f->width; k++) {
    int64_t v = int_at(f, k);
    if (v < 0 || v >= nclasses) {
      snprintf(msg, msgn, "%s: example %lld: label %lld outside [0, %lld)", ds->source,
               (long long)(k / f->width), (long long)v, (long long)nclasses);
      return -1;
    }
  }
  return 0;
}

int rt_read_maybe_gz(const char *path, char **data, size_t *len, char *msg, size_t msgn) {
  *data = NULL;
  *len = 0;
  errno = 0;
  gzFile g = gzopen(path, "rb");
  if (!g) {
    snprintf(msg, msgn, "cannot read '%s': %s", path, errno ? strerror(errno) : "out of memory");
    return -1;
  }
  gzbuffer(g, 1 << 16);
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (!buf) {
      snprintf(msg, msgn, "%s: out of memory", path);
      break;
    }
    if (cap - n < 2) {
      char *nb = cap <= SIZE_MAX / 4 ? realloc(buf, cap * 2) : NULL;
      if (!nb) {
        free(buf);
        buf = NULL;
        continue;
      }
      buf = nb, cap *= 2;
    }
    size_t want = cap - n - 1;
    if (want > (1u << 30)) want = 1u << 30;
    int k = gzread(g, buf + n, (unsigned)want);
    if (k < 0) {
      int code;
      const char *e = gzerror(g, &code);
      snprintf(msg, msgn, "%s: %s", path, code == Z_ERRNO ? strerror(errno) : e);
      free(buf);
      buf = NULL;
      break;
    }
    if (k == 0) {
      /* gzread returns 0 both at the end and on a truncated gzip stream. */
      int code;
      const char *e = gzerror(g, &code);
      if (code != Z_OK && code != Z_BUF_ERROR) {
        snprintf(msg, msgn, "%s: %s", path, e);
        free(buf);
        buf = NULL;
      } else if (code == Z_BUF_ERROR) {
        snprintf(msg, msgn, "%s: truncated gzip data", path);
        free(buf);
        buf = NULL;
      }
      break;
    }
    n += (size_t)k;
  }
  gzclose(g);
  if (!buf) return -1;
  buf[n] = 0;
  *data = buf;
  *len = n;
  return 0;
}
