/* data_csv.c -- numeric CSV data sets, plain or gzip.
 *
 * The file is read whole and cut in place: each line's fields are split on
 * ',' and NUL-terminated inside the buffer, so parsing allocates only the
 * result. Line numbers in messages count every line (blank ones too) from 1;
 * column numbers count from 1. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

typedef struct {
  const char *path;
  char *p, *end;    /* unread part of the buffer */
  int64_t line;     /* number of the line last returned */
  char *msg;
  size_t msgn;
} csv_reader;

#define CSV_MAXCOLS 1000000

/* The next line, NUL-terminated with its '\r' removed, or NULL at the end. */
static char *next_line(csv_reader *r) {
  if (r->p >= r->end) return NULL;
  char *s = r->p, *nl = memchr(s, '\n', (size_t)(r->end - s));
  char *e = nl ? nl : r->end;
  r->p = nl ? nl + 1 : r->end;
  if (e > s && e[-1] == '\r') e--;
  *e = 0;
  r->line++;
  return s;
}

static int blank(const char *s) {
  for (; *s; s++)
    if (!isspace((unsigned char)*s)) return 0;
  return 1;
}

/* Trims spaces and one pair of surrounding double quotes, in place. */
static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  char *e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
  *e = 0;
  if (e - s >= 2 && s[0] == '"' && e[-1] == '"') s++, e[-1] = 0;
  return s;
}

/* Splits line at ',' into at most max fields; returns the count (which may
 * exceed max: the extra fields are counted, not stored). */
static int64_t split(char *line, char **fields, int64_t max) {
  int64_t n = 0;
  for (char *s = line;;) {
    char *c = strchr(s, ',');
    if (c) *c = 0;
    if (n < max) fields[n] = trim(s);
    n++;
    if (!c) return n;
    s = c + 1;
  }
}

static int parse_number(const char *s, double *v) {
  if (!*s) return 0;
  char *e;
  *v = strtod(s, &e);
  return *e == 0 && isfinite(*v);
}

/* Counts lines, an upper bound on the rows. */
static int64_t count_lines(const char *p, const char *end) {
  int64_t n = 1;
  for (; p < end && (p = memchr(p, '\n', (size_t)(end - p))); p++) n++;
  return n;
}

static int row_error(csv_reader *r, const char *what) {
  snprintf(r->msg, r->msgn, "%s:%lld: %s", r->path, (long long)r->line, what);
  return -1;
}

/* Parses the fields of one row into feats (every column but tcol) and *target. */
static int parse_row(csv_reader *r, char **fields, int64_t ncols, int64_t tcol, float *feats, double *target) {
  for (int64_t c = 0, k = 0; c < ncols; c++) {
    double v;
    if (!parse_number(fields[c], &v)) {
      char what[160];
      if (!fields[c][0]) snprintf(what, sizeof what, "column %lld: empty field", (long long)c + 1);
      else snprintf(what, sizeof what, "column %lld: '%.40s' is not a number", (long long)c + 1, fields[c]);
      return row_error(r, what);
    }
    if (c == tcol) *target = v;
    else feats[k++] = (float)v;
  }
  return 0;
}

/* Stores targets as I32 when they are all integers in range, else F32. */
static int store_targets(rt_dataset *ds, const double *t, int64_t n) {
  int integral = 1;
  double mx = -1;
  for (int64_t i = 0; i < n && integral; i++) {
    integral = t[i] == floor(t[i]) && t[i] >= -2147483648.0 && t[i] <= 2147483647.0;
    if (t[i] > mx) mx = t[i];
  }
  rt_field *f = &ds->f[1];
  f->role = RT_FIELD_TARGET;
  f->width = 1;
  f->rank = 0;
  f->dtype = integral ? LATHE_I32 : LATHE_F32;
  f->data = malloc((size_t)(n ? n : 1) * 4);
  if (!f->data) return -1;
  for (int64_t i = 0; i < n; i++) {
    if (integral) ((int32_t *)f->data)[i] = (int32_t)t[i];
    else ((float *)f->data)[i] = (float)t[i];
  }
  ds->nclasses = integral && n ? (int64_t)mx + 1 : 0;
  ds->nfields = 2;
  return 0;
}

/* The rows after the first (already split) one. */
static int parse_rows(csv_reader *r, char **fields, int64_t ncols, int64_t tcol, int have_first, rt_dataset *ds,
                      double *targets) {
  float *x = ds->f[0].data;
  int64_t w = ncols - 1, n = 0;
  if (have_first) {
    if (parse_row(r, fields, ncols, tcol, x, &targets[0]) < 0) return -1;
    n = 1;
  }
  for (char *line; (line = next_line(r));) {
    if (blank(line)) continue;
    int64_t k = split(line, fields, ncols);
    if (k != ncols) {
      char what[96];
      snprintf(what, sizeof what, "expected %lld columns, found %lld", (long long)ncols, (long long)k);
      return row_error(r, what);
    }
    if (parse_row(r, fields, ncols, tcol, x + n * w, &targets[n]) < 0) return -1;
    n++;
  }
  ds->n = n;
  return 0;
}

static int csv_parse(csv_reader *r, int target_column, rt_dataset *ds) {
  char *line;
  while ((line = next_line(r)) && blank(line)) {}
  if (!line) {
    snprintf(r->msg, r->msgn, "%s: no data rows", r->path);
    return -1;
  }
  /* The first line fixes the column count; a non-numeric field makes it a header. */
  int64_t ncols = 1;
  for (const char *c = line; (c = strchr(c, ',')); c++) ncols++;
  if (ncols < 2) return row_error(r, "need at least 2 columns (features and a target)");
  if (ncols > CSV_MAXCOLS) return row_error(r, "too many columns");
  /* Rows: at most one per line, and each later row that reaches parsing has
   * exactly ncols-1 commas plus a newline (but the last). */
  int64_t rows = count_lines(r->p, r->end) + 1, fit = ((int64_t)(r->end - r->p) + 1) / ncols + 1;
  if (fit < rows) rows = fit;
  char **fields = malloc((size_t)ncols * sizeof *fields);
  double *targets = malloc((size_t)rows * sizeof *targets);
  ds->f[0].data = malloc((size_t)rows * (size_t)(ncols - 1) * sizeof(float));
  ds->nfields = 1;
  int rc = -1;
  if (!fields || !targets || !ds->f[0].data) {
    snprintf(r->msg, r->msgn, "%s: out of memory", r->path);
    goto done;
  }
  split(line, fields, ncols);
  int header = 0;
  for (int64_t c = 0; c < ncols && !header; c++) {
    double v;
    header = !parse_number(fields[c], &v);
  }
  int64_t tcol = target_column < 0 ? ncols + target_column : target_column;
  if (tcol < 0 || tcol >= ncols) {
    char what[96];
    snprintf(what, sizeof what, "target column %d out of range for %lld columns", target_column, (long long)ncols);
    row_error(r, what);
    goto done;
  }
  rt_field *x = &ds->f[0];
  x->role = RT_FIELD_INPUT, x->dtype = LATHE_F32, x->width = ncols - 1, x->rank = 1, x->shape[0] = ncols - 1;
  if (parse_rows(r, fields, ncols, tcol, !header, ds, targets) < 0) goto done;
  if (ds->n == 0) {
    snprintf(r->msg, r->msgn, "%s: no data rows (only a header)", r->path);
    goto done;
  }
  if (store_targets(ds, targets, ds->n) < 0) {
    snprintf(r->msg, r->msgn, "%s: out of memory", r->path);
    goto done;
  }
  rc = 0;
done:
  free(fields);
  free(targets);
  return rc;
}

int rt_data_load_csv(const char *path, int target_column, rt_dataset *out, char *msg, size_t msgn) {
  memset(out, 0, sizeof *out);
  char *buf;
  size_t len;
  if (rt_read_maybe_gz(path, &buf, &len, msg, msgn) < 0) return -1;
  csv_reader r = {path, buf, buf + len, 0, msg, msgn};
  snprintf(out->source, sizeof out->source, "%s", path);
  int rc = csv_parse(&r, target_column, out);
  free(buf);
  if (rc < 0) rt_data_free(out);
  return rc;
}
