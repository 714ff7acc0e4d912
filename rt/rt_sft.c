/* rt_sft.c -- safetensors reading and writing without a JSON library (see
 * rt_sft.h): what MODEL_state_save and MODEL_state_load of an emitted
 * training step use. The header grammar read here is exactly what a
 * safetensors file holds:
 *   header   = ws "{" ws [ member ( ws "," ws member )* ] ws "}" ws
 *   member   = string ws ":" ws ( tensor | metadata )   (metadata: key "__metadata__")
 *   tensor   = "{" field ( "," field )* "}"             (dtype, shape, data_offsets; each once)
 *   metadata = "{" [ string ":" string ( "," string ":" string )* ] "}"
 *   field    = "dtype" : string | "shape" : ints | "data_offsets" : ints
 *   ints     = "[" [ uint ( "," uint )* ] "]"            (uint: digits, no sign, no fraction)
 * with JSON whitespace between tokens and JSON string escapes; anything
 * else is refused with the byte where it was found. */
#include "rt/rt_sft.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The reference implementation refuses headers above 100 MB. */
#define SFT_MAX_HEADER 100000000ull

static const struct {
  const char *code;
  int64_t size;
} dtypes[RT_SFT_NDTYPES] = {
  [RT_SFT_F32] = {"F32", 4}, [RT_SFT_F16] = {"F16", 2}, [RT_SFT_BF16] = {"BF16", 2}, [RT_SFT_I32] = {"I32", 4},
  [RT_SFT_I64] = {"I64", 8}, [RT_SFT_I8] = {"I8", 1},   [RT_SFT_U8] = {"U8", 1},     [RT_SFT_BOOL] = {"BOOL", 1},
  [RT_SFT_F64] = {"F64", 8},
};

const char *rt_sft_dtype_name(int dtype) { return dtype >= 0 && dtype < RT_SFT_NDTYPES ? dtypes[dtype].code : NULL; }

int64_t rt_sft_dtype_size(int dtype) { return dtype >= 0 && dtype < RT_SFT_NDTYPES ? dtypes[dtype].size : 0; }

static int say(char *msg, size_t msgn, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int say(char *msg, size_t msgn, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (msg && msgn) vsnprintf(msg, msgn, fmt, ap);
  va_end(ap);
  return -1;
}

/* numel * size of a shape, or -1 when it overflows int64. */
static int64_t shape_bytes(const int64_t *shape, int rank, int64_t size) {
  int64_t n = size;
  for (int d = 0; d < rank; d++) {
    if (shape[d] < 0) return -1;
    if (shape[d] && n > INT64_MAX / shape[d]) return -1;
    n *= shape[d];
  }
  return n;
}

/* ---- the reader ---- */

typedef struct {
  const char *s;
  size_t n, i;
  const char *path;
  char *msg;
  size_t msgn;
  char *names; /* decoded strings, each NUL-terminated; never longer than the header */
  size_t nlen;
} ps;

static int perr(ps *p, const char *what) {
  return say(p->msg, p->msgn, "'%s': header: %s at byte %zu", p->path, what, p->i + 8);
}

static void ws(ps *p) {
  while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
}

static int lit(ps *p, char c) {
  ws(p);
  if (p->i < p->n && p->s[p->i] == c) {
    p->i++;
    return 0;
  }
  if (p->i >= p->n) return perr(p, "the header ends too early");
  char what[32];
  snprintf(what, sizeof what, "expected '%c'", c);
  return perr(p, what);
}

static int peek(ps *p, char c) {
  ws(p);
  return p->i < p->n && p->s[p->i] == c;
}

static int hex4(ps *p, unsigned *v) {
  if (p->n - p->i < 4) return perr(p, "truncated \\u escape");
  *v = 0;
  for (int k = 0; k < 4; k++) {
    char c = p->s[p->i++];
    unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                 : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                 : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                        : 16u;
    if (d == 16) return perr(p, "bad \\u escape");
    *v = *v * 16 + d;
  }
  return 0;
}

static void put_utf8(ps *p, unsigned cp) {
  char *o = p->names + p->nlen;
  if (cp < 0x80) o[0] = (char)cp, p->nlen += 1;
  else if (cp < 0x800) o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 63)), p->nlen += 2;
  else if (cp < 0x10000)
    o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 63)), o[2] = (char)(0x80 | (cp & 63)),
    p->nlen += 3;
  else
    o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 63)), o[2] = (char)(0x80 | ((cp >> 6) & 63)),
    o[3] = (char)(0x80 | (cp & 63)), p->nlen += 4;
}

/* A JSON string, decoded into p->names; *at: its offset there. Every
 * escape is at least as long as what it decodes to, so the block sized by
 * the header never overflows. */
static int string(ps *p, size_t *at) {
  if (lit(p, '"')) return -1;
  *at = p->nlen;
  for (;;) {
    if (p->i >= p->n) return perr(p, "unterminated string");
    unsigned char c = (unsigned char)p->s[p->i++];
    if (c == '"') break;
    if (c < 0x20) return perr(p, "control character in a string");
    if (c != '\\') {
      p->names[p->nlen++] = (char)c;
      continue;
    }
    if (p->i >= p->n) return perr(p, "unterminated string");
    char e = p->s[p->i++];
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *k = e ? strchr(from, e) : NULL;
    if (k) {
      p->names[p->nlen++] = to[k - from];
      continue;
    }
    if (e != 'u') return perr(p, "bad escape in a string");
    unsigned cp;
    if (hex4(p, &cp)) return -1;
    if (cp >= 0xd800 && cp < 0xdc00) { /* a surrogate pair */
      unsigned lo;
      if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') return perr(p, "lone surrogate");
      p->i += 2;
      if (hex4(p, &lo)) return -1;
      if (lo < 0xdc00 || lo >= 0xe000) return perr(p, "lone surrogate");
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    } else if (cp >= 0xdc00 && cp < 0xe000) {
      return perr(p, "lone surrogate");
    }
    if (cp == 0) return perr(p, "a string contains a NUL character");
    put_utf8(p, cp);
  }
  p->names[p->nlen++] = '\0';
  return 0;
}

static int uint_(ps *p, int64_t *v) {
  ws(p);
  size_t start = p->i;
  *v = 0;
  while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
    int d = p->s[p->i++] - '0';
    if (*v > (INT64_MAX - d) / 10) return perr(p, "integer too large");
    *v = *v * 10 + d;
  }
  if (p->i == start) return perr(p, "expected a non-negative integer");
  if (p->i - start > 1 && p->s[start] == '0') return perr(p, "integer with a leading zero");
  if (p->i < p->n && (p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E'))
    return perr(p, "expected an integer, not a fraction");
  return 0;
}

/* "[" [ uint ("," uint)* ] "]", at most max values. */
static int ints(ps *p, int64_t *v, int max, int *count) {
  if (lit(p, '[')) return -1;
  *count = 0;
  if (peek(p, ']')) return p->i++, 0;
  for (;;) {
    int64_t x;
    if (uint_(p, &x)) return -1;
    if (*count >= max) return perr(p, "too many values in an array");
    v[(*count)++] = x;
    if (peek(p, ']')) return p->i++, 0;
    if (lit(p, ',')) return -1;
  }
}

static int metadata(ps *p) {
  if (lit(p, '{')) return -1;
  if (peek(p, '}')) return p->i++, 0;
  for (;;) {
    size_t a;
    if (string(p, &a) || lit(p, ':') || string(p, &a)) return -1;
    if (peek(p, '}')) return p->i++, 0;
    if (lit(p, ',')) return -1;
  }
}

typedef struct {
  size_t name;
  int dtype, rank;
  int64_t shape[RT_SFT_MAXDIM];
  int64_t off[2];
} raw;

static int tensor(ps *p, raw *t) {
  static const char *const fields[3] = {"dtype", "shape", "data_offsets"};
  int seen[3] = {0, 0, 0};
  if (lit(p, '{')) return -1;
  for (;;) {
    size_t k;
    if (string(p, &k) || lit(p, ':')) return -1;
    int f = 0;
    while (f < 3 && strcmp(p->names + k, fields[f])) f++;
    if (f == 3) return perr(p, "unknown field in a tensor entry");
    if (seen[f]++) return perr(p, "a field appears twice in a tensor entry");
    p->nlen = k; /* the field's name is not kept */
    if (f == 0) {
      size_t d;
      if (string(p, &d)) return -1;
      t->dtype = -1;
      for (int j = 0; j < RT_SFT_NDTYPES; j++)
        if (!strcmp(p->names + d, dtypes[j].code)) t->dtype = j;
      if (t->dtype < 0) return perr(p, "unsupported dtype");
      p->nlen = d;
    } else if (f == 1) {
      if (ints(p, t->shape, RT_SFT_MAXDIM, &t->rank)) return -1;
    } else {
      int c;
      if (ints(p, t->off, 2, &c)) return -1;
      if (c != 2) return perr(p, "data_offsets must be two integers");
    }
    if (peek(p, '}')) break;
    if (lit(p, ',')) return -1;
  }
  p->i++;
  if (!seen[0] || !seen[1] || !seen[2]) return perr(p, "a tensor entry lacks dtype, shape or data_offsets");
  return 0;
}

static int members(ps *p, raw **out, int *n) {
  int cap = 0;
  *n = 0;
  *out = NULL;
  if (lit(p, '{')) return -1;
  if (peek(p, '}')) return p->i++, 0;
  for (;;) {
    size_t k;
    if (string(p, &k) || lit(p, ':')) return -1;
    if (!strcmp(p->names + k, "__metadata__")) {
      if (metadata(p)) return -1;
    } else {
      if (*n == cap) {
        cap = cap ? 2 * cap : 16;
        raw *r = realloc(*out, sizeof *r * (size_t)cap);
        if (!r) return say(p->msg, p->msgn, "'%s': out of memory", p->path);
        *out = r;
      }
      raw *t = &(*out)[(*n)++];
      memset(t, 0, sizeof *t);
      t->name = k;
      if (tensor(p, t)) return -1;
    }
    if (peek(p, '}')) break;
    if (lit(p, ',')) return -1;
  }
  p->i++;
  ws(p);
  if (p->i != p->n) return perr(p, "data after the header's closing brace");
  return 0;
}

static const char *sort_names;
static int by_name(const void *a, const void *b) {
  return strcmp(sort_names + ((const raw *)a)->name, sort_names + ((const raw *)b)->name);
}
static int by_begin(const void *a, const void *b) {
  const raw *x = a, *y = b;
  return (x->off[0] > y->off[0]) - (x->off[0] < y->off[0]);
}

/* Shapes, sizes, offsets, names unique, no two tensors overlapping. */
static int check(ps *p, raw *r, int n, uint64_t datalen) {
  for (int k = 0; k < n; k++) {
    const char *name = p->names + r[k].name;
    int64_t bytes = shape_bytes(r[k].shape, r[k].rank, dtypes[r[k].dtype].size);
    if (bytes < 0) return say(p->msg, p->msgn, "'%s': tensor '%.200s': its shape is too large", p->path, name);
    if (r[k].off[0] > r[k].off[1] || (uint64_t)r[k].off[1] > datalen)
      return say(p->msg, p->msgn, "'%s': tensor '%.200s': data_offsets [%lld, %lld] are out of range (the data "
                 "section is %llu bytes)", p->path, name, (long long)r[k].off[0], (long long)r[k].off[1],
                 (unsigned long long)datalen);
    if (r[k].off[1] - r[k].off[0] != bytes)
      return say(p->msg, p->msgn, "'%s': tensor '%.200s': data_offsets [%lld, %lld] do not match its %s shape "
                 "(%lld bytes)", p->path, name, (long long)r[k].off[0], (long long)r[k].off[1],
                 dtypes[r[k].dtype].code, (long long)bytes);
  }
  raw *s = malloc(sizeof *s * (size_t)(n ? n : 1));
  if (!s) return say(p->msg, p->msgn, "'%s': out of memory", p->path);
  if (n) memcpy(s, r, sizeof *s * (size_t)n); /* r is NULL for a header with no tensors */
  sort_names = p->names;
  qsort(s, (size_t)n, sizeof *s, by_name);
  int rc = 0;
  for (int k = 1; k < n && rc == 0; k++)
    if (!strcmp(p->names + s[k].name, p->names + s[k - 1].name))
      rc = say(p->msg, p->msgn, "'%s': tensor '%.200s' appears twice in the header", p->path, p->names + s[k].name);
  qsort(s, (size_t)n, sizeof *s, by_begin);
  int last = -1; /* the non-empty tensor reaching furthest so far */
  for (int k = 0; k < n && rc == 0; k++) {
    if (s[k].off[1] == s[k].off[0]) continue; /* empty: occupies nothing */
    if (last >= 0 && s[k].off[0] < s[last].off[1])
      rc = say(p->msg, p->msgn, "'%s': tensors '%.200s' and '%.200s' overlap", p->path, p->names + s[last].name,
               p->names + s[k].name);
    if (last < 0 || s[k].off[1] > s[last].off[1]) last = k;
  }
  free(s);
  return rc;
}

int rt_sft_parse(const char *path, unsigned char *buf, size_t len, rt_sft_file *f, char *msg, size_t msgn) {
  memset(f, 0, sizeof *f);
  if (len < 8) {
    free(buf);
    return say(msg, msgn, "'%s' is truncated: %zu bytes, too short for a safetensors header", path, len);
  }
  uint64_t hn = 0;
  for (int k = 7; k >= 0; k--) hn = hn << 8 | buf[k];
  if (hn > len - 8) {
    free(buf);
    return say(msg, msgn, "'%s' is truncated: its header size %llu exceeds the file (%zu bytes)", path,
               (unsigned long long)hn, len);
  }
  if (hn > SFT_MAX_HEADER) {
    free(buf);
    return say(msg, msgn, "'%s': header size %llu is over the limit of %llu bytes", path, (unsigned long long)hn,
               SFT_MAX_HEADER);
  }
  ps p = {(const char *)buf + 8, (size_t)hn, 0, path, msg, msgn, malloc((size_t)hn + 1), 0};
  raw *r = NULL;
  int n = 0;
  int rc = p.names ? members(&p, &r, &n) : say(msg, msgn, "'%s': out of memory", path);
  if (rc == 0) rc = check(&p, r, n, len - 8 - hn);
  if (rc == 0 && !(f->t = calloc((size_t)n + 1, sizeof *f->t))) rc = say(msg, msgn, "'%s': out of memory", path);
  if (rc) {
    free(r), free(p.names), free(buf), free(f->t);
    memset(f, 0, sizeof *f);
    return -1;
  }
  const unsigned char *data = buf + 8 + hn;
  for (int k = 0; k < n; k++) {
    rt_sft_tensor *t = &f->t[k];
    t->name = p.names + r[k].name;
    t->dtype = r[k].dtype, t->rank = r[k].rank;
    memcpy(t->shape, r[k].shape, sizeof t->shape);
    t->data = data + r[k].off[0];
    t->bytes = r[k].off[1] - r[k].off[0];
  }
  f->n = n, f->buf = buf, f->names = p.names;
  free(r);
  return 0;
}

int rt_sft_read(const char *path, rt_sft_file *f, char *msg, size_t msgn) {
  memset(f, 0, sizeof *f);
  FILE *fp = fopen(path, "rb");
  if (!fp) return say(msg, msgn, "cannot open '%s': %s", path, strerror(errno));
  unsigned char *buf = NULL;
  size_t len = 0, cap = 0;
  int rc = 0;
  for (;;) {
    if (len == cap) {
      cap = cap ? 2 * cap : 1 << 16;
      unsigned char *b = realloc(buf, cap);
      if (!b) { rc = say(msg, msgn, "'%s': out of memory", path); break; }
      buf = b;
    }
    size_t k = fread(buf + len, 1, cap - len, fp);
    len += k;
    if (k == 0) {
      if (ferror(fp)) rc = say(msg, msgn, "cannot read '%s': %s", path, strerror(errno));
      break;
    }
  }
  fclose(fp);
  if (rc) {
    free(buf);
    return -1;
  }
  return rt_sft_parse(path, buf, len, f, msg, msgn);
}

const rt_sft_tensor *rt_sft_find(const rt_sft_file *f, const char *name) {
  for (int k = 0; k < f->n; k++)
    if (!strcmp(f->t[k].name, name)) return &f->t[k];
  return NULL;
}

void rt_sft_free(rt_sft_file *f) {
  free(f->t), free(f->buf), free(f->names);
  memset(f, 0, sizeof *f);
}

/* ---- the writer ---- */

typedef struct {
  char *s;
  size_t len, cap;
  int oom;
} text;

static void add(text *t, const char *s, size_t n) {
  if (t->oom) return;
  if (t->len + n + 1 > t->cap) {
    size_t cap = (t->cap + n + 1) * 2;
    char *b = realloc(t->s, cap);
    if (!b) { t->oom = 1; return; }
    t->s = b, t->cap = cap;
  }
  memcpy(t->s + t->len, s, n);
  t->len += n;
  t->s[t->len] = '\0';
}

static void adds(text *t, const char *s) { add(t, s, strlen(s)); }

static void addi(text *t, int64_t v) {
  char b[24];
  adds(t, (snprintf(b, sizeof b, "%lld", (long long)v), b));
}

/* name as a JSON string: quotes, backslashes and control characters escaped */
static void addq(text *t, const char *s) {
  adds(t, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char b[8];
    if (c == '"' || c == '\\') b[0] = '\\', b[1] = (char)c, add(t, b, 2);
    else if (c < 0x20) add(t, b, (size_t)snprintf(b, sizeof b, "\\u%04x", c));
    else add(t, (const char *)&c, 1);
  }
  adds(t, "\"");
}

static int write_all(int fd, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k, n -= (size_t)k;
  }
  return 0;
}

static int write_atomic(const char *path, const text *h, const rt_sft_tensor *t, int n, char *msg, size_t msgn) {
  static atomic_uint counter;
  size_t pn = strlen(path) + 48;
  char *tmp = malloc(pn);
  if (!tmp) return say(msg, msgn, "'%s': out of memory", path);
  snprintf(tmp, pn, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1u));
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    int e = errno;
    free(tmp);
    return say(msg, msgn, "cannot write '%s': %s", path, strerror(e));
  }
  unsigned char len8[8];
  for (int k = 0; k < 8; k++) len8[k] = (unsigned char)((uint64_t)h->len >> (8 * k));
  int rc = write_all(fd, len8, 8) || write_all(fd, h->s, h->len);
  for (int k = 0; k < n && !rc; k++) rc = t[k].bytes > 0 && write_all(fd, t[k].data, (size_t)t[k].bytes);
  if (!rc) rc = fsync(fd) != 0;
  int e = errno;
  if (close(fd) != 0 && !rc) rc = 1, e = errno;
  if (!rc && rename(tmp, path) != 0) rc = 1, e = errno;
  if (rc) {
    unlink(tmp);
    say(msg, msgn, "cannot write '%s': %s", path, strerror(e));
  }
  free(tmp);
  return rc ? -1 : 0;
}

int rt_sft_write(const char *path, const rt_sft_tensor *t, int n, char *msg, size_t msgn) {
  if (!path || (n > 0 && !t) || n < 0) return say(msg, msgn, "safetensors write: a NULL argument");
  for (int k = 0; k < n; k++) {
    const char *name = t[k].name ? t[k].name : "(null)";
    if (!t[k].name || !*t[k].name || rt_sft_dtype_name(t[k].dtype) == NULL || t[k].rank < 0 ||
        t[k].rank > RT_SFT_MAXDIM || (t[k].bytes > 0 && !t[k].data) ||
        shape_bytes(t[k].shape, t[k].rank, dtypes[t[k].dtype].size) != t[k].bytes)
      return say(msg, msgn, "'%s': tensor '%.200s' is malformed (name, dtype, shape or size)", path, name);
    for (int j = 0; j < k; j++)
      if (!strcmp(t[j].name, t[k].name)) return say(msg, msgn, "'%s': tensor '%.200s' given twice", path, name);
  }
  text h = {0};
  int64_t off = 0;
  adds(&h, "{");
  for (int k = 0; k < n; k++) {
    if (k) adds(&h, ",");
    addq(&h, t[k].name);
    adds(&h, ":{\"dtype\":\"");
    adds(&h, dtypes[t[k].dtype].code);
    adds(&h, "\",\"shape\":[");
    for (int d = 0; d < t[k].rank; d++) {
      if (d) adds(&h, ",");
      addi(&h, t[k].shape[d]);
    }
    adds(&h, "],\"data_offsets\":[");
    addi(&h, off);
    adds(&h, ",");
    addi(&h, off += t[k].bytes);
    adds(&h, "]}");
  }
  adds(&h, "}");
  while (!h.oom && h.len % 8) adds(&h, " "); /* the data starts 8-aligned, as the reference writer does */
  int rc = h.oom ? say(msg, msgn, "'%s': out of memory", path) : write_atomic(path, &h, t, n, msg, msgn);
  free(h.s);
  return rc;
}
