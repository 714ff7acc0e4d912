/* fuzz_idx.c -- libFuzzer target for the IDX reader: the input is split into
 * an images file and a labels file (the first two bytes give the images'
 * length), and any bytes must give a data set or a message, never crash,
 * hang or leak. Nothing is written: the reader runs on memory. */
#include <stdint.h>
#include <string.h>

#include "data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t split = (size_t)data[0] << 8 | data[1];
  data += 2, size -= 2;
  if (split > size) split = size;
  rt_dataset ds;
  memset(&ds, 0, sizeof ds);
  char msg[512];
  if (rt_data_parse_idx("images.idx", data, split, RT_FIELD_INPUT, &ds, msg, sizeof msg) == 0 &&
      rt_data_parse_idx("labels.idx", data + split, size - split, RT_FIELD_TARGET, &ds, msg, sizeof msg) == 0) {
    rt_data_check_labels(&ds, 1, 10, msg, sizeof msg);
    rt_data_check_ints(&ds, 0, INT32_MIN, (int64_t)INT32_MAX + 1, "'x' value", msg, sizeof msg);
  }
  rt_data_free(&ds);
  return 0;
}
