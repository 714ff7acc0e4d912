/* fuzz_npy.c -- libFuzzer target for the .npy reader and the data set built
 * from it: any bytes must give an array or a message, never crash, hang or
 * leak (the shapes (0, 2^40, 2^40) and the like included). Arrays that load
 * become a target field and are checked as class labels and int32 values.
 * Nothing is written: the reader runs on a copy in memory. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size ? size : 1);   /* rt_npy_parse takes it */
  if (!buf) return 0;
  memcpy(buf, data, size);
  lathe_tensor t;
  char msg[512];
  if (rt_npy_parse("fuzz.npy", buf, size, &t, msg, sizeof msg) < 0) return 0;
  rt_dataset ds;
  memset(&ds, 0, sizeof ds);
  rt_npy_source src = {"y", "fuzz.npy", RT_FIELD_TARGET};
  if (rt_data_add_array(&ds, &src, &t, msg, sizeof msg) == 0) {
    rt_data_check_labels(&ds, 0, 10, msg, sizeof msg);
    rt_data_check_ints(&ds, 0, INT32_MIN, (int64_t)INT32_MAX + 1, "'y' value", msg, sizeof msg);
  }
  lathe_tensor_free(&t);
  rt_data_free(&ds);
  return 0;
}
