/* ox_tensor.c -- TensorProto to host arrays (see ox_tensor.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ox_tensor.h"
#include "onnx_io.h"
#include "runtime/runtime.h"

#define DT(x) ONNX__TENSOR_PROTO__DATA_TYPE__##x

int ox_is_float(int t) {
  return t == DT(FLOAT) || t == DT(DOUBLE) || t == DT(FLOAT16) || t == DT(BFLOAT16);
}

int ox_elem_size(int t) {
  static const signed char sz[] = {
    [DT(FLOAT)] = 4, [DT(UINT8)] = 1, [DT(INT8)] = 1,   [DT(UINT16)] = 2, [DT(INT16)] = 2,
    [DT(INT32)] = 4, [DT(INT64)] = 8, [DT(BOOL)] = 1,   [DT(FLOAT16)] = 2, [DT(DOUBLE)] = 8,
    [DT(UINT32)] = 4, [DT(UINT64)] = 8, [DT(BFLOAT16)] = 2,
  };
  return t >= 0 && t < (int)sizeof sz ? sz[t] : 0;
}

int ox_array_alloc(ox_array *a, int dtype, int64_t n) {
  a->dtype = dtype;
  a->n = n;
  a->f = NULL;
  a->i = NULL;
  if (n == 0) return 0;
  if (ox_is_float(dtype)) a->f = calloc((size_t)n, sizeof *a->f);
  else a->i = calloc((size_t)n, sizeof *a->i);
  return a->f || a->i ? 0 : -1;
}

void ox_array_free(ox_array *a) {
  free(a->f);
  free(a->i);
  a->f = NULL;
  a->i = NULL;
}

double ox_get_f(const ox_array *a, int64_t k) { return a->f ? a->f[k] : (double)a->i[k]; }
int64_t ox_get_i(const ox_array *a, int64_t k) {
  if (a->i) return a->i[k];
  double f = a->f[k]; /* NaN and values past int64 (hostile files) are not converted: UB in C */
  return f > -9.2e18 && f < 9.2e18 ? (int64_t)f : 0;
}

/* One little-endian element of raw bytes to the array's storage. */
static void put_raw(ox_array *a, int64_t k, const uint8_t *p) {
  uint64_t u = 0;
  int sz = ox_elem_size(a->dtype);
  for (int b = 0; b < sz; b++) u |= (uint64_t)p[b] << (8 * b);
  switch (a->dtype) {
  case DT(FLOAT): { float f; uint32_t w = (uint32_t)u; memcpy(&f, &w, 4); a->f[k] = f; break; }
  case DT(DOUBLE): { double f; memcpy(&f, &u, 8); a->f[k] = f; break; }
  case DT(FLOAT16): a->f[k] = rt_f16_to_f32((uint16_t)u); break;
  case DT(BFLOAT16): a->f[k] = rt_bf16_to_f32((uint16_t)u); break;
  case DT(INT8): a->i[k] = (int8_t)u; break;
  case DT(INT16): a->i[k] = (int16_t)u; break;
  case DT(INT32): a->i[k] = (int32_t)u; break;
  case DT(INT64): a->i[k] = (int64_t)u; break;
  case DT(BOOL): a->i[k] = u != 0; break;
  default: a->i[k] = (int64_t)u; break; /* unsigned types */
  }
}

static int from_raw(ox_array *a, const uint8_t *p, size_t len, const char *what, char *msg, size_t msgn) {
  size_t sz = (size_t)ox_elem_size(a->dtype);
  if ((uint64_t)a->n > SIZE_MAX / sz || len != (size_t)a->n * sz) {
    snprintf(msg, msgn, "%s: %zu bytes of data for %lld elements of %d bytes", what, len, (long long)a->n, (int)sz);
    return -1;
  }
  for (int64_t k = 0; k < a->n; k++) put_raw(a, k, p + (size_t)k * sz);
  return 0;
}

/* The external data file: location relative to base_dir, inside it. */
static int from_external(ox_array *a, const Onnx__TensorProto *t, const char *base_dir, const char *what, char *msg,
                         size_t msgn) {
  const char *loc = NULL;
  long long off = 0, len = -1;
  for (size_t k = 0; k < t->n_external_data; k++) {
    const Onnx__StringStringEntryProto *e = t->external_data[k];
    if (!e->key || !e->value) continue;
    char *end;
    if (strcmp(e->key, "location") == 0) loc = e->value;
    else if (strcmp(e->key, "offset") == 0) off = strtoll(e->value, &end, 10);
    else if (strcmp(e->key, "length") == 0) len = strtoll(e->value, &end, 10);
  }
  if (!loc || !*loc || loc[0] == '/' || strstr(loc, "..")) {
    snprintf(msg, msgn, "%s: external data needs a 'location' inside the model's directory, got '%s'", what,
             loc ? loc : "(none)");
    return -1;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", base_dir ? base_dir : ".", loc);
  char *data;
  size_t n;
  if (rt_read_file(path, &data, &n, msg, msgn)) return -1;
  size_t want = (size_t)a->n * (size_t)ox_elem_size(a->dtype);
  if (len < 0) len = (long long)want;
  int r = -1;
  if (off < 0 || (unsigned long long)off > n || (unsigned long long)len > n - (size_t)off)
    snprintf(msg, msgn, "%s: external data offset %lld length %lld outside %s (%zu bytes)", what, off, len, path, n);
  else
    r = from_raw(a, (const uint8_t *)data + off, (size_t)len, what, msg, msgn);
  free(data);
  return r;
}

int ox_tensor_decode(const Onnx__TensorProto *t, const char *base_dir, ox_array *a, char *msg, size_t msgn) {
  char what[300];
  snprintf(what, sizeof what, "tensor '%s'", t->name ? t->name : "");
  memset(a, 0, sizeof *a);
  int dt = t->data_type;
  if (ox_elem_size(dt) == 0) {
    snprintf(msg, msgn, "%s: data type %s (%d) is not supported", what, ox_dtype_name(dt), dt);
    return -1;
  }
  if (t->n_dims > OX_MAXDIM) {
    snprintf(msg, msgn, "%s: rank %zu; at most %d dimensions are supported", what, t->n_dims, OX_MAXDIM);
    return -1;
  }
  int64_t n = 1;
  for (size_t k = 0; k < t->n_dims; k++) {
    int64_t d = t->dims[k];
    if (d < 0 || (d > 0 && n > ((int64_t)1 << 40) / d)) {
      snprintf(msg, msgn, "%s: dimension %zu is %lld (negative or the tensor is over 2^40 elements)", what, k,
               (long long)d);
      return -1;
    }
    n *= d;
  }
  if (ox_array_alloc(a, dt, n)) {
    snprintf(msg, msgn, "%s: out of memory for %lld elements", what, (long long)n);
    return -1;
  }
  a->rank = (int)t->n_dims;
  for (size_t k = 0; k < t->n_dims; k++) a->d[k] = t->dims[k];
  int r = 0;
  if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
    r = from_external(a, t, base_dir, what, msg, msgn);
  } else if (t->has_raw_data) {
    r = from_raw(a, t->raw_data.data, t->raw_data.len, what, msg, msgn);
  } else {
    /* typed fields: which one holds this type, and how many values it has */
    size_t have;
    switch (dt) {
    case DT(FLOAT): have = t->n_float_data; break;
    case DT(DOUBLE): have = t->n_double_data; break;
    case DT(INT64): have = t->n_int64_data; break;
    case DT(UINT32): case DT(UINT64): have = t->n_uint64_data; break;
    default: have = t->n_int32_data; break; /* int32, int16, int8, uint16, uint8, bool, float16, bfloat16 */
    }
    if (have != (size_t)n) {
      snprintf(msg, msgn, "%s: %zu values for %lld elements (dims and data disagree)", what, have, (long long)n);
      r = -1;
    }
    for (int64_t k = 0; r == 0 && k < n; k++) {
      switch (dt) {
      case DT(FLOAT): a->f[k] = t->float_data[k]; break;
      case DT(DOUBLE): a->f[k] = t->double_data[k]; break;
      case DT(INT64): a->i[k] = t->int64_data[k]; break;
      case DT(UINT32): case DT(UINT64): a->i[k] = (int64_t)t->uint64_data[k]; break;
      case DT(FLOAT16): a->f[k] = rt_f16_to_f32((uint16_t)t->int32_data[k]); break;
      case DT(BFLOAT16): a->f[k] = rt_bf16_to_f32((uint16_t)t->int32_data[k]); break;
      case DT(BOOL): a->i[k] = t->int32_data[k] != 0; break;
      default: a->i[k] = t->int32_data[k]; break;
      }
    }
  }
  if (r) ox_array_free(a);
  return r;
}
