/* data_idx.c -- the IDX format of MNIST and its kin (Y. LeCun's page):
 *   u8 0, u8 0, u8 TYPE, u8 RANK, RANK x u32 dimension (big-endian), data
 * with TYPE 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64, every
 * element big-endian. Files may be gzip-compressed (train-images-idx3-ubyte.gz
 * as downloaded). */
#include <stdlib.h>
#include <string.h>

#include "data.h"

typedef struct {
  unsigned char code;
  size_t size;             /* bytes per element in the file */
  lathe_dtype dtype;       /* what the field stores */
  const char *name;
} idx_type;

static const idx_type idx_types[] = {
  {0x08, 1, LATHE_U8, "u8"},  {0x09, 1, LATHE_I8, "i8"},   {0x0B, 2, LATHE_I32, "i16"},
  {0x0C, 4, LATHE_I32, "i32"}, {0x0D, 4, LATHE_F32, "f32"}, {0x0E, 8, LATHE_F32, "f64"},
};

typedef struct {
  const idx_type *type;
  int rank;
  int64_t shape[LATHE_MAXDIM];
  int64_t numel;
  const unsigned char *data;
} idx_array;

static uint64_t be(const unsigned char *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

static int parse_header(const char *path, const unsigned char *b, size_t len, idx_array *a, char *msg,
                        size_t msgn) {
  if (len < 4 || b[0] != 0 || b[1] != 0) {
    snprintf(msg, msgn, "%s: not an IDX file (bad magic number)", path);
    return -1;
  }
  a->type = NULL;
  for (size_t i = 0; i < sizeof idx_types / sizeof *idx_types; i++)
    if (idx_types[i].code == b[2]) a->type = &idx_types[i];
  if (!a->type) {
    snprintf(msg, msgn, "%s: unknown IDX element type 0x%02x", path, b[2]);
    return -1;
  }
  a->rank = b[3];
  if (a->rank < 1 || a->rank > LATHE_MAXDIM) {
    snprintf(msg, msgn, "%s: IDX rank %d not supported (1 to %d)", path, a->rank, LATHE_MAXDIM);
    return -1;
  }
  size_t head = 4 + 4 * (size_t)a->rank;
  if (len < head) {
    snprintf(msg, msgn, "%s: truncated IDX header", path);
    return -1;
  }
  /* Dimensions are u32; the product is checked against the file size as it
   * grows, so it can never overflow. */
  int64_t limit = (int64_t)((len - head) / a->type->size);
  a->numel = 1;
  for (int d = 0; d < a->rank && a->numel >= 0; d++) {
    a->shape[d] = (int64_t)be(b + 4 + 4 * d, 4);
    if (a->shape[d] && a->numel > limit / a->shape[d]) a->numel = -1;
    else a->numel *= a->shape[d];
  }
  if (a->numel < 0 || (size_t)a->numel * a->type->size != len - head) {
    snprintf(msg, msgn, "%s: IDX data size does not match its header (%zu bytes of data)", path, len - head);
    return -1;
  }
  a->data = b + head;
  return 0;
}

/* Decodes big-endian elements into the field's dtype. */
static void decode(const idx_array *a, void *out) {
  const unsigned char *p = a->data;
  size_t sz = a->type->size;
  for (int64_t i = 0; i < a->numel; i++, p += sz) {
    uint64_t v = be(p, sz);
    switch (a->type->code) {
      case 0x08: ((uint8_t *)out)[i] = (uint8_t)v; break;
      case 0x09: ((int8_t *)out)[i] = (int8_t)(uint8_t)v; break;
      case 0x0B: ((int32_t *)out)[i] = (int16_t)(uint16_t)v; break;
      case 0x0C: ((int32_t *)out)[i] = (int32_t)(uint32_t)v; break;
      case 0x0D: { uint32_t u = (uint32_t)v; float f; memcpy(&f, &u, 4); ((float *)out)[i] = f; break; }
      default: { double d; memcpy(&d, &v, 8); ((float *)out)[i] = (float)d; break; }
    }
  }
}

int rt_data_parse_idx(const char *name, const unsigned char *buf, size_t len, rt_field_role role, rt_dataset *ds,
                      char *msg, size_t msgn) {
  idx_array a;
  if (ds->nfields >= RT_DATA_MAXFIELDS) {
    snprintf(msg, msgn, "%s: too many IDX files", name);
    return -1;
  }
  if (parse_header(name, buf, len, &a, msg, msgn) < 0) return -1;
  /* With 0 examples the file's size bounds nothing: the width is checked on
   * its own. */
  int64_t width = 1;
  for (int d = 1; d < a.rank; d++) {
    if (a.shape[d] && width > INT64_MAX / 16 / a.shape[d]) {
      snprintf(msg, msgn, "%s: IDX examples have too many elements", name);
      return -1;
    }
    width *= a.shape[d];
  }
  if (a.shape[0] == 0) {
    snprintf(msg, msgn, "%s: IDX file has no examples (its first dimension is 0)", name);
    return -1;
  }
  if (ds->nfields > 0 && a.shape[0] != ds->n) {
    snprintf(msg, msgn, "%s: %lld labels for %lld images", name, (long long)a.shape[0], (long long)ds->n);
    return -1;
  }
  rt_field *f = &ds->f[ds->nfields];
  memset(f, 0, sizeof *f);
  f->data = malloc((size_t)(a.numel ? a.numel : 1) * lathe_dtype_size(a.type->dtype));
  if (!f->data) {
    snprintf(msg, msgn, "%s: out of memory", name);
    return -1;
  }
  snprintf(ds->fsource[ds->nfields], sizeof ds->fsource[0], "%s", name);
  f->role = role;
  f->dtype = a.type->dtype;
  f->rank = a.rank - 1;
  f->width = width;
  for (int d = 1; d < a.rank; d++) f->shape[d - 1] = a.shape[d];
  decode(&a, f->data);
  ds->nfields++;
  ds->n = a.shape[0];
  return 0;
}

/* Reads one IDX file into the next field of ds. */
static int load_one(const char *path, rt_field_role role, rt_dataset *ds, char *msg, size_t msgn) {
  char *buf;
  size_t len;
  if (rt_read_maybe_gz(path, &buf, &len, msg, msgn) < 0) return -1;
  int rc = rt_data_parse_idx(path, (const unsigned char *)buf, len, role, ds, msg, msgn);
  free(buf);
  return rc;
}

int rt_data_load_idx(const char *images, const char *labels, rt_dataset *out, char *msg, size_t msgn) {
  memset(out, 0, sizeof *out);
  snprintf(out->source, sizeof out->source, "%s", images);
  if (load_one(images, RT_FIELD_INPUT, out, msg, msgn) < 0 || load_one(labels, RT_FIELD_TARGET, out, msg, msgn) < 0) {
    rt_data_free(out);
    return -1;
  }
  rt_field *y = &out->f[1];
  if (y->dtype != LATHE_F32) {
    int64_t mx = -1;
    for (int64_t i = 0; i < out->n * y->width; i++) {
      int64_t v = y->dtype == LATHE_I32 ? ((int32_t *)y->data)[i]
                  : y->dtype == LATHE_U8 ? ((uint8_t *)y->data)[i] : ((int8_t *)y->data)[i];
      if (v > mx) mx = v;
    }
    out->nclasses = mx + 1;
  }
  return 0;
}
