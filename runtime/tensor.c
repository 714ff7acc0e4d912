/* tensor.c -- small public helpers on dtypes, tensors and errors. */
#include <stdlib.h>
#include "lathe.h"

/* Indexed by lathe_dtype; the names are the language's dtype names. */
static const struct {
  const char *name;
  size_t size;
} dtype_info[] = {
  [LATHE_F32] = {"f32", 4}, [LATHE_F16] = {"f16", 2}, [LATHE_BF16] = {"bf16", 2},
  [LATHE_I32] = {"i32", 4}, [LATHE_I64] = {"i64", 8}, [LATHE_I8] = {"i8", 1},
  [LATHE_U8] = {"u8", 1},   [LATHE_BOOL] = {"bool", 1},
};
#define NDTYPES ((int)(sizeof dtype_info / sizeof dtype_info[0]))

static int dtype_ok(lathe_dtype t) { return (int)t >= 0 && (int)t < NDTYPES; }

const char *lathe_dtype_name(lathe_dtype t) { return dtype_ok(t) ? dtype_info[t].name : "?"; }

size_t lathe_dtype_size(lathe_dtype t) { return dtype_ok(t) ? dtype_info[t].size : 0; }

/* -1 when the rank or a dimension is invalid or the product overflows. */
int64_t lathe_tensor_numel(const lathe_tensor *t) {
  if (!t || t->rank < 0 || t->rank > LATHE_MAXDIM) return -1;
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) {
    int64_t d = t->shape[i];
    if (d < 0) return -1;
    if (d != 0 && n > INT64_MAX / d) return -1;
    n *= d;
  }
  return n;
}

/* 0 for an invalid tensor or a byte count that does not fit. */
size_t lathe_tensor_bytes(const lathe_tensor *t) {
  int64_t n = lathe_tensor_numel(t);
  size_t sz = t ? lathe_dtype_size(t->dtype) : 0;
  if (n < 0 || sz == 0 || (uint64_t)n > SIZE_MAX / sz) return 0;
  return (size_t)n * sz;
}

void lathe_tensor_free(lathe_tensor *t) {
  if (!t) return;
  free(t->data);
  t->data = NULL;
}

void lathe_error_clear(lathe_error *err) {
  if (!err) return;
  free(err->message);
  err->message = NULL;
  err->code = LATHE_OK;
}
