/* data.c -- what every data-set loader shares: reading a plain or gzip file
 * whole, finding fields, checking labels, freeing. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data.h"
#include "runtime.h"

void rt_data_free(rt_dataset *ds) {
  if (!ds) return;
  for (int i = 0; i < ds->nfields; i++) free(ds->f[i].data);
  free(ds->line);
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

void rt_fmt_double(char *buf, size_t n, double v) {
  if (v == floor(v) && fabs(v) < 1e18) {   /* 5000000000, not 5e+09 */
    snprintf(buf, n, "%.0f", v);
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, n, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) return;
  }
}

/* Value k of a field as a double; for the CSV target that is not an integer,
 * the exact value the file holds (the F32 field may have rounded 2.0000001
 * to 2). */
static double value_at(const rt_dataset *ds, const rt_field *f, int64_t k) {
  if (f->role == RT_FIELD_TARGET && ds->has_nonint && ds->line && k == ds->nonint_row) return ds->nonint_value;
  float x;
  rt_convert((const char *)f->data + (size_t)k * lathe_dtype_size(f->dtype), f->dtype, &x, LATHE_F32, 1);
  return x;
}

/* "FILE:LINE: error: label 2.9 in column 65" (CSV) or "FILE: example 16:
 * label 2.9" (an element of a wider example adds ", element 3"). */
static void where(const rt_dataset *ds, int field, int64_t k, const char *what, const char *value, char *buf,
                  size_t n) {
  const rt_field *f = &ds->f[field];
  const char *src = ds->fsource[field][0] ? ds->fsource[field] : ds->source;
  int64_t row = k / f->width, el = k % f->width;
  if (ds->line && ds->target_col > 0) {
    /* Features skip the target's column. */
    int64_t col = f->role == RT_FIELD_TARGET ? ds->target_col : el + 1 + (el + 1 >= ds->target_col);
    snprintf(buf, n, "%s:%lld: error: %s %s in column %lld", src, (long long)ds->line[row], what, value,
             (long long)col);
  } else if (f->width > 1) {
    snprintf(buf, n, "%s: example %lld, element %lld: %s %s", src, (long long)row, (long long)el, what, value);
  } else {
    snprintf(buf, n, "%s: example %lld: %s %s", src, (long long)row, what, value);
  }
}

static int bad_value(const rt_dataset *ds, int field, int64_t k, const char *what, const char *value,
                     const char *why, char *msg, size_t msgn) {
  char at[512];
  where(ds, field, k, what, value, at, sizeof at);
  snprintf(msg, msgn, "%s %s", at, why);
  return -1;
}

static void range_text(int64_t lo, int64_t hi, char *buf, size_t n) {
  if (lo == INT32_MIN && hi == (int64_t)INT32_MAX + 1) snprintf(buf, n, "does not fit in int32");
  else snprintf(buf, n, "is outside [%lld, %lld)", (long long)lo, (long long)hi);
}

int rt_data_check_ints(const rt_dataset *ds, int field, int64_t lo, int64_t hi, const char *what, char *msg,
                       size_t msgn) {
  return rt_data_check_ints_except(ds, field, lo, hi, 0, 0, what, msg, msgn);
}

int rt_data_check_ints_except(const rt_dataset *ds, int field, int64_t lo, int64_t hi, int has_except,
                              int64_t except, const char *what, char *msg, size_t msgn) {
  if (field < 0 || field >= ds->nfields) {
    snprintf(msg, msgn, "%s: no such field", ds->source);
    return -1;
  }
  const rt_field *f = &ds->f[field];
  int label = strcmp(what, "label") == 0;
  int is_float = f->dtype == LATHE_F32 || f->dtype == LATHE_F16 || f->dtype == LATHE_BF16;
  char value[64], range[64];
  for (int64_t k = 0; k < ds->n * f->width; k++) {
    if (is_float) {
      double v = value_at(ds, f, k);
      if (v == floor(v) && ((v >= (double)lo && v < (double)hi) || (has_except && v == (double)except))) continue;
      rt_fmt_double(value, sizeof value, v);
      if (v != floor(v))
        return bad_value(ds, field, k, what, value, label ? "is not an integer class" : "is not an integer", msg, msgn);
    } else {
      int64_t v = int_at(f, k);
      if ((v >= lo && v < hi) || (has_except && v == except)) continue;
      snprintf(value, sizeof value, "%lld", (long long)v);
    }
    range_text(lo, hi, range, sizeof range);
    return bad_value(ds, field, k, what, value, range, msg, msgn);
  }
  return 0;
}

int rt_data_check_labels(const rt_dataset *ds, int field, int64_t nclasses, char *msg, size_t msgn) {
  return rt_data_check_ints(ds, field, 0, nclasses, "label", msg, msgn);
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
