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

/* What a cell holds. A header row is one with a TEXT cell: a first row of
 * numbers with an empty or NaN cell is a data row with a missing value (an
 * error), never a header to drop. */
typedef enum { CELL_NUMBER, CELL_EMPTY, CELL_MISSING, CELL_INF, CELL_OVERFLOW, CELL_TEXT } cell_kind;

/* Spellings of a missing value (pandas' defaults, UCI's '?'); NaN in any case
 * is recognised by strtod. */
static const char *const missing_words[] = {"NA", "N/A", "n/a", "na", "NULL", "null", "None", "none",
                                            "#N/A", "#NA", "<NA>", "?"};

static cell_kind classify(const char *s, double *v) {
  if (!*s) return CELL_EMPTY;
  char *e;
  *v = strtod(s, &e);
  if (*e != 0 || e == s) {
    for (size_t i = 0; i < sizeof missing_words / sizeof *missing_words; i++)
      if (strcmp(s, missing_words[i]) == 0) return CELL_MISSING;
    return CELL_TEXT;
  }
  if (isnan(*v)) return CELL_MISSING;
  /* "inf" is spelt with an n; 1e400 or 1e39 are finite numbers too big for f32. */
  if (isinf(*v) && strpbrk(s, "nN")) return CELL_INF;
  if (isinf((float)*v)) return CELL_OVERFLOW;
  return CELL_NUMBER;
}

/* The message for a cell that is not a usable number, or NULL. */
static const char *cell_problem(cell_kind k) {
  static const char *const what[] = {
    [CELL_NUMBER] = NULL,
    [CELL_EMPTY] = "empty field (a missing value: fill it or drop the row)",
    [CELL_MISSING] = "is a missing value (fill it or drop the row)",
    [CELL_INF] = "is not a finite number",
    [CELL_OVERFLOW] = "overflows f32 (largest 3.4e38)",
    [CELL_TEXT] = "is not a number",
  };
  return what[k];
}

/* Counts lines, an upper bound on the rows. */
static int64_t count_lines(const char *p, const char *end) {
  int64_t n = 1;
  for (; p < end && (p = memchr(p, '\n', (size_t)(end - p))); p++) n++;
  return n;
}

static int row_error(csv_reader *r, const char *what) {
  snprintf(r->msg, r->msgn, "%s:%lld: error: %s", r->path, (long long)r->line, what);
  return -1;
}

/* Parses the fields of one row into feats (every column but tcol) and *target. */
static int parse_row(csv_reader *r, char **fields, int64_t ncols, int64_t tcol, float *feats, double *target) {
  for (int64_t c = 0, k = 0; c < ncols; c++) {
    double v = 0;
    cell_kind kind = classify(fields[c], &v);
    if (kind != CELL_NUMBER) {
      char what[160];
      if (kind == CELL_EMPTY) snprintf(what, sizeof what, "column %lld: %s", (long long)c + 1, cell_problem(kind));
      else snprintf(what, sizeof what, "column %lld: '%.40s' %s", (long long)c + 1, fields[c], cell_problem(kind));
      return row_error(r, what);
    }
    if (c == tcol) *target = v;
    else feats[k++] = (float)v;
  }
  return 0;
}

/* Stores targets as I32 when they are all integers in range, else F32 and
 * remembers the first that is not, so that a classifier refuses it by line
 * and exact value (2.9, never class 2). */
static int store_targets(rt_dataset *ds, const double *t, int64_t n) {
  int integral = 1;
  double mx = -1;
  for (int64_t i = 0; i < n && integral; i++) {
    integral = t[i] == floor(t[i]) && t[i] >= -2147483648.0 && t[i] <= 2147483647.0;
    if (!integral) ds->has_nonint = 1, ds->nonint_row = i, ds->nonint_value = t[i];
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
    ds->line[0] = r->line;
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
    ds->line[n++] = r->line;
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
  ds->line = malloc((size_t)rows * sizeof *ds->line);
  ds->nfields = 1;
  int rc = -1;
  if (!fields || !targets || !ds->f[0].data || !ds->line) {
    snprintf(r->msg, r->msgn, "%s: out of memory", r->path);
    goto done;
  }
  split(line, fields, ncols);
  int header = 0;
  for (int64_t c = 0; c < ncols && !header; c++) {
    double v;
    header = classify(fields[c], &v) == CELL_TEXT;
  }
  int64_t tcol = target_column < 0 ? ncols + target_column : target_column;
  if (tcol < 0 || tcol >= ncols) {
    char what[96];
    snprintf(what, sizeof what, "target column %d out of range for %lld columns", target_column, (long long)ncols);
    row_error(r, what);
    goto done;
  }
  ds->target_col = tcol + 1;
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

int rt_data_parse_csv(const char *name, char *buf, size_t len, int target_column, rt_dataset *out, char *msg,
                      size_t msgn) {
  memset(out, 0, sizeof *out);
  /* A UTF-8 byte-order mark (Excel writes one) is not part of the first cell. */
  size_t bom = len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
  csv_reader r = {name, buf + bom, buf + len, 0, msg, msgn};
  snprintf(out->source, sizeof out->source, "%s", name);
  int rc = csv_parse(&r, target_column, out);
  if (rc < 0) rt_data_free(out);
  return rc;
}

int rt_data_load_csv(const char *path, int target_column, rt_dataset *out, char *msg, size_t msgn) {
  memset(out, 0, sizeof *out);
  char *buf;
  size_t len;
  if (rt_read_maybe_gz(path, &buf, &len, msg, msgn) < 0) return -1;
  int rc = rt_data_parse_csv(path, buf, len, target_column, out, msg, msgn);
  free(buf);
  return rc;
}
