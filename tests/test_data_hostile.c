/* test_data_hostile.c -- hostile data files: every one ends in a data set or
 * in a message naming file, line (or example), column and value; never a
 * silently dropped row, a wrapped or truncated label, an overflow or a crash.
 * Only the loaders' long-standing entry points are used, so the same file
 * builds against older code and shows what it did wrong. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "runtime.h"
#include "test.h"
#include "test_scratch.h"

static char msg[512];

/* want: a format with one %s, the file's path. */
static void expect_msg(const char *want, const char *path) {
  char full[1024];
  snprintf(full, sizeof full, want, path);
  CHECK_STR(msg, full);
}

/* CSV text that must load with n rows; x0 is the first feature of row 0. */
static void csv_ok(const char *text, int64_t n, float x0) {
  write_text("ok.csv", text);
  rt_dataset ds;
  int rc = rt_data_load_csv(tmp("ok.csv"), -1, &ds, msg, sizeof msg);
  CHECK_MSG(rc == 0, "%s", msg);
  if (rc) return;
  CHECK_MSG(ds.n == n, "%lld rows, want %lld", (long long)ds.n, (long long)n);
  CHECK(((float *)ds.f[0].data)[0] == x0);
  rt_data_free(&ds);
}

static void csv_bad(const char *text, int tcol, const char *want) {
  write_text("bad.csv", text);
  rt_dataset ds;
  CHECK(rt_data_load_csv(tmp("bad.csv"), tcol, &ds, msg, sizeof msg) == -1);
  expect_msg(want, tmp("bad.csv"));
  CHECK(ds.nfields == 0 && ds.n == 0);
}

/* A first row is a header only when one of its cells is text. */
static void test_csv_header_rule(void) {
  csv_ok("\xEF\xBB\xBF" "1,2,0\n3,4,1\n", 2, 1);        /* BOM, no header: 2 rows, not 1 */
  csv_ok("\xEF\xBB\xBF" "a,b,y\r\n1,2,0\r\n", 1, 1);    /* BOM and a header */
  csv_ok("1,2,0\r\n3,4,1\r\n\r\n", 2, 1);                /* CRLF and a blank CRLF line */
  csv_ok("0.5,x2,label\n1,2,0\n", 1, 1);                 /* one text cell makes a header */
  csv_bad("1,nan,0\n3,4,1\n", -1, "%s:1: error: column 2: 'nan' is a missing value (fill it or drop the row)");
  csv_bad("1,,0\n3,4,1\n", -1, "%s:1: error: column 2: empty field (a missing value: fill it or drop the row)");
  csv_bad("?,1,0\n", -1, "%s:1: error: column 1: '?' is a missing value (fill it or drop the row)");
  csv_bad("NaN,NA,null\n", -1, "%s:1: error: column 1: 'NaN' is a missing value (fill it or drop the row)");
  csv_bad("\xEF\xBB\xBF" ",1,0\n", -1, "%s:1: error: column 1: empty field (a missing value: fill it or drop the row)");
}

static void test_csv_cells(void) {
  csv_bad("x,y\n1,NA\n", -1, "%s:2: error: column 2: 'NA' is a missing value (fill it or drop the row)");
  csv_bad("1,2,0\n4,-nan,1\n", -1, "%s:2: error: column 2: '-nan' is a missing value (fill it or drop the row)");
  csv_bad("1,2,0\n4,inf,1\n", -1, "%s:2: error: column 2: 'inf' is not a finite number");
  csv_bad("1,2,0\n1e39,4,1\n", -1, "%s:2: error: column 1: '1e39' overflows f32 (largest 3.4e38)");
  csv_bad("1,2,0\n1,4,-1e400\n", -1, "%s:2: error: column 3: '-1e400' overflows f32 (largest 3.4e38)");
  csv_bad("1,2,3\n4,5\n", -1, "%s:2: error: expected 3 columns, found 2");
  csv_bad("1,2,3\n\n4,5,6,7\n", -1, "%s:3: error: expected 3 columns, found 4");
  csv_bad("1,2\n3,4 5\n", -1, "%s:2: error: column 2: '4 5' is not a number");
}

/* Huge lines: a first row of a million and one columns, a later row of two
 * million, and a 4 MB cell. */
static void test_csv_huge_lines(void) {
  size_t n = 4200000;
  char *s = malloc(n + 64);
  size_t k = 0;
  for (int i = 0; i < 1000001; i++) s[k++] = '1', s[k++] = ',';
  s[k - 1] = '\n', s[k] = 0;
  csv_bad(s, -1, "%s:1: error: too many columns");
  k = (size_t)sprintf(s, "1,2\n");
  for (int i = 0; i < 2000000; i++) s[k++] = '1', s[k++] = ',';
  s[k - 1] = '\n', s[k] = 0;
  csv_bad(s, -1, "%s:2: error: expected 2 columns, found 2000000");
  k = (size_t)sprintf(s, "1,2\n3,");
  memset(s + k, '9', 4000000);
  s[k + 4000000] = 0;
  csv_bad(s, -1, "%s:2: error: column 2: '9999999999999999999999999999999999999999' overflows f32 (largest 3.4e38)");
  free(s);
}

/* A gzip stream cut in half is an error, not a shorter file. */
static void test_csv_truncated_gzip(void) {
  char text[8192];
  size_t k = 0;
  for (int i = 0; k < sizeof text - 32; i++) k += (size_t)snprintf(text + k, sizeof text - k, "%d,%d,%d\n", i, i * 7 % 13, i % 3);
  gzFile g = gzopen(tmp("t.csv.gz"), "wb");
  gzwrite(g, text, (unsigned)k);
  gzclose(g);
  unsigned char gz[16384];
  FILE *f = fopen(tmp("t.csv.gz"), "rb");
  size_t n = fread(gz, 1, sizeof gz, f);
  fclose(f);
  write_file(tmp("t.csv.gz"), gz, n / 2);
  rt_dataset ds;
  CHECK(rt_data_load_csv(tmp("t.csv.gz"), -1, &ds, msg, sizeof msg) == -1);
  expect_msg("%s: truncated gzip data", tmp("t.csv.gz"));
}

/* Labels are checked against the model's classes with line, column and the
 * exact value: 2.9 is not class 2, and 2.0000001 is not class 2 either. */
static void label_bad(const char *text, int tcol, int64_t classes, const char *want) {
  write_text("lab.csv", text);
  rt_dataset ds;
  int rc = rt_data_load_csv(tmp("lab.csv"), tcol, &ds, msg, sizeof msg);
  CHECK_MSG(rc == 0, "%s", msg);
  if (rc) return;
  int y = rt_data_field(&ds, RT_FIELD_TARGET, "");
  CHECK(rt_data_check_labels(&ds, y, classes, msg, sizeof msg) == -1);
  expect_msg(want, tmp("lab.csv"));
  rt_data_free(&ds);
}

static void test_csv_labels(void) {
  label_bad("1,0\n2,1\n3,2.9\n", -1, 10, "%s:3: error: label 2.9 in column 2 is not an integer class");
  label_bad("a,y\n1,0\n\n2,2.0000001\n", -1, 10, "%s:4: error: label 2.0000001 in column 2 is not an integer class");
  label_bad("1,0\n2,10\n", -1, 10, "%s:2: error: label 10 in column 2 is outside [0, 10)");
  label_bad("1,-1\n", -1, 10, "%s:1: error: label -1 in column 2 is outside [0, 10)");
  label_bad("3,1,2\n", 0, 3, "%s:1: error: label 3 in column 1 is outside [0, 3)");
  label_bad("1,0\n1,5000000000\n", -1, 10, "%s:2: error: label 5000000000 in column 2 is outside [0, 10)");
  /* A regression file: the first non-integer target is named. */
  label_bad("1,0.25\n2,1.5\n", -1, 2, "%s:1: error: label 0.25 in column 2 is not an integer class");
}

/* ---- .npy ---- */

/* A v1.0 .npy file with this header dict and data. */
static void write_npy(const char *name, const char *dict, const void *data, size_t n) {
  char h[256];
  size_t dl = strlen(dict), total = (10 + dl + 1 + 63) / 64 * 64;
  memcpy(h, "\x93NUMPY\x01\x00", 8);
  h[8] = (char)((total - 10) & 0xff), h[9] = (char)((total - 10) >> 8);
  memcpy(h + 10, dict, dl);
  memset(h + 10 + dl, ' ', total - 10 - dl - 1);
  h[total - 1] = '\n';
  FILE *f = fopen(tmp(name), "wb");
  fwrite(h, 1, total, f);
  if (n) fwrite(data, 1, n, f);
  fclose(f);
}

static void npy_bad(const char *xfile, const char *yfile, const char *want, const char *at) {
  rt_npy_source src[2] = {{"x", tmp(xfile), RT_FIELD_INPUT}, {"y", tmp(yfile), RT_FIELD_TARGET}};
  rt_dataset ds;
  CHECK(rt_data_load_npy(src, 2, &ds, msg, sizeof msg) == -1);
  expect_msg(want, tmp(at));
}

static void npy_label_bad(const char *yfile, int64_t classes, const char *want) {
  rt_npy_source src[2] = {{"x", tmp("x3.npy"), RT_FIELD_INPUT}, {"y", tmp(yfile), RT_FIELD_TARGET}};
  rt_dataset ds;
  int rc = rt_data_load_npy(src, 2, &ds, msg, sizeof msg);
  CHECK_MSG(rc == 0, "%s", msg);
  if (rc) return;
  CHECK(rt_data_check_labels(&ds, 1, classes, msg, sizeof msg) == -1);
  expect_msg(want, tmp(yfile));   /* the labels' file, not the inputs' */
  rt_data_free(&ds);
}

static void test_npy(void) {
  float x[6] = {0};
  write_npy("x3.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", x, sizeof x);
  /* The width of an example must not overflow: (0, 2^40, 2^40). */
  write_npy("wide.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 1099511627776, 1099511627776), }",
            NULL, 0);
  npy_bad("wide.npy", "x3.npy", "%s: 'x' has too many elements per example", "wide.npy");
  write_npy("none.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", NULL, 0);
  npy_bad("none.npy", "x3.npy", "%s: 'x' has no examples (its first axis is 0)", "none.npy");
  /* int64 labels outside int32 are refused, never wrapped (2^32 is not 0). */
  int64_t y64[3] = {0, 4294967296LL, 1};
  write_npy("y64.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", y64, sizeof y64);
  npy_label_bad("y64.npy", 10, "%s: example 1: label 4294967296 is outside [0, 10)");
  int64_t ymax[3] = {0, INT64_MAX, 1};
  write_npy("ymax.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", ymax, sizeof ymax);
  npy_label_bad("ymax.npy", 10, "%s: example 1: label 9223372036854775807 is outside [0, 10)");
  float yf[3] = {0, 1, 1.5f};
  write_npy("yf.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", yf, sizeof yf);
  npy_label_bad("yf.npy", 10, "%s: example 2: label 1.5 is not an integer class");
  int32_t yt[3 * 4] = {0, 1, 2, 3, 4, 5, 12, 7, 8, 9, 0, 1};
  write_npy("yt.npy", "{'descr': '<i4', 'fortran_order': False, 'shape': (3, 4), }", yt, sizeof yt);
  npy_label_bad("yt.npy", 10, "%s: example 1, element 2: label 12 is outside [0, 10)");
}

/* ---- IDX ---- */

static void test_idx(void) {
  unsigned char img[64], lab[64];
  uint32_t di[3] = {2, 2, 2}, dl[1] = {2};
  size_t h = idx_header(img, 0x08, 3, di);
  memset(img + h, 7, 8);
  write_file(tmp("img.idx"), img, h + 8);
  rt_dataset ds;
  /* (0, 2^32-1, 2^32-1): no data, but a width of 2^64. */
  uint32_t wide[3] = {0, 0xFFFFFFFFu, 0xFFFFFFFFu};
  h = idx_header(lab, 0x08, 3, wide);
  write_file(tmp("wide.idx"), lab, h);
  CHECK(rt_data_load_idx(tmp("wide.idx"), tmp("img.idx"), &ds, msg, sizeof msg) == -1);
  expect_msg("%s: IDX examples have too many elements", tmp("wide.idx"));
  uint32_t none[3] = {0, 2, 2};
  h = idx_header(lab, 0x08, 3, none);
  write_file(tmp("none.idx"), lab, h);
  CHECK(rt_data_load_idx(tmp("none.idx"), tmp("img.idx"), &ds, msg, sizeof msg) == -1);
  expect_msg("%s: IDX file has no examples (its first dimension is 0)", tmp("none.idx"));
  /* f32 labels 1 and 2.5; i32 labels 1 and -5. */
  h = idx_header(lab, 0x0D, 1, dl);
  unsigned char f[8] = {0x3F, 0x80, 0, 0, 0x40, 0x20, 0, 0};
  memcpy(lab + h, f, 8);
  write_file(tmp("lf.idx"), lab, h + 8);
  CHECK_MSG(rt_data_load_idx(tmp("img.idx"), tmp("lf.idx"), &ds, msg, sizeof msg) == 0, "%s", msg);
  CHECK(rt_data_check_labels(&ds, 1, 10, msg, sizeof msg) == -1);
  expect_msg("%s: example 1: label 2.5 is not an integer class", tmp("lf.idx"));
  rt_data_free(&ds);
  h = idx_header(lab, 0x0C, 1, dl);
  unsigned char i[8] = {0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFB};
  memcpy(lab + h, i, 8);
  write_file(tmp("li.idx"), lab, h + 8);
  CHECK_MSG(rt_data_load_idx(tmp("img.idx"), tmp("li.idx"), &ds, msg, sizeof msg) == 0, "%s", msg);
  CHECK(rt_data_check_labels(&ds, 1, 10, msg, sizeof msg) == -1);
  expect_msg("%s: example 1: label -5 is outside [0, 10)", tmp("li.idx"));
  rt_data_free(&ds);
}

int main(void) {
  if (!scratch_open("hostile")) return 1;
  test_csv_header_rule();
  test_csv_cells();
  test_csv_huge_lines();
  test_csv_truncated_gzip();
  test_csv_labels();
  test_npy();
  test_idx();
  scratch_close();
  return TEST_REPORT();
}
