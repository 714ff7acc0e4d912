/* dtype.c -- element types: names, sizes, classes. One table, indexed by
 * ir_dtype, in the order the language lists them. */
#include <string.h>

#include "ir.h"

static const struct {
  const char *name;
  size_t size;
  int is_float;
} dtypes[IR_NDTYPES] = {
  [IR_F32] = {"f32", 4, 1},  [IR_F16] = {"f16", 2, 1}, [IR_BF16] = {"bf16", 2, 1},
  [IR_I32] = {"i32", 4, 0},  [IR_I64] = {"i64", 8, 0}, [IR_I8] = {"i8", 1, 0},
  [IR_U8] = {"u8", 1, 0},    [IR_BOOL] = {"bool", 1, 0},
};

static int valid(ir_dtype t) { return (int)t >= 0 && t < IR_NDTYPES; }

const char *ir_dtype_name(ir_dtype t) { return valid(t) ? dtypes[t].name : "?"; }

int ir_dtype_parse(const char *s, ir_dtype *out) {
  for (int t = 0; s && t < IR_NDTYPES; t++) {
    if (strcmp(s, dtypes[t].name) == 0) {
      *out = (ir_dtype)t;
      return 0;
    }
  }
  return -1;
}

size_t ir_dtype_size(ir_dtype t) { return valid(t) ? dtypes[t].size : 0; }
int ir_dtype_is_float(ir_dtype t) { return valid(t) && dtypes[t].is_float; }
int ir_dtype_is_int(ir_dtype t) { return valid(t) && !dtypes[t].is_float; }
