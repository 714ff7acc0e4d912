/* npy.c -- NumPy .npy arrays, format versions 1.0, 2.0 and 3.0.
 *
 * Layout: "\x93NUMPY", major, minor, header length (u16 for 1.x, u32 for
 * 2.x/3.x, little-endian), then a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and a newline, then the raw C-order data. The dict is
 * parsed by hand: any key order, any spacing, optional trailing commas. */
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

/* A descr we accept. 1-byte types accept any byte-order mark. */
typedef struct {
  const char *code;   /* descr without its byte-order character */
  lathe_dtype dtype;  /* what the tensor holds after reading */
  size_t size;        /* bytes per element in the file */
  const char *name;   /* for messages */
} npy_kind;

static const npy_kind kinds[] = {
  {"f4", LATHE_F32, 4, "f32"}, {"f8", LATHE_F32, 8, "f64"}, {"f2", LATHE_F16, 2, "f16"},
  {"i4", LATHE_I32, 4, "i32"}, {"i8", LATHE_I64, 8, "i64"}, {"i1", LATHE_I8, 1, "i8"},
  {"u1", LATHE_U8, 1, "u8"},   {"b1", LATHE_BOOL, 1, "bool"},
};

typedef struct {
  const npy_kind *kind;
  int fortran;
  int rank;
  int64_t shape[LATHE_MAXDIM];
  unsigned seen;      /* bit per key: descr 1, fortran_order 2, shape 4 */
} npy_header;

/* Cursor over the header text; err receives the first problem found. */
typedef struct {
  const char *p, *end;
  char err[160];
} cursor;

static void skip_ws(cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

/* A syntax problem in the dict. */
static int fail(cursor *c, const char *what) {
  if (!c->err[0]) snprintf(c->err, sizeof c->err, "bad header: %s", what);
  return -1;
}

/* A well-formed header describing an array we do not take. */
static int refuse(cursor *c, const char *what, const char *descr) {
  if (descr) snprintf(c->err, sizeof c->err, "%s ('%s')", what, descr);
  else snprintf(c->err, sizeof c->err, "%s", what);
  return -1;
}

static int accept(cursor *c, char ch) {
  skip_ws(c);
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return 1;
  }
  return 0;
}

/* string = "'" chars "'" | '"' chars '"'  (no escapes; descrs need none) */
static int parse_string(cursor *c, char *out, size_t outn) {
  skip_ws(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return fail(c, "expected a quoted string");
  char q = *c->p++;
  const char *s = c->p;
  while (c->p < c->end && *c->p != q && *c->p != '\\' && *c->p != '\n') c->p++;
  if (c->p >= c->end || *c->p != q) return fail(c, "unterminated or escaped string");
  size_t n = (size_t)(c->p - s);
  c->p++;
  if (n >= outn) return fail(c, "string too long");
  memcpy(out, s, n);
  out[n] = '\0';
  return 0;
}

static int parse_word(cursor *c, const char *w) {
  skip_ws(c);
  size_t n = strlen(w);
  if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0) return 0;
  c->p += n;
  return 1;
}

/* dim = digits ['L']   (Python 2 era NumPy wrote 3L) */
static int parse_dim(cursor *c, int64_t *v) {
  skip_ws(c);
  if (c->p >= c->end || *c->p < '0' || *c->p > '9') return fail(c, "shape entries must be non-negative integers");
  int64_t x = 0;
  while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
    int d = *c->p++ - '0';
    if (x > (INT64_MAX - d) / 10) return refuse(c, "a shape entry is too large", NULL);
    x = x * 10 + d;
  }
  if (c->p < c->end && *c->p == 'L') c->p++;
  *v = x;
  return 0;
}

/* shape = '(' ')' | '(' dim ',' ')' | '(' dim (',' dim)+ [','] ')' */
static int parse_shape(cursor *c, npy_header *h) {
  if (!accept(c, '(')) return fail(c, "'shape' must be a tuple");
  h->rank = 0;
  int commas = 0;
  while (!accept(c, ')')) {
    if (h->rank > 0 && commas < h->rank) return fail(c, "expected ',' or ')' in 'shape'");
    int64_t d;
    if (parse_dim(c, &d)) return -1;
    if (h->rank == LATHE_MAXDIM) return refuse(c, "rank exceeds the maximum of 8", NULL);
    h->shape[h->rank++] = d;
    if (accept(c, ',')) commas++;
  }
  /* Python spells a 1-tuple (5,); (5) is just the integer 5 */
  if (h->rank == 1 && commas == 0) return fail(c, "'shape' must be a tuple");
  return 0;
}

static int parse_descr(cursor *c, npy_header *h, char *descr, size_t dn) {
  skip_ws(c);
  if (c->p < c->end && *c->p == '[') return refuse(c, "structured arrays are not supported", "[...]");
  if (parse_string(c, descr, dn)) return -1;
  char bo = descr[0];
  const char *code = descr + (bo == '<' || bo == '>' || bo == '|' || bo == '=');
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    if (strcmp(code, kinds[i].code) != 0) continue;
    if (kinds[i].size > 1 && bo == '>') return refuse(c, "big-endian arrays are not supported", descr);
    if (kinds[i].size > 1 && bo != '<' && bo != '=') break;
    h->kind = &kinds[i];
    return 0;
  }
  if (strchr(code, 'O')) return refuse(c, "object arrays are not supported", descr);
  return refuse(c, "unsupported dtype", descr);
}

/* entry = string ':' value */
static int parse_entry(cursor *c, npy_header *h, char *descr, size_t dn) {
  char key[32];
  if (parse_string(c, key, sizeof key)) return -1;
  if (!accept(c, ':')) return fail(c, "expected ':' after a key");
  static const char *names[] = {"descr", "fortran_order", "shape"};
  int k = 0;
  while (k < 3 && strcmp(key, names[k]) != 0) k++;
  if (k == 3) return fail(c, "unexpected key");
  if (h->seen & (1u << k)) return fail(c, "duplicate key");
  h->seen |= 1u << k;
  if (k == 0) return parse_descr(c, h, descr, dn);
  if (k == 2) return parse_shape(c, h);
  if (parse_word(c, "True")) h->fortran = 1;
  else if (parse_word(c, "False")) h->fortran = 0;
  else return fail(c, "'fortran_order' must be True or False");
  return 0;
}

/* dict = '{' [entry (',' entry)* [',']] '}' whitespace */
static int parse_dict(cursor *c, npy_header *h, char *descr, size_t dn) {
  if (!accept(c, '{')) return fail(c, "expected '{'");
  while (!accept(c, '}')) {
    if (parse_entry(c, h, descr, dn)) return -1;
    if (!accept(c, ',')) {
      if (accept(c, '}')) break;
      return fail(c, "expected ',' or '}'");
    }
  }
  skip_ws(c);
  if (c->p != c->end) return fail(c, "unexpected text after '}'");
  if (h->seen != 7) return fail(c, "missing key (needs 'descr', 'fortran_order' and 'shape')");
  return 0;
}

/* "2x3", "5" or "scalar" */
static void shape_str(const int64_t *shape, int rank, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "%s", rank == 0 ? "scalar" : "");
  for (int i = 0; i < rank && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? "x%lld" : "%lld", (long long)shape[i]);
}

/* Magic, version and header length; sets *hdr and *hlen. */
static int parse_preamble(const char *path, const unsigned char *b, size_t len, size_t *hdr, size_t *hlen,
                          char *msg, size_t msgn) {
  if (len < 8 || memcmp(b, "\x93NUMPY", 6) != 0) {
    if (len < 8 && memcmp(b, "\x93NUMPY", len < 6 ? len : 6) == 0)
      snprintf(msg, msgn, "'%s' is truncated: %zu bytes, too short for a .npy header", path, len);
    else
      snprintf(msg, msgn, "'%s' is not a .npy file (no \\x93NUMPY magic)", path);
    return -1;
  }
  if (b[6] < 1 || b[6] > 3 || b[7] != 0) {
    snprintf(msg, msgn, "'%s': unsupported .npy format version %d.%d", path, b[6], b[7]);
    return -1;
  }
  size_t lenbytes = b[6] == 1 ? 2 : 4;
  if (len < 8 + lenbytes) {
    snprintf(msg, msgn, "'%s' is truncated: %zu bytes, too short for a .npy header", path, len);
    return -1;
  }
  uint32_t h = b[8] | (uint32_t)b[9] << 8;
  if (lenbytes == 4) h |= (uint32_t)b[10] << 16 | (uint32_t)b[11] << 24;
  *hdr = 8 + lenbytes;
  *hlen = h;
  if (h > len - *hdr) {
    snprintf(msg, msgn, "'%s' is truncated: header length is %u bytes but %zu follow", path, h, len - *hdr);
    return -1;
  }
  return 0;
}

/* Parse the preamble and dict; *data_off receives where the array starts and
 * *nbytes its size in the file. */
static int parse_header(const char *path, const char *buf, size_t len, npy_header *h, size_t *data_off,
                        size_t *numel, char *msg, size_t msgn) {
  size_t hdr, hlen;
  if (parse_preamble(path, (const unsigned char *)buf, len, &hdr, &hlen, msg, msgn)) return -1;
  cursor c = {buf + hdr, buf + hdr + hlen, {0}};
  char descr[32] = "";
  memset(h, 0, sizeof *h);
  if (parse_dict(&c, h, descr, sizeof descr)) {
    snprintf(msg, msgn, "'%s': %s", path, c.err);
    return -1;
  }
  if (h->fortran) {
    snprintf(msg, msgn, "'%s': Fortran-order arrays are not supported (save with np.ascontiguousarray)",
             path);
    return -1;
  }
  int64_t n = 1;
  for (int i = 0; i < h->rank; i++) {
    if (h->shape[i] != 0 && n > INT64_MAX / (int64_t)h->kind->size / h->shape[i]) {
      snprintf(msg, msgn, "'%s': shape has too many elements", path);
      return -1;
    }
    n *= h->shape[i];
  }
  *data_off = hdr + hlen;
  *numel = (size_t)n;
  return 0;
}

/* Check that exactly the array's bytes follow the header. */
static int check_length(const char *path, const npy_header *h, size_t numel, size_t have, char *msg,
                        size_t msgn) {
  size_t want = numel * h->kind->size;
  if (have == want) return 0;
  char sh[LATHE_MAXDIM * 24];
  shape_str(h->shape, h->rank, sh, sizeof sh);
  if (have < want)
    snprintf(msg, msgn, "'%s' is truncated: header says %s %s (%zu bytes) but %zu bytes follow", path, sh,
             h->kind->name, want, have);
  else
    snprintf(msg, msgn, "'%s': %zu bytes of trailing data after the %s %s array (%zu bytes)", path,
             have - want, sh, h->kind->name, want);
  return -1;
}

/* Move the array to the start of buf, converting in place; every
 * conversion shrinks or keeps element size, so reading ahead of writing is
 * safe. Returns buf shrunk to fit. */
static char *take_data(char *buf, size_t off, const npy_header *h, size_t numel) {
  size_t outsz = lathe_dtype_size(h->kind->dtype);
  if (h->kind->size == 8 && h->kind->dtype == LATHE_F32) {
    for (size_t i = 0; i < numel; i++) {
      double d;
      memcpy(&d, buf + off + i * 8, 8);
      float f = (float)d;
      memcpy(buf + i * 4, &f, 4);
    }
  } else {
    memmove(buf, buf + off, numel * outsz);
  }
  if (h->kind->dtype == LATHE_BOOL)
    for (size_t i = 0; i < numel; i++) buf[i] = buf[i] != 0;
  size_t keep = numel * outsz > 0 ? numel * outsz : 1;
  char *nb = realloc(buf, keep);
  return nb ? nb : buf;
}

int rt_npy_read(const char *path, lathe_tensor *out, char *msg, size_t msgn) {
  memset(out, 0, sizeof *out);
  char *buf;
  size_t len;
  if (rt_read_file(path, &buf, &len, msg, msgn)) return -1;
  return rt_npy_parse(path, buf, len, out, msg, msgn);
}

int rt_npy_parse(const char *path, char *buf, size_t len, lathe_tensor *out, char *msg, size_t msgn) {
  memset(out, 0, sizeof *out);
  size_t off, numel;
  npy_header h;
  if (parse_header(path, buf, len, &h, &off, &numel, msg, msgn) ||
      check_length(path, &h, numel, len - off, msg, msgn)) {
    free(buf);
    return -1;
  }
  out->dtype = h.kind->dtype;
  out->rank = h.rank;
  memcpy(out->shape, h.shape, sizeof h.shape);
  out->data = take_data(buf, off, &h, numel);
  return 0;
}

/* ---- writing ---- */

/* Indexed by lathe_dtype. bf16 has no NumPy dtype: it is widened to f32. */
static const char *const write_descr[] = {
  [LATHE_F32] = "<f4", [LATHE_F16] = "<f2", [LATHE_BF16] = "<f4", [LATHE_I32] = "<i4",
  [LATHE_I64] = "<i8", [LATHE_I8] = "|i1",  [LATHE_U8] = "|u1",   [LATHE_BOOL] = "|b1",
};

/* Build the 64-byte-aligned v1.0 preamble + dict + padding + newline. */
static size_t build_header(const lathe_tensor *t, char *hb, size_t hn) {
  char dict[400];
  size_t k = (size_t)snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                              write_descr[t->dtype]);
  for (int i = 0; i < t->rank; i++)
    k += (size_t)snprintf(dict + k, sizeof dict - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
  k += (size_t)snprintf(dict + k, sizeof dict - k, "%s}", t->rank == 1 ? ",), " : "), ");
  size_t total = (10 + k + 1 + 63) / 64 * 64;
  if (total > hn) return 0;
  size_t hlen = total - 10;
  memcpy(hb, "\x93NUMPY\x01\x00", 8);
  hb[8] = (char)(hlen & 0xff);
  hb[9] = (char)(hlen >> 8);
  memcpy(hb + 10, dict, k);
  memset(hb + 10 + k, ' ', total - 10 - k - 1);
  hb[total - 1] = '\n';
  return total;
}

static int check_tensor(const char *path, const lathe_tensor *t, char *msg, size_t msgn) {
  const char *why = NULL;
  if (!t) why = "no tensor";
  else if ((int)t->dtype < 0 || (int)t->dtype > LATHE_BOOL) why = "invalid dtype";
  else if (t->rank < 0 || t->rank > LATHE_MAXDIM) why = "invalid rank";
  else if (lathe_tensor_numel(t) < 0) why = "invalid shape";
  else if (lathe_tensor_numel(t) > 0 && lathe_tensor_bytes(t) == 0) why = "too many elements";
  else if (!t->data && lathe_tensor_bytes(t) > 0) why = "no data";
  if (!why) return 0;
  snprintf(msg, msgn, "cannot write '%s': %s", path, why);
  return -1;
}

int rt_npy_write(const char *path, const lathe_tensor *t, char *msg, size_t msgn) {
  if (check_tensor(path, t, msg, msgn)) return -1;
  char hb[512];
  size_t hlen = build_header(t, hb, sizeof hb);
  int64_t n = lathe_tensor_numel(t);
  rt_chunk ch[2] = {{hb, hlen}, {t->data, lathe_tensor_bytes(t)}};
  float *wide = NULL;
  if (t->dtype == LATHE_BF16 && n > 0) {
    if ((uint64_t)n > SIZE_MAX / 4 || !(wide = malloc((size_t)n * 4))) {
      snprintf(msg, msgn, "cannot write '%s': out of memory", path);
      return -1;
    }
    rt_convert(t->data, LATHE_BF16, wide, LATHE_F32, n);
    ch[1].data = wide;
    ch[1].len = (size_t)n * 4;
  }
  int rc = rt_write_atomic(path, ch, 2, msg, msgn);
  free(wide);
  return rc;
}
