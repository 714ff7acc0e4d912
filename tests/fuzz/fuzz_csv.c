/* fuzz_csv.c -- libFuzzer target for the CSV data reader: any bytes must
 * load as a data set or give a message, never crash, hang or leak. Data sets
 * that load are also checked as class labels and as int32 features, which
 * exercises the messages that name line, column and value. Nothing is
 * written: the reader runs on a copy in memory. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1);   /* the reader cuts lines in place, up to buf[size] */
  if (!buf) return 0;
  memcpy(buf, data, size);
  buf[size] = 0;
  rt_dataset ds;
  char msg[512];
  /* The target column comes from the size, so every column position is met. */
  int tcol = (int)(size % 5) - 2;
  if (rt_data_parse_csv("fuzz.csv", buf, size, tcol, &ds, msg, sizeof msg) == 0) {
    rt_data_check_labels(&ds, 1, 10, msg, sizeof msg);
    rt_data_check_ints(&ds, 0, INT32_MIN, (int64_t)INT32_MAX + 1, "'x' value", msg, sizeof msg);
    rt_data_free(&ds);
  }
  free(buf);
  return 0;
}
