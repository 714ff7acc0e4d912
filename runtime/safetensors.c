/* safetensors.c -- weight files in the safetensors format.
 *
 * Layout: u64 little-endian N, then N bytes of JSON header
 *   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
 *    ..., "__metadata__": {"key": "value"}}
 * padded with spaces, then the data section; offsets are relative to it.
 * Everything in the header is checked before any tensor is touched. */
#include <float.h>
#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

/* The reference implementation refuses headers above 100 MB. */
#define ST_MAX_HEADER 100000000ull

typedef struct {
  const char *code;  /* as spelled in the header */
  lathe_dtype dtype; /* what the tensor holds after reading */
  size_t size;       /* bytes per element in the file */
  const char *name;  /* for messages */
} st_kind;

/* The first eight are indexed by lathe_dtype (the writer relies on it). */
static const st_kind kinds[] = {
  {"F32", LATHE_F32, 4, "f32"}, {"F16", LATHE_F16, 2, "f16"}, {"BF16", LATHE_BF16, 2, "bf16"},
  {"I32", LATHE_I32, 4, "i32"}, {"I64", LATHE_I64, 8, "i64"}, {"I8", LATHE_I8, 1, "i8"},
  {"U8", LATHE_U8, 1, "u8"},    {"BOOL", LATHE_BOOL, 1, "bool"}, {"F64", LATHE_F32, 8, "f64"},
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

/* One header entry after validation. */
typedef struct {
  const char *name;  /* points into the JSON tree */
  const st_kind *kind;
  int rank;
  int64_t shape[LATHE_MAXDIM];
  uint64_t begin, end;
} st_info;

typedef struct {
  const char *path;
  char *msg;
  size_t msgn;
} st_ctx;

/* "[10, 5]" */
static void shape_str(const int64_t *shape, int rank, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

/* 0: a non-negative integer in *v; -1: not an integer; -2: negative;
 * -3: beyond int64. */
static int get_count(json_object *j, int64_t *v) {
  if (!json_object_is_type(j, json_type_int)) return -1;
  *v = json_object_get_int64(j);
  if (*v < 0) return -2;
  if (*v == INT64_MAX && json_object_get_uint64(j) != (uint64_t)INT64_MAX) return -3;
  return 0;
}

static int tensor_err(const st_ctx *c, const char *name, const char *what) {
  snprintf(c->msg, c->msgn, "'%s': tensor '%s': %s", c->path, name, what);
  return -1;
}

static int parse_dtype(const st_ctx *c, st_info *t, json_object *e) {
  json_object *j;
  if (!json_object_object_get_ex(e, "dtype", &j)) return tensor_err(c, t->name, "missing 'dtype'");
  if (!json_object_is_type(j, json_type_string)) return tensor_err(c, t->name, "'dtype' is not a string");
  const char *s = json_object_get_string(j);
  for (size_t i = 0; i < NKINDS; i++)
    if (strcmp(s, kinds[i].code) == 0) {
      t->kind = &kinds[i];
      return 0;
    }
  char what[96];
  snprintf(what, sizeof what, "unsupported dtype '%.40s'", s);
  return tensor_err(c, t->name, what);
}

static int parse_shape(const st_ctx *c, st_info *t, json_object *e) {
  json_object *j;
  if (!json_object_object_get_ex(e, "shape", &j)) return tensor_err(c, t->name, "missing 'shape'");
  if (!json_object_is_type(j, json_type_array)) return tensor_err(c, t->name, "'shape' is not an array");
  size_t rank = json_object_array_length(j);
  if (rank > LATHE_MAXDIM) return tensor_err(c, t->name, "rank exceeds the maximum of 8");
  t->rank = (int)rank;
  for (int i = 0; i < t->rank; i++) {
    int rc = get_count(json_object_array_get_idx(j, (size_t)i), &t->shape[i]);
    if (rc == -1) return tensor_err(c, t->name, "'shape' entries must be integers");
    if (rc == -2) return tensor_err(c, t->name, "'shape' has a negative dimension");
    if (rc == -3) return tensor_err(c, t->name, "'shape' has a dimension that is too large");
  }
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) {
    if (t->shape[i] != 0 && n > INT64_MAX / (int64_t)t->kind->size / t->shape[i])
      return tensor_err(c, t->name, "shape has too many elements");
    n *= t->shape[i];
  }
  return 0;
}

static uint64_t info_bytes(const st_info *t) {
  uint64_t n = t->kind->size;
  for (int i = 0; i < t->rank; i++) n *= (uint64_t)t->shape[i];
  return n;
}

static int parse_offsets(const st_ctx *c, st_info *t, json_object *e, uint64_t datalen) {
  json_object *j;
  int64_t b, en;
  char what[320], sh[LATHE_MAXDIM * 24];
  if (!json_object_object_get_ex(e, "data_offsets", &j)) return tensor_err(c, t->name, "missing 'data_offsets'");
  if (!json_object_is_type(j, json_type_array) || json_object_array_length(j) != 2 ||
      get_count(json_object_array_get_idx(j, 0), &b) || get_count(json_object_array_get_idx(j, 1), &en))
    return tensor_err(c, t->name, "'data_offsets' must be two non-negative integers");
  t->begin = (uint64_t)b;
  t->end = (uint64_t)en;
  if (t->begin > t->end || t->end > datalen) {
    snprintf(what, sizeof what, "data_offsets [%llu, %llu] are out of range (the data section is %llu bytes)",
             (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)datalen);
    return tensor_err(c, t->name, what);
  }
  if (t->end - t->begin != info_bytes(t)) {
    shape_str(t->shape, t->rank, sh, sizeof sh);
    snprintf(what, sizeof what, "data_offsets [%llu, %llu] do not match shape %s %s (%llu bytes)",
             (unsigned long long)t->begin, (unsigned long long)t->end, sh, t->kind->name,
             (unsigned long long)info_bytes(t));
    return tensor_err(c, t->name, what);
  }
  return 0;
}

static int parse_metadata(const st_ctx *c, json_object *m) {
  int ok = json_object_is_type(m, json_type_object);
  if (ok) {
    json_object_object_foreach(m, k, v) {
      (void)k;
      if (!json_object_is_type(v, json_type_string)) ok = 0;
    }
  }
  if (ok) return 0;
  snprintf(c->msg, c->msgn, "'%s': '__metadata__' must be an object of strings", c->path);
  return -1;
}

static int cmp_begin(const void *a, const void *b) {
  const st_info *x = *(const st_info *const *)a, *y = *(const st_info *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return (x->end > y->end) - (x->end < y->end);
}

/* No two non-empty tensors may share bytes. */
static int check_overlap(const st_ctx *c, st_info *info, int n) {
  st_info **by = malloc(sizeof *by * (size_t)(n ? n : 1));
  if (!by) {
    snprintf(c->msg, c->msgn, "'%s': out of memory", c->path);
    return -1;
  }
  for (int i = 0; i < n; i++) by[i] = &info[i];
  qsort(by, (size_t)n, sizeof *by, cmp_begin);
  const st_info *last = NULL;
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    if (by[i]->begin == by[i]->end) continue;
    if (last && by[i]->begin < last->end) {
      snprintf(c->msg, c->msgn, "'%s': tensors '%s' and '%s' overlap (data_offsets [%llu, %llu] and [%llu, %llu])",
               c->path, last->name, by[i]->name, (unsigned long long)last->begin,
               (unsigned long long)last->end, (unsigned long long)by[i]->begin, (unsigned long long)by[i]->end);
      rc = -1;
    }
    if (!last || by[i]->end > last->end) last = by[i];
  }
  free(by);
  return rc;
}

/* Validate every entry of the header object into info[0..*n). */
static int parse_entries(const st_ctx *c, json_object *root, uint64_t datalen, st_info *info, int *n) {
  *n = 0;
  json_object_object_foreach(root, name, e) {
    if (strcmp(name, "__metadata__") == 0) {
      if (parse_metadata(c, e)) return -1;
      continue;
    }
    st_info *t = &info[*n];
    memset(t, 0, sizeof *t);
    t->name = name;
    if (!json_object_is_type(e, json_type_object)) return tensor_err(c, name, "entry is not a JSON object");
    if (parse_dtype(c, t, e) || parse_shape(c, t, e) || parse_offsets(c, t, e, datalen)) return -1;
    (*n)++;
  }
  return check_overlap(c, info, *n);
}

/* json-c keeps only the last of two equal keys and cuts a key at an embedded
 * NUL, so both would load silently wrong tensors: the top-level keys are
 * read again from the raw text (already valid JSON) and checked here. */
/* The decoded key of the JSON string literal h[a..b); NULL when out of memory. */
static json_object *key_at(const char *h, size_t a, size_t b) {
  json_tokener *tok = b - a <= INT32_MAX ? json_tokener_new() : NULL;
  json_object *k = tok ? json_tokener_parse_ex(tok, h + a, (int)(b - a)) : NULL;
  json_tokener_free(tok);
  if (k && json_object_is_type(k, json_type_string)) return k;
  json_object_put(k);
  return NULL;
}

static int cmp_key(const void *a, const void *b) {
  json_object *x = *(json_object *const *)a, *y = *(json_object *const *)b;
  int nx = json_object_get_string_len(x), ny = json_object_get_string_len(y);
  int r = memcmp(json_object_get_string(x), json_object_get_string(y), (size_t)(nx < ny ? nx : ny));
  return r ? r : (nx > ny) - (nx < ny);
}

/* The top-level object's keys (at most cap of them) and, per key, how many
 * keys its value's object holds, read from the raw text: a key is a string
 * after '{' or ',' inside an object. -1 when out of memory. */
#define ST_MAX_DEPTH 64 /* json-c refuses deeper headers before this runs */
static int collect_keys(const char *h, size_t n, json_object **keys, int *inner, int cap, int *nk) {
  unsigned char is_obj[ST_MAX_DEPTH + 1] = {0};
  int depth = 0, expect_key = 0;
  *nk = 0;
  for (size_t i = 0; i < n && *nk < cap; i++) {
    char ch = h[i];
    if (ch == '"') {
      size_t j = i + 1;
      while (j < n && h[j] != '"') j += h[j] == '\\' ? 2 : 1;
      if (j >= n) break;
      if (expect_key && depth == 1) {
        inner[*nk] = 0;
        if (!(keys[(*nk)++] = key_at(h, i, j + 1))) return -1;
      } else if (expect_key && depth == 2 && *nk > 0) {
        inner[*nk - 1]++;
      }
      expect_key = 0;
      i = j;
    } else if (ch == '{' || ch == '[') {
      if (++depth > ST_MAX_DEPTH) break;
      is_obj[depth] = ch == '{';
      expect_key = ch == '{';
    } else if (ch == '}' || ch == ']') {
      if (depth > 0) depth--;
    } else if (ch == ',') {
      expect_key = depth > 0 && is_obj[depth];
    }
  }
  return 0;
}

static int first_repeat(json_object **keys, int nk) {
  qsort(keys, (size_t)nk, sizeof *keys, cmp_key);
  for (int i = 1; i < nk; i++)
    if (cmp_key(&keys[i - 1], &keys[i]) == 0) return i;
  return -1;
}

/* No key with a NUL, no key twice: not a tensor, not a field of an entry
 * (json-c keeps one of them silently, another reader might keep the other). */
static int keys_problem(const st_ctx *c, json_object *root, json_object **keys, const int *inner, int nk) {
  for (int i = 0; i < nk; i++)
    if (strlen(json_object_get_string(keys[i])) != (size_t)json_object_get_string_len(keys[i])) {
      snprintf(c->msg, c->msgn, "'%s': tensor name '%.200s\\u0000...' contains a NUL character", c->path,
               json_object_get_string(keys[i]));
      return -1;
    }
  if (nk > json_object_object_length(root)) {
    int r = first_repeat(keys, nk);
    snprintf(c->msg, c->msgn, "'%s': tensor '%.200s' appears twice in the header", c->path,
             r >= 0 ? json_object_get_string(keys[r]) : "?");
    return -1;
  }
  for (int i = 0; i < nk; i++) {
    json_object *e = NULL;
    json_object_object_get_ex(root, json_object_get_string(keys[i]), &e);
    if (json_object_is_type(e, json_type_object) && inner[i] != json_object_object_length(e)) {
      snprintf(c->msg, c->msgn, "'%s': tensor '%.200s': its entry names a field twice", c->path,
               json_object_get_string(keys[i]));
      return -1;
    }
  }
  return 0;
}

static int check_keys(const st_ctx *c, const char *h, size_t n, json_object *root) {
  int cap = json_object_object_length(root) + 1, nk = 0, rc = -1; /* one key more than json-c kept: a repeat */
  json_object **keys = calloc((size_t)cap, sizeof *keys);
  int *inner = calloc((size_t)cap, sizeof *inner);
  if (!keys || !inner || collect_keys(h, n, keys, inner, cap, &nk))
    snprintf(c->msg, c->msgn, "'%s': out of memory", c->path);
  else
    rc = keys_problem(c, root, keys, inner, nk);
  for (int i = 0; keys && i < nk; i++) json_object_put(keys[i]);
  free(keys);
  free(inner);
  return rc;
}

/* Parse the JSON header text (trailing space padding allowed). */
static json_object *parse_json(const st_ctx *c, const char *h, size_t n) {
  while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t' || h[n - 1] == '\n' || h[n - 1] == '\r')) n--;
  json_tokener *tok = json_tokener_new();
  if (!tok) {
    snprintf(c->msg, c->msgn, "'%s': out of memory", c->path);
    return NULL;
  }
  json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
  json_object *root = n > 0 && n <= INT32_MAX ? json_tokener_parse_ex(tok, h, (int)n) : NULL;
  enum json_tokener_error je = json_tokener_get_error(tok);
  if (root && json_tokener_get_parse_end(tok) != n) {
    json_object_put(root);
    root = NULL;
    je = json_tokener_error_parse_unexpected;
  }
  if (!root) {
    const char *why = je == json_tokener_continue || n == 0 ? "unexpected end of header"
                                                           : json_tokener_error_desc(je);
    snprintf(c->msg, c->msgn, "'%s': header is not valid JSON: %s at byte %zu", c->path, why,
             json_tokener_get_parse_end(tok));
  } else if (!json_object_is_type(root, json_type_object)) {
    snprintf(c->msg, c->msgn, "'%s': header is not a JSON object", c->path);
    json_object_put(root);
    root = NULL;
  }
  json_tokener_free(tok);
  return root;
}

/* f64 to f32, refusing a finite value that f32 cannot hold (it would become
 * infinity); -1 - i for the first such element i. */
static int64_t f64_to_f32(const unsigned char *s, float *d, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double v;
    memcpy(&v, s + 8 * i, 8);
    if (isfinite(v) && fabs(v) > FLT_MAX) return -1 - (int64_t)i;
    d[i] = (float)v;
  }
  return 0;
}

/* Copy (converting f64) one validated tensor out of the data section. */
static int load_tensor(const st_ctx *c, const st_info *t, const unsigned char *data, rt_st_entry *out) {
  out->name = strdup(t->name);
  out->t.dtype = t->kind->dtype;
  out->t.rank = t->rank;
  memcpy(out->t.shape, t->shape, sizeof t->shape);
  size_t n = (size_t)(info_bytes(t) / t->kind->size), bytes = n * lathe_dtype_size(t->kind->dtype);
  unsigned char *d = malloc(bytes ? bytes : 1);
  out->t.data = d;
  if (!out->name || !d) {
    snprintf(c->msg, c->msgn, "'%s': out of memory", c->path);
    return -1;
  }
  const unsigned char *s = data + t->begin;
  if (t->kind->size == 8 && t->kind->dtype == LATHE_F32) {
    int64_t bad = f64_to_f32(s, (float *)(void *)d, n);
    if (bad < 0) {
      double v;
      memcpy(&v, s + 8 * (size_t)(-1 - bad), 8);
      char what[160];
      snprintf(what, sizeof what, "f64 value %g at element %lld is out of the f32 range", v, (long long)(-1 - bad));
      return tensor_err(c, t->name, what);
    }
  } else if (t->kind->dtype == LATHE_BOOL) {
    for (size_t i = 0; i < n; i++) d[i] = s[i] != 0;
  } else {
    memcpy(d, s, bytes);
  }
  return 0;
}

/* The header's metadata (already checked to be strings) into out. */
static int keep_metadata(const st_ctx *c, json_object *root, rt_st_file *out) {
  json_object *m;
  if (!json_object_object_get_ex(root, "__metadata__", &m)) return 0;
  int n = json_object_object_length(m);
  out->meta = calloc((size_t)(2 * n + 1), sizeof *out->meta);
  int ok = out->meta != NULL;
  json_object_object_foreach(m, k, v) {
    if (!ok) break;
    out->meta[2 * out->nmeta] = strdup(k);
    out->meta[2 * out->nmeta + 1] = strdup(json_object_get_string(v));
    ok = out->meta[2 * out->nmeta] && out->meta[2 * out->nmeta + 1];
    out->nmeta++;
  }
  if (ok) return 0;
  snprintf(c->msg, c->msgn, "'%s': out of memory", c->path);
  return -1;
}

/* Header size, JSON, entries; fills out from the file image buf[0..len). */
static int read_image(const st_ctx *c, const char *buf, size_t len, rt_st_file *out) {
  if (len < 8) {
    snprintf(c->msg, c->msgn, "'%s' is truncated: %zu bytes, too short for a safetensors header", c->path, len);
    return -1;
  }
  uint64_t hn = 0;
  for (int i = 7; i >= 0; i--) hn = hn << 8 | (unsigned char)buf[i];
  if (hn > len - 8) {
    snprintf(c->msg, c->msgn, "'%s': header size %llu exceeds the file size (%zu bytes)", c->path,
             (unsigned long long)hn, len);
    return -1;
  }
  if (hn > ST_MAX_HEADER) {
    snprintf(c->msg, c->msgn, "'%s': header size %llu is over the limit of %llu bytes", c->path,
             (unsigned long long)hn, ST_MAX_HEADER);
    return -1;
  }
  json_object *root = parse_json(c, buf + 8, (size_t)hn);
  if (!root) return -1;
  if (check_keys(c, buf + 8, (size_t)hn, root)) {
    json_object_put(root);
    return -1;
  }
  int cap = json_object_object_length(root), n = 0, rc = -1;
  st_info *info = malloc(sizeof *info * (size_t)(cap ? cap : 1));
  if (!info) snprintf(c->msg, c->msgn, "'%s': out of memory", c->path);
  else if (parse_entries(c, root, len - 8 - hn, info, &n) == 0) {
    out->e = calloc((size_t)(n ? n : 1), sizeof *out->e);
    rc = out->e ? 0 : -1;
    if (!out->e) snprintf(c->msg, c->msgn, "'%s': out of memory", c->path);
    for (int i = 0; i < n && rc == 0; i++, out->n++)
      rc = load_tensor(c, &info[i], (const unsigned char *)buf + 8 + hn, &out->e[i]);
  }
  free(info);
  if (rc == 0) rc = keep_metadata(c, root, out);
  json_object_put(root);
  return rc;
}

int rt_st_read_mem(const char *path, const void *buf, size_t len, rt_st_file *out, char *msg, size_t msgn) {
  *out = (rt_st_file){0};
  st_ctx c = {path, msg, msgn};
  int rc = read_image(&c, buf, len, out);
  if (rc) rt_st_free(out);
  return rc;
}

int rt_st_read(const char *path, rt_st_file *out, char *msg, size_t msgn) {
  *out = (rt_st_file){0};
  char *buf;
  size_t len;
  if (rt_read_file(path, &buf, &len, msg, msgn)) return -1;
  int rc = rt_st_read_mem(path, buf, len, out, msg, msgn);
  free(buf);
  return rc;
}

/* Weights must be numbers: a NaN or infinity would train or predict NaN
 * without a word. */
int rt_st_check_finite(const char *path, const rt_st_entry *e, char *msg, size_t msgn) {
  lathe_dtype dt = e->t.dtype;
  if (dt != LATHE_F32 && dt != LATHE_F16 && dt != LATHE_BF16) return 0;
  int64_t n = lathe_tensor_numel(&e->t);
  float buf[1024];
  for (int64_t i0 = 0; i0 < n; i0 += 1024) {
    int64_t k = n - i0 < 1024 ? n - i0 : 1024;
    rt_convert((const char *)e->t.data + i0 * (int64_t)lathe_dtype_size(dt), dt, buf, LATHE_F32, k);
    for (int64_t i = 0; i < k; i++)
      if (!isfinite(buf[i])) {
        snprintf(msg, msgn, "'%s': tensor '%s': element %lld is %s; weights must be finite numbers", path,
                 e->name, (long long)(i0 + i), isnan(buf[i]) ? "NaN" : buf[i] > 0 ? "+inf" : "-inf");
        return -1;
      }
  }
  return 0;
}

void rt_st_free(rt_st_file *f) {
  if (!f) return;
  for (int i = 0; i < f->n; i++) {
    free(f->e[i].name);
    free(f->e[i].t.data);
  }
  free(f->e);
  for (int i = 0; f->meta && i < 2 * f->nmeta; i++) free(f->meta[i]);
  free(f->meta);
  *f = (rt_st_file){0};
}

const char *rt_st_meta(const rt_st_file *f, const char *key) {
  for (int i = 0; f && key && i < f->nmeta; i++)
    if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
  return NULL;
}

const rt_st_entry *rt_st_find(const rt_st_file *f, const char *name) {
  for (int i = 0; f && name && i < f->n; i++)
    if (strcmp(f->e[i].name, name) == 0) return &f->e[i];
  return NULL;
}

/* ---- writing ---- */

static int cmp_name(const void *a, const void *b) {
  return strcmp((*(const rt_st_entry *const *)a)->name, (*(const rt_st_entry *const *)b)->name);
}

static const char *entry_problem(const rt_st_entry *e) {
  const lathe_tensor *t = &e->t;
  if (!e->name || !e->name[0]) return "a tensor has no name";
  if (strcmp(e->name, "__metadata__") == 0) return "'__metadata__' is not a valid tensor name";
  if ((int)t->dtype < 0 || (int)t->dtype > LATHE_BOOL) return "invalid dtype";
  if (t->rank < 0 || t->rank > LATHE_MAXDIM) return "invalid rank";
  if (lathe_tensor_numel(t) < 0) return "invalid shape";
  if (lathe_tensor_numel(t) > 0 && lathe_tensor_bytes(t) == 0) return "too many elements";
  if (!t->data && lathe_tensor_bytes(t) > 0) return "no data";
  return NULL;
}

/* Every entry valid and names unique. */
static int check_entries(const st_ctx *c, const rt_st_entry *e, int n) {
  for (int i = 0; i < n; i++) {
    const char *why = entry_problem(&e[i]);
    if (why) {
      snprintf(c->msg, c->msgn, "cannot write '%s': tensor '%s': %s", c->path, e[i].name ? e[i].name : "",
               why);
      return -1;
    }
  }
  const rt_st_entry **by = malloc(sizeof *by * (size_t)(n ? n : 1));
  if (!by) {
    snprintf(c->msg, c->msgn, "cannot write '%s': out of memory", c->path);
    return -1;
  }
  for (int i = 0; i < n; i++) by[i] = &e[i];
  qsort(by, (size_t)n, sizeof *by, cmp_name);
  int rc = 0;
  for (int i = 1; i < n && rc == 0; i++)
    if (strcmp(by[i - 1]->name, by[i]->name) == 0) {
      snprintf(c->msg, c->msgn, "cannot write '%s': tensor '%s' appears twice", c->path, by[i]->name);
      rc = -1;
    }
  free(by);
  return rc;
}

/* {"name":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},...} in the
 * given order, data laid out back to back. */
static json_object *build_header(const rt_st_entry *e, int n, const char *const *meta, int nmeta) {
  json_object *root = json_object_new_object(), *m = nmeta > 0 ? json_object_new_object() : NULL;
  for (int i = 0; m && i < nmeta; i++)
    json_object_object_add(m, meta[2 * i], json_object_new_string(meta[2 * i + 1]));
  if (nmeta > 0 && (!m || !root || json_object_object_add(root, "__metadata__", m) != 0)) {
    json_object_put(m);
    json_object_put(root);
    return NULL;
  }
  uint64_t off = 0;
  for (int i = 0; root && i < n; i++) {
    const lathe_tensor *t = &e[i].t;
    json_object *o = json_object_new_object(), *shape = json_object_new_array(),
                *offs = json_object_new_array();
    if (o) json_object_object_add(o, "dtype", json_object_new_string(kinds[t->dtype].code));
    for (int d = 0; shape && d < t->rank; d++) json_object_array_add(shape, json_object_new_int64(t->shape[d]));
    if (o) json_object_object_add(o, "shape", shape);
    else json_object_put(shape);
    uint64_t end = off + lathe_tensor_bytes(t);
    if (offs) {
      json_object_array_add(offs, json_object_new_uint64(off));
      json_object_array_add(offs, json_object_new_uint64(end));
    }
    if (o) json_object_object_add(o, "data_offsets", offs);
    else json_object_put(offs);
    if (!o || !shape || !offs || json_object_object_add(root, e[i].name, o) != 0) {
      json_object_put(root);
      return NULL;
    }
    off = end;
  }
  return root;
}

int rt_st_write(const char *path, const rt_st_entry *entries, int n, char *msg, size_t msgn) {
  return rt_st_write_meta(path, entries, n, NULL, 0, msg, msgn);
}

int rt_st_write_meta(const char *path, const rt_st_entry *entries, int n, const char *const *meta, int nmeta,
                     char *msg, size_t msgn) {
  st_ctx c = {path, msg, msgn};
  if (n < 0 || (n > 0 && !entries)) {
    snprintf(msg, msgn, "cannot write '%s': no tensors given", path);
    return -1;
  }
  if (check_entries(&c, entries, n)) return -1;
  json_object *root = build_header(entries, n, meta, nmeta);
  const char *js = root ? json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE)
                        : NULL;
  size_t jn = js ? strlen(js) : 0, hn = (jn + 7) / 8 * 8;
  char *hdr = js ? malloc(8 + hn) : NULL;
  rt_chunk *ch = malloc(sizeof *ch * ((size_t)n + 1));
  int rc = -1;
  if (!hdr || !ch) {
    snprintf(msg, msgn, "cannot write '%s': out of memory", path);
  } else {
    /* the reference writer pads the header with spaces to 8 bytes */
    for (int i = 0; i < 8; i++) hdr[i] = (char)((uint64_t)hn >> (8 * i));
    memcpy(hdr + 8, js, jn);
    memset(hdr + 8 + jn, ' ', hn - jn);
    ch[0] = (rt_chunk){hdr, 8 + hn};
    for (int i = 0; i < n; i++) ch[i + 1] = (rt_chunk){entries[i].t.data, lathe_tensor_bytes(&entries[i].t)};
    rc = rt_write_atomic(path, ch, n + 1, msg, msgn);
  }
  free(ch);
  free(hdr);
  json_object_put(root);
  return rc;
}
